"""Tiny synthetic datasets for tests and examples (no rendering, no GPU).

:func:`make_synthetic` draws one filled disc/square per sample whose colour depends on the class and whose
shading depends on the pose, so a small network can learn both. Masks, depth and poses are consistent
with the schema (depth > 0 exactly on the mask; unit quaternions, w >= 0).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sim2real.conventions import canonical_quat, intrinsics_from_fov
from sim2real.data import h5

_COLOURS = np.array([[220, 40, 40], [40, 200, 60], [50, 80, 230], [230, 200, 40], [200, 60, 220], [40, 210, 210]])


def synthetic_arrays(n: int = 32, size: int = 16, num_classes: int = 3, seed: int = 0, domain: str = "source",
                     depth: bool = True) -> dict[str, np.ndarray]:
    """Per-sample arrays of a synthetic dataset (see module doc). ``domain="target"`` shifts colours and adds noise."""
    rng = np.random.default_rng(seed)
    label = np.arange(n) % num_classes
    quat = canonical_quat(rng.normal(size=(n, 4))).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size]
    rgb = np.zeros((n, size, size, 3), np.uint8)
    mask = np.zeros((n, size, size), bool)
    dep = np.zeros((n, size, size), np.float32)
    c = (size - 1) / 2
    for i in range(n):
        r = size * (0.25 + 0.1 * abs(quat[i, 1]))
        if label[i] % 2 == 0:
            m = (yy - c) ** 2 + (xx - c) ** 2 <= r * r
        else:
            m = (np.abs(yy - c) <= r * 0.8) & (np.abs(xx - c) <= r * 0.8)
        shade = 0.5 + 0.5 * abs(quat[i, 2]) * (xx / size)
        col = _COLOURS[label[i] % len(_COLOURS)] * shade[..., None]
        if domain != "source":
            col = col * 0.7 + 50
        img = np.where(m[..., None], col, 0.0)
        if domain != "source":
            img = img + rng.normal(0, 12, img.shape) + np.array([30, 20, 10])
        rgb[i] = np.clip(img, 0, 255).astype(np.uint8)
        mask[i] = m
        dep[i] = np.where(m, 0.5 + 0.01 * (xx - c) / size, 0.0)
    out = {"rgb": rgb, "label": label.astype(np.int64), "quat": quat,
           "trans": np.tile(np.array([0, 0, 0.5], np.float32), (n, 1)),
           "K": intrinsics_from_fov(30.0, size, size).astype(np.float32)}
    if depth:
        out["depth"] = dep
        out["mask"] = mask
    return out


def make_synthetic(path: str | Path, n: int = 32, size: int = 16, num_classes: int = 3, seed: int = 0,
                   domain: str = "source", depth: bool = True, labels: bool = True) -> Path:
    """Write a synthetic sim2real HDF5 file and return its path."""
    arrays = synthetic_arrays(n, size, num_classes, seed, domain, depth)
    names = [f"class{i}" for i in range(num_classes)]
    pts = np.random.default_rng(seed + 1).uniform(-0.05, 0.05, size=(num_classes, 64, 3)).astype(np.float32)
    arrays["model_points"] = pts
    arrays["diameters"] = np.full(num_classes, 0.1 * np.sqrt(3), np.float32)
    arrays["extents"] = np.full((num_classes, 3), 0.1, np.float32)
    if not labels:
        for k in ("label", "quat", "trans", "model_points", "diameters", "extents"):
            arrays.pop(k)
        names = None
    attrs = h5.make_attrs(domain, {"synthetic": True, "n": n, "size": size}, seed)
    return h5.write(path, arrays, attrs, class_names=names)
