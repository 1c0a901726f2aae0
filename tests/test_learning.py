"""A short real SliceGAN training must measurably learn (phase fraction and S2 move to the image's)."""
import numpy as np
import pytest
import torch

from matgen_core import generate, metrics, runs, train
from matgen_core.io import Micrograph
from conftest import blobs

# a small but real configuration: 32^3 training volumes, narrow networks
LEARN = {
    "lz": 3, "img_size": 32, "nz": 8,
    "gen_channels": [32, 32, 16, 8],
    "critic_channels": [16, 32, 64], "critic_kernels": [4, 4, 4, 4], "critic_strides": [2, 2, 2, 2],
    "critic_paddings": [1, 1, 1, 0],
    "batch_size": 4, "real_batch": 16, "critic_iters": 2, "critic_slices": 8,
}


def statistical_distance(volume: np.ndarray, image: np.ndarray, r_max: int = 12) -> float:
    """Phase-1 fraction gap + mean |S2 gap| over r = 0..r_max, slices of the volume vs the image."""
    vf_gap = abs(metrics.phase_fractions(volume, 2)[1] - metrics.phase_fractions(image, 2)[1])
    s2_img = np.mean([metrics.two_point_correlation(image, 1, axis=a, r_max=r_max) for a in (0, 1)], 0)
    s2_vol = np.mean([metrics.two_point_correlation(volume, 1, axis=a, r_max=r_max) for a in (0, 1, 2)], 0)
    return float(vf_gap + np.abs(s2_vol - s2_img).mean())


@pytest.mark.slow
def test_short_training_cuts_statistical_distance(tmp_path):
    torch.set_num_threads(2)
    image = blobs(128, seed=0, fraction=0.35, sigma=2.5)
    m = Micrograph(labels=image, image=image.astype(np.float32), kind="nphase", phase_values=[0, 1],
                   source="blobs")
    run = runs.create_run(tmp_path / "run", "slicegan", [m], preset="quick", overrides=LEARN, seed=0)
    train.train(run, steps=1, preview_every=0)  # one step: essentially the untrained generator
    before = np.mean([statistical_distance(generate.generate(run, shape=48, seed=s).array, image)
                      for s in range(2)])
    train.train(run, steps=300, preview_every=0, max_minutes=8)
    after = np.mean([statistical_distance(generate.generate(run, shape=48, seed=s).array, image)
                     for s in range(2)])
    print(f"statistical distance: untrained {before:.4f} -> trained {after:.4f}")
    # measured here: 0.30 untrained -> 0.064 (200 steps) -> 0.016 (300 steps)
    assert after < 0.5 * before, (before, after)
    assert after < 0.08, after
