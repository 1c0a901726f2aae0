"""Phase-fraction control for SliceGAN runs: supported range, calibration, expected spread.

Two mechanisms (docs/fractions.md):

* **Conditional SliceGAN** (``conditional: true`` in the model config): the target fractions are
  extra constant latent channels of the generator, trained over ``fraction_range`` around the
  training image's fractions with the density loss. It moves the whole morphology toward the
  target, but only approximately (a few pp after a short training).
* **The logit bias** (any n-phase SliceGAN run, conditional or not; the "calibrated" and
  "steered" label policies of generate.py): a per-phase bias on the generator's logits
  (``log p``; softmax is shift invariant, so this is a logit bias) is fitted so that the argmax
  labels hit the targets. Generation fits it on a :class:`LatticeSample` of the whole volume and
  applies it with :func:`labels_from_probs`, so one pass, tiles and streams agree. For a
  conditional model it closes the conditioning's residual gap; for a plain model it is the whole
  mechanism, so its supported range is limited to +-``CALIBRATION_LIMIT`` around the training
  fractions (further out, thresholding one model's output no longer looks like the material).

Everything works on the generator's softmax output ``probs`` (C, Z, Y, X) or its log.
"""
from __future__ import annotations


import numpy as np
import torch

from . import runs
from .data import image_fractions
from .errors import MatgenInputError

CALIBRATION_LIMIT = 0.15  # +- fraction range of a non-conditional model (15 percentage points)
TOLERANCE = 0.002  # the bias search stops when every probe fraction is within this of its target
PROBE_VOXELS = 2_000_000  # the search uses at most this many voxels (a fixed random subset)
MORPHOLOGY_SIDE = 64  # morphology change is measured on a central crop of at most this side
PATH_SIDE = 128  # paths through the phases are counted on a volume of at most this side (same seed)
PATH_WARN_BLOCKS = 3  # a bias that takes this many block paths from a phase along one axis: a warning
LATTICE_VOXELS = 2**21  # generation fits the bias on at most this many voxels of a global lattice
_FLOOR = 1e-30


# ----------------------------------------------------------------------------------------------
# run information: range and expected fluctuation
# ----------------------------------------------------------------------------------------------

def _nphase_config(run_dir) -> dict:
    config = runs.load_config(run_dir)
    if config.get("model") != "slicegan":
        raise MatgenInputError(f"Phase-fraction control is for SliceGAN runs; {run_dir} is a "
                               f"{config.get('model')} run.")
    if config["data"].get("kind") != "nphase":
        raise MatgenInputError("Phase-fraction control needs a run trained on segmented (n-phase) "
                               "data; this run was trained on grayscale/colour values.")
    return config


def training_fractions(run_dir) -> np.ndarray:
    """Mean phase fractions of the run's training image(s) (the trainer's own definition)."""
    config = _nphase_config(run_dir)
    return image_fractions(runs.load_images(run_dir), int(config["data"]["n_phases"]))


def supported_range(run_dir) -> dict:
    """The phase fractions a run can be asked for (what the app's sliders should offer).

    Returns ``{"n_phases", "phase_values", "center" (training fractions, the default), "low",
    "high" (per-phase bounds, clipped to [0, 1]), "radius", "conditional", "method"}``; a request
    must also sum to 1. Conditional models: their trained ``fraction_range``; others:
    ``CALIBRATION_LIMIT``.
    """
    config = _nphase_config(run_dir)
    mc = config["model_config"]
    center = training_fractions(run_dir)
    conditional = bool(mc.get("conditional", False))
    radius = float(mc.get("fraction_range", 0.1)) if conditional else CALIBRATION_LIMIT
    return {
        "n_phases": int(config["data"]["n_phases"]),
        "phase_values": list(config["data"].get("phase_values", [])),
        "center": [float(v) for v in center],
        "low": [float(v) for v in np.clip(center - radius, 0.0, 1.0)],
        "high": [float(v) for v in np.clip(center + radius, 0.0, 1.0)],
        "radius": radius,
        "conditional": conditional,
        "method": ("conditional generator + logit calibration" if conditional
                   else "logit calibration"),
    }


def expected_fluctuation(run_dir, shape) -> np.ndarray:
    """Expected std of each phase fraction in a volume of ``shape`` (int side or (Z, Y, X)).

    From the training image's S2 integral range (:func:`metrics.fraction_std`, isotropy assumed);
    the largest over the training images. A generated volume of this size drifts this much from
    its target without calibration; with calibration it is exact, and this is the spread real
    samples of that size would show.
    """
    from . import metrics

    config = _nphase_config(run_dir)
    n = int(config["data"]["n_phases"])
    if isinstance(shape, (int, np.integer)):
        shape = (int(shape),) * 3
    stds = [metrics.fraction_std(im, n_phases=n, shape=tuple(int(s) for s in shape))
            for im in runs.load_images(run_dir)]
    return np.max(stds, axis=0)


def check_targets(fractions, rng: dict) -> np.ndarray:
    """Validate requested fractions against ``rng`` (from :func:`supported_range`).

    Accepts a sequence or a "f0,f1,..." string; percentages (summing to ~100) are converted.
    Returns the targets normalised to sum 1; raises MatgenInputError naming the supported range.
    """
    n = rng["n_phases"]
    if isinstance(fractions, str):
        try:
            fractions = [float(v) for v in fractions.replace(";", ",").split(",") if v.strip()]
        except ValueError:
            raise MatgenInputError(f"--fractions must be {n} numbers like "
                                   f"{','.join(f'{v:.2f}' for v in rng['center'])}, got '{fractions}'.")
    t = np.asarray(fractions, dtype=np.float64).ravel()
    span = ", ".join(f"phase {k}: {lo:.3f}-{hi:.3f}" for k, (lo, hi) in
                     enumerate(zip(rng["low"], rng["high"])))
    if t.size != n:
        raise MatgenInputError(f"This run has {n} phases; give {n} fractions (one per phase, summing "
                               f"to 1), got {t.size}. Supported: {span}.")
    if not np.all(np.isfinite(t)) or np.any(t < 0):
        raise MatgenInputError(f"Fractions must be finite and >= 0, got {t.tolist()}.")
    if abs(t.sum() - 100) < 1.0:
        t = t / 100.0
    if abs(t.sum() - 1) > 0.01:
        raise MatgenInputError(f"Fractions must sum to 1, got {t.tolist()} (sum {t.sum():.3f}).")
    t = t / t.sum()
    low, high = np.asarray(rng["low"]), np.asarray(rng["high"])
    bad = [k for k in range(n) if t[k] < low[k] - 1e-6 or t[k] > high[k] + 1e-6]
    if bad:
        what = ("its trained range" if rng["conditional"]
                else f"+-{100 * rng['radius']:.0f} pp of the training image (calibration limit)")
        raise MatgenInputError(
            f"Requested fraction(s) {', '.join(f'phase {k} = {t[k]:.3f}' for k in bad)} outside "
            f"{what}. Supported: {span}.")
    return t


# ----------------------------------------------------------------------------------------------
# calibration: per-phase logit bias
# ----------------------------------------------------------------------------------------------

def _logp(probs: np.ndarray) -> np.ndarray:
    return np.log(np.maximum(np.asarray(probs, dtype=np.float32), _FLOOR))


def log_probs(probs: torch.Tensor) -> torch.Tensor:
    """``log p`` (floored at 1e-30) of the generator's softmax output, float32, in torch."""
    return torch.log(probs.float().clamp_min(_FLOOR))


def labels_from_probs(probs, bias=None) -> np.ndarray:
    """uint8 labels ``argmax(log p + bias)`` over the first axis of ``probs`` (C, *spatial).

    The one place a phase-fraction bias is applied (generation applies it to every tile through
    this function, so one pass, tiles and streams give the same labels). ``probs``: torch tensor or
    ndarray; ``bias``: per-phase logit bias or None (plain argmax).
    """
    p = torch.as_tensor(probs)
    if bias is None:
        out = torch.argmax(p, dim=0)
    else:
        b = torch.as_tensor(np.asarray(bias, np.float32), device=p.device).view(-1, *([1] * (p.dim() - 1)))
        out = torch.argmax(log_probs(p) + b, dim=0)
    return out.to(torch.uint8).cpu().numpy()


def argmax_fractions(logp: np.ndarray, bias=None) -> np.ndarray:
    """Fractions of argmax(logp + bias) over voxels; ``logp`` is (C, N)."""
    c = logp.shape[0]
    s = logp if bias is None else logp + np.asarray(bias, np.float32)[:, None]
    return np.bincount(np.argmax(s, axis=0), minlength=c)[:c] / s.shape[1]


def fit_bias_logp(logp: np.ndarray, targets, tol: float = TOLERANCE,
                  max_sweeps: int = 30) -> tuple[np.ndarray, np.ndarray, int]:
    """Per-phase logit bias so the argmax fractions of ``logp`` (C, N) meet ``targets``.

    Coordinate search (Gauss-Seidel): for each phase k in turn, given the other biases, the bias
    that makes k win on exactly a fraction t_k of the voxels is a quantile of
    ``max_{j != k}(log p_j + b_j) - log p_k`` (one ``np.quantile``: an exact 1-D solve). Sweeps
    repeat until every fraction is within ``tol`` (2 phases: one sweep). Order independent (only
    quantiles and counts), so the same voxels give the same bias however they were gathered. Returns (bias with mean 0, fractions
    of the sample with it, sweeps).
    """
    c = logp.shape[0]
    t = np.asarray(targets, dtype=np.float64)
    bias = np.zeros(c, np.float64)
    frac = argmax_fractions(logp)
    sweeps = 0
    while np.max(np.abs(frac - t)) > tol and sweeps < max_sweeps:
        sweeps += 1
        for k in range(c):
            others = np.delete(logp + bias[:, None].astype(np.float32), k, axis=0).max(axis=0)
            need = (others - logp[k]).astype(np.float64)  # phase k wins where bias_k > need
            if t[k] <= 0:
                bias[k] = need.min() - 1.0
            elif t[k] >= 1:
                bias[k] = need.max() + 1.0
            else:
                bias[k] = np.quantile(need, t[k])
        bias -= bias.mean()
        frac = argmax_fractions(logp, bias)
    return bias.astype(np.float32), frac, sweeps


def fit_bias(probs: np.ndarray, targets, tol: float = TOLERANCE, max_sweeps: int = 30,
             max_voxels: int = PROBE_VOXELS, seed: int = 0) -> tuple[np.ndarray, np.ndarray, int]:
    """:func:`fit_bias_logp` on softmax ``probs`` (C, ...), on at most ``max_voxels`` voxels
    (a seeded random subset)."""
    c = probs.shape[0]
    logp = _logp(probs).reshape(c, -1)
    if logp.shape[1] > max_voxels:
        idx = np.random.default_rng(seed).choice(logp.shape[1], max_voxels, replace=False)
        logp = logp[:, idx]
    return fit_bias_logp(logp, targets, tol=tol, max_sweeps=max_sweeps)


def apply_bias(probs: np.ndarray, bias) -> np.ndarray:
    """uint8 labels argmax(log p + bias) of ``probs`` (C, *spatial), in slabs to bound memory."""
    out = np.empty(probs.shape[1:], np.uint8)
    step = max(1, 2 ** 22 // max(1, int(np.prod(probs.shape[2:]))))
    for z in range(0, probs.shape[1], step):
        out[z:z + step] = labels_from_probs(np.ascontiguousarray(probs[:, z:z + step]), bias)
    return out


def calibrate(probs: np.ndarray, targets, tol: float = TOLERANCE, seed: int = 0) -> tuple[np.ndarray, dict]:
    """Labels of ``probs`` (an in-memory (C, ...) softmax array) whose phase fractions meet
    ``targets``, and what was done.

    Returns (uint8 labels, info) with info ``{"target", "before" (plain argmax fractions),
    "achieved" (fractions of the returned labels), "bias", "sweeps"}``. (Generation uses
    :class:`LatticeSample` instead, so tiles and streams get the same bias.)
    """
    c = probs.shape[0]
    before = np.bincount(np.argmax(probs, axis=0).ravel(), minlength=c)[:c] / probs[0].size
    bias, _, sweeps = fit_bias(probs, targets, tol=tol, seed=seed)
    labels = apply_bias(probs, bias)
    achieved = np.bincount(labels.ravel(), minlength=c)[:c] / labels.size
    return labels, {"target": [float(v) for v in targets], "before": [float(v) for v in before],
                    "achieved": [float(v) for v in achieved], "bias": [float(v) for v in bias],
                    "sweeps": int(sweeps)}


class LatticeSample:
    """``log p`` of a volume's voxels on a global lattice, gathered tile by tile.

    The voxels whose (z, y, x) are all multiples of ``stride`` (the smallest stride that keeps at
    most ``max_voxels`` of them; 1, i.e. every voxel, up to 128^3): a deterministic sample of the
    whole volume that does not depend on how the volume is cut into tiles. ``add(out, origin)``
    takes a tile's generator output (C, dz, dy, dx), torch) and its global origin; ``fit(targets)``
    returns the bias (:func:`fit_bias_logp`) and ``fractions()`` the generator-alone fractions
    of the sample.
    """

    def __init__(self, shape, max_voxels: int = LATTICE_VOXELS):
        n = int(np.prod(shape))
        self.stride = max(1, int(np.ceil((n / max_voxels) ** (1 / 3) - 1e-9)))
        while int(np.prod([-(-s // self.stride) for s in shape])) > max_voxels:
            self.stride += 1
        self.parts: list[np.ndarray] = []

    def add(self, out: torch.Tensor, origin) -> None:
        s = self.stride
        first = [(-o) % s for o in origin]
        part = out[:, first[0]::s, first[1]::s, first[2]::s]
        self.parts.append(log_probs(part).reshape(out.shape[0], -1).cpu().numpy())

    def logp(self) -> np.ndarray:
        return np.concatenate(self.parts, axis=1)

    def fractions(self) -> np.ndarray:
        return argmax_fractions(self.logp())

    def fit(self, targets) -> tuple[np.ndarray, int]:
        bias, _, sweeps = fit_bias_logp(self.logp(), targets)
        return bias, sweeps


def _central(a: np.ndarray, side: int) -> np.ndarray:
    sl = tuple(slice(max(0, (n - side) // 2), max(0, (n - side) // 2) + min(n, side)) for n in a.shape)
    return a[sl]


def morphology_change(reference: np.ndarray, labels: np.ndarray, n_phases: int,
                      side: int = MORPHOLOGY_SIDE) -> dict:
    """How far ``labels`` moved from ``reference`` (the unconditioned volume of the same seed).

    :func:`metrics.compare` on central crops of at most ``side`` voxels. Returns ``{"s2"`` (max
    over phases of the mean |delta radial S2|), ``"s2_per_phase"``, ``"surface_area_rel"``
    (per-phase relative change of specific surface area), ``"surface_area"`` (the largest),
    ``"shape"`` (the compared crop)}``.
    """
    from . import metrics

    ref, gen = _central(reference, side), _central(labels, side)
    res = metrics.compare(ref, gen, n_phases=n_phases, r_max=min(32, min(ref.shape) // 2))
    ssa = [r["rel_error"] for r in res["rows"] if r["metric"] in ("specific_surface_area",
                                                                  "specific_perimeter")]
    return {"s2": res["errors"]["s2"], "s2_per_phase": res["errors"]["s2_per_phase"],
            "surface_area_rel": ssa, "surface_area": res["errors"]["surface_area"],
            "shape": list(ref.shape)}


def path_change(reference: np.ndarray, labels: np.ndarray, n_phases: int) -> dict:
    """Paths through each phase in ``reference`` (the raw volume of the same seed) and in
    ``labels`` (after the bias): :func:`metrics.block_percolation` (27 overlapping blocks of half
    the side) and :func:`metrics.percolation` (the whole volume), per phase and axis (Z, Y, X).

    A bias that lowers a phase's fraction thins it everywhere and can cut the thin necks that carry
    its transport while its fraction, S2 and surface area barely move (docs/fractions.md). Returns
    ``{"shape", "blocks"`` (how many blocks: 27), ``"raw"`` / ``"adjusted"`` (block counts,
    lists (n_phases, 3)), ``"raw_percolating"`` / ``"adjusted_percolating"`` (whole-volume
    percolating fractions), ``"lost"``: one entry ``{"phase", "axis", "raw", "adjusted",
    "whole_path_lost"}`` per phase and axis that lost at least ``PATH_WARN_BLOCKS`` block paths
    or its path across the whole volume``}``.
    """
    from . import metrics
    from .metrics.connectivity import BLOCKS_PER_AXIS

    raw, adj = (metrics.block_percolation(v, n_phases) for v in (reference, labels))
    raw_p, adj_p = (metrics.percolation(v, n_phases) for v in (reference, labels))
    lost = []
    for p in range(n_phases):
        for a in range(raw.shape[1]):
            whole_lost = bool(raw_p[p, a] > 0 and adj_p[p, a] == 0)
            if raw[p, a] - adj[p, a] >= PATH_WARN_BLOCKS or whole_lost:
                lost.append({"phase": p, "axis": "ZYX"[a] if raw.shape[1] == 3 else str(a),
                             "raw": int(raw[p, a]), "adjusted": int(adj[p, a]),
                             "whole_path_lost": whole_lost})
    return {"shape": list(reference.shape), "blocks": BLOCKS_PER_AXIS ** reference.ndim,
            "raw": raw.tolist(), "adjusted": adj.tolist(),
            "raw_percolating": np.round(raw_p, 4).tolist(), "adjusted_percolating": np.round(adj_p, 4).tolist(),
            "lost": lost}


def bias_effect(reference: np.ndarray, labels: np.ndarray, n_phases: int) -> dict:
    """What the bias (and, for a conditional model, the conditioning) changed: ``{"morphology"``:
    :func:`morphology_change` (central ``MORPHOLOGY_SIDE``), ``"paths"``: :func:`path_change``}``
    of ``labels`` against ``reference``, the raw labels of the same seed (unconditioned: training
    fractions, no bias)."""
    return {"morphology": morphology_change(reference, labels, n_phases),
            "paths": path_change(reference, labels, n_phases)}


def sampled_bias_effect(trainer, shape, seed: int, targets, bias, periodic=(False, False, False)) -> dict:
    """:func:`bias_effect` on a volume of the same seed of at most ``PATH_SIDE`` a side, sampled
    raw and with the bias (for a volume that was not kept whole, or a conditional model, whose
    reference is sampled unconditioned)."""
    crop = tuple(min(int(s), PATH_SIDE) for s in shape)
    raw = trainer.sample(crop, seed=seed, periodic=periodic)
    ref = labels_from_probs(raw)
    if getattr(trainer, "conditional", False):
        gen = labels_from_probs(trainer.sample(crop, seed=seed, periodic=periodic, fractions=targets), bias)
    else:
        gen = labels_from_probs(raw, bias)
    return bias_effect(ref, gen, raw.shape[0])


def path_warnings(paths: dict | None, phase_names=None) -> list[str]:
    """One plain sentence per phase whose paths the bias cut (``paths``: :func:`path_change`)."""
    by_phase: dict[int, list] = {}
    for entry in (paths or {}).get("lost", []):
        by_phase.setdefault(entry["phase"], []).append(entry)
    out = []
    for p, entries in by_phase.items():
        name = phase_names[p] if phase_names and p < len(phase_names) else f"phase {p}"
        axes = " and ".join(e["axis"] for e in entries)
        counts = " and ".join(f"{e['adjusted']} (raw {e['raw']})" for e in entries)
        whole = [e["axis"] for e in entries if e["whole_path_lost"]]
        whole = f", and no longer crosses the whole volume along {' and '.join(whole)}" if whole else ""
        out.append(f"The bias cut paths through {name} along {axes}: it connects the faces of {counts} "
                   f"of {paths['blocks']} sub-volumes{whole}. Transport through it will be worse than "
                   f"in the raw volume: for simulation, use the raw volume, or compare both volumes' "
                   f"tortuosity (`matgen metrics FILE --tortuosity`).")
    return out


__all__ = ["CALIBRATION_LIMIT", "TOLERANCE", "training_fractions", "image_fractions", "supported_range",
           "expected_fluctuation", "check_targets", "fit_bias", "fit_bias_logp", "apply_bias",
           "labels_from_probs", "calibrate", "LatticeSample", "morphology_change", "path_change", "bias_effect",
           "sampled_bias_effect", "path_warnings", "PATH_SIDE",
           "argmax_fractions"]
