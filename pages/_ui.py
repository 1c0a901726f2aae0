"""Shared pieces of the Streamlit pages: session state, caches, the job registry, small widgets.

Not a page itself (``st.navigation`` in app.py lists the pages). Everything that is not UI lives
in ``matgen_core``; this module only wires it to Streamlit.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
from pathlib import Path

import numpy as np
import streamlit as st

from matgen_core.errors import MatgenInputError
from matgen_core.jobs import JobManager

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "assets" / "example_electrode.png"
UPLOAD_TYPES = ["png", "jpg", "jpeg", "tif", "tiff"]

PAGES = {
    "home": "pages/home.py",
    "dataset": "pages/dataset.py",
    "train": "pages/train.py",
    "generate": "pages/generate.py",
    "analyze": "pages/analyze.py",
    "export": "pages/export.py",
}

KIND_NAMES = {"nphase": "segmented phases", "gray": "grayscale", "color": "colour"}


# ------------------------------------------------------------------------------------------
# server-wide resources


@st.cache_resource
def job_manager() -> JobManager:
    """One registry of training jobs per server: jobs survive page reloads and navigation."""
    return JobManager(max_concurrent=int(os.environ.get("MATGEN_MAX_JOBS", "1")))


def runs_home() -> Path:
    from matgen_core.runs import matgen_home

    return matgen_home()


# ------------------------------------------------------------------------------------------
# reading micrographs


@st.cache_data(show_spinner=False, max_entries=16)
def _read_bytes(name: str, digest: str, data: bytes):
    from matgen_core import io

    suffix = Path(name).suffix.lower() or ".png"
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / (Path(name).stem[:60] + suffix)
        path.write_bytes(data)
        m = io.read_micrograph(path)
    return dataclasses.replace(m, source=name) if hasattr(m, "source") else m


def read_upload(name: str, data: bytes):
    """Read an uploaded file; raises MatgenInputError with a user-facing message when bad."""
    if not data:
        raise MatgenInputError(f"{name} is empty; upload the image file itself.")
    try:
        return _read_bytes(name, hashlib.sha1(data).hexdigest(), data)
    except MatgenInputError:
        raise
    except Exception as err:  # the reader should say what is wrong; never show a traceback
        raise MatgenInputError(f"Could not read {name} as an image ({type(err).__name__}: {err}); "
                               f"upload a PNG, JPEG or TIFF micrograph.") from err


@st.cache_data(show_spinner=False)
def example_micrograph():
    from matgen_core import io

    return io.read_micrograph(EXAMPLE)


# ------------------------------------------------------------------------------------------
# session state: the current dataset, run and generated volume


def init_state() -> None:
    """Called by app.py on every run: a newcomer starts with the bundled example loaded."""
    ss = st.session_state
    if "raw" not in ss:
        ss.raw = []
        ss.raw_name = ""
        ss.dataset = None
        ss.dataset_name = ""
        ss.ds_settings = {}
        if EXAMPLE.exists():
            try:
                ss.raw = [example_micrograph()]
                ss.raw_name = "example electrode (bundled)"
                set_dataset(list(ss.raw), ss.raw_name)
            except Exception:  # the app must open even if the example cannot be read
                pass
    ss.setdefault("run_dir", None)
    ss.setdefault("generated", None)


def set_dataset(micrographs, name: str) -> None:
    st.session_state.dataset = list(micrographs) if micrographs else None
    st.session_state.dataset_name = name


def dataset():
    return st.session_state.get("dataset")


def current_run() -> Path | None:
    rd = st.session_state.get("run_dir")
    return Path(rd) if rd else None


def set_run(run_dir) -> None:
    st.session_state.run_dir = str(run_dir) if run_dir else None


def array_of(m) -> np.ndarray:
    """The pixels of a Micrograph: labels for segmented data, the image otherwise."""
    return m.labels if m.kind == "nphase" else m.image


def describe(m) -> str:
    a = array_of(m)
    size = " x ".join(str(s) for s in a.shape[: (3 if a.ndim == 3 and m.kind != "color" else 2)])
    what = KIND_NAMES.get(m.kind, m.kind)
    if m.kind == "nphase":
        what += f" ({m.n_phases} phases)"
    vs = f", voxel {m.voxel_size:g} {m.unit}" if getattr(m, "voxel_size", None) else ""
    return f"{size} px, {what}{vs}"


def reset_keys(prefix: str) -> None:
    """Forget the widget values whose key starts with ``prefix`` (e.g. after a new upload)."""
    for key in [k for k in st.session_state.keys() if str(k).startswith(prefix)]:
        del st.session_state[key]


# ------------------------------------------------------------------------------------------
# export


def export_bytes(gen, fmt: str) -> bytes:
    """The generated data as a file in ``fmt`` ("tiff", "npy", "vti", "png" = zip of PNGs)."""
    import inspect
    import io as _bio
    import zipfile

    from matgen_core import io

    extra = dict(voxel_size=gen.voxel_size, unit=gen.unit, phase_values=gen.phase_values,
                 kind=gen.kind, generation=getattr(gen, "info", None) or None)
    params = inspect.signature(io.to_bytes).parameters
    if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        extra = {k: v for k, v in extra.items() if k in params}
    if fmt == "png":
        buf = _bio.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
            for k, image in enumerate(gen.array):
                zf.writestr(f"sample_{k + 1:03d}.png", io.to_bytes(image, "png", **extra))
        return buf.getvalue()
    return io.to_bytes(gen.array, fmt, **extra)


def export_callable(gen, fmt: str):
    """A zero-argument function for st.download_button: the file is only made when clicked."""
    return lambda: export_bytes(gen, fmt)


# ------------------------------------------------------------------------------------------
# small widgets


def keep(key: str) -> dict:
    """Widget kwargs so a setting survives switching pages (Streamlit >= 1.5x: persist_state)."""
    return dict(key=key, persist_state="session") if _PERSIST else dict(key=key)


def _persist_supported() -> bool:
    import inspect

    return "persist_state" in inspect.signature(st.slider).parameters


_PERSIST = _persist_supported()


def plane_names(count: int) -> list[str]:
    """Which slices of the volume each training image stands for (SliceGAN's convention)."""
    return {1: [""], 2: ["the XY plane", "both side planes (XZ and YZ)"],
            3: ["the XY plane", "the XZ plane", "the YZ plane"]}.get(count, [""] * count)


def preview_image(m):
    """A Micrograph as an image for st.image: phase colours; the middle slice of a volume."""
    from matgen_core import render

    a = array_of(m)
    if m.ndim == 3:
        a = a[a.shape[0] // 2]
    return render.to_display(a, m.kind)


def phase_legend(phases) -> None:
    """Coloured chips naming the phases, in the colours of the plots and the 3D view."""
    chips = "".join(f"{phase_chip(p)}<span style='margin-right:1.2em'>phase {p}</span>"
                    for p in phases)
    st.markdown(chips, unsafe_allow_html=True)


def phase_chip(p) -> str:
    """HTML: a small square in phase ``p``'s colour (as in the plots and the 3D view)."""
    from matgen_core import render

    return (f"<span style='display:inline-block;width:0.9em;height:0.9em;margin-right:0.3em;"
            f"background:{render.phase_color(p)};border:1px solid #888;vertical-align:middle'></span>")


@st.cache_data(show_spinner=False, max_entries=32)
def _fraction_range(run_dir: str, config_mtime: float):
    from matgen_core import fractions

    try:
        return fractions.supported_range(run_dir), ""
    except MatgenInputError as err:
        return None, str(err)


def fraction_range(run_dir) -> tuple[dict | None, str]:
    """(fractions.supported_range(run_dir), "") or (None, why phase fractions cannot be steered)."""
    cfg = Path(run_dir) / "config.json"
    return _fraction_range(str(run_dir), cfg.stat().st_mtime if cfg.exists() else 0.0)


@st.cache_data(show_spinner=False, max_entries=64)
def fraction_spread(run_dir: str, shape: tuple) -> list[float]:
    """fractions.expected_fluctuation(run_dir, shape) (std per phase, fraction units), cached."""
    from matgen_core import fractions

    return [float(v) for v in fractions.expected_fluctuation(run_dir, tuple(shape))]


def surfaces_for(token: str, volume, phases) -> dict:
    """3D surfaces of the generated volume, computed once per phase and kept in the session."""
    from matgen_core import render

    cache = st.session_state.get("_surfaces")
    if cache is None or cache[0] != token:
        cache = (token, {})
        st.session_state["_surfaces"] = cache
    missing = [p for p in phases if p not in cache[1]]
    if missing:
        cache[1].update(render.phase_surfaces(volume, missing))
    return {p: cache[1][p] for p in phases}


def fmt_value(v) -> str:
    """A phase value for display: 127, 85.3 or (255, 0, 0)."""
    if isinstance(v, (list, tuple)):
        return "(" + ", ".join(fmt_value(x) for x in v) + ")"
    try:
        f = float(v)
    except (TypeError, ValueError):
        return str(v)
    return str(int(f)) if f.is_integer() else f"{f:.1f}"


def error_box(err: BaseException) -> None:
    """Show a user-facing error (never a traceback)."""
    st.error(str(err), icon=":material/error:")


def sidebar_status(slot) -> None:
    """Current dataset, run, training job and generated data, in the sidebar of every page."""
    ss = st.session_state
    with slot:
        st.caption("CURRENT WORK")
        ds = ss.get("dataset")
        if ds:
            more = f" (+{len(ds) - 1} more)" if len(ds) > 1 else ""
            st.markdown(f"**Dataset:** {ss.get('dataset_name') or 'uploaded'}  \n"
                        f"<small>{describe(ds[0])}{more}</small>", unsafe_allow_html=True)
        else:
            st.markdown("**Dataset:** none yet")
        run = current_run()
        st.markdown(f"**Model run:** {run.name if run else 'none yet'}")
        running = bool(job_manager().running())

        @st.fragment(run_every=2.0 if running else None)
        def jobs_now() -> None:
            for job in job_manager().running():
                snap = job.snapshot()
                st.progress(min(1.0, snap["step"] / max(snap["total_steps"] or 1, 1)),
                            text=f"Training {job.run_dir.name}: step {snap['step']}")

        jobs_now()
        gen = ss.get("generated")
        if gen is not None:
            shape = " x ".join(str(s) for s in gen.array.shape[:3 if gen.kind != "color" else 2])
            st.markdown(f"**Generated:** {shape}")


@st.cache_resource
def warm_up() -> bool:
    """Once per server, after the first page is out: import the heavy modules (torch, VTK
    rendering) and run a first FFT in a background thread, so the first training, statistics
    or 3D view does not pay for it."""
    import threading

    def work() -> None:
        try:
            import torch

            torch.fft.rfftn(torch.zeros(8, 8))  # first FFT (statistics) initialises a backend
            # the first optimiser imports torch._dynamo (sympy...): 10+ s on a small machine
            torch.optim.Adam([torch.zeros(1, requires_grad=True)])
            from matgen_core import generate, metrics, train  # noqa: F401

            import pyvista  # noqa: F401
            import vtkmodules.vtkRenderingOpenGL2  # noqa: F401
            from pyvista.plotting import Plotter  # noqa: F401

            import panel  # noqa: F401  (stpyvista imports it: about 5 s)
        except Exception:  # best effort only
            pass

    threading.Thread(target=work, name="matgen-warm-up", daemon=True).start()
    return True


def generated_or_hint(what: str):
    """The last generated result and its metadata, or None after pointing the user to Generate."""
    gen = st.session_state.get("generated")
    if gen is None:
        st.info(f"Generate {what} first (Generate & view page).", icon=":material/view_in_ar:")
        st.page_link(PAGES["generate"], label="Go to Generate & view", icon=":material/arrow_forward:")
        return None
    return gen, st.session_state.get("generated_meta") or {}
