"""Inputs other than sim2real HDF5 files, read into :class:`~sim2real.data.h5.H5Data`.

``adapt`` and ``evaluate`` accept, through :func:`load_any`:

* a sim2real HDF5 file (validated against :mod:`sim2real.data.schema`);
* a folder of images (png/jpg/jpeg/bmp, not recursive, sorted by name), fitted to a requested size (centre crop
  to its aspect, then resize: never stretched), with an
  optional ``labels.csv`` beside them (columns ``file,label[,qw,qx,qy,qz]``; ``label`` is a class name or an
  integer id; the quaternion is R_m2c as (w, x, y, z), any sign and norm: it is canonicalised).

A BOP dataset folder is not read here: ``sim2real import-bop`` turns it into an HDF5 file first
(:mod:`sim2real.data.bop`), so crops are cut once, with their own intrinsics recorded.
The formats are described in ``docs/data-formats.md``.
"""

from __future__ import annotations

import collections
import csv
from pathlib import Path

import numpy as np

from sim2real.data import h5
from sim2real.errors import Sim2RealError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
LABELS_CSV = "labels.csv"
QUAT_COLUMNS = ("qw", "qx", "qy", "qz")


class SkipCounter:
    """Counts items skipped under ``--skip-bad``, by reason, and keeps the first message as an example.

    Readers call :meth:`skip` with the :class:`Sim2RealError` they would have raised; when skipping is off it is
    re-raised, so "fail on the first bad item" and "skip and count" share one code path.
    """

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.by_reason: collections.Counter[str] = collections.Counter()
        self.first: str | None = None

    def skip(self, error: Sim2RealError, reason: str) -> None:
        """Record a skipped item, or raise ``error`` when skipping is off."""
        if not self.enabled:
            raise error
        self.by_reason[reason] += 1
        if self.first is None:
            self.first = str(error)

    @property
    def total(self) -> int:
        return int(sum(self.by_reason.values()))

    def summary(self) -> str:
        """One line, e.g. ``"skipped 3 bad items (2 unreadable image, 1 unknown obj_id); first: a.png: ..."``."""
        if not self.total:
            return "skipped 0 bad items"
        parts = ", ".join(f"{n} {r}" for r, n in sorted(self.by_reason.items()))
        return f"skipped {self.total} bad item{'s' if self.total != 1 else ''} ({parts}); first: {self.first}"


def list_images(folder: str | Path) -> list[Path]:
    """Image files in ``folder`` (not recursive, hidden files ignored), sorted by name."""
    folder = Path(folder)
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and not p.name.startswith("."))


def image_size_of(path: str | Path) -> tuple[int, int]:
    """(H, W) of an image file, read from its header only (after EXIF rotation)."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            w, h = im.size
            orientation = im.getexif().get(0x0112, 1)  # EXIF orientation 5..8 swap width and height
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise Sim2RealError(f"{path}: not a readable image (expected png/jpg)") from None
    return (w, h) if orientation in (5, 6, 7, 8) else (h, w)


def read_image(path: str | Path, size: tuple[int, int] | None) -> np.ndarray:
    """One image as uint8 ``(H, W, 3)`` RGB, upright (EXIF orientation applied), fitted to ``size`` = (H, W).

    An image of another size keeps its aspect ratio: the largest centred box of the target's aspect is cut out
    (centre crop), then resized, bilinear with antialiasing (PIL widens the filter when shrinking). Nothing is
    stretched. Grey, palette and RGBA images are converted to RGB (alpha dropped).
    """
    return _read_image(path, size)[0]


def _centre_box(w: int, h: int, size: tuple[int, int]) -> tuple[int, int, int, int]:
    """(left, top, right, bottom) of the largest centred box of ``size``'s aspect (H, W) inside a w x h image."""
    th, tw = size
    if w * th > h * tw:  # wider than the target: cut the sides
        cw = max(1, round(h * tw / th))
        left = (w - cw) // 2
        return left, 0, left + cw, h
    ch = max(1, round(w * th / tw))
    top = (h - ch) // 2
    return 0, top, w, top + ch


def _read_image(path: str | Path, size: tuple[int, int] | None) -> tuple[np.ndarray, bool]:
    """:func:`read_image` and whether the image had to be resized (or cropped) to ``size``."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            im = im.convert("RGB")
            resized = size is not None and (im.height, im.width) != tuple(size)
            if resized:
                box = _centre_box(im.width, im.height, size)
                im = im.resize((size[1], size[0]), Image.BILINEAR, box=box, reducing_gap=None)
            return np.asarray(im, dtype=np.uint8), resized
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError):
        raise Sim2RealError(f"{path}: not a readable image (expected png/jpg)") from None


def read_image_folder(folder: str | Path, size: tuple[int, int] | None = None, class_names: list[str] | None = None,
                      skip_bad: bool = False, labels_csv: str | Path | None = None) -> h5.H5Data:
    """Read a folder of images (and its labels CSV if present) as a target-domain dataset.

    Args:
        folder: the folder; every png/jpg/jpeg/bmp directly inside it is one sample (sorted by file name).
        size: (H, W) to fit every image to (centre crop to that aspect, then resize; counted in
            ``attrs["resized"]``, described in ``attrs["resized_summary"]``); ``None`` keeps the files' size, which
            must then be the same for all.
        class_names: class id -> name; labels in the CSV must be among these names (or ids in range). ``None``:
            integer labels give names ``"0".."max"``, otherwise the sorted distinct names.
        skip_bad: skip unreadable images, images of another size (when ``size`` is None) and images without a
            CSV row, instead of failing; the count is in ``attrs["skipped"]`` and the summary in
            ``attrs["skipped_summary"]``.
        labels_csv: the labels file (default ``folder/labels.csv`` if it exists).

    Returns:
        :class:`H5Data` with ``rgb`` (N, H, W, 3) uint8, and ``label``/``class_names`` (and ``quat`` (N, 4) wxyz,
        canonical) when the CSV has them; ``domain="target"``.

    Raises:
        Sim2RealError: one line naming the file at the first bad item (unless ``skip_bad``).
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise Sim2RealError(f"{folder}: not a folder (expected a folder of png/jpg images)")
    files = list_images(folder)
    if not files:
        raise Sim2RealError(f"{folder}: contains no images (expected png/jpg/jpeg/bmp files)")
    skips = SkipCounter(skip_bad)
    csv_path = Path(labels_csv) if labels_csv is not None else folder / LABELS_CSV
    if labels_csv is not None and not csv_path.is_file():
        raise Sim2RealError(f"{csv_path}: labels file not found (expected a CSV with columns file,label[,qw,qx,qy,qz])")
    rows, has_q = _read_labels_csv(csv_path) if csv_path.is_file() else (None, False)
    if rows is not None:
        kept_files = []
        for p in files:
            if p.name in rows:
                kept_files.append(p)
            else:
                skips.skip(Sim2RealError(f"{csv_path}: no row for image {p.name} (every image needs a label)"), "unlabelled image")
        files = kept_files

    if size is None:
        files = _same_size(files, skips)
    images, kept, n_resized = [], [], 0
    for p in files:
        try:
            img, resized = _read_image(p, size)
        except Sim2RealError as e:
            skips.skip(e, "unreadable image")
            continue
        images.append(img)
        n_resized += int(resized)
        kept.append(p)
    if not images:
        raise Sim2RealError(f"{folder}: no readable images ({skips.summary()})")
    # An image whose header and pixels disagree on the size would break np.stack: check, do not trust.
    ref = images[0].shape
    for p, img in zip(kept, images):
        if img.shape != ref:
            raise Sim2RealError(f"{p}: image is {img.shape[1]}x{img.shape[0]}, expected {ref[1]}x{ref[0]} like the others")
    config = {"source": "image-folder", "folder": str(folder), "size": list(size) if size else None,
              "labels_csv": str(csv_path) if rows is not None else None, "skip_bad": skip_bad}
    resized_summary = (f"{n_resized} of {len(images)} images were not {size[0]}x{size[1]} (HxW) and were centre-cropped "
                       "to that aspect and resized" if n_resized else "")
    attrs = h5.make_attrs("target", config, 0, skipped=skips.total, skipped_summary=skips.summary(),
                          resized=n_resized, resized_summary=resized_summary)
    data = h5.H5Data(path=str(folder), rgb=np.stack(images), attrs=attrs)
    if rows is not None:
        _attach_labels(data, csv_path, rows, has_q, [p.name for p in kept], class_names)
    h5.validate_data(data)
    return data


def _same_size(files: list[Path], skips: SkipCounter) -> list[Path]:
    """Keep the images that share one size (from their headers); others are errors or skipped.

    Without skipping, the reference is the first readable image, so the error names the first odd file;
    with skipping it is the most common size, so one odd image does not discard the rest.
    """
    sizes: dict[Path, tuple[int, int]] = {}
    for p in files:
        try:
            sizes[p] = image_size_of(p)
        except Sim2RealError as e:
            skips.skip(e, "unreadable image")
    if not sizes:
        return []
    if skips.enabled:
        ref = collections.Counter(sizes.values()).most_common(1)[0][0]
    else:
        ref = next(iter(sizes.values()))
    out = []
    for p, hw in sizes.items():
        if hw == ref:
            out.append(p)
        else:
            skips.skip(Sim2RealError(f"{p}: image is {hw[1]}x{hw[0]}, expected {ref[1]}x{ref[0]} like the others "
                                     "(images of mixed sizes: give a target size)"), "image of another size")
    return out


def _read_labels_csv(csv_path: Path) -> tuple[dict[str, dict], bool]:
    """Rows of a labels CSV keyed by file name, and whether it has the quaternion columns."""
    rows: dict[str, dict] = {}
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            fields = [c.strip() for c in (reader.fieldnames or [])]
            if "file" not in fields or "label" not in fields:
                raise Sim2RealError(f"{csv_path}: expected a header with columns file,label[,qw,qx,qy,qz]")
            reader.fieldnames = fields
            q_cols = [c for c in QUAT_COLUMNS if c in fields]
            if q_cols and len(q_cols) != 4:
                raise Sim2RealError(f"{csv_path}: has {','.join(q_cols)} but not all of qw,qx,qy,qz")
            first_line: dict[str, int] = {}
            for row in reader:
                name = (row.get("file") or "").strip()
                if not name:
                    continue
                key = Path(name).name
                if key in rows:
                    # the same row twice is harmless; two different labels for one image is a mistake to report
                    if _row_values(rows[key], q_cols) != _row_values(row, q_cols):
                        raise Sim2RealError(
                            f"{csv_path}: {key} has conflicting rows (line {first_line[key]}: "
                            f"{','.join(_row_values(rows[key], q_cols))}; line {reader.line_num}: "
                            f"{','.join(_row_values(row, q_cols))}); keep one label per image")
                    continue
                rows[key] = row
                first_line[key] = reader.line_num
    except (OSError, csv.Error, UnicodeDecodeError) as e:
        raise Sim2RealError(f"{csv_path}: cannot read labels CSV ({e})") from None
    return rows, bool(q_cols)


def _row_values(row: dict, q_cols: list[str]) -> list[str]:
    """The label (and quaternion) of a CSV row as stripped strings, for comparing duplicate rows."""
    return [(row.get(c) or "").strip() for c in ["label", *q_cols]]


def _attach_labels(data: h5.H5Data, csv_path: Path, rows: dict[str, dict], has_q: bool, names: list[str],
                   class_names: list[str] | None) -> None:
    raw = [(rows[n]["label"] or "").strip() for n in names]
    if class_names is None:
        if all(r.lstrip("-").isdigit() for r in raw):
            ids = [int(r) for r in raw]
            class_names = [str(i) for i in range(max(ids) + 1)]
        else:
            class_names = sorted(set(raw))
    labels = []
    for n, r in zip(names, raw):
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

        q = np.zeros((len(names), 4))
        for i, n in enumerate(names):
            try:
                q[i] = [float(rows[n][c]) for c in QUAT_COLUMNS]
            except (TypeError, ValueError):
                raise Sim2RealError(f"{csv_path}: row {n}: qw,qx,qy,qz must be numbers") from None
            if not np.all(np.isfinite(q[i])) or np.linalg.norm(q[i]) < 1e-9:
                raise Sim2RealError(f"{csv_path}: row {n}: qw,qx,qy,qz must be a finite, non-zero quaternion")
        data.quat = canonical_quat(q).astype(np.float32)


def looks_like_bop(folder: Path) -> bool:
    """True for a BOP dataset root or split/scene folder (which must go through ``sim2real import-bop``)."""
    if (folder / "scene_gt.json").is_file() or (folder / "models" / "models_info.json").is_file():
        return True
    return any((d / "scene_gt.json").is_file() for d in folder.iterdir() if d.is_dir())


def load_any(path: str | Path, size: tuple[int, int] | None = None, class_names: list[str] | None = None,
             skip_bad: bool = False) -> h5.H5Data:
    """Load a dataset from a sim2real HDF5 file or a folder of images (with an optional ``labels.csv``).

    Args:
        path: an ``.h5`` file or a folder of images.
        size: (H, W) the caller needs. Folders are resized to it; an HDF5 file must already have it, because
            resizing labelled crops would silently change their intrinsics.
        class_names: the caller's class names (for a labels CSV); see :func:`read_image_folder`.
        skip_bad: skip bad images in a folder (counted in ``attrs["skipped"]``).

    Raises:
        Sim2RealError: missing path, unreadable data, size mismatch, or a BOP folder (import it first).
    """
    p = Path(path)
    if p.is_dir():
        if looks_like_bop(p):
            raise Sim2RealError(f"{p}: looks like a BOP dataset; convert it first with "
                                f"'sim2real import-bop {p} --split NAME -o target.h5'")
        return read_image_folder(p, size=size, class_names=class_names, skip_bad=skip_bad)
    if not p.exists():
        raise Sim2RealError(f"{p}: not found (expected a sim2real HDF5 file or a folder of png/jpg images)")
    data = h5.read(p)
    if size is not None and data.image_size != tuple(size):
        raise Sim2RealError(f"{p}: images are {data.image_size[0]}x{data.image_size[1]}, expected {size[0]}x{size[1]} (size mismatch)")
    return data
