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

The package, one concern per module (everything public is re-exported here, so ``from sim2real.data.bop import X``
works for each of them)::

    format.py         constants (units, default crop size / fill / min_visib / depth scale, file names), JSON helpers,
                      the K_per_sample extension dataset
    classmap.py       ClassMap: BOP obj_id <-> sim2real class; map files, HDF5 class names, default names
    geometry.py       crop geometry: CropBox (crop_K: intrinsics of a crop), crop_box (the fill rule), resample
    object_models.py  the models/ folder: models_info.json, PLY models and symmetries, read and written
    importer.py       import-bop: read_bop (a split -> arrays), import_bop (-> HDF5)
    exporter.py       export-bop: export_bop (HDF5 -> one BOP scene + camera, models, class map)
"""

from sim2real.data.bop.classmap import ClassMap, default_class_map, load_class_map
from sim2real.data.bop.exporter import ExportResult, export_bop
from sim2real.data.bop.format import (CLASS_MAP_FILE, DEFAULT_DEPTH_SCALE, DEFAULT_FILL, DEFAULT_MIN_VISIB,
                                      DEFAULT_SIZE, EXPORT_INFO_FILE, K_PER_SAMPLE, MM_PER_M, MODEL_POINTS,
                                      read_K_per_sample)
from sim2real.data.bop.geometry import CropBox, crop_box, resample
from sim2real.data.bop.importer import BadItem, ImportOptions, ImportResult, import_bop, read_bop

__all__ = [
    "CLASS_MAP_FILE", "DEFAULT_DEPTH_SCALE", "DEFAULT_FILL", "DEFAULT_MIN_VISIB", "DEFAULT_SIZE", "EXPORT_INFO_FILE",
    "K_PER_SAMPLE", "MM_PER_M", "MODEL_POINTS",
    "BadItem", "ClassMap", "CropBox", "ExportResult", "ImportOptions", "ImportResult",
    "crop_box", "default_class_map", "export_bop", "import_bop", "load_class_map", "read_K_per_sample", "read_bop",
    "resample",
]
