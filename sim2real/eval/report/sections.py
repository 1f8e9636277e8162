"""The report's sections, in page order: header and warnings, summary (headline, notes, comparison figure,
metric definitions), one section per model, the memorisation check.

Each ``write_*`` appends to a :class:`~sim2real.eval.report.document.Doc`; what they share is a
:class:`ReportContext`, built once by :func:`~sim2real.eval.report.write.write_report`.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from sim2real.eval.report.document import Doc
from sim2real.eval.report.format import deg, pct, slug
from sim2real.eval.report.tables import headline_table, per_class_table, threshold_table
from sim2real.eval.report.verdicts import (CHANCE_NAME, GAP_NA, LEARNT_MARGIN_DEG, LEARNT_Z, has_sym, noise_text,
                                           rotation_verdict)

ROLE_HELP = {
    "source-only": "trained on renders only (the baseline)",
    "adapted": "trained on PixelDA-adapted renders",
    "pixelda": "PixelDA's own task network T",
    "dann": "task network T of a DANN run (feature alignment by gradient reversal)",
    "coral": "task network T of a Deep CORAL run (feature covariances aligned)",
    "mmd": "task network T of an MMD run (multi-kernel MMD between features)",
    "dtn": "task network T of a DTN run (trained on DTN-adapted renders G(x_s) = g(f(x_s)))",
    "semi-supervised": "adapted renders + a few labelled target images",
    "target-only": "trained on labelled target images (the upper bound)",
}

METRIC_DEFINITIONS = [
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
]


@dataclasses.dataclass
class ReportContext:
    """What the sections share: the inputs of ``write_report`` and what is derived from them once."""

    data: Any
    results: Sequence
    base: Any
    upper: Any
    gaps: dict
    notes: Sequence[str]
    thresholds: Sequence[float]
    worst_k: int
    #: The chance baseline (None without poses); ``chance_ps`` its per-sample errors, ``chance_curve`` the plotted ones.
    chance: dict | None
    created: str
    #: Derived: whether any model has poses / ADD / symmetry-aware errors to show; the gap-noise tests
    #: (:func:`~sim2real.eval.metrics.gap_noise`); each model's :func:`rotation_verdict`.
    has_pose: bool = dataclasses.field(init=False)
    has_add: bool = dataclasses.field(init=False)
    show_sym: bool = dataclasses.field(init=False)
    noise: dict = dataclasses.field(init=False)
    verdicts: dict = dataclasses.field(init=False)
    chance_ps: dict = dataclasses.field(init=False)
    chance_curve: dict | None = dataclasses.field(init=False)

    def __post_init__(self) -> None:
        from sim2real.eval.metrics import gap_noise

        self.has_pose = any(r.metrics["has_pose"] for r in self.results)
        self.has_add = any(r.metrics["has_add"] for r in self.results)
        self.show_sym = any(has_sym(r.metrics) for r in self.results)
        if not self.has_pose:
            self.chance = None
        self.noise = gap_noise(self.base, self.upper) if self.gaps else {}
        self.verdicts = {r.name: rotation_verdict(r.metrics, self.chance) for r in self.results}
        self.chance_ps = (self.chance or {}).get("per_sample") or {}
        self.chance_curve = None if self.chance_ps.get("angle_deg") is None else {
            "angle_deg": self.chance_ps.get("angle_deg"), "angle_sym_deg": self.chance_ps.get("angle_sym_deg")}


# ------------------------------------------------------------------------------------------------
# header
# ------------------------------------------------------------------------------------------------


def write_header(doc: Doc, ctx: ReportContext) -> list[str]:
    """Title, the test set in one line, the warnings box; returns the warnings (they go into metrics.json)."""
    from sim2real import __version__

    data = ctx.data
    doc.heading(1, "sim2real evaluation report")
    if data is not None:
        dom = data.attrs.get("domain")
        doc.para(f"Test set: {data.path} — {len(data)} images, {data.image_size[0]}x{data.image_size[1]} px, "
                 f"{data.num_classes} classes ({', '.join(data.class_names)}), domain '{dom}'. "
                 f"Generated {ctx.created} by sim2real {__version__}.", cls=None)
    warnings: list[str] = []
    if data is not None and data.attrs.get("domain") != "target":
        warnings.append(f"the test set's domain is '{data.attrs.get('domain')}', not 'target': these numbers do not "
                        "measure performance on real (target-camera) images")
    if data is not None and data.attrs.get("skipped"):
        warnings.append(f"bad test images were skipped (--skip-bad): {data.attrs['skipped']}")
    if data is not None and data.quat is None:
        warnings.append("the test set has no 'quat' labels: only classification metrics are reported")
    for r in ctx.results:
        warnings += [f"{r.name}: {w}" for w in r.warnings]
    if warnings:
        doc.bullets(warnings, cls="warn")
    return warnings


# ------------------------------------------------------------------------------------------------
# summary
# ------------------------------------------------------------------------------------------------


def write_summary(doc: Doc, ctx: ReportContext) -> None:
    """Headline table, verdicts, Acc@X° table, the notes box, the comparison figure, the metric definitions."""
    from sim2real.eval import plots

    results = ctx.results
    if not results:
        return
    doc.heading(2, "Summary", anchor="summary")
    headline_table(doc, results, ctx.gaps, ctx.noise, ctx.has_pose, ctx.has_add, ctx.show_sym, ctx.chance)
    said = [f"{name}: {v['text']}" for name, v in ctx.verdicts.items() if v is not None]
    if said:
        doc.bullets(said, cls="note" if all(v["learnt"] for v in ctx.verdicts.values() if v is not None) else "warn")
    if ctx.has_pose:
        threshold_table(doc, results, ctx.thresholds, ctx.show_sym, ctx.chance)
    seen_unseen_table(doc, results)
    doc.bullets(_gap_notes(ctx) + _metric_notes(ctx) + list(ctx.notes), cls="note")
    if ctx.has_pose:
        errs = {r.name: r.metrics["per_sample"]["angle_deg"] for r in results if r.metrics["has_pose"]}
        syms = {r.name: r.metrics["per_sample"].get("angle_sym_deg") if has_sym(r.metrics) else None
                for r in results if r.metrics["has_pose"]}
        doc.figure(plots.angle_error_png(errs, ctx.thresholds, sym_errors=syms if ctx.show_sym else None,
                                         chance=ctx.chance_curve),
                   "comparison_angle_error.png",
                   "Angle-error histogram and CDF, all models" + (", with the chance baseline" if ctx.chance_curve else ""))
    doc.raw_html("<details><summary>Metric definitions</summary>")
    doc.md.append("**Metric definitions**\n")
    doc.bullets(METRIC_DEFINITIONS)
    doc.raw_html("</details>")


def seen_unseen_table(doc: Doc, results) -> None:
    """Seen vs unseen classes (paper Table 4) for the models whose adaptation left classes out."""
    rows = []
    for r in results:
        su = r.metrics.get("seen_unseen")
        if not su:
            continue
        s_, u = su["seen"], su["unseen"]
        rows.append([r.name, ", ".join(r.info.get("seen_classes") or []), f"{s_['n']} / {u['n']}",
                     pct(s_["accuracy"]), pct(u["accuracy"]),
                     deg(s_.get("median_angle_sym_deg")), deg(u.get("median_angle_sym_deg"))])
    if not rows:
        return
    doc.heading(3, "Seen vs unseen classes")
    doc.para("The adaptation of these models saw only some classes (train.source_classes); G then translated the "
             "renders of every class. Test images of the classes it saw and of the others, apart:")
    doc.table(["Model", "Adapted on", "Test images (seen / unseen)", "Accuracy seen", "Accuracy unseen",
               "Median angle seen (sym)", "Median angle unseen (sym)"], rows)


def _gap_notes(ctx: ReportContext) -> list[str]:
    """The notes on "gap closed": its formula and the gap itself with its noise, or why it is not shown."""
    base, upper, noise = ctx.base, ctx.upper, ctx.noise
    lines = []
    if ctx.gaps:
        lines.append(f"Gap closed = (model - source-only) / (target-only - source-only), with source-only = {base.name} "
                     f"and target-only = {upper.name}: 0% is no better than training on renders, 100% matches "
                     "training on labelled target images (computed per metric; for errors, lower is better and the "
                     "same formula applies).")
        span = [f"accuracy {pct(base.metrics['accuracy'])} → {pct(upper.metrics['accuracy'])}"
                + noise_text(noise.get("accuracy"), "pct")]
        if base.metrics.get("has_pose") and upper.metrics.get("has_pose"):
            span.append(f"mean angle error {deg(base.metrics['mean_angle_deg'])} → "
                        f"{deg(upper.metrics['mean_angle_deg'])}" + noise_text(noise.get("mean_angle_deg"), "deg"))
            if ctx.show_sym:
                span.append(f"symmetry-aware {deg(base.metrics.get('mean_angle_sym_deg'))} → "
                            f"{deg(upper.metrics.get('mean_angle_sym_deg'))}"
                            + noise_text(noise.get("mean_angle_sym_deg"), "deg"))
        lines.append("The gap itself (source-only → target-only): " + "; ".join(span)
                     + f". A gap within noise (|gap| ≤ 2 standard errors) shows '{GAP_NA}': a share of noise "
                     "means nothing.")
    elif len(ctx.results) > 1:
        lines.append("Gap closed is not shown: it needs one source-only and one target-only model "
                     "(recorded in the run, or chosen with --source-only / --target-only).")
    return lines


def _metric_notes(ctx: ReportContext) -> list[str]:
    """The notes on Acc@X°, symmetry-aware errors, the chance baseline and ADD, as far as the report shows them."""
    lines = []
    if ctx.has_pose:
        lines.append("Acc@X° = share of test images with the correct class AND a rotation error below X degrees. "
                     "Angle errors are over all test images, whatever the predicted class.")
    if ctx.show_sym:
        lines.append("(sym) = symmetry-aware rotation error: the smallest error over the object's symmetries "
                     "(a pose that looks the same is not wrong); symmetric classes are marked in the per-class "
                     "tables. The plain error ignores symmetry.")
    elif ctx.has_pose:
        lines.append("The test set carries no symmetry annotations, so symmetry-aware errors equal the plain ones "
                     "and are not shown separately: errors of symmetric objects may be overstated.")
    if ctx.chance is not None:
        lines.append(f"{CHANCE_NAME}: one fixed rotation per class (the medoid of that class's true test "
                     "rotations), given the true class: what a model that ignores the image can reach. A model "
                     f"has learnt rotation when its median error is more than {LEARNT_MARGIN_DEG:g}° below "
                     f"chance's and its per-image improvement over chance exceeds {LEARNT_Z:g} standard errors.")
    elif ctx.has_pose:
        lines.append("No chance baseline: this version cannot compute the constant-rotation baseline.")
    if ctx.has_add:
        tr = {r.metrics.get("add_translation") for r in ctx.results if r.metrics["has_add"]}
        if "ground truth" in tr:
            lines.append("*ADD / ADD-S use the predicted rotation with the GROUND-TRUTH translation (the networks "
                         "predict class + rotation only): a rotation-only ADD, optimistic compared with a full 6D "
                         "pose estimate. A sample counts when its class is correct and the error is below 10% of "
                         "the object diameter.")
    return lines


# ------------------------------------------------------------------------------------------------
# one model
# ------------------------------------------------------------------------------------------------


def write_model(doc: Doc, ctx: ReportContext, k: int, r) -> None:
    """Section ``k`` (0-based): facts and headline numbers, per-class table, confusion, angle error, worst cases."""
    from sim2real.eval import plots

    m = r.metrics
    name = f"{k + 1:02d}_{slug(r.name)}"
    doc.heading(2, f"{r.name}", anchor=f"model-{k + 1}")
    doc.bullets(_model_facts(ctx, r))
    doc.heading(3, "Per class")
    per_class_table(doc, m, ctx.data, ctx.chance_ps)
    doc.heading(3, "Confusion matrix")
    doc.figure(plots.confusion_png(np.array(m["confusion"]), ctx.data.class_names,
                                   f"{r.name}: confusion (rows: true class)"),
               f"{name}_confusion.png", f"{r.name} confusion matrix")
    if m["has_pose"]:
        doc.heading(3, "Angle error")
        sym_e = m["per_sample"].get("angle_sym_deg") if has_sym(m) else None
        doc.figure(plots.angle_error_png({r.name: m["per_sample"]["angle_deg"]}, ctx.thresholds,
                                         sym_errors={r.name: sym_e} if sym_e is not None else None,
                                         chance=ctx.chance_curve),
                   f"{name}_angle_error.png", f"{r.name} angle-error histogram and CDF"
                   + (", with the chance baseline" if ctx.chance_curve else ""))
    _worst_cases(doc, ctx, r, name)


def _model_facts(ctx: ReportContext, r) -> list[str]:
    """What the model is (kind, role, path, step, training data) and one line of its numbers and verdict."""
    m = r.metrics
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
        if has_sym(m):
            line += (f" · symmetry-aware: mean {deg(m['mean_angle_sym_deg'])}, "
                     f"median {deg(m.get('median_angle_sym_deg'))}")
    if m["has_add"]:
        line += f" · ADD recall {pct(m['add_recall'])}, ADD-S recall {pct(m['adds_recall'])}"
    if ctx.verdicts.get(r.name):
        line += f" · {ctx.verdicts[r.name]['text']}"
    return facts + [line]


def _worst_cases(doc: Doc, ctx: ReportContext, r, name: str) -> None:
    """The ``worst_k`` worst test images of one model, captioned, with true and predicted object axes."""
    from sim2real.conventions import matrix_from_quat
    from sim2real.eval import plots
    from sim2real.eval.metrics import worst_indices

    m, data = r.metrics, ctx.data
    idx = worst_indices(m, r.pred, ctx.worst_k)
    if not len(idx):
        return
    doc.heading(3, "Worst cases")
    correct = m["per_sample"]["correct"]
    ang = m["per_sample"]["angle_deg"]
    ang_sym = m["per_sample"].get("angle_sym_deg") if has_sym(m) else None
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
    doc.figure(plots.worst_cases_png(data.rgb[idx], caps, **kw), f"{name}_worst.png", f"{r.name} worst cases")
    expl = "Misclassified images first (most confident first), then the largest rotation errors."
    if kw:
        expl += " Object axes: true pose solid, predicted dashed (x red, y green, z blue)."
    doc.para(expl, cls=None)


# ------------------------------------------------------------------------------------------------
# memorisation
# ------------------------------------------------------------------------------------------------


def write_memorisation(doc: Doc, memo) -> dict | None:
    """The memorisation check (PixelDA): verdict, nearest-neighbour pairs, distance histograms; returns its summary
    for metrics.json (None without a check)."""
    if memo is None:
        return None
    from sim2real.eval import plots
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
    return memo_summary
