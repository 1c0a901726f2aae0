"""Sampling from a trained run: 3D volumes of any size or shape (SliceGAN), 2D image stacks.

Generation is seeded and reproducible: the same run, seed, shape and label policy give the same
array whether it is made in one pass, in tiles or streamed to a file. It is a small pipeline:

1. **sample**: ``tiling.TilePlan`` runs the generator over the seeded latent, tile by tile (one
   tile = one pass); every route goes through it.
2. **label policy** (n-phase runs; docs/fractions.md):

   * ``"raw"`` (the default): the generator's own labels, ``argmax`` of its output, no bias;
   * ``"calibrated"``: a per-phase logit bias makes the labels meet the training image's phase
     fractions;
   * ``"steered"``: the same toward requested fractions (a conditional model is also sampled at
     them).

   The bias is fitted on ``fractions.LatticeSample``: the generator's output at the voxels of a
   global lattice of the whole volume, gathered by a first pass over the tiles (a single tile is
   kept, so one pass costs one generator run). The same voxels give the same bias, so one pass,
   tiles and streams agree voxel for voxel. ``fractions.labels_from_probs`` applies it.
3. **writer**: an in-memory array, a ``.npy`` streamed slab by slab, a BigTIFF streamed plane by
   plane (over 2 GB), or a TIFF / VTI written at the end; each carries the generation record
   (``io.read_generation_info``), which is also appended to the run's ``generations.jsonl``.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from . import runs
from .data import decode
from .errors import MatgenInputError
from .models import VOLUME_MODELS
from .train import build_trainer

POLICIES = ("raw", "calibrated", "steered")
OUT_SUFFIXES = (".tif", ".tiff", ".npy", ".vti")


@dataclass
class Generated:
    """A generated volume (Z, Y, X) or image stack (K, H, W), with what is needed to save it.

    ``array``: uint8 labels 0..n-1 (kind "nphase"), uint8 gray 0-255 ("gray"), or RGB uint8 with a
    trailing axis of 3 ("color"). ``voxel_size`` and ``unit`` are the training image's.
    ``info``: the generation record (how it was made: policy, bias, fractions, seed, run, step;
    see :func:`record`), also stored in the written file.
    """
    array: np.ndarray
    kind: str
    phase_values: list = field(default_factory=list)
    voxel_size: float | None = None
    unit: str = "px"
    model: str = ""
    info: dict = field(default_factory=dict)

    @property
    def policy(self) -> str:
        return self.info.get("policy", "raw")


def parse_shape(size=None, shape=None) -> tuple[int, int, int] | None:
    """(Z, Y, X) from ``size`` (cube side) or ``shape`` ("Z,Y,X" string or sequence)."""
    if shape is not None:
        if isinstance(shape, str):
            try:
                shape = [int(v) for v in shape.replace("x", ",").split(",")]
            except ValueError:
                raise MatgenInputError(f"--shape must be three integers like 64,128,128, got '{shape}'.")
        if isinstance(shape, int):
            shape = (shape,) * 3
        shape = tuple(int(v) for v in shape)
        if len(shape) != 3:
            raise MatgenInputError(f"--shape needs three sizes Z,Y,X, got {len(shape)}.")
    elif size is not None:
        shape = (int(size),) * 3
    if shape is not None and min(shape) < 1:
        raise MatgenInputError(f"Sizes must be positive, got {shape}.")
    return shape


def resolve_policy(policy: str | None, fractions) -> str:
    """The label policy asked for: ``policy`` or, when None, "steered" with ``fractions`` else "raw"."""
    if policy is None:
        return "raw" if fractions is None else "steered"
    if policy not in POLICIES:
        raise MatgenInputError(f"Unknown label policy '{policy}'; choose raw, calibrated or steered.")
    if policy == "steered" and fractions is None:
        raise MatgenInputError("The steered policy needs target fractions (--fractions F0,F1,...).")
    if policy != "steered" and fractions is not None:
        raise MatgenInputError(f"Target fractions steer the volume; they cannot be combined with "
                               f"{'--raw' if policy == 'raw' else '--calibrate'} (drop one of them).")
    return policy


def policy_token(info: dict | None) -> str | None:
    """The label policy of a generation record as a short text (the app keeps it in its URL, so a
    reload makes the same volume): None for raw, "calibrated", or "steered-P0,P1,..." with the
    targets in percent (e.g. "steered-52.3,35,12.7")."""
    policy = (info or {}).get("policy", "raw")
    if policy == "calibrated":
        return "calibrated"
    if policy == "steered" and (info or {}).get("target_fractions") is not None:
        return "steered-" + ",".join(f"{round(100 * float(v), 4):g}" for v in info["target_fractions"])
    return None


def parse_policy_token(token) -> tuple[str, list[float] | None] | None:
    """(policy, target fractions or None) from :func:`policy_token`'s text; None if it is not one.

    The last phase's target is 1 minus the others (as the app's sliders make it), so a restored
    request is the same floating-point numbers as the one on screen was."""
    token = str(token or "")
    if token in ("raw", "calibrated"):
        return token, None
    if not token.startswith("steered-"):
        return None
    try:
        pct = [float(v) for v in token[len("steered-"):].split(",")]
    except ValueError:
        return None
    if len(pct) < 2 or not all(np.isfinite(pct)) or abs(sum(pct) - 100) > 0.5:
        return None
    head = [v / 100 for v in pct[:-1]]
    return "steered", head + [1.0 - sum(head)]


def generate(run_dir, shape=None, seed: int = 0, *, count: int | None = None, policy: str | None = None,
             fractions=None, tile: int | None = None, out_path=None, periodic=(False, False, False),
             device="auto", progress=None, memory_budget_bytes: int | None = None) -> Generated:
    """Generate from the run in ``run_dir`` (its latest checkpoint).

    3D models: ``shape`` (Z, Y, X) voxels, or an int for a cube (default: 2x the training size).
    2D models: ``count`` images of the training size, stacked as (K, H, W[, 3]).
    ``policy`` / ``fractions``: the label policy (module docstring): "raw" (default), "calibrated"
    (to the training image's fractions) or "steered" (to ``fractions``, implied when they are
    given); n-phase SliceGAN runs only. ``tile``: make the volume in tiles of this many exact
    voxels a side (same volume, bounded memory; tiling.py); None: tiles only when one pass would
    not fit in memory (``memory_budget_bytes``, default half the free RAM), 0: one pass.
    ``out_path`` (.tif/.tiff/.npy/.vti): also write it there (.npy and > 2 GB TIFFs are streamed,
    and ``array`` is then a read-only memory map of the file). ``progress(fraction)``.
    """
    run_dir = Path(run_dir)
    config = runs.load_config(run_dir)
    checkpoint = runs.load_checkpoint(run_dir, device="cpu")
    if checkpoint is None:
        raise MatgenInputError(f"{run_dir} has no checkpoint yet; train it first (matgen train ... "
                               f"--out {run_dir}).")
    if out_path is not None and Path(out_path).suffix.lower() not in OUT_SUFFIXES:
        raise MatgenInputError(f"--out must end in .tif, .tiff, .npy or .vti, got '{Path(out_path).name}'.")
    policy = resolve_policy(policy, fractions)
    data = config["data"]
    base = {"run": str(run_dir.resolve()), "run_name": run_dir.name, "model": config["model"],
            "recipe": runs.recipe(config), "step": int(checkpoint.get("step", 0)), "seed": int(seed),
            "kind": data["kind"],
            "phase_values": data.get("phase_values") if data["kind"] == "nphase" else None}
    trainer = build_trainer(run_dir, device, with_data=False)
    # weights only (no critic or optimiser state); a foreign checkpoint: a message, no traceback
    runs.restore_state(trainer, checkpoint, run_dir, weights_only=True)
    if config["model"] not in VOLUME_MODELS:
        if policy != "raw":
            raise MatgenInputError(f"Phase-fraction policies are for SliceGAN runs; {config['model']} "
                                   f"makes 2D images.")
        if shape is not None:
            raise MatgenInputError(f"{config['model']} makes 2D images of its training size; use "
                                   f"--count K instead of --size/--shape.")
        array = np.stack([decode(im, data["kind"]) for im in trainer.sample_images(count or 16, seed=seed)])
        info = {**base, "policy": "raw", "count": int(len(array))}
        if out_path is not None:
            write_file(out_path, array, data, info)
        return _result(array, config, info)

    if count not in (None, 1):
        raise MatgenInputError("--count is for 2D models; a SliceGAN run makes one volume per call "
                               "(use --seed for others).")
    shape = parse_shape(shape=shape) if shape is not None else (2 * trainer.train_size,) * 3
    targets = None
    if policy != "raw" and data["kind"] != "nphase":
        raise MatgenInputError("Phase-fraction policies need a run trained on segmented (n-phase) "
                               "data; this run makes gray/colour values (use the raw policy).")
    if data["kind"] == "nphase":
        from . import fractions as _fractions

        rng = _fractions.supported_range(run_dir)
        base["training_fractions"] = rng["center"]
        if policy != "raw":
            targets = np.asarray(rng["center"]) if policy == "calibrated" else _fractions.check_targets(fractions, rng)
    if tile is not None and tile < 0:
        raise MatgenInputError(f"--tile must be a positive number of voxels (or 0 for one pass), got {tile}.")
    if tile is None:  # automatic: tiles only when one pass would not fit in memory
        from . import tiling

        tile = tiling.choose_tile(shape, trainer.config, memory_budget_bytes, device=trainer.device)
    array, info = make_volume(trainer, shape, seed=seed, periodic=periodic, policy=policy,
                              targets=targets, tile=tile, out_path=out_path, progress=progress,
                              file_meta=data, record_base=base)
    _log_generation(run_dir, info, out_path)
    return _result(array, config, info)


def make_volume(trainer, shape, seed: int = 0, periodic=(False, False, False), policy: str = "raw",
                targets=None, tile: int | None = None, out_path=None, progress=None,
                file_meta: dict | None = None, record_base: dict | None = None) -> tuple[np.ndarray, dict]:
    """The pipeline (module docstring) on a loaded SliceGAN ``trainer``: (uint8 array, record).

    ``targets``: the fractions of the "calibrated" / "steered" policies. ``tile``: None or 0 for
    one pass. ``out_path``: writer (.npy streamed, .tif streamed as BigTIFF when over 2 GB, else
    written at the end, .vti at the end); ``file_meta``: the run's ``data`` dict (voxel size,
    unit, phase table). Returns the array (a memory map when streamed) and the record.
    """
    from . import fractions as _fractions
    from .tiling import TilePlan

    t0 = time.perf_counter()
    kind = trainer.kind
    shape = tuple(int(v) for v in shape)
    conditional = bool(getattr(trainer, "conditional", False))
    steer_model = targets if (policy == "steered" and conditional) else None
    plan = TilePlan(trainer, shape, seed=seed, periodic=periodic, fractions=steer_model, tile=tile)
    two_pass = policy != "raw"
    report = _progress_split(progress, two_pass and plan.n_tiles > 1)

    # --- label policy: fit the bias on a lattice sample of the whole volume (first pass) ---
    bias, fit = None, None
    if two_pass:
        plan.keep = True  # one tile: computed once, used by both passes
        sample = _fractions.LatticeSample(shape)
        for origin, out in plan.outputs(report[0]):
            sample.add(out, origin)
        bias, sweeps = sample.fit(targets)
        fit = {"lattice_stride": sample.stride, "voxels": int(sample.logp().shape[1]), "sweeps": int(sweeps)}
        del sample

    n = trainer.channels if kind == "nphase" else 0
    counts = {"generator": np.zeros(n, np.int64), "achieved": np.zeros(n, np.int64)}
    # what the bias changed is measured on the volume itself when it is one tile of at most
    # PATH_SIDE a side and its raw labels are the reference (not for a conditional model, whose
    # generator-alone labels are sampled at the target); else on a sample of the same seed
    keep_raw = (two_pass and kind == "nphase" and steer_model is None and plan.n_tiles == 1
                and max(shape) <= _fractions.PATH_SIDE)
    kept_raw = []

    def decode_tile(out):
        if kind != "nphase":
            return decode(out.cpu().numpy(), kind)
        alone = _fractions.labels_from_probs(out)
        if keep_raw:
            kept_raw.append(alone)
        counts["generator"] += np.bincount(alone.ravel(), minlength=n)[:n]
        labels = alone if bias is None else _fractions.labels_from_probs(out, bias)
        counts["achieved"] += np.bincount(labels.ravel(), minlength=n)[:n]
        return labels

    extra = (3,) if kind == "color" else ()
    slabs = plan.slabs(decode_tile, extra, report[1])
    array, streamed = _write_slabs(slabs, shape, extra, out_path, file_meta or {})

    # --- the record ---
    info = dict(record_base or {})
    info.update(policy=policy, shape=list(shape), periodic=[bool(v) for v in periodic],
                computed="one pass" if plan.n_tiles == 1 else f"{plan.n_tiles} tiles of {tile} voxels",
                seconds=round(time.perf_counter() - t0, 3))
    if kind == "nphase":
        total = max(int(np.prod(shape)), 1)
        info.update(target_fractions=None if targets is None else [float(v) for v in targets],
                    bias=None if bias is None else [float(v) for v in bias],
                    generator_fractions=[float(v) for v in counts["generator"] / total],
                    achieved_fractions=[float(v) for v in counts["achieved"] / total],
                    conditional=conditional, fit=fit)
        if policy != "raw":  # what the bias changed: texture, surface area, paths (same seed, <= 128^3)
            info.update(_fractions.bias_effect(kept_raw[0], np.asarray(array), n) if kept_raw else
                        _fractions.sampled_bias_effect(trainer, shape, seed, targets, bias, periodic))
    if out_path is not None:
        if streamed:
            from . import io

            io.set_generation_info(out_path, info)
        else:
            write_file(out_path, array, file_meta or {}, info)
    return array, info


def _progress_split(progress, two: bool):
    """Progress callbacks of the two passes (first half, second half) or (None, progress)."""
    if progress is None:
        return None, None
    if not two:
        return None, progress
    return (lambda f: progress(0.5 * f)), (lambda f: progress(0.5 + 0.5 * f))


def _write_slabs(slabs, shape, extra, out_path, data: dict):
    """Consume the Z slabs: streamed into ``out_path`` (.npy, or .tif over 2 GB) or into memory.
    Returns (array, streamed)."""
    from . import io

    suffix = Path(out_path).suffix.lower() if out_path is not None else ""
    full = tuple(shape) + extra
    if suffix == ".npy":
        io.write_npy_slabs(out_path, full, (slab for _, slab in slabs))
        return np.load(out_path, mmap_mode="r"), True
    if suffix in (".tif", ".tiff") and io.needs_bigtiff(shape, bool(extra)):
        planes = (plane for _, slab in slabs for plane in slab)
        io.write_bigtiff_planes(out_path, planes, shape, voxel_size=data.get("voxel_size"),
                                unit=data.get("unit", "px"), phase_values=_phases(data), colour=bool(extra))
        return _tiff_map(out_path), True
    array = np.empty(full, np.uint8)
    for z0, slab in slabs:
        array[z0:z0 + len(slab)] = slab
    return array, False


def describe(info: dict) -> list[str]:
    """Plain-text lines saying how a volume was made (the CLI prints them; docs/fractions.md)."""
    policy = info.get("policy", "raw")
    what = {"raw": "raw: the generator's own labels (argmax, no bias)",
            "calibrated": "calibrated: a per-phase logit bias meets the training image's fractions",
            "steered": "steered: a per-phase logit bias meets the requested fractions"
                       + (" (conditional generator sampled at them)" if info.get("conditional") else "")}
    recipe = f" (preset {info['recipe']})" if info.get("recipe") else ""
    lines = [f"policy {what.get(policy, policy)}; run {info.get('run_name')}{recipe} step {info.get('step')}, "
             f"seed {info.get('seed')}, shape {'x'.join(map(str, info.get('shape', [])))}, "
             f"{info.get('computed', '')}"]
    if info.get("achieved_fractions") is not None:
        pct = lambda v: " ".join(f"{100 * x:.2f}" for x in v)  # noqa: E731
        if info.get("target_fractions") is not None:
            lines.append(f"fractions % target {pct(info['target_fractions'])} | generator alone "
                         f"{pct(info['generator_fractions'])} | achieved {pct(info['achieved_fractions'])}")
            lines.append("bias " + " ".join(f"{v:+.4f}" for v in info["bias"])
                         + f" (fitted on {info['fit']['voxels']} voxels: a lattice of stride "
                           f"{info['fit']['lattice_stride']} over the whole volume)")
        else:
            lines.append(f"fractions % generator alone {pct(info['generator_fractions'])}"
                         + ("" if info.get("training_fractions") is None else
                            f" | training {pct(info['training_fractions'])}"))
    if info.get("morphology"):
        m = info["morphology"]
        lines.append(f"morphology change vs the raw volume: S2 {m['s2']:.4f}, surface area "
                     f"{100 * (m['surface_area'] or 0):.1f} %")
    if info.get("paths"):
        from .fractions import path_warnings

        pt = info["paths"]
        counts = lambda rows: " ".join("/".join(str(v) for v in r) for r in rows)  # noqa: E731
        lines.append(f"paths through each phase (Z/Y/X; sub-volumes of half the side whose faces it "
                     f"connects, of {pt['blocks']}; {'x'.join(map(str, pt['shape']))} voxels, same seed): "
                     f"raw {counts(pt['raw'])} | this volume {counts(pt['adjusted'])}")
        lines += ["WARNING: " + w for w in path_warnings(pt, _phase_names(info))]
    return lines


def _phase_names(info: dict) -> list[str] | None:
    values = info.get("phase_values")
    return [f"phase {k} (value {v})" for k, v in enumerate(values)] if values else None


def _result(array, config: dict, info: dict) -> Generated:
    data = config["data"]
    return Generated(array=array, kind=data["kind"], phase_values=data.get("phase_values", []),
                     voxel_size=data.get("voxel_size"), unit=data.get("unit", "px"),
                     model=config["model"], info=info)


def _log_generation(run_dir: Path, info: dict, out_path) -> None:
    """Append the record to the run's ``generations.jsonl`` (skipped when the run is read-only)."""
    row = {**info, "out": None if out_path is None else str(out_path), "time": time.time()}
    try:
        with open(run_dir / "generations.jsonl", "a") as f:
            f.write(json.dumps(row) + "\n")
    except OSError:
        pass


# --- writing generated data ---
def _phases(data: dict):
    return data.get("phase_values") if data.get("kind") == "nphase" else None


def write_file(out_path, array, data: dict, info: dict | None = None) -> None:
    """Write ``array`` to ``out_path`` (.tif/.tiff/.npy/.vti) with the run's voxel size, unit and
    phase table (``data``) and the generation record ``info``."""
    from . import io

    out = Path(out_path)
    suffix = out.suffix.lower()
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".npy":
        io.write_npy(out, array, generation=info)
    elif suffix == ".vti":
        io.write_vti(out, array, voxel_size=data.get("voxel_size") or 1.0, generation=info)
    elif suffix in (".tif", ".tiff"):
        io.write_tiff(out, array, voxel_size=data.get("voxel_size"), unit=data.get("unit", "px"),
                      phase_values=_phases(data), generation=info)
    else:
        raise MatgenInputError(f"--out must end in .tif, .tiff, .npy or .vti, got '{out.name}'.")


def _tiff_map(path):
    """A read-only memory map of an uncompressed TIFF (falls back to reading it)."""
    import tifffile

    try:
        return tifffile.memmap(path, mode="r")
    except ValueError:
        return tifffile.imread(path)
