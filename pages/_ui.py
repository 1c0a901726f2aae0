"""Shared pieces of the Streamlit pages: session state, caches, the job registry, small widgets.

Not a page itself (``st.navigation`` in app.py lists the pages). Everything that is not UI lives
in ``matgen_core``; this module only wires it to Streamlit.
"""
from __future__ import annotations

import dataclasses
import hashlib
import os
import tempfile
import threading
import uuid
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


_REQUESTED_PAGE = "_requested_page"  # session key: the page require_frame was asked for


def require_frame(page: str) -> None:
    """Send the visitor through app.py when Streamlit ran this page's script on its own.

    Until a server's first session has run app.py (``st.navigation``), Streamlit serves the
    scripts in ``pages/`` by their own addresses, without the frame: opening ``/train`` as the
    first visitor after a restart (a bookmark, a reloaded tab) showed a bare page with no
    dataset, and a sidebar of file names. Such a session has no state from :func:`init_state`,
    which app.py runs before every page. Called first by every page with its key in
    :data:`PAGES`; app.py then comes back to that page (:func:`return_to_requested_page`) with
    the address's query parameters (dataset, run, volume)."""
    if not _state_ready():
        st.session_state[_REQUESTED_PAGE] = page
        st.switch_page("app.py", query_params=st.query_params.to_dict())


def return_to_requested_page() -> None:
    """After :func:`init_state`: open the page a visitor asked for by its address before app.py
    had ever run (see :func:`require_frame`), once."""
    page = st.session_state.pop(_REQUESTED_PAGE, None)
    if page in PAGES and page != "home":
        st.switch_page(PAGES[page], query_params=st.query_params.to_dict())


def _state_ready() -> bool:
    """Whether :func:`init_state` has set up this session."""
    return "raw" in st.session_state


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


EXAMPLE_NAME = "example electrode (bundled)"
DEMO_RUN = ROOT / "assets" / "demo_model"
DEMO_SHAPE = (64, 64, 64)
# URL query parameters that hold where the user is, so a reload (or a shared link) restores it:
# ?dataset=<saved dataset folder>&run=<run folder name>&gen=<seed>-<Z>x<Y>x<X>&policy=<label policy>
# (policy: absent for raw, "calibrated" or "steered-P0,P1,..."; generate.policy_token)
QP_DATASET, QP_RUN, QP_GEN, QP_POLICY, QP_SESSION = "dataset", "run", "gen", "policy", "session"


def session_token() -> str:
    """This browser session's token: the runs it starts are its own (jobs.py ownership). Kept in
    the URL, so a reload of the same tab still owns the runs it started."""
    ss = st.session_state
    if "session_token" not in ss:
        token = str(st.query_params.get(QP_SESSION, ""))
        ok = len(token) == 8 and all(ch in "0123456789abcdef" for ch in token)
        ss.session_token = token if ok else uuid.uuid4().hex[:8]
    return ss.session_token


def init_state() -> None:
    """Called by app.py on every run. A new session (a first visit or a browser reload) is
    restored from the URL's query parameters (dataset, run, generated volume); a newcomer starts
    with the bundled example loaded. Without a ``run`` parameter the current run is the one this
    server is training, else the newest run on disk, so the pages agree with the runs folder."""
    ss = st.session_state
    if _state_ready():
        return
    ss.raw, ss.raw_name, ss.dataset, ss.dataset_name, ss.dataset_key = [], "", None, "", None
    ss.ds_settings = {}
    ss.run_dir = None
    ss.generated = None
    ss.restore_notes = []
    qp = st.query_params
    key = qp.get(QP_DATASET)
    if key:
        from matgen_core import datasets

        try:
            micrographs, label = datasets.load_dataset(runs_home(), key)
        except MatgenInputError as err:
            ss.restore_notes.append(str(err))
        else:
            ss.raw, ss.raw_name = list(micrographs), label
            set_dataset(micrographs, label, key=key)
    if not ss.raw and EXAMPLE.exists():
        try:
            ss.raw = [example_micrograph()]
            ss.raw_name = EXAMPLE_NAME
            set_dataset(list(ss.raw), ss.raw_name)
        except Exception:  # the app must open even if the example cannot be read
            pass
    name = qp.get(QP_RUN)
    if name and (runs_home() / name / "config.json").is_file() and "/" not in name:
        set_run(runs_home() / name)
    else:
        if name:
            ss.restore_notes.append(f"The run '{name}' in the link is not in {runs_home()}.")
        set_run(default_run())
    gen = qp.get(QP_GEN)
    if gen and current_run() is not None:
        restore_generated(current_run(), gen, qp.get(QP_POLICY))


def default_run() -> Path | None:
    """The run the pages show when none was chosen: the one training now, else the newest."""
    running = job_manager().running()
    if running:
        return Path(running[0].run_dir)
    from matgen_core import runs

    infos = runs.list_runs(runs_home())
    return infos[0].path if infos else None


def gen_token(seed: int, shape) -> str:
    return f"{int(seed)}-" + "x".join(str(int(v)) for v in shape)


def parse_gen_token(token: str) -> tuple[int, tuple[int, ...]] | None:
    try:
        seed, shape = token.split("-", 1)
        dims = tuple(int(v) for v in shape.split("x"))
        return (int(seed), dims) if len(dims) in (1, 3) and all(0 < d <= 1024 for d in dims) else None
    except ValueError:
        return None


def fraction_keys(run_dir, n: int) -> list[str]:
    """Session keys of the Generate page's sliders of phases 0..n-2 (per run, so each run keeps
    its own)."""
    return [f"gen_frac_{Path(run_dir).name}_{k}" for k in range(n - 1)]


def restore_generated(run_dir: Path, token: str, policy: str | None = None) -> None:
    """Generate again what the URL says was on screen: the same run, seed, size and label policy
    (``policy``: ``generate.policy_token``'s text; absent = raw) give the same volume. The
    Generate page's policy choice, sliders and seed are set to match."""
    import time
    import uuid

    from matgen_core import generate, runs

    parsed = parse_gen_token(token)
    if parsed is None or runs.latest_checkpoint(run_dir) is None:
        return
    seed, dims = parsed
    kwargs = dict(count=dims[0]) if len(dims) == 1 else dict(shape=dims)
    chosen = generate.parse_policy_token(policy) if policy else None
    if policy and chosen is None:
        st.session_state.restore_notes.append(f"The label policy '{policy}' in the link is not one "
                                              f"MatGen writes; the volume is shown raw.")
    if chosen is not None and len(dims) == 3:
        kwargs["policy"], kwargs["fractions"] = chosen
    t0 = time.perf_counter()
    try:
        with st.spinner("Restoring the generated volume..."):
            result = generate.generate(run_dir, seed=seed, device="auto", **kwargs)
    except MatgenInputError as err:
        st.session_state.restore_notes.append(f"Could not generate again: {err}")
        return
    st.session_state.generated = result
    st.session_state.generated_meta = dict(run=str(run_dir), run_name=run_dir.name, seed=seed,
                                           token=uuid.uuid4().hex, restored=True,
                                           seconds=time.perf_counter() - t0)
    _restore_policy_widgets(run_dir, kwargs.get("policy", "raw"), kwargs.get("fractions"))
    st.session_state.gen_seed = int(seed)  # the form shows the seed of the volume on screen
    if len(dims) == 3 and result.kind == "nphase":  # as the Generate button records it
        st.session_state.generated_meta["spread"] = fraction_spread(str(run_dir), tuple(dims))


def _restore_policy_widgets(run_dir: Path, policy: str, targets) -> None:
    """The Generate page's controls as they were when the restored volume was made."""
    ss = st.session_state
    ss.gen_frac_on = policy == "steered"
    if policy == "steered":
        for key, value in zip(fraction_keys(run_dir, len(targets)), targets):
            ss[key] = round(100 * value, 1)
    else:
        ss.gen_policy = policy


def wanted_query_params(ss) -> dict:
    """The URL query parameters for session state ``ss`` (a mapping): dataset, run, generated
    volume (seed and size) and its label policy, session token."""
    want = {}
    if ss.get("dataset_key"):
        want[QP_DATASET] = ss["dataset_key"]
    run = Path(ss["run_dir"]) if ss.get("run_dir") else None
    if run is not None and run.parent.resolve() == runs_home().resolve():
        want[QP_RUN] = run.name
    gen, meta = ss.get("generated"), ss.get("generated_meta") or {}
    if gen is not None and run is not None and meta.get("run") == str(run) and not meta.get("demo"):
        a = gen.array
        dims = (a.shape[0],) if gen.model != "slicegan" else a.shape[:3]
        want[QP_GEN] = gen_token(meta.get("seed", 0), dims)
        from matgen_core.generate import policy_token

        policy = policy_token(getattr(gen, "info", None))
        if policy:
            want[QP_POLICY] = policy
    if ss.get("session_token"):
        want[QP_SESSION] = ss["session_token"]
    return want


def sync_query_params() -> None:
    """Write where the user is into the URL (app.py calls it after every page), so a reload
    comes back to the same dataset, run, generated volume and label policy."""
    want = wanted_query_params(st.session_state)
    qp = st.query_params
    for k in (QP_DATASET, QP_RUN, QP_GEN, QP_POLICY, QP_SESSION):
        if k in want and qp.get(k) != want[k]:
            qp[k] = want[k]
        elif k not in want and k in qp:
            del qp[k]


def set_dataset(micrographs, name: str, key: str | None = None) -> None:
    """Make ``micrographs`` the current dataset. Anything but the bundled example is saved to
    the runs folder (``matgen_core.datasets``) so a reload finds it again."""
    ss = st.session_state
    ss.dataset = list(micrographs) if micrographs else None
    ss.dataset_name = name
    if key is None and micrographs and name != EXAMPLE_NAME:
        from matgen_core import datasets

        try:
            key = datasets.save_dataset(runs_home(), list(micrographs), name)
        except OSError as err:  # a read-only runs folder: the session still works
            ss.setdefault("restore_notes", []).append(f"The dataset could not be saved ({err}).")
    ss.dataset_key = key


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
    """The generated data as a file in ``fmt`` ("tiff", "npy", "vti", "png" = zip of PNGs, or
    "record" = the generation record, the ``<name>.npy.json`` sidecar of a .npy)."""
    import inspect
    import io as _bio
    import zipfile

    from matgen_core import io

    if fmt == "record":
        return io.generation_json(getattr(gen, "info", None) or {}).encode()

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
        if run is not None:
            st.markdown(f"**Model run:** {run.name}")
        elif demo_available():
            st.markdown("**Model run:** none of yours yet  \n<small>Home shows the bundled demo model's "
                        "volume</small>", unsafe_allow_html=True)
        else:
            st.markdown("**Model run:** none yet")
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
            meta = ss.get("generated_meta") or {}
            st.markdown(f"**Generated:** {shape}" + (" (demo model)" if meta.get("demo") else ""))
        for note in ss.get("restore_notes") or []:
            st.caption(note)


@st.cache_resource
def warm_up() -> bool:
    """Once per server, after the first page is out: import the heavy modules (torch, VTK
    rendering) and run a first FFT in a background thread, so the first training, statistics
    or 3D view does not pay for it."""
    def work() -> None:
        # first the demo model's 3D volume for Home (alone: on a busy machine the imports
        # below would slow it down), then the rest
        if demo_available():
            with _DEMO_LOCK:
                mine = not _DEMO.get("started")
                _DEMO["started"] = True
            if mine:
                _demo_worker()
        try:
            import torch

            torch.fft.rfftn(torch.zeros(8, 8))  # first FFT (statistics) initialises a backend
            # the first optimiser imports torch._dynamo (sympy...): 10+ s on a small machine
            torch.optim.Adam([torch.zeros(1, requires_grad=True)])
            from matgen_core import generate, metrics, render, train  # noqa: F401

            import vtkmodules.vtkRenderingOpenGL2  # noqa: F401

            render._pyvista()
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


# ------------------------------------------------------------------------------------------
# the 3D view and the bundled demo model


def show_scene(plotter, height: int = 560) -> None:
    """Show a render.plotter_for scene in the page: an interactive vtk.js view (drag to rotate,
    scroll to zoom), self-contained, nothing downloaded."""
    from matgen_core import render

    st.iframe(render.scene_html(plotter), height=height)


def thin_phase_note(surfaces: dict | None = None, flags: dict | None = None) -> None:
    """A note on the 3D view for phases it cannot show as they are (finer than its grid):
    from the surfaces, or from ``flags`` (render.unfaithful_phases output)."""
    from matgen_core import render

    if flags is None:
        flags = render.unfaithful_phases(surfaces or {})
    if not flags:
        return
    thick = [p for p, f in flags.items() if f == "thickened"]
    lost = [p for p, f in flags.items() if f == "missing"]
    parts = []
    if thick:
        parts.append(", ".join(f"phase {p}" for p in thick) + (" is" if len(thick) == 1 else " are")
                     + " thinner than the 3D view's grid and drawn thickened")
    if lost:
        parts.append(", ".join(f"phase {p}" for p in lost) + (" is" if len(lost) == 1 else " are")
                     + " too fine to draw as a surface and mostly missing")
    st.warning("; ".join(parts) + ". The **Slices** tab shows every voxel as it is.",
               icon=":material/visibility:")


def demo_available() -> bool:
    return (DEMO_RUN / "checkpoints" / "latest.pt").is_file() and (DEMO_RUN / "demo_volume.npz").is_file()


# The demo model's scene is the same for every visitor: made once per server process, in a
# background thread started by the warm-up (or by Home), so the first page is not held up.
_DEMO_LOCK = threading.Lock()
_DEMO: dict = {}


def _make_demo_bundle() -> dict:
    """The demo model's volume (DEMO_SHAPE, seed 0, the generator's own fractions, saved with
    the model by assets/make_demo_model.py), its fractions, and the 3D view's HTML, which a
    subprocess makes (``matgen_core.demo_scene``: VTK stays out of the server process)."""
    import json
    import subprocess
    import sys

    # the subprocess first, so nothing in this process competes with it (numpy only here)
    html, scene = None, {"shown": [], "flags": {}}
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
        proc = subprocess.run([sys.executable, "-m", "matgen_core.demo_scene", str(DEMO_RUN), tmp],
                              cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
        if (Path(tmp) / "scene.json").exists():
            scene = json.loads((Path(tmp) / "scene.json").read_text())
        if (Path(tmp) / "scene.html").exists():
            html = (Path(tmp) / "scene.html").read_text()
        elif proc.returncode:
            scene["error"] = ((proc.stderr or "").strip().splitlines() or [f"exit {proc.returncode}"])[-1]
    with np.load(DEMO_RUN / "demo_volume.npz", allow_pickle=False) as f:
        labels = f["labels"].astype(np.uint8)
        record = json.loads(str(f["record"])) if "record" in f.files else {}
    data = json.loads((DEMO_RUN / "config.json").read_text())["data"]
    n = len(data.get("phase_values") or []) or int(labels.max()) + 1
    training = np.load(DEMO_RUN / "data" / "image_0.npy", allow_pickle=False)
    table = dict(generated=[float(v) for v in np.bincount(labels.ravel(), minlength=n)[:n] / labels.size],
                 training=[float(v) for v in np.bincount(training.ravel(), minlength=n)[:n] / training.size])
    result = dict(array=labels, data=data, record=record)
    scene["shown"] = scene.get("shown") or list(range(1, n))
    flags = {int(k): v for k, v in scene.get("flags", {}).items()}
    return dict(generated=result, table=table, html=html, shown=scene["shown"], flags=flags,
                view_error=scene.get("error"))


def _demo_worker() -> None:
    try:
        bundle = _make_demo_bundle()
    except Exception as err:  # a broken demo must not break the app
        bundle = dict(error=f"{type(err).__name__}: {err}")
    with _DEMO_LOCK:
        _DEMO["bundle"] = bundle


def start_demo() -> None:
    """Start making the demo scene in the background (once per process)."""
    if not demo_available():
        return
    with _DEMO_LOCK:
        if _DEMO.get("started"):
            return
        _DEMO["started"] = True
    threading.Thread(target=_demo_worker, name="matgen-demo", daemon=True).start()


def demo_bundle() -> dict | None:
    """The demo scene when it is ready ({"error": ...} if it failed), else None (started)."""
    start_demo()
    with _DEMO_LOCK:
        return _DEMO.get("bundle")


def demo_info() -> dict:
    """What the demo model is: steps and CPU minutes it was trained for (from its config)."""
    import json

    try:
        cfg = json.loads((DEMO_RUN / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return dict(cfg.get("demo") or {}, preset=cfg.get("preset"), model=cfg.get("model"))
