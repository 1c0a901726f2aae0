"""Segmenting a grayscale (multi-Otsu) or colour (k-means) image into n phases."""
from __future__ import annotations

import numpy as np

from ..errors import MatgenInputError
from ._common import looks_colour, unit_float
from .micrograph import Micrograph


MAX_SEGMENT_PHASES = 8  # segment() limit: multi-Otsu cost grows steeply with the number of classes


def segment(image, n_phases: int) -> Micrograph:
    """Segment a grayscale or colour image into ``n_phases`` phases.

    Parameters
    ----------
    image : Micrograph or ndarray
        A Micrograph (its ``image`` is used; voxel size, unit and source are kept), or an array
        (H, W) / (Z, Y, X) grayscale or (H, W, 3) colour of any numeric type.
    n_phases : int
        2 .. MAX_SEGMENT_PHASES.

    Returns
    -------
    Micrograph
        kind "nphase". Labels are ordered from dark to bright. ``phase_values`` is the mean
        grey level of each phase on a 0-255 scale (colour: the mean (R, G, B), 0-255).

    Notes
    -----
    Grayscale: multi-Otsu thresholds (``skimage.filters.threshold_multiotsu``) on a 256-bin
    histogram, fewer bins for 5+ phases to stay fast. Colour: k-means on RGB (k-means++ start,
    fitted on at most 20,000 pixels with a fixed seed, so results are reproducible), clusters
    sorted by luminance. A 512x512 image takes well under a second either way.
    """
    if isinstance(image, Micrograph):
        array, colour = image.image, image.kind == "color"
        common = dict(voxel_size=image.voxel_size, unit=image.unit, source=image.source)
    else:
        array = np.asarray(image)
        colour = looks_colour(array)
        if array.dtype.kind not in "uifb" or array.ndim not in (2, 3):
            raise MatgenInputError(
                f"Cannot segment an array of shape {array.shape} and type {array.dtype}; pass a 2D or 3D "
                f"grayscale or an (H, W, 3) colour image."
            )
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise MatgenInputError("The image contains NaN or infinite values; replace them before segmenting.")
        array = unit_float(array.astype(np.uint8) if array.dtype == bool else array)
        common = {}
    if not isinstance(n_phases, (int, np.integer)) or not 2 <= n_phases <= MAX_SEGMENT_PHASES:
        raise MatgenInputError(
            f"Cannot segment into {n_phases} phases; choose a whole number from 2 to {MAX_SEGMENT_PHASES}."
        )
    n = int(n_phases)
    labels, phase_values = _kmeans_segment(array, n) if colour else _otsu_segment(array, n)
    return Micrograph(
        labels=labels, image=labels.astype(np.float32) / (n - 1), kind="nphase", phase_values=phase_values, **common
    )


def _otsu_segment(gray: np.ndarray, n: int) -> tuple[np.ndarray, list]:
    nbins = 256 if n <= 4 else 64 if n == 5 else 32
    try:
        from skimage.filters import threshold_multiotsu  # ~1 s import: only when segmenting

        thresholds = threshold_multiotsu(gray, classes=n, nbins=nbins)
    except ValueError:  # fewer occupied histogram bins than classes
        raise MatgenInputError(
            f"The image has too few distinct grey levels to split into {n} phases; choose fewer phases."
        ) from None
    labels = np.digitize(gray, thresholds).astype(np.uint8)
    counts = np.bincount(labels.ravel(), minlength=n)
    means = np.bincount(labels.ravel(), weights=gray.ravel(), minlength=n) / np.maximum(counts, 1)
    values = [int(v) for v in np.round(means * 255)]
    if any(b <= a for a, b in zip(values, values[1:])):  # low contrast: keep the values distinct
        values = [int(v) for v in np.round(np.linspace(0, 255, n))]
    return labels, values


def _kmeans_segment(rgb: np.ndarray, n: int, iterations: int = 30) -> tuple[np.ndarray, list]:
    pixels = rgb.reshape(-1, 3).astype(np.float32)
    rng = np.random.default_rng(0)
    sample = pixels[rng.choice(len(pixels), size=min(len(pixels), 20000), replace=False)]
    centres = sample[[rng.integers(len(sample))]]
    for _ in range(1, n):  # k-means++: each new centre far from the ones already chosen
        dist = _nearest(sample, centres)[1]
        if dist.sum() == 0:
            raise MatgenInputError(f"The image has fewer than {n} distinct colours; choose fewer phases.")
        centres = np.vstack([centres, sample[rng.choice(len(sample), p=dist / dist.sum())]])
    for _ in range(iterations):
        assign = _nearest(sample, centres)[0]
        counts = np.bincount(assign, minlength=n)[:, None]
        sums = np.stack([np.bincount(assign, weights=sample[:, c], minlength=n) for c in range(3)], axis=1)
        moved = np.where(counts > 0, sums / np.maximum(counts, 1), centres).astype(np.float32)
        if np.allclose(moved, centres, atol=1e-4):
            break
        centres = moved
    centres = centres[np.argsort(centres @ np.array([0.299, 0.587, 0.114], np.float32), kind="stable")]
    labels = _nearest(pixels, centres)[0].astype(np.uint8).reshape(rgb.shape[:-1])
    return labels, [tuple(int(c) for c in np.round(centre * 255)) for centre in centres]


def _nearest(points: np.ndarray, centres: np.ndarray, chunk: int = 32768) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest centre for each point and the squared distance to it, in chunks to bound memory."""
    index = np.empty(len(points), dtype=np.intp)
    best = np.empty(len(points), dtype=np.float32)
    for start in range(0, len(points), chunk):
        diff = points[start : start + chunk, None, :] - centres[None]
        dist = np.einsum("ijk,ijk->ij", diff, diff)
        index[start : start + chunk] = nearest = dist.argmin(1)
        best[start : start + chunk] = np.take_along_axis(dist, nearest[:, None], 1)[:, 0]
    return index, best
