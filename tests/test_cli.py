"""The `matgen` command: the train -> generate contract and clear errors for bad input."""
import subprocess
import sys

import numpy as np
import pytest
import tifffile
from PIL import Image

from matgen_core import cli
from matgen_core.io import read_volume
from conftest import TINY_SLICEGAN, blobs


def tiny_sets():
    out = []
    for k, v in TINY_SLICEGAN.items():
        out += ["--set", f"{k}={v}".replace("'", '"').replace(" ", "")]
    return out


def save_png(path, labels, scale=255):
    Image.fromarray((labels * scale).astype(np.uint8)).save(path)
    return str(path)


def run_cli(*args):
    """Run matgen in a subprocess (what a user sees: exit code, stdout, stderr)."""
    return subprocess.run([sys.executable, "-m", "matgen_core.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=300)


def test_train_generate_tiff_contract(tmp_path):
    img = save_png(tmp_path / "blobs.png", blobs(64))
    run = tmp_path / "run"
    assert cli.main(["train", "slicegan", img, "--out", str(run), "--steps", "2", "--seed", "3",
                     "--quiet", *tiny_sets()]) == 0
    out = tmp_path / "vol.tif"
    assert cli.main(["generate", str(run), "--out", str(out), "--shape", "16,24,40", "--seed", "1"]) == 0
    vol = tifffile.imread(out)
    assert vol.shape == (16, 24, 40) and vol.dtype == np.uint8 and vol.max() <= 1
    again = tmp_path / "vol2.npy"
    assert cli.main(["generate", str(run), "--out", str(again), "--shape", "16,24,40", "--seed", "1"]) == 0
    assert np.array_equal(np.load(again), vol), "same seed, same volume"
    _, meta = read_volume(out)
    assert meta.get("phase_values") == [0, 255]
    # --resume continues the step count
    assert cli.main(["train", "slicegan", "--out", str(run), "--resume", "--steps", "3", "--quiet"]) == 0
    from matgen_core.runs import read_losses
    assert [r["step"] for r in read_losses(run)] == [1, 2, 3]


def _assert_clean_error(proc, *needles):
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [ln for ln in proc.stderr.strip().splitlines() if ln]
    assert len(lines) == 1, proc.stderr
    for needle in needles:
        assert needle.lower() in lines[0].lower(), lines[0]


def test_error_missing_file(tmp_path):
    _assert_clean_error(run_cli("train", "slicegan", tmp_path / "nope.png", "--out", tmp_path / "r"),
                        "not found")


def test_error_empty_and_corrupt_files(tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    _assert_clean_error(run_cli("train", "slicegan", empty, "--out", tmp_path / "r"), "empty")
    corrupt = tmp_path / "corrupt.png"
    corrupt.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    proc = run_cli("train", "slicegan", corrupt, "--out", tmp_path / "r2")
    _assert_clean_error(proc)
    assert "corrupt" in proc.stderr.lower() or "cannot read" in proc.stderr.lower()


def test_error_not_an_image(tmp_path):
    txt = tmp_path / "notes.txt"
    txt.write_text("hello, these are my notes\n" * 10)
    proc = run_cli("train", "slicegan", txt, "--out", tmp_path / "r")
    _assert_clean_error(proc)
    assert "image" in proc.stderr.lower()


def test_error_single_phase(tmp_path):
    img = save_png(tmp_path / "flat.png", np.ones((80, 80), np.uint8))
    _assert_clean_error(run_cli("train", "slicegan", img, "--out", tmp_path / "r"), "phase")


def test_error_image_smaller_than_crop(tmp_path):
    img = save_png(tmp_path / "small.png", blobs(24))
    _assert_clean_error(run_cli("train", "slicegan", img, "--out", tmp_path / "r", "--steps", "1"),
                        "32x32")


def test_error_grayscale_where_phases_expected(tmp_path):
    rng = np.random.default_rng(0)
    gray = (rng.random((80, 80)) * 200).astype(np.uint8)
    path = tmp_path / "gray.png"
    Image.fromarray(gray).save(path)
    proc = run_cli("train", "slicegan", path, "--out", tmp_path / "r")
    _assert_clean_error(proc, "grayscale", "--segment")


def test_error_anisotropic_phase_sets_differ(tmp_path):
    a = save_png(tmp_path / "a.png", blobs(80))
    three = blobs(80) + blobs(80, seed=3)  # 3 phases
    b = save_png(tmp_path / "b.png", three, scale=120)
    _assert_clean_error(run_cli("train", "slicegan", a, b, "--out", tmp_path / "r"), "phase")


def test_error_existing_run_without_resume(tmp_path):
    img = save_png(tmp_path / "blobs.png", blobs(64))
    run = tmp_path / "run"
    assert cli.main(["train", "slicegan", img, "--out", str(run), "--steps", "1", "--quiet",
                     *tiny_sets()]) == 0
    _assert_clean_error(run_cli("train", "slicegan", img, "--out", run), "--resume")


def test_generate_bad_run_and_bad_extension(tmp_path):
    _assert_clean_error(run_cli("generate", tmp_path, "--out", tmp_path / "v.tif"), "not a matgen run")
    _assert_clean_error(run_cli("generate", tmp_path, "--out", tmp_path / "v.png"), ".tif")


def test_metrics_reference_keeps_phases_absent_from_our_files(tmp_path, capsys):
    """`matgen metrics --reference`: the phase count of our files (TIFF phase table, generation
    record) is honoured, so a reference of ours whose last phase is absent is not one phase short."""
    import json

    from matgen_core import io

    rng = np.random.default_rng(0)
    ref = (rng.random((24, 24, 24)) < 0.4).astype(np.uint8)  # phases 0, 1 of 3; phase 2 absent
    gen = rng.integers(0, 3, (24, 24, 24)).astype(np.uint8)
    io.write_tiff(tmp_path / "ref.tif", ref, phase_values=[0, 128, 255])
    io.write_tiff(tmp_path / "gen.tif", gen, phase_values=[0, 128, 255])
    assert io.declared_phase_count(tmp_path / "ref.tif") == 3
    assert cli.main(["metrics", str(tmp_path / "gen.tif"), "--reference", str(tmp_path / "ref.tif"),
                     "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    rows = {(r["metric"], r["phase"]): r for r in result["rows"] if r["metric"] == "phase_fraction"}
    assert result["n_phases"] == 3 and rows[("phase_fraction", 2)]["reference"] == 0.0
    assert rows[("phase_fraction", 2)]["generated"] == pytest.approx(np.mean(gen == 2))
    # both ours, the last phase absent from both: still 3 phases (the generation record of a .npy)
    io.write_npy(tmp_path / "gen.npy", ref, generation={"achieved_fractions": [0.6, 0.4, 0.0]})
    assert io.declared_phase_count(tmp_path / "gen.npy") == 3
    assert cli.main(["metrics", str(tmp_path / "gen.npy"), "--reference", str(tmp_path / "ref.tif"),
                     "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_phases"] == 3
    # other software's files: the phases are the values present, as before
    tifffile.imwrite(tmp_path / "plain.tif", ref * 100)
    np.save(tmp_path / "plain.npy", ref)
    assert io.declared_phase_count(tmp_path / "plain.tif") is None
    assert io.declared_phase_count(tmp_path / "plain.npy") is None
    assert cli.main(["metrics", str(tmp_path / "plain.npy"), "--reference", str(tmp_path / "plain.tif"),
                     "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["n_phases"] == 2


def test_metrics_tortuosity_along_the_axes_asked_for(tmp_path, capsys):
    """`matgen metrics --tortuosity --axes`: each axis of a 3D volume solved and printed, so a
    volume that conducts along some axes and not others shows it; bad uses get one clear line."""
    from matgen_core import io

    layers = np.zeros((24, 24, 24), np.uint8)
    layers[:, :, :] = (np.arange(24) % 8 < 4)[:, None, None]  # phase 1 in slabs normal to Z
    io.write_tiff(tmp_path / "layers.tif", layers)
    assert cli.main(["metrics", str(tmp_path / "layers.tif"), "--tortuosity", "--axes", "zx"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("tortuosity phase 1:"))
    assert "axis 0: tau inf" in line and "axis 2: tau 1.0" in line and "axis 1" not in line
    _assert_clean_error(run_cli("metrics", tmp_path / "layers.tif", "--axes", "zyx"), "--tortuosity")
    io.write_tiff(tmp_path / "slice.tif", layers[:, 0])
    _assert_clean_error(run_cli("metrics", tmp_path / "slice.tif", "--tortuosity", "--axes", "z"), "3D")
    _assert_clean_error(run_cli("metrics", tmp_path / "layers.tif", "--tortuosity", "--axes", "q"), "not an axis")
