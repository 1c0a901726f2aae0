"""Bad input through the `matgen` command: every case exits 2 with ONE line and no traceback.

Each case is a fresh `python -m matgen_core.cli` subprocess (what a user sees), run two at a
time. One tiny trained run is made once for the module; the cases that need a damaged run copy it.
"""
import json
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from matgen_core import cli
from conftest import TINY_SLICEGAN, blobs


def tiny_sets():
    out = []
    for k, v in TINY_SLICEGAN.items():
        out += ["--set", f"{k}={json.dumps(v).replace(' ', '')}"]
    return out


@pytest.fixture(scope="module")
def case_dir(tmp_path_factory):
    """Inputs for all cases: images, a tiny trained run and damaged copies of it."""
    d = tmp_path_factory.mktemp("bad_input")
    Image.fromarray((blobs(64) * 255).astype(np.uint8)).save(d / "ok.png")
    Image.fromarray((blobs(24) * 255).astype(np.uint8)).save(d / "small.png")
    (d / "empty.png").write_bytes(b"")
    (d / "notes.txt").write_text("not an image\n" * 20)
    (d / "a_file").write_text("x")
    torch.set_num_threads(1)
    assert cli.main(["train", "slicegan", str(d / "ok.png"), "--out", str(d / "run"), "--steps", "1",
                     "--quiet", *tiny_sets()]) == 0
    # damaged copies of the run
    for name in ("cfg_list", "cfg_nodata", "ckpt_nostate", "ckpt_foreign", "ckpt_garbage"):
        shutil.copytree(d / "run", d / name)
    (d / "cfg_list" / "config.json").write_text("[]")
    cfg = json.loads((d / "run" / "config.json").read_text())
    del cfg["data"]
    (d / "cfg_nodata" / "config.json").write_text(json.dumps(cfg))
    torch.save({"step": 1}, d / "ckpt_nostate" / "checkpoints" / "latest.pt")
    torch.save({"step": 1, "state": {"generator": {"net.0.weight": torch.zeros(3, 3)}}},
               d / "ckpt_foreign" / "checkpoints" / "latest.pt")
    (d / "ckpt_garbage" / "checkpoints" / "latest.pt").write_bytes(b"PK\x03\x04 not a checkpoint")
    (d / "not_a_run").mkdir()
    return d


# (case id, argv with {d} for the case folder, words the one line must contain)
CASES = [
    # --- train: settings (--set) typed and range-checked, the key named
    ("set_lr_text", "train slicegan {d}/ok.png --out {d}/o1 --set lr_g=abc", ["lr_g", "number"]),
    ("set_batch_word", "train slicegan {d}/ok.png --out {d}/o2 --set batch_size=four", ["batch_size"]),
    ("set_batch_negative", "train slicegan {d}/ok.png --out {d}/o3 --set batch_size=-1", ["batch_size"]),
    ("set_img_size_33", "train slicegan {d}/ok.png --out {d}/o4 --set img_size=33", ["img_size"]),
    ("set_gen_channels_1", "train slicegan {d}/ok.png --out {d}/o5 --set gen_channels=[1]", ["gen_channels"]),
    ("set_lr_nan", "train slicegan {d}/ok.png --out {d}/o6 --set lr_g=NaN", ["lr_g", "finite"]),
    ("set_lr_zero", "train slicegan {d}/ok.png --out {d}/o7 --set lr_d=0", ["lr_d"]),
    ("set_betas_bad", "train slicegan {d}/ok.png --out {d}/o8 --set betas=[2,3]", ["betas"]),
    ("set_no_equals", "train slicegan {d}/ok.png --out {d}/o9 --set lr_g", ["key=value"]),
    ("set_unknown_key", "train slicegan {d}/ok.png --out {d}/o10 --set lrr=1", ["unknown setting"]),
    ("set_norm_choice", "train dcgan {d}/ok.png --out {d}/o11 --set norm=group", ["norm"]),
    # --- train: budgets and options
    ("steps_zero", "train slicegan {d}/ok.png --out {d}/o12 --steps 0", ["--steps"]),
    ("steps_negative", "train slicegan {d}/ok.png --out {d}/o13 --steps -5", ["--steps"]),
    ("max_minutes_negative", "train slicegan {d}/ok.png --out {d}/o14 --max-minutes -1", ["--max-minutes"]),
    ("max_minutes_nan", "train slicegan {d}/ok.png --out {d}/o15 --max-minutes nan", ["--max-minutes"]),
    ("seed_negative", "train slicegan {d}/ok.png --out {d}/o16 --seed -1", ["--seed"]),
    ("segment_one", "train slicegan {d}/ok.png --out {d}/o17 --segment 1", ["--segment"]),
    ("segment_and_as_is", "train slicegan {d}/ok.png --out {d}/o18 --segment 2 --as-is", ["--as-is"]),
    ("unknown_preset", "train slicegan {d}/ok.png --out {d}/o19 --preset fast", ["preset"]),
    ("unknown_model", "train slicegun {d}/ok.png --out {d}/o20", ["unknown model"]),
    ("unknown_device", "train slicegan {d}/ok.png --out {d}/o21 --device tpu --steps 1 " + " ".join(tiny_sets()),
     ["device"]),
    # --- train: files and folders
    ("image_smaller_than_crop", "train slicegan {d}/small.png --out {d}/o22", ["32x32"]),
    ("missing_image", "train slicegan {d}/nope.png --out {d}/o23", ["not found"]),
    ("empty_image", "train slicegan {d}/empty.png --out {d}/o24", ["empty"]),
    ("not_an_image", "train slicegan {d}/notes.txt --out {d}/o25", ["image"]),
    ("no_image", "train slicegan --out {d}/o26", ["image"]),
    ("out_is_a_file", "train slicegan {d}/ok.png --out {d}/a_file", ["is a file"]),
    ("out_unwritable", "train slicegan {d}/ok.png --out /proc/matgen-run", ["/proc/matgen-run"]),
    ("existing_run", "train slicegan {d}/ok.png --out {d}/run", ["--resume"]),
    ("resume_nothing", "train slicegan --out {d}/o27 --resume", ["no run to resume"]),
    ("resume_with_set", "train slicegan --out {d}/run --resume --set lr_g=0.1", ["--set"]),
    ("resume_config_list", "train slicegan --out {d}/cfg_list --resume --steps 2", ["damaged"]),
    # --- generate
    ("count_negative", "generate {d}/run --out {d}/g1.tif --count -3", ["--count"]),
    ("count_zero", "generate {d}/run --out {d}/g2.tif --count 0", ["--count"]),
    ("periodic_letters", "generate {d}/run --out {d}/g3.tif --periodic abc", ["--periodic"]),
    ("raw_and_fractions", "generate {d}/run --out {d}/g4.tif --raw --fractions 0.5,0.5", ["--raw", "--fractions"]),
    ("size_huge", "generate {d}/run --out {d}/g5.tif --size 100000", ["on disk"]),
    ("size_zero", "generate {d}/run --out {d}/g6.tif --size 0", ["--size"]),
    ("shape_two_numbers", "generate {d}/run --out {d}/g7.tif --shape 1,2", ["z,y,x"]),
    ("tile_negative", "generate {d}/run --out {d}/g8.tif --tile -1", ["--tile"]),
    ("out_extension", "generate {d}/run --out {d}/g9.png", [".tif"]),
    ("out_is_a_folder", "generate {d}/run --out {d}/folder.tif --size 16", ["folder"]),
    ("out_unwritable_gen", "generate {d}/run --out /proc/matgen-vol.tif --size 16", ["/proc"]),
    ("not_a_run", "generate {d}/not_a_run --out {d}/g10.tif", ["not a matgen run"]),
    ("config_is_list", "generate {d}/cfg_list --out {d}/g11.tif", ["damaged"]),
    ("config_without_data", "generate {d}/cfg_nodata --out {d}/g12.tif", ["data"]),
    ("checkpoint_without_state", "generate {d}/ckpt_nostate --out {d}/g13.tif", ["state"]),
    ("checkpoint_other_architecture", "generate {d}/ckpt_foreign --out {d}/g14.tif", ["does not fit"]),
    ("checkpoint_garbage", "generate {d}/ckpt_garbage --out {d}/g15.tif", ["checkpoint"]),
    # --- metrics
    ("voxel_size_zero", "metrics {d}/ok.png --voxel-size 0", ["--voxel-size"]),
    ("metrics_missing", "metrics {d}/nope.tif", ["not found"]),
]


def _run(argv: str, d: Path):
    import shlex

    args = [a.replace("{d}", str(d)) for a in shlex.split(argv)]
    return subprocess.run([sys.executable, "-m", "matgen_core.cli", *args], capture_output=True,
                          text=True, timeout=240, env={**__import__("os").environ, "OMP_NUM_THREADS": "1"})


def test_at_least_30_cases():
    assert len(CASES) >= 30
    assert len({c[0] for c in CASES}) == len(CASES)


@pytest.mark.slow  # ~75 CPU s in all (about 18 of the 50 cases import torch); 7 min wall on the busy shared box
def test_every_bad_input_exits_2_with_one_line(case_dir):
    (case_dir / "folder.tif").mkdir(exist_ok=True)
    with ThreadPoolExecutor(2) as pool:
        procs = list(pool.map(lambda c: _run(c[1], case_dir), CASES))
    problems = []
    for (name, argv, needles), proc in zip(CASES, procs):
        text = (proc.stderr + proc.stdout).strip()
        lines = [ln for ln in text.splitlines() if ln.strip()]
        why = []
        if proc.returncode != 2:
            why.append(f"exit {proc.returncode}")
        if "Traceback" in text:
            why.append("traceback")
        if len(lines) != 1:
            why.append(f"{len(lines)} lines")
        elif not lines[0].startswith("matgen: error: "):
            why.append("not an error line")
        for needle in needles:
            if needle.lower() not in text.lower():
                why.append(f"no '{needle}'")
        if why:
            problems.append(f"{name}: {', '.join(why)}: {text[-600:]}")
    assert not problems, "\n".join(problems)
    # a failed create leaves no run folder behind; refused --out folders are not made
    for k in (1, 4, 5, 12, 21, 22, 27):
        assert not (case_dir / f"o{k}").exists(), f"o{k} left behind"
    assert not (case_dir / "g5.tif").exists() and not (case_dir / "g13.tif").exists()
    # the good run is untouched by the refused commands
    cfg = json.loads((case_dir / "run" / "config.json").read_text())
    assert cfg["model_config"]["lr_g"] == 1e-3 and cfg["seed"] == 0
