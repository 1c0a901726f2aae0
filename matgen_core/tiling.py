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
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from .data import n_channels
from .models.slicegan import autocast, latent_size_for, output_size

_SAFETY = 1.5  # peak-memory estimate margin (allocator slack, oneDNN scratch, layout copies)


# -------------------------------------------------------------------------------------------
# Receptive field arithmetic (1D; the three axes are independent)
# -------------------------------------------------------------------------------------------
def layers_of(config: dict) -> list[tuple[int, int, int]]:
    """(kernel, stride, padding) of each generator layer of a SliceGAN config."""
    return list(zip(config["gen_kernels"], config["gen_strides"], config["gen_paddings"]))


def out_len(n: int, layers) -> int:
    """Output length of the generator for latent length ``n`` (slicegan.output_size)."""
    return output_size(n, *zip(*layers)) if layers else n


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
    for layer in layers:
        sizes.append([out_len(n, [layer]) for n in sizes[-1]])
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
    return latent_size_for(n, *zip(*layers))


# -------------------------------------------------------------------------------------------
# Generation: the tiles of one volume
# -------------------------------------------------------------------------------------------
class TilePlan:
    """How one volume of ``shape`` (Z, Y, X) is made: the seeded latent and its tiles.

    ``tile``: exact output voxels per tile side (None or 0: one tile, i.e. one pass over the whole
    latent). ``outputs()`` runs the generator tile by tile and yields ``(origin, out)``: the global
    (z, y, x) of the tile's first voxel and its exact output (C, dz, dy, dx), a float32 torch
    tensor (softmax probabilities for n-phase runs, values in [0, 1] otherwise), in Z-row order
    (every tile of one Z row before the next row). The same latent, cut differently, gives the
    same voxels (see the module docstring). With ``keep=True`` and a single tile, its output is
    computed once and reused by later ``outputs()`` calls (a second pass costs nothing).
    """

    def __init__(self, trainer, shape, seed: int = 0, periodic=(False, False, False), fractions=None,
                 tile: int | None = None):
        self.trainer, self.shape = trainer, tuple(int(v) for v in shape)
        self.layers = layers_of(trainer.config)
        self.z = trainer.latent(self.shape, seed, periodic, fractions)  # the latent ``sample`` uses
        lat = self.z.shape[2:]
        t = max(lat) if not tile else latent_tile_for(tile, self.layers)
        self.plans = [plan_axis(n, L, min(t, L), self.layers) for n, L in zip(self.shape, lat)]
        self.n_tiles = math.prod(len(p) for p in self.plans)
        self.rows = [(za, zb) for (_, _, za, zb) in self.plans[0]]
        self.keep, self._kept = False, None

    def outputs(self, progress: Callable[[float], None] | None = None) -> Iterator[tuple[tuple, torch.Tensor]]:
        if self._kept is not None:
            yield self._kept
            if progress is not None:
                progress(1.0)
            return
        trainer, stride = self.trainer, total_stride(self.layers)
        # the network ``sample`` uses: the weight-averaged (EMA) generator when the run has one
        gen = getattr(trainer, "sampling_generator", None) or trainer.generator
        precision = trainer.config.get("precision", "fp32")
        was_training = gen.training
        gen.eval()
        done = 0
        try:
            with torch.inference_mode():
                for (zl0, zl1, za, zb) in self.plans[0]:
                    for (yl0, yl1, ya, yb) in self.plans[1]:
                        for (xl0, xl1, xa, xb) in self.plans[2]:
                            part = self.z[:, :, zl0:zl1, yl0:yl1, xl0:xl1].contiguous(
                                memory_format=torch.channels_last_3d)
                            with autocast(trainer.device, precision):
                                out = gen(part.to(trainer.device))[0]
                            oz, oy, ox = zl0 * stride, yl0 * stride, xl0 * stride
                            out = out[:, za - oz:zb - oz, ya - oy:yb - oy, xa - ox:xb - ox].float()
                            item = ((za, ya, xa), out)
                            if self.keep and self.n_tiles == 1:
                                self._kept = item
                            yield item
                            del out, item
                            done += 1
                            if progress is not None:
                                progress(done / self.n_tiles)
        finally:
            gen.train(was_training)

    def slabs(self, decode_tile: Callable[[torch.Tensor], np.ndarray], extra: tuple = (),
              progress: Callable[[float], None] | None = None) -> Iterator[tuple[int, np.ndarray]]:
        """``(z0, slab)``: uint8 Z slabs (one row of tiles) of the decoded volume, in order.

        ``decode_tile(out)`` turns one tile's output into its uint8 block (labels, gray, RGB)."""
        rows = iter(self.rows)
        za, zb = next(rows)
        slab = np.empty((zb - za, self.shape[1], self.shape[2]) + extra, np.uint8)
        filled = 0
        per_row = self.n_tiles // len(self.rows)
        for (oz, oy, ox), out in self.outputs(progress):
            block = decode_tile(out)
            slab[:, oy:oy + block.shape[1], ox:ox + block.shape[2]] = block
            filled += 1
            if filled == per_row:
                yield za, slab
                filled = 0
                nxt = next(rows, None)
                if nxt is not None:
                    za, zb = nxt
                    slab = np.empty((zb - za, self.shape[1], self.shape[2]) + extra, np.uint8)


__all__ = ["exact_range", "plan_axis", "latent_tile_for", "interior", "estimate_peak_bytes",
           "available_memory_bytes", "choose_tile", "TilePlan", "out_len", "layers_of"]
