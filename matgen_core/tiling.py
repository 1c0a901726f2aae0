"""Volumes beyond memory: SliceGAN generation in overlapping latent tiles.

A SliceGAN generator that obeys uniform information density (every transposed convolution has
stride < kernel, kernel % stride == 0, padding >= kernel - stride; see ``check_uid``) with
BatchNorm in eval mode is a stack of shift-equivariant, local operations: an output voxel depends
only on a bounded window of latent positions. So the latent can be cut into overlapping tiles,
each tile run on its own, and the *exact* interior of each tile output kept: the pieces fit
together into the same volume as one pass over the whole latent, while only one tile's
activations exist at a time.

Per axis (the axes are independent), with a latent tile ``[l0, l1)`` of a latent of length ``L``:

* tile-local output index ``j`` is global output index ``j + l0 * S`` (``S`` = product of the
  strides), because shifting a transposed convolution's input by one shifts its output by ``s``;
* :func:`exact_range` follows the exact region layer by layer: an output position is exact when
  every input it reads is exact; at the latent's own ends (``l0 == 0`` / ``l1 == L``) the tile
  misses exactly what the full pass misses too, so the region reaches the volume's edge.

Tiles are decoded (argmax / 0-255) one by one and written, a Z slab at a time, into an array, a
``.npy`` file or a BigTIFF (both written sequentially, slab by slab): the float volume never
exists in memory, and a streamed file never does either.

``tile`` everywhere here is the side, in output voxels, of the exact part each tile contributes
(the tiles overlap by a halo of a few latent positions on top of that).
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from .data import decode, n_channels
from .models.slicegan import autocast

_BIGTIFF_BYTES = 2**31  # as io.write_tiff: above this many bytes of pixels a TIFF must be BigTIFF
_SAFETY = 1.5  # peak-memory estimate margin (allocator slack, oneDNN scratch, layout copies)


# -------------------------------------------------------------------------------------------
# Receptive field arithmetic (1D; the three axes are independent)
# -------------------------------------------------------------------------------------------
def layers_of(config: dict) -> list[tuple[int, int, int]]:
    """(kernel, stride, padding) of each generator layer of a SliceGAN config."""
    return list(zip(config["gen_kernels"], config["gen_strides"], config["gen_paddings"]))


def out_len(n: int, layers) -> int:
    """Output length of the generator for latent length ``n``."""
    for k, s, p in layers:
        n = (n - 1) * s - 2 * p + k
    return n


def total_stride(layers) -> int:
    return math.prod(s for _, s, _ in layers)


def exact_range(l0: int, l1: int, length: int, layers) -> tuple[int, int]:
    """Global output range ``[a, b)`` that latent tile ``[l0, l1)`` of a latent of ``length``
    reproduces exactly (identical to a pass over the whole latent); ``a >= b`` when none."""
    lo, hi = l0, l1 - 1            # exact positions at the current layer (global, inclusive)
    off, n = l0, l1 - l0           # the tile's domain: global offset and length
    low_free, high_free = l0 == 0, l1 == length
    for k, s, p in layers:
        off, n = off * s, (n - 1) * s - 2 * p + k
        d_lo, d_hi = off, off + n - 1
        # output o reads inputs ceil((o + p - k + 1) / s) .. floor((o + p) / s)
        new_lo = d_lo if low_free else max(d_lo, s * (lo - 1) - p + k)
        new_hi = d_hi if high_free else min(d_hi, s * (hi + 1) - p - 1)
        lo, hi = new_lo, new_hi
        if lo > hi:
            return lo, lo
    return lo, hi + 1


def interior(t: int, layers) -> int:
    """Exact output voxels of a latent tile of length ``t`` far from both latent ends."""
    big = 4 * t + 8
    a, b = exact_range(t + 2, 2 * t + 2, big, layers)
    return max(b - a, 0)


def latent_tile_for(tile: int, layers) -> int:
    """Smallest latent tile length whose exact interior is at least ``tile`` output voxels."""
    t = 1
    while interior(t, layers) < max(int(tile), 1):
        t += 1
        if t > 100000:
            raise ValueError("generator layers leave no exact interior")
    return t


def plan_axis(n_out: int, length: int, t: int, layers) -> list[tuple[int, int, int, int]]:
    """Tiles along one axis: ``(l0, l1, a, b)``: latent tile ``[l0, l1)`` gives the exact output
    voxels ``[a, b)`` (global); together the ``[a, b)`` cover ``[0, n_out)`` once."""
    plan, pos = [], 0
    while pos < n_out:
        best = None
        for l0 in range(length - 1, -1, -1):  # the last tile start whose exact part reaches pos
            l1 = min(l0 + t, length)
            a, b = exact_range(l0, l1, length, layers)
            if a <= pos < b:
                best = (l0, l1, pos, min(b, n_out))
                break
        if best is None:
            raise ValueError(f"latent tile {t} is too small to cover voxel {pos}")
        plan.append(best)
        pos = best[3]
    return plan


# -------------------------------------------------------------------------------------------
# Memory: estimate, budget, automatic tile size
# -------------------------------------------------------------------------------------------
def _widths(config: dict) -> list[int]:
    c = config
    out_c = n_channels(c["kind"], c.get("n_phases", 0)) if "kind" in c else max(c.get("n_phases", 2), 1)
    n_cond = c.get("n_phases", 0) if c.get("conditional") else 0
    return [c["nz"] + n_cond, *c["gen_channels"], out_c]


def estimate_peak_bytes(latent_shape, config: dict, bytes_per_value: int = 4) -> int:
    """Peak activation memory of one generator pass over a latent of ``latent_shape`` (Z, Y, X).

    At each layer the input, the convolution output and the BatchNorm output are alive together
    (ReLU then frees the first two); the last layer's output and its softmax are float32, and a
    CPU copy of the tile is made. Times a safety margin; weights are not counted (a few MB).
    """
    layers = layers_of(config)
    widths = _widths(config)
    sizes = [list(latent_shape)]
    for k, s, p in layers:
        sizes.append([(n - 1) * s - 2 * p + k for n in sizes[-1]])
    vox = [math.prod(sz) for sz in sizes]
    peak = 0
    for i in range(len(layers)):
        inp = widths[i] * vox[i] * bytes_per_value
        out = widths[i + 1] * vox[i + 1] * (bytes_per_value if i < len(layers) - 1 else 4)
        peak = max(peak, inp + (3 if i == len(layers) - 1 else 2) * out)
    return int(peak * _SAFETY)


def available_memory_bytes(device=None) -> int:
    """Memory a generation may use: a fraction of free CUDA memory on a GPU, else of available RAM."""
    device = torch.device(device) if device is not None else torch.device("cpu")
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free * 0.7)
    try:
        import psutil

        avail = psutil.virtual_memory().available
    except ImportError:  # Linux without psutil
        avail = None
        try:
            for line in Path("/proc/meminfo").read_text().splitlines():
                if line.startswith("MemAvailable:"):
                    avail = int(line.split()[1]) * 1024
        except OSError:
            pass
        if avail is None:
            avail = 4 * 2**30
    return int(avail * 0.5)


def slab_bytes(shape, tile: int | None, config: dict) -> int:
    """Bytes of the uint8 Z slab buffer (one row of tiles) for output ``shape``."""
    per_voxel = 3 if config.get("kind") == "color" else 1
    depth = shape[0] if tile is None else min(shape[0], tile)
    return depth * shape[1] * shape[2] * per_voxel


def choose_tile(shape, config: dict, memory_budget_bytes: int | None = None, device=None) -> int | None:
    """The tile side (output voxels) for generating ``shape`` (Z, Y, X) within the budget.

    Returns None when one pass over the whole latent fits (no tiling needed); otherwise the
    largest tile side (a multiple of the total stride, usually 32) whose peak estimate fits.
    The budget defaults to half the available RAM, or 70 % of the free memory of a CUDA device.
    """
    layers = layers_of(config)
    budget = available_memory_bytes(device) if memory_budget_bytes is None else int(memory_budget_bytes)
    full_latent = [_latent_len(n, layers) for n in shape]
    if estimate_peak_bytes(full_latent, config) + slab_bytes(shape, None, config) <= budget:
        return None
    step = total_stride(layers)
    tile = step * max(1, -(-max(shape) // step))
    while tile > step:
        tile -= step
        t = latent_tile_for(tile, layers)
        lat = [min(t, L) for L in full_latent]
        if estimate_peak_bytes(lat, config) + slab_bytes(shape, tile, config) <= budget:
            break
    # balance: as many tiles as this size needs along the longest axis, but of equal size
    count = -(-max(shape) // tile)
    return min(tile, step * -(-(-(-max(shape) // count)) // step))


def _latent_len(n: int, layers) -> int:
    lz = 1
    while out_len(lz, layers) < n:
        lz += 1
    return lz


# -------------------------------------------------------------------------------------------
# Generation
# -------------------------------------------------------------------------------------------
def iter_slabs(trainer, shape, seed: int = 0, tile: int | None = None, periodic=(False, False, False),
               fractions=None, precision: str | None = None,
               progress: Callable[[float], None] | None = None, bias=None,
               counts: np.ndarray | None = None) -> Iterator[tuple[int, np.ndarray]]:
    """Generate ``shape`` (Z, Y, X) tile by tile; yields ``(z0, slab)`` with ``slab`` the decoded
    uint8 planes ``z0 .. z0 + len(slab)`` (labels, gray, or RGB with a last axis of 3).

    ``tile``: exact output voxels per tile side (None or 0: one tile, i.e. one pass).
    ``precision``: "fp32" or "bf16" (autocast); default: the run's own setting, as ``sample``.
    ``progress(fraction_done)`` after each tile.
    ``bias`` (n-phase): per-phase logit bias, labels = argmax(log p + bias), as
    ``fractions.apply_bias`` (phase-fraction calibration). ``counts`` (n-phase): an int64 array of
    one entry per phase, incremented by the voxels of each label written.
    """
    if precision is None:
        precision = trainer.config.get("precision") or "fp32"
    layers = layers_of(trainer.config)
    shape = tuple(int(v) for v in shape)
    z = trainer.latent(shape, seed, periodic, fractions)  # the latent ``sample`` uses
    lat = z.shape[2:]
    t = max(lat) if not tile else latent_tile_for(tile, layers)
    plans = [plan_axis(n, L, min(t, L), layers) for n, L in zip(shape, lat)]
    stride = total_stride(layers)
    kind = trainer.kind
    # the network ``sample`` uses: the weight-averaged (EMA) generator when the run has one
    gen = getattr(trainer, "sampling_generator", None) or trainer.generator
    was_training = gen.training
    gen.eval()
    try:
        yield from _tiles(trainer, gen, z, shape, plans, stride, kind, precision, progress, bias, counts)
    finally:
        gen.train(was_training)


def _tiles(trainer, gen, z, shape, plans, stride, kind, precision, progress, bias, counts):
    total = math.prod(len(p) for p in plans)
    done = 0
    if bias is not None:
        bias = torch.as_tensor(np.asarray(bias, np.float32), device=trainer.device).view(-1, 1, 1, 1)
    with torch.inference_mode():
        for (zl0, zl1, za, zb) in plans[0]:
            slab = np.empty((zb - za, shape[1], shape[2]) + ((3,) if kind == "color" else ()), np.uint8)
            for (yl0, yl1, ya, yb) in plans[1]:
                for (xl0, xl1, xa, xb) in plans[2]:
                    part = z[:, :, zl0:zl1, yl0:yl1, xl0:xl1].contiguous(memory_format=torch.channels_last_3d)
                    with autocast(trainer.device, precision):
                        out = gen(part)[0]
                    oz, oy, ox = zl0 * stride, yl0 * stride, xl0 * stride
                    out = out[:, za - oz:zb - oz, ya - oy:yb - oy, xa - ox:xb - ox]
                    if kind == "nphase":  # argmax in torch: no float copy of the tile on the host
                        if bias is not None:  # as fractions.apply_bias: log p (floored) + bias
                            out = torch.log(out.float().clamp_min(1e-30)) + bias
                        block = torch.argmax(out, dim=0).to(torch.uint8).cpu().numpy()
                        if counts is not None:
                            counts += np.bincount(block.ravel(), minlength=len(counts))[:len(counts)]
                    else:
                        block = decode(out.float().cpu().numpy(), kind)
                    del out
                    slab[:, ya:yb, xa:xb] = block
                    done += 1
                    if progress is not None:
                        progress(done / total)
            yield za, slab


def generate_into(array: np.ndarray, trainer, shape, **kwargs) -> np.ndarray:
    """Fill ``array`` (Z, Y, X[, 3]) uint8, e.g. an ``open_memmap``, tile by tile; returns it."""
    for z0, slab in iter_slabs(trainer, shape, **kwargs):
        array[z0:z0 + len(slab)] = slab
    return array


def generate_array(trainer, shape, **kwargs) -> np.ndarray:
    """Tiled generation into an in-memory uint8 array."""
    extra = (3,) if trainer.kind == "color" else ()
    return generate_into(np.empty(tuple(shape) + extra, np.uint8), trainer, shape, **kwargs)


def generate_npy(path, trainer, shape, **kwargs) -> np.ndarray:
    """Tiled generation streamed into a .npy file; returns a read-only memory map of it.

    The header is written first, then each Z slab as it is made (sequential writes, no memory
    map while generating: the written data does not stay in this process's memory).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = (3,) if trainer.kind == "color" else ()
    header = {"descr": np.lib.format.dtype_to_descr(np.dtype(np.uint8)), "fortran_order": False,
              "shape": tuple(int(v) for v in shape) + extra}
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, header)
        for _, slab in iter_slabs(trainer, shape, **kwargs):
            f.write(np.ascontiguousarray(slab).tobytes())
    return np.load(path, mmap_mode="r")


def generate_bigtiff(path, trainer, shape, voxel_size=None, unit: str = "px", phase_values=None,
                     **kwargs) -> Path:
    """Tiled generation written plane by plane as a BigTIFF.

    ImageJ's TIFF flavour cannot be BigTIFF, so, as ``io.write_tiff`` does for large volumes, the
    ``matgen`` record (voxel size, unit, phase table) goes into the tifffile JSON description and
    ``io.read_volume`` / ``read_phase_table`` read it back.
    """
    import tifffile

    from .io import _UNIT_ALIASES

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    colour = trainer.kind == "color"
    unit = _UNIT_ALIASES.get(str(unit).lower(), str(unit)) if voxel_size is not None else "px"
    record = {"voxel_size": None if voxel_size is None else float(voxel_size), "unit": unit,
              "phase_values": None if phase_values is None else [np.asarray(v).tolist() for v in phase_values]}
    extra = dict(photometric="rgb" if colour else "minisblack")
    if voxel_size is not None:
        extra.update(resolution=(1 / voxel_size, 1 / voxel_size), resolutionunit=tifffile.RESUNIT.NONE)
    full = tuple(shape) + ((3,) if colour else ())

    def planes():
        for _, slab in iter_slabs(trainer, shape, **kwargs):
            yield from slab

    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        tif.write(planes(), shape=full, dtype=np.uint8,
                  metadata={"axes": "ZYXS" if colour else "ZYX", "matgen": record}, **extra)
    return path


def needs_bigtiff(shape, kind: str) -> bool:
    return math.prod(shape) * (3 if kind == "color" else 1) > _BIGTIFF_BYTES


__all__ = ["exact_range", "plan_axis", "latent_tile_for", "interior", "estimate_peak_bytes",
           "available_memory_bytes", "choose_tile", "iter_slabs", "generate_array", "generate_into",
           "generate_npy", "generate_bigtiff", "needs_bigtiff"]
