"""Home: what MatGen Studio does, the workflow, and where you are in it."""
import streamlit as st

from pages import _ui


def main() -> None:
    st.title("MatGen Studio")
    st.markdown(
        "Turn a **2D micrograph** of a material into as many **statistically equivalent** 2D images "
        "and **3D volumes** as you need. A generative network (SliceGAN) learns the texture of your "
        "image (phase fractions, particle sizes and shapes, how phases touch) and then builds new "
        "microstructures of any size that share those statistics."
    )

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
            st.markdown("No model trained yet. Start one on the **Train** page, or pick a run "
                        "trained with the `matgen` command there.")
        else:
            job = _ui.job_manager().get(run)
            if job is not None:
                snap = job.snapshot()
                st.markdown(f"`{run.name}`: {snap['status']}, step {snap['step']} / "
                            f"{snap['total_steps'] or '?'}")
            else:
                st.markdown(f"`{run.name}`")
        gen = st.session_state.get("generated")
        if gen is not None:
            st.markdown(f"Last generated: {' x '.join(map(str, gen.array.shape))} ({gen.kind})")


main()
