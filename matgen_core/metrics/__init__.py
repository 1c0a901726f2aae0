"""Microstructure metrics on segmented label images and volumes.

One module per idea: ``composition`` (phase fractions, profiles), ``correlation`` (S2, isotropy),
``surfaces`` (surface area, interface area, TPB), ``connectivity`` (percolation), ``transport``
(tortuosity), ``representativeness`` (integral range, fraction std), ``report`` (summarize,
compare, format_table); ``_common`` holds the shared label validation. Import every public name
from here: ``from matgen_core.metrics import s2_all``.

Inputs are label arrays: integer phases ``0 .. n_phases-1`` (uint8 preferred), either a 2D image
``(H, W)`` or a 3D volume ``(Z, Y, X)``. Gray-coded labels such as ``0/85/170`` or ``0/255`` (a
few distinct values) are mapped to ``0, 1, 2, ...`` in sorted order; float arrays are accepted only
when every value is a whole number (anything else is an unsegmented image and is refused).

Units. Every length is in voxels ("px") unless ``voxel_size`` (physical length of one voxel edge,
with a ``unit`` string such as ``"um"``) is given, in which case physical values are reported as
well. Areas per volume are in ``1/px`` (``1/unit``), TPB lengths per volume and triple points per
area in ``1/px^2`` (``1/unit^2``).

Conventions used throughout:

* Phase fractions are voxel counts over the total voxel count.
* S2 (two-point correlation) of phase ``p`` at displacement ``r`` is the probability that both
  ``x`` and ``x + r`` lie in ``p``. It is computed with FFTs; for non-periodic images the volume is
  zero-padded and every displacement is normalised by its own overlap count
  ``prod_a (n_a - |r_a|)``, so no wrap-around artefacts and no edge bias.
  ``S2(0) = phi`` and ``S2(r) -> phi^2`` for large ``r`` in a random structure.
* Surface area is measured by face counting: every voxel face between two different phases
  counts ``voxel_size^2``; the total is multiplied by 2/3, the mean ratio between the
  projected (staircase) area and the true area of an isotropically oriented surface. In 2D,
  pixel edges between phases are counted and multiplied by pi/4 (same argument in 2D).
  Values are per unit *total* volume (area).
* Triple phase boundary (3D): a voxel edge is a TPB edge when the 4 voxels around it hold at
  least 3 distinct phases; density = (edge count * voxel_size) / total volume, with no staircase
  correction. 2D: a pixel corner is a triple point when its 4 pixels hold >= 3 distinct phases;
  density = count / total area.
* Percolation: fraction of a phase's voxels in face-connected clusters that touch both
  opposite faces along an axis.
* Integral range (for representativeness): ``A = sum_r (S2(r) - phi^2) / (phi - phi^2)`` over the
  lattice of displacements (voxel^d); the phase fraction measured in a window of ``V`` voxels
  then fluctuates with ``var ~= phi (1 - phi) A / V`` (capped at ``phi (1 - phi)``). Two
  safeguards make the sum usable on finite images: the covariance at each displacement uses the
  means of the two overlapping sub-windows instead of the global phi, and the sum stops at the
  first distance where the radially averaged covariance reaches zero (within ``r_max``).
"""

from __future__ import annotations

from ._common import MAX_PHASES, MetricCancelled, _prepare
from .composition import fraction_profiles, phase_fractions
from .connectivity import block_percolation, percolation
from .correlation import isotropy_index, s2_all, two_point_correlation
from .report import compare, format_table, summarize
from .representativeness import expected_cube_variance, fraction_std, representativeness
from .surfaces import boundary_density, surface_area, triple_phase_boundary_density
from .transport import tortuosity

__all__ = [
    "MetricCancelled",
    "phase_fractions",
    "fraction_profiles",
    "two_point_correlation",
    "s2_all",
    "surface_area",
    "boundary_density",
    "triple_phase_boundary_density",
    "percolation",
    "block_percolation",
    "tortuosity",
    "isotropy_index",
    "representativeness",
    "fraction_std",
    "expected_cube_variance",
    "summarize",
    "compare",
    "format_table",
]
