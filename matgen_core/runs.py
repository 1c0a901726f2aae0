"""Run directories: one folder per trained model, shared by the app and the CLI.

```
RUN_DIR/config.json          model, hyperparameters, data description, training settings
RUN_DIR/data/image_K.npy     the training images as read, so a run is self-contained
RUN_DIR/checkpoints/latest.pt state_dicts only (torch.load(..., weights_only=True))
RUN_DIR/losses.jsonl         one JSON object per logged step
RUN_DIR/progress.json        step, total, status, pid: what a run is doing now
RUN_DIR/previews/latest.png  the latest preview image
RUN_DIR/.matgen.lock         while a process trains it: who (runlock.py)
RUN_DIR/.owner.json          the app session that last started it (jobs.py)
```
A run whose config.json or progress.json cannot be read is listed with status "damaged" and the
reason (:attr:`RunInfo.problem`), so one bad folder never hides the others.
"""
from __future__ import annotations

import datetime as _dt
import errno
import json
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import DiskFullError, MatgenInputError, is_disk_full, os_error_message
from .io import Micrograph
from . import config_check
from .models import MODEL_NAMES, presets
from .models.conditional import NEW_CONDITIONAL_RUN_FRACTION_WEIGHT

CONFIG_VERSION = 1


def matgen_home() -> Path:
    """Where the app keeps runs: ``$MATGEN_HOME`` or ``./runs``."""
    return Path(os.environ.get("MATGEN_HOME", "runs"))


_RUN_NAME_BAD = re.compile(r"[^A-Za-z0-9_.-]+")


def safe_run_dir(home, name: str) -> Path:
    """``home / name`` for a run name typed by a user, kept to one folder inside ``home``.

    Characters other than letters, digits, ``_ . -`` become ``-`` (so ``a/b`` is ``a-b`` and an
    absolute path loses its slashes); names that are empty or only dots (``.``, ``..``) are
    refused with a MatgenInputError.
    """
    home = Path(home)
    clean = _RUN_NAME_BAD.sub("-", str(name).strip()).strip("-")[:120]
    if not clean or set(clean) <= {"."}:
        raise MatgenInputError(f"Run name {str(name)!r} is not usable as a folder name; use letters, "
                               f"digits, '-', '_' or '.', e.g. slicegan-electrode-1.")
    path = home / clean
    if path.resolve().parent != home.resolve():  # e.g. a symlink named like the run
        raise MatgenInputError(f"Run name {str(name)!r} would leave the runs folder {home}; choose "
                               f"another name.")
    return path


def fsync_dir(path: Path) -> None:
    """Flush a folder's entries (a rename in it) to disk; a no-op where folders cannot be opened."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _raise_os_error(err: OSError, path: Path):
    """Re-raise a write error as a user-facing MatgenInputError (DiskFullError for ENOSPC)."""
    if is_disk_full(err):
        raise DiskFullError(os_error_message(OSError(errno.ENOSPC, "disk full"), path)) from err
    if isinstance(err, OSError) and getattr(err, "errno", None) is not None:
        raise MatgenInputError(os_error_message(err, path)) from err
    raise err


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so a reader never sees a half-written file (temp + fsync + rename).

    A full disk raises DiskFullError and a read-only or forbidden folder MatgenInputError; the
    old file is then untouched.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        _raise_os_error(err, path)
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2).encode())


def save_checkpoint(run_dir: Path, payload: dict) -> Path:
    """Save a checkpoint dict (tensors, numbers, strings) atomically as checkpoints/latest.pt.

    Written to a temp file, flushed to disk (file and folder fsync), then renamed over the old
    one: a crash or a full disk leaves the previous checkpoint intact. A full disk raises
    DiskFullError ("Disk full ..."), other write errors MatgenInputError.
    """
    path = Path(run_dir) / "checkpoints" / "latest.pt"
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".latest.", suffix=".tmp")
        import torch  # lazy: reading configs and listing runs needs no torch

        with os.fdopen(fd, "wb") as f:
            torch.save(payload, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as err:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        _raise_os_error(err, path)
    except RuntimeError as err:  # torch reports a failed write as "unexpected pos ..."
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if is_disk_full(err) or ("unexpected pos" in str(err) and _free_bytes(path.parent) < 2**26):
            _raise_os_error(OSError(errno.ENOSPC, "disk full"), path)
        raise
    except BaseException:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        raise
    return path


def _free_bytes(folder: Path) -> int:
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return 0


def remove_temp_files(run_dir) -> list[Path]:
    """Delete ``*.tmp`` files left in the run folder by a killed writer; returns what was removed.

    Call it only while holding the run's lock (runlock.py): a live writer's temp files are then
    impossible.
    """
    run_dir = Path(run_dir)
    removed = []
    for sub in (run_dir, run_dir / "checkpoints", run_dir / "previews", run_dir / "data"):
        if sub.is_dir():
            for tmp in sub.glob("*.tmp"):
                try:
                    tmp.unlink()
                    removed.append(tmp)
                except OSError:
                    pass
    return removed


def latest_checkpoint(run_dir) -> Path | None:
    path = Path(run_dir) / "checkpoints" / "latest.pt"
    return path if path.exists() else None


def load_checkpoint(run_dir, device="cpu") -> dict | None:
    """The latest checkpoint, loaded safely (no unpickling of arbitrary objects), or None.

    It must be a dict with ``state`` (a dict of state_dicts) and an integer ``step``; anything
    else raises MatgenInputError saying how to recover.
    """
    path = latest_checkpoint(run_dir)
    if path is None:
        return None
    import torch

    try:
        checkpoint = torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # corrupt or foreign file
        raise MatgenInputError(f"Cannot read checkpoint {path} ({_short(err)}); delete it to restart "
                               f"training from scratch.") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("state"), dict):
        raise MatgenInputError(f"Checkpoint {path} is not a MatGen checkpoint (no 'state' with the "
                               f"model weights); delete it to restart training from scratch, or put "
                               f"back the run's own checkpoints/latest.pt.")
    step = checkpoint.get("step", 0)
    if isinstance(step, torch.Tensor) and step.numel() == 1:
        step = int(step.item())
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise MatgenInputError(f"Checkpoint {path} has no valid step count ({step!r}); delete it to "
                               f"restart training from scratch.")
    checkpoint["step"] = step
    return checkpoint


# entries of a trainer's state that only training needs (critic/discriminator and optimisers)
TRAINING_ONLY_STATE = ("critics", "discriminator")


def restore_state(trainer, checkpoint: dict, run_dir, weights_only: bool = False) -> None:
    """Load a checkpoint's weights into ``trainer``; MatgenInputError if they do not fit it.

    A checkpoint of another architecture (other layer sizes, another model) fails here with a
    message instead of torch's size-mismatch traceback. ``weights_only`` (generation): leave out
    the critic and optimiser states, which sampling does not use; so a run whose optimiser was
    built for fewer parameters (a conditional SliceGAN from before ``cond_shift``) still generates.
    """
    state = checkpoint["state"]
    if weights_only:
        skip = set(TRAINING_ONLY_STATE) | set(trainer.optimizers())
        state = {k: v for k, v in state.items() if k not in skip}
    try:
        trainer.load_state_dict(state)
    except (RuntimeError, KeyError, ValueError, TypeError, AttributeError, IndexError) as err:
        path = Path(run_dir) / "checkpoints" / "latest.pt"
        raise MatgenInputError(
            f"Checkpoint {path} does not fit this run's model ({_short(err)}): it was saved by "
            f"another architecture or run; put back the run's own checkpoint, or delete it to "
            f"restart training from scratch.") from None


def _short(err: BaseException, limit: int = 160) -> str:
    text = " ".join(str(err).split()) or type(err).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def create_run(run_dir, model: str, micrographs: list[Micrograph], preset: str = "quick",
               overrides: dict | None = None, seed: int = 0) -> Path:
    """Make a new run directory: config.json (preset + overrides) and the training data.

    ``micrographs``: 1 image (isotropic) or, for SliceGAN, 2-3 images (anisotropic), all of the
    same kind and phases. Raises MatgenInputError if ``run_dir`` already holds a run.
    """
    run_dir = Path(run_dir)
    if (run_dir / "config.json").exists():
        raise MatgenInputError(f"{run_dir} already holds a run; continue it with --resume, or choose "
                               f"another --out folder.")
    if model not in MODEL_NAMES:
        raise MatgenInputError(f"Unknown model '{model}'; choose one of {', '.join(MODEL_NAMES)}.")
    all_presets = presets(model)
    if preset not in all_presets:
        raise MatgenInputError(f"Unknown preset '{preset}'; choose one of {', '.join(all_presets)}.")
    _check_images(model, micrographs)
    first = micrographs[0]
    model_config = dict(all_presets[preset])
    unknown = sorted(set(overrides or {}) - set(model_config))
    if unknown:
        raise MatgenInputError(f"Unknown setting(s) {', '.join(unknown)} for {model}; known: "
                               f"{', '.join(sorted(model_config))}.")
    model_config.update(overrides or {})
    if model == "slicegan" and model_config.get("conditional") and "fraction_weight" not in (overrides or {}):
        model_config["fraction_weight"] = NEW_CONDITIONAL_RUN_FRACTION_WEIGHT
    model_config.update(kind=first.kind, n_phases=first.n_phases, num_images=len(micrographs))
    config_check.check_model_config(model, model_config, all_presets[preset], changed=overrides or {})
    config_check.check_images_fit(model, model_config, [m.shape for m in micrographs],
                                  [m.source for m in micrographs])
    data = dict(kind=first.kind, n_phases=first.n_phases, phase_values=jsonable(first.phase_values),
                voxel_size=first.voxel_size, unit=first.unit,
                sources=[m.source for m in micrographs],
                shapes=[list(m.shape) for m in micrographs])
    config = dict(version=CONFIG_VERSION, model=model, preset=preset, seed=int(seed),
                  created=_dt.datetime.now().isoformat(timespec="seconds"),
                  model_config=model_config, data=data,
                  changed_settings=jsonable(dict(overrides or {})))
    existed = run_dir.exists()
    try:
        (run_dir / "data").mkdir(parents=True, exist_ok=True)
        for k, m in enumerate(micrographs):
            array = m.labels if m.kind == "nphase" else m.image
            np.save(run_dir / "data" / f"image_{k}.npy", array)
        atomic_write_json(run_dir / "config.json", config)  # last: a run exists once this is there
    except BaseException as err:  # leave no half-made run behind
        discard_run(run_dir, remove_folder=not existed)
        if isinstance(err, OSError):
            _raise_os_error(err, run_dir)
        raise
    return run_dir


RUN_FILES = ("config.json", "data", "checkpoints", "losses.jsonl", "progress.json", "previews",
             ".owner.json")


def discard_run(run_dir, remove_folder: bool = False) -> None:
    """Delete a run's files (a run that failed to start); the folder too if ``remove_folder``.

    Only MatGen's own files are removed from a folder that held other things before, and the
    folder itself only if it is then empty (apart from the lock file).
    """
    run_dir = Path(run_dir)
    for name in RUN_FILES:
        target = run_dir / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target, ignore_errors=True)
        else:
            try:
                target.unlink(missing_ok=True)
            except OSError:
                pass
    if remove_folder and run_dir.is_dir():
        from .runlock import LOCK_NAME

        if all(p.name == LOCK_NAME for p in run_dir.iterdir()):
            shutil.rmtree(run_dir, ignore_errors=True)


def _check_images(model: str, micrographs: list[Micrograph]) -> None:
    if not micrographs:
        raise MatgenInputError("No training image given; pass the path of a micrograph.")
    limit = 3 if model == "slicegan" else 1
    if len(micrographs) > limit:
        raise MatgenInputError(f"{model} trains on {'1 to 3 images' if limit == 3 else 'one image'}, "
                               f"got {len(micrographs)}.")
    first = micrographs[0]
    for m in micrographs[1:]:
        if m.kind != first.kind:
            raise MatgenInputError(f"{m.source} is {m.kind} but {first.source} is {first.kind}; all "
                                   f"training images must be of the same kind.")
        if m.kind == "nphase" and list(map(jsonable, m.phase_values)) != list(map(jsonable, first.phase_values)):
            raise MatgenInputError(
                f"{m.source} has phases {m.phase_values} but {first.source} has {first.phase_values}; "
                f"anisotropic training needs the same phase values in every image: segment them "
                f"alike.")
    if model != "slicegan" and first.ndim != 2:
        raise MatgenInputError(f"{model} is a 2D model and {first.source} is a 3D volume; train "
                               f"SliceGAN on it, or pass a 2D image.")


def jsonable(value):
    """``value`` with numpy scalars (also inside lists/tuples) as plain Python numbers, for JSON."""
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def load_config(run_dir) -> dict:
    """The run's config.json, checked: MatgenInputError if it is missing, corrupt or incomplete."""
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise MatgenInputError(f"{run_dir} is not a MatGen run (no config.json); train one first with "
                               f"`matgen train`.")
    try:
        config = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise MatgenInputError(f"{path} is corrupt ({_short(err)}); the run cannot be opened: put "
                               f"back a good copy or train a new run.") from None
    except OSError as err:
        raise MatgenInputError(os_error_message(err, path, doing="read")) from None
    problem = config_problem(config)
    if problem:
        raise MatgenInputError(f"{path} is damaged ({problem}); the run cannot be opened: put back a "
                               f"good copy or train a new run.")
    return config


def config_problem(config) -> str:
    """What is wrong with a loaded config.json ('' when it has what a run needs)."""
    if not isinstance(config, dict):
        return f"it holds a JSON {type(config).__name__}, not an object"
    if config.get("model") not in MODEL_NAMES:
        return f"unknown model {config.get('model')!r}"
    if not isinstance(config.get("model_config"), dict):
        return "no model_config section"
    data = config.get("data")
    if not isinstance(data, dict):
        return "no data section"
    if data.get("kind") not in ("nphase", "gray", "color"):
        return f"data.kind is {data.get('kind')!r}"
    return ""


def recipe(config: dict) -> str:
    """How a run was set up, in one line: its preset and the settings the user changed from it,
    e.g. ``quick + gen_upsample="resize", lr_g=0.0005`` (runs made before stop 29 did not
    record their changes: the preset alone)."""
    changed = config.get("changed_settings") or {}
    text = str(config.get("preset", "?"))
    if changed:
        text += " + " + ", ".join(f"{k}={json.dumps(v)}" for k, v in sorted(changed.items()))
    return text


def load_images(run_dir) -> list[np.ndarray]:
    """The run's training images as saved by :func:`create_run`."""
    paths = sorted((Path(run_dir) / "data").glob("image_*.npy"))
    return [np.load(p, allow_pickle=False) for p in paths]


def read_losses(run_dir) -> list[dict]:
    """Rows of losses.jsonl (``step``, ``time_s`` and one key per loss); [] for a new run."""
    path = Path(run_dir) / "losses.jsonl"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line cut by a kill
            continue
    return rows


def read_progress(run_dir) -> dict:
    """progress.json as a dict; {} when missing or unreadable (see :func:`progress_problem`)."""
    path = Path(run_dir) / "progress.json"
    try:
        progress = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return progress if isinstance(progress, dict) else {}


def progress_problem(run_dir) -> str:
    """Why the run's progress.json cannot be used ('' when it is fine or absent)."""
    path = Path(run_dir) / "progress.json"
    try:
        progress = json.loads(path.read_text())
    except FileNotFoundError:
        return ""
    except (OSError, ValueError) as err:
        return f"progress.json is unreadable ({_short(err, 80)})"
    if not isinstance(progress, dict):
        return f"progress.json holds a JSON {type(progress).__name__}, not an object"
    for key in ("step", "total_steps"):
        if key in progress and not _whole(progress[key]):
            return f"progress.json has {key}={progress[key]!r}"
    return ""


def _whole(value) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and math.isfinite(value) and value >= 0)


def _pid_alive(pid) -> bool:
    from .runlock import pid_alive

    return pid_alive(pid)


@dataclass
class RunInfo:
    path: Path
    name: str
    model: str
    step: int
    total_steps: int
    status: str  # "new" | "running" | "stopped" | "done" | "failed" | "damaged"
    created: str
    kind: str
    n_phases: int
    problem: str = ""  # why the run is "damaged" (or the last failure's message), for the user


def run_info(run_dir) -> RunInfo:
    """What a run is and where it stands; MatgenInputError if its config.json is damaged."""
    run_dir = Path(run_dir)
    config = load_config(run_dir)
    problem = progress_problem(run_dir)
    progress = {} if problem else read_progress(run_dir)
    status = str(progress.get("status", "new"))
    if status == "running" and not _pid_alive(progress.get("pid")):
        status = "stopped"  # the process that trained it is gone (killed or crashed)
    if problem:
        status = "damaged"
    default_total = config["model_config"].get("steps", 0)
    return RunInfo(path=run_dir, name=run_dir.name, model=config["model"],
                   step=int(progress.get("step", 0)),
                   total_steps=int(progress.get("total_steps", default_total if _whole(default_total) else 0)),
                   status=status, created=str(config.get("created", "")), kind=config["data"]["kind"],
                   n_phases=int(config["data"].get("n_phases", 0) or 0),
                   problem=problem or str(progress.get("error", "") or ""))


def damaged_info(run_dir, problem: str) -> RunInfo:
    """A RunInfo for a run folder that cannot be opened (status "damaged", ``problem`` says why)."""
    run_dir = Path(run_dir)
    try:
        created = _dt.datetime.fromtimestamp(run_dir.stat().st_mtime).isoformat(timespec="seconds")
    except OSError:
        created = ""
    return RunInfo(path=run_dir, name=run_dir.name, model="?", step=0, total_steps=0,
                   status="damaged", created=created, kind="?", n_phases=0, problem=problem)


def list_runs(home=None, damaged: bool = False) -> list[RunInfo]:
    """Every run under ``home`` (default :func:`matgen_home`), newest first.

    A run whose progress.json cannot be read has status "damaged" and the reason in ``problem``.
    A folder whose config.json cannot be read is left out, or, with ``damaged=True`` (the Train
    page's table), listed as "damaged" with model "?" and the reason. One bad folder never stops
    the others from being listed.
    """
    home = Path(home) if home is not None else matgen_home()
    if not home.is_dir():
        return []
    infos = []
    for cfg in home.glob("*/config.json"):
        try:
            infos.append(run_info(cfg.parent))
        except MatgenInputError as err:
            if damaged:
                infos.append(damaged_info(cfg.parent, str(err)))
        except Exception as err:  # anything else odd in one folder: list it, keep the others
            if damaged:
                infos.append(damaged_info(cfg.parent, f"cannot be read ({_short(err)})"))
    return sorted(infos, key=lambda r: r.created, reverse=True)
