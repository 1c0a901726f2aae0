"""SliceGAN 3D-fidelity experiments (issue #13): train on one slice of a true 3D volume, compare in 3D.

Usage (one experiment = one training run + evaluation of its 128^3 volumes):

    python bench/fidelity_experiments.py train NAME --preset quick --steps 600 [--set key=value ...]
    python bench/fidelity_experiments.py eval NAME [--seeds 1 2]
    python bench/fidelity_experiments.py truth            # the truth's own figures (two crops)
    python bench/fidelity_experiments.py table            # markdown table of all evaluated runs

Training image: slice z=128 (an XY plane) of ../shared/data/slicegan_examples/electrode.tiff
(256^3, 3 phases: 0 pore, 1 NMC, 2 carbon-binder). Runs go to $FIDELITY_RUNS (default
/tmp/fidelity_runs); each run's CPU minutes (time.process_time of the training) and steps are in
its fidelity.json, with the evaluation results.

Fixed evaluation protocol (same for truth and generated volumes):
- volume: 128^3 voxels (generated: seeds given; raw argmax and default calibrated output);
- truth: the 128^3 crops [0:128]^3 and [128:256]^3 of the true volume (their difference is the
  truth's own spread);
- volume fraction, specific surface area (metrics.surface_area, 1/px), percolating fraction
  (metrics.percolation, mean over axes);
- tortuosity: metrics.tortuosity on the full 128^3, flux along each of the three axes, phases
  with fraction >= 30 %, taufactor SOR with conv_crit 1e-2, max_iter 20000, on CPU; the three
  axes are combined by the harmonic mean (phase fraction / mean relative diffusivity);
- S2 L1: mean |S2_gen(r) - S2_truth(r)| over r <= 32 and phases (radially averaged, 3D).
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

from matgen_core import io, metrics, runs  # noqa: E402
from matgen_core.train import train  # noqa: E402

SHARED = ROOT.parent / "shared"
ELECTRODE = Path(os.environ.get("FIDELITY_VOLUME", "/work/shared/data/slicegan_examples/electrode.tiff"))
RUNS = Path(os.environ.get("FIDELITY_RUNS", "/tmp/fidelity_runs"))
SIZE = 128
TAU_PHASE_MIN = 0.30
TAU_SETTINGS = dict(max_iter=20000, conv_crit=1e-2)
S2_R = 32


def true_labels() -> np.ndarray:
    vol, _ = io.read_volume(ELECTRODE)
    values = np.unique(vol)
    return np.searchsorted(values, vol).astype(np.uint8)


def training_slice(labels: np.ndarray, z: int = 128) -> io.Micrograph:
    lab = np.ascontiguousarray(labels[z])
    return io.Micrograph(labels=lab, image=lab, kind="nphase", phase_values=list(range(int(lab.max()) + 1)),
                         source=f"{ELECTRODE.name}[z={z}]")


def stats(labels: np.ndarray, n: int = 3, tau: bool = True, axes=(0, 1, 2)) -> dict:
    """The fixed 3D figures of one 128^3 label volume (see the module docstring)."""
    vf = metrics.phase_fractions(labels, n)
    out = {"vf": vf.tolist(),
           "sa": metrics.surface_area(labels, n)["per_phase"].tolist(),
           "perc": metrics.percolation(labels, n).mean(1).tolist()}
    s2 = metrics.s2_all(labels, n, r_max=S2_R)
    out["s2"] = {str(k): np.asarray(v["radial"]).tolist() for k, v in s2.items()} if isinstance(s2, dict) else None
    if tau:
        taus = {}
        for p in range(n):
            if vf[p] < TAU_PHASE_MIN:
                continue
            taus[str(p)] = [metrics.tortuosity(labels, p, axis=a, n_phases=n, **TAU_SETTINGS)["tau"] for a in axes]
        out["tau"] = taus
    return out


def parse_sets(items) -> dict:
    out = {}
    for item in items or []:
        key, _, value = item.partition("=")
        out[key] = json.loads(value) if value[:1] in "[{0123456789-.tfn" and value not in ("nan",) else value
    return out


def cmd_train(args) -> None:
    torch.set_num_threads(args.threads)
    run_dir = RUNS / args.name
    record_path = run_dir / "fidelity.json"
    labels = true_labels()
    if not (run_dir / "config.json").exists():
        runs.create_run(run_dir, "slicegan", [training_slice(labels)], preset=args.preset,
                        overrides=parse_sets(args.set), seed=args.seed)
    config = json.loads((run_dir / "config.json").read_text())
    differ = {k: v for k, v in parse_sets(args.set).items() if config["model_config"].get(k) != v}
    if differ:  # an existing run trains on with its own settings: say so rather than ignore --set
        raise SystemExit(f"{run_dir} exists with other settings than --set {differ}: "
                         f"its config.json has {({k: config['model_config'].get(k) for k in differ})}; "
                         "use a new name, or edit its config.json")
    record = {"cpu_s": 0.0, "wall_s": 0.0}
    t_cpu, t_wall = time.process_time(), time.time()
    result = train(run_dir, steps=args.steps, max_minutes=args.max_minutes, log_every=10,
                   preview_every=10 ** 9, checkpoint_every=100)
    cpu_s, wall_s = time.process_time() - t_cpu, time.time() - t_wall
    if record_path.exists():  # evaluations may have been added meanwhile
        record = {"cpu_s": 0.0, "wall_s": 0.0, **json.loads(record_path.read_text())}
    record["cpu_s"] += cpu_s
    record["wall_s"] += wall_s
    record.update(steps=result["step"], preset=config.get("preset", args.preset),
                  overrides=config.get("changed_settings") or {}, threads=args.threads, seed=config.get("seed", args.seed))
    record_path.write_text(json.dumps(record, indent=1))
    print(json.dumps({k: record[k] for k in ("steps", "cpu_s", "wall_s")}))


def load_trainer(run_dir: Path):
    """The run's trainer on the CPU with its last checkpoint's weights (no training data)."""
    from matgen_core.train import build_trainer

    trainer = build_trainer(run_dir, "cpu", with_data=False)
    trainer.load_state_dict(runs.load_checkpoint(run_dir, device="cpu")["state"])
    return trainer


def volumes(run_dir: Path, seed: int, live: bool = False, smooth: float = 0.0) -> dict:
    """128^3 labels of a run: ``raw`` (generator argmax) and ``default`` (calibrated to the
    training image's fractions, as ``matgen generate``). ``live``: the live generator instead of
    the weight average; ``smooth``: Gaussian sigma (voxels) on the probabilities before argmax."""
    from scipy import ndimage

    from matgen_core import fractions

    trainer = load_trainer(run_dir)
    if live:
        trainer.generator_ema = None
    probs = trainer.sample((SIZE,) * 3, seed=seed)
    if smooth > 0:
        probs = np.stack([ndimage.gaussian_filter(p, smooth) for p in probs])
    raw = np.argmax(probs, axis=0).astype(np.uint8)
    default, _ = fractions.calibrate(probs, fractions.training_fractions(run_dir))
    return {"raw": raw, "default": default}


def cmd_eval(args) -> None:
    torch.set_num_threads(args.threads)
    run_dir = RUNS / args.name
    record_path = run_dir / "fidelity.json"
    record = json.loads(record_path.read_text()) if record_path.exists() else {}
    evals = record.setdefault("eval", {})
    step = runs.load_checkpoint(run_dir, device="cpu")["step"]
    tag = ("_live" if args.live else "") + (f"_smooth{args.smooth:g}" if args.smooth else "")
    for seed in args.seeds:
        vols = volumes(run_dir, seed, live=args.live, smooth=args.smooth)
        for mode in args.modes:
            key = f"{mode}{tag}_s{seed}@{step}"
            evals[key] = stats(vols[mode], tau=not args.no_tau)
            record_path.write_text(json.dumps(record, indent=1))
            print(key, summary_line(evals[key], truth()), flush=True)


_TRUTH = None


def truth() -> dict:
    global _TRUTH
    path = RUNS / "truth.json"
    if _TRUTH is None and path.exists():
        _TRUTH = json.loads(path.read_text())
    return _TRUTH


def cmd_truth(args) -> None:
    torch.set_num_threads(args.threads)
    labels = true_labels()
    crops = {"A": labels[:SIZE, :SIZE, :SIZE], "B": labels[SIZE:, SIZE:, SIZE:]}
    out = {k: stats(v) for k, v in crops.items()}
    # anisotropy check of the truth: S2 of each phase along each axis (whole volume)
    s2 = metrics.s2_all(labels, 3, r_max=S2_R)
    out["axes_s2"] = {str(k): np.asarray(v["axes"]).tolist() for k, v in s2.items()}
    out["sa_axes"] = None
    RUNS.mkdir(parents=True, exist_ok=True)
    (RUNS / "truth.json").write_text(json.dumps(out, indent=1))
    for k in ("A", "B"):
        print(k, summary_line(out[k], None))


def _mean_truth(t: dict, field: str):
    return np.mean([np.asarray(t["A"][field]), np.asarray(t["B"][field])], axis=0)


def tau_mean(taus) -> float:
    """Tortuosity of the three axes combined: harmonic mean (= phase fraction / mean D_eff), so
    one badly connected axis raises it without an infinite or huge value swamping the others."""
    taus = np.asarray(taus, dtype=float)
    return float(len(taus) / np.sum(1.0 / taus))


def summary_line(s: dict, t: dict | None) -> str:
    vf, sa = np.asarray(s["vf"]), np.asarray(s["sa"])
    parts = [f"VF {np.round(100 * vf, 1).tolist()}", f"SA {np.round(sa, 4).tolist()}"]
    taus = {p: tau_mean(v) for p, v in s.get("tau", {}).items()}
    parts.append("tau " + " ".join(f"{p}:{v:.2f}" for p, v in taus.items()))
    if t is not None:
        tvf, tsa = _mean_truth(t, "vf"), _mean_truth(t, "sa")
        parts.append(f"dVF pp {np.round(100 * (vf - tvf), 1).tolist()}")
        parts.append(f"dSA % {np.round(100 * (sa / tsa - 1), 1).tolist()}")
        terr = []
        for p, v in taus.items():
            tt = np.mean([tau_mean(t["A"]["tau"][p]), tau_mean(t["B"]["tau"][p])])
            terr.append(f"{p}:{100 * (v / tt - 1):+.0f}%")
        parts.append("dtau " + " ".join(terr))
        l1 = np.mean([np.abs(np.asarray(s["s2"][p]) - np.mean([t["A"]["s2"][p], t["B"]["s2"][p]], axis=0)).mean()
                      for p in s["s2"]])
        parts.append(f"S2L1 {l1:.4f}")
        parts.append("tau/axis " + " ".join(f"{p}:" + ",".join(f"{x:.1f}" for x in v) for p, v in s["tau"].items()))
    return " | ".join(parts)


def cmd_table(args) -> None:
    """Markdown table of every evaluated run under RUNS, errors against the truth's mean."""
    t = truth()
    tvf, tsa = _mean_truth(t, "vf"), _mean_truth(t, "sa")
    ttau = {p: np.mean([tau_mean(t["A"]["tau"][p]), tau_mean(t["B"]["tau"][p])]) for p in t["A"]["tau"]}
    print("| run | steps | CPU min | output | VF err pp (pore/NMC/CBD) | SA err % | tau pore | "
          "tau NMC (per axis) | S2 L1 |")
    print("|---|---|---|---|---|---|---|---|---|")
    for k in ("A", "B"):
        r = t[k]
        print(f"| truth crop {k} | | | | {_fmt(100 * (np.asarray(r['vf']) - tvf), '+.1f')} | "
              f"{_fmt(100 * (np.asarray(r['sa']) / tsa - 1), '+.1f')} | {_tau_cell(r, '0', ttau)} | "
              f"{_tau_cell(r, '1', ttau, True)} | |")
    for path in sorted(RUNS.glob("*/fidelity.json")):
        rec = json.loads(path.read_text())
        for key, r in rec.get("eval", {}).items():
            mode, _, step = key.partition("@")
            l1 = np.mean([np.abs(np.asarray(r["s2"][p]) - np.mean([t["A"]["s2"][p], t["B"]["s2"][p]], axis=0)).mean()
                          for p in r["s2"]])
            cpu = rec.get("cpu_s", 0) / 60 * int(step) / max(int(rec.get("steps", step)), 1)
            print(f"| {path.parent.name} | {step} | {cpu:.1f} | {mode} | "
                  f"{_fmt(100 * (np.asarray(r['vf']) - tvf), '+.1f')} | {_fmt(100 * (np.asarray(r['sa']) / tsa - 1), '+.1f')} | "
                  f"{_tau_cell(r, '0', ttau)} | {_tau_cell(r, '1', ttau, True)} | {l1:.4f} |")


def _fmt(values, spec) -> str:
    return " / ".join(format(float(v), spec) for v in values)


def _tau_cell(r, p, ttau, axes=False) -> str:
    if p not in r.get("tau", {}):
        return "-"
    v = tau_mean(r["tau"][p])
    cell = f"{v:.2f} ({100 * (v / ttau[p] - 1):+.0f} %)"
    if axes:
        cell += " (" + ", ".join(f"{x:.1f}" for x in r["tau"][p]) + ")"
    return cell


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("name")
    t.add_argument("--preset", default="quick")
    t.add_argument("--steps", type=int)
    t.add_argument("--max-minutes", type=float)
    t.add_argument("--set", action="append")
    t.add_argument("--seed", type=int, default=0)
    e = sub.add_parser("eval")
    e.add_argument("name")
    e.add_argument("--seeds", type=int, nargs="+", default=[1])
    e.add_argument("--no-tau", action="store_true")
    e.add_argument("--live", action="store_true", help="live generator, not the weight average")
    e.add_argument("--smooth", type=float, default=0.0, help="Gaussian sigma on probabilities")
    e.add_argument("--modes", nargs="+", default=["raw", "default"], choices=["raw", "default"])
    sub.add_parser("truth")
    sub.add_parser("table")
    for p in (t, e, sub.choices["truth"], sub.choices["table"]):
        p.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    {"train": cmd_train, "eval": cmd_eval, "truth": cmd_truth, "table": cmd_table}[args.cmd](args)


if __name__ == "__main__":
    main()
