"""The Trainer protocol: what every model's Trainer class provides, written down as types.

``train.py`` drives any :class:`Trainer`; ``distributed.py`` reaches its networks and optimisers
through :meth:`Trainer.modules` / :meth:`Trainer.optimizers` (never by scanning attributes);
``generate.py``, ``tiling.py`` and ``fractions.py`` sample 3D models through
:class:`VolumeTrainer`, ``generate.py`` and ``diversity.py`` 2D models through
:class:`ImageTrainer`. ``models/__init__.py`` maps model names to the classes.

Arrays: ``(C, Z, Y, X)`` / ``(K, C, H, W)`` float32 network outputs (C = one channel per phase,
1 for gray, 3 for colour), turned into uint8 labels / images by ``data.decode``. Shapes are in
voxels. The protocols are ``runtime_checkable``: ``isinstance(t, VolumeTrainer)`` checks that the
members exist (not their signatures).
"""
from __future__ import annotations

from typing import Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn


@runtime_checkable
class Trainer(Protocol):
    """One model's networks, optimisers and training step; the driver (train.py) owns the loop."""

    name: str                      # "slicegan", "dcgan", "vae", "vaegan"
    config: dict                   # JSON-serialisable hyperparameters (preset + overrides + data keys)
    loss_names: tuple[str, ...]    # keys of the dict train_step returns
    device: torch.device
    kind: str                      # "nphase", "gray" or "color"

    @classmethod
    def create(cls, config: dict, images: list[np.ndarray] | None, device) -> "Trainer":
        """Build from ``config`` (``kind``, ``n_phases``, ``num_images`` set by runs.create_run);
        the instance may be of a subclass the config selects (``SliceGANTrainer.create`` returns
        ``ConditionalSliceGANTrainer`` when ``config["conditional"]`` is true).
        ``images``: the run's training arrays as saved (uint8 labels or float [0, 1] images);
        None when only generating."""

    def train_step(self, step: int) -> dict[str, float]:
        """One generator update (and its critic/discriminator steps); losses by name."""

    def state_dict(self) -> dict:
        """Tensors and numbers only (networks + optimisers), loadable with weights_only=True."""

    def load_state_dict(self, state: dict) -> None:
        """Restore :meth:`state_dict`; a state without optimisers (sampling only) is accepted."""

    def preview(self) -> np.ndarray:
        """uint8 picture (H, W) or (H, W, 3) of current samples, for progress displays."""

    def modules(self) -> dict[str, nn.Module]:
        """Every network whose weights must agree across data-parallel ranks, by a fixed name."""

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Every optimiser, by a fixed name (distributed.py averages gradients before each step)."""


@runtime_checkable
class VolumeTrainer(Trainer, Protocol):
    """A 3D model (SliceGAN): volumes of any size from a latent grid, in one pass or in tiles."""

    train_size: int                # side of the training-size volume, voxels
    generator: nn.Module           # the trained network
    sampling_generator: nn.Module  # the network that makes volumes (the weight average if any)
    conditional: bool              # True when the latent carries target phase fractions
                                   # (models/slicegan_conditional.ConditionalSliceGANTrainer)

    def latent_shape(self, shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """Smallest latent spatial shape whose output covers ``shape`` voxels."""

    def latent(self, shape, seed: int = 0, periodic=(False, False, False),
               fractions=None) -> torch.Tensor:
        """The seeded latent ``(1, nz [+ n_cond], lz, ly, lx)`` that :meth:`sample` uses for
        ``shape``; tiling.py cuts tiles out of this same tensor."""

    def sample_latent(self, z: torch.Tensor) -> np.ndarray:
        """The sampling network's float32 output ``(C, Z, Y, X)`` for latent ``z``."""

    def sample(self, shape, seed: int = 0, periodic=(False, False, False),
               fractions=None) -> np.ndarray:
        """One volume of ``shape`` (Z, Y, X) voxels, float32 ``(C, Z, Y, X)``; ``fractions``
        only for conditional models."""


@runtime_checkable
class ImageTrainer(Trainer, Protocol):
    """A 2D model (DCGAN, VAE, VAE/GAN): images of the training size."""

    def sample_images(self, count: int, seed: int = 0) -> np.ndarray:
        """``count`` seeded samples, float32 ``(K, C, H, W)``."""
