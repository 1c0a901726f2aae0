"""Synthetic, isotropic particle microstructures (2D images and 3D volumes) for examples and tests.

The structure imitates a battery electrode: overlapping discs (2D) or balls (3D) of active
material in a pore space, with a thin, patchy binder film on the particle surfaces. Because the
3D version is isotropic, any 2D slice of it is a fair training image for a 2D-to-3D model, and the
3D volume is the ground truth to compare a generated volume against.
"""
from __future__ import annotations

import math

import numpy as np
from scipy import ndimage

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
