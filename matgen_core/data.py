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


DIAGONAL_SPACING = float(np.sqrt(2.0))  # voxel spacing along a face diagonal of the cubic grid


class DiagonalCropSampler:
    """Random crops of one training image as a diagonal section of a voxel volume would show it.

    A plane through a cubic voxel grid along a face diagonal (normal (1, 1, 0)) holds voxels
    1 apart along its other axis and sqrt(2) apart along the diagonal; in an isotropic material it
    shows the same structure as any other section, at those spacings. So a crop is ``crop`` rows
    of the image at unit spacing and ``crop`` columns sqrt(2) apart (nearest pixel, random
    sub-pixel phase), the image transposed at random first (its rows and columns are equivalent
    in an isotropic material). ``image``: encoded ``(C, H, W)``; or ``(C, Z, Y, X)``, a volume,
    whose real diagonal planes are cut instead. Used by SliceGAN's ``critic_diagonal``.
    """

    def __init__(self, image: np.ndarray, crop: int):
        self.image = torch.from_numpy(np.ascontiguousarray(image))
        self.crop = crop
        self.is_volume = image.ndim == 4
        self.span = diagonal_span(crop)  # image pixels a crop's columns cover (2D image)
        shape = image.shape[1:]
        if self.is_volume:
            self.orientations = (False,) if min(shape) >= crop else ()
        else:
            self.orientations = diagonal_orientations(shape, crop)
        if not self.orientations:
            need = f"{crop}x{crop}x{crop}" if self.is_volume else f"{crop}x{self.span}"
            raise MatgenInputError(
                f"The training image is {'x'.join(map(str, shape))} px but diagonal crops "
                f"(critic_diagonal) need {need} px; use a larger image, a smaller crop (img_size), "
                f"or critic_diagonal=false.")

    def sample(self, n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        """Return ``n`` random crops as float32 ``(n, C, crop, crop)``: rows at unit spacing,
        columns along a diagonal (sqrt(2) apart)."""
        if self.is_volume:
            return torch.stack([self._volume_crop(generator) for _ in range(n)])
        c, span = self.crop, self.span
        steps = torch.arange(c, dtype=torch.float64) * DIAGONAL_SPACING
        crops = []
        for _ in range(n):
            pick = int(torch.randint(0, len(self.orientations), (), generator=generator))
            image = self.image.transpose(1, 2) if self.orientations[pick] else self.image
            h, w = image.shape[-2:]
            y = int(torch.randint(0, h - c + 1, (), generator=generator))
            x = int(torch.randint(0, w - span + 1, (), generator=generator))
            cols = x + torch.floor(torch.rand((), generator=generator, dtype=torch.float64) + steps).long()
            crops.append(image[:, y:y + c][:, :, cols])
        return torch.stack(crops)

    def _volume_crop(self, generator) -> torch.Tensor:
        c = self.crop
        free = int(torch.randint(0, 3, (), generator=generator))
        vol = self.image.movedim(1 + free, 1)  # (C, free, a, b)
        if torch.rand((), generator=generator) < 0.5:
            vol = vol.flip(3)
        p, a, b = (int(torch.randint(0, s - c + 1, (), generator=generator)) for s in vol.shape[1:])
        t = torch.arange(c)
        return vol[:, p:p + c][:, :, a + t, b + t]


def diagonal_orientations(shape: tuple[int, int], crop: int) -> tuple[bool, ...]:
    """The orientations of an (H, W) image that hold a diagonal crop: False = columns along its
    width, True = transposed; empty when the image is too small (``crop`` rows and
    ``diagonal_span(crop)`` columns)."""
    h, w = shape
    span = diagonal_span(crop)
    return tuple(t for t, (rows, cols) in ((False, (h, w)), (True, (w, h))) if rows >= crop and cols >= span)


def diagonal_span(crop: int) -> int:
    """Image pixels that ``crop`` samples sqrt(2) apart can reach: the width a training image needs
    for diagonal crops (45 px for 32 px crops, 91 px for 64 px)."""
    return int(np.floor(1 + (crop - 1) * DIAGONAL_SPACING)) + 1


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
