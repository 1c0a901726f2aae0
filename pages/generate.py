"""Generate & view: sample a volume (or images) from a trained run; 3D view and slices."""
import time
import uuid
from pathlib import Path

import streamlit as st

from matgen_core import fractions, render, runs
from matgen_core.errors import MatgenInputError
from pages import _ui

_ui.require_frame("generate")  # a page opened by its address before app.py ever ran


def main() -> None:
    ss = st.session_state
    st.title("Generate & view")

    infos = [i for i in runs.list_runs(_ui.runs_home()) if runs.latest_checkpoint(i.path) is not None]
    if not infos:
        demo = (" The volume on **Home** comes from the bundled demo model, which is for a first look "
                "and is not listed here.") if _ui.demo_available() else ""
        st.info("No model of yours yet: train one on the **Train** page (a checkpoint is saved every "
                "50 steps and when training stops), then generate from it here." + demo,
                icon=":material/model_training:")
        st.page_link(_ui.PAGES["train"], label="Go to Train", icon=":material/arrow_forward:")
        return

    names = [i.name for i in infos]
    current = _ui.current_run()
    index = names.index(current.name) if current is not None and current.name in names else 0
    c1, c2 = st.columns([2, 1])
    pick = c1.selectbox("Model run", names, index=index, key="gen_run",
                        help="Runs with a saved checkpoint. A run still training uses its latest "
                             "checkpoint.")
    info = infos[names.index(pick)]
    run_dir = info.path
    if current is None or current.name != pick:
        _ui.set_run(run_dir)
    config = runs.load_config(run_dir)
    is_3d = config["model"] == "slicegan"
    mc = config["model_config"]
    c2.markdown(f"<br>{info.model}, step {info.step} / {info.total_steps}, {info.status}",
                unsafe_allow_html=True)

    side = int(mc.get("img_size", 64)) * 2
    rng, why = _ui.fraction_range(run_dir)
    fraction_controls(run_dir, rng, why, tuple(int(ss.get(k, side)) for k in ("gen_z", "gen_y", "gen_x")))

    with st.form("gen_form", border=True):
        if is_3d:
            st.markdown("**Volume size** (voxels; any size, generation is seamless)")
            cz, cy, cx, cs = st.columns(4)
            z = cz.number_input("Z (depth)", 8, 1024, side, step=16, key="gen_z")
            y = cy.number_input("Y (height)", 8, 1024, side, step=16, key="gen_y")
            x = cx.number_input("X (width)", 8, 1024, side, step=16, key="gen_x")
            seed = cs.number_input("Seed", 0, 2**31 - 1, key="gen_seed",  # a restored link sets it
                                   help="Same run + size + seed = the same volume.")
        else:
            cc, cs = st.columns(2)
            count = cc.slider("Number of images", 1, 32, 8, key="gen_count")
            seed = cs.number_input("Seed", 0, 2**31 - 1, key="gen_seed")
        go = st.form_submit_button("Generate", type="primary", icon=":material/auto_awesome:")

    if go:
        from matgen_core import generate as gen_mod

        kwargs = dict(seed=int(seed), device="auto")
        if is_3d:
            kwargs["shape"] = (int(z), int(y), int(x))
        else:
            kwargs["count"] = int(count)
        wanted = requested_fractions(run_dir, rng)
        if is_3d and wanted is None and rng is not None:
            kwargs["policy"] = ss.get("gen_policy", "raw")
        if wanted is not None:
            try:
                kwargs["fractions"] = fractions.check_targets(wanted, rng)
            except MatgenInputError as err:
                _ui.error_box(err)
                return
        bar = st.progress(0.0, text="Generating...")
        kwargs["progress"] = lambda f, *a: bar.progress(min(1.0, float(f)), text="Generating...")
        t0 = time.perf_counter()
        try:
            with st.spinner("Generating..."):
                result = gen_mod.generate(run_dir, **kwargs)
        except MatgenInputError as err:
            bar.empty()
            _ui.error_box(err)
            return
        bar.empty()
        ss.generated = result
        ss.generated_meta = dict(run=str(run_dir), run_name=run_dir.name, seed=int(seed),
                                 token=uuid.uuid4().hex, seconds=time.perf_counter() - t0)
        if is_3d and result.kind == "nphase":
            ss.generated_meta["spread"] = _ui.fraction_spread(str(run_dir), kwargs["shape"])

    gen = ss.get("generated")
    if gen is None:
        st.caption("Generated data appears here.")
    else:
        show_generated(gen, ss.get("generated_meta") or {}, run_dir)


def show_generated(gen, meta: dict, run_dir) -> None:
    if meta.get("run") != str(run_dir):
        st.caption(f"Showing the last generated data, from run `{meta.get('run_name')}`.")
    arr = gen.array
    kind = gen.kind
    vol = gen.model == "slicegan"
    n = (len(gen.phase_values) or int(arr.max()) + 1) if kind == "nphase" else 0
    size = " x ".join(map(str, arr.shape[:3])) + " voxels" if vol else f"{arr.shape[0]} images"
    st.success(f"Generated {size} in {meta.get('seconds', 0):.1f} s (seed {meta.get('seed')}). "
               f"Next: **Analyze** or **Export**.", icon=":material/check_circle:")
    if not vol:
        st.subheader("Samples")
        cols = st.columns(4)
        for k, a in enumerate(arr):
            cols[k % 4].image(render.to_display(a, kind), caption=f"sample {k + 1}", width="stretch")
        return

    info = getattr(gen, "info", None) or {}
    for warning in fractions.path_warnings(info.get("paths")):
        st.warning(warning, icon=":material/warning:")
    view_col, info_col = st.columns([3, 1])
    with info_col:
        show_generation_info(info)
    with view_col:
        view3d, slices = st.tabs(["3D view", "Slices (full resolution)"])
    if info.get("achieved_fractions") is not None:
        show_fraction_report(info, meta.get("spread"))
        with view3d:
            view_3d(arr, kind, n, meta.get("token", ""))
        with slices:
            view_slices(arr, kind, n)


@st.fragment
def view_3d(arr, kind: str, n: int, token: str) -> None:
    """The interactive 3D view; a fragment, so its widgets redraw only the view."""
    visible, opacity = list(range(n)), 1.0
    c1, c2, c3 = st.columns([3, 2, 1], vertical_alignment="bottom")
    if kind == "nphase":
        visible = c1.pills("Phases shown", list(range(n)), selection_mode="multi",
                           default=list(range(1, n)) if n > 1 else [0],
                           format_func=lambda p: f"phase {p}", key="view_phases",
                           help="Phase 0 (often pore space) starts hidden so the solid phases "
                                "can be seen.")
        opacity = c2.slider("Opacity", 0.1, 1.0, 1.0, 0.05, key="view_opacity")
    show = c3.toggle("3D view", value=True, key="view_on",
                     help="Drag to rotate, scroll to zoom. Surfaces are drawn on a reduced grid; "
                          "the Slices tab shows every voxel.")
    if not show:
        return
    if kind == "nphase" and not visible:
        st.caption("Select at least one phase to show.")
        return
    with st.spinner("Building the 3D view..."):
        surfaces = None
        if kind == "nphase":
            surfaces = _ui.surfaces_for(token, arr, visible)
            _ui.phase_legend(visible)
            if all(surfaces[p].n_points == 0 for p in visible):
                st.caption("These phases are too fine (or absent) to draw as surfaces; see the "
                           "Slices tab.")
            else:
                _ui.thin_phase_note(surfaces)  # thin phases: drawn thickened, said on the view
        try:
            plotter = render.plotter_for(arr, visible, opacity, kind=kind, surfaces=surfaces,
                                         window_size=(800, 560))
            _ui.show_scene(plotter, height=560)
            plotter.close()
        except Exception as err:  # no OpenGL/EGL on this machine: the slices still work
            st.warning(f"The 3D view could not be drawn on this machine ({type(err).__name__}: "
                       f"{err}). On a headless Linux server install the EGL libraries "
                       f"(apt-get install -y libegl1 libgl1-mesa-dri); the Slices tab shows the "
                       f"volume meanwhile.")


@st.fragment
def view_slices(arr, kind: str, n: int) -> None:
    """Full-resolution orthogonal slices; a fragment, so moving a slider redraws only them."""
    zmax, ymax, xmax = arr.shape[:3]
    c1, c2, c3 = st.columns(3)
    iz = c1.slider("Z slice", 0, zmax - 1, zmax // 2, key="sl_z")
    iy = c2.slider("Y slice", 0, ymax - 1, ymax // 2, key="sl_y")
    ix = c3.slider("X slice", 0, xmax - 1, xmax // 2, key="sl_x")
    st.plotly_chart(render.slices_figure(arr, kind, (iz, iy, ix)), key="slices_fig")
    if kind == "nphase":
        _ui.phase_legend(range(n))


def requested_fractions(run_dir, rng: dict | None) -> list[float] | None:
    """What the sliders ask for (fraction units; the last phase is the rest), None when off."""
    ss = st.session_state
    if rng is None or not ss.get("gen_frac_on"):
        return None
    keys = _ui.fraction_keys(run_dir, rng["n_phases"])
    vals = [float(ss.get(key, round(100 * rng["center"][k], 1))) / 100 for k, key in enumerate(keys)]
    return vals + [1.0 - sum(vals)]


@st.fragment
def fraction_controls(run_dir, rng: dict | None, why: str, shape: tuple) -> None:
    """Toggle + one slider per phase (the last one is the rest); a fragment, so moving a slider
    does not redraw the 3D view."""
    with st.container(border=True):
        st.markdown("**Phase fractions**")
        if rng is None:
            st.caption(f"Steering phase fractions is not available for this run: {why}")
            return
        n = rng["n_phases"]
        on = st.toggle("Steer phase fractions", key="gen_frac_on",
                       help=f"Ask for other phase fractions than the training image's (e.g. more "
                            f"pore space) while keeping the learned texture. Method: "
                            f"{rng['method']}; supported: ±{100 * rng['radius']:.0f} pp per phase "
                            f"around the training fractions.")
        center = " / ".join(f"{100 * c:.1f}" for c in rng["center"])
        if not on:
            st.radio("Labels", ["raw", "calibrated"], key="gen_policy", horizontal=True,
                     format_func={"raw": "raw generator (default)",
                                  "calibrated": f"calibrated to the training fractions ({center} %)"}.get,
                     help="raw: the generator's own labels (argmax, no bias), what the model has "
                          "learned. calibrated: a per-phase logit bias, fitted on a lattice of voxels "
                          "over the whole volume, makes the fractions match the training image's. "
                          "Either way the same seed and size give the same volume, in one pass or "
                          "in tiles; the file records which it was.")
            return
        spread = _ui.fraction_spread(str(run_dir), tuple(shape))
        keys = _ui.fraction_keys(run_dir, n)

        def reset() -> None:
            for k, key in enumerate(keys):
                st.session_state[key] = round(100 * rng["center"][k], 1)

        cols = st.columns(n)
        for k in range(n - 1):
            lo, hi, c = (round(100 * rng[f][k], 1) for f in ("low", "high", "center"))
            with cols[k]:
                st.markdown(f"{_ui.phase_chip(k)}**phase {k}**", unsafe_allow_html=True)
                st.slider(f"phase {k} (%)", lo, hi, c, 0.1, format="%.1f %%", key=keys[k],
                          label_visibility="collapsed",
                          help=f"Supported {lo:.1f}-{hi:.1f} %; training image {c:.1f} %.")
                st.caption(f"supported {lo:.1f}-{hi:.1f} % · expected spread at this size "
                           f"±{100 * spread[k]:.1f} pp")
        wanted = requested_fractions(run_dir, rng)
        last, k = wanted[-1], n - 1
        lo, hi, c = (100 * rng[f][k] for f in ("low", "high", "center"))
        with cols[-1]:
            st.markdown(f"{_ui.phase_chip(k)}**phase {k}** (the rest)", unsafe_allow_html=True)
            delta = round(100 * last - c, 1) + 0.0  # + 0.0: no "-0.0"
            st.metric(f"phase {k} (the rest)", f"{100 * last:.1f} %", label_visibility="collapsed",
                      delta=f"{delta:+.1f} pp vs training" if delta else "as in training",
                      delta_color="off", delta_arrow="auto" if delta else "off")
            st.caption(f"supported {lo:.1f}-{hi:.1f} % · expected spread at this size "
                       f"±{100 * spread[k]:.1f} pp")
        if not lo - 0.05 <= 100 * last <= hi + 0.05:
            st.warning(f"Phase {k} would be {100 * last:.1f} %, outside its supported range "
                       f"{lo:.1f}-{hi:.1f} %: move the other sliders.", icon=":material/warning:")
        c1, c2 = st.columns([3, 1], vertical_alignment="center")
        c1.caption(f"Volume {' x '.join(map(str, shape))} (the size below). The expected spread is how "
                   f"much real samples of this size differ from each other; the generated volume "
                   f"is steered to the target by a per-phase logit bias fitted on the whole volume "
                   f"(the same in one pass or in tiles).")
        c2.button("Reset to training", key="gen_frac_reset", on_click=reset,
                  icon=":material/restart_alt:")


def show_generation_info(info: dict) -> None:
    """How the volume was made (the record stored in its file): policy, seed, step, bias."""
    if not info:
        return
    policy = info.get("policy", "raw")
    what = {"raw": "the generator's own labels (argmax, no bias)",
            "calibrated": "a per-phase logit bias meets the training image's fractions",
            "steered": "a per-phase logit bias meets the requested fractions"}
    with st.container(border=True):
        st.markdown(f"**How it was made**  \nlabel policy **{policy}**: {what.get(policy, '')}")
        recipe = f" (preset {info['recipe']})" if info.get("recipe") else ""
        lines = [f"run `{info.get('run_name')}`{recipe}, step {info.get('step')}, seed {info.get('seed')}",
                 f"{' x '.join(map(str, info.get('shape', [])))} voxels, {info.get('computed', '')}"]
        if info.get("bias") is not None:
            lines.append("bias " + " / ".join(f"{v:+.3f}" for v in info["bias"]) + " (logit units, per phase)")
        if info.get("generator_fractions") is not None:
            lines.append("generator alone " + " / ".join(f"{100 * v:.1f}" for v in info["generator_fractions"]) + " %")
        st.caption("  \n".join(lines) + "  \nSaved files (Export, CLI) carry this record.")


def show_fraction_report(info: dict, spread) -> None:
    """Target / training, generator alone, achieved fractions, and the morphology change."""
    import pandas as pd

    n = len(info["achieved_fractions"])
    target = info.get("target_fractions") or info.get("training_fractions") or [None] * n
    morph = info.get("morphology") or {}
    ssa = list(morph.get("surface_area_rel") or [None] * n)
    spread = spread or [None] * n
    rows = [{"phase": f"phase {k}",
             "target %": None if target[k] is None else 100 * target[k],
             "generator alone %": 100 * info["generator_fractions"][k],
             "achieved %": 100 * info["achieved_fractions"][k],
             "expected spread (± pp)": None if spread[k] is None else 100 * spread[k],
             "S2 change": (morph.get("s2_per_phase") or [None] * n)[k],
             "surface-area change %": None if k >= len(ssa) or ssa[k] is None else 100 * ssa[k]}
            for k in range(n)]
    if info.get("policy") == "raw":  # no target: compare with the training image's
        for r, k in zip(rows, range(n)):
            r.pop("target %")
            tr = info.get("training_fractions")
            r["training %"] = None if not tr else 100 * tr[k]
    if not morph:
        rows = [{k: v for k, v in r.items() if k not in ("S2 change", "surface-area change %")}
                for r in rows]
    if all(v is None for v in spread):
        rows = [{k: v for k, v in r.items() if k != "expected spread (± pp)"} for r in rows]
    with st.container(border=True):
        st.markdown(f"**Phase fractions** (label policy {info.get('policy', 'raw')})")
        _ui.phase_legend(range(n))
        st.dataframe(pd.DataFrame(rows), hide_index=True,
                     column_config={c: st.column_config.NumberColumn(format="%.1f") for c in
                                    ("target %", "training %", "generator alone %", "achieved %",
                                     "expected spread (± pp)", "surface-area change %")}
                     | {"S2 change": st.column_config.NumberColumn(format="%.3f")})
        if morph:
            m1, m2 = st.columns(2)
            m1.metric("S2 change (largest)", f"{morph['s2']:.3f}")
            sa = morph.get("surface_area")
            m2.metric("Surface-area change (largest)", "-" if sa is None else f"{100 * sa:.0f} %")
            st.caption(
                "Compared with the raw volume of the same seed (central "
                f"{' x '.join(map(str, morph.get('shape', [])))} voxels): S2 change is the mean "
                "absolute change of each phase's two-point correlation (0 = same texture), "
                "surface-area change the relative change of its specific surface area. Some "
                "change is expected (more of a phase changes its interfaces); large values mean "
                "the model is pushed beyond the fractions it learned.")
        paths = info.get("paths")
        if paths:
            n_blocks = paths["blocks"]
            st.caption(
                "Paths through each phase (Z / Y / X): in how many of "
                f"{n_blocks} overlapping sub-volumes of half the side the phase connects two opposite "
                f"faces ({' x '.join(map(str, paths['shape']))} voxels of the same seed). "
                + "; ".join(f"phase {k}: raw {'/'.join(map(str, r))}, this volume {'/'.join(map(str, a))}"
                            for k, (r, a) in enumerate(zip(paths["raw"], paths["adjusted"])))
                + ". Fewer paths than raw means the bias cut thin connections: transport through "
                  "that phase suffers.")


main()
