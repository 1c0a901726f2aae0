"""Interfaces: specific surface area per phase, interface area per phase pair (face counting with
a stereological correction) and triple phase boundary density."""
from __future__ import annotations

import math
from typing import Iterable

import numpy as np

from ._common import _check_voxel_size, _pairs, _prepare, _unit_strings


def _phase_bits(a: np.ndarray, n: int) -> np.ndarray:
    """One bit per phase: ``1 << label`` (uint8 for n <= 8, else uint16)."""
    if n <= 8:
        return np.left_shift(np.uint8(1), a)
    return np.left_shift(np.uint16(1), a.astype(np.uint16))


def _shifted_pair(arr: np.ndarray, ax: int):
    lo = [slice(None)] * arr.ndim
    hi = [slice(None)] * arr.ndim
    lo[ax] = slice(0, -1)
    hi[ax] = slice(1, None)
    return arr[tuple(lo)], arr[tuple(hi)]


def _face_counts(a: np.ndarray, n: int, bits: np.ndarray | None = None) -> np.ndarray:
    """counts[axis, i, j] (i < j): number of neighbour pairs along ``axis`` with phases {i, j}."""
    nd = a.ndim
    out = np.zeros((nd, n, n), dtype=np.float64)
    pairs = _pairs(n)
    for ax in range(nd):
        if len(pairs) <= 15:
            # OR of the two one-bit codes identifies the unordered pair: a few fast compares
            if bits is None:
                bits = _phase_bits(a, n)
            A, B = _shifted_pair(bits, ax)
            o = A | B
            for i, j in pairs:
                out[ax, i, j] = np.count_nonzero(o == ((1 << i) | (1 << j)))
        else:
            A, B = _shifted_pair(a, ax)
            diff = A != B
            codes = A[diff].astype(np.uint16) * n + B[diff]
            m = np.bincount(codes, minlength=n * n).reshape(n, n).astype(np.float64)
            out[ax] = np.triu(m + m.T, 1)
    return out


_STEREO_3D = 2.0 / 3.0
_STEREO_2D = math.pi / 4.0


def _area_from_counts(counts: np.ndarray, axes: Iterable[int], total: float, factor: float):
    """(per-phase specific area, per-pair specific area) from face counts along ``axes``."""
    c = counts[list(axes)].sum(axis=0)
    c = c + c.T                                   # symmetric, zero diagonal
    per_phase = c.sum(axis=1) * factor / total
    n = c.shape[0]
    per_pair = np.array([c[i, j] for i, j in _pairs(n)]) * factor / total
    return per_phase, per_pair


def surface_area(labels, n_phases: int | None = None, voxel_size: float | None = None,
                 unit: str = "px") -> dict:
    """Specific surface area per phase and interfacial area per phase pair.

    3D: interface area per unit total volume by face counting with the 2/3 stereological
    correction (a convex body's projected-face count times 2/3 equals its true area on average).
    2D: perimeter per unit total area by edge counting times pi/4.
    Faces against the image border are not counted.

    Returns:
        dict with
        ``per_phase``: (n_phases,) array [1/px], area of the boundary of each phase per volume;
        ``pairs``: list of (i, j) phase pairs, i < j;
        ``interface``: (n_pairs,) array [1/px], area of the i|j interface per volume;
        ``unit``: "1/px"; ``method``: description;
        and when ``voxel_size`` is given ``per_phase_phys``, ``interface_phys`` [1/unit] and
        ``unit_phys``.
    """
    a, n = _prepare(labels, n_phases)
    vs = _check_voxel_size(voxel_size)
    counts = _face_counts(a, n)
    return _surface_result(counts, a.ndim, float(a.size), n, vs, unit)


def boundary_density(labels, n_phases: int | None = None) -> np.ndarray:
    """Share of neighbouring voxel (pixel) pairs along each axis that cross the boundary of each
    phase (one of the two in the phase), shape (ndim, n_phases), dimensionless.

    The face-counted specific surface area of :func:`surface_area` adds these up over the axes
    (times the pairs per voxel and the stereological factor). Under isotropy each axis of a 3D
    material has the boundary density of a 2D section along its rows and columns.
    """
    a, n = _prepare(labels, n_phases)
    counts = _face_counts(a, n)
    per_phase = (counts + counts.transpose(0, 2, 1)).sum(axis=2)
    pairs = np.array([a.size * (side - 1) / side for side in a.shape])
    return per_phase / pairs[:, None]


def _surface_result(counts, nd, total, n, vs, unit, axes=None):
    factor = _STEREO_3D if nd == 3 else _STEREO_2D
    axes = range(counts.shape[0]) if axes is None else axes
    per_phase, per_pair = _area_from_counts(counts, axes, total, factor)
    res = {
        "per_phase": per_phase,
        "pairs": _pairs(n),
        "interface": per_pair,
        "unit": "1/px",
        "method": ("face counting x 2/3 (stereological correction), per total volume" if nd == 3
                   else "edge counting x pi/4 (perimeter per total area)"),
    }
    if vs is not None:
        res["per_phase_phys"] = per_phase / vs
        res["interface_phys"] = per_pair / vs
        res["unit_phys"] = f"1/{_unit_strings(unit)}"
    return res


_POPCOUNT = np.array([bin(i).count("1") for i in range(1 << 16)], dtype=np.uint8)


def _tpb_counts(a: np.ndarray, n: int, bits: np.ndarray | None = None) -> np.ndarray:
    """3D: number of TPB edges parallel to each axis; 2D: array with the triple point count."""
    if n < 3:
        return np.zeros(a.ndim if a.ndim == 3 else 1)
    if bits is None:
        bits = _phase_bits(a, n)

    def n_triple(o):
        if n == 3:
            return np.count_nonzero(o == 7)
        return np.count_nonzero(_POPCOUNT[o] >= 3)

    if a.ndim == 2:
        o = bits[:-1, :-1] | bits[1:, :-1]
        o |= bits[:-1, 1:]
        o |= bits[1:, 1:]
        return np.array([n_triple(o)], dtype=np.float64)
    out = np.zeros(3)
    for ax in range(3):
        b, c = [x for x in range(3) if x != ax]

        def sl(db, dc):
            s = [slice(None)] * 3
            s[b] = slice(db, a.shape[b] - 1 + db)
            s[c] = slice(dc, a.shape[c] - 1 + dc)
            return bits[tuple(s)]

        o = sl(0, 0) | sl(1, 0)
        o |= sl(0, 1)
        o |= sl(1, 1)
        out[ax] = n_triple(o)
    return out


def triple_phase_boundary_density(labels, voxel_size: float | None = None, unit: str = "px",
                                  n_phases: int | None = None) -> dict:
    """Triple phase boundary density (needs >= 3 phases; 0 for 2 phases).

    3D: voxel edges whose 4 surrounding voxels hold >= 3 distinct phases, as edge length per
    total volume (raw lattice length, no staircase correction). 2D: pixel corners whose 4 pixels
    hold >= 3 distinct phases, per total area.

    Returns:
        dict with ``value`` [1/px^2], ``unit``, ``per_axis`` (3D: density of TPB edges parallel
        to each axis, which is also the triple-point density of the slices perpendicular to that
        axis), ``n_phases``, and with ``voxel_size`` also ``value_phys`` [1/unit^2], ``unit_phys``.
    """
    a, n = _prepare(labels, n_phases)
    vs = _check_voxel_size(voxel_size)
    return _tpb_result(_tpb_counts(a, n), float(a.size), n, vs, unit)


def _tpb_result(counts, total, n, vs, unit):
    per_axis = counts / total
    res = {"value": float(per_axis.sum()), "unit": "1/px^2", "per_axis": per_axis, "n_phases": n}
    if vs is not None:
        res["value_phys"] = res["value"] / vs ** 2
        res["unit_phys"] = f"1/{_unit_strings(unit)}^2"
    return res
