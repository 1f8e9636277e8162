"""``write_report``: the evaluation report's files (``metrics.json``, ``report.html``, ``report.md``, ``figures/``)."""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Sequence

from sim2real.eval.report.document import Doc
from sim2real.eval.report.format import json_safe
from sim2real.eval.report.sections import (ReportContext, write_header, write_memorisation, write_model,
                                           write_summary)
from sim2real.eval.report.verdicts import gap_reasons
from sim2real.utils import atomic_write_text

#: Version of the metrics.json layout; 2 added chance, rotation_verdict, gap_closed.significance / reasons.
METRICS_VERSION = 2


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
    out = _prepare_folder(Path(out_dir))
    doc = Doc(out)
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    ctx = ReportContext(data=data, results=results, base=base, upper=upper, gaps=gaps, notes=notes,
                        thresholds=thresholds, worst_k=worst_k, chance=chance, created=created)
    warnings = write_header(doc, ctx)
    write_summary(doc, ctx)
    for k, r in enumerate(results):
        write_model(doc, ctx, k, r)
    memo_summary = write_memorisation(doc, memo)
    metrics = json_safe(_metrics_json(ctx, memo_summary, warnings, doc.figures))
    atomic_write_text(out / "metrics.json", json.dumps(metrics, indent=2))
    atomic_write_text(out / "report.html", doc.html_page())
    atomic_write_text(out / "report.md", doc.markdown())
    return metrics


def _prepare_folder(out: Path) -> Path:
    """Create the report folder; remove the figures of an earlier report there (they would pass for this one's)."""
    from sim2real.errors import Sim2RealError

    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise Sim2RealError(f"{out}: cannot create the report folder ({e.strerror})") from None
    fig_dir = out / "figures"
    if fig_dir.is_dir():
        for old in fig_dir.glob("*.png"):
            old.unlink()
    return out


def _model_summary(r, verdict: dict | None = None) -> dict:
    """One model's entry in metrics.json (no per-sample arrays)."""
    m = r.metrics
    d = {"name": r.name, "path": r.path, "kind": r.kind, "role": r.role, **r.info, "warnings": r.warnings}
    d.update({k: v for k, v in m.items() if k != "per_sample"})
    d["rotation_verdict"] = verdict
    return d


def _metrics_json(ctx: ReportContext, memo_summary: dict | None, warnings: list[str], figures: list[str]) -> dict:
    """The metrics.json mapping (before :func:`json_safe`)."""
    from sim2real.eval.metrics import GAP_NOISE_Z
    from sim2real.utils import versions

    data, chance = ctx.data, ctx.chance
    # Key order and presence are fixed (docs/evaluation.md, "metrics.json"): absent things are null, not missing.
    return {
        "metrics_version": METRICS_VERSION,
        "created": ctx.created,
        "versions": versions(),
        "test_set": None if data is None else {
            "path": str(data.path), "n": len(data), "domain": data.attrs.get("domain"), "class_names": list(data.class_names),
            "image_size": list(data.image_size), "has_pose": data.quat is not None,
            "has_add": data.trans is not None and data.model_points is not None and data.diameters is not None},
        "thresholds_deg": [float(t) for t in ctx.thresholds],
        "models": [_model_summary(r, ctx.verdicts.get(r.name)) for r in ctx.results],
        "chance": None if chance is None else {k: v for k, v in chance.items() if k != "per_sample"},
        "gap_closed": None if not ctx.gaps else {
            "source_only": ctx.base.name, "target_only": ctx.upper.name, "noise_z": GAP_NOISE_Z,
            "significance": ctx.noise, "reasons": gap_reasons(ctx.noise, ctx.base, ctx.upper), "models": ctx.gaps},
        "memorisation": memo_summary,
        "warnings": warnings,
        "notes": list(ctx.notes),
        "figures": figures,
    }
