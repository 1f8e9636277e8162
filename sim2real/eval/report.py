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


def _summary(r) -> dict:
    """One model's entry in metrics.json (no per-sample arrays)."""
    m = r.metrics
    d = {"name": r.name, "path": r.path, "kind": r.kind, "role": r.role, **r.info, "warnings": r.warnings}
    d.update({k: v for k, v in m.items() if k != "per_sample"})
    return d


def _headline(doc: _Doc, results, gaps: dict, thresholds: Sequence[float], has_pose: bool, has_add: bool) -> None:
    header = ["Model", "Trained on", "Accuracy"]
    keys: list[tuple[str, str, bool]] = [("accuracy", "pct", True)]
    if has_pose:
        header += ["Mean angle err.", "Median angle err."] + [f"Acc@{t:g}°" for t in thresholds]
        keys += [("mean_angle_deg", "deg", False), ("median_angle_deg", "deg", False)]
        keys += [(f"acc_at_deg.{t:g}", "pct", True) for t in thresholds]
    if has_add:
        header += ["ADD recall*", "ADD-S recall*"]
        keys += [("add_recall", "pct", True), ("adds_recall", "pct", True)]
    if gaps:
        header += ["Gap closed (acc.)"] + (["Gap closed (mean angle)"] if has_pose else [])

    def get(m: dict, key: str):
        if "." in key:
            a, b = key.split(".", 1)
            return (m.get(a) or {}).get(b)
        return m.get(key)

    rows, bold = [], set()
    for j, (key, fmt, higher) in enumerate(keys):
        vals = [get(r.metrics, key) for r in results]
        ok = [v for v in vals if _ok(v)]
        if len(results) > 1 and ok and max(ok) - min(ok) > 1e-12:  # bold the best only where models differ
            best = max(ok) if higher else min(ok)
            bold |= {(i, j + 2) for i, v in enumerate(vals) if _ok(v) and abs(v - best) < 1e-12}
    for r in results:
        row = [r.name, r.role]
        for key, fmt, _ in keys:
            v = get(r.metrics, key)
            row.append(pct(v) if fmt == "pct" else deg(v))
        if gaps:
            g = gaps.get(r.name, {})
            row.append(pct(g.get("accuracy"), 0))
            if has_pose:
                row.append(pct(g.get("mean_angle_deg"), 0))
        rows.append(row)
    doc.table(header, rows, cls="headline", bold=bold)


def write_report(out_dir: str | Path, data, results: Sequence, base, upper, gaps: dict, memo, notes: Sequence[str],
                 thresholds: Sequence[float] = (5, 10, 15, 30), worst_k: int = 16) -> dict:
    """Write ``metrics.json``, ``report.html``, ``report.md`` and ``figures/*.png`` into ``out_dir``.

    Args:
        data: the test :class:`~sim2real.data.h5.H5Data` (None when only the memorisation check runs).
        results: :class:`sim2real.eval.evaluate.ModelResult` list.
        base, upper: the source-only / target-only references for the gap (or None).
        gaps: :func:`sim2real.eval.evaluate.gap_table` output.
        memo: :class:`sim2real.eval.memorisation.MemorisationResult` or None.
        notes: extra lines for the notes box.

    Returns:
        The metrics dict (as written to ``metrics.json``).
    """
    from sim2real import __version__
    from sim2real.conventions import matrix_from_quat
    from sim2real.errors import Sim2RealError
    from sim2real.eval import plots
    from sim2real.eval.evaluate import worst_indices
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
        _headline(doc, results, gaps, thresholds, has_pose, has_add)
        lines = []
        if gaps:
            lines.append(f"Gap closed = (model - source-only) / (target-only - source-only), with source-only = {base.name} "
                         f"and target-only = {upper.name}: 0% is no better than training on renders, 100% matches "
                         "training on labelled target images (computed per metric; for errors, lower is better and the "
                         "same formula applies).")
            span = [f"accuracy {pct(base.metrics['accuracy'])} → {pct(upper.metrics['accuracy'])}"]
            if base.metrics.get("has_pose") and upper.metrics.get("has_pose"):
                span.append(f"mean angle error {deg(base.metrics['mean_angle_deg'])} → {deg(upper.metrics['mean_angle_deg'])}")
            lines.append("The gap itself (source-only → target-only): " + "; ".join(span)
                         + ". Where it is small, shares of it are noisy and can exceed 0-100% by a lot.")
        elif len(results) > 1:
            lines.append("Gap closed is not shown: it needs one source-only and one target-only model "
                         "(recorded in the run, or chosen with --source-only / --target-only).")
        if has_pose:
            lines.append("Acc@X° = share of test images with the correct class AND a rotation error below X degrees. "
                         "Angle errors are over all test images, whatever the predicted class.")
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
            doc.figure(plots.angle_error_png(errs, thresholds), "comparison_angle_error.png",
                       "Angle-error histogram and CDF, all models")
        doc.raw_html("<details><summary>Metric definitions</summary>")
        doc.md.append("**Metric definitions**\n")
        doc.bullets([
            "Accuracy: share of test images whose predicted class is the true class.",
            "Rotation error: 2·arccos(|q·q̂|) in degrees (q and -q are the same rotation); equals BOP's "
            "arccos((trace(R̂ Rᵀ) - 1) / 2).",
            "Per-class recall: correct / images of that class; precision: correct / images predicted as that class.",
            "ADD: mean distance between the object's model points under the estimated and the true pose; ADD-S: mean "
            "distance from each true-pose point to the closest estimated-pose point (symmetric objects).",
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
        if m["has_add"]:
            line += f" · ADD recall {pct(m['add_recall'])}, ADD-S recall {pct(m['adds_recall'])}"
        doc.bullets(facts + [line])

        doc.heading(3, "Per class")
        header = ["Class", "Images", "Recall", "Precision"]
        if m["has_pose"]:
            header += ["Mean angle err.", "Median angle err.", "Acc@10°"]
        if m["has_add"]:
            header += ["ADD recall*", "ADD-S recall*"]
        rows = []
        for name, row in zip(data.class_names, m["per_class"]):
            cells = [name, str(row["n"]), pct(row["recall"]), pct(row["precision"])]
            if m["has_pose"]:
                cells += [deg(row["mean_angle_deg"]), deg(row["median_angle_deg"]), pct(row["acc_at_deg"].get("10"))]
            if m["has_add"]:
                cells += [pct(row["add_recall"]), pct(row["adds_recall"])]
            rows.append(cells)
        doc.table(header, rows)

        doc.heading(3, "Confusion matrix")
        doc.figure(plots.confusion_png(np.array(m["confusion"]), data.class_names, f"{r.name}: confusion (rows: true class)"),
                   f"{slug}_confusion.png", f"{r.name} confusion matrix")
        if m["has_pose"]:
            doc.heading(3, "Angle error")
            doc.figure(plots.angle_error_png({r.name: m["per_sample"]["angle_deg"]}, thresholds),
                       f"{slug}_angle_error.png", f"{r.name} angle-error histogram and CDF")
        idx = worst_indices(m, r.pred, worst_k)
        if len(idx):
            doc.heading(3, "Worst cases")
            correct = m["per_sample"]["correct"]
            ang = m["per_sample"]["angle_deg"]
            caps = []
            for i in idx:
                t, p = data.class_names[data.label[i]], data.class_names[r.pred["label_pred"][i]]
                c = f"#{i} {t}" if correct[i] else f"#{i} {t}→{p}"
                caps.append(c + (f"\n{ang[i]:.0f}°" if ang is not None else ""))
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

    metrics = {
        "created": created,
        "versions": versions(),
        "test_set": None if data is None else {
            "path": str(data.path), "n": len(data), "domain": data.attrs.get("domain"), "class_names": list(data.class_names),
            "image_size": list(data.image_size), "has_pose": data.quat is not None,
            "has_add": data.trans is not None and data.model_points is not None and data.diameters is not None},
        "thresholds_deg": [float(t) for t in thresholds],
        "models": [_summary(r) for r in results],
        "gap_closed": None if not gaps else {"source_only": base.name, "target_only": upper.name, "models": gaps},
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
