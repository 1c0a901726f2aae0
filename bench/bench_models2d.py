#!/usr/bin/env python3
"""Bench: the original report's claims about its 2D models, measured on a short CPU budget.

  1. DCGAN generator normalisation at batch 64: batch norm vs instance norm vs none
     (report: BN better than IN at batch > 16). Spectral-norm discriminator, BCE, nz = size / 2.
  2. GAN vs VAE vs VAE/GAN (report: VAE samples blurrier than GAN samples; VAE/GAN to fix that;
     GAN samples too similar to each other), plus the WGAN-GP DCGAN of the "quick" preset.

Every model trains ``--steps`` steps at batch 64 on random ``--size`` px crops of one 2-phase
image, then 64 samples are judged against 64 random training crops (matgen_core.diversity.
evaluate_samples): phase-fraction error, S2 error, perimeter (surface) error, where blurry VAE
samples lose interface, and diversity = mean pairwise pixel distance of the samples / that of
training crops (about 1 = as varied as the micrograph, near 0 = near-copies). The first row is
the noise floor: 64 other random training crops judged the same way.

Networks are small (16-channel base) and runs short so the whole bench takes about 10 minutes on
2 CPU cores; the numbers say how the models behave early in training, not how good they get.

    python bench/bench_models2d.py                      # synthetic particles image, 32 px crops
    python bench/bench_models2d.py --image micro.png --size 64 --steps 1000 --json out.json
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from matgen_core.data import decode  # noqa: E402
from matgen_core.diversity import evaluate_samples, random_crops  # noqa: E402
from matgen_core.models import presets, trainer_class  # noqa: E402

GAN = dict(ngf=16, ndf=16)
VAE = dict(channels=[16, 32, 64, 128, 128])
RUNS = [  # (label, model, preset, overrides)
    ("DCGAN, BCE, batch norm (report)", "dcgan", "paper", dict(GAN, norm="batch")),
    ("DCGAN, BCE, instance norm", "dcgan", "paper", dict(GAN, norm="instance")),
    ("DCGAN, BCE, no norm", "dcgan", "paper", dict(GAN, norm="none")),
    ("DCGAN, WGAN-GP, batch norm (quick)", "dcgan", "quick", dict(GAN, norm="batch")),
    ("VAE (beta 1)", "vae", "paper", dict(VAE)),
    ("VAE/GAN (pixel_weight 1)", "vaegan", "quick", dict(VAE, ndf=16)),
]


def training_image(path: str | None, size: int) -> np.ndarray:
    if path is None:
        from matgen_core.synthetic import synthetic_microstructure

        return synthetic_microstructure((256, 256), n_phases=2, feature_size=size / 4, seed=0)
    from matgen_core.io import read_micrograph

    m = read_micrograph(path)
    if m.kind != "nphase" or m.n_phases != 2:
        sys.exit(f"{path}: the bench needs a segmented 2-phase image, got {m.kind} "
                 f"with {m.n_phases} phases")
    return m.labels


def summary(result: dict) -> dict:
    return {"fraction_error": result["fraction_error"], "s2_error": result["s2_error"],
            "surface_error": result["surface_error"], "diversity": result["diversity"]["ratio"],
            "perimeter_gen": result["generated"]["perimeter"][1],
            "perimeter_ref": result["reference"]["perimeter"][1]}


def run_one(model, preset, overrides, image, size, steps, samples, seed):
    config = {**presets(model)[preset], **overrides, "img_size": size, "batch_size": 64,
              "kind": "nphase", "n_phases": 2, "num_images": 1}
    torch.manual_seed(seed)
    trainer = trainer_class(model).create(config, [image], torch.device("cpu"))
    t0 = time.perf_counter()
    tail = []
    for step in range(steps):
        losses = trainer.train_step(step)
        if step >= steps * 0.8:
            tail.append(losses)
    elapsed = time.perf_counter() - t0
    labels = np.stack([decode(s, "nphase") for s in trainer.sample_images(samples, seed=seed + 1)])
    row = summary(evaluate_samples(labels, image, n_phases=2, seed=seed))
    row["seconds"] = elapsed
    row["final_losses"] = {k: float(np.mean([t[k] for t in tail])) for k in tail[0]}
    return row, labels


def fmt_row(label, r):
    d_loss = r.get("final_losses", {}).get("discriminator")
    return (f"| {label} | {r['fraction_error']:.3f} | {r['s2_error']:.4f} | "
            f"{r['perimeter_gen']:.3f} ({100 * r['surface_error']:.0f}%) | {r['diversity']:.2f} | "
            f"{'-' if d_loss is None else f'{d_loss:.2f}'} | {r.get('seconds', 0):.0f} |")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--image", help="segmented 2-phase micrograph (default: synthetic particles)")
    ap.add_argument("--size", type=int, default=32, help="crop / image size in px (default 32)")
    ap.add_argument("--steps", type=int, default=200, help="training steps per model (default 200)")
    ap.add_argument("--samples", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--only", help="comma-separated row numbers (1-based) to run")
    ap.add_argument("--json", help="write all numbers here")
    ap.add_argument("--pictures", help="folder for a PNG of each model's first 16 samples")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    image = training_image(args.image, args.size)
    chosen = [RUNS[int(i) - 1] for i in args.only.split(",")] if args.only else RUNS

    print(f"image {image.shape}, phase-1 fraction {image.mean():.3f}; {args.size} px, batch 64, "
          f"{args.steps} steps, {args.samples} samples, seed {args.seed}, {args.threads} threads")
    print("| model | fraction err | S2 err | perimeter 1/px (err) | diversity | D loss (last 20%) | s |")
    print("|---|---|---|---|---|---|---|")
    floor_crops = random_crops(image, args.size, args.samples, seed=args.seed + 1000)
    floor = summary(evaluate_samples(floor_crops, image, n_phases=2, seed=args.seed))
    print(fmt_row("training crops (noise floor)", floor), flush=True)
    results = {"settings": vars(args), "floor": floor, "runs": {}}
    for label, model, preset, over in chosen:
        row, labels = run_one(model, preset, over, image, args.size, args.steps, args.samples, args.seed)
        results["runs"][label] = dict(row, model=model, preset=preset, overrides=over)
        print(fmt_row(label, row), flush=True)
        if args.pictures:
            from skimage.io import imsave

            from matgen_core.models.dcgan import to_tiles

            onehot = np.eye(2, dtype=np.float32)[labels[:16]].transpose(0, 3, 1, 2)
            folder = Path(args.pictures)
            folder.mkdir(parents=True, exist_ok=True)
            name = "".join(c if c.isalnum() else "_" for c in label.lower()).strip("_")
            imsave(folder / f"{name}.png", to_tiles(onehot, "nphase", 2, cols=8), check_contrast=False)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
