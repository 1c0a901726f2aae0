"""Train: start, stop and resume training runs; live loss curves, samples and progress."""
import datetime as dt
import json
import re
from pathlib import Path

import streamlit as st

from matgen_core import jobs as jobs_mod
from matgen_core import render, runs
from matgen_core.errors import MatgenInputError
from pages import _ui

_ui.require_frame("train")  # a page opened by its address before app.py ever ran

MODEL_LABELS = {
    "slicegan": "SliceGAN: 3D volumes from 2D images",
    "dcgan": "DCGAN: 2D images",
    "vae": "VAE: 2D images",
    "vaegan": "VAE-GAN: 2D images",
}
PRESET_HELP = ("quick: a small network, about 10 CPU minutes (a first look). standard: the "
               "published 64 px window with narrow networks, about 40 CPU minutes. paper: the "
               "published v1.1 recipe; needs a GPU and hours. No preset is yet shown to give "
               "simulation-grade 3D volumes: check them against real 3D data (matgen validate).")
SEED_HELP = ("The random start of training. The same image, settings and seed train the same "
             "model again (on a CPU); another seed trains another one. For SliceGAN the 3D "
             "network of a phase (its tortuosity) differs more between seeds than between "
             "settings: train two or three seeds and compare their volumes before you simulate "
             "transport (README, Presets and what they give).")
# Main hyperparameters offered in the form (when the model has them), with their labels.
MAIN_KEYS = {
    "lr": "Learning rate", "lr_g": "Generator learning rate", "lr_d": "Critic learning rate",
    "batch_size": "Batch size", "critic_iters": "Critic steps per generator step",
    "gp_lambda": "Gradient penalty weight", "fraction_weight": "Phase-fraction loss weight",
    "beta": "KL weight (beta)", "gamma": "Feature-reconstruction weight (gamma)",
    "pixel_weight": "Pixel-reconstruction weight",
}
STATUS_TEXT = {
    "starting": "Preparing (loading the data, building the networks)",
    "running": "Training", "stopping": "Stopping after this step", "done": "Finished",
    "stopped": "Stopped", "error": "Failed", "new": "Not started", "failed": "Failed",
    "damaged": "Damaged (cannot be opened)",
}
ss = st.session_state
mgr = _ui.job_manager()


def session_token() -> str:
    """This browser session's token (kept in the URL: a reload still owns its runs)."""
    return _ui.session_token()


def resume(run_dir: Path, steps_key: str, device_key: str) -> None:
    """Resume button callback. Reads the widgets itself: callback args are bound when the
    button was drawn, before the user's last edit."""
    try:
        mgr.start(run_dir, steps=int(ss[steps_key]), device=ss[device_key], owner=session_token())
    except jobs_mod.OwnershipError as err:  # another session's run: ask first
        ss.confirm_foreign = dict(action="resume", run=str(run_dir), message=str(err),
                                  steps=int(ss[steps_key]), device=ss[device_key])
    except MatgenInputError as err:
        ss.train_error = str(err)


def stop(run_dir: Path) -> None:
    """Stop button callback: another session's run asks for confirmation first."""
    try:
        mgr.stop(run_dir, session=session_token())
    except jobs_mod.OwnershipError as err:
        ss.confirm_foreign = dict(action="stop", run=str(run_dir), message=str(err))


def confirm_foreign() -> None:
    """'Yes' on the confirmation: stop / resume another session's run."""
    ask = ss.pop("confirm_foreign", None)
    if not ask:
        return
    try:
        if ask["action"] == "stop":
            mgr.stop(Path(ask["run"]), session=session_token(), force=True)
        else:
            mgr.start(Path(ask["run"]), steps=ask["steps"], device=ask["device"],
                      owner=session_token(), force=True)
    except MatgenInputError as err:
        ss.train_error = str(err)


def ask_confirmation(run_dir: Path) -> None:
    ask = ss.get("confirm_foreign")
    if not ask or ask["run"] != str(run_dir):
        return
    st.warning(ask["message"], icon=":material/group:")
    y, n, _ = st.columns([1, 1, 3])
    y.button(f"Yes, {ask['action']} it", key="confirm_foreign_yes", on_click=confirm_foreign)
    n.button("Cancel", key="confirm_foreign_no", on_click=lambda: ss.pop("confirm_foreign", None))


def progress_text(status: str, step: int, total: int, snap: dict | None) -> str:
    text = f"{STATUS_TEXT.get(status, status)}: step {step} / {total}"
    if snap and snap.get("steps_per_s") and status in ("running", "stopping"):
        text += f" ({snap['steps_per_s']:.2f} steps/s"
        eta = jobs_mod.format_eta(snap.get("eta_s"))
        text += f", about {eta} left)" if eta else ")"
    return text


def show_run(run_dir: Path) -> None:
    try:
        info = runs.run_info(run_dir)
        config = runs.load_config(run_dir)
    except MatgenInputError as err:  # a damaged run folder: say why, keep the page working
        st.subheader(f"Run `{run_dir.name}`")
        st.error(str(err), icon=":material/error:")
        return
    job = mgr.get(run_dir)
    active = job is not None and job.active
    st.subheader(f"Run `{run_dir.name}`")
    st.caption(f"{MODEL_LABELS.get(info.model, info.model)} | preset {runs.recipe(config)} | "
               f"seed {config.get('seed', 0)} | "
               f"{_ui.KIND_NAMES.get(info.kind, info.kind)}"
               + (f", {info.n_phases} phases" if info.kind == "nphase" else "")
               + f" | created {info.created.replace('T', ' ')} | folder {run_dir}")
    if ss.get("train_error"):
        st.error(ss.pop("train_error"), icon=":material/error:")
    if info.status == "damaged":
        st.warning(f"This run's progress record is damaged ({info.problem}); resuming rewrites it.",
                   icon=":material/warning:")
    ask_confirmation(run_dir)

    c1, c2, c3 = st.columns([1, 1, 2], vertical_alignment="bottom")
    if active:
        c1.button("Stop", icon=":material/stop:", key="stop_btn", type="primary",
                  on_click=stop, args=(run_dir,),
                  help="Stops after the current step and saves a checkpoint; Resume continues.")
    else:
        total0 = int(info.total_steps or config["model_config"].get("steps", 100))
        if info.step >= total0:  # finished: offer to train longer
            total0 = info.step + max(100, total0 // 2)
        steps_key = f"resume_steps_{run_dir.name}"
        c3.number_input("Train up to step", min_value=1, value=total0, step=50, key=steps_key)
        c2.selectbox("Device", ["auto", "cpu", "cuda", "mps"], key="resume_device")
        busy = len(mgr.running()) >= mgr.max_concurrent
        c1.button("Resume" if info.step > 0 else "Start", icon=":material/play_arrow:",
                  key="resume_btn", type="primary", disabled=busy,
                  on_click=resume, args=(run_dir, steps_key, "resume_device"),
                  help="Another run is training; stop it first." if busy else
                  "Continue from the last checkpoint.")

    @st.fragment(run_every=1.0 if active else None)
    def live() -> None:
        job_now = mgr.get(run_dir)
        snap = job_now.snapshot() if job_now is not None else None
        info_now = runs.run_info(run_dir)
        step = snap["step"] if snap else info_now.step
        total = (snap["total_steps"] if snap and snap["total_steps"] else info_now.total_steps) or 1
        status = snap["status"] if snap else info_now.status
        st.progress(min(1.0, step / total), text=progress_text(status, step, total, snap))
        if snap and snap["status"] == "error":
            st.error(snap["error"], icon=":material/error:")
        if snap and snap.get("notice"):  # e.g. took over the lock of a killed process
            st.info(snap["notice"], icon=":material/lock_open:")
        rows = jobs_mod.loss_history(run_dir, job_now)
        chart, prev = st.columns([3, 2])
        with chart:
            if rows:
                st.plotly_chart(render.loss_figure(rows, log_y=bool(ss.get("loss_log"))),
                                key="loss_chart")
                if info.model == "slicegan" and any(r.get("fraction_error") for r in rows):
                    st.plotly_chart(fraction_error_figure(rows), key="fraction_error_chart")
            else:
                st.info("The loss curves appear after the first training step.",
                        icon=":material/hourglass_top:")
        with prev:
            image = snap["preview"] if snap and snap["preview"] is not None else None
            pstep = snap["preview_step"] if image is not None else None
            png = run_dir / "previews" / "latest.png"
            if image is None and png.exists():
                image = str(png)
            if image is not None:
                what = (": middle slices (Z, Y, X planes) of a generated volume"
                        if info.model == "slicegan" else "")
                # inline pixels, not a served media file: a file served by one rerun of this
                # live fragment can be gone when the browser asks for it (a broken image)
                st.image(render.png_data_url(image), width="stretch",
                         caption="Samples" + (f" at step {pstep}" if pstep else "") + what)
            else:
                st.caption("Samples appear here every few steps.")
        if active and (job_now is None or not job_now.active):
            st.rerun()  # training ended: redraw the buttons

    live()
    st.toggle("Log scale (losses)", key="loss_log",
              help="Draw each loss as sign x log10(1 + |loss|), so small losses are not flattened "
                   "by large ones; hover shows the real values.")
    if info.step > 0 or (job is not None and job.step > 0):
        st.page_link(_ui.PAGES["generate"], label="Generate from this run",
                     icon=":material/arrow_forward:")


def fraction_error_figure(rows: list[dict]):
    """Density difference (the logged ``fraction_error``, in percentage points) vs step."""
    import numpy as np
    import plotly.graph_objects as go

    steps = [r["step"] for r in rows if r.get("fraction_error") is not None]
    pp = np.array([100 * r["fraction_error"] for r in rows if r.get("fraction_error") is not None])
    k = max(1, min(25, len(pp) // 10))
    smooth = np.convolve(pp, np.ones(k) / k, mode="valid") if len(pp) >= k else pp
    fig = go.Figure([go.Scatter(x=steps, y=pp, mode="lines", name="per step", opacity=0.35),
                     go.Scatter(x=steps[k - 1:], y=smooth, mode="lines", name=f"mean of {k}")])
    fig.update_layout(height=220, margin=dict(l=10, r=10, t=30, b=10),
                      title="Phase-fraction difference (generated - target), pp",
                      xaxis_title="step", yaxis_title="pp")
    return fig


def new_run_form(ds) -> None:
    from matgen_core.models import MODEL_NAMES, presets

    st.markdown(f"Training data: **{ss.get('dataset_name') or 'uploaded'}**, "
                f"{len(ds)} image{'s' if len(ds) > 1 else ''} ({_ui.describe(ds[0])})")
    names = list(MODEL_NAMES) if len(ds) == 1 else ["slicegan"]
    c1, c2 = st.columns(2)
    model = c1.selectbox("Model", names, format_func=lambda n: MODEL_LABELS.get(n, n),
                         key="new_model", help="SliceGAN makes 3D volumes; the others make 2D "
                         "images (useful to compare methods).")
    try:
        model_presets = presets(model)
    except (ImportError, AttributeError, MatgenInputError):
        st.warning(f"{MODEL_LABELS.get(model, model)} is not available in this installation.")
        return
    preset_names = list(model_presets)
    preset = c2.segmented_control(
        "Preset", preset_names, default="quick" if "quick" in preset_names else preset_names[0],
        key="new_preset", help=PRESET_HELP) or preset_names[0]
    defaults = model_presets[preset]
    if defaults.get("description"):
        c2.caption(defaults["description"])
    c1, c2, c3, c4 = st.columns(4)
    steps = c1.number_input("Steps", min_value=1, value=int(defaults.get("steps", 500)), step=50,
                            key=f"new_steps_{model}_{preset}",
                            help="Generator updates. Training can be stopped and resumed.")
    minutes = c2.number_input("Time limit (minutes, 0 = none)", min_value=0.0, value=0.0,
                              step=5.0, key="new_minutes")
    device = c3.selectbox("Device", ["auto", "cpu", "cuda", "mps"], key="new_device",
                          help="auto uses a GPU when there is one.")
    seed = c4.number_input("Training seed", min_value=0, max_value=2**31 - 1, value=0,
                           key="new_seed", help=SEED_HELP)
    overrides = {}
    with st.expander("Hyperparameters"):
        cols = st.columns(3)
        shown = [k for k in MAIN_KEYS if isinstance(defaults.get(k), (int, float))
                 and not isinstance(defaults.get(k), bool)]
        for i, key in enumerate(shown):
            default = defaults[key]
            with cols[i % 3]:
                if isinstance(default, int):
                    val = st.number_input(MAIN_KEYS[key], min_value=1, value=default,
                                          key=f"hp_{model}_{preset}_{key}")
                else:
                    val = st.number_input(MAIN_KEYS[key], min_value=0.0, value=float(default),
                                          format="%.2g", key=f"hp_{model}_{preset}_{key}")
            if val != default:
                overrides[key] = val
        others = ", ".join(sorted(k for k in defaults if k not in MAIN_KEYS))
        extra = st.text_area("More settings (JSON, for experts)", value="", key="new_extra",
                             placeholder='{"gen_channels": [32, 32, 16, 8]}',
                             help=f"Any other setting of the model: {others}.")
        if extra.strip():
            try:
                more = json.loads(extra)
                if not isinstance(more, dict):
                    raise ValueError("not an object")
            except ValueError as err:
                st.error(f"The extra settings are not a JSON object ({err}); write them like "
                         '{"batch_size": 4}.', icon=":material/error:")
                return
            overrides.update(more)
    if model == "slicegan" and ds[0].kind == "nphase":  # conditional SliceGAN (docs/fractions.md)
        c1, c2 = st.columns([1, 1], vertical_alignment="center")
        if c1.checkbox("Train for phase-fraction control", key="new_conditional",
                       help="The generator also learns to make other phase fractions than the "
                            "training image's (within the range), so the Generate page's sliders "
                            "change the structure itself, not just a threshold. Slower to train. The "
                            "phase-fraction loss weight becomes 2000 unless you changed it above "
                            "(docs/fractions.md)."):
            radius = c2.slider("Range (± percentage points per phase)", 2, 20, 10, key="new_fraction_range")
            overrides.update(conditional=True, fraction_range=radius / 100)
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(ds[0].source or "data").stem)[:24].strip("-")
    name = st.text_input("Run name", value="", key="new_name",
                         placeholder=f"{model}-{stem}-<date-time> (automatic)")
    if st.button("Start training", type="primary", icon=":material/play_arrow:", key="start_btn"):
        name = name.strip() or f"{model}-{stem}-{dt.datetime.now():%Y%m%d-%H%M%S}"
        try:
            run_dir = runs.safe_run_dir(_ui.runs_home(), name)
            if len(mgr.running()) >= mgr.max_concurrent:
                busy = ", ".join(j.run_dir.name for j in mgr.running())
                raise MatgenInputError(f"A training job is already running ({busy}); stop it "
                                       f"or wait for it to finish before starting another.")
            runs.create_run(run_dir, model, ds, preset=preset, overrides=overrides,
                            seed=int(seed))
            mgr.start(run_dir, steps=int(steps), max_minutes=float(minutes) or None, device=device,
                      owner=session_token())
        except MatgenInputError as err:
            _ui.error_box(err)
        else:
            _ui.set_run(run_dir)
            st.rerun()


def all_runs(run: Path | None) -> None:
    st.subheader("All runs")
    st.caption(f"Runs live in `{_ui.runs_home().resolve()}` (set MATGEN_HOME to change). Runs "
               "trained with the `matgen` command appear here too.")
    infos = runs.list_runs(_ui.runs_home(), damaged=True)
    if not infos:
        st.caption("No runs yet.")
        return
    runs_table(bool(mgr.running()))
    names = [i.name for i in infos]
    current = run.name if run is not None and run.name in names else None
    pick = st.selectbox("Open a run", names, index=names.index(current) if current else None,
                        placeholder="choose a run to follow, resume or generate from",
                        key="open_run")
    if pick and pick != current:
        _ui.set_run(next(i.path for i in infos if i.name == pick))
        st.rerun()


def runs_table(live: bool) -> None:
    """The runs table; while a job trains it redraws itself every 2 s (a fragment), so its
    status and step follow the training."""

    @st.fragment(run_every=2.0 if live else None)
    def table_now() -> None:
        draw_runs_table(runs.list_runs(_ui.runs_home(), damaged=True))

    table_now()


def draw_runs_table(infos) -> None:
    import pandas as pd

    def state(i) -> tuple[str, str]:
        """(status, progress) of a run: its live job when this server trains it, else its files."""
        job = mgr.get(i.path)
        if job is None:
            return STATUS_TEXT.get(i.status, i.status), f"{i.step} / {i.total_steps}"
        snap = job.snapshot()
        return (STATUS_TEXT.get(snap["status"], snap["status"]),
                f"{snap['step']} / {snap['total_steps'] or i.total_steps}")

    table = pd.DataFrame([{
        "run": i.name, "model": i.model, "status": state(i)[0], "progress": state(i)[1],
        "data": f"{i.n_phases} phases" if i.kind == "nphase" else _ui.KIND_NAMES.get(i.kind, i.kind),
        "created": i.created.replace("T", " "),
        "note": i.problem,
    } for i in infos])
    st.dataframe(table, hide_index=True)


def main() -> None:
    st.title("Train")
    session_token()  # this session's runs are its own: others' ask before Stop / Resume
    run = _ui.current_run()
    if run is not None and not (run / "config.json").exists():
        _ui.set_run(None)
        run = None
    if run is not None:
        with st.container(border=True):
            show_run(run)
    ds = _ui.dataset()
    with st.expander("Start a new training run", expanded=run is None, icon=":material/add:"):
        if ds:
            new_run_form(ds)
        else:
            st.info("Load a dataset first (Dataset page).", icon=":material/image:")
    all_runs(run)


main()
