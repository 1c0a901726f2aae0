"""Is the generator any good? A verdict from statistics that phase-fraction calibration cannot fake.

A per-phase logit bias (fractions.py) can make any volume's phase fractions match the training
image's, so matching fractions say nothing about a calibrated volume. What the bias cannot fix is
the texture: the two-point correlation (S2, feature size and spacing), the surface area per
volume, the triple-phase-boundary density, the tortuosity, and the fractions the generator makes
*alone* (the raw argmax, recorded by ``generate`` for every policy). :func:`verdict` grades each
against the training image and gives a headline; :func:`bounded_sample` keeps the analysis of big
volumes within a fixed memory.
"""
from __future__ import annotations

import numpy as np

ANALYZE_SIDE = 160  # statistics of a volume are computed on a central crop of at most this side

# (metric, what it is, good below, poor above): differences against the training image
CHECKS = (
    ("s2", "S2 mean difference (worst phase)", 0.02, 0.05),
    ("surface_area", "surface area per volume (worst phase, relative)", 0.15, 0.40),
    ("tpb", "triple-phase-boundary density (relative)", 0.25, 0.60),
    ("generator_fractions", "generator-alone phase fractions (worst phase, absolute)", 0.03, 0.08),
    ("tortuosity", "tortuosity factor (relative)", 0.15, 0.40),
)
LEVELS = ("good", "fair", "poor")


def bounded_sample(volume: np.ndarray, side: int | None = None) -> tuple[np.ndarray, str | None]:
    """A central crop of ``volume`` (Z, Y, X) of at most ``side`` (default ``ANALYZE_SIDE``)
    voxels per axis, and a note saying so (None when the volume is within it). A view: no copy of
    the big volume is made (a memory-mapped file stays on disk), so the statistics' peak memory is
    that of a ``side``^3 volume whatever the input size."""
    side = ANALYZE_SIDE if side is None else int(side)
    volume = np.asarray(volume) if not isinstance(volume, np.ndarray) else volume
    if volume.ndim != 3 or max(volume.shape) <= side:
        return volume, None
    sl = tuple(slice((n - min(n, side)) // 2, (n - min(n, side)) // 2 + min(n, side)) for n in volume.shape)
    crop = volume[sl]
    note = (f"statistics computed on the central {' x '.join(map(str, crop.shape))} voxels of the "
            f"{' x '.join(map(str, volume.shape))} volume (a bounded sample: memory stays that of a "
            f"{side}^3 volume)")
    return crop, note


def _grade(value: float, good: float, poor: float) -> str:
    return "good" if value <= good else "poor" if value > poor else "fair"


def verdict(compare_result: dict, generator_fractions=None, training_fractions=None,
            tortuosity_rel: float | None = None, step: int | None = None) -> dict:
    """Grade a generator against its training image.

    ``compare_result``: ``metrics.compare(training, generated)``; ``generator_fractions``: the
    generator-alone fractions (the record's ``generator_fractions``; default: the generated
    data's own, right for a raw volume); ``training_fractions``: the training image's (default:
    from ``compare_result``); ``tortuosity_rel``: relative tortuosity difference when computed;
    ``step``: the run's training step (quoted in the advice).

    Returns ``{"level": "good"|"fair"|"poor", "headline", "advice", "checks": [{"key", "label",
    "value", "good", "poor", "level"}]}``; the level is the worst check's. Phase fractions of a
    calibrated / steered volume are not graded (the bias sets them).
    """
    errors = compare_result.get("errors", {})
    rows = compare_result.get("rows", [])
    if training_fractions is None or generator_fractions is None:
        ref = [r["reference"] for r in rows if r["metric"] == "phase_fraction"]
        gen = [r["generated"] for r in rows if r["metric"] == "phase_fraction"]
        training_fractions = ref if training_fractions is None else training_fractions
        generator_fractions = gen if generator_fractions is None else generator_fractions
    values = {
        "s2": errors.get("s2"),
        "surface_area": errors.get("surface_area"),
        "tpb": errors.get("tpb"),
        "generator_fractions": (float(np.max(np.abs(np.subtract(generator_fractions, training_fractions))))
                                if len(generator_fractions) == len(training_fractions) and len(training_fractions)
                                else None),
        "tortuosity": tortuosity_rel,
    }
    checks = []
    for key, label, good, poor in CHECKS:
        v = values.get(key)
        if v is None or not np.isfinite(v):
            continue
        checks.append({"key": key, "label": label, "value": float(v), "good": good, "poor": poor,
                       "level": _grade(float(v), good, poor)})
    level = max((c["level"] for c in checks), key=LEVELS.index, default="fair")
    bad = [c for c in checks if c["level"] == "poor"]
    at = "" if step is None else f" (step {step})"
    if level == "poor":
        what = "; ".join(f"{c['label']} {_fmt(c)}" for c in bad)
        headline = (f"Under-trained: the generator does not reproduce the training image yet{at}. "
                    f"Far off: {what}.")
        advice = ("Train longer (Resume on the Train page) or with the paper preset on a GPU; "
                  "calibrating the phase fractions would hide this, not fix it.")
    elif level == "fair":
        off = [c for c in checks if c["level"] == "fair"]
        headline = (f"Fair: the generator is close to the training image but not there{at}; "
                    + "; ".join(f"{c['label']} {_fmt(c)}" for c in off) + ".")
        advice = "More training usually closes the remaining differences."
    else:
        headline = f"Good: the generator reproduces the training image's statistics{at}."
        advice = ""
    return {"level": level, "headline": headline, "advice": advice, "checks": checks}


def _fmt(check: dict) -> str:
    v = check["value"]
    if check["key"] in ("surface_area", "tpb", "tortuosity"):
        return f"{100 * v:.0f} % off"
    if check["key"] == "generator_fractions":
        return f"{100 * v:.1f} pp off"
    return f"{v:.3f}"


__all__ = ["ANALYZE_SIDE", "CHECKS", "bounded_sample", "verdict", "row_level"]


def row_level(row: dict, calibrated: bool = False) -> str | None:
    """Colour of one ``metrics.compare`` row: "good" / "fair" / "poor", "set" for phase fractions
    a calibration set (not a quality signal), None for rows that are not graded."""
    metric = row.get("metric")
    if metric == "phase_fraction":
        if calibrated:
            return "set"
        value, (good, poor) = row.get("abs_error"), (0.03, 0.08)
    elif metric in ("specific_surface_area", "specific_perimeter", "interface_area"):
        value, (good, poor) = row.get("rel_error"), (0.15, 0.40)
    elif metric == "tpb_density":
        value, (good, poor) = row.get("rel_error"), (0.25, 0.60)
    else:
        return None
    return None if value is None else _grade(float(value), good, poor)
