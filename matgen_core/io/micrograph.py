"""``Micrograph``: a 2D image or 3D volume read from a file, with what is known about it."""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Micrograph:
    """A 2D image or 3D volume read from a file, with what is known about it.

    Attributes
    ----------
    labels : ndarray of uint8 or None
        Phase labels 0..n-1, shape (H, W) or (Z, Y, X). Set when ``kind == "nphase"``, else None.
    image : ndarray of float32 in [0, 1]
        (H, W) or (Z, Y, X) for grayscale, (H, W, 3) for colour. For n-phase images it is
        ``labels / (n - 1)``, a grayscale picture of the labels.
    kind : str
        "nphase" (segmented), "gray" or "color".
    phase_values : list
        Original pixel value of each label (label i was value ``phase_values[i]`` in the file);
        an (R, G, B) tuple per label for colour n-phase images. Empty unless n-phase.
    voxel_size : float or None
        Edge length of one pixel/voxel in ``unit``; None when the file does not say.
    unit : str
        Unit of ``voxel_size``, e.g. "um"; "px" when unknown.
    source : str
        File name the data came from ("" for arrays).
    """

    labels: np.ndarray | None
    image: np.ndarray
    kind: str
    phase_values: list = field(default_factory=list)
    voxel_size: float | None = None
    unit: str = "px"
    source: str = ""

    @property
    def n_phases(self) -> int:
        """Number of phases; 0 unless the image is n-phase."""
        return len(self.phase_values) if self.kind == "nphase" else 0

    @property
    def ndim(self) -> int:
        """Number of spatial dimensions: 2 for an image, 3 for a volume."""
        return self.image.ndim - (self.kind == "color")

    @property
    def shape(self) -> tuple[int, ...]:
        """Spatial shape: (H, W) or (Z, Y, X)."""
        return self.image.shape[: self.ndim]
