"""Summaries and picture grids of sim2real HDF5 files (``sim2real inspect``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from sim2real.data.h5 import H5Data


def summary(d: H5Data) -> str:
    """A human-readable multi-line summary: size, datasets, attributes, samples per class."""
    n = len(d)
    h, w = d.image_size
    keys = [k for k in ("rgb", "depth", "mask", "label", "quat", "trans", "K", "model_points", "diameters", "extents")
            if getattr(d, k) is not None]
    lines = [f"{d.path}: valid sim2real file, schema {d.attrs.get('schema_version')}, domain {d.attrs.get('domain')}",
             f"  samples: {n} of {h}x{w}; datasets: {', '.join(keys)}",
             f"  made by sim2real {d.attrs.get('sim2real_version')}, seed {d.attrs.get('seed')}, {d.attrs.get('created', '')}"]
    if d.K is not None:
        K = d.K
        lines.append(f"  K: fx={K[0, 0]:.2f} fy={K[1, 1]:.2f} cx={K[0, 2]:.2f} cy={K[1, 2]:.2f}")
    if d.label is not None:
        counts = np.bincount(d.label, minlength=d.num_classes)
        lines.append(f"  classes ({d.num_classes}):")
        for i, name in enumerate(d.class_names):
            extra = ""
            if d.diameters is not None:
                extra = f"  diameter {d.diameters[i] * 100:.1f} cm"
            sym = d.symmetries[i] if d.symmetries is not None else None
            if sym is not None:
                kinds = [f"continuous about {c.axis.round(3).tolist()}" for c in sym.continuous]
                kinds += [f"{len(sym.discrete)} discrete"] if len(sym.discrete) else []
                extra += f"  symmetric: {', '.join(kinds)}"
            lines.append(f"    {i:3d} {name:<20s} {counts[i]:7d} samples{extra}")
    else:
        lines.append("  unlabelled")
    if d.mask is not None:
        lines.append(f"  foreground: {d.mask.mean() * 100:.1f}% of pixels")
    if d.depth is not None and (d.depth > 0).any():
        fg = d.depth[d.depth > 0]
        lines.append(f"  depth: {fg.min():.3f} .. {fg.max():.3f} m on the foreground")
    return "\n".join(lines)


def _depth_image(depth: np.ndarray) -> np.ndarray:
    """(H, W) metres -> (H, W, 3) uint8: near bright, far dark, background black."""
    out = np.zeros(depth.shape + (3,), np.uint8)
    fg = depth > 0
    if fg.any():
        lo, hi = depth[fg].min(), depth[fg].max()
        v = 1.0 - (depth - lo) / max(hi - lo, 1e-6)
        grey = (55 + 200 * v).clip(0, 255).astype(np.uint8)
        out[fg] = np.stack([grey] * 3, -1)[fg]
    return out


def grid(d: H5Data, path: str | Path, count: int = 16, scale: int | None = None, seed: int = 0) -> Path:
    """Write a PNG grid: per sample a tile ``rgb | mask | depth`` (as present), ``count`` samples spread over the classes."""
    from PIL import Image, ImageDraw

    n = len(d)
    if d.label is not None:  # round-robin over classes so every class shows
        by_class = [np.flatnonzero(d.label == c) for c in range(d.num_classes)]
        idx = []
        k = 0
        while len(idx) < min(count, n):
            for ids in by_class:
                if k < len(ids) and len(idx) < count:
                    idx.append(int(ids[k]))
            k += 1
    else:
        idx = list(np.random.default_rng(seed).choice(n, size=min(count, n), replace=False))
    h, w = d.image_size
    scale = scale or max(1, 128 // max(h, w))
    tiles = []
    for i in idx:
        parts = [d.rgb[i]]
        if d.mask is not None:
            parts.append(np.stack([d.mask[i].astype(np.uint8) * 255] * 3, -1))
        if d.depth is not None:
            parts.append(_depth_image(d.depth[i]))
        tile = np.concatenate([np.pad(p, ((0, 0), (0, 2), (0, 0)), constant_values=40) for p in parts], axis=1)
        tile = np.asarray(Image.fromarray(tile).resize((tile.shape[1] * scale, tile.shape[0] * scale), Image.NEAREST))
        label_h = 14
        canvas = Image.new("RGB", (tile.shape[1], tile.shape[0] + label_h), (25, 25, 25))
        canvas.paste(Image.fromarray(tile), (0, label_h))
        text = f"#{i}"
        if d.label is not None:
            text += f" {d.class_names[d.label[i]]}"
        ImageDraw.Draw(canvas).text((2, 1), text, fill=(230, 230, 230))
        tiles.append(np.asarray(canvas))
    cols = 4 if len(tiles) >= 4 else len(tiles)
    rows = (len(tiles) + cols - 1) // cols
    th, tw = tiles[0].shape[:2]
    sheet = np.full((rows * (th + 4), cols * (tw + 4), 3), 15, np.uint8)
    for k, t in enumerate(tiles):
        r, c = divmod(k, cols)
        sheet[r * (th + 4):r * (th + 4) + th, c * (tw + 4):c * (tw + 4) + tw] = t
    from sim2real.utils import atomic_path

    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(sheet).save(tmp, format="PNG")
    return path


#: File attributes that legitimately differ between two runs of the same job (wall-clock time of writing).
VOLATILE_ATTRS = ("created",)


def compare(a_path: str | Path, b_path: str | Path) -> tuple[bool, list[str]]:
    """Compare two sim2real HDF5 files array by array, bit for bit (``sim2real inspect A --compare B``).

    Every dataset (schema and extension ones) must have the same shape, dtype and bytes, and every attribute but
    :data:`VOLATILE_ATTRS` the same value. The files' bytes may still differ (creation time, HDF5 layout).

    Returns:
        ``(identical, lines)``: whether the arrays and attributes agree, and one line per difference (or a
        one-line summary when they agree).
    """
    from sim2real.data.h5 import _open

    diffs: list[str] = []
    with _open(a_path) as fa, _open(b_path) as fb:
        keys_a, keys_b = set(fa.keys()), set(fb.keys())
        for k in sorted(keys_a ^ keys_b):
            diffs.append(f"dataset {k!r} only in {a_path if k in keys_a else b_path}")
        same = sorted(keys_a & keys_b)
        for k in same:
            x, y = np.asarray(fa[k][()]), np.asarray(fb[k][()])  # a scalar string (symmetries JSON) reads as bytes
            if x.shape != y.shape or x.dtype != y.dtype:
                diffs.append(f"dataset {k!r}: {x.dtype} {x.shape} vs {y.dtype} {y.shape}")
            elif x.dtype.kind == "O":  # strings (class_names): compare the values, not the object pointers
                if x.tolist() != y.tolist():
                    diffs.append(f"dataset {k!r}: values differ")
            elif np.ascontiguousarray(x).tobytes() != np.ascontiguousarray(y).tobytes():
                diffs.append(f"dataset {k!r}: values differ ({int(np.sum(x != y))} of {x.size} elements)")
        attrs_a, attrs_b = dict(fa.attrs), dict(fb.attrs)
        for k in sorted(set(attrs_a) | set(attrs_b)):
            if k in VOLATILE_ATTRS:
                continue
            va, vb = attrs_a.get(k), attrs_b.get(k)
            if not np.array_equal(np.asarray(va, dtype=object), np.asarray(vb, dtype=object)):
                diffs.append(f"attribute {k!r} differs")
    if diffs:
        return False, diffs
    return True, [f"{a_path} and {b_path}: identical arrays ({len(same)} datasets, bit for bit) and attributes "
                  f"(ignoring {', '.join(VOLATILE_ATTRS)})"]
