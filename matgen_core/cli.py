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


def _launch_rank() -> int:
    """This process's rank under torchrun (0 without it), read from the environment: no torch import."""
    import os

    try:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        return int(os.environ.get("RANK", "0")) if world > 1 else 0
    except ValueError:
        return 0


def _positive_int(value, option: str, example: str) -> None:
    if value is not None and value < 1:
        raise MatgenInputError(f"{option} must be at least 1, got {value}; pass e.g. {option} {example}.")


def _check_seed(seed) -> None:
    if seed is not None and not 0 <= seed < 2**63:
        raise MatgenInputError(f"--seed must be a whole number from 0 to 2^63-1, got {seed}.")


def _check_train_args(args) -> None:
    """Option checks that need no file and no torch (one clear line each)."""
    import math

    _positive_int(args.steps, "--steps", "500")
    if args.max_minutes is not None and not (math.isfinite(args.max_minutes) and args.max_minutes > 0):
        raise MatgenInputError(f"--max-minutes must be a positive number of minutes, got "
                               f"{args.max_minutes}; leave it out for no time limit.")
    _check_seed(args.seed)
    if args.segment is not None and not 2 <= args.segment <= 8:
        raise MatgenInputError(f"--segment takes the number of phases, 2 to 8, got {args.segment}.")
    if args.segment is not None and args.as_is:
        raise MatgenInputError("--segment and --as-is contradict each other; use --segment N to "
                               "split a grayscale image into phases, or --as-is to train on its grey values.")
    if args.resume and args.set:
        raise MatgenInputError("--set applies when a run is created; a resumed run keeps the settings "
                               "in its config.json (start a new run in another --out folder to change them).")
    if args.resume and args.segment is not None:
        raise MatgenInputError("--segment applies when a run is created; a resumed run keeps its "
                               "training data (drop --segment, or start a new run).")


def _read_training_images(args) -> list:
    """Read (and segment) the training images: numpy/Pillow/tifffile only, so refusals are fast."""
    from . import io

    micrographs = []
    for path in args.images:
        m = io.read_micrograph(path)
        if args.segment:
            m = io.segment(m, args.segment)
        elif not args.as_is:
            m = io.require_phases(m)
        micrographs.append(m)
    return micrographs


def _claim_run(out: Path, args, micrographs):
    """Lock ``out`` and create the run in it (or check there is one to resume).

    Returns (lock, created, existed). On any failure nothing is left behind: no lock, and no
    folder if this call made it.
    """
    from . import runlock, runs

    if out.exists() and not out.is_dir():
        raise MatgenInputError(f"--out {out} is a file; give a folder for the run.")
    existed = out.exists()
    try:
        lock = runlock.acquire(out, what="matgen train" + (" --resume" if args.resume else ""))
    except OSError as err:
        from .errors import os_error_message

        raise MatgenInputError(os_error_message(err, out)) from None
    if lock.took_over:
        from .train import stale_lock_notice

        print(f"matgen: note: {stale_lock_notice(out, lock.took_over)}", file=sys.stderr)
    try:
        if args.resume:
            if not (out / "config.json").exists():
                raise MatgenInputError(f"--resume: {out} holds no run to resume; drop --resume to "
                                       f"start a new one.")
            runs.load_config(out)  # a damaged config.json: say so now
            return lock, False, existed
        if (out / "config.json").exists():
            raise MatgenInputError(f"{out} already holds a run; add --resume to continue it, or "
                                   f"choose another --out folder.")
        runs.create_run(out, args.model, micrographs, preset=args.preset,
                        overrides=_overrides(args.set), seed=args.seed)
        return lock, True, existed
    except BaseException:
        lock.release()
        if not existed:
            runs.discard_run(out, remove_folder=True)
        raise


def cmd_train(args) -> int:
    _check_train_args(args)
    out = Path(args.out)
    lead = _launch_rank() == 0  # torchrun: rank 0 alone checks, locks and creates the run
    micrographs = None
    if lead and args.resume:
        if not (out / "config.json").exists():
            raise MatgenInputError(f"--resume: {out} holds no run to resume; drop --resume to start "
                                   f"a new one.")
        from . import runs

        runs.load_config(out)  # a damaged config.json: say so before torch loads
    elif lead:
        if (out / "config.json").exists():
            raise MatgenInputError(f"{out} already holds a run; add --resume to continue it, or "
                                   f"choose another --out folder.")
        if out.exists() and not out.is_dir():
            raise MatgenInputError(f"--out {out} is a file; give a folder for the run.")
        if not args.images:
            raise MatgenInputError("No training image given; pass the path of a micrograph.")
        micrographs = _read_training_images(args)  # before torch is imported: bad files fail fast

    from . import distributed, runs, train

    args.device = distributed.setup(args.device)
    lock, created, existed, problem = None, False, True, None
    if distributed.rank() == 0:
        try:
            lock, created, existed = _claim_run(out, args, micrographs)
        except MatgenInputError as err:
            problem = err
    # torchrun: every rank stops when rank 0 could not lock or create the run (else they would wait)
    if distributed.any_rank(problem is not None):
        distributed.cleanup()
        raise problem or MatgenInputError(f"rank 0 could not start the run in {out} (see its "
                                          f"message); nothing was trained.")
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    callbacks = [] if args.quiet or distributed.rank() != 0 else [ProgressBar()]
    finished = False
    try:
        result = train.train(out, steps=args.steps, max_minutes=args.max_minutes, device=args.device,
                             callbacks=callbacks, stop=stop)
        finished = True
    except Exception:
        if created and runs.latest_checkpoint(out) is None:  # a run that never started: remove it
            runs.discard_run(out, remove_folder=not existed)
        raise
    finally:
        if lock is not None:
            lock.release()
        distributed.cleanup(wait=finished)
    if distributed.env_rank() == 0:
        print(f"{result['reason']}: step {result['step']} in {result['elapsed_s']:.0f} s; run in {out}")
    return 0


def _check_generate_args(args) -> tuple:
    """Option checks before the run is opened; returns the periodic axes (z, y, x) as booleans."""
    _positive_int(args.count, "--count", "16")
    _positive_int(args.size, "--size", "128")
    _check_seed(args.seed)
    if args.tile is not None and args.tile < 0:
        raise MatgenInputError(f"--tile must be a positive number of voxels (or 0 for one pass), "
                               f"got {args.tile}.")
    if args.raw and args.fractions:
        raise MatgenInputError("--raw and --fractions contradict each other: --raw keeps the "
                               "generator's own phase fractions, --fractions asks for others; use one.")
    if args.size is not None and args.shape is not None:
        raise MatgenInputError("--size and --shape both give the volume's size; use one.")
    periodic = (args.periodic or "").lower()
    if args.periodic is not None and (not periodic or set(periodic) - set("zyx")):
        raise MatgenInputError(f"--periodic takes the axes to make periodic, letters z, y and x "
                               f"(e.g. zyx or x), got '{args.periodic}'.")
    return tuple(ax in periodic for ax in "zyx")


def _parse_shape(args):
    """(Z, Y, X) from --size / --shape, checked (the same rules as generate.parse_shape)."""
    if args.shape is None:
        return (args.size,) * 3 if args.size is not None else None
    try:
        shape = tuple(int(v) for v in args.shape.replace("x", ",").split(","))
    except ValueError:
        raise MatgenInputError(f"--shape must be three integers like 64,128,128, got '{args.shape}'.") from None
    if len(shape) != 3:
        raise MatgenInputError(f"--shape needs three sizes Z,Y,X, got {len(shape)}.")
    if min(shape) < 1:
        raise MatgenInputError(f"--shape sizes must be positive, got {args.shape}.")
    return shape


def _check_output_path(out: Path) -> None:
    """The output file must be creatable: not a folder, in a folder we can write to."""
    import os

    if out.is_dir():
        raise MatgenInputError(f"--out {out} is a folder; give a file name such as {out / 'volume.tif'}.")
    if out.exists() and not os.access(out, os.W_OK):
        raise MatgenInputError(f"Cannot write {out}: the file is read-only; choose another --out.")
    folder = out.absolute().parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise MatgenInputError(f"Cannot write {out}: {folder} is a file, not a folder; check the path.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise MatgenInputError(f"Cannot write {out}: no permission to write in {folder} (or it is "
                               f"read-only); choose a folder you can write to.")


def _check_output_size(args, out: Path, shape) -> None:
    """Disk (and memory, for outputs built in memory) against the size of what will be written."""
    import math

    from . import limits, runs
    from .models import VOLUME_MODELS

    config = runs.load_config(args.run)
    kind = config["data"]["kind"]
    per_voxel = 3 if kind == "color" else 1
    if config["model"] in VOLUME_MODELS:
        if shape is None:
            return  # the default (2x the training size) is small
        n_bytes = math.prod(shape) * per_voxel
        what = f"A {'x'.join(map(str, shape))} volume"
    else:
        side = int(config["model_config"].get("img_size", 64))
        n_bytes = int(args.count or 16) * side * side * per_voxel
        what = f"{args.count or 16} images of {side}x{side}"
    suffix = out.suffix.lower()
    streamed = suffix == ".npy" or (suffix in (".tif", ".tiff") and n_bytes >= 2**31)
    # .vti and small .tif are built whole in memory; with ~2 copies while they are written
    limits.check_output_fits(out, n_bytes + 2**20, 0 if streamed else 2 * n_bytes, what=what)


def cmd_generate(args) -> int:
    out = Path(args.out)
    if out.suffix.lower() not in (".tif", ".tiff", ".npy", ".vti"):
        raise MatgenInputError(f"--out must end in .tif, .tiff, .npy or .vti, got '{out.name}'.")
    periodic = _check_generate_args(args)
    _check_output_path(out)
    from . import runs

    runs.load_config(args.run)  # not a run, or a damaged config.json: say so before torch loads
    shape = _parse_shape(args)
    _check_output_size(args, out, shape)
    from . import generate

    if args.raw and args.calibrate:
        raise MatgenInputError("--raw and --calibrate are two label policies; pick one.")
    policy = "raw" if args.raw else "calibrated" if args.calibrate else None
    # generate() writes --out itself: .npy (and > 2 GB TIFFs) are streamed there tile by tile
    result = generate.generate(args.run, shape=shape, seed=args.seed, count=args.count,
                               device=args.device, periodic=periodic, tile=args.tile, out_path=out,
                               policy=policy, fractions=args.fractions)
    print(f"wrote {out} shape {tuple(result.array.shape)} {result.array.dtype}")
    for line in generate.describe(result.info):
        print(line)
    return 0


def cmd_metrics(args) -> int:
    from . import metrics

    if args.voxel_size is not None and not (args.voxel_size > 0 and args.voxel_size < float("inf")):
        raise MatgenInputError(f"--voxel-size must be a positive length, got {args.voxel_size}.")
    labels, meta = _read_labels(args.file)
    voxel = args.voxel_size or meta.get("voxel_size")
    if args.reference:
        ref, ref_meta = _read_labels(args.reference)
        # the phases that either file declares (our phase table / generation record), so a phase
        # absent from the reference (its last one too) is still compared; else the reference's
        declared = [m["declared_phases"] for m in (ref_meta, meta) if m["declared_phases"]]
        n = max(declared + [ref_meta["n_phases"]]) if declared else None
        result = metrics.compare(ref, labels, n_phases=n, voxel_size=voxel, unit=meta.get("unit", "px"))
    else:
        tortuosity = args.tortuosity
        if args.axes:
            if not args.tortuosity:
                raise MatgenInputError("--axes chooses the axes of --tortuosity; add --tortuosity.")
            if labels.ndim != 3:
                raise MatgenInputError("--axes is for 3D volumes; a 2D image's tortuosity is solved "
                                       "along its first axis. Leave --axes out.")
            from .validation import parse_axes

            tortuosity = parse_axes(args.axes)
        result = metrics.summarize(labels, voxel_size=voxel, unit=meta.get("unit", "px"),
                                   tortuosity=tortuosity)
    if args.json:
        print(json.dumps(result, indent=2, default=_json_default))
    else:
        print(metrics.format_table(result))
    return 0


def _read_labels(path):
    """Labels 0..n-1 from an image, a volume (.tif/.npy) or a run's output, and their metadata:
    ``voxel_size``, ``unit``, ``n_phases`` (the phases the labels stand for) and
    ``declared_phases``: the phase count the file itself records (the phase table of a TIFF we
    wrote, the fractions of a generation record), else None."""
    from . import io

    m = io.require_phases(io.read_micrograph(path))
    return m.labels, {"voxel_size": m.voxel_size, "unit": m.unit, "n_phases": m.n_phases,
                      "declared_phases": io.declared_phase_count(path)}


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
    t.add_argument("--preset", default="quick",
                   help="quick (CPU, ~10 min: a first look), standard (SliceGAN only: CPU, ~40 min, "
                        "the published 64 px window) or paper (the published recipe, for a GPU)")
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
                   help="the generator's own labels, argmax with no bias (the default; "
                        "see docs/fractions.md)")
    g.add_argument("--calibrate", action="store_true",
                   help="calibrated: a per-phase logit bias meets the training image's phase "
                        "fractions (SliceGAN n-phase runs)")
    g.add_argument("--fractions", metavar="F0,F1,...",
                   help="steered: target phase fractions, one per phase, summing to 1 "
                        "(SliceGAN n-phase runs)")
    g.add_argument("--tile", type=int, metavar="N",
                   help="generate in tiles of N voxels a side (same volume, bounded memory); "
                        "default: automatic when one pass would not fit; 0: one pass")
    g.set_defaults(func=cmd_generate)

    m = sub.add_parser("metrics", help="statistics of an image or volume, or compare with a reference")
    m.add_argument("file")
    m.add_argument("--reference", help="reference image or volume to compare against")
    m.add_argument("--voxel-size", type=float)
    m.add_argument("--tortuosity", action="store_true", help="also compute tortuosity (slow)")
    m.add_argument("--axes", metavar="zyx", help="with --tortuosity, the axes of a 3D volume to solve "
                                                 "along, e.g. zyx (default: z). A generated volume of an "
                                                 "isotropic material should conduct alike along all three")
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
        print(f"matgen: error: {_one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("matgen: interrupted", file=sys.stderr)
        return 130
    except MemoryError:
        print("matgen: error: out of memory; make the input or output smaller (crop, --size, "
              "--count) or use a machine with more memory.", file=sys.stderr)
        return 2
    except OSError as err:  # unwritable output, full disk, missing folder met while working
        from .errors import os_error_message

        print(f"matgen: error: {_one_line(os_error_message(err))}", file=sys.stderr)
        return 2
    except Exception as err:  # a bug: one line, and the traceback only on request
        import os

        if os.environ.get("MATGEN_DEBUG"):
            raise
        print(f"matgen: error: unexpected {type(err).__name__}: {_one_line(err)} (this is a bug; "
              f"please report it with the command you ran; MATGEN_DEBUG=1 shows the traceback)",
              file=sys.stderr)
        return 1


def _one_line(err) -> str:
    return " ".join(str(err).split())


if __name__ == "__main__":
    sys.exit(main())
