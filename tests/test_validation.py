"""3D validation harness (matgen_core/validation.py, `matgen validate`)."""
import json
import math

import numpy as np
import pytest
import torch

from matgen_core import cli
from matgen_core.errors import MatgenInputError
from matgen_core import synthetic
from matgen_core.synthetic import overlapping_spheres, thresholded_grf
from matgen_core.validation import TARGETS, format_table, validate
from conftest import TINY_SLICEGAN


def rows(report, metric, phase=None, axis=None):
    return [r for r in report["rows"] if r["metric"] == metric
            and (phase is None or r["phase"] == phase) and (axis is None or r["axis"] == axis)]


def test_a_volume_against_itself_has_no_error_and_a_real_spread():
    truth = thresholded_grf((48, 48, 48), (0.4, 0.35, 0.25), 4.0, seed=0)
    rep = validate(truth, truth, tortuosity_axes="z")
    for r in rep["rows"]:
        if r["metric"] == "s2_l1":
            assert r["volume"] == 0 and r["spread"] > 0
        else:
            assert r["error"] in (0, None) and r["volume"] == r["truth"], r
    # the spread crops are half the truth (same size as the volume) and do differ
    assert rep["spread_crops"]["shape"] == [24, 48, 48] and "halves" in rep["spread_crops"]["description"]
    assert all(r["spread"] > 0 for r in rows(rep, "surface_area"))
    assert len(rows(rep, "tortuosity")) == 3 and len(rows(rep, "tpb_density")) == 1
    s = rep["summary"]
    assert s["fraction_pp"] == 0 and s["tortuosity_rel"] == 0 and all(s["meets"].values())
    json.dumps(rep)                                    # plain JSON-serialisable


def test_a_different_structure_is_reported_as_different():
    truth = thresholded_grf((64, 64, 64), (0.6, 0.4), 6.0, seed=0)
    coarse = thresholded_grf((48, 48, 48), (0.6, 0.4), 12.0, seed=1)      # features 2x larger
    same = thresholded_grf((48, 48, 48), (0.6, 0.4), 6.0, seed=2)         # another sample of the truth
    rep_c = validate(coarse, truth, tortuosity=False)
    rep_s = validate(same, truth, tortuosity=False)
    assert rep_s["spread_crops"]["shape"] == [48, 48, 48]
    assert rep_s["spread_crops"]["corners"] == [[0, 0, 0], [16, 16, 16]]
    sa_c, sa_s = rows(rep_c, "surface_area", 1)[0], rows(rep_s, "surface_area", 1)[0]
    assert sa_c["rel_error"] < -0.35                    # about half the surface: a clear miss
    assert abs(sa_s["rel_error"]) < 0.1                 # a fresh sample: within sample noise
    assert rep_c["summary"]["meets"]["surface_area_rel"] is False
    assert rep_s["summary"]["meets"]["surface_area_rel"] is True
    l1_c = max(r["volume"] for r in rows(rep_c, "s2_l1"))
    l1_s = max(r["volume"] for r in rows(rep_s, "s2_l1"))
    assert l1_c > 2 * l1_s
    text = format_table(rep_c)
    assert "surface area [1/px]" in text and "MISSED" in text and "truth A" in text


def test_a_phase_without_a_path_is_reported_not_raised():
    truth = overlapping_spheres((32, 32, 32), radius=3.0, fraction=0.1, seed=0)   # isolated balls
    vol = np.zeros_like(truth)
    vol[::4, ::4, ::4] = 1                                                    # isolated voxels
    rep = validate(vol, truth, tortuosity_phases=[1], tortuosity_axes="zx", spread=False)
    for r in rows(rep, "tortuosity"):
        assert r["volume"] is None and "no path in volume" in r["note"]
    assert "no path" in format_table(rep)
    assert rep["spread_crops"] is None


def test_grey_coded_labels_are_mapped_jointly_and_a_missing_phase_is_kept():
    truth = thresholded_grf((32, 32, 32), (0.4, 0.35, 0.25), 4.0, seed=0)
    vol = truth.copy()
    vol[vol == 1] = 0                                  # the volume lost phase 1 entirely
    grey = np.array([0, 85, 170], np.uint8)
    rep = validate(grey[vol], grey[truth], tortuosity=False, spread=False)
    fr = rows(rep, "volume_fraction")
    assert rep["n_phases"] == 3 and fr[1]["volume"] == 0 and fr[2]["error"] == 0


def test_matgen_labels_against_a_grey_coded_truth_are_mapped_each_in_its_own_order():
    truth = thresholded_grf((32, 32, 32), (0.4, 0.35, 0.25), 4.0, seed=0)
    grey = np.array([0, 85, 170], np.uint8)
    rep = validate(truth.astype(np.uint8), grey[truth], tortuosity=False, spread=False)
    assert rep["n_phases"] == 3
    assert all(r["error"] == 0 for r in rows(rep, "volume_fraction"))


def test_physical_units_scale_surface_and_tpb():
    truth = thresholded_grf((32, 32, 32), (0.4, 0.35, 0.25), 4.0, seed=0)
    px = validate(truth, truth, tortuosity=False, spread=False)
    um = validate(truth, truth, voxel_size=0.5, unit="um", tortuosity=False, spread=False)
    assert rows(um, "surface_area", 0)[0]["truth"] == pytest.approx(2 * rows(px, "surface_area", 0)[0]["truth"])
    assert rows(um, "tpb_density")[0]["truth"] == pytest.approx(4 * rows(px, "tpb_density")[0]["truth"])
    assert rows(um, "surface_area")[0]["unit"] == "1/um"


@pytest.mark.parametrize("volume,truth,match", [
    (np.zeros((16, 16)), np.zeros((16, 16, 16)), "3D volumes"),
    (np.zeros((16, 16, 16), np.uint8), np.zeros((16, 16, 16), np.uint8), "single phase"),
    (np.random.default_rng(0).random((16, 16, 16)), np.eye(16)[None].repeat(16, 0), "non-integer"),
    (np.zeros((4, 16, 16), np.uint8), np.eye(16, dtype=np.uint8)[None].repeat(16, 0), "at least 8"),
])
def test_bad_input_is_a_clear_error(volume, truth, match):
    with pytest.raises(MatgenInputError, match=match):
        validate(volume, truth)


def test_bad_phase_and_axis_options():
    truth = thresholded_grf((16, 16, 16), (0.5, 0.5), 3.0, seed=0)
    with pytest.raises(MatgenInputError, match="Phase 4 does not exist"):
        validate(truth, truth, tortuosity_phases=[4])
    with pytest.raises(MatgenInputError, match="not an axis"):
        validate(truth, truth, tortuosity_axes="w")


def test_cli_validate_prints_the_table_and_writes_json(tmp_path, capsys):
    truth = thresholded_grf((32, 32, 32), (0.6, 0.4), 4.0, seed=0)
    vol = thresholded_grf((24, 24, 24), (0.6, 0.4), 4.0, seed=1)
    np.save(tmp_path / "t.npy", truth)
    np.save(tmp_path / "v.npy", vol)
    rc = cli.main(["validate", str(tmp_path / "v.npy"), "--truth", str(tmp_path / "t.npy"),
                   "--axes", "z", "--phases", "1", "--json", str(tmp_path / "out.json"), "--quiet"])
    out = capsys.readouterr().out
    assert rc == 0 and "tortuosity" in out and "truth spread" in out
    rep = json.loads((tmp_path / "out.json").read_text())
    assert [(r["phase"], r["axis"]) for r in rep["rows"] if r["metric"] == "tortuosity"] == [(1, "Z")]
    assert rep["volume_shape"] == [24, 24, 24]


def test_cli_validate_bad_input_exits_2_with_one_line(tmp_path, capsys):
    np.save(tmp_path / "img.npy", np.zeros((32, 32), np.uint8))
    np.save(tmp_path / "t.npy", thresholded_grf((16, 16, 16), (0.5, 0.5), 3.0, seed=0))
    rc = cli.main(["validate", str(tmp_path / "t.npy"), "--truth", str(tmp_path / "img.npy")])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2 and err[-1].startswith("matgen: error:") and "3D" in err[-1]
    assert "Traceback" not in "\n".join(err)


@pytest.mark.slow
def test_training_on_a_slice_moves_3d_statistics_toward_the_truth():
    """A tiny SliceGAN trained ~40 s on one slice of a known 3D truth: its volume's 3D surface area
    and short-range S2 get much closer to the truth's than the untrained generator's."""
    from matgen_core.data import decode
    from matgen_core.models.slicegan import PRESETS, SliceGANTrainer

    torch.set_num_threads(1)
    truth = thresholded_grf((64, 64, 64), (0.6, 0.4), 6.0, seed=0)
    config = {**PRESETS["quick"], **TINY_SLICEGAN, "kind": "nphase", "n_phases": 2, "num_images": 1}
    torch.manual_seed(0)
    np.random.seed(0)
    tr = SliceGANTrainer.create(config, [truth[32]], torch.device("cpu"))

    def measure():
        reps = [validate(decode(tr.sample((64, 64, 64), seed=s), "nphase"), truth, tortuosity=False,
                         spread=False, r_max=8) for s in (1, 2)]
        sa = np.mean([abs(rows(r, "surface_area", 1)[0]["rel_error"]) for r in reps])
        s2 = np.mean([np.mean([r["volume"] for r in rows(rep, "s2_l1")]) for rep in reps])
        return sa, s2

    sa0, s20 = measure()
    for step in range(400):
        tr.train_step(step)
    sa1, s21 = measure()
    print(f"surface area rel error {sa0:.3f} -> {sa1:.3f}; S2 L1 (r <= 8) {s20:.4f} -> {s21:.4f}")
    assert sa0 > 2.0                 # untrained: noise, several times the true surface
    assert sa1 < 0.4 * sa0           # trained: a clear step toward the truth
    assert s21 < 0.6 * s20


def test_cache_reuses_the_truth_measurements():
    truth = thresholded_grf((32, 32, 32), (0.6, 0.4), 4.0, seed=0)
    vols = [thresholded_grf((24, 24, 24), (0.6, 0.4), 4.0, seed=s) for s in (1, 2)]
    cache = {}
    with_cache = [validate(v, truth, tortuosity_axes="z", cache=cache) for v in vols]
    assert len(cache) == 3                                   # truth, crop A, crop B
    plain = [validate(v, truth, tortuosity_axes="z") for v in vols]
    assert with_cache == plain
    other = truth.copy()
    other[:4] = 1 - other[:4]                                # another truth: not served from the cache
    assert validate(vols[0], other, tortuosity_axes="z", cache=cache) == validate(vols[0], other, tortuosity_axes="z")
    assert len(cache) == 6


def bench_fidelity():
    """bench/bench_fidelity.py as a module (bench/ is not a package)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "bench" / "bench_fidelity.py"
    spec = importlib.util.spec_from_file_location("bench_fidelity", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    return bench


@pytest.mark.slow
def test_bench_fidelity_runs_end_to_end(tmp_path, capsys):
    """bench/bench_fidelity.py with a tiny budget: trains, generates raw + calibrated, validates."""
    bench = bench_fidelity()
    tiny = [f"--set={k}={json.dumps(v)}" for k, v in TINY_SLICEGAN.items()]
    rc = bench.main(["--cases", "aniso", "--steps", "3", "--size", "32", "--truth-size", "48",
                     "--no-tortuosity", "--threads", "1", "--gen-seeds", "1,2",
                     "--json", str(tmp_path / "r.json"), *tiny])
    out = capsys.readouterr().out
    assert rc == 0 and "summary" in out and "S2 L1 to truth" in out
    res = json.loads((tmp_path / "r.json").read_text())
    volumes = [r for r in res if "report" in r]
    assert [(r["variant"], r["gen_seed"]) for r in volumes] == [
        ("raw", 1), ("raw", 2), ("calibrated", 1), ("calibrated", 2)]
    assert volumes[0]["steps"] == 3 and volumes[0]["report"]["volume_shape"] == [32, 32, 32]
    # two seeds, two different volumes; the mean and worst lines are those volumes' figures
    assert volumes[0]["report"]["summary"]["s2_l1"] != volumes[1]["report"]["summary"]["s2_l1"]
    agg = [r["across_volumes"] for r in res if r.get("variant") == "raw" and "across_volumes" in r][0]
    s2 = [r["report"]["summary"]["s2_l1"] for r in volumes[:2]]
    assert agg["volumes"] == 2 and agg["worst"]["s2_l1"] == max(s2)
    assert abs(agg["mean"]["s2_l1"] - sum(s2) / 2) < 1e-12
    assert "raw worst" in out and "of 2 volumes meet every bar" in out


def test_bench_fidelity_scores_the_truths_own_octants(tmp_path, capsys):
    """--truth-octants scores the truth's eight corner crops like generated volumes: an octant of
    a stationary GRF matches the whole within sampling error, and each report is that crop's."""
    bench = bench_fidelity()
    rc = bench.main(["--cases", "grf2", "--seeds", "", "--size", "32", "--truth-size", "64",
                     "--no-tortuosity", "--truth-octants", "--quiet", "--json", str(tmp_path / "r.json")])
    out = capsys.readouterr().out
    res = json.loads((tmp_path / "r.json").read_text())
    octants = [r for r in res if r.get("variant") == "truth octant"]
    assert rc == 0 and len(octants) == 8 and "octants worst" in out and "of 8 volumes meet every bar" in out
    assert sorted(tuple(r["corner"]) for r in octants) == [
        (z, y, x) for z in (0, 32) for y in (0, 32) for x in (0, 32)]
    truth = synthetic.TRUTHS["grf2"][1]((64,) * 3, 0)
    fractions = []
    for r in octants:
        z, y, x = r["corner"]
        crop = truth[z:z + 32, y:y + 32, x:x + 32]
        rows = {row["phase"]: row for row in r["report"]["rows"] if row["metric"] == "volume_fraction"}
        assert abs(rows[1]["volume"] - (crop == 1).mean()) < 1e-9  # the report is this crop's
        assert abs(rows[1]["truth"] - (truth == 1).mean()) < 1e-9  # against the whole truth
        fractions.append(rows[1]["volume"])
    assert abs(np.mean(fractions) - (truth == 1).mean()) < 1e-9  # the octants tile the truth
    agg = [r["across_volumes"] for r in res if r.get("variant") == "truth octants"][0]
    assert agg["volumes"] == 8
    assert not any(r.get("variant") in ("raw", "calibrated") for r in res)  # no training asked for
