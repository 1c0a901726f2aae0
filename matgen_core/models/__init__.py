"""Model registry: name -> Trainer class. Every class follows ``matgen_core.protocol.Trainer``
(3D models ``VolumeTrainer``, 2D models ``ImageTrainer``); docs/architecture.md has the overview."""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from ..errors import MatgenInputError

if TYPE_CHECKING:  # the registry itself imports no torch
    from ..protocol import Trainer

# name -> (module, Trainer class name). Imported lazily so one model's import cost is paid alone.
_REGISTRY = {
    "slicegan": ("slicegan", "SliceGANTrainer"),
    "dcgan": ("dcgan", "DCGANTrainer"),
    "vae": ("vae", "VAETrainer"),
    "vaegan": ("vae", "VAEGANTrainer"),
}
MODEL_NAMES = tuple(_REGISTRY)
# models whose samples are 3D volumes (the others make 2D images)
VOLUME_MODELS = ("slicegan",)


def _module(name: str):
    if name not in _REGISTRY:
        raise MatgenInputError(f"Unknown model '{name}'; choose one of {', '.join(MODEL_NAMES)}.")
    return importlib.import_module(f".{_REGISTRY[name][0]}", __name__)


def trainer_class(name: str) -> type[Trainer]:
    """The Trainer class for model ``name`` (a :class:`~matgen_core.protocol.Trainer`)."""
    return getattr(_module(name), _REGISTRY[name][1])


def presets(name: str) -> dict:
    """The presets of model ``name``: preset name -> hyperparameter dict."""
    mod = _module(name)
    return getattr(mod, "PRESETS_" + name.upper(), None) or mod.PRESETS
