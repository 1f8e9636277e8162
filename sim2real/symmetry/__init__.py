"""Object symmetries: annotation, BOP conversion, finite rotation groups, symmetry-aware rotation error.

Conventions (as :mod:`sim2real.conventions` and BOP's ``models_info.json``):

* A symmetry is a rigid transform ``S`` of the **model frame** (metres) that maps the model onto itself:
  ``X' = R_S X + t_S``. If ``[R | t]`` is the object-to-camera pose (``X_cam = R X + t``), then
  ``[R R_S | R t_S + t]`` produces the same image, so an estimate ``R_est`` is as good as the closest of
  ``R_gt R_S`` over the symmetry group (BOP's MSSD/MSPD take the same minimum).
* ``discrete``: a list of 4x4 transforms (rotation + translation in metres), the non-identity elements
  (the identity is always implied, as in BOP).
* ``continuous``: a list of ``{axis, offset}``: every rotation about the unit ``axis`` through the point
  ``offset`` (metres), i.e. ``X' = R_a(theta) (X - offset) + offset``. It may come with discrete ones (a
  cylinder: continuous about z plus a 180 degree flip about x).
* Combination as bop_toolkit's ``misc.get_symmetry_transformations``: ``S = S_cont S_disc`` for every
  discretised continuous rotation ``S_cont`` (angle 0 included) and every discrete ``S_disc`` (identity
  included); identity first.
* BOP stores ``symmetries_discrete`` as 16 floats, row-major, translation in **millimetres**, and
  ``symmetries_continuous`` as ``{"axis": [3], "offset": [3 mm]}``.

Only numpy; no GL. Proposals from the geometry (trimesh, scipy) live in :mod:`sim2real.symmetry_proposal`.

Modules::

    annotation.py   Symmetry, ContinuousSymmetry, parse_symmetry, JSON and BOP conversion, rotation_about
    groups.py       symmetry_rotations, rotation_groups (finite groups), pack_groups_quat
    error.py        sym_rotation_error_deg
"""

from sim2real.symmetry.annotation import (AXIS_NORM_TOL, MM_PER_M, ROTATION_TOL, ContinuousSymmetry, Symmetry,
                                          axis_angle_matrix, parse_symmetry, rotation_about, symmetries_from_json,
                                          symmetries_to_json)
from sim2real.symmetry.error import sym_rotation_error_deg
from sim2real.symmetry.groups import DEFAULT_CONTINUOUS_STEP_DEG, pack_groups_quat, rotation_groups, symmetry_rotations

__all__ = [
    "AXIS_NORM_TOL", "ContinuousSymmetry", "DEFAULT_CONTINUOUS_STEP_DEG", "MM_PER_M", "ROTATION_TOL", "Symmetry",
    "axis_angle_matrix", "pack_groups_quat", "parse_symmetry", "rotation_about", "rotation_groups",
    "sym_rotation_error_deg", "symmetries_from_json", "symmetries_to_json", "symmetry_rotations",
]
