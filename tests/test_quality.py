"""Analyze's verdict (matgen_core/quality.py): graded on what calibration cannot fake; bounded."""
import tracemalloc

import numpy as np

from matgen_core import metrics, quality
from conftest import blobs


def _volume(size, seed=0, sigma=3.0, fraction=0.35):
    from scipy.ndimage import gaussian_filter

    noise = gaussian_filter(np.random.default_rng(seed).standard_normal((size,) * 3), sigma, mode="wrap")
    return (noise > np.quantile(noise, 1 - fraction)).astype(np.uint8)


def test_verdict_good_for_matching_texture_poor_for_noise_with_calibrated_fractions():
    ref = blobs(96, fraction=0.35, sigma=3.0)
    good = quality.verdict(metrics.compare(ref, _volume(48, sigma=3.0)))
    # salt-and-pepper noise with exactly the training fractions: what a calibrated, untrained
    # generator looks like; the fractions match, the texture does not
    rng = np.random.default_rng(1)
    noise = (rng.random((48, 48, 48)) < ref.mean()).astype(np.uint8)
    res = metrics.compare(ref, noise)
    assert res["errors"]["phase_fraction"] < 0.01
    bad = quality.verdict(res, generator_fractions=[0.9, 0.1], step=120)
    assert bad["level"] == "poor" and bad["headline"].startswith("Under-trained")
    assert "step 120" in bad["headline"]
    keys = {c["key"]: c["level"] for c in bad["checks"]}
    assert keys["surface_area"] == "poor" and keys["generator_fractions"] == "poor"
    assert good["level"] in ("good", "fair") and not good["headline"].startswith("Under-trained")
    assert quality.row_level({"metric": "phase_fraction", "abs_error": 0.2}, calibrated=True) == "set"
    assert quality.row_level({"metric": "specific_surface_area", "rel_error": 0.5}) == "poor"


def test_bounded_sample_keeps_peak_memory_of_big_volumes_bounded(tmp_path):
    big = np.lib.format.open_memmap(tmp_path / "big.npy", mode="w+", dtype=np.uint8, shape=(192, 192, 192))
    big[:] = _volume(64)[np.arange(192) % 64][:, np.arange(192) % 64][:, :, np.arange(192) % 64]
    big.flush()
    vol = np.load(tmp_path / "big.npy", mmap_mode="r")
    crop, note = quality.bounded_sample(vol, side=48)
    assert crop.shape == (48, 48, 48) and np.shares_memory(crop, vol), "a view, not a copy"
    assert "central 48 x 48 x 48 voxels of the 192 x 192 x 192 volume" in note
    assert quality.bounded_sample(vol[:40, :40, :40], side=48)[1] is None
    ref = blobs(96)
    tracemalloc.start()
    metrics.compare(ref, crop)
    _, peak_crop = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    # scales with the sample (~80 bytes a voxel of it), far below anything whole-volume: the
    # whole volume's one-hot alone would be 8 bytes a voxel (2 phases, float32), 57 MB
    assert peak_crop < 120 * 48 ** 3, peak_crop
    assert peak_crop < 2 * 192 ** 3, peak_crop
