"""Phase fractions of an image or volume, and their profiles slice by slice along each axis."""
from __future__ import annotations

import numpy as np

from ._common import _prepare


def _fractions(a: np.ndarray, n: int) -> np.ndarray:
    counts = np.array([np.count_nonzero(a == k) for k in range(n)], dtype=np.float64)
    return counts / a.size


def phase_fractions(labels, n_phases: int | None = None) -> np.ndarray:
    """Volume (area) fraction of each phase.

    Args:
        labels: label array (H, W) or (Z, Y, X), phases 0..n-1.
        n_phases: number of phases (default: inferred from the labels).

    Returns:
        float64 array of shape (n_phases,), summing to 1 (dimensionless).
    """
    a, n = _prepare(labels, n_phases)
    return _fractions(a, n)


def _profiles(a: np.ndarray, n: int) -> list[np.ndarray]:
    nd = a.ndim
    out = [np.zeros((a.shape[ax], n)) for ax in range(nd)]
    for k in range(n):
        m = a == k
        if nd == 3:
            zy = np.count_nonzero(m, axis=2)                   # (Z, Y)
            out[0][:, k] = zy.sum(axis=1) / (a.shape[1] * a.shape[2])
            out[1][:, k] = zy.sum(axis=0) / (a.shape[0] * a.shape[2])
            out[2][:, k] = np.count_nonzero(m, axis=(0, 1)) / (a.shape[0] * a.shape[1])
        else:
            out[0][:, k] = np.count_nonzero(m, axis=1) / a.shape[1]
            out[1][:, k] = np.count_nonzero(m, axis=0) / a.shape[0]
    return out


def fraction_profiles(labels, n_phases: int | None = None) -> list[np.ndarray]:
    """Per-slice phase fractions along each axis.

    Returns:
        list with one array per axis ``a``; array ``a`` has shape (labels.shape[a], n_phases):
        row ``i`` holds the phase fractions of slice ``i`` perpendicular to axis ``a``.
    """
    a, n = _prepare(labels, n_phases)
    return _profiles(a, n)
