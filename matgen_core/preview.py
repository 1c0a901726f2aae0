"""Core arrays as uint8 pictures: the phase colour palette and display scaling. Pure numpy.

Used by the trainers' previews (imported at training time, so it must stay free of any UI or
rendering library) and re-exported by ``render`` for the app.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

# One colour per phase, shared by the 3D view, the 2D plots and the colourised label images.
# Colour-blind friendly; phase 0 (often pore / background) is a neutral dark grey.
PHASE_COLORS: tuple[str, ...] = (
    "#4d4d4d",  # 0 dark grey
    "#e69f00",  # 1 orange
    "#56b4e9",  # 2 sky blue
    "#009e73",  # 3 green
    "#f0e442",  # 4 yellow
    "#0072b2",  # 5 blue
    "#d55e00",  # 6 vermillion
    "#cc79a7",  # 7 pink
    "#999999",  # 8 light grey
    "#882255",  # 9 wine
)


def phase_color(i: int, colors: Sequence[str] | None = None) -> str:
    """Hex colour of phase ``i`` (cycles when there are more phases than colours)."""
    colors = colors or PHASE_COLORS
    return colors[int(i) % len(colors)]


def hex_to_rgb(color: str) -> tuple[int, int, int]:
    c = color.lstrip("#")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def colorize(labels: np.ndarray, colors: Sequence[str] | None = None) -> np.ndarray:
    """Label image (any shape, values 0..n-1) -> uint8 RGB image with the phase colours."""
    labels = np.asarray(labels)
    n = int(labels.max()) + 1 if labels.size else 1
    lut = np.array([hex_to_rgb(phase_color(i, colors)) for i in range(max(n, 1))], dtype=np.uint8)
    return lut[labels.astype(np.intp)]


def to_display(image: np.ndarray, kind: str) -> np.ndarray:
    """Any 2D array from the core (labels, gray, RGB) -> uint8 image fit for st.image."""
    image = np.asarray(image)
    if kind == "nphase":
        return colorize(image)
    if image.dtype == np.uint8:
        return image
    if image.dtype.kind == "f" and image.size and 0.0 <= float(np.min(image)) and float(np.max(image)) <= 1.0:
        return (image * 255.0).round().astype(np.uint8)  # the core's [0, 1] images
    lo, hi = float(np.min(image)), float(np.max(image))
    scaled = (image.astype(np.float64) - lo) / (hi - lo if hi > lo else 1.0)
    return (scaled * 255).round().astype(np.uint8)
