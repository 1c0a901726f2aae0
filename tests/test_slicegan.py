"""SliceGAN networks: uniform information density, sizes, slicing, gradient penalty."""
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from matgen_core.data import DiagonalCropSampler, diagonal_span, encode
from matgen_core.errors import MatgenInputError
from matgen_core.models.slicegan import (PRESETS, Critic, Generator, SliceGANTrainer, check_uid,
                                         critic_losses, diagonal_sections, gradient_penalty,
                                         latent_size_for, output_size, slices,
                                         subpixel_conv_transpose3d)
from matgen_core.models.slicegan_networks import ResizeKernel
from conftest import TINY_SLICEGAN, blobs

PAPER = PRESETS["paper"]
K, S, P = PAPER["gen_kernels"], PAPER["gen_strides"], PAPER["gen_paddings"]


def tiny_trainer(images, kind="nphase", n_phases=2, num_images=1, **over):
    config = {**PRESETS["quick"], **TINY_SLICEGAN, "kind": kind, "n_phases": n_phases,
              "num_images": num_images, **over}
    return SliceGANTrainer.create(config, images, torch.device("cpu"))


def test_uid_rule_accepts_paper_and_rejects_bad_layers():
    check_uid(K, S, P)
    with pytest.raises(ValueError, match="uniform information density"):
        check_uid([4, 3], [2, 2], [2, 2])  # kernel not divisible by stride
    with pytest.raises(ValueError):
        check_uid([4, 4], [2, 2], [2, 1])  # padding < kernel - stride
    with pytest.raises(ValueError):
        check_uid([2], [2], [0])  # stride == kernel


@pytest.mark.parametrize("lz,side", [(3, 32), (4, 64), (5, 96), (6, 128), (10, 256), (18, 512)])
def test_output_size_is_32_times_lz_minus_2(lz, side):
    assert output_size(lz, K, S, P) == side
    assert latent_size_for(side, K, S, P) == lz


def test_generator_sizes_for_latent_shapes_non_cubic():
    g = Generator(4, [8, 8, 8, 4], K, S, P, 3, "nphase").eval()
    with torch.no_grad():
        for lat in [(3, 3, 3), (4, 3, 5), (3, 6, 4)]:
            out = g(torch.randn(1, 4, *lat))
            assert out.shape == (1, 3, *[32 * (n - 2) for n in lat])
            assert torch.allclose(out.sum(1), torch.ones(1)), "softmax over phases"


def test_trainer_samples_any_shape_and_is_seeded():
    tr = tiny_trainer([blobs(64)])
    a = tr.sample((20, 33, 50), seed=3)
    b = tr.sample((20, 33, 50), seed=3)
    c = tr.sample((20, 33, 50), seed=4)
    assert a.shape == (2, 20, 33, 50)
    assert np.array_equal(a, b) and not np.array_equal(a, c)


def test_every_slice_of_every_direction_reaches_the_critic():
    vol = torch.arange(2 * 1 * 4 * 5 * 6, dtype=torch.float32).reshape(2, 1, 4, 5, 6)
    for axis, (n, h, w) in enumerate([(4, 5, 6), (5, 4, 6), (6, 4, 5)]):
        sl = slices(vol, axis)
        assert sl.shape == (2 * n, 1, h, w)
        # every voxel appears exactly once among the slices of each direction
        assert torch.equal(torch.sort(sl.flatten()).values, torch.sort(vol.flatten()).values)
        # slice i of volume b is the plane index i along the axis
        assert torch.equal(sl[n + 1, 0], vol[1, 0].select(axis, 1))


def test_training_step_feeds_all_slices_when_critic_slices_is_none():
    tr = tiny_trainer([blobs(64)], critic_slices=None, batch_size=2)
    seen = []
    tr.critics[0].register_forward_hook(lambda m, i, o: seen.append(i[0].shape[0]))
    tr.train_step(0)
    real, iters = tr.config["real_batch"], tr.config["critic_iters"]
    # critic step: one call with the real crops and all 2 volumes * 32 slices of the 3 directions,
    # one with the penalty's interpolates (min of real and fake per direction);
    # generator step: one call with the 3 directions' 64 fake slices
    assert seen.count(3 * (real + 2 * 32)) == iters
    assert seen.count(3 * min(real, 2 * 32)) == iters
    assert seen[-1] == 3 * 2 * 32 and len(seen) == 2 * iters + 1


def test_diagonal_sections_are_the_face_diagonal_planes():
    vol = torch.arange(2 * 1 * 5 ** 3, dtype=torch.float32).reshape(2, 1, 5, 5, 5)
    planes = diagonal_sections(vol)
    assert planes.shape == (2 * 6, 1, 5, 5)
    i = torch.arange(5)
    v = vol[1, 0]
    # rows: the plane's axis (Z, Y, X in turn); columns: the diagonal, then the anti-diagonal
    expected = [v[:, i, i], v[:, i, 4 - i], v[i, :, i].T, v[i, :, 4 - i].T, v[i, i, :].T, v[i, 4 - i, :].T]
    for k, plane in enumerate(expected):
        assert torch.equal(planes[6 + k, 0], plane), k


def test_diagonal_crops_sample_columns_sqrt2_apart():
    h, w = 40, 60
    columns = np.broadcast_to(np.arange(w, dtype=np.float32), (h, w))  # a pixel holds its column
    rows = np.broadcast_to(np.arange(h, dtype=np.float32)[:, None], (h, w))
    image = np.stack([rows, columns])  # (C=2, H, W): the crop tells where each pixel came from
    sampler = DiagonalCropSampler(image, 32)
    assert sampler.span == diagonal_span(32) == 45 and sampler.orientations == (False,)  # 40 < 45
    crops = sampler.sample(50, generator=torch.Generator().manual_seed(0)).numpy()
    steps = np.diff(crops[:, 1], axis=-1)
    assert set(np.unique(steps)) == {1.0, 2.0}  # nearest pixels of points sqrt(2) apart
    assert np.allclose((crops[:, 1, :, -1] - crops[:, 1, :, 0]) / 31, np.sqrt(2), atol=1 / 31)
    assert np.all(np.diff(crops[:, 0], axis=-2) == 1)  # rows: consecutive
    # a square image wide enough: both orientations are drawn
    square = DiagonalCropSampler(encode(blobs(64), "nphase", 2), 32)
    assert square.orientations == (False, True)
    with pytest.raises(MatgenInputError, match="32x45"):
        DiagonalCropSampler(encode(blobs(40), "nphase", 2), 32)


def test_diagonal_crops_of_a_volume_are_its_diagonal_planes():
    vol = np.arange(34 * 33 * 32, dtype=np.float32).reshape(1, 34, 33, 32)  # a voxel holds its index
    crops = DiagonalCropSampler(vol, 32).sample(20, generator=torch.Generator().manual_seed(1))
    zyx = np.stack(np.unravel_index(crops[:, 0].numpy().astype(np.int64), vol.shape[1:]), -1)  # (n, 32, 32, 3)
    for crop in zyx:
        steps = np.diff(crop, axis=1)  # along a row: two axes move by 1 each (one of them maybe -1)
        assert np.all(np.abs(steps).sum(-1) == 2) and np.all((steps == 0).sum(-1) == 1)
        assert np.all(np.abs(np.diff(crop, axis=0)).sum(-1) == 1)  # down a column: one axis by 1


def test_critic_diagonal_adds_a_critic_for_the_diagonal_planes():
    tr = tiny_trainer([blobs(64)], critic_diagonal=True, batch_size=2)
    assert len(tr.critics) == 2 and tr.critic_groups()[-1] == (1, [3])
    seen = []
    tr.critics[1].register_forward_hook(lambda m, i, o: seen.append(i[0].shape))
    before = [p.detach().clone() for p in tr.critics[1].parameters()]
    losses = tr.train_step(0)
    assert all(np.isfinite(v) for v in losses.values())
    real = tr.config["real_batch"]
    # critic step: real crops + 2 volumes x 6 diagonal planes, then the penalty's interpolates;
    # generator step: the 12 fake planes
    assert [s[0] for s in seen] == [real + 12, min(real, 12), 12]
    assert all(s[1:] == (2, 32, 32) for s in seen)
    assert any(not torch.equal(a, b) for a, b in zip(before, tr.critics[1].parameters()))
    with pytest.raises(MatgenInputError, match="critic_diagonal"):
        tiny_trainer([blobs(64, seed=1), blobs(64, seed=2)], num_images=2, critic_diagonal=True)


def test_anisotropic_uses_one_critic_per_image():
    tr = tiny_trainer([blobs(64, seed=1), blobs(64, seed=2), blobs(64, seed=3)], num_images=3)
    assert len(tr.critics) == 3
    tr2 = tiny_trainer([blobs(64, seed=1), blobs(64, seed=2)], num_images=2)
    assert len(tr2.critics) == 2 and tr2.direction_image == [0, 1, 1]
    losses = tr.train_step(0)
    assert all(np.isfinite(v) for v in losses.values())


def test_gradient_penalty_zero_for_unit_slope_critic_and_positive_otherwise():
    class Linear(torch.nn.Module):
        def __init__(self, scale):
            super().__init__()
            self.scale = scale

        def forward(self, x):  # gradient norm = scale * ||ones|| / ||ones||
            return self.scale * x.flatten(1).sum(1) / x[0].numel() ** 0.5

    real, fake = torch.rand(4, 1, 8, 8), torch.rand(4, 1, 8, 8)
    assert gradient_penalty(Linear(1.0), real, fake).item() == pytest.approx(0.0, abs=1e-10)
    assert gradient_penalty(Linear(3.0), real, fake).item() == pytest.approx(4.0, rel=1e-5)
    critic = Critic(1, [4, 4, 4, 4], [4] * 5, [2] * 5, [1, 1, 1, 1, 0])
    gp = gradient_penalty(critic, real.repeat(1, 1, 8, 8), fake.repeat(1, 1, 8, 8))
    gp.backward()
    assert any(p.grad is not None for p in critic.parameters()), "GP must train the critic"


@pytest.mark.parametrize("kind,channels", [("gray", 1), ("color", 3)])
def test_gray_and_colour_outputs(kind, channels):
    rng = np.random.default_rng(0)
    image = rng.random((48, 48) if kind == "gray" else (48, 48, 3)).astype(np.float32)
    tr = tiny_trainer([image], kind=kind, n_phases=0)
    tr.train_step(0)
    vol = tr.sample((32, 32, 32), seed=0)
    assert vol.shape == (channels, 32, 32, 32) and vol.min() >= 0 and vol.max() <= 1


def test_image_smaller_than_crop_is_a_clear_error():
    from matgen_core.errors import MatgenInputError

    with pytest.raises(MatgenInputError, match="at least 32 px"):
        tiny_trainer([blobs(20)])


def test_weight_average_is_used_for_sampling_and_checkpointed():
    tr = tiny_trainer([blobs(64)], ema_decay=0.9)
    before = [p.clone() for p in tr.generator_ema.parameters()]
    tr.train_step(0)
    live = list(tr.generator.parameters())
    ema = list(tr.generator_ema.parameters())
    d = 2 / 11  # first update: warm-up decay (1 + 1) / (10 + 1) < 0.9
    for b, e, p in zip(before, ema, live):  # ema = d * before + (1 - d) * live
        assert torch.allclose(e, d * b + (1 - d) * p, atol=1e-6)
    assert tr.sampling_generator is tr.generator_ema
    # its BatchNorm statistics are re-estimated for the averaged weights, not the live ones
    bn_ema = [m for m in tr.generator_ema.modules() if isinstance(m, torch.nn.BatchNorm3d)][0]
    bn_live = [m for m in tr.generator.modules() if isinstance(m, torch.nn.BatchNorm3d)][0]
    assert not torch.allclose(bn_ema.running_mean, bn_live.running_mean)
    state = tr.state_dict()
    other = tiny_trainer(None, ema_decay=0.9)
    other.load_state_dict(state)
    assert np.array_equal(other.sample((32, 32, 32), seed=2), tr.sample((32, 32, 32), seed=2))
    assert tiny_trainer(None, ema_decay=0.0).generator_ema is None


def test_weight_averaged_generators_statistics_come_from_enough_volumes():
    """The BatchNorm statistics of the network that makes volumes are an estimate whose error
    every volume shares: with EMA_STATISTICS_VOLUMES volumes it is closer to a many-volume
    reference than with the 8 used before; a checkpoint saved with another count is estimated
    again on load (same volumes as a fresh estimate)."""
    from matgen_core.models.slicegan import EMA_STATISTICS_VOLUMES

    torch.manual_seed(0)
    tr = tiny_trainer([blobs(64)], ema_decay=0.9)
    tr.train_step(0)
    norms = [m for m in tr.generator_ema.modules() if isinstance(m, torch.nn.BatchNorm3d)]

    def estimate(volumes):
        tr._refresh_ema_statistics(volumes)
        return torch.cat([torch.cat([m.running_mean, m.running_var]) for m in norms])

    reference = estimate(1024)
    error_8 = (estimate(8) - reference).abs().mean()
    error_n = (estimate(EMA_STATISTICS_VOLUMES) - reference).abs().mean()
    assert EMA_STATISTICS_VOLUMES >= 64 and error_n < 0.6 * error_8, (error_n, error_8)
    state = tr.state_dict()
    assert int(state["ema_statistics_volumes"]) == EMA_STATISTICS_VOLUMES
    fresh = tr.sample((32, 32, 32), seed=4)
    old = {k: v for k, v in state.items() if k != "ema_statistics_volumes"}  # a pre-stop-37 file
    old["generator_ema"] = {k: (v + 0.5 if "running_mean" in k else v) for k, v in state["generator_ema"].items()}
    other = tiny_trainer(None, ema_decay=0.9)
    other.load_state_dict(old)
    assert np.allclose(other.sample((32, 32, 32), seed=4), fresh, atol=1e-5)
    other.load_state_dict({**old, "ema_statistics_volumes": state["ema_statistics_volumes"]})
    assert not np.allclose(other.sample((32, 32, 32), seed=4), fresh, atol=1e-3)  # stored ones used


def test_resuming_uses_the_configs_learning_rate_with_the_saved_adam_moments():
    tr = tiny_trainer([blobs(64)], lr_g=1e-3, lr_d=1e-3)
    tr.train_step(0)
    other = tiny_trainer(None, lr_g=1e-4, lr_d=2e-4)
    other.load_state_dict(tr.state_dict())
    assert [g["lr"] for g in other.opt_g.param_groups] == [1e-4]
    assert {g["lr"] for g in other.opt_d.param_groups} == {2e-4}
    saved = next(iter(tr.opt_g.state.values()))["exp_avg"]
    assert torch.equal(next(iter(other.opt_g.state.values()))["exp_avg"], saved)


@pytest.mark.parametrize("k,s,p", [(4, 2, 2), (4, 2, 3), (6, 3, 3), (6, 2, 4)])
def test_subpixel_form_equals_conv_transpose3d(k, s, p):
    torch.manual_seed(0)
    x, w, b = torch.randn(2, 5, 7, 6, 5), torch.randn(5, 3, k, k, k), torch.randn(3)
    ref = F.conv_transpose3d(x, w, b, stride=s, padding=p)
    out = subpixel_conv_transpose3d(x, w, s, p, b)
    assert out.shape == ref.shape and torch.allclose(out, ref, atol=1e-4)


@pytest.mark.parametrize("p", [2, 3])
def test_resize_layer_is_nearest_upsampling_then_a_3x3x3_convolution(p):
    """gen_upsample=resize: the transposed convolution with the ResizeKernel weight computes
    nearest-neighbour upsampling by 2 and a 3x3x3 convolution (padding 2 - p, i.e. p = 3 crops
    one voxel a side), and the stored 3x3x3 kernel is recovered from the 4x4x4 weight."""
    torch.manual_seed(0)
    kernel = torch.randn(5, 3, 3, 3, 3, dtype=torch.float64)  # (C_in, C_out, 3, 3, 3)
    x = torch.randn(2, 5, 6, 7, 5, dtype=torch.float64)
    weight = ResizeKernel()(kernel)
    out = F.conv_transpose3d(x, weight, stride=2, padding=p)
    ref = F.conv3d(F.interpolate(x, scale_factor=2, mode="nearest"), kernel.transpose(0, 1))
    ref = ref if p == 2 else ref[:, :, 1:-1, 1:-1, 1:-1]
    assert out.shape == ref.shape and torch.allclose(out, ref, atol=1e-10)
    assert torch.allclose(ResizeKernel().right_inverse(weight), kernel, atol=1e-10)


def _random_generator(kind="nphase", n_phases=3, upsample="transposed") -> torch.nn.Module:
    """A tiny generator with random weights and random BatchNorm statistics and affine terms."""
    cfg = {**PRESETS["quick"], **TINY_SLICEGAN, "kind": kind, "n_phases": n_phases, "num_images": 1,
           "gen_upsample": upsample}
    g = SliceGANTrainer.create(cfg, None, torch.device("cpu")).generator
    with torch.no_grad():
        for bn in g.norms:
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.3, 0.3)
    return g


def test_resize_generator_cannot_imprint_its_stride_on_a_uniform_latent():
    """The 32-voxel lattice's first cause: a free 4x4x4 kernel weighs even and odd output voxels
    differently, so a uniform latent gives a volume that varies with the position modulo the
    stride. With gen_upsample=resize every layer maps uniform to uniform."""
    torch.manual_seed(1)
    z = torch.full((1, TINY_SLICEGAN["nz"], 3, 3, 3), 0.7)
    with torch.no_grad():
        free = _random_generator(upsample="transposed").eval()(z)[0, 1]
        resize = _random_generator(upsample="resize").eval()(z)[0, 1]
    assert free.shape == resize.shape == (32, 32, 32)
    assert float(free.max() - free.min()) > 1e-3  # the check can fail: the free kernel modulates
    assert float(resize.max() - resize.min()) < 1e-5


@pytest.mark.parametrize("kind,n_phases,upsample", [("nphase", 3, "transposed"), ("gray", 0, "transposed"),
                                                    ("nphase", 3, "resize")])
def test_fast_generator_equals_module_by_module_pass(kind, n_phases, upsample):
    """Folded BatchNorm (eval) and the sub-pixel last layer compute the textbook network."""
    torch.manual_seed(0)
    g = _random_generator(kind, n_phases, upsample)
    z = torch.randn(2, TINY_SLICEGAN["nz"], 3, 4, 5)
    g.eval()
    with torch.no_grad():
        assert torch.allclose(g(z), g.forward_plain(z), atol=1e-5)
    g.train().double()  # training: float64, so that float32 rounding (amplified by BatchNorm's
    z = z.double()      # backward pass) cannot hide a wrong gradient
    a = g(z)
    grad_a = torch.autograd.grad(a.square().sum(), list(g.parameters()))
    b = g.forward_plain(z)
    grad_b = torch.autograd.grad(b.square().sum(), list(g.parameters()))
    assert torch.allclose(a, b, atol=1e-10)
    assert all((x - y).abs().max() <= 1e-9 * x.abs().max() for x, y in zip(grad_a, grad_b))


def test_batched_critic_losses_equal_one_call_per_direction():
    torch.manual_seed(0)
    critic = Critic(2, [8, 16], [4, 4, 4], [2, 2, 2], [1, 1, 0])
    reals = [torch.rand(6, 2, 16, 16) for _ in range(3)]
    fakes = [torch.rand(10, 2, 16, 16) for _ in range(3)]
    alpha = torch.rand(18)
    batched = critic_losses(critic, reals, fakes, 10.0, alpha=alpha)
    grads = torch.autograd.grad(batched["loss"].sum(), list(critic.parameters()))
    separate = []
    for d in range(3):
        gp = gradient_penalty(critic, reals[d], fakes[d], alpha=alpha[6 * d:6 * d + 6])
        separate.append(critic(fakes[d]).mean() - critic(reals[d]).mean() + 10.0 * gp)
    separate = torch.stack(separate)
    grads_sep = torch.autograd.grad(separate.sum(), list(critic.parameters()))
    assert torch.allclose(batched["loss"], separate, atol=1e-5)
    assert all((x - y).abs().max() <= 1e-4 * x.abs().max() for x, y in zip(grads, grads_sep))


def test_generator_update_leaves_critic_gradients_alone():
    cfg = {**PRESETS["quick"], **TINY_SLICEGAN, "kind": "nphase", "n_phases": 2, "num_images": 1}
    tr = SliceGANTrainer.create(cfg, [blobs(64)], torch.device("cpu"))
    seen = []
    step = tr.opt_d.step

    def record(*a, **k):
        seen.append([p.grad.clone() for p in tr.critics.parameters()])
        return step(*a, **k)

    tr.opt_d.step = record
    tr.train_step(0)
    after = [p.grad for p in tr.critics.parameters()]
    assert all(torch.equal(x, y) for x, y in zip(seen[-1], after)), "no critic weight gradients in G step"
    assert all(p.requires_grad for p in tr.critics.parameters())


# --- presets: frozen data; the published v1.1 training schedule -------------------------------

def test_presets_are_frozen_and_described():
    from matgen_core.models import presets
    assert presets("slicegan") is PRESETS
    for name, preset in PRESETS.items():
        assert isinstance(preset.get("description"), str) and 20 < len(preset["description"]) < 200, name
        assert "conditional" in preset and "fraction_range" in preset
        with pytest.raises(TypeError):
            preset["lr_g"] = 1.0  # read-only mapping
        assert all(not isinstance(v, (list, dict)) for v in preset.values()), "no mutable values"
    with pytest.raises(TypeError):
        PRESETS["mine"] = {}


def _count_updates(tr):
    """Patch ``tr`` to count critic optimiser steps and record the generator's batch sizes."""
    counts = {"critic_steps": 0, "gen_batches": []}
    step = tr.opt_d.step

    def counted(*a, **k):
        counts["critic_steps"] += 1
        return step(*a, **k)

    tr.opt_d.step = counted
    tr.generator.register_forward_hook(lambda m, i, o: counts["gen_batches"].append(o.shape[0]))
    return counts


def test_paper_takes_one_critic_step_per_direction_and_a_32_volume_generator_batch():
    # the published schedule on tiny networks: 5 critic iterations x 3 directions = 15 critic
    # optimiser steps per generator step; the generator's update uses gen_batch_size volumes
    small = {k: TINY_SLICEGAN[k] for k in ("lz", "img_size", "nz", "gen_channels", "critic_channels",
                                             "critic_kernels", "critic_strides", "critic_paddings")}
    assert PRESETS["paper"]["critic_step_per_direction"] and PRESETS["paper"]["critic_iters"] == 5
    assert PRESETS["paper"]["gen_batch_size"] == 32 and PRESETS["paper"]["batch_size"] == 8
    tr = tiny_trainer([blobs(64)], **{**PRESETS["paper"], **small, "real_batch": 4, "critic_slices": 2,
                                      "batch_size": 2, "gen_batch_size": 5})
    counts = _count_updates(tr)
    losses = tr.train_step(0)
    assert counts["critic_steps"] == 15
    # 5 critic iterations make 2 volumes each (one batch for all 3 directions), then 5 for G
    assert counts["gen_batches"] == [2] * 5 + [5]
    assert all(np.isfinite(v) for v in losses.values())


def test_quick_takes_one_critic_step_per_iteration_on_the_summed_loss():
    tr = tiny_trainer([blobs(64)], critic_iters=2)
    assert not tr.config["critic_step_per_direction"]
    counts = _count_updates(tr)
    tr.train_step(0)
    assert counts["critic_steps"] == 2
    assert counts["gen_batches"] == [tr.config["batch_size"]] * 3  # gen_batch_size None: same batch


def test_per_direction_steps_move_the_critic_three_times():
    # the first per-direction update changes the critic before the next direction is scored
    torch.manual_seed(0)
    tr = tiny_trainer([blobs(64)], critic_iters=1, critic_step_per_direction=True)
    seen = []
    step = tr.opt_d.step

    def record(*a, **k):
        out = step(*a, **k)
        seen.append([p.detach().clone() for p in tr.critics.parameters()])
        return out

    tr.opt_d.step = record
    tr.train_step(0)
    assert len(seen) == 3
    assert all(not torch.equal(a[0], b[0]) for a, b in zip(seen, seen[1:]))


def test_one_autocast_helper_for_training_and_tiling():
    from matgen_core import tiling
    from matgen_core.models import slicegan
    assert tiling.autocast is slicegan.autocast
    assert isinstance(slicegan.autocast("cpu", "bf16"), torch.autocast)
    assert not isinstance(slicegan.autocast("cpu", "fp32"), torch.autocast)


@pytest.mark.parametrize("name", ["quick", "standard", "paper"])
def test_every_preset_builds_a_consistent_trainer(name):
    tr = tiny_trainer(None, **PRESETS[name])  # the preset's own networks, no data
    assert tr.train_size == PRESETS[name]["img_size"]
    assert tr.critics[0](torch.zeros(1, 2, tr.train_size, tr.train_size)).shape == (1,)


def test_dihedral_gives_each_crop_one_of_its_eight_orientations():
    from matgen_core.models.slicegan import dihedral
    x = torch.randn(64, 2, 5, 5)
    y = dihedral(x, torch.Generator().manual_seed(0))
    seen = set()
    for a, b in zip(x, y):
        options = [a, a.flip(1), a.flip(2), a.flip(1).flip(2)]
        options += [o.transpose(1, 2) for o in options]
        k = [i for i, o in enumerate(options) if torch.equal(o, b)]
        assert k, "output is not a symmetry of its input"
        seen.add(k[0])
    assert len(seen) == 8


def test_augment_dihedral_only_in_isotropic_runs():
    tr = tiny_trainer([blobs(64)], augment_dihedral=True, real_batch=64)
    torch.manual_seed(5)
    plain = tr.samplers[1].sample(64)
    torch.manual_seed(5)
    crops = tr._real(1, None)  # the same crops, each in a random orientation
    assert crops.shape == plain.shape and not torch.equal(crops, plain)
    assert torch.allclose(crops.sum(dim=(2, 3)), plain.sum(dim=(2, 3)))
    for setting in ("augment_dihedral", "symmetrize_real"):
        tr3 = tiny_trainer([blobs(64, seed=1), blobs(64, seed=2), blobs(64, seed=3)], num_images=3,
                           **{setting: True})
        torch.manual_seed(5)
        plain = tr3.samplers[1].sample(4)
        torch.manual_seed(5)
        assert torch.equal(tr3._real(1, None), plain), f"anisotropic runs keep the image orientation ({setting})"


def test_symmetrize_real_orients_the_real_crops_and_leaves_the_fake_slices_as_generated():
    # an image of stripes along its rows: its boundary density is all along the columns' axis
    stripes = np.zeros((64, 64), np.uint8)
    stripes[::4] = 1
    stripes[1::4] = 1
    tr = tiny_trainer([stripes], symmetrize_real=True, real_batch=64)
    torch.manual_seed(5)
    plain = tr.samplers[0].sample(64)
    torch.manual_seed(5)
    crops = tr._real(0, None)
    turned = [not torch.equal(c, p) for c, p in zip(crops, plain)]
    assert 10 < sum(turned) < 64  # each crop one of the 8 orientations
    fake = torch.rand(3, 2, 16, 16)
    assert torch.equal(tr._oriented(fake, 0), fake), "fake slices keep their orientation"
    # the statistic targets are the image's averaged over both of its axes, the same for Z, Y, X
    with_loss = tiny_trainer([stripes], symmetrize_real=True, interface_weight=10.0)
    target = with_loss.statistic_losses["interface"][2]
    assert torch.allclose(target, target[0].expand_as(target)) and target[0, 1] > 0.2
    fixed = tiny_trainer([stripes], interface_weight=10.0).statistic_losses["interface"][2]
    assert not torch.allclose(fixed, fixed[0].expand_as(fixed))  # without it, rows and columns differ


def test_config_picks_the_trainer_class_and_conditional_checkpoints_keep_their_layout(tmp_path):
    """``conditional`` in the config selects ConditionalSliceGANTrainer (through create, as
    train.build_trainer and config_check build trainers); plain SliceGAN carries none of it; a
    conditional checkpoint keeps the layout it had before the class was split out, and resumes."""
    from matgen_core.models import trainer_class
    from matgen_core.models.conditional import ConditionalGenerator
    from matgen_core.models.slicegan_conditional import ConditionalSliceGANTrainer
    from matgen_core.protocol import VolumeTrainer

    plain = tiny_trainer([blobs(64)], ema_decay=0.9)
    assert type(plain) is SliceGANTrainer and not plain.conditional
    assert type(plain.generator) is Generator and isinstance(plain, VolumeTrainer)
    assert "fraction_center" not in plain.state_dict()
    with pytest.raises(ValueError, match="not conditional"):
        plain.latent((32, 32, 32), fractions=[0.5, 0.5])
    cfg = {**PRESETS["quick"], **TINY_SLICEGAN, "kind": "nphase", "n_phases": 2, "num_images": 1,
           "conditional": True, "fraction_range": 0.1, "ema_decay": 0.9}
    built = trainer_class("slicegan").create(cfg, None, torch.device("cpu"))
    assert type(built) is ConditionalSliceGANTrainer and built.conditional
    assert type(built.generator) is ConditionalGenerator and isinstance(built, VolumeTrainer)
    assert type(trainer_class("slicegan").create({**cfg, "conditional": False}, None,
                                                 torch.device("cpu"))) is SliceGANTrainer

    cond = tiny_trainer([blobs(64, fraction=0.35)], conditional=True, ema_decay=0.9)
    torch.manual_seed(0)
    cond.train_step(1)
    state = cond.state_dict()
    # the checkpoint layout of the single-class trainer (before the split), key order included,
    # with the count of volumes behind the averaged generator's statistics (stop 37)
    assert list(state) == ["generator", "critics", "opt_g", "opt_d", "generator_ema", "ema_updates",
                           "ema_statistics_volumes", "fraction_center"]
    center = state["fraction_center"]
    assert center.dtype == torch.float32 and center.shape == (2,) and abs(float(center[1]) - 0.35) < 0.02
    torch.save({"state": state, "step": 1}, tmp_path / "latest.pt")
    saved = torch.load(tmp_path / "latest.pt", weights_only=True)["state"]
    # resumed on another image: the checkpoint's centre (not the new image's fractions) is kept
    resumed = tiny_trainer([blobs(64, fraction=0.5)], conditional=True, ema_decay=0.9)
    resumed.load_state_dict(saved)
    assert torch.equal(resumed.fraction_center, center)
    for t in (None, [0.6, 0.4]):
        assert np.array_equal(resumed.sample((32, 32, 32), seed=4, fractions=t),
                              cond.sample((32, 32, 32), seed=4, fractions=t))
    assert resumed.train_step(2)["fraction_error"] > 0
    sampling_only = tiny_trainer(None, conditional=True, ema_decay=0.9)
    sampling_only.load_state_dict({k: saved[k] for k in ("generator", "generator_ema", "fraction_center")})
    assert np.array_equal(sampling_only.sample((32, 32, 32), seed=4), cond.sample((32, 32, 32), seed=4))
    with pytest.raises(RuntimeError):  # a plain trainer does not take conditional weights
        tiny_trainer(None, ema_decay=0.9).load_state_dict(saved)


def test_conditional_run_resumes_as_conditional(tmp_path):
    from matgen_core import runs, train
    from matgen_core.io import Micrograph
    from matgen_core.models.slicegan_conditional import ConditionalSliceGANTrainer

    labels = blobs(64, fraction=0.35)
    mg = Micrograph(labels=labels, image=labels.astype(np.float32), kind="nphase", phase_values=[0, 1],
                    voxel_size=None, unit="px", source="img.png")
    run = runs.create_run(tmp_path / "run", "slicegan", [mg], preset="quick",
                          overrides={**TINY_SLICEGAN, "conditional": True}, seed=1)
    train.train(run, steps=1, preview_every=0)
    assert type(train.build_trainer(run, device="cpu", with_data=False)) is ConditionalSliceGANTrainer
    assert train.train(run, steps=2, preview_every=0)["step"] == 2
    assert [r["step"] for r in runs.read_losses(run)] == [1, 2]


def test_stationarity_loss_finds_a_plane_modulation_and_pushes_against_it():
    tr = tiny_trainer([blobs(64)], stationarity_weight=2.0)
    side = tr.train_size
    wave = 0.1 * torch.sin(2 * torch.pi * torch.arange(side) / side).view(1, side, 1)  # along Y
    gen = torch.Generator().manual_seed(0)
    for _ in range(30):  # noisy batches that all share the same modulation of phase 1 along Y
        p1 = (0.5 + wave + 0.2 * torch.randn(2, side, side, side, generator=gen)).clamp(0, 1)
        fake = torch.stack([1 - p1, p1], dim=1).requires_grad_(True)
        loss, largest = tr._stationarity_loss(fake)
    assert 0.07 < largest < 0.13, largest  # the running estimate recovers the 0.1 amplitude
    loss.backward()
    grad_y = fake.grad[:, 1].sum(dim=(0, 1, 3))  # gradient on phase 1, per Y plane
    high, low = side // 4, 3 * side // 4  # where the wave is +0.1 and -0.1
    assert grad_y[high] > 0 > grad_y[low], "descending the loss must flatten the profile"
    grad_z = fake.grad[:, 1].sum(dim=(0, 2, 3))
    assert grad_z.abs().max() < 0.1 * grad_y.abs().max(), "along Z (no modulation) only noise"
    off = tiny_trainer([blobs(64)])
    assert off._stationarity_loss(fake) == (0.0, 0.0)


def test_volume_fraction_loss_pushes_only_the_spread_beyond_the_expected_one():
    tr = tiny_trainer([blobs(64)], volume_fraction_weight=100.0)
    t = float(tr.target_fractions[1])
    side = tr.train_size
    gen = torch.Generator().manual_seed(0)
    for _ in range(20):  # volumes whose phase-1 fraction is off by +-0.15 around the target
        shift = torch.tensor([0.15, -0.15]).view(2, 1, 1, 1)
        p1 = (t + shift + 0.05 * torch.randn(2, side, side, side, generator=gen)).clamp(0, 1)
        fake = torch.stack([1 - p1, p1], dim=1).requires_grad_(True)
        loss, spread = tr._volume_fraction_loss(fake)
    assert 0.18 < spread < 0.24, spread  # sqrt(2 phases * 0.15^2) = 0.21
    loss.backward()
    grad = fake.grad[:, 1].sum(dim=(1, 2, 3))
    assert grad[0] > 0 > grad[1], "descending the loss moves each volume towards the target"
    tr.expected_spread = 1.0  # a material that varies more than that: nothing to push
    tr._spread_average, tr._spread_steps = 0.0, 0
    loss, _ = tr._volume_fraction_loss(fake)
    assert loss.item() == 0.0
    assert tiny_trainer([blobs(64)])._volume_fraction_loss(fake) == (0.0, 0.0)


def test_axial_s2_of_a_volume_equals_the_image_s2_of_its_slices():
    from matgen_core.models.slicegan_s2 import axial_s2, image_s2, s2_targets
    rng = np.random.default_rng(0)
    labels = (rng.random((24, 20, 22)) < 0.4).astype(np.int64)
    labels[:, :, ::4] = 1  # a structure along X only: the axes differ
    vol = F.one_hot(torch.from_numpy(labels), 2).permute(3, 0, 1, 2)[None].float()
    s2 = axial_s2(vol, 5).numpy()  # (axis, phase, lag)
    z_slice = labels[7]  # rows = Y, columns = X
    # one Z slice's S2 along its columns' axis is the volume's along X restricted to that slice
    direct = np.mean([(z_slice[:, :-r] * z_slice[:, r:]).mean() for r in [3]])
    assert np.isclose(image_s2(z_slice, 2, 5)[1, 1, 2], direct)
    whole_x = np.mean([image_s2(labels[z], 2, 5)[1] for z in range(24)], axis=0)
    assert np.allclose(s2[2], whole_x, atol=1e-6)
    # lag 2 along X joins a stripe plane to a random one: less correlated than along Y (0.28 vs 0.37)
    assert s2[2, 1, 1] < s2[1, 1, 1] - 0.05
    # targets: a Z-slice image's columns are X, rows are Y; Y slices (rows Z, columns X); X slices
    # (rows Z, columns Y). With one image and no orientation augmentation, X is a column twice.
    img = labels[:, :, 0]  # any 2D image with unequal axes
    per = image_s2(img, 2, 5)
    t = s2_targets([img], [0, 0, 0], 2, 5, isotropic_orientation=False)
    assert np.allclose(t[0], per[0]) and np.allclose(t[2], per[1])
    assert np.allclose(t[1], per.mean(0))
    assert np.allclose(s2_targets([img], [0, 0, 0], 2, 5, True), per.mean(0))


def test_s2_loss_pulls_the_volume_towards_the_target_correlation():
    from matgen_core.models.slicegan_s2 import axial_s2, s2_loss
    tr = tiny_trainer([blobs(64)], s2_weight=10.0)
    _, _, target = tr.statistic_losses["s2"]
    assert target.shape == (3, 2, tr.train_size // 2)
    assert tiny_trainer([blobs(64)], interface_weight=0).statistic_losses == {}  # both off
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 2, 16, 16, 16, generator=gen).requires_grad_(True)  # white noise
    opt = torch.optim.Adam([logits], lr=0.05)
    first = None
    for _ in range(150):
        opt.zero_grad()
        loss, _ = s2_loss(torch.softmax(logits * 4, 1), target[:, :, :8], 10.0)
        first = first if first is not None else loss.item()
        loss.backward()
        opt.step()
    assert loss.item() < 0.2 * first, (first, loss.item())
    # white noise has no correlation (covariance at lag 1 ~0); the fit makes neighbours
    # correlate, on the way to the blobs' covariance (0.07 after 150 steps vs 0.196)
    p = torch.softmax(logits.detach() * 4, 1)
    fitted = axial_s2(p, 8)[:, 1, 0].mean() - p[:, 1].mean() ** 2
    assert fitted > 0.25 * (target[:, 1, 0].mean() - tr.target_fractions[1] ** 2)
    # and a training step with the loss on runs and reports its gap
    losses = tr.train_step(0)
    assert np.isfinite(losses["s2_gap"])


def test_boundary_density_gives_the_face_counted_surface_area():
    from matgen_core.metrics import surface_area
    from matgen_core.metrics import boundary_density
    from matgen_core.models.slicegan_s2 import axial_boundaries, interface_targets
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, (12, 14, 16))
    labels[:, :, ::2] = 0  # stripes along X: the axes differ
    vol = F.one_hot(torch.from_numpy(labels), 3).permute(3, 0, 1, 2)[None].float()
    b = axial_boundaries(vol).numpy()  # (axis, phase)
    assert np.allclose(b, boundary_density(labels, 3))
    pairs = np.array([labels.size * (n - 1) / n for n in labels.shape])
    area = surface_area(labels, 3)["per_phase"]
    assert np.allclose((2 / 3) * (b * pairs[:, None]).sum(0) / labels.size, area)
    z_slice = labels[5]
    assert np.isclose(boundary_density(z_slice, 3)[1, 2],
                      ((z_slice[:, :-1] == 2) != (z_slice[:, 1:] == 2)).mean())
    # one image, no orientation augmentation: X is an image column twice, Z a row twice
    per = boundary_density(z_slice, 3)
    t = interface_targets([z_slice], [0, 0, 0], 3, isotropic_orientation=False)
    assert np.allclose(t[0], per[0]) and np.allclose(t[2], per[1]) and np.allclose(t[1], per.mean(0))


def test_interface_loss_smooths_a_rough_volume_towards_the_images_surface_area():
    # under isotropy the image's boundary density along rows and columns gives the 3D surface
    # area; a field smoothed by a small learnable convolution (a stand-in generator) starts
    # near white noise, ~7x too rough
    from matgen_core.metrics import surface_area
    from matgen_core.models.slicegan_s2 import interface_loss
    tr = tiny_trainer([blobs(64)], interface_weight=10.0, interface_start=0)
    assert set(tr.statistic_losses) == {"interface"}
    _, weight, target = tr.statistic_losses["interface"]
    assert target.shape == (3, 2)
    n = 24
    expected = (2 / 3) * target[:, 1].sum().item() * (n - 1) / n  # phase 1's, per voxel

    torch.manual_seed(0)
    noise = torch.randn(1, 1, n + 6, n + 6, n + 6)
    field = torch.nn.Conv3d(1, 2, 7)

    def area():
        return surface_area(field(noise).detach().argmax(1)[0].numpy(), 2)["per_phase"][1]

    before = area()
    opt = torch.optim.Adam(field.parameters(), lr=0.05)
    gaps = []
    for _ in range(150):
        opt.zero_grad()
        loss, gap = interface_loss(torch.softmax(field(noise), 1), target, weight)
        loss.backward()
        opt.step()
        gaps.append(gap)
    after = area()
    assert before > 5 * expected and after < 2 * expected, (before, after, expected)
    assert gaps[-1] < 0.2 * gaps[0]
    assert tr.train_step(0)["interface_gap"] > 0
    late = tiny_trainer([blobs(64)], interface_weight=10.0, interface_start=3)
    assert late.train_step(2)["interface_gap"] == 0.0 and late.train_step(3)["interface_gap"] > 0


def test_interface_loss_leaves_a_phase_without_boundaries_in_its_image_to_the_critic():
    # an anisotropic trio can show a phase along one axis only: its target there is 0 and has no
    # relative gap; the loss must stay finite and keep pulling the other entries
    from matgen_core.models.slicegan_s2 import interface_loss
    target = torch.tensor([[0.2, 0.2, 0.0], [0.1, 0.1, 0.05], [0.1, 0.1, 0.05]])
    fake = torch.softmax(torch.randn(2, 3, 8, 8, 8, requires_grad=True), 1)
    loss, gap = interface_loss(fake, target, 1.0)
    assert torch.isfinite(loss) and 0 < gap < 50
    loss.backward()
    unknown_only = interface_loss(fake.detach(), torch.tensor([[0.0] * 3] * 3), 1.0)
    assert unknown_only[0].item() == 0.0 and unknown_only[1] == 0.0


def test_opening_share_removes_parts_narrower_than_the_square_in_the_planes_it_is_asked_for():
    from matgen_core.models.slicegan_s2 import opening_loss, opening_targets, plane_openings
    image = np.zeros((32, 32), np.uint8)
    image[4:11, 4:11] = 1   # a 7 x 7 particle: survives 3, 5 and 7 px squares
    image[20, 2:30] = 1     # a 1 px line of 28: removed by all three
    image[24:27, 2:30] = 1  # a 3 px band of 84: survives 3 px only
    share = opening_targets([image], [0, 0, 0], 2)
    assert share.shape == (3, 2, 3)
    np.testing.assert_allclose(share[0, 1], [(49 + 84) / 161, 49 / 161, 49 / 161])
    assert (share == share[0]).all()  # one isotropic image: the same target for every plane
    # a volume that repeats the image 16 times along Z: the planes normal to Z are the image, and
    # so are those normal to X as far as widths go (the line is 1 px along Y, the band 3 px); in
    # the planes normal to Y every part is 16 px along Z and 7-28 px along X: nothing is removed
    volume = torch.tensor(np.repeat(image[None], 16, 0)).long()
    one_hot = torch.nn.functional.one_hot(volume, 2).movedim(-1, 0).float()[None]
    np.testing.assert_allclose(plane_openings(one_hot, 0)[1].numpy(), share[0, 1], rtol=1e-6)
    np.testing.assert_allclose(plane_openings(one_hot, 2)[1].numpy(), share[0, 1], rtol=1e-6)
    np.testing.assert_allclose(plane_openings(one_hot, 1)[1].numpy(), 1.0)

    # the loss: the measured share, and a gradient that thickens what the opening removes (the
    # ring of pixels around the line gains phase 1; the particle's far inside is untouched)
    logits = (one_hot * 8 - 4).requires_grad_(True)
    target = torch.tensor(np.broadcast_to(np.array([[0.0] * 3, [0.9] * 3]), (3, 2, 3)).copy()).float()
    loss, gap = opening_loss(torch.softmax(logits, 1), target, 10.0, step=3)  # planes normal to Z, 5 px
    assert gap == pytest.approx(0.9 - 49 / 161, abs=1e-5)
    loss.backward()
    push = -logits.grad[0, 1, 8]  # descent direction for phase 1 in one Z plane
    assert push[19, 15] > 0 and push[21, 15] > 0  # beside the line
    assert push[7, 7] == 0  # inside the particle
    assert opening_loss(torch.softmax(logits, 1), target * 0, 10.0, step=0)[0].item() == 0.0
    tr = tiny_trainer([blobs(64)], opening_weight=100.0, interface_start=2)
    assert "opening" in tr.statistic_losses
    assert tr.train_step(1)["opening_gap"] == 0.0 and tr.train_step(2)["opening_gap"] > 0


def test_isotropy_targets_count_the_image_pairs_at_offsets_of_the_same_length():
    from matgen_core.models.slicegan_s2 import OBLIQUE_FAMILIES, isotropy_targets, offset_family
    assert len(offset_family((1, 1, 0))) == 6 and len(offset_family((2, 1, 0))) == 12
    assert len(offset_family((2, 2, 1))) == 12 and offset_family((3, 0)) == [(0, 3), (3, 0)]
    for base3, base2 in OBLIQUE_FAMILIES.items():  # the same length
        assert sum(a * a for a in base3) == sum(a * a for a in base2)
    img = np.random.default_rng(0).integers(0, 3, (20, 23))
    t = isotropy_targets(img, 3)
    assert t.shape == (3, 3)
    # (3, 0) family, phase 2, counted directly: rows 3 apart and columns 3 apart
    k = img == 2
    rows, cols = (k[:-3] != k[3:]).mean(), (k[:, :-3] != k[:, 3:]).mean()
    assert np.isclose(t[2, 2], (rows + cols) / 2)
    # (1, 1) family: both diagonals
    diag, anti = (k[:-1, :-1] != k[1:, 1:]).mean(), (k[:-1, 1:] != k[1:, :-1]).mean()
    assert np.isclose(t[0, 2], (diag + anti) / 2)


def test_isotropy_measure_agrees_on_an_isotropic_truth_and_flags_a_cubic_one():
    # under isotropy the boundary density at a 3D offset equals a 2D section's at the same
    # length; a volume of axis-aligned cubes (a cubic anisotropy) breaks it at (2, 2, 1)
    from matgen_core.models.slicegan_s2 import OBLIQUE_FAMILIES, isotropy_targets, offset_boundaries, offset_family
    from matgen_core.synthetic import thresholded_grf

    def ratios(vol):
        one_hot = F.one_hot(torch.from_numpy(vol).long(), 2).permute(3, 0, 1, 2)[None].double()
        in_3d = np.stack([offset_boundaries(one_hot, offset_family(b)).numpy() for b in OBLIQUE_FAMILIES])
        in_2d = np.mean([isotropy_targets(vol[z], 2) for z in range(0, vol.shape[0], 4)], axis=0)
        return in_3d[:, 1] / in_2d[:, 1]

    grf = thresholded_grf((48, 48, 48), fractions=(0.6, 0.4), correlation_length=4.0, seed=3)
    assert np.allclose(ratios(grf), 1, atol=0.03), ratios(grf)
    cubes = np.kron(np.random.default_rng(1).random((12, 12, 12)) < 0.4, np.ones((4, 4, 4), int))
    r = ratios(cubes)
    assert abs(r[0] - 1) < 0.03 and r[2] > 1.05, r  # (1, 1, 0) lies in a section; (2, 2, 1) does not
    # a 3D training volume gives its own 3D values
    t3 = isotropy_targets(grf, 2)
    g = F.one_hot(torch.from_numpy(grf).long(), 2).permute(3, 0, 1, 2)[None].double()
    assert np.allclose(t3[2], offset_boundaries(g, offset_family((2, 2, 1))).numpy())


def test_isotropy_loss_trains_and_needs_one_image():
    from matgen_core.models.slicegan_s2 import OBLIQUE_FAMILIES, isotropy_loss, offset_boundaries, offset_family
    tr = tiny_trainer([blobs(64)], isotropy_weight=10.0, interface_start=2)
    _, weight, target = tr.statistic_losses["isotropy"]
    assert target.shape == (3, 2) and weight == 10.0
    # a rough field (a small learnable convolution of noise, a stand-in generator) is pulled
    # toward the image's oblique boundary densities on every offset, though each step sees one
    # offset of each family
    torch.manual_seed(0)
    noise = torch.randn(1, 1, 26, 26, 26)
    field = torch.nn.Conv3d(1, 2, 7)

    def worst_gap():  # over all 30 offsets
        hard = F.one_hot(field(noise).argmax(1), 2).permute(0, 4, 1, 2, 3).float()
        b = torch.stack([offset_boundaries(hard, offset_family(f)) for f in OBLIQUE_FAMILIES])
        return (b / target - 1).abs().max().item()

    before = worst_gap()
    opt = torch.optim.Adam(field.parameters(), lr=0.05)
    for _ in range(150):
        opt.zero_grad()
        loss, _ = isotropy_loss(torch.softmax(field(noise), 1), target, weight)
        loss.backward()
        opt.step()
    assert worst_gap() < 0.25 * before, (before, worst_gap())
    # from interface_start on, a training step reports the gap
    assert tr.train_step(1)["isotropy_gap"] == 0.0 and tr.train_step(2)["isotropy_gap"] > 0
    with pytest.raises(MatgenInputError, match="isotropy_weight"):
        tiny_trainer([blobs(64, seed=1), blobs(64, seed=2)], num_images=2, isotropy_weight=1.0)


def test_euler_loss_counts_pieces_minus_holes_and_its_gradient_is_the_flip_change():
    from skimage.measure import euler_number
    from matgen_core.models.slicegan_s2 import euler_loss, euler_targets, plane_euler_density
    rng = np.random.default_rng(3)
    for _ in range(3):  # a phase clear of the plane's edge: the blocks add up to its Euler number
        image = (rng.random((30, 40)) < 0.5).astype(np.uint8)
        image[[0, -1]] = 0
        image[:, [0, -1]] = 0
        per_pixel = euler_targets([image], [0, 0, 0], 2)
        assert per_pixel.shape == (3, 2) and (per_pixel == per_pixel[0]).all()
        assert per_pixel[0, 1] * 29 * 39 == pytest.approx(euler_number(image.astype(bool), connectivity=2))

    # two 3 x 3 particles one pixel apart, and a ring: Euler number 2 + 0 in every Z plane
    image = np.zeros((16, 16), np.uint8)
    image[2:5, 2:5] = image[2:5, 6:9] = 1
    image[9:14, 9:14] = 1
    image[11, 11] = 0
    volume = torch.tensor(np.repeat(image[None], 4, 0)).long()
    one_hot = F.one_hot(volume, 2).movedim(-1, 0).float()[None]
    assert plane_euler_density(one_hot, 0)[1].item() * 15 * 15 == pytest.approx(2.0)
    # in the planes normal to X the particles are bands 4 px long along Z: pieces, no holes
    logits = (one_hot * 8 - 4).requires_grad_(True)
    target = torch.tensor([[0.0, 2.0 / 225]] * 3)  # phase 0 left to the critic
    loss, gap = euler_loss(torch.softmax(logits, 1), target, 1.0, step=0)
    assert gap == pytest.approx(0.0, abs=1e-5) and loss.item() == pytest.approx(0.0, abs=1e-8)
    # a target of fewer pieces: the steepest descent joins the two particles (the pixel between
    # them gains phase 1: one piece less) and keeps the ring's hole open (filling it adds one);
    # the same softmax slope everywhere, so the pushes are the flips' changes in Euler number,
    # -1 and +1, to scale. Far from the phase's edge there is no push (a speck would add one
    # there too, and everywhere at once: a push on the fraction, not on the shape)
    loss, gap = euler_loss(torch.softmax(logits, 1), target / 2, 1.0, step=0)
    assert gap == pytest.approx(1.0, abs=1e-4)
    loss.backward()
    push = -logits.grad[0, 1, 1]  # descent direction for phase 1 in one Z plane
    assert push[3, 5] > 0  # the pixel between the particles
    assert push[11, 11].item() == pytest.approx(-push[3, 5].item(), rel=1e-4)  # the ring's hole
    assert push[7, 7] == 0 and push[3, 3] == 0  # far from the edge, outside and inside
    assert push[1, 3].item() == pytest.approx(0.0, abs=1e-9)  # on a particle's edge: changes nothing
    tr = tiny_trainer([blobs(64)], euler_weight=100.0, interface_start=2)
    assert "euler" in tr.statistic_losses
    assert tr.train_step(1)["euler_gap"] == 0.0 and tr.train_step(2)["euler_gap"] > 0


def test_corner_loss_counts_corner_only_contacts_and_closes_them():
    from matgen_core.models.slicegan_s2 import corner_loss, corner_targets, plane_corner_contacts
    rng = np.random.default_rng(4)
    image = (rng.random((30, 40)) < 0.4).astype(np.uint8)
    a, b, c, d = image[:-1, :-1], image[:-1, 1:], image[1:, :-1], image[1:, 1:]
    for phase in (0, 1):  # brute force: blocks holding exactly one diagonal of the phase
        on = [x == phase for x in (a, b, c, d)]
        count = ((on[0] & on[3] & ~on[1] & ~on[2]) | (on[1] & on[2] & ~on[0] & ~on[3])).sum()
        assert corner_targets([image], [0, 0, 0], 2)[1, phase] * 29 * 39 == pytest.approx(count)

    # two 3 x 3 particles touching at one corner, in every Z plane; in the other orientations
    # they are bands that share an edge or none
    image = np.zeros((12, 12), np.uint8)
    image[2:5, 2:5] = image[5:8, 5:8] = 1
    volume = torch.tensor(np.repeat(image[None], 4, 0)).long()
    one_hot = F.one_hot(volume, 2).movedim(-1, 0).float()[None]
    assert plane_corner_contacts(one_hot, 0)[1].item() * 11 * 11 == pytest.approx(1.0)
    assert plane_corner_contacts(one_hot, 1)[1].item() == 0 and plane_corner_contacts(one_hot, 2)[1].item() == 0
    logits = (one_hot * 8 - 4).requires_grad_(True)
    per_block = 1.0 / (11 * 11)  # one contact in each plane of 11 x 11 blocks
    target = torch.tensor([[1.0, per_block / 3]] * 3)  # phase 0: far below its target, no penalty
    loss, excess = corner_loss(torch.softmax(logits, 1), target, 1.0, step=0)
    assert excess == pytest.approx(2.0, rel=1e-3) and loss.item() == pytest.approx(4.0, rel=1e-3)
    loss.backward()
    push = -logits.grad[0, 1, 1]  # descent direction for phase 1 in one Z plane
    assert push[4, 5] > 0 and push[5, 4] > 0  # either pixel off the diagonal joins the pair
    assert push[4, 4] < 0 and push[5, 5] < 0  # either pixel of the pair parts it
    # the same amount each way: no push on the phase's fraction as a whole
    assert push.sum().item() == pytest.approx(0.0, abs=1e-3 * push.abs().max().item())  # float32 softmax
    assert push[0, 0] == 0 and push[9, 9] == 0 and push[3, 3] == 0
    # a deficit is not penalised
    loss, excess = corner_loss(torch.softmax(logits, 1), target * 10, 1.0, step=0)
    assert loss.item() == 0 and excess == 0
    tr = tiny_trainer([blobs(64)], corner_weight=1.0, interface_start=2)
    assert "corner" in tr.statistic_losses
    assert tr.train_step(1)["corner_gap"] == 0.0 and "corner_gap" in tr.train_step(2)
