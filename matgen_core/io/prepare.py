"""Preparing a training dataset: segment, crop and downsample micrographs, set their units."""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..errors import MatgenInputError
from .segmentation import segment


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
