"""Object sets: a manifest (YAML) or a folder of meshes -> classes with meshes, model points, diameters.

Manifest format (``assets/objects.yaml``)::

    version: 1
    units: m            # m, cm or mm: the unit the mesh files are in
    objects:
      - id: 0
        name: cat
        file: objects/cat.glb    # relative to the manifest
        symmetry: none           # optional: none, or {discrete: [...], continuous: [...]} in metres (model frame,
                                 # after recentring), see sim2real.symmetry.parse_symmetry

An object without ``symmetry:`` is taken as not symmetric; a manifest where no object has the key leaves the set's
symmetries unknown (no ``symmetries`` dataset in the renders). A folder of meshes may hold a ``symmetries.yaml``
(``{mesh file stem: symmetry value}``) to annotate its meshes the same way.

A folder of meshes (OBJ, PLY, STL, GLB, GLTF, OFF) gives one class per file, named after the file stem,
ids in sorted order. Meshes are recentred at their bounding-box centre (the model frame of BOP) and
converted to metres.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np

from sim2real.errors import Sim2RealError

MESH_SUFFIXES = (".obj", ".ply", ".stl", ".glb", ".gltf", ".off")
UNIT_SCALE = {"m": 1.0, "cm": 0.01, "mm": 0.001}


def bundled_manifest() -> Path:
    """The manifest of the bundled objects (``assets/objects.yaml`` of the source tree)."""
    here = Path(__file__).resolve().parents[2] / "assets" / "objects.yaml"
    if here.is_file():
        return here
    raise Sim2RealError(f"{here}: bundled object manifest not found (install sim2real from its source tree, "
                        "or set objects: to your own manifest or mesh folder)")


@dataclasses.dataclass
class ObjectClass:
    """One object class.

    Attributes:
        id: class id (contiguous from 0 in the object set).
        name: class name.
        file: the mesh file.
        parts: meshes (trimesh.Trimesh, model frame, metres) with their visuals, for the renderer.
        points: (P, 3) float32 points sampled on the surface, model frame, metres.
        diameter: max distance between two vertices, metres.
        extents: (3,) bounding-box size, metres.
        symmetry: the annotation (:class:`sim2real.symmetry.Symmetry`), None when not symmetric.
        symmetry_known: whether the object set carries symmetry annotations at all.
    """

    id: int
    name: str
    file: Path
    parts: list
    points: np.ndarray
    diameter: float
    extents: np.ndarray
    symmetry: Any = None
    symmetry_known: bool = False


@dataclasses.dataclass
class ObjectEntry:
    id: int
    name: str
    file: Path
    scale: float
    symmetry: Any = None
    symmetry_known: bool = False


def read_manifest(path: str | Path) -> list[ObjectEntry]:
    """Parse an object-set manifest; one-line errors for missing keys, duplicates, bad ids or units."""
    from sim2real.config import read_yaml

    path = Path(path)
    data = read_yaml(path)
    units = data.get("units", "m")
    if units not in UNIT_SCALE:
        raise Sim2RealError(f"{path}: units must be one of m, cm, mm, got {units!r}")
    objs = data.get("objects")
    if not isinstance(objs, list) or not objs:
        raise Sim2RealError(f"{path}: expected a non-empty 'objects' list of {{id, name, file}}")
    from sim2real.symmetry import parse_symmetry

    entries = []
    known = any(isinstance(o, dict) and "symmetry" in o for o in objs)
    for k, o in enumerate(objs):
        if not isinstance(o, dict) or not {"id", "name", "file"} <= set(o):
            raise Sim2RealError(f"{path}: objects[{k}] must have id, name and file")
        sym = parse_symmetry(o.get("symmetry"), f"{path}: objects[{k}] ({o['name']}).symmetry")
        entries.append(ObjectEntry(int(o["id"]), str(o["name"]), (path.parent / str(o["file"])).resolve(), UNIT_SCALE[units],
                                   symmetry=sym, symmetry_known=known))
    ids = sorted(e.id for e in entries)
    if ids != list(range(len(entries))):
        raise Sim2RealError(f"{path}: class ids must be 0..{len(entries) - 1} without gaps, got {ids}")
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise Sim2RealError(f"{path}: duplicate class names")
    return sorted(entries, key=lambda e: e.id)


def resolve_entries(objects: str, mesh_units: str = "m", classes: list[str] | None = None) -> list[ObjectEntry]:
    """Entries of an object set (``bundled``, a manifest YAML or a mesh folder), optionally a subset of classes.

    A subset is re-numbered 0..C'-1 in the order given.
    """
    if objects == "bundled":
        entries = read_manifest(bundled_manifest())
    else:
        p = Path(objects)
        if p.is_dir():
            files = sorted(f for f in p.iterdir() if f.suffix.lower() in MESH_SUFFIXES)
            if not files:
                raise Sim2RealError(f"{p}: no meshes found (expected {', '.join(MESH_SUFFIXES)} files)")
            entries = [ObjectEntry(i, f.stem, f.resolve(), UNIT_SCALE[mesh_units]) for i, f in enumerate(files)]
            _folder_symmetries(p, entries)
        elif p.suffix.lower() in (".yaml", ".yml"):
            entries = read_manifest(p)
        elif not p.exists():
            raise Sim2RealError(f"{p}: not found (expected 'bundled', a manifest .yaml or a folder of meshes)")
        else:
            raise Sim2RealError(f"{p}: expected 'bundled', a manifest .yaml or a folder of meshes")
    if classes is not None:
        by_name = {e.name: e for e in entries}
        unknown = [c for c in classes if c not in by_name]
        if unknown:
            raise Sim2RealError(f"classes: unknown class {unknown[0]!r} (known: {', '.join(by_name)})")
        entries = [dataclasses.replace(by_name[c], id=i) for i, c in enumerate(classes)]
    return entries


#: Optional file in a mesh folder: ``{mesh file stem: symmetry}`` (see :func:`sim2real.symmetry.parse_symmetry`).
FOLDER_SYMMETRY_FILE = "symmetries.yaml"


def _folder_symmetries(folder: Path, entries: list[ObjectEntry]) -> None:
    """Attach ``folder/symmetries.yaml`` annotations to a mesh folder's entries (in place); one-line errors."""
    from sim2real.config import read_yaml
    from sim2real.symmetry import parse_symmetry

    path = folder / FOLDER_SYMMETRY_FILE
    if not path.is_file():
        return
    data = read_yaml(path)
    if not isinstance(data, dict):
        raise Sim2RealError(f"{path}: expected a mapping {{mesh file stem: none | {{discrete, continuous}}}}")
    names = {e.name for e in entries}
    unknown = sorted(set(map(str, data)) - names)
    if unknown:
        raise Sim2RealError(f"{path}: {unknown[0]!r} is not a mesh in {folder} (meshes: {', '.join(sorted(names))})")
    for e in entries:
        e.symmetry = parse_symmetry(data.get(e.name), f"{path}: {e.name}")
        e.symmetry_known = True


def object_symmetries(objects: list) -> list | None:
    """Per-class symmetry list for the HDF5 ``symmetries`` dataset, or None when the set carries no annotations."""
    if not objects or not any(o.symmetry_known for o in objects):
        return None
    return [o.symmetry for o in objects]


def load_parts(file: Path, scale: float) -> list:
    """Meshes of a file in metres, recentred at the bounding-box centre; one-line errors for bad files."""
    import trimesh

    if not file.is_file():
        raise Sim2RealError(f"{file}: mesh file not found")
    try:
        loaded = trimesh.load(str(file), process=False)
    except Exception as e:  # trimesh raises many exception types on malformed input
        raise Sim2RealError(f"{file}: unreadable mesh ({type(e).__name__}); expected OBJ, PLY, STL or GLB") from None
    if isinstance(loaded, trimesh.Scene):
        parts = [g for g in loaded.dump(concatenate=False) if isinstance(g, trimesh.Trimesh)]
    elif isinstance(loaded, trimesh.Trimesh):
        parts = [loaded]
    else:
        parts = []
    parts = [p for p in parts if len(p.faces) > 0]
    if not parts:
        raise Sim2RealError(f"{file}: mesh is empty (no triangles)")
    lo = np.min([p.bounds[0] for p in parts], axis=0)
    hi = np.max([p.bounds[1] for p in parts], axis=0)
    centre = (lo + hi) / 2
    if not np.all(np.isfinite(centre)) or np.max(hi - lo) <= 0:
        raise Sim2RealError(f"{file}: mesh has degenerate or non-finite vertices")
    out = []
    for p in parts:
        p = p.copy()
        p.apply_translation(-centre)
        p.apply_scale(scale)
        out.append(p)
    return out


def diameter_of(vertices: np.ndarray) -> float:
    """Max pairwise distance between vertices (computed on the convex hull), metres."""
    from scipy.spatial import ConvexHull, QhullError

    v = np.asarray(vertices, dtype=np.float64)
    try:
        v = v[ConvexHull(v).vertices]
    except (QhullError, ValueError):
        pass
    best = 0.0
    for i in range(0, len(v), 512):  # blocks keep memory bounded
        d = np.linalg.norm(v[i:i + 512, None, :] - v[None, :, :], axis=-1)
        best = max(best, float(d.max()))
    return best


def load_objects(objects: str, mesh_units: str = "m", classes: list[str] | None = None, num_points: int = 1000,
                 seed: int = 0) -> list[ObjectClass]:
    """Load an object set with model points (``num_points`` per class, seeded), diameters and extents."""
    import trimesh

    out = []
    for e in resolve_entries(objects, mesh_units, classes):
        parts = load_parts(e.file, e.scale)
        whole = trimesh.util.concatenate([trimesh.Trimesh(p.vertices, p.faces, process=False) for p in parts])
        pts, _ = trimesh.sample.sample_surface(whole, num_points, seed=seed + e.id)
        out.append(ObjectClass(id=e.id, name=e.name, file=e.file, parts=parts, points=np.asarray(pts, np.float32),
                               diameter=diameter_of(whole.vertices), extents=np.asarray(whole.extents, np.float32),
                               symmetry=e.symmetry, symmetry_known=e.symmetry_known))
    return out
