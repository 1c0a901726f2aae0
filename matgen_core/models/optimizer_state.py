"""Restoring a saved optimiser on resume, shared by every model's Trainer.

``torch.optim.Optimizer.load_state_dict`` also restores the saved learning rates, so a run whose
``config.json`` was given a new ``lr`` / ``lr_g`` / ``lr_d`` would silently keep training at the
old one. Trainers build their optimisers from the run's config; :func:`load_optimizer` keeps
those learning rates and takes everything else (Adam moments, step counts) from the checkpoint.
"""
from __future__ import annotations

import torch


def load_optimizer(optimizer: torch.optim.Optimizer, saved: dict) -> None:
    """Load ``saved`` (an optimiser ``state_dict``) into ``optimizer``, keeping its learning rates."""
    rates = [group["lr"] for group in optimizer.param_groups]
    optimizer.load_state_dict(saved)
    for group, rate in zip(optimizer.param_groups, rates):
        group["lr"] = rate
