"""Object-centred crop geometry: the crop box of an instance, the intrinsics of a crop, and resampling.

Crops follow Cropped LineMod (Wohlhart & Lepetit 2015, used by PixelDA): a square crop centred on the projection
of the model origin ``t_m2c``, sized by the fill rule of :mod:`sim2real.conventions`
(:func:`~sim2real.conventions.fill_side_px`): the object's diameter at its depth spans ``fill`` of the side. The
window and the crop's intrinsics are :func:`~sim2real.conventions.crop_window` and
:func:`~sim2real.conventions.crop_intrinsics`; this module adds the box type and the resampling.
OpenCV pixel coordinates throughout: pixel ``i`` spans ``[i - 0.5, i + 0.5]``.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np

from sim2real.conventions import crop_intrinsics, crop_window


@dataclasses.dataclass(frozen=True)
class CropBox:
    """An axis-aligned crop of a full image, resampled to ``size`` x ``size``.

    ``x0, y0`` is the crop's top-left *edge* in OpenCV pixel coordinates (pixel i spans [i - 0.5, i + 0.5]),
    ``wx, wy`` its width and height in full-image pixels (not necessarily integers).
    """

    x0: float
    y0: float
    wx: float
    wy: float
    size: int

    def crop_K(self, K: np.ndarray) -> np.ndarray:
        """Intrinsics of the crop (:func:`~sim2real.conventions.crop_intrinsics`): shift by the crop's edge,
        scale by size / side."""
        return crop_intrinsics(K, self.x0, self.y0, self.wx, self.wy, self.size)


def crop_box(K: np.ndarray, t_mm: np.ndarray, diameter_mm: float, size: int, fill: float) -> CropBox:
    """The object-centred crop of Cropped LineMod: centred on the projection of the model origin ``t_m2c``,
    with the object's diameter at its distance spanning ``fill`` of the side: ``side = f * diameter / (fill * t_z)``
    (per axis, so the crop stays square in the object's extent when fx != fy). The side is
    :func:`~sim2real.conventions.fill_side_px`, the rule ``render`` places objects by; the window is
    :func:`~sim2real.conventions.crop_window`.

    Args:
        K: (3, 3) intrinsics of the full image. t_mm: (3,) t_m2c (any unit, same as ``diameter_mm``).
        size: output side in pixels. fill: in (0, 2].
    """
    x0, y0, wx, wy = crop_window(K, t_mm, diameter_mm, fill)
    return CropBox(x0, y0, wx, wy, size)


def resample(img: np.ndarray, box: CropBox, nearest: bool) -> np.ndarray:
    """Cut ``box`` out of ``img`` and resize it to ``box.size`` squared; outside the image is 0 (black / no depth).

    Args:
        img: (H, W, 3) uint8, (H, W) float32 depth or (H, W) bool mask.
        nearest: nearest-neighbour (depth, masks) instead of antialiased bilinear (colour).

    PIL's resize with a float ``box`` samples output pixel j at ``box_left + (j + 0.5) * scale`` in PIL coordinates
    (pixel i spans [i, i + 1]), i.e. at ``x0 + (j + 0.5) / s`` in OpenCV coordinates: exactly :meth:`CropBox.crop_K`.
    PIL needs the box inside the image, so the region (plus a filter margin) is first copied onto a zero canvas.
    """
    from PIL import Image

    h, w = img.shape[:2]
    scale = max(box.wx, box.wy) / box.size
    margin = int(math.ceil(scale)) + 2
    bx0, by0 = box.x0 + 0.5, box.y0 + 0.5  # PIL coordinates
    bx1, by1 = bx0 + box.wx, by0 + box.wy
    ix0, iy0 = int(math.floor(bx0)) - margin, int(math.floor(by0)) - margin
    ix1, iy1 = int(math.ceil(bx1)) + margin, int(math.ceil(by1)) + margin
    src = img.astype(np.uint8) * 255 if img.dtype == np.bool_ else img
    canvas = np.zeros((iy1 - iy0, ix1 - ix0) + src.shape[2:], dtype=src.dtype)
    sx0, sy0, sx1, sy1 = max(ix0, 0), max(iy0, 0), min(ix1, w), min(iy1, h)
    if sx1 > sx0 and sy1 > sy0:
        canvas[sy0 - iy0:sy1 - iy0, sx0 - ix0:sx1 - ix0] = src[sy0:sy1, sx0:sx1]
    pil = Image.fromarray(canvas.astype(np.float32) if canvas.dtype.kind == "f" else canvas)
    out = pil.resize((box.size, box.size), Image.NEAREST if nearest else Image.BILINEAR,
                     box=(bx0 - ix0, by0 - iy0, bx1 - ix0, by1 - iy0), reducing_gap=None)
    arr = np.asarray(out)
    return arr > 127 if img.dtype == np.bool_ else arr.astype(img.dtype)
