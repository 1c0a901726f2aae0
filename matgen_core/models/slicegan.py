"""SliceGAN: a 3D generator trained from 2D images by a 2D critic that sees every slice.

Kench & Cooper (2021), "Generating 3D structures from a 2D slice with GAN-based dimensionality
expansion". The generator is fully convolutional: a latent of shape (B, nz, lz, lz, lz) becomes a
volume of side 32 * (lz - 2) voxels (five stride-2 transposed convolutions). The critic is 2D; each
generated volume is cut into slices along Z, Y and X and each slice is scored against random crops
of the training image(s). Training is WGAN-GP.

This module holds the losses and ``SliceGANTrainer`` (the Trainer protocol of
docs/architecture.md) that the shared driver in ``train.py`` runs; the networks and their size
arithmetic are in ``slicegan_networks``, the presets in ``slicegan_presets``, the sections
of volumes that the critics see in ``slicegan_sections``. The conditional
variant (target phase fractions as a condition) is ``ConditionalSliceGANTrainer`` in
``slicegan_conditional``, a subclass that overrides this trainer's hooks (``_make_generator``,
``_targets``, ``_condition``, ``_real_crops``, ``_fraction_loss``, ``latent``, the state);
``SliceGANTrainer.create`` picks it when ``config["conditional"]`` is set. Public names of the
network modules and ``conditional`` are re-exported here.

Shapes: volumes are (B, C, Z, Y, X); slices are (N, C, H, W); C is one channel per phase for
n-phase data (softmax output), 1 for grayscale and 3 for colour (0.5 * (tanh + 1) output).
"""
from __future__ import annotations

import contextlib
import copy

import numpy as np
import torch
import torch.nn as nn

from ..data import CropSampler, DiagonalCropSampler, decode, encode, image_fractions, n_channels
from ..metrics import expected_cube_variance
from ..errors import MatgenInputError
from ..preview import to_display
from .conditional import ConditionalGenerator, sample_targets
from .optimizer_state import load_optimizer
from .slicegan_networks import (
    Critic,
    Generator,
    check_uid,
    latent_size_for,
    output_size,
    periodic_sizes,
    periodic_stride,
    subpixel_conv_transpose3d,
)
from .slicegan_presets import PRESETS
from .slicegan_s2 import statistic_losses
from .slicegan_sections import DIAGONAL, diagonal_sections, dihedral, slices  # noqa: F401 (re-exported)

STATIONARITY_DECAY = 0.98  # running average of the plane-fraction profile (~50 generator steps)
SPREAD_DECAY = 0.98  # running average of the per-volume fraction spread (~50 generator steps)
# Volumes behind the averaged generator's BatchNorm statistics: their sampling error shifts every
# volume of a run (8 volumes: NMC fraction up to 5.5 pp apart between estimates; 64: ~0.4 pp)
EMA_STATISTICS_VOLUMES = 64


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


def direction_images(num_images: int) -> list[int]:
    """Which training image each slicing direction (Z, Y, X) is compared with.

    1 image: isotropic, all three. 2 images: the first for slices perpendicular to Z (the XY
    plane), the second for both side planes (transversely isotropic). 3 images: one per direction.
    """
    return {1: [0, 0, 0], 2: [0, 1, 1], 3: [0, 1, 2]}[num_images]


class SliceGANTrainer:
    """SliceGAN networks, optimisers and one training step (the Trainer protocol).

    Build it with :meth:`create`, which returns the conditional subclass for a conditional config.
    """

    name = "slicegan"
    loss_names = ("critic", "generator", "wasserstein", "gradient_penalty", "fraction_error")
    conditional = False  # protocol.VolumeTrainer: ConditionalSliceGANTrainer sets it

    def __init__(self, config: dict, images: list[np.ndarray] | None, device: torch.device):
        self.config = config
        self.device = torch.device(device)
        c = config
        self.kind, self.n_phases = c["kind"], c.get("n_phases", 0)
        self.channels = n_channels(self.kind, self.n_phases)
        self.generator = self._make_generator().to(self.device)
        # channels-last: CPU transposed 3D convolutions run ~5-9x faster in this layout (oneDNN)
        self.generator.to(memory_format=torch.channels_last_3d)
        self.direction_image = direction_images(c.get("num_images", 1))
        # augment_dihedral applies when one image serves all three directions (isotropic)
        self.orient_randomly = bool(c.get("augment_dihedral", False)) and len(set(self.direction_image)) == 1
        # symmetrize_real: the real crops alone in random orientations (isotropic runs only)
        self.symmetrize_real = bool(c.get("symmetrize_real", False)) and len(set(self.direction_image)) == 1
        # critic_diagonal: one more critic, for face-diagonal sections (isotropic runs only)
        self.diagonal = bool(c.get("critic_diagonal", False))
        for key in ("critic_diagonal", "isotropy_weight"):
            if c.get(key) and len(set(self.direction_image)) != 1:
                raise MatgenInputError(
                    f"{key} compares oblique sections or offsets with the training image, which "
                    f"assumes an isotropic material (one training image); with 2 or 3 images turn "
                    f"it off ({key}={'false' if key == 'critic_diagonal' else '0'}).")
        n_critics = max(self.direction_image) + 1 + self.diagonal
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
        self._profile_average, self._profile_steps = None, 0  # see _stationarity_loss
        self._spread_average, self._spread_steps = 0.0, 0  # see _volume_fraction_loss
        self.expected_spread = None  # see _volume_fraction_loss
        self.statistic_losses = {}  # name -> (loss function, weight, target); see slicegan_s2
        self.statistic_start = int(c.get("interface_start") or 0)  # of every statistic loss but S2
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
            if self.diagonal:  # samplers[DIAGONAL]
                self.samplers.append(DiagonalCropSampler(encoded[0], c["img_size"]))
            if self.kind == "nphase":  # target fractions: the training images' own
                self.target_fractions = self._tensor(image_fractions(images, self.n_phases))
                if c.get("volume_fraction_weight"):
                    self.expected_spread = float(expected_cube_variance(images, self.n_phases, self.train_size).sum())
                if not c.get("conditional"):  # the targets would vary per volume there
                    self.statistic_losses = {
                        name: (loss, weight, self._tensor(target)) for name, (loss, weight, target) in
                        statistic_losses(c, images, self.direction_image, self.n_phases, self.train_size,
                                         self.orient_randomly or self.symmetrize_real).items()}

    def _tensor(self, array) -> torch.Tensor:
        return torch.tensor(array, dtype=torch.float32, device=self.device)

    @classmethod
    def create(cls, config, images, device):
        """The trainer for ``config``: ``ConditionalSliceGANTrainer`` when ``config["conditional"]``
        is set (runs, checkpoints and the app's form all keep that key), else this class."""
        if cls is SliceGANTrainer and config.get("conditional", False):
            from .slicegan_conditional import ConditionalSliceGANTrainer

            cls = ConditionalSliceGANTrainer
        return cls(config, images, device)

    def _make_generator(self) -> Generator:
        c = self.config
        return Generator(c["nz"], c["gen_channels"], c["gen_kernels"], c["gen_strides"],
                         c["gen_paddings"], self.channels, self.kind, c.get("gen_upsample", "transposed"))

    # -- precision ----------------------------------------------------------------------------
    def _autocast(self):
        return autocast(self.device, self.config.get("precision", "fp32"))

    def _noise(self, batch: int, lz: int | tuple, generator=None) -> torch.Tensor:
        shape = (lz, lz, lz) if isinstance(lz, int) else tuple(lz)
        z = torch.randn(batch, self.config["nz"], *shape, generator=generator)
        return z.to(self.device).contiguous(memory_format=torch.channels_last_3d)

    # -- training hooks (ConditionalSliceGANTrainer overrides them) -----------------------------
    def _targets(self, batch: int) -> torch.Tensor | None:
        """Per-volume target fractions for this step: none for plain SliceGAN."""
        return None

    def _condition(self, z: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        """The generator's input for latent ``z``: ``z`` itself for plain SliceGAN."""
        return z

    def _refresh_targets(self, batch: int, generator: torch.Generator) -> torch.Tensor | None:
        """Targets for re-estimating the averaged generator's BatchNorm statistics: none here."""
        return None

    def _real_crops(self, axis: int, targets: torch.Tensor | None, count: int) -> torch.Tensor:
        """``count`` random real crops for slicing direction ``axis``."""
        return self.samplers[axis].sample(count)

    # -- training -----------------------------------------------------------------------------
    def _oriented(self, images: torch.Tensor, axis: int) -> torch.Tensor:
        """``augment_dihedral`` (isotropic runs only): each real crop AND each fake slice in a random
        orientation of the square; otherwise ``images`` unchanged. With both oriented the critic
        cannot see how a volume's axes differ: on `standard` the generators came out more
        anisotropic than without it (stop 34). Orienting the real crops alone
        (``symmetrize_real``, in :meth:`_real`) moved the under-connected axis from Z to Y
        (docs/fidelity.md, stops 19 and 34)."""
        if self.orient_randomly and axis != DIAGONAL:  # a diagonal crop's two axes are not alike
            return dihedral(images)
        return images

    def _real(self, axis: int, targets: torch.Tensor | None) -> torch.Tensor:
        """Real crops for slicing direction ``axis``, augmented, on the device."""
        real = self._real_crops(axis, targets, self.config["real_batch"])
        if self.symmetrize_real and not self.orient_randomly and axis != DIAGONAL:
            real = dihedral(real)  # the fake slices keep their orientation (slicegan_presets.py)
        real = self._oriented(real, axis)
        return real.to(self.device).contiguous(memory_format=torch.channels_last)

    def _fraction_loss(self, fake: torch.Tensor, targets: torch.Tensor | None):
        """The original report's density loss and the largest fraction gap (0 when unused):
        the batch's mean soft fractions vs the training image's, ``fraction_weight * sum_k gap_k^2``.
        """
        weight = self.config.get("fraction_weight", 0.0)
        if self.kind != "nphase" or weight <= 0:
            return 0.0, 0.0
        gap = fake.float().mean(dim=(0, 2, 3, 4)) - self.target_fractions
        return weight * (gap ** 2).sum(), gap.abs().max().item()

    def critic_groups(self) -> list[tuple[int, list[int]]]:
        """``(critic index, slicing directions it judges)``: one group for an isotropic run, and
        with ``critic_diagonal`` a last one, (its own critic, [DIAGONAL])."""
        groups: dict[int, list[int]] = {}
        for axis, image in enumerate(self.direction_image):
            groups.setdefault(image, []).append(axis)
        if self.diagonal:
            groups[len(self.critics) - 1] = [DIAGONAL]
        return list(groups.items())

    @staticmethod
    def _sections(fake: torch.Tensor, axis: int, count: int | None) -> torch.Tensor:
        """The fake volumes' 2D sections for direction ``axis``: ``count`` random slices per volume
        perpendicular to Z, Y or X, or for DIAGONAL the six face-diagonal planes of each."""
        return diagonal_sections(fake) if axis == DIAGONAL else slices(fake, axis, count)

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
                    fakes = [self._oriented(self._sections(fake, axis, count).float(), axis) for axis in axes]
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
                fake_slices = torch.cat([self._oriented(self._sections(fake, axis, count), axis) for axis in axes])
                with self._autocast():
                    scores = self.critics[index](fake_slices)
                g_loss = g_loss - scores.view(len(axes), -1).mean(1).sum()
            frac_loss, frac_err = self._fraction_loss(fake, targets)
            stat_loss, stat_err = self._stationarity_loss(fake)
            spread_loss, spread = self._volume_fraction_loss(fake)
            statistics = {name: self._statistic_loss(name, fake, step) for name in self.statistic_losses}
            g_loss = g_loss + frac_loss + stat_loss + spread_loss + sum(p for p, _ in statistics.values())
            g_loss.backward()
        finally:
            self.critics.requires_grad_(True)
        self.opt_g.step()
        self._update_ema()
        n_dirs = sum(len(axes) for _, axes in groups)  # per direction, as logged before diagonals
        return {"critic": d_loss_total / n_dirs, "generator": g_loss.item(), "wasserstein": wass_total / n_dirs,
                "gradient_penalty": gp_total / n_dirs, "fraction_error": frac_err,
                **({"grid_modulation": stat_err} if self.config.get("stationarity_weight") else {}),
                **({"volume_fraction_spread": spread} if self.config.get("volume_fraction_weight") else {}),
                **{f"{name}_gap": gap for name, (_, gap) in statistics.items()}}

    def _statistic_loss(self, name: str, fake: torch.Tensor, step: int):
        """``(loss, largest gap)`` of statistic loss ``name`` at ``step``, (0, 0) before its start."""
        loss, weight, target = self.statistic_losses[name]
        if name != "s2" and step < self.statistic_start:
            return 0.0, 0.0
        return loss(fake, target, weight, step)

    def _volume_fraction_loss(self, fake: torch.Tensor):
        """Penalty on the spread of the phase fractions from one training volume to the next.

        A generator with independent latent cells can drift: a neighbourhood of cells that all
        lean towards one phase makes a region rich in it. A packed real material does not (the
        electrode's 64^3 blocks differ by 2.8 pp in NMC fraction, its 128^3 crops by 0.4 pp), but
        generated volumes did (4 pp at 64^3, 1.2-1.9 pp between whole 128^3 volumes, planes
        with 18 % NMC where the truth's lowest has 30 %), and the 2D critic, judging one slice
        at a time, does not see it. The batch-mean density loss (``fraction_weight``) does not
        either: it only constrains the mean over the batch.

        ``d_b = sum_k (f_bk - t_k)^2`` for each training volume ``b`` (soft fractions ``f``,
        training fractions ``t``); the loss is ``volume_fraction_weight * g * mean_b d_b``, where
        the gain ``g = max(0, 1 - E / D)`` compares a running average ``D`` of ``mean_b d_b``
        (``SPREAD_DECAY``, bias-corrected, detached) with ``E``, the spread a volume of this size
        cut from an isotropic material with the training image's two-point statistics would have
        (:func:`matgen_core.metrics.expected_cube_variance`): the loss pushes only the spread in excess of the real
        material's and fades out as the generator reaches it. Returns ``(loss, sqrt(D))`` (the
        running root-mean-square fraction gap of one volume, summed over phases), or
        ``(0.0, 0.0)`` when ``volume_fraction_weight`` is 0 or the data are not n-phase.
        """
        weight = float(self.config.get("volume_fraction_weight", 0.0) or 0.0)
        if weight <= 0 or self.kind != "nphase" or self.expected_spread is None:
            return 0.0, 0.0
        gaps = ((fake.float().mean(dim=(2, 3, 4)) - self.target_fractions) ** 2).sum(1)  # (B,)
        spread = gaps.mean()
        self._spread_average = SPREAD_DECAY * self._spread_average + (1 - SPREAD_DECAY) * spread.item()
        self._spread_steps += 1
        running = self._spread_average / (1 - SPREAD_DECAY ** self._spread_steps)
        gain = max(0.0, 1.0 - self.expected_spread / running) if running > 0 else 0.0
        return weight * gain * spread, running ** 0.5

    def _stationarity_loss(self, fake: torch.Tensor):
        """Penalty on position-dependent mean phase fractions (the generator's lattice artefact).

        A real microstructure is statistically homogeneous: the expected fraction of each phase is
        the same in every plane. The transposed-convolution stack is not: each output voxel's
        position modulo 32 (one latent cell) selects different kernel taps, and a trained
        generator keeps a weak periodic modulation of the phase fractions, aligned over whole
        planes of a large volume (e.g. NMC 34 % in some Y planes vs 42 % in others, while the
        2D critic, judging one 32 px slice at a time, barely sees it). Such depleted planes cut 3D
        paths: tortuosity along that axis rises several-fold (docs/fidelity.md).

        For each axis, the batch's mean soft fractions per plane give a profile (C, L); its
        deviation from its own mean is the modulation plus sampling noise. A running average of
        past profiles (``STATIONARITY_DECAY``, bias-corrected, detached) estimates the systematic
        part; the loss ``stationarity_weight * mean_x sum(estimate * profile)`` pushes the profile
        against it, whose expected gradient is that of ``weight / 2 * |modulation|^2`` without the
        sampling noise's own term (squaring one batch's profile would also flatten each volume's
        natural plane-to-plane variation). Returns ``(loss, largest estimated modulation)``, or
        ``(0.0, 0.0)`` when ``stationarity_weight`` is 0.
        """
        weight = float(self.config.get("stationarity_weight", 0.0) or 0.0)
        if weight <= 0:
            return 0.0, 0.0
        p = fake.float()
        profiles = torch.stack([p.mean(dim=tuple(d for d in (0, 2, 3, 4) if d != 2 + axis)) for axis in range(3)])
        centred = profiles - profiles.mean(-1, keepdim=True)  # (3 axes, C, L)
        with torch.no_grad():
            if self._profile_average is None or self._profile_average.shape != centred.shape:
                self._profile_average, self._profile_steps = torch.zeros_like(centred), 0
            self._profile_average.mul_(STATIONARITY_DECAY).add_(centred.detach(), alpha=1 - STATIONARITY_DECAY)
            self._profile_steps += 1
            estimate = self._profile_average / (1 - STATIONARITY_DECAY ** self._profile_steps)
        loss = weight * (estimate * centred).sum(dim=(0, 1)).mean()
        return loss, estimate.abs().max().item()

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
    def _refresh_ema_statistics(self, volumes: int = EMA_STATISTICS_VOLUMES) -> None:
        """Re-estimate the averaged generator's BatchNorm statistics for its own weights.

        The live network's running statistics belong to the live weights; used with the averaged
        weights they would shift every activation. Passes on ``volumes`` training-size volumes in
        training-size batches, on fixed noise (its own random generator, so training randomness
        is untouched), give the average (few volumes give an error every volume shares).
        """
        net, c = self.generator_ema, self.config
        norms = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        for m in norms:
            m.reset_running_stats()
            m.momentum = None  # cumulative average over the passes below
        net.train()
        rng = torch.Generator().manual_seed(1234)
        batch = int(c["batch_size"])
        for _ in range(max(1, -(-int(volumes) // batch))):
            net(self._condition(self._noise(batch, c["lz"], generator=rng), self._refresh_targets(batch, rng)))
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
            state["ema_statistics_volumes"] = torch.tensor(EMA_STATISTICS_VOLUMES)
        return state

    def load_state_dict(self, state: dict) -> None:
        self.generator.load_state_dict(state["generator"])
        if self.generator_ema is not None:
            self.generator_ema.load_state_dict(state.get("generator_ema", state["generator"]))
            self.ema_updates = int(state.get("ema_updates", 0))
            # statistics from another number of volumes (before stop 37: 8) are estimated again
            self._ema_stale = int(state.get("ema_statistics_volumes", 0)) != EMA_STATISTICS_VOLUMES
        if "critics" in state:
            self.critics.load_state_dict(state["critics"])
            load_optimizer(self.opt_g, state["opt_g"])
            load_optimizer(self.opt_d, state["opt_d"])

    # -- sampling -----------------------------------------------------------------------------
    def latent_shape(self, shape) -> tuple:
        c = self.config
        k, s, p = c["gen_kernels"], c["gen_strides"], c["gen_paddings"]
        return tuple(latent_size_for(n, k, s, p) for n in shape)

    def latent(self, shape, seed: int = 0, periodic=(False, False, False), fractions=None) -> torch.Tensor:
        """The seeded latent (1, nz, lz...) that makes a volume of ``shape``.

        Along ``periodic`` axes the latent repeats with period ``size / S`` (``S`` = the product
        of the generator's strides, 32 in the presets): its last ``size / S`` planes are kept and
        the planes before them are copies, so the volume is exactly one period and tiles without
        a seam. That needs a periodic side to be a multiple of ``S``; other sizes raise
        MatgenInputError naming the nearest valid ones (see :func:`periodic_sizes`).
        ``fractions`` (target phase fractions) only for a conditional model: ValueError here.
        Tiled generation (tiling.py) cuts this same latent into tiles.
        """
        if fractions is not None:
            raise ValueError("this SliceGAN is not conditional; calibrate fractions with "
                             "matgen_core.fractions instead")
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
        return z

    @torch.inference_mode()
    def sample(self, shape, seed: int = 0, periodic=(False, False, False), fractions=None) -> np.ndarray:
        """Generate one volume of ``shape`` (Z, Y, X) voxels; returns float32 (C, Z, Y, X).

        The latent is the smallest that covers ``shape``; the volume is cropped to it. Along
        ``periodic`` axes the latent is periodic, so the volume tiles (sides: multiples of 32).
        ``fractions``: target phase fractions of a conditional model (default: the training
        image's); other models raise ValueError (use matgen_core.fractions to calibrate them).
        """
        z = self.latent(shape, seed, periodic, fractions)
        return self.sample_latent(z)[:, :shape[0], :shape[1], :shape[2]]

    @torch.inference_mode()
    def sample_latent(self, z: torch.Tensor) -> np.ndarray:
        """The sampling network's output for latent ``z`` (1, nz [+ n_phases], lz...), float32
        (C, Z, Y, X)."""
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
