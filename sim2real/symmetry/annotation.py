"""Symmetry annotations: :class:`Symmetry` (discrete transforms + continuous axes, model frame, metres), parsing
and checking of what people type, JSON in HDF5 files, BOP's ``models_info.json`` (millimetres).

Conventions: :mod:`sim2real.symmetry`.
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
#: Continuous axes closer than this (degrees, up to sign) are the same rotation family.
_SAME_AXIS_DEG = 0.1
MM_PER_M = 1000.0


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
