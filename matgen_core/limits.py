"""Size limits checked before anything big is allocated or written.

- Input images: at most :func:`max_pixels` pixels (voxels for a stack), read from the file's
  header before it is decoded (io/read.py). Default :data:`DEFAULT_MAX_PIXELS` (2^27 = 134 million:
  a 11585^2 image or a 512^3 volume); set ``MATGEN_MAX_PIXELS`` or pass ``max_pixels=`` to change
  it. Decoding a file costs about :data:`BYTES_PER_INPUT_PIXEL` bytes of memory per pixel.
- Outputs: a generated volume or image stack must fit on the output's disk
  (:func:`check_output_fits`) and, when it is built in memory, in the free memory.

No torch here; sizes are in bytes, shapes are tuples of ints.
"""
from __future__ import annotations

import math
import os
import shutil
from pathlib import Path

from .errors import MatgenInputError

DEFAULT_MAX_PIXELS = 2**27
# peak bytes per pixel while reading + tidying + labelling an image (uint8 in, float32 image,
# uint8 labels, int64 search / one-hot temporaries): measured order of magnitude, for messages
BYTES_PER_INPUT_PIXEL = 14


def max_pixels(limit: int | None = None) -> int:
    """The pixel limit for input images: ``limit``, else ``$MATGEN_MAX_PIXELS``, else the default."""
    if limit is not None:
        value = limit
    else:
        raw = os.environ.get("MATGEN_MAX_PIXELS", "").strip().replace("_", "")
        if not raw:
            return DEFAULT_MAX_PIXELS
        try:
            value = int(float(raw))
        except ValueError:
            raise MatgenInputError(f"MATGEN_MAX_PIXELS={raw!r} is not a number; set it to a pixel "
                                   f"count such as 200000000, or unset it.") from None
    if value < 1:
        raise MatgenInputError(f"The pixel limit must be at least 1, got {value}.")
    return int(value)


def format_bytes(n: float) -> str:
    """'1.2 GB', '340 MB', '12 kB' (decimal units, as disks are sold)."""
    n = float(n)
    for unit, size in (("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{int(n)} B"


def check_pixel_count(shape, name: str, limit: int | None = None) -> None:
    """MatgenInputError if an image of spatial ``shape`` has more pixels than the limit."""
    shape = tuple(int(s) for s in shape)
    count = math.prod(shape) if shape else 0
    allowed = max_pixels(limit)
    if count > allowed:
        raise MatgenInputError(
            f"{name} is {'x'.join(map(str, shape))} = {count / 1e6:.1f} million pixels, more than "
            f"the limit of {allowed / 1e6:.1f} million (reading it would take about "
            f"{format_bytes(count * BYTES_PER_INPUT_PIXEL)} of memory); crop or downsample it "
            f"first, or raise the limit with MATGEN_MAX_PIXELS if this machine has the memory.")


def free_memory_bytes() -> int | None:
    """Memory available to a new allocation (Linux MemAvailable, cgroup limit aware), or None."""
    available = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError):
        pass
    for path, usage in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                        ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                         "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            limit = Path(path).read_text().strip()
            used = int(Path(usage).read_text().strip())
        except (OSError, ValueError):
            continue
        if limit.isdigit() and int(limit) < 2**60:
            room = max(0, int(limit) - used)
            available = room if available is None else min(available, room)
        break
    return available


def free_disk_bytes(path) -> int | None:
    """Free bytes on the disk that holds ``path`` (its nearest existing parent), or None."""
    folder = Path(path).absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def check_output_fits(out_path, n_bytes: int, in_memory_bytes: int = 0, what: str = "The output") -> None:
    """MatgenInputError if ``n_bytes`` will not fit on ``out_path``'s disk, or ``in_memory_bytes``
    (what must be held in memory at once) not in the free memory. Messages give the estimates."""
    free = free_disk_bytes(out_path)
    if free is not None and n_bytes > free:
        raise MatgenInputError(
            f"{what} would take about {format_bytes(n_bytes)} on disk but only {format_bytes(free)} "
            f"is free where {out_path} goes; make it smaller (--size / --shape / "
            f"--count) or write it to a bigger disk.")
    if in_memory_bytes:
        room = free_memory_bytes()
        if room is not None and in_memory_bytes > room:
            raise MatgenInputError(
                f"{what} needs about {format_bytes(in_memory_bytes)} of memory at once but only "
                f"{format_bytes(room)} is free; make it smaller, or write .npy / .tif, which are "
                f"generated in tiles and streamed to disk.")
