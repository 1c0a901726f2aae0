"""Generation speed and peak memory: tiled (tiling.py) vs one-pass fp32, `paper` preset.

    python bench/bench_generate.py [--sizes 128,256,512] [--onepass-max 256] [--budget-gb 1.4]
                                   [--big] [--big-format npy|tif] [--phases 2] [--threads N]

Random weights (speed and memory do not depend on training). Every case runs in its own
subprocess so peak RSS (``ru_maxrss``) is that case's alone; RSS includes the Python + torch
runtime (~0.3-0.4 GB). Cases:

* ``baseline`` - the textbook one-pass fp32 path: ``Generator.forward_plain`` (ConvTranspose3d,
  BatchNorm3d, ReLU module by module, channels-first) over the whole latent + argmax; the
  reference every speed ratio is against. Only for sizes <= ``--onepass-max`` (a one-pass 512^3
  paper volume needs ~13 GB of activations, more than this machine can spare).
* ``onepass`` - ``SliceGANTrainer.sample`` as shipped: one pass, fp32, channels-last, BatchNorm
  folded into the convolutions, the last layer as a sub-pixel convolution (models/slicegan.py).
* ``tiled``   - ``generate.make_volume`` (raw policy) with the tile ``choose_tile`` picks for ``--budget-gb``
  of activations; the result is hashed and compared with ``onepass`` where both ran.
* ``stream``  - with ``--big``: 1024^3 written tile by tile into a memory-mapped .npy (or BigTIFF)
  in ``--tmp``; reports the time (long on a CPU) and peak RSS.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def make_trainer(n_phases: int):
    import torch

    from matgen_core.models.slicegan import PRESETS, SliceGANTrainer

    torch.manual_seed(0)
    cfg = {**PRESETS["paper"], "kind": "nphase", "n_phases": n_phases, "num_images": 1}
    tr = SliceGANTrainer.create(cfg, None, torch.device("cpu"))
    with torch.no_grad():  # non-trivial eval statistics, so the argmax is not degenerate
        for bn in tr.generator.norms:
            bn.running_mean.uniform_(-0.2, 0.2)
            bn.running_var.uniform_(0.5, 2.0)
    return tr


def run_case(args) -> dict:
    import numpy as np
    import torch

    from matgen_core import io, tiling
    from matgen_core.fractions import labels_from_probs
    from matgen_core.generate import make_volume
    from matgen_core.data import decode

    if args.threads:
        torch.set_num_threads(args.threads)
    tr = make_trainer(args.phases)
    n = args.size
    shape = (n, n, n)
    budget = int(args.budget_gb * 2**30)
    tile = None
    tr.sample((32, 32, 32), seed=0)  # warm-up: torch / oneDNN first-call costs are not timed
    t0, c0 = time.perf_counter(), time.process_time()
    if args.case == "baseline":
        gen = tr.generator.eval()
        z = tr.latent(shape, seed=1).contiguous()  # channels-first
        with torch.inference_mode():
            vol = decode(gen.forward_plain(z)[0].numpy(), "nphase")
    elif args.case == "onepass":
        vol = decode(tr.sample(shape, seed=1), "nphase")
    elif args.case == "tiled":
        tile = args.tile or tiling.choose_tile(shape, tr.config, budget)
        vol, _ = make_volume(tr, shape, seed=1, tile=tile)
    else:  # stream
        tile = args.tile or tiling.choose_tile(shape, tr.config, budget) or 256
        out = Path(args.tmp) / f"bench_{n}.{args.big_format}"
        if args.big_format == "npy":
            vol, _ = make_volume(tr, shape, seed=1, tile=tile, out_path=out)
        else:  # BigTIFF streamed plane by plane, whatever the size
            plan = tiling.TilePlan(tr, shape, seed=1, tile=tile)
            planes = (p for _, slab in plan.slabs(labels_from_probs) for p in slab)
            io.write_bigtiff_planes(out, planes, shape, phase_values=list(range(args.phases)))
            vol = None
    seconds = time.perf_counter() - t0
    cpu = time.process_time() - c0
    res = dict(case=args.case, size=n, tile=tile, seconds=round(seconds, 2), cpu_s=round(cpu, 1),
               mvox_per_s=round(n ** 3 / seconds / 1e6, 3),
               peak_rss_gb=round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 3),
               threads=torch.get_num_threads())
    if vol is not None and n <= args.onepass_max:  # kept for the comparison with the baseline
        np.save(Path(args.tmp) / f"bench_{args.case}_{n}.npy", np.asarray(vol))
    if vol is not None:  # slab by slab: a 1024^3 memory map must not be copied whole
        sha, counts = hashlib.sha1(), np.zeros(args.phases, np.int64)
        for z in range(0, vol.shape[0], 16):
            slab = np.ascontiguousarray(vol[z:z + 16])
            sha.update(slab.tobytes())
            counts += np.bincount(slab.ravel(), minlength=args.phases)[:args.phases]
        res["sha1"] = sha.hexdigest()[:12]
        res["fractions"] = [round(float(f), 4) for f in counts / vol.size]
    if args.case == "stream":
        res["file"] = str(out)
        res["file_gb"] = round(out.stat().st_size / 2**30, 3)
        if not args.keep:
            out.unlink()
    return res


def spawn(case: str, size: int, args) -> dict:
    cmd = [sys.executable, __file__, "--case", case, "--size", str(size), "--phases", str(args.phases),
           "--onepass-max", str(args.onepass_max),
           "--budget-gb", str(args.budget_gb), "--tmp", args.tmp, "--big-format", args.big_format]
    if args.threads:
        cmd += ["--threads", str(args.threads)]
    if args.tile:
        cmd += ["--tile", str(args.tile)]
    if args.keep:
        cmd += ["--keep"]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return dict(case=case, size=size, error=proc.stderr.strip().splitlines()[-1:] or ["failed"])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    import numpy as np

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="128,256,512")
    p.add_argument("--onepass-max", type=int, default=256, help="largest cube side for the one-pass baseline")
    p.add_argument("--budget-gb", type=float, default=1.4, help="activation budget for choose_tile")
    p.add_argument("--tile", type=int, help="force this tile side (voxels) instead of choose_tile")
    p.add_argument("--big", action="store_true", help="also stream 1024^3 to a file (slow on a CPU)")
    p.add_argument("--big-size", type=int, default=1024)
    p.add_argument("--big-format", choices=["npy", "tif"], default="npy")
    p.add_argument("--tmp", default=tempfile.gettempdir())
    p.add_argument("--keep", action="store_true", help="keep the streamed file")
    p.add_argument("--phases", type=int, default=2)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--case", choices=["baseline", "onepass", "tiled", "stream"], help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.case:
        print(json.dumps(run_case(args)))
        return

    print(f"paper preset, random weights, {args.phases} phases, cpu_count={os.cpu_count()}, "
          f"activation budget {args.budget_gb} GB")
    rows = []
    for n in [int(v) for v in args.sizes.split(",")]:
        cases = (["baseline", "onepass"] if n <= args.onepass_max else []) + ["tiled"]
        for case in cases:
            r = spawn(case, n, args)
            rows.append(r)
            print(json.dumps(r), flush=True)
    if args.big:
        r = spawn("stream", args.big_size, args)
        rows.append(r)
        print(json.dumps(r), flush=True)

    print()
    print(f"{'case':8s} {'size':>5s} {'tile':>5s} {'seconds':>8s} {'CPU s':>7s} {'Mvox/s':>7s} {'peak RSS GB':>11s}  sha1")
    for r in rows:
        if "error" in r:
            print(f"{r['case']:8s} {r['size']:5d}  failed: {r['error']}")
            continue
        print(f"{r['case']:8s} {r['size']:5d} {str(r['tile'] or '-'):>5s} {r['seconds']:8.1f} {r['cpu_s']:7.1f} "
              f"{r['mvox_per_s']:7.3f} {r['peak_rss_gb']:11.2f}  {r.get('sha1', '')}")
    by = {}
    for r in rows:
        by.setdefault(r["size"], {})[r["case"]] = r
    for n, d in by.items():
        base = d.get("baseline")
        if not base or "error" in base:
            continue
        ref = np.load(Path(args.tmp) / f"bench_baseline_{n}.npy")
        for case in ("onepass", "tiled"):
            r = d.get(case)
            if not r or "error" in r:
                continue
            vol = np.load(Path(args.tmp) / f"bench_{case}_{n}.npy")
            print(f"{n}^3 {case:8s} vs baseline: voxels/s x{base['seconds'] / r['seconds']:.2f} wall, "
                  f"x{base['cpu_s'] / max(r['cpu_s'], 1e-9):.2f} CPU, peak RSS "
                  f"x{r['peak_rss_gb'] / base['peak_rss_gb']:.2f}, differing voxels "
                  f"{np.mean(vol != ref):.2e}")
        if "onepass" in d and "tiled" in d and "error" not in d["tiled"]:
            print(f"{n}^3 tiled vs one-pass identical: {d['onepass'].get('sha1') == d['tiled'].get('sha1')}")
    for f in Path(args.tmp).glob("bench_*_*.npy"):
        if f.name.split("_")[1] in ("baseline", "onepass", "tiled"):
            f.unlink()
    for n, d in by.items():
        t = d.get("tiled") or d.get("stream")
        if t and "error" not in t and n >= 512:
            print(f"{n}^3 peak RSS {t['peak_rss_gb']:.2f} GB (target <= 2 GB: "
                  f"{'met' if t['peak_rss_gb'] <= 2 else 'MISSED'})")


if __name__ == "__main__":
    main()
