"""The BOP ``models/`` folder: ``models_info.json`` and ``obj_{obj_id:06d}.ply``, read on import, written on export.

BOP stores model coordinates, diameters, extents and symmetry offsets in millimetres; sim2real arrays are in
metres (:data:`~sim2real.data.bop.format.MM_PER_M`). The model origin is the bounding-box centre
(:mod:`sim2real.conventions`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from sim2real.data import h5
from sim2real.data.bop.classmap import ClassMap
from sim2real.data.bop.format import EXPORT_INFO_FILE, MM_PER_M, MODEL_POINTS, _int_keys, _load_json
from sim2real.errors import Sim2RealError


# ----------------------------------------------------------------------------------------------------------
# Import: models_info.json and PLY models -> per-class arrays (metres)
# ----------------------------------------------------------------------------------------------------------


def read_models_info(root: Path) -> tuple[dict[int, dict], Path]:
    path = root / "models" / "models_info.json"
    if not path.is_file():
        return {}, path
    return _int_keys(_load_json(path, "models_info.json"), path, "{obj_id: {diameter, ...}}"), path


def _model_points(root: Path, obj_id: int, rng: np.random.Generator) -> np.ndarray | None:
    """Points (mm) of ``models/obj_{obj_id:06d}.ply``: ``MODEL_POINTS`` surface samples of a mesh, or all points of
    a point cloud (as written by :func:`~sim2real.data.bop.exporter.export_bop`); ``None`` if the file is missing."""
    import trimesh

    path = root / "models" / f"obj_{obj_id:06d}.ply"
    if not path.is_file():
        return None
    try:
        geom = trimesh.load(path, process=False)
    except Exception:  # trimesh raises many types on bad files
        raise Sim2RealError(f"{path}: not a readable PLY model") from None
    faces = getattr(geom, "faces", None)
    if faces is not None and len(faces):
        pts, _ = trimesh.sample.sample_surface(geom, MODEL_POINTS, seed=int(rng.integers(2**31)))
        return np.asarray(pts, dtype=np.float64)
    v = np.asarray(getattr(geom, "vertices", []), dtype=np.float64)
    if v.ndim != 2 or len(v) == 0:
        raise Sim2RealError(f"{path}: PLY model has no vertices")
    return v


def attach_models(arrays: dict, root: Path, cmap: ClassMap, info: dict[int, dict], notes: list[str]) -> None:
    """Per-class diameters / extents (m) from models_info.json and model points (m) from the PLY models."""
    obj_ids = [cmap.obj_id_of(i) for i in range(len(cmap.names))]
    try:
        arrays["diameters"] = np.array([float(info[o]["diameter"]) for o in obj_ids]) / MM_PER_M
        arrays["extents"] = np.array([[float(info[o][k]) for k in ("size_x", "size_y", "size_z")] for o in obj_ids]) / MM_PER_M
    except (KeyError, TypeError, ValueError):
        arrays.pop("diameters", None)
        notes.append("models_info.json lacks some classes: diameters/extents are left out")
    rng = np.random.default_rng(0)
    pts = [_model_points(root, o, rng) for o in obj_ids]
    if all(p is not None for p in pts):
        # one P for all classes: longer point sets are subsampled (order kept) to the shortest one
        n = min(len(p) for p in pts)
        pts = [p if len(p) == n else p[np.sort(rng.choice(len(p), n, replace=False))] for p in pts]
        arrays["model_points"] = np.stack(pts).astype(np.float32) / MM_PER_M
    else:
        notes.append("some models/obj_*.ply files are missing: model_points are left out")
    attach_symmetries(arrays, cmap, info, obj_ids, notes, root / "models" / "models_info.json")


def attach_symmetries(arrays: dict, cmap: ClassMap, info: dict[int, dict], obj_ids: list[int], notes: list[str],
                      info_path: Path) -> None:
    """Per-class symmetries (metres) from models_info.json's ``symmetries_discrete`` / ``symmetries_continuous``.

    BOP lists symmetries only for symmetric objects, so a class entry without them is not symmetric; without an
    entry for every class the symmetries are unknown (left out).
    """
    from sim2real.symmetry import Symmetry

    if not info or any(not isinstance(info.get(o), dict) for o in obj_ids):
        if info:
            notes.append("models_info.json lacks some classes: symmetries are left out (unknown)")
        return
    export_info = info_path.parent.parent / EXPORT_INFO_FILE
    if export_info.is_file():  # exported by sim2real from a file whose symmetries were unknown: keep them unknown
        try:
            if json.loads(export_info.read_text()).get("symmetries") == "unknown":
                return
        except (OSError, ValueError, AttributeError):
            pass
    arrays["symmetries"] = [Symmetry.from_bop(info[o], f"{info_path}: obj_id {o} ({cmap.names[i]})")
                            for i, o in enumerate(obj_ids)]


# ----------------------------------------------------------------------------------------------------------
# Export: per-class arrays (metres) -> models_info.json entries and PLY point clouds (millimetres)
# ----------------------------------------------------------------------------------------------------------


def models_info_of(data: h5.H5Data) -> dict[int, dict]:
    """models_info.json entries (mm) for each class that has extents / diameters / model points."""
    out: dict[int, dict] = {}
    for i in range(data.num_classes):
        pts = data.model_points[i].astype(np.float64) if data.model_points is not None else None
        if data.extents is not None:
            size = data.extents[i].astype(np.float64)
            lo = -size / 2  # model origin at the bounding-box centre (conventions)
        elif pts is not None:
            lo, size = pts.min(0), pts.max(0) - pts.min(0)
        else:
            continue
        if data.diameters is not None:
            diameter = float(data.diameters[i])
        elif pts is not None:
            from scipy.spatial.distance import pdist

            diameter = float(pdist(pts).max())
        else:
            continue
        out[i + 1] = {"diameter": diameter * MM_PER_M,
                      "min_x": lo[0] * MM_PER_M, "min_y": lo[1] * MM_PER_M, "min_z": lo[2] * MM_PER_M,
                      "size_x": size[0] * MM_PER_M, "size_y": size[1] * MM_PER_M, "size_z": size[2] * MM_PER_M}
        if data.symmetries is not None and data.symmetries[i] is not None:
            out[i + 1].update(data.symmetries[i].to_bop())  # symmetries_discrete / _continuous, mm
    return out


def write_ply_points(path: Path, pts_mm: np.ndarray) -> None:
    lines = ["ply", "format ascii 1.0", "comment sim2real model_points (point cloud, mm)",
             f"element vertex {len(pts_mm)}", "property float x", "property float y", "property float z", "end_header"]
    lines += [f"{x:.6f} {y:.6f} {z:.6f}" for x, y, z in pts_mm]
    path.write_text("\n".join(lines) + "\n")
