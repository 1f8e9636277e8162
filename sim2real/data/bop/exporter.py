"""``export-bop``: a sim2real HDF5 file -> one BOP scene (``DIR/{split}/000000/``) plus camera, models, class map."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from sim2real.conventions import matrix_from_quat
from sim2real.data import h5
from sim2real.data.bop.format import (CLASS_MAP_FILE, DEFAULT_DEPTH_SCALE, EXPORT_INFO_FILE, K_PER_SAMPLE, MM_PER_M,
                                      _load_json, read_K_per_sample)
from sim2real.data.bop.object_models import models_info_of, write_ply_points
from sim2real.errors import Sim2RealError


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
    models_info = models_info_of(data)
    if models_info:
        (out_dir / "models").mkdir(exist_ok=True)
        _json_dump(out_dir / "models" / "models_info.json", {str(k): v for k, v in models_info.items()})
        if data.model_points is not None:
            for i in range(data.num_classes):
                write_ply_points(out_dir / "models" / f"obj_{i + 1:06d}.ply", data.model_points[i].astype(np.float64) * MM_PER_M)
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
