"""Sampling from a trained run: 3D volumes of any size or shape (SliceGAN), 2D image stacks.

Generation is seeded: the same run, shape and seed give the same array.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import runs
from .data import decode
from .errors import MatgenInputError
from .models import VOLUME_MODELS
from .train import build_trainer


@dataclass
class Generated:
    """A generated volume (Z, Y, X) or image stack (K, H, W), with what is needed to save it.

    ``array``: uint8 labels 0..n-1 (kind "nphase"), uint8 gray 0-255 ("gray"), or RGB uint8 with a
    trailing axis of 3 ("color"). ``voxel_size`` and ``unit`` are the training image's.
    """
    array: np.ndarray
    kind: str
    phase_values: list = field(default_factory=list)
    voxel_size: float | None = None
    unit: str = "px"
    model: str = ""


def parse_shape(size=None, shape=None) -> tuple[int, int, int] | None:
    """(Z, Y, X) from ``size`` (cube side) or ``shape`` ("Z,Y,X" string or sequence)."""
    if shape is not None:
        if isinstance(shape, str):
            try:
                shape = [int(v) for v in shape.replace("x", ",").split(",")]
            except ValueError:
                raise MatgenInputError(f"--shape must be three integers like 64,128,128, got '{shape}'.")
        if isinstance(shape, int):
            shape = (shape,) * 3
        shape = tuple(int(v) for v in shape)
        if len(shape) != 3:
            raise MatgenInputError(f"--shape needs three sizes Z,Y,X, got {len(shape)}.")
    elif size is not None:
        shape = (int(size),) * 3
    if shape is not None and min(shape) < 1:
        raise MatgenInputError(f"Sizes must be positive, got {shape}.")
    return shape


def generate(run_dir, shape=None, seed: int = 0, count: int | None = None, device="auto",
             periodic=(False, False, False)) -> Generated:
    """Generate from the run in ``run_dir`` (its latest checkpoint).

    3D models: ``shape`` (Z, Y, X) voxels, or an int for a cube (default: 2x the training size).
    2D models: ``count`` images of the training size, stacked as (K, H, W[, 3]).
    """
    run_dir = Path(run_dir)
    config = runs.load_config(run_dir)
    checkpoint = runs.load_checkpoint(run_dir, device="cpu")
    if checkpoint is None:
        raise MatgenInputError(f"{run_dir} has no checkpoint yet; train it first (matgen train ... "
                               f"--out {run_dir}).")
    trainer = build_trainer(run_dir, device, with_data=False)
    trainer.load_state_dict(checkpoint["state"])
    data = config["data"]
    kind = data["kind"]
    if config["model"] in VOLUME_MODELS:
        if count not in (None, 1):
            raise MatgenInputError("--count is for 2D models; a SliceGAN run makes one volume per call "
                                   "(use --seed for others).")
        shape = parse_shape(shape=shape) if shape is not None else (2 * trainer.train_size,) * 3
        array = decode(trainer.sample(shape, seed=seed, periodic=periodic), kind)
    else:
        if shape is not None:
            raise MatgenInputError(f"{config['model']} makes 2D images of its training size; use "
                                   f"--count K instead of --size/--shape.")
        array = np.stack([decode(im, kind) for im in trainer.sample_images(count or 16, seed=seed)])
    return Generated(array=array, kind=kind, phase_values=data.get("phase_values", []),
                     voxel_size=data.get("voxel_size"), unit=data.get("unit", "px"),
                     model=config["model"])
