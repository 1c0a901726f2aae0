"""Background training jobs (matgen_core.jobs), with a fake trainer and one tiny real run."""
import json
import threading
import time

import numpy as np
import pytest

from matgen_core.errors import MatgenInputError
from matgen_core.jobs import JobManager, format_eta, loss_history


def make_run(tmp_path, name="run"):
    run = tmp_path / name
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"model": "fake"}))
    return run


def fake_train(delay=0.01, fail=None):
    """A stand-in for train.train: emits the documented events, honours stop, writes losses."""

    def train(run_dir, steps=None, max_minutes=None, device="auto", callbacks=(), stop=None):
        total = steps or 20
        step = 0
        reason = "steps"
        with open(run_dir / "losses.jsonl", "a") as f:
            while step < total:
                if stop is not None and stop.is_set():
                    reason = "stopped"
                    break
                if fail is not None and step == 3:
                    raise fail
                time.sleep(delay)
                step += 1
                losses = {"critic": -float(step), "generator": float(step) / 2}
                f.write(json.dumps({"step": step, "time_s": step * delay, **losses}) + "\n")
                f.flush()
                for cb in callbacks:
                    cb(dict(type="step", step=step, total_steps=total, losses=losses,
                            elapsed_s=step * delay, eta_s=(total - step) * delay,
                            steps_per_s=1 / delay if delay else None))
                    if step % 5 == 0:
                        cb(dict(type="preview", step=step, image=np.full((4, 4), step % 256, np.uint8)))
        for cb in callbacks:
            cb(dict(type="done", step=step, reason=reason, message=""))
        return {"step": step, "reason": reason, "elapsed_s": step * delay}

    return train


def test_job_runs_to_completion_and_records_events(tmp_path):
    run = make_run(tmp_path)
    mgr = JobManager(train_fn=fake_train(), threads=1)
    job = mgr.start(run, steps=12)
    assert mgr.get(run) is job
    assert job.wait(10)
    snap = job.snapshot()
    assert snap["status"] == "done" and snap["reason"] == "steps"
    assert snap["step"] == 12 and snap["total_steps"] == 12
    assert snap["losses"] == {"critic": -12.0, "generator": 6.0}
    assert snap["preview_step"] == 10 and snap["preview"].max() == 10
    assert [r["step"] for r in job.history()] == list(range(1, 13))
    assert snap["error"] is None and snap["finished_at"] is not None


def test_stop_and_resume(tmp_path):
    run = make_run(tmp_path)
    mgr = JobManager(train_fn=fake_train(delay=0.02), threads=1)
    job = mgr.start(run, steps=10_000)
    while job.snapshot()["step"] < 3:
        time.sleep(0.01)
    mgr.stop(run)
    assert job.wait(10)
    assert job.status == "stopped" and job.reason == "stopped"
    again = mgr.start(run, steps=5)  # a finished job can be restarted
    assert again is not job and again.wait(10) and again.status == "done"


def test_concurrency_limit_and_duplicate(tmp_path):
    a, b = make_run(tmp_path, "a"), make_run(tmp_path, "b")
    mgr = JobManager(max_concurrent=1, train_fn=fake_train(delay=0.02), threads=1)
    job = mgr.start(a, steps=10_000)
    with pytest.raises(MatgenInputError, match="already training"):
        mgr.start(a, steps=10)
    with pytest.raises(MatgenInputError, match="allows 1 at a time"):
        mgr.start(b, steps=10)
    assert [j.run_dir.name for j in mgr.running()] == ["a"]
    mgr.stop_all(wait=10)
    assert not job.active
    assert mgr.start(b, steps=2).wait(10)


def test_not_a_run(tmp_path):
    with pytest.raises(MatgenInputError, match="not a MatGen run"):
        JobManager(train_fn=fake_train()).start(tmp_path / "nothing")


def test_errors_become_messages(tmp_path):
    run = make_run(tmp_path)
    mgr = JobManager(train_fn=fake_train(fail=MatgenInputError("The image is too small.")))
    job = mgr.start(run, steps=10)
    assert job.wait(10)
    assert job.status == "error" and job.error == "The image is too small."
    run2 = make_run(tmp_path, "r2")
    mgr2 = JobManager(train_fn=fake_train(fail=RuntimeError("CUDA out of memory")))
    job2 = mgr2.start(run2, steps=10)
    assert job2.wait(10)
    assert job2.status == "error" and "CUDA out of memory" in job2.error
    assert "Traceback" not in job2.error


def test_loss_history_from_file_and_live_job(tmp_path):
    run = make_run(tmp_path)
    rows = [{"step": s, "time_s": s, "critic": float(s)} for s in (1, 2, 3)]
    (run / "losses.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 4, "cri')
    assert [r["step"] for r in loss_history(run)] == [1, 2, 3]  # the cut line is skipped

    class FakeJob:
        def history(self):
            return [{"step": 2, "critic": 2.0}, {"step": 4, "critic": 4.0}]

    assert [r["step"] for r in loss_history(run, FakeJob())] == [1, 2, 3, 4]
    assert loss_history(tmp_path / "missing") == []


def test_thread_safe_snapshots(tmp_path):
    run = make_run(tmp_path)
    mgr = JobManager(train_fn=fake_train(delay=0.0), threads=1)
    job = mgr.start(run, steps=600)
    seen = []
    while job.active:
        h = job.history()
        seen.append(len(h))
        time.sleep(0.001)
        assert all(r["step"] == i + 1 for i, r in enumerate(h[:50]))
    assert job.wait(10) and len(job.history()) == 600
    assert seen == sorted(seen)


def test_format_eta():
    assert format_eta(None) == ""
    assert format_eta(12.4) == "12 s"
    assert format_eta(185) == "3 min 05 s"
    assert format_eta(3725) == "1 h 02 min"


@pytest.mark.timeout(240)
def test_tiny_real_training(tmp_path):
    """The real driver through a job: events arrive, losses.jsonl and a checkpoint are written."""
    io = pytest.importorskip("matgen_core.io")
    from matgen_core import runs

    labels = np.zeros((64, 64), np.uint8)
    labels[:, ::8] = 1
    labels[::8, :] = 1
    m = io.Micrograph(labels=labels, image=labels.astype(np.float32), kind="nphase",
                      phase_values=[0, 255], source="grid.png")
    run = tmp_path / "tiny"
    runs.create_run(run, "slicegan", [m], preset="quick", overrides=TINY)
    mgr = JobManager(threads=1)
    job = mgr.start(run, steps=3, device="cpu")
    assert job.wait(200), "tiny training did not finish"
    snap = job.snapshot()
    assert snap["status"] == "done", snap["error"]
    assert snap["step"] == 3 and [r["step"] for r in loss_history(run)] == [1, 2, 3]
    assert runs.latest_checkpoint(run) is not None


TINY = {"gen_channels": [8, 8, 8, 8], "critic_channels": [8, 8, 8], "batch_size": 1,
        "real_batch": 2, "critic_iters": 1, "critic_slices": 2}



# --- reliability (#15): sessions own the runs they start; the run lock is respected ------------

def test_sessions_own_their_runs(tmp_path):
    from matgen_core.jobs import OwnershipError, read_owner

    run = make_run(tmp_path)
    mgr = JobManager(train_fn=fake_train(delay=0.02), threads=1)
    job = mgr.start(run, steps=10_000, owner="alice123")
    assert job.snapshot()["owner"] == "alice123"
    assert read_owner(run)["session"] == "alice123"
    assert mgr.foreign_owner(run, "alice123") is None
    assert "alice123"[:8] in mgr.foreign_owner(run, "bob45678")
    with pytest.raises(OwnershipError, match="another session") as err:
        mgr.stop(run, session="bob45678")
    assert "alice123" in str(err.value) and job.active  # not stopped
    mgr.stop(run, session="bob45678", force=True)  # confirmed
    assert job.wait(10) and job.snapshot()["status"] == "stopped"
    # resume by another session: asks first; the owner itself resumes freely
    with pytest.raises(OwnershipError):
        mgr.start(run, steps=3, owner="bob45678")
    assert mgr.start(run, steps=3, owner="alice123").wait(10)
    taken = mgr.start(run, steps=6, owner="bob45678", force=True)
    assert taken.wait(10) and mgr.owner_of(run) == "bob45678"
    # a new server (no jobs in memory) still knows the owner from the run folder
    assert JobManager(train_fn=fake_train(), threads=1).foreign_owner(run, "alice123")


def test_stop_without_a_session_still_works(tmp_path):
    run = make_run(tmp_path)
    mgr = JobManager(train_fn=fake_train(delay=0.02), threads=1)
    job = mgr.start(run, steps=10_000, owner="alice123")
    mgr.stop(run)  # the CLI / atexit path: no session check
    assert job.wait(10) and job.snapshot()["status"] == "stopped"


def test_run_locked_by_another_process_is_refused(tmp_path):
    import subprocess
    import sys

    run = make_run(tmp_path)
    code = ("import sys, time; from matgen_core import runlock; runlock.acquire(sys.argv[1], 'matgen train'); "
            "print('locked', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(MatgenInputError, match=f"pid {proc.pid}.*matgen train"):
            JobManager(train_fn=fake_train(), threads=1).start(run, steps=3)
    finally:
        proc.kill()
        proc.wait()
    assert JobManager(train_fn=fake_train(), threads=1).start(run, steps=3).wait(10)


def test_two_jobs_of_one_server_cannot_train_one_run(tmp_path):
    """Two JobManagers in one process (two servers' worth): the run lock refuses the second."""
    from matgen_core import runlock

    run = make_run(tmp_path)
    hold = threading.Event()

    def locked_train(run_dir, steps=None, max_minutes=None, device="auto", callbacks=(), stop=None):
        lock = runlock.acquire(run_dir, what="training")
        try:
            hold.wait(10)
            return {"step": 0, "reason": "stopped", "elapsed_s": 0}
        finally:
            lock.release()

    a = JobManager(train_fn=locked_train, threads=1).start(run, steps=3)
    time.sleep(0.5)
    with pytest.raises(MatgenInputError, match="training"):
        JobManager(train_fn=locked_train, threads=1).start(run, steps=3)
    hold.set()
    assert a.wait(10)
