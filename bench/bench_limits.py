"""How fast, and in how little memory, an oversized input image is refused (issue #15).

    python bench/bench_limits.py [--side 20480] [--repeat 3]

Makes a zlib-compressed SIDE x SIDE uint8 TIFF (a few MB on disk, SIDE^2 pixels) in a temp
folder, then runs `matgen train slicegan BOMB.tif --out ...` in a subprocess REPEAT times and
prints, per run: exit code, wall time, CPU time and peak RSS of the `matgen` process (getrusage of a wrapper's only child). Target: refused in < 2 s with
< 500 MB peak RSS. Wall time depends on how busy the machine is; CPU time much less.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import numpy as np
import tifffile

ROOT = Path(__file__).resolve().parent.parent

MEASURE = textwrap.dedent("""
    import json, resource, subprocess, sys, time
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "matgen_core.cli", *sys.argv[1:]], capture_output=True, text=True)
    wall = time.perf_counter() - t0
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    print(json.dumps(dict(rc=p.returncode, err=p.stderr.strip(), wall_s=wall,
                          cpu_s=ru.ru_utime + ru.ru_stime, peak_rss_mb=ru.ru_maxrss / 1024)))
""")


def bomb(path: Path, side: int, tile: int = 1024) -> Path:
    pattern = np.zeros((tile, tile), np.uint8)
    pattern[:, ::7] = 255
    n = -(-side // tile)
    tifffile.imwrite(path, (pattern for _ in range(n * n)), shape=(n * tile, n * tile), dtype=np.uint8,
                     tile=(tile, tile), compression="zlib", compressionargs={"level": 1})
    return path


def measure(*args) -> dict:
    env = {**__import__("os").environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-c", MEASURE, *map(str, args)], capture_output=True,
                         text=True, env=env, cwd=ROOT)
    return json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--side", type=int, default=20480)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        path = bomb(tmp / "bomb.tif", args.side)
        print(f"input: {path.stat().st_size / 1e6:.1f} MB TIFF, {args.side}x{args.side} = "
              f"{args.side ** 2 / 1e6:.0f} million pixels")
        for k in range(args.repeat):
            m = measure("train", "slicegan", path, "--out", tmp / f"run{k}")
            print(f"train refusal {k + 1}: exit {m['rc']}, wall {m['wall_s']:.2f} s, cpu {m['cpu_s']:.2f} s, "
                  f"peak RSS {m['peak_rss_mb']:.0f} MB")
        print(f"message: {m['err']}")


if __name__ == "__main__":
    main()
