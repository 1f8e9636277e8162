"""Inputs other than sim2real HDF5 files, read into :class:`~sim2real.data.h5.H5Data`.

* a sim2real HDF5 file (validated);
* a folder of images (png/jpg/jpeg/bmp), resized to a requested size, with an optional ``labels.csv``
  (columns ``file,label[,qw,qx,qy,qz]``; ``label`` is a class name or an integer id).
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np

from sim2real.data import h5
from sim2real.errors import Sim2RealError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


def list_images(folder: str | Path) -> list[Path]:
    """Image files in ``folder`` (not recursive), sorted by name."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def read_image(path: str | Path, size: tuple[int, int] | None) -> np.ndarray:
    """One image as uint8 (H, W, 3) RGB, resized (bilinear, antialiased) to ``size`` = (H, W) when given."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = im.convert("RGB")
            if size is not None and (im.height, im.width) != tuple(size):
                im = im.resize((size[1], size[0]), Image.BILINEAR, reducing_gap=None)
            return np.asarray(im, dtype=np.uint8)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise Sim2RealError(f"{path}: not a readable image (expected png/jpg)") from None


def read_image_folder(folder: str | Path, size: tuple[int, int] | None = None, class_names: list[str] | None = None,
                      skip_bad: bool = False) -> h5.H5Data:
    """Read a folder of images (and ``labels.csv`` if present) as a target-domain dataset.

    Args:
        folder: the folder.
        size: (H, W) to resize to; ``None`` requires all images to share one size.
        class_names: names for the labels in ``labels.csv`` (names in the CSV must be among them).
        skip_bad: skip unreadable images instead of failing (the count is stored in ``attrs['skipped']``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise Sim2RealError(f"{folder}: not a folder (expected a folder of png/jpg images)")
    files = list_images(folder)
    if not files:
        raise Sim2RealError(f"{folder}: contains no images (expected png/jpg/jpeg/bmp files)")
    images, kept, skipped = [], [], 0
    for p in files:
        try:
            img = read_image(p, size)
        except Sim2RealError:
            if not skip_bad:
                raise
            skipped += 1
            continue
        if images and img.shape != images[0].shape:
            raise Sim2RealError(f"{p}: image size {img.shape[1]}x{img.shape[0]} differs from {images[0].shape[1]}x{images[0].shape[0]} "
                                "(images of mixed sizes: give a target size)")
        images.append(img)
        kept.append(p)
    if not images:
        raise Sim2RealError(f"{folder}: no readable images")
    rgb = np.stack(images)
    data = h5.H5Data(path=str(folder), rgb=rgb, attrs={"domain": "target", "schema_version": "1.0",
                                                     "sim2real_version": "", "seed": 0, "config": json.dumps({"folder": str(folder)}),
                                                     "skipped": skipped})
    csv_path = folder / "labels.csv"
    if csv_path.exists():
        _attach_labels(data, csv_path, [p.name for p in kept], class_names)
    h5.validate_data(data)
    return data


def _attach_labels(data: h5.H5Data, csv_path: Path, names: list[str], class_names: list[str] | None) -> None:
    rows = {}
    try:
        with open(csv_path, newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or "file" not in reader.fieldnames or "label" not in reader.fieldnames:
                raise Sim2RealError(f"{csv_path}: expected a header with columns file,label[,qw,qx,qy,qz]")
            has_q = all(c in reader.fieldnames for c in ("qw", "qx", "qy", "qz"))
            for row in reader:
                rows[row["file"]] = row
    except (OSError, csv.Error, UnicodeDecodeError) as e:
        raise Sim2RealError(f"{csv_path}: cannot read labels CSV ({e})") from None
    missing = [n for n in names if n not in rows]
    if missing:
        raise Sim2RealError(f"{csv_path}: no row for image {missing[0]} ({len(missing)} images unlabelled)")
    raw = [rows[n]["label"] for n in names]
    if class_names is None:
        if all(r.strip().lstrip("-").isdigit() for r in raw):
            ids = [int(r) for r in raw]
            class_names = [str(i) for i in range(max(ids) + 1)]
        else:
            class_names = sorted(set(raw))
    labels = []
    for n, r in zip(names, raw):
        r = r.strip()
        if r in class_names:
            labels.append(class_names.index(r))
        elif r.lstrip("-").isdigit() and 0 <= int(r) < len(class_names):
            labels.append(int(r))
        else:
            raise Sim2RealError(f"{csv_path}: unknown class {r!r} for {n} (known: {', '.join(class_names)})")
    data.label = np.asarray(labels, dtype=np.int64)
    data.class_names = list(class_names)
    if has_q:
        from sim2real.conventions import canonical_quat

        try:
            q = np.array([[float(rows[n][c]) for c in ("qw", "qx", "qy", "qz")] for n in names])
            data.quat = canonical_quat(q).astype(np.float32)
        except ValueError:
            raise Sim2RealError(f"{csv_path}: qw,qx,qy,qz must be numbers (a non-zero quaternion per row)") from None


def load_any(path: str | Path, size: tuple[int, int] | None = None, class_names: list[str] | None = None,
             skip_bad: bool = False) -> h5.H5Data:
    """Load a dataset from a sim2real HDF5 file or a folder of images.

    An HDF5 file must already have the requested ``size`` (H, W): resizing labelled crops would silently change K.
    """
    p = Path(path)
    if p.is_dir():
        return read_image_folder(p, size=size, class_names=class_names, skip_bad=skip_bad)
    data = h5.read(p)
    if size is not None and data.image_size != tuple(size):
        raise Sim2RealError(f"{p}: images are {data.image_size[0]}x{data.image_size[1]}, expected {size[0]}x{size[1]} (size mismatch)")
    return data
