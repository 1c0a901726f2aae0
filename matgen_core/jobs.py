"""Background training jobs for the app: one daemon thread per run, a registry, a limit.

No streamlit here. The app keeps one :class:`JobManager` per server (``st.cache_resource``), so a
job outlives page reloads; its pages only read :meth:`Job.snapshot` and the loss history. The
training thread never touches the UI: it calls :func:`matgen_core.train.train` with the job's
callback and stop flag, and the callback stores the latest events under a lock.

A run's loss curve is read from its ``losses.jsonl`` (:func:`loss_history`), so a run trained by
the CLI, or before the server restarted, shows its curves too; a live job's in-memory events top
up the file rows.

Ownership: each app session has a token (``owner``); the job records it and writes it to
``RUN_DIR/.owner.json``, so :meth:`JobManager.foreign_owner` can tell a session that the run it
wants to stop or resume was started by another one (the page then asks for confirmation), and
:meth:`JobManager.stop` / :meth:`JobManager.start` refuse another session's run unless
``force=True``. A run trained by another process (the CLI) holds the run lock (runlock.py):
starting it here is refused with a message naming that process.
"""
from __future__ import annotations

import atexit
import datetime as _dt
import json
import os
import threading
import time
import traceback
from pathlib import Path
from typing import Callable

import numpy as np

from .errors import MatgenInputError

OWNER_FILE = ".owner.json"
ACTIVE = ("starting", "running", "stopping")


def default_threads() -> int:
    """Torch intra-op threads for a training job: leave a core for the web server / UI."""
    return max(1, (os.cpu_count() or 2) - 1)


def _key(run_dir) -> str:
    return str(Path(run_dir).resolve())


class Job:
    """One training job. Read it through :meth:`snapshot` / :meth:`history` (thread-safe)."""

    def __init__(self, run_dir, steps: int | None = None, max_minutes: float | None = None,
                 device: str = "auto", owner: str | None = None):
        self.run_dir = Path(run_dir)
        self.owner = owner  # the app session that started it (None: unknown / not the app)
        self.notice: str | None = None  # e.g. "took over the lock of a dead process"
        self.steps = steps
        self.max_minutes = max_minutes
        self.device = device
        self.stop_event = threading.Event()
        self._lock = threading.Lock()
        self._history: list[dict] = []
        self.status = "starting"   # starting | running | stopping | done | stopped | error
        self.step = 0
        self.total_steps = steps
        self.losses: dict[str, float] = {}
        self.eta_s: float | None = None
        self.elapsed_s = 0.0
        self.steps_per_s: float | None = None
        self.preview: np.ndarray | None = None
        self.preview_step: int | None = None
        self.reason: str | None = None      # steps | time | stopped | error
        self.error: str | None = None       # user-facing message when status == "error"
        self.started_at = time.time()
        self.finished_at: float | None = None
        self.thread: threading.Thread | None = None

    # ---- called from the training thread ----------------------------------------------------
    def _on_event(self, event: dict) -> None:
        kind = event.get("type")
        with self._lock:
            if kind == "step":
                if self.status == "starting":
                    self.status = "running"
                self.step = int(event.get("step", self.step))
                self.total_steps = event.get("total_steps", self.total_steps)
                self.losses = {k: float(v) for k, v in (event.get("losses") or {}).items()}
                self.eta_s = event.get("eta_s")
                self.elapsed_s = float(event.get("elapsed_s") or 0.0)
                self.steps_per_s = event.get("steps_per_s")
                self._history.append({"step": self.step, **self.losses})
            elif kind == "preview":
                self.preview = np.asarray(event["image"])
                self.preview_step = int(event.get("step", self.step))
            elif kind == "notice":
                self.notice = str(event.get("message", ""))
            elif kind == "done":
                self.step = int(event.get("step", self.step))
                self.reason = event.get("reason")
                if self.reason == "error":
                    self.error = self.error or event.get("message") or "training failed"

    def _finish(self, status: str, error: str | None = None) -> None:
        with self._lock:
            self.status = status
            if error:
                self.error = error
            if status == "error":
                self.reason = "error"
            self.eta_s = None if status != "done" else 0.0
            self.finished_at = time.time()

    # ---- read from the UI thread -------------------------------------------------------------
    @property
    def active(self) -> bool:
        return self.status in ACTIVE

    def snapshot(self) -> dict:
        """A consistent copy of the job's state (no history)."""
        with self._lock:
            return dict(
                run_dir=str(self.run_dir), status=self.status, step=self.step,
                total_steps=self.total_steps, losses=dict(self.losses), eta_s=self.eta_s,
                elapsed_s=self.elapsed_s, steps_per_s=self.steps_per_s, preview=self.preview,
                preview_step=self.preview_step, reason=self.reason, error=self.error,
                started_at=self.started_at, finished_at=self.finished_at, owner=self.owner,
                notice=self.notice,
            )

    def history(self) -> list[dict]:
        """Loss rows ({"step", <loss>...}) received by this job, oldest first."""
        with self._lock:
            return list(self._history)

    def request_stop(self) -> None:
        with self._lock:
            if self.status in ACTIVE:
                self.status = "stopping"
        self.stop_event.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the thread to end; True if it has."""
        if self.thread is not None:
            self.thread.join(timeout)
            return not self.thread.is_alive()
        return True


class JobManager:
    """Registry of training jobs keyed by run directory, at most ``max_concurrent`` at once.

    ``train_fn`` defaults to :func:`matgen_core.train.train` (tests pass a fake). ``threads`` sets
    ``torch.set_num_threads`` for training (default: all cores but one, at least 1).
    """

    def __init__(self, max_concurrent: int = 1, train_fn: Callable | None = None,
                 threads: int | None = None):
        self.max_concurrent = max(1, int(max_concurrent))
        self._train_fn = train_fn
        self.threads = threads if threads is not None else default_threads()
        self._jobs: dict[str, Job] = {}
        self._lock = threading.RLock()  # start() reads owners while holding it
        # on interpreter exit, let running jobs stop cleanly (checkpoint) instead of dying mid-step
        atexit.register(self.stop_all, wait=10)

    def _train(self):
        if self._train_fn is None:
            from .train import train

            self._train_fn = train
        return self._train_fn

    def start(self, run_dir, steps: int | None = None, max_minutes: float | None = None,
              device: str = "auto", owner: str | None = None, force: bool = False) -> Job:
        """Start (or resume) training the run in ``run_dir`` in a background thread.

        ``owner``: the app session starting it (recorded with the job and in the run folder).
        A run last started by another session is refused unless ``force`` (the page asks first);
        a run another process is training (it holds the run lock) is always refused.
        """
        run_dir = Path(run_dir)
        if not (run_dir / "config.json").exists():
            raise MatgenInputError(f"{run_dir} is not a MatGen run (no config.json); create the run "
                                   f"before training it.")
        from . import runlock

        train_fn = self._train()
        key = _key(run_dir)
        with self._lock:
            current = self._jobs.get(key)
            if current is not None and current.active:
                raise MatgenInputError(f"Run '{run_dir.name}' is already training; stop it first.")
            if runlock.is_locked(run_dir):  # the CLI, another server or a finishing job writes it
                raise MatgenInputError(f"Run '{run_dir.name}' is being trained by "
                                       f"{runlock.describe(runlock.read_holder(run_dir))}; wait "
                                       f"for it to finish or stop it there.")
            other = self._foreign_owner(run_dir, owner)
            if other and not force:
                raise OwnershipError(f"Run '{run_dir.name}' was started by another session "
                                     f"({other}); confirm to resume it anyway.", other)
            running = [j for j in self._jobs.values() if j.active]
            if len(running) >= self.max_concurrent:
                names = ", ".join(f"'{j.run_dir.name}'" for j in running)
                raise MatgenInputError(
                    f"{len(running)} training job(s) already running ({names}) and this server "
                    f"allows {self.max_concurrent} at a time; stop one or wait for it to finish.")
            job = Job(run_dir, steps=steps, max_minutes=max_minutes, device=device, owner=owner)
            self._jobs[key] = job
        if owner is not None:
            write_owner(run_dir, owner)
        job.thread = threading.Thread(target=self._run, args=(job, train_fn),
                                      name=f"matgen-train-{run_dir.name}", daemon=True)
        job.thread.start()
        return job

    def owner_of(self, run_dir) -> str | None:
        """The session that started the run: its job's owner, else the run folder's record."""
        job = self.get(run_dir)
        if job is not None and job.owner is not None:
            return job.owner
        return (read_owner(run_dir) or {}).get("session")

    def _foreign_owner(self, run_dir, session: str | None) -> str | None:
        owner = self.owner_of(run_dir)
        if owner is None or session is None or owner == session:
            return None
        return describe_owner(run_dir, owner)

    def foreign_owner(self, run_dir, session: str | None) -> str | None:
        """None if ``session`` may stop / resume the run freely; else whose it is, for a prompt."""
        return self._foreign_owner(run_dir, session)

    def _run(self, job: Job, train_fn: Callable) -> None:
        try:
            import torch

            if job.device in ("auto", "cpu") and self.threads:
                torch.set_num_threads(int(self.threads))
        except Exception:  # torch missing in a fake-training test: nothing to tune
            pass
        try:
            result = train_fn(job.run_dir, steps=job.steps, max_minutes=job.max_minutes,
                              device=job.device, callbacks=[job._on_event], stop=job.stop_event)
        except MatgenInputError as err:
            job._finish("error", str(err))
            return
        except Exception as err:  # a bug or resource problem: keep the server alive, show it
            last = traceback.format_exception_only(type(err), err)[-1].strip()
            job._finish("error", f"Training stopped with an error: {last}")
            return
        reason = (result or {}).get("reason") if isinstance(result, dict) else None
        with job._lock:
            if reason:
                job.reason = reason
        # "steps": the run reached its target; "time" / "stopped": it can be resumed
        job._finish("done" if reason in (None, "steps") else "stopped")

    def get(self, run_dir) -> Job | None:
        with self._lock:
            return self._jobs.get(_key(run_dir))

    def stop(self, run_dir, session: str | None = None, force: bool = False) -> Job | None:
        """Ask the run's job to stop after its current step (it writes a checkpoint).

        With ``session`` given, another session's job is refused (OwnershipError) unless ``force``.
        """
        job = self.get(run_dir)
        if job is not None:
            other = self._foreign_owner(run_dir, session)
            if other and not force:
                raise OwnershipError(f"Run '{Path(run_dir).name}' was started by another session "
                                     f"({other}); confirm to stop it anyway.", other)
            job.request_stop()
        return job

    def jobs(self) -> list[Job]:
        with self._lock:
            return list(self._jobs.values())

    def running(self) -> list[Job]:
        return [j for j in self.jobs() if j.active]

    def stop_all(self, wait: float | None = None) -> None:
        for job in self.jobs():
            job.request_stop()
        if wait is not None:
            for job in self.jobs():
                job.wait(wait)


class OwnershipError(MatgenInputError):
    """Stop / resume of a run another app session started; ``owner`` describes that session."""

    def __init__(self, message: str, owner: str):
        super().__init__(message)
        self.owner = owner


def write_owner(run_dir, session: str) -> None:
    """Record the app session that started the run (RUN_DIR/.owner.json)."""
    from .runs import atomic_write_json

    try:
        atomic_write_json(Path(run_dir) / OWNER_FILE, dict(
            session=str(session), started=_dt.datetime.now().isoformat(timespec="seconds")))
    except MatgenInputError:  # a full or read-only disk: training reports it itself
        pass


def read_owner(run_dir) -> dict | None:
    """The run's owner record ({"session", "started"}) or None."""
    try:
        record = json.loads((Path(run_dir) / OWNER_FILE).read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def describe_owner(run_dir, session: str) -> str:
    """'session 3f9a (started 2026-01-01 12:00)' for prompts."""
    record = read_owner(run_dir) or {}
    when = str(record.get("started", "")).replace("T", " ")[:16] if record.get("session") == session else ""
    return f"session {str(session)[:8]}" + (f", started {when}" if when else "")


def loss_history(run_dir, job: Job | None = None) -> list[dict]:
    """Loss rows for plotting: the run's losses.jsonl, topped up by a live job's newer events."""
    try:
        from .runs import read_losses

        rows = read_losses(run_dir)
    except Exception:
        rows = []
    if job is not None:
        last = rows[-1]["step"] if rows else -1
        rows = rows + [r for r in job.history() if r["step"] > last]
    return rows


def format_eta(seconds: float | None) -> str:
    """'1 h 02 min', '3 min 05 s', '12 s', or '' when unknown."""
    if seconds is None or not np.isfinite(seconds):
        return ""
    s = int(round(max(0.0, float(seconds))))
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"
