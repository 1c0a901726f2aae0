"""Reading micrographs and volumes, and telling what they hold (n-phase, grayscale or colour).

``read_micrograph`` turns any PNG/JPG/BMP/TIFF (2D image or 3D stack) or .npy file into a
``Micrograph``; ``detect_kind`` classifies an array; ``require_phases`` checks that training data
is segmented; ``read_volume`` and ``read_phase_table`` read back what ``io.write`` wrote;
``declared_phase_count`` says how many phases one of our files stands for.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

from ..errors import MatgenInputError
from ._common import existing_file, looks_colour, parse_record, unit_float
from .micrograph import Micrograph
from .units import canonical_unit


_TIFF_MAGIC = (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+")
_NPY_MAGIC = b"\x93NUMPY"


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
    path = existing_file(path)
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
    colour = looks_colour(array)
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


def read_volume(path, max_pixels: int | None = None) -> tuple[np.ndarray, dict]:
    """Read a .tif/.tiff or .npy volume back as written.

    Returns the array exactly as stored ((H, W), (Z, Y, X), RGB last) and a dict with
    ``voxel_size`` (float or None), ``unit`` ("px" when unknown) and ``phase_values``
    (list or None): from write_tiff's record, else from ImageJ/resolution tags; None/"px" for .npy.
    """
    path = existing_file(path)
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


def read_phase_table(path) -> list | None:
    """The phase table stored by ``write_tiff`` (label i -> original value), or None if there is none."""
    path = existing_file(path)
    try:
        with tifffile.TiffFile(path) as tif:
            return _tiff_metadata(tif)["phase_values"]
    except tifffile.TiffFileError as err:
        raise MatgenInputError(
            f"{path.name} is not a readable TIFF ({err}); pass a file written by write_tiff."
        ) from None


def declared_phase_count(path) -> int | None:
    """How many phases a file we wrote stands for, whether or not each occurs in it, or None.

    The length of the phase table of a TIFF written by ``write_tiff``, or of the fractions in the
    generation record (TIFF record, .npy sidecar) of a generated volume: a volume whose last phase
    is absent still has all the model's phases. None for other files, whose phases are the values
    present (``read_micrograph`` maps them to 0..n-1).
    """
    from .write import read_generation_info

    path = existing_file(path)
    with open(path, "rb") as f:
        tiff = f.read(4) in _TIFF_MAGIC
    counts = []
    if tiff:
        table = read_phase_table(path)
        counts += [len(table)] if table else []
    if (tiff and path.suffix.lower() in (".tif", ".tiff")) or path.suffix.lower() == ".npy":
        record = read_generation_info(path) or {}
        counts += [len(record[k]) for k in ("achieved_fractions", "generator_fractions") if record.get(k)]
    return max(counts, default=None)


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
            colour = looks_colour(array) or (array.ndim == 3 and array.shape[-1] == 4)
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
    from ..limits import check_pixel_count

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
        return Micrograph(labels=None, image=unit_float(array), kind="color" if colour else "gray", **common)
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


def _equal_channels(rgb: np.ndarray) -> bool:
    return bool(np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2]))


def _colour_codes(rgb: np.ndarray) -> np.ndarray:
    """One uint64 per pixel packing R, G, B (21 bits each); non-8/16-bit data is first scaled to 16 bits."""
    if rgb.dtype not in (np.uint8, np.uint16):
        rgb = np.round(unit_float(rgb) * 65535).astype(np.uint16)
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


def _tiff_metadata(tif: tifffile.TiffFile) -> dict:
    """voxel_size, unit and phase_values of a TIFF: from write_tiff's record, else ImageJ / resolution tags."""
    imagej = tif.imagej_metadata or {}
    record = None
    if "Info" in imagej:
        record = parse_record(imagej["Info"])
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
    unit = canonical_unit(imagej.get("unit", ""))
    if unit != "px":
        meta.update(voxel_size=pixel, unit=unit)
    elif resolution_unit == 3:  # centimetre
        meta.update(voxel_size=pixel * 1e4, unit="um")
    return meta
