"""The training driver: events, budgets, stop flag, atomic checkpoints, exact resume."""
import json
import threading

import numpy as np
import pytest
import torch

from matgen_core import generate, io, runs, train
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


def test_a_volume_file_names_the_preset_and_the_settings_changed_from_it(tmp_path, run_dir):
    """How a volume was made includes the recipe: the preset plus the user's own changes, recorded
    when the run is created (the preset may change later), in config.json and every file."""
    assert runs.load_config(run_dir)["changed_settings"] == json.loads(json.dumps(TINY_SLICEGAN))
    other = runs.create_run(tmp_path / "resize", "slicegan", [micrograph(blobs(64))],
                            overrides={**TINY_SLICEGAN, "gen_upsample": "resize"})
    text = runs.recipe(runs.load_config(other))
    assert text.startswith("quick + ") and 'gen_upsample="resize"' in text and "lz=3" in text
    train.train(other, steps=1, preview_every=0)
    result = generate.generate(other, shape=(16, 16, 16), seed=1, out_path=tmp_path / "v.tif")
    assert io.read_generation_info(tmp_path / "v.tif")["recipe"] == text
    assert "(preset quick + " in generate.describe(result.info)[0]
    plain = runs.create_run(tmp_path / "plain", "slicegan", [micrograph(blobs(64))], preset="standard")
    assert runs.recipe(runs.load_config(plain)) == "standard"


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


# --- reliability (#15): settings, damaged runs, full disk, temp files, run names ---------------

@pytest.mark.parametrize("overrides, key", [
    ({"lr_g": "abc"}, "lr_g"), ({"batch_size": "four"}, "batch_size"), ({"batch_size": -1}, "batch_size"),
    ({"img_size": 33}, "img_size"), ({"gen_channels": [1]}, "gen_channels"),
    ({"lr_g": float("nan")}, "lr_g"), ({"steps": 0}, "steps"), ({"batch_size": 4.0}, "batch_size"),
    ({"critic_slices": True}, "critic_slices"), ({"ema_decay": 1.0}, "ema_decay"),
    ({"gen_upsample": "bilinear"}, "gen_upsample"),
    ({"gen_upsample": "resize", "gen_kernels": [6, 4, 4, 4, 4], "gen_strides": [3, 2, 2, 2, 2],
      "gen_paddings": [3, 2, 2, 2, 3], "lz": 3}, "gen_upsample"),
])
def test_bad_settings_name_the_key_and_leave_no_folder(tmp_path, overrides, key):
    target = tmp_path / "r"
    with pytest.raises(MatgenInputError, match=key):
        runs.create_run(target, "slicegan", [micrograph(blobs(64))], overrides={**TINY_SLICEGAN, **overrides})
    assert not target.exists()


def test_image_smaller_than_crop_is_refused_before_anything_is_written(tmp_path):
    with pytest.raises(MatgenInputError, match="32x32"):
        runs.create_run(tmp_path / "r", "slicegan", [micrograph(blobs(24))], overrides=TINY_SLICEGAN)
    assert not (tmp_path / "r").exists()
    # diagonal crops reach sqrt(2) times further along one side
    with pytest.raises(MatgenInputError, match="45 px along one side"):
        runs.create_run(tmp_path / "r", "slicegan", [micrograph(blobs(40))],
                        overrides={**TINY_SLICEGAN, "critic_diagonal": True})
    assert not (tmp_path / "r").exists()


def test_damaged_runs_are_listed_with_the_reason(tmp_path, run_dir):
    import json
    import shutil

    for name, config, progress in [("cfg_list", "[]", None), ("cfg_nodata", None, None),
                                   ("cfg_garbage", "{not json", None), ("prog_list", None, "[1, 2]"),
                                   ("prog_garbage", None, "{"), ("prog_step", None, '{"step": "x"}')]:
        shutil.copytree(run_dir, tmp_path / name)
        if name == "cfg_nodata":
            cfg = json.loads((run_dir / "config.json").read_text())
            del cfg["data"]
            config = json.dumps(cfg)
        if config is not None:
            (tmp_path / name / "config.json").write_text(config)
        if progress is not None:
            (tmp_path / name / "progress.json").write_text(progress)
    infos = {i.name: i for i in runs.list_runs(tmp_path, damaged=True)}
    assert infos["run"].status == "new" and not infos["run"].problem
    for name in ("cfg_list", "cfg_nodata", "cfg_garbage", "prog_list", "prog_garbage", "prog_step"):
        assert infos[name].status == "damaged" and infos[name].problem, name
    assert "data" in infos["cfg_nodata"].problem and "list" in infos["cfg_list"].problem
    # without damaged=True the folders that cannot be opened are left out; progress damage is shown
    plain = {i.name: i.status for i in runs.list_runs(tmp_path)}
    assert "cfg_list" not in plain and plain["prog_list"] == "damaged" and plain["run"] == "new"
    with pytest.raises(MatgenInputError, match="damaged"):
        runs.load_config(tmp_path / "cfg_list")
    # a damaged progress record does not stop training: it is rewritten
    assert train.train(tmp_path / "prog_garbage", steps=1, preview_every=0)["step"] == 1
    assert runs.run_info(tmp_path / "prog_garbage").status == "done"


def test_disk_full_keeps_last_checkpoint_and_says_failed(run_dir, monkeypatch):
    import errno
    import json

    from matgen_core.errors import DiskFullError

    train.train(run_dir, steps=2, preview_every=0)
    good = (run_dir / "checkpoints" / "latest.pt").read_bytes()
    real_save = torch.save

    def full_disk(obj, f, *a, **k):
        real_save(obj, f, *a, **k)  # part of it is written, then the disk is full
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full_disk)
    events = []
    with pytest.raises(DiskFullError, match="Disk full"):
        train.train(run_dir, steps=6, checkpoint_every=2, preview_every=0, callbacks=[events.append])
    assert (run_dir / "checkpoints" / "latest.pt").read_bytes() == good
    assert not list((run_dir / "checkpoints").glob("*.tmp"))
    progress = json.loads((run_dir / "progress.json").read_text())
    assert progress["status"] == "failed" and "Disk full" in progress["error"] and progress["step"] == 2
    assert runs.run_info(run_dir).status == "failed"
    assert events[-1]["type"] == "done" and events[-1]["reason"] == "error"
    monkeypatch.setattr(torch, "save", real_save)
    assert train.train(run_dir, steps=3, preview_every=0)["step"] == 3  # resumes from step 2


def test_checkpoint_is_flushed_before_the_rename(run_dir, monkeypatch):
    import os

    order = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (order.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (order.append(f"replace {os.path.basename(b)}"),
                                                     real_replace(a, b))[1])
    runs.save_checkpoint(run_dir, {"step": 1, "state": {}})
    i = order.index("replace latest.pt")
    assert order[i - 1] == "fsync" and order[i + 1:i + 2] == ["fsync"]  # file, rename, folder


def test_temp_files_of_a_killed_writer_are_removed_on_start(run_dir):
    (run_dir / "checkpoints").mkdir(exist_ok=True)
    left = [run_dir / "checkpoints" / ".latest.x1.tmp", run_dir / ".progress.json.x2.tmp",
            run_dir / "previews" / ".latest.png.x3.tmp"]
    for path in left:
        path.parent.mkdir(exist_ok=True)
        path.write_bytes(b"partial")
    train.train(run_dir, steps=1, preview_every=0)
    assert not any(p.exists() for p in left)


def test_bad_checkpoints_are_clear_errors(run_dir):
    train.train(run_dir, steps=1, preview_every=0)
    path = run_dir / "checkpoints" / "latest.pt"
    torch.save({"step": 1}, path)
    with pytest.raises(MatgenInputError, match="no 'state'"):
        train.train(run_dir, steps=2)
    torch.save({"step": 1, "state": {"generator": {"w": torch.zeros(2)}}}, path)
    with pytest.raises(MatgenInputError, match="does not fit"):
        generate.generate(run_dir, shape=16)
    with pytest.raises(MatgenInputError, match="does not fit"):
        train.train(run_dir, steps=2)


def test_budgets_are_checked(run_dir):
    for steps, minutes in ((0, None), (-5, None), (None, -1), (None, 0), (None, float("nan"))):
        with pytest.raises(MatgenInputError):
            train.train(run_dir, steps=steps, max_minutes=minutes)


@pytest.mark.parametrize("name", ["..", ".", "", "  ", "///", "-"])
def test_run_names_that_are_not_a_folder_are_refused(tmp_path, name):
    with pytest.raises(MatgenInputError, match="Run name"):
        runs.safe_run_dir(tmp_path / "runs", name)


def test_run_names_stay_one_folder_inside_the_runs_folder(tmp_path):
    home = tmp_path / "runs"
    for name in ("a/b", "../escape", "/etc/passwd", "a\\b", "..hidden", "ok-name_1.2"):
        path = runs.safe_run_dir(home, name)
        assert path.parent == home and path.name not in (".", "..") and "/" not in path.name
    assert runs.safe_run_dir(home, "../escape").name == "..-escape"
