"""DCGAN: a 2D generator of micrograph-sized images, trained on random crops of one micrograph.

Radford et al. (2016) architecture, with the choices of the original project report: spectral
normalisation on every discriminator layer (Miyato et al. 2018), batch normalisation in the
generator (instance normalisation and none are options: the report found batch better than
instance at batch > 16), latent size = image size / 2, batch 64, and the original BCE (minimax,
non-saturating for the generator) loss. WGAN-GP is an option.

The generator maps a latent vector (B, nz, 1, 1) to a 4x4 map, then doubles it with stride-2
transposed convolutions up to ``img_size`` (a power of two, 16 to 256). The discriminator mirrors
it: stride-2 convolutions down to 4x4, then one 4x4 convolution to a single logit.

Everything the model needs is in this file: the networks, the presets and ``DCGANTrainer`` (the
Trainer protocol of docs/architecture.md). ``models/vae.py`` reuses the discriminator and the
small helpers below (``norm_layer``, ``activate``, ``to_tiles``).

Shapes: images are (B, C, H, W); C is one channel per phase for n-phase data (softmax output), 1 for
grayscale and 3 for colour (sigmoid output).
"""
from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data import CropSampler, decode, encode, n_channels
from ..errors import MatgenInputError
from .optimizer_state import load_optimizer

# ---------------------------------------------------------------------------------------------
# Presets: every key can be overridden. "paper" is the report's setup (batch 64, batch-norm
# generator, spectral-norm discriminator, BCE loss); "quick" is small enough for a 2-core CPU and
# uses WGAN-GP, because BCE collapses to a few near-identical samples in runs that short (see
# docs/models2d.md). nz None means img_size / 2 (the report's latent size). With loss "wgan-gp"
# use critic_iters 2-5.
# ---------------------------------------------------------------------------------------------
PRESETS = {
    "paper": dict(
        img_size=64, nz=None, ngf=64, ndf=64, norm="batch", spectral_norm=True, loss="bce",
        lr_g=2e-4, lr_d=2e-4, betas=[0.5, 0.999], batch_size=64, critic_iters=1,
        gp_lambda=10.0, steps=5000,
    ),
    "quick": dict(
        img_size=64, nz=None, ngf=16, ndf=16, norm="batch", spectral_norm=True, loss="wgan-gp",
        lr_g=1e-3, lr_d=1e-3, betas=[0.5, 0.9], batch_size=16, critic_iters=2,
        gp_lambda=10.0, steps=400,
    ),
}

NORMS = ("batch", "instance", "none")
LOSSES = ("bce", "wgan-gp")


def check_img_size(img_size: int, smallest: int = 16) -> int:
    """Number of stride-2 layers between 4x4 and ``img_size``; MatgenInputError unless a power of 2."""
    img_size = int(img_size)
    if img_size < smallest or img_size > 256 or img_size & (img_size - 1):
        raise MatgenInputError(f"img_size must be a power of two from {smallest} to 256 px (e.g. 64 "
                               f"or 128), got {img_size}.")
    return int(math.log2(img_size)) - 2


def norm_layer(norm: str, channels: int) -> nn.Module:
    """The generator's normalisation: "batch", "instance" (learned affine) or "none"."""
    if norm == "batch":
        return nn.BatchNorm2d(channels)
    if norm == "instance":
        return nn.InstanceNorm2d(channels, affine=True)
    if norm == "none":
        return nn.Identity()
    raise MatgenInputError(f"norm must be one of {', '.join(NORMS)}, got {norm!r}.")


def activate(logits: torch.Tensor, kind: str) -> torch.Tensor:
    """Network logits -> data: softmax over phases (n-phase), sigmoid to [0, 1] (gray, colour)."""
    return torch.softmax(logits, dim=1) if kind == "nphase" else torch.sigmoid(logits)


def init_weights(module: nn.Module) -> None:
    """DCGAN initialisation: conv weights N(0, 0.02), norm scales N(1, 0.02), biases 0."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d)) and m.weight is not None:
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class Generator(nn.Module):
    """Latent (B, nz, 1, 1) -> logits (B, C, img_size, img_size); ``activate`` gives the image."""

    def __init__(self, nz: int, img_size: int, out_channels: int, ngf: int = 64, norm: str = "batch"):
        super().__init__()
        n_up = check_img_size(img_size)
        widths = [min(ngf * 2 ** (n_up - 1 - i), 8 * ngf) for i in range(n_up)]  # 4x4 ... img/2
        layers = [nn.ConvTranspose2d(nz, widths[0], 4, 1, 0, bias=False), norm_layer(norm, widths[0]),
                  nn.ReLU(inplace=True)]
        for w_in, w_out in zip(widths[:-1], widths[1:]):
            layers += [nn.ConvTranspose2d(w_in, w_out, 4, 2, 1, bias=False), norm_layer(norm, w_out),
                       nn.ReLU(inplace=True)]
        layers.append(nn.ConvTranspose2d(widths[-1], out_channels, 4, 2, 1))
        self.net = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z)


class Discriminator(nn.Module):
    """Image (B, C, S, S) -> one logit per image; spectral norm on every layer when asked.

    No normalisation layers (spectral norm takes their place, and WGAN-GP needs per-sample
    gradients). ``forward(x, features=True)`` also returns the activations after stride-2 layer
    ``feature_layer`` (0-based, negative counts from the end): the VAE/GAN compares images there.
    """

    def __init__(self, img_size: int, in_channels: int, ndf: int = 64, spectral_norm: bool = True,
                 feature_layer: int = -2):
        super().__init__()
        n_down = check_img_size(img_size)
        widths = [in_channels] + [min(ndf * 2 ** i, 8 * ndf) for i in range(n_down)]  # img/2 ... 4x4
        convs = [nn.Conv2d(widths[i], widths[i + 1], 4, 2, 1) for i in range(n_down)]
        convs.append(nn.Conv2d(widths[-1], 1, 4, 1, 0))
        for conv in convs:
            init_weights(conv)
        if spectral_norm:
            convs = [nn.utils.parametrizations.spectral_norm(c) for c in convs]
        self.convs = nn.ModuleList(convs)
        self.feature_layer = feature_layer % n_down

    def forward(self, x: torch.Tensor, features: bool = False):
        feat = None
        for i, conv in enumerate(self.convs[:-1]):
            x = F.leaky_relu(conv(x), 0.2)
            if i == self.feature_layer:
                feat = x
        logit = self.convs[-1](x).flatten(1).mean(1)
        return (logit, feat) if features else logit


def gradient_penalty(critic: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """WGAN-GP: mean (||grad D(x_hat)|| - 1)^2 at random interpolates of real and fake images."""
    alpha = torch.rand(len(real), 1, 1, 1, device=real.device)
    mixed = (alpha * real + (1 - alpha) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    return ((grad.flatten(1).norm(dim=1) - 1) ** 2).mean()


def to_tiles(images: np.ndarray, kind: str, n_phases: int, cols: int) -> np.ndarray:
    """(K, C, H, W) network output -> one uint8 picture: a grid of ``cols`` columns, 2 px gaps."""
    tiles = [decode(im, kind) for im in images]
    if kind == "nphase":
        tiles = [(t.astype(np.float32) * (255.0 / max(n_phases - 1, 1))).astype(np.uint8) for t in tiles]
    h, w = tiles[0].shape[:2]
    rows = -(-len(tiles) // cols)
    grid = np.full((rows * (h + 2) - 2, cols * (w + 2) - 2) + tiles[0].shape[2:], 255, np.uint8)
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        grid[r * (h + 2):r * (h + 2) + h, c * (w + 2):c * (w + 2) + w] = t
    return grid


class DCGANTrainer:
    """DCGAN networks, optimisers and one training step (the Trainer protocol)."""

    name = "dcgan"
    loss_names = ("discriminator", "generator", "d_real", "d_fake", "gradient_penalty")

    def __init__(self, config: dict, images: list[np.ndarray] | None, device: torch.device):
        self.config = config
        self.device = torch.device(device)
        c = config
        if c["loss"] not in LOSSES:
            raise MatgenInputError(f"loss must be one of {', '.join(LOSSES)}, got {c['loss']!r}.")
        self.kind, self.n_phases = c["kind"], c.get("n_phases", 0)
        self.channels = n_channels(self.kind, self.n_phases)
        self.img_size = int(c["img_size"])
        self.nz = int(c["nz"] or self.img_size // 2)
        self.generator = Generator(self.nz, self.img_size, self.channels, c["ngf"], c["norm"]).to(self.device)
        self.discriminator = Discriminator(self.img_size, self.channels, c["ndf"],
                                           c["spectral_norm"]).to(self.device)
        betas = tuple(c["betas"])
        self.opt_g = torch.optim.Adam(self.generator.parameters(), lr=c["lr_g"], betas=betas)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=c["lr_d"], betas=betas)
        self.critic_iters = max(1, int(c["critic_iters"]))
        self.sampler = None
        if images is not None:
            self.sampler = CropSampler(encode(images[0], self.kind, self.n_phases), self.img_size)

    @classmethod
    def create(cls, config, images, device):
        return cls(config, images, device)

    def _noise(self, batch: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return torch.randn(batch, self.nz, 1, 1, generator=generator).to(self.device)

    def fake(self, batch: int) -> torch.Tensor:
        """A batch of generated images (in [0, 1] / probabilities), with gradients."""
        return activate(self.generator(self._noise(batch)), self.kind)

    # -- training -----------------------------------------------------------------------------
    def train_step(self, step: int) -> dict:
        """``critic_iters`` discriminator updates, then one generator update; returns the losses."""
        c = self.config
        bce = c["loss"] == "bce"
        self.generator.train()
        self.discriminator.train()
        for _ in range(self.critic_iters):
            real = self.sampler.sample(c["batch_size"]).to(self.device)
            with torch.no_grad():
                fake = self.fake(c["batch_size"])
            self.opt_d.zero_grad(set_to_none=True)
            d_real, d_fake = self.discriminator(real), self.discriminator(fake)
            gp = torch.zeros((), device=self.device)
            if bce:
                d_loss = (F.binary_cross_entropy_with_logits(d_real, torch.ones_like(d_real))
                          + F.binary_cross_entropy_with_logits(d_fake, torch.zeros_like(d_fake)))
            else:
                gp = gradient_penalty(self.discriminator, real, fake)
                d_loss = d_fake.mean() - d_real.mean() + c["gp_lambda"] * gp
            d_loss.backward()
            self.opt_d.step()

        self.opt_g.zero_grad(set_to_none=True)
        score = self.discriminator(self.fake(c["batch_size"]))
        if bce:  # non-saturating: maximise log D(G(z))
            g_loss = F.binary_cross_entropy_with_logits(score, torch.ones_like(score))
        else:
            g_loss = -score.mean()
        g_loss.backward()
        self.opt_g.step()
        squash = torch.sigmoid if bce else (lambda t: t)  # report D's probabilities for BCE
        return {"discriminator": d_loss.item(), "generator": g_loss.item(),
                "d_real": squash(d_real.detach()).mean().item(),
                "d_fake": squash(d_fake.detach()).mean().item(), "gradient_penalty": gp.item()}

    # -- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"generator": self.generator.state_dict(), "discriminator": self.discriminator.state_dict(),
                "opt_g": self.opt_g.state_dict(), "opt_d": self.opt_d.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.generator.load_state_dict(state["generator"])
        if "discriminator" in state:
            self.discriminator.load_state_dict(state["discriminator"])
        if "opt_g" in state:
            load_optimizer(self.opt_g, state["opt_g"])
            load_optimizer(self.opt_d, state["opt_d"])

    def modules(self) -> dict[str, nn.Module]:
        """The networks (protocol.Trainer): kept in step across data-parallel ranks."""
        return {"generator": self.generator, "discriminator": self.discriminator}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt_g": self.opt_g, "opt_d": self.opt_d}

    # -- sampling -----------------------------------------------------------------------------
    @torch.inference_mode()
    def sample_images(self, count: int, seed: int = 0, batch: int = 64) -> np.ndarray:
        """``count`` generated images, float32 (K, C, H, W); the same seed gives the same images.

        The generator runs in eval mode (batch norm uses its running statistics), so an image does
        not depend on the others drawn with it; the previous mode is restored afterwards.
        """
        was_training = self.generator.training
        self.generator.eval()
        try:
            rng = torch.Generator().manual_seed(int(seed))
            z = torch.randn(int(count), self.nz, 1, 1, generator=rng)
            out = [activate(self.generator(z[i:i + batch].to(self.device)), self.kind).float().cpu()
                   for i in range(0, len(z), batch)]
        finally:
            self.generator.train(was_training)
        return torch.cat(out).numpy() if out else np.zeros((0, self.channels, self.img_size,
                                                            self.img_size), np.float32)

    def preview(self) -> np.ndarray:
        """Eight samples (seed 0, so the same latents every time) in a 2 x 4 grid, uint8."""
        return to_tiles(self.sample_images(8, seed=0), self.kind, self.n_phases, cols=4)


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


__all__ = ["PRESETS", "Generator", "Discriminator", "DCGANTrainer", "norm_layer", "activate",
           "init_weights", "gradient_penalty", "to_tiles", "check_img_size", "parameter_count"]
