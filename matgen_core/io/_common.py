"""Helpers shared by the io modules: file checks, the matgen record, pixel values."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import MatgenInputError


def existing_file(path) -> Path:
    """``path`` as a Path, or a MatgenInputError if it is missing, a folder or empty."""
    path = Path(path)
    if not path.exists():
        raise MatgenInputError(f"File not found: {path}; check the path.")
    if path.is_dir():
        raise MatgenInputError(f"{path} is a folder, not a file; give the path of an image file.")
    if path.stat().st_size == 0:
        raise MatgenInputError(f"{path.name} is empty (0 bytes); export or download it again.")
    return path


def parse_record(info: str) -> dict | None:
    """The ``matgen={...}`` record in an ImageJ Info text, or None."""
    for line in str(info).splitlines():
        if line.startswith("matgen="):
            return json.loads(line[len("matgen="):])
    return None


def looks_colour(array: np.ndarray) -> bool:
    """True for a 3D array whose last axis has length 3 (taken as RGB)."""
    return array.ndim == 3 and array.shape[-1] == 3


def unit_float(array: np.ndarray) -> np.ndarray:
    """float32 in [0, 1]: uint8 divided by 255, anything else stretched from its min to its max."""
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255
    lo, hi = float(array.min()), float(array.max())
    scaled = (array.astype(np.float64) - lo) / (hi - lo if hi > lo else 1.0)
    return scaled.astype(np.float32)
