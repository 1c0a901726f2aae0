"""The `matgen` command: train / generate / metrics / bench, for headless and cluster use.

Bad input never prints a traceback: it exits with status 2 and one line saying what is wrong and
what to do.
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from pathlib import Path

from .errors import MatgenInputError


def _overrides(pairs: list[str]) -> dict:
    """Parse ``--set key=value`` pairs; values are JSON when they parse as JSON, else strings."""
    out = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise MatgenInputError(f"--set takes key=value, got '{pair}'.")
        key, value = pair.split("=", 1)
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


class ProgressBar:
    """A one-line terminal progress bar with losses and ETA, fed by training events."""

    def __init__(self, stream=sys.stderr, every_s: float = 0.5):
        self.stream, self.every_s, self.last = stream, every_s, 0.0

    def __call__(self, event: dict) -> None:
        if event["type"] == "done":
            self.stream.write("\n")
            self.stream.flush()
            return
        if event["type"] != "step":
            return
        now = time.monotonic()
        if now - self.last < self.every_s and event["step"] != event["total_steps"]:
            return
        self.last = now
        step, total = event["step"], event["total_steps"]
        width = 24
        filled = int(width * step / max(total, 1))
        eta = event.get("eta_s")
        eta_txt = f"{int(eta // 60)}m{int(eta % 60):02d}s" if eta is not None else "?"
        losses = " ".join(f"{k[:6]}={v:.3g}" for k, v in list(event["losses"].items())[:3])
        self.stream.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {step}/{total} "
                          f"{event['steps_per_s']:.2f} it/s ETA {eta_txt} {losses}   ")
        self.stream.flush()


def cmd_train(args) -> int:
    from . import distributed, io, runs, train

    out = Path(args.out)
    # torchrun (DDP): join the group first; rank 0 alone checks and creates the run directory
    args.device = distributed.setup(args.device)
    if distributed.rank() != 0:
        pass
    elif args.resume:
        if not (out / "config.json").exists():
            raise MatgenInputError(f"--resume: {out} holds no run to resume; drop --resume to start "
                                   f"a new one.")
    else:
        if (out / "config.json").exists():
            raise MatgenInputError(f"{out} already holds a run; add --resume to continue it, or "
                                   f"choose another --out folder.")
        if not args.images:
            raise MatgenInputError("No training image given; pass the path of a micrograph.")
        micrographs = []
        for path in args.images:
            m = io.read_micrograph(path)
            if args.segment:
                m = io.segment(m, args.segment)
            elif not args.as_is:
                m = io.require_phases(m)
            micrographs.append(m)
        runs.create_run(out, args.model, micrographs, preset=args.preset,
                        overrides=_overrides(args.set), seed=args.seed)
    distributed.barrier()  # the others wait for rank 0's run directory
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    callbacks = [] if args.quiet or distributed.rank() != 0 else [ProgressBar()]
    try:
        result = train.train(out, steps=args.steps, max_minutes=args.max_minutes, device=args.device,
                             callbacks=callbacks, stop=stop)
    finally:
        distributed.cleanup()
    if distributed.env_rank() == 0:
        print(f"{result['reason']}: step {result['step']} in {result['elapsed_s']:.0f} s; run in {out}")
    return 0


def cmd_generate(args) -> int:
    from . import generate

    out = Path(args.out)
    if out.suffix.lower() not in (".tif", ".tiff", ".npy", ".vti"):
        raise MatgenInputError(f"--out must end in .tif, .tiff, .npy or .vti, got '{out.name}'.")
    shape = generate.parse_shape(size=args.size, shape=args.shape)
    periodic = tuple(ax in (args.periodic or "").lower() for ax in "zyx")
    # generate() writes --out itself: large volumes are streamed there tile by tile (tiling.py)
    result = generate.generate(args.run, shape=shape, seed=args.seed, count=args.count,
                               device=args.device, periodic=periodic, tile=args.tile, out_path=out,
                               fractions=args.fractions, calibrate=not args.raw)
    print(f"wrote {out} shape {tuple(result.array.shape)} {result.array.dtype}")
    if result.kind == "nphase" and not result.fractions and not args.raw and not args.count:
        print("note: generated in tiles, so the phase fractions are the generator's own "
              "(default calibration needs one pass; --fractions F0,F1,... fits it on a 128^3 probe)")
    if result.fractions:  # phase-fraction control report
        f = result.fractions
        probe = ""  # tiled beyond the probe: the generator alone was measured on the probe
        if f.get("probe") and tuple(f["probe"]) != tuple(result.array.shape[:3]):
            probe = f" (on its {'x'.join(map(str, f['probe']))} corner)"
        print("fractions target " + " ".join(f"{v:.4f}" for v in f["target"]) + f" | generator{probe} "
              + " ".join(f"{v:.4f}" for v in f["before"]) + " | achieved "
              + " ".join(f"{v:.4f}" for v in f["achieved"]))
        if f.get("morphology"):
            m = f["morphology"]
            print(f"morphology change vs unconditioned: S2 {m['s2']:.4f}, surface area "
                  f"{100 * (m['surface_area'] or 0):.1f} %")
    return 0


def cmd_metrics(args) -> int:
    from . import io, metrics

    labels, meta = _read_labels(args.file)
    voxel = args.voxel_size or meta.get("voxel_size")
    if args.reference:
        ref, ref_meta = _read_labels(args.reference)
        result = metrics.compare(ref, labels, voxel_size=voxel, unit=meta.get("unit", "px"))
    else:
        result = metrics.summarize(labels, voxel_size=voxel, unit=meta.get("unit", "px"),
                                   tortuosity=args.tortuosity)
    if args.json:
        print(json.dumps(result, indent=2, default=_json_default))
    else:
        print(metrics.format_table(result))
    return 0


def _read_labels(path):
    """Labels 0..n-1 from an image, a volume (.tif/.npy) or a run's output."""
    from . import io

    m = io.read_micrograph(path)
    m = io.require_phases(m)
    return m.labels, {"voxel_size": m.voxel_size, "unit": m.unit}


def _json_default(value):
    import numpy as np

    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value)}")


def cmd_bench(args) -> int:
    import runpy

    bench_dir = Path(__file__).resolve().parent.parent / "bench"
    script = bench_dir / f"bench_{args.name}.py"
    if not script.exists():
        names = sorted(p.stem[len("bench_"):] for p in bench_dir.glob("bench_*.py"))
        raise MatgenInputError(f"No benchmark '{args.name}'; available: {', '.join(names) or 'none'} "
                               f"(benchmarks run from a source checkout).")
    sys.argv = [str(script), *args.rest]
    runpy.run_path(str(script), run_name="__main__")
    return 0


def cmd_validate(args) -> int:
    """`matgen validate VOLUME --truth TRUE3D`: 3D statistics of a volume against a true volume."""
    from . import io, validation

    volume, meta = io.read_volume(args.volume)
    truth, truth_meta = io.read_volume(args.truth)
    voxel = args.voxel_size or meta.get("voxel_size") or truth_meta.get("voxel_size")
    unit = meta.get("unit") if meta.get("voxel_size") else truth_meta.get("unit", "px")
    phases = None if args.phases is None else [v for v in args.phases.split(",") if v.strip()]
    report = validation.validate(
        volume, truth, voxel_size=voxel, unit=unit or "px", tortuosity=not args.no_tortuosity,
        tortuosity_phases=phases, tortuosity_axes=args.axes, spread=not args.no_spread,
        device=args.device,
        progress=None if args.quiet else lambda f, msg: print(f"\r{100 * f:5.1f}% {msg:<48}", end="",
                                                              file=sys.stderr, flush=True))
    if not args.quiet:
        print(file=sys.stderr)
    print(validation.format_table(report))
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=2, default=_json_default))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="matgen", description="MatGen Studio: microstructures from micrographs.")
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model on a micrograph")
    t.add_argument("model", help="slicegan, dcgan, vae or vaegan")
    t.add_argument("images", nargs="*", help="training image(s): 1, or 2-3 for anisotropic SliceGAN")
    t.add_argument("--out", required=True, help="run directory")
    t.add_argument("--preset", default="quick", help="quick (CPU, minutes) or paper (published)")
    t.add_argument("--steps", type=int, help="total generator steps (default: the preset's)")
    t.add_argument("--max-minutes", type=float, help="stop after this many minutes (checkpointed)")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    t.add_argument("--resume", action="store_true", help="continue the run in --out")
    t.add_argument("--segment", type=int, metavar="N", help="segment grayscale input into N phases")
    t.add_argument("--as-is", action="store_true", help="train on grayscale / colour values directly")
    t.add_argument("--norm", choices=["batch", "instance", "none"], help="2D GAN generator norm")
    t.add_argument("--set", action="append", metavar="KEY=VALUE", help="override any hyperparameter")
    t.add_argument("--quiet", action="store_true", help="no progress bar")
    t.set_defaults(func=cmd_train)

    g = sub.add_parser("generate", help="generate from a trained run")
    g.add_argument("run", help="run directory")
    g.add_argument("--out", required=True, help="output file: .tif, .npy or .vti")
    g.add_argument("--size", type=int, help="cube side in voxels")
    g.add_argument("--shape", help="Z,Y,X in voxels")
    g.add_argument("--count", type=int, help="number of images (2D models)")
    g.add_argument("--seed", type=int, default=0)
    g.add_argument("--periodic", help="axes to make periodic, e.g. zyx or x (their sides: "
                                      "multiples of 32 voxels)")
    g.add_argument("--device", default="auto")
    g.add_argument("--raw", action="store_true",
                   help="the generator's own phase fractions (default: calibrated to the "
                        "training image's; see docs/fractions.md)")
    g.add_argument("--fractions", metavar="F0,F1,...",
                   help="target phase fractions, one per phase, summing to 1 (SliceGAN n-phase runs)")
    g.add_argument("--tile", type=int, metavar="N",
                   help="generate in tiles of N voxels a side (same volume, bounded memory); "
                        "default: automatic when one pass would not fit; 0: one pass")
    g.set_defaults(func=cmd_generate)

    m = sub.add_parser("metrics", help="statistics of an image or volume, or compare with a reference")
    m.add_argument("file")
    m.add_argument("--reference", help="reference image or volume to compare against")
    m.add_argument("--voxel-size", type=float)
    m.add_argument("--tortuosity", action="store_true", help="also compute tortuosity (slow)")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=cmd_metrics)

    v = sub.add_parser("validate", help="3D statistics of a volume against a true 3D volume "
                                        "(fractions, S2, surface area, TPB, percolation, tortuosity)")
    v.add_argument("volume", help="generated volume: .tif/.tiff or .npy labels (Z, Y, X)")
    v.add_argument("--truth", required=True, help="the true 3D volume: .tif/.tiff or .npy labels")
    v.add_argument("--phases", metavar="P,Q", help="phases to solve tortuosity for (default: all)")
    v.add_argument("--axes", metavar="zyx", help="axes to solve tortuosity along, e.g. z or zx "
                                                 "(default: all three)")
    v.add_argument("--no-tortuosity", action="store_true", help="skip tortuosity (the slow part)")
    v.add_argument("--no-spread", action="store_true", help="skip the truth's two spread crops")
    v.add_argument("--voxel-size", type=float, help="voxel edge (default: from the files)")
    v.add_argument("--device", default="cpu", help="tortuosity solver device (cpu, cuda)")
    v.add_argument("--json", metavar="OUT.json", help="also write the full report as JSON")
    v.add_argument("--quiet", action="store_true", help="no progress line")
    v.set_defaults(func=cmd_validate)

    b = sub.add_parser("bench", help="run a benchmark script from bench/")
    b.add_argument("name")
    b.add_argument("rest", nargs=argparse.REMAINDER)
    b.set_defaults(func=cmd_bench)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "norm", None):
        args.set = (args.set or []) + [f"norm={json.dumps(args.norm)}"]
    try:
        return args.func(args)
    except MatgenInputError as err:
        print(f"matgen: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("matgen: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
