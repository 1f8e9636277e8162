"""Finite rotation groups of a symmetry annotation (continuous symmetries discretised, as bop_toolkit's
``get_symmetry_transformations``), as matrices or packed quaternions for batched losses."""

from __future__ import annotations

import math
from typing import Sequence

import numpy as np

from sim2real.symmetry.annotation import Symmetry, axis_angle_matrix

#: Default angular step (degrees) at which continuous symmetries are discretised into finite groups.
DEFAULT_CONTINUOUS_STEP_DEG = 1.0


def symmetry_rotations(sym: Symmetry | None, continuous_step_deg: float = DEFAULT_CONTINUOUS_STEP_DEG) -> np.ndarray:
    """The finite set of model-frame rotations used for symmetry-aware errors and losses.

    As bop_toolkit's ``get_symmetry_transformations``: every continuous symmetry is discretised into
    ``n = ceil(360 / continuous_step_deg)`` rotations (angle ``i * 360 / n``, ``i = 0..n-1``), and each is
    combined with every discrete one (identity included) as ``R_cont @ R_disc``. Translations are dropped
    (they do not change the rotation error).

    Args:
        sym: the annotation, or None (no symmetry).
        continuous_step_deg: largest angular step of the discretisation, degrees (> 0). The error of a
            discretised group exceeds the exact one by at most half a step.

    Returns:
        ``(S, 3, 3)`` float64 rotations, identity first.
    """
    if not continuous_step_deg > 0:
        raise ValueError(f"symmetry_rotations: continuous_step_deg must be > 0, got {continuous_step_deg}")
    if sym is None:
        return np.eye(3)[None]
    disc = np.concatenate([np.eye(3)[None], sym.discrete[:, :3, :3]])
    if not sym.continuous:
        return disc
    n = int(math.ceil(360.0 / continuous_step_deg - 1e-9))
    cont = [np.eye(3)]
    for c in sym.continuous:
        cont += [axis_angle_matrix(c.axis, 2.0 * math.pi * i / n) for i in range(1, n)]
    cont = np.array(cont)
    return np.einsum("aij,bjk->abik", cont, disc).reshape(-1, 3, 3)


def rotation_groups(symmetries: Sequence[Symmetry | None] | None, step: float = DEFAULT_CONTINUOUS_STEP_DEG,
                    num_classes: int | None = None) -> list[np.ndarray] | None:
    """Per-class finite groups (:func:`symmetry_rotations`); None in -> None out (symmetries unknown).

    ``num_classes`` (optional) checks the list length.
    """
    if symmetries is None:
        return None
    if num_classes is not None and len(symmetries) != num_classes:
        raise ValueError(f"rotation_groups: {len(symmetries)} symmetries for {num_classes} classes")
    return [symmetry_rotations(s, step) for s in symmetries]


def pack_groups_quat(groups: Sequence[np.ndarray | None]) -> np.ndarray:
    """Pack per-class rotation groups as quaternions for a batched (torch) min over the group.

    Args:
        groups: per class ``(S_c, 3, 3)`` rotations (identity first), or None (identity only).

    Returns:
        ``(C, S_max, 4)`` float32 unit quaternions (w, x, y, z), w >= 0; class c's rows after ``S_c`` repeat the
        identity (harmless for a min over the group, since the identity is already an element).
    """
    from sim2real.conventions import quat_from_matrix

    qs = [np.array([[1.0, 0, 0, 0]]) if g is None else quat_from_matrix(np.asarray(g, dtype=np.float64).reshape(-1, 3, 3))
          for g in groups]
    s_max = max((len(q) for q in qs), default=1)
    out = np.zeros((len(qs), s_max, 4), np.float32)
    out[:, :, 0] = 1.0
    for c, q in enumerate(qs):
        out[c, :len(q)] = q
    return out
