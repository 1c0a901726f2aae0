"""Train the demo SliceGAN shown on Home, assets/demo_model/, with the project's own code.

    nice -n 10 python assets/make_demo_model.py [--steps 600] [--max-minutes 15] [--threads 2]

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
    return path.stat().st_size


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=600, help="generator steps (default 600)")
    parser.add_argument("--max-minutes", type=float, default=15.0, help="wall-clock budget")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    micrograph = io.require_phases(io.read_micrograph(EXAMPLE))
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "demo"
        runs.create_run(run, "slicegan", [micrograph], preset="quick", seed=0)
        config = runs.load_config(run)
        config["data"]["sources"] = ["assets/example_electrode.png"]  # not the temp path
        config["demo"] = dict(steps=args.steps, max_minutes=args.max_minutes, threads=args.threads,
                              script="assets/make_demo_model.py")
        runs.atomic_write_json(run / "config.json", config)
        start = time.monotonic()
        result = train.train(run, steps=args.steps, max_minutes=args.max_minutes, device="cpu")
        minutes = (time.monotonic() - start) / 60
        config["demo"].update(trained_steps=int(result["step"]), trained_minutes=round(minutes, 1))
        runs.atomic_write_json(run / "config.json", config)
        size = shrink_checkpoint(run, args.out)
    print(json.dumps(dict(step=result["step"], reason=result["reason"], minutes=round(minutes, 1),
                          checkpoint_bytes=size, out=str(args.out))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
