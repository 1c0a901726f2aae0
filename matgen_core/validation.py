"""3D validation: a generated volume against a true 3D structure of the same material.

A SliceGAN volume learned from one 2D slice can match that slice's statistics and still be wrong
in 3D (e.g. its phases less connected than the real ones). When a true 3D volume exists (a
tomogram, or a synthetic truth from :mod:`matgen_core.synthetic`), :func:`validate` measures both
the same way and reports, per phase and per axis, the generated figure, the true figure, the error,
and the *truth's own spread* (the same figure on two different crops of the truth), so a reader
sees what "equal" means at this sample size. ``matgen validate VOLUME --truth TRUE3D`` prints it.

Inputs are uint8 (or integer) label volumes ``(Z, Y, X)``, phases ``0..n-1`` (a few distinct grey
values such as 0/85/170 are mapped in sorted order, jointly for both volumes; when one
holds labels 0..n-1 and the other n grey codes, each in its own order). Lengths in voxels
("px") unless ``voxel_size`` is given.

What is measured, and where:

* **volume fraction**, **S2** per axis (distances ``r = 0..r_max`` voxels, non-periodic, see
  :func:`matgen_core.metrics.s2_all`), **specific surface area** per phase (face counting x 2/3,
  per unit total volume, :func:`matgen_core.metrics.surface_area`) and **TPB density** (3+ phases,
  TPB length per volume): on the whole volume and the whole truth (these are intensive figures).
  The S2 error is the **S2 L1 distance**: the mean over ``r = 0..r_max`` of ``|S2_vol - S2_truth|``,
  per phase and axis.
* **percolating fraction** per axis (fraction of the phase in face-connected clusters touching
  both faces across that axis) and **tortuosity factor** per phase and axis: both depend on the
  sample size, so both are measured on the *central cube of side* ``T = min(96, shortest side of
  the volume, the truth and the spread crops)`` of each sample: the same size everywhere.
* **Tortuosity solver** (fixed, so figures are comparable between runs): taufactor's SOR solver
  through :func:`matgen_core.metrics.tortuosity`, the phase conducting and the others insulating,
  Dirichlet faces across the axis, no-flux sides, convergence criterion ``conv_crit = 1e-2``
  (taufactor's default), at most ``max_iter = 10000`` iterations, on the CPU unless ``device``
  says otherwise. A phase that does not connect the two faces has no path: ``tau`` is reported as
  ``None`` ("no path"), never an error. Run time, measured with one torch thread on the
  project's shared 2-core machine (under load): 5-9 s per (phase, axis) at 96^3 for a 3-phase
  random field, 13-31 s for electrode.tiff's phases (400-1800 iterations); each is solved four
  times (volume, truth, two spread crops), so 3 phases x 3 axes take roughly 3-15 minutes.
  Restrict it with ``tortuosity_phases`` / ``tortuosity_axes``, switch it off with
  ``tortuosity=False``, or pass ``cache`` to measure a truth only once. The rest is quick: S2 of a
  256^3 truth takes ~8 s, of a 128^3 volume ~1 s; surface area and TPB well under a second.
* **Truth's spread**: two crops of the truth with the volume's shape (clipped to the truth's):
  at the truth's first corner and at its opposite corner, so they overlap as little as possible.
  When the truth is not larger than the volume along any axis, its two halves along its longest
  axis are used instead (half-size crops: a wider spread than at the volume's size; the report
  says which). Every figure above is measured on both crops in the same way; ``spread`` is
  ``|A - B|`` and ``rel_spread`` is ``|A - B| / mean(|A|, |B|)``; for S2 it is the L1 distance
  between the two crops' curves.

Errors: ``error = volume - truth`` (signed) and ``rel_error = error / truth``.
"""
from __future__ import annotations

import math
from typing import Callable, Iterable

import numpy as np

from .errors import MatgenInputError
from .metrics import (percolation, phase_fractions, s2_all, surface_area, tortuosity,
                      triple_phase_boundary_density)

TORTUOSITY_SIDE = 96          # side of the central cube for tortuosity and percolation
TORTUOSITY_CONV_CRIT = 1e-2   # taufactor convergence criterion
TORTUOSITY_MAX_ITER = 10000   # taufactor iteration budget
S2_R_MAX = 32                 # S2 distances 0..S2_R_MAX voxels (clipped to half the shortest side)
MAX_PHASES = 16
MIN_SIDE = 8
AXIS_NAMES = "ZYX"

# issue #13's bars for "right in 3D" (used by summary(): tortuosity and surface area of the phases
# with at least MAJOR_PHASE of the volume, fraction of every phase, S2 L1 of every phase and axis)
TARGETS = {"tortuosity_rel": 0.15, "surface_area_rel": 0.08, "fraction_pp": 2.0, "s2_l1": 0.01}
MAJOR_PHASE = 0.30

__all__ = ["validate", "format_table", "summary", "TARGETS", "TORTUOSITY_SIDE",
           "TORTUOSITY_CONV_CRIT", "TORTUOSITY_MAX_ITER", "S2_R_MAX"]


# ----------------------------------------------------------------------------------------------
# inputs
# ----------------------------------------------------------------------------------------------

def _check_array(a, name: str) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        raise MatgenInputError(f"The {name} must be a numpy array of phase labels, got "
                               f"{type(a).__name__}; read it with matgen_core.io.read_volume first.")
    if a.ndim != 3:
        raise MatgenInputError(f"The {name} has shape {a.shape}, but validation compares 3D volumes "
                               "(Z, Y, X); a 2D image is not a 3D truth (use `matgen metrics "
                               "--reference` to compare with a 2D image).")
    if min(a.shape) < MIN_SIDE:
        raise MatgenInputError(f"The {name} has shape {a.shape}; validation needs at least "
                               f"{MIN_SIDE} voxels along every axis.")
    if a.dtype == bool:
        return a.view(np.uint8)
    if a.dtype.kind == "f":
        if not np.all(np.isfinite(a)) or not np.array_equal(a, np.round(a)):
            raise MatgenInputError(f"The {name} holds non-integer values (grey levels?), not phase "
                                   "labels; segment it first (matgen_core.io.segment).")
        return a.astype(np.int64)
    if a.dtype.kind not in "iu":
        raise MatgenInputError(f"The {name} has dtype {a.dtype}; phase labels must be integers.")
    return a


def _values(a: np.ndarray) -> np.ndarray:
    if a.dtype == np.uint8:
        return np.flatnonzero(np.bincount(a.ravel(), minlength=256))
    return np.unique(a)


def _labels(volume, truth, n_phases) -> tuple[np.ndarray, np.ndarray, int]:
    """Both as uint8 labels 0..n-1 (jointly mapped) and the phase count."""
    vol, tru = _check_array(volume, "volume"), _check_array(truth, "truth")
    vv, tv = _values(vol), _values(tru)
    union = np.union1d(vv, tv)
    if len(tv) < 2:
        raise MatgenInputError(f"The truth holds a single phase (value {tv[0]}); check its "
                               "segmentation.")
    limit = MAX_PHASES if n_phases is None else int(n_phases)
    if n_phases is not None and not 2 <= limit <= MAX_PHASES:
        raise MatgenInputError(f"n_phases={n_phases}: give 2 to {MAX_PHASES} phases.")
    if union.min() >= 0 and union.max() < limit:
        n = int(n_phases) if n_phases is not None else int(union.max()) + 1
        return vol.astype(np.uint8, copy=False), tru.astype(np.uint8, copy=False), n
    if len(union) > limit:
        raise MatgenInputError(
            f"The volume and the truth hold {len(union)} distinct values together "
            f"({', '.join(str(v) for v in union[:8])}{', ...' if len(union) > 8 else ''}), more than "
            f"{limit} phases; both must be segmented into the same phases.")
    if len(vv) == len(tv) and any(np.array_equal(v, np.arange(len(v))) for v in (vv, tv)):
        # one file holds labels 0..n-1 (matgen's own output), the other the same number of grey
        # codes (e.g. 0/85/170): each in its own sorted order, not jointly (that would make 2n)
        n = int(n_phases) if n_phases is not None else len(tv)
        return (np.searchsorted(vv, vol).astype(np.uint8), np.searchsorted(tv, tru).astype(np.uint8), n)
    if len(vv) > len(tv):
        raise MatgenInputError(f"The volume has {len(vv)} phases but the truth only {len(tv)}; "
                               "compare volumes segmented into the same phases.")
    mapped = [np.searchsorted(union, a).astype(np.uint8) for a in (vol, tru)]
    n = int(n_phases) if n_phases is not None else len(union)
    return mapped[0], mapped[1], n


def parse_axes(axes) -> list[int]:
    """Axis indices of a 3D volume from "zyx", "z,x", [0, 2], ... (None: all three), sorted."""
    if axes is None:
        return [0, 1, 2]
    if isinstance(axes, str):
        axes = [a for a in axes.replace(",", "").strip()]
    out = []
    for a in axes:
        s = str(a).strip().upper()
        if s in ("Z", "Y", "X"):
            out.append(AXIS_NAMES.index(s))
        elif s in ("0", "1", "2"):
            out.append(int(s))
        else:
            raise MatgenInputError(f"Axis '{a}' is not an axis; use z, y, x (or 0, 1, 2).")
    return sorted(set(out))


def _phases(phases, n: int) -> list[int]:
    if phases is None:
        return list(range(n))
    out = []
    for p in phases:
        try:
            q = int(p)
        except (TypeError, ValueError):
            raise MatgenInputError(f"Phase '{p}' is not a phase number; use 0..{n - 1}.") from None
        if not 0 <= q < n:
            raise MatgenInputError(f"Phase {q} does not exist; the volumes have phases 0..{n - 1}.")
        out.append(q)
    return sorted(set(out))


# ----------------------------------------------------------------------------------------------
# measurement
# ----------------------------------------------------------------------------------------------

def _central(a: np.ndarray, side: int) -> np.ndarray:
    lo = [(s - side) // 2 for s in a.shape]
    return a[tuple(slice(l0, l0 + side) for l0 in lo)]


def _spread_crops(truth_shape, volume_shape) -> tuple[tuple, list, str]:
    """(crop shape, [corner A, corner B], description) of the truth's two spread crops."""
    crop = tuple(min(v, t) for v, t in zip(volume_shape, truth_shape))
    if any(t > c for t, c in zip(truth_shape, crop)):
        far = tuple(t - c for t, c in zip(truth_shape, crop))
        return crop, [(0, 0, 0), far], "two opposite-corner crops of the truth, the volume's shape"
    ax = int(np.argmax(truth_shape))
    half = list(truth_shape)
    half[ax] = truth_shape[ax] // 2
    far = [0, 0, 0]
    far[ax] = truth_shape[ax] - half[ax]
    return tuple(half), [(0, 0, 0), tuple(far)], (
        f"the truth's two halves along {AXIS_NAMES[ax]} (the truth is not larger than the volume: "
        "half-size crops spread more than crops of the volume's size would)")


def _measure(a: np.ndarray, n: int, r: int, side: int, tort_jobs, device, progress) -> dict:
    """Every statistic of one sample (uint8 labels 0..n-1)."""
    s2 = s2_all(a, n_phases=n, r_max=r)
    core = _central(a, side)
    out = {
        "fraction": phase_fractions(a, n_phases=n),
        "s2": np.stack([s2[p]["axes"] for p in range(n)]),            # (n, 3, r+1)
        "surface": np.asarray(surface_area(a, n_phases=n)["per_phase"], float),
        "tpb": triple_phase_boundary_density(a, n_phases=n)["value"] if n >= 3 else None,
        "percolation": percolation(core, n_phases=n),                  # (n, 3)
        "tortuosity": {},
    }
    for k, (p, ax) in enumerate(tort_jobs):
        if progress is not None:
            progress(k / max(len(tort_jobs), 1), f"tortuosity phase {p} axis {AXIS_NAMES[ax]}")
        res = tortuosity(core, p, ax, device=device, max_iter=TORTUOSITY_MAX_ITER,
                         conv_crit=TORTUOSITY_CONV_CRIT, n_phases=n)
        out["tortuosity"][(p, ax)] = res
    return out


def _rel(err, ref):
    if err is None or ref is None:
        return None
    if ref == 0:
        return 0.0 if err == 0 else None
    return float(err / abs(ref))


def _spread(a, b):
    if a is None or b is None:
        return None, None
    d = abs(a - b)
    m = (abs(a) + abs(b)) / 2
    return float(d), (float(d / m) if m > 0 else 0.0)


def _row(metric, phase, axis, vol, tru, a, b, unit, note=""):
    err = None if vol is None or tru is None else float(vol - tru)
    spread, rel_spread = _spread(a, b)
    return {"metric": metric, "phase": phase, "axis": None if axis is None else AXIS_NAMES[axis],
            "volume": None if vol is None else float(vol), "truth": None if tru is None else float(tru),
            "error": err, "rel_error": _rel(err, tru),
            "truth_a": None if a is None else float(a), "truth_b": None if b is None else float(b),
            "spread": spread, "rel_spread": rel_spread, "unit": unit, "note": note}


def _tau(res) -> float | None:
    return None if res is None or not math.isfinite(res["tau"]) else float(res["tau"])


def validate(volume, truth, n_phases: int | None = None, voxel_size: float | None = None,
             unit: str = "px", tortuosity: bool = True, tortuosity_phases: Iterable[int] | None = None,
             tortuosity_axes=None, spread: bool = True, r_max: int = S2_R_MAX,
             tortuosity_side: int = TORTUOSITY_SIDE, device="cpu",
             progress: Callable[[float, str], None] | None = None, cache: dict | None = None) -> dict:
    """Validate a generated 3D ``volume`` against a ``truth`` volume (see the module docstring).

    Args:
        volume, truth: label arrays (Z, Y, X), any sizes (at least 8 voxels a side).
        n_phases: number of phases (default: from the labels).
        voxel_size, unit: physical voxel edge; areas and lengths are then also per ``unit``.
        tortuosity: False skips the tortuosity solves (the slow part).
        tortuosity_phases: phases to solve (default all); tortuosity_axes: "zyx", [0, 2], ...
        spread: False skips the truth's two spread crops (about halves the time).
        r_max: largest S2 distance in voxels (clipped to half the shortest side).
        tortuosity_side: side of the central cube for tortuosity and percolation (fixed: 96).
        device: torch device of the tortuosity solver.
        progress: optional ``progress(fraction, message)``.
        cache: optional dict kept between calls that validate several volumes against one truth:
            the truth's (and its crops') measurements are stored in it and reused when the truth's
            content and every setting match (a benchmark then measures the truth once).

    Returns:
        a JSON-serialisable dict: ``volume_shape``, ``truth_shape``, ``n_phases``, ``voxel_size``,
        ``unit``, ``r_max``, ``tortuosity_side``, ``tortuosity_solver``, ``spread_crops`` (shape,
        corners, description; None when ``spread`` is False), ``rows`` (one per metric, phase
        and axis: ``metric`` in volume_fraction / s2_l1 / surface_area / tpb_density /
        percolating_fraction / tortuosity, ``phase`` (int or "all"), ``axis`` ("Z"/"Y"/"X" or
        None), ``volume``, ``truth``, ``error``, ``rel_error``, ``truth_a``, ``truth_b``,
        ``spread``, ``rel_spread``, ``unit``, ``note`` ("no path" / "not converged" / ""); for
        s2_l1 ``volume`` is the L1 distance to the truth and ``spread`` the one between the crops),
        ``s2`` (``r`` and per phase the (3, r+1) curves of volume and truth), and ``summary``
        (:func:`summary`).
    """
    vol, tru, n = _labels(volume, truth, n_phases)
    vs = None
    if voxel_size is not None:
        vs = float(voxel_size)
        if not (math.isfinite(vs) and vs > 0):
            raise MatgenInputError(f"voxel_size={voxel_size} must be a positive number.")
    t_axes = parse_axes(tortuosity_axes)
    t_phases = _phases(tortuosity_phases, n)
    samples = {"volume": vol, "truth": tru}
    crops = None
    if spread:
        shape, corners, desc = _spread_crops(tru.shape, vol.shape)
        for key, c in zip(("truth_a", "truth_b"), corners):
            samples[key] = tru[tuple(slice(c0, c0 + s) for c0, s in zip(c, shape))]
        crops = {"shape": list(shape), "corners": [list(c) for c in corners], "description": desc}
    side = int(min([int(tortuosity_side)] + [min(a.shape) for a in samples.values()]))
    r = int(max(1, min([int(r_max)] + [min(a.shape) // 2 for a in samples.values()])))
    jobs = [(p, ax) for p in t_phases for ax in t_axes] if tortuosity else []

    stats = {}
    truth_key = None
    if cache is not None:
        import hashlib

        digest = hashlib.blake2b(np.ascontiguousarray(tru).data, digest_size=16).hexdigest()
        truth_key = (digest, tru.shape, n, r, side, tuple(jobs), None if crops is None else
                     (tuple(crops["shape"]), tuple(map(tuple, crops["corners"]))))
    for i, (key, a) in enumerate(samples.items()):
        def sub(f, msg, _i=i, _key=key):
            if progress is not None:
                progress((_i + f) / len(samples), f"{_key}: {msg}")
        if key != "volume" and cache is not None and (truth_key, key) in cache:
            stats[key] = cache[(truth_key, key)]
            continue
        sub(0.0, "statistics")
        stats[key] = _measure(a, n, r, side, jobs, device, sub)
        if key != "volume" and cache is not None:
            cache[(truth_key, key)] = stats[key]
    if progress is not None:
        progress(1.0, "done")

    V, T = stats["volume"], stats["truth"]
    A, B = stats.get("truth_a"), stats.get("truth_b")
    scale = vs if vs else 1.0
    u = unit if vs else "px"
    rows = []
    for p in range(n):
        rows.append(_row("volume_fraction", p, None, V["fraction"][p], T["fraction"][p],
                         A and A["fraction"][p], B and B["fraction"][p], ""))
    for p in range(n):
        for ax in range(3):
            l1 = float(np.mean(np.abs(V["s2"][p, ax] - T["s2"][p, ax])))
            sp = float(np.mean(np.abs(A["s2"][p, ax] - B["s2"][p, ax]))) if A else None
            row = _row("s2_l1", p, ax, l1, None, None, None, "")
            row.update(spread=sp, rel_spread=None)
            rows.append(row)
    for p in range(n):
        rows.append(_row("surface_area", p, None, V["surface"][p] / scale, T["surface"][p] / scale,
                         A and A["surface"][p] / scale, B and B["surface"][p] / scale, f"1/{u}"))
    if n >= 3:
        rows.append(_row("tpb_density", "all", None, V["tpb"] / scale ** 2, T["tpb"] / scale ** 2,
                         A and A["tpb"] / scale ** 2, B and B["tpb"] / scale ** 2, f"1/{u}^2"))
    for p in range(n):
        for ax in range(3):
            rows.append(_row("percolating_fraction", p, ax, V["percolation"][p, ax],
                             T["percolation"][p, ax], A and A["percolation"][p, ax],
                             B and B["percolation"][p, ax], ""))
    for p, ax in jobs:
        taus = {k: _tau(s["tortuosity"][(p, ax)]) for k, s in stats.items()}
        notes = []
        for k in ("volume", "truth"):
            res = stats[k]["tortuosity"][(p, ax)]
            if taus[k] is None:
                notes.append(f"no path in {k}")
            elif not res["converged"]:
                notes.append(f"{k} not converged")
        rows.append(_row("tortuosity", p, ax, taus["volume"], taus["truth"], taus.get("truth_a"),
                         taus.get("truth_b"), "", "; ".join(notes)))

    report = {
        "volume_shape": list(vol.shape), "truth_shape": list(tru.shape), "n_phases": n,
        "voxel_size": vs, "unit": u, "r_max": r, "tortuosity_side": side,
        "tortuosity_solver": {"solver": "taufactor SOR", "conv_crit": TORTUOSITY_CONV_CRIT,
                              "max_iter": TORTUOSITY_MAX_ITER, "crop": f"central {side}^3",
                              "phases": [p for p in t_phases] if tortuosity else [],
                              "axes": [AXIS_NAMES[a] for a in t_axes] if tortuosity else []},
        "spread_crops": crops,
        "rows": rows,
        "s2": {"r": list(range(r + 1)),
               "phases": [{"volume": V["s2"][p].tolist(), "truth": T["s2"][p].tolist()}
                          for p in range(n)]},
    }
    report["summary"] = summary(report)
    return report


def summary(report: dict) -> dict:
    """The worst errors of a :func:`validate` report, against issue #13's bars (``TARGETS``).

    Returns ``{"fraction_pp", "s2_l1", "surface_area_rel", "tortuosity_rel"`` (worst absolute
    value; surface area and tortuosity over the phases with a true fraction >= 30 %; None when
    nothing was measured), ``"no_path"`` (rows where a path exists in only one of the two),
    ``"meets"`` (per bar: True / False / None), ``"spread"`` (the truth's own worst spread on
    the same four figures: crop A vs crop B)}.
    """
    rows = report["rows"]
    major = {r["phase"] for r in rows if r["metric"] == "volume_fraction" and r["truth"] >= MAJOR_PHASE}

    def worst(metric, key, phases=None, scale=1.0):
        vals = [abs(r[key]) * scale for r in rows if r["metric"] == metric and r[key] is not None
                and (phases is None or r["phase"] in phases)]
        return max(vals) if vals else None

    out = {
        "fraction_pp": worst("volume_fraction", "error", scale=100.0),
        "s2_l1": worst("s2_l1", "volume"),
        "surface_area_rel": worst("surface_area", "rel_error", major),
        "tortuosity_rel": worst("tortuosity", "rel_error", major),
        "no_path": [f"phase {r['phase']} axis {r['axis']}" for r in rows if r["metric"] == "tortuosity"
                    and (r["volume"] is None) != (r["truth"] is None)],
    }
    bars = {"fraction_pp": "fraction_pp", "s2_l1": "s2_l1", "surface_area_rel": "surface_area_rel",
            "tortuosity_rel": "tortuosity_rel"}
    out["meets"] = {k: (None if out[k] is None else bool(out[k] <= TARGETS[b])) for k, b in bars.items()}
    # the truth's own spread on the same figures (None without spread crops)
    out["spread"] = {"fraction_pp": worst("volume_fraction", "spread", scale=100.0),
                     "s2_l1": worst("s2_l1", "spread"),
                     "surface_area_rel": worst("surface_area", "rel_spread", major),
                     "tortuosity_rel": worst("tortuosity", "rel_spread", major)}
    if out["no_path"]:
        out["meets"]["tortuosity_rel"] = False
    return out


# ----------------------------------------------------------------------------------------------
# text table
# ----------------------------------------------------------------------------------------------

_LABELS = {"volume_fraction": "volume fraction", "s2_l1": "S2 L1 to truth",
           "surface_area": "surface area", "tpb_density": "TPB density",
           "percolating_fraction": "percolating fraction", "tortuosity": "tortuosity"}


def _num(v, width=9):
    if v is None:
        return "-".rjust(width)
    if v == 0:
        return "0".rjust(width)
    if abs(v) >= 1e4 or abs(v) < 1e-3:
        return f"{v:.2e}".rjust(width)
    return f"{v:.4f}".rjust(width) if abs(v) < 10 else f"{v:.2f}".rjust(width)


def _pct(v, width=8, pp=False):
    if v is None:
        return "-".rjust(width)
    return (f"{100 * v:+.2f}pp" if pp else f"{100 * v:+.1f}%").rjust(width)


def format_table(report: dict) -> str:
    """A readable text table of a :func:`validate` report (what ``matgen validate`` prints)."""
    lines = [f"volume {tuple(report['volume_shape'])} vs truth {tuple(report['truth_shape'])}, "
             f"{report['n_phases']} phases, lengths in {report['unit']}; S2 r = 0..{report['r_max']}; "
             f"percolation and tortuosity on the central {report['tortuosity_side']}^3 "
             f"(taufactor, conv_crit {report['tortuosity_solver']['conv_crit']}, "
             f"max_iter {report['tortuosity_solver']['max_iter']})"]
    crops = report.get("spread_crops")
    if crops:
        lines.append(f"truth spread: {crops['description']} {tuple(crops['shape'])} at "
                     f"{tuple(crops['corners'][0])} (A) and {tuple(crops['corners'][1])} (B)")
    head = (f"{'metric':<22}{'phase':>5}{'axis':>5}{'volume':>10}{'truth':>10}{'error':>10}"
            f"{'truth A':>10}{'truth B':>10}{'spread':>9}  note")
    lines += [head, "-" * len(head)]
    for r in report["rows"]:
        name = _LABELS[r["metric"]] + (f" [{r['unit']}]" if r["unit"] else "")
        pp = r["metric"] in ("volume_fraction", "percolating_fraction")
        axis = r["axis"] or "-"
        if r["metric"] == "s2_l1":
            err, spread = "-".rjust(10), _num(r["spread"], 9)
        else:
            err = (_pct(r["error"], 10, pp=True) if pp else _pct(r["rel_error"], 10))
            spread = _pct(r["spread"], 9, pp=True).replace("+", "") if pp else \
                (f"{100 * r['rel_spread']:.1f}%".rjust(9) if r["rel_spread"] is not None else "-".rjust(9))
        vol = "no path".rjust(10) if r["metric"] == "tortuosity" and r["volume"] is None else _num(r["volume"], 10)
        tru = "no path".rjust(10) if r["metric"] == "tortuosity" and r["truth"] is None else _num(r["truth"], 10)
        a = _num(r["truth_a"], 10)
        b = _num(r["truth_b"], 10)
        if r["metric"] == "tortuosity" and crops:
            a = "no path".rjust(10) if r["truth_a"] is None else a
            b = "no path".rjust(10) if r["truth_b"] is None else b
        lines.append(f"{name:<22}{str(r['phase']):>5}{axis:>5}{vol}{tru}{err}{a}{b}{spread}  {r['note']}")
    s = report["summary"]
    lines.append("")
    lines.append("error: volume vs truth (pp for fractions, % of the truth otherwise); spread: truth A "
                 "vs truth B (for S2: their L1 distance)")

    def fmt(k, v):
        if v is None:
            return f"{k} -"
        mark = {True: "ok", False: "MISSED", None: ""}[s["meets"][k]]
        return f"{k} {v:.3g} (bar {TARGETS[k]:g}, {mark})"

    lines.append("worst: " + "; ".join(fmt(k, s[k]) for k in ("fraction_pp", "s2_l1", "surface_area_rel",
                                                               "tortuosity_rel"))
                 + f"  [surface area and tortuosity: phases >= {int(100 * MAJOR_PHASE)}%]")
    if any(v is not None for v in s["spread"].values()):
        lines.append("truth's own worst spread: " + "; ".join(
            f"{k} {'-' if v is None else format(v, '.3g')}" for k, v in s["spread"].items()))
    if s["no_path"]:
        lines.append("a path exists in only one of volume / truth: " + ", ".join(s["no_path"]))
    return "\n".join(lines)
