"""Train page (AppTest): another session's run asks before Stop, damaged runs do not break the
page, run names cannot leave the runs folder."""
import time
from pathlib import Path

import numpy as np
import pytest
from streamlit.testing.v1 import AppTest

from matgen_core import runs
from matgen_core.io import Micrograph
from conftest import TINY_SLICEGAN, blobs

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "app.py")

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("MATGEN_HOME", str(tmp_path / "runs"))
    yield tmp_path / "runs"
    from pages import _ui

    _ui.job_manager().stop_all(wait=30)


def check(at: AppTest) -> None:
    assert not at.exception, "\n".join(e.value + "\n" + "".join(e.stack_trace) for e in at.exception)


def make_run(home: Path, name: str) -> Path:
    m = Micrograph(labels=blobs(64), image=blobs(64).astype(np.float32), kind="nphase",
                   phase_values=[0, 255], source="blobs.png")
    return runs.create_run(home / name, "slicegan", [m], overrides=TINY_SLICEGAN)


def train_page(run: Path | None = None) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    if run is not None:
        at.session_state["run_dir"] = str(run)
    at.switch_page("pages/train.py").run()
    check(at)
    return at


def slow_fake_train(run_dir, steps=None, max_minutes=None, device="auto", callbacks=(), stop=None):
    step = 0
    while not stop.is_set() and step < 10_000:
        time.sleep(0.02)
        step += 1
        for cb in callbacks:
            cb(dict(type="step", step=step, total_steps=10_000, losses={"critic": 0.0},
                    elapsed_s=step * 0.02, eta_s=1.0, steps_per_s=50.0))
    for cb in callbacks:
        cb(dict(type="done", step=step, reason="stopped", message=""))
    return {"step": step, "reason": "stopped", "elapsed_s": step * 0.02}


def test_stop_on_another_sessions_run_asks_first(home, monkeypatch):
    from pages import _ui

    run = make_run(home, "theirs")
    mgr = _ui.job_manager()
    monkeypatch.setattr(mgr, "_train_fn", slow_fake_train)
    job = mgr.start(run, steps=10_000, owner="othersession")
    at = train_page(run)
    at.button(key="stop_btn").click().run()
    check(at)
    warnings = " ".join(w.value for w in at.warning)
    assert "another session" in warnings and "session otherses" in warnings
    assert job.active, "not stopped without confirmation"
    at.button(key="confirm_foreign_yes").click().run()
    check(at)
    assert job.wait(10) and job.snapshot()["status"] == "stopped"


def test_own_run_stops_without_asking(home, monkeypatch):
    from pages import _ui

    run = make_run(home, "mine")
    mgr = _ui.job_manager()
    monkeypatch.setattr(mgr, "_train_fn", slow_fake_train)
    at = train_page(run)
    job = mgr.start(run, steps=10_000, owner=at.session_state["session_token"])
    at.run()
    at.button(key="stop_btn").click().run()
    check(at)
    assert job.wait(10) and not at.warning


def test_damaged_runs_do_not_break_the_page(home):
    good = make_run(home, "good")
    bad_cfg = make_run(home, "bad_cfg")
    (bad_cfg / "config.json").write_text("[]")
    bad_prog = make_run(home, "bad_prog")
    (bad_prog / "progress.json").write_text("{")
    at = train_page()
    table = at.dataframe[0].value
    status = dict(zip(table["run"], table["status"]))
    assert status["good"] == "Not started" and status["bad_cfg"].startswith("Damaged")
    assert status["bad_prog"].startswith("Damaged")
    assert "damaged" in dict(zip(table["run"], table["note"]))["bad_cfg"]
    for run in (bad_cfg, bad_prog, good):  # open each: a message, never a traceback
        at = train_page(run)
        if run == bad_cfg:
            assert any("damaged" in e.value for e in at.error)


def test_run_name_dot_dot_stays_inside_the_runs_folder(home):
    home.mkdir(parents=True, exist_ok=True)
    at = train_page()
    at.text_input(key="new_name").set_value("..")
    at.button(key="start_btn").click().run()
    check(at)
    assert any("Run name" in e.value for e in at.error)
    assert not (home.parent / "config.json").exists() and not (home / "config.json").exists()
