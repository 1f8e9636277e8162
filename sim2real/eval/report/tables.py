"""The report's tables: the headline (all models side by side, gap closed, chance), accuracy at thresholds, and
one model's per-class table. Cells are formatted strings (:mod:`sim2real.eval.report.format`)."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from sim2real.eval.report.document import Doc
from sim2real.eval.report.format import deg, lookup, pct, valid
from sim2real.eval.report.verdicts import CHANCE_NAME, gap_cell, has_sym


def model_table(doc: Doc, results, columns: list[tuple[str, str, str, bool]], lead: list[list[str]],
                extra_rows: Sequence[Sequence[str]] = (), cls: str | None = None, tail=None) -> None:
    """A table with one row per model (best value per column in bold) and then ``extra_rows`` (chance), never bold.

    Args:
        columns: ``(header, metrics key or "a.b", "pct" | "deg", higher is better)`` per metric column.
        lead: the leading cells of each model's row; ``tail(r)``: cells appended to it (gap closed).
    """
    n_lead = len(lead[0]) if lead else 0
    bold: set[tuple[int, int]] = set()
    for j, (_, key, _, higher) in enumerate(columns):
        vals = [lookup(r.metrics, key) for r in results]
        ok = [v for v in vals if valid(v)]
        if len(results) > 1 and ok and max(ok) - min(ok) > 1e-12:  # bold the best only where models differ
            best = max(ok) if higher else min(ok)
            bold |= {(i, j + n_lead) for i, v in enumerate(vals) if valid(v) and abs(v - best) < 1e-12}
    rows = []
    for i, r in enumerate(results):
        row = list(lead[i])
        for _, key, fmt, _ in columns:
            v = lookup(r.metrics, key)
            row.append(pct(v) if fmt == "pct" else deg(v))
        rows.append(row + (tail(r) if tail else []))
    header = ["Model", "Trained on", "Method"][:n_lead] + [c[0] for c in columns]
    if tail and results:
        header += tail(None)
    doc.table(header, rows + [list(x) for x in extra_rows], cls=cls, bold=bold)


def headline_table(doc: Doc, results, gaps: dict, noise: dict, has_pose: bool, has_add: bool, show_sym: bool,
                   chance: dict | None) -> None:
    """The summary table: accuracy, angle errors plain and sym, ADD, gap closed; a chance row last."""
    cols: list[tuple[str, str, str, bool]] = [("Accuracy", "accuracy", "pct", True)]
    if has_pose:
        for stat in ("mean", "median"):
            cols.append((f"{stat.capitalize()} angle err.", f"{stat}_angle_deg", "deg", False))
            if show_sym:
                cols.append((f"{stat.capitalize()} angle err. (sym)", f"{stat}_angle_sym_deg", "deg", False))
    if has_add:
        cols += [("ADD recall*", "add_recall", "pct", True), ("ADD-S recall*", "adds_recall", "pct", True)]
    gap_keys = [("Gap closed (acc.)", "accuracy")]
    if has_pose:
        gap_keys.append(("Gap closed (mean angle)", "mean_angle_deg"))
        if show_sym:
            gap_keys.append(("Gap closed (mean angle, sym)", "mean_angle_sym_deg"))

    def tail(r):
        if not gaps:
            return []
        if r is None:
            return [h for h, _ in gap_keys]
        return [gap_cell(gaps, r.name, k, noise) for _, k in gap_keys]

    extra = []
    if chance and has_pose:
        row = [CHANCE_NAME, "baseline", "–"]
        for _, key, fmt, _ in cols:
            v = chance.get(key) if "angle" in key else None
            row.append(deg(v) if fmt == "deg" else pct(v))
        extra.append(row + (["–"] * len(gap_keys) if gaps else []))
    model_table(doc, results, cols, [[r.name, r.role, r.info.get("method", "–")] for r in results], extra,
                cls="headline", tail=tail)


def threshold_table(doc: Doc, results, thresholds: Sequence[float], show_sym: bool, chance: dict | None) -> None:
    """Acc@X° per model, plain and symmetry-aware side by side, with the chance row (its rotation within X°)."""
    acc_cols = []
    for t in thresholds:
        acc_cols.append((f"Acc@{t:g}°", f"acc_at_deg.{t:g}", "pct", True))
        if show_sym:
            acc_cols.append((f"Acc@{t:g}° (sym)", f"acc_at_deg_sym.{t:g}", "pct", True))
    extra = []
    if chance:
        row = [CHANCE_NAME]
        for _, key, _, _ in acc_cols:
            row.append(pct(lookup(chance, key.replace("acc_at_deg", "rot_at_deg"))))
        extra.append(row)
    doc.para("Rotation accuracy: share of test images with the correct class and a rotation error below X degrees"
             + (" (plain, and symmetry-aware: sym)" if show_sym else "")
             + (". The chance row is given the true class, so its entries are the share of its rotations within X "
                "degrees." if chance else "."))
    model_table(doc, results, acc_cols, [[r.name] for r in results], extra, cls="thresholds")


def per_class_table(doc: Doc, m: dict, data, chance_ps: dict) -> None:
    """One model's per-class table: images, (symmetric), recall, precision, angle errors (plain, sym), the chance
    median, Acc@10°, ADD recalls.

    Args:
        m: the model's metrics (:func:`sim2real.eval.metrics.evaluate_arrays`).
        data: the test set (class names, labels).
        chance_ps: the chance baseline's ``per_sample`` errors (``{}`` without a baseline).
    """
    sym = has_sym(m)
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
