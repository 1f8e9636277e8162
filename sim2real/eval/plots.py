"""Report figures as PNG bytes (matplotlib, Agg backend: no display needed).

Every function returns the encoded PNG; :mod:`sim2real.eval.report` writes it to a file and embeds it in HTML.
"""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np

#: Colours for models in overlaid plots (colour-blind-safe Okabe-Ito palette).
PALETTE = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000")
#: The constant-rotation ("chance") baseline in angle-error plots: grey, drawn under the models.
CHANCE_COLOUR = "#7f7f7f"
CHANCE_LABEL = "chance (constant rotation)"


def _figure(w: float, h: float):
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    # constrained layout sizes the margins while drawing: one draw per figure (bbox_inches="tight" needs two)
    return plt.figure(figsize=(w, h), dpi=100, layout="constrained")


def _png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def confusion_png(cm: np.ndarray, class_names: Sequence[str], title: str = "") -> bytes:
    """Row-normalised confusion matrix (row = true class) with counts written in the cells."""
    cm = np.asarray(cm)
    c = len(class_names)
    size = min(2.0 + 0.45 * c, 12.0)
    fig = _figure(size + 1.2, size)
    ax = fig.add_subplot(111)
    rows = cm.sum(axis=1, keepdims=True)
    norm = np.divide(cm, np.where(rows == 0, 1, rows), dtype=np.float64)
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(c))
    ax.set_yticks(range(c))
    ax.set_xticklabels(class_names, rotation=45, ha="right", fontsize=8)
    ax.set_yticklabels(class_names, fontsize=8)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if c <= 25:
        for i in range(c):
            for j in range(c):
                if cm[i, j]:
                    ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=7,
                            color="white" if norm[i, j] > 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of true class")
    ax.set_title(title or "Confusion matrix", fontsize=10)
    return _png(fig)


def _cdf_xy(e: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Step CDF of ``(N,)`` errors in degrees: x from 0, y in % of samples (``drawstyle="steps-post"``)."""
    xs = np.sort(e)
    return np.concatenate([[0], xs]), np.concatenate([[0], np.arange(1, xs.size + 1) / xs.size * 100])


def _curves(errors: dict[str, np.ndarray], sym_errors: dict[str, np.ndarray] | None,
            chance: dict | None) -> list[dict]:
    """What to draw: one dict per series (label, colour, plain and symmetry-aware errors, chance or not).

    A symmetry-aware array identical to the plain one (no symmetric class in the test set) is dropped, so the
    figure does not draw every curve twice.
    """
    series = []
    for k, (name, e) in enumerate(errors.items()):
        e = np.asarray(e, dtype=np.float64)
        s = None if sym_errors is None or sym_errors.get(name) is None else np.asarray(sym_errors[name], np.float64)
        if s is not None and s.shape == e.shape and np.array_equal(s, e):
            s = None
        series.append({"label": name, "colour": PALETTE[k % len(PALETTE)], "plain": e, "sym": s, "chance": False})
    if chance is not None and chance.get("angle_deg") is not None:
        e = np.asarray(chance["angle_deg"], dtype=np.float64)
        s = chance.get("angle_sym_deg")
        s = None if s is None else np.asarray(s, dtype=np.float64)
        if s is not None and s.shape == e.shape and np.array_equal(s, e):
            s = None
        series.append({"label": CHANCE_LABEL, "colour": CHANCE_COLOUR, "plain": e, "sym": s, "chance": True})
    return [c for c in series if c["plain"].size]


def angle_error_figure(errors: dict[str, np.ndarray], thresholds: Sequence[float] = (5, 10, 15, 30), title: str = "",
                       sym_errors: dict[str, np.ndarray] | None = None, chance: dict | None = None):
    """The matplotlib figure behind :func:`angle_error_png` (returned open, for tests that inspect its curves).

    Args:
        errors: ``{model name: (N,) plain rotation errors, degrees}``.
        sym_errors: ``{model name: (N,) symmetry-aware errors}`` for the same names, or None. Where given (and
            different from the plain errors) the CDF draws the symmetry-aware curve solid and the plain one dashed,
            and the histogram shows the symmetry-aware errors.
        chance: the constant-rotation baseline, ``{"angle_deg": (N,), "angle_sym_deg": (N,) or None}``, or None;
            drawn in grey (same solid / dashed convention) so a curve on top of it is a model that learnt nothing.
    """
    fig = _figure(10.5, 3.6)
    ax_h = fig.add_subplot(121)
    ax_c = fig.add_subplot(122)
    bins = np.arange(0, 185, 5)
    series = _curves(errors, sym_errors, chance)
    n_models = sum(not c["chance"] for c in series)
    overlaid = len(series) > 1
    any_sym = any(c["sym"] is not None for c in series)
    for c in series:
        col, main_e = c["colour"], (c["sym"] if c["sym"] is not None else c["plain"])
        width = 2.4 if c["chance"] else 1.8
        ax_h.hist(main_e, bins=bins, histtype="step" if overlaid else "stepfilled", color=col,
                  alpha=0.9 if overlaid else 0.6, linewidth=1.5, label=c["label"],
                  weights=np.full(main_e.size, 100.0 / main_e.size), zorder=1 if c["chance"] else 2)
        x, y = _cdf_xy(main_e)
        ax_c.plot(x, y, color=col, linewidth=width, label=c["label"], drawstyle="steps-post",
                  zorder=1 if c["chance"] else 2)
        if c["sym"] is not None:
            x, y = _cdf_xy(c["plain"])
            # "_"-prefixed labels stay out of the legend: one "dashed = plain" entry explains them all
            ax_c.plot(x, y, color=col, linewidth=1.0, linestyle="--", drawstyle="steps-post",
                      label=f"_plain {c['label']}", zorder=1 if c["chance"] else 2)
    for k, t in enumerate(thresholds):
        ax_c.axvline(t, color="grey", linestyle=":", linewidth=0.8)
        # labels of close thresholds (5, 10, 15) would overlap: alternate their heights
        ax_c.text(t, 101 + 4 * (k % 2), f"{t:g}°", fontsize=6.5, ha="center", va="bottom", color="grey")
    which = "symmetry-aware rotation error" if any_sym else "rotation error"
    ax_h.set_xlabel(f"{which} (degrees)")
    ax_h.set_ylabel("% of test images")
    ax_h.set_xlim(0, 180)
    ax_h.set_title("Angle-error histogram" + (" (symmetry-aware)" if any_sym else ""), fontsize=10)
    ax_c.set_xlabel("rotation error (degrees)" + ("; solid: symmetry-aware, dashed: plain" if any_sym else ""))
    ax_c.set_ylabel("% of test images with error below x")
    ax_c.set_xlim(0, 180)
    ax_c.set_ylim(0, 100)
    ax_c.set_title("Cumulative distribution (CDF)", fontsize=10, pad=16)
    ax_c.grid(alpha=0.3)
    if n_models > 1 or len(series) > n_models or any_sym:
        handles, labels = ax_c.get_legend_handles_labels()
        if any_sym:
            from matplotlib.lines import Line2D

            handles.append(Line2D([], [], color="black", linewidth=1.0, linestyle="--"))
            labels.append("dashed: plain error")
        ax_c.legend(handles, labels, fontsize=8, loc="lower right")
    if title:
        fig.suptitle(title, fontsize=11)
    return fig


def angle_error_png(errors: dict[str, np.ndarray], thresholds: Sequence[float] = (5, 10, 15, 30), title: str = "",
                    sym_errors: dict[str, np.ndarray] | None = None, chance: dict | None = None) -> bytes:
    """Histogram (left) and cumulative distribution (right) of rotation errors in degrees, one curve per model.

    With ``sym_errors`` the symmetry-aware error is drawn solid and the plain one dashed; ``chance`` adds the
    constant-rotation baseline in grey (see :func:`angle_error_figure`).
    """
    return _png(angle_error_figure(errors, thresholds, title, sym_errors=sym_errors, chance=chance))


def _axes_2d(R: np.ndarray, K: np.ndarray | None, t: np.ndarray | None, length: float, h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Image positions of the model origin ``(2,)`` and of its x, y, z axis tips ``(3, 2)`` (u, v pixels).

    With ``K`` and ``t``: perspective projection (OpenCV camera, ``length`` in metres). Without: an orthographic
    sketch at the image centre (``length`` in pixels): x right, y down, as the OpenCV camera sees it.
    """
    from sim2real.conventions import project

    if K is not None and t is not None and t[2] > 0:
        pts = np.vstack([np.zeros(3), np.eye(3) * length])
        uv = project(pts, K, R, t)
        return uv[0], uv[1:]
    centre = np.array([(w - 1) / 2.0, (h - 1) / 2.0])
    return centre, centre + (R[:2, :].T * length)


def _mosaic(images: np.ndarray, cols: int, scale: int, gap: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """Tiles ``(K, H, W, 3)`` uint8 images (each upscaled ``scale`` x, nearest) on a white canvas.

    Returns the canvas and each tile's top-left (x0, y0) in canvas pixels. One image drawn by one ``imshow`` is
    much faster than one axes per image.
    """
    n, h, w = images.shape[:3]
    rows = max(1, int(np.ceil(n / cols)))
    th, tw = h * scale, w * scale
    canvas = np.full((rows * (th + gap) + gap, cols * (tw + gap) + gap, 3), 255, np.uint8)
    corners = []
    for i in range(n):
        r, c = divmod(i, cols)
        x0, y0 = gap + c * (tw + gap), gap + r * (th + gap)
        canvas[y0:y0 + th, x0:x0 + tw] = images[i].repeat(scale, axis=0).repeat(scale, axis=1)
        corners.append((x0, y0))
    return canvas, corners


def _tile_figure(canvas: np.ndarray, title: str = ""):
    """A figure showing ``canvas`` at about 1 screen pixel per canvas pixel, without axes."""
    ch, cw = canvas.shape[:2]
    fig = _figure(cw / 100.0, ch / 100.0 + (0.3 if title else 0.0))
    ax = fig.add_subplot(111)
    ax.imshow(canvas, interpolation="nearest")
    ax.set_axis_off()
    if title:
        ax.set_title(title, fontsize=10)
    return fig, ax


def worst_cases_png(images: np.ndarray, captions: Sequence[str], R_true: np.ndarray | None = None,
                    R_pred: np.ndarray | None = None, K: np.ndarray | None = None, t: np.ndarray | None = None,
                    axis_length: np.ndarray | None = None, cols: int = 8, title: str = "") -> bytes:
    """A grid of test images with captions; optional pose axes: true (solid) vs predicted (dashed).

    Args:
        images: uint8 ``(K, H, W, 3)``.
        captions: one short string per image (at most two lines).
        R_true, R_pred: ``(K, 3, 3)`` R_m2c, or None for no axes.
        K: ``(3, 3)`` intrinsics and t: ``(K, 3)`` true t_m2c in metres (axes drawn where the object is).
        axis_length: ``(K,)`` axis length in metres (with K and t) or pixels (without).
    """
    images = np.asarray(images)
    n, h, w = images.shape[:3]
    cols = max(1, min(cols, n))
    scale = max(1, int(round(112 / max(h, w))))  # tiles of ~112 screen pixels, whatever the crop size
    canvas, corners = _mosaic(images, cols, scale, gap=34)
    fig, ax = _tile_figure(canvas, title)
    axis_colours = ("#e41a1c", "#4daf4a", "#377eb8")  # x red, y green, z blue
    for i, (x0, y0) in enumerate(corners):
        ax.text(x0 + w * scale / 2, y0 - 3, captions[i], fontsize=7, ha="center", va="bottom", linespacing=1.0)
        if R_true is None or R_pred is None:
            continue
        L = float(axis_length[i]) if axis_length is not None else 0.35 * min(h, w)
        ti = t[i] if t is not None else None
        for R, style in ((R_true[i], "-"), (R_pred[i], "--")):
            o, tips = _axes_2d(R, K, ti, L, h, w)
            # image pixel u (centre at u) spans [u*s, (u+1)*s) in the tile: its centre is at u*s + (s-1)/2
            to_canvas = lambda uv: (x0 + uv[0] * scale + (scale - 1) / 2, y0 + uv[1] * scale + (scale - 1) / 2)  # noqa: E731
            ox, oy = to_canvas(o)
            for a in range(3):
                tx, ty = to_canvas(tips[a])
                ax.plot([ox, tx], [oy, ty], style, color=axis_colours[a], linewidth=1.4)
    ax.set_xlim(-0.5, canvas.shape[1] - 0.5)
    ax.set_ylim(canvas.shape[0] - 0.5, -0.5)
    return _png(fig)


def pairs_png(left: np.ndarray, right: np.ndarray, captions: Sequence[str], left_label: str, right_label: str,
              cols: int = 4, title: str = "") -> bytes:
    """Image pairs side by side (e.g. adapted sample | its nearest target neighbour), ``cols`` pairs per row."""
    left, right = np.asarray(left), np.asarray(right)
    n, h, w = left.shape[:3]
    cols = max(1, min(cols, n))
    scale = max(1, int(round(96 / max(h, w))))
    # interleave: left_0, right_0, left_1, right_1, ...
    inter = np.empty((2 * n,) + left.shape[1:], dtype=np.uint8)
    inter[0::2], inter[1::2] = left, right
    canvas, corners = _mosaic(inter, 2 * cols, scale, gap=30)
    fig, ax = _tile_figure(canvas, title)
    for i in range(n):
        (xl, yl), (xr, _) = corners[2 * i], corners[2 * i + 1]
        ax.text(xl + w * scale / 2, yl - 3, left_label, fontsize=7, ha="center", va="bottom")
        ax.text(xr + w * scale / 2, yl - 3, f"{right_label}\n{captions[i]}", fontsize=7, ha="center", va="bottom",
                linespacing=1.0)
    return _png(fig)


def nn_distance_png(query_d: np.ndarray, reference_d: np.ndarray, query_label: str, reference_label: str) -> bytes:
    """Histograms of nearest-neighbour distances: adapted -> target vs target -> other target images."""
    fig = _figure(6.0, 3.0)
    ax = fig.add_subplot(111)
    hi = float(max(np.max(query_d, initial=0), np.max(reference_d, initial=0))) * 1.05 or 1.0
    bins = np.linspace(0, hi, 30)
    ax.hist(reference_d, bins=bins, color=PALETTE[2], alpha=0.5, label=reference_label)
    ax.hist(query_d, bins=bins, color=PALETTE[0], alpha=0.6, label=query_label)
    ax.set_xlabel("RMS pixel distance to nearest target training image (0-255 scale)")
    ax.set_ylabel("images")
    ax.legend(fontsize=8)
    return _png(fig)
