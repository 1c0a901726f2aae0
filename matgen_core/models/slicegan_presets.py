"""SliceGAN presets: frozen data (read-only mappings, tuples), re-exported as ``slicegan.PRESETS``."""
from __future__ import annotations

from types import MappingProxyType

# ---------------------------------------------------------------------------------------------
# Presets: frozen data (read-only mappings, tuples); every key can be overridden per run
# (runs.create_run copies the preset into the run's config.json). ``description`` is one line for
# the app's Train page. Keys beyond the networks and optimiser:
#   critic_step_per_direction: True = one critic optimiser step per slicing direction (published
#       v1.1: 3 x critic_iters critic updates per generator step); False = one step on the loss
#       summed over the directions (critic_iters updates per generator step).
#   gen_batch_size: fake volumes in the generator's update (None = batch_size, the critic's).
#   critic_slices: slices per volume and direction shown to the critic (None = all of them).
#   augment_dihedral: real crops and fake slices in random orientations (transpose, flips) in
#       isotropic runs.
#   symmetrize_real: the real crops alone in random orientations (isotropic runs): the target is
#       the training image's statistics averaged over the square's orientations, and a volume
#       whose axes differ stays visible to the critic (measured on `standard`: the generators'
#       under-connected axis moved from Z to Y on four of five seeds; docs/fidelity.md, stop 34).
#   stationarity_weight: penalty on plane-to-plane changes of the mean phase fractions that repeat
#       in every volume (the generator's 32-voxel lattice artefact; 0 = off, as published).
#   volume_fraction_weight: penalty on the spread of phase fractions between training volumes beyond
#       what the training image's two-point statistics predict for a volume of that size
#       (generated regions rich or poor in one phase; 0 = off, as published).
#   s2_weight: penalty on the gap between the training volumes' S2 along each axis (argmax labels,
#       straight-through gradient) and the training image's (slicegan_s2.py; 0 = off, as published).
#   interface_weight: penalty on the relative gap between the training volumes' boundary density
#       of each phase along each axis (argmax labels, straight-through gradient) and the training
#       image's: under isotropy it sets the 3D surface area (slicegan_s2.py; 0 = off, as published).
#   isotropy_weight: the same penalty at oblique 3D offsets ((1, 1, 0), (2, 1, 0), (2, 2, 1) and
#       their permutations and signs) against the training image's boundary density at 2D offsets
#       of the same length: under isotropy it depends on the length alone (slicegan_s2.py; one
#       training image only; 0 = off, as published; measured on `standard`, it does not close the
#       oblique gap it targets: docs/fidelity.md, stop 32).
#   opening_weight: penalty on the gap between the share of each phase that survives an opening by
#       a 3, 5 or 7 px square in the training volumes' planes and in the training image (particle
#       shape in sections; slicegan_s2.py; 0 = off, as published; measured on `standard`, it does
#       not move the share it targets: docs/fidelity.md, stop 34).
#   euler_weight: penalty on the relative gap between the Euler number per area of each phase in
#       the training volumes' planes and in the training image (under isotropy: the integral of
#       mean curvature of the 3D surface; slicegan_s2.py; 0 = off, as published; measured on
#       `standard` at weight 5 from step 400, it moves its target loosely and cost one seed of four
#       4 pp of its NMC: docs/fidelity.md, stop 35; start it late, the gap of an untrained
#       generator is 10-20x).
#   corner_weight: penalty on an excess of each phase's corner-only contacts (2 x 2 blocks holding
#       the phase on one diagonal only: joined at a corner, not through a face) in the training
#       volumes' planes over the training image's share (slicegan_s2.py; 0 = off, as published;
#       measured on `standard` at weight 0.3 from step 400 it cuts the generators' 3-5x NMC
#       excess by 40-45 % and lowers the NMC tortuosity median by 5-20 % on four seeds of five,
#       inside the seeds' spread (three of five within 15 % with it and without it), and two
#       seeds lost per-volume fraction control; weights 0.1-1 move it alike, not in proportion
#       (docs/fidelity.md, stops 36-37); start it late, an untrained generator has 20-240x the
#       image's share).
#   interface_start: the generator step from which interface_weight, isotropy_weight,
#       opening_weight, euler_weight and corner_weight apply (from the first step they override
#       the critic before the structure has formed; docs/fidelity.md).
#   gen_upsample: "transposed" (free 4x4x4 kernels, as published) or "resize" (nearest-neighbour
#       upsampling and a 3x3x3 convolution per layer, written as the same transposed convolution:
#       a layer cannot imprint its stride on the mean, the generator's 32-voxel lattice;
#       slicegan_networks.ResizeKernel).
#   critic_diagonal: one more critic, judging the six face-diagonal planes of every volume
#       (normal (1, 1, 0) and its like: sections no orthogonal slice shows) against crops of the
#       training image sampled sqrt(2) apart along one axis, as such a plane's voxels lie. Under
#       isotropy every section looks alike; without it the generator's volumes are free to differ
#       along diagonals (isotropic runs only; False = off, as published; docs/fidelity.md).
#   conditional, fraction_range: conditional SliceGAN (docs/fractions.md).
# ---------------------------------------------------------------------------------------------
def _frozen(**values) -> MappingProxyType:
    return MappingProxyType({k: tuple(v) if isinstance(v, list) else v for k, v in values.items()})


# "paper" = SliceGAN v1.1 (Kench & Cooper 2021, the paper release): same networks, optimiser,
# batch sizes and schedule: per critic iteration one set of 8 fake volumes, then one Adam step
# per slicing direction with 32 real crops and all 64 slices of each volume (gradient penalty on
# the first 32 pairs), 5 critic iterations per generator step (15 critic updates), a generator
# update on 32 fresh volumes, 5,400 generator steps. Known differences, none in the maths: real
# crops are drawn at random on the fly (v1.1 pre-builds 900 x 32 random crops an epoch), and the
# first generator update comes after 5 critic iterations (v1.1: after the first one).
_PAPER = dict(
    description="The published SliceGAN v1.1 recipe (64^3 volumes, 5,400 generator steps): "
                "hours on a GPU, not for CPUs.",
    nz=16, lz=4, img_size=64,
    gen_channels=[256, 256, 128, 64], gen_kernels=[4, 4, 4, 4, 4], gen_strides=[2, 2, 2, 2, 2],
    gen_paddings=[2, 2, 2, 2, 3],
    critic_channels=[64, 128, 256, 512], critic_kernels=[4, 4, 4, 4, 4],
    critic_strides=[2, 2, 2, 2, 2], critic_paddings=[1, 1, 1, 1, 0],
    lr_g=1e-4, lr_d=1e-4, betas=[0.0, 0.9], batch_size=8, gen_batch_size=32, real_batch=32,
    critic_iters=5, critic_step_per_direction=True,
    gp_lambda=10.0, critic_slices=None, fraction_weight=0.0, precision="fp32", steps=5400,
    ema_decay=0.0, conditional=False, fraction_range=0.1, augment_dihedral=False,
    stationarity_weight=0.0, volume_fraction_weight=0.0, s2_weight=0.0,
    interface_weight=0.0, interface_start=0, gen_upsample="transposed", critic_diagonal=False,
    isotropy_weight=0.0, opening_weight=0.0, euler_weight=0.0, corner_weight=0.0, symmetrize_real=False,
)
_QUICK = dict(
    description="Small network for a 2-core CPU, about 10 CPU minutes: a first look. Fractions, "
                "S2 and surface area come close; 3D connectivity (tortuosity) is not reliable.",
    # From halfway (step 750) a surface-area penalty from stereology (interface_weight). On the
    # test cathode and the 3-phase GRF truth (2 seeds x 2 volumes each) it brought the surface
    # area of every phase >= 30 % within 3.3 % of the true 3D volume's (without: up to +14 %),
    # and no axis of any volume lost its path through a phase; the cathode's NMC then conducts
    # ~40 % too well (docs/fidelity.md, stop 27). `standard` leaves it off: on four seeds it
    # cost raw fractions and S2 there, for no better network.
    # 32^3 training volumes and 32 px crops (features up to ~15 px), narrow networks, a few
    # random slices per volume, faster optimiser settings, a density loss toward the training
    # image's phase fractions, and a weight-averaged generator for sampling. About 6x cheaper
    # a step than the published 64^3 geometry. 1500 steps: ~0.38 CPU s a step measured with one
    # thread (bench/fidelity_experiments.py), i.e. ~10 CPU minutes.
    nz=16, lz=3, img_size=32,
    gen_channels=[64, 64, 32, 16], gen_kernels=[4, 4, 4, 4, 4], gen_strides=[2, 2, 2, 2, 2],
    gen_paddings=[2, 2, 2, 2, 3],
    critic_channels=[32, 64, 128], critic_kernels=[4, 4, 4, 4],
    critic_strides=[2, 2, 2, 2], critic_paddings=[1, 1, 1, 0],
    lr_g=1e-3, lr_d=1e-3, betas=[0.5, 0.9], batch_size=4, gen_batch_size=None, real_batch=16,
    critic_iters=2, critic_step_per_direction=False,
    gp_lambda=10.0, critic_slices=8, fraction_weight=10.0, precision="fp32", steps=1500,
    ema_decay=0.98, conditional=False, fraction_range=0.1, augment_dihedral=False,
    stationarity_weight=0.0, volume_fraction_weight=0.0, s2_weight=0.0,
    interface_weight=100.0, interface_start=750, gen_upsample="transposed", critic_diagonal=False,
    isotropy_weight=0.0, opening_weight=0.0, euler_weight=0.0, corner_weight=0.0, symmetrize_real=False,
)
_STANDARD = dict(
    _QUICK,
    description="The published 64 px window with narrow networks, about 40 CPU minutes, for "
                "features over ~15 px. Not yet shown to give simulation-grade tortuosity.",
    # the published 64^3 geometry (lz 4, five critic layers) with quick's channel widths and
    # optimiser; 2 volumes a step, 16 random slices per volume and direction. ~1.9 CPU s a step
    # measured with one thread (bench/fidelity_experiments.py): 1200 steps ~ 38 CPU minutes.
    lz=4, img_size=64,
    critic_channels=[32, 64, 128, 256], critic_kernels=[4, 4, 4, 4, 4],
    critic_strides=[2, 2, 2, 2, 2], critic_paddings=[1, 1, 1, 1, 0],
    batch_size=2, critic_slices=16, steps=1200, interface_weight=0.0, interface_start=0,
)
PRESETS = MappingProxyType({"quick": _frozen(**_QUICK), "standard": _frozen(**_STANDARD),
                            "paper": _frozen(**_PAPER)})
del _PAPER, _QUICK, _STANDARD
