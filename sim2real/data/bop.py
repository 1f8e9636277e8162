"""BOP datasets in and out: import a split as object-centred crops, export an HDF5 file in the BOP format.

The BOP format (Hodan et al., ECCV 2018; thodan/bop_toolkit ``docs/bop_datasets_format.md``) uses the same
OpenCV camera and model-to-camera pose as sim2real (:mod:`sim2real.conventions`); only the units differ:
BOP stores translations, model coordinates and depth in **millimetres**, sim2real in **metres**.
The layout (``DIR`` = dataset root)::

    DIR/camera.json                       fx, fy, cx, cy, width, height, depth_scale
    DIR/models/models_info.json           {obj_id: {diameter, min_x, min_y, min_z, size_x, size_y, size_z} (mm),
                                           optionally symmetries_discrete [[16, row-major, t mm]] and
                                           symmetries_continuous [{axis, offset mm}] (:mod:`sim2real.symmetry`)}
    DIR/models/obj_{obj_id:06d}.ply       model (export: a point cloud of the HDF5's model_points, mm)
    DIR/{split}/{scene_id:06d}/scene_camera.json   {im_id: {cam_K: row-major 9, depth_scale}}
    DIR/{split}/{scene_id:06d}/scene_gt.json       {im_id: [{cam_R_m2c: row-major 9, cam_t_m2c: mm, obj_id}]}
    DIR/{split}/{scene_id:06d}/scene_gt_info.json  {im_id: [{bbox_obj, bbox_visib, px_count_all, px_count_valid,
                                                            px_count_visib, visib_fract}]}
    DIR/{split}/{scene_id:06d}/rgb/{im_id:06d}.png (or .jpg; gray/ for grey datasets)
    DIR/{split}/{scene_id:06d}/depth/{im_id:06d}.png  uint16, depth_mm = stored * depth_scale
    DIR/{split}/{scene_id:06d}/mask/{im_id:06d}_{gt_idx:06d}.png, mask_visib/ likewise

sim2real adds ``DIR/class_map.json`` ({obj_id: class name}) and ``DIR/sim2real_export.json`` (provenance) on export;
BOP tools ignore them. Import crops follow Cropped LineMod (Wohlhart & Lepetit 2015, used by PixelDA): a square
crop centred on the projection of the model origin, sized so that the object's diameter spans ``fill`` of the crop
side (see :func:`crop_box`). Details and tolerances are in ``docs/data-formats.md``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from sim2real.conventions import canonical_quat, matrix_from_quat, quat_from_matrix
from sim2real.data import h5
from sim2real.data.sources import SkipCounter
from sim2real.errors import Sim2RealError

#: Crop side in pixels (Cropped LineMod: 64x64).
DEFAULT_SIZE = 64
#: Fraction of the crop side spanned by the projected object diameter (the renderer uses the same default).
DEFAULT_FILL = 0.8
#: Instances less visible than this (BOP ``visib_fract``) are not imported (BOP's own evaluation uses 0.1).
DEFAULT_MIN_VISIB = 0.1
#: Exported depth unit in millimetres per stored uint16 step (0.1 mm: up to 6.5535 m, as YCB-V and T-LESS).
DEFAULT_DEPTH_SCALE = 0.1
#: Points per class sampled from ``models/obj_*.ply`` on import.
MODEL_POINTS = 1024
#: Per-sample intrinsics of imported crops (N, 3, 3): an extension dataset beside schema 1.0 (readers ignore it).
K_PER_SAMPLE = "K_per_sample"
CLASS_MAP_FILE = "class_map.json"
EXPORT_INFO_FILE = "sim2real_export.json"
MM_PER_M = 1000.0


# ----------------------------------------------------------------------------------------------------------
# Small JSON / image helpers with one-line errors
# ----------------------------------------------------------------------------------------------------------


def _load_json(path: Path, what: str) -> Any:
    if not path.is_file():
        raise Sim2RealError(f"{path}: file not found (expected {what})")
    try:
        return json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise Sim2RealError(f"{path}: not valid JSON ({e.__class__.__name__}; expected {what})") from None


def _int_keys(d: Any, path: Path, what: str) -> dict[int, Any]:
    if not isinstance(d, dict):
        raise Sim2RealError(f"{path}: expected a JSON object {what}")
    try:
        return {int(k): v for k, v in d.items()}
    except ValueError:
        raise Sim2RealError(f"{path}: keys must be integer ids ({what})") from None


def _read_png(path: Path, mode: str) -> np.ndarray:
    """``mode``: "rgb" -> uint8 (H, W, 3); "depth" -> float64 raw (H, W); "mask" -> bool (H, W)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            if mode == "rgb":
                return np.asarray(im.convert("RGB"), dtype=np.uint8)
            arr = np.asarray(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise Sim2RealError(f"{path}: not a readable image") from None
    if arr.ndim == 3:
        arr = arr[..., 0]
    return arr.astype(np.float64) if mode == "depth" else arr > 0


def _find_image(scene_dir: Path, im_id: int) -> Path | None:
    for sub in ("rgb", "gray"):
        for ext in (".png", ".jpg", ".jpeg", ".tif"):
            p = scene_dir / sub / f"{im_id:06d}{ext}"
            if p.is_file():
                return p
    return None


# ----------------------------------------------------------------------------------------------------------
# Class maps
# ----------------------------------------------------------------------------------------------------------


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


# ----------------------------------------------------------------------------------------------------------
# Crops
# ----------------------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class CropBox:
    """An axis-aligned crop of a full image, resampled to ``size`` x ``size``.

    ``x0, y0`` is the crop's top-left *edge* in OpenCV pixel coordinates (pixel i spans [i - 0.5, i + 0.5]),
    ``wx, wy`` its width and height in full-image pixels (not necessarily integers).
    """

    x0: float
    y0: float
    wx: float
    wy: float
    size: int

    def crop_K(self, K: np.ndarray) -> np.ndarray:
        """Intrinsics of the crop: shift by the crop's edge, scale by size / side.

        A full-image point at x lands in crop pixel ``j = (x - x0) * s - 0.5`` (pixel j's centre maps back to
        ``x0 + (j + 0.5) / s``), so ``fx' = fx s`` and ``cx' = (cx - x0) s - 0.5``; with x0 written as the
        left-most pixel's index plus -0.5 this is the brief's ``(cx - x_left + 0.5) s - 0.5``.
        """
        K = np.asarray(K, dtype=np.float64)
        sx, sy = self.size / self.wx, self.size / self.wy
        out = K.copy()
        out[0, 0] = K[0, 0] * sx
        out[0, 1] = K[0, 1] * sx
        out[0, 2] = (K[0, 2] - self.x0) * sx - 0.5
        out[1, 1] = K[1, 1] * sy
        out[1, 2] = (K[1, 2] - self.y0) * sy - 0.5
        return out


def crop_box(K: np.ndarray, t_mm: np.ndarray, diameter_mm: float, size: int, fill: float) -> CropBox:
    """The object-centred crop of Cropped LineMod: centred on the projection of the model origin ``t_m2c``,
    with the object's diameter at its distance spanning ``fill`` of the side: ``side = f * diameter / (fill * t_z)``
    (per axis, so the crop stays square in the object's extent when fx != fy).

    Args:
        K: (3, 3) intrinsics of the full image. t_mm: (3,) t_m2c (any unit, same as ``diameter_mm``).
        size: output side in pixels. fill: in (0, 2].
    """
    K = np.asarray(K, dtype=np.float64)
    t = np.asarray(t_mm, dtype=np.float64)
    u = K[0, 0] * t[0] / t[2] + K[0, 1] * t[1] / t[2] + K[0, 2]
    v = K[1, 1] * t[1] / t[2] + K[1, 2]
    wx = K[0, 0] * diameter_mm / (fill * t[2])
    wy = K[1, 1] * diameter_mm / (fill * t[2])
    return CropBox(u - wx / 2, v - wy / 2, wx, wy, size)


def resample(img: np.ndarray, box: CropBox, nearest: bool) -> np.ndarray:
    """Cut ``box`` out of ``img`` and resize it to ``box.size`` squared; outside the image is 0 (black / no depth).

    Args:
        img: (H, W, 3) uint8, (H, W) float32 depth or (H, W) bool mask.
        nearest: nearest-neighbour (depth, masks) instead of antialiased bilinear (colour).

    PIL's resize with a float ``box`` samples output pixel j at ``box_left + (j + 0.5) * scale`` in PIL coordinates
    (pixel i spans [i, i + 1]), i.e. at ``x0 + (j + 0.5) / s`` in OpenCV coordinates: exactly :meth:`CropBox.crop_K`.
    PIL needs the box inside the image, so the region (plus a filter margin) is first copied onto a zero canvas.
    """
    from PIL import Image

    h, w = img.shape[:2]
    scale = max(box.wx, box.wy) / box.size
    margin = int(math.ceil(scale)) + 2
    bx0, by0 = box.x0 + 0.5, box.y0 + 0.5  # PIL coordinates
    bx1, by1 = bx0 + box.wx, by0 + box.wy
    ix0, iy0 = int(math.floor(bx0)) - margin, int(math.floor(by0)) - margin
    ix1, iy1 = int(math.ceil(bx1)) + margin, int(math.ceil(by1)) + margin
    src = img.astype(np.uint8) * 255 if img.dtype == np.bool_ else img
    canvas = np.zeros((iy1 - iy0, ix1 - ix0) + src.shape[2:], dtype=src.dtype)
    sx0, sy0, sx1, sy1 = max(ix0, 0), max(iy0, 0), min(ix1, w), min(iy1, h)
    if sx1 > sx0 and sy1 > sy0:
        canvas[sy0 - iy0:sy1 - iy0, sx0 - ix0:sx1 - ix0] = src[sy0:sy1, sx0:sx1]
    pil = Image.fromarray(canvas.astype(np.float32) if canvas.dtype.kind == "f" else canvas)
    out = pil.resize((box.size, box.size), Image.NEAREST if nearest else Image.BILINEAR,
                     box=(bx0 - ix0, by0 - iy0, bx1 - ix0, by1 - iy0), reducing_gap=None)
    arr = np.asarray(out)
    return arr > 127 if img.dtype == np.bool_ else arr.astype(img.dtype)


# ----------------------------------------------------------------------------------------------------------
# Import
# ----------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class ImportOptions:
    """How ``import-bop`` turns a BOP split into samples."""

    #: Crop side in pixels (crop mode).
    size: int = DEFAULT_SIZE
    #: Fraction of the crop side spanned by the projected object diameter (crop mode).
    fill: float = DEFAULT_FILL
    #: False: keep full images (one sample per annotated instance; all images must share one size).
    crop: bool = True
    #: Keep instances with ``visib_fract >= min_visib`` (0 keeps all).
    min_visib: float = DEFAULT_MIN_VISIB
    #: Import depth (object pixels only, metres) when the split has depth/ and mask_visib/.
    depth: bool = True
    #: Domain attribute of the output (real photos: "target").
    domain: str = "target"
    #: Skip bad items (unreadable image, unknown obj_id, scene without annotations, odd size) and count them.
    skip_bad: bool = False

    def validate(self) -> None:
        if self.size < 4:
            raise Sim2RealError(f"--size {self.size}: expected a crop side of at least 4 pixels")
        if not 0 < self.fill <= 2:  # the renderer's camera.fill accepts the same range
            raise Sim2RealError(f"--fill {self.fill}: expected a value in (0, 2] (0.8: the diameter spans 80% of the side)")
        if not 0 <= self.min_visib <= 1:
            raise Sim2RealError(f"--min-visib {self.min_visib}: expected a fraction in [0, 1]")
        if self.domain not in h5.schema.DOMAINS:
            raise Sim2RealError(f"--domain {self.domain}: expected one of {', '.join(h5.schema.DOMAINS)}")


@dataclasses.dataclass
class ImportResult:
    """What :func:`read_bop` collected: schema arrays (``K`` only when shared), per-sample K, bookkeeping."""

    arrays: dict[str, np.ndarray]
    K_per_sample: np.ndarray
    class_names: list[str]
    skips: SkipCounter
    notes: list[str]
    provenance: dict


def _scene_dirs(split_dir: Path) -> list[Path]:
    return sorted(d for d in split_dir.iterdir() if d.is_dir() and d.name.isdigit())


def _models_info(root: Path) -> tuple[dict[int, dict], Path]:
    path = root / "models" / "models_info.json"
    if not path.is_file():
        return {}, path
    return _int_keys(_load_json(path, "models_info.json"), path, "{obj_id: {diameter, ...}}"), path


def _model_points(root: Path, obj_id: int, rng: np.random.Generator) -> np.ndarray | None:
    """Points (mm) of ``models/obj_{obj_id:06d}.ply``: ``MODEL_POINTS`` surface samples of a mesh, or all points of
    a point cloud (as written by :func:`export_bop`); ``None`` if the file is missing."""
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


class BadItem(Sim2RealError):
    """A bad image or instance: an error, or skipped and counted under ``reason`` with ``--skip-bad``."""

    def __init__(self, message: str, reason: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclasses.dataclass
class _Instance:
    """One ground-truth instance chosen for import. ``t_mm``: t_m2c in mm; ``diameter_mm``: 0 without crops."""

    gt_idx: int
    label: int
    R: np.ndarray
    t_mm: np.ndarray
    diameter_mm: float


@dataclasses.dataclass
class _Samples:
    """Per-sample lists filled while reading; ``None`` entries mean "not available for this sample"."""

    rgb: list = dataclasses.field(default_factory=list)
    mask: list = dataclasses.field(default_factory=list)
    depth: list = dataclasses.field(default_factory=list)
    label: list = dataclasses.field(default_factory=list)
    quat: list = dataclasses.field(default_factory=list)
    trans: list = dataclasses.field(default_factory=list)
    K: list = dataclasses.field(default_factory=list)


class _SceneReader:
    """Reads the images and annotations of one scene folder, one image at a time."""

    def __init__(self, scene_dir: Path, cmap: ClassMap, info: dict[int, dict], info_path: Path,
                 opt: ImportOptions) -> None:
        self.dir, self.cmap, self.info, self.info_path, self.opt = scene_dir, cmap, info, info_path, opt
        self.gt_path = scene_dir / "scene_gt.json"
        self.cam_path = scene_dir / "scene_camera.json"
        self.info_file = scene_dir / "scene_gt_info.json"
        try:
            self.gts = _int_keys(_load_json(self.gt_path, "scene_gt.json with the ground-truth poses"), self.gt_path,
                                 "{im_id: [...]}")
            self.cams = _int_keys(_load_json(self.cam_path, "scene_camera.json with cam_K per image"), self.cam_path,
                                  "{im_id: {...}}")
            self.gt_info = {}
            if opt.min_visib > 0:
                self.gt_info = _int_keys(_load_json(self.info_file, "scene_gt_info.json with visib_fract "
                                                    "(or import with --min-visib 0)"), self.info_file, "{im_id: [...]}")
        except Sim2RealError as e:
            raise BadItem(str(e), "scene without annotations") from None

    def camera(self, im_id: int) -> tuple[np.ndarray, float]:
        """(K (3, 3), depth_scale in mm per stored unit) of image ``im_id``."""
        cam = self.cams.get(im_id)
        try:
            K, scale = np.asarray(cam["cam_K"], dtype=np.float64).reshape(3, 3), float(cam.get("depth_scale", 1.0))
        except (KeyError, TypeError, ValueError, AttributeError):
            raise BadItem(f"{self.cam_path}: image {im_id}: expected cam_K (9 numbers) and depth_scale",
                          "image without camera") from None
        if not np.all(np.isfinite(K)) or K[0, 0] <= 0 or K[1, 1] <= 0:
            raise BadItem(f"{self.cam_path}: image {im_id}: cam_K must be finite with fx, fy > 0, got "
                          f"{K.reshape(9).tolist()}", "bad camera")
        if not (np.isfinite(scale) and scale > 0):
            raise BadItem(f"{self.cam_path}: image {im_id}: depth_scale must be a positive number, got {scale}",
                          "bad camera")
        return K, scale

    def instance(self, im_id: int, gt_idx: int, gt: Any) -> _Instance | None:
        """The instance to import, ``None`` if it is filtered out (ignored class, too occluded)."""
        where = f"{self.gt_path}: image {im_id} instance {gt_idx}"
        try:
            obj_id = int(gt["obj_id"])
            R = np.asarray(gt["cam_R_m2c"], dtype=np.float64).reshape(3, 3)
            t_mm = np.asarray(gt["cam_t_m2c"], dtype=np.float64).reshape(3)
        except (KeyError, TypeError, ValueError):
            raise BadItem(f"{where}: expected obj_id, cam_R_m2c (9 numbers), cam_t_m2c (3 numbers)", "bad annotation") from None
        if obj_id not in self.cmap.obj_to_label:
            raise BadItem(f"{self.cmap.source}: obj_id {obj_id} (in {self.gt_path}, image {im_id}) is not in the class "
                          "map (map it to a name, or to null to ignore it)", "unknown obj_id")
        label = self.cmap.label_of(obj_id)
        if label is None:
            return None
        if self.opt.min_visib > 0:
            try:
                visib = float(self.gt_info[im_id][gt_idx]["visib_fract"])
            except (KeyError, IndexError, TypeError, ValueError):
                raise BadItem(f"{self.info_file}: image {im_id} instance {gt_idx}: no visib_fract", "bad annotation") from None
            if visib < self.opt.min_visib:
                return None
        if not (np.all(np.isfinite(R)) and np.all(np.isfinite(t_mm))) or t_mm[2] <= 0:
            raise BadItem(f"{where}: object not in front of the camera (t_z = {t_mm[2]} mm)", "bad annotation")
        diameter = 0.0
        if self.opt.crop:
            try:
                diameter = float(self.info[obj_id]["diameter"])
                if not (np.isfinite(diameter) and diameter > 0):
                    raise ValueError
            except (KeyError, TypeError, ValueError):
                where_info = self.info_path if self.info_path.is_file() else f"{self.info_path} (missing)"
                raise BadItem(f"{where_info}: no diameter for obj_id {obj_id} (a positive number, needed to size "
                              "the crop; or import "
                              "with --no-crop)", "object without diameter") from None
        return _Instance(gt_idx, label, R, t_mm, diameter)

    def colour(self, im_id: int) -> tuple[np.ndarray, Path]:
        path = _find_image(self.dir, im_id)
        if path is None:
            raise BadItem(f"{self.dir / 'rgb' / f'{im_id:06d}.png'}: image file not found", "missing image")
        try:
            return _read_png(path, "rgb"), path
        except Sim2RealError as e:
            raise BadItem(str(e), "unreadable image") from None

    def _plane(self, path: Path, kind: str, shape: tuple[int, int]) -> np.ndarray | None:
        if not path.is_file():
            return None
        try:
            arr = _read_png(path, kind)
        except Sim2RealError as e:
            raise BadItem(str(e), "unreadable image") from None
        if arr.shape != shape:
            raise BadItem(f"{path}: {kind} is {arr.shape[1]}x{arr.shape[0]}, expected the colour image's "
                          f"{shape[1]}x{shape[0]}", "image of another size")
        return arr

    def depth_mm(self, im_id: int, depth_scale: float, shape: tuple[int, int]) -> np.ndarray | None:
        """(H, W) float64 depth in mm (0 = no reading), or ``None`` without a depth image."""
        raw = self._plane(self.dir / "depth" / f"{im_id:06d}.png", "depth", shape)
        return None if raw is None else raw * depth_scale

    def mask_visib(self, im_id: int, gt_idx: int, shape: tuple[int, int]) -> np.ndarray | None:
        return self._plane(self.dir / "mask_visib" / f"{im_id:06d}_{gt_idx:06d}.png", "mask", shape)


def read_bop(root: str | Path, split: str, class_map: ClassMap | None = None,
             options: ImportOptions | None = None) -> ImportResult:
    """Read one split of a BOP dataset into sim2real arrays (see module doc and ``docs/data-formats.md``).

    Every annotated instance (obj_id in the class map, ``visib_fract >= min_visib``) becomes one sample: an
    object-centred crop (:func:`crop_box`, :func:`resample`; colour bilinear, depth and mask nearest) or, with
    ``crop=False``, the full image. Poses: ``quat = quat_from_matrix(cam_R_m2c)``, ``trans = cam_t_m2c / 1000``.
    Masks come from ``mask_visib``; depth keeps the object's pixels only (schema: 0 = background,
    ``mask == depth > 0``), in metres.

    Args:
        root: dataset root (holds ``models/`` and the split folder).
        split: split folder name, e.g. ``"test"``, ``"train_pbr"``, ``"test_primesense"``.
        class_map: obj_id -> class; default :func:`default_class_map`.
        options: :class:`ImportOptions`.

    Returns:
        :class:`ImportResult`: ``rgb (N,S,S,3) uint8``, ``label``, ``quat (N,4) wxyz``, ``trans (N,3) m``,
        optionally ``depth (N,S,S) m`` / ``mask``, per-class ``diameters``/``extents`` (m) and ``model_points`` (m),
        ``K`` when every sample has the same intrinsics, and always ``K_per_sample (N,3,3)``.

    Raises:
        Sim2RealError: one line naming the file, at the first bad item unless ``options.skip_bad``.
    """
    from sim2real.utils import progress

    opt = options or ImportOptions()
    opt.validate()
    root = Path(root)
    if not root.is_dir():
        raise Sim2RealError(f"{root}: not a folder (expected a BOP dataset root with models/ and split folders)")
    split_dir = root / split
    if not split_dir.is_dir():
        have = sorted(d.name for d in root.iterdir() if d.is_dir() and d.name != "models" and not d.name.startswith("."))
        raise Sim2RealError(f"{split_dir}: no such split folder (splits here: {', '.join(have) or 'none'})")
    scenes = _scene_dirs(split_dir)
    if not scenes:
        raise Sim2RealError(f"{split_dir}: contains no scene folders (expected 000000/, 000001/, ...)")
    cmap = class_map or default_class_map(root)
    info, info_path = _models_info(root)
    skips = SkipCounter(opt.skip_bad)
    notes: list[str] = []
    acc = _Samples()
    ref_shape: tuple[int, ...] | None = None

    readers = []
    for scene_dir in scenes:
        try:
            readers.append(_SceneReader(scene_dir, cmap, info, info_path, opt))
        except BadItem as e:
            skips.skip(e, e.reason)
    bar = progress(total=sum(len(r.gts) for r in readers), desc=f"import {split}", unit="img")
    for reader in readers:
        for im_id in sorted(reader.gts):
            bar.update(1)
            try:
                K, depth_scale = reader.camera(im_id)
                insts = reader.gts[im_id]
                if not isinstance(insts, list):
                    raise BadItem(f"{reader.gt_path}: image {im_id}: expected a list of instances", "bad annotation")
                wanted = []
                for gt_idx, gt in enumerate(insts):
                    try:
                        inst = reader.instance(im_id, gt_idx, gt)
                    except BadItem as e:
                        skips.skip(e, e.reason)
                        continue
                    if inst is not None:
                        wanted.append(inst)
                if not wanted:
                    continue
                rgb, img_path = reader.colour(im_id)
                if not opt.crop:
                    ref_shape = ref_shape or rgb.shape
                    if rgb.shape != ref_shape:
                        raise BadItem(f"{img_path}: image is {rgb.shape[1]}x{rgb.shape[0]}, expected {ref_shape[1]}x"
                                      f"{ref_shape[0]} like the others (images of mixed sizes: import crops instead of "
                                      "using --no-crop)", "image of another size")
                depth_mm = reader.depth_mm(im_id, depth_scale, rgb.shape[:2]) if opt.depth else None
            except BadItem as e:
                skips.skip(e, e.reason)
                continue
            for inst in wanted:
                try:
                    mask = reader.mask_visib(im_id, inst.gt_idx, rgb.shape[:2])
                except BadItem as e:
                    skips.skip(e, e.reason)
                    continue
                _add_sample(acc, rgb, mask, depth_mm, K, inst, opt)
    bar.close()
    if not acc.rgb:
        raise Sim2RealError(f"{split_dir}: no instance was imported (check --min-visib and the class map; {skips.summary()})")
    arrays = _stack(acc, opt, notes)
    _attach_models(arrays, root, cmap, info, notes)
    provenance = {"bop_root": str(root.resolve()), "split": split, "scenes": len(scenes),
                  "class_map": cmap.source, "obj_ids": {n: cmap.obj_id_of(i) for i, n in enumerate(cmap.names)}}
    return ImportResult(arrays, np.stack(acc.K).astype(np.float32), list(cmap.names), skips, notes, provenance)


def _add_sample(acc: _Samples, rgb: np.ndarray, mask: np.ndarray | None, depth_mm: np.ndarray | None, K: np.ndarray,
                inst: _Instance, opt: ImportOptions) -> None:
    """Cut (or keep) one instance's sample and append it to ``acc``."""
    # Object depth only (metres): the schema's depth is 0 on background.
    dep = None
    if depth_mm is not None and mask is not None:
        dep = np.where(mask, depth_mm / MM_PER_M, 0.0).astype(np.float32)
    if opt.crop:
        box = crop_box(K, inst.t_mm, inst.diameter_mm, opt.size, opt.fill)
        rgb = resample(rgb, box, nearest=False)
        mask = resample(mask, box, nearest=True) if mask is not None else None
        dep = resample(dep, box, nearest=True) if dep is not None else None
        K = box.crop_K(K)
    acc.rgb.append(rgb)
    acc.mask.append(mask)
    acc.depth.append(dep)
    acc.label.append(inst.label)
    acc.quat.append(quat_from_matrix(inst.R))
    acc.trans.append(inst.t_mm / MM_PER_M)
    acc.K.append(K)


def _stack(acc: _Samples, opt: ImportOptions, notes: list[str]) -> dict[str, np.ndarray]:
    """Schema arrays from the per-sample lists; optional datasets only when every sample has them."""
    arrays: dict[str, np.ndarray] = {
        "rgb": np.stack(acc.rgb),
        "label": np.asarray(acc.label, dtype=np.int64),
        "quat": canonical_quat(np.stack(acc.quat)).astype(np.float32),
        "trans": np.stack(acc.trans).astype(np.float32),
    }
    if all(m is not None for m in acc.mask):
        arrays["mask"] = np.stack(acc.mask)
    else:
        notes.append("not every instance has a mask_visib/ file: masks and depth are left out")
    if opt.depth:
        if "mask" in arrays and all(d is not None for d in acc.depth):
            arrays["depth"] = np.stack(acc.depth)
            # the schema's mask is the foreground with depth: visible pixels without a depth reading drop out
            arrays["mask"] &= arrays["depth"] > 0
        else:
            notes.append("depth is left out (it needs a depth/ image and a mask_visib/ mask for every instance)")
    K_all = np.stack(acc.K)
    if np.allclose(K_all, K_all[:1], rtol=1e-6, atol=1e-9):
        arrays["K"] = K_all[0].astype(np.float32)
    else:
        notes.append(f"crops have per-sample intrinsics: stored as '{K_PER_SAMPLE}' (N, 3, 3), no shared 'K'")
    return arrays


def _attach_models(arrays: dict, root: Path, cmap: ClassMap, info: dict[int, dict], notes: list[str]) -> None:
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
    _attach_symmetries(arrays, cmap, info, obj_ids, notes, root / "models" / "models_info.json")


def _attach_symmetries(arrays: dict, cmap: ClassMap, info: dict[int, dict], obj_ids: list[int], notes: list[str],
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


def import_bop(root: str | Path, split: str, out: str | Path, class_map: ClassMap | None = None,
               options: ImportOptions | None = None) -> tuple[Path, ImportResult]:
    """Read a BOP split (:func:`read_bop`) and write it as a sim2real HDF5 file, atomically.

    The file gets the schema datasets plus ``K_per_sample`` (N, 3, 3) float32; attributes record the options
    (``config``), ``split``, ``provenance`` (root, class map, obj_ids) and ``skipped``.
    """
    opt = options or ImportOptions()
    res = read_bop(root, split, class_map, opt)
    config = {"source": "bop", **dataclasses.asdict(opt)}
    attrs = h5.make_attrs(opt.domain, config, 0, split=split, provenance=res.provenance, skipped=res.skips.total)
    out = Path(out)
    h5.write(out, res.arrays, attrs, class_names=res.class_names, extra={K_PER_SAMPLE: res.K_per_sample})
    return out, res


def read_K_per_sample(path: str | Path) -> np.ndarray | None:
    """The ``K_per_sample`` (N, 3, 3) extension dataset of a file written by :func:`import_bop`, if any."""
    import h5py

    with h5py.File(path, "r") as f:
        return f[K_PER_SAMPLE][()] if K_PER_SAMPLE in f else None


# ----------------------------------------------------------------------------------------------------------
# Export
# ----------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class ExportResult:
    out_dir: Path
    split_dir: Path
    n_images: int
    depth_scale: float | None
    notes: list[str]


def _bbox(mask: np.ndarray) -> list[int]:
    """BOP bbox (x, y, width, height) of a boolean mask; [-1, -1, -1, -1] if empty (bop_toolkit's convention)."""
    ys, xs = np.nonzero(mask)
    if len(xs) == 0:
        return [-1, -1, -1, -1]
    return [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]


def _choose_depth_scale(depth: np.ndarray | None, requested: float | None, path: str) -> float | None:
    if depth is None:
        return requested
    max_mm = float(depth.max()) * MM_PER_M
    if requested is not None:
        if max_mm / requested > 65535:
            raise Sim2RealError(f"{path}: depth up to {max_mm:.0f} mm does not fit uint16 with depth_scale {requested} "
                                f"(use at least {max_mm / 65535:.3g})")
        return requested
    scale = DEFAULT_DEPTH_SCALE
    while max_mm / scale > 65535:
        scale *= 10
    return scale


def _models_info_of(data: h5.H5Data) -> dict[int, dict]:
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


def _write_ply_points(path: Path, pts_mm: np.ndarray) -> None:
    lines = ["ply", "format ascii 1.0", "comment sim2real model_points (point cloud, mm)",
             f"element vertex {len(pts_mm)}", "property float x", "property float y", "property float z", "end_header"]
    lines += [f"{x:.6f} {y:.6f} {z:.6f}" for x, y, z in pts_mm]
    path.write_text("\n".join(lines) + "\n")


def _json_dump(path: Path, obj: Any) -> None:
    """Write JSON atomically; a dict gets one top-level key per line (bop_toolkit's layout), values compact."""
    from sim2real.utils import atomic_write_text

    def plain(x: Any) -> Any:  # numpy scalars from HDF5 attributes
        return x.item() if isinstance(x, np.generic) else str(x)

    try:  # BOP files are strict JSON: a NaN or infinity would be written as the non-JSON token NaN
        if isinstance(obj, dict):
            body = ",\n".join(f"  {json.dumps(str(k))}: {json.dumps(v, default=plain, allow_nan=False)}"
                              for k, v in obj.items())
            text = "{\n" + body + "\n}\n"
        else:
            text = json.dumps(obj, default=plain, allow_nan=False) + "\n"
    except ValueError:
        raise Sim2RealError(f"{path}: refusing to write NaN or infinite values into a BOP file") from None
    atomic_write_text(path, text)


def export_bop(h5_path: str | Path, out_dir: str | Path, split: str = "test", depth_scale: float | None = None,
               overwrite: bool = False) -> ExportResult:
    """Write a sim2real HDF5 file as one BOP scene: ``out_dir/{split}/000000/``, image ``im_id`` = sample index,
    one ground-truth instance per image with ``obj_id = label + 1``.

    Needs ``label``, ``quat``, ``trans`` and ``K`` (or ``K_per_sample``). Depth (if present) is written as uint16 PNG,
    ``depth_mm = stored * depth_scale`` (default 0.1 mm, raised tenfold until the deepest pixel fits); masks come
    from ``mask`` (or ``depth > 0``); ``mask_visib`` equals ``mask`` (a sample shows one unoccluded object).
    The split folder is built under a temporary name and renamed into place, so it is complete or absent.

    Raises:
        Sim2RealError: missing datasets, an existing split folder (without ``overwrite``), a class map conflict.
    """
    from PIL import Image

    from sim2real.utils import progress

    h5_path = Path(h5_path)
    data = h5.read(h5_path)
    data.require("label", "quat", "trans", why="BOP export needs labelled poses")
    Ks = read_K_per_sample(h5_path)
    if Ks is None:
        data.require("K", why="BOP export needs the camera intrinsics")
        Ks = np.broadcast_to(np.asarray(data.K, np.float64), (len(data), 3, 3))
    elif Ks.shape != (len(data), 3, 3) or not np.all(np.isfinite(Ks)) or (Ks[:, 0, 0] <= 0).any() or (Ks[:, 1, 1] <= 0).any():
        raise Sim2RealError(f"{h5_path}: '{K_PER_SAMPLE}' must be ({len(data)}, 3, 3), finite, with fx, fy > 0")
    notes: list[str] = []
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise Sim2RealError(f"{out_dir}: exists and is not a folder (expected a BOP dataset folder to write)")
    out_dir.mkdir(parents=True, exist_ok=True)
    split_dir = out_dir / split
    if split_dir.exists() and not overwrite:
        raise Sim2RealError(f"{split_dir}: already exists (choose another --split or pass --overwrite)")
    names = list(data.class_names or [])
    cmap = {str(i + 1): n for i, n in enumerate(names)}
    cmap_path = out_dir / CLASS_MAP_FILE
    if cmap_path.is_file():
        old = _load_json(cmap_path, "class_map.json")
        if old != cmap:
            raise Sim2RealError(f"{cmap_path}: the folder holds other classes ({old}); export to a new folder")

    mask = data.mask if data.mask is not None else (data.depth > 0 if data.depth is not None else None)
    if mask is None:
        notes.append("no mask or depth in the file: mask/ and mask_visib/ are not written, visib_fract is 1.0")
    scale = _choose_depth_scale(data.depth, depth_scale, str(h5_path))
    n, hgt, wid = len(data), data.image_size[0], data.image_size[1]
    R = matrix_from_quat(data.quat.astype(np.float64))
    t_mm = data.trans.astype(np.float64) * MM_PER_M

    from sim2real.outputs import clean_stale_temporaries, temp_prefix

    clean_stale_temporaries(split_dir)  # the unfinished folder a killed export of this split left
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(split_dir), suffix=".partial", dir=out_dir))
    try:
        scene = tmp / "000000"
        for sub in ["rgb"] + (["depth"] if data.depth is not None else []) + (["mask", "mask_visib"] if mask is not None else []):
            (scene / sub).mkdir(parents=True)
        scene_camera, scene_gt, scene_gt_info = {}, {}, {}
        for i in progress(range(n), total=n, desc=f"export {split}", unit="img"):
            key = str(i)
            Image.fromarray(data.rgb[i]).save(scene / "rgb" / f"{i:06d}.png")
            cam = {"cam_K": [float(x) for x in Ks[i].reshape(9)]}
            if data.depth is not None:
                stored = np.round(data.depth[i].astype(np.float64) * MM_PER_M / scale)
                # a foreground pixel must stay > 0 so that mask == depth > 0 survives the round trip
                stored = np.where(data.depth[i] > 0, np.maximum(stored, 1), 0).astype(np.uint16)
                Image.fromarray(stored).save(scene / "depth" / f"{i:06d}.png")
                cam["depth_scale"] = scale
            scene_camera[key] = cam
            scene_gt[key] = [{"cam_R_m2c": [float(x) for x in R[i].reshape(9)],
                              "cam_t_m2c": [float(x) for x in t_mm[i]],
                              "obj_id": int(data.label[i]) + 1}]
            if mask is not None:
                m = mask[i]
                png = Image.fromarray(m.astype(np.uint8) * 255)
                png.save(scene / "mask" / f"{i:06d}_000000.png")
                png.save(scene / "mask_visib" / f"{i:06d}_000000.png")
                count = int(m.sum())
                valid = int((m & (data.depth[i] > 0)).sum()) if data.depth is not None else 0
                bbox = _bbox(m)
                scene_gt_info[key] = [{"bbox_obj": bbox, "bbox_visib": bbox, "px_count_all": count,
                                       "px_count_valid": valid, "px_count_visib": count,
                                       "visib_fract": 1.0 if count > 0 else 0.0}]
            else:
                scene_gt_info[key] = [{"bbox_obj": [-1, -1, -1, -1], "bbox_visib": [-1, -1, -1, -1], "px_count_all": 0,
                                       "px_count_valid": 0, "px_count_visib": 0, "visib_fract": 1.0}]
        _json_dump(scene / "scene_camera.json", scene_camera)
        _json_dump(scene / "scene_gt.json", scene_gt)
        _json_dump(scene / "scene_gt_info.json", scene_gt_info)
        if split_dir.exists():
            shutil.rmtree(split_dir)
        os.replace(tmp, split_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise

    K0 = Ks[0]
    cam_json = {"cx": float(K0[0, 2]), "cy": float(K0[1, 2]), "fx": float(K0[0, 0]), "fy": float(K0[1, 1]),
                "height": hgt, "width": wid}
    if scale is not None:
        cam_json["depth_scale"] = scale
    _json_dump(out_dir / "camera.json", cam_json)
    models_info = _models_info_of(data)
    if models_info:
        (out_dir / "models").mkdir(exist_ok=True)
        _json_dump(out_dir / "models" / "models_info.json", {str(k): v for k, v in models_info.items()})
        if data.model_points is not None:
            for i in range(data.num_classes):
                _write_ply_points(out_dir / "models" / f"obj_{i + 1:06d}.ply", data.model_points[i].astype(np.float64) * MM_PER_M)
    else:
        notes.append("no diameters/extents/model_points in the file: models/ is not written (import needs --no-crop)")
    _json_dump(cmap_path, cmap)
    from sim2real.utils import versions

    _json_dump(out_dir / EXPORT_INFO_FILE, {
        "source_file": str(h5_path.resolve()), "split": split, "scene": "000000", "im_id": "sample index",
        "obj_id": "label + 1", "units": "mm", "depth_scale": scale, "samples": n,
        "symmetries": "unknown" if data.symmetries is None else "models/models_info.json",
        "source_attrs": {k: data.attrs.get(k) for k in ("domain", "seed", "schema_version", "sim2real_version", "config")},
        "versions": versions()})
    return ExportResult(out_dir, split_dir, n, scale, notes)
