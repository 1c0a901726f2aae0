"""Export: download the generated data as TIFF stack, NumPy array, VTK image or PNGs."""
import streamlit as st

from pages import _ui

_ui.require_frame("export")  # a page opened by its address before app.py ever ran


def main() -> None:
    st.title("Export")

    found = _ui.generated_or_hint("something")
    if found is None:
        return
    gen, meta = found

    arr = gen.array
    is_volume = gen.model == "slicegan"
    base = f"{meta.get('run_name', 'matgen')}_seed{meta.get('seed', 0)}"
    shape = " x ".join(map(str, arr.shape))
    st.markdown(f"Generated data: **{shape}** ({_ui.KIND_NAMES.get(gen.kind, gen.kind)}) from run "
                f"`{meta.get('run_name')}`, seed {meta.get('seed')}"
                + (f", voxel size {gen.voxel_size:g} {gen.unit}" if gen.voxel_size else ""))
    if gen.kind == "nphase":
        st.caption("Phases are stored as labels 0, 1, 2, ... (in the order of the Dataset page); the "
                   "TIFF also records the voxel size and the phase table.")

    FORMATS = [
        ("tiff", "TIFF stack", ".tif", "image/tiff",
         "Opens in ImageJ / Fiji, Avizo, Dragonfly, DREAM3D; one page per Z slice."),
        ("npy", "NumPy array", ".npy", "application/octet-stream", "For Python: numpy.load(...)."),
        ("vti", "VTK image", ".vti", "application/xml", "Opens in ParaView."),
    ]
    if not is_volume:
        FORMATS = FORMATS[:2] + [("png", "PNG images (zip)", ".zip", "application/zip",
                                  "One PNG per generated image.")]

    cols = st.columns(len(FORMATS))
    for col, (fmt, label, ext, mime, help_text) in zip(cols, FORMATS):
        with col.container(border=True):
            st.markdown(f"**{label}**")
            st.caption(help_text)
            st.download_button(
                f"Download {ext}", data=_ui.export_callable(gen, fmt), file_name=base + ext,
                mime=mime, key=f"dl_{fmt}", icon=":material/download:", on_click="ignore",
                type="primary" if fmt == "tiff" else "secondary")
            if fmt == "npy" and getattr(gen, "info", None):
                st.download_button(
                    "Record .npy.json", data=_ui.export_callable(gen, "record"),
                    file_name=base + ".npy.json", mime="application/json", key="dl_record",
                    icon=":material/description:", on_click="ignore",
                    help="How the volume was made (label policy, bias, fractions, seed, run): keep "
                         "it next to the .npy; matgen_core.io.read_generation_info reads it. The "
                         "TIFF and VTI files carry it inside.")

    if not is_volume:
        from matgen_core import render

        st.subheader("Preview")
        cols = st.columns(4)
        for k, a in enumerate(arr[:8]):
            cols[k % 4].image(render.to_display(a, gen.kind), caption=f"sample {k + 1}", width="stretch")


main()
