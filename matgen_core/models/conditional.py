"""Conditional SliceGAN (docs/fractions.md): target phase fractions as a condition code.

``sample_targets`` draws training targets around the training image's fractions;
``ConditionalGenerator`` is the ``Generator`` subclass that takes the code as constant latent
channels. ``ConditionalSliceGANTrainer`` (``slicegan_conditional``) trains it; the plain
``SliceGANTrainer.create`` returns that class when ``config["conditional"]`` is set.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from .slicegan_networks import Generator

# --- conditional SliceGAN: config defaults (docs/fractions.md) -------------------------------
# conditional: target phase fractions enter the generator as constant latent channels;
# fraction_range: targets are sampled within +- this many (fraction units) of the training image's
# (both keys are in every preset, slicegan_presets.py).
DEFAULT_CONDITIONAL_FRACTION_WEIGHT = 10.0  # density-loss weight when fraction_weight is 0
# a new conditional run's fraction_weight unless set explicitly (runs.create_run): the presets'
# own weight (10, for the unconditional density loss) leaves the generator alone 5-7 pp off its
# targets; measured in docs/fractions.md
NEW_CONDITIONAL_RUN_FRACTION_WEIGHT = 2000.0
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

    def __init__(self, nz, n_cond, channels, kernels, strides, paddings, out_channels, kind,
                 upsample: str = "transposed"):
        super().__init__(nz + n_cond, channels, kernels, strides, paddings, out_channels, kind, upsample)
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
