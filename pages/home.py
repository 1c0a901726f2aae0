"""Home: what MatGen Studio does, the workflow, and where you are in it."""
import streamlit as st

from pages import _ui

_ui.require_frame("home")  # a page opened by its address before app.py ever ran


def main() -> None:
    st.title("MatGen Studio")
    st.markdown(
        "Turn a **2D micrograph** of a material into as many **statistically equivalent** 2D images "
        "and **3D volumes** as you need. A generative network (SliceGAN) learns the texture of your "
        "image (phase fractions, particle sizes and shapes, how phases touch) and then builds new "
        "microstructures of any size that share those statistics."
    )

    if _ui.current_run() is None and _ui.demo_available():
        demo()

    st.subheader("Workflow")
    steps = [
        ("1", "Dataset", "Drop a micrograph (PNG, JPEG or TIFF). Segmented images are used as they are; "
         "grayscale ones can be split into phases here.", _ui.PAGES["dataset"]),
        ("2", "Train", "Pick a model and start training. Loss curves and samples update live; you can "
         "leave the page and come back.", _ui.PAGES["train"]),
        ("3", "Generate & view", "Make a 3D volume of any size, turn it in 3D and scroll through slices.",
         _ui.PAGES["generate"]),
        ("4", "Analyze", "Compare generated and real: phase fractions, two-point correlation, surface "
         "area, percolation, tortuosity.", _ui.PAGES["analyze"]),
        ("5", "Export", "Download TIFF stacks (for ImageJ / Avizo / Dragonfly), NumPy arrays or VTK "
         "files (ParaView).", _ui.PAGES["export"]),
    ]
    cols = st.columns(len(steps))
    for col, (num, title, text, page) in zip(cols, steps):
        with col.container(border=True, height="stretch"):
            st.markdown(f"**{num}. {title}**")
            st.caption(text)
            st.page_link(page, label="Open", icon=":material/arrow_forward:")

    st.subheader("Where you are")
    left, right = st.columns(2)
    with left.container(border=True):
        st.markdown("**Current dataset**")
        ds = _ui.dataset()
        if ds:
            st.markdown(f"{st.session_state.get('dataset_name', '')}: {_ui.describe(ds[0])}")
            st.image(_ui.preview_image(ds[0]), width=260)
            if "bundled" in st.session_state.get("dataset_name", ""):
                st.info("The bundled example electrode is loaded, so you can go straight to "
                        "**Train**. Upload your own image on the **Dataset** page.",
                        icon=":material/lightbulb:")
                st.page_link(_ui.PAGES["train"], label="Train a model on the example",
                             icon=":material/play_arrow:")
        else:
            st.markdown("No dataset yet: upload a micrograph on the **Dataset** page.")
    with right.container(border=True):
        st.markdown("**Current model**")
        run = _ui.current_run()
        if run is None:
            st.markdown("No model of your own yet" + (" (the volume above is the bundled demo "
                        "model's)" if _ui.demo_available() else "") + ". Start one on the "
                        "**Train** page, or pick a run trained with the `matgen` command there.")
        else:
            from matgen_core import runs

            job = _ui.job_manager().get(run)
            info = runs.run_info(run)
            if job is not None:
                snap = job.snapshot()
                status, step, total = snap["status"], snap["step"], snap["total_steps"] or info.total_steps
            else:
                status, step, total = info.status, info.step, info.total_steps
            st.markdown(f"`{run.name}` ({info.model}): {status}, step {step} / {total or '?'}")
            count = len(runs.list_runs(_ui.runs_home()))
            if count > 1:
                st.caption(f"{count} runs in {_ui.runs_home()}; pick another on the Train page.")
            st.page_link(_ui.PAGES["train"], label="Follow it on Train", icon=":material/arrow_forward:")
        gen = st.session_state.get("generated")
        if gen is not None:
            meta = st.session_state.get("generated_meta") or {}
            st.markdown(f"Last generated: {' x '.join(map(str, gen.array.shape))} ({gen.kind}) "
                        f"from `{meta.get('run_name', '?')}`")


def demo() -> None:
    """The bundled demo model's 3D volume and statistics, shown before anything is trained.
    Made in the background once per server: until it is ready this redraws itself every second."""
    ready = _ui.demo_bundle() is not None

    @st.fragment(run_every=None if ready else 1.0)
    def demo_view() -> None:
        bundle = _ui.demo_bundle()
        if bundle is None:
            st.info("Generating a 3D volume with the demo model (a few seconds)...",
                    icon=":material/hourglass_top:")
            return
        if not ready:
            st.rerun()  # ready now: draw it in a full run (and stop polling)
        draw_demo(bundle)

    with st.container(border=True):
        st.subheader("What you get: a 3D volume from the 2D example (demo model)")
        demo_view()


def draw_demo(bundle: dict) -> None:
    if "error" in bundle:
        st.caption(f"The demo model could not be loaded ({bundle['error']}).")
        return
    from matgen_core import render

    info = _ui.demo_info()
    array, table = bundle["generated"]["array"], bundle["table"]
    n = len(table["generated"])
    left, right = st.columns([3, 2], gap="medium")
    with left:
        _ui.phase_legend(bundle["shown"])
        if bundle["html"] is not None:
            st.iframe(bundle["html"], height=480)
        else:
            st.warning(f"The 3D view could not be drawn on this machine ({bundle['view_error']}); "
                       f"the slice on the right shows the volume.")
        _ui.thin_phase_note(flags=bundle["flags"])
    with right:
        steps, minutes = info.get("trained_steps"), info.get("cpu_minutes")
        st.markdown(
            f"**Demo model (bundled)**: SliceGAN, `{info.get('preset', 'quick')}` preset, trained "
            f"on the example electrode below for {steps or '?'} steps ({minutes or '?'} CPU "
            f"minutes, `assets/make_demo_model.py`). Your own runs replace it here.")
        if (steps or 0) < 1000:
            st.caption(f"A short training ({steps or '?'} of the quick preset's 1500 steps): the "
                       f"structures are far from converged (blocky, repetitive). A full quick "
                       f"run on the **Train** page gives faithful volumes.")
        st.caption(f"{' x '.join(map(str, array.shape))} voxels, seed 0, phase 0 (pore) "
                   f"hidden. Drag to rotate, scroll to zoom.")
        import pandas as pd

        st.dataframe(pd.DataFrame({
            "phase": [f"phase {k}" for k in range(n)],
            "training image %": [round(100 * v, 1) for v in table["training"]],
            "demo volume %": [round(100 * v, 1) for v in table["generated"]]}),
            hide_index=True)
        st.caption("Phase fractions: the volume is the generator's own output (not calibrated).")
        st.image(render.to_display(array[array.shape[0] // 2], "nphase"),
                 caption="Middle XY slice of the volume (every voxel)", width=200)
        if st.button("Analyze and export this demo volume", icon=":material/monitoring:",
                     key="demo_use"):
            import uuid

            from matgen_core.generate import Generated

            data = bundle["generated"]["data"]
            gen = Generated(array=array, kind="nphase", phase_values=data["phase_values"],
                            voxel_size=data.get("voxel_size"), unit=data.get("unit", "px"),
                            model="slicegan", info=bundle["generated"].get("record") or {})
            st.session_state.generated = gen
            st.session_state.generated_meta = dict(run=str(_ui.DEMO_RUN), seed=0, demo=True,
                                                   run_name="demo model (bundled)",
                                                   token=uuid.uuid4().hex, seconds=0.0)
            st.switch_page(_ui.PAGES["analyze"])

main()
