"""Write the evaluation report: ``metrics.json``, a self-contained ``report.html`` and ``report.md`` (+ ``figures/``).

Layout, for a reader in a hurry: the headline table (all models side by side, share of the gap closed) and the
angle-error CDF first; then notes and metric definitions; then one section per model (per-class table,
confusion matrix, angle-error histogram and CDF, the worst cases); then the memorisation check.

``report.html`` embeds every figure as a base64 PNG data URI (one file to mail or archive); ``report.md``
links the same PNGs under ``figures/``.
"""

from __future__ import annotations

import base64
import datetime as _dt
import html
import json
import math
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from sim2real.utils import atomic_write_bytes, atomic_write_text

ROLE_HELP = {
    "source-only": "trained on renders only (the baseline)",
    "adapted": "trained on PixelDA-adapted renders",
    "pixelda": "PixelDA's own task network T",
    "semi-supervised": "adapted renders + a few labelled target images",
    "target-only": "trained on labelled target images (the upper bound)",
}

CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,Arial,sans-serif;margin:24px auto;max-width:1180px;color:#222;line-height:1.4}
h1{font-size:1.6em;margin-bottom:0.2em} h2{border-bottom:2px solid #ddd;padding-bottom:4px;margin-top:1.8em}
h3{margin-top:1.4em} .sub{color:#666;font-size:0.9em}
table{border-collapse:collapse;margin:10px 0;font-size:0.9em} th,td{border:1px solid #ccc;padding:4px 8px;text-align:right}
th{background:#f2f4f7} td:first-child,th:first-child{text-align:left} tr:nth-child(even) td{background:#fafafa}
table.headline td,table.headline th{font-size:1.02em;padding:6px 10px} .best{font-weight:bold;background:#e6f4ea!important}
.warn{background:#fff4e5;border-left:4px solid #f0a020;padding:8px 12px;margin:10px 0}
.note{background:#eef4fb;border-left:4px solid #4a90d9;padding:8px 12px;margin:10px 0}
img{max-width:100%;height:auto;display:block;margin:8px 0} details{margin:10px 0} code{background:#f3f3f3;padding:0 3px}
"""


# ------------------------------------------------------------------------------------------------
# formatting helpers
# ------------------------------------------------------------------------------------------------


def _ok(v: Any) -> bool:
    return v is not None and not (isinstance(v, float) and not math.isfinite(v))


def pct(v: Any, digits: int = 1) -> str:
    """0.987 -> '98.7%'; missing -> '–'."""
    if not _ok(v):
        return "–"
    text = f"{100 * v:.{digits}f}"
    return ("0" if float(text) == 0 else text) + "%"  # no "-0%"


def deg(v: Any) -> str:
    return f"{v:.1f}°" if _ok(v) else "–"


def json_safe(obj: Any) -> Any:
    """NaN/inf -> None, numpy -> python, recursively (valid JSON for any reader)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return json_safe(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_") or "model"


class _Doc:
    """Builds the HTML and Markdown versions of the report side by side."""

    def __init__(self, out_dir: Path) -> None:
        self.html: list[str] = []
        self.md: list[str] = []
        self.fig_dir = out_dir / "figures"
        self.figures: list[str] = []

    def heading(self, level: int, text: str, anchor: str | None = None) -> None:
        a = f' id="{html.escape(anchor)}"' if anchor else ""
        self.html.append(f"<h{level}{a}>{html.escape(text)}</h{level}>")
        self.md.append(f"\n{'#' * level} {text}\n")

    def para(self, text: str, cls: str | None = None) -> None:
        c = f' class="{cls}"' if cls else ""
        self.html.append(f"<div{c}>{html.escape(text)}</div>" if cls else f"<p>{html.escape(text)}</p>")
        prefix = "> " if cls in ("warn", "note") else ""
        self.md.append(f"{prefix}{'**Warning:** ' if cls == 'warn' else ''}{text}\n")

    def bullets(self, items: Sequence[str], cls: str | None = None) -> None:
        if not items:
            return
        c = f' class="{cls}"' if cls else ""
        self.html.append(f"<div{c}><ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul></div>")
        self.md.append("\n".join(f"- {i}" for i in items) + "\n")

    def table(self, header: Sequence[str], rows: Sequence[Sequence[str]], cls: str | None = None,
              bold: set[tuple[int, int]] | None = None) -> None:
        bold = bold or set()
        c = f' class="{cls}"' if cls else ""
        h = "".join(f"<th>{html.escape(x)}</th>" for x in header)
        body = "".join("<tr>" + "".join(
            f'<td class="best">{html.escape(v)}</td>' if (i, j) in bold else f"<td>{html.escape(v)}</td>"
            for j, v in enumerate(r)) + "</tr>" for i, r in enumerate(rows))
        self.html.append(f"<table{c}><thead><tr>{h}</tr></thead><tbody>{body}</tbody></table>")
        esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
        lines = ["| " + " | ".join(esc(x) for x in header) + " |", "|" + "|".join(["---"] * len(header)) + "|"]
        for i, r in enumerate(rows):
            lines.append("| " + " | ".join(f"**{esc(v)}**" if (i, j) in bold else esc(v) for j, v in enumerate(r)) + " |")
        self.md.append("\n".join(lines) + "\n")

    def figure(self, png: bytes, filename: str, alt: str) -> None:
        self.fig_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_bytes(self.fig_dir / filename, png)
        self.figures.append(filename)
        b64 = base64.b64encode(png).decode("ascii")
        self.html.append(f'<img src="data:image/png;base64,{b64}" alt="{html.escape(alt)}">')
        self.md.append(f"![{alt}](figures/{filename})\n")

    def raw_html(self, s: str) -> None:
        self.html.append(s)


# ------------------------------------------------------------------------------------------------
# report
# ------------------------------------------------------------------------------------------------


#: "Rotation learnt" needs the median error (symmetry-aware where known) this many degrees below chance's.
LEARNT_MARGIN_DEG = 10.0
#: ... and the paired per-image improvement over chance beyond this many standard errors.
LEARNT_Z = 2.0
CHANCE_NAME = "chance (constant rotation)"
#: Version of the metrics.json layout; 2 added chance, rotation_verdict, gap_closed.significance / reasons.
METRICS_VERSION = 2
GAP_NA = "n/a (gap too small)"


def _get(m: dict | None, key: str):
    """``m[key]``, or ``m[a][b]`` for ``key = "a.b"``; None where missing."""
    if m is None:
        return None
    if "." in key:
        a, b = key.split(".", 1)
        return (m.get(a) or {}).get(b)
    return m.get(key)


def _has_sym(m: dict) -> bool:
    """Whether one model's symmetry-aware errors are worth showing: computed (metrics from before symmetry support
    have none) and with the test set's symmetries known (unknown: they equal the plain errors)."""
    return bool(m.get("has_pose") and m.get("symmetry_known") and m.get("mean_angle_sym_deg") is not None)


def rotation_verdict(m: dict, chance: dict | None, margin_deg: float = LEARNT_MARGIN_DEG) -> dict | None:
    """One model's rotation against the constant-rotation baseline: learnt or not, and a one-line text.

    Learnt = the median error is more than ``margin_deg`` below chance's median AND the mean per-image
    improvement over chance (paired: same test images) exceeds ``LEARNT_Z`` standard errors. Symmetry-aware
    errors are compared where the symmetries are known and both sides have them, plain ones otherwise.

    Args:
        m: :func:`sim2real.eval.metrics.evaluate_arrays` output (with ``per_sample``).
        chance: the baseline dict (``median_angle_deg``, ``per_sample`` ...), or None.

    Returns:
        ``{"learnt", "text", "basis", "median_deg", "chance_median_deg", "margin_deg", "paired_mean_gain_deg",
        "paired_se_deg"}`` (JSON-ready), or None without poses or without a baseline.
    """
    if not m.get("has_pose") or not chance:
        return None
    sym = _has_sym(m) and _ok(m.get("median_angle_sym_deg")) and _ok(chance.get("median_angle_sym_deg"))
    key, ps_key = ("median_angle_sym_deg", "angle_sym_deg") if sym else ("median_angle_deg", "angle_deg")
    med, ch = m.get(key), chance.get(key)
    if not (_ok(med) and _ok(ch)):
        return None
    a = (m.get("per_sample") or {}).get(ps_key)
    c = (chance.get("per_sample") or {}).get(ps_key)
    gain = se = None
    significant = True  # without per-image errors only the margin decides
    if a is not None and c is not None and len(a) == len(c) and len(a) > 1:
        d = np.asarray(c, np.float64) - np.asarray(a, np.float64)  # > 0: the model beats chance on that image
        gain, se = float(d.mean()), float(d.std(ddof=1) / math.sqrt(d.size))
        significant = gain > LEARNT_Z * se
    better = ch - med
    learnt = bool(better > margin_deg and significant)
    nums = f"median {med:.0f}° vs chance {ch:.0f}°" + (" (symmetry-aware)" if sym else "")
    if learnt:
        text = f"rotation learnt: {nums}"
    elif better < -margin_deg:
        text = f"rotation NOT learnt: {nums}, worse than chance"
    elif better > margin_deg:
        text = f"rotation NOT learnt: {nums}, better by {better:.0f}° but within noise"
    else:
        text = f"rotation NOT learnt: {nums}, within {margin_deg:g}° of chance"
    return {"learnt": learnt, "text": text, "basis": "symmetry-aware" if sym else "plain", "median_deg": float(med),
            "chance_median_deg": float(ch), "margin_deg": float(margin_deg), "paired_mean_gain_deg": gain,
            "paired_se_deg": se}


def _gap_reasons(noise: dict, base, upper) -> dict[str, str | None]:
    """Per gap metric: why its shares are null for every model (a string), or None where shares are given."""
    from sim2real.eval.metrics import GAP_METRICS

    out: dict[str, str | None] = {}
    for k in GAP_METRICS:
        s, t = base.metrics.get(k), upper.metrics.get(k)
        if noise.get(k) is not None and not noise[k]["significant"]:
            out[k] = noise[k]["reason"]
        elif not (_ok(s) and _ok(t)):
            out[k] = "a reference model has no value for this metric"
        elif abs(t - s) < 1e-12:
            out[k] = "the source-only and target-only references score the same"
        else:
            out[k] = None
    return out


def _gap_cell(gaps: dict, name: str, key: str, noise: dict) -> str:
    """A "gap closed" cell: the share, or why there is none (``GAP_NA`` when the gap is within noise)."""
    test = noise.get(key)
    if test is not None and not test["significant"]:
        return GAP_NA if test["gap"] is not None else "n/a (too few samples)"
    return pct(gaps.get(name, {}).get(key), 0)


def _summary(r, verdict: dict | None = None) -> dict:
    """One model's entry in metrics.json (no per-sample arrays)."""
    m = r.metrics
    d = {"name": r.name, "path": r.path, "kind": r.kind, "role": r.role, **r.info, "warnings": r.warnings}
    d.update({k: v for k, v in m.items() if k != "per_sample"})
    d["rotation_verdict"] = verdict
    return d


def _model_table(doc: _Doc, results, columns: list[tuple[str, str, str, bool]], lead: list[list[str]],
                 extra_rows: Sequence[Sequence[str]] = (), cls: str | None = None, tail=None) -> None:
    """A table with one row per model (best value per column in bold) and then ``extra_rows`` (chance), never bold.

    Args:
        columns: ``(header, metrics key or "a.b", "pct" | "deg", higher is better)`` per metric column.
        lead: the leading cells of each model's row; ``tail(r)``: cells appended to it (gap closed).
    """
    n_lead = len(lead[0]) if lead else 0
    bold: set[tuple[int, int]] = set()
    for j, (_, key, _, higher) in enumerate(columns):
        vals = [_get(r.metrics, key) for r in results]
        ok = [v for v in vals if _ok(v)]
        if len(results) > 1 and ok and max(ok) - min(ok) > 1e-12:  # bold the best only where models differ
            best = max(ok) if higher else min(ok)
            bold |= {(i, j + n_lead) for i, v in enumerate(vals) if _ok(v) and abs(v - best) < 1e-12}
    rows = []
    for i, r in enumerate(results):
        row = list(lead[i])
        for _, key, fmt, _ in columns:
            v = _get(r.metrics, key)
            row.append(pct(v) if fmt == "pct" else deg(v))
        rows.append(row + (tail(r) if tail else []))
    header = ["Model", "Trained on"][:n_lead] + [c[0] for c in columns]
    if tail and results:
        header += tail(None)
    doc.table(header, rows + [list(x) for x in extra_rows], cls=cls, bold=bold)


def _headline(doc: _Doc, results, gaps: dict, noise: dict, has_pose: bool, has_add: bool, has_sym: bool,
              chance: dict | None) -> None:
    """The summary table: accuracy, angle errors plain and sym, ADD, gap closed; a chance row last."""
    cols: list[tuple[str, str, str, bool]] = [("Accuracy", "accuracy", "pct", True)]
    if has_pose:
        for stat in ("mean", "median"):
            cols.append((f"{stat.capitalize()} angle err.", f"{stat}_angle_deg", "deg", False))
            if has_sym:
                cols.append((f"{stat.capitalize()} angle err. (sym)", f"{stat}_angle_sym_deg", "deg", False))
    if has_add:
        cols += [("ADD recall*", "add_recall", "pct", True), ("ADD-S recall*", "adds_recall", "pct", True)]
    gap_keys = [("Gap closed (acc.)", "accuracy")]
    if has_pose:
        gap_keys.append(("Gap closed (mean angle)", "mean_angle_deg"))
        if has_sym:
            gap_keys.append(("Gap closed (mean angle, sym)", "mean_angle_sym_deg"))

    def tail(r):
        if not gaps:
            return []
        if r is None:
            return [h for h, _ in gap_keys]
        return [_gap_cell(gaps, r.name, k, noise) for _, k in gap_keys]

    extra = []
    if chance and has_pose:
        row = [CHANCE_NAME, "baseline"]
        for _, key, fmt, _ in cols:
            v = chance.get(key) if "angle" in key else None
            row.append(deg(v) if fmt == "deg" else pct(v))
        extra.append(row + (["–"] * len(gap_keys) if gaps else []))
    _model_table(doc, results, cols, [[r.name, r.role] for r in results], extra, cls="headline", tail=tail)


def _threshold_table(doc: _Doc, results, thresholds: Sequence[float], has_sym: bool, chance: dict | None) -> None:
    """Acc@X° per model, plain and symmetry-aware side by side, with the chance row (its rotation within X°)."""
    acc_cols = []
    for t in thresholds:
        acc_cols.append((f"Acc@{t:g}°", f"acc_at_deg.{t:g}", "pct", True))
        if has_sym:
            acc_cols.append((f"Acc@{t:g}° (sym)", f"acc_at_deg_sym.{t:g}", "pct", True))
    extra = []
    if chance:
        row = [CHANCE_NAME]
        for _, key, _, _ in acc_cols:
            row.append(pct(_get(chance, key.replace("acc_at_deg", "rot_at_deg"))))
        extra.append(row)
    doc.para("Rotation accuracy: share of test images with the correct class and a rotation error below X degrees"
             + (" (plain, and symmetry-aware: sym)" if has_sym else "")
             + (". The chance row is given the true class, so its entries are the share of its rotations within X "
                "degrees." if chance else "."))
    _model_table(doc, results, acc_cols, [[r.name] for r in results], extra, cls="thresholds")


def _noise_text(test: dict | None, unit: str) -> str:
    """``' (2 SE = 4.1 points: beyond noise)'`` for a :func:`~sim2real.eval.metrics.gap_significance` dict."""
    from sim2real.eval.metrics import GAP_NOISE_Z

    if test is None or test["threshold"] is None:
        return "" if test is None else f" ({test['reason']})"
    size = f"{100 * test['threshold']:.1f} points" if unit == "pct" else f"{test['threshold']:.1f}°"
    verdict = "beyond noise" if test["significant"] else "within noise: gap closed is n/a"
    return f" ({GAP_NOISE_Z:g} SE = {size}: {verdict})"


def write_report(out_dir: str | Path, data, results: Sequence, base, upper, gaps: dict, memo, notes: Sequence[str],
                 thresholds: Sequence[float] = (5, 10, 15, 30), worst_k: int = 16, chance: dict | None = None) -> dict:
    """Write ``metrics.json``, ``report.html``, ``report.md`` and ``figures/*.png`` into ``out_dir``.

    Args:
        data: the test :class:`~sim2real.data.h5.H5Data` (None when only the memorisation check runs).
        results: :class:`sim2real.eval.evaluate.ModelResult` list.
        base, upper: the source-only / target-only references for the gap (or None).
        gaps: :func:`sim2real.eval.metrics.gap_table` output.
        memo: :class:`sim2real.eval.memorisation.MemorisationResult` or None.
        notes: extra lines for the notes box.
        chance: the constant-rotation baseline of the test set
            (:func:`sim2real.eval.metrics.constant_rotation_baseline`: ``mean_angle_deg``, ``median_angle_deg``,
            their ``_sym`` versions, ``rot_at_deg``, ``rot_at_deg_sym``, ``per_sample``), or None.

    Returns:
        The metrics dict (as written to ``metrics.json``; key layout in docs/evaluation.md).
    """
    from sim2real import __version__
    from sim2real.conventions import matrix_from_quat
    from sim2real.errors import Sim2RealError
    from sim2real.eval import plots
    from sim2real.eval.metrics import gap_noise, worst_indices
    from sim2real.utils import versions

    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise Sim2RealError(f"{out}: cannot create the report folder ({e.strerror})") from None
    fig_dir = out / "figures"
    if fig_dir.is_dir():
        for old in fig_dir.glob("*.png"):  # figures of an earlier report here would be mistaken for this one's
            old.unlink()
    doc = _Doc(out)
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    has_pose = any(r.metrics["has_pose"] for r in results)
    has_add = any(r.metrics["has_add"] for r in results)
    has_sym = any(_has_sym(r.metrics) for r in results)
    if not has_pose:
        chance = None
    noise = gap_noise(base, upper) if gaps else {}
    verdicts = {r.name: rotation_verdict(r.metrics, chance) for r in results}
    chance_ps = (chance or {}).get("per_sample") or {}
    chance_curve = None if chance_ps.get("angle_deg") is None else {
        "angle_deg": chance_ps.get("angle_deg"), "angle_sym_deg": chance_ps.get("angle_sym_deg")}

    doc.heading(1, "sim2real evaluation report")
    if data is not None:
        dom = data.attrs.get("domain")
        doc.para(f"Test set: {data.path} — {len(data)} images, {data.image_size[0]}x{data.image_size[1]} px, "
                 f"{data.num_classes} classes ({', '.join(data.class_names)}), domain '{dom}'. "
                 f"Generated {created} by sim2real {__version__}.", cls=None)
    warnings: list[str] = []
    if data is not None and data.attrs.get("domain") != "target":
        warnings.append(f"the test set's domain is '{data.attrs.get('domain')}', not 'target': these numbers do not "
                        "measure performance on real (target-camera) images")
    if data is not None and data.attrs.get("skipped"):
        warnings.append(f"bad test images were skipped (--skip-bad): {data.attrs['skipped']}")
    if data is not None and data.quat is None:
        warnings.append("the test set has no 'quat' labels: only classification metrics are reported")
    for r in results:
        warnings += [f"{r.name}: {w}" for w in r.warnings]
    if warnings:
        doc.bullets(warnings, cls="warn")

    # -------- headline
    if results:
        doc.heading(2, "Summary", anchor="summary")
        _headline(doc, results, gaps, noise, has_pose, has_add, has_sym, chance)
        said = [f"{name}: {v['text']}" for name, v in verdicts.items() if v is not None]
        if said:
            doc.bullets(said, cls="note" if all(v["learnt"] for v in verdicts.values() if v is not None) else "warn")
        if has_pose:
            _threshold_table(doc, results, thresholds, has_sym, chance)
        lines = []
        if gaps:
            lines.append(f"Gap closed = (model - source-only) / (target-only - source-only), with source-only = {base.name} "
                         f"and target-only = {upper.name}: 0% is no better than training on renders, 100% matches "
                         "training on labelled target images (computed per metric; for errors, lower is better and the "
                         "same formula applies).")
            span = [f"accuracy {pct(base.metrics['accuracy'])} → {pct(upper.metrics['accuracy'])}"
                    + _noise_text(noise.get("accuracy"), "pct")]
            if base.metrics.get("has_pose") and upper.metrics.get("has_pose"):
                span.append(f"mean angle error {deg(base.metrics['mean_angle_deg'])} → "
                            f"{deg(upper.metrics['mean_angle_deg'])}" + _noise_text(noise.get("mean_angle_deg"), "deg"))
                if has_sym:
                    span.append(f"symmetry-aware {deg(base.metrics.get('mean_angle_sym_deg'))} → "
                                f"{deg(upper.metrics.get('mean_angle_sym_deg'))}"
                                + _noise_text(noise.get("mean_angle_sym_deg"), "deg"))
            lines.append("The gap itself (source-only → target-only): " + "; ".join(span)
                         + f". A gap within noise (|gap| ≤ 2 standard errors) shows '{GAP_NA}': a share of noise "
                         "means nothing.")
        elif len(results) > 1:
            lines.append("Gap closed is not shown: it needs one source-only and one target-only model "
                         "(recorded in the run, or chosen with --source-only / --target-only).")
        if has_pose:
            lines.append("Acc@X° = share of test images with the correct class AND a rotation error below X degrees. "
                         "Angle errors are over all test images, whatever the predicted class.")
        if has_sym:
            lines.append("(sym) = symmetry-aware rotation error: the smallest error over the object's symmetries "
                         "(a pose that looks the same is not wrong); symmetric classes are marked in the per-class "
                         "tables. The plain error ignores symmetry.")
        elif has_pose:
            lines.append("The test set carries no symmetry annotations, so symmetry-aware errors equal the plain ones "
                         "and are not shown separately: errors of symmetric objects may be overstated.")
        if chance is not None:
            lines.append(f"{CHANCE_NAME}: one fixed rotation per class (the medoid of that class's true test "
                         "rotations), given the true class: what a model that ignores the image can reach. A model "
                         f"has learnt rotation when its median error is more than {LEARNT_MARGIN_DEG:g}° below "
                         f"chance's and its per-image improvement over chance exceeds {LEARNT_Z:g} standard errors.")
        elif has_pose:
            lines.append("No chance baseline: this version cannot compute the constant-rotation baseline.")
        if has_add:
            tr = {r.metrics.get("add_translation") for r in results if r.metrics["has_add"]}
            if "ground truth" in tr:
                lines.append("*ADD / ADD-S use the predicted rotation with the GROUND-TRUTH translation (the networks "
                             "predict class + rotation only): a rotation-only ADD, optimistic compared with a full 6D "
                             "pose estimate. A sample counts when its class is correct and the error is below 10% of "
                             "the object diameter.")
        doc.bullets(lines + list(notes), cls="note")
        if has_pose:
            errs = {r.name: r.metrics["per_sample"]["angle_deg"] for r in results if r.metrics["has_pose"]}
            syms = {r.name: r.metrics["per_sample"].get("angle_sym_deg") if _has_sym(r.metrics) else None
                    for r in results if r.metrics["has_pose"]}
            doc.figure(plots.angle_error_png(errs, thresholds, sym_errors=syms if has_sym else None, chance=chance_curve),
                       "comparison_angle_error.png",
                       "Angle-error histogram and CDF, all models" + (", with the chance baseline" if chance_curve else ""))
        doc.raw_html("<details><summary>Metric definitions</summary>")
        doc.md.append("**Metric definitions**\n")
        doc.bullets([
            "Accuracy: share of test images whose predicted class is the true class.",
            "Rotation error: 2·arccos(|q·q̂|) in degrees (q and -q are the same rotation); equals BOP's "
            "arccos((trace(R̂ Rᵀ) - 1) / 2). Symmetry-aware (sym): the minimum of that error over the object's "
            "symmetry rotations S (R̂ against R·S).",
            "Per-class recall: correct / images of that class; precision: correct / images predicted as that class.",
            "ADD: mean distance between the object's model points under the estimated and the true pose; ADD-S: mean "
            "distance from each true-pose point to the closest estimated-pose point (symmetric objects).",
            "Gap within noise: |target-only - source-only| ≤ 2 SE, with SE = sqrt(p1(1-p1)/n1 + p2(1-p2)/n2) for "
            "accuracy and sqrt(s1²/n1 + s2²/n2) over the per-image errors for the mean angle error.",
            "Definitions and tests: docs/evaluation.md.",
        ])
        doc.raw_html("</details>")

    # -------- per model
    for k, r in enumerate(results):
        m = r.metrics
        slug = f"{k + 1:02d}_{_slug(r.name)}"
        doc.heading(2, f"{r.name}", anchor=f"model-{k + 1}")
        desc = ROLE_HELP.get(r.role, r.role)
        facts = [f"{r.kind} run, {desc}", f"path: {r.path}"]
        if r.info.get("step") is not None:
            facts.append(f"step {r.info['step']}" + (f", arch {r.info['arch']}" if r.info.get("arch") else ""))
        if r.info.get("train"):
            facts.append("trained on: " + ", ".join(
                f"{Path(f['path']).name} ({f.get('n') or '?'} images, {f.get('domain')})" for f in r.info["train"]))
        if r.info.get("target_unlabelled"):
            facts.append(f"adapted towards (unlabelled): {Path(r.info['target_unlabelled']).name}")
        line = f"Accuracy {pct(m['accuracy'])}"
        if m["has_pose"]:
            line += (f" · mean angle error {deg(m['mean_angle_deg'])} (median {deg(m['median_angle_deg'])}; "
                     f"{deg(m['mean_angle_deg_correct_class'])} on correctly classified images)")
            if _has_sym(m):
                line += (f" · symmetry-aware: mean {deg(m['mean_angle_sym_deg'])}, "
                         f"median {deg(m.get('median_angle_sym_deg'))}")
        if m["has_add"]:
            line += f" · ADD recall {pct(m['add_recall'])}, ADD-S recall {pct(m['adds_recall'])}"
        if verdicts.get(r.name):
            line += f" · {verdicts[r.name]['text']}"
        doc.bullets(facts + [line])

        doc.heading(3, "Per class")
        sym = _has_sym(m)
        marks = sym and any("symmetric" in row for row in m["per_class"])
        ch_key = "angle_sym_deg" if sym and chance_ps.get("angle_sym_deg") is not None else "angle_deg"
        ch_err = chance_ps.get(ch_key) if m["has_pose"] else None
        header = ["Class", "Images"] + (["Symmetric"] if marks else []) + ["Recall", "Precision"]
        if m["has_pose"]:
            header += ["Mean angle err."] + (["Mean angle err. (sym)"] if sym else [])
            header += ["Median angle err."] + (["Median angle err. (sym)"] if sym else [])
            if ch_err is not None:
                header.append("Chance median" + (" (sym)" if ch_key == "angle_sym_deg" else ""))
            header += ["Acc@10°"] + (["Acc@10° (sym)"] if sym else [])
        if m["has_add"]:
            header += ["ADD recall*", "ADD-S recall*"]
        rows = []
        for c, (name, row) in enumerate(zip(data.class_names, m["per_class"])):
            cells = [name, str(row["n"])]
            if marks:
                cells.append({True: "yes", False: "no"}.get(row.get("symmetric"), "–"))
            cells += [pct(row["recall"]), pct(row["precision"])]
            if m["has_pose"]:
                cells += [deg(row["mean_angle_deg"])] + ([deg(row.get("mean_angle_sym_deg"))] if sym else [])
                cells += [deg(row["median_angle_deg"])] + ([deg(row.get("median_angle_sym_deg"))] if sym else [])
                if ch_err is not None:
                    sel = np.asarray(ch_err, np.float64)[np.asarray(data.label) == c]
                    cells.append(deg(float(np.median(sel)) if sel.size else None))
                cells += [pct(row["acc_at_deg"].get("10"))]
                cells += [pct((row.get("acc_at_deg_sym") or {}).get("10"))] if sym else []
            if m["has_add"]:
                cells += [pct(row["add_recall"]), pct(row["adds_recall"])]
            rows.append(cells)
        doc.table(header, rows)

        doc.heading(3, "Confusion matrix")
        doc.figure(plots.confusion_png(np.array(m["confusion"]), data.class_names, f"{r.name}: confusion (rows: true class)"),
                   f"{slug}_confusion.png", f"{r.name} confusion matrix")
        if m["has_pose"]:
            doc.heading(3, "Angle error")
            sym_e = m["per_sample"].get("angle_sym_deg") if _has_sym(m) else None
            doc.figure(plots.angle_error_png({r.name: m["per_sample"]["angle_deg"]}, thresholds,
                                             sym_errors={r.name: sym_e} if sym_e is not None else None,
                                             chance=chance_curve),
                       f"{slug}_angle_error.png", f"{r.name} angle-error histogram and CDF"
                       + (", with the chance baseline" if chance_curve else ""))
        idx = worst_indices(m, r.pred, worst_k)
        if len(idx):
            doc.heading(3, "Worst cases")
            correct = m["per_sample"]["correct"]
            ang = m["per_sample"]["angle_deg"]
            ang_sym = m["per_sample"].get("angle_sym_deg") if _has_sym(m) else None
            caps = []
            for i in idx:
                t, p = data.class_names[data.label[i]], data.class_names[r.pred["label_pred"][i]]
                c = f"#{i} {t}" if correct[i] else f"#{i} {t}→{p}"
                if ang is not None:
                    c += f"\n{ang[i]:.0f}°"
                    if ang_sym is not None and round(float(ang_sym[i])) != round(float(ang[i])):
                        c += f" (sym {ang_sym[i]:.0f}°)"
                caps.append(c)
            kw: dict = {}
            if m["has_pose"]:
                kw = {"R_true": matrix_from_quat(data.quat[idx]), "R_pred": matrix_from_quat(r.pred["quat_pred"][idx])}
                if data.K is not None and data.trans is not None and data.diameters is not None:
                    kw.update(K=data.K, t=data.trans[idx], axis_length=0.5 * data.diameters[data.label[idx]])
            doc.figure(plots.worst_cases_png(data.rgb[idx], caps, **kw), f"{slug}_worst.png", f"{r.name} worst cases")
            expl = "Misclassified images first (most confident first), then the largest rotation errors."
            if kw:
                expl += " Object axes: true pose solid, predicted dashed (x red, y green, z blue)."
            doc.para(expl, cls=None)

    # -------- memorisation
    memo_summary = None
    if memo is not None:
        from sim2real.eval.memorisation import NEAR_COPY_RMS

        memo_summary = memo.summary()
        doc.heading(2, "Memorisation check (PixelDA)", anchor="memorisation")
        doc.para(f"Each adapted sample from {memo.adapted_path} (domain '{memo.adapted_domain}') beside its nearest "
                 f"neighbour by pixel L2 distance in the target training set {memo.target_path}. If the neighbours are "
                 "near-copies, the generator has memorised target images instead of adapting the renders.")
        verdict = (f"{memo_summary['near_copies']} of {memo_summary['n_checked']} adapted samples are near-copies "
                   f"(RMS distance < {NEAR_COPY_RMS:g}). Median nearest-neighbour distance: adapted→target "
                   f"{memo_summary['median_nn_distance']:.1f}, target→other target images "
                   f"{memo_summary['median_target_to_target_distance']:.1f} (RMS per pixel channel, 0-255).")
        doc.para(verdict, cls="warn" if memo_summary["near_copies"] else "note")
        caps = [f"#{a}→#{b}, d={d:.1f}" for a, b, d in zip(memo.sample_index, memo.neighbour_index, memo.distance)]
        doc.figure(plots.pairs_png(memo.adapted_rgb, memo.neighbour_rgb, caps, "adapted", "nearest target"),
                   "memorisation_pairs.png", "adapted samples and their nearest target training images")
        doc.figure(plots.nn_distance_png(memo.distance, memo.reference_distance, "adapted → nearest target",
                                         "target → nearest other target"), "memorisation_distances.png",
                   "nearest-neighbour distance histograms")

    from sim2real.eval.metrics import GAP_NOISE_Z

    # Key order and presence are fixed (docs/evaluation.md, "metrics.json"): absent things are null, not missing.
    metrics = {
        "metrics_version": METRICS_VERSION,
        "created": created,
        "versions": versions(),
        "test_set": None if data is None else {
            "path": str(data.path), "n": len(data), "domain": data.attrs.get("domain"), "class_names": list(data.class_names),
            "image_size": list(data.image_size), "has_pose": data.quat is not None,
            "has_add": data.trans is not None and data.model_points is not None and data.diameters is not None},
        "thresholds_deg": [float(t) for t in thresholds],
        "models": [_summary(r, verdicts.get(r.name)) for r in results],
        "chance": None if chance is None else {k: v for k, v in chance.items() if k != "per_sample"},
        "gap_closed": None if not gaps else {
            "source_only": base.name, "target_only": upper.name, "noise_z": GAP_NOISE_Z, "significance": noise,
            "reasons": _gap_reasons(noise, base, upper), "models": gaps},
        "memorisation": memo_summary,
        "warnings": warnings,
        "notes": list(notes),
        "figures": doc.figures,
    }
    metrics = json_safe(metrics)
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    title = "sim2real evaluation report"
    page = (f"<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>{title}</title>"
            f"<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\"><style>{CSS}</style></head>"
            f"<body>\n" + "\n".join(doc.html) + "\n</body></html>\n")
    atomic_write_text(out / "report.html", page)
    atomic_write_text(out / "report.md", "\n".join(doc.md))
    return metrics
