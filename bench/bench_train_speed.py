"""SliceGAN training speed: the optimised loop vs a plain fp32 channels-first loop, same run.

    python bench/bench_train_speed.py [--preset quick] [--steps 200] [--warmup 2] [--bf16-steps 1]
                                      [--image-size 128] [--phases 2] [--threads N] [--set k=v ...]

* optimised - ``SliceGANTrainer.train_step`` as shipped: channels-last generator and critics;
  the slicing directions that share a critic and the real and fake samples in one critic call,
  the penalty's interpolates in another (``critic_losses``); critic weights frozen during the
  generator update; the generator's narrow last layer as a sub-pixel convolution; fp32.
* plain     - the same networks, batch and WGAN-GP algorithm written the obvious way, as the
  reference SliceGAN does it: per direction separate critic calls for real, fake and
  interpolates, critic weight gradients computed in the generator update too, the generator
  module by module (``Generator.forward_plain``), channels-first memory layout, fp32
  (``plain_step`` below).
* bf16      - the optimised loop under bf16 autocast (speed only, a few steps).

Both main loops start from the same seed and weights and train ``--steps`` generator steps on a
synthetic 2-phase particle image; afterwards each generates a 64^3 volume (seed 0, from the
network the run samples with: the weight average when the preset has one, as ``quick``) and we
print its phase-fraction error against the image and the L1 distance of the
radial two-point correlation S2 of phase 1 (3D volume vs 2D image, r <= 20): after the same
number of steps both loops reach the same statistics (they differ only in random draws).
Iterations/s exclude ``--warmup`` steps. Compare the ratio, measured within one run.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from matgen_core import metrics  # noqa: E402
from matgen_core.data import decode  # noqa: E402
from matgen_core.models.slicegan import PRESETS, SliceGANTrainer, gradient_penalty, slices  # noqa: E402
from matgen_core.synthetic import synthetic_microstructure  # noqa: E402


def plain_step(tr: SliceGANTrainer) -> dict:
    """``SliceGANTrainer.train_step`` without its optimisations: channels-first tensors, fp32."""
    c = tr.config
    tr.generator.train()
    count = c.get("critic_slices")

    def noise():
        return torch.randn(c["batch_size"], c["nz"], c["lz"], c["lz"], c["lz"])

    for _ in range(c["critic_iters"]):
        with torch.no_grad():
            fake = tr.generator.forward_plain(noise())
        tr.opt_d.zero_grad(set_to_none=True)
        for axis in range(3):
            critic = tr.critics[tr.direction_image[axis]]
            real = tr.samplers[axis].sample(c["real_batch"]).contiguous()
            fake_slices = slices(fake, axis, count).contiguous()
            d_real = critic(real).mean()
            d_fake = critic(fake_slices).mean()
            gp = gradient_penalty(critic, real, fake_slices)
            (d_fake - d_real + c["gp_lambda"] * gp).backward()
        tr.opt_d.step()
    tr.opt_g.zero_grad(set_to_none=True)
    fake = tr.generator.forward_plain(noise())
    g_loss = 0.0
    for axis in range(3):
        critic = tr.critics[tr.direction_image[axis]]
        g_loss = g_loss - critic(slices(fake, axis, count).contiguous()).mean()
    if tr.kind == "nphase" and c.get("fraction_weight", 0.0) > 0:
        gap = fake.mean(dim=(0, 2, 3, 4)) - tr.target_fractions
        g_loss = g_loss + c["fraction_weight"] * (gap ** 2).sum()
    g_loss.backward()
    tr.opt_g.step()
    tr._update_ema()  # the same weight average as train_step (when the preset has one)
    return {"generator": g_loss.item()}


def make(config: dict, image: np.ndarray, plain: bool, seed: int = 0) -> SliceGANTrainer:
    torch.manual_seed(seed)
    tr = SliceGANTrainer.create(config, [image], torch.device("cpu"))
    if plain:
        tr.generator.to(memory_format=torch.contiguous_format)
        tr.critics.to(memory_format=torch.contiguous_format)
    return tr


def run(tr, step_fn, steps: int, warmup: int, seed: int = 0) -> dict:
    """Train ``steps`` steps; iterations/s over the steps after ``warmup``: per wall-clock second
    and per CPU second of this process (the latter is less sensitive to other load)."""
    torch.manual_seed(seed + 1)
    t0 = c0 = None
    for i in range(steps):
        if i == warmup:
            t0, c0 = time.perf_counter(), time.process_time()
        step_fn(i)
    n = steps - warmup
    return {"it_s": n / (time.perf_counter() - t0), "it_per_cpu_s": n / (time.process_time() - c0)}


def stats(tr, image: np.ndarray, phases: int) -> dict:
    vol = decode(tr.sample((64, 64, 64), seed=0), "nphase")
    vf_img = metrics.phase_fractions(image, phases)
    vf_vol = metrics.phase_fractions(vol, phases)
    s2_img = metrics.two_point_correlation(image, 1, r_max=20, n_phases=phases)
    s2_vol = metrics.two_point_correlation(vol, 1, r_max=20, n_phases=phases)
    return {"vf_err_pp": round(100 * float(np.abs(vf_vol - vf_img).max()), 2),
            "s2_l1": round(float(np.abs(s2_vol - s2_img).mean()), 4)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="quick")
    p.add_argument("--steps", type=int, default=200, help="generator steps per loop (incl. warm-up)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--bf16-steps", type=int, default=1, help="0 skips the bf16 loop")
    p.add_argument("--image-size", type=int, default=128)
    p.add_argument("--phases", type=int, default=2)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--seed", type=int, default=0, help="weights and training randomness")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override the preset")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    config = {**PRESETS[args.preset], "kind": "nphase", "n_phases": args.phases, "num_images": 1}
    for kv in args.set:
        k, v = kv.split("=", 1)
        config[k] = json.loads(v)
    config["precision"] = "fp32"
    image = synthetic_microstructure((args.image_size,) * 2, n_phases=args.phases, feature_size=6, seed=0)
    print(f"preset {args.preset}: G {config['gen_channels']}, D {config['critic_channels']}, "
          f"batch {config['batch_size']}, critic_iters {config['critic_iters']}, "
          f"critic_slices {config['critic_slices']}; {args.steps} steps ({args.warmup} warm-up); "
          f"torch threads {torch.get_num_threads()}, cpu_count {os.cpu_count()}", flush=True)

    results = {}
    opt = make(config, image, plain=False, seed=args.seed)
    results["optimised"] = {**run(opt, opt.train_step, args.steps, args.warmup, args.seed),
                            **stats(opt, image, args.phases)}
    print("optimised", json.dumps(results["optimised"]), flush=True)
    plain = make(config, image, plain=True, seed=args.seed)
    results["plain"] = {**run(plain, lambda i: plain_step(plain), args.steps, args.warmup, args.seed),
                        **stats(plain, image, args.phases)}
    print("plain    ", json.dumps(results["plain"]), flush=True)
    if args.bf16_steps > 0:
        bf = make({**config, "precision": "bf16"}, image, plain=False)
        n = args.bf16_steps + 1
        results["bf16"] = run(bf, bf.train_step, n, 1)
        print("bf16     ", json.dumps(results["bf16"]), flush=True)

    o, pl = results["optimised"], results["plain"]
    print()
    print(f"{'loop':10s} {'it/s':>8s} {'s/it':>8s} {'it/cpu-s':>9s} {'VF err pp':>10s} {'S2 L1':>8s}")
    for name, r in results.items():
        print(f"{name:10s} {r['it_s']:8.3f} {1 / r['it_s']:8.2f} {r['it_per_cpu_s']:9.3f} "
              f"{r.get('vf_err_pp', float('nan')):10.2f} {r.get('s2_l1', float('nan')):8.4f}")
    print(f"speed-up optimised / plain fp32 channels-first: x{o['it_s'] / pl['it_s']:.2f} wall, "
          f"x{o['it_per_cpu_s'] / pl['it_per_cpu_s']:.2f} CPU time")
    if "bf16" in results:
        b = results["bf16"]
        print(f"bf16 autocast / optimised fp32: x{b['it_s'] / o['it_s']:.2f} wall, "
              f"x{b['it_per_cpu_s'] / o['it_per_cpu_s']:.2f} CPU time")


if __name__ == "__main__":
    main()
