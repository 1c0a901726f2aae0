"""How different generated 2D samples are from each other, compared with real crops.

The original project report found its GAN samples "exhibit a high degree of similarity among
themselves" (partial mode collapse). Statistics such as phase fractions or S2 cannot see that: a
generator that always draws the same good image matches them perfectly. The measure here can:

    mean pairwise distance  d = mean over pairs i < j of dist(x_i, x_j)
    dist = fraction of pixels whose label differs (n-phase: half the L1 distance of the one-hot
           images), or mean |x_i - x_j| / 255 (gray, colour)

computed for generated samples and for the same number of random crops of the training image of
the same size. ``ratio = d_generated / d_real``: about 1 when samples differ from each other as
much as different places of the micrograph do, near 0 when they are near-copies.

:func:`evaluate_samples` puts it next to the statistics of ``metrics`` (phase fractions, S2,
perimeter), each averaged over the samples and over as many random training crops of the same
size, so a 2D model's samples are judged image for image against what it was trained on.
"""
from __future__ import annotations

import numpy as np


def mean_pairwise_distance(images: np.ndarray, kind: str = "nphase", n_phases: int | None = None) -> float:
    """Mean distance over all pairs of ``images``: (K, H, W) uint8 labels (``kind`` "nphase"), or
    (K, H, W[, 3]) uint8 gray / colour. Needs K >= 2."""
    images = np.asarray(images)
    k = len(images)
    if k < 2:
        raise ValueError("mean_pairwise_distance needs at least 2 images")
    flat = images.reshape(k, -1)
    if kind == "nphase":
        n = int(n_phases or flat.max() + 1)
        onehot = np.eye(n, dtype=np.float32)[flat.astype(np.int64)]  # (K, P, n)
        onehot = onehot.transpose(0, 2, 1).reshape(k, -1)  # (K, n * P)
        agree = onehot @ onehot.T / flat.shape[1]  # fraction of pixels with the same label
        dist = 1.0 - agree
    else:
        x = flat.astype(np.float32) / 255.0
        dist = np.stack([np.abs(x - x[i]).mean(1) for i in range(k)])
    iu = np.triu_indices(k, 1)
    return float(dist[iu].mean())


def random_crops(image: np.ndarray, size: int, count: int, seed: int = 0) -> np.ndarray:
    """``count`` random ``size`` x ``size`` crops of a 2D image (H, W[, 3]), stacked (K, size, size[, 3])."""
    rng = np.random.default_rng(seed)
    h, w = image.shape[:2]
    ys = rng.integers(0, h - size + 1, count)
    xs = rng.integers(0, w - size + 1, count)
    return np.stack([image[y:y + size, x:x + size] for y, x in zip(ys, xs)])


def diversity(generated: np.ndarray, real: np.ndarray, kind: str = "nphase",
              n_phases: int | None = None) -> dict:
    """Diversity of ``generated`` samples against ``real`` crops (same size and kind, uint8).

    Returns ``{"generated": d_gen, "real": d_real, "ratio": d_gen / d_real}``.
    """
    if kind == "nphase" and n_phases is None:
        n_phases = int(max(np.max(generated), np.max(real))) + 1
    d_gen = mean_pairwise_distance(generated, kind, n_phases)
    d_real = mean_pairwise_distance(real, kind, n_phases)
    return {"generated": d_gen, "real": d_real, "ratio": d_gen / d_real if d_real > 0 else float("nan")}


def _mean_stats(images: np.ndarray, n_phases: int, r_max: int) -> dict:
    """Phase fractions, radial S2 (per phase) and perimeter per area, averaged over 2D images."""
    from . import metrics

    frac, s2, perim = [], [], []
    for im in images:
        frac.append(metrics.phase_fractions(im, n_phases))
        s2.append(np.stack([v["radial"] for _, v in sorted(metrics.s2_all(im, n_phases, r_max).items())]))
        perim.append(metrics.surface_area(im, n_phases)["per_phase"])
    return {"fractions": np.mean(frac, 0), "s2": np.mean(s2, 0), "perimeter": np.mean(perim, 0)}


def evaluate_samples(generated: np.ndarray, training_image: np.ndarray, kind: str = "nphase",
                     n_phases: int | None = None, r_max: int | None = None, seed: int = 0) -> dict:
    """Judge 2D samples ``generated`` (K, S, S[, 3], uint8 as from ``generate``) against K random
    S x S crops of ``training_image`` (labels / uint8 gray / RGB, as decoded).

    Returns ``diversity`` (see :func:`diversity`) and, for n-phase data, ``fraction_error`` (largest
    absolute phase-fraction difference), ``s2_error`` (largest over phases of the mean absolute
    difference of radial S2, r = 0..r_max, default S / 4), ``surface_error`` (largest relative
    perimeter-per-area difference: too smooth or blurry samples have too little interface, noisy
    ones too much) and the raw ``generated`` / ``reference`` statistics.
    """
    generated = np.asarray(generated)
    k, size = len(generated), generated.shape[1]
    crops = random_crops(np.asarray(training_image), size, max(k, 2), seed=seed)
    if kind == "nphase" and n_phases is None:
        n_phases = int(max(generated.max(), crops.max())) + 1
    out = {"diversity": diversity(generated, crops, kind, n_phases)}
    if kind != "nphase":
        return out
    n_phases = max(int(n_phases), 2)
    r_max = int(r_max or max(1, size // 4))
    gen, ref = _mean_stats(generated, n_phases, r_max), _mean_stats(crops, n_phases, r_max)
    rel = np.abs(gen["perimeter"] - ref["perimeter"]) / np.maximum(ref["perimeter"], 1e-12)
    out.update(
        fraction_error=float(np.abs(gen["fractions"] - ref["fractions"]).max()),
        s2_error=float(np.abs(gen["s2"] - ref["s2"]).mean(1).max()),
        surface_error=float(rel.max()),
        generated={key: v.tolist() for key, v in gen.items()},
        reference={key: v.tolist() for key, v in ref.items()},
    )
    return out


__all__ = ["mean_pairwise_distance", "random_crops", "diversity", "evaluate_samples"]
