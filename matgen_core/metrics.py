"""Microstructure metrics on segmented label images and volumes.

Inputs are label arrays: integer phases ``0 .. n_phases-1`` (uint8 preferred), either a 2D image
``(H, W)`` or a 3D volume ``(Z, Y, X)``. Gray-coded labels such as ``0/85/170`` or ``0/255`` (a
few distinct values) are mapped to ``0, 1, 2, ...`` in sorted order; float arrays are accepted only
when every value is a whole number (anything else is an unsegmented image and is refused).

Units. Every length is in voxels ("px") unless ``voxel_size`` (physical length of one voxel edge,
with a ``unit`` string such as ``"um"``) is given, in which case physical values are reported as
well. Areas per volume are in ``1/px`` (``1/unit``), TPB lengths per volume and triple points per
area in ``1/px^2`` (``1/unit^2``).

Conventions used throughout:

* Phase fractions are voxel counts over the total voxel count.
* S2 (two-point correlation) of phase ``p`` at displacement ``r`` is the probability that both
  ``x`` and ``x + r`` lie in ``p``. It is computed with FFTs; for non-periodic images the volume is
  zero-padded and every displacement is normalised by its own overlap count
  ``prod_a (n_a - |r_a|)``, so no wrap-around artefacts and no edge bias.
  ``S2(0) = phi`` and ``S2(r) -> phi^2`` for large ``r`` in a random structure.
* Surface area is measured by face counting: every voxel face between two different phases
  counts ``voxel_size^2``; the total is multiplied by 2/3, the mean ratio between the
  projected (staircase) area and the true area of an isotropically oriented surface. In 2D,
  pixel edges between phases are counted and multiplied by pi/4 (same argument in 2D).
  Values are per unit *total* volume (area).
* Triple phase boundary (3D): a voxel edge is a TPB edge when the 4 voxels around it hold at
  least 3 distinct phases; density = (edge count * voxel_size) / total volume, with no staircase
  correction. 2D: a pixel corner is a triple point when its 4 pixels hold >= 3 distinct phases;
  density = count / total area.
* Percolation: fraction of a phase's voxels in face-connected clusters that touch both
  opposite faces along an axis.
* Integral range (for representativeness): ``A = sum_r (S2(r) - phi^2) / (phi - phi^2)`` over the
  lattice of displacements (voxel^d); the phase fraction measured in a window of ``V`` voxels
  then fluctuates with ``var ~= phi (1 - phi) A / V`` (capped at ``phi (1 - phi)``). Two
  safeguards make the sum usable on finite images: the covariance at each displacement uses the
  means of the two overlapping sub-windows instead of the global phi, and the sum stops at the
  first distance where the radially averaged covariance reaches zero (within ``r_max``).
"""
from __future__ import annotations

import math
import os
from typing import Callable, Iterable

import numpy as np
import scipy.fft as sfft
from scipy import ndimage

from .errors import MatgenInputError

__all__ = [
    "MetricCancelled",
    "phase_fractions",
    "fraction_profiles",
    "two_point_correlation",
    "s2_all",
    "surface_area",
    "triple_phase_boundary_density",
    "percolation",
    "tortuosity",
    "isotropy_index",
    "representativeness",
    "fraction_std",
    "summarize",
    "compare",
    "format_table",
]

MAX_PHASES = 16          # more distinct values than this is an unsegmented image
_SLICES_FOR_PERCOLATION = 32   # 2D-vs-3D mode: slices per direction used for slice percolation
_FFT_WORKERS = max(1, min(4, os.cpu_count() or 1))


class MetricCancelled(Exception):
    """Raised by :func:`tortuosity` (and :func:`summarize`) when ``should_stop()`` returned True."""


# ----------------------------------------------------------------------------------------------
# validation
# ----------------------------------------------------------------------------------------------

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


# ----------------------------------------------------------------------------------------------
# phase fractions
# ----------------------------------------------------------------------------------------------

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


# ----------------------------------------------------------------------------------------------
# two-point correlation
# ----------------------------------------------------------------------------------------------

def _fwd_spectrum(x: np.ndarray, L: tuple[int, ...]) -> np.ndarray:
    """rfftn of ``x`` zero-padded to shape ``L`` (float32 in, complex64 out). torch's CPU FFT is
    used when importable (measured ~30% faster than scipy's here), else scipy's."""
    try:
        import torch
    except ImportError:    # pragma: no cover - torch is a core dependency
        return sfft.rfftn(x, s=L, workers=_FFT_WORKERS, overwrite_x=True)
    with torch.no_grad():
        return torch.fft.rfftn(torch.from_numpy(x), s=L).numpy()


def _window_spectrum(shape, L) -> np.ndarray:
    """Spectrum of the all-ones box of ``shape`` zero-padded to ``L`` (separable, cheap)."""
    nd = len(shape)
    spec = None
    for ax in range(nd):
        ones = np.ones(shape[ax], np.float32)
        f = (sfft.rfft(ones, n=L[ax]) if ax == nd - 1 else sfft.fft(ones, n=L[ax])).astype(np.complex64)
        view = [1] * nd
        view[ax] = -1
        f = f.reshape(view)
        spec = f if spec is None else spec * f
    return spec


def _inverse_block(P: np.ndarray, L: tuple[int, ...], r: int) -> np.ndarray:
    """Inverse transform of the real power spectrum ``P`` (rfftn layout), returning only the
    displacements -r..r along every axis, centred (index r is displacement 0).

    P is real, so the first inverse pass is a real FFT (half the work) whose negative
    displacements follow by conjugate symmetry; later passes run on the pruned block only."""
    nd = len(L)
    R = sfft.rfft(P, axis=0, workers=_FFT_WORKERS)[: r + 1] / L[0]
    # inverse DFT of a real line: value at +j is conj(R[j]), at -j it is R[j]
    Y = np.concatenate([R[r:0:-1], np.conj(R)], axis=0)
    for ax in range(1, nd - 1):
        Y = sfft.ifft(Y, axis=ax, workers=_FFT_WORKERS)
        idx = np.arange(-r, r + 1) % L[ax]
        Y = np.take(Y, idx, axis=ax)
    if nd == 1:    # pragma: no cover - images are 2D or 3D
        return Y.real
    y = sfft.irfft(Y, n=L[-1], axis=-1, workers=_FFT_WORKERS)
    idx = np.arange(-r, r + 1) % L[-1]
    return np.take(y, idx, axis=-1)


def _overlap_block(shape, r: int, periodic: bool) -> np.ndarray:
    nd = len(shape)
    if periodic:
        return np.full((2 * r + 1,) * nd, float(np.prod(shape)))
    ov = None
    for ax in range(nd):
        v = (shape[ax] - np.abs(np.arange(-r, r + 1))).astype(np.float64)
        view = [1] * nd
        view[ax] = -1
        v = v.reshape(view)
        ov = v if ov is None else ov * v
    return ov


def _s2_blocks(a: np.ndarray, n: int, r: int, periodic: bool = False,
               phases: Iterable[int] | None = None) -> dict[int, np.ndarray]:
    """Normalised S2 over the displacement block [-r, r]^d for each requested phase."""
    phases = list(range(n)) if phases is None else [int(p) for p in phases]
    shape = a.shape
    if periodic:
        L = tuple(shape)
    else:
        L = tuple(sfft.next_fast_len(s + r, real=(i == a.ndim - 1)) for i, s in enumerate(shape))
    overlap = _overlap_block(shape, r, periodic)
    # With all phases wanted, the last phase's spectrum is the window's minus the others'
    # (indicators sum to 1 inside the box): saves one forward FFT.
    derive_last = (not periodic) and len(phases) == n and n >= 2
    specs: dict[int, np.ndarray] = {}
    out: dict[int, np.ndarray] = {}
    forward = phases[:-1] if derive_last else phases
    for p in forward:
        F = _fwd_spectrum((a == p).astype(np.float32), L)
        if derive_last:
            specs[p] = F
        out[p] = _power_to_s2(F, L, r, overlap)
    if derive_last:
        last = phases[-1]
        F = _window_spectrum(shape, L)
        for p in forward:
            F = F - specs.pop(p)
        out[last] = _power_to_s2(F, L, r, overlap)
    return {p: out[p] for p in phases}


def _power_to_s2(F, L, r, overlap):
    P = F.real * F.real
    P += F.imag * F.imag
    block = _inverse_block(P, L, r).astype(np.float64)
    return block / overlap


_radial_cache: dict = {}


def _radial_bins(nd: int, r: int):
    key = (nd, r)
    if key not in _radial_cache:
        ax = np.arange(-r, r + 1)
        grids = np.meshgrid(*([ax] * nd), indexing="ij")
        dist = np.sqrt(sum(g.astype(np.float64) ** 2 for g in grids))
        b = np.rint(dist).astype(np.int64).ravel()
        keep = b <= r
        counts = np.bincount(b[keep], minlength=r + 1).astype(np.float64)
        _radial_cache[key] = (b, keep, counts)
    return _radial_cache[key]


def _radial(block: np.ndarray, r: int) -> np.ndarray:
    b, keep, counts = _radial_bins(block.ndim, r)
    sums = np.bincount(b[keep], weights=block.ravel()[keep], minlength=r + 1)
    return sums / counts


def _axis_line(block: np.ndarray, r: int, axis: int) -> np.ndarray:
    idx = [r] * block.ndim
    idx[axis] = slice(r, 2 * r + 1)
    return block[tuple(idx)].copy()


def _plane(block: np.ndarray, r: int, axis: int) -> np.ndarray:
    """The 2D block of in-plane displacements (displacement 0 along ``axis``)."""
    return np.take(block, r, axis=axis)


def two_point_correlation(labels, phase: int, axis: int | None = None, r_max: int | None = None,
                          periodic: bool = False, n_phases: int | None = None) -> np.ndarray:
    """Two-point correlation S2(r) of one phase.

    Args:
        labels: (H, W) or (Z, Y, X) labels.
        phase: phase index.
        axis: None for the radial average over all displacement directions (distances rounded to
            the nearest whole voxel); an int for S2 along that axis only.
        r_max: largest distance in voxels (default ``min(64, min(shape)//2)``; clipped to
            ``min(shape)-1``, or ``min(shape)//2`` when periodic).
        periodic: treat the image as periodic (no padding, normalise by the voxel count).

    Returns:
        float64 array of shape (r_max+1,): S2 at distances r = 0, 1, ..., r_max voxels
        (multiply r by voxel_size for physical distances). S2(0) equals the phase fraction.
    """
    a, n = _prepare(labels, n_phases)
    p = _check_phase(phase, n)
    r = _check_r_max(r_max, a.shape, periodic)
    block = _s2_blocks(a, n, r, periodic, phases=[p])[p]
    if axis is None:
        return _radial(block, r)
    ax = int(axis)
    if not -a.ndim <= ax < a.ndim:
        raise MatgenInputError(f"axis={axis} is out of range for a {a.ndim}D image; use 0..{a.ndim - 1}.")
    return _axis_line(block, r, ax % a.ndim)


def _s2_from_blocks(blocks: dict[int, np.ndarray], r: int) -> dict[int, dict[str, np.ndarray]]:
    out = {}
    for p, block in blocks.items():
        out[p] = {
            "axes": np.stack([_axis_line(block, r, ax) for ax in range(block.ndim)]),
            "radial": _radial(block, r),
        }
    return out


def s2_all(labels, n_phases: int | None = None, r_max: int | None = None,
           periodic: bool = False) -> dict[int, dict[str, np.ndarray]]:
    """S2 of every phase, along every axis and radially averaged, one FFT pass per phase.

    Returns:
        ``{phase: {"axes": (ndim, r_max+1) array, "radial": (r_max+1,) array}}``, distances
        r = 0..r_max in voxels (r_max clipped as in :func:`two_point_correlation`).
    """
    a, n = _prepare(labels, n_phases)
    r = _check_r_max(r_max, a.shape, periodic)
    return _s2_from_blocks(_s2_blocks(a, n, r, periodic), r)


# ----------------------------------------------------------------------------------------------
# surface area and TPB
# ----------------------------------------------------------------------------------------------

def _pairs(n: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(n) for j in range(i + 1, n)]


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


# ----------------------------------------------------------------------------------------------
# percolation
# ----------------------------------------------------------------------------------------------

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


# ----------------------------------------------------------------------------------------------
# tortuosity (taufactor)
# ----------------------------------------------------------------------------------------------

def tortuosity(labels, phase: int, axis: int = 0, progress: Callable | None = None,
               should_stop: Callable[[], bool] | None = None, device="cpu",
               max_iter: int = 10000, conv_crit: float = 1e-2, chunk: int = 100,
               n_phases: int | None = None) -> dict:
    """Tortuosity factor of one phase for flux along ``axis``, via taufactor's SOR solver.

    The phase is the conducting phase (all others insulating); Dirichlet boundaries on the two
    faces perpendicular to ``axis``, no-flux on the others.

    Args:
        phase, axis: conducting phase and flux direction.
        progress: optional ``progress(fraction, iteration)`` callback, called after every chunk of
            iterations with ``fraction`` in 0..1 (an estimate from the convergence error, never
            decreasing, 1.0 at the end) and the iteration count.
        should_stop: optional ``should_stop() -> bool``; checked before every chunk. When it
            returns True, :class:`MetricCancelled` is raised (nothing is returned).
        device: torch device for the solver ("cpu", "cuda", ...).
        max_iter: iteration budget; when reached, the result has ``converged=False``.
        conv_crit: taufactor's convergence criterion (relative spread of the layer fluxes).
        chunk: iterations between progress/cancel checks (a multiple of 100, taufactor's
            convergence-check cadence).

    Returns:
        dict ``{"tau": float, "D_eff": float, "converged": bool, "iterations": int,
        "phase_fraction": float, "percolating_fraction": float, "axis": int}``.
        ``D_eff`` is the relative effective diffusivity ``phase_fraction / tau`` (D_eff/D_0).
        A phase that does not connect the two faces gets ``tau = inf``, ``D_eff = 0`` without
        running the solver.
    """
    a, n = _prepare(labels, n_phases)
    p = _check_phase(phase, n)
    ax = int(axis)
    if not -a.ndim <= ax < a.ndim:
        raise MatgenInputError(f"axis={axis} is out of range for a {a.ndim}D image; use 0..{a.ndim - 1}.")
    ax %= a.ndim
    chunk = max(100, int(chunk) // 100 * 100)
    mask = np.ascontiguousarray(np.moveaxis(a == p, ax, 0)).astype(np.uint8)
    vf = float(mask.mean())
    perc = float(_percolating_fraction(mask.astype(bool), [0])[0])
    result = {"tau": math.inf, "D_eff": 0.0, "converged": True, "iterations": 0,
              "phase_fraction": vf, "percolating_fraction": perc, "axis": ax}
    if should_stop is not None and should_stop():
        raise MetricCancelled("tortuosity cancelled")
    if perc == 0.0:
        if progress is not None:
            progress(1.0, 0)
        return result
    if vf == 1.0:
        result.update(tau=1.0, D_eff=1.0)
        if progress is not None:
            progress(1.0, 0)
        return result

    import taufactor

    class _QuietSolver(taufactor.Solver):
        def _end_simulation(self, iterations, verbose, start):   # no prints between chunks
            pass

    solver = _QuietSolver(mask, device=device)
    err0 = None
    shown = 0.0
    while not solver.converged and solver.iter < max_iter:
        if should_stop is not None and should_stop():
            raise MetricCancelled("tortuosity cancelled")
        solver.solve(iter_limit=min(solver.iter + chunk, max_iter), verbose=False, conv_crit=conv_crit)
        if progress is not None and not solver.converged:
            frac = solver.iter / max_iter
            try:
                err = float(np.max(np.abs(solver.compute_metrics()[1])))
                if err0 is None:
                    err0 = max(err, conv_crit * 1.0001)
                if err > 0 and err0 > conv_crit:
                    frac = max(frac, math.log(err0 / max(err, conv_crit)) / math.log(err0 / conv_crit))
            except Exception:   # progress estimate only
                pass
            shown = max(shown, min(0.99, frac))
            progress(shown, int(solver.iter))
    tau_v = float(np.asarray(solver.tau).ravel()[0]) if solver.tau is not None else math.nan
    d_eff = float(np.asarray(solver.D_eff).ravel()[0]) if solver.D_eff is not None else math.nan
    if not math.isfinite(tau_v) or tau_v <= 0:
        tau_v, d_eff = math.inf, 0.0
    result.update(tau=tau_v, D_eff=d_eff, converged=bool(solver.converged), iterations=int(solver.iter))
    if progress is not None:
        progress(1.0, int(solver.iter))
    return result


_tortuosity = tortuosity     # summarize() has a parameter with the same name


# ----------------------------------------------------------------------------------------------
# isotropy, representativeness
# ----------------------------------------------------------------------------------------------

def _isotropy_from_s2(s2: dict, nd: int) -> float | None:
    if nd != 3:
        return None
    worst = 0.0
    for d in s2.values():
        axes = d["axes"][:, 1:]
        if axes.shape[1] == 0:
            continue
        dev = np.abs(axes - axes.mean(axis=0, keepdims=True)).mean()
        worst = max(worst, float(dev))
    return worst


def isotropy_index(labels, n_phases: int | None = None, r_max: int | None = 32) -> float | None:
    """Anisotropy of S2: mean absolute deviation of the per-axis S2 curves (r = 1..r_max) from
    their mean over axes, in S2 units (probability), for the worst phase. 0 means the three axes
    look alike; compare with the S2 range ``phi - phi^2``. 3D only: returns None for 2D."""
    a, n = _prepare(labels, n_phases)
    if a.ndim != 3:
        return None
    r = _check_r_max(r_max, a.shape)
    return _isotropy_from_s2(_s2_from_blocks(_s2_blocks(a, n, r), r), 3)


def _prefix_selected(arr: np.ndarray, axis: int, r: int) -> np.ndarray:
    """Prefix sums ``arr[:i].sum(axis)`` at the positions i = 0..r and n-r..n (all of 0..n when
    n <= 2r + 1), with one pass over ``arr``: the first and last r slices are kept, the middle
    is summed."""
    n = arr.shape[axis]

    def part(start, stop):
        idx = [slice(None)] * arr.ndim
        idx[axis] = slice(start, stop)
        return arr[tuple(idx)]

    if n <= 2 * r + 1:
        seg = arr.astype(np.int64)
    else:
        seg = np.concatenate([part(0, r).astype(np.int64),
                              part(r, n - r).sum(axis=axis, keepdims=True, dtype=np.int64),
                              part(n - r, n).astype(np.int64)], axis=axis)
    pre = np.cumsum(seg, axis=axis)
    zero_shape = list(pre.shape)
    zero_shape[axis] = 1
    return np.concatenate([np.zeros(zero_shape, pre.dtype), pre], axis=axis)


def _overlap_sums(mask: np.ndarray, r: int) -> np.ndarray:
    """Block over displacements [-r, r]^d of ``sum f(x)`` over the x with x and x + r both inside
    the image (the first factor's share of the overlap), from prefix sums at the few positions
    needed."""
    nd = mask.ndim
    lo_pos, hi_pos = [], []
    for ax in range(nd):
        n_ax = mask.shape[ax]
        pos = np.arange(n_ax + 1) if n_ax <= 2 * r + 1 else np.concatenate(
            [np.arange(0, r + 1), np.arange(n_ax - r, n_ax + 1)])
        lags = np.arange(-r, r + 1)
        lo_pos.append(np.searchsorted(pos, np.maximum(0, -lags)))
        hi_pos.append(np.searchsorted(pos, n_ax - np.maximum(0, lags)))
    # contiguous last axis first: it shrinks the array the most cheaply
    table = mask.view(np.uint8) if mask.dtype == bool else mask
    for ax in range(nd - 1, -1, -1):
        table = _prefix_selected(table, ax, r)
    out = np.zeros((2 * r + 1,) * nd)
    for corner in range(1 << nd):
        sel, sign = [], 1
        for ax in range(nd):
            if corner >> ax & 1:
                sel.append(hi_pos[ax])
            else:
                sel.append(lo_pos[ax])
                sign = -sign
        out += sign * table[np.ix_(*sel)]
    return out


def _covariance_blocks(a: np.ndarray, n: int, r: int, s2_blocks: dict) -> dict:
    """Normalised covariance c(r) = (S2(r) - m1(r) m2(r)) / (phi - phi^2) per phase, where m1, m2
    are the phase fractions of the two overlapping sub-windows for displacement r (local means:
    without them, fluctuations of the sub-window means add a smooth error at every lag that
    dominates an integral over many lags). c(0) = 1."""
    overlap = _overlap_block(a.shape, r, False)
    phi = _fractions(a, n)
    phases = sorted(s2_blocks)
    sums = {}
    if len(phases) == n:      # the last phase's share is the overlap minus the others'
        rest = overlap.copy()
        for p in phases[:-1]:
            sums[p] = _overlap_sums(a == p, r)
            rest -= sums[p]
        sums[phases[-1]] = rest
    else:
        for p in phases:
            sums[p] = _overlap_sums(a == p, r)
    out = {}
    for p in phases:
        var = phi[p] - phi[p] ** 2
        if var <= 0:
            out[p] = np.zeros_like(s2_blocks[p])
            continue
        m1 = sums[p] / overlap
        m2 = m1[(slice(None, None, -1),) * a.ndim]
        out[p] = (s2_blocks[p] - m1 * m2) / var
    return out


def _cutoff(radial_cov: np.ndarray) -> int:
    """Integration radius: the first distance r >= 1 at which the radially averaged covariance
    drops to <= 0 (lags at that distance and beyond are left out), else r_max + 1. Summing the
    noisy covariance tail over a large ball would swamp the estimate."""
    below = np.flatnonzero(radial_cov[1:] <= 0)
    return int(below[0]) + 1 if len(below) else len(radial_cov)


def _integral_range_block(cov: np.ndarray) -> float:
    """Integral range in voxel^d: lattice sum of the normalised covariance block up to the first
    zero of its radial average."""
    r = (cov.shape[0] - 1) // 2
    b, keep, _ = _radial_bins(cov.ndim, r)
    cut = _cutoff(_radial(cov, r))
    return max(0.0, float(cov.ravel()[keep & (b < cut)].sum()))


def _integral_range_radial(radial_cov: np.ndarray, nd: int) -> float:
    """Integral range in ``nd`` dims from a radial normalised covariance, assuming isotropy
    (lattice sum of the interpolated curve up to its first zero)."""
    cut = _cutoff(radial_cov)
    r = cut - 1
    ax = np.arange(-r, r + 1, dtype=np.float64)
    grids = np.meshgrid(*([ax] * nd), indexing="ij")
    dist = np.sqrt(sum(g ** 2 for g in grids)).ravel()
    dist = dist[np.rint(dist) < cut]
    cov = np.interp(dist, np.arange(len(radial_cov)), radial_cov)
    return max(0.0, float(cov.sum()))


def _std_from_range(phi: float, A: float, volume: float) -> float:
    var = phi * (1 - phi)
    if var <= 0 or volume <= 0:
        return 0.0
    return math.sqrt(var * min(1.0, A / volume))


def representativeness(labels, phase: int, size, r_max: int | None = None,
                       n_phases: int | None = None) -> float:
    """Expected standard deviation of the phase fraction measured in a cube (3D) or square (2D)
    of side ``size`` voxels (or a window of shape ``size`` given as a tuple), from the integral
    range: ``std = sqrt(phi (1 - phi) * min(1, A / V))``, V the window's voxel count.

    Returns:
        std in fraction units (e.g. 0.01 = one percentage point).
    """
    a, n = _prepare(labels, n_phases)
    p = _check_phase(phase, n)
    return float(_fraction_std(a, n, _window_shape(size, a.ndim), r_max, phases=[p])[0])


def _window_shape(size, nd):
    if np.isscalar(size):
        shape = (int(size),) * nd
    else:
        shape = tuple(int(s) for s in size)
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise MatgenInputError(f"Window size {size} is not valid; give a positive side length or "
                               "a 2D/3D shape such as (64, 64, 64).")
    return shape


def _fraction_std(a, n, shape, r_max, phases=None, blocks=None):
    phases = list(range(n)) if phases is None else phases
    r = _check_r_max(32 if r_max is None else r_max, a.shape)
    r = min(r, max(1, min(a.shape) // 2))
    if blocks is None:
        blocks = _s2_blocks(a, n, r, phases=phases)
    phi = _fractions(a, n)
    cov = _covariance_blocks(a, n, r, {p: blocks[p] for p in phases})
    vol = float(np.prod(shape))
    out = []
    for p in phases:
        if len(shape) == a.ndim:
            A = _integral_range_block(cov[p])
        else:
            A = _integral_range_radial(_radial(cov[p], r), len(shape))
        out.append(_std_from_range(phi[p], A, vol))
    return np.array(out)


def fraction_std(labels, n_phases: int | None = None, shape=(64, 64, 64),
                 r_max: int | None = None) -> np.ndarray:
    """Expected std of each phase fraction in a sample of ``shape`` (2D or 3D, voxels).

    When ``shape`` has a different dimensionality from ``labels`` (e.g. a 2D training image and a
    3D generated volume), the integral range is computed in ``len(shape)`` dimensions from the
    radially averaged S2, assuming an isotropic structure.

    Returns:
        (n_phases,) array of std in fraction units.
    """
    a, n = _prepare(labels, n_phases)
    return _fraction_std(a, n, _window_shape(shape, a.ndim), r_max)


# ----------------------------------------------------------------------------------------------
# summarize / compare / format_table
# ----------------------------------------------------------------------------------------------

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


def _integral_ranges(a, n, r, blocks):
    cov = _covariance_blocks(a, n, r, blocks)
    return [_integral_range_block(cov[p]) for p in sorted(cov)]


def summarize(labels, n_phases: int | None = None, voxel_size: float | None = None,
              unit: str = "px", r_max: int = 32, tortuosity: bool | Iterable[int] = False,
              progress: Callable | None = None, should_stop: Callable[[], bool] | None = None,
              device="cpu") -> dict:
    """All metrics of one image or volume, as a JSON-serialisable dict.

    Keys: ``shape``, ``ndim``, ``n_phases``, ``voxel_size``, ``unit``, ``phase_fractions``
    (n,), ``fraction_profiles`` (per axis: n_slices x n), ``s2`` ({"r": [..], "phases": [{"axes":
    ndim x (r_max+1), "radial": r_max+1}]}), ``surface_area`` and ``interface_area``
    ({"value", "unit", "physical", "physical_unit", ...}), ``tpb`` (same; None for 2 phases),
    ``percolation`` ({"fraction": n x ndim}), ``tortuosity`` (None unless asked: ``True`` means
    flux along axis 0, or give the axes; {"axes": [...], "phases": [[result per axis] per phase]}),
    ``isotropy`` (float, None in 2D), ``representativeness`` ({"integral_range", "std_image",
    "rve_side_1pct", ...}). Non-finite numbers (tau of a non-percolating phase) become None.

    ``progress(fraction, message)`` (optional) is called as the metrics proceed; ``should_stop()``
    is checked between metrics and during tortuosity, and raises :class:`MetricCancelled` when it
    returns True.
    """
    a, n = _prepare(labels, n_phases)
    vs = _check_voxel_size(voxel_size)
    nd = a.ndim
    r = _check_r_max(r_max, a.shape)
    r = min(r, max(1, min(a.shape) // 2))

    def report(f, msg):
        if should_stop is not None and should_stop():
            raise MetricCancelled("metrics cancelled")
        if progress is not None:
            progress(float(f), msg)

    report(0.0, "phase fractions")
    phi = _fractions(a, n)
    prof = _profiles(a, n)
    report(0.05, "two-point correlation")
    blocks = _s2_blocks(a, n, r)
    s2 = _s2_from_blocks(blocks, r)
    report(0.4, "surface area")
    bits = _phase_bits(a, n)
    surf = _surface_result(_face_counts(a, n, bits), nd, float(a.size), n, vs, unit)
    report(0.55, "triple phase boundary")
    tpb = _tpb_result(_tpb_counts(a, n, bits), float(a.size), n, vs, unit) if n >= 3 else None
    del bits
    report(0.65, "percolation")
    perc = _percolation(a, n)
    ranges = _integral_ranges(a, n, r, blocks)
    stds = [_std_from_range(phi[p], ranges[p], float(a.size)) for p in range(n)]
    rve = []
    for p in range(n):
        v = phi[p] * (1 - phi[p]) * ranges[p] / 1e-4     # voxels for std = 0.01
        rve.append(v ** (1.0 / nd) if v > 0 else 0.0)

    tort = None
    axes = [] if tortuosity is False or tortuosity is None else (
        [0] if tortuosity is True else [int(x) % nd for x in tortuosity])
    if axes:
        tort = {"axes": axes, "phases": []}
        jobs = [(p, ax) for p in range(n) for ax in axes]
        done = 0
        res_by_phase = {p: [] for p in range(n)}
        for p, ax in jobs:
            def sub(f, it, _done=done):
                report(0.75 + 0.25 * (_done + f) / len(jobs), f"tortuosity phase {p} axis {ax}")
            res_by_phase[p].append(_tortuosity(a, p, ax, progress=sub, should_stop=should_stop,
                                               device=device, n_phases=n))
            done += 1
        tort["phases"] = [res_by_phase[p] for p in range(n)]

    unit_s = _unit_strings(unit)
    out = {
        "shape": list(a.shape),
        "ndim": nd,
        "n_phases": n,
        "voxel_size": vs,
        "unit": unit,
        "phase_fractions": phi,
        "fraction_profiles": prof,
        "s2": {"r": np.arange(r + 1), "r_phys": (np.arange(r + 1) * vs) if vs else None,
               "phases": [{"axes": s2[p]["axes"], "radial": s2[p]["radial"]} for p in range(n)]},
        "surface_area": {"value": surf["per_phase"], "unit": surf["unit"], "method": surf["method"],
                         "physical": surf.get("per_phase_phys"), "physical_unit": surf.get("unit_phys")},
        "interface_area": {"pairs": [f"{i}-{j}" for i, j in surf["pairs"]], "value": surf["interface"],
                           "unit": surf["unit"], "physical": surf.get("interface_phys"),
                           "physical_unit": surf.get("unit_phys")},
        "tpb": None if tpb is None else {
            "value": tpb["value"], "unit": tpb["unit"], "per_axis": tpb["per_axis"],
            "physical": tpb.get("value_phys"), "physical_unit": tpb.get("unit_phys"),
            "kind": "TPB length per volume" if nd == 3 else "triple points per area"},
        "percolation": {"fraction": perc, "axes": list(range(nd))},
        "tortuosity": tort,
        "isotropy": _isotropy_from_s2(s2, nd),
        "representativeness": {
            "integral_range": ranges, "integral_range_unit": f"px^{nd}",
            "std_image": stds,
            "rve_side_1pct": rve, "rve_side_1pct_phys": [x * vs for x in rve] if vs else None,
            "unit": "px", "physical_unit": unit_s if vs else None},
    }
    report(1.0, "done")
    return _clean(out)


def _native_stats(a, n, r):
    """Comparable statistics in the image's own dimensionality."""
    nd = a.ndim
    phi = _fractions(a, n)
    blocks = _s2_blocks(a, n, r)
    s2 = _s2_from_blocks(blocks, r)
    bits = _phase_bits(a, n)
    counts = _face_counts(a, n, bits)
    surf = _surface_result(counts, nd, float(a.size), n, None, "px")
    tpb = float(_tpb_counts(a, n, bits).sum() / a.size) if n >= 3 else None
    perc = _percolation(a, n).mean(axis=1)
    return {
        "dim": nd, "phi": phi,
        "radial": [s2[p]["radial"] for p in range(n)],
        "axes": [s2[p]["axes"] for p in range(n)],
        "surface": surf["per_phase"], "interface": surf["interface"],
        "tpb": tpb, "percolation": perc,
        "integral_range": _integral_ranges(a, n, r, blocks),
        "isotropy": _isotropy_from_s2(s2, nd),
    }


def _slice_stats(a, n, r):
    """2D statistics of a volume's slices, averaged over the three slice orientations."""
    phi = _fractions(a, n)
    blocks = _s2_blocks(a, n, r)
    cov = _covariance_blocks(a, n, r, blocks)
    radial, axes, ranges = [], [], []
    for p in range(n):
        planes = [_plane(blocks[p], r, ax) for ax in range(3)]
        radial.append(np.mean([_radial(pl, r) for pl in planes], axis=0))
        axes.append(np.stack([_axis_line(blocks[p], r, ax) for ax in range(3)]))
        ranges.append(float(np.mean([_integral_range_block(_plane(cov[p], r, ax)) for ax in range(3)])))
    bits = _phase_bits(a, n)
    counts = _face_counts(a, n, bits)
    surfs = [_surface_result(counts, 2, float(a.size), n, None, "px",
                             axes=[b for b in range(3) if b != ax]) for ax in range(3)]
    surface = np.mean([s["per_phase"] for s in surfs], axis=0)
    interface = np.mean([s["interface"] for s in surfs], axis=0)
    tpb = float(_tpb_counts(a, n, bits).sum() / (3 * a.size)) if n >= 3 else None
    perc = _slice_percolation(a, n).mean(axis=(1, 2))
    return {
        "dim": 2, "phi": phi, "radial": radial, "axes": axes, "surface": surface,
        "interface": interface, "tpb": tpb, "percolation": perc, "integral_range": ranges,
        "isotropy": None,
    }


def _row(metric, phase, ref, gen, unit):
    ref = float(ref)
    gen = float(gen)
    err = abs(gen - ref)
    rel = err / abs(ref) if ref != 0 else (0.0 if err == 0 else None)
    return {"metric": metric, "phase": phase, "reference": ref, "generated": gen,
            "abs_error": err, "rel_error": rel, "unit": unit}


def compare(reference, generated, n_phases: int | None = None, voxel_size: float | None = None,
            r_max: int = 32, unit: str = "px") -> dict:
    """Compare a generated image/volume with the reference it should resemble.

    Modes (``result["mode"]``):
      * ``"3d"``: both 3D, 3D statistics compared.
      * ``"2d"``: both 2D.
      * ``"2d-slices"``: one 2D image and one 3D volume: the volume's 2D statistics over its
        slices in all three directions (in-plane S2, perimeter per area, triple points per area,
        2D percolation of up to 32 slices per direction) against the image's.
    The generated data must use the reference's phases (labels < n_phases; a phase may be
    absent); more phases than the reference is an error. ``voxel_size`` applies to both; r_max is
    clipped to half the smallest side of either input.

    Returns (JSON-serialisable):
      ``rows``: list of {metric, phase, reference, generated, abs_error, rel_error, unit};
        metrics: phase_fraction, specific_surface_area (3D) / specific_perimeter (2D),
        interface_area (phase "i-j"), tpb_density (phase "all"), percolation (mean over axes),
        integral_range, isotropy (3D, phase "worst");
      ``curves``: {"r": [...], "phases": [{"reference", "generated" (radial S2),
        "reference_axes", "generated_axes" (per-axis S2)}]};
      ``errors``: per metric: phase_fraction (max abs), s2 (max over phases of the mean abs
        difference of radial S2), s2_per_phase, surface_area / interface_area / tpb /
        integral_range (max rel), percolation (max abs);
      ``mode``, ``n_phases``, ``reference_shape``, ``generated_shape``, ``unit``.
    """
    ref, n = _prepare(reference, n_phases, name="reference")
    try:
        gen, _ = _prepare(generated, n, name="generated data")
    except MatgenInputError as e:
        if "distinct label values" in str(e):
            k = len(_present_values(np.asarray(generated)))
            raise MatgenInputError(
                f"The generated data has {k} phases but the reference has {n}; compare data "
                "segmented into the same phases (or pass n_phases).") from None
        raise
    vs = _check_voxel_size(voxel_size)
    r = _check_r_max(r_max, ref.shape)
    r = min(r, max(1, min(ref.shape) // 2), max(1, min(gen.shape) // 2))
    if ref.ndim == gen.ndim:
        mode = "3d" if ref.ndim == 3 else "2d"
        sr, sg = _native_stats(ref, n, r), _native_stats(gen, n, r)
    else:
        mode = "2d-slices"
        sr = _native_stats(ref, n, r) if ref.ndim == 2 else _slice_stats(ref, n, r)
        sg = _native_stats(gen, n, r) if gen.ndim == 2 else _slice_stats(gen, n, r)
    dim = sr["dim"]
    scale = vs if vs else 1.0
    ustr = _unit_strings(unit) if vs else "px"

    rows = []
    for p in range(n):
        rows.append(_row("phase_fraction", p, sr["phi"][p], sg["phi"][p], ""))
    sname = "specific_surface_area" if dim == 3 else "specific_perimeter"
    for p in range(n):
        rows.append(_row(sname, p, sr["surface"][p] / scale, sg["surface"][p] / scale, f"1/{ustr}"))
    for k, (i, j) in enumerate(_pairs(n)):
        rows.append(_row("interface_area", f"{i}-{j}", sr["interface"][k] / scale,
                         sg["interface"][k] / scale, f"1/{ustr}"))
    if sr["tpb"] is not None:
        rows.append(_row("tpb_density", "all", sr["tpb"] / scale ** 2, sg["tpb"] / scale ** 2,
                         f"1/{ustr}^2"))
    for p in range(n):
        rows.append(_row("percolation", p, sr["percolation"][p], sg["percolation"][p], ""))
    for p in range(n):
        rows.append(_row("integral_range", p, sr["integral_range"][p] * scale ** dim,
                         sg["integral_range"][p] * scale ** dim, f"{ustr}^{dim}"))
    if sr["isotropy"] is not None and sg["isotropy"] is not None:
        rows.append(_row("isotropy", "worst", sr["isotropy"], sg["isotropy"], ""))

    s2_err = [float(np.mean(np.abs(sg["radial"][p] - sr["radial"][p]))) for p in range(n)]

    def worst(metric, key):
        vals = [rw[key] for rw in rows if rw["metric"] == metric and rw[key] is not None]
        return max(vals) if vals else None

    errors = {
        "phase_fraction": worst("phase_fraction", "abs_error"),
        "s2": max(s2_err),
        "s2_per_phase": s2_err,
        "surface_area": worst(sname, "rel_error"),
        "interface_area": worst("interface_area", "rel_error"),
        "tpb": worst("tpb_density", "rel_error"),
        "percolation": worst("percolation", "abs_error"),
        "integral_range": worst("integral_range", "rel_error"),
    }
    curves = {"r": np.arange(r + 1), "r_phys": np.arange(r + 1) * vs if vs else None,
              "phases": [{"reference": sr["radial"][p], "generated": sg["radial"][p],
                          "reference_axes": sr["axes"][p], "generated_axes": sg["axes"][p]}
                         for p in range(n)]}
    return _clean({
        "mode": mode, "n_phases": n, "reference_shape": list(ref.shape),
        "generated_shape": list(gen.shape), "voxel_size": vs, "unit": unit,
        "rows": rows, "errors": errors, "curves": curves,
    })


def _fmt(v, width=11):
    if v is None:
        return "-".rjust(width)
    if isinstance(v, str):
        return v.rjust(width)
    if v == 0:
        return "0".rjust(width)
    if abs(v) >= 1e4 or abs(v) < 1e-3:
        return f"{v:.3e}".rjust(width)
    return f"{v:.4f}".rjust(width)


def format_table(result: dict) -> str:
    """Readable text table of a :func:`summarize` or :func:`compare` result (for the CLI)."""
    lines = []
    if "rows" in result:
        lines.append(f"mode: {result['mode']}   phases: {result['n_phases']}   reference "
                     f"{tuple(result['reference_shape'])} vs generated {tuple(result['generated_shape'])}")
        head = f"{'metric':<24}{'phase':>6}{'reference':>11}{'generated':>11}{'abs err':>11}{'rel err':>9}  unit"
        lines += [head, "-" * len(head)]
        for rw in result["rows"]:
            rel = "-" if rw["rel_error"] is None else f"{100 * rw['rel_error']:.1f}%"
            lines.append(f"{rw['metric']:<24}{str(rw['phase']):>6}{_fmt(rw['reference'])}"
                         f"{_fmt(rw['generated'])}{_fmt(rw['abs_error'])}{rel:>9}  {rw['unit']}")
        e = result["errors"]
        lines.append("")
        lines.append("S2 mean abs error per phase: " + ", ".join(f"{v:.4f}" for v in e["s2_per_phase"]))
        return "\n".join(lines)

    n = result["n_phases"]
    phys = result.get("voxel_size") is not None
    lines.append(f"shape {tuple(result['shape'])}   phases: {n}"
                 + (f"   voxel size {result['voxel_size']} {result['unit']}" if phys else ""))
    sa = result["surface_area"]
    su = sa["physical_unit"] if phys else sa["unit"]
    sname = "surface area" if result["ndim"] == 3 else "perimeter"
    rep = result["representativeness"]
    head = (f"{'phase':<6}{'fraction':>10}{sname + ' [' + su + ']':>24}{'percolating (per axis)':>26}"
            f"{'integral range':>16}{'fraction std':>14}")
    lines += [head, "-" * len(head)]
    for p in range(n):
        perc = " ".join(f"{x:.2f}" for x in result["percolation"]["fraction"][p])
        area = (sa["physical"] if phys else sa["value"])[p]
        lines.append(f"{p:<6}{result['phase_fractions'][p]:>10.4f}{_fmt(area, 24)}{perc:>26}"
                     f"{_fmt(rep['integral_range'][p], 16)}{_fmt(rep['std_image'][p], 14)}")
    ia = result["interface_area"]
    vals = ia["physical"] if phys else ia["value"]
    lines.append("")
    lines.append("interface area [" + (ia["physical_unit"] if phys else ia["unit"]) + "]: "
                 + ", ".join(f"{k}: {_fmt(v, 0)}" for k, v in zip(ia["pairs"], vals)))
    if result["tpb"] is not None:
        t = result["tpb"]
        val, u = (t["physical"], t["physical_unit"]) if phys else (t["value"], t["unit"])
        lines.append(f"{t['kind']}: {_fmt(val, 0)} {u}")
    if result["isotropy"] is not None:
        lines.append("isotropy index (S2 mean abs deviation between axes, worst phase): "
                     f"{result['isotropy']:.4f}")
    if result["tortuosity"]:
        t = result["tortuosity"]
        for p, per_axis in enumerate(t["phases"]):
            parts = []
            for ax, res in zip(t["axes"], per_axis):
                tau_s = "inf" if res["tau"] is None else f"{res['tau']:.3f}"
                parts.append(f"axis {ax}: tau {tau_s}, D_eff {res['D_eff']:.4f}"
                             + ("" if res["converged"] else " (not converged)"))
            lines.append(f"tortuosity phase {p}: " + "; ".join(parts))
    return "\n".join(lines)
