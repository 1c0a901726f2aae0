"""One writer per run folder (runlock.py): refusals name the holder, stale locks are taken over,
two concurrent trainings into one folder leave the first's files intact."""
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

from matgen_core import runlock, runs
from matgen_core.errors import MatgenInputError
from matgen_core.jobs import JobManager
from conftest import TINY_SLICEGAN, blobs


def tiny_sets():
    out = []
    for k, v in TINY_SLICEGAN.items():
        out += ["--set", f"{k}={json.dumps(v).replace(' ', '')}"]
    return out


def cli(*args, **kw):
    return subprocess.Popen([sys.executable, "-m", "matgen_core.cli", *map(str, args)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, **kw)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_lock_is_exclusive_reentrant_and_removed(tmp_path):
    run = tmp_path / "run"
    lock = runlock.acquire(run, what="test")
    holder = json.loads((run / runlock.LOCK_NAME).read_text())
    assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
    assert holder["what"] == "test" and holder["started"]
    assert runlock.acquire(run) is lock  # same thread: re-entrant
    lock.release()
    assert (run / runlock.LOCK_NAME).exists() and runlock.is_locked(run)
    errors = []

    def other_thread():
        try:
            runlock.acquire(run)
        except runlock.RunLockedError as err:
            errors.append(str(err))

    t = threading.Thread(target=other_thread)
    t.start()
    t.join()
    assert errors and f"pid {os.getpid()}" in errors[0] and "in use" in errors[0]
    lock.release()
    assert not (run / runlock.LOCK_NAME).exists() and not runlock.is_locked(run)
    runlock.acquire(run).release()  # free again


def test_stale_lock_of_dead_process_is_taken_over(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    pid = dead_pid()
    (run / runlock.LOCK_NAME).write_text(json.dumps(
        {"pid": pid, "host": socket.gethostname(), "what": "matgen train", "started": "2026-01-01T00:00:00"}))
    assert not runlock.is_locked(run)
    lock = runlock.acquire(run)
    try:
        assert lock.took_over["pid"] == pid
        assert json.loads((run / runlock.LOCK_NAME).read_text())["pid"] == os.getpid()
    finally:
        lock.release()


def test_lock_from_another_host_is_refused(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    (run / runlock.LOCK_NAME).write_text(json.dumps({"pid": 1, "host": "node-elsewhere-17"}))
    with pytest.raises(runlock.RunLockedError, match="node-elsewhere-17") as err:
        runlock.acquire(run)
    assert "delete" in str(err.value)


def test_lock_of_a_killed_process_is_released_by_the_os(tmp_path):
    run = tmp_path / "run"
    code = ("import sys, time; from matgen_core import runlock; runlock.acquire(sys.argv[1], 'holder'); "
            "print('locked', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(runlock.RunLockedError, match=f"pid {proc.pid}"):
            runlock.acquire(run)
    finally:
        proc.kill()  # kill -9: no clean-up code runs
        proc.wait()
    assert (run / runlock.LOCK_NAME).exists()
    lock = runlock.acquire(run)
    assert lock.took_over["pid"] == proc.pid
    lock.release()


@pytest.mark.slow
def test_two_trainings_into_one_folder(tmp_path):
    """Two `matgen train` into one --out at once: one wins, the other exits 2; then --resume and the
    app are refused while it trains; the winner's losses, seed and checkpoint are intact."""
    img = tmp_path / "blobs.png"
    Image.fromarray((blobs(64) * 255).astype(np.uint8)).save(img)
    run = tmp_path / "run"
    a = cli("train", "slicegan", img, "--out", run, "--steps", "3000", "--seed", "11", "--quiet", *tiny_sets())
    b = cli("train", "slicegan", img, "--out", run, "--steps", "3000", "--seed", "22", "--quiet", *tiny_sets())
    # whichever is refused exits 2 with one line at once; the other keeps training
    deadline = time.time() + 240
    while a.poll() is None and b.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    loser, winner, seed = (a, b, 22) if a.poll() is not None else (b, a, 11)
    assert loser.wait(30) == 2, loser.stderr.read()
    err = loser.stderr.read().strip().splitlines()
    assert len(err) == 1 and ("in use" in err[0] or "already holds a run" in err[0]), err
    assert winner.poll() is None, winner.stderr.read()
    try:
        while not runs.read_losses(run) and time.time() < deadline:
            time.sleep(0.2)
        # --resume while it trains: refused, naming the holder
        resume = cli("train", "slicegan", "--out", run, "--resume", "--quiet")
        assert resume.wait(240) == 2
        line = resume.stderr.read().strip()
        assert f"pid {winner.pid}" in line and "in use" in line and len(line.splitlines()) == 1
        # the app cannot start it either
        with pytest.raises(MatgenInputError, match=f"pid {winner.pid}"):
            JobManager(threads=1).start(run, steps=5)
    finally:
        winner.send_signal(signal.SIGINT)  # stops cleanly with a checkpoint
    assert winner.wait(120) == 0, winner.stderr.read()
    steps = [r["step"] for r in runs.read_losses(run)]
    assert steps == list(range(1, len(steps) + 1)), "loss rows duplicated or missing"
    assert runs.load_config(run)["seed"] == seed
    ckpt = runs.load_checkpoint(run)
    assert ckpt["step"] == steps[-1] and "generator" in ckpt["state"]
    assert not (run / runlock.LOCK_NAME).exists()


@pytest.mark.slow
def test_resume_after_kill_9_takes_over_and_cleans_temp_files(tmp_path):
    img = tmp_path / "blobs.png"
    Image.fromarray((blobs(64) * 255).astype(np.uint8)).save(img)
    run = tmp_path / "run"
    proc = cli("train", "slicegan", img, "--out", run, "--steps", "3000", "--quiet", *tiny_sets())
    deadline = time.time() + 240
    while not runs.read_losses(run) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    assert (run / runlock.LOCK_NAME).exists()
    (run / "checkpoints").mkdir(exist_ok=True)
    left = [run / "checkpoints" / ".latest.abc.tmp", run / ".progress.json.xyz.tmp"]
    for p in left:
        p.write_bytes(b"half written")
    done = subprocess.run([sys.executable, "-m", "matgen_core.cli", "train", "slicegan", "--out", str(run),
                           "--resume", "--steps", "2", "--quiet"], capture_output=True, text=True, timeout=240)
    assert done.returncode == 0, done.stderr
    assert "took over the lock" in done.stderr and f"pid {proc.pid}" in done.stderr
    assert not any(p.exists() for p in left)
    assert not (run / runlock.LOCK_NAME).exists()


@pytest.mark.slow
def test_torchrun_into_a_locked_run_stops_every_rank(tmp_path):
    """Rank 0 cannot lock the run: every rank exits (none waits at a barrier) and nothing is written."""
    import shutil

    img = tmp_path / "blobs.png"
    Image.fromarray((blobs(64) * 255).astype(np.uint8)).save(img)
    run = tmp_path / "run"
    code = ("import sys, time; from matgen_core import runlock; runlock.acquire(sys.argv[1], 'holder'); "
            "print('locked', flush=True); time.sleep(300)")
    holder = subprocess.Popen([sys.executable, "-c", code, str(run)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        exe = shutil.which("torchrun")
        cmd = [exe] if exe else [sys.executable, "-m", "torch.distributed.run"]
        proc = subprocess.run(cmd + ["--standalone", "--nproc_per_node", "2", "-m", "matgen_core.cli",
                                     "train", "slicegan", str(img), "--out", str(run), "--steps", "2",
                                     "--quiet", *tiny_sets()],
                              capture_output=True, text=True, timeout=240,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert proc.returncode != 0
        assert f"pid {holder.pid}" in proc.stderr and "in use" in proc.stderr
        assert not (run / "config.json").exists()
    finally:
        holder.kill()
        holder.wait()
