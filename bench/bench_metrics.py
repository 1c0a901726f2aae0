"""Time the microstructure metrics on a 256^3 three-phase volume.

    python bench/bench_metrics.py [--volume FILE] [--r-max 32] [--tortuosity-size 128]
                                  [--max-iter 20000] [--device cpu] [--skip-tortuosity]

Uses electrode.tiff from the shared SliceGAN examples when present, else a synthetic 3-phase
volume. Prints each metric's time, the summarize() total against the 10 s target, then the
tortuosity time per phase (flux along axis 0) on a central crop of --tortuosity-size voxels
(0 = the whole volume).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from matgen_core import metrics as M  # noqa: E402

ELECTRODE = ROOT.parent / "shared" / "data" / "slicegan_examples" / "electrode.tiff"
TARGET_S = 10.0


def load_volume(path: Path | None):
    path = path or ELECTRODE
    if path.exists():
        import tifffile
        return tifffile.imread(path), str(path)
    from scipy import ndimage
    noise = np.random.default_rng(0).standard_normal((256, 256, 256)).astype(np.float32)
    g = ndimage.gaussian_filter(noise, 2)          # std ~0.053
    a = np.zeros(g.shape, np.uint8)
    a[g > -0.02] = 1                               # fractions ~0.35 / 0.42 / 0.23
    a[g > 0.04] = 2
    return a, "synthetic 3-phase 256^3 (electrode.tiff not found)"


def timed(label, fn, rows):
    """Run ``fn``; print wall time and process CPU time (all threads): on a busy machine the wall
    time grows with contention, the CPU time much less."""
    t, c = time.perf_counter(), time.process_time()
    out = fn()
    dt, dc = time.perf_counter() - t, time.process_time() - c
    rows.append((label, dt))
    print(f"  {label:<34}{dt:8.3f} s wall {dc:8.3f} s cpu", flush=True)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--volume", type=Path, default=None, help="3D label TIFF (default electrode.tiff)")
    ap.add_argument("--r-max", type=int, default=32)
    ap.add_argument("--tortuosity-size", type=int, default=128,
                    help="side of the central crop for tortuosity (0 = whole volume)")
    ap.add_argument("--max-iter", type=int, default=20000, help="tortuosity iteration budget")
    ap.add_argument("--device", default="cpu", help="torch device for tortuosity")
    ap.add_argument("--skip-tortuosity", action="store_true")
    args = ap.parse_args(argv)

    vol, source = load_volume(args.volume)
    print(f"volume: {source}  shape {vol.shape} dtype {vol.dtype}")
    if hasattr(os, "getloadavg"):
        print(f"cpus: {os.cpu_count()}, load average before start: {os.getloadavg()[0]:.2f}")

    t = time.perf_counter()
    import torch  # noqa: F401  (the S2 FFT uses torch; keep its import out of the timings)
    M.s2_all(np.indices((8, 8, 8)).sum(0) % 2, 2, 2)
    print(f"  (imports + warm-up {time.perf_counter() - t:.2f} s, not counted)")

    r = args.r_max
    rows: list[tuple[str, float]] = []
    print("\nindividual public calls (each validates its input):")
    labels, n = timed("validate / relabel (_prepare)", lambda: M._prepare(vol), rows)
    timed("phase_fractions", lambda: M.phase_fractions(labels, n), rows)
    timed("fraction_profiles", lambda: M.fraction_profiles(labels, n), rows)
    timed(f"s2_all (3 phases, r_max={r})", lambda: M.s2_all(labels, n, r), rows)
    timed("surface_area (+ interfaces)", lambda: M.surface_area(labels, n), rows)
    timed("triple_phase_boundary_density", lambda: M.triple_phase_boundary_density(labels, n_phases=n), rows)
    timed("percolation", lambda: M.percolation(labels, n), rows)
    timed(f"isotropy_index (r_max={r})", lambda: M.isotropy_index(labels, n, r), rows)
    timed("fraction_std (representativeness)", lambda: M.fraction_std(labels, n, (64, 64, 64), r), rows)
    total_individual = sum(dt for _, dt in rows)
    print(f"  {'sum of individual calls':<34}{total_individual:8.3f} s")

    print("\nshared-work entry points:")
    shared: list[tuple[str, float]] = []
    summary = timed("summarize (all but tortuosity)", lambda: M.summarize(vol, r_max=r), shared)
    dt_sum = shared[-1][1]
    mid = vol.shape[0] // 2
    timed("compare 2D slice vs 3D volume", lambda: M.compare(vol[mid], vol, r_max=r), shared)
    timed("compare 3D vs 3D (same volume)", lambda: M.compare(vol, vol, r_max=r), shared)
    verdict = "OK" if dt_sum < TARGET_S else "OVER"
    print(f"\nsummarize total {dt_sum:.2f} s vs target {TARGET_S:.0f} s: {verdict}")
    print()
    print(M.format_table(summary))

    if args.skip_tortuosity:
        return
    size = args.tortuosity_size
    crop = labels
    if size and size < min(labels.shape):
        o = [(s - size) // 2 for s in labels.shape]
        crop = labels[o[0]:o[0] + size, o[1]:o[1] + size, o[2]:o[2] + size]
    print(f"\ntortuosity (taufactor, flux along axis 0, device {args.device}) on {crop.shape}:")
    t = time.perf_counter()
    import taufactor  # noqa: F401
    print(f"  (taufactor import {time.perf_counter() - t:.2f} s, not counted)")
    total = 0.0
    for p in range(n):
        t, c = time.perf_counter(), time.process_time()
        out = M.tortuosity(crop, p, axis=0, device=args.device, max_iter=args.max_iter, n_phases=n)
        dt, dc = time.perf_counter() - t, time.process_time() - c
        total += dt
        its = max(out["iterations"], 1)
        print(f"  phase {p}: tau {out['tau']:.4f}  D_eff {out['D_eff']:.4f}  "
              f"converged {out['converged']}  {out['iterations']} iterations  {dt:.2f} s wall "
              f"{dc:.2f} s cpu ({1000 * dt / its:.1f} ms/iter)", flush=True)
    print(f"  total {total:.2f} s")


if __name__ == "__main__":
    main()
