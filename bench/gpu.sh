#!/usr/bin/env bash
# Measure the `paper` SliceGAN preset on a CUDA machine; figures go to stdout.
#
#   bash bench/gpu.sh [STEPS] [GEN_SIZE]          (defaults: 20 timed steps, 512^3)
#
# Prints: training seconds per generator step (5 critic steps each, batch 8, fp32 and bf16
# autocast), one-pass and tiled generation time for GEN_SIZE^3 (fp32 and bf16), the bf16 voxel
# disagreement with fp32, and peak CUDA memory of each. Random weights: speed and memory do not
# depend on training. Needs: a CUDA GPU, this checkout installed (pip install -e .).
# Not run in CI; about 2-5 minutes on a recent GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
STEPS="${1:-20}"
SIZE="${2:-512}"

nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
python - "$STEPS" "$SIZE" <<'EOF'
import sys, time
import numpy as np
import torch

from matgen_core import tiling
from matgen_core.data import decode
from matgen_core.models.slicegan import PRESETS, SliceGANTrainer
from matgen_core.synthetic import synthetic_microstructure

assert torch.cuda.is_available(), "no CUDA device"
steps, size = int(sys.argv[1]), int(sys.argv[2])
dev = torch.device("cuda")
torch.backends.cudnn.benchmark = True
print(f"torch {torch.__version__}, {torch.cuda.get_device_name(0)}")
image = synthetic_microstructure((256, 256), n_phases=3, feature_size=8, seed=0)


def sync():
    torch.cuda.synchronize()


for precision in ("fp32", "bf16"):
    cfg = {**PRESETS["paper"], "kind": "nphase", "n_phases": 3, "num_images": 1, "precision": precision}
    torch.manual_seed(0)
    tr = SliceGANTrainer.create(cfg, [image], dev)
    for i in range(3):
        tr.train_step(i)  # warm-up (cudnn autotune)
    sync()
    torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for i in range(steps):
        tr.train_step(i)
    sync()
    dt = (time.perf_counter() - t0) / steps
    print(f"train paper {precision}: {dt:.3f} s/step ({1 / dt:.2f} it/s), "
          f"{cfg['steps']} steps ~ {cfg['steps'] * dt / 3600:.2f} h, "
          f"peak {torch.cuda.max_memory_allocated() / 2**30:.2f} GB")
    del tr
    torch.cuda.empty_cache()

cfg = {**PRESETS["paper"], "kind": "nphase", "n_phases": 3, "num_images": 1}
torch.manual_seed(0)
tr = SliceGANTrainer.create(cfg, None, dev)
with torch.no_grad():
    for bn in tr.generator.norms:
        bn.running_mean.uniform_(-0.2, 0.2)
        bn.running_var.uniform_(0.5, 2.0)
shape = (size,) * 3
tr.sample((64, 64, 64))
ref = None
from matgen_core.generate import make_volume


def tiled(tile, precision):  # the generation pipeline (raw policy) at this precision
    tr.config["precision"] = precision
    try:
        return make_volume(tr, shape, seed=1, tile=tile)[0]
    finally:
        tr.config["precision"] = "fp32"


for name, fn in [
    ("one-pass fp32", lambda: decode(tr.sample(shape, seed=1), "nphase")),
    ("tiled auto fp32", lambda: tiled(tiling.choose_tile(shape, cfg, device=dev), "fp32")),
    ("tiled 256 fp32", lambda: tiled(256, "fp32")),
    ("tiled 256 bf16", lambda: tiled(256, "bf16")),
]:
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    try:
        fn()  # warm-up of this path's kernels
        sync()
        t0 = time.perf_counter()
        vol = fn()
        sync()
        dt = time.perf_counter() - t0
    except torch.cuda.OutOfMemoryError:
        print(f"generate {size}^3 {name}: out of GPU memory")
        continue
    diff = "" if ref is None else f", voxels differing from one-pass fp32: {(vol != ref).mean():.2e}"
    if ref is None:
        ref = vol
    print(f"generate {size}^3 {name}: {dt:.2f} s ({size ** 3 / dt / 1e6:.1f} Mvox/s), "
          f"peak {torch.cuda.max_memory_allocated() / 2**30:.2f} GB{diff}")
EOF
