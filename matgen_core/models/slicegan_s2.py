"""Statistics of SliceGAN training volumes held to the training image's: S2 (``s2_weight``),
surface area (``interface_weight``), and the section statistics below.

The 2D critic judges one slice at a time on a 64 px window. On the electrode (docs/fidelity.md)
the generated volumes keep a positive NMC correlation at 16-20 px (normalised covariance
0.04-0.06) where the real material has none or a slight negative one (particles packed side by
side exclude each other): NMC-rich and NMC-poor regions, joined by thin necks. Under isotropy
the S2 of the 3D material along any axis equals the S2 of a 2D section along its rows and
columns, so the training image itself gives the target; nothing 3D is assumed beyond that.

The ``interface_weight`` option matches the surface area the same way. Along an axis, the share
of neighbouring voxel pairs that cross the boundary of phase k (its *boundary density*) is what the
face-counted surface area adds up (:func:`matgen_core.metrics.surface_area`: two thirds of its sum
over the three axes), and under isotropy it equals the section's along its rows and columns. So
matching the training image's boundary density along every axis sets each phase's 3D surface
area to the value stereology gives from the section (on the electrode the slice predicts the true
volume's within 3 %, docs/fidelity.md). The gap is relative, per phase, and does not depend on
the phase fractions to first order (the lag-1 S2 does: a batch's fraction noise swamped it).

The ``isotropy_weight`` option extends the same match to oblique 3D offsets. Under isotropy the
share of voxel pairs a vector r apart that cross a phase's boundary depends on |r| alone, so the
3D offsets (1, 1, 0), (2, 1, 0) and (2, 2, 1) (each with its permutations and signs: 6, 12 and 12
directions) must show the training image's value at the 2D offsets of the same length, (1, 1),
(2, 1) and (3, 0). The (2, 2, 1) family points out of every axis plane, where no orthogonal slice
looks. On the electrode's true volume the three ratios are 0.98-1.01 for every phase; the
generators measured cross 2-4 % too few boundaries along the oblique offsets, their interfaces
leaning toward the axis planes (docs/fidelity.md). Measured on `standard` (stop 32), the
penalty does not close that gap at any weight up to 1000 (paired runs with and without it), so
it stays off: a setting for experiments, not a fix.

The ``opening_weight`` option matches the particle shape seen in sections. In the plane of a
section, the share of a phase that survives a morphological opening by a k x k square (erosion
then dilation: what is left once every part narrower than k pixels is removed) is a 2D
statistic, and under isotropy every section of the 3D material has the training section's. On
the electrode, 91 % of the true NMC survives an opening of 9 px diameter, 85-88 % in the
generated volumes measured: their NMC has more thin parts (protrusions, specks and necks) in
every section. Measured on `standard` (stop 34, docs/fidelity.md), weight 1000 from step 600 did
not move the share (0.875 against 0.876) and moved the NMC network no more than the random stream
does, at 65-130 % more CPU a step, so it stays off.

The ``euler_weight`` option matches the Euler number of sections. The Euler number of a phase in
a plane (its pieces minus the holes in them, pieces 8-connected) per unit area is a 2D statistic
that, under isotropy, is the same in every section and is set by the 3D material: it equals the
integral of the mean curvature of the phase's surface per unit volume over 2 pi (stereology),
positive for convex particles, negative for the saddles of necks between them. On the electrode
the NMC of the training slice has 8.0 per 10^4 px^2, the true volume's sections 7.2 on average
(one 256^2 section spreads by 0.9: the slice is at the 84th percentile of the truth's Z slices),
and the generated volumes' 6.3-8.1; across 16 runs their NMC tortuosity rises with it (Spearman
+0.84; docs/fidelity.md, stop 35). Each 2 x 2 pixel block adds a polynomial in its four labels,
so with argmax labels the gradient on a pixel is exactly the change in Euler number its flip
makes. Measured on `standard` (weight 5 from step 400, paired runs, stop 35), it raised the NMC
value by 0.2-0.6 on three seeds of four and overshot on the fourth, where the NMC fraction fell
by 4 pp; the network did not come closer to the truth's on any seed, so it stays off.

The ``corner_weight`` option penalises contacts at a corner. A 2 x 2 pixel block that holds a
phase on one diagonal and not on the other joins two parts of the phase at a corner only: one
piece in 8-connected terms, two for a face-connected transport solve. In the electrode's
sections such blocks are rare for NMC (0.6 per 10^4 blocks in the training slice, 0.3-0.7 in
the true volume's); every generator measured makes 3-5x as many, in every orientation, and in
3D 3-6x the truth's voxel pairs joined through a body diagonal alone. Closing the face-diagonal
ones in one generated volume (0.08 % more NMC) cut its worst axis' NMC tortuosity from 62.6 to
37.7 and the others by 2-4 % (docs/fidelity.md, stop 36). Only an excess over the training
image's share is penalised, and the gradient is the exact change of each contact under a flip
of each of its four pixels (two close it, two part it), so it does not push the fraction.
Measured on `standard` (weight 0.3 from step 400, paired runs on five seeds, stop 36), it cut
the NMC excess by 40-45 % (to ~2x the slice's), lowered the NMC tortuosity median by 5-20 % on
four seeds of five (measured again at stop 37 with the corrected sampling statistics: three of
five within 15 % of the truth's, as without it), inside the spread between seeds, and widened
the NMC fraction's spread between volumes on two seeds (up to 5.3 pp off in one volume). Weights
0.1 and 1 move the network like 0.3, not in proportion to the weight, so it stays off.

Shapes: volumes (B, C, Z, Y, X) of soft phase probabilities; images (H, W) of labels.
"""
from __future__ import annotations

import itertools

import numpy as np
import torch

from ..metrics import boundary_density, s2_all


def axial_s2(volumes: torch.Tensor, max_lag: int) -> torch.Tensor:
    """S2 of each channel along each axis of ``volumes`` (B, C, Z, Y, X), averaged over the batch.

    ``S2[a, k, r]`` = mean over voxel pairs ``(x, x + r e_a)`` inside the volume (not periodic)
    of ``p_k(x) p_k(x + r e_a)``, for lags r = 1..``max_lag``. Returns (3, C, max_lag).
    """
    out = []
    for axis in range(3):
        dim, per_lag = 2 + axis, []
        length = volumes.shape[dim]
        for r in range(1, max_lag + 1):
            a = volumes.narrow(dim, 0, length - r)
            b = volumes.narrow(dim, r, length - r)
            per_lag.append((a * b).mean(dim=(0, 2, 3, 4)))
        out.append(torch.stack(per_lag, dim=1))
    return torch.stack(out)


def image_s2(labels: np.ndarray, n_phases: int, max_lag: int) -> np.ndarray:
    """S2 of each phase of a 2D label image along its rows' axis (0) and columns' axis (1), lags
    1..``max_lag`` (:func:`matgen_core.metrics.s2_all`, the same non-periodic estimator as
    :func:`axial_s2`). Returns (2, n_phases, max_lag)."""
    s2 = s2_all(labels, n_phases=n_phases, r_max=max_lag)
    return np.stack([s2[k]["axes"][:, 1:] for k in range(n_phases)], axis=1)


def s2_targets(images: list[np.ndarray], direction_image: list[int], n_phases: int, max_lag: int,
               isotropic_orientation: bool) -> np.ndarray:
    """Target S2 along the volume's axes Z, Y, X from the training images, (3, n_phases, max_lag)
    (:func:`axis_targets` of :func:`image_s2`)."""
    return axis_targets([image_s2(im, n_phases, max_lag) for im in images], direction_image,
                        isotropic_orientation)


def axis_targets(per_image: list[np.ndarray], direction_image: list[int],
                 isotropic_orientation: bool) -> np.ndarray:
    """A statistic along the volume's axes Z, Y, X from its value along each training image's
    rows' and columns' axes (``per_image[i]``: (2, ...)), shape (3, ...).

    A slice perpendicular to axis d has the remaining two axes as its rows' and columns' axes, in
    order (Z slices: Y, X; Y slices: Z, X; X slices: Z, Y), and is compared with image
    ``direction_image[d]``: each volume axis is the mean of the two image axes it appears as.
    ``isotropic_orientation`` (one image, augment_dihedral): every axis gets the mean of both.
    """
    if isotropic_orientation:
        return np.broadcast_to(per_image[0].mean(0), (3,) + per_image[0].shape[1:]).copy()
    # (slicing direction, image axis) pairs in which each volume axis appears
    appears = {0: [(1, 0), (2, 0)], 1: [(0, 0), (2, 1)], 2: [(0, 1), (1, 1)]}
    return np.stack([np.mean([per_image[direction_image[d]][ax] for d, ax in appears[a]], axis=0)
                     for a in range(3)])


def axial_boundaries(volumes: torch.Tensor) -> torch.Tensor:
    """Boundary density of each channel of (B, C, Z, Y, X) one-hot ``volumes`` along each axis,
    mean over the batch: ``p + p' - 2 p p'`` over neighbouring pairs (p, p'). Returns (3, C)."""
    out = []
    for dim in (2, 3, 4):
        a = volumes.narrow(dim, 0, volumes.shape[dim] - 1)
        b = volumes.narrow(dim, 1, volumes.shape[dim] - 1)
        out.append((a + b - 2 * a * b).mean(dim=(0, 2, 3, 4)))
    return torch.stack(out)


def interface_targets(images: list[np.ndarray], direction_image: list[int], n_phases: int,
                      isotropic_orientation: bool) -> np.ndarray:
    """Target boundary density along the volume's axes Z, Y, X from the training images'
    (:func:`matgen_core.metrics.boundary_density`), (3, n_phases)."""
    return axis_targets([boundary_density(im, n_phases) for im in images], direction_image,
                        isotropic_orientation)


def interface_loss(fake: torch.Tensor, target: torch.Tensor, weight: float, step: int = 0) -> tuple[torch.Tensor, float]:
    """``weight * mean_axis sum_phase ((b_fake - b_target) / b_target)^2`` on the batch's boundary
    density of the argmax labels (gradient through the probabilities); returns the loss and the
    largest relative gap. A (axis, phase) whose target is 0 (a phase without boundaries in the
    image that gives that axis) has no relative gap and is left to the critic."""
    known = target > 0
    gap = (axial_boundaries(hard_labels(fake.float())) / torch.where(known, target, 1.0) - 1) * known
    return weight * (gap ** 2).sum(1).mean(), gap.abs().max().item()


# 3D offset family -> the 2D offset family of the same length (squared lengths 2, 5 and 9)
OBLIQUE_FAMILIES = {(1, 1, 0): (1, 1), (2, 1, 0): (2, 1), (2, 2, 1): (3, 0)}


def offset_family(base: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Every offset with the components of ``base`` in any order and sign, one of each +-pair:
    ``(1, 1, 0)`` -> the 6 face diagonals, ``(2, 2, 1)`` -> 12, ``(3, 0)`` -> ``[(0, 3), (3, 0)]``."""
    family = set()
    for order in itertools.permutations(base):
        for signs in itertools.product((1, -1), repeat=len(base)):
            o = tuple(a * s for a, s in zip(order, signs))
            family.add(max(o, tuple(-a for a in o)))  # o and -o count the same pairs
    return sorted(family)


_OBLIQUE_OFFSETS = [offset_family(base) for base in OBLIQUE_FAMILIES]  # built once, drawn from each step


def offset_boundaries(volumes: torch.Tensor, offsets: list[tuple[int, int, int]]) -> torch.Tensor:
    """Boundary density of each channel of (B, C, Z, Y, X) one-hot ``volumes`` at the 3D voxel
    ``offsets`` (dz, dy, dx): ``p + p' - 2 p p'`` over the pairs (x, x + offset) inside the
    volume, mean over pairs, batch and offsets. Returns (C,)."""
    per_offset, dims = [], (0, 2, 3, 4)
    for offset in offsets:
        a, b = volumes, volumes
        for dim, o in zip((2, 3, 4), offset):
            n = volumes.shape[dim] - abs(o)
            a, b = (a.narrow(dim, 0, n), b.narrow(dim, abs(o), n)) if o >= 0 else \
                   (a.narrow(dim, abs(o), n), b.narrow(dim, 0, n))
        per_offset.append(a.mean(dims) + b.mean(dims) - 2 * (a * b).mean(dims))
    return torch.stack(per_offset).mean(0)


def isotropy_targets(image: np.ndarray, n_phases: int) -> np.ndarray:
    """Target boundary density of each phase for each of :data:`OBLIQUE_FAMILIES`, shape
    (len(OBLIQUE_FAMILIES), n_phases): a 2D ``image``'s (H, W labels) at its offsets of the same
    length; a 3D training volume's (Z, Y, X labels) at the 3D offsets themselves."""
    one_hot = torch.nn.functional.one_hot(torch.as_tensor(image, dtype=torch.long), n_phases)
    one_hot = one_hot.movedim(-1, 0).double()
    if image.ndim == 3:
        return np.stack([offset_boundaries(one_hot[None], offset_family(base)).numpy()
                         for base in OBLIQUE_FAMILIES])
    as_volume = one_hot[None, :, None]  # (1, C, 1, H, W)
    return np.stack([offset_boundaries(as_volume, [(0,) + o for o in offset_family(base2d)]).numpy()
                     for base2d in OBLIQUE_FAMILIES.values()])


def isotropy_loss(fake: torch.Tensor, target: torch.Tensor, weight: float, step: int = 0) -> tuple[torch.Tensor, float]:
    """``weight * mean_family sum_phase ((b_fake - b_target) / b_target)^2`` on the batch's
    boundary density at one offset of each of :data:`OBLIQUE_FAMILIES`, drawn at random each call
    (argmax labels, gradient through the probabilities); returns the loss and the largest
    relative gap. All 30 offsets a step cost 0.6 CPU s on `standard`'s volumes (+50 % a step),
    one of each family 0.16 CPU s; in an isotropic material the members of a family are alike,
    and every one is drawn over the steps. As in :func:`interface_loss`, a phase whose target is
    0 is left to the critic."""
    hard = hard_labels(fake.float())
    drawn = [family[int(torch.randint(len(family), ()))] for family in _OBLIQUE_OFFSETS]
    measured = torch.stack([offset_boundaries(hard, [offset]) for offset in drawn])
    known = target > 0
    gap = (measured / torch.where(known, target, 1.0) - 1) * known
    return weight * (gap ** 2).sum(1).mean(), gap.abs().max().item()


def hard_labels(probabilities: torch.Tensor) -> torch.Tensor:
    """One-hot argmax of (B, C, ...) probabilities with the probabilities' gradient (straight-
    through): the S2 of what a user gets. Soft outputs understate every correlation (E[p p'] of
    uncertain voxels), which would hide an excess of long-range correlation behind a deficit."""
    hard = torch.nn.functional.one_hot(probabilities.argmax(1), probabilities.shape[1])
    hard = hard.movedim(-1, 1).to(probabilities.dtype)
    return hard + probabilities - probabilities.detach()


OPENING_SIZES = (3, 5, 7)  # square sides in pixels of the ``opening_weight`` statistic


def plane_opening(volumes: torch.Tensor, normal_axis: int, size: int) -> torch.Tensor:
    """Opening (erosion then dilation) of each channel of (B, C, Z, Y, X) 0/1 ``volumes`` in the
    planes normal to ``normal_axis`` (0 = Z, 1 = Y, 2 = X) by a ``size`` x ``size`` square (odd,
    pixels). Pixels outside the volume neither erode nor dilate (max-pooling ignores padding)."""
    eroded = -_plane_max(-volumes, normal_axis, size)
    return _plane_max(eroded, normal_axis, size)


def _plane_max(volumes: torch.Tensor, normal_axis: int, size: int) -> torch.Tensor:
    """Maximum over a ``size`` x ``size`` square in the planes normal to ``normal_axis``."""
    kernel, pad = [size] * 3, [size // 2] * 3
    kernel[normal_axis], pad[normal_axis] = 1, 0
    return torch.nn.functional.max_pool3d(volumes, kernel, stride=1, padding=pad)


def plane_openings(volumes: torch.Tensor, normal_axis: int, sizes=OPENING_SIZES) -> torch.Tensor:
    """Share of each channel of (B, C, Z, Y, X) 0/1 ``volumes`` that survives an opening in the
    planes normal to ``normal_axis`` by a square of each of ``sizes`` (:func:`plane_opening`):
    ``sum(opened) / sum(volume)`` over the batch. Returns (C, len(sizes))."""
    total = volumes.sum(dim=(0, 2, 3, 4)).clamp_min(1e-6)
    return torch.stack([plane_opening(volumes, normal_axis, size).sum(dim=(0, 2, 3, 4)) / total
                        for size in sizes], dim=1)


def per_direction_plane_targets(images: list[np.ndarray], direction_image: list[int], n_phases: int,
                                statistic) -> np.ndarray:
    """A plane statistic of each training image, stacked per slicing direction Z, Y, X: the
    planes normal to axis d are slices of direction d, compared with image ``direction_image[d]``.
    ``statistic(one_hot, normal_axis)`` takes (B, C, Z, Y, X) volumes; each 2D image is passed as
    a volume of one plane (normal axis 0)."""
    per_image = []
    for image in images:
        one_hot = torch.nn.functional.one_hot(torch.as_tensor(image, dtype=torch.long), n_phases)
        per_image.append(statistic(one_hot.movedim(-1, 0).double()[None, :, None], 0).numpy())
    return np.stack([per_image[direction_image[d]] for d in range(3)])


def opening_targets(images: list[np.ndarray], direction_image: list[int], n_phases: int) -> np.ndarray:
    """Target opening shares in the planes normal to Z, Y and X, (3, n_phases, len(OPENING_SIZES))
    (:func:`per_direction_plane_targets`; a phase absent from an image gets 0)."""
    return per_direction_plane_targets(images, direction_image, n_phases, plane_openings)


def opening_loss(fake: torch.Tensor, target: torch.Tensor, weight: float, step: int = 0) -> tuple[torch.Tensor, float]:
    """``weight * sum_phase (s_fake - s_target)^2`` on the opening share of the batch's argmax
    labels in one plane orientation and for one square size, taken in turn by ``step`` (all
    nine pairs every nine steps; 0.3-0.7 CPU s each on `standard`'s batch, all nine at once would
    cost 4 s a step). Returns the loss and the largest absolute gap.

    An opening has no useful gradient, so the loss acts through a proxy: its value is the measured
    share, its gradient raises the phase's probability on the one-pixel ring around the parts the
    opening removes (what would make them wide enough to survive). It thickens thin parts rather
    than deleting them, which would cut necks. A phase whose target is 0 is left to the critic."""
    axis, which = step % 3, (step // 3) % len(OPENING_SIZES)
    dims = (0, 2, 3, 4)
    with torch.no_grad():
        labels = hard_labels(fake.detach().float())
        opened = plane_opening(labels, axis, OPENING_SIZES[which])
        ring = _plane_max(labels - opened, axis, 3) * (1 - labels)
        total = labels.sum(dim=dims).clamp_min(1.0)
        share = opened.sum(dim=dims) / total
    pushed = (ring * fake.float()).sum(dim=dims) / total
    t = target[axis, :, which]
    gap = (share + pushed - pushed.detach() - t) * (t > 0)
    return weight * (gap ** 2).sum(), gap.abs().max().item()


def plane_euler_density(volumes: torch.Tensor, normal_axis: int) -> torch.Tensor:
    """Euler number per pixel of each channel of (B, C, Z, Y, X) 0/1 ``volumes`` in the planes
    normal to ``normal_axis`` (0 = Z, 1 = Y, 2 = X), foreground 8-connected: the mean over the 2 x 2
    pixel blocks inside the planes of each block's share (Gray's bit quads: 1/4 for one pixel of
    the phase, -1/4 for three, -1/2 for a diagonal pair, 0 otherwise). The blocks of a plane add
    up to its Euler number when the phase does not touch the plane's edge; inside a larger
    material the mean is an estimate free of edge bias. Returns (C,)."""
    a, b, c, d = _plane_block_corners(volumes, normal_axis)
    ab, cd = a * b, c * d
    block = ((a + b + c + d) / 4 - (ab + cd + a * c + b * d) / 2 - (a * d + b * c)
             + ab * (c + d) + cd * (a + b) - ab * cd)
    return block.mean(dim=(0, 2, 3, 4))


def euler_targets(images: list[np.ndarray], direction_image: list[int], n_phases: int) -> np.ndarray:
    """Target Euler number per pixel of each phase in the planes normal to Z, Y and X,
    (3, n_phases) (:func:`per_direction_plane_targets`)."""
    return per_direction_plane_targets(images, direction_image, n_phases, plane_euler_density)


def euler_loss(fake: torch.Tensor, target: torch.Tensor, weight: float, step: int = 0) -> tuple[torch.Tensor, float]:
    """``weight * sum_phase (e_fake / e_target - 1)^2`` on the Euler number per pixel of the
    batch's argmax labels in the planes normal to one axis, taken in turn by ``step``; returns the
    loss and the largest relative gap. One orientation a step costs a third of all three (0.1-0.2
    CPU s on `standard`'s batch); under isotropy they are alike.

    The gradient goes through the probabilities of the pixels on a phase's edge (within one
    pixel of it in the plane), where it is the change in Euler number a pixel's flip makes: it
    joins or splits pieces and fills or opens holes. Elsewhere a flip would make a speck or a
    pinhole, the same +1 on every pixel far from the edge: a push on the phase fraction as a
    whole, which collapsed the generator onto one phase within 30 steps when it was let through.
    A phase whose target is 0 is left to the critic."""
    axis = step % 3
    probabilities = fake.float()
    with torch.no_grad():
        labels = hard_labels(probabilities)
        edge = _plane_max(labels, axis, 3) + _plane_max(-labels, axis, 3)  # 1 where a 3 x 3 square mixes
    measured = plane_euler_density(labels + edge * (probabilities - probabilities.detach()), axis)
    known = target[axis] != 0
    gap = (measured / torch.where(known, target[axis], 1.0) - 1) * known
    return weight * (gap ** 2).sum(), gap.abs().max().item()


def plane_corner_contacts(volumes: torch.Tensor, normal_axis: int) -> torch.Tensor:
    """Share of the 2 x 2 pixel blocks in the planes normal to ``normal_axis`` (0 = Z, 1 = Y,
    2 = X) in which a channel of (B, C, Z, Y, X) 0/1 ``volumes`` holds the two pixels of one
    diagonal and neither of the other: two parts of the phase that touch at a corner only.
    Summed over the three plane orientations it counts the voxel pairs a face diagonal apart
    that no face of the pair's square joins. Returns (C,)."""
    pair_ad, pair_bc = _corner_pairs(*_plane_block_corners(volumes, normal_axis))
    return (pair_ad + pair_bc).mean(dim=(0, 2, 3, 4))


def _corner_pairs(a, b, c, d) -> tuple[torch.Tensor, torch.Tensor]:
    """For 2 x 2 blocks of 0/1 pixels (top-left, top-right, bottom-left, bottom-right): 1 where
    the block holds the a-d diagonal alone, and 1 where it holds the b-c diagonal alone."""
    return a * d * (1 - b) * (1 - c), b * c * (1 - a) * (1 - d)


def _plane_block_corners(volumes: torch.Tensor, normal_axis: int) -> tuple[torch.Tensor, ...]:
    """The four pixels (top-left, top-right, bottom-left, bottom-right) of every 2 x 2 block in
    the planes normal to ``normal_axis``, each as a view of ``volumes``."""
    u, w = (2 + a for a in range(3) if a != normal_axis)

    def part(du: int, dw: int) -> torch.Tensor:
        return volumes.narrow(u, du, volumes.shape[u] - 1).narrow(w, dw, volumes.shape[w] - 1)

    return part(0, 0), part(0, 1), part(1, 0), part(1, 1)


def corner_targets(images: list[np.ndarray], direction_image: list[int], n_phases: int) -> np.ndarray:
    """Target share of corner-only contacts of each phase in the planes normal to Z, Y and X,
    (3, n_phases) (:func:`plane_corner_contacts`, :func:`per_direction_plane_targets`)."""
    return per_direction_plane_targets(images, direction_image, n_phases, plane_corner_contacts)


def corner_loss(fake: torch.Tensor, target: torch.Tensor, weight: float, step: int = 0) -> tuple[torch.Tensor, float]:
    """``weight * sum_phase max(0, c_fake / c_target - 1)^2`` on the share of corner-only
    contacts (:func:`plane_corner_contacts`) of the batch's argmax labels in the planes normal to
    one axis, taken in turn by ``step``: an excess over the training image's is penalised, a
    deficit is not. Returns the loss and the largest relative excess.

    The gradient goes through the four pixels of each contact, as the change its flip makes: the
    two pixels off the diagonal gain the phase (either one joins the pair along an edge) and the
    pair's own two lose it (either one parts them), by the same amount, so the push on the
    phase's fraction cancels. Letting through the gain alone collapsed `standard` onto one phase
    within 20 steps even at weight 0.1 (stop 36): every contact then pushed the same way, and the
    generator's cheapest answer was more of the phase everywhere. A phase whose target is 0 is
    left to the critic."""
    axis = step % 3
    probabilities = fake.float()
    with torch.no_grad():
        labels = hard_labels(probabilities)
        pair_ad, pair_bc = _corner_pairs(*_plane_block_corners(labels, axis))  # 1 at a contact
    sa, sb, sc, sd = _plane_block_corners(probabilities - probabilities.detach(), axis)  # value 0
    flips = pair_ad * (sa + sd - sb - sc) + pair_bc * (sb + sc - sa - sd)
    measured = (pair_ad + pair_bc + flips).mean(dim=(0, 2, 3, 4))
    known = target[axis] > 0
    excess = torch.relu(measured / torch.where(known, target[axis], 1.0) - 1) * known
    return weight * (excess ** 2).sum(), excess.max().item()


def s2_loss(fake: torch.Tensor, target: torch.Tensor, weight: float, step: int = 0) -> tuple[torch.Tensor, float]:
    """``weight * mean_{axis, lag} sum_phase (S2_fake - S2_target)^2`` over the batch's mean S2 of
    the argmax labels (gradient through the probabilities); returns the loss and the largest
    absolute gap."""
    gap = axial_s2(hard_labels(fake.float()), target.shape[-1]) - target
    return weight * (gap ** 2).sum(1).mean(), gap.abs().max().item()


def statistic_losses(config: dict, images: list[np.ndarray], direction_image: list[int], n_phases: int,
                     train_size: int, isotropic_orientation: bool) -> dict:
    """``name -> (loss function, weight, target array)`` for each statistic loss ``config`` turns
    on (``s2_weight``, ``interface_weight``, ``isotropy_weight``, ``opening_weight``,
    ``euler_weight``, ``corner_weight``), with its targets from the training ``images``. Every
    loss is called ``loss(fake, target, weight, step)``; the opening, Euler and corner losses use
    the step."""
    common = (images, direction_image, n_phases)
    makers = {"s2": (s2_loss, lambda: s2_targets(*common, train_size // 2, isotropic_orientation)),
              "interface": (interface_loss, lambda: interface_targets(*common, isotropic_orientation)),
              "opening": (opening_loss, lambda: opening_targets(*common)),
              "euler": (euler_loss, lambda: euler_targets(*common)),
              "corner": (corner_loss, lambda: corner_targets(*common)),
              "isotropy": (isotropy_loss, lambda: isotropy_targets(images[0], n_phases))}
    return {name: (loss, float(config[f"{name}_weight"]), target())
            for name, (loss, target) in makers.items() if config.get(f"{name}_weight")}

