"""Writing images and volumes (TIFF/BigTIFF, .npy, .vti, in-memory bytes) and the generation record.

``write_tiff`` is ImageJ-compatible (voxel size, unit and phase table in a ``matgen`` record),
switching to BigTIFF above ``_BIGTIFF_BYTES``; ``write_bigtiff_planes`` and ``write_npy_slabs``
stream a volume plane by plane; ``set_generation_info`` / ``read_generation_info`` store and read
how a generated volume was made.
"""
from __future__ import annotations

import io
import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

from ..errors import MatgenInputError
from ._common import existing_file, parse_record
from .units import canonical_unit


_BIGTIFF_BYTES = 2**31  # write_tiff switches to BigTIFF above this many bytes of pixel data


def needs_bigtiff(shape, colour: bool = False) -> bool:
    """True when uint8 pixel data of ``shape`` (with a trailing RGB axis of 3 if ``colour``) is
    over ``_BIGTIFF_BYTES``: such a TIFF must be a BigTIFF (which ImageJ's flavour cannot be)."""
    return int(np.prod([int(v) for v in shape])) * (3 if colour else 1) > _BIGTIFF_BYTES


def _tiff_record(voxel_size, unit, phase_values, colour: bool, generation=None) -> tuple[dict, dict]:
    """The ``matgen`` record of a TIFF (voxel size, unit, phase table[, generation]) and the
    tifffile keyword arguments (photometric, resolution) that go with it."""
    if voxel_size is not None and not (math.isfinite(voxel_size) and voxel_size > 0):
        raise MatgenInputError(f"voxel_size={voxel_size} is not a positive number; give the voxel edge length or None.")
    unit = canonical_unit(unit) if voxel_size is not None else "px"
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
    ``generation``: the generation record, stored in "tif" and "vti" (a .npy has no room for it:
    its sidecar ``<name>.npy.json`` is a separate file, made by :func:`generation_json`).
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


def generation_json(generation: dict) -> str:
    """The generation record as the text of a ``<name>.npy.json`` sidecar (also a download)."""
    return json.dumps(generation, indent=1)


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
        generation_sidecar(path).write_text(generation_json(generation))
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
    path = existing_file(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        side = generation_sidecar(path)
        return json.loads(side.read_text()) if side.exists() else None
    if suffix in (".tif", ".tiff"):
        with tifffile.TiffFile(path) as tif:
            imagej = tif.imagej_metadata or {}
            record = parse_record(imagej["Info"]) if "Info" in imagej else (
                tif.shaped_metadata[0].get("matgen") if tif.shaped_metadata else None)
        return (record or {}).get("generation")
    if suffix == ".vti":
        import pyvista

        field = pyvista.read(str(path)).field_data
        return json.loads(str(field["matgen_generation"][0])) if "matgen_generation" in field else None
    raise MatgenInputError(f"{path.name}: generation records are in .tif, .npy (sidecar) and .vti files.")
