"""Shared by every metrics module: label validation (``_prepare``), gray-code relabelling,
argument checks, the phase-pair list and JSON cleaning. Private: use the public functions."""
from __future__ import annotations

import math

import numpy as np

from ..errors import MatgenInputError


MAX_PHASES = 16          # more distinct values than this is an unsegmented image


class MetricCancelled(Exception):
    """Raised by :func:`tortuosity` (and :func:`summarize`) when ``should_stop()`` returned True."""


def _present_values(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint8:
        counts = np.bincount(a.ravel(), minlength=256)
        return np.flatnonzero(counts)
    return np.unique(a)


def _prepare(labels, n_phases: int | None = None, name: str = "image") -> tuple[np.ndarray, int]:
    """Validate ``labels`` and return ``(uint8 C-contiguous labels in 0..n-1, n_phases)``."""
    if isinstance(labels, (list, tuple)):
        labels = np.asarray(labels)
    if not isinstance(labels, np.ndarray):
        raise MatgenInputError(
            f"The {name} must be a numpy array of phase labels, got {type(labels).__name__}; "
            "load it with matgen_core.io first.")
    a = labels
    if a.ndim not in (2, 3):
        raise MatgenInputError(
            f"The {name} has shape {a.shape} ({a.ndim} dimensions) but metrics need a 2D image "
            "(H, W) or a 3D volume (Z, Y, X); squeeze or split extra axes (e.g. colour channels) "
            "first.")
    if min(a.shape) < 2:
        raise MatgenInputError(
            f"The {name} has shape {a.shape}, which has an axis shorter than 2 voxels; remove "
            "singleton axes (a single slice is a 2D image) or use a larger sample.")
    if n_phases is not None:
        n_phases = int(n_phases)
        if n_phases < 2:
            raise MatgenInputError(
                f"n_phases={n_phases} but metrics need at least 2 phases; pass the number of "
                "phases in the segmented image (2 or more).")
        if n_phases > MAX_PHASES:
            raise MatgenInputError(
                f"n_phases={n_phases} is more than the {MAX_PHASES} phases supported; merge "
                "phases when segmenting.")
    if a.dtype == bool:
        a = a.view(np.uint8)
    elif a.dtype.kind == "f":
        if not np.all(np.isfinite(a)):
            raise MatgenInputError(
                f"The {name} contains NaN or infinite values; segment it into integer phase "
                "labels first (e.g. matgen_core.io.segment).")
        if not np.array_equal(a, np.round(a)):
            raise MatgenInputError(
                f"The {name} is a float array with non-integer values (grey levels or float "
                "noise), not phase labels; segment it into phases first (e.g. with "
                "matgen_core.io.segment).")
        a = a.astype(np.int64)
    elif a.dtype.kind not in "iu":
        raise MatgenInputError(
            f"The {name} has dtype {a.dtype}, but phase labels must be integers; segment or "
            "convert it first.")

    amin, amax = int(a.min()), int(a.max())
    if n_phases is None and amin == amax:
        raise MatgenInputError(
            f"The {name} contains a single phase (every voxel is {amin}); metrics need at least "
            "two phases, so check the segmentation.")
    limit = MAX_PHASES if n_phases is None else n_phases
    if amin >= 0 and amax < limit:
        # already labels 0..max (a label missing in between is an empty phase)
        n = n_phases if n_phases is not None else amax + 1
    else:
        # gray-coded labels (e.g. 0/85/170 or 0/255): map the distinct values in sorted order
        a, n_vals = _relabel(a, limit, name, n_phases)
        n = n_phases if n_phases is not None else n_vals
    if a.dtype != np.uint8:
        a = a.astype(np.uint8)
    return np.ascontiguousarray(a), int(n)


def _relabel(a: np.ndarray, limit: int, name: str, n_phases):
    """Map the sorted distinct values of ``a`` to 0..k-1 (k <= limit), else raise."""
    if a.dtype == np.uint8:
        # guess the values from a subsample, map through a lookup table, and check that nothing
        # fell outside it (255 = unknown); fall back to a full count when it did
        flat = a.reshape(-1)
        step = max(1, flat.size // 262144)
        cand = np.flatnonzero(np.bincount(flat[::step], minlength=256))
        if len(cand) <= limit:
            lut = np.full(256, 255, np.uint8)
            lut[cand] = np.arange(len(cand), dtype=np.uint8)
            mapped = lut[a]
            if int(mapped.max()) != 255:
                return mapped, len(cand)
    vals = _present_values(a)
    if len(vals) > limit:
        if n_phases is None:
            raise MatgenInputError(
                f"The {name} has {len(vals)} distinct values, too many for phase labels "
                f"(at most {MAX_PHASES}); segment it into phases first (e.g. matgen_core.io.segment).")
        raise MatgenInputError(
            f"The {name} has {len(vals)} distinct label values but n_phases={n_phases}; "
            "pass the right number of phases or segment the image again.")
    if a.dtype == np.uint8:
        lut = np.zeros(256, np.uint8)
        lut[vals] = np.arange(len(vals), dtype=np.uint8)
        return lut[a], len(vals)
    return np.searchsorted(vals, a).astype(np.uint8), len(vals)


def _check_phase(phase, n: int) -> int:
    p = int(phase)
    if not 0 <= p < n:
        raise MatgenInputError(f"phase={phase} is out of range; choose a phase between 0 and {n - 1}.")
    return p


def _default_r_max(shape, periodic=False) -> int:
    return max(1, min(64, min(shape) // 2))


def _check_r_max(r_max, shape, periodic=False) -> int:
    if r_max is None:
        return _default_r_max(shape, periodic)
    r = int(r_max)
    if r < 1:
        raise MatgenInputError(f"r_max={r_max} must be at least 1 voxel.")
    limit = min(shape) // 2 if periodic else min(shape) - 1
    return max(1, min(r, limit))


def _unit_strings(unit: str | None) -> str:
    return unit if unit else "unit"


def _check_voxel_size(voxel_size):
    if voxel_size is None:
        return None
    try:
        vs = float(voxel_size)
    except (TypeError, ValueError):
        raise MatgenInputError(f"voxel_size={voxel_size!r} is not a number; pass the physical "
                               "length of one voxel edge, e.g. 0.1.") from None
    if not (vs > 0 and math.isfinite(vs)):
        raise MatgenInputError(f"voxel_size={voxel_size} must be a positive number (physical "
                               "length of one voxel edge).")
    return vs


def _pairs(n: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(n) for j in range(i + 1, n)]


def _clean(x):
    """Make ``x`` JSON-serialisable: numpy -> python, non-finite floats -> None."""
    if isinstance(x, dict):
        return {str(k): _clean(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_clean(v) for v in x]
    if isinstance(x, np.ndarray):
        return _clean(x.tolist())
    if isinstance(x, (bool, np.bool_)):
        return bool(x)
    if isinstance(x, (int, np.integer)):
        return int(x)
    if isinstance(x, (float, np.floating)):
        x = float(x)
        return x if math.isfinite(x) else None
    return x
