"""The symmetry-aware rotation error: ``min over S in G of angle(R_est, R_gt S)`` (BOP's MSSD minimum), exact in
closed form for one continuous axis, by enumeration for finite groups."""

from __future__ import annotations

from typing import Any

import numpy as np

from sim2real.symmetry.annotation import Symmetry


def _quat_mul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Hamilton product ``a * b`` of ``(..., 4)`` quaternions (w, x, y, z); broadcasts."""
    aw, ax, ay, az = np.moveaxis(a, -1, 0)
    bw, bx, by, bz = np.moveaxis(b, -1, 0)
    return np.stack([aw * bw - ax * bx - ay * by - az * bz,
                     aw * bx + ax * bw + ay * bz - az * by,
                     aw * by - ax * bz + ay * bw + az * bx,
                     aw * bz + ax * by - ay * bx + az * bw], axis=-1)


def _quat_conj(q: np.ndarray) -> np.ndarray:
    return q * np.array([1.0, -1.0, -1.0, -1.0])


def _unit_quats(q: Any, what: str) -> np.ndarray:
    q = np.asarray(q, dtype=np.float64)
    if q.ndim != 2 or q.shape[1] != 4:
        raise ValueError(f"{what}: expected (N, 4) quaternions (w, x, y, z), got shape {q.shape}")
    norm = np.linalg.norm(q, axis=1, keepdims=True)
    if np.any(~np.isfinite(norm)) or np.any(norm < 1e-12):
        raise ValueError(f"{what}: quaternions must be finite and non-zero")
    return q / norm


def _angle_from_abs_cos_half(x: np.ndarray) -> np.ndarray:
    from sim2real.conventions import angle_deg_from_dot

    return angle_deg_from_dot(x)  # x >= 0 already: |x| changes no bit


def _sym_error_one(m: np.ndarray, group: Any, chunk: int = 4096) -> np.ndarray:
    """Min angle over one group; ``m = conj(q_gt) * q_est`` ``(N, 4)`` unit (the model-frame relative rotation)."""
    from sim2real.conventions import quat_from_matrix

    if group is None:
        return _angle_from_abs_cos_half(np.abs(m[:, 0]))
    if isinstance(group, Symmetry):
        axes = group.continuous_axes
        if len(axes) >= 2:
            # rotations about two non-parallel axes generate a dense subgroup of SO(3): every rotation is equivalent
            return np.zeros(len(m))
        d = quat_from_matrix(np.concatenate([np.eye(3)[None], group.discrete[:, :3, :3]]))
        if len(axes) == 0:
            return _sym_error_one(m, d, chunk)
        # S = R_a(theta) D_j. angle(R_est, R_gt S) = angle(S^T M) with M = R_gt^T R_est; the real part of
        # conj(d) conj(r) m equals that of conj(r) n, n = m conj(d) (Re(abc) = Re(bca)), and for
        # conj(r) = (cos(theta/2), -sin(theta/2) a): Re = cos(theta/2) n_w + sin(theta/2) (a . n_v), whose largest
        # magnitude over theta is sqrt(n_w^2 + (a . n_v)^2): the closed-form minimum over the continuous family.
        a = axes[0]
        best = np.zeros(len(m))
        for dj in d:
            n = _quat_mul(m, _quat_conj(dj)[None])
            best = np.maximum(best, np.sqrt(n[:, 0] ** 2 + (n[:, 1:] @ a) ** 2))
        return _angle_from_abs_cos_half(best)
    g = np.asarray(group, dtype=np.float64)
    if g.ndim == 3 and g.shape[1:] == (3, 3):
        s = quat_from_matrix(g)
    elif g.ndim == 2 and g.shape[1] == 4:
        s = g / np.linalg.norm(g, axis=1, keepdims=True)
    else:
        raise ValueError(f"sym_rotation_error_deg: a group must be (S, 3, 3) rotations, (S, 4) quaternions, a Symmetry "
                         f"or None, got shape {g.shape}")
    # q_est . (q_gt * s) = s . (conj(q_gt) * q_est) = s . m: one (N, S) product per chunk
    out = np.empty(len(m))
    for i in range(0, len(m), chunk):
        out[i:i + chunk] = np.abs(m[i:i + chunk] @ s.T).max(axis=1)
    return _angle_from_abs_cos_half(out)


def sym_rotation_error_deg(q_est: np.ndarray, q_gt: np.ndarray, group: Any = None,
                           labels: np.ndarray | None = None) -> np.ndarray:
    """Symmetry-aware rotation error: ``min over S in G of angle(R_est, R_gt S)``, degrees in [0, 180].

    The symmetry ``S`` acts in the model frame (``R_m2c S`` is an equivalent pose), as in BOP's MSSD.
    Continuous symmetries given as a :class:`Symmetry` are minimised in closed form (exact); finite groups
    (:func:`symmetry_rotations`) by enumeration.

    Args:
        q_est, q_gt: ``(N, 4)`` quaternions (w, x, y, z); normalised here; sign-free.
        group: one group for all samples -- None (no symmetry: the plain ``2 arccos |q_est . q_gt|``), a
            :class:`Symmetry`, ``(S, 3, 3)`` rotations or ``(S, 4)`` quaternions -- or, with ``labels``, a
            per-class list of those.
        labels: ``(N,)`` class ids indexing a per-class ``group`` list.

    Returns:
        ``(N,)`` float64 degrees.
    """
    q_est = _unit_quats(q_est, "sym_rotation_error_deg: q_est")
    q_gt = _unit_quats(q_gt, "sym_rotation_error_deg: q_gt")
    if q_est.shape != q_gt.shape:
        raise ValueError(f"sym_rotation_error_deg: q_est {q_est.shape} and q_gt {q_gt.shape} differ")
    m = _quat_mul(_quat_conj(q_gt), q_est)
    if labels is None:
        if isinstance(group, (list, tuple)):
            raise ValueError("sym_rotation_error_deg: a per-class list of groups needs labels")
        return _sym_error_one(m, group)
    labels = np.asarray(labels, dtype=np.int64).reshape(-1)
    if labels.shape[0] != len(m):
        raise ValueError(f"sym_rotation_error_deg: {labels.shape[0]} labels for {len(m)} samples")
    groups = list(group) if group is not None else []
    if len(labels) and (labels.min() < 0 or (groups and labels.max() >= len(groups))):
        raise ValueError(f"sym_rotation_error_deg: labels outside [0, {len(groups)})")
    out = np.empty(len(m))
    for c in np.unique(labels):
        sel = labels == c
        out[sel] = _sym_error_one(m[sel], groups[c] if groups else None)
    return out
