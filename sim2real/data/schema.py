"""The sim2real HDF5 dataset contract, as code. The prose version is ``docs/schema.md``.

A file holds N samples of one image size (H, W) and C classes. Datasets (``N`` = samples):

=================  ===========  =========  ==========================================================
key                shape        dtype      meaning
=================  ===========  =========  ==========================================================
``rgb``            (N, H, W, 3) uint8      colour image (required)
``depth``          (N, H, W)    float32    z-depth in metres along the OpenCV optical axis; 0 = background
``mask``           (N, H, W)    bool       z-buffer foreground (``depth > 0`` where both exist)
``label``          (N,)         int64      class id in [0, C)
``quat``           (N, 4)       float32    R_m2c as a unit quaternion (w, x, y, z), w >= 0
``trans``          (N, 3)       float32    t_m2c in metres (OpenCV camera frame)
``K``              (3, 3)       float32    OpenCV intrinsics of the crop (shared by all samples)
``class_names``    (C,)         str        class id -> name (required when ``label`` exists)
``model_points``   (C, P, 3)    float32    points sampled on each model's surface, model frame, metres
``diameters``      (C,)         float32    model diameter (max pairwise vertex distance), metres
``extents``        (C, 3)       float32    model bounding-box size along x, y, z, metres
``symmetries``     ()           str        JSON list, one entry per class: null (no symmetry) or
                                           ``{"discrete": [4x4, m], "continuous": [{axis, offset m}]}``
                                           (:mod:`sim2real.symmetry`); absent = unknown (since 1.1)
=================  ===========  =========  ==========================================================

File attributes: ``schema_version``, ``sim2real_version``, ``domain`` (source | target | adapted),
``seed``, ``config`` (JSON of the resolved config that made the file), ``created`` (ISO time), and
optionally ``provenance`` (JSON), ``split``.
"""

from __future__ import annotations

import numpy as np

#: Version of the on-disk contract. Readers accept files with the same major version (1.0 files have no
#: ``symmetries``; 1.1 added it).
SCHEMA_VERSION = "1.1"

DOMAINS = ("source", "target", "adapted")

#: Per-sample datasets and their (trailing shape, dtype kind). Shapes use H, W from ``rgb``.
PER_SAMPLE = {
    "rgb": ("NHW3", np.uint8),
    "depth": ("NHW", np.float32),
    "mask": ("NHW", np.bool_),
    "label": ("N", np.int64),
    "quat": ("N4", np.float32),
    "trans": ("N3", np.float32),
}
#: Per-class datasets (``symmetries`` is one JSON string for all classes).
PER_CLASS = ("class_names", "model_points", "diameters", "extents", "symmetries")
#: All dataset keys a file may hold.
ALL_KEYS = tuple(PER_SAMPLE) + ("K",) + PER_CLASS

REQUIRED_ATTRS = ("schema_version", "sim2real_version", "domain", "seed", "config")

#: Tolerance on quaternion norms in files (they are stored as float32).
QUAT_NORM_TOL = 1e-3


def expected_shape(key: str, n: int, h: int, w: int) -> tuple[int, ...]:
    """The shape ``key`` must have in a file of ``n`` samples of size ``h`` x ``w``."""
    code = PER_SAMPLE[key][0]
    return {"NHW3": (n, h, w, 3), "NHW": (n, h, w), "N": (n,), "N4": (n, 4), "N3": (n, 3)}[code]


def major(version: str) -> int:
    return int(str(version).split(".")[0])
