"""VAE and VAE/GAN: 2D generators with an encoder, trained on random crops of one micrograph.

VAE (Kingma & Welling 2014), as in the original project report: a 5-layer convolutional encoder to
a 64-number latent, a mirrored 5-layer decoder, and the loss reconstruction + beta * KL. The
reconstruction term is the likelihood of the training crop: cross-entropy of the one-hot phases
under the decoder's softmax (n-phase), binary cross-entropy of the [0, 1] values under its sigmoid
(gray, colour), summed over pixels. Samples decode latents drawn from the N(0, I) prior; the
report found them blurrier than GAN samples. n-phase decoding keeps every phase: a blurry
softmax's argmax drops a thin or minority phase, so samples and reconstructions are decoded
with a per-phase logit bias that matches the decoder's own mean probabilities
(:func:`keep_every_phase`).

VAE/GAN (Larsen et al. 2016, "Autoencoding beyond pixels using a learned similarity metric"): the
same encoder and decoder plus a discriminator (``dcgan.Discriminator``, spectral norm, BCE). The
decoder is also trained adversarially, on reconstructions and on prior samples, and the
reconstruction is measured in the discriminator's feature space (layer ``feature_layer``) instead
of in pixels. Per Larsen et al. each network gets its own loss:

    encoder:       beta * KL + L_feature  (+ pixel_weight * L_pixel)
    decoder:       gamma * L_feature + L_adversarial  (+ pixel_weight * L_pixel)
    discriminator: BCE(real -> 1, reconstruction -> 0, prior sample -> 0)

with L_feature = 0.5 * sum over the layer's activations of (D_l(x) - D_l(x_rec))^2 (a Gaussian
likelihood there), and L_adversarial the non-saturating BCE of the decoder's two kinds of image.

Shapes: images are (B, C, H, W), C as in ``dcgan``; ``img_size`` is a power of two from 32 to 256
(5 stride-2 layers bring it to img_size / 32 before the fully connected latent layer).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ..data import CropSampler, encode, n_channels
from ..errors import MatgenInputError
from .optimizer_state import load_optimizer
from .dcgan import Discriminator, activate, check_img_size, init_weights, norm_layer, to_tiles

# ---------------------------------------------------------------------------------------------
# Presets: every key can be overridden. "paper" is the report's VAE (5 conv layers, latent 64,
# batch 64); "quick" is small enough for a 2-core CPU.
# ---------------------------------------------------------------------------------------------
PRESETS_VAE = {
    "paper": dict(
        img_size=64, nz=64, channels=[32, 64, 128, 256, 512], norm="batch", beta=1.0,
        lr=1e-3, betas=[0.9, 0.999], batch_size=64, steps=5000,
    ),
    "quick": dict(
        img_size=64, nz=64, channels=[16, 32, 64, 128, 128], norm="batch", beta=1.0,
        lr=2e-3, betas=[0.9, 0.999], batch_size=16, steps=400,
    ),
}
# VAE/GAN: "paper" is Larsen et al.'s losses (no pixel term); "quick" adds the pixel likelihood
# (pixel_weight 1), which holds the reconstructions in place while a small, briefly trained
# discriminator's features are still poor, and slows the discriminator (lr_d 1e-4): on one-hot
# data it soon tells real from decoded images by their softness alone and stops teaching.
_GAN_KEYS = dict(ndf=64, spectral_norm=True, feature_layer=-2, gamma=1.0, pixel_weight=0.0,
                 lr_d=2e-4, betas_d=[0.5, 0.999])
PRESETS_VAEGAN = {
    "paper": dict(PRESETS_VAE["paper"], lr=2e-4, betas=[0.5, 0.999], **_GAN_KEYS),
    "quick": dict(PRESETS_VAE["quick"], lr=1e-3, betas=[0.5, 0.999],
                  **dict(_GAN_KEYS, ndf=16, lr_d=1e-4, pixel_weight=1.0)),
}


class Encoder(nn.Module):
    """Image (B, C, S, S) -> (mu, logvar), each (B, nz): 5 stride-2 convolutions + a linear layer."""

    def __init__(self, img_size: int, in_channels: int, channels, nz: int, norm: str = "batch"):
        super().__init__()
        widths = [in_channels, *channels]
        layers = []
        for i in range(5):
            layers.append(nn.Conv2d(widths[i], widths[i + 1], 4, 2, 1, bias=i == 0))
            if i > 0:
                layers.append(norm_layer(norm, widths[i + 1]))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
        self.net = nn.Sequential(*layers)
        side = img_size // 32
        self.fc = nn.Linear(widths[-1] * side * side, 2 * nz)
        init_weights(self)

    def forward(self, x: torch.Tensor):
        mu, logvar = self.fc(self.net(x).flatten(1)).chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 8.0)


class Decoder(nn.Module):
    """Latent (B, nz) -> logits (B, C, S, S): a linear layer + 5 stride-2 transposed convolutions."""

    def __init__(self, img_size: int, out_channels: int, channels, nz: int, norm: str = "batch"):
        super().__init__()
        widths = [*reversed(channels), out_channels]
        self.side, self.width = img_size // 32, widths[0]
        self.fc = nn.Linear(nz, self.width * self.side * self.side)
        layers = [norm_layer(norm, widths[0]), nn.ReLU(inplace=True)]
        for i in range(5):
            layers.append(nn.ConvTranspose2d(widths[i], widths[i + 1], 4, 2, 1, bias=i == 4))
            if i < 4:
                layers += [norm_layer(norm, widths[i + 1]), nn.ReLU(inplace=True)]
        self.net = nn.Sequential(*layers)
        init_weights(self)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(self.fc(z).view(-1, self.width, self.side, self.side))


def reconstruction_loss(logits: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """-log p(x | z) per image, summed over pixels (and channels), averaged over the batch."""
    if kind == "nphase":
        per_pixel = -(target * F.log_softmax(logits, dim=1)).sum(1)
    else:
        per_pixel = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return per_pixel.flatten(1).sum(1).mean()


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) per image, summed over the latent, averaged over the batch."""
    return (-0.5 * (1 + logvar - mu ** 2 - logvar.exp()).sum(1)).mean()


def keep_every_phase(probs: np.ndarray) -> np.ndarray:
    """Phase probabilities (K, C, H, W) re-weighted so their argmax keeps every phase.

    A VAE's decoder is blurry: a thin or minority phase (the example's 13 % binder film) gets
    a probability of ~0.15 spread over the whole image and never wins an argmax, so plain
    decoding drops it (0.0 % of it in the samples) although the decoder's own expected fraction,
    the mean probability, is right. Here a per-phase logit bias is fitted over the batch
    (``fractions.fit_bias``) so that the argmax fractions equal the mean probabilities, and
    softmax(log p + bias) is returned: argmax of it (``data.decode``) keeps each phase at the
    fraction the model predicts for it, and images still differ from one another.
    """
    from ..fractions import fit_bias  # (fractions -> runs -> models: imported late)

    probs = np.asarray(probs, np.float32)
    if probs.ndim != 4 or probs.shape[0] == 0 or probs.shape[1] < 2:
        return probs
    per_phase = np.moveaxis(probs, 1, 0)  # (C, K, H, W)
    targets = per_phase.reshape(per_phase.shape[0], -1).mean(axis=1, dtype=np.float64)
    targets = targets / targets.sum()
    bias, _, _ = fit_bias(per_phase, targets)
    logits = np.log(np.maximum(probs, 1e-12)) + bias.reshape(1, -1, 1, 1)
    logits -= logits.max(axis=1, keepdims=True)
    out = np.exp(logits)
    return (out / out.sum(axis=1, keepdims=True)).astype(np.float32)


class VAETrainer:
    """VAE networks, optimiser and one training step (the Trainer protocol)."""

    name = "vae"
    loss_names = ("loss", "reconstruction", "kl")

    def __init__(self, config: dict, images: list[np.ndarray] | None, device: torch.device):
        self.config = config
        self.device = torch.device(device)
        c = config
        self.kind, self.n_phases = c["kind"], c.get("n_phases", 0)
        self.channels = n_channels(self.kind, self.n_phases)
        self.img_size = int(c["img_size"])
        check_img_size(self.img_size, smallest=32)
        if len(c["channels"]) != 5:
            raise MatgenInputError(f"channels must list 5 widths (one per encoder layer), got "
                                   f"{c['channels']}.")
        if int(c["batch_size"]) < 2:
            raise MatgenInputError("batch_size must be at least 2 for the VAE (batch normalisation).")
        self.nz = int(c["nz"])
        self.encoder = Encoder(self.img_size, self.channels, c["channels"], self.nz, c["norm"]).to(self.device)
        self.decoder = Decoder(self.img_size, self.channels, c["channels"], self.nz, c["norm"]).to(self.device)
        self._make_optimisers()
        self.sampler = None
        self.preview_crops = None
        if images is not None:
            self.sampler = CropSampler(encode(images[0], self.kind, self.n_phases), self.img_size)
            # fixed crops for the preview, so successive previews show the same reconstructions
            self.preview_crops = self.sampler.sample(4, generator=torch.Generator().manual_seed(0))

    def _make_optimisers(self) -> None:
        params = [*self.encoder.parameters(), *self.decoder.parameters()]
        self.opt = torch.optim.Adam(params, lr=self.config["lr"], betas=tuple(self.config["betas"]))

    @classmethod
    def create(cls, config, images, device):
        return cls(config, images, device)

    def _train_mode(self, mode: bool = True) -> None:
        self.encoder.train(mode)
        self.decoder.train(mode)

    @staticmethod
    def _reparameterise(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return mu + torch.randn_like(mu) * (0.5 * logvar).exp()

    # -- training -----------------------------------------------------------------------------
    def train_step(self, step: int) -> dict:
        """One Adam step on reconstruction + beta * KL for a batch of random crops."""
        c = self.config
        self._train_mode(True)
        real = self.sampler.sample(c["batch_size"]).to(self.device)
        mu, logvar = self.encoder(real)
        logits = self.decoder(self._reparameterise(mu, logvar))
        rec = reconstruction_loss(logits, real, self.kind)
        kl = kl_divergence(mu, logvar)
        loss = rec + c["beta"] * kl
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.opt.step()
        return {"loss": loss.item(), "reconstruction": rec.item(), "kl": kl.item()}

    # -- state --------------------------------------------------------------------------------
    def state_dict(self) -> dict:
        return {"encoder": self.encoder.state_dict(), "decoder": self.decoder.state_dict(),
                "opt": self.opt.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.encoder.load_state_dict(state["encoder"])
        self.decoder.load_state_dict(state["decoder"])
        if "opt" in state:
            load_optimizer(self.opt, state["opt"])

    def modules(self) -> dict[str, nn.Module]:
        """The networks (protocol.Trainer): kept in step across data-parallel ranks."""
        return {"encoder": self.encoder, "decoder": self.decoder}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt": self.opt}

    # -- sampling -----------------------------------------------------------------------------
    def _decode_batches(self, z: torch.Tensor, batch: int = 64) -> np.ndarray:
        out = [activate(self.decoder(z[i:i + batch].to(self.device)), self.kind).float().cpu()
               for i in range(0, len(z), batch)]
        if not out:
            return np.zeros((0, self.channels, self.img_size, self.img_size), np.float32)
        probs = torch.cat(out).numpy()
        return keep_every_phase(probs) if self.kind == "nphase" else probs

    @torch.inference_mode()
    def sample_images(self, count: int, seed: int = 0) -> np.ndarray:
        """``count`` decoded prior samples z ~ N(0, I), float32 (K, C, H, W); seeded; eval mode."""
        was_training = self.decoder.training
        self._train_mode(False)
        try:
            z = torch.randn(int(count), self.nz, generator=torch.Generator().manual_seed(int(seed)))
            return self._decode_batches(z)
        finally:
            self._train_mode(was_training)

    @torch.inference_mode()
    def reconstruct(self, images) -> np.ndarray:
        """Decode the posterior means of ``images`` (K, C, img_size, img_size) encoded as by
        ``data.encode`` (one-hot / [0, 1]); returns float32 (K, C, H, W). Deterministic; eval mode."""
        was_training = self.decoder.training
        self._train_mode(False)
        try:
            x = torch.as_tensor(np.asarray(images, dtype=np.float32))
            if x.ndim != 4 or tuple(x.shape[1:]) != (self.channels, self.img_size, self.img_size):
                raise ValueError(f"reconstruct needs images (K, {self.channels}, {self.img_size}, "
                                 f"{self.img_size}), got {tuple(x.shape)}")
            mu = torch.cat([self.encoder(x[i:i + 64].to(self.device))[0] for i in range(0, len(x), 64)]
                           or [torch.zeros(0, self.nz, device=self.device)])
            return self._decode_batches(mu)
        finally:
            self._train_mode(was_training)

    def preview(self) -> np.ndarray:
        """uint8 grid: row 1 prior samples (seed 0); rows 2-3 fixed training crops and their
        reconstructions (when the trainer has training data)."""
        samples = self.sample_images(4, seed=0)
        if self.preview_crops is None:
            return to_tiles(samples, self.kind, self.n_phases, cols=4)
        crops = self.preview_crops.numpy()
        rows = np.concatenate([samples, crops, self.reconstruct(crops)])
        return to_tiles(rows, self.kind, self.n_phases, cols=4)


class VAEGANTrainer(VAETrainer):
    """VAE/GAN (Larsen et al. 2016): the VAE plus a discriminator that trains the decoder
    adversarially and defines the reconstruction error in its feature space."""

    name = "vaegan"
    loss_names = ("discriminator", "encoder", "decoder", "kl", "feature_reconstruction",
                  "adversarial", "pixel_reconstruction")

    def __init__(self, config, images, device):
        super().__init__(config, images, device)
        c = config
        self.discriminator = Discriminator(self.img_size, self.channels, c["ndf"], c["spectral_norm"],
                                           c["feature_layer"]).to(self.device)
        self.opt_d = torch.optim.Adam(self.discriminator.parameters(), lr=c["lr_d"],
                                      betas=tuple(c["betas_d"]))

    def _make_optimisers(self) -> None:
        betas = tuple(self.config["betas"])
        self.opt_enc = torch.optim.Adam(self.encoder.parameters(), lr=self.config["lr"], betas=betas)
        self.opt_dec = torch.optim.Adam(self.decoder.parameters(), lr=self.config["lr"], betas=betas)

    def train_step(self, step: int) -> dict:
        """One discriminator update, then one encoder and one decoder update, each on its own loss."""
        c = self.config
        self._train_mode(True)
        self.discriminator.train()
        b = c["batch_size"]
        real = self.sampler.sample(b).to(self.device)
        mu, logvar = self.encoder(real)
        rec_logits = self.decoder(self._reparameterise(mu, logvar))
        prior_logits = self.decoder(torch.randn(b, self.nz, device=self.device))
        rec, prior = activate(rec_logits, self.kind), activate(prior_logits, self.kind)

        # discriminator: real -> 1, reconstructions and prior samples -> 0
        bce = F.binary_cross_entropy_with_logits
        d_real = self.discriminator(real)
        d_fake = self.discriminator(torch.cat([rec, prior]).detach())
        d_loss = bce(d_real, torch.ones_like(d_real)) + bce(d_fake, torch.zeros_like(d_fake))
        self.opt_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.opt_d.step()

        # encoder and decoder, through the updated discriminator (whose weights are not stepped)
        with torch.no_grad():
            _, feat_real = self.discriminator(real, features=True)
        score, feat = self.discriminator(torch.cat([rec, prior]), features=True)
        feat_rec = feat[:b]
        l_feature = 0.5 * ((feat_rec - feat_real) ** 2).flatten(1).sum(1).mean()
        l_adv = bce(score, torch.ones_like(score))
        kl = kl_divergence(mu, logvar)
        l_pixel = (reconstruction_loss(rec_logits, real, self.kind) if c["pixel_weight"]
                   else torch.zeros((), device=self.device))
        enc_loss = c["beta"] * kl + l_feature + c["pixel_weight"] * l_pixel
        dec_loss = c["gamma"] * l_feature + l_adv + c["pixel_weight"] * l_pixel
        enc_params, dec_params = list(self.encoder.parameters()), list(self.decoder.parameters())
        enc_grads = torch.autograd.grad(enc_loss, enc_params, retain_graph=True)
        dec_grads = torch.autograd.grad(dec_loss, dec_params)
        for params, grads, opt in ((enc_params, enc_grads, self.opt_enc),
                                   (dec_params, dec_grads, self.opt_dec)):
            for p, g in zip(params, grads):
                p.grad = g
            opt.step()
            opt.zero_grad(set_to_none=True)
        return {"discriminator": d_loss.item(), "encoder": enc_loss.item(), "decoder": dec_loss.item(),
                "kl": kl.item(), "feature_reconstruction": l_feature.item(), "adversarial": l_adv.item(),
                "pixel_reconstruction": l_pixel.item()}

    def state_dict(self) -> dict:
        return {"encoder": self.encoder.state_dict(), "decoder": self.decoder.state_dict(),
                "discriminator": self.discriminator.state_dict(), "opt_enc": self.opt_enc.state_dict(),
                "opt_dec": self.opt_dec.state_dict(), "opt_d": self.opt_d.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.encoder.load_state_dict(state["encoder"])
        self.decoder.load_state_dict(state["decoder"])
        if "discriminator" in state:
            self.discriminator.load_state_dict(state["discriminator"])
        if "opt_enc" in state:
            load_optimizer(self.opt_enc, state["opt_enc"])
            load_optimizer(self.opt_dec, state["opt_dec"])
            load_optimizer(self.opt_d, state["opt_d"])

    def modules(self) -> dict[str, nn.Module]:
        return {**super().modules(), "discriminator": self.discriminator}

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        return {"opt_enc": self.opt_enc, "opt_dec": self.opt_dec, "opt_d": self.opt_d}


__all__ = ["PRESETS_VAE", "PRESETS_VAEGAN", "Encoder", "Decoder", "VAETrainer", "VAEGANTrainer",
           "reconstruction_loss", "kl_divergence", "keep_every_phase"]
