"""Tests for matgen_core.metrics: analytic cases, brute-force cross-checks, real data.

Kept small (volumes up to 64^3, electrode crop 128^3) so the file runs in well under a minute.
"""
import json
import math
from pathlib import Path

import numpy as np
import pytest

from matgen_core import metrics as M
from matgen_core.errors import MatgenInputError

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "slicegan_examples"


def lamellar(n=32, period=8, thick=4, shape=None):
    """Layers normal to axis 0: phase 1 where z % period < thick."""
    shape = shape or (n, n, n)
    z = np.arange(shape[0])
    a = np.zeros(shape, np.uint8)
    a[(z % period) < thick] = 1
    return a


def smooth_random(shape, sigma=2.0, level=0.0, seed=0):
    from scipy import ndimage
    g = ndimage.gaussian_filter(np.random.default_rng(seed).standard_normal(shape), sigma)
    return (g > level).astype(np.uint8)


def three_phase(shape, seed=0):
    from scipy import ndimage
    g = ndimage.gaussian_filter(np.random.default_rng(seed).standard_normal(shape), 1.5)
    a = np.zeros(shape, np.uint8)
    a[g > -0.1] = 1
    a[g > 0.25] = 2
    return a


# ---------------------------------------------------------------------------------- fractions

def test_phase_fractions_exact():
    a = np.zeros((10, 20), np.uint8)
    a[:3] = 1          # 60 px
    a[3:4, :5] = 2     # 5 px
    np.testing.assert_allclose(M.phase_fractions(a), [135 / 200, 60 / 200, 5 / 200])
    # gray-coded labels (0/85/170 as in electrode.tiff) are mapped in sorted order
    np.testing.assert_allclose(M.phase_fractions(a * 85), [135 / 200, 60 / 200, 5 / 200])
    # an absent phase when n_phases is given
    np.testing.assert_allclose(M.phase_fractions((a > 0).astype(np.uint8), n_phases=3),
                               [135 / 200, 65 / 200, 0])
    # bool and integer-valued float input are fine
    np.testing.assert_allclose(M.phase_fractions(a > 0), [0.675, 0.325])
    np.testing.assert_allclose(M.phase_fractions(a.astype(np.float32)), [0.675, 0.3, 0.025])


def test_fraction_profiles():
    a = lamellar(16, period=4, thick=2)
    prof = M.fraction_profiles(a)
    assert [p.shape for p in prof] == [(16, 2)] * 3
    np.testing.assert_allclose(prof[0][:, 1], np.tile([1, 1, 0, 0], 4))
    np.testing.assert_allclose(prof[1][:, 1], 0.5)
    np.testing.assert_allclose(prof[2].sum(axis=1), 1.0)
    prof2 = M.fraction_profiles(a[:, 0, :])
    assert [p.shape for p in prof2] == [(16, 2), (16, 2)]


# ---------------------------------------------------------------------------------- S2

def test_s2_lamellar_periodic_triangle_wave():
    p, t = 8, 4
    a = lamellar(32, p, t)
    r = np.arange(17)
    d = np.minimum(r % p, p - r % p)
    expected = np.maximum(0, t - d) / p            # triangle wave between phi=0.5 and 0
    np.testing.assert_allclose(M.two_point_correlation(a, 1, axis=0, r_max=16, periodic=True),
                               expected, atol=1e-5)
    for ax in (1, 2):     # along the layers: constant = phi
        np.testing.assert_allclose(M.two_point_correlation(a, 1, axis=ax, r_max=16, periodic=True),
                                   0.5, atol=1e-5)


def test_s2_non_periodic_matches_direct_count():
    a = lamellar(30, 7, 3)       # period does not divide the size: edges matter
    f = a[:, 0, 0].astype(float)
    s2 = M.two_point_correlation(a, 1, axis=0, r_max=12)
    direct = [np.mean(f[: len(f) - r] * f[r:]) for r in range(13)]
    np.testing.assert_allclose(s2, direct, atol=1e-5)
    np.testing.assert_allclose(M.two_point_correlation(a, 1, axis=2, r_max=12), a.mean(), atol=1e-5)


def test_s2_brute_force_all_displacements_2d():
    rng = np.random.default_rng(1)
    a = (rng.random((13, 17)) < 0.4).astype(np.uint8)
    r = 5
    res = M.s2_all(a, 2, r)
    sums = np.zeros(r + 1)
    cnt = np.zeros(r + 1)
    for dy in range(-r, r + 1):
        for dx in range(-r, r + 1):
            k = int(np.rint(math.hypot(dy, dx)))
            if k > r:
                continue
            s1 = a[max(0, -dy): 13 - max(0, dy), max(0, -dx): 17 - max(0, dx)]
            s2 = a[max(0, dy): 13 - max(0, -dy), max(0, dx): 17 - max(0, -dx)]
            sums[k] += np.mean((s1 == 0) & (s2 == 0))
            cnt[k] += 1
    np.testing.assert_allclose(res[0]["radial"], sums / cnt, atol=1e-5)
    assert res[0]["axes"].shape == (2, r + 1) and res[1]["radial"].shape == (r + 1,)


def test_s2_checkerboard():
    z, y, x = np.indices((16, 16, 16))
    a = ((z + y + x) % 2).astype(np.uint8)
    for ax in range(3):
        s2 = M.two_point_correlation(a, 1, axis=ax, r_max=6)
        np.testing.assert_allclose(s2, [0.5, 0, 0.5, 0, 0.5, 0, 0.5], atol=1e-5)
    s2d = M.s2_all(a[0], 2, 4)
    np.testing.assert_allclose(s2d[0]["axes"], [[0.5, 0, 0.5, 0, 0.5]] * 2, atol=1e-5)


def test_s2_random_limits():
    rng = np.random.default_rng(0)
    a = (rng.random((48, 48, 48)) < 0.3).astype(np.uint8)
    phi = a.mean()
    res = M.s2_all(a, 2, 10)
    assert res[1]["radial"][0] == pytest.approx(phi, abs=1e-5)
    assert res[0]["radial"][0] == pytest.approx(1 - phi, abs=1e-5)
    np.testing.assert_allclose(res[1]["radial"][2:], phi ** 2, atol=3e-3)
    np.testing.assert_allclose(res[1]["axes"][:, 5:], phi ** 2, atol=5e-3)
    # s2_all and two_point_correlation agree
    np.testing.assert_allclose(M.two_point_correlation(a, 1, r_max=10), res[1]["radial"], atol=1e-6)
    np.testing.assert_allclose(M.two_point_correlation(a, 1, axis=1, r_max=10), res[1]["axes"][1],
                               atol=1e-6)


def test_s2_cross_check_porespy():
    ps = pytest.importorskip("porespy")
    im = smooth_random((60, 70), sigma=2, level=0.2, seed=3).astype(bool)
    bins = np.concatenate([[0.0], np.arange(0.5, 21)])     # bin k = distances rounding to k
    theirs = ps.metrics.two_point_correlation(im, bins=bins).probability_scaled
    np.testing.assert_allclose(M.two_point_correlation(im, 1, r_max=20), theirs, atol=1e-5)
    assert M.phase_fractions(im)[1] == pytest.approx(ps.metrics.porosity(im))


# ---------------------------------------------------------------------------------- surface

def ball(radius=20, n=64):
    z, y, x = np.indices((n, n, n)) - (n - 1) / 2
    return (z ** 2 + y ** 2 + x ** 2 <= radius ** 2).astype(np.uint8)


def test_surface_area_ball_and_disk():
    b = ball(20, 64)
    res = M.surface_area(b)
    area = res["per_phase"] * b.size
    assert area[1] == pytest.approx(4 * math.pi * 20 ** 2, rel=0.05)
    assert area[0] == pytest.approx(area[1])                  # same interface seen from outside
    assert res["pairs"] == [(0, 1)]
    assert res["interface"][0] == pytest.approx(res["per_phase"][1])
    phys = M.surface_area(b, voxel_size=0.5, unit="um")
    assert phys["per_phase_phys"][1] == pytest.approx(res["per_phase"][1] / 0.5)
    assert phys["unit_phys"] == "1/um"

    y, x = np.indices((128, 128)) - 63.5
    disk = (y ** 2 + x ** 2 <= 40 ** 2).astype(np.uint8)
    per = M.surface_area(disk)["per_phase"][1] * disk.size
    assert per == pytest.approx(2 * math.pi * 40, rel=0.05)


def test_interface_areas_add_up():
    a = three_phase((24, 24, 24))
    res = M.surface_area(a)
    pairs = dict(zip(res["pairs"], res["interface"]))
    for p in range(3):
        assert res["per_phase"][p] == pytest.approx(sum(v for k, v in pairs.items() if p in k))


# ---------------------------------------------------------------------------------- TPB

def test_tpb_constructed_volume():
    a = np.zeros((20, 20, 20), np.uint8)
    a[10:, :10] = 1          # z >= 10, y < 10
    a[10:, 10:] = 2          # z >= 10, y >= 10: one TPB line along x at (z, y) = (9.5, 9.5)
    res = M.triple_phase_boundary_density(a)
    assert res["value"] == pytest.approx(20 / 8000)
    np.testing.assert_allclose(res["per_axis"], [0, 0, 20 / 8000])
    res = M.triple_phase_boundary_density(a, voxel_size=0.5, unit="um")
    assert res["value_phys"] == pytest.approx(20 * 0.5 / (8000 * 0.5 ** 3))
    # 2D: a single triple point
    assert M.triple_phase_boundary_density(a[:, :, 0])["value"] == pytest.approx(1 / 400)
    # two phases: no TPB
    assert M.triple_phase_boundary_density((a > 0).astype(np.uint8))["value"] == 0


# ---------------------------------------------------------------------------------- percolation

def test_percolation_slab_and_blobs():
    a = np.zeros((20, 20, 20), np.uint8)
    a[:, :, 5:9] = 1                          # slab spanning axes 0 and 1
    for z in (3, 12):                          # isolated interior blobs of phase 2
        a[z:z + 3, 12:15, 12:15] = 2
    perc = M.percolation(a)
    assert perc.shape == (3, 3)
    np.testing.assert_allclose(perc[1], [1.0, 1.0, 0.0])
    np.testing.assert_allclose(perc[2], [0.0, 0.0, 0.0])
    # phase 0 is split by the slab into two parts, each touching one x face
    assert perc[0, 2] == 0.0 and perc[0, 0] == 1.0
    np.testing.assert_allclose(M.percolation(a[5])[1], [1.0, 0.0])


def test_block_percolation_counts_the_sub_volumes_a_phase_crosses():
    a = np.zeros((32, 32, 32), np.uint8)
    a[:, 16, 16] = 1                           # a one-voxel rod along Z through the centre
    counts = M.block_percolation(a)
    # blocks of side 16 with corners at 0, 8, 16: the rod lies in 2 of 3 block rows along Y and X
    # and crosses every block it lies in along Z (3 corners), never across Y or X
    assert counts.tolist() == [[27, 27, 27], [3 * 2 * 2, 0, 0]]
    cut = a.copy()
    cut[20, 16, 16] = 0                        # cut at z = 20: blocks starting at z 8 and 16 lose it
    assert M.block_percolation(cut)[1].tolist() == [1 * 2 * 2, 0, 0]
    assert M.percolation(cut)[1, 0] == 0.0 and M.percolation(a)[1, 0] == 1.0
    # 2D: 3 x 3 blocks; a full phase crosses every one of them
    assert M.block_percolation(np.zeros((20, 20), np.uint8), 2).tolist() == [[9, 9], [0, 0]]
    with pytest.raises(ValueError):
        M.block_percolation(a, blocks_per_axis=0)


# ---------------------------------------------------------------------------------- tortuosity

def test_tortuosity_straight_channels():
    pytest.importorskip("taufactor")
    a = np.zeros((20, 20, 20), np.uint8)
    a[:, 2:6, 2:6] = 1
    a[:, 10:13, 12:18] = 1
    seen = []
    res = M.tortuosity(a, 1, axis=0, progress=lambda f, it: seen.append(f))
    assert res["tau"] == pytest.approx(1.0, abs=0.01)
    assert res["D_eff"] == pytest.approx(a.mean(), rel=0.01)
    assert res["converged"]
    assert seen and seen[-1] == 1.0 and all(0 <= f <= 1 for f in seen)
    assert seen == sorted(seen)
    # channels along axis 0 do not connect the faces normal to axis 1
    res = M.tortuosity(a, 1, axis=1)
    assert math.isinf(res["tau"]) and res["D_eff"] == 0.0
    with pytest.raises(M.MetricCancelled):
        M.tortuosity(a, 0, axis=0, should_stop=lambda: True)


# ---------------------------------------------------------------------------------- isotropy, RVE

def test_isotropy_index():
    assert M.isotropy_index(lamellar(24, 8, 4), 2, 8) > 0.1
    iso = M.isotropy_index(smooth_random((40, 40, 40), 1.5), 2, 8)
    assert iso < 0.02
    assert M.isotropy_index(lamellar(24)[:, 0], 2, 8) is None


def test_representativeness_white_noise():
    rng = np.random.default_rng(2)
    a = (rng.random((48, 48, 48)) < 0.3).astype(np.uint8)
    std = M.representativeness(a, 1, 10)
    assert std == pytest.approx(math.sqrt(0.21 / 1000), rel=0.15)
    s = M.fraction_std(a, 2, (10, 10, 10))
    assert s.shape == (2,) and s[0] == pytest.approx(s[1], rel=1e-3)
    # from a 2D image to a 3D window (isotropy assumed)
    s3 = M.fraction_std(a[0], 2, (10, 10, 10))
    assert s3[1] == pytest.approx(math.sqrt(0.21 / 1000), rel=0.2)


def test_representativeness_correlated_structure_larger():
    a = smooth_random((48, 48, 48), 2.0)
    white = math.sqrt(0.25 / 16 ** 3)
    assert M.representativeness(a, 1, 16) > 3 * white


# ---------------------------------------------------------------------------------- summarize / compare

def test_summarize_json_and_table():
    a = three_phase((24, 24, 24))
    res = M.summarize(a, voxel_size=0.2, unit="um", r_max=8)
    text = json.dumps(res, allow_nan=False)
    assert "phase_fractions" in text
    for key in ("phase_fractions", "fraction_profiles", "s2", "surface_area", "interface_area",
                "tpb", "percolation", "tortuosity", "isotropy", "representativeness"):
        assert key in res
    assert res["tortuosity"] is None
    assert len(res["s2"]["phases"][0]["axes"]) == 3 and len(res["s2"]["r"]) == 9
    assert res["surface_area"]["physical"][0] == pytest.approx(res["surface_area"]["value"][0] / 0.2)
    assert res["surface_area"]["physical_unit"] == "1/um"
    table = M.format_table(res)
    assert "fraction" in table and "TPB" in table
    res2 = M.summarize(a[0], r_max=8)
    assert res2["isotropy"] is None and res2["ndim"] == 2
    assert "perimeter" in M.format_table(res2)


def test_summarize_with_tortuosity():
    pytest.importorskip("taufactor")
    a = np.zeros((16, 16, 16), np.uint8)
    a[:, 4:8, 4:8] = 1
    res = M.summarize(a, r_max=4, tortuosity=True)
    t = res["tortuosity"]
    assert t["axes"] == [0]
    assert t["phases"][1][0]["tau"] == pytest.approx(1.0, abs=0.01)
    json.dumps(res, allow_nan=False)
    assert "tortuosity phase 1" in M.format_table(res)


def test_compare_identical_is_zero():
    a = three_phase((24, 24, 24))
    res = M.compare(a, a.copy(), r_max=8)
    assert res["mode"] == "3d"
    json.dumps(res, allow_nan=False)
    for row in res["rows"]:
        assert set(row) >= {"metric", "phase", "reference", "generated", "abs_error", "rel_error"}
        assert row["abs_error"] == 0
    assert res["errors"]["s2"] == 0 and res["errors"]["phase_fraction"] == 0
    assert len(res["curves"]["phases"]) == 3
    assert "phase_fraction" in M.format_table(res)


def test_compare_2d_against_volume_slices():
    vol = three_phase((20, 20, 20), seed=4)
    r = 5
    res = M.compare(vol[10], vol, r_max=r)
    assert res["mode"] == "2d-slices"
    metrics = {row["metric"] for row in res["rows"]}
    assert {"phase_fraction", "specific_perimeter", "tpb_density", "percolation"} <= metrics
    # the generated side equals the 2D metrics of every slice in every direction, averaged
    per_slice_s2, per_slice_perim, per_slice_tpb = [], [], []
    for ax in range(3):
        for k in range(vol.shape[ax]):
            sl = np.take(vol, k, axis=ax)
            per_slice_s2.append(M.s2_all(sl, 3, r)[2]["radial"])
            per_slice_perim.append(M.surface_area(sl, 3)["per_phase"])
            per_slice_tpb.append(M.triple_phase_boundary_density(sl, n_phases=3)["value"])
    curve = res["curves"]["phases"][2]["generated"]
    np.testing.assert_allclose(curve, np.mean(per_slice_s2, axis=0), atol=1e-5)
    gen = {(row["metric"], row["phase"]): row["generated"] for row in res["rows"]}
    np.testing.assert_allclose([gen[("specific_perimeter", p)] for p in range(3)],
                               np.mean(per_slice_perim, axis=0), rtol=1e-9)
    assert gen[("tpb_density", "all")] == pytest.approx(np.mean(per_slice_tpb))
    # the slice's own statistics are close to the volume's slice statistics
    assert res["errors"]["phase_fraction"] < 0.1
    # roles can be swapped: 3D reference vs 2D generated
    assert M.compare(vol, vol[3], r_max=r)["mode"] == "2d-slices"


# ---------------------------------------------------------------------------------- validation

@pytest.mark.parametrize("bad", [
    np.zeros(10, np.uint8),                       # 1D
    np.zeros((2, 4, 4, 4), np.uint8),             # 4D
    np.random.default_rng(0).random((16, 16)),    # float noise
    np.ones((8, 8), np.uint8),                    # a single phase
    np.arange(16 * 16 * 16).reshape(16, 16, 16),  # thousands of distinct values
])
def test_bad_input_raises(bad):
    with pytest.raises(MatgenInputError) as err:
        M.summarize(bad)
    msg = str(err.value)
    assert msg.endswith(".") and len(msg) > 20


def test_float_noise_message_says_segment():
    with pytest.raises(MatgenInputError, match="segment"):
        M.phase_fractions(np.random.default_rng(0).random((8, 8)).astype(np.float32))


def test_mismatched_phase_counts():
    ref = (np.indices((16, 16)).sum(0) % 2).astype(np.uint8)          # 2 phases
    gen = three_phase((16, 16, 16))                                     # 3 phases
    with pytest.raises(MatgenInputError, match="phases"):
        M.compare(ref, gen)
    with pytest.raises(MatgenInputError):
        M.phase_fractions(gen, n_phases=2)
    with pytest.raises(MatgenInputError):
        M.two_point_correlation(gen, phase=5)


# ---------------------------------------------------------------------------------- real data

@pytest.fixture(scope="module")
def electrode():
    path = DATA / "electrode.tiff"
    if not path.exists():
        pytest.skip(f"{path} not available")
    tifffile = pytest.importorskip("tifffile")
    return tifffile.imread(path)


def test_electrode_fractions(electrode):
    assert electrode.shape == (256, 256, 256)
    np.testing.assert_allclose(M.phase_fractions(electrode), [0.4499, 0.4005, 0.1496], atol=1e-3)


def test_electrode_crop_statistics(electrode):
    crop = electrode[64:192, 64:192, 64:192]
    assert M.isotropy_index(crop, 3, 16) < 0.01
    tpb = M.triple_phase_boundary_density(crop)["value"]
    assert tpb > 0
    perc = M.percolation(crop)
    assert perc.shape == (3, 3) and perc.min() > 0.5       # all three phases percolate


def test_tortuosity_silences_only_its_own_thread(capsys):
    """taufactor prints after every unconverged chunk; that is dropped for the measuring thread
    only: another thread's prints in the meantime still arrive, and sys.stdout is restored."""
    pytest.importorskip("taufactor")
    import sys
    import threading

    from matgen_core.metrics.transport import quiet_stdout

    before = sys.stdout
    a = (smooth_random((24, 24, 24), 1.5) > 0).astype(np.uint8)
    done, lines = threading.Event(), []

    def talk():
        while not done.is_set():
            print(f"line {len(lines)}")
            lines.append(1)
            done.wait(0.001)

    other = threading.Thread(target=talk)
    other.start()
    try:
        res = M.tortuosity(a, 1, axis=0, max_iter=600, chunk=100, conv_crit=1e-9)
        with quiet_stdout(), quiet_stdout():  # nested, in the same thread
            print("dropped")
    finally:
        done.set()
        other.join()
    assert res["iterations"] == 600 and not res["converged"]
    out = capsys.readouterr().out
    assert "not converged" not in out and "dropped" not in out
    assert out.count("line ") == len(lines) > 0
    assert sys.stdout is before


def test_expected_cube_variance_matches_a_3d_truth_from_one_of_its_slices():
    from matgen_core import synthetic
    from matgen_core.metrics import expected_cube_variance

    truth = synthetic.thresholded_grf((96, 96, 96), (0.6, 0.4), correlation_length=4.0, seed=0)
    for side in (8, 16):
        n = 96 // side
        blocks = (truth == 1).reshape(n, side, n, side, n, side).mean((1, 3, 5))
        estimate = expected_cube_variance([truth[48]], 2, side)[1]
        assert 0.6 < estimate / blocks.var() < 1.6, (side, estimate, blocks.var())
    assert expected_cube_variance([truth[48]], 2, 8)[1] > 2 * expected_cube_variance([truth[48]], 2, 16)[1]

