"""Why generated electrode volumes conduct worse than the truth: structure diagnostics (issue #13).

Companion of ``bench/fidelity_experiments.py`` (same runs folder, same truth). For the true
electrode (its 128^3 crops) or a trained run (its 128^3 volumes, raw argmax, seeds 1..N), prints
for one phase (default 1 = NMC):

* ``spread``: the phase's fraction in each 128^3 volume and its spread between volumes, the
  standard deviation over 64^3 blocks, over single planes (per axis), and the lowest plane;
  a packed material is very uniform at large scales (the truth's 128^3 crops: +-0.4 pp).
* ``paths``: per volume, in how many of 27 overlapping sub-volumes of half the side (64^3 in a
  128^3 volume) the phase connects two opposite faces, along Z / Y / X
  (``metrics.block_percolation``), and the median over the volumes of the sum over the axes (of
  81). Seconds a run, and it ranks runs much as their tortuosity does (the truth's octants: NMC
  median 76.5, range 70-78; stop 33 in docs/fidelity.md).
* ``sections``: how far 2D clusters of the phase reach along each axis: in sections that contain
  the axis (every 8th plane of the two orientations), the share of the phase's pixel pairs 32 px
  apart along it that lie in one 8-connected 2D cluster (the two-point cluster function over
  S2, C2/S2); beside it the training slice's along its rows and its columns. Under isotropy the
  three axes agree (the truth: 0.19-0.23); the generators of stops 31-33 reach least along Z,
  the axis that is a row in both slicing directions that show it, and conduct worst along it
  (docs/fidelity.md, stop 34).
* ``euler``: the phase's Euler number (8-connected pieces minus holes) per 10^4 px^2 in the planes
  normal to Z, Y and X, and the training slice's (``slicegan_s2.plane_euler_density``, the
  ``euler_weight`` statistic). Under isotropy every orientation has the same value, set by the 3D
  material (the integral of the mean curvature of its surface). The test slice's NMC value is
  ~10 % above the truth's sections' (8.04 against 7.16); the generated runs' lie at 6.3-8.1 and
  their NMC tortuosity rises with it (docs/fidelity.md, stop 35).
* ``corners``: the phase's corner-only contacts (2 x 2 blocks holding the phase on one diagonal
  and not on the other: two parts that touch at a corner, joined in 8-connected terms and not in
  a face-connected transport solve) per 10^4 blocks in the planes normal to Z, Y and X, and the
  training slice's (``slicegan_s2.plane_corner_contacts``, the ``corner_weight`` statistic); and
  the 3D kind no plane shows, voxel pairs a body diagonal apart alone in their 2 x 2 x 2 cube,
  per 10^4 voxels. The generators of stops 31-35 make 3-5x the truth's NMC corner contacts in
  sections and 3-6x its body-diagonal ones (docs/fidelity.md, stop 36).
* ``clusters``: connected clusters of the phase in 3D (6- and 26-connectivity): count and the
  share of the phase in the largest one; then the same after a 2-voxel erosion, which cuts
  necks thinner than ~5 voxels (a wide-necked network stays in one piece).
* ``correlation``: the phase's normalised covariance (S2(r) - f^2) / (f - f^2) along the axes at
  r = 3, 6, 9, 12, 16, 20 voxels, averaged over 64^3 blocks: the truth's blocks, and for a run both
  volumes made at 64^3 (the training size of 64 px presets) and 64^3 blocks of its 128^3 volumes.
  Packed particles show no or a slightly negative correlation at 16-20 voxels.
* ``slices``: the same in 2D, every 8th slice along each axis: clusters per slice, clusters
  smaller than 20 px, clusters after a 2-pixel erosion, share of the phase left by it, the
  perimeter (phase/other pixel edges per pixel of the slice) and the area-weighted cluster size
  (px; the mean size of the cluster a random pixel of the phase belongs to). This is what the
  2D critic could see.
* ``lattice``: the phase's fraction per plane, folded modulo 32 voxels (the generator's total
  stride: one latent cell) and averaged over the volumes (``--lattice-volumes``, default 12) and
  the four periods of each; its peak-to-peak per axis, and beside it the noise floor, the same
  figure for what the volumes do not share (each volume's deviation from the average with a
  random sign). A statistically homogeneous material has no such pattern (the truth's 8
  octants: 0.15-0.20 pp, below their floor because together they tile whole planes, which are
  uniform); a transposed-convolution generator imprints one (docs/fidelity.md).
* ``diagonal``: the same structure seen along directions no orthogonal slice shows. 3D boundary
  crossings per voxel length along the axes, the face diagonals (1, 1, 0) and the body diagonals
  (1, 1, 1); and in 2D, clusters per 10^4 px^2 and the area-weighted cluster size (px^2) in
  orthogonal slices (every 8th) against the six face-diagonal planes of each volume at 5 offsets
  (their voxels lie sqrt(2) apart along the diagonal; areas in px^2). An isotropic material shows
  the same figures in every direction, up to the grid's own discretisation (the truth: see its
  line); a SliceGAN critic sees only the orthogonal slices (``critic_diagonal`` adds the diagonal
  planes through each training volume's centre).
* ``oblique``: per phase, the boundary density (share of voxel pairs that cross the phase's
  boundary) at the 3D offsets (1, 1, 0), (2, 1, 0) and (2, 2, 1) with their permutations and
  signs, relative to the same volume's along the axes; over the training slice's at the 2D
  offsets of the same length ((1, 1), (2, 1), (3, 0)) relative to its rows and columns; mean over
  the volumes. Under isotropy each ratio is 1 (the truth's octants: see their line), whatever the
  volume's surface area; the (2, 2, 1) family points out of every axis plane. ``isotropy_weight``
  penalises the gap (and does not close it: docs/fidelity.md, stop 32). A run gets a second
  line, ``oblique, live``: the same on 8 batches of the live generator (not the weight average)
  in training mode at its training size, what the training losses see.
* ``tortuosity`` (``--tortuosity``, slow: ~1 CPU min a volume): the phase's tortuosity along each
  axis on each whole 128^3 volume, with the same solver settings as fidelity_experiments.py.
  The truth's figures are its 8 octants (``truth --tortuosity``, saved to
  ``$FIDELITY_RUNS/truth_octant_tortuosity.json``); a run's are then compared with them: median,
  range, and the share of (volume, axis) values within 15 % of the truth's median. One 128^3
  volume is one draw from a wide distribution (the truth's own octants span 7.1-14.8 for NMC),
  so a recipe is judged on the distribution, not on one value.

    python bench/fidelity_diagnostics.py truth [--tortuosity]
    python bench/fidelity_diagnostics.py RUN_NAME_OR_FOLDER [--volumes 4] [--phase 1] [--tortuosity]
"""
from __future__ import annotations

import argparse
import copy
import itertools
import json
import sys
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from fidelity_experiments import (RUNS, SIZE, TAU_SETTINGS, load_trainer, training_slice,  # noqa: E402
                                  true_labels)
from matgen_core import metrics  # noqa: E402
from matgen_core.models.slicegan_networks import periodic_stride  # noqa: E402
from matgen_core.models.slicegan_presets import PRESETS  # noqa: E402
from matgen_core.models.slicegan_s2 import (OBLIQUE_FAMILIES, isotropy_targets, plane_corner_contacts,  # noqa: E402
                                            plane_euler_density)


def plane_fractions(volume: np.ndarray, phase: int) -> list[np.ndarray]:
    """The phase's fraction (%) in each plane perpendicular to Z, Y and X."""
    return [100 * (volume == phase).mean(axis=tuple(i for i in range(3) if i != a)) for a in range(3)]


def spread(volumes: list[np.ndarray], phase: int) -> str:
    fractions = [100 * (v == phase).mean() for v in volumes]
    half = SIZE // 2
    blocks = [100 * (v == phase).reshape(2, half, 2, half, 2, half).mean((1, 3, 5)).std() for v in volumes]
    plane_std, lowest = [], []
    for v in volumes:
        profiles = plane_fractions(v, phase)
        plane_std.append([p.std() for p in profiles])
        lowest.append([p.min() for p in profiles])
    return ("fraction %% per volume %s (std %.2f pp) | 64^3 block std %.2f pp | plane std Z/Y/X %s pp"
            " | lowest plane Z/Y/X %s %%" % (np.round(fractions, 1), np.std(fractions), np.mean(blocks),
                                             np.round(np.mean(plane_std, 0), 2), np.round(np.min(lowest, 0), 1)))


def clusters(volume: np.ndarray, phase: int) -> str:
    mask = volume == phase
    parts = []
    for name, connectivity in (("6-conn", 1), ("26-conn", 3)):
        labels, n = ndimage.label(mask, ndimage.generate_binary_structure(3, connectivity))
        sizes = np.bincount(labels.ravel())[1:]
        parts.append(f"{name}: {n} clusters, largest {sizes.max() / mask.sum():.2f}")
    eroded = ndimage.binary_erosion(mask, iterations=2)
    labels, n = ndimage.label(eroded)
    sizes = np.bincount(labels.ravel())[1:]
    parts.append(f"eroded 2 vx: {n} clusters, largest {sizes.max() / max(sizes.sum(), 1):.2f}")
    return " | ".join(parts)


def slices(volume: np.ndarray, phase: int) -> str:
    rows = []
    for axis in range(3):
        for i in range(0, volume.shape[axis], 8):
            mask = np.take(volume, i, axis=axis) == phase
            labels, n = ndimage.label(mask)
            sizes = np.bincount(labels.ravel())[1:]
            eroded = ndimage.binary_erosion(mask, iterations=2)
            n_eroded = ndimage.label(eroded)[1]
            # raw edge count per pixel (metrics.surface_area's 2D perimeter without its pi/4)
            edges_per_px = metrics.surface_area(mask.astype(np.uint8), 2)["per_phase"][1] / (np.pi / 4)
            weighted = (sizes.astype(float) ** 2).sum() / max(sizes.sum(), 1)
            rows.append((axis, n, (sizes < 20).sum(), n_eroded, eroded.sum() / max(mask.sum(), 1),
                         edges_per_px, weighted))
    r = np.array(rows, float)
    per_axis = " | ".join("%s: %.1f clusters, %.1f < 20 px, %.1f after erosion, %.2f left"
                          % ("ZYX"[a], *r[r[:, 0] == a, 1:5].mean(0)) for a in range(3))
    return per_axis + " | all axes: perimeter %.4f /px, area-weighted cluster %.0f px" % tuple(r[:, 5:].mean(0))


LAGS = (3, 6, 9, 12, 16, 20)


def covariance(volumes: list[np.ndarray], phase: int) -> str:
    """Normalised covariance along the three axes at LAGS, mean over ``volumes`` (not periodic)."""
    out = []
    for v in volumes:
        f = (v == phase).mean()
        s2 = np.mean([metrics.two_point_correlation(v, phase, axis=a, r_max=max(LAGS)) for a in range(3)], 0)
        out.append((s2[list(LAGS)] - f * f) / (f - f * f))
    return " ".join(f"{r}:{c:+.3f}" for r, c in zip(LAGS, np.mean(out, 0)))


def lattice(volumes: list[np.ndarray], phase: int, period: int) -> str:
    """Peak-to-peak (pp) per axis of the phase's plane fractions folded modulo ``period`` (the
    generator's total stride, ``periodic_stride``), and its noise floor: the peak-to-peak of the
    same average made of each volume's deviation from it with a random sign (all sign patterns,
    median), which keeps the volumes' disagreement and cancels what they share. A lattice is
    what stands above the floor."""
    profiles = [plane_fractions(v, phase) for v in volumes]
    n = len(volumes)
    signs = (np.array(list(itertools.product((1.0, -1.0), repeat=n))) if n <= 9
             else np.random.default_rng(0).choice((1.0, -1.0), size=(512, n)))
    found, floor = [], []
    for axis in range(3):
        cut = min(len(p[axis]) for p in profiles) // period * period
        folds = np.array([p[axis][:cut].reshape(-1, period).mean(0) for p in profiles])
        fold = folds.mean(0)
        found.append(np.ptp(fold))
        noise = (signs @ (folds - fold)) / len(volumes)  # (patterns, period)
        floor.append(np.median(np.ptp(noise, axis=1)))
    return "fraction per plane modulo %d voxels, peak-to-peak Z/Y/X %s pp (noise floor %s pp)" % (
        period, np.round(found, 2), np.round(floor, 2))


def _section_clusters(section: np.ndarray, phase: int, pixel_area: float) -> tuple[float, float]:
    """Clusters per 10^4 px^2 and the area-weighted cluster size (px^2) of ``phase`` in one section."""
    labels, n = ndimage.label(section == phase)
    sizes = np.bincount(labels.ravel())[1:] * pixel_area
    return n / (section.size * pixel_area) * 1e4, (sizes ** 2).sum() / max(sizes.sum(), 1e-9)


def diagonal(volumes: list[np.ndarray], phase: int) -> str:
    """Directional figures of ``phase``: boundary crossings per length along axes, face and body
    diagonals (3D), and 2D clusters in orthogonal slices vs face-diagonal planes (see the top)."""
    crossings = {"axes": [], "face diagonals": [], "body diagonals": []}
    ortho, diag = [], []
    for v in volumes:
        m = v == phase
        crossings["axes"].append(np.mean([(np.diff(m, axis=a) != 0).mean() for a in range(3)]))
        crossings["face diagonals"].append(np.mean(
            [(m[1:, 1:] != m[:-1, :-1]).mean(), (m[:, 1:, 1:] != m[:, :-1, :-1]).mean(),
             (m[1:, :, 1:] != m[:-1, :, :-1]).mean()]) / np.sqrt(2))
        crossings["body diagonals"].append((m[1:, 1:, 1:] != m[:-1, :-1, :-1]).mean() / np.sqrt(3))
        ortho += [_section_clusters(np.take(v, i, axis=a), phase, 1.0)
                  for a in range(3) for i in range(4, v.shape[a], 8)]
        n = min(v.shape)
        for a in range(3):
            moved = np.moveaxis(v[:n, :n, :n], a, 0)
            for grid in (moved, moved[:, :, ::-1]):
                for c in (-n * 3 // 8, -n * 3 // 16, 0, n * 3 // 16, n * 3 // 8):
                    t = np.arange(max(0, -c), min(n, n - c))
                    diag.append(_section_clusters(grid[:, t, t + c], phase, np.sqrt(2)))
    o, d = np.mean(ortho, 0), np.mean(diag, 0)
    c = {k: np.mean(x) for k, x in crossings.items()}
    return ("boundary crossings per voxel length: axes %.4f, face diagonals %.4f (x%.3f), body "
            "diagonals %.4f (x%.3f) | 2D clusters per 1e4 px^2 orthogonal %.2f, diagonal %.2f (x%.3f) | "
            "area-weighted cluster orthogonal %.0f, diagonal %.0f px^2 (x%.3f)" % (
                c["axes"], c["face diagonals"], c["face diagonals"] / c["axes"], c["body diagonals"],
                c["body diagonals"] / c["axes"], o[0], d[0], d[0] / o[0], o[1], d[1], d[1] / o[1]))


def oblique(volumes: list[np.ndarray], image: np.ndarray, n_phases: int) -> str:
    """Per phase, 3D boundary density at each oblique offset family over the training ``image``'s
    at the 2D offsets of the same length (see the top)."""
    def relative(labels):  # oblique boundary density over the same labels' along the axes
        return isotropy_targets(labels, n_phases) / metrics.boundary_density(labels, n_phases).mean(0)

    ratio = np.mean([relative(v) for v in volumes], axis=0) / relative(image)
    return " | ".join("phase %d: %s" % (k, ", ".join(
        "%s x%.3f" % (base, ratio[i, k]) for i, base in enumerate(OBLIQUE_FAMILIES)))
        for k in range(n_phases))


def live_training_volumes(trainer, batches: int = 8) -> list[np.ndarray]:
    """Labels of ``batches`` generator batches as the training losses see them: the live network
    (not the weight average) in training mode (batch statistics), at its training size, from
    fixed noise. Runs on a copy: training-mode batch norm would overwrite the running statistics
    that later samples of a run without a weight average use."""
    c = trainer.config
    size = c.get("gen_batch_size") or c["batch_size"]
    rng = torch.Generator().manual_seed(2024)
    net = copy.deepcopy(trainer.generator).train()
    out = []
    with torch.no_grad():
        for _ in range(batches):
            z = trainer._noise(size, c["lz"], generator=rng)
            fake = net(trainer._condition(z, trainer._refresh_targets(size, rng)))
            out += list(fake.argmax(1).numpy().astype(np.uint8))
    return out


def tortuosity_table(volumes: list[np.ndarray], phase: int) -> np.ndarray:
    """(volumes, 3) tortuosity of ``phase`` along Z, Y, X on each whole volume (inf: no path)."""
    return np.array([[metrics.tortuosity(v, phase, axis=a, **TAU_SETTINGS)["tau"]
                      for a in range(3)] for v in volumes])


def tortuosity_summary(taus: np.ndarray, truth: np.ndarray | None) -> str:
    flat = taus.ravel()
    text = "median %.2f, range %.1f-%.1f over %d (volume, axis); per axis median Z/Y/X %.2f / %.2f / %.2f" % (
        np.median(flat), flat.min(), flat.max(), flat.size, *np.median(taus, axis=0))
    if truth is not None:
        ref = np.median(truth)
        text += " | truth's octants: median %.2f, range %.1f-%.1f | within 15 %% of the truth's median: %d %% (the truth's own: %d %%)" % (
            ref, truth.min(), truth.max(), 100 * np.mean(np.abs(flat / ref - 1) <= 0.15),
            100 * np.mean(np.abs(truth.ravel() / ref - 1) <= 0.15))
    return text


def paths(volumes: list[np.ndarray], phase: int, n_phases: int) -> str:
    counts = np.array([metrics.block_percolation(v, n_phases)[phase] for v in volumes])
    sums = counts.sum(1)
    return (" ".join("/".join(map(str, c)) for c in counts)
            + f" (Z/Y/X of 27 per volume); sum median {np.median(sums):.1f}, range {sums.min()}-{sums.max()} of 81")


def cluster_reach(planes: list[tuple[np.ndarray, int]], lag: int = 32) -> float:
    """C2/S2 at ``lag`` px: over 2D masks and the axis (0 rows, 1 columns) to look along, the share
    of pixel pairs ``lag`` apart, both in the phase, that lie in one 8-connected cluster."""
    same = both = 0
    for mask, axis in planes:
        clusters, _ = ndimage.label(mask, np.ones((3, 3)))
        a, b = clusters.take(range(lag, mask.shape[axis]), axis), clusters.take(range(mask.shape[axis] - lag), axis)
        same += np.count_nonzero((a > 0) & (a == b))
        both += np.count_nonzero((a > 0) & (b > 0))
    return same / max(both, 1)


def sections(volumes: list[np.ndarray], phase: int, image: np.ndarray) -> str:
    reach = []
    for axis in range(3):
        planes = []
        for v in volumes:
            for normal in (n for n in range(3) if n != axis):
                along = [a for a in range(3) if a != normal].index(axis)
                planes += [(np.take(v, i, normal) == phase, along) for i in range(0, v.shape[normal], 8)]
        reach.append(cluster_reach(planes))
    mask = image == phase
    return ("2D cluster reach C2/S2 at 32 px along Z/Y/X %.3f / %.3f / %.3f | training slice rows / columns %.3f / %.3f"
            % (*reach, cluster_reach([(mask, 0)]), cluster_reach([(mask, 1)])))


def _per_1e4(statistic, mask: np.ndarray, normal: int) -> float:
    """A ``slicegan_s2`` plane statistic of a 0/1 volume (or a 2D image, normal 0), x 1e4."""
    one = torch.from_numpy(mask.astype(np.float64))[None, None]
    return 1e4 * statistic(one if one.ndim == 5 else one[:, :, None], normal)[0].item()


def euler(volumes: list[np.ndarray], phase: int, image: np.ndarray) -> str:
    axes = [np.mean([_per_1e4(plane_euler_density, v == phase, n) for v in volumes]) for n in range(3)]
    return ("Euler number per 1e4 px^2 in the planes normal to Z/Y/X %.2f / %.2f / %.2f | training slice %.2f"
            % (*axes, _per_1e4(plane_euler_density, image == phase, 0)))


def corners(volumes: list[np.ndarray], phase: int, image: np.ndarray) -> str:
    axes = [np.mean([_per_1e4(plane_corner_contacts, v == phase, n) for v in volumes]) for n in range(3)]
    body = np.mean([body_diagonal_contacts(v == phase) for v in volumes])
    return ("corner-only contacts per 1e4 2x2 blocks in the planes normal to Z/Y/X %.2f / %.2f / %.2f | "
            "training slice %.2f | body-diagonal only, per 1e4 voxels %.3f"
            % (*axes, _per_1e4(plane_corner_contacts, image == phase, 0), body))


def body_diagonal_contacts(mask: np.ndarray) -> float:
    """Voxel pairs of ``mask`` a body diagonal apart whose 2 x 2 x 2 cube holds no other voxel of
    ``mask`` (joined at a corner only; the face-diagonal kind is ``plane_corner_contacts``), per
    1e4 voxels."""
    n = [s - 1 for s in mask.shape]
    cube = [mask[i:i + n[0], j:j + n[1], k:k + n[2]] for i in (0, 1) for j in (0, 1) for k in (0, 1)]
    total = 0
    for corner in range(4):  # corner and 7 - corner are opposite in the cube
        others = np.zeros(n, bool)
        for m in range(8):
            if m not in (corner, 7 - corner):
                others |= cube[m]
        total += int((cube[corner] & cube[7 - corner] & ~others).sum())
    return 1e4 * total / mask.size


def blocks64(volume: np.ndarray) -> list[np.ndarray]:
    h = 64
    return [volume[z:z + h, y:y + h, x:x + h] for z in range(0, volume.shape[0] - h + 1, h)
            for y in range(0, volume.shape[1] - h + 1, h) for x in range(0, volume.shape[2] - h + 1, h)]


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("name", help="'truth', or a run: a name under $FIDELITY_RUNS or a folder")
    ap.add_argument("--volumes", type=int, default=4, help="generated volumes (seeds 1..N)")
    ap.add_argument("--phase", type=int, default=1)
    ap.add_argument("--tortuosity", action="store_true", help="tortuosity per volume and axis (slow)")
    ap.add_argument("--lattice-volumes", type=int, default=12,
                    help="generated volumes for the lattice line (seeds 1..N; cheap)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    labels = true_labels()  # the truth's octants, and the training slice of the oblique line
    if args.name == "truth":
        volumes = [labels[z:z + SIZE, y:y + SIZE, x:x + SIZE]
                   for z in (0, SIZE) for y in (0, SIZE) for x in (0, SIZE)]
    else:
        run_dir = RUNS / args.name
        trainer = load_trainer(run_dir)
        volumes = [trainer.sample((SIZE,) * 3, seed=s).argmax(0).astype(np.uint8)
                   for s in range(1, args.volumes + 1)]
    print(f"{args.name} spread:   {spread(volumes, args.phase)}")
    image = training_slice(labels).labels
    n_phases = int(image.max()) + 1
    print(f"{args.name} paths:    {paths(volumes, args.phase, n_phases)}", flush=True)
    print(f"{args.name} sections: {sections(volumes, args.phase, image)}", flush=True)
    print(f"{args.name} euler:    {euler(volumes, args.phase, image)}", flush=True)
    print(f"{args.name} corners:  {corners(volumes, args.phase, image)}", flush=True)
    period = periodic_stride(PRESETS["quick"] if args.name == "truth" else trainer.config)
    folded = volumes if args.name == "truth" else volumes + [
        trainer.sample((SIZE,) * 3, seed=s).argmax(0).astype(np.uint8)
        for s in range(len(volumes) + 1, args.lattice_volumes + 1)]
    print(f"{args.name} lattice:  {lattice(folded, args.phase, period)} over {len(folded)} volumes",
          flush=True)
    print(f"{args.name} diagonal: {diagonal(volumes, args.phase)}", flush=True)
    print(f"{args.name} oblique:  {oblique(volumes, image, n_phases)}", flush=True)
    if args.name != "truth":
        live = live_training_volumes(trainer)
        print(f"{args.name} oblique, live: {oblique(live, image, n_phases)} "
              f"({len(live)} volumes of {live[0].shape[0]}^3)", flush=True)
    if args.tortuosity:
        saved = RUNS / "truth_octant_tortuosity.json"
        taus = tortuosity_table(volumes, args.phase)
        known = json.loads(saved.read_text()) if saved.is_file() else {}  # phase -> octants' values
        truth = None
        if args.name == "truth":
            RUNS.mkdir(parents=True, exist_ok=True)
            saved.write_text(json.dumps({**known, str(args.phase): taus.tolist()}))
        elif str(args.phase) in known:
            truth = np.array(known[str(args.phase)])
        for i, row in enumerate(taus):
            print(f"{args.name} volume {i + 1} tortuosity Z/Y/X: {np.round(row, 2)}")
        print(f"{args.name} tortuosity: {tortuosity_summary(taus, truth)}", flush=True)
    blocks = [b for v in volumes for b in blocks64(v)]
    if args.name == "truth":
        print(f"truth correlation, 64^3 blocks: {covariance(blocks, args.phase)}")
    else:
        small = [trainer.sample((64,) * 3, seed=s).argmax(0) for s in range(1, 17)]
        print(f"{args.name} correlation, made at 64^3:          {covariance(small, args.phase)}")
        print(f"{args.name} correlation, 64^3 blocks of 128^3:  {covariance(blocks, args.phase)}")
    for i, v in enumerate(volumes[:2]):
        print(f"{args.name} volume {i + 1} clusters: {clusters(v, args.phase)}")
        print(f"{args.name} volume {i + 1} slices:   {slices(v, args.phase)}", flush=True)


if __name__ == "__main__":
    main()
