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


BLOCKS_PER_AXIS = 3  # block_percolation: blocks of half the side with corners at 0, 1/4, 1/2 of it


def block_percolation(labels, n_phases: int | None = None, blocks_per_axis: int = BLOCKS_PER_AXIS) -> np.ndarray:
    """Paths through sub-volumes: per phase and axis, in how many blocks the phase connects the
    block's two opposite faces.

    The blocks have half the side of ``labels`` along every axis; along each axis their corners
    lie at ``blocks_per_axis`` evenly spaced positions from 0 to half the side (3: at 0, 1/4 and
    1/2), so there are ``blocks_per_axis ** ndim`` overlapping blocks (27 in 3D), the central one
    among them. Face connectivity, no periodicity, as :func:`percolation`. One path across the
    whole volume can hide a network that is broken almost everywhere else; this count sees where
    the paths are (an isotropic 3-phase cathode's NMC, 40 %: 70-78 of 81 in 128^3 crops).

    Returns:
        int array (n_phases, ndim): entry [p, a] is the number of blocks in which phase p connects
        the two faces perpendicular to axis a (0 .. ``blocks_per_axis ** ndim``).
    """
    a, n = _prepare(labels, n_phases)
    if blocks_per_axis < 1:
        raise ValueError(f"blocks_per_axis must be >= 1, got {blocks_per_axis}")
    sides = [max(1, s // 2) for s in a.shape]
    starts = [np.unique(np.linspace(0, s - b, blocks_per_axis).round().astype(int))
              for s, b in zip(a.shape, sides)]
    starts = [np.resize(st, blocks_per_axis) for st in starts]  # a tiny axis: the same block again
    out = np.zeros((n, a.ndim), int)
    for corner in np.stack(np.meshgrid(*starts, indexing="ij"), -1).reshape(-1, a.ndim):
        block = a[tuple(slice(c, c + b) for c, b in zip(corner, sides))]
        out += _percolation(block, n) > 0
    return out


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
