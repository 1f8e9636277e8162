"""BOP format constants and the small readers shared by import and export (one-line errors).

Units: BOP stores translations, model coordinates and depth in **millimetres**, sim2real in **metres**
(:data:`MM_PER_M`). ``K_per_sample`` is sim2real's extension dataset for crops with their own intrinsics.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

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


def read_K_per_sample(path: str | Path) -> np.ndarray | None:
    """The ``K_per_sample`` (N, 3, 3) extension dataset of a file written by :func:`import_bop`, if any."""
    import h5py

    with h5py.File(path, "r") as f:
        return f[K_PER_SAMPLE][()] if K_PER_SAMPLE in f else None
