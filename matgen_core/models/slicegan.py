"""SliceGAN: a 3D generator trained from 2D images by a 2D critic that sees every slice.

Kench & Cooper (2021), "Generating 3D structures from a 2D slice with GAN-based dimensionality
expansion". The generator is fully convolutional: a latent of shape (B, nz, lz, lz, lz) becomes a
volume of side 32 * (lz - 2) voxels (five stride-2 transposed convolutions). The critic is 2D; each
generated volume is cut into slices along Z, Y and X and each slice is scored against random crops
of the training image(s). Training is WGAN-GP.

Everything the model needs is in this file: the networks, the presets, and ``SliceGANTrainer``
(the Trainer protocol of docs/architecture.md) that the shared driver in ``train.py`` runs.

Shapes: volumes are (B, C, Z, Y, X); slices are (N, C, H, W); C is one channel per phase for
n-phase data (softmax output), 1 for grayscale and 3 for colour (0.5 * (tanh + 1) output).
"""
from __future__ import annotations

import contextlib
import copy
from types import MappingProxyType

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data import CropSampler, decode, encode, n_channels
from ..errors import MatgenInputError
from ..preview import to_display

# ---------------------------------------------------------------------------------------------
# Presets: frozen data (read-only mappings, tuples); every key can be overridden per run
# (runs.create_run copies the preset into the run's config.json). ``description`` is one line for
# the app's Train page. Keys beyond the networks and optimiser:
#   critic_step_per_direction: True = one critic optimiser step per slicing direction (published
#       v1.1: 3 x critic_iters critic updates per generator step); False = one step on the loss
#       summed over the directions (critic_iters updates per generator step).
#   gen_batch_size: fake volumes in the generator's update (None = batch_size, the critic's).
#   critic_slices: slices per volume and direction shown to the critic (None = all of them).
#   augment_dihedral: real crops in random orientations (transpose, flips) in isotropic runs.
#   conditional, fraction_range: conditional SliceGAN (docs/fractions.md).
# ---------------------------------------------------------------------------------------------
def _frozen(**values) -> MappingProxyType:
    return MappingProxyType({k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


# "paper" = SliceGAN v1.1 (Kench & Cooper 2021, the paper release): same networks, optimiser,
# batch sizes and schedule: per critic iteration one set of 8 fake volumes, then one Adam step
# per slicing direction with 32 real crops and all 64 slices of each volume (gradient penalty on
# the first 32 pairs), 5 critic iterations per generator step (15 critic updates), a generator
# update on 32 fresh volumes, 5,400 generator steps. Known differences, none in the maths: real
# crops are drawn at random on the fly (v1.1 pre-builds 900 x 32 random crops an epoch), and the
# first generator update comes after 5 critic iterations (v1.1: after the first one).
_PAPER = dict(
    description="The published SliceGAN v1.1 recipe (64^3 volumes, 5,400 generator steps): "
                "hours on a GPU, not for CPUs.",
    nz=16, lz=4, img_size=64,
    gen_channels=[256, 256, 128, 64], gen_kernels=[4, 4, 4, 4, 4], gen_strides=[2, 2, 2, 2, 2],
    gen_paddings=[2, 2, 2, 2, 3],
    critic_channels=[64, 128, 256, 512], critic_kernels=[4, 4, 4, 4, 4],
    critic_strides=[2, 2, 2, 2, 2], critic_paddings=[1, 1, 1, 1, 0],
    lr_g=1e-4, lr_d=1e-4, betas=[0.0, 0.9], batch_size=8, gen_batch_size=32, real_batch=32,
    critic_iters=5, critic_step_per_direction=True,
    gp_lambda=10.0, critic_slices=None, fraction_weight=0.0, precision="fp32", steps=5400,
    ema_decay=0.0, conditional=False, fraction_range=0.1, augment_dihedral=False,
)
_QUICK = dict(
    description="Small network for a 2-core CPU, about 10 CPU minutes: a first look. Fractions, "
                "S2 and surface area come close; 3D connectivity (tortuosity) is not reliable.",
    # 32^3 training volumes and 32 px crops (features up to ~15 px), narrow networks, a few
    # random slices per volume, faster optimiser settings, a density loss toward the training
    # image's phase fractions, and a weight-averaged generator for sampling. About 6x cheaper
    # a step than the published 64^3 geometry. 1500 steps: ~0.38 CPU s a step measured with one
    # thread (bench/fidelity_experiments.py), i.e. ~10 CPU minutes.
    nz=16, lz=3, img_size=32,
    gen_channels=[64, 64, 32, 16], gen_kernels=[4, 4, 4, 4, 4], gen_strides=[2, 2, 2, 2, 2],
    gen_paddings=[2, 2, 2, 2, 3],
    critic_channels=[32, 64, 128], critic_kernels=[4, 4, 4, 4],
    critic_strides=[2, 2, 2, 2], critic_paddings=[1, 1, 1, 0],
    lr_g=1e-3, lr_d=1e-3, betas=[0.5, 0.9], batch_size=4, gen_batch_size=None, real_batch=16,
    critic_iters=2, critic_step_per_direction=False,
    gp_lambda=10.0, critic_slices=8, fraction_weight=10.0, precision="fp32", steps=1500,
    ema_decay=0.98, conditional=False, fraction_range=0.1, augment_dihedral=False,
)
_STANDARD = dict(
    _QUICK,
    description="The published 64 px window with narrow networks, about 40 CPU minutes, for "
                "features over ~15 px. Not yet shown to give simulation-grade tortuosity.",
    # the published 64^3 geometry (lz 4, five critic layers) with quick's channel widths and
    # optimiser; 2 volumes a step, 16 random slices per volume and direction. ~1.9 CPU s a step
    # measured with one thread (bench/fidelity_experiments.py): 1200 steps ~ 38 CPU minutes.
    lz=4, img_size=64,
    critic_channels=[32, 64, 128, 256], critic_kernels=[4, 4, 4, 4, 4],
    critic_strides=[2, 2, 2, 2, 2], critic_paddings=[1, 1, 1, 1, 0],
    batch_size=2, critic_slices=16, steps=1200,
)
PRESETS = MappingProxyType({"quick": _frozen(**_QUICK), "standard": _frozen(**_STANDARD),
                            "paper": _frozen(**_PAPER)})
del _PAPER, _QUICK, _STANDARD


# --- conditional SliceGAN: config defaults (docs/fractions.md) -------------------------------
# conditional: target phase fractions enter the generator as constant latent channels;
# fraction_range: targets are sampled within +- this many (fraction units) of the training image's
# (both keys are in every preset above).
DEFAULT_CONDITIONAL_FRACTION_WEIGHT = 10.0  # density-loss weight when fraction_weight is 0
FRACTION_TEMPERATURE = 0.1  # conditional density loss: sharpened probabilities, close to argmax


def sample_targets(center: torch.Tensor, radius: float, batch: int,
                   generator: torch.Generator | None = None, floor: float = 0.0) -> torch.Tensor:
    """``batch`` random target fraction vectors within ``radius`` of ``center``, on the simplex.

    Each target is ``center + d`` with ``|d_k| <= radius``, ``sum(d) == 0`` and every fraction in
    [floor, 1]: the first n-1 offsets are uniform in [-radius, radius] and the last makes the sum
    zero; draws that break a bound are redrawn (rejection sampling, so the accepted targets are
    uniform over the allowed region; for 2 phases, uniform in [f - r, f + r]).
    """
    center = center.detach().cpu().double()
    n = center.numel()
    out = []
    need = batch
    for _ in range(200):
        d = (torch.rand(4 * need + 8, n - 1, generator=generator, dtype=torch.float64) * 2 - 1) * radius
        d = torch.cat([d, -d.sum(1, keepdim=True)], dim=1)
        t = center + d
        ok = (d[:, -1].abs() <= radius + 1e-12) & (t >= floor).all(1) & (t <= 1).all(1)
        out.append(t[ok][:need])
        need -= int(out[-1].shape[0])
        if need <= 0:
            break
    t = torch.cat(out) if out else center[None].repeat(0, 1)
    if len(t) < batch:  # (practically never) fill with the centre
        t = torch.cat([t, center[None].repeat(batch - len(t), 1)])
    return t[:batch].float()
# --- end conditional SliceGAN defaults ---------------------------------------------------------


def check_uid(kernels, strides, paddings) -> None:
    """Raise ValueError unless every transposed convolution obeys uniform information density.

    The rule (Kench & Cooper 2021): stride < kernel, kernel divisible by stride, and
    padding >= kernel - stride. Then every output voxel is made the same way, so a bigger latent
    gives a bigger volume of the same quality, with no edge artefacts, and tiles are exact.
    """
    for i, (k, s, p) in enumerate(zip(kernels, strides, paddings)):
        if not (s < k and k % s == 0 and p >= k - s):
            raise ValueError(
                f"generator layer {i} (kernel {k}, stride {s}, padding {p}) breaks uniform "
                f"information density: need stride < kernel, kernel % stride == 0, "
                f"padding >= kernel - stride")


def output_size(lz: int, kernels, strides, paddings) -> int:
    """Side of the generated volume for latent side ``lz`` (transposed-conv arithmetic)."""
    size = lz
    for k, s, p in zip(kernels, strides, paddings):
        size = (size - 1) * s - 2 * p + k
    return size


def periodic_stride(config: dict) -> int:
    """Volume sides that can be periodic are multiples of this (the product of the generator's
    strides): a latent of period P makes a volume of period P times it."""
    return int(np.prod(config["gen_strides"]))


def periodic_sizes(size: int, stride: int = 32) -> tuple[int, int]:
    """The valid periodic sides nearest to ``size``: (the largest multiple of ``stride`` below it,
    0 when there is none; the smallest at or above it)."""
    size = int(size)
    return size // stride * stride, -(-size // stride) * stride


def latent_size_for(size: int, kernels, strides, paddings) -> int:
    """Smallest latent side whose volume side is at least ``size`` voxels."""
    lz = 1
    while output_size(lz, kernels, strides, paddings) < size:
        lz += 1
    return lz


def subpixel_conv_transpose3d(x: torch.Tensor, weight: torch.Tensor, stride: int, padding: int,
                              bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.conv_transpose3d(x, weight, bias, stride, padding)`` computed as a plain convolution.

    A transposed convolution whose kernel ``k`` is a multiple of its stride ``s`` (uniform
    information density) is, for each of the ``s^3`` output phases (o mod s per axis), an ordinary
    convolution of kernel ``k / s`` over the input. So it equals one ``conv3d`` with
    ``C_out * s^3`` output channels followed by a 3D pixel shuffle and a crop of
    ``padding - (k - s)`` voxels. Same result up to float rounding, and ~4x faster on CPU
    (oneDNN) when ``C_out`` is small, as in the generator's last layer (C_out = phases).
    ``weight``: (C_in, C_out, k, k, k), as ``nn.ConvTranspose3d.weight``. Needs padding >= k - s.
    """
    c_in, c_out, k = weight.shape[0], weight.shape[1], weight.shape[2]
    s, t = int(stride), weight.shape[2] // int(stride)
    crop = int(padding) - (k - s)
    # taps[r][tau]: the kernel index that output phase r applies to window position tau
    taps = torch.tensor([[r + s * (t - 1 - tau) for tau in range(t)] for r in range(s)], device=weight.device)
    w = weight[:, :, taps][:, :, :, :, taps][..., taps]  # (Cin, Cout, rz, tz, ry, ty, rx, tx)
    w = w.permute(1, 2, 4, 6, 0, 3, 5, 7).reshape(c_out * s ** 3, c_in, t, t, t)
    y = F.conv3d(x, w)
    b, _, nz, ny, nx = y.shape
    y = y.view(b, c_out, s, s, s, nz, ny, nx).permute(0, 1, 5, 2, 6, 3, 7, 4)
    y = y.reshape(b, c_out, s * nz, s * ny, s * nx)
    out = [output_size(n, [k], [s], [int(padding)]) for n in x.shape[2:]]
    y = y[:, :, crop:crop + out[0], crop:crop + out[1], crop:crop + out[2]]
    return y if bias is None else y + bias.view(1, -1, 1, 1, 1)


SUBPIXEL_MAX_CHANNELS = 8  # layers with at most this many output channels use the conv form


class Generator(nn.Module):
    """3D generator: ConvTranspose3d stack, BatchNorm + ReLU between, softmax or tanh output.

    Speed (same function, same parameters): the narrow last layer runs as a sub-pixel convolution
    (:func:`subpixel_conv_transpose3d`), and in eval mode each BatchNorm is folded into the
    convolution before it (one pass over the activations less per layer, ReLU in place).
    ``forward_plain`` is the textbook module-by-module pass, kept as the benchmarks' baseline.
    """

    def __init__(self, nz, channels, kernels, strides, paddings, out_channels, kind):
        super().__init__()
        check_uid(kernels, strides, paddings)
        widths = [nz, *channels, out_channels]
        self.convs = nn.ModuleList(
            nn.ConvTranspose3d(widths[i], widths[i + 1], kernels[i], strides[i], paddings[i], bias=False)
            for i in range(len(widths) - 1))
        self.norms = nn.ModuleList(nn.BatchNorm3d(w) for w in widths[1:-1])
        self.kind = kind

    def _conv(self, i: int, x: torch.Tensor, norm: nn.BatchNorm3d | None = None) -> torch.Tensor:
        """Layer ``i``'s transposed convolution, with ``norm`` (eval statistics) folded in."""
        conv = self.convs[i]
        weight, bias = conv.weight, None
        if norm is not None:
            scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
            weight = weight * scale.view(1, -1, 1, 1, 1)
            bias = norm.bias - norm.running_mean * scale
        if conv.out_channels <= SUBPIXEL_MAX_CHANNELS:
            return subpixel_conv_transpose3d(x, weight, conv.stride[0], conv.padding[0], bias)
        return F.conv_transpose3d(x, weight, bias, conv.stride, conv.padding)

    def _output(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Last layer's logits ``x`` -> phase probabilities or values (``z``: the latent)."""
        x = x.float()
        if self.kind == "nphase":
            return torch.softmax(x, dim=1)
        return 0.5 * (torch.tanh(x) + 1.0)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = z
        fold = not self.training  # eval: BatchNorm uses fixed statistics, fold it into the conv
        for i, norm in enumerate(self.norms):
            if fold:
                x = F.relu_(self._conv(i, x, norm))
            else:
                x = F.relu(norm(self._conv(i, x)))
        return self._output(self._conv(len(self.convs) - 1, x), z)

    def forward_plain(self, z: torch.Tensor) -> torch.Tensor:
        """The same network module by module (ConvTranspose3d, BatchNorm3d, ReLU): the reference."""
        x = z
        for conv, norm in zip(self.convs[:-1], self.norms):
            x = F.relu(norm(conv(x)))
        return self._output(self.convs[-1](x), z)


# --- conditional SliceGAN generator (docs/fractions.md) -----------------------------------------
class ConditionalGenerator(Generator):
    """Generator whose latent's last ``n_cond`` channels are a constant condition code.

    The code enters *after* each hidden layer's normalisation, as a learned per-channel shift
    (``cond_shift``, zero at initialisation: a conditional BatchNorm shift), so morphology can
    follow the target at every scale; and it shifts the output logits through a learned linear
    map (``cond_logits``), a direct path for the phase fractions. After normalisation, because
    BatchNorm in training mode removes a batch's mean code (its volumes have different targets)
    while sampling uses fixed statistics: a code before it is seen differently in training and
    in use (measured: 11-13 pp off at the training fractions). The code channels of the latent are
    kept (the same latent shape for tiling) but zeroed at the input. Everything is the same at
    every voxel, so the network stays fully convolutional, exact and tileable. Checkpoints made
    before ``cond_shift`` existed load with the code at the input, as they were trained.
    """

    def __init__(self, nz, n_cond, channels, kernels, strides, paddings, out_channels, kind):
        super().__init__(nz + n_cond, channels, kernels, strides, paddings, out_channels, kind)
        self.n_cond = n_cond
        self.cond_logits = nn.Linear(n_cond, out_channels, bias=False)
        nn.init.zeros_(self.cond_logits.weight)
        self.cond_shift = nn.ModuleList(nn.Linear(n_cond, w, bias=False) for w in channels)
        for lin in self.cond_shift:
            nn.init.zeros_(lin.weight)
        self.code_at_input = False

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        code = z[:, -self.n_cond:, 0, 0, 0].float()
        x = z if self.code_at_input else torch.cat([z[:, :-self.n_cond], torch.zeros_like(z[:, -self.n_cond:])], 1)
        fold = not self.training
        for i, norm in enumerate(self.norms):
            shift = self.cond_shift[i](code)[:, :, None, None, None]
            if fold:
                x = F.relu_(self._conv(i, x, norm) + shift.to(x.dtype))
            else:
                x = F.relu(norm(self._conv(i, x)) + shift.to(x.dtype))
        return self._output(self._conv(len(self.convs) - 1, x), z)

    def _output(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        code = z[:, -self.n_cond:, 0, 0, 0].float()
        return torch.softmax(x.float() + self.cond_logits(code)[:, :, None, None, None], dim=1)

    def load_state_dict(self, state_dict, strict: bool = True, assign: bool = False):
        state_dict = dict(state_dict)
        legacy = not any(k.startswith("cond_shift.") for k in state_dict)
        for k, v in self.state_dict().items():
            if k.startswith("cond_shift.") and k not in state_dict:
                state_dict[k] = torch.zeros_like(v)
        self.code_at_input = legacy
        return super().load_state_dict(state_dict, strict=strict, assign=assign)
# --- end conditional SliceGAN generator ---------------------------------------------------------


class Critic(nn.Module):
    """2D critic: Conv2d stack with ReLU, no normalisation, one score per slice."""

    def __init__(self, in_channels, channels, kernels, strides, paddings):
        super().__init__()
        widths = [in_channels, *channels, 1]
        self.convs = nn.ModuleList(
            nn.Conv2d(widths[i], widths[i + 1], kernels[i], strides[i], paddings[i], bias=False)
            for i in range(len(widths) - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs[:-1]:
            x = F.relu(conv(x))
        return self.convs[-1](x).float().flatten(1).mean(1)


def slices(volumes: torch.Tensor, axis: int, count: int | None = None,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Cut volumes (B, C, Z, Y, X) into 2D slices perpendicular to ``axis`` (0=Z, 1=Y, 2=X).

    Returns (B * n, C, h, w): all slices (``count`` None) or ``count`` random ones per volume.
    """
    b, c = volumes.shape[:2]
    moved = volumes.movedim(2 + axis, 1)  # (B, L, C, h, w)
    if count is not None and count < moved.shape[1]:
        idx = torch.stack([torch.randperm(moved.shape[1], generator=generator)[:count] for _ in range(b)])
        moved = moved[torch.arange(b)[:, None], idx.to(moved.device)]
    return moved.reshape(-1, c, *moved.shape[-2:]).contiguous(memory_format=torch.channels_last)


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor, groups: int = 1,
                     alpha: torch.Tensor | None = None) -> torch.Tensor:
    """WGAN-GP penalty: mean (||grad D(x_hat)|| - 1)^2 at random interpolates of real and fake.

    ``real`` and ``fake`` may each hold ``groups`` equal blocks (one per slicing direction),
    concatenated; the first ``min(len)`` samples of each block are paired, all blocks go through
    the critic in one batch, and the penalty of each block is returned, shape (groups,) (a scalar
    when ``groups`` is 1). ``alpha``: the interpolation weights, (groups * n,) (default uniform).
    """
    r = real.reshape(groups, -1, *real.shape[1:])
    f = fake.reshape(groups, -1, *fake.shape[1:])
    n = min(r.shape[1], f.shape[1])
    r, f = r[:, :n].flatten(0, 1), f[:, :n].flatten(0, 1)
    if alpha is None:
        alpha = torch.rand(groups * n, device=real.device)
    alpha = alpha.view(-1, 1, 1, 1)
    mixed = (alpha * r + (1 - alpha) * f).contiguous(memory_format=torch.channels_last).requires_grad_(True)
    score = critic(mixed)
    (grad,) = torch.autograd.grad(score.sum(), mixed, create_graph=True)
    penalty = ((grad.flatten(1).norm(dim=1) - 1) ** 2).view(groups, n).mean(1)
    return penalty[0] if groups == 1 else penalty


def critic_losses(critic: nn.Module, reals: list[torch.Tensor], fakes: list[torch.Tensor],
                  gp_lambda: float, alpha: torch.Tensor | None = None) -> dict:
    """WGAN-GP critic loss of each slicing direction that ``critic`` judges, in two critic calls.

    ``reals[d]`` / ``fakes[d]``: real crops and fake slices (N, C, H, W) of direction d (equal N
    across directions). Real and fake samples of every direction go through the critic as one
    batch, the penalty's interpolates as another. Returns tensors of shape (directions,):
    ``loss`` = mean D(fake) - mean D(real) + gp_lambda * penalty, and ``d_real``, ``d_fake``,
    ``penalty``; the same values as separate calls per direction and kind.
    """
    k = len(reals)
    batch = torch.cat(reals + fakes)  # one copy; real and fake are views of it
    n_real = sum(len(r) for r in reals)
    real, fake = batch[:n_real], batch[n_real:]
    scores = critic(batch)
    d_real = scores[:n_real].view(k, -1).mean(1)
    d_fake = scores[n_real:].view(k, -1).mean(1)
    penalty = gradient_penalty(critic, real, fake, groups=k, alpha=alpha).view(k)
    return {"loss": d_fake - d_real + gp_lambda * penalty, "d_real": d_real, "d_fake": d_fake,
            "penalty": penalty}


def dihedral(crops: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each crop (N, C, H, W) in one of the 8 orientations of the square (random transpose and
    flips): for an isotropic material the training image's own orientation carries no meaning,
    and without this the axis that is a row in one slicing direction and a column in another (Y)
    must fit two different in-plane orientations (augment_dihedral, isotropic runs only)."""
    flips = torch.randint(0, 2, (3, crops.shape[0]), generator=generator).bool()
    out = torch.where(flips[0, :, None, None, None], crops.transpose(2, 3), crops)
    out = torch.where(flips[1, :, None, None, None], out.flip(2), out)
    return torch.where(flips[2, :, None, None, None], out.flip(3), out)


def direction_images(num_images: int) -> list[int]:
    """Which training image each slicing direction (Z, Y, X) is compared with.

    1 image: isotropic, all three. 2 images: the first for slices perpendicular to Z (the XY
    plane), the second for both side planes (transversely isotropic). 3 images: one per direction.
    """
    return {1: [0, 0, 0], 2: [0, 1, 1], 3: [0, 1, 2]}[num_images]


class SliceGANTrainer:
    """SliceGAN networks, optimisers and one training step (the Trainer protocol)."""

    name = "slicegan"
    loss_names = ("critic", "generator", "wasserstein", "gradient_penalty", "fraction_error")

    def __init__(self, config: dict, images: list[np.ndarray] | None, device: torch.device):
        self.config = config
        self.device = torch.device(device)
        c = config
        self.kind, self.n_phases = c["kind"], c.get("n_phases", 0)
        self.channels = n_channels(self.kind, self.n_phases)
        # conditional SliceGAN: n_phases extra constant latent channels carry the target fractions
        self.conditional = bool(c.get("conditional", False))
        self.fraction_range = float(c.get("fraction_range", 0.1))
        if self.conditional and (self.kind != "nphase" or not 0 < self.fraction_range < 1):
            raise MatgenInputError("conditional SliceGAN needs segmented (n-phase) data and "
                                   "0 < fraction_range < 1 (e.g. 0.1 for +-10 percentage points).")
        self.n_cond = self.n_phases if self.conditional else 0
        # the training image's fractions: centre of the conditioning range (kept in the state)
        self.fraction_center = torch.full((max(self.n_phases, 1),), 1.0 / max(self.n_phases, 1))
        if self.conditional:
            self.generator = ConditionalGenerator(
                c["nz"], self.n_cond, c["gen_channels"], c["gen_kernels"], c["gen_strides"],
                c["gen_paddings"], self.channels, self.kind).to(self.device)
        else:
            self.generator = Generator(c["nz"], c["gen_channels"], c["gen_kernels"], c["gen_strides"],
                                       c["gen_paddings"], self.channels, self.kind).to(self.device)
        # channels-last: CPU transposed 3D convolutions run ~5-9x faster in this layout (oneDNN)
        self.generator.to(memory_format=torch.channels_last_3d)
        self.direction_image = direction_images(c.get("num_images", 1))
        n_critics = max(self.direction_image) + 1
        self.critics = nn.ModuleList(
            Critic(self.channels, c["critic_channels"], c["critic_kernels"], c["critic_strides"],
                   c["critic_paddings"]) for _ in range(n_critics)).to(self.device)
        self.critics.to(memory_format=torch.channels_last)
        betas = tuple(c["betas"])
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=c["lr_g"], betas=betas)
        # exponential moving average of the generator's weights, used for sampling: it smooths
        # out the oscillation of GAN training at fast learning rates (0 = off, as published)
        self.ema_decay = float(c.get("ema_decay", 0.0))
        self.generator_ema = copy.deepcopy(self.generator).eval() if self.ema_decay > 0 else None
        self.ema_updates = 0
        self.opt_d = torch.optim.Adam(self.critics.parameters(), lr=c["lr_d"], betas=betas)
        self.train_size = output_size(c["lz"], c["gen_kernels"], c["gen_strides"], c["gen_paddings"])
        if self.train_size != c["img_size"]:
            raise ValueError(f"generator makes {self.train_size}^3 volumes at lz={c['lz']} but "
                             f"img_size is {c['img_size']}; they must match")
        self.samplers = []
        if images is not None:
            encoded = [encode(im, self.kind, self.n_phases) for im in images]
            self.samplers = [CropSampler(e, c["img_size"], axis=d)
                             for d, e in ((d, encoded[self.direction_image[d]]) for d in range(3))]
            if self.kind == "nphase":  # target fractions: the training images' own
                fr = [np.bincount(np.asarray(im).ravel().astype(np.int64), minlength=self.n_phases)
                      for im in images]
                fr = np.sum([f / f.sum() for f in fr], axis=0) / len(fr)
                self.target_fractions = torch.tensor(fr, dtype=torch.float32, device=self.device)
                self.fraction_center = torch.tensor(fr, dtype=torch.float32)

    @classmethod
    def create(cls, config, images, device):
        return cls(config, images, device)

    # -- precision ----------------------------------------------------------------------------
    def _autocast(self):
        return autocast(self.device, self.config.get("precision", "fp32"))

    def _noise(self, batch: int, lz: int | tuple, generator=None) -> torch.Tensor:
        shape = (lz, lz, lz) if isinstance(lz, int) else tuple(lz)
        z = torch.randn(batch, self.config["nz"], *shape, generator=generator)
        return z.to(self.device).contiguous(memory_format=torch.channels_last_3d)

    # -- conditional SliceGAN helpers (docs/fractions.md) ---------------------------------------
    def _condition(self, z: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        """Append the target fractions to latent ``z`` as constant channels (conditional only).

        Channel k holds ``(target_k - training_k) / fraction_range`` (in [-1, 1] over the trained
        range) at every latent position, so the generator stays fully convolutional and every
        output voxel sees the same condition (uniform information density is kept).
        """
        if not self.conditional:
            return z
        if targets is None:
            targets = self.fraction_center[None].expand(z.shape[0], -1)
        code = (targets.float().cpu() - self.fraction_center[None]) / self.fraction_range
        code = code.to(z.device, z.dtype)[:, :, None, None, None].expand(-1, -1, *z.shape[2:])
        return torch.cat([z, code], dim=1).contiguous(memory_format=torch.channels_last_3d)

    def _refresh_targets(self, batch: int, generator: torch.Generator) -> torch.Tensor | None:
        """Targets for re-estimating the averaged generator's BatchNorm statistics: drawn over the
        trained range as in training (conditional only; None otherwise). Statistics estimated at
        the centre alone shift every off-centre activation: measured on a 600-step run, the
        generator alone then missed off-centre targets by ~7 pp instead of < 1 pp."""
        if not self.conditional:
            return None
        return sample_targets(self.fraction_center, self.fraction_range, batch, generator=generator)

    def _real_near(self, axis: int, targets: torch.Tensor, count: int) -> torch.Tensor:
        """``count`` real crops whose local phase fractions are near the batch's targets.

        A pool of 4x as many random crops is drawn; for each target an equal share of the batch
        is picked from the pool with weight exp(-|phi_crop - t|^2 / (2 s^2)), s = fraction_range/4,
        relative to the nearest crop (so a target beyond every crop's fraction gets the nearest
        crops). The real batch's fraction mix then follows the targets as far as the image allows.
        """
        pool = self.samplers[axis].sample(4 * count)
        phi = pool.mean(dim=(2, 3)).double()  # (P, C) local fractions (one-hot channels)
        d2 = ((phi[None] - targets.double()[:, None]) ** 2).sum(-1)  # (B, P)
        s = self.fraction_range / 4
        w = torch.exp(-(d2 - d2.min(1, keepdim=True).values) / (2 * s * s))
        per = -(-count // len(targets))
        idx = torch.multinomial(w, per, replacement=True).flatten()[:count]
        return pool[idx]
    # -- end conditional SliceGAN helpers --------------------------------------------------------

    # -- training -----------------------------------------------------------------------------
    def _targets(self, batch: int) -> torch.Tensor | None:
        """Per-volume target fractions for this step (conditional SliceGAN), else None."""
        if not self.conditional:
            return None
        self._init_fraction_path()
        return sample_targets(self.fraction_center, self.fraction_range, batch)

    @torch.no_grad()
    def _init_fraction_path(self) -> None:
        """Start the generator's direct fraction path at the right size (once, before step 1).

        Shifting phase k's logit by ``log(t_k / c_k)`` (c: training fractions) moves its share
        from about c_k to about t_k; to first order that is ``code_k * fraction_range / c_k``,
        so ``cond_logits`` starts as that diagonal map instead of zero and training refines it
        (the noise path then learns the morphology at each target). Only for a fresh network
        (all-zero map); a resumed or loaded one is left as it is.
        """
        nets = [self.generator] + ([self.generator_ema] if self.generator_ema is not None else [])
        if any(bool(net.cond_logits.weight.abs().sum() > 0) for net in nets):
            return
        weight = torch.diag(self.fraction_range / self.fraction_center.clamp_min(0.02))
        for net in nets:
            net.cond_logits.weight.copy_(weight.to(net.cond_logits.weight))

    def _real(self, axis: int, targets: torch.Tensor | None) -> torch.Tensor:
        """Real crops for slicing direction ``axis`` (near the targets when conditional)."""
        n = self.config["real_batch"]
        real = self.samplers[axis].sample(n) if targets is None else self._real_near(axis, targets, n)
        if self.config.get("augment_dihedral", False) and self.direction_image.count(self.direction_image[axis]) == 3:
            real = dihedral(real)
        return real.to(self.device).contiguous(memory_format=torch.channels_last)

    def _fraction_loss(self, fake: torch.Tensor, targets: torch.Tensor | None):
        """The original report's density loss and the largest fraction gap (0 when unused).

        Unconditional: the batch's mean soft fractions vs the training image's. Conditional: each
        volume's vs its own target, ``fraction_weight * mean_b sum_k (gap_bk^2 + sharp_gap_bk^2)``
        where ``sharp_gap`` uses the sharpened probabilities ``softmax(log p / T)``
        (T = ``FRACTION_TEMPERATURE``), a differentiable stand-in for the argmax labels that a
        volume is finally made of: the soft mean alone can meet the target while the labels miss
        it by several points. The logged gap (conditional) is the sharpened one: close to what
        the labels will show.
        """
        weight = self.config.get("fraction_weight", 0.0)
        if targets is not None:
            t = targets.to(self.device)
            p = fake.float()
            gap = p.mean(dim=(2, 3, 4)) - t  # (B, C)
            sharp = torch.softmax(torch.log(p.clamp_min(1e-12)) / FRACTION_TEMPERATURE, dim=1)
            sharp_gap = sharp.mean(dim=(2, 3, 4)) - t
            weight = weight or DEFAULT_CONDITIONAL_FRACTION_WEIGHT
            loss = weight * ((gap ** 2).sum(1) + (sharp_gap ** 2).sum(1)).mean()
            return loss, sharp_gap.abs().max(1).values.mean().item()
        if self.kind != "nphase" or weight <= 0:
            return 0.0, 0.0
        gap = fake.float().mean(dim=(0, 2, 3, 4)) - self.target_fractions
        return weight * (gap ** 2).sum(), gap.abs().max().item()

    def critic_groups(self) -> list[tuple[int, list[int]]]:
        """``(critic index, slicing directions it judges)``: one group for an isotropic run."""
        groups: dict[int, list[int]] = {}
        for axis, image in enumerate(self.direction_image):
            groups.setdefault(image, []).append(axis)
        return list(groups.items())

    def critic_updates_per_iteration(self) -> list[list[tuple[int, list[int]]]]:
        """The critic optimiser steps of one critic iteration, each a list of (critic, directions).

        ``critic_step_per_direction`` (the published v1.1 recipe): one step per slicing direction,
        so 3 x ``critic_iters`` critic updates per generator step. Otherwise one step on the loss
        summed over all directions and critics (``critic_iters`` updates per generator step).
        """
        groups = self.critic_groups()
        if self.config.get("critic_step_per_direction", False):
            return [[(index, [axis])] for index, axes in groups for axis in axes]
        return [groups]

    def train_step(self, step: int) -> dict:
        """One generator update after ``critic_iters`` critic iterations; returns the losses.

        The WGAN-GP of Kench & Cooper: per slicing direction, critic loss mean D(fake slices) -
        mean D(real crops) + lambda * gradient penalty, summed over the directions (or one
        optimiser step per direction: ``critic_step_per_direction``, as published); generator loss
        -sum of mean D(fake slices) of ``gen_batch_size`` fresh volumes (+ the density loss). Computed with as few, large critic
        calls as possible: the directions that share a critic (all three when isotropic) and the
        real and fake samples go through it in one batch, the penalty's interpolates in another;
        the critic's weights are frozen during the generator's update (its weight gradients would
        be thrown away). Same losses and gradients as one call per direction and kind, up to float
        rounding (bench/bench_train_speed.py compares the two).
        """
        c = self.config
        self.generator.train()
        count = c.get("critic_slices")
        bs, lz = c["batch_size"], c["lz"]
        gen_bs = c.get("gen_batch_size") or bs
        groups = self.critic_groups()
        updates = self.critic_updates_per_iteration()
        d_loss_total, wass_total, gp_total = 0.0, 0.0, 0.0
        for _ in range(c["critic_iters"]):
            targets = self._targets(bs)
            with torch.no_grad(), self._autocast():
                fake = self.generator(self._condition(self._noise(bs, lz), targets))
            d_loss_total, wass_total, gp_total = 0.0, 0.0, 0.0
            for update in updates:  # one optimiser step each (per direction in the v1.1 recipe)
                self.opt_d.zero_grad(set_to_none=True)
                loss = 0.0
                for index, axes in update:
                    reals = [self._real(axis, targets) for axis in axes]
                    fakes = [slices(fake, axis, count).float() for axis in axes]
                    with self._autocast():
                        parts = critic_losses(self.critics[index], reals, fakes, c["gp_lambda"])
                    loss = loss + parts["loss"].sum()
                    d_loss_total += parts["loss"].sum().item()
                    wass_total += (parts["d_real"] - parts["d_fake"]).sum().item()
                    gp_total += parts["penalty"].sum().item()
                loss.backward()
                self.opt_d.step()

        self.opt_g.zero_grad(set_to_none=True)
        targets = self._targets(gen_bs)
        self.critics.requires_grad_(False)
        try:
            with self._autocast():
                fake = self.generator(self._condition(self._noise(gen_bs, lz), targets))
            g_loss = 0.0
            for index, axes in groups:
                fake_slices = torch.cat([slices(fake, axis, count) for axis in axes])
                with self._autocast():
                    scores = self.critics[index](fake_slices)
                g_loss = g_loss - scores.view(len(axes), -1).mean(1).sum()
            frac_loss, frac_err = self._fraction_loss(fake, targets)
            g_loss = g_loss + frac_loss
            g_loss.backward()
        finally:
            self.critics.requires_grad_(True)
        self.opt_g.step()
        self._update_ema()
        return {"critic": d_loss_total / 3, "generator": g_loss.item(), "wasserstein": wass_total / 3,
                "gradient_penalty": gp_total / 3, "fraction_error": frac_err}

    @torch.no_grad()
    def _update_ema(self) -> None:
        if self.generator_ema is None:
            return
        # warm-up: average over ~n/10 recent updates early on, so the weights of the first,
        # fast-moving steps do not blur the average into a noise-independent texture
        self.ema_updates += 1
        decay = min(self.ema_decay, (1.0 + self.ema_updates) / (10.0 + self.ema_updates))
        for p_ema, p in zip(self.generator_ema.parameters(), self.generator.parameters()):
            p_ema.lerp_(p, 1.0 - decay)
        self._ema_stale = True

    @torch.no_grad()
    def _refresh_ema_statistics(self, batches: int = 4) -> None:
        """Re-estimate the averaged generator's BatchNorm statistics for its own weights.

        The live network's running statistics belong to the live weights; used with the averaged
        weights they would shift every activation. A few forward passes on fixed noise (its own
        random generator, so training randomness is untouched) give exact averages.
        """
        net, c = self.generator_ema, self.config
        norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the passes below
        net.train()
        rng = torch.Generator().manual_seed(1234)
        for _ in range(batches):
            z = self._noise(c["batch_size"], c["lz"], generator=rng)
            net(self._condition(z, self._refresh_targets(c["batch_size"], rng)))
        for m in norms:
            m.momentum = 0.1
        net.eval()
        self._ema_stale = False

    @property
    def sampling_generator(self) -> nn.Module:
        """The network that makes volumes: the weight average when ``ema_decay`` > 0."""
        if self.generator_ema is None:
            return self.generator
        if getattr(self, "_ema_stale", False):
            self._refresh_ema_statistics()
        return self.generator_ema

    # -- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        state = {"generator": self.generator.state_dict(), "critics": self.critics.state_dict(),
                 "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict()}
        if self.generator_ema is not None:
            state["generator_ema"] = self.sampling_generator.state_dict()
            state["ema_updates"] = torch.tensor(self.ema_updates)
        if self.conditional:  # conditional SliceGAN: the centre of the trained fraction range
            state["fraction_center"] = self.fraction_center.clone()
        return state

    def load_state_dict(self, state: dict) -> None:
        if self.conditional and "fraction_center" in state:
            self.fraction_center = state["fraction_center"].detach().float().cpu().clone()
        self.generator.load_state_dict(state["generator"])
        if self.generator_ema is not None:
            self.generator_ema.load_state_dict(state.get("generator_ema", state["generator"]))
            self.ema_updates = int(state.get("ema_updates", 0))
        if "critics" in state:
            self.critics.load_state_dict(state["critics"])
            self.opt_g.load_state_dict(state["opt_g"])
            self.opt_d.load_state_dict(state["opt_d"])

    # -- sampling -----------------------------------------------------------------------------
    def latent_shape(self, shape) -> tuple:
        c = self.config
        k, s, p = c["gen_kernels"], c["gen_strides"], c["gen_paddings"]
        return tuple(latent_size_for(n, k, s, p) for n in shape)

    def latent(self, shape, seed: int = 0, periodic=(False, False, False), fractions=None) -> torch.Tensor:
        """The seeded latent (1, nz [+ n_cond], lz...) that makes a volume of ``shape``.

        Along ``periodic`` axes the latent repeats with period ``size / S`` (``S`` = the product
        of the generator's strides, 32 in the presets): its last ``size / S`` planes are kept and
        the planes before them are copies, so the volume is exactly one period and tiles without
        a seam. That needs a periodic side to be a multiple of ``S``; other sizes raise
        MatgenInputError naming the nearest valid ones (see :func:`periodic_sizes`).
        A conditional model gets its condition channels (``fractions``, default the training's).
        Tiled generation (tiling.py) cuts this same latent into tiles.
        """
        shape = tuple(int(v) for v in shape)
        stride = periodic_stride(self.config)
        for axis, wrap in enumerate(periodic):
            if wrap and shape[axis] % stride:
                lo, hi = periodic_sizes(shape[axis], stride)
                near = f"{lo} or {hi}" if lo else f"{hi}"
                raise MatgenInputError(
                    f"A periodic volume needs sides that are multiples of {stride} voxels (the "
                    f"generator's total stride) along its periodic axes; axis {'ZYX'[axis]} is "
                    f"{shape[axis]}. Use {near} voxels, or drop that axis from --periodic.")
        rng = torch.Generator().manual_seed(int(seed))
        z = self._noise(1, self.latent_shape(shape), generator=rng)
        for axis, wrap in enumerate(periodic):
            if wrap:
                length, period = z.shape[2 + axis], shape[axis] // stride
                # keep the last `period` planes; plane i < length - period copies plane
                # i + k * period (the same plane of the next period), so the latent is periodic
                src = [length - period + (i - (length - period)) % period for i in range(length)]
                z = z.index_select(2 + axis, torch.as_tensor(src, device=z.device))
                z = z.contiguous(memory_format=torch.channels_last_3d)
        if self.conditional:
            t = None if fractions is None else torch.as_tensor(np.asarray(fractions, np.float32))[None]
            z = self._condition(z, t)
        return z

    @torch.inference_mode()
    def sample(self, shape, seed: int = 0, periodic=(False, False, False), fractions=None) -> np.ndarray:
        """Generate one volume of ``shape`` (Z, Y, X) voxels; returns float32 (C, Z, Y, X).

        The latent is the smallest that covers ``shape``; the volume is cropped to it. Along
        ``periodic`` axes the latent is periodic, so the volume tiles (sides: multiples of 32).
        ``fractions``: target phase fractions of a conditional model (default: the training
        image's); other models raise ValueError (use matgen_core.fractions to calibrate them).
        """
        if fractions is not None and not self.conditional:
            raise ValueError("this SliceGAN is not conditional; calibrate fractions with "
                             "matgen_core.fractions instead")
        z = self.latent(shape, seed, periodic, fractions)
        return self.sample_latent(z)[:, :shape[0], :shape[1], :shape[2]]

    @torch.inference_mode()
    def sample_latent(self, z: torch.Tensor) -> np.ndarray:
        """The sampling network's output for latent ``z`` (1, nz, lz...), float32 (C, Z, Y, X)."""
        net = self.sampling_generator
        was_training = net.training
        net.eval()
        try:
            with self._autocast():
                vol = net(z.to(self.device))[0].float()
        finally:
            net.train(was_training)
        return vol.cpu().numpy()

    def preview(self) -> np.ndarray:
        """Middle slices (Z, Y, X) of a fresh training-size volume side by side, uint8."""
        n = self.train_size
        vol = self.sample((n, n, n), seed=0)
        images = [np.take(vol, n // 2, axis=1 + a) for a in range(3)]
        tiles = [to_display(decode(im, self.kind), self.kind) for im in images]
        gap = np.full((n, 2) + tiles[0].shape[2:], 255, np.uint8)
        return np.concatenate([tiles[0], gap, tiles[1], gap, tiles[2]], axis=1)

    # -- protocol.Trainer: the networks and optimisers, named (distributed.py uses them) --------
    def modules(self) -> dict[str, nn.Module]:
        nets = {"generator": self.generator, "critics": self.critics}
        if self.generator_ema is not None:
            nets["generator_ema"] = self.generator_ema
        return nets

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt_g": self.opt_g, "opt_d": self.opt_d}


def autocast(device, precision: str | None):
    """The mixed-precision context for ``precision``: bf16 autocast on ``device``, else none.

    The one helper for SliceGAN training, sampling and tiled generation ("fp32" or None: no-op).
    """
    if precision == "bf16":
        return torch.autocast(torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = ["PRESETS", "autocast", "Generator", "subpixel_conv_transpose3d", "Critic", "SliceGANTrainer", "check_uid", "output_size",
           "latent_size_for", "periodic_stride", "periodic_sizes", "slices", "gradient_penalty", "critic_losses", "parameter_count", "sample_targets",
           "ConditionalGenerator"]
