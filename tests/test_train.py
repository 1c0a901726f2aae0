"""The training driver: events, budgets, stop flag, atomic checkpoints, exact resume."""
import threading

import numpy as np
import pytest
import torch

from matgen_core import generate, runs, train
from matgen_core.errors import MatgenInputError
from matgen_core.io import Micrograph
from conftest import TINY_SLICEGAN, blobs


def micrograph(labels):
    return Micrograph(labels=labels, image=labels.astype(np.float32), kind="nphase",
                      phase_values=[0, 255], voxel_size=0.5, unit="um", source="blobs.png")


@pytest.fixture
def run_dir(tmp_path):
    return runs.create_run(tmp_path / "run", "slicegan", [micrograph(blobs(64))], preset="quick",
                           overrides=TINY_SLICEGAN, seed=7)


def test_create_run_writes_config_and_data(run_dir):
    cfg = runs.load_config(run_dir)
    assert cfg["model"] == "slicegan" and cfg["model_config"]["img_size"] == 32
    assert cfg["data"]["voxel_size"] == 0.5 and cfg["data"]["phase_values"] == [0, 255]
    assert np.array_equal(runs.load_images(run_dir)[0], blobs(64))
    with pytest.raises(MatgenInputError, match="already holds a run"):
        runs.create_run(run_dir, "slicegan", [micrograph(blobs(64))])


def test_unknown_override_is_rejected(tmp_path):
    with pytest.raises(MatgenInputError, match="Unknown setting"):
        runs.create_run(tmp_path / "r", "slicegan", [micrograph(blobs(64))], overrides={"lrr": 1})


def test_events_losses_and_checkpoint(run_dir):
    events = []
    result = train.train(run_dir, steps=3, callbacks=[events.append], preview_every=2)
    assert result == {"step": 3, "reason": "steps", "elapsed_s": result["elapsed_s"]}
    steps = [e for e in events if e["type"] == "step"]
    assert [e["step"] for e in steps] == [1, 2, 3]
    assert set(steps[0]["losses"]) >= {"critic", "generator", "wasserstein", "gradient_penalty"}
    assert steps[-1]["eta_s"] == pytest.approx(0.0)
    previews = [e for e in events if e["type"] == "preview"]
    assert previews and previews[0]["image"].dtype == np.uint8
    assert events[-1]["type"] == "done" and events[-1]["reason"] == "steps"
    assert [r["step"] for r in runs.read_losses(run_dir)] == [1, 2, 3]
    ckpt = torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=True)
    assert ckpt["step"] == 3 and "generator" in ckpt["state"]
    assert not list((run_dir / "checkpoints").glob("*.tmp")), "no temp files left behind"
    assert runs.run_info(run_dir).status == "done"


def _weights(run_dir):
    state = torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=True)["state"]
    return {k: v for k, v in state["generator"].items()}


def test_resume_equals_uninterrupted_training(tmp_path):
    a = runs.create_run(tmp_path / "a", "slicegan", [micrograph(blobs(64))], overrides=TINY_SLICEGAN, seed=1)
    b = runs.create_run(tmp_path / "b", "slicegan", [micrograph(blobs(64))], overrides=TINY_SLICEGAN, seed=1)
    train.train(a, steps=4, preview_every=0)
    train.train(b, steps=2, preview_every=0)
    train.train(b, steps=4, preview_every=0)  # resumes at step 2
    wa, wb = _weights(a), _weights(b)
    assert all(torch.equal(wa[k], wb[k]) for k in wa)
    assert [r["step"] for r in runs.read_losses(b)] == [1, 2, 3, 4]
    sa = torch.load(a / "checkpoints" / "latest.pt", weights_only=True)["state"]["opt_g"]
    sb = torch.load(b / "checkpoints" / "latest.pt", weights_only=True)["state"]["opt_g"]
    assert sa["state"][0]["step"] == sb["state"][0]["step"] == 4


def test_stop_flag_stops_and_checkpoints(run_dir):
    stop = threading.Event()

    def stop_at_2(event):
        if event["type"] == "step" and event["step"] == 2:
            stop.set()

    result = train.train(run_dir, steps=50, callbacks=[stop_at_2], stop=stop, preview_every=0)
    assert result["reason"] == "stopped" and result["step"] == 2
    assert runs.run_info(run_dir).status == "stopped"
    assert torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=True)["step"] == 2


def test_time_budget(run_dir):
    result = train.train(run_dir, steps=10_000, max_minutes=0.02, preview_every=0)
    assert result["reason"] == "time" and 1 <= result["step"] < 10_000


def test_crash_resumes_from_last_checkpoint(run_dir):
    def crash(event):
        if event["type"] == "step" and event["step"] == 3:
            raise RuntimeError("simulated crash")

    with pytest.raises(RuntimeError):
        train.train(run_dir, steps=10, callbacks=[crash], checkpoint_every=2, preview_every=0)
    assert torch.load(run_dir / "checkpoints" / "latest.pt", weights_only=True)["step"] == 2
    result = train.train(run_dir, steps=4, preview_every=0)
    assert result["step"] == 4
    assert [r["step"] for r in runs.read_losses(run_dir)] == [1, 2, 3, 4]


def test_generate_from_run_is_seeded_and_shaped(run_dir):
    train.train(run_dir, steps=1, preview_every=0)
    a = generate.generate(run_dir, shape=(16, 40, 24), seed=5)
    b = generate.generate(run_dir, shape=(16, 40, 24), seed=5)
    assert a.array.shape == (16, 40, 24) and a.array.dtype == np.uint8
    assert np.array_equal(a.array, b.array)
    assert set(np.unique(a.array)) <= {0, 1}
    assert a.voxel_size == 0.5 and a.phase_values == [0, 255]
    # the default policy is the raw generator; calibrated meets the training image's fractions
    assert a.policy == "raw" and a.info["bias"] is None
    cal = generate.generate(run_dir, shape=(16, 40, 24), seed=5, policy="calibrated")
    assert abs(cal.info["achieved_fractions"][1] - blobs(64).mean()) < 0.01


def test_generate_without_checkpoint_is_a_clear_error(run_dir):
    with pytest.raises(MatgenInputError, match="no checkpoint"):
        generate.generate(run_dir, shape=32)
