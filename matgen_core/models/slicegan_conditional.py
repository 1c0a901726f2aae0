"""Conditional SliceGAN (docs/fractions.md): SliceGAN trained for requested phase fractions.

``ConditionalSliceGANTrainer`` is the ``SliceGANTrainer`` whose generator
(``conditional.ConditionalGenerator``) takes the target fractions as ``n_phases`` extra constant
latent channels. It overrides only the plain trainer's hooks:

* ``_make_generator``: the conditional generator;
* ``_targets`` / ``_refresh_targets``: targets drawn over ``fraction_range`` around the training
  image's fractions (``fraction_center``), for each training step / for the averaged generator's
  BatchNorm statistics;
* ``_condition``: the targets appended to the latent as constant channels;
* ``_real_crops``: real crops whose local fractions are near the batch's targets;
* ``_fraction_loss``: each volume's (soft and sharpened) fractions against its own target;
* ``latent``: the condition channels (``fractions``, default the training image's);
* ``state_dict`` / ``load_state_dict``: plus ``fraction_center`` (the layout of checkpoints is the
  same as before this class was split out of ``slicegan``).

``SliceGANTrainer.create`` returns this class when ``config["conditional"]`` is true.
"""
from __future__ import annotations

import numpy as np
import torch

from ..errors import MatgenInputError
from .conditional import (
    DEFAULT_CONDITIONAL_FRACTION_WEIGHT,
    FRACTION_TEMPERATURE,
    ConditionalGenerator,
    sample_targets,
)
from .slicegan import SliceGANTrainer


class ConditionalSliceGANTrainer(SliceGANTrainer):
    """Conditional SliceGAN: the plain trainer with target phase fractions as a condition."""

    conditional = True

    def __init__(self, config: dict, images: list[np.ndarray] | None, device: torch.device):
        self.fraction_range = float(config.get("fraction_range", 0.1))
        n_phases = config.get("n_phases", 0)
        if config["kind"] != "nphase" or not 0 < self.fraction_range < 1:
            raise MatgenInputError("conditional SliceGAN needs segmented (n-phase) data and "
                                   "0 < fraction_range < 1 (e.g. 0.1 for +-10 percentage points).")
        self.n_cond = n_phases  # extra constant latent channels: the target fractions
        super().__init__(config, images, device)
        # the training image's fractions: centre of the conditioning range (kept in the state)
        if images is not None:
            self.fraction_center = self.target_fractions.detach().cpu().clone()
        else:
            self.fraction_center = torch.full((max(n_phases, 1),), 1.0 / max(n_phases, 1))

    def _make_generator(self) -> ConditionalGenerator:
        c = self.config
        return ConditionalGenerator(c["nz"], self.n_cond, c["gen_channels"], c["gen_kernels"],
                                    c["gen_strides"], c["gen_paddings"], self.channels, self.kind,
                                    c.get("gen_upsample", "transposed"))

    # -- the condition ----------------------------------------------------------------------------
    def _condition(self, z: torch.Tensor, targets: torch.Tensor | None) -> torch.Tensor:
        """Append the target fractions (default: the training's) to latent ``z`` as constant channels.

        Channel k holds ``(target_k - training_k) / fraction_range`` (in [-1, 1] over the trained
        range) at every latent position, so the generator stays fully convolutional and every
        output voxel sees the same condition (uniform information density is kept).
        """
        if targets is None:
            targets = self.fraction_center[None].expand(z.shape[0], -1)
        code = (targets.float().cpu() - self.fraction_center[None]) / self.fraction_range
        code = code.to(z.device, z.dtype)[:, :, None, None, None].expand(-1, -1, *z.shape[2:])
        return torch.cat([z, code], dim=1).contiguous(memory_format=torch.channels_last_3d)

    def _targets(self, batch: int) -> torch.Tensor:
        """Per-volume target fractions for this training step, uniform over the trained range."""
        self._init_fraction_path()
        return sample_targets(self.fraction_center, self.fraction_range, batch)

    def _refresh_targets(self, batch: int, generator: torch.Generator) -> torch.Tensor:
        """Targets for re-estimating the averaged generator's BatchNorm statistics: drawn over the
        trained range as in training. Statistics estimated at the centre alone shift every
        off-centre activation: measured on a 600-step run, the generator alone then missed
        off-centre targets by ~7 pp instead of < 1 pp."""
        return sample_targets(self.fraction_center, self.fraction_range, batch, generator=generator)

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

    # -- losses -----------------------------------------------------------------------------------
    def _real_crops(self, axis: int, targets: torch.Tensor, count: int) -> torch.Tensor:
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

    def _fraction_loss(self, fake: torch.Tensor, targets: torch.Tensor):
        """Each volume's fractions vs its own target, and the mean largest (sharpened) gap.

        ``weight * mean_b sum_k (gap_bk^2 + sharp_gap_bk^2)`` (weight: ``fraction_weight``, or
        ``DEFAULT_CONDITIONAL_FRACTION_WEIGHT`` when that is 0), where ``sharp_gap`` uses the
        sharpened probabilities ``softmax(log p / T)`` (T = ``FRACTION_TEMPERATURE``), a
        differentiable stand-in for the argmax labels that a volume is finally made of: the soft
        mean alone can meet the target while the labels miss it by several points. The logged
        gap is the sharpened one: close to what the labels will show.
        """
        t = targets.to(self.device)
        p = fake.float()
        gap = p.mean(dim=(2, 3, 4)) - t  # (B, C)
        sharp = torch.softmax(torch.log(p.clamp_min(1e-12)) / FRACTION_TEMPERATURE, dim=1)
        sharp_gap = sharp.mean(dim=(2, 3, 4)) - t
        weight = self.config.get("fraction_weight", 0.0) or DEFAULT_CONDITIONAL_FRACTION_WEIGHT
        loss = weight * ((gap ** 2).sum(1) + (sharp_gap ** 2).sum(1)).mean()
        return loss, sharp_gap.abs().max(1).values.mean().item()

    # -- state and sampling -----------------------------------------------------------------------
    def state_dict(self) -> dict:
        state = super().state_dict()
        state["fraction_center"] = self.fraction_center.clone()  # centre of the trained range
        return state

    def resume_problem(self, state: dict) -> str | None:
        """Why training cannot continue from checkpoint ``state``, or None.

        A conditional SliceGAN saved before the condition entered after each normalisation
        (``cond_shift``, issue #14) was trained with the code at the generator's input, and its
        optimiser holds fewer parameters. Continuing it would mix the two designs, and its next
        checkpoint (now with ``cond_shift``) would load as the new design: a different model.
        """
        generator = state.get("generator")
        if isinstance(generator, dict) and not any(str(k).startswith("cond_shift.") for k in generator):
            r = self.config.get("fraction_range", 0.1)
            return (f"is a conditional SliceGAN from an older version (the phase-fraction code "
                    f"entered at the generator's input); it still generates volumes, but its training "
                    f"cannot be continued. Train a new run with the same settings instead (matgen train "
                    f"slicegan IMAGE --out NEW_FOLDER --set conditional=true --set fraction_range={r:g}).")
        return None

    def load_state_dict(self, state: dict) -> None:
        if "fraction_center" in state:
            self.fraction_center = state["fraction_center"].detach().float().cpu().clone()
        super().load_state_dict(state)

    def latent(self, shape, seed: int = 0, periodic=(False, False, False), fractions=None) -> torch.Tensor:
        """The plain latent (``SliceGANTrainer.latent``) with the condition channels appended:
        ``fractions`` (default the training image's), shape (1, nz + n_phases, lz...)."""
        z = super().latent(shape, seed, periodic)
        t = None if fractions is None else torch.as_tensor(np.asarray(fractions, np.float32))[None]
        return self._condition(z, t)


__all__ = ["ConditionalSliceGANTrainer"]
