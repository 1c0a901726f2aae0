"""Phase-fraction control: conditional SliceGAN, logit calibration, supported range, CLI flag."""
import numpy as np
import pytest
import torch

from matgen_core import cli, fractions, generate, metrics, runs, train
from matgen_core.errors import MatgenInputError
from matgen_core.io import Micrograph
from matgen_core.models.slicegan import PRESETS, SliceGANTrainer, sample_targets
from matgen_core.synthetic import synthetic_microstructure
from conftest import TINY_SLICEGAN, blobs


def three_phase(size=64, seed=0):
    return synthetic_microstructure((size, size), n_phases=3, feature_size=10, seed=seed)


def trainer(images, n_phases, **over):
    config = {**PRESETS["quick"], **TINY_SLICEGAN, "kind": "nphase", "n_phases": n_phases,
              "num_images": 1, **over}
    return SliceGANTrainer.create(config, images, torch.device("cpu"))


def micrograph(labels, n):
    return Micrograph(labels=labels, image=labels.astype(np.float32), kind="nphase",
                      phase_values=list(range(n)), voxel_size=None, unit="px", source="img.png")


def make_run(tmp_path, labels, n, steps=2, **over):
    run = runs.create_run(tmp_path / "run", "slicegan", [micrograph(labels, n)], preset="quick",
                          overrides={**TINY_SLICEGAN, **over}, seed=1)
    train.train(run, steps=steps, preview_every=0)
    return run


def test_sample_targets_stay_in_range_and_on_simplex():
    center = torch.tensor([0.45, 0.40, 0.15])
    t = sample_targets(center, 0.1, 500, generator=torch.Generator().manual_seed(0))
    assert t.shape == (500, 3)
    assert torch.allclose(t.sum(1), torch.ones(500), atol=1e-5)
    assert (t >= 0).all() and ((t - center).abs() <= 0.1 + 1e-5).all()
    two = sample_targets(torch.tensor([0.05, 0.95]), 0.1, 400, generator=torch.Generator().manual_seed(1))
    assert (two >= 0).all() and two[:, 0].max() > 0.13, "range clipped at 0, still spread upward"


def test_condition_channels_change_the_output_and_default_is_training_fractions():
    tr = trainer([blobs(64, fraction=0.35)], 2, conditional=True)
    assert tr.generator.convs[0].in_channels == TINY_SLICEGAN["nz"] + 2
    tr._init_fraction_path()  # as the first training step does: the direct path starts non-zero
    with torch.no_grad():  # and a morphology path as training would make it
        for net in (tr.generator, tr.generator_ema):
            for lin in net.cond_shift:
                lin.weight.normal_(0, 0.5, generator=torch.Generator().manual_seed(3))
    center = tr.fraction_center.numpy()
    a = tr.sample((32, 32, 32), seed=0, fractions=[0.5, 0.5])
    b = tr.sample((32, 32, 32), seed=0, fractions=[0.75, 0.25])
    c = tr.sample((32, 32, 32), seed=0)
    assert a.shape == (2, 32, 32, 32) and not np.array_equal(a, b)
    assert np.array_equal(c, tr.sample((32, 32, 32), seed=0, fractions=center))
    # state round trip keeps the conditioning centre
    tr2 = trainer(None, 2, conditional=True)
    tr2.load_state_dict(tr.state_dict())
    assert np.array_equal(tr2.sample((32, 32, 32), seed=0, fractions=[0.5, 0.5]), a)
    with pytest.raises(ValueError, match="not conditional"):
        trainer([blobs(64)], 2).sample((32, 32, 32), fractions=[0.5, 0.5])
    # a checkpoint from before the post-normalisation code path loads as it was trained
    legacy = {k: v for k, v in tr.state_dict()["generator"].items() if not k.startswith("cond_shift.")}
    tr3 = trainer(None, 2, conditional=True)
    tr3.generator.load_state_dict(legacy)
    assert tr3.generator.code_at_input and not tr2.generator.code_at_input
    assert all(float(lin.weight.detach().abs().sum()) == 0 for lin in tr3.generator.cond_shift)


def test_conditional_training_steps_log_fraction_error(tmp_path):
    run = make_run(tmp_path, blobs(64, fraction=0.35), 2, steps=2, conditional=True,
                   fraction_range=0.1)
    cfg = runs.load_config(run)["model_config"]
    assert cfg["conditional"] is True and cfg["fraction_range"] == 0.1
    # a new conditional run gets the measured conditional density-loss weight, not the preset's
    from matgen_core.models.conditional import NEW_CONDITIONAL_RUN_FRACTION_WEIGHT
    assert cfg["fraction_weight"] == NEW_CONDITIONAL_RUN_FRACTION_WEIGHT != PRESETS["quick"]["fraction_weight"]
    def weight_of(name, **over):
        made = runs.create_run(tmp_path / name, "slicegan", [micrograph(blobs(64), 2)], preset="quick",
                               overrides={**TINY_SLICEGAN, **over})
        return runs.load_config(made)["model_config"]["fraction_weight"]
    assert weight_of("own", conditional=True, fraction_weight=50.0) == 50.0  # an explicit choice wins
    assert weight_of("plain") == PRESETS["quick"]["fraction_weight"]
    rows = runs.read_losses(run)
    assert [r["step"] for r in rows] == [1, 2] and all(r["fraction_error"] > 0 for r in rows)
    rng = fractions.supported_range(run)
    assert rng["conditional"] and rng["radius"] == 0.1
    assert rng["low"][1] == pytest.approx(rng["center"][1] - 0.1)
    # generate at a requested fraction: calibrated on the volume itself
    t = [rng["center"][0] - 0.08, rng["center"][1] + 0.08]
    res = generate.generate(run, shape=(32, 32, 32), seed=3, fractions=t, device="cpu")
    got = np.bincount(res.array.ravel(), minlength=2) / res.array.size
    assert np.allclose(got, t, atol=0.005)
    assert res.policy == "steered" and res.info["conditional"] and "s2" in res.info["morphology"]
    assert np.allclose(res.info["achieved_fractions"], got)
    one = generate.generate(run, shape=(48, 40, 56), seed=3, fractions=t, device="cpu", tile=0)
    tiled = generate.generate(run, shape=(48, 40, 56), seed=3, fractions=t, device="cpu", tile=16)
    assert "tiles" in tiled.info["computed"] and np.array_equal(tiled.array, one.array)
    with pytest.raises(MatgenInputError, match="trained range"):
        generate.generate(run, shape=(32, 32, 32), fractions=[rng["center"][0] - 0.2,
                                                              rng["center"][1] + 0.2], device="cpu")


def test_calibration_hits_targets_on_random_weight_generator():
    torch.manual_seed(0)
    tr = trainer([three_phase()], 3)
    probs = tr.sample((40, 40, 40), seed=2)
    for target in ([0.5, 0.3, 0.2], [0.34, 0.33, 0.33], [0.7, 0.2, 0.1]):
        labels, info = fractions.calibrate(probs, target)
        got = np.bincount(labels.ravel(), minlength=3) / labels.size
        assert np.abs(got - target).max() <= 0.005, (target, got, info)
        assert np.allclose(info["achieved"], got)
    # a probe subset of voxels gives a bias that transfers to the whole volume
    bias, _, _ = fractions.fit_bias(probs, [0.5, 0.3, 0.2], max_voxels=20000)
    got = np.bincount(fractions.apply_bias(probs, bias).ravel(), minlength=3) / probs[0].size
    assert np.abs(got - [0.5, 0.3, 0.2]).max() <= 0.015


def test_range_checks_and_expected_fluctuation(tmp_path):
    run = make_run(tmp_path, three_phase(96), 3, steps=1)
    rng = fractions.supported_range(run)
    assert not rng["conditional"] and rng["radius"] == fractions.CALIBRATION_LIMIT
    c = np.array(rng["center"])
    ok = fractions.check_targets(",".join(str(v) for v in c + [0.1, -0.05, -0.05]), rng)
    assert ok.sum() == pytest.approx(1.0)
    assert fractions.check_targets(list(100 * c), rng) == pytest.approx(c)  # percentages
    with pytest.raises(MatgenInputError, match="Supported: phase 0"):
        fractions.check_targets(c + [0.2, -0.1, -0.1], rng)
    with pytest.raises(MatgenInputError, match="3 fractions"):
        fractions.check_targets([0.5, 0.5], rng)
    with pytest.raises(MatgenInputError, match="sum to 1"):
        fractions.check_targets(c + 0.1, rng)
    s64, s128 = (fractions.expected_fluctuation(run, n) for n in (64, 128))
    assert s64.shape == (3,) and np.all(s64 > 0) and np.all(s128 < s64)


def test_cli_fractions_flag(tmp_path, capsys):
    run = make_run(tmp_path, three_phase(96), 3, steps=1)
    c = np.array(fractions.supported_range(run)["center"])
    t = c + [0.1, -0.06, -0.04]
    out = tmp_path / "v.npy"
    assert cli.main(["generate", str(run), "--out", str(out), "--size", "40", "--seed", "1",
                     "--fractions", ",".join(f"{v:.4f}" for v in t)]) == 0
    vol = np.load(out)
    assert vol.shape == (40, 40, 40)
    assert np.abs(np.bincount(vol.ravel(), minlength=3) / vol.size - t).max() <= 0.005
    printed = capsys.readouterr().out
    assert "policy steered" in printed and "achieved" in printed and "generator alone" in printed
    bad = ",".join(f"{v:.4f}" for v in c + [0.3, -0.2, -0.1])
    assert cli.main(["generate", str(run), "--out", str(out), "--size", "40",
                     "--fractions", bad]) == 2
    assert "Supported" in capsys.readouterr().err


def test_lattice_sample_is_bounded_and_covers_the_volume():
    from matgen_core.fractions import LatticeSample

    assert LatticeSample((128, 128, 128)).stride == 1
    big = LatticeSample((300, 256, 257))
    assert big.stride == 3 and np.prod([-(-n // 3) for n in (300, 256, 257)]) <= fractions.LATTICE_VOXELS
    # tiles with any origin contribute exactly the lattice voxels they hold
    s = LatticeSample((10, 10, 10), max_voxels=200)
    assert s.stride == 2
    vol = torch.rand(2, 10, 10, 10)
    s.add(vol[:, :5], (0, 0, 0))
    s.add(vol[:, 5:], (5, 0, 0))
    whole = LatticeSample((10, 10, 10), max_voxels=200)
    whole.add(vol, (0, 0, 0))
    assert s.logp().shape == whole.logp().shape == (2, 125)
    assert np.array_equal(np.sort(s.logp(), axis=1), np.sort(whole.logp(), axis=1))


def test_sharpened_density_loss_tracks_the_labels():
    """The conditional density loss also penalises the sharpened (argmax-like) fractions."""
    tr = trainer([blobs(64, fraction=0.35)], 2, conditional=True)
    # soft mean exactly on target (0.5) while 75 % of the voxels' argmax is phase 0
    fake = torch.zeros(1, 2, 8, 8, 8)
    fake[:, 0] = 0.55
    fake[:, 0, :, :, 6:] = 0.35
    fake[:, 1] = 1 - fake[:, 0]
    loss, err = tr._fraction_loss(fake, torch.tensor([[0.5, 0.5]]))
    labels = fake.argmax(1).float()
    argmax_gap = abs((labels == 0).float().mean().item() - 0.5)
    soft_gap = abs(fake[:, 0].mean().item() - 0.5)
    assert soft_gap < 0.02 and argmax_gap > 0.2, "soft mean on target, labels off it"
    assert 0.5 * argmax_gap < err <= argmax_gap + 1e-6 and float(loss) > 0


def test_averaged_generator_statistics_are_estimated_over_the_trained_range():
    """The EMA generator's BatchNorm statistics see targets over the whole range, as in training
    (estimated at the centre alone they shift every off-centre volume)."""
    tr = trainer([blobs(64, fraction=0.35)], 2, conditional=True, ema_decay=0.9)
    t = tr._refresh_targets(64, torch.Generator().manual_seed(0))
    assert t.shape == (64, 2) and float(t[:, 0].std()) > 0.03
    assert ((t - tr.fraction_center).abs() <= tr.fraction_range + 1e-5).all()
    assert trainer([blobs(64)], 2)._refresh_targets(4, torch.Generator()) is None
    tr.train_step(1)
    seen = []
    original = tr._condition
    tr._condition = lambda z, targets: (seen.append(targets), original(z, targets))[1]
    tr.sampling_generator  # stale after the step: statistics re-estimated
    assert seen and all(s is not None and s.shape[0] == z for s, z in zip(seen, [2] * len(seen)))


def _make_legacy(run):
    """Turn a fresh conditional run's checkpoint into one saved before ``cond_shift`` existed:
    no cond_shift weights in the generators, an optimiser over the other parameters only."""
    ck = runs.load_checkpoint(run)
    st = ck["state"]
    for name in ("generator", "generator_ema"):
        st[name] = {k: v for k, v in st[name].items() if not k.startswith("cond_shift.")}
    tr = train.build_trainer(run, "cpu", with_data=False)
    names = [n for n, _ in tr.generator.named_parameters()]
    keep = [i for i, n in enumerate(names) if not n.startswith("cond_shift.")]
    assert len(keep) < len(names)
    remap = {old: new for new, old in enumerate(keep)}
    opt = st["opt_g"]
    assert len(opt["param_groups"][0]["params"]) == len(names)
    opt["state"] = {remap[i]: v for i, v in opt["state"].items() if i in remap}
    opt["param_groups"][0]["params"] = list(range(len(keep)))
    torch.save(ck, run / "checkpoints" / "latest.pt")


def test_path_change_flags_a_bias_that_cuts_a_phase():
    raw = np.zeros((32, 32, 32), np.uint8)
    raw[:, 12:20, 12:20] = 1                  # a thick column of phase 1 along Z
    thinned = raw.copy()
    thinned[14:18] = 0                        # a bias that removed it over four planes
    thinned[26:30] = 0
    change = fractions.path_change(raw, thinned, 2)
    # the column overlaps every block of side 16 and crosses it along Z; the cuts leave none whole
    assert change["blocks"] == 27 and change["raw"][1] == [27, 0, 0] and change["adjusted"][1] == [0, 0, 0]
    lost = {(e["phase"], e["axis"]) for e in change["lost"]}
    assert lost == {(1, "Z")} and change["lost"][0]["whole_path_lost"]
    (warning,) = fractions.path_warnings(change, ["pore", "NMC"])
    assert "NMC" in warning and "along Z" in warning and "whole volume" in warning
    assert fractions.path_change(raw, raw, 2)["lost"] == [] and fractions.path_warnings(None) == []


def test_calibrated_volume_records_what_the_bias_changed(tmp_path, capsys):
    run = make_run(tmp_path, blobs(64, fraction=0.35), 2, steps=2)
    res = generate.generate(run, shape=(32, 32, 32), seed=4, device="cpu", policy="calibrated")
    raw = generate.generate(run, shape=(32, 32, 32), seed=4, device="cpu", policy="raw")
    paths = res.info["paths"]
    # measured on this very volume (it is under PATH_SIDE): the counts are its own and the raw one's
    assert paths["adjusted"] == metrics.block_percolation(res.array, 2).tolist()
    assert paths["raw"] == metrics.block_percolation(raw.array, 2).tolist()
    assert "s2" in res.info["morphology"] and "paths" not in raw.info
    text = "\n".join(generate.describe(res.info))
    assert "paths through each phase" in text and "morphology change" in text
    assert ("WARNING" in text) == bool(paths["lost"])


def test_conditional_run_from_before_cond_shift_generates_but_resume_refuses(tmp_path, capsys):
    run = make_run(tmp_path, blobs(64, fraction=0.35), 2, steps=2, conditional=True)
    _make_legacy(run)
    before = (run / "checkpoints" / "latest.pt").read_bytes()
    # generation loads the weights only (not the optimiser built for fewer parameters)
    res = generate.generate(run, shape=(32, 32, 32), seed=0, device="cpu", policy="calibrated")
    assert res.array.shape == (32, 32, 32) and res.info["conditional"]
    out = tmp_path / "v.npy"
    assert cli.main(["generate", str(run), "--out", str(out), "--size", "32"]) == 0
    capsys.readouterr()
    # resuming its training: one clear line saying what to do, no traceback, nothing changed
    assert cli.main(["train", "slicegan", "--resume", "--out", str(run), "--steps", "4"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "Traceback" not in err
    assert "older version" in err and "still generates" in err and "--set conditional=true" in err
    assert (run / "checkpoints" / "latest.pt").read_bytes() == before
    assert [r["step"] for r in runs.read_losses(run)] == [1, 2]
    with pytest.raises(MatgenInputError, match="cannot be continued"):
        train.train(run, steps=4, preview_every=0)


def test_policy_token_round_trip():
    """The label policy as the app keeps it in its URL (generate.policy_token / parse)."""
    info = {"policy": "steered", "target_fractions": [0.523, 0.35, 1 - 0.523 - 0.35]}
    token = generate.policy_token(info)
    assert token == "steered-52.3,35,12.7"
    policy, t = generate.parse_policy_token(token)
    assert policy == "steered" and t[:2] == [0.523, 0.35] and t[2] == 1.0 - (0.523 + 0.35)
    assert generate.policy_token({"policy": "calibrated", "bias": [0.1, -0.1]}) == "calibrated"
    assert generate.policy_token({"policy": "raw"}) is None and generate.policy_token(None) is None
    assert generate.parse_policy_token("calibrated") == ("calibrated", None)
    for bad in ("", "steered", "steered-", "steered-a,b", "steered-1,2", "steered-nan,100", "bias"):
        assert generate.parse_policy_token(bad) is None, bad
