"""BOP ``obj_id`` <-> sim2real class: :class:`ClassMap`, read from a map file, an HDF5 file or the dataset root."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from sim2real.data.bop.format import CLASS_MAP_FILE, _int_keys, _load_json
from sim2real.errors import Sim2RealError


@dataclasses.dataclass
class ClassMap:
    """BOP ``obj_id`` -> sim2real class.

    Attributes:
        names: class id -> name (the output's ``class_names``).
        obj_to_label: obj_id -> class id, or ``None`` for objects deliberately ignored (``null`` in the map file).
        source: where it came from (for messages).
    """

    names: list[str]
    obj_to_label: dict[int, int | None]
    source: str

    def label_of(self, obj_id: int) -> int | None:
        """Class id; ``None`` if ignored. Raises KeyError for an obj_id the map does not mention."""
        return self.obj_to_label[obj_id]

    def obj_id_of(self, label: int) -> int:
        return next(o for o, lab in self.obj_to_label.items() if lab == label)

    @classmethod
    def from_names(cls, names: list[str], source: str) -> "ClassMap":
        """The export convention: class id ``i`` is BOP ``obj_id = i + 1`` (BOP ids start at 1)."""
        return cls(list(names), {i + 1: i for i in range(len(names))}, source)

    @classmethod
    def from_mapping(cls, mapping: dict, source: str) -> "ClassMap":
        """``{obj_id: name or None}``; classes ordered by obj_id."""
        try:
            items = sorted((int(k), v) for k, v in mapping.items())
        except (TypeError, ValueError):
            raise Sim2RealError(f"{source}: class map keys must be integer BOP obj_ids (e.g. 1: ape)") from None
        names: list[str] = []
        obj_to_label: dict[int, int | None] = {}
        for obj_id, name in items:
            if name is None:
                obj_to_label[obj_id] = None
                continue
            name = str(name)
            if name in names:
                raise Sim2RealError(f"{source}: class name {name!r} is given to two obj_ids (names must be unique)")
            obj_to_label[obj_id] = len(names)
            names.append(name)
        if not names:
            raise Sim2RealError(f"{source}: class map names no class")
        return cls(names, obj_to_label, source)


def load_class_map(path: str | Path) -> ClassMap:
    """Read a class map.

    Accepted: a YAML or JSON mapping ``{obj_id: name}`` (``null`` ignores that object); a sim2real objects manifest
    (``objects: [{id, name}, ...]``, ``obj_id = id + 1``); a sim2real HDF5 file (its ``class_names``,
    ``obj_id = class id + 1``, so imported labels line up with that file's, e.g. the source renders).
    """
    import yaml

    path = Path(path)
    if not path.is_file():
        raise Sim2RealError(f"{path}: class map not found (expected YAML/JSON {{obj_id: name}} or a sim2real HDF5 file)")
    if path.suffix.lower() in (".h5", ".hdf5"):
        names = _h5_class_names(path)
        if not names:
            raise Sim2RealError(f"{path}: has no class_names (needed as a class map)")
        return ClassMap.from_names(names, str(path))
    try:
        data = yaml.safe_load(path.read_text())  # JSON is YAML
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        raise Sim2RealError(f"{path}: not a readable YAML/JSON class map (expected {{obj_id: name}})") from None
    if isinstance(data, dict) and isinstance(data.get("objects"), list):
        try:
            return ClassMap.from_mapping({int(o["id"]) + 1: o["name"] for o in data["objects"]}, str(path))
        except (KeyError, TypeError, ValueError):
            raise Sim2RealError(f"{path}: objects manifest entries need 'id' and 'name'") from None
    if not isinstance(data, dict):
        raise Sim2RealError(f"{path}: expected a mapping {{obj_id: name}}, got {type(data).__name__}")
    return ClassMap.from_mapping(data, str(path))


def _h5_class_names(path: Path) -> list[str]:
    """``class_names`` of a sim2real HDF5 file, without loading its images."""
    import h5py

    try:
        with h5py.File(path, "r") as f:
            if "class_names" not in f:
                return []
            return [x.decode("utf-8") if isinstance(x, bytes) else str(x) for x in f["class_names"][()].tolist()]
    except OSError:
        raise Sim2RealError(f"{path}: not a readable HDF5 file (expected a sim2real file with class_names)") from None


def default_class_map(root: Path) -> ClassMap:
    """``root/class_map.json`` if present (written by export), else ``obj_XXXXXX`` names for models_info's ids."""
    p = root / CLASS_MAP_FILE
    if p.is_file():
        return load_class_map(p)
    info_path = root / "models" / "models_info.json"
    if not info_path.is_file():
        raise Sim2RealError(f"{root}: has neither {CLASS_MAP_FILE} nor models/models_info.json to name the objects "
                            "(give --class-map {obj_id: name})")
    info = _int_keys(_load_json(info_path, "models_info.json {obj_id: {diameter, ...}}"), info_path, "{obj_id: ...}")
    return ClassMap.from_mapping({o: f"obj_{o:06d}" for o in info}, f"{info_path} (default names)")
