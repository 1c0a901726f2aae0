"""Synthetic 3D truths (matgen_core/synthetic.py): they hit their targets and known statistics."""
import numpy as np
import pytest

from matgen_core import metrics as M
from matgen_core.errors import MatgenInputError
from matgen_core.synthetic import (TRUTHS, grf_s2, overlapping_spheres, spheres_s2,
                                   synthetic_microstructure, thresholded_grf)


@pytest.mark.parametrize("fractions", [(0.6, 0.4), (0.8, 0.2), (0.4, 0.35, 0.25)])
def test_grf_meets_its_fractions_to_the_voxel(fractions):
    labels = thresholded_grf((40, 48, 56), fractions, 5.0, seed=1)
    assert labels.dtype == np.uint8 and labels.shape == (40, 48, 56)
    got = np.bincount(labels.ravel(), minlength=len(fractions)) / labels.size
    np.testing.assert_allclose(got, fractions, atol=1.5 / labels.size)


def test_grf_is_seeded():
    a = thresholded_grf((32, 32, 32), (0.5, 0.5), 4.0, seed=3)
    assert np.array_equal(a, thresholded_grf((32, 32, 32), (0.5, 0.5), 4.0, seed=3))
    assert (a != thresholded_grf((32, 32, 32), (0.5, 0.5), 4.0, seed=4)).mean() > 0.3


@pytest.mark.parametrize("length", [4.0, 8.0])
def test_two_phase_grf_has_its_exact_s2(length):
    fraction = 0.4
    labels = thresholded_grf((96, 96, 96), (1 - fraction, fraction), length, seed=0)
    measured = M.s2_all(labels, r_max=24, periodic=True)[1]["axes"].mean(axis=0)
    theory = grf_s2(fraction, np.arange(25), length)
    assert np.max(np.abs(measured - theory)) < 0.01
    # and a field twice as coarse decays more slowly (the length is a real parameter)
    assert measured[int(length)] > theory[-1] + 0.03


def test_three_phase_grf_has_all_interfaces_and_tpb():
    labels = thresholded_grf((48, 48, 48), (0.4, 0.35, 0.25), 6.0, seed=2)
    sa = M.surface_area(labels)
    assert np.all(sa["interface"] > 0.01), sa["interface"]      # 0-1, 0-2 and 1-2 all meet
    assert M.triple_phase_boundary_density(labels)["value"] > 1e-3


def test_anisotropic_grf_s2_differs_per_axis():
    labels = thresholded_grf((96, 96, 96), (0.6, 0.4), (12.0, 6.0, 3.0), seed=0)
    s2 = M.s2_all(labels, r_max=16, periodic=True)[1]["axes"]      # (3 axes, r)
    # longer correlation -> slower decay: at r = 4, Z > Y > X by a clear margin
    assert s2[0, 4] > s2[1, 4] + 0.03 and s2[1, 4] > s2[2, 4] + 0.03, s2[:, 4]
    for ax, length in enumerate((12.0, 6.0, 3.0)):
        assert abs(s2[ax, 4] - grf_s2(0.4, 4.0 * 6.0 / length, 6.0)) < 0.015


def test_spheres_hit_expected_fraction_and_s2():
    labels = overlapping_spheres((96, 96, 96), radius=5.0, fraction=0.45, seed=0)
    phi = labels.mean()
    assert abs(phi - 0.45) < 0.02
    measured = M.s2_all(labels, r_max=16)[0]["axes"].mean(axis=0)
    theory = spheres_s2(0.45, np.arange(17), 5.0)
    assert np.max(np.abs(measured - theory)) < 0.015
    assert theory[0] == pytest.approx(0.55)
    # the matrix decorrelates past two radii: S2 reaches (1 - phi)^2
    assert abs(theory[12] - 0.55 ** 2) < 1e-9


def test_truths_registry_makes_labelled_volumes():
    for name, (desc, make) in TRUTHS.items():
        v = make((32, 32, 32), 0)
        assert v.dtype == np.uint8 and v.shape == (32, 32, 32) and desc
        assert 2 <= len(np.unique(v)) <= 3, name


def test_bad_arguments_are_clear_errors():
    with pytest.raises(MatgenInputError, match="sum to 1"):
        thresholded_grf((16, 16, 16), (0.5, 0.6))
    with pytest.raises(MatgenInputError, match="one per axis"):
        thresholded_grf((16, 16, 16), (0.5, 0.5), (4.0, 4.0))
    with pytest.raises(MatgenInputError, match="at least 1 voxel"):
        overlapping_spheres((16, 16, 16), radius=0.5)
    with pytest.raises(MatgenInputError, match="between 0 and 1"):
        overlapping_spheres((16, 16, 16), fraction=1.2)


def test_the_2d_example_generator_is_unchanged():
    img = synthetic_microstructure((64, 64), n_phases=3, feature_size=10, seed=0)
    assert img.dtype == np.uint8 and set(np.unique(img)) == {0, 1, 2}
