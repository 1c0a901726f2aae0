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
    # phase-fraction control (fractions.py): target, before/achieved fractions, bias, morphology
    fractions: dict | None = None


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
             periodic=(False, False, False), tile: int | None = None, out_path=None,
             progress=None, memory_budget_bytes: int | None = None, fractions=None,
             calibrate: bool = True) -> Generated:
    """Generate from the run in ``run_dir`` (its latest checkpoint).

    3D models: ``shape`` (Z, Y, X) voxels, or an int for a cube (default: 2x the training size).
    2D models: ``count`` images of the training size, stacked as (K, H, W[, 3]).
    ``tile``: 3D models are generated in overlapping latent tiles of this many exact voxels a side
    (identical result, bounded memory; see tiling.py); None picks tiling automatically when one
    pass would not fit in memory, 0 forces one pass. ``out_path`` (.tif/.tiff/.npy/.vti): also
    write the result there; large volumes are streamed (.npy memory-mapped, BigTIFF plane by
    plane) and ``array`` is then a read-only memory map of the file. ``progress(fraction)``.
    ``fractions``: target phase fractions (n-phase SliceGAN runs; see fractions.py): a conditional
    model is sampled at them, then a per-phase logit bias makes the labels meet them; the report
    is in ``Generated.fractions``. In one pass the bias is fitted on the volume itself (exact);
    a tiled volume gets the bias fitted on its first ``fractions.PROBE_SIDE``^3 corner
    (``fractions.probe_calibration``), so it meets the targets to within the corner's
    statistical fluctuation; the report gives the whole volume's achieved fractions.
    ``calibrate``: with no ``fractions`` given, an n-phase SliceGAN volume made in one pass is
    calibrated to the training image's phase fractions (the same logit bias; the report says how far the generator
    alone was). False gives the generator's raw argmax (identical tiled or in one pass).
    """
    run_dir = Path(run_dir)
    config = runs.load_config(run_dir)
    checkpoint = runs.load_checkpoint(run_dir, device="cpu")
    if checkpoint is None:
        raise MatgenInputError(f"{run_dir} has no checkpoint yet; train it first (matgen train ... "
                               f"--out {run_dir}).")
    trainer = build_trainer(run_dir, device, with_data=False)
    runs.restore_state(trainer, checkpoint, run_dir)  # a foreign checkpoint: a message, no traceback
    data = config["data"]
    kind = data["kind"]
    if fractions is not None and config["model"] not in VOLUME_MODELS:  # phase-fraction control
        raise MatgenInputError(f"--fractions is for SliceGAN runs; {config['model']} makes 2D images.")
    if config["model"] in VOLUME_MODELS:
        if count not in (None, 1):
            raise MatgenInputError("--count is for 2D models; a SliceGAN run makes one volume per call "
                                   "(use --seed for others).")
        shape = parse_shape(shape=shape) if shape is not None else (2 * trainer.train_size,) * 3
        from . import tiling

        if tile is None:  # automatic: tiles only when one pass would not fit in memory
            tile = tiling.choose_tile(shape, trainer.config, memory_budget_bytes, device=trainer.device)
        if tile is not None and tile < 0:
            raise MatgenInputError(f"--tile must be a positive number of voxels (or 0 for one pass), got {tile}.")
        one_pass = not tile
        # default calibration in one pass only: fitted on a probe, a tiled volume can miss the
        # target by the probe's own fluctuation (3 pp measured at 320^3), worse than raw
        default_targets = fractions is None and calibrate and kind == "nphase" and one_pass
        calibration = None  # tiled volumes: the bias fitted on a probe, and its report
        # --- phase-fraction control (fractions.py): calibrated on the volume itself, or on a probe ---
        if fractions is not None or default_targets:
            from . import fractions as _fractions

            if default_targets:
                fractions = _fractions.training_fractions(run_dir)
            if one_pass:
                array, info = _fractions.generate_labels(trainer, run_dir, shape, seed, fractions,
                                                         periodic=periodic, morphology=not default_targets)
                if progress is not None:
                    progress(1.0)
                if out_path is not None:
                    _write(out_path, array, data)
                return _result(array, config, info)
            calibration = _fractions.probe_calibration(trainer, run_dir, shape, seed, fractions,
                                                       periodic=periodic, morphology=not default_targets)
        # --- end phase-fraction control ---
        # --- tiled / streamed generation (tiling.py) ---
        suffix = Path(out_path).suffix.lower() if out_path is not None else ""
        opts = dict(seed=seed, tile=tile or None, periodic=periodic, progress=progress)
        if calibration is not None:  # the probe's bias on every tile; count what is written
            n_phases = len(calibration["target"])
            opts.update(bias=calibration["bias"], counts=np.zeros(n_phases, np.int64),
                        fractions=calibration["target"] if calibration["conditional"] else None)
        written = suffix == ".npy" or (suffix in (".tif", ".tiff") and tiling.needs_bigtiff(shape, kind))
        if suffix == ".npy":
            array = tiling.generate_npy(out_path, trainer, shape, **opts)
        elif suffix in (".tif", ".tiff") and tiling.needs_bigtiff(shape, kind):
            path = tiling.generate_bigtiff(out_path, trainer, shape, voxel_size=data.get("voxel_size"),
                                           unit=data.get("unit", "px"), phase_values=_phases(data), **opts)
            array = _tiff_map(path)
        elif tile:
            array = tiling.generate_array(trainer, shape, **opts)
        else:
            array = decode(trainer.sample(shape, seed=seed, periodic=periodic), kind)
            if progress is not None:
                progress(1.0)
        if out_path is not None and not written:
            _write(out_path, array, data)
        if calibration is not None:
            counts = opts["counts"]
            calibration["achieved"] = [float(v) for v in counts / max(int(counts.sum()), 1)]
            return _result(array, config, calibration)
        # --- end tiled / streamed generation ---
    else:
        if shape is not None:
            raise MatgenInputError(f"{config['model']} makes 2D images of its training size; use "
                                   f"--count K instead of --size/--shape.")
        array = np.stack([decode(im, kind) for im in trainer.sample_images(count or 16, seed=seed)])
        if out_path is not None:
            _write(out_path, array, data)
    return _result(array, config)


def _result(array, config: dict, fractions: dict | None = None) -> Generated:
    data = config["data"]
    return Generated(array=array, kind=data["kind"], phase_values=data.get("phase_values", []),
                     voxel_size=data.get("voxel_size"), unit=data.get("unit", "px"),
                     model=config["model"], fractions=fractions)


# --- writing generated data (used by generate(out_path=...)) ---
def _phases(data: dict):
    return data.get("phase_values") if data.get("kind") == "nphase" else None


def _write(out_path, array, data: dict) -> None:
    from . import io

    out = Path(out_path)
    suffix = out.suffix.lower()
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".npy":
        io.write_npy(out, array)
    elif suffix == ".vti":
        io.write_vti(out, array, voxel_size=data.get("voxel_size") or 1.0)
    elif suffix in (".tif", ".tiff"):
        io.write_tiff(out, array, voxel_size=data.get("voxel_size"), unit=data.get("unit", "px"),
                      phase_values=_phases(data))
    else:
        raise MatgenInputError(f"--out must end in .tif, .tiff, .npy or .vti, got '{out.name}'.")


def _tiff_map(path):
    """A read-only memory map of an uncompressed TIFF (falls back to reading it)."""
    import tifffile

    try:
        return tifffile.memmap(path, mode="r")
    except ValueError:
        return tifffile.imread(path)
