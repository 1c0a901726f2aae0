"""SliceGAN networks: the 3D generator, the 2D critic, and the transposed-convolution size
arithmetic (uniform information density, output and latent sizes, periodic sides).

Shapes: volumes are (B, C, Z, Y, X); slices are (N, C, H, W). Re-exported by ``slicegan``.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrize


def check_uid(kernels, strides, paddings) -> None:
    """Raise ValueError unless every transposed convolution obeys uniform information density.

    The rule (Kench & Cooper 2021): stride < kernel, kernel divisible by stride, and
    padding >= kernel - stride. Then every output voxel is made the same way, so a bigger latent
    gives a bigger volume of the same quality, with no edge artefacts, and tiles are exact.
    """
    for i, (k, s, p) in enumerate(zip(kernels, strides, paddings)):
        if not (s < k and k % s == 0 and p >= k - s):
            raise ValueError(
                f"generator layer {i} (kernel {k}, stride {s}, padding {p}) breaks uniform "
                f"information density: need stride < kernel, kernel % stride == 0, "
                f"padding >= kernel - stride")


def output_size(lz: int, kernels, strides, paddings) -> int:
    """Side of the generated volume for latent side ``lz`` (transposed-conv arithmetic)."""
    size = lz
    for k, s, p in zip(kernels, strides, paddings):
        size = (size - 1) * s - 2 * p + k
    return size


def periodic_stride(config: dict) -> int:
    """Volume sides that can be periodic are multiples of this (the product of the generator's
    strides): a latent of period P makes a volume of period P times it."""
    return int(np.prod(config["gen_strides"]))


def periodic_sizes(size: int, stride: int = 32) -> tuple[int, int]:
    """The valid periodic sides nearest to ``size``: (the largest multiple of ``stride`` below it,
    0 when there is none; the smallest at or above it)."""
    size = int(size)
    return size // stride * stride, -(-size // stride) * stride


def latent_size_for(size: int, kernels, strides, paddings) -> int:
    """Smallest latent side whose volume side is at least ``size`` voxels."""
    lz = 1
    while output_size(lz, kernels, strides, paddings) < size:
        lz += 1
    return lz


def subpixel_conv_transpose3d(x: torch.Tensor, weight: torch.Tensor, stride: int, padding: int,
                              bias: torch.Tensor | None = None) -> torch.Tensor:
    """``F.conv_transpose3d(x, weight, bias, stride, padding)`` computed as a plain convolution.

    A transposed convolution whose kernel ``k`` is a multiple of its stride ``s`` (uniform
    information density) is, for each of the ``s^3`` output phases (o mod s per axis), an ordinary
    convolution of kernel ``k / s`` over the input. So it equals one ``conv3d`` with
    ``C_out * s^3`` output channels followed by a 3D pixel shuffle and a crop of
    ``padding - (k - s)`` voxels. Same result up to float rounding, and ~4x faster on CPU
    (oneDNN) when ``C_out`` is small, as in the generator's last layer (C_out = phases).
    ``weight``: (C_in, C_out, k, k, k), as ``nn.ConvTranspose3d.weight``. Needs padding >= k - s.
    """
    c_in, c_out, k = weight.shape[0], weight.shape[1], weight.shape[2]
    s, t = int(stride), weight.shape[2] // int(stride)
    crop = int(padding) - (k - s)
    # taps[r][tau]: the kernel index that output phase r applies to window position tau
    taps = torch.tensor([[r + s * (t - 1 - tau) for tau in range(t)] for r in range(s)], device=weight.device)
    w = weight[:, :, taps][:, :, :, :, taps][..., taps]  # (Cin, Cout, rz, tz, ry, ty, rx, tx)
    w = w.permute(1, 2, 4, 6, 0, 3, 5, 7).reshape(c_out * s ** 3, c_in, t, t, t)
    y = F.conv3d(x, w)
    b, _, nz, ny, nx = y.shape
    y = y.view(b, c_out, s, s, s, nz, ny, nx).permute(0, 1, 5, 2, 6, 3, 7, 4)
    y = y.reshape(b, c_out, s * nz, s * ny, s * nx)
    out = [output_size(n, [k], [s], [int(padding)]) for n in x.shape[2:]]
    y = y[:, :, crop:crop + out[0], crop:crop + out[1], crop:crop + out[2]]
    return y if bias is None else y + bias.view(1, -1, 1, 1, 1)


# Resize-convolution written as a transposed convolution (``gen_upsample="resize"``).
# Nearest-neighbour upsampling by 2 followed by a 3-tap convolution reads, for every output voxel,
# two neighbouring input voxels, as a 4-tap stride-2 transposed convolution does: tap ``t`` of
# the transposed kernel is the sum of the 3-tap weights that land on the same input voxel,
# (w2, w1 + w2, w0 + w1, w0). Both output phases (even, odd) then sum to w0 + w1 + w2, so a
# uniform input gives a uniform output: a layer cannot imprint its stride on the mean of the
# volume, which a free 4-tap kernel can (the 32-voxel lattice, docs/fidelity.md).
RESIZE_TAPS = np.array([[0, 0, 1], [0, 1, 1], [1, 1, 0], [1, 0, 0]], dtype=np.float64)
_RESIZE_INVERSE = np.linalg.pinv(RESIZE_TAPS)  # least squares: a 4-tap kernel -> 3 taps


class ResizeKernel(nn.Module):
    """Parametrisation of a ``ConvTranspose3d`` weight (kernel 4, stride 2) as nearest-neighbour
    upsampling by 2 followed by a 3x3x3 convolution: the stored parameter is the 3x3x3 kernel
    (C_in, C_out, 3, 3, 3), the layer's ``weight`` the equivalent (C_in, C_out, 4, 4, 4) one.
    The layer keeps its size arithmetic (output ``2n + 2 - 2p``), so tiling, periodic latents
    and the sub-pixel path work unchanged; the cost is that of the transposed convolution."""

    def __init__(self):
        super().__init__()
        # constants, made once and moved with the module (not saved: state dicts are unchanged)
        self.register_buffer("taps", torch.tensor(RESIZE_TAPS, dtype=torch.float32), persistent=False)
        self.register_buffer("inverse", torch.tensor(_RESIZE_INVERSE, dtype=torch.float32), persistent=False)

    def forward(self, kernel3: torch.Tensor) -> torch.Tensor:
        m = self.taps.to(kernel3.dtype)
        return torch.einsum("ia,jb,kc,xyabc->xyijk", m, m, m, kernel3)

    def right_inverse(self, weight: torch.Tensor) -> torch.Tensor:
        m = self.inverse.to(device=weight.device, dtype=weight.dtype)
        return torch.einsum("ai,bj,ck,xyijk->xyabc", m, m, m, weight)


UPSAMPLING = ("transposed", "resize")

SUBPIXEL_MAX_CHANNELS = 8  # layers with at most this many output channels use the conv form


class Generator(nn.Module):
    """3D generator: ConvTranspose3d stack, BatchNorm + ReLU between, softmax or tanh output.

    ``upsample``: "transposed" (free 4x4x4 kernels, as published) or "resize" (every layer is
    nearest-neighbour upsampling and a 3x3x3 convolution, :class:`ResizeKernel`; needs kernel 4,
    stride 2 in every layer).

    Speed (same function, same parameters): the narrow last layer runs as a sub-pixel convolution
    (:func:`subpixel_conv_transpose3d`), and in eval mode each BatchNorm is folded into the
    convolution before it (one pass over the activations less per layer, ReLU in place).
    ``forward_plain`` is the textbook module-by-module pass, kept as the benchmarks' baseline.
    """

    def __init__(self, nz, channels, kernels, strides, paddings, out_channels, kind,
                 upsample: str = "transposed"):
        super().__init__()
        check_uid(kernels, strides, paddings)
        if upsample not in UPSAMPLING:
            raise ValueError(f"gen_upsample must be one of {', '.join(UPSAMPLING)}, got {upsample!r}")
        if upsample == "resize" and any((k, s) != (4, 2) for k, s in zip(kernels, strides)):
            raise ValueError("gen_upsample=resize needs gen_kernels of 4 and gen_strides of 2 in "
                             "every layer")
        widths = [nz, *channels, out_channels]
        self.convs = nn.ModuleList(
            nn.ConvTranspose3d(widths[i], widths[i + 1], kernels[i], strides[i], paddings[i], bias=False)
            for i in range(len(widths) - 1))
        if upsample == "resize":
            for conv in self.convs:
                parametrize.register_parametrization(conv, "weight", ResizeKernel())
        self.norms = nn.ModuleList(nn.BatchNorm3d(w) for w in widths[1:-1])
        self.kind = kind

    def _conv(self, i: int, x: torch.Tensor, norm: nn.BatchNorm3d | None = None) -> torch.Tensor:
        """Layer ``i``'s transposed convolution, with ``norm`` (eval statistics) folded in."""
        conv = self.convs[i]
        weight, bias = conv.weight, None
        if norm is not None:
            scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
            weight = weight * scale.view(1, -1, 1, 1, 1)
            bias = norm.bias - norm.running_mean * scale
        if conv.out_channels <= SUBPIXEL_MAX_CHANNELS:
            return subpixel_conv_transpose3d(x, weight, conv.stride[0], conv.padding[0], bias)
        return F.conv_transpose3d(x, weight, bias, conv.stride, conv.padding)

    def _output(self, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        """Last layer's logits ``x`` -> phase probabilities or values (``z``: the latent)."""
        x = x.float()
        if self.kind == "nphase":
            return torch.softmax(x, dim=1)
        return 0.5 * (torch.tanh(x) + 1.0)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = z
        fold = not self.training  # eval: BatchNorm uses fixed statistics, fold it into the conv
        for i, norm in enumerate(self.norms):
            if fold:
                x = F.relu_(self._conv(i, x, norm))
            else:
                x = F.relu(norm(self._conv(i, x)))
        return self._output(self._conv(len(self.convs) - 1, x), z)

    def forward_plain(self, z: torch.Tensor) -> torch.Tensor:
        """The same network module by module (ConvTranspose3d, BatchNorm3d, ReLU): the reference."""
        x = z
        for conv, norm in zip(self.convs[:-1], self.norms):
            x = F.relu(norm(conv(x)))
        return self._output(self.convs[-1](x), z)


class Critic(nn.Module):
    """2D critic: Conv2d stack with ReLU, no normalisation, one score per slice."""

    def __init__(self, in_channels, channels, kernels, strides, paddings):
        super().__init__()
        widths = [in_channels, *channels, 1]
        self.convs = nn.ModuleList(
            nn.Conv2d(widths[i], widths[i + 1], kernels[i], strides[i], paddings[i], bias=False)
            for i in range(len(widths) - 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs[:-1]:
            x = F.relu(conv(x))
        return self.convs[-1](x).float().flatten(1).mean(1)
