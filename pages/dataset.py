"""Dataset: upload micrograph(s), segment grayscale ones, set the voxel size, crop, inspect."""
import streamlit as st

from matgen_core import io
from matgen_core.errors import MatgenInputError
from pages import _ui

_ui.require_frame("dataset")  # a page opened by its address before app.py ever ran


REPLACE = "replaces the dataset"
ADD = "adds a plane (anisotropic: 2nd = XZ, 3rd = YZ)"


def _bundled(ss) -> bool:
    return ss.get("raw_name") == _ui.EXAMPLE_NAME


def main() -> None:
    ss = st.session_state
    st.title("Dataset")
    st.caption("The image(s) the model learns from. One image for an isotropic material (the same "
               "in every direction); two or three images of perpendicular planes for an anisotropic "
               "one (SliceGAN only).")

    mode = st.radio(
        "A dropped image", [REPLACE, ADD], horizontal=True, key="upload_mode",
        help="Isotropic material (the same in every direction): one image. Anisotropic: 2-3 "
             "images of perpendicular planes, for SliceGAN: the 1st is the XY plane (top view, "
             "perpendicular to Z), the 2nd the XZ plane (perpendicular to Y; with 2 images, both "
             "side planes), the 3rd the YZ plane (perpendicular to X).")
    have = len(ss.get("raw") or [])
    if mode == ADD and have:
        nxt = _ui.plane_names(min(have + 1, 3))[min(have, 2)]
        st.caption(f"The next image is added as image {have + 1}: "
                   + (f"**{nxt}**." if have < 3 else "the dataset already has 3 planes (XY, XZ, "
                      "YZ); switch to 'replaces the dataset' to start again."))
    files = st.file_uploader(
        "Drop a micrograph here: PNG, JPEG or TIFF (several at once: the planes XY, XZ, YZ in "
        "that order)", type=_ui.UPLOAD_TYPES, accept_multiple_files=True, key="upload",
    )

    # Only newly dropped files count (the uploader keeps earlier ones in its list): they replace
    # the dataset, or are added as further planes in 'add' mode. An empty uploader (e.g. after
    # visiting another page) keeps what was loaded before.
    seen = ss.setdefault("upload_seen", set())
    new_files = [f for f in files or [] if f.file_id not in seen]
    if new_files:
        keep_raws = list(ss.get("raw") or []) if mode == ADD and not _bundled(ss) else []
        total = len(keep_raws) + len(new_files)
        try:
            if total > 3:
                raise MatgenInputError(
                    f"That makes {total} images; SliceGAN trains on 1 image, or 2-3 images of "
                    f"perpendicular planes (XY, XZ, YZ). Switch to 'replaces the dataset' to "
                    f"start again.")
            raws = [_ui.read_upload(f.name, f.getvalue()) for f in new_files]
        except MatgenInputError as err:
            _ui.error_box(err)  # keep showing the dataset loaded before
        else:
            ss.raw = keep_raws + raws
            names = [m.source for m in ss.raw]
            ss.raw_name = ", ".join(names)
            _ui.reset_keys("ds_")
        seen.update(f.file_id for f in new_files)

    raws = ss.get("raw") or []
    if not raws:
        st.info("No image loaded yet: drop a micrograph above.", icon=":material/upload:")
        return

    if _bundled(ss):
        st.info("Showing the bundled example electrode. Drop your own image above to replace it.",
                icon=":material/lightbulb:")

    first = raws[0]

    keep = _ui.keep

    st.subheader("What was detected")
    planes = _ui.plane_names(len(raws))
    for k, (m, plane) in enumerate(zip(raws, planes)):
        st.markdown(f"- {'image ' + str(k + 1) + ', ' if len(raws) > 1 else ''}**{m.source}**: "
                    f"{_ui.describe(m)}" + (f"; used for **{plane}**" if plane else ""))
    if len(raws) > 1:
        st.caption("Anisotropic training (SliceGAN): the 1st image is the XY plane (top view), the "
                   "2nd the XZ plane (with two images: both side planes), the 3rd the YZ plane. "
                   "To start again with one image, choose 'replaces the dataset' and drop it.")
    kinds = {m.kind for m in raws}
    if len(kinds) > 1:
        _ui.error_box(MatgenInputError("The images are of different kinds (" + ", ".join(sorted(kinds))
                                       + "); upload images of the same kind (all segmented or all "
                                       "grayscale)."))
        return

    UNITS = ["px", "nm", "um", "mm"]
    col_set, col_view = st.columns([1, 2], gap="large")
    with col_set:
        st.subheader("Settings")
        segment = False
        n_phases = None
        if first.kind == "gray":
            use = st.radio("Train on", ["phases (segment the image)", "grayscale values"],
                           help="Segmenting into phases gives phase fractions, surface areas, "
                                "tortuosity and 3D surfaces; grayscale keeps the raw intensities.",
                           **keep("ds_segment"))
            segment = use.startswith("phases")
            if segment:
                n_phases = st.slider("Number of phases", 2, 5, 2, help="Thresholds are chosen "
                                     "automatically (multi-Otsu); the preview updates live.",
                                     **keep("ds_nphases"))
        elif first.kind == "color":
            st.caption("Colour image: the model learns the RGB values.")

        unit0 = getattr(first, "unit", None) or "px"
        c1, c2 = st.columns([2, 1])
        voxel = c1.number_input("Pixel size", min_value=0.0,
                                value=float(first.voxel_size or 1.0), format="%.4g",
                                help="Physical size of one pixel of the file (before downsampling). "
                                     "Leave the unit 'px' if unknown.", **keep("ds_voxel"))
        unit = c2.selectbox("Unit", UNITS, index=UNITS.index(unit0) if unit0 in UNITS else 0,
                            **keep("ds_unit"))
        factor = st.select_slider("Downsample", options=[1, 2, 3, 4], value=1,
                                  help="Features should be a few to a few tens of pixels wide: the "
                                       "model sees 64 x 64 windows.", **keep("ds_factor"))
        with st.expander("Crop (remove a scale bar or a border)"):
            c1, c2 = st.columns(2)
            top = c1.number_input("Top", 0, 4000, 0, **keep("ds_top"))
            bottom = c2.number_input("Bottom", 0, 4000, 0, **keep("ds_bottom"))
            left = c1.number_input("Left", 0, 4000, 0, **keep("ds_left"))
            right = c2.number_input("Right", 0, 4000, 0, **keep("ds_right"))

    # Build the dataset the model will train on, live: what you see is what you train.
    try:
        prepared = io.prepare_dataset(raws, n_phases if segment else None, voxel, unit,
                                       (top, bottom, left, right), factor)
        _ui.set_dataset(prepared, ss.get("raw_name", ""))
    except MatgenInputError as err:
        _ui.error_box(err)
        return

    with col_view:
        st.subheader("Training image" + ("s" if len(prepared) > 1 else ""))
        if segment:
            st.caption("Left: original. Right: phases found by multi-Otsu thresholding.")
            for raw, m in zip(raws, prepared):
                a, b = st.columns(2)
                shown = io.crop_downsample(raw, top, bottom, left, right, factor)
                a.image(_ui.preview_image(shown), width="stretch")
                b.image(_ui.preview_image(m), width="stretch")
        else:
            cols = st.columns(len(prepared))
            for col, m in zip(cols, prepared):
                col.image(_ui.preview_image(m), caption=m.source + (" (middle slice)" if m.ndim == 3
                                                                    else ""), width="stretch")
        st.success(f"This is the current dataset: {_ui.describe(prepared[0])}. Next: **Train**.",
                   icon=":material/check_circle:")
        st.page_link(_ui.PAGES["train"], label="Go to Train", icon=":material/arrow_forward:")

    st.subheader("Statistics")
    if prepared[0].kind != "nphase":
        st.caption("Phase statistics need a segmented image; choose 'phases' above to see them.")
    else:
        import pandas as pd

        from matgen_core import metrics

        @st.cache_data(show_spinner="Computing statistics...", max_entries=8)
        def stats(labels, n):
            return metrics.phase_fractions(labels, n), metrics.s2_all(labels, n, r_max=64)

        for m in prepared:
            fractions, s2 = stats(m.labels, m.n_phases)
            left_col, right_col = st.columns([1, 2])
            with left_col:
                st.markdown(f"**{m.source}**")
                table = pd.DataFrame({"phase": list(range(m.n_phases)),
                                      "value in file": [_ui.fmt_value(v) for v in (m.phase_values or range(m.n_phases))],
                                      "fraction": [round(float(f), 4) for f in fractions]})
                st.dataframe(table, hide_index=True)
            with right_col:
                from matgen_core import render

                st.plotly_chart(render.s2_figure(s2, voxel_size=m.voxel_size, unit=m.unit),
                                key=f"s2_{m.source}")


main()
