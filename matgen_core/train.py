"""The one training driver: every model's Trainer runs through :func:`train`.

It owns what all models share: the loop, step and time budgets, the stop flag, events for
callbacks (the app plots them live, the CLI draws a progress bar), atomic checkpoints, resume
(weights, optimisers, step count and random state), ``losses.jsonl`` and ``progress.json``.

One writer per run: the process (rank 0 under torchrun) holds the run's lock (runlock.py) while
it trains, so a second ``train`` of the same folder, from the CLI or the app, is refused. On
start the lock holder removes ``*.tmp`` files a killed writer left behind. A failure (a full
disk, a bad setting met mid-run) leaves the last good checkpoint and ``progress.json`` with
status "failed" and the message.
"""
from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch

from . import distributed, runlock, runs
from .device import pick_device
from .errors import MatgenInputError
from .models import trainer_class

Callback = Callable[[dict], None]


def build_trainer(run_dir, device="auto", with_data: bool = True):
    """The run's Trainer with its config; training images loaded when ``with_data``."""
    config = runs.load_config(run_dir)
    images = runs.load_images(run_dir) if with_data else None
    return trainer_class(config["model"]).create(config["model_config"], images, pick_device(device))


def _save_preview(run_dir: Path, image: np.ndarray) -> None:
    import io as _io

    from PIL import Image

    buf = _io.BytesIO()
    Image.fromarray(image).save(buf, format="PNG")
    runs.atomic_write_bytes(run_dir / "previews" / "latest.png", buf.getvalue())


def train(run_dir, steps: int | None = None, max_minutes: float | None = None, device="auto",
          callbacks: Iterable[Callback] = (), stop: threading.Event | None = None,
          log_every: int = 1, preview_every: int = 25, checkpoint_every: int = 50,
          checkpoint_minutes: float = 2.0) -> dict:
    """Train the run in ``run_dir``, resuming from its latest checkpoint if it has one.

    ``steps``: the run's total number of generator steps (default: the preset's ``steps``); a
    resumed run continues up to it. ``max_minutes``: wall-clock budget of this call. ``stop``: set
    it from another thread to stop after the current step (a checkpoint is written).
    Events go to each callback (see docs/architecture.md). Returns ``{"step", "reason",
    "elapsed_s"}`` with reason "steps", "time" or "stopped".
    """
    run_dir = Path(run_dir)
    config = runs.load_config(run_dir)
    check_budget(steps, max_minutes)
    callbacks = list(callbacks)
    device = distributed.setup(device)  # torchrun: join the group, device per LOCAL_RANK (else no-op)
    main = distributed.is_main()  # DDP: rank 0 alone writes checkpoints, losses, progress, previews
    # one writer per run folder: rank 0 holds the lock (re-entrant: the CLI may hold it already)
    lock = runlock.acquire(run_dir, what="training") if main else None
    try:
        if lock is not None and lock.took_over:
            for cb in callbacks:
                cb(dict(type="notice", message=stale_lock_notice(run_dir, lock.took_over)))
        if main:
            runs.remove_temp_files(run_dir)  # left by a killed writer; no other writer can exist now
        return _train_locked(run_dir, config, steps, max_minutes, device, main, callbacks, stop,
                             log_every, preview_every, checkpoint_every, checkpoint_minutes)
    finally:
        if lock is not None:
            lock.release()


def stale_lock_notice(run_dir, holder: dict) -> str:
    return (f"took over the lock of {run_dir}: its holder, {runlock.describe(holder)}, is no longer "
            f"running (killed or crashed); training continues from the last checkpoint.")


def check_budget(steps, max_minutes) -> None:
    """MatgenInputError unless ``steps`` (if given) is a whole number >= 1 and ``max_minutes`` > 0."""
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, (int, np.integer))
                              or steps < 1):
        raise MatgenInputError(f"The number of steps must be a whole number of at least 1, got "
                               f"{steps!r}; pass e.g. --steps 500.")
    if max_minutes is not None and not (isinstance(max_minutes, (int, float)) and not
                                        isinstance(max_minutes, bool) and np.isfinite(max_minutes)
                                        and max_minutes > 0):
        raise MatgenInputError(f"The time limit must be a positive number of minutes, got "
                               f"{max_minutes!r}; pass e.g. --max-minutes 10, or leave it out for "
                               f"no limit.")


def _check_resumable(trainer, checkpoint: dict, run_dir) -> None:
    """MatgenInputError when the trainer says this checkpoint can be generated from but not
    trained on (its optional ``resume_problem(state)``; e.g. an older conditional SliceGAN)."""
    check = getattr(trainer, "resume_problem", None)
    problem = check(checkpoint.get("state", {})) if check is not None else None
    if problem:
        raise MatgenInputError(f"{run_dir} {problem}")


def _train_locked(run_dir, config, steps, max_minutes, device, main, callbacks, stop, log_every,
                  preview_every, checkpoint_every, checkpoint_minutes) -> dict:
    torch.manual_seed(config.get("seed", 0))
    trainer = build_trainer(run_dir, device)
    total = int(steps if steps is not None else config["model_config"].get("steps", 1000))

    start_step = 0
    checkpoint = runs.load_checkpoint(run_dir, device="cpu")
    if checkpoint is not None:
        _check_resumable(trainer, checkpoint, run_dir)
        runs.restore_state(trainer, checkpoint, run_dir)
        start_step = int(checkpoint["step"])
        rng = checkpoint.get("rng")
        if isinstance(rng, torch.Tensor) and rng.dtype == torch.uint8:
            try:
                torch.set_rng_state(rng)
            except RuntimeError:
                pass  # a foreign RNG state: the run continues with a fresh random stream
        if main:
            _truncate_losses(run_dir, start_step)
    # DDP: same weights on all ranks, gradients averaged before each optimiser step, own data per rank
    distributed.make_data_parallel(trainer)
    distributed.seed_for_rank(config.get("seed", 0), start_step)

    def save(step: int) -> None:
        if not main:
            return
        runs.save_checkpoint(run_dir, {"step": step, "state": trainer.state_dict(),
                                       "rng": torch.get_rng_state(), "model": config["model"]})

    def emit(event: dict) -> None:
        for cb in callbacks if main else ():
            cb(event)

    def progress(step: int, status: str, elapsed: float, error: str = "") -> None:
        if not main:
            return
        record = dict(step=step, total_steps=total, status=status, pid=os.getpid(),
                      elapsed_s=round(elapsed, 2), updated=time.time())
        if error:
            record["error"] = error
        runs.atomic_write_json(run_dir / "progress.json", record)

    t0 = time.perf_counter()
    deadline = t0 + max_minutes * 60 if max_minutes else None
    last_ckpt_time = t0
    step, reason = start_step, "steps"
    losses_file = None
    try:
        progress(step, "running", 0.0)
        losses_file = open(run_dir / "losses.jsonl", "a") if main else open(os.devnull, "w")
        while step < total:
            want = ("stopped" if stop is not None and stop.is_set() else
                    "time" if deadline is not None and time.perf_counter() >= deadline else None)
            if distributed.any_rank(want is not None):  # DDP: all ranks stop at the same step
                reason = want or "stopped"
                break
            losses = trainer.train_step(step)
            step += 1
            now = time.perf_counter()
            elapsed = now - t0
            rate = (step - start_step) / max(elapsed, 1e-9)
            eta = (total - step) / rate if rate > 0 else None
            if deadline is not None:
                eta = min(eta, deadline - now) if eta is not None else deadline - now
            if step % log_every == 0 or step == total:
                row = {"step": step, "time_s": round(elapsed, 3), **{k: float(v) for k, v in losses.items()}}
                losses_file.write(json.dumps(row) + "\n")
                losses_file.flush()
            emit(dict(type="step", step=step, total_steps=total, losses=losses, elapsed_s=elapsed,
                      eta_s=eta, steps_per_s=rate))
            if main and preview_every and (step % preview_every == 0 or step == total):
                image = trainer.preview()
                _save_preview(run_dir, image)
                emit(dict(type="preview", step=step, image=image))
            if step % checkpoint_every == 0 or now - last_ckpt_time > checkpoint_minutes * 60:
                save(step)
                last_ckpt_time = now
                progress(step, "running", elapsed)
        losses_file.close()
        save(step)
    except BaseException as err:  # the last checkpoint stands: a half-done step is not saved
        if losses_file is not None:
            losses_file.close()
        err = _user_error(err, run_dir)
        interrupted = isinstance(err, KeyboardInterrupt)
        try:  # what a resume starts from: the last good checkpoint's step
            saved = runs.load_checkpoint(run_dir) if main else None
            kept = int(saved["step"]) if saved is not None else 0
        except Exception:
            kept = None
        try:  # on a full disk this may fail too; the checkpoint and the error still stand
            progress(kept if kept is not None else step, "stopped" if interrupted else "failed",
                     time.perf_counter() - t0, "" if interrupted else str(err))
        except MatgenInputError:
            pass
        emit(dict(type="done", step=step, reason="error", message=str(err)))
        if err is not _original(err):
            raise err from None
        raise
    distributed.barrier()  # DDP: the others wait until rank 0 has written the final checkpoint
    elapsed = time.perf_counter() - t0
    progress(step, "done" if step >= total else "stopped", elapsed)
    emit(dict(type="done", step=step, reason=reason, message=""))
    return {"step": step, "reason": reason, "elapsed_s": elapsed}


def _user_error(err: BaseException, run_dir: Path) -> BaseException:
    """A full disk met anywhere in the loop (losses, previews) becomes a DiskFullError."""
    from .errors import DiskFullError, is_disk_full, os_error_message

    if isinstance(err, MatgenInputError) or not is_disk_full(err):
        return err
    wrapped = DiskFullError(os_error_message(OSError(28, "disk full"), run_dir) +
                            " The last checkpoint is kept; resume with --resume.")
    wrapped.__original__ = err
    return wrapped


def _original(err: BaseException) -> BaseException:
    return getattr(err, "__original__", err)


def _truncate_losses(run_dir: Path, step: int) -> None:
    """Drop logged rows past ``step``: those steps are redone after a resume."""
    rows = [r for r in runs.read_losses(run_dir) if isinstance(r, dict) and _step_of(r) <= step]
    runs.atomic_write_bytes(run_dir / "losses.jsonl", "".join(json.dumps(r) + "\n" for r in rows).encode())


def _step_of(row: dict) -> float:
    value = row.get("step", 0)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else float("inf")
