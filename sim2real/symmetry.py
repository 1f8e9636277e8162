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
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import numpy as np

from sim2real.errors import Sim2RealError

#: Tolerances for annotations typed by people or stored in JSON with a few decimals.
ROTATION_TOL = 1e-3
AXIS_NORM_TOL = 1e-3
#: Default angular step (degrees) at which continuous symmetries are discretised into finite groups.
DEFAULT_CONTINUOUS_STEP_DEG = 1.0
#: Continuous axes closer than this (degrees, up to sign) are the same rotation family.
_SAME_AXIS_DEG = 0.1
MM_PER_M = 1000.0


# ----------------------------------------------------------------------------------------------------------
# small quaternion helpers (w, x, y, z), numpy
# ----------------------------------------------------------------------------------------------------------


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


def axis_angle_matrix(axis: Sequence[float], angle_rad: float) -> np.ndarray:
    """Rotation matrix ``(3, 3)`` about a unit ``axis`` by ``angle_rad`` (right-hand rule; Rodrigues)."""
    a = np.asarray(axis, dtype=np.float64)
    a = a / np.linalg.norm(a)
    Kx = np.array([[0.0, -a[2], a[1]], [a[2], 0.0, -a[0]], [-a[1], a[0], 0.0]])
    return np.eye(3) + math.sin(angle_rad) * Kx + (1.0 - math.cos(angle_rad)) * (Kx @ Kx)


def rotation_about(axis: Sequence[float], angle_deg: float, offset: Sequence[float] = (0.0, 0.0, 0.0)) -> np.ndarray:
    """4x4 transform rotating by ``angle_deg`` about the line through ``offset`` (metres) along ``axis``.

    ``X' = R (X - offset) + offset``, so ``t = offset - R offset``.
    """
    R = axis_angle_matrix(axis, math.radians(angle_deg))
    c = np.asarray(offset, dtype=np.float64).reshape(3)
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = c - R @ c
    T[np.abs(T) < 1e-12] = 0.0  # sin(pi) = 1.2e-16: keep annotations readable
    return T


# ----------------------------------------------------------------------------------------------------------
# the annotation
# ----------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(eq=False)
class ContinuousSymmetry:
    """Rotation by any angle about ``axis`` (unit, model frame) through ``offset`` (metres, model frame)."""

    axis: np.ndarray
    offset: np.ndarray

    def __post_init__(self) -> None:
        self.axis = np.asarray(self.axis, dtype=np.float64).reshape(3)
        self.offset = np.asarray(self.offset, dtype=np.float64).reshape(3)


@dataclasses.dataclass(eq=False)
class Symmetry:
    """Symmetries of one object model (see module doc). Validated on construction.

    Attributes:
        discrete: ``(D, 4, 4)`` float64 rigid transforms of the model frame (translation in metres), the
            identity excluded (it is implied).
        continuous: list of :class:`ContinuousSymmetry`.
    """

    discrete: np.ndarray = dataclasses.field(default_factory=lambda: np.zeros((0, 4, 4)))
    continuous: list[ContinuousSymmetry] = dataclasses.field(default_factory=list)

    def __post_init__(self) -> None:
        self.discrete, self.continuous = _validate(self.discrete, self.continuous, "symmetry")

    @property
    def is_trivial(self) -> bool:
        """True when the annotation lists no symmetry at all (identity only)."""
        return len(self.discrete) == 0 and len(self.continuous) == 0

    @property
    def continuous_axes(self) -> np.ndarray:
        """``(K, 3)`` distinct unit directions of the continuous symmetries (up to sign)."""
        out: list[np.ndarray] = []
        for c in self.continuous:
            if not any(abs(float(c.axis @ a)) > math.cos(math.radians(_SAME_AXIS_DEG)) for a in out):
                out.append(c.axis)
        return np.array(out).reshape(-1, 3)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Symmetry):
            return NotImplemented
        return (self.discrete.shape == other.discrete.shape and np.allclose(self.discrete, other.discrete, atol=1e-9)
                and len(self.continuous) == len(other.continuous)
                and all(np.allclose(a.axis, b.axis, atol=1e-9) and np.allclose(a.offset, b.offset, atol=1e-9)
                        for a, b in zip(self.continuous, other.continuous)))

    def __repr__(self) -> str:
        return f"Symmetry(discrete={len(self.discrete)}, continuous={[c.axis.round(4).tolist() for c in self.continuous]})"

    # --- plain dict (YAML / JSON), metres ---

    def to_dict(self) -> dict:
        """``{"discrete": [4x4 nested lists, m], "continuous": [{"axis": [3], "offset": [3 m]}]}``."""
        return {"discrete": [[[float(x) for x in row] for row in T] for T in self.discrete],
                "continuous": [{"axis": [float(x) for x in c.axis], "offset": [float(x) for x in c.offset]}
                               for c in self.continuous]}

    @classmethod
    def from_dict(cls, d: Any, where: str = "symmetry") -> "Symmetry":
        """Parse the dict form (see :func:`parse_symmetry` for what is accepted); errors name ``where``."""
        if not isinstance(d, dict):
            raise Sim2RealError(f"{where}: expected a mapping with 'discrete' and/or 'continuous' lists, got {d!r:.80}")
        unknown = set(d) - {"discrete", "continuous"}
        if unknown:
            raise Sim2RealError(f"{where}: unknown key {sorted(unknown)[0]!r} (expected 'discrete' and/or 'continuous')")
        disc = d.get("discrete") or []
        cont = d.get("continuous") or []
        if not isinstance(disc, list) or not isinstance(cont, list):
            raise Sim2RealError(f"{where}: 'discrete' and 'continuous' must be lists")
        mats = [_parse_discrete(x, f"{where}.discrete[{k}]") for k, x in enumerate(disc)]
        conts = [_parse_continuous(x, f"{where}.continuous[{k}]") for k, x in enumerate(cont)]
        return cls._checked(mats, conts, where)

    @classmethod
    def _checked(cls, mats: list, conts: list, where: str) -> "Symmetry":
        obj = cls.__new__(cls)
        obj.discrete, obj.continuous = _validate(np.array(mats).reshape(-1, 4, 4), conts, where)
        return obj

    # --- BOP models_info.json (translations in mm) ---

    def to_bop(self) -> dict:
        """``{"symmetries_discrete": [[16 floats, row-major, t in mm]], "symmetries_continuous": [{axis, offset mm}]}``.

        Empty lists are left out (as in BOP's files).
        """
        out: dict = {}
        if len(self.discrete):
            rows = []
            for T in self.discrete:
                T = T.copy()
                T[:3, 3] *= MM_PER_M
                rows.append([float(x) for x in T.reshape(16)])
            out["symmetries_discrete"] = rows
        if self.continuous:
            out["symmetries_continuous"] = [{"axis": [float(x) for x in c.axis],
                                             "offset": [float(x) * MM_PER_M for x in c.offset]} for c in self.continuous]
        return out

    @classmethod
    def from_bop(cls, info: dict, where: str = "models_info") -> "Symmetry | None":
        """Read a models_info.json entry's symmetries (mm); None when it has none. Identity entries are dropped."""
        disc = info.get("symmetries_discrete") or []
        cont = info.get("symmetries_continuous") or []
        if not isinstance(disc, list) or not isinstance(cont, list):
            raise Sim2RealError(f"{where}: symmetries_discrete / symmetries_continuous must be lists")
        mats = []
        for k, x in enumerate(disc):
            arr = _floats(x, 16, f"{where}.symmetries_discrete[{k}]", "16 numbers (row-major 4x4, mm)")
            T = arr.reshape(4, 4).copy()
            T[:3, 3] /= MM_PER_M
            if np.allclose(T, np.eye(4), atol=1e-6):
                continue  # BOP lists non-identity elements; tolerate one anyway
            mats.append(T)
        conts = []
        for k, x in enumerate(cont):
            w = f"{where}.symmetries_continuous[{k}]"
            if not isinstance(x, dict) or "axis" not in x:
                raise Sim2RealError(f"{w}: expected {{\"axis\": [3], \"offset\": [3 mm]}}")
            conts.append(ContinuousSymmetry(_floats(x["axis"], 3, w + ".axis", "3 numbers"),
                                            _floats(x.get("offset", [0, 0, 0]), 3, w + ".offset", "3 numbers (mm)") / MM_PER_M))
        if not mats and not conts:
            return None
        return cls._checked(mats, conts, where)


def _floats(x: Any, n: int, where: str, expected: str) -> np.ndarray:
    try:
        arr = np.asarray(x, dtype=np.float64).reshape(-1)
    except (TypeError, ValueError):
        raise Sim2RealError(f"{where}: expected {expected}, got {x!r:.80}") from None
    if arr.size != n:
        raise Sim2RealError(f"{where}: expected {expected}, got {arr.size} values")
    if not np.all(np.isfinite(arr)):
        raise Sim2RealError(f"{where}: expected finite values, got {arr.tolist()}")
    return arr


def _parse_discrete(x: Any, where: str) -> np.ndarray:
    """A 4x4 matrix (nested or 16 flat numbers, metres) or ``{axis, angle_deg, offset (m)}``."""
    if isinstance(x, dict):
        unknown = set(x) - {"axis", "angle_deg", "offset"}
        if unknown or "axis" not in x or "angle_deg" not in x:
            raise Sim2RealError(f"{where}: expected a 4x4 matrix or {{axis: [3], angle_deg: number, offset: [3 m]}}")
        axis = _floats(x["axis"], 3, where + ".axis", "3 numbers")
        if np.linalg.norm(axis) < 1e-9:
            raise Sim2RealError(f"{where}.axis: expected a non-zero axis")
        angle = _floats([x["angle_deg"]], 1, where + ".angle_deg", "a number (degrees)")[0]
        return rotation_about(axis, angle, _floats(x.get("offset", [0, 0, 0]), 3, where + ".offset", "3 numbers (m)"))
    return _floats(x, 16, where, "a 4x4 matrix (rotation + translation in metres) or {axis, angle_deg, offset}").reshape(4, 4)


def _parse_continuous(x: Any, where: str) -> ContinuousSymmetry:
    if not isinstance(x, dict) or "axis" not in x or set(x) - {"axis", "offset"}:
        raise Sim2RealError(f"{where}: expected {{axis: [3 unit], offset: [3 m]}}")
    return ContinuousSymmetry(_floats(x["axis"], 3, where + ".axis", "3 numbers"),
                              _floats(x.get("offset", [0, 0, 0]), 3, where + ".offset", "3 numbers (m)"))


def _validate(discrete: Any, continuous: Any, where: str) -> tuple[np.ndarray, list[ContinuousSymmetry]]:
    """Check proper rotations, rigid 4x4 rows, unit axes, finite values; re-orthonormalise within tolerance."""
    D = np.asarray(discrete, dtype=np.float64)
    if D.size == 0:
        D = np.zeros((0, 4, 4))
    if D.ndim != 3 or D.shape[1:] != (4, 4):
        raise Sim2RealError(f"{where}: discrete symmetries must be 4x4 transforms, got shape {D.shape}")
    out = np.empty_like(D)
    for k, T in enumerate(D):
        w = f"{where}.discrete[{k}]"
        if not np.all(np.isfinite(T)):
            raise Sim2RealError(f"{w}: expected finite values")
        if not np.allclose(T[3], [0, 0, 0, 1], atol=1e-6):
            raise Sim2RealError(f"{w}: expected a rigid 4x4 transform with last row [0, 0, 0, 1], got {T[3].tolist()}")
        R = T[:3, :3]
        err = float(np.abs(R.T @ R - np.eye(3)).max())
        if err > ROTATION_TOL or np.linalg.det(R) < 0:
            raise Sim2RealError(f"{w}: expected a proper rotation (R^T R = I, det R = +1; reflections are not "
                                f"rigid symmetries), got max |R^T R - I| = {err:.2g}, det = {np.linalg.det(R):.3f}")
        if np.allclose(T, np.eye(4), atol=1e-6):
            raise Sim2RealError(f"{w}: is the identity (leave it out: the identity is always implied)")
        U, _, Vt = np.linalg.svd(R)  # nearest rotation: values typed with a few decimals become exact
        out[k] = T
        out[k, :3, :3] = U @ Vt
    conts = []
    for k, c in enumerate(list(continuous or [])):
        w = f"{where}.continuous[{k}]"
        if not isinstance(c, ContinuousSymmetry):
            raise Sim2RealError(f"{w}: expected a ContinuousSymmetry(axis, offset)")
        if not (np.all(np.isfinite(c.axis)) and np.all(np.isfinite(c.offset))):
            raise Sim2RealError(f"{w}: expected finite axis and offset")
        n = float(np.linalg.norm(c.axis))
        if abs(n - 1.0) > AXIS_NORM_TOL:
            raise Sim2RealError(f"{w}.axis: expected a unit vector, got norm {n:.4g}")
        conts.append(ContinuousSymmetry(c.axis / n, c.offset.copy()))
    return out, conts


def parse_symmetry(value: Any, where: str = "symmetry") -> Symmetry | None:
    """A manifest's ``symmetry:`` value: ``none`` / null / ``{}`` -> None (no symmetry), else :meth:`Symmetry.from_dict`.

    Accepted forms::

        symmetry: none
        symmetry:
          discrete:                                 # non-identity elements; the identity is implied
            - {axis: [0, 1, 0], angle_deg: 180}     # about a line through offset (default: the origin), metres
            - [[1, 0, 0, 0], [0, -1, 0, 0], [0, 0, -1, 0], [0, 0, 0, 1]]   # or a 4x4 matrix, metres
          continuous:
            - {axis: [0, 1, 0], offset: [0, 0, 0]}
    """
    if value is None or (isinstance(value, str) and value.strip().lower() == "none"):
        return None
    if isinstance(value, str):
        raise Sim2RealError(f"{where}: expected 'none' or a mapping with 'discrete' and/or 'continuous', got {value!r}")
    sym = Symmetry.from_dict(value, where)
    return None if sym.is_trivial else sym


def symmetries_to_json(symmetries: Sequence[Symmetry | None]) -> list:
    """Per-class list -> JSON-ready list of dicts (metres) or None."""
    return [None if s is None else s.to_dict() for s in symmetries]


def symmetries_from_json(items: Any, where: str = "symmetries") -> list[Symmetry | None]:
    """Inverse of :func:`symmetries_to_json`; one-line errors naming ``where`` and the class index."""
    if not isinstance(items, list):
        raise Sim2RealError(f"{where}: expected a list (one entry per class: null or {{discrete, continuous}})")
    return [None if x is None else parse_symmetry(x, f"{where}[{k}]") for k, x in enumerate(items)]


# ----------------------------------------------------------------------------------------------------------
# finite rotation groups
# ----------------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------------
# symmetry-aware rotation error
# ----------------------------------------------------------------------------------------------------------


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

