"""Reading micrographs, segmenting them, and writing images and volumes.

Conventions (as in scikit-image): arrays are numpy, spatial axes come first in (H, W) or
(Z, Y, X) order, colour is a trailing axis of length 3, and lengths are in pixels unless a
``voxel_size`` and ``unit`` say otherwise.

Modules (every public name is re-exported here, so ``from matgen_core import io`` is enough):

micrograph
    ``Micrograph``: an n-phase (segmented) image with labels 0..n-1, a grayscale image or a
    colour image, with its voxel size, unit and phase table.
read
    ``read_micrograph`` turns any PNG/JPG/BMP/TIFF (2D or 3D stack) or .npy file into a
    ``Micrograph``; ``detect_kind``; ``require_phases`` checks that training data is segmented;
    ``read_volume`` and ``read_phase_table`` read back what ``write_tiff``/``write_npy`` wrote;
    ``declared_phase_count``: the phases one of our files stands for (absent ones included).
segmentation
    ``segment``: multi-Otsu (grayscale) or k-means (colour) into 2..``MAX_SEGMENT_PHASES`` phases.
write
    ``write_tiff`` (ImageJ-compatible, with voxel size and phase table; BigTIFF when large),
    ``write_npy``, ``write_vti`` (ParaView), ``to_bytes`` (any of these, or PNG, in memory),
    the streamed writers ``write_bigtiff_planes`` / ``write_npy_slabs``, and the generation
    record (``set_generation_info``, ``read_generation_info``, ``generation_sidecar``).
prepare
    ``crop_downsample`` and ``prepare_dataset``: raw micrographs -> a training dataset.
units
    ``UNIT_ALIASES`` and ``canonical_unit``: "micron" -> "um", "" -> "px".
"""
from __future__ import annotations

from .micrograph import Micrograph
from .prepare import crop_downsample, prepare_dataset
from .read import declared_phase_count, detect_kind, read_micrograph, read_phase_table, read_volume, require_phases
from .segmentation import MAX_SEGMENT_PHASES, segment
from .units import UNIT_ALIASES, canonical_unit
from .write import (
    generation_json,
    generation_sidecar,
    needs_bigtiff,
    read_generation_info,
    set_generation_info,
    to_bytes,
    write_bigtiff_planes,
    write_npy,
    write_npy_slabs,
    write_tiff,
    write_vti,
)

__all__ = [
    "Micrograph", "read_micrograph", "detect_kind", "require_phases", "read_volume", "read_phase_table",
    "declared_phase_count",
    "segment", "MAX_SEGMENT_PHASES", "write_tiff", "write_npy", "write_vti", "to_bytes", "needs_bigtiff",
    "write_bigtiff_planes", "write_npy_slabs", "generation_json", "generation_sidecar", "set_generation_info",
    "read_generation_info", "crop_downsample", "prepare_dataset", "UNIT_ALIASES", "canonical_unit",
]
