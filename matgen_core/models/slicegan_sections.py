"""The 2D sections of generated volumes that SliceGAN's critics judge, and their orientations.

Shapes: volumes (B, C, Z, Y, X); sections (N, C, H, W). Orthogonal slices (``slices``) go to the
critic of each slicing direction; the face-diagonal planes (``diagonal_sections``) to the extra
critic of ``critic_diagonal``, compared with ``data.DiagonalCropSampler`` crops.
"""
from __future__ import annotations

import torch


def slices(volumes: torch.Tensor, axis: int, count: int | None = None,
           generator: torch.Generator | None = None) -> torch.Tensor:
    """Cut volumes (B, C, Z, Y, X) into 2D slices perpendicular to ``axis`` (0=Z, 1=Y, 2=X).

    Returns (B * n, C, h, w): all slices (``count`` None) or ``count`` random ones per volume.
    """
    b, c = volumes.shape[:2]
    moved = volumes.movedim(2 + axis, 1)  # (B, L, C, h, w)
    if count is not None and count < moved.shape[1]:
        idx = torch.stack([torch.randperm(moved.shape[1], generator=generator)[:count] for _ in range(b)])
        moved = moved[torch.arange(b)[:, None], idx.to(moved.device)]
    return moved.reshape(-1, c, *moved.shape[-2:]).contiguous(memory_format=torch.channels_last)


DIAGONAL = 3  # the slicing "direction" of the diagonal critic (critic_diagonal): after Z, Y, X


def diagonal_sections(volumes: torch.Tensor) -> torch.Tensor:
    """The six face-diagonal planes of cubic volumes (B, C, L, L, L): (B * 6, C, L, L).

    For each axis (rows of the image, voxel spacing 1), the plane through the volume's diagonal
    and its anti-diagonal in the other two axes (columns, spacing sqrt(2)): sections no
    orthogonal slice shows, compared with ``data.DiagonalCropSampler`` crops (critic_diagonal).
    """
    b, c = volumes.shape[:2]
    planes = []
    for axis in range(3):
        moved = volumes.movedim(2 + axis, 2)  # (B, C, rows, a, b)
        planes.append(moved.diagonal(dim1=-2, dim2=-1))
        planes.append(moved.flip(-1).diagonal(dim1=-2, dim2=-1))
    out = torch.stack(planes, dim=1)  # (B, 6, C, rows, L)
    return out.reshape(b * 6, c, *out.shape[-2:]).contiguous(memory_format=torch.channels_last)


def dihedral(crops: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Each crop (N, C, H, W) in one of the 8 orientations of the square (random transpose and
    flips): for an isotropic material the training image's own orientation carries no meaning,
    and without this the axis that is a row in one slicing direction and a column in another (Y)
    must fit two different in-plane orientations (augment_dihedral, isotropic runs only)."""
    flips = torch.randint(0, 2, (3, crops.shape[0]), generator=generator).bool().to(crops.device)
    out = torch.where(flips[0, :, None, None, None], crops.transpose(2, 3), crops)
    out = torch.where(flips[1, :, None, None, None], out.flip(2), out)
    return torch.where(flips[2, :, None, None, None], out.flip(3), out)
