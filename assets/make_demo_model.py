"""Train the demo SliceGAN shown on Home, assets/demo_model/, with the project's own code.

    nice -n 10 python assets/make_demo_model.py [--steps 600] [--max-minutes 15] [--threads 2]
                                                [--work DIR] [--shrink-only]

It trains the "quick" preset on the bundled example (assets/example_electrode.png) exactly as
``matgen train slicegan assets/example_electrode.png --preset quick`` would, in a temporary run
folder, then keeps only what generating needs, so the weights fit in the repository:

    assets/demo_model/config.json          the run's config (model, hyperparameters, data)
    assets/demo_model/data/image_0.npy     the training image (uint8 labels), as in any run
    assets/demo_model/checkpoints/latest.pt  {"step", "state": {"generator": ...}} with the
                                           weight-averaged (EMA) generator in float16; no critic,
                                           no optimiser state; loads with weights_only=True
    assets/demo_model/losses.jsonl         the training losses
    assets/demo_model/progress.json        status "done" and the step reached
    assets/demo_model/demo_volume.npz      the 64^3 volume (seed 0) Home shows first, made by
                                           the shrunk model (``labels``, uint8)

``--work DIR`` keeps the full run (critic, optimisers) there, so a later call with the same
``--work`` resumes it; ``--shrink-only`` rewrites assets/demo_model/ from its latest checkpoint.
config.json's "demo" entry records the steps, wall-clock and CPU minutes spent.

The result is an ordinary, finished run folder: ``matgen generate assets/demo_model --size 64``
works on it. Training is seeded, but CPU thread scheduling makes runs differ slightly.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script from anywhere, without installing the package

import torch  # noqa: E402

from matgen_core import io, runs, train  # noqa: E402

EXAMPLE = ROOT / "assets" / "example_electrode.png"
OUT = ROOT / "assets" / "demo_model"
DEMO_SHAPE = (64, 64, 64)  # pages/_ui.py DEMO_SHAPE


def shrink_checkpoint(src_run: Path, dst_run: Path) -> int:
    """Copy ``src_run`` to ``dst_run`` keeping only the sampling generator (float16 weights).

    Returns the checkpoint's size in bytes.
    """
    ckpt = runs.load_checkpoint(src_run, device="cpu")
    state = ckpt["state"]
    generator = state.get("generator_ema", state["generator"])  # the network that samples
    small = {k: (v.half() if v.is_floating_point() else v) for k, v in generator.items()}
    if dst_run.exists():
        shutil.rmtree(dst_run)
    (dst_run / "data").mkdir(parents=True)
    for name in ("config.json", "losses.jsonl"):
        shutil.copy2(src_run / name, dst_run / name)
    for path in sorted((src_run / "data").glob("image_*.npy")):
        shutil.copy2(path, dst_run / "data" / path.name)
    payload = {"step": int(ckpt["step"]), "state": {"generator": small}}
    path = runs.save_checkpoint(dst_run, payload)
    progress = runs.read_progress(src_run)
    progress.update(status="done", step=int(ckpt["step"]), pid=None)
    runs.atomic_write_json(dst_run / "progress.json", progress)
    write_demo_volume(dst_run)
    return path.stat().st_size


def write_demo_volume(run: Path) -> None:
    """The volume Home shows first: DEMO_SHAPE voxels, seed 0, the generator's own fractions,
    made by the shrunk model itself (so Home needs no torch to show it)."""
    import numpy as np

    from matgen_core import generate

    import json

    result = generate.generate(run, shape=DEMO_SHAPE, seed=0, device="cpu", policy="raw")
    # the generation record (how it was made) as JSON text, so Home needs neither torch nor pickle
    record = {**result.info, "run": "assets/demo_model"}  # not this machine's path
    np.savez_compressed(run / "demo_volume.npz", labels=result.array,
                        record=np.array(json.dumps(record, default=str)))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600, help="generator steps (default 600)")
    parser.add_argument("--max-minutes", type=float, default=15.0, help="wall-clock budget")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--work", type=Path, default=None,
                        help="keep the full run here (resumed if it exists) instead of a temp folder")
    parser.add_argument("--shrink-only", action="store_true",
                        help="only write --out from the --work run's latest checkpoint")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp:
        run = args.work or Path(tmp) / "demo"
        if args.shrink_only:
            config = runs.load_config(run)
            config["demo"].update(trained_steps=int(runs.load_checkpoint(run)["step"]))
            runs.atomic_write_json(run / "config.json", config)
            print(json.dumps(dict(checkpoint_bytes=shrink_checkpoint(run, args.out), out=str(args.out))))
            return 0
        if not (run / "config.json").exists():
            micrograph = io.require_phases(io.read_micrograph(EXAMPLE))
            runs.create_run(run, "slicegan", [micrograph], preset="quick", seed=0)
            config = runs.load_config(run)
            config["data"]["sources"] = ["assets/example_electrode.png"]  # not the temp path
            config["demo"] = dict(threads=args.threads, script="assets/make_demo_model.py",
                                  trained_minutes=0.0, cpu_minutes=0.0)
            runs.atomic_write_json(run / "config.json", config)
        config = runs.load_config(run)
        start, cpu0 = time.monotonic(), time.process_time()
        result = train.train(run, steps=args.steps, max_minutes=args.max_minutes, device="cpu")
        minutes = (time.monotonic() - start) / 60
        cpu = (time.process_time() - cpu0) / 60  # CPU time of all threads of this process
        demo = config["demo"]
        demo.update(trained_steps=int(result["step"]),
                    trained_minutes=round(demo.get("trained_minutes", 0.0) + minutes, 1),
                    cpu_minutes=round(demo.get("cpu_minutes", 0.0) + cpu, 1))
        runs.atomic_write_json(run / "config.json", config)
        size = shrink_checkpoint(run, args.out)
    print(json.dumps(dict(step=result["step"], reason=result["reason"], minutes=round(minutes, 1),
                          cpu_minutes=round(cpu, 1), checkpoint_bytes=size, out=str(args.out))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
