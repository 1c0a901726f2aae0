"""Synthetic microstructures (2D images and 3D volumes) for examples, tests and validation.

* :func:`synthetic_microstructure`: an electrode-like particle structure: overlapping discs (2D)
  or balls (3D) of active material in a pore space, with a thin, patchy binder film on the
  particle surfaces (the bundled example image is a 2D one).
* 3D truths with known statistics, for validating 2D-to-3D generation (``matgen validate``,
  ``matgen_core.validation``, ``bench/bench_fidelity.py``): train on a slice, generate a volume,
  compare it with the true volume.

  - :func:`thresholded_grf`: thresholded Gaussian random fields, 2 or 3 phases, with a given
    correlation length (one for all axes, or one per axis: an anisotropic field) and phase
    fractions met to the voxel; :func:`grf_s2` is the exact S2 of the 2-phase field.
  - :func:`overlapping_spheres`: the Boolean model: balls of one radius at Poisson-random
    centres; expected fraction and S2 in closed form (:func:`spheres_s2`).

All functions take a shape in voxels ((H, W) or (Z, Y, X)) and a seed, and return uint8 labels
0..n-1; the same arguments always give the same array. Lengths are in voxels.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage, special, stats

from .errors import MatgenInputError

PARTICLE_FRACTION = 0.42  # target area/volume fraction of all particle phases together
_RADIUS_RANGE = (0.4, 0.7)  # particle radii, as multiples of feature_size
_BINDER_THICKNESS = 0.3  # thickest binder film, as a multiple of feature_size


def synthetic_microstructure(shape, n_phases: int = 3, feature_size: float = 10, seed: int = 0) -> np.ndarray:
    """Random isotropic particle microstructure as uint8 labels.

    Parameters
    ----------
    shape : tuple of int
        (H, W) for a 2D image or (Z, Y, X) for a 3D volume, in pixels/voxels.
    n_phases : int
        Number of phases, >= 2. Label 0 is the pore space. With 2 phases, label 1 is the particles.
        With 3 or more, the last label (n_phases - 1) is a binder film on the particle surfaces and
        the particles are split at random among labels 1 .. n_phases - 2.
    feature_size : float
        Typical particle diameter in pixels; diameters are drawn uniformly in
        [0.8, 1.4] * feature_size.
    seed : int
        Seed of the random generator: the same arguments always give the same array.

    Returns
    -------
    labels : ndarray of uint8, shape ``shape``
        Particles take about 42% of the space and the binder (3+ phases) about 10-15%.
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 3) or min(shape) < 1:
        raise MatgenInputError(f"Shape {shape} is not a 2D or 3D shape; pass (H, W) or (Z, Y, X) with positive sizes.")
    if not 2 <= int(n_phases) <= 255:
        raise MatgenInputError(f"n_phases={n_phases} is out of range; use 2 to 255 phases.")
    if not feature_size > 0:
        raise MatgenInputError(f"feature_size={feature_size} must be positive; give the particle size in pixels.")
    n_phases = int(n_phases)
    rng = np.random.default_rng(seed)
    has_binder = n_phases >= 3
    labels = _particles(shape, float(feature_size), n_phases - 1 - has_binder, rng)
    if has_binder:
        labels[_binder(labels == 0, float(feature_size), rng)] = n_phases - 1
    return labels


def _particles(shape, feature_size, n_types, rng) -> np.ndarray:
    """Overlapping balls with labels 1..n_types on a background of 0 (a Boolean-model structure)."""
    ndim = len(shape)
    r_min, r_max = (f * feature_size for f in _RADIUS_RANGE)
    # Mean ball volume for radii uniform in [r_min, r_max]: c_d * E[r^d].
    unit_ball = math.pi if ndim == 2 else 4 / 3 * math.pi
    mean_volume = unit_ball * (r_max ** (ndim + 1) - r_min ** (ndim + 1)) / ((ndim + 1) * (r_max - r_min))
    # Centres fall in the array grown by r_max on every side, so the edges are not depleted.
    padded = np.array(shape, dtype=float) + 2 * r_max
    # Overlapping balls cover 1 - exp(-density * mean_volume) of the space.
    density = -math.log(1 - PARTICLE_FRACTION) / mean_volume
    n_balls = rng.poisson(density * padded.prod())
    centres = rng.random((n_balls, ndim)) * padded - r_max
    radii = rng.uniform(r_min, r_max, n_balls)
    types = rng.integers(1, n_types + 1, n_balls)

    labels = np.zeros(shape, dtype=np.uint8)
    for centre, radius, kind in zip(centres, radii, types):
        lo = np.maximum(np.floor(centre - radius).astype(int), 0)
        hi = np.minimum(np.ceil(centre + radius).astype(int) + 1, shape)
        if np.any(hi <= lo):
            continue
        axes = np.ogrid[tuple(slice(a, b) for a, b in zip(lo, hi))]
        dist2 = sum((ax - c) ** 2 for ax, c in zip(axes, centre))
        box = labels[tuple(slice(a, b) for a, b in zip(lo, hi))]
        box[dist2 <= radius**2] = kind
    return labels


def _binder(pores: np.ndarray, feature_size: float, rng) -> np.ndarray:
    """Pore pixels within a locally varying distance of a particle: a thin, patchy surface film.

    The film thickness follows a smooth random field (correlation length ~ feature_size), so some
    surface patches are bare and others carry up to _BINDER_THICKNESS * feature_size of binder;
    narrow gaps between particles fill up first, as the carbon-binder domain does in real electrodes.
    """
    distance = ndimage.distance_transform_edt(pores)
    field = ndimage.gaussian_filter(rng.standard_normal(pores.shape), sigma=feature_size / 2, mode="wrap")
    field /= field.std()
    thickness = _BINDER_THICKNESS * feature_size * np.clip(0.5 + 0.5 * field, 0, 1)
    return pores & (distance <= thickness)


# ----------------------------------------------------------------------------------------------
# 3D truths with known statistics
# ----------------------------------------------------------------------------------------------

def _check_shape(shape) -> tuple[int, ...]:
    try:
        shape = tuple(int(s) for s in shape)
    except TypeError:
        raise MatgenInputError(f"Shape {shape!r} is not a shape; pass (H, W) or (Z, Y, X).") from None
    if len(shape) not in (2, 3) or min(shape) < 2:
        raise MatgenInputError(f"Shape {shape} is not a 2D or 3D shape with sides of 2 voxels or more; "
                               "pass (H, W) or (Z, Y, X).")
    return shape


def _lengths(correlation_length, ndim: int) -> tuple[float, ...]:
    lengths = np.broadcast_to(np.asarray(correlation_length, dtype=float), (ndim,)) \
        if np.ndim(correlation_length) in (0, 1) and np.size(correlation_length) in (1, ndim) else None
    if lengths is None:
        raise MatgenInputError(f"correlation_length={correlation_length!r}: give one length, or one "
                               f"per axis ({ndim} values).")
    if not np.all(lengths >= 1):
        raise MatgenInputError(f"correlation_length={correlation_length!r}: lengths must be at least "
                               "1 voxel.")
    return tuple(float(v) for v in lengths)


def gaussian_field(shape, correlation_length, seed: int = 0) -> np.ndarray:
    """A periodic Gaussian random field, zero mean and unit variance, float64 of ``shape``.

    White noise smoothed by a Gaussian of standard deviation ``correlation_length / 2`` along each
    axis (wrapping at the borders, so the field is periodic and homogeneous). Its covariance is
    ``rho(r) = exp(-sum_a (r_a / l_a)^2)``: ``correlation_length`` ``l`` is the distance at which
    the correlation falls to 1/e. ``correlation_length``: one value, or one per axis.
    """
    shape = _check_shape(shape)
    lengths = _lengths(correlation_length, len(shape))
    noise = np.random.default_rng(seed).standard_normal(shape)
    field = ndimage.gaussian_filter(noise, sigma=[v / 2 for v in lengths], mode="wrap")
    return (field - field.mean()) / field.std()


def _threshold(field: np.ndarray, fraction: float) -> np.ndarray:
    """Mask of the ``round(fraction * size)`` largest values of ``field``."""
    k = int(round(fraction * field.size))
    if k <= 0:
        return np.zeros(field.shape, bool)
    cut = np.partition(field.ravel(), field.size - k)[field.size - k]
    return field >= cut


def _check_fractions(fractions) -> np.ndarray:
    fr = np.asarray(fractions, dtype=float).ravel()
    if fr.size not in (2, 3) or np.any(fr <= 0) or abs(fr.sum() - 1) > 1e-6:
        raise MatgenInputError(f"fractions={fractions!r}: give 2 or 3 positive phase fractions that "
                               "sum to 1, e.g. (0.6, 0.4) or (0.4, 0.35, 0.25).")
    return fr


def thresholded_grf(shape, fractions=(0.5, 0.5), correlation_length=8.0, seed: int = 0) -> np.ndarray:
    """Thresholded Gaussian random field: 2 or 3 phases with exactly the given fractions.

    2 phases: phase 1 is where one field (:func:`gaussian_field`) exceeds the level that leaves
    ``fractions[1]`` of the voxels above it (so the S2 is :func:`grf_s2`). 3 phases: phase 2 is
    where a first field exceeds its ``fractions[2]`` level; the rest is split by a second,
    independent field with the same correlation length into phase 1 (its top ``fractions[1]`` of
    all voxels) and phase 0, so all three phases meet (triple phase boundaries exist).

    Args:
        shape: (H, W) or (Z, Y, X) voxels.
        fractions: 2 or 3 phase fractions summing to 1 (met to one voxel).
        correlation_length: voxels; one value (isotropic) or one per axis (anisotropic: e.g.
            ``(16, 8, 4)`` makes features 4x longer along Z than along X).
        seed: random seed.

    Returns:
        uint8 labels of ``shape``, phases 0..len(fractions)-1.
    """
    fr = _check_fractions(fractions)
    rng = np.random.default_rng(seed)
    seeds = rng.integers(0, 2**31, size=2)
    labels = np.zeros(_check_shape(shape), np.uint8)
    first = gaussian_field(shape, correlation_length, int(seeds[0]))
    if fr.size == 2:
        labels[_threshold(first, fr[1])] = 1
        return labels
    top = _threshold(first, fr[2])
    second = gaussian_field(shape, correlation_length, int(seeds[1]))
    second[top] = -np.inf                      # only the rest can become phase 1
    labels[_threshold(second, fr[1])] = 1
    labels[top] = 2
    return labels


def grf_s2(fraction: float, r, correlation_length: float = 8.0) -> np.ndarray:
    """Exact S2 of phase 1 of a 2-phase :func:`thresholded_grf` (isotropic) at distances ``r``.

    ``S2(r) = P(X > t, Y > t)`` for standard normals X, Y with correlation
    ``rho(r) = exp(-(r / l)^2)`` and ``t`` the level above which ``fraction`` of a normal lies.
    (The discrete field's covariance deviates slightly from the continuous formula for
    correlation lengths under ~3 voxels.)
    """
    r = np.asarray(r, dtype=float)
    t = float(special.ndtri(1 - fraction))
    out = np.empty(r.shape)
    for i, ri in np.ndenumerate(r):
        rho = math.exp(-(ri / correlation_length) ** 2)
        if rho > 1 - 1e-9:
            out[i] = fraction
        else:
            out[i] = stats.multivariate_normal.cdf([-t, -t], mean=[0, 0], cov=[[1, rho], [rho, 1]])
    return out


def overlapping_spheres(shape, radius: float = 6.0, fraction: float = 0.4, seed: int = 0) -> np.ndarray:
    """Boolean model: balls (discs in 2D) of one ``radius`` at Poisson-random centres.

    Phase 1 is the union of the balls, phase 0 the matrix. The centre density is set so the
    *expected* ball fraction is ``fraction`` (``1 - exp(-density * ball volume)``); a finite
    volume meets it to within its statistical fluctuation (about 1 percentage point at 64^3 for
    radius 6). Centres are at voxel positions, uniformly over the volume grown by ``radius``, so
    the borders are not depleted. A voxel belongs to a ball when its centre is within ``radius``.

    Returns:
        uint8 labels of ``shape``, phases 0 (matrix) and 1 (balls).
    """
    shape = _check_shape(shape)
    if not radius >= 1:
        raise MatgenInputError(f"radius={radius} must be at least 1 voxel.")
    if not 0 < fraction < 1:
        raise MatgenInputError(f"fraction={fraction} must be between 0 and 1 (exclusive).")
    nd = len(shape)
    pad = int(math.ceil(radius))
    padded = tuple(s + 2 * pad for s in shape)
    ball = _ball_volume(radius, nd)
    density = -math.log(1 - fraction) / ball             # centres per voxel
    rng = np.random.default_rng(seed)
    count = rng.poisson(density * math.prod(padded))
    centres = np.ones(padded, bool)                      # False at centres (EDT measures to them)
    flat = rng.integers(0, math.prod(padded), size=count)
    centres.ravel()[flat] = False
    if count == 0:
        return np.zeros(shape, np.uint8)
    dist = ndimage.distance_transform_edt(centres)
    inner = tuple(slice(pad, pad + s) for s in shape)
    return (dist[inner] <= radius).astype(np.uint8)


def _ball_volume(radius: float, nd: int) -> float:
    """Voxel count of a digital ball (voxel centres within ``radius`` of a voxel centre)."""
    r = int(math.floor(radius))
    axes = np.ogrid[tuple(slice(-r, r + 1) for _ in range(nd))]
    return float(np.count_nonzero(sum(a * a for a in axes) <= radius * radius))


def spheres_s2(fraction: float, r, radius: float = 6.0, ndim: int = 3) -> np.ndarray:
    """Expected S2 of the matrix (phase 0) of :func:`overlapping_spheres` along an axis.

    For a Boolean model ``S2_matrix(r) = exp(-density * V_union(r))``, with ``V_union`` the voxel
    count of two digital balls whose centres are ``r`` voxels apart along an axis, and ``density``
    as in :func:`overlapping_spheres` (so ``S2_matrix(0) = 1 - fraction``). ``r``: whole voxels.
    """
    r = np.abs(np.asarray(r, dtype=int))
    ball = _ball_volume(radius, ndim)
    density = -math.log(1 - fraction) / ball
    k = int(math.floor(radius))
    axes = np.ogrid[tuple(slice(-k, k + 1) for _ in range(ndim))]
    mask = sum(a * a for a in axes) <= radius * radius
    out = np.empty(r.shape)
    for i, ri in np.ndenumerate(r):
        overlap = 0 if ri > 2 * k else int(np.count_nonzero(mask[ri:] & mask[:mask.shape[0] - ri]))
        out[i] = math.exp(-density * (2 * ball - overlap))
    return out


# name -> (description, function(shape, seed) -> labels): the 3D truths bench/bench_fidelity.py
# uses (volume fractions near those of real electrodes; feature sizes that a 32-voxel crop sees)
TRUTHS = {
    "grf2": ("2-phase thresholded GRF, fractions 0.6/0.4, correlation length 6 voxels",
             lambda shape, seed=0: thresholded_grf(shape, (0.6, 0.4), 6.0, seed)),
    "grf2-coarse": ("2-phase thresholded GRF, fractions 0.6/0.4, correlation length 10 voxels",
                    lambda shape, seed=0: thresholded_grf(shape, (0.6, 0.4), 10.0, seed)),
    "grf3": ("3-phase thresholded GRF, fractions 0.4/0.35/0.25, correlation length 6 voxels",
             lambda shape, seed=0: thresholded_grf(shape, (0.4, 0.35, 0.25), 6.0, seed)),
    "spheres": ("overlapping spheres (Boolean model), radius 5 voxels, ball fraction 0.45",
                lambda shape, seed=0: overlapping_spheres(shape, 5.0, 0.45, seed)),
    "aniso": ("2-phase thresholded GRF, fractions 0.6/0.4, correlation lengths Z,Y,X 12/6/4 voxels",
              lambda shape, seed=0: thresholded_grf(shape, (0.6, 0.4), (12.0, 6.0, 4.0), seed)),
}
