"""Real photographs for backgrounds and target-domain textures, from a folder or installed packages.

Sources (no download at run time):

* a folder path: every png/jpg in it (recursively);
* ``"skimage"``: scikit-image's bundled photos (astronaut, chelsea, coffee, rocket, ...);
* ``"sklearn"``: scikit-learn's ``load_sample_images`` (china, flower);
* ``"debian"``: Debian wallpaper packages (``mate-backgrounds``, ``plasma-workspace-wallpapers``) if installed;
* ``"auto"``: all installed package sources that are available.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sim2real.errors import Sim2RealError

#: scikit-image's bundled photographs (its non-photographic images, e.g. the colour wheel or microscopy, are left out).
SKIMAGE_PHOTOS = ("astronaut", "chelsea", "coffee", "rocket", "brick", "grass", "gravel", "stereo_motorcycle")
DEBIAN_DIRS = ("/usr/share/backgrounds/mate/nature", "/usr/share/wallpapers")
MAX_SIDE = 512


def _shrink(img: np.ndarray) -> np.ndarray:
    from PIL import Image

    h, w = img.shape[:2]
    s = MAX_SIDE / max(h, w)
    if s >= 1:
        return img
    return np.asarray(Image.fromarray(img).resize((max(1, int(w * s)), max(1, int(h * s))), Image.BILINEAR))


def _rgb(img: np.ndarray) -> np.ndarray | None:
    img = np.asarray(img)
    if img.dtype != np.uint8:
        if img.dtype.kind == "f":
            img = (np.clip(img, 0, 1) * 255).astype(np.uint8)
        else:
            return None
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    if img.ndim != 3 or img.shape[2] < 3 or min(img.shape[:2]) < 32:
        return None
    return np.ascontiguousarray(img[..., :3])


def _from_folder(folder: Path) -> list[np.ndarray]:
    from PIL import Image, UnidentifiedImageError

    out = []
    for p in sorted(folder.rglob("*")):
        if p.suffix.lower() not in (".png", ".jpg", ".jpeg"):
            continue
        try:
            with Image.open(p) as im:
                im.draft("RGB", (MAX_SIDE, MAX_SIDE))
                img = _rgb(np.asarray(im.convert("RGB")))
        except (UnidentifiedImageError, OSError):
            continue
        if img is not None:
            out.append(_shrink(img))
    return out


def _from_skimage() -> list[np.ndarray]:
    try:
        import skimage.data as skd
    except ImportError:
        return []
    out = []
    for name in SKIMAGE_PHOTOS:
        fn = getattr(skd, name, None)
        if fn is None:
            continue
        try:
            img = fn()
        except Exception:  # a photo missing from this scikit-image build
            continue
        if isinstance(img, tuple):
            img = img[0]
        img = _rgb(img)
        if img is not None:
            out.append(_shrink(img))
    return out


def _from_sklearn() -> list[np.ndarray]:
    try:
        from sklearn.datasets import load_sample_images
    except ImportError:
        return []
    return [_shrink(_rgb(x)) for x in load_sample_images().images]


def _from_debian() -> list[np.ndarray]:
    out = []
    for d in DEBIAN_DIRS:
        if Path(d).is_dir():
            out.extend(_from_folder(Path(d)))
    return out


_CACHE: dict[str, list[np.ndarray]] = {}


def load_photos(source: str | Path = "auto") -> list[np.ndarray]:
    """Photos as uint8 (H, W, 3) arrays (longest side at most 512 px), in a stable order.

    Raises:
        Sim2RealError: the source is an unknown name, a missing folder, or yields no photo.
    """
    key = str(source)
    if key in _CACHE:
        return _CACHE[key]
    if key == "skimage":
        photos = _from_skimage()
    elif key == "sklearn":
        photos = _from_sklearn()
    elif key == "debian":
        photos = _from_debian()
    elif key == "auto":
        photos = _from_skimage() + _from_sklearn() + _from_debian()
    else:
        folder = Path(key)
        if not folder.is_dir():
            raise Sim2RealError(f"{folder}: photo source is neither a folder nor one of auto, skimage, sklearn, debian")
        photos = _from_folder(folder)
    if not photos:
        hint = " (install scikit-image: pip install scikit-image)" if key in ("auto", "skimage") else ""
        raise Sim2RealError(f"{key}: no usable photos found (expected png/jpg photos of at least 32x32){hint}")
    _CACHE[key] = photos
    return photos


def random_crop(photo: np.ndarray, size: tuple[int, int], rng: np.random.Generator, min_scale: float = 0.3) -> np.ndarray:
    """A random square-ish crop of ``photo`` resized to ``size`` = (H, W), uint8 (H, W, 3)."""
    from PIL import Image

    h, w = photo.shape[:2]
    side = int(rng.uniform(min_scale, 1.0) * min(h, w))
    side = max(side, 8)
    y = int(rng.integers(0, h - side + 1))
    x = int(rng.integers(0, w - side + 1))
    crop = photo[y:y + side, x:x + side]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    return np.asarray(Image.fromarray(np.ascontiguousarray(crop)).resize((size[1], size[0]), Image.BILINEAR))
