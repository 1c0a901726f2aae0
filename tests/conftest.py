"""Shared fixtures: tiny configs so every test runs on a CPU in seconds."""
from pathlib import Path

import numpy as np
import pytest
import torch

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data" / "slicegan_examples"

# A SliceGAN small enough for unit tests: 32^3 training volumes (lz=3), few channels.
TINY_SLICEGAN = {
    "lz": 3, "img_size": 32, "nz": 4,
    "gen_channels": [8, 8, 8, 4],
    "critic_channels": [8, 8, 8], "critic_kernels": [4, 4, 4, 4], "critic_strides": [2, 2, 2, 2],
    "critic_paddings": [1, 1, 1, 0],
    "batch_size": 2, "real_batch": 4, "critic_iters": 1, "critic_slices": 4,
}


@pytest.fixture(autouse=True)
def _few_threads():
    torch.set_num_threads(1)
    yield


@pytest.fixture
def shared_dir():
    if not SHARED.is_dir():
        pytest.skip("../shared/data/slicegan_examples is not present (fresh clone)")
    return SHARED


def stripes(size=96, period=12, fraction=0.5):
    """A 2-phase image of vertical stripes: labels uint8 (size, size)."""
    x = np.arange(size)
    row = ((x % period) < period * fraction).astype(np.uint8)
    return np.tile(row, (size, 1))


def blobs(size=96, seed=0, fraction=0.35, sigma=3.0):
    """A 2-phase isotropic blob image (thresholded smoothed noise), labels uint8 (size, size)."""
    from scipy.ndimage import gaussian_filter

    noise = gaussian_filter(np.random.default_rng(seed).standard_normal((size, size)), sigma, mode="wrap")
    return (noise > np.quantile(noise, 1 - fraction)).astype(np.uint8)
