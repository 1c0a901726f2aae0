"""Reading micrographs, segmenting them, and writing images and volumes.

Conventions (as in scikit-image): arrays are numpy, spatial axes come first in (H, W) or
(Z, Y, X) order, colour is a trailing axis of length 3, and lengths are in pixels unless a
``voxel_size`` and ``unit`` say otherwise.

Reading
    ``read_micrograph`` turns any PNG/JPG/BMP/TIFF (2D or 3D stack) or .npy file into a
    ``Micrograph``: an n-phase (segmented) image with labels 0..n-1, a grayscale image or a colour
    image. ``require_phases`` checks that training data is segmented; ``segment`` segments it.
Writing
    ``write_tiff`` (ImageJ-compatible, with voxel size and phase table), ``write_npy``,
    ``write_vti`` (ParaView), ``to_bytes`` (any of these, or PNG, in memory) and ``read_volume``.
"""
from __future__ import annotations

import io
import json
import math
import os
import tempfile
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

from .errors import MatgenInputError

MAX_SEGMENT_PHASES = 8  # segment() limit: multi-Otsu cost grows steeply with the number of classes
_BIGTIFF_BYTES = 2**31  # write_tiff switches to BigTIFF above this many bytes of pixel data
_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_NPY_MAGIC = b"\x93NUMPY"
_UNIT_ALIASES = {
    "micron": "um", "microns": "um", "micrometer": "um", "micrometre": "um", "um": "um",
    "\u00b5m": "um", "\u03bcm": "um", "\\u00b5m": "um",
    "nanometer": "nm", "nanometre": "nm", "nm": "nm", "millimeter": "mm", "millimetre": "mm", "mm": "mm",
    "pixel": "px", "pixels": "px", "px": "px", "": "px",
}


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


# --------------------------------------------------------------------------------------------
# Reading


def read_micrograph(path, max_phases: int = 8, max_pixels: int | None = None) -> Micrograph:
    """Read a micrograph file and work out what it holds.

    Parameters
    ----------
    path : str or Path
        PNG, JPG, BMP (or anything else Pillow reads), TIFF (2D image or 3D stack, also BigTIFF)
        or .npy. 8/16-bit integer, float, grayscale, RGB and RGBA data are accepted; the file
        type is recognised from its content, not its extension.
    max_phases : int
        An image with at most this many distinct values (colours, for colour images) is taken as
        already segmented ("nphase"); otherwise it is "gray" or "color".
    max_pixels : int or None
        Refuse files with more pixels (voxels) than this, checked from the file's header before
        anything is decoded; None: ``$MATGEN_MAX_PIXELS`` or ``limits.DEFAULT_MAX_PIXELS``.

    Returns
    -------
    Micrograph
        Phase values are sorted (colours by R, then G, then B) and mapped to labels 0..n-1.
        A constant alpha channel is dropped; an RGB image with equal channels is grayscale; axes
        of length 1 are squeezed, so a one-slice stack is a 2D image. The voxel size and unit
        come from TIFF metadata (ImageJ calibration, or a centimetre resolution tag); DPI values
        in inches are ignored, since they are usually print settings, not pixel sizes. For a
        TIFF written by ``write_tiff`` the stored phase table gives the phase values.
        uint8 images are scaled to [0, 1] by 1/255; other types are stretched from their
        minimum to their maximum.

    Raises
    ------
    MatgenInputError
        Missing, empty, corrupt or unsupported file; an image with transparency that varies, too
        many channels or dimensions, a colour 3D stack, NaN values; a constant (single-phase) image.
    """
    if int(max_phases) < 2:
        raise MatgenInputError(f"max_phases={max_phases} is too small; use at least 2.")
    path = _existing_file(path)
    array, colour, meta = _load(path, max_pixels)
    array, colour = _tidy(array, colour, path.name)
    return _to_micrograph(array, colour, int(max_phases), meta, path.name)


def detect_kind(array, max_phases: int = 8) -> str:
    """Return "nphase", "gray" or "color" for an image array.

    ``array`` is (H, W) or (Z, Y, X) grayscale or (H, W, 3) colour (a 3D array whose last axis
    has length 3 is taken as colour). It is "nphase" when it has at most ``max_phases`` distinct
    values (colours); an RGB array with three equal channels counts as grayscale. No validation:
    a constant array is "nphase" here, while ``read_micrograph`` rejects it.
    """
    array = np.asarray(array)
    colour = _looks_colour(array)
    if colour and _equal_channels(array):
        array, colour = array[..., 0], False
    keys = _colour_codes(array) if colour else array
    if _unique_upto(keys, max_phases) is not None:
        return "nphase"
    return "color" if colour else "gray"


def require_phases(m: Micrograph) -> Micrograph:
    """Return ``m`` if it is segmented (n-phase); otherwise raise a MatgenInputError saying how to segment it."""
    if m.kind == "nphase":
        return m
    name = m.source or "The image"
    if m.kind == "color":
        codes = _colour_codes(np.round(m.image * 255).astype(np.uint8))
        what = f"a colour image with {np.unique(codes).size} colours"
    else:
        what = f"a grayscale image with {np.unique(m.image).size} grey levels"
    raise MatgenInputError(
        f"{name} is {what}, not a segmented n-phase image; segment it first: re-run with "
        f"--segment N (N = number of phases, e.g. --segment 2), or call segment() or use the Dataset page."
    )


def _existing_file(path) -> Path:
    path = Path(path)
    if not path.exists():
        raise MatgenInputError(f"File not found: {path}; check the path.")
    if path.is_dir():
        raise MatgenInputError(f"{path} is a folder, not a file; give the path of an image file.")
    if path.stat().st_size == 0:
        raise MatgenInputError(f"{path.name} is empty (0 bytes); export or download it again.")
    return path


def _load(path: Path, max_pixels: int | None = None) -> tuple[np.ndarray, bool, dict]:
    """Raw pixel array, whether its last axis holds channels, and metadata from the file.

    The pixel count is checked against ``limits.max_pixels(max_pixels)`` from the header (TIFF
    series shape, .npy header, Pillow's size) before the pixels are decoded.
    """
    with path.open("rb") as fh:
        head = fh.read(8)
    meta = {"voxel_size": None, "unit": "px", "phase_values": None}
    try:
        if head[:4] in _TIFF_MAGIC:
            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                axes = series.axes
                _check_pixels(series.shape, axes, path.name, max_pixels)
                array = series.asarray()
                meta = _tiff_metadata(tif)
            colour = "S" in axes
            if colour:
                array = np.moveaxis(array, axes.index("S"), -1)
        elif head[:6] == _NPY_MAGIC:
            shape = _npy_shape(path)
            colour_npy = len(shape) == 3 and shape[-1] in (3, 4)
            _check_pixels(shape, "YXS" if colour_npy else "", path.name, max_pixels)
            array = np.load(path, allow_pickle=False)
            colour = _looks_colour(array) or (array.ndim == 3 and array.shape[-1] == 4)
        else:
            with warnings.catch_warnings():  # our own limit applies; Pillow's warning would print
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                with Image.open(path) as im:
                    _check_pixels((im.size[1], im.size[0]), "YX", path.name, max_pixels)
                    im.load()
                    array = np.asarray(_pil_to_array_mode(im))
            colour = array.ndim == 3
    except MatgenInputError:
        raise
    except Image.DecompressionBombError as err:
        raise MatgenInputError(
            f"{path.name} has too many pixels for the image decoder ({err}); crop or downsample it "
            f"first, or save it as TIFF.") from None
    except UnidentifiedImageError:
        raise MatgenInputError(
            f"{path.name} is not an image that can be read; use a PNG, JPG, BMP or TIFF file."
        ) from None
    except MemoryError:
        raise MatgenInputError(
            f"{path.name} does not fit in memory; crop or downsample it first.") from None
    except Exception as err:  # every decoder has its own errors for a damaged file
        raise MatgenInputError(
            f"{path.name} could not be read ({type(err).__name__}: {err}); the file may be damaged "
            f"or truncated, so export it again as PNG or TIFF."
        ) from None
    return array, colour, meta


def _check_pixels(shape, axes: str, name: str, max_pixels: int | None) -> None:
    """Pixel-count limit on the spatial axes of ``shape`` (a channel axis ``S`` is not counted)."""
    from .limits import check_pixel_count

    if axes and len(axes) == len(shape):
        shape = [n for n, ax in zip(shape, axes) if ax != "S"]
    check_pixel_count(shape, name, max_pixels)


def _npy_shape(path: Path) -> tuple[int, ...]:
    """The array shape in a .npy header, without reading the data."""
    with path.open("rb") as fh:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, _ = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, _, _ = np.lib.format.read_array_header_2_0(fh)
    return tuple(shape)


def _pil_to_array_mode(im: Image.Image) -> Image.Image:
    """Convert Pillow modes numpy cannot take as pixel values (palette, CMYK, ...) to RGB(A)."""
    if im.mode == "P":
        return im.convert("RGBA" if "transparency" in im.info else "RGB")
    if im.mode == "PA":
        return im.convert("RGBA")
    if im.mode in ("CMYK", "YCbCr", "LAB", "HSV"):
        return im.convert("RGB")
    return im


def _tidy(array: np.ndarray, colour: bool, name: str) -> tuple[np.ndarray, bool]:
    """Drop a constant alpha channel, make equal-channel RGB grayscale, squeeze length-1 axes, check dims."""
    shape = array.shape
    if array.dtype == bool:
        array = array.astype(np.uint8)
    if array.dtype.kind not in "uif":
        raise MatgenInputError(
            f"{name} holds {array.dtype} data, not pixel values; save it as an 8/16-bit or float image."
        )
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise MatgenInputError(f"{name} contains NaN or infinite values; replace them with numbers and save it again.")
    if colour:
        if array.shape[-1] in (2, 4):  # gray + alpha, RGBA
            alpha = array[..., -1]
            if alpha.min() != alpha.max():
                raise MatgenInputError(
                    f"{name} has a transparency (alpha) channel that varies, so some pixels are hidden; "
                    f"flatten it onto a background and save it without transparency."
                )
            array = array[..., :-1]
        if array.shape[-1] == 1:
            array, colour = array[..., 0], False
        elif array.shape[-1] != 3:
            raise MatgenInputError(f"{name} has {array.shape[-1]} colour channels; save it as grayscale or RGB.")
        elif _equal_channels(array):
            array, colour = array[..., 0], False
    spatial = array.shape[:-1] if colour else array.shape
    kept = tuple(s for s in spatial if s > 1)
    array = array.reshape(kept + ((3,) if colour else ()))
    if len(kept) < 2:
        raise MatgenInputError(
            f"{name} has shape {shape}, which is not a 2D image or a 3D stack; a micrograph needs "
            f"at least 2 pixels along at least 2 axes."
        )
    if len(kept) > 3:
        raise MatgenInputError(
            f"{name} has {len(kept)} dimensions (shape {shape}); save a single 2D image or a 3D Z-stack "
            f"without time or channel axes."
        )
    if colour and len(kept) == 3:
        raise MatgenInputError(
            f"{name} is a 3D colour stack, which is not supported; convert it to grayscale or to a "
            f"segmented (labelled) stack first."
        )
    return array, colour


def _to_micrograph(array: np.ndarray, colour: bool, max_phases: int, meta: dict, name: str) -> Micrograph:
    keys = _colour_codes(array) if colour else array
    values = _unique_upto(keys, max_phases)
    common = dict(voxel_size=meta["voxel_size"], unit=meta["unit"], source=name)
    if values is None:
        return Micrograph(labels=None, image=_unit_float(array), kind="color" if colour else "gray", **common)
    n = values.size
    if n == 1:
        raise MatgenInputError(
            f"{name} has only one phase (every pixel is {_phase_value(values[0], colour)}); a micrograph "
            f"needs at least 2 phases, so check that this is the right file and that it is not blank."
        )
    table = meta["phase_values"]
    if not colour and table and len(table) >= 2 and values.dtype.kind in "iu" and int(values.max()) < len(table):
        # labels written by write_tiff with its phase table: keep them as written (label i is
        # phase i, phase_values[i] its original value) even when a phase is absent from the image
        n = len(table)
        labels = array.astype(np.uint8)
        phase_values = list(table)
    else:
        labels = np.searchsorted(values, keys).astype(np.uint8)
        phase_values = [_phase_value(v, colour) for v in values]
    image = labels.astype(np.float32) / (n - 1)
    return Micrograph(labels=labels, image=image, kind="nphase", phase_values=phase_values, **common)


def _looks_colour(array: np.ndarray) -> bool:
    return array.ndim == 3 and array.shape[-1] == 3


def _equal_channels(rgb: np.ndarray) -> bool:
    return bool(np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]))


def _colour_codes(rgb: np.ndarray) -> np.ndarray:
    """One uint64 per pixel packing R, G, B (21 bits each); non-8/16-bit data is first scaled to 16 bits."""
    if rgb.dtype not in (np.uint8, np.uint16):
        rgb = np.round(_unit_float(rgb) * 65535).astype(np.uint16)
    c = rgb.astype(np.uint64)
    return (c[..., 0] << np.uint64(42)) | (c[..., 1] << np.uint64(21)) | c[..., 2]


def _phase_value(value, colour: bool):
    """A distinct pixel value (or packed colour code) as a plain, JSON-friendly Python value."""
    if colour:
        code = int(value)
        return tuple((code >> shift) & 0x1FFFFF for shift in (42, 21, 0))
    return value.item()


def _unique_upto(values: np.ndarray, limit: int) -> np.ndarray | None:
    """Sorted distinct entries of ``values``, or None as soon as it is clear there are more than ``limit``."""
    flat = values.ravel()
    if flat.dtype == np.uint8:
        found = np.flatnonzero(np.bincount(flat, minlength=256)).astype(np.uint8)
    else:
        # A strided probe rejects images with many values without sorting all of them.
        if np.unique(flat[:: max(1, flat.size // 65536)]).size > limit:
            return None
        found = np.unique(flat)
    return found if found.size <= limit else None


def _unit_float(array: np.ndarray) -> np.ndarray:
    """float32 in [0, 1]: uint8 divided by 255, anything else stretched from its min to its max."""
    if array.dtype == np.uint8:
        return array.astype(np.float32) / 255
    lo, hi = float(array.min()), float(array.max())
    scaled = (array.astype(np.float64) - lo) / (hi - lo if hi > lo else 1.0)
    return scaled.astype(np.float32)


def _tiff_metadata(tif: tifffile.TiffFile) -> dict:
    """voxel_size, unit and phase_values of a TIFF: from write_tiff's record, else ImageJ / resolution tags."""
    imagej = tif.imagej_metadata or {}
    record = None
    if "Info" in imagej:
        record = _parse_record(imagej["Info"])
    elif tif.shaped_metadata:
        record = tif.shaped_metadata[0].get("matgen")
    if record is not None:
        values = record.get("phase_values")
        return {
            "voxel_size": record.get("voxel_size"),
            "unit": record.get("unit") or "px",
            "phase_values": [tuple(v) if isinstance(v, list) else v for v in values] if values else None,
        }
    meta = {"voxel_size": None, "unit": "px", "phase_values": None}
    tags = tif.pages[0].tags
    if "XResolution" not in tags:
        return meta
    numerator, denominator = tags["XResolution"].value
    if not numerator or not denominator:
        return meta
    pixel = denominator / numerator  # resolution is pixels per unit
    resolution_unit = tags["ResolutionUnit"].value if "ResolutionUnit" in tags else 1
    unit = _UNIT_ALIASES.get(str(imagej.get("unit", "")).lower(), str(imagej.get("unit")))
    if unit != "px":
        meta.update(voxel_size=pixel, unit=unit)
    elif resolution_unit == 3:  # centimetre
        meta.update(voxel_size=pixel * 1e4, unit="um")
    return meta


def _parse_record(info: str) -> dict | None:
    for line in str(info).splitlines():
        if line.startswith("matgen="):
            return json.loads(line[len("matgen="):])
    return None


# --------------------------------------------------------------------------------------------
# Segmentation


def segment(image, n_phases: int) -> Micrograph:
    """Segment a grayscale or colour image into ``n_phases`` phases.

    Parameters
    ----------
    image : Micrograph or ndarray
        A Micrograph (its ``image`` is used; voxel size, unit and source are kept), or an array
        (H, W) / (Z, Y, X) grayscale or (H, W, 3) colour of any numeric type.
    n_phases : int
        2 .. MAX_SEGMENT_PHASES.

    Returns
    -------
    Micrograph
        kind "nphase". Labels are ordered from dark to bright. ``phase_values`` is the mean
        grey level of each phase on a 0-255 scale (colour: the mean (R, G, B), 0-255).

    Notes
    -----
    Grayscale: multi-Otsu thresholds (``skimage.filters.threshold_multiotsu``) on a 256-bin
    histogram, fewer bins for 5+ phases to stay fast. Colour: k-means on RGB (k-means++ start,
    fitted on at most 20,000 pixels with a fixed seed, so results are reproducible), clusters
    sorted by luminance. A 512x512 image takes well under a second either way.
    """
    if isinstance(image, Micrograph):
        array, colour = image.image, image.kind == "color"
        common = dict(voxel_size=image.voxel_size, unit=image.unit, source=image.source)
    else:
        array = np.asarray(image)
        colour = _looks_colour(array)
        if array.dtype.kind not in "uifb" or array.ndim not in (2, 3):
            raise MatgenInputError(
                f"Cannot segment an array of shape {array.shape} and type {array.dtype}; pass a 2D or 3D "
                f"grayscale or an (H, W, 3) colour image."
            )
        if array.dtype.kind == "f" and not np.isfinite(array).all():
            raise MatgenInputError("The image contains NaN or infinite values; replace them before segmenting.")
        array = _unit_float(array.astype(np.uint8) if array.dtype == bool else array)
        common = {}
    if not isinstance(n_phases, (int, np.integer)) or not 2 <= n_phases <= MAX_SEGMENT_PHASES:
        raise MatgenInputError(
            f"Cannot segment into {n_phases} phases; choose a whole number from 2 to {MAX_SEGMENT_PHASES}."
        )
    n = int(n_phases)
    labels, phase_values = _kmeans_segment(array, n) if colour else _otsu_segment(array, n)
    return Micrograph(
        labels=labels, image=labels.astype(np.float32) / (n - 1), kind="nphase", phase_values=phase_values, **common
    )


def _otsu_segment(gray: np.ndarray, n: int) -> tuple[np.ndarray, list]:
    nbins = 256 if n <= 4 else 64 if n == 5 else 32
    try:
        from skimage.filters import threshold_multiotsu  # ~1 s import: only when segmenting

        thresholds = threshold_multiotsu(gray, classes=n, nbins=nbins)
    except ValueError:  # fewer occupied histogram bins than classes
        raise MatgenInputError(
            f"The image has too few distinct grey levels to split into {n} phases; choose fewer phases."
        ) from None
    labels = np.digitize(gray, thresholds).astype(np.uint8)
    counts = np.bincount(labels.ravel(), minlength=n)
    means = np.bincount(labels.ravel(), weights=gray.ravel(), minlength=n) / np.maximum(counts, 1)
    values = [int(v) for v in np.round(means * 255)]
    if any(b <= a for a, b in zip(values, values[1:])):  # low contrast: keep the values distinct
        values = [int(v) for v in np.round(np.linspace(0, 255, n))]
    return labels, values


def _kmeans_segment(rgb: np.ndarray, n: int, iterations: int = 30) -> tuple[np.ndarray, list]:
    pixels = rgb.reshape(-1, 3).astype(np.float32)
    rng = np.random.default_rng(0)
    sample = pixels[rng.choice(len(pixels), size=min(len(pixels), 20000), replace=False)]
    centres = sample[[rng.integers(len(sample))]]
    for _ in range(1, n):  # k-means++: each new centre far from the ones already chosen
        dist = _nearest(sample, centres)[1]
        if dist.sum() == 0:
            raise MatgenInputError(f"The image has fewer than {n} distinct colours; choose fewer phases.")
        centres = np.vstack([centres, sample[rng.choice(len(sample), p=dist / dist.sum())]])
    for _ in range(iterations):
        assign = _nearest(sample, centres)[0]
        counts = np.bincount(assign, minlength=n)[:, None]
        sums = np.stack([np.bincount(assign, weights=sample[:, c], minlength=n) for c in range(3)], axis=1)
        moved = np.where(counts > 0, sums / np.maximum(counts, 1), centres).astype(np.float32)
        if np.allclose(moved, centres, atol=1e-4):
            break
        centres = moved
    centres = centres[np.argsort(centres @ np.array([0.299, 0.587, 0.114], np.float32), kind="stable")]
    labels = _nearest(pixels, centres)[0].astype(np.uint8).reshape(rgb.shape[:-1])
    return labels, [tuple(int(c) for c in np.round(centre * 255)) for centre in centres]


def _nearest(points: np.ndarray, centres: np.ndarray, chunk: int = 32768) -> tuple[np.ndarray, np.ndarray]:
    """Index of the nearest centre for each point and the squared distance to it, in chunks to bound memory."""
    index = np.empty(len(points), dtype=np.intp)
    best = np.empty(len(points), dtype=np.float32)
    for start in range(0, len(points), chunk):
        diff = points[start : start + chunk, None, :] - centres[None]
        dist = np.einsum("ijk,ijk->ij", diff, diff)
        index[start : start + chunk] = nearest = dist.argmin(1)
        best[start : start + chunk] = np.take_along_axis(dist, nearest[:, None], 1)[:, 0]
    return index, best


# --------------------------------------------------------------------------------------------
# Writing


def needs_bigtiff(shape, colour: bool = False) -> bool:
    """True when uint8 pixel data of ``shape`` (with a trailing RGB axis of 3 if ``colour``) is
    over ``_BIGTIFF_BYTES``: such a TIFF must be a BigTIFF (which ImageJ's flavour cannot be)."""
    return int(np.prod([int(v) for v in shape])) * (3 if colour else 1) > _BIGTIFF_BYTES


def _tiff_record(voxel_size, unit, phase_values, colour: bool, generation=None) -> tuple[dict, dict]:
    """The ``matgen`` record of a TIFF (voxel size, unit, phase table[, generation]) and the
    tifffile keyword arguments (photometric, resolution) that go with it."""
    if voxel_size is not None and not (math.isfinite(voxel_size) and voxel_size > 0):
        raise MatgenInputError(f"voxel_size={voxel_size} is not a positive number; give the voxel edge length or None.")
    unit = _UNIT_ALIASES.get(str(unit).lower(), str(unit)) if voxel_size is not None else "px"
    record = {
        "voxel_size": None if voxel_size is None else float(voxel_size),
        "unit": unit,
        "phase_values": None if phase_values is None else [np.asarray(v).tolist() for v in phase_values],
    }
    if generation is not None:
        record["generation"] = generation
    kwargs = dict(photometric="rgb" if colour else "minisblack")
    if voxel_size is not None:
        kwargs.update(resolution=(1 / voxel_size, 1 / voxel_size), resolutionunit=tifffile.RESUNIT.NONE)
    return record, kwargs


def write_tiff(path, volume, voxel_size: float | None = None, unit: str = "px", phase_values=None,
               generation: dict | None = None) -> None:
    """Write a 2D image, 3D volume or stack of 2D samples as an ImageJ-compatible TIFF.

    Parameters
    ----------
    path : str, Path or binary file object
        Parent folders are created.
    volume : ndarray
        (H, W) or (Z, Y, X) labels or grey levels; a (K, H, W) stack of 2D samples is written
        like a Z stack. A last axis of length 3 means RGB: (H, W, 3) or (Z, Y, X, 3). Stored as
        uint8: bool and integers 0..255 as they are, floats in [0, 1] scaled to 0..255.
    voxel_size : float, optional
        Edge length of one voxel in ``unit``; stored as ImageJ calibration (resolution tags and
        z spacing), so ImageJ/Fiji and ``read_volume`` show it.
    unit : str
        e.g. "um", "nm"; "px" when unknown.
    phase_values : list, optional
        Original value of each label (label i -> phase_values[i]); read it back with
        ``read_phase_table``.
    generation : dict, optional
        How a generated volume was made (``generate.generate``'s record: policy, bias, fractions,
        seed, run...); stored in the same record, read back with ``read_generation_info``.

    Notes
    -----
    Voxel size, unit and phase table are also stored as one JSON line ``matgen={...}`` in the
    ImageJ "Info" property. Pixel data over 2 GB is written as BigTIFF, which ImageJ's own
    format cannot be; the same record then goes into the tifffile JSON description.
    """
    data, colour = _as_uint8(volume)
    record, kwargs = _tiff_record(voxel_size, unit, phase_values, colour, generation)
    unit = record["unit"]
    spatial_ndim = data.ndim - colour
    axes = ("ZYX" if spatial_ndim == 3 else "YX") + ("S" if colour else "")
    if isinstance(path, (str, os.PathLike)):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    if needs_bigtiff(data.shape, False):
        tifffile.imwrite(path, data, bigtiff=True, metadata={"axes": axes, "matgen": record}, **kwargs)
        return
    metadata = {"axes": axes, "Info": "matgen=" + json.dumps(record)}
    if voxel_size is not None:
        metadata.update(spacing=float(voxel_size), unit="micron" if unit == "um" else unit)
    tifffile.imwrite(path, data, imagej=True, metadata=metadata, **kwargs)


def write_bigtiff_planes(path, planes, shape, voxel_size: float | None = None, unit: str = "px",
                         phase_values=None, colour: bool = False) -> Path:
    """Write uint8 ``planes`` (an iterable of (Y, X[, 3]) arrays, ``shape[0]`` of them) as a
    BigTIFF, plane by plane (the volume is never in memory), with ``write_tiff``'s record in the
    tifffile JSON description. Add the generation record afterwards with ``set_generation_info``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    record, kwargs = _tiff_record(voxel_size, unit, phase_values, colour)
    full = tuple(int(v) for v in shape) + ((3,) if colour else ())
    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        tif.write(planes, shape=full, dtype=np.uint8,
                  metadata={"axes": "ZYXS" if colour else "ZYX", "matgen": record}, **kwargs)
    return path


def write_npy_slabs(path, shape, slabs, dtype=np.uint8) -> None:
    """Write a .npy of ``shape`` from ``slabs`` (arrays along the first axis, in order), header
    first then each slab as it comes (sequential writes; the volume is never in memory)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
              "shape": tuple(int(v) for v in shape)}
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        for slab in slabs:
            f.write(np.ascontiguousarray(slab, dtype=dtype).tobytes())


def generation_sidecar(path) -> Path:
    """The JSON file next to a .npy that holds its generation record: ``vol.npy`` -> ``vol.npy.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def set_generation_info(path, generation: dict) -> None:
    """Record how the generated volume in ``path`` was made, after it was written.

    .npy: a sidecar ``<name>.npy.json``; .tif/.tiff: the ``matgen`` record in the file's
    description is rewritten with a ``generation`` entry (ImageJ Info line or JSON description);
    .vti: use ``write_vti(..., generation=)`` instead (field data ``matgen_generation``).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        generation_sidecar(path).write_text(json.dumps(generation, indent=1))
    elif suffix in (".tif", ".tiff"):
        text = tifffile.tiffcomment(path) or ""
        try:  # tifffile's JSON description (BigTIFF)
            desc = json.loads(text)
            desc.setdefault("matgen", {})["generation"] = generation
            new = json.dumps(desc)
        except json.JSONDecodeError:  # ImageJ: the Info property holds "matgen={...}"
            lines = text.splitlines()
            record = None
            for i, line in enumerate(lines):
                if line.startswith("matgen="):
                    record = json.loads(line[len("matgen="):])
                    record["generation"] = generation
                    lines[i] = "matgen=" + json.dumps(record)
            if record is None:
                raise MatgenInputError(f"{path.name} has no matgen record; write it with write_tiff.")
            new = "\n".join(lines) + ("\n" if text.endswith("\n") else "")
        tifffile.tiffcomment(path, new)
    else:
        raise MatgenInputError(f"Cannot add a generation record to {path.name}; use .tif, .npy or .vti.")


def read_generation_info(path) -> dict | None:
    """How the generated volume in ``path`` was made (the record ``generate`` wrote), or None.

    .tif/.tiff: the ``generation`` entry of the matgen record; .npy: its sidecar
    ``<name>.npy.json``; .vti: the ``matgen_generation`` field data. Keys: ``policy`` ("raw",
    "calibrated" or "steered"), ``bias``, ``generator_fractions``, ``achieved_fractions``,
    ``target_fractions``, ``seed``, ``shape``, ``run``, ``step``, ... (docs/fractions.md).
    """
    path = _existing_file(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        side = generation_sidecar(path)
        return json.loads(side.read_text()) if side.exists() else None
    if suffix in (".tif", ".tiff"):
        with tifffile.TiffFile(path) as tif:
            imagej = tif.imagej_metadata or {}
            record = _parse_record(imagej["Info"]) if "Info" in imagej else (
                tif.shaped_metadata[0].get("matgen") if tif.shaped_metadata else None)
        return (record or {}).get("generation")
    if suffix == ".vti":
        import pyvista

        field = pyvista.read(str(path)).field_data
        return json.loads(str(field["matgen_generation"][0])) if "matgen_generation" in field else None
    raise MatgenInputError(f"{path.name}: generation records are in .tif, .npy (sidecar) and .vti files.")


def read_phase_table(path) -> list | None:
    """The phase table stored by ``write_tiff`` (label i -> original value), or None if there is none."""
    path = _existing_file(path)
    try:
        with tifffile.TiffFile(path) as tif:
            return _tiff_metadata(tif)["phase_values"]
    except tifffile.TiffFileError as err:
        raise MatgenInputError(
            f"{path.name} is not a readable TIFF ({err}); pass a file written by write_tiff."
        ) from None


def read_volume(path, max_pixels: int | None = None) -> tuple[np.ndarray, dict]:
    """Read a .tif/.tiff or .npy volume back as written.

    Returns the array exactly as stored ((H, W), (Z, Y, X), RGB last) and a dict with
    ``voxel_size`` (float or None), ``unit`` ("px" when unknown) and ``phase_values``
    (list or None): from write_tiff's record, else from ImageJ/resolution tags; None/"px" for .npy.
    """
    path = _existing_file(path)
    suffix = path.suffix.lower()
    if suffix not in (".tif", ".tiff", ".npy"):
        raise MatgenInputError(f"{path.name} is not a volume file; read_volume reads .tif, .tiff and .npy files.")
    try:
        if suffix == ".npy":
            _check_pixels(_npy_shape(path), "", path.name, max_pixels)
            return np.load(path, allow_pickle=False), {"voxel_size": None, "unit": "px", "phase_values": None}
        with tifffile.TiffFile(path) as tif:
            _check_pixels(tif.series[0].shape, tif.series[0].axes, path.name, max_pixels)
            return tif.asarray(), _tiff_metadata(tif)
    except MatgenInputError:
        raise
    except Exception as err:  # damaged file: numpy and tifffile raise various errors
        raise MatgenInputError(
            f"{path.name} could not be read ({type(err).__name__}: {err}); the file may be damaged, so write it again."
        ) from None


def write_npy(path, volume, generation: dict | None = None) -> None:
    """Save ``volume`` unchanged (any shape and dtype) as a .npy file; parent folders are created.

    ``generation``: how a generated volume was made, written to the sidecar ``<name>.npy.json``
    (``read_generation_info`` reads it)."""
    if isinstance(path, (str, os.PathLike)):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    np.save(path, np.asarray(volume), allow_pickle=False)
    if generation is not None and isinstance(path, (str, os.PathLike)):
        set_generation_info(path, generation)


def write_vti(path, volume, voxel_size: float | None = 1.0, generation: dict | None = None) -> None:
    """Write a (Z, Y, X) or (H, W) label/grey volume as VTK image data (.vti) for ParaView.

    Each voxel is one cell with value ``phase`` (cell data), so labels stay crisp; ``spacing``
    is ``voxel_size`` (1.0 when None) on every axis. VTK's x axis is the array's last axis.
    ``generation``: how a generated volume was made, as JSON text in the field data
    ``matgen_generation`` (``read_generation_info`` reads it).
    """
    import pyvista  # lazy: VTK is slow to import and only needed here

    volume = np.asarray(volume)
    if volume.ndim == 2:
        volume = volume[np.newaxis]
    if volume.ndim != 3 or volume.dtype.kind not in "uifb":
        raise MatgenInputError(
            f"Cannot write an array of shape {volume.shape} and type {volume.dtype} as VTI; pass a 2D or 3D "
            f"label or grey-level array."
        )
    spacing = 1.0 if voxel_size is None else float(voxel_size)
    grid = pyvista.ImageData(dimensions=np.array(volume.shape[::-1]) + 1, spacing=(spacing,) * 3)
    grid.cell_data["phase"] = volume.astype(np.uint8 if volume.dtype == bool else volume.dtype).ravel(order="C")
    if generation is not None:
        grid.field_data["matgen_generation"] = np.array([json.dumps(generation)])
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    grid.save(str(path))


def to_bytes(volume, fmt: str, *, voxel_size: float | None = None, unit: str = "px", phase_values=None,
             generation: dict | None = None) -> bytes:
    """Encode ``volume`` in memory, e.g. for a download button.

    ``fmt`` is "tif" (``write_tiff``, with all metadata), "npy" (``write_npy``), "vti"
    (``write_vti``, voxel_size only) or "png" (a 2D image, uint8 as for ``write_tiff``; no metadata).
    ``generation``: the generation record, stored in "tif" and "vti" (a .npy download has no room
    for it: its sidecar is a separate file).
    """
    fmt = fmt.lower().lstrip(".")
    buffer = io.BytesIO()
    if fmt in ("tif", "tiff"):
        write_tiff(buffer, volume, voxel_size=voxel_size, unit=unit, phase_values=phase_values,
                   generation=generation)
    elif fmt == "npy":
        write_npy(buffer, volume)
    elif fmt == "png":
        data, colour = _as_uint8(volume)
        if data.ndim - colour != 2:
            raise MatgenInputError(
                f"PNG holds one 2D image but the array has shape {data.shape}; use tif or npy for volumes."
            )
        Image.fromarray(data).save(buffer, format="PNG")
    elif fmt == "vti":
        with tempfile.TemporaryDirectory() as folder:
            target = Path(folder) / "volume.vti"
            write_vti(target, volume, voxel_size=voxel_size, generation=generation)
            return target.read_bytes()
    else:
        raise MatgenInputError(f"Unknown format '{fmt}'; choose tif, npy, vti or png.")
    return buffer.getvalue()


def _as_uint8(volume) -> tuple[np.ndarray, bool]:
    """(uint8 array, is_colour): bool/ints 0..255 unchanged, floats in [0, 1] scaled by 255."""
    data = np.asarray(volume)
    colour = data.ndim in (3, 4) and data.shape[-1] == 3
    if data.ndim - colour not in (2, 3) or data.size == 0:
        raise MatgenInputError(
            f"Cannot write an array of shape {data.shape}; pass (H, W), (Z, Y, X) or (K, H, W), "
            f"optionally with a last axis of 3 for RGB."
        )
    if data.dtype == np.uint8:
        return data, colour
    if data.dtype == bool:
        return data.astype(np.uint8), colour
    lo, hi = data.min(), data.max()
    if data.dtype.kind in "ui" and lo >= 0 and hi <= 255:
        return data.astype(np.uint8), colour
    if data.dtype.kind == "f" and np.isfinite(data).all() and lo >= 0 and hi <= 1:
        return np.round(data * 255).astype(np.uint8), colour
    raise MatgenInputError(
        f"Values {lo}..{hi} ({data.dtype}) do not fit in 8 bits; pass labels/grey levels 0..255 "
        f"or a float image in [0, 1]."
    )


# -- preparing a training dataset -------------------------------------------------------------


def crop_downsample(m, top: int = 0, bottom: int = 0, left: int = 0, right: int = 0,
                    factor: int = 1):
    """Crop pixels off each edge of a 2D micrograph, then downsample by an integer factor.

    Labels are block-mode pooled (the most frequent phase in each block), images block-averaged.
    The voxel size grows by the factor.
    """
    if (top, bottom, left, right, factor) == (0, 0, 0, 0, 1):
        return m
    if m.ndim != 2:
        raise MatgenInputError("Cropping and downsampling apply to 2D images; this is a 3D volume.")
    h, w = m.shape
    if top + bottom >= h - 8 or left + right >= w - 8:
        raise MatgenInputError(f"Cropping {top}+{bottom} rows and {left}+{right} columns leaves "
                               f"almost nothing of a {h} x {w} image; crop less.")
    f = int(factor)
    window = (slice(top, h - bottom), slice(left, w - right))
    image = m.image[window]
    h2, w2 = image.shape[0] // f * f, image.shape[1] // f * f
    if min(h2, w2) < f * 8:
        raise MatgenInputError(f"Downsampling by {f} leaves an image of {h2 // f} x {w2 // f} px; "
                               f"use a smaller factor or crop less.")
    image = image[:h2, :w2]
    labels = None
    if m.labels is not None:
        labels = m.labels[window][:h2, :w2]
        if f > 1:
            n = max(int(m.n_phases), int(labels.max()) + 1)
            counts = np.stack([(labels == p).reshape(h2 // f, f, w2 // f, f).sum(axis=(1, 3))
                               for p in range(n)])
            labels = np.argmax(counts, axis=0).astype(np.uint8)
        image = labels.astype(np.float32) / max(int(m.n_phases) - 1, 1)
    elif f > 1:
        shape = (h2 // f, f, w2 // f, f) + image.shape[2:]
        image = image.reshape(shape).mean(axis=(1, 3)).astype(np.float32)
    changes = dict(image=np.ascontiguousarray(image),
                   labels=None if labels is None else np.ascontiguousarray(labels))
    if f > 1 and m.voxel_size:
        changes["voxel_size"] = float(m.voxel_size) * f
    return replace(m, **changes)


def prepare_dataset(raws, n_phases, voxel, unit, crop, factor):
    """Raw micrographs -> the training dataset: segment (if n_phases), crop, downsample, units."""
    out = []
    for m in raws:
        m = crop_downsample(m, *crop, factor=1)  # crop first: a scale bar would skew thresholds
        if n_phases:
            m = segment(m, int(n_phases))
        m = crop_downsample(m, factor=factor)
        vs = float(voxel) * factor if unit != "px" and voxel else None
        out.append(replace(m, voxel_size=vs, unit=unit))
    return out
