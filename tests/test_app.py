"""The Streamlit app, page by page, with streamlit.testing (no browser).

AppTest does not tick ``st.fragment(run_every=...)``: live training is followed by calling
``at.run()`` in a loop, as a browser's timer would.
"""
import io as _bio
import json
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")
EXAMPLE = ROOT / "assets" / "example_electrode.png"
TINY = {"gen_channels": [8, 8, 8, 8], "critic_channels": [8, 8, 8], "batch_size": 1,
        "real_batch": 2, "critic_iters": 1, "critic_slices": 2}

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MATGEN_HOME", str(tmp_path / "runs"))
    yield tmp_path / "runs"
    from pages import _ui

    _ui.job_manager().stop_all(wait=30)


def new_app() -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    check(at)
    return at


def check(at: AppTest) -> None:
    """No uncaught exception on the page (errors must be st.error messages)."""
    assert not at.exception, "\n".join(e.value + "\n" + "".join(e.stack_trace) for e in at.exception)


def texts(at: AppTest) -> str:
    parts = [m.value for m in at.markdown] + [m.value for m in at.caption]
    parts += [m.value for m in at.info] + [m.value for m in at.success] + [m.value for m in at.error]
    return "\n".join(parts)


def follow_until_finished(at: AppTest, polls: int = 240) -> str:
    """Rerun the page as the browser's timer would until the run's progress says it finished
    (at most ``polls`` reruns, 0.5 s apart); returns the progress text."""
    text = ""
    for _ in range(polls):
        time.sleep(0.5)
        at.run()
        check(at)
        bar = at.get("progress")
        text = bar[0].proto.text if bar else ""
        if text.startswith("Finished"):
            break
    return text


def png_bytes(array: np.ndarray) -> bytes:
    from PIL import Image

    buf = _bio.BytesIO()
    Image.fromarray(array).save(buf, format="PNG")
    return buf.getvalue()


def test_home_opens_with_the_example_loaded(home):
    t0 = time.perf_counter()
    at = new_app()
    elapsed = time.perf_counter() - t0
    assert at.title[0].value == "MatGen Studio"
    ds = at.session_state["dataset"]
    assert ds and ds[0].kind == "nphase" and ds[0].n_phases >= 2
    assert "bundled" in texts(at)
    assert elapsed < 15  # generous: includes importing torch & co on a shared 2-core machine


def test_every_page_renders_without_data(home):
    at = new_app()
    for page in ["dataset", "train", "generate", "analyze", "export", "home"]:
        at.switch_page(f"pages/{page}.py").run()
        check(at)
        assert at.title, page


def test_a_page_asked_for_by_its_address_before_the_frame_ran_opens_inside_it(home):
    """A first visitor on /analyze after a server restart: the bare page hands over to app.py
    (``_ui.require_frame``), which must come back to Analyze, not stay on Home. (AppTest cannot
    run the bare page itself: it has no page-folder mode; checked in chromium, see the note.)"""
    from pages import _ui

    at = AppTest.from_file(APP, default_timeout=120)
    at.session_state[_ui._REQUESTED_PAGE] = "analyze"  # what require_frame leaves behind
    at.run()
    check(at)
    assert [t.value for t in at.title] == ["Analyze"]
    assert _ui._REQUESTED_PAGE not in at.session_state  # once: the next run is an ordinary one
    at.switch_page("pages/home.py").run()
    assert at.title[0].value == "MatGen Studio"


def test_dataset_upload_good_and_bad_files(home):
    at = new_app()
    at.switch_page("pages/dataset.py").run()
    check(at)
    # the example, uploaded like a user would
    at.file_uploader[0].upload(EXAMPLE.name, EXAMPLE.read_bytes(), "image/png").run()
    check(at)
    assert at.session_state["dataset_name"] == EXAMPLE.name
    assert "This is the current dataset" in texts(at)
    assert at.get("plotly_chart"), "S2 plot missing"
    assert at.dataframe, "phase fraction table missing"
    # a broken file: a message, not a traceback
    at.file_uploader[0].set_value(("broken.png", b"this is not an image", "image/png")).run()
    check(at)
    assert at.error and "broken.png" in at.error[0].value
    assert at.session_state["dataset_name"] == EXAMPLE.name  # the dataset is kept


def test_dataset_grayscale_segmentation_live(home):
    from scipy import ndimage

    rng = np.random.default_rng(0)
    field = ndimage.gaussian_filter(rng.random((96, 96)), 3)
    gray = ((field - field.min()) / np.ptp(field) * 255).astype(np.uint8)
    at = new_app()
    at.switch_page("pages/dataset.py").run()
    at.file_uploader[0].upload("gray.png", png_bytes(gray), "image/png").run()
    check(at)
    assert at.session_state["dataset"][0].n_phases == 2
    at.slider(key="ds_nphases").set_value(3).run()
    check(at)
    ds = at.session_state["dataset"][0]
    assert ds.kind == "nphase" and ds.n_phases == 3
    at.radio(key="ds_segment").set_value("grayscale values").run()
    check(at)
    assert at.session_state["dataset"][0].kind == "gray"
    # downsample + pixel size
    at.radio(key="ds_segment").set_value("phases (segment the image)").run()
    at.number_input(key="ds_voxel").set_value(0.5)
    at.selectbox(key="ds_unit").set_value("um")
    at.select_slider(key="ds_factor").set_value(2).run()
    check(at)
    ds = at.session_state["dataset"][0]
    assert ds.labels.shape == (48, 48) and ds.voxel_size == pytest.approx(1.0) and ds.unit == "um"


def loss_points(at: AppTest) -> int:
    charts = [c for c in at.get("plotly_chart") if "loss" in json.dumps(json.loads(c.proto.spec).get("layout", {}))]
    if not charts:
        return 0
    spec = json.loads(charts[0].proto.spec)
    return max(len(t.get("x", [])) for t in spec["data"]) if spec["data"] else 0


STEPS = 60


def test_train_generate_analyze_export(home, monkeypatch):
    at = new_app()
    at.switch_page("pages/train.py").run()
    check(at)
    at.text_area(key="new_extra").set_value(json.dumps(TINY))
    # enough steps that the tiny run cannot finish between two polls (the chart must be seen growing)
    at.number_input(key="new_steps_slicegan_quick").set_value(STEPS)
    at.button(key="start_btn").click().run()
    check(at)
    run_dir = Path(at.session_state["run_dir"])
    assert run_dir.parent == home and (run_dir / "config.json").exists()

    seen = []
    for _ in range(180):
        time.sleep(0.5)
        at.run()
        check(at)
        seen.append(loss_points(at))
        bar = at.get("progress")
        if bar and bar[0].proto.text.startswith("Finished"):
            break
    assert bar[0].proto.text.startswith(f"Finished: step {STEPS} / {STEPS}"), bar[0].proto.text
    assert seen[-1] == STEPS and len(set(seen)) >= 2, f"loss chart did not update live: {seen}"
    assert "Stop" not in [b.label for b in at.button]
    assert any(b.label == "Resume" for b in at.button)
    # a new session (e.g. after a reload) lists the run and shows its curve from losses.jsonl
    at2 = new_app()
    at2.switch_page("pages/train.py").run()
    check(at2)
    assert run_dir.name in at2.dataframe[0].value["run"].tolist()
    at2.selectbox(key="open_run").set_value(run_dir.name).run()
    check(at2)
    assert loss_points(at2) == STEPS

    # Generate a small volume with the 3D view
    at.switch_page("pages/generate.py").run()
    check(at)
    for k in ("gen_z", "gen_y", "gen_x"):
        at.number_input(key=k).set_value(32)
    at.button[0].click().run(timeout=180)
    check(at)
    gen = at.session_state["generated"]
    assert gen.array.shape == (32, 32, 32) and gen.kind == "nphase"
    assert any("Generated 32 x 32 x 32" in s.value for s in at.success)
    assert at.session_state["_surfaces"][0] == at.session_state["generated_meta"]["token"]
    assert at.get("plotly_chart"), "orthogonal slices missing"
    assert at.toggle(key="gen_frac_on").value is False  # phase-fraction steering, off by default
    # toggle a phase off and change opacity: still fine
    at.slider(key="view_opacity").set_value(0.5).run(timeout=120)
    check(at)

    # Analyze
    at.switch_page("pages/analyze.py").run(timeout=120)
    check(at)
    table = next(d.value for d in at.dataframe if "metric" in d.value.columns)
    assert "phase fraction" in set(table["metric"])
    assert "percolating fraction (2D, slice-wise)" in set(table["metric"])
    assert any("3D percolation" in m.value for m in at.markdown)
    assert len(at.get("plotly_chart")) >= 2
    at.button(key="tau_btn").click().run(timeout=180)
    check(at)
    assert any(m.label == "Tortuosity factor" for m in at.metric)
    at.selectbox(key="tau_axis").set_value(3).run(timeout=120)  # all three directions, compared
    at.button(key="tau_btn").click().run(timeout=300)
    check(at)
    tau_table = next(d.value for d in at.dataframe if "direction" in d.value.columns)
    assert list(tau_table["direction"]) == ["Z", "Y", "X"]
    assert any("Largest / smallest" in c.value for c in at.caption) or any(
        "blocked" in w.value for w in at.warning)

    # Export: the bytes behind the download buttons read back as the volume
    captured = _spy_downloads(monkeypatch)
    at.switch_page("pages/export.py").run()
    check(at)
    names = sorted(captured)
    assert [Path(n).suffix for n in names] == [".npy", ".json", ".tif", ".vti"], names
    import tifffile

    tif = next(n for n in names if n.endswith(".tif"))
    vol = tifffile.imread(_bio.BytesIO(_as_bytes(captured[tif]())))
    assert np.array_equal(np.asarray(vol).reshape(gen.array.shape), gen.array)
    npy = next(n for n in names if n.endswith(".npy"))
    assert np.array_equal(np.load(_bio.BytesIO(_as_bytes(captured[npy]()))), gen.array)
    vti = next(n for n in names if n.endswith(".vti"))
    assert _as_bytes(captured[vti]())[:200].lstrip().startswith(b"<")


def _as_bytes(data) -> bytes:
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode()
    return data.read()


def test_stop_and_resume_buttons(home):
    at = new_app()
    at.switch_page("pages/train.py").run()
    at.text_area(key="new_extra").set_value(json.dumps(TINY))
    at.number_input(key="new_steps_slicegan_quick").set_value(100_000)
    at.button(key="start_btn").click().run()
    check(at)
    for _ in range(120):
        time.sleep(0.5)
        at.run()
        bar = at.get("progress")
        if bar and bar[0].proto.text.startswith("Training: step"):
            break
    at.button(key="stop_btn").click().run()
    check(at)
    for _ in range(60):
        time.sleep(0.5)
        at.run()
        if at.get("progress")[0].proto.text.startswith("Stopped"):
            break
    assert at.get("progress")[0].proto.text.startswith("Stopped")
    step = int(at.get("progress")[0].proto.text.split("step ")[1].split(" ")[0])
    assert step >= 1
    # a second job cannot start while one runs: resume, then try to start another run
    at.number_input(key=f"resume_steps_{Path(at.session_state['run_dir']).name}").set_value(step + 2)
    at.button(key="resume_btn").click().run()
    check(at)
    for _ in range(120):
        time.sleep(0.5)
        at.run()
        if at.get("progress")[0].proto.text.startswith("Finished"):
            break
    assert at.get("progress")[0].proto.text.startswith(f"Finished: step {step + 2}")


def test_generate_with_phase_fractions(home):
    """Steer the phase fractions of a (tiny, barely trained) SliceGAN run: sliders, last phase =
    the rest, generate, and the achieved fractions in the page's table meet the target."""
    from matgen_core import fractions, io, runs, train

    run = home / "frac"
    runs.create_run(run, "slicegan", [io.read_micrograph(EXAMPLE)], preset="quick", overrides=TINY)
    train.train(run, steps=2, device="cpu")
    rng = fractions.supported_range(run)
    n = rng["n_phases"]
    at = new_app()
    at.switch_page("pages/generate.py").run()
    check(at)
    assert not at.slider  # off by default: plain generation
    at.toggle(key="gen_frac_on").set_value(True).run()
    check(at)
    sliders = [at.slider(key=f"gen_frac_frac_{k}") for k in range(n - 1)]
    assert sliders[0].value == pytest.approx(100 * rng["center"][0], abs=0.06)
    target0 = round(100 * rng["center"][0] + 6, 1)
    sliders[0].set_value(target0).run()
    check(at)
    want = [s.value for s in sliders]
    want.append(100 - sum(want))
    assert any(f"{want[-1]:.1f} %" == m.value for m in at.metric)  # the last phase is the rest
    assert "expected spread at this size" in texts(at)
    for k in ("gen_z", "gen_y", "gen_x"):
        at.number_input(key=k).set_value(32)
    next(b for b in at.button if b.label == "Generate").click().run(timeout=180)
    check(at)
    gen = at.session_state["generated"]
    assert gen.array.shape == (32, 32, 32) and gen.policy == "steered"
    table = next(d.value for d in at.dataframe if "achieved %" in d.value.columns)
    assert np.allclose(table["target %"], want, atol=0.06)
    assert np.max(np.abs(table["achieved %"] - table["target %"])) <= 1.5, table
    assert np.allclose(table["achieved %"], 100 * np.array(gen.info["achieved_fractions"]))
    assert any("label policy **steered**" in m.value for m in at.markdown)
    assert any(m.label.startswith("S2 change") for m in at.metric)
    # outside the supported range: a message, not a traceback, and nothing generated
    sliders = [at.slider(key=f"gen_frac_frac_{k}") for k in range(n - 1)]
    for s in sliders:
        s.set_value(s.max)
    at.run()
    check(at)
    if 100 - sum(s.max for s in sliders) < 100 * rng["low"][-1]:
        assert at.warning and "outside its supported range" in at.warning[0].value
        next(b for b in at.button if b.label == "Generate").click().run(timeout=180)
        check(at)
        assert at.error and "ractions" in at.error[0].value
        assert at.session_state["generated"] is gen


def test_train_for_phase_fraction_control_checkbox(home):
    """The Train page's checkbox makes a conditional SliceGAN run with the chosen range, and the
    phase-fraction difference is plotted against the step."""
    at = new_app()
    at.switch_page("pages/train.py").run()
    check(at)
    at.text_area(key="new_extra").set_value(json.dumps(TINY))
    at.number_input(key="new_steps_slicegan_quick").set_value(3)
    at.checkbox(key="new_conditional").check().run()
    check(at)
    at.slider(key="new_fraction_range").set_value(8)
    at.button(key="start_btn").click().run()
    check(at)
    run_dir = Path(at.session_state["run_dir"])
    mc = json.loads((run_dir / "config.json").read_text())["model_config"]
    assert mc["conditional"] is True and mc["fraction_range"] == pytest.approx(0.08)
    progress = follow_until_finished(at)
    assert progress.startswith("Finished: step 3 / 3"), progress
    figs = [c for c in at.get("plotly_chart") if "Phase-fraction difference" in c.proto.spec]
    assert figs, "no fraction-difference chart"


def test_train_page_trains_the_chosen_seed(home):
    """The Train page's seed reaches the run (another seed is another model: the 3D network
    differs more between seeds than between settings, docs/fidelity.md), and the run says it."""
    at = new_app()
    at.switch_page("pages/train.py").run()
    check(at)
    at.text_area(key="new_extra").set_value(json.dumps(TINY))
    at.number_input(key="new_steps_slicegan_quick").set_value(2)
    at.number_input(key="new_seed").set_value(7)
    at.button(key="start_btn").click().run()
    check(at)
    run_dir = Path(at.session_state["run_dir"])
    assert json.loads((run_dir / "config.json").read_text())["seed"] == 7
    progress = follow_until_finished(at)
    assert progress.startswith("Finished: step 2 / 2"), progress
    assert "| seed 7 |" in texts(at)


def test_analyze_headline_says_under_trained(home, monkeypatch):
    """A 2-step run, calibrated to the training fractions: the fractions match by construction,
    yet the Analyze headline says the generator is under-trained (from S2 / surface area /
    generator-alone fractions), and a volume bigger than the analysis bound is sampled."""
    from matgen_core import io, quality, runs, train

    run = home / "short"
    runs.create_run(run, "slicegan", [io.read_micrograph(EXAMPLE)], preset="quick", overrides=TINY)
    train.train(run, steps=2, device="cpu")
    at = new_app()
    at.switch_page("pages/generate.py").run()
    check(at)
    assert at.radio(key="gen_policy").value == "raw"  # the default: the generator's own labels
    at.radio(key="gen_policy").set_value("calibrated").run()
    for k in ("gen_z", "gen_y", "gen_x"):
        at.number_input(key=k).set_value(40)
    next(b for b in at.button if b.label == "Generate").click().run(timeout=180)
    check(at)
    gen = at.session_state["generated"]
    assert gen.policy == "calibrated"
    assert "calibrated" in texts(at) and "generator alone" in texts(at)
    monkeypatch.setattr(quality, "ANALYZE_SIDE", 32)
    at.switch_page("pages/analyze.py").run(timeout=180)
    check(at)
    assert at.error, "no poor-quality headline"
    assert at.error[0].value.startswith("**Under-trained"), at.error[0].value
    assert "central 32 x 32 x 32 voxels of the 40 x 40 x 40 volume" in texts(at)
    assert "set by calibrated labelling" in texts(at)
    verdicts = next(d.value for d in at.dataframe if "verdict" in d.value.columns)
    assert "poor" in set(verdicts["verdict"])


def test_cli_trained_2d_run_generate_grid_and_png_export(home, monkeypatch):
    """A run made outside the app (as `matgen train` does) opens in it; a 2D model gives a grid
    of samples and a zip of PNGs."""
    import zipfile

    from matgen_core import io, runs, train

    m = io.read_micrograph(EXAMPLE)
    run = home / "cli-dcgan"
    runs.create_run(run, "dcgan", [m], preset="quick",
                    overrides={"ngf": 4, "ndf": 4, "batch_size": 2})
    train.train(run, steps=2, device="cpu")
    at = new_app()
    at.switch_page("pages/train.py").run()
    check(at)
    assert "cli-dcgan" in at.dataframe[0].value["run"].tolist()
    at.switch_page("pages/generate.py").run()
    check(at)
    at.selectbox(key="gen_run").set_value("cli-dcgan").run()
    check(at)
    assert "not available for this run" in texts(at) and not at.toggle  # 2D: no fraction sliders
    at.slider(key="gen_count").set_value(4)
    at.button[0].click().run(timeout=120)
    check(at)
    gen = at.session_state["generated"]
    assert gen.array.shape[0] == 4 and len(at.image) >= 4
    at.switch_page("pages/analyze.py").run(timeout=120)
    check(at)
    assert any("metric" in d.value.columns and "phase fraction" in set(d.value["metric"])
               for d in at.dataframe)
    captured = _spy_downloads(monkeypatch)
    at.switch_page("pages/export.py").run()
    check(at)
    zname = next(n for n in captured if n.endswith(".zip"))
    with zipfile.ZipFile(_bio.BytesIO(_as_bytes(captured[zname]()))) as zf:
        assert len(zf.namelist()) == 4 and zf.namelist()[0].endswith(".png")


# --- issue 16: session restored on reload, demo model, uploads that replace, consistent pages ---


def sidebar_texts(at: AppTest) -> str:
    return "\n".join(m.value for m in at.sidebar.markdown)


def reload_of(at: AppTest, page: str | None = None) -> AppTest:
    """A browser reload: a new session whose URL holds the old session's query parameters.

    (AppTest runs only the page's file after switch_page, not app.py, which writes the URL in
    a browser: so the URL is made here from what app.py would write; the browser test checks
    the real URL.)"""
    fresh = AppTest.from_file(APP, default_timeout=120)
    ss = at.session_state
    if ss["dataset_key"]:
        fresh.query_params["dataset"] = ss["dataset_key"]
    if ss["run_dir"]:
        fresh.query_params["run"] = Path(ss["run_dir"]).name
    fresh.run()
    check(fresh)
    if page:
        fresh.switch_page(page).run()
        check(fresh)
    return fresh


def test_reload_restores_uploaded_dataset_and_run(home):
    from scipy import ndimage

    from matgen_core import io, runs

    rng = np.random.default_rng(1)
    labels = (ndimage.gaussian_filter(rng.random((80, 80)), 3) > 0.5).astype(np.uint8) * 255
    at = new_app()
    at.switch_page("pages/dataset.py").run()
    at.file_uploader[0].upload("mine.png", png_bytes(labels), "image/png").run()
    check(at)
    assert at.session_state["dataset_name"] == "mine.png"
    key = at.session_state["dataset_key"]
    assert (home / "_datasets" / key / "dataset.json").exists()
    # a run on disk (trained elsewhere): a reload opens it, not "none yet"
    run = runs.create_run(home / "cli-run", "slicegan", [io.require_phases(io.read_micrograph(EXAMPLE))],
                          overrides=TINY)
    at.switch_page("pages/train.py").run()
    at.selectbox(key="open_run").set_value("cli-run").run()
    check(at)
    again = reload_of(at)  # opens Home, with the sidebar (app.py runs)
    assert "Model run:** cli-run" in sidebar_texts(again)
    assert "mine.png" in sidebar_texts(again)
    # Home agrees with the sidebar and the runs folder
    assert "No model of your own yet" not in texts(again)
    assert "cli-run" in texts(again)
    again.switch_page("pages/dataset.py").run()
    check(again)
    assert again.session_state["dataset_name"] == "mine.png"
    ds = again.session_state["dataset"][0]
    assert ds.kind == "nphase" and ds.labels.shape == (80, 80)
    assert np.array_equal(ds.labels, (labels > 0).astype(np.uint8))
    assert "Showing the bundled example" not in texts(again)
    assert Path(again.session_state["run_dir"]) == run


def test_new_session_without_url_opens_the_newest_run(home):
    from matgen_core import io, runs

    runs.create_run(home / "older", "slicegan", [io.require_phases(io.read_micrograph(EXAMPLE))])
    at = new_app()
    assert Path(at.session_state["run_dir"]).name == "older"
    assert "Model run:** older" in sidebar_texts(at)
    assert at.query_params["run"] in ("older", ["older"])


def test_upload_replaces_by_default_and_adds_planes_when_asked(home):
    a = png_bytes((np.indices((64, 64)).sum(0) % 16 < 8).astype(np.uint8) * 255)
    b = png_bytes((np.indices((64, 64))[1] % 12 < 6).astype(np.uint8) * 255)
    at = new_app()
    at.switch_page("pages/dataset.py").run()
    at.file_uploader[0].upload("first.png", a, "image/png").run()
    check(at)
    assert [m.source for m in at.session_state["raw"]] == ["first.png"]
    # a second drop replaces (the uploader still lists the first file)
    at.file_uploader[0].upload("second.png", b, "image/png").run()
    check(at)
    assert [m.source for m in at.session_state["raw"]] == ["second.png"]
    # explicit 'add a plane': the next image becomes the XZ plane, then the YZ plane
    at.radio(key="upload_mode").set_value(at.radio(key="upload_mode").options[1]).run()
    assert "added as image 2: **both side planes (XZ and YZ)**" in texts(at)
    at.file_uploader[0].upload("third.png", a, "image/png").run()
    check(at)
    assert [m.source for m in at.session_state["raw"]] == ["second.png", "third.png"]
    assert len(at.session_state["dataset"]) == 2
    shown = texts(at)
    assert "used for **the XY plane**" in shown and "used for **both side planes (XZ and YZ)**" in shown


def test_home_shows_the_demo_model_volume(home):
    from pages import _ui

    if not _ui.demo_available():
        pytest.skip("assets/demo_model is missing")
    at = new_app()
    for _ in range(240):  # the demo scene is made in the background; Home polls for it
        if at.get("iframe") or any("Demo model (bundled)" in m.value for m in at.markdown):
            break
        time.sleep(0.5)
        at.run()
        check(at)
    assert any("Demo model (bundled)" in m.value for m in at.markdown)
    assert "steps" in texts(at) and "CPU minutes" in texts(at)
    bundle = _ui.demo_bundle()
    assert "error" not in bundle, bundle.get("error")
    assert bundle["generated"]["array"].shape == _ui.DEMO_SHAPE
    record = bundle["generated"]["record"]  # how the demo volume was made, for Analyze and Export
    assert (record["policy"], record["seed"], record["shape"]) == ("raw", 0, list(_ui.DEMO_SHAPE))
    assert record["step"] == _ui.demo_info()["trained_steps"] and record["run"] == "assets/demo_model"
    assert len(set(np.unique(bundle["generated"]["array"]))) == 3  # every phase of the example
    # the stored volume is what the bundled model makes for seed 0 today (not a stale file)
    from matgen_core import generate
    made = generate.generate(_ui.DEMO_RUN, shape=_ui.DEMO_SHAPE, seed=0, device="cpu", policy="raw")
    assert np.array_equal(made.array, bundle["generated"]["array"])
    assert bundle["html"] is not None and "OfflineLocalView" in bundle["html"], bundle["view_error"]
    assert bundle["shown"] == [1, 2]
    table = at.dataframe[0].value
    assert list(table.columns) == ["phase", "training image %", "demo volume %"]
    # the sidebar says the user has no run of their own and where the demo's volume is (a fresh
    # session: the polled run above ends in a rerun that AppTest reports without the sidebar)
    again = new_app()
    assert "none of yours yet" in sidebar_texts(again) and "bundled demo model" in sidebar_texts(again)
    assert any("Demo model (bundled)" in m.value for m in again.markdown)  # ready at once now


# --- issue 14: the label policy survives a reload; the .npy download has its record ---


def _spy_downloads(monkeypatch) -> dict:
    """file name -> the callable behind each st.download_button made from now on."""
    from streamlit.runtime.media_file_manager import MediaFileManager

    captured = {}
    original = MediaFileManager.add_deferred

    def spy(self, data_callable, mimetype, coordinates, file_name=None, **kw):
        captured[file_name] = data_callable
        return original(self, data_callable, mimetype, coordinates, file_name=file_name, **kw)

    monkeypatch.setattr(MediaFileManager, "add_deferred", spy)
    return captured


def reload_with(run: Path, gen: str, policy: str | None) -> AppTest:
    fresh = AppTest.from_file(APP, default_timeout=180)
    fresh.query_params["run"] = run.name
    fresh.query_params["gen"] = gen
    if policy is not None:
        fresh.query_params["policy"] = policy
    fresh.run()
    check(fresh)
    return fresh


def test_reload_restores_steered_and_calibrated_volumes_and_npy_record(home, monkeypatch, tmp_path):
    """A steered (then a calibrated) volume comes back after a reload as the same volume, with the
    Generate page's controls as they were; the Export page offers the .npy's record
    (<name>.npy.json), which read_generation_info reads next to the .npy."""
    from matgen_core import fractions, generate, io, runs, train

    run = home / "pol"
    runs.create_run(run, "slicegan", [io.read_micrograph(EXAMPLE)], preset="quick", overrides=TINY)
    train.train(run, steps=2, device="cpu")
    rng = fractions.supported_range(run)
    at = new_app()
    at.switch_page("pages/generate.py").run()
    check(at)
    at.toggle(key="gen_frac_on").set_value(True).run()
    target0 = round(100 * rng["center"][0] + 5, 1)
    at.slider(key="gen_frac_pol_0").set_value(target0).run()
    for k in ("gen_z", "gen_y", "gen_x"):
        at.number_input(key=k).set_value(32)
    next(b for b in at.button if b.label == "Generate").click().run(timeout=180)
    check(at)
    gen = at.session_state["generated"]
    assert gen.policy == "steered"
    token = generate.policy_token(gen.info)
    assert token.startswith("steered-") and generate.parse_policy_token(token)[0] == "steered"
    # what app.py writes into the URL (AppTest runs only the page after switch_page)
    from pages import _ui

    url = _ui.wanted_query_params({k: at.session_state[k] for k in ("run_dir", "generated",
                                                                   "generated_meta")})
    assert url == {"run": "pol", "gen": "0-32x32x32", "policy": token}

    # Export: the .npy and its record
    captured = _spy_downloads(monkeypatch)
    at.switch_page("pages/export.py").run()
    check(at)
    rec = next(n for n in captured if n.endswith(".npy.json"))
    npy = rec[: -len(".json")]
    assert npy in captured
    (tmp_path / npy).write_bytes(_as_bytes(captured[npy]()))
    (tmp_path / rec).write_bytes(_as_bytes(captured[rec]()))
    info = io.read_generation_info(tmp_path / npy)
    assert info["policy"] == "steered" and info == json.loads(json.dumps(gen.info))
    assert np.array_equal(np.load(tmp_path / npy), gen.array)

    # a reload: the same steered volume, and the sliders as they were
    again = reload_with(run, "0-32x32x32", token)
    back = again.session_state["generated"]
    assert back.policy == "steered" and np.array_equal(back.array, gen.array)
    assert np.allclose(back.info["target_fractions"], gen.info["target_fractions"], atol=1e-12)
    again.switch_page("pages/generate.py").run(timeout=180)
    check(again)
    assert again.toggle(key="gen_frac_on").value is True
    assert again.slider(key="gen_frac_pol_0").value == pytest.approx(target0)
    assert any("label policy **steered**" in m.value for m in again.markdown)
    assert not any("Session State" in w.value for w in again.warning)  # widgets set cleanly

    # calibrated: restored as calibrated, the radio says so
    cal = reload_with(run, "3-32x32x32", "calibrated")
    assert cal.session_state["generated"].policy == "calibrated"
    assert "paths" in cal.session_state["generated"].info  # what the bias changed, recorded
    cal.switch_page("pages/generate.py").run(timeout=180)
    check(cal)
    assert cal.toggle(key="gen_frac_on").value is False
    assert cal.radio(key="gen_policy").value == "calibrated"
    assert cal.number_input(key="gen_seed").value == 3  # the form shows the restored seed
    assert not any("Session State" in w.value for w in cal.warning)
    assert any("Paths through each phase" in c.value for c in cal.caption)
    # a policy MatGen does not write: raw, with a note
    bad = reload_with(run, "0-32x32x32", "steered-1,2")
    assert bad.session_state["generated"].policy == "raw"
    assert "is not one MatGen writes" in sidebar_texts(bad) + texts(bad)
