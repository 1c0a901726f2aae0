"""Percolation: the fraction of each phase in face-connected clusters that touch both opposite
faces, in 2D/3D and over the 2D slices of a volume."""
from __future__ import annotations

from typing import Iterable

import numpy as np
from scipy import ndimage

from ._common import _prepare


_SLICES_FOR_PERCOLATION = 32   # 2D-vs-3D mode: slices per direction used for slice percolation


def _percolating_fraction(mask: np.ndarray, axes: Iterable[int], structure=None) -> list[float]:
    total = np.count_nonzero(mask)
    axes = list(axes)
    if total == 0:
        return [0.0] * len(axes)
    lab, nlab = ndimage.label(mask, structure=structure)
    sizes = np.bincount(lab.ravel(), minlength=nlab + 1)
    out = []
    for ax in axes:
        first = np.unique(np.take(lab, 0, axis=ax))
        last = np.unique(np.take(lab, -1, axis=ax))
        both = np.intersect1d(first, last)
        both = both[both > 0]
        out.append(float(sizes[both].sum()) / total)
    return out


def _percolation(a: np.ndarray, n: int) -> np.ndarray:
    return np.array([_percolating_fraction(a == k, range(a.ndim)) for k in range(n)])


def percolation(labels, n_phases: int | None = None) -> np.ndarray:
    """Fraction of each phase connected to both opposite faces, per axis.

    Face connectivity (4-neighbours in 2D, 6 in 3D), no periodicity.

    Returns:
        float array (n_phases, ndim): entry [p, a] is the fraction of phase p's voxels that lie in
        clusters touching both faces perpendicular to axis a (0 for an absent phase).
    """
    a, n = _prepare(labels, n_phases)
    return _percolation(a, n)


def _slice_percolation(a: np.ndarray, n: int, max_slices: int = _SLICES_FOR_PERCOLATION) -> np.ndarray:
    """2D percolation of the slices of a volume: (n_phases, 3 orientations, 2 in-plane axes),
    from up to ``max_slices`` evenly spaced slices per orientation, pooled by voxel count."""
    out = np.zeros((n, 3, 2))
    structure = np.zeros((3, 3, 3), bool)
    structure[1] = ndimage.generate_binary_structure(2, 1)
    for ax in range(3):
        k = min(max_slices, a.shape[ax])
        idx = np.unique(np.linspace(0, a.shape[ax] - 1, k).round().astype(int))
        stack = np.moveaxis(np.take(a, idx, axis=ax), ax, 0)
        for p in range(n):
            out[p, ax] = _percolating_fraction(stack == p, (1, 2), structure)
    return out
