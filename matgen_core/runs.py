"""Run directories: one folder per trained model, shared by the app and the CLI.

```
RUN_DIR/config.json          model, hyperparameters, data description, training settings
RUN_DIR/data/image_K.npy     the training images as read, so a run is self-contained
RUN_DIR/checkpoints/latest.pt state_dicts only (torch.load(..., weights_only=True))
RUN_DIR/losses.jsonl         one JSON object per logged step
RUN_DIR/progress.json        step, total, status, pid: what a run is doing now
RUN_DIR/previews/latest.png  the latest preview image
```
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .errors import MatgenInputError
from .io import Micrograph
from .models import MODEL_NAMES, presets

CONFIG_VERSION = 1


def matgen_home() -> Path:
    """Where the app keeps runs: ``$MATGEN_HOME`` or ``./runs``."""
    return Path(os.environ.get("MATGEN_HOME", "runs"))


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so a reader never sees a half-written file (temp + rename)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_json(path: Path, obj) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2).encode())


def save_checkpoint(run_dir: Path, payload: dict) -> Path:
    """Save a checkpoint dict (tensors, numbers, strings) atomically as checkpoints/latest.pt."""
    path = Path(run_dir) / "checkpoints" / "latest.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".latest.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def latest_checkpoint(run_dir) -> Path | None:
    path = Path(run_dir) / "checkpoints" / "latest.pt"
    return path if path.exists() else None


def load_checkpoint(run_dir, device="cpu") -> dict | None:
    """The latest checkpoint, loaded safely (no unpickling of arbitrary objects), or None."""
    path = latest_checkpoint(run_dir)
    if path is None:
        return None
    try:
        return torch.load(path, map_location=device, weights_only=True)
    except Exception as err:  # corrupt or foreign file
        raise MatgenInputError(f"Cannot read checkpoint {path} ({err}); delete it to restart "
                               f"training from scratch.") from err


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
    model_config.update(kind=first.kind, n_phases=first.n_phases, num_images=len(micrographs))
    data = dict(kind=first.kind, n_phases=first.n_phases, phase_values=_jsonable(first.phase_values),
                voxel_size=first.voxel_size, unit=first.unit,
                sources=[m.source for m in micrographs],
                shapes=[list(m.shape) for m in micrographs])
    config = dict(version=CONFIG_VERSION, model=model, preset=preset, seed=int(seed),
                  created=_dt.datetime.now().isoformat(timespec="seconds"),
                  model_config=model_config, data=data)
    (run_dir / "data").mkdir(parents=True, exist_ok=True)
    for k, m in enumerate(micrographs):
        array = m.labels if m.kind == "nphase" else m.image
        np.save(run_dir / "data" / f"image_{k}.npy", array)
    atomic_write_json(run_dir / "config.json", config)
    return run_dir


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
        if m.kind == "nphase" and list(map(_jsonable, m.phase_values)) != list(map(_jsonable, first.phase_values)):
            raise MatgenInputError(
                f"{m.source} has phases {m.phase_values} but {first.source} has {first.phase_values}; "
                f"anisotropic training needs the same phase values in every image: segment them "
                f"alike.")
    if model != "slicegan" and first.ndim != 2:
        raise MatgenInputError(f"{model} is a 2D model and {first.source} is a 3D volume; train "
                               f"SliceGAN on it, or pass a 2D image.")


def _jsonable(value):
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def load_config(run_dir) -> dict:
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise MatgenInputError(f"{run_dir} is not a MatGen run (no config.json); train one first with "
                               f"`matgen train`.")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise MatgenInputError(f"{path} is corrupt ({err}); the run cannot be opened.") from err


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
    path = Path(run_dir) / "progress.json"
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        return {}


def _pid_alive(pid) -> bool:
    try:
        os.kill(int(pid), 0)
        return True
    except (OSError, TypeError, ValueError):
        return False


@dataclass
class RunInfo:
    path: Path
    name: str
    model: str
    step: int
    total_steps: int
    status: str  # "new" | "running" | "stopped" | "done"
    created: str
    kind: str
    n_phases: int


def run_info(run_dir) -> RunInfo:
    run_dir = Path(run_dir)
    config = load_config(run_dir)
    progress = read_progress(run_dir)
    status = progress.get("status", "new")
    if status == "running" and not _pid_alive(progress.get("pid")):
        status = "stopped"  # the process that trained it is gone (killed or crashed)
    return RunInfo(path=run_dir, name=run_dir.name, model=config["model"],
                   step=int(progress.get("step", 0)),
                   total_steps=int(progress.get("total_steps", config["model_config"].get("steps", 0))),
                   status=status, created=config.get("created", ""), kind=config["data"]["kind"],
                   n_phases=int(config["data"].get("n_phases", 0)))


def list_runs(home=None) -> list[RunInfo]:
    """Every run under ``home`` (default :func:`matgen_home`), newest first."""
    home = Path(home) if home is not None else matgen_home()
    if not home.is_dir():
        return []
    infos = []
    for cfg in home.glob("*/config.json"):
        try:
            infos.append(run_info(cfg.parent))
        except (MatgenInputError, KeyError):
            continue
    return sorted(infos, key=lambda r: r.created, reverse=True)
