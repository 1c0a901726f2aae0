"""Analyze: generated vs training statistics; tortuosity on demand."""
import numpy as np
import streamlit as st

from matgen_core import render, runs
from matgen_core.errors import MatgenInputError
from pages import _ui

_ui.require_frame("analyze")  # a page opened by its address before app.py ever ran


def main() -> None:
    ss = st.session_state
    st.title("Analyze")
    st.caption("Does the generated microstructure have the statistics of the training image? "
               "Training values come from the 2D training image; generated values from the "
               "generated data (for a volume: its 2D slices in all three directions, so like is "
               "compared with like).")

    found = _ui.generated_or_hint("a volume")
    if found is None:
        return
    gen, meta = found
    if gen.kind != "nphase":
        st.info("These statistics need segmented data (phases). This run was trained on "
                f"{_ui.KIND_NAMES.get(gen.kind, gen.kind)} images; segment the image on the Dataset "
                "page and train again to analyze phases.", icon=":material/info:")
        return

    run_dir = meta.get("run")
    try:
        refs = runs.load_images(run_dir)
    except Exception:
        refs = []
    if not refs:
        st.warning("The training images of this run are missing; nothing to compare with.")
        return

    from matgen_core import quality

    arr = gen.array
    is_volume = arr.ndim == 3 and gen.model == "slicegan"
    data, sample_note = quality.bounded_sample(arr) if is_volume else (arr[0], None)
    n = max(len(gen.phase_values or []), int(np.max(refs[0])) + 1, int(np.max(data)) + 1)
    vs, unit = gen.voxel_size, gen.unit or "px"
    info = getattr(gen, "info", None) or {}
    policy = info.get("policy", "raw")
    calibrated = policy != "raw"
    st.markdown(f"Generated: **{' x '.join(map(str, arr.shape))}** from run `{meta.get('run_name')}` "
                f"(seed {meta.get('seed')}, step {info.get('step', '?')}, label policy **{policy}**); "
                f"training image: **{' x '.join(map(str, refs[0].shape))}**"
                + ("" if is_volume else "; statistics of the first sample"))
    if sample_note:
        st.caption("Big volume: " + sample_note + ".")
    if len(refs) > 1:
        st.caption("Anisotropic run: compared with the first training image.")

    @st.cache_data(show_spinner="Computing statistics...", max_entries=4)
    def analysis(token: str, _ref, _gen, n_phases, voxel_size, unit):
        from matgen_core import metrics

        result = metrics.compare(_ref, _gen, n_phases=n_phases, voxel_size=voxel_size, unit=unit)
        profiles = metrics.fraction_profiles(_gen, n_phases)
        perc = metrics.percolation(_gen, n_phases)
        return result, profiles, perc

    try:
        result, profiles, perc = analysis(meta.get("token", ""), refs[0], data, n, vs, unit)
    except MatgenInputError as err:
        _ui.error_box(err)
        return

    # --- the headline: a verdict on the generator from what calibration cannot fake ---
    alone = info.get("generator_fractions")
    judged = quality.verdict(result, generator_fractions=alone, step=info.get("step"))
    show = {"good": st.success, "fair": st.warning, "poor": st.error}[judged["level"]]
    show(f"**{judged['headline']}** {judged['advice']}",
         icon={"good": ":material/check_circle:", "fair": ":material/info:",
               "poor": ":material/warning:"}[judged["level"]])
    if judged["checks"]:
        import pandas as pd  # noqa: E402

        checks = pd.DataFrame([{"statistic": c["label"], "difference": round(c["value"], 4),
                                "good below": c["good"], "poor above": c["poor"], "verdict": c["level"]}
                               for c in judged["checks"]])
        st.dataframe(checks.style.map(_colour, subset=["verdict"]), hide_index=True, key="verdict_table")
    if calibrated:
        train_fr = info.get("training_fractions") or []
        st.caption(
            f"This volume's phase fractions were **set by {policy} labelling** (a per-phase logit "
            f"bias toward {_pct(info.get('target_fractions'))} %), so they match by construction "
            f"and are not a quality signal; the verdict uses the generator-alone fractions "
            f"{_pct(alone)} % (training image {_pct(train_fr)} %).")

    import pandas as pd  # noqa: E402

    NAMES = {"phase_fraction": "phase fraction", "specific_surface_area": "surface area / volume",
             "specific_perimeter": "perimeter / area", "interface_area": "interface area / volume",
             "tpb_density": "triple phase boundary density", "percolation": "percolating fraction",
             "integral_range": "integral range", "isotropy": "anisotropy index"}

    tab_table, tab_s2, tab_prof, tab_tau = st.tabs(
        ["Summary", "Two-point correlation", "Fraction profiles", "Tortuosity"])

    with tab_table:
        rows = result["rows"]
        slicewise = result.get("mode") == "2d-slices"
        names = dict(NAMES, percolation="percolating fraction (2D, slice-wise)" if slicewise
                     else "percolating fraction")
        table = pd.DataFrame([{
            "metric": names.get(r["metric"], r["metric"])
            + (" (set by calibration)" if calibrated and r["metric"] == "phase_fraction" else ""),
            "phase": str(r["phase"]),
            "training": r["reference"], "generated": r["generated"],
            "difference": _difference(r),
            "unit": r["unit"],
        } for r in rows])
        levels = [quality.row_level(r, calibrated) for r in rows]
        styled = table.style.apply(lambda col: [_colour(lv) for lv in levels], subset=["difference"])
        st.dataframe(styled, hide_index=True, height=36 * (len(table) + 1) + 4, column_config={
            "training": st.column_config.NumberColumn(format="%.4g"),
            "generated": st.column_config.NumberColumn(format="%.4g")})
        st.caption("Differences coloured green (good), amber (fair), red (poor); grey: set by "
                   "calibration." + (" Percolating fraction here is **2D, slice-wise**: the mean "
                                     "over slices of the fraction of each phase connected across "
                                     "the slice, comparable with the 2D training image." if slicewise else ""))
        err = result["errors"]
        c1, c2, c3 = st.columns(3)
        c1.metric("Worst phase-fraction difference" + (" (calibrated)" if calibrated else ""),
                  f"{err['phase_fraction']:.3f}")
        c2.metric("S2 mean difference (worst phase)", f"{err['s2']:.4f}")
        if err.get("surface_area") is not None:
            c3.metric("Worst surface-area difference", f"{100 * err['surface_area']:.1f} %")
        if is_volume:
            st.markdown("**3D percolation of the generated volume** (fraction of each phase connected "
                        "across the whole volume, per direction; not comparable with the 2D "
                        "slice-wise figure above, which is why they differ)")
            st.dataframe(pd.DataFrame(np.asarray(perc), columns=["Z", "Y", "X"][:np.asarray(perc).shape[1]],
                                      index=[f"phase {p}" for p in range(n)]).round(3))

    with tab_s2:
        st.plotly_chart(render.compare_s2_figure(result), key="cmp_s2")
        st.caption("Thick lines: generated, one per direction; thin dashed: training image. Matching "
                   "curves mean matching feature sizes and spacing.")

    with tab_prof:
        ref_fr = [r["reference"] for r in rows if r["metric"] == "phase_fraction"]
        st.plotly_chart(render.profiles_figure(profiles, ref_fr), key="cmp_prof")
        st.caption("Phase fraction of every slice along each direction; dashed: training image. "
                   "Flat profiles mean no drift or edge artefacts across the volume.")

    with tab_tau:
        if not is_volume:
            st.caption("Tortuosity is computed on 3D volumes.")
        else:
            st.markdown("Tortuosity factor of one phase for transport along one direction, or along "
                        "all three to compare them (finite-difference diffusion solve; seconds to "
                        "minutes per direction).")
            c1, c2, c3 = st.columns([1, 1, 1], vertical_alignment="bottom")
            phase = c1.selectbox("Conducting phase", list(range(n)), index=min(1, n - 1),
                                 format_func=lambda p: f"phase {p}", key="tau_phase")
            axis = c2.selectbox("Direction", [0, 1, 2, 3], key="tau_axis",
                                format_func=lambda a: "ZYX"[a] if a < 3 else "all three (compare)")
            run_tau = c3.button("Compute tortuosity", key="tau_btn", icon=":material/calculate:")
            axes = [0, 1, 2] if axis == 3 else [int(axis)]
            keys = [(meta.get("token"), int(phase), a) for a in axes]
            if run_tau:
                from matgen_core import metrics

                bar = st.progress(0.0, text="Solving...")
                try:
                    for i, (a, key) in enumerate(zip(axes, keys)):
                        if key in ss.get("tau_results", {}):
                            continue  # this volume, phase and direction: solved already
                        res = metrics.tortuosity(
                            data, int(phase), a, n_phases=n,
                            progress=lambda f, it, i=i, a=a: bar.progress(
                                min(1.0, (i + float(f)) / len(axes)), text=f"Solving along {'ZYX'[a]}... iteration {it}"))
                        ss.setdefault("tau_results", {})[key] = res
                except MatgenInputError as err:
                    _ui.error_box(err)
                bar.empty()
            found = [ss.get("tau_results", {}).get(k) for k in keys]
            if len(axes) == 1 and found[0] is not None:
                res = found[0]
                tau = res["tau"]
                c1, c2, c3 = st.columns(3)
                c1.metric("Tortuosity factor", _tau_text(tau))
                c2.metric("Relative effective diffusivity", f"{res['D_eff']:.4f}")
                c3.metric("Phase fraction", f"{res['phase_fraction']:.3f}")
                if not res.get("converged", True):
                    st.warning("The solver stopped before converging; the value is approximate.")
            elif len(axes) == 3 and all(r is not None for r in found):
                st.dataframe([{"direction": "ZYX"[a], "tortuosity factor": _tau_text(r["tau"]),
                               "relative effective diffusivity": round(r["D_eff"], 4),
                               "converged": "yes" if r.get("converged", True) else "no (approximate)"}
                              for a, r in zip(axes, found)], hide_index=True, key="tau_table")
                taus = [r["tau"] for r in found]
                if all(t is not None and np.isfinite(t) for t in taus):
                    st.caption(f"Largest / smallest: {max(taus) / min(taus):.2f}x. An isotropic material "
                               "conducts alike along all three directions up to sampling (the test cathode's "
                               "own 128^3 crops: up to 1.8x). A SliceGAN trained on one image assumes "
                               "isotropy, yet its volumes often conduct worst along one axis "
                               "(docs/fidelity.md): simulate along several directions.")
                else:
                    st.warning("The phase does not connect the volume's opposite faces along at least one "
                               "direction: transport through it is blocked there.")


def _tau_text(tau) -> str:
    return "infinite (not connected)" if tau is None or not np.isfinite(tau) else f"{tau:.3f}"


_COLOURS = {"good": "#d8f0d8", "fair": "#fbe7b5", "poor": "#f7c6c6", "set": "#e6e6e6"}


def _colour(level) -> str:
    return f"background-color: {_COLOURS[level]}" if level in _COLOURS else ""


def _pct(values) -> str:
    return "?" if not values else " / ".join(f"{100 * v:.1f}" for v in values)


def _difference(row: dict) -> str:
    """Generated minus training: absolute for fractions (0..1), relative for everything else."""
    if row["unit"] == "" and row["metric"] in ("phase_fraction", "percolation"):
        return f"{row['generated'] - row['reference']:+.3f}"
    if row["rel_error"] is None:
        return "-"
    sign = "+" if row["generated"] >= row["reference"] else "-"
    return f"{sign}{100 * row['rel_error']:.1f} %"


main()
