"""Reports: every metric of one image (:func:`summarize`), a generated sample against its
reference (:func:`compare`), and a readable text table of either (:func:`format_table`)."""
from __future__ import annotations

from typing import Callable, Iterable

import numpy as np

from ..errors import MatgenInputError
from ._common import (MetricCancelled, _check_r_max, _check_voxel_size, _clean, _pairs, _prepare,
                      _present_values, _unit_strings)
from .composition import _fractions, _profiles
from .connectivity import _percolation, _slice_percolation
from .correlation import _isotropy_from_s2, _plane, _radial, _axis_line, _s2_blocks, _s2_from_blocks
from .representativeness import (_covariance_blocks, _integral_range_block, _integral_ranges,
                                 _std_from_range)
from .surfaces import _face_counts, _phase_bits, _surface_result, _tpb_counts, _tpb_result
from .transport import tortuosity as _tortuosity


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
