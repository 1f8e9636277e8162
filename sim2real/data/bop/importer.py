"""``import-bop``: one split of a BOP dataset -> object-centred crops (or full images) in a sim2real HDF5 file.

Every annotated instance (obj_id in the class map, ``visib_fract >= min_visib``) becomes one sample; the layout
read is described in :mod:`sim2real.data.bop` and ``docs/data-formats.md``.

Reading is two steps per image: the annotations (camera, instances: JSON already in memory, cheap; this process)
and the pixels (colour, depth, masks, crops: :func:`_read_pixels`, the work). Both record what they found as
events (a bad item, the image's shape, a sample) that this process then applies in image order (:class:`_Replay`):
the skip counts, the first error, the no-crop size check and the sample order are those of one pass over the
images, whoever read the pixels. With ``ray=`` the pixels of chunks of :data:`SHARD_IMAGES` images are read by Ray
actors (:mod:`sim2real.ray_shards`), which get the image files' bytes with each chunk (no shared file system), so
the file is the same as a local import's.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
from pathlib import Path
from typing import Any

import numpy as np

from sim2real.conventions import canonical_quat, quat_from_matrix
from sim2real.data import h5
from sim2real.data.bop.classmap import ClassMap, default_class_map
from sim2real.data.bop.format import (DEFAULT_FILL, DEFAULT_MIN_VISIB, DEFAULT_SIZE, K_PER_SAMPLE, MM_PER_M, _int_keys,
                                      _load_json)
from sim2real.data.bop.geometry import crop_box, resample
from sim2real.data.bop.object_models import attach_models, read_models_info
from sim2real.data.sources import SkipCounter
from sim2real.errors import Sim2RealError


#: Images whose pixels one Ray actor reads per request (``import-bop --ray``).
SHARD_IMAGES = 64


class _Disk:
    """The image files of this machine's disk (a local import)."""

    @staticmethod
    def is_file(path: Path) -> bool:
        return path.is_file()

    @staticmethod
    def open(path: Path) -> Path:
        return path


class _Bundle:
    """Image files sent with a chunk to a Ray actor: ``str(path)`` -> bytes (None: unreadable where they were read)."""

    def __init__(self, files: dict[str, bytes | None]) -> None:
        self.files = files

    def is_file(self, path: Path) -> bool:
        return str(path) in self.files

    def open(self, path: Path) -> io.BytesIO:
        data = self.files[str(path)]
        if data is None:
            raise OSError(f"{path}: unreadable")
        return io.BytesIO(data)


_DISK = _Disk()


def _read_png(path: Path, mode: str, files=_DISK) -> np.ndarray:
    """``mode``: "rgb" -> uint8 (H, W, 3); "depth" -> float64 raw (H, W); "mask" -> bool (H, W)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(files.open(path)) as im:
            if mode == "rgb":
                return np.asarray(im.convert("RGB"), dtype=np.uint8)
            arr = np.asarray(im)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise Sim2RealError(f"{path}: not a readable image") from None
    if arr.ndim == 3:
        arr = arr[..., 0]
    return arr.astype(np.float64) if mode == "depth" else arr > 0


def _find_image(scene_dir: Path, im_id: int, files=_DISK) -> Path | None:
    for sub in ("rgb", "gray"):
        for ext in (".png", ".jpg", ".jpeg", ".tif"):
            p = scene_dir / sub / f"{im_id:06d}{ext}"
            if files.is_file(p):
                return p
    return None


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
    """The annotations of one scene folder (JSON, read once), checked one image at a time; the pixels are
    :func:`_read_pixels`'s."""

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


# ---------------------------------------------------------------------------------------------
# one image: annotations (this process), pixels (any worker), events applied in image order
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class _ImageTask:
    """The pixel work of one image with instances to import: what a worker (this process or a Ray actor) reads."""

    scene_dir: Path
    im_id: int
    K: np.ndarray
    depth_scale: float
    wanted: list[_Instance]

    def paths(self, opt: ImportOptions) -> list[Path]:
        """The files :func:`_read_pixels` may open that exist on this machine (colour, depth, mask_visib)."""
        colour = _find_image(self.scene_dir, self.im_id)
        paths = [colour] if colour is not None else []
        if opt.depth:
            paths.append(self.scene_dir / "depth" / f"{self.im_id:06d}.png")
        paths += [self.scene_dir / "mask_visib" / f"{self.im_id:06d}_{inst.gt_idx:06d}.png" for inst in self.wanted]
        return [p for p in paths if p.is_file()]


def _bundle(tasks: list[_ImageTask], opt: ImportOptions) -> _Bundle:
    """The bytes of every file ``tasks`` may read, for a Ray actor (an unreadable file reads as unreadable there)."""
    files: dict[str, bytes | None] = {}
    for task in tasks:
        for p in task.paths(opt):
            try:
                files[str(p)] = p.read_bytes()
            except OSError:
                files[str(p)] = None
    return _Bundle(files)


def _plan_image(reader: _SceneReader, im_id: int) -> tuple[list[tuple], _ImageTask | None]:
    """The annotation events of image ``im_id`` (bad items: ``("skip", message, reason)``) and its pixel work
    (None: nothing to import from it)."""
    try:
        K, depth_scale = reader.camera(im_id)
        insts = reader.gts[im_id]
        if not isinstance(insts, list):
            raise BadItem(f"{reader.gt_path}: image {im_id}: expected a list of instances", "bad annotation")
    except BadItem as e:
        return [("skip", str(e), e.reason)], None
    events: list[tuple] = []
    wanted = []
    for gt_idx, gt in enumerate(insts):
        try:
            inst = reader.instance(im_id, gt_idx, gt)
        except BadItem as e:
            events.append(("skip", str(e), e.reason))
            continue
        if inst is not None:
            wanted.append(inst)
    return events, (_ImageTask(reader.dir, im_id, K, depth_scale, wanted) if wanted else None)


def _colour(files, scene_dir: Path, im_id: int) -> tuple[np.ndarray, Path]:
    path = _find_image(scene_dir, im_id, files)
    if path is None:
        raise BadItem(f"{scene_dir / 'rgb' / f'{im_id:06d}.png'}: image file not found", "missing image")
    try:
        return _read_png(path, "rgb", files), path
    except Sim2RealError as e:
        raise BadItem(str(e), "unreadable image") from None


def _plane(files, path: Path, kind: str, shape: tuple[int, int]) -> np.ndarray | None:
    if not files.is_file(path):
        return None
    try:
        arr = _read_png(path, kind, files)
    except Sim2RealError as e:
        raise BadItem(str(e), "unreadable image") from None
    if arr.shape != shape:
        raise BadItem(f"{path}: {kind} is {arr.shape[1]}x{arr.shape[0]}, expected the colour image's "
                      f"{shape[1]}x{shape[0]}", "image of another size")
    return arr


def _read_pixels(task: _ImageTask, opt: ImportOptions, files=_DISK) -> list[tuple]:
    """The pixel events of one image, in the order of one pass: ``("shape", (H, W, 3), colour path)`` once the
    colour image is read, ``("skip", message, reason)`` for a bad item, ``("sample", arrays)`` per instance
    (:func:`_cut_sample`). Without ``skip_bad`` it stops at the first bad item (the import stops there)."""
    events: list[tuple] = []
    try:
        rgb, img_path = _colour(files, task.scene_dir, task.im_id)
        events.append(("shape", rgb.shape, img_path))
        depth_mm = None
        if opt.depth:  # (H, W) float64 depth in mm (0 = no reading), None without a depth image
            raw = _plane(files, task.scene_dir / "depth" / f"{task.im_id:06d}.png", "depth", rgb.shape[:2])
            depth_mm = None if raw is None else raw * task.depth_scale
    except BadItem as e:
        return events + [("skip", str(e), e.reason)]
    for inst in task.wanted:
        try:
            mask = _plane(files, task.scene_dir / "mask_visib" / f"{task.im_id:06d}_{inst.gt_idx:06d}.png", "mask",
                          rgb.shape[:2])
        except BadItem as e:
            events.append(("skip", str(e), e.reason))
            if not opt.skip_bad:
                return events
            continue
        events.append(("sample", _cut_sample(rgb, mask, depth_mm, task.K, inst, opt)))
    return events


class _Replay:
    """Applies the events of the images, in image order, to the counts and samples of an import."""

    def __init__(self, opt: ImportOptions, skips: SkipCounter, acc: _Samples) -> None:
        self.opt, self.skips, self.acc = opt, skips, acc
        self.ref_shape: tuple[int, ...] | None = None

    def apply(self, events: list[tuple]) -> None:
        """Apply one image's annotation or pixel events; raises at a bad item unless ``skip_bad``."""
        for ev in events:
            if ev[0] == "skip":
                self.skips.skip(BadItem(ev[1], ev[2]), ev[2])
            elif ev[0] == "shape":
                if self.opt.crop:
                    continue
                shape, img_path = ev[1], ev[2]
                self.ref_shape = self.ref_shape or shape
                if shape != self.ref_shape:  # the rest of this image is not imported
                    self.skips.skip(BadItem(
                        f"{img_path}: image is {shape[1]}x{shape[0]}, expected {self.ref_shape[1]}x"
                        f"{self.ref_shape[0]} like the others (images of mixed sizes: import crops instead of "
                        "using --no-crop)", "image of another size"), "image of another size")
                    return
            else:
                for key, value in ev[1].items():
                    getattr(self.acc, key).append(value)


class _PixelWorker:
    """A Ray actor's worker (:class:`~sim2real.ray_shards.ShardActor`): reads the pixels of a chunk of images."""

    def __init__(self, opt: ImportOptions) -> None:
        self.opt = opt

    def run(self, k: int, tasks: list[_ImageTask], files: _Bundle) -> list[list[tuple]]:
        """The pixel events of each image of chunk ``k``; without ``skip_bad``, none after the first bad item."""
        out = []
        for task in tasks:
            out.append(_read_pixels(task, self.opt, files))
            if not self.opt.skip_bad and any(ev[0] == "skip" for ev in out[-1]):
                break
        return out


def read_bop(root: str | Path, split: str, class_map: ClassMap | None = None,
             options: ImportOptions | None = None, ray: str | None = None, workers: int | None = None,
             shard_images: int = SHARD_IMAGES) -> ImportResult:
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
        ray: None (read here) or read the pixels on Ray actors, ``shard_images`` images per request: ``"auto"``
            (the local Ray cluster, or a new one) or a cluster's address (``ray://host:10001``, ``host:6379``).
            The result is the same as a local read's.
        workers: Ray actors (None: the cluster's CPUs); ignored without ``ray``.

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
    if shard_images < 1:
        raise Sim2RealError(f"shard_images {shard_images}: expected an integer >= 1")
    if ray is not None:
        from sim2real.ray_shards import require_ray

        require_ray()  # before any work: a missing extra is a one-line error
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
    info, info_path = read_models_info(root)
    skips = SkipCounter(opt.skip_bad)
    notes: list[str] = []
    acc = _Samples()
    replay = _Replay(opt, skips, acc)

    readers = []
    for scene_dir in scenes:
        try:
            readers.append(_SceneReader(scene_dir, cmap, info, info_path, opt))
        except BadItem as e:
            skips.skip(e, e.reason)
    images = [(reader, im_id) for reader in readers for im_id in sorted(reader.gts)]
    bar = progress(total=len(images), desc=f"import {split}", unit="img")
    try:
        if ray is None:
            for reader, im_id in images:
                bar.update(1)
                events, task = _plan_image(reader, im_id)
                replay.apply(events)
                if task is not None:
                    replay.apply(_read_pixels(task, opt))
        else:
            _read_on_ray(images, opt, replay, bar, ray, workers, shard_images)
    finally:
        bar.close()
    if not acc.rgb:
        raise Sim2RealError(f"{split_dir}: no instance was imported (check --min-visib and the class map; {skips.summary()})")
    arrays = _stack(acc, opt, notes)
    attach_models(arrays, root, cmap, info, notes)
    provenance = {"bop_root": str(root.resolve()), "split": split, "scenes": len(scenes),
                  "class_map": cmap.source, "obj_ids": {n: cmap.obj_id_of(i) for i, n in enumerate(cmap.names)}}
    return ImportResult(arrays, np.stack(acc.K).astype(np.float32), list(cmap.names), skips, notes, provenance)


def _cut_sample(rgb: np.ndarray, mask: np.ndarray | None, depth_mm: np.ndarray | None, K: np.ndarray,
                inst: _Instance, opt: ImportOptions) -> dict[str, Any]:
    """One instance's sample, cut (or kept): the :class:`_Samples` fields' values."""
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
    return {"rgb": rgb, "mask": mask, "depth": dep, "label": inst.label, "quat": quat_from_matrix(inst.R),
            "trans": inst.t_mm / MM_PER_M, "K": K}


def _read_on_ray(images: list[tuple[_SceneReader, int]], opt: ImportOptions, replay: _Replay, bar, ray: str,
                 workers: int | None, shard_images: int) -> None:
    """The Ray executor of :func:`read_bop`: annotations here, the pixels of chunks of ``shard_images`` images on
    Ray actors; every image's events are applied in image order, as soon as the chunks before it are back."""
    from sim2real import ray_shards

    plans = [_plan_image(reader, im_id) for reader, im_id in images]
    with_task = [i for i, (_, task) in enumerate(plans) if task is not None]
    chunks = [with_task[a:a + shard_images] for a in range(0, len(with_task), shard_images)]
    where = {i: (c, j) for c, chunk in enumerate(chunks) for j, i in enumerate(chunk)}  # image -> (chunk, slot)
    results: dict[int, list] = {}
    nxt = 0  # the next image to apply

    def advance() -> None:
        nonlocal nxt
        while nxt < len(plans):
            events, task = plans[nxt]
            if task is not None and where[nxt][0] not in results:
                return
            replay.apply(events)
            if task is not None:
                c, j = where[nxt]
                replay.apply(results[c][j])  # without skip_bad a chunk ends at its first bad item: raised here
                if j == len(chunks[c]) - 1:
                    del results[c]
            bar.update(1)
            nxt += 1

    if chunks:
        with ray_shards.session(ray, num_cpus=workers):
            pool = ray_shards.ShardPool(_PixelWorker, (opt,), ray_shards.actor_count(workers, len(chunks),
                                                                                     what="import actor"),
                                        what="import-bop chunk", retry_hint="rerun the import")

            def payload(c: int) -> tuple:
                tasks = [plans[i][1] for i in chunks[c]]
                return tasks, _bundle(tasks, opt)

            with contextlib.closing(pool.imap(list(range(len(chunks))), payload)) as done:
                for c, events in done:
                    results[c] = events
                    advance()
    advance()


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


def import_bop(root: str | Path, split: str, out: str | Path, class_map: ClassMap | None = None,
               options: ImportOptions | None = None, ray: str | None = None, workers: int | None = None,
               shard_images: int = SHARD_IMAGES) -> tuple[Path, ImportResult]:
    """Read a BOP split (:func:`read_bop`) and write it as a sim2real HDF5 file, atomically.

    The file gets the schema datasets plus ``K_per_sample`` (N, 3, 3) float32; attributes record the options
    (``config``), ``split``, ``provenance`` (root, class map, obj_ids) and ``skipped``.
    """
    opt = options or ImportOptions()
    res = read_bop(root, split, class_map, opt, ray=ray, workers=workers, shard_images=shard_images)
    config = {"source": "bop", **dataclasses.asdict(opt)}
    attrs = h5.make_attrs(opt.domain, config, 0, split=split, provenance=res.provenance, skipped=res.skips.total)
    out = Path(out)
    h5.write(out, res.arrays, attrs, class_names=res.class_names, extra={K_PER_SAMPLE: res.K_per_sample})
    return out, res
