"""Training data: encode micrographs as channel arrays and sample random crops lazily.

Nothing is pre-built: each call to :meth:`CropSampler.sample` cuts fresh crops out of the
original image (the reference SliceGAN pre-builds every crop in float64, gigabytes of memory).
"""
from __future__ import annotations

import numpy as np
import torch

from .errors import MatgenInputError


def n_channels(kind: str, n_phases: int) -> int:
    """Channels a network uses for data of ``kind``: one per phase, 1 for gray, 3 for colour."""
    return {"nphase": n_phases, "gray": 1, "color": 3}[kind]


def encode(array: np.ndarray, kind: str, n_phases: int = 0) -> np.ndarray:
    """Encode one image or volume as float32 channels-first ``(C, *spatial)``.

    ``nphase``: ``array`` holds labels 0..n-1 and becomes one-hot channels.
    ``gray``: values in [0, 1] become one channel. ``color``: ``(*spatial, 3)`` becomes 3 channels.
    """
    if kind == "nphase":
        labels = np.asarray(array).astype(np.int64)
        return np.moveaxis(np.eye(n_phases, dtype=np.float32)[labels], -1, 0)
    if kind == "gray":
        return np.asarray(array, dtype=np.float32)[None]
    if kind == "color":
        return np.moveaxis(np.asarray(array, dtype=np.float32), -1, 0)
    raise ValueError(f"unknown data kind {kind!r}")


def decode(channels: np.ndarray, kind: str) -> np.ndarray:
    """Turn generator output ``(C, *spatial)`` float into user-facing uint8 data.

    ``nphase``: argmax labels 0..n-1. ``gray``: 0-255. ``color``: ``(*spatial, 3)`` RGB 0-255.
    """
    if kind == "nphase":
        return np.argmax(channels, axis=0).astype(np.uint8)
    scaled = np.clip(np.rint(np.asarray(channels, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)
    if kind == "gray":
        return scaled[0]
    return np.moveaxis(scaled, 0, -1)


class CropSampler:
    """Random square crops of one training image, drawn on demand.

    ``image``: encoded ``(C, H, W)`` for a 2D image, or ``(C, Z, Y, X)`` for a 3D volume; for a
    volume, ``axis`` (0, 1, 2 = Z, Y, X) picks the planes crops are cut from: crops of planes
    perpendicular to that axis, i.e. what a slice of the generated volume along it should look like.
    """

    def __init__(self, image: np.ndarray, crop: int, axis: int = 0):
        spatial = image.shape[1:]
        if len(spatial) == 3:
            image = np.moveaxis(image, 1 + axis, 1)  # (C, planes, h, w)
        plane_shape = image.shape[-2:]
        if min(plane_shape) < crop:
            raise MatgenInputError(
                f"The training image is {plane_shape[0]}x{plane_shape[1]} px but training crops are "
                f"{crop}x{crop} px; use an image of at least {crop} px a side, or a smaller crop "
                f"(img_size) setting.")
        self.image = torch.from_numpy(np.ascontiguousarray(image))
        self.crop = crop
        self.is_volume = len(spatial) == 3

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Return ``n`` random crops as float32 ``(n, C, crop, crop)``."""
        h, w = self.image.shape[-2:]
        c = self.crop
        ys = torch.randint(0, h - c + 1, (n,), generator=generator).tolist()
        xs = torch.randint(0, w - c + 1, (n,), generator=generator).tolist()
        if self.is_volume:
            ps = torch.randint(0, self.image.shape[1], (n,), generator=generator).tolist()
            crops = [self.image[:, p, y:y + c, x:x + c] for p, y, x in zip(ps, ys, xs)]
        else:
            crops = [self.image[:, y:y + c, x:x + c] for y, x in zip(ys, xs)]
        return torch.stack(crops)


def image_fractions(images, n_phases: int) -> np.ndarray:
    """Mean over ``images`` (label arrays 0..n-1) of each one's phase fractions, (n_phases,).

    The training fractions of a run: SliceGAN's density-loss target and the centre of its
    phase-fraction range (fractions.py) both come from here.
    """
    fr = []
    for im in images:
        counts = np.bincount(np.asarray(im).ravel().astype(np.int64), minlength=n_phases)[:n_phases]
        fr.append(counts / counts.sum())
    return np.mean(fr, axis=0)
