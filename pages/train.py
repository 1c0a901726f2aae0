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

ss = st.session_state
mgr = _ui.job_manager()
st.title("Train")

MODEL_LABELS = {
    "slicegan": "SliceGAN: 3D volumes from 2D images",
    "dcgan": "DCGAN: 2D images",
    "vae": "VAE: 2D images",
    "vaegan": "VAE-GAN: 2D images",
}
PRESET_HELP = ("quick: a small network that trains in minutes on a laptop CPU (good to try "
               "things). paper: the published architecture; best results, needs a GPU and hours.")
# Main hyperparameters offered in the form (when the model has them), with their labels.
MAIN_KEYS = {
    "lr": "Learning rate", "lr_g": "Generator learning rate", "lr_d": "Critic learning rate", "batch_size": "Batch size",
    "critic_iters": "Critic steps per generator step", "gp_lambda": "Gradient penalty weight",
    "fraction_weight": "Phase-fraction loss weight", "beta": "KL weight (beta)",
}


def run_status(info) -> str:
    job = mgr.get(info.path)
    return job.status if job is not None else info.status


# ---------------------------------------------------------------------------- current run ----
run = _ui.current_run()
if run is not None and not (run / "config.json").exists():
    _ui.set_run(None)
    run = None


def resume(run_dir: Path, steps_key: str, device_key: str) -> None:
    # read the widgets here: callback args are bound when the button was drawn, before any edit
    try:
        mgr.start(run_dir, steps=int(ss[steps_key]), device=ss[device_key])
    except MatgenInputError as err:
        ss.train_error = str(err)


def show_run(run_dir: Path) -> None:
    info = runs.run_info(run_dir)
    config = runs.load_config(run_dir)
    job = mgr.get(run_dir)
    active = job is not None and job.active
    st.subheader(f"Run `{run_dir.name}`")
    st.caption(f"{MODEL_LABELS.get(info.model, info.model)} | preset {config.get('preset', '?')} | "
               f"{info.kind}, {info.n_phases or '-'} phases | created {info.created} | "
               f"folder {run_dir}")
    if ss.get("train_error"):
        st.error(ss.pop("train_error"), icon=":material/error:")

    c1, c2, c3 = st.columns([1, 1, 3], vertical_alignment="bottom")
    if active:
        c1.button("Stop", icon=":material/stop:", key="stop_btn", type="primary",
                  on_click=mgr.stop, args=(run_dir,),
                  help="Stops after the current step and saves a checkpoint; Resume continues.")
    else:
        total0 = int(info.total_steps or config["model_config"].get("steps", 100))
        if info.step >= total0:
            total0 = info.step + max(100, total0 // 2)
        steps_key = f"resume_steps_{run_dir.name}"
        c3.number_input("Train up to step", min_value=1, value=total0, step=50, key=steps_key)
        c2.selectbox("Device", ["auto", "cpu", "cuda", "mps"], key="resume_device")
        label = "Resume" if info.step > 0 else "Start"
        c1.button(label, icon=":material/play_arrow:", key="resume_btn", type="primary",
                  on_click=resume, args=(run_dir, steps_key, "resume_device"),
                  disabled=bool(mgr.running()) and len(mgr.running()) >= mgr.max_concurrent)

    @st.fragment(run_every=1.0 if active else None)
    def live() -> None:
        job_now = mgr.get(run_dir)
        snap = job_now.snapshot() if job_now is not None else None
        rows = jobs_mod.loss_history(run_dir, job_now)
        info_now = runs.run_info(run_dir)
        step = snap["step"] if snap else info_now.step
        total = (snap["total_steps"] if snap and snap["total_steps"] else info_now.total_steps) or 1
        status = snap["status"] if snap else info_now.status
        eta = jobs_mod.format_eta(snap["eta_s"]) if snap and snap["status"] == "running" else ""
        text = f"{status}: step {step} / {total}"
        if snap and snap.get("steps_per_s"):
            text += f" ({snap['steps_per_s']:.2f} steps/s)"
        if eta:
            text += f", about {eta} left"
        st.progress(min(1.0, step / total), text=text)
        if snap and snap["status"] == "error":
            st.error(snap["error"], icon=":material/error:")
        chart, prev = st.columns([3, 2])
        with chart:
            if rows:
                st.plotly_chart(render.loss_figure(rows), key="loss_chart")
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
                st.image(image, width="stretch",
                         caption=("Samples" + (f" at step {pstep}" if pstep else "")
                                  + (": middle slices of a generated volume (Z, Y, X planes)"
                                     if info.model == "slicegan" else "")))
            else:
                st.caption("Samples appear here every few steps.")
        if active and (job_now is None or not job_now.active):
            st.rerun()  # training ended: refresh the buttons

    live()
    if info.step > 0 or (job is not None and job.step > 0):
        st.page_link(_ui.PAGES["generate"], label="Generate from this run",
                     icon=":material/arrow_forward:")


if run is not None:
    with st.container(border=True):
        show_run(run)

# ------------------------------------------------------------------------------ new run ----
ds = _ui.dataset()
with st.expander("Start a new training run", expanded=run is None, icon=":material/add:"):
    if not ds:
        st.info("Load a dataset first (Dataset page).", icon=":material/image:")
    else:
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
            st.stop()
        preset = c2.segmented_control("Preset", list(model_presets), default="quick"
                                      if "quick" in model_presets else list(model_presets)[0],
                                      key="new_preset", help=PRESET_HELP) or "quick"
        defaults = model_presets[preset]
        c1, c2, c3 = st.columns(3)
        steps = c1.number_input("Steps", min_value=1, value=int(defaults.get("steps", 500)),
                                step=50, key=f"new_steps_{model}_{preset}",
                                help="Generator updates. Training can be stopped and resumed.")
        minutes = c2.number_input("Time limit (minutes, 0 = none)", min_value=0.0, value=0.0,
                                  step=5.0, key="new_minutes")
        device = c3.selectbox("Device", ["auto", "cpu", "cuda", "mps"], key="new_device",
                              help="auto uses a GPU when there is one.")
        overrides = {}
        with st.expander("Hyperparameters"):
            cols = st.columns(3)
            shown = [k for k in MAIN_KEYS if k in defaults and isinstance(defaults[k], (int, float))
                     and not isinstance(defaults[k], bool)]
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
            extra = st.text_area("More settings (JSON, for experts)", value="", key="new_extra",
                                 placeholder='{"gen_channels": [32, 32, 16, 8]}',
                                 help="Any other setting of the model, e.g. "
                                      + ", ".join(sorted(k for k in defaults if k not in MAIN_KEYS))[:300])
            if extra.strip():
                try:
                    more = json.loads(extra)
                    if not isinstance(more, dict):
                        raise ValueError("not an object")
                    overrides.update(more)
                except ValueError as err:
                    st.error(f"The extra settings are not a JSON object ({err}); write them like "
                             '{"batch_size": 4}.')
                    st.stop()
        stem = re.sub(r"[^A-Za-z0-9_-]+", "-", Path(ds[0].source or "data").stem)[:24].strip("-")
        name = st.text_input("Run name", value="", key="new_name",
                             placeholder=f"{model}-{stem}-<date-time> (automatic)")
        seed = 0
        start = st.button("Start training", type="primary", icon=":material/play_arrow:",
                          key="start_btn")
        if start:
            name = name.strip() or f"{model}-{stem}-{dt.datetime.now():%Y%m%d-%H%M%S}"
            run_dir = _ui.runs_home() / re.sub(r"[^A-Za-z0-9_.-]+", "-", name)
            try:
                if len(mgr.running()) >= mgr.max_concurrent:
                    busy = ", ".join(j.run_dir.name for j in mgr.running())
                    raise MatgenInputError(f"A training job is already running ({busy}); stop it "
                                           f"or wait for it to finish before starting another.")
                runs.create_run(run_dir, model, ds, preset=preset, overrides=overrides, seed=seed)
                mgr.start(run_dir, steps=int(steps), max_minutes=float(minutes) or None,
                          device=device)
            except MatgenInputError as err:
                _ui.error_box(err)
            else:
                _ui.set_run(run_dir)
                st.rerun()

# -------------------------------------------------------------------------------- all runs ----
st.subheader("All runs")
st.caption(f"Runs live in `{_ui.runs_home().resolve()}` (set MATGEN_HOME to change). Runs trained "
           "with the `matgen` command appear here too.")
infos = runs.list_runs(_ui.runs_home())
if not infos:
    st.caption("No runs yet.")
else:
    import pandas as pd

    table = pd.DataFrame([{
        "run": i.name, "model": i.model, "status": run_status(i),
        "progress": f"{i.step} / {i.total_steps}", "data": f"{i.kind}, {i.n_phases} phases"
        if i.kind == "nphase" else i.kind, "created": i.created,
    } for i in infos])
    st.dataframe(table, hide_index=True)
    names = [i.name for i in infos]
    current = run.name if run is not None and run.name in names else None
    pick = st.selectbox("Open a run", names, index=names.index(current) if current else None,
                        placeholder="choose a run to follow, resume or generate from",
                        key="open_run")
    if pick and pick != current:
        _ui.set_run(next(i.path for i in infos if i.name == pick))
        st.rerun()
