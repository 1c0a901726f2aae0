"""Tiled generation (matgen_core/tiling.py): tiles reproduce one pass, streaming, tile choice."""
import json

import numpy as np
import pytest
import tifffile
import torch

from matgen_core import generate, io, runs, tiling
from matgen_core.data import decode
from matgen_core.models.slicegan import PRESETS, SliceGANTrainer, output_size
from conftest import TINY_SLICEGAN, blobs

PAPER_LAYERS = tiling.layers_of(PRESETS["paper"])


def random_trainer(kind="nphase", n_phases=3, seed=0, upsample="transposed"):
    """A tiny SliceGAN with random weights and non-trivial BatchNorm statistics (eval mode)."""
    torch.manual_seed(seed)
    config = {**PRESETS["quick"], **TINY_SLICEGAN, "kind": kind, "n_phases": n_phases, "num_images": 1,
              "gen_upsample": upsample}
    tr = SliceGANTrainer.create(config, None, torch.device("cpu"))
    net = getattr(tr, "sampling_generator", None) or tr.generator  # EMA copy when the preset has one
    with torch.no_grad():
        for bn in net.norms:
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.3, 0.3)
            bn.reset_running_stats()
            bn.momentum = None  # running statistics = the average over the batches below
        net.train()
        for _ in range(2):  # statistics of the network's own activations: no layer goes flat
            net(torch.randn(2, config["nz"], 3, 3, 3))
        net.eval()
    return tr


def one_pass(tr, shape, seed, periodic=(False, False, False)):
    return decode(tr.sample(shape, seed=seed, periodic=periodic), tr.kind)


@pytest.mark.parametrize("lz", [3, 4, 5, 10, 18])
def test_exact_range_of_a_whole_latent_is_the_whole_volume(lz):
    assert tiling.exact_range(0, lz, lz, PAPER_LAYERS) == (0, output_size(lz, *zip(*PAPER_LAYERS)))


def test_plan_covers_each_voxel_once_with_uneven_tiles():
    for n_out, tile in [(100, 20), (512, 96), (33, 45), (7, 64)]:
        lat = tiling._latent_len(n_out, PAPER_LAYERS)
        t = tiling.latent_tile_for(tile, PAPER_LAYERS)
        plan = tiling.plan_axis(n_out, lat, min(t, lat), PAPER_LAYERS)
        assert plan[0][2] == 0 and plan[-1][3] == n_out
        assert all(p[3] == q[2] for p, q in zip(plan, plan[1:])), plan
        assert all(l1 - l0 <= t for l0, l1, _, _ in plan)


@pytest.mark.parametrize("shape,tile", [((40, 70, 100), 20), ((33, 65, 97), 45), ((64, 30, 50), 64)])
def test_tiled_equals_one_pass_nphase(shape, tile):
    tr = random_trainer()
    ref = one_pass(tr, shape, seed=2)
    got, _ = generate.make_volume(tr, shape, seed=2, tile=tile)
    assert got.shape == ref.shape and got.dtype == np.uint8
    assert (got != ref).mean() <= 1e-4
    assert len(np.unique(ref)) == 3, "the random generator makes all phases (a real check)"


@pytest.mark.parametrize("upsample", ["transposed", "resize"])
def test_tiled_equals_one_pass_gray_and_periodic(upsample):
    tr = random_trainer(kind="gray", n_phases=0, seed=1, upsample=upsample)
    shape = (36, 64, 32)  # periodic sides: multiples of 32
    ref = one_pass(tr, shape, seed=5, periodic=(False, True, True))
    got, _ = generate.make_volume(tr, shape, seed=5, tile=24, periodic=(False, True, True))
    assert (got != ref).mean() <= 1e-4
    assert ref.std() > 0


def test_streamed_npy_and_bigtiff_match_and_keep_metadata(tmp_path, monkeypatch):
    tr = random_trainer()
    shape = (30, 40, 50)
    ref = one_pass(tr, shape, seed=1)
    arr, info = generate.make_volume(tr, shape, seed=1, tile=32, out_path=tmp_path / "v.npy")
    assert isinstance(arr, np.memmap) and np.array_equal(np.load(tmp_path / "v.npy"), ref)
    assert io.read_generation_info(tmp_path / "v.npy") == json.loads(json.dumps(info))
    monkeypatch.setattr(io.write, "_BIGTIFF_BYTES", 1000)  # stream this small volume as a BigTIFF
    data = {"kind": "nphase", "voxel_size": 0.5, "unit": "um", "phase_values": [0, 128, 255]}
    arr, info = generate.make_volume(tr, shape, seed=1, tile=32, out_path=tmp_path / "v.tif",
                                     policy="calibrated", targets=[0.3, 0.3, 0.4], file_meta=data)
    vol, meta = io.read_volume(tmp_path / "v.tif")
    assert np.array_equal(vol, arr) and not np.array_equal(vol, ref)
    assert meta == {"voxel_size": 0.5, "unit": "um", "phase_values": [0, 128, 255]}
    with tifffile.TiffFile(tmp_path / "v.tif") as tif:
        assert tif.is_bigtiff
    got = io.read_generation_info(tmp_path / "v.tif")
    assert got["policy"] == "calibrated" and got["bias"] == info["bias"]
    assert np.allclose(got["achieved_fractions"], np.bincount(vol.ravel(), minlength=3) / vol.size)


def test_choose_tile_and_memory_estimate():
    cfg = {**PRESETS["paper"], "kind": "nphase", "n_phases": 2}
    small = tiling.estimate_peak_bytes((4, 4, 4), cfg)
    big = tiling.estimate_peak_bytes((18, 18, 18), cfg)
    assert 0 < small < big
    assert big > 8 * 2**30, "a one-pass 512^3 paper volume needs many GB of activations"
    assert tiling.choose_tile((128,) * 3, cfg, memory_budget_bytes=64 * 2**30) is None
    tile = tiling.choose_tile((512,) * 3, cfg, memory_budget_bytes=2 * 2**30)
    assert tile is not None and tile % 32 == 0 and 32 <= tile < 512
    t = tiling.latent_tile_for(tile, PAPER_LAYERS)
    assert tiling.estimate_peak_bytes((t,) * 3, cfg) <= 2 * 2**30
    assert tiling.available_memory_bytes() > 0


def _run_with_checkpoint(tmp_path):
    run = tmp_path / "run"
    m = io.Micrograph(labels=blobs(64), image=blobs(64).astype(np.float32), kind="nphase",
                      phase_values=[0, 255])
    runs.create_run(run, "slicegan", [m], preset="quick", overrides=TINY_SLICEGAN)
    from matgen_core.train import build_trainer

    tr = build_trainer(run, "cpu", with_data=False)
    runs.save_checkpoint(run, {"step": 0, "state": tr.state_dict(), "rng": torch.get_rng_state(),
                               "model": "slicegan"})
    return run


def test_generate_tile_and_out_path(tmp_path):
    run = _run_with_checkpoint(tmp_path)
    shape = (24, 40, 72)
    # the raw generator output (the default policy): tiles reproduce one pass exactly
    ref = generate.generate(run, shape=shape, seed=3, tile=0).array
    seen = []
    tiled = generate.generate(run, shape=shape, seed=3, tile=20, progress=seen.append)
    assert tiled.policy == "raw" and tiled.info["bias"] is None
    assert np.array_equal(tiled.array, ref) and seen[-1] == 1.0
    # auto: a tiny budget forces tiles; same volume
    auto = generate.generate(run, shape=shape, seed=3, memory_budget_bytes=2 * 2**20)
    assert "tiles" in auto.info["computed"] and np.array_equal(auto.array, ref)
    res = generate.generate(run, shape=shape, seed=3, out_path=tmp_path / "o.npy", tile=32)
    assert np.array_equal(np.load(tmp_path / "o.npy"), ref) and np.array_equal(res.array, ref)
    generate.generate(run, shape=shape, seed=3, out_path=tmp_path / "o.tif")
    vol, meta = io.read_volume(tmp_path / "o.tif")
    assert np.array_equal(vol, ref) and meta["phase_values"] == [0, 255]
    assert io.read_generation_info(tmp_path / "o.tif")["policy"] == "raw"


@pytest.mark.parametrize("policy", ["raw", "calibrated", "steered"])
def test_every_policy_is_identical_one_pass_tiled_and_streamed(tmp_path, policy):
    """Done-when of issue #14: same run, seed, shape and policy -> the same volume, however made."""
    from matgen_core import fractions

    run = _run_with_checkpoint(tmp_path)
    shape = (40, 48, 56)
    center = fractions.training_fractions(run)
    kw = {"fractions": center + [0.06, -0.06]} if policy == "steered" else {"policy": policy}
    one = generate.generate(run, shape=shape, seed=5, tile=0, **kw)
    tiled = generate.generate(run, shape=shape, seed=5, tile=16, **kw)
    streamed = generate.generate(run, shape=shape, seed=5, tile=16, out_path=tmp_path / "s.npy", **kw)
    vti = generate.generate(run, shape=shape, seed=5, tile=0, out_path=tmp_path / "s.vti", **kw)
    assert one.info["computed"] == "one pass" and "tiles" in tiled.info["computed"]
    assert np.array_equal(one.array, tiled.array) and np.array_equal(one.array, np.load(tmp_path / "s.npy"))
    assert np.array_equal(one.array, vti.array)
    assert one.info["bias"] == tiled.info["bias"] == streamed.info["bias"]
    counted = np.bincount(one.array.ravel(), minlength=2) / one.array.size
    assert np.allclose(one.info["achieved_fractions"], counted)
    for path in ("s.npy", "s.vti"):
        rec = io.read_generation_info(tmp_path / path)
        assert rec["policy"] == policy and rec["seed"] == 5 and rec["shape"] == list(shape)
        assert rec["step"] == 0 and rec["run_name"] == "run"
        assert rec["achieved_fractions"] == pytest.approx(counted.tolist())
    raw = generate.generate(run, shape=shape, seed=5, tile=0).array
    alone = np.bincount(raw.ravel(), minlength=2) / raw.size
    assert np.allclose(one.info["generator_fractions"], alone)
    if policy == "raw":
        assert one.info["bias"] is None and np.array_equal(one.array, raw)
    else:
        target = np.asarray(one.info["target_fractions"])
        assert np.abs(counted - target).max() <= 0.003, (counted, target)
        assert np.abs(alone - target).max() > 0.01, "the tiny generator alone misses: a real check"
    log = (run / "generations.jsonl").read_text().splitlines()
    assert len(log) == 5 and [json.loads(r)["policy"] for r in log] == [policy] * 4 + ["raw"]


def test_cli_generate_tile_flag(tmp_path, capsys):
    from matgen_core import cli

    run = _run_with_checkpoint(tmp_path)
    assert cli.main(["generate", str(run), "--out", str(tmp_path / "a.npy"), "--shape", "20,30,40",
                     "--tile", "0"]) == 0
    assert cli.main(["generate", str(run), "--out", str(tmp_path / "b.tif"), "--shape", "20,30,40",
                     "--tile", "16", "--raw"]) == 0
    a = np.load(tmp_path / "a.npy")
    b, meta = io.read_volume(tmp_path / "b.tif")
    assert a.shape == (20, 30, 40) and np.array_equal(a, b) and meta["phase_values"] == [0, 255]
    assert "policy raw" in capsys.readouterr().out
    for name, tile in (("c.npy", "16"), ("d.npy", "0")):
        assert cli.main(["generate", str(run), "--out", str(tmp_path / name), "--shape", "20,30,40",
                         "--tile", tile, "--calibrate"]) == 0
    out = capsys.readouterr().out
    assert "policy calibrated" in out and "generator alone" in out and "bias" in out
    c, d = np.load(tmp_path / "c.npy"), np.load(tmp_path / "d.npy")
    assert np.array_equal(c, d) and not np.array_equal(a, c)
    assert cli.main(["generate", str(run), "--out", str(tmp_path / "e.tif"), "--size", "8",
                     "--tile", "-3"]) == 2
    assert cli.main(["generate", str(run), "--out", str(tmp_path / "e.tif"), "--size", "8",
                     "--raw", "--fractions", "0.5,0.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "--raw and --fractions" in err and "use one" in err
