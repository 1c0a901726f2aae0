"""Periodic SliceGAN volumes (--periodic): exactly one period of an endless volume, any valid size."""
import numpy as np
import pytest
import torch

from matgen_core.generate import make_volume
from matgen_core.data import decode
from matgen_core.errors import MatgenInputError
from matgen_core.models.slicegan import PRESETS, SliceGANTrainer, periodic_sizes
from conftest import TINY_SLICEGAN


def random_trainer(seed=0):
    """A tiny 3-phase SliceGAN with random weights whose output depends strongly on the latent
    (small BatchNorm running variances amplify every layer ~10x; at the default statistics a
    random generator's output hardly depends on the latent and no test of it could fail)."""
    torch.manual_seed(seed)
    config = {**PRESETS["quick"], **TINY_SLICEGAN, "kind": "nphase", "n_phases": 3, "num_images": 1}
    tr = SliceGANTrainer.create(config, None, torch.device("cpu"))
    net = getattr(tr, "sampling_generator", None) or tr.generator
    with torch.no_grad():
        for bn in net.norms:
            bn.running_mean.zero_()
            bn.running_var.uniform_(0.005, 0.02)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.3, 0.3)
    return tr


def extended(tr, shape, periodic, seed, reps=2):
    """The generator's output on the periodic latent repeated ``reps`` times along each periodic
    axis: if the volume is one exact period, this is the volume tiled ``reps`` times."""
    z = tr.latent(shape, seed, periodic)
    big = list(shape)
    for ax, wrap in enumerate(periodic):
        if wrap:
            period = shape[ax] // 32
            idx = list(range(period)) * (reps - 1) + list(range(z.shape[2 + ax]))
            z = z.index_select(2 + ax, torch.as_tensor(idx))
            big[ax] = reps * shape[ax]
    out = tr.sample_latent(z.contiguous(memory_format=torch.channels_last_3d))
    return out[:, :big[0], :big[1], :big[2]]


@pytest.mark.parametrize("shape,periodic", [((64, 40, 48), (True, False, False)),
                                            ((32, 96, 64), (False, True, True)),
                                            ((96, 32, 64), (True, True, True))])
def test_periodic_volume_tiles_exactly(shape, periodic):
    tr = random_trainer()
    vol = tr.sample(shape, seed=3, periodic=periodic)          # (C, Z, Y, X) probabilities
    assert vol.shape[1:] == shape
    tiled = vol
    for ax, wrap in enumerate(periodic):
        if wrap:
            tiled = np.concatenate([tiled, tiled], axis=1 + ax)
    big = extended(tr, shape, periodic, seed=3)
    assert big.shape == tiled.shape
    # the volume next to a copy of itself is what the generator makes on a latent twice as long:
    # no seam, to float rounding (so every statistic across the seam, S2 included, equals the
    # same statistic inside the volume)
    np.testing.assert_allclose(big, tiled, atol=2e-5)
    # control: the same check on a plain (non-periodic) latent fails, so it can fail
    z = tr.latent(shape, 3)
    ax = periodic.index(True)
    idx = list(range(shape[ax] // 32)) + list(range(z.shape[2 + ax]))
    out = tr.sample_latent(z.index_select(2 + ax, torch.as_tensor(idx)).contiguous(
        memory_format=torch.channels_last_3d))
    out = out[:, :2 * shape[0], :2 * shape[1], :2 * shape[2]]
    out = out[tuple([slice(None)] + [slice(None) if a == ax else slice(0, shape[a]) for a in range(3)])]
    plain = tr.sample(shape, seed=3)
    n = shape[ax]
    assert np.abs(np.take(out, range(n, 2 * n), axis=1 + ax) - plain).max() < 2e-5  # the shift is exact
    assert np.abs(np.take(out, range(n), axis=1 + ax) - plain).max() > 1e-2        # but no wrap


def test_tiled_generation_keeps_the_period():
    tr = random_trainer(seed=2)
    shape, periodic = (64, 64, 96), (False, True, True)
    ref = decode(tr.sample(shape, seed=5, periodic=periodic), "nphase")
    got, _ = make_volume(tr, shape, seed=5, tile=32, periodic=periodic)
    assert (got != ref).mean() <= 1e-4
    # the tiled volume wraps: its last and first X planes continue each other as the inside does
    big = decode(extended(tr, shape, periodic, seed=5), "nphase")
    assert (np.tile(got, (1, 2, 2)) != big).mean() <= 1e-4


@pytest.mark.parametrize("size,near", [(100, "96 or 128"), (20, "32"), (130, "128 or 160")])
def test_sizes_that_cannot_be_periodic_are_refused_with_the_nearest_valid(size, near):
    tr = random_trainer()
    with pytest.raises(MatgenInputError, match=f"axis Y is {size}. Use {near} voxels"):
        tr.sample((32, size, 32), seed=0, periodic=(False, True, False))
    # the same size is fine along an axis that is not periodic
    assert tr.sample((32, size, 32), seed=0, periodic=(True, False, False)).shape[2] == size


def test_periodic_sizes():
    assert periodic_sizes(100) == (96, 128)
    assert periodic_sizes(128) == (128, 128)
    assert periodic_sizes(5) == (0, 32)


def test_cli_refuses_a_size_that_cannot_be_periodic(tmp_path, capsys):
    from matgen_core import cli, runs, train
    from matgen_core.io import Micrograph
    from conftest import blobs

    image = blobs(64)
    m = Micrograph(labels=image, image=image.astype(np.float32), kind="nphase", phase_values=[0, 1],
                   source="blobs")
    run = runs.create_run(tmp_path / "run", "slicegan", [m], preset="quick", overrides=TINY_SLICEGAN)
    train.train(run, steps=1, preview_every=0)
    rc = cli.main(["generate", str(run), "--out", str(tmp_path / "v.npy"), "--shape", "64,100,64",
                   "--periodic", "zy"])
    err = capsys.readouterr().err
    assert rc == 2 and "axis Y is 100. Use 96 or 128 voxels" in err and "Traceback" not in err
    rc = cli.main(["generate", str(run), "--out", str(tmp_path / "v.npy"), "--shape", "64,96,64",
                   "--periodic", "zy"])
    assert rc == 0 and np.load(tmp_path / "v.npy").shape == (64, 96, 64)
