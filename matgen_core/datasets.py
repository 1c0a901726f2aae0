"""Saved datasets: the prepared training image(s) of an app session, kept in the runs folder.

The app's current dataset (uploaded, segmented, cropped...) is saved here so a browser reload,
a restarted server or a link opens it again:

```
HOME/_datasets/NAME/dataset.json   name, sources, kind, phase values, voxel size, unit, saved
HOME/_datasets/NAME/image_K.npy    the prepared arrays (uint8 labels for n-phase data, float
                                   [0, 1] images for gray / colour), as a run's data/ holds them
```

NAME is the user's file name(s) plus a short content hash, so the same data maps to the same
folder. Arrays load with ``allow_pickle=False``. (``runs.list_runs`` looks for
``HOME/*/config.json`` only, so these folders are never taken for runs.)
"""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np

from .errors import MatgenInputError
from .io import Micrograph
from .runs import jsonable

FOLDER = "_datasets"


def datasets_home(home) -> Path:
    return Path(home) / FOLDER


def dataset_key(micrographs: list[Micrograph], label: str) -> str:
    """A folder name for these micrographs: readable label + hash of the pixels and metadata."""
    digest = hashlib.sha1()
    for m in micrographs:
        array = np.ascontiguousarray(m.labels if m.kind == "nphase" else m.image)
        digest.update(f"{m.kind}|{array.dtype}|{array.shape}|{m.phase_values}|{m.voxel_size}|"
                      f"{m.unit}|{m.source}".encode())
        digest.update(array.tobytes())
    slug = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(label or "dataset").stem)[:40].strip("-") or "dataset"
    return f"{slug}-{digest.hexdigest()[:10]}"


def save_dataset(home, micrographs: list[Micrograph], label: str) -> str:
    """Save the prepared micrographs under ``home``/_datasets; returns the folder name (the key
    to :func:`load_dataset`). Saving the same data again writes nothing."""
    if not micrographs:
        raise MatgenInputError("No dataset to save: load a micrograph first.")
    key = dataset_key(micrographs, label)
    folder = datasets_home(home) / key
    if (folder / "dataset.json").exists():
        return key
    folder.mkdir(parents=True, exist_ok=True)
    for k, m in enumerate(micrographs):
        np.save(folder / f"image_{k}.npy", m.labels if m.kind == "nphase" else m.image)
    meta = dict(label=label, images=[dict(kind=m.kind, phase_values=jsonable(m.phase_values),
                                          voxel_size=m.voxel_size, unit=m.unit, source=m.source)
                                     for m in micrographs])
    tmp = folder / "dataset.json.tmp"
    tmp.write_text(json.dumps(meta, indent=2))
    tmp.replace(folder / "dataset.json")  # written last: a folder without it is incomplete
    return key


def load_dataset(home, key: str) -> tuple[list[Micrograph], str]:
    """(micrographs, label) saved by :func:`save_dataset` under ``key``.

    Raises MatgenInputError when there is no such (complete) dataset.
    """
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", key or "") or key.startswith("."):
        raise MatgenInputError(f"'{key}' is not a saved dataset name.")
    folder = datasets_home(home) / key
    try:
        meta = json.loads((folder / "dataset.json").read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise MatgenInputError(f"No saved dataset '{key}' in {datasets_home(home)}; load the image "
                               f"again on the Dataset page.") from err
    out = []
    for k, info in enumerate(meta["images"]):
        array = np.load(folder / f"image_{k}.npy", allow_pickle=False)
        kind = info["kind"]
        phase_values = [tuple(v) if isinstance(v, list) else v for v in info.get("phase_values", [])]
        if kind == "nphase":
            n = max(len(phase_values), 2)
            labels, image = array.astype(np.uint8), array.astype(np.float32) / (n - 1)
        else:
            labels, image = None, array
        out.append(Micrograph(labels=labels, image=image, kind=kind, phase_values=phase_values,
                              voxel_size=info.get("voxel_size"), unit=info.get("unit", "px"),
                              source=info.get("source", "")))
    return out, meta.get("label", key)
