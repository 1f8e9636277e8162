"""Results over training seeds: mean +- std of every report metric and of the gap closed (``sim2real run --seeds``).

One run of a training stage is one draw: on the demo, one seed to the next moves source-only accuracy by
several points. :func:`aggregate` reads the per-seed ``metrics.json`` records (:mod:`sim2real.eval.record`) of
the same pipeline run with different ``train.seed`` values and gives, per model and metric, the mean, the
**sample** standard deviation (``ddof = 1``, as papers report a spread over runs; PixelDA Table 5 gives 1.60
accuracy points over 10 seeds) and every seed's value; :func:`write_seed_report` writes it as ``summary.json``,
``report.html``, ``report.md`` and a per-seed plot.

Layout of ``summary.json``::

    {"seeds_version": 1, "created": ..., "seeds": [0, 1, 2], "reports": {"0": "PATH/metrics.json", ...},
     "models": {NAME: {METRIC: {"mean", "std", "n", "values": {"0": v, ...}}}},
     "gap_closed": {"source_only": NAME, "target_only": NAME, "models": {NAME: {METRIC: {...same...}}}} or null,
     "chance": {METRIC: {...same...}} or null}

Shares (accuracy, acc@30) are in [0, 1]; angles in degrees; a metric missing for a seed (no poses, a gap within
noise) is left out of that seed's ``values`` and of ``n``; ``std`` is null with fewer than two values.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from sim2real.errors import Sim2RealError

SEEDS_VERSION = 1

#: (key, label, kind) of the per-model metrics aggregated; kind "share" (shown in %) or "deg".
MODEL_METRICS: tuple[tuple[str, str, str], ...] = (
    ("accuracy", "accuracy", "share"),
    ("median_angle_sym_deg", "median angle (sym.)", "deg"),
    ("mean_angle_sym_deg", "mean angle (sym.)", "deg"),
    ("acc30_sym", "acc@30° (sym.)", "share"),
    ("median_angle_deg", "median angle", "deg"),
    ("mean_angle_deg", "mean angle", "deg"),
)
#: gap-closed metrics aggregated (shares of the source-only -> target-only gap).
GAP_METRICS: tuple[tuple[str, str], ...] = (("accuracy", "accuracy gap closed"),
                                            ("median_angle_sym_deg", "median angle gap closed (sym.)"))


def mean_std(values: Sequence[float | None]) -> dict[str, float | int | None]:
    """``{"mean", "std", "n"}`` of the finite values (sample std, ddof = 1; None with fewer than 2 values)."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return {"mean": None, "std": None, "n": 0}
    return {"mean": float(v.mean()), "std": float(v.std(ddof=1)) if v.size > 1 else None, "n": int(v.size)}


def _model_value(m, key: str) -> float | None:
    if key == "acc30_sym":
        d = m.extra.get("acc_at_deg_sym") if m.symmetry_known else m.extra.get("acc_at_deg")
        return None if not d else d.get("30")
    return getattr(m, key, None) if key in m._TYPED else m.extra.get(key)


def _summarise(per_seed: Mapping[int, float | None]) -> dict[str, Any]:
    out = mean_std(list(per_seed.values()))
    out["values"] = {str(s): v for s, v in per_seed.items() if v is not None and math.isfinite(v)}
    return out


def aggregate(records: Mapping[int, Any]) -> dict[str, Any]:
    """The ``summary.json`` mapping for ``{seed: ReportRecord}`` (every seed's report must list the same models)."""
    if not records:
        raise Sim2RealError("--seeds: no per-seed reports to combine")
    seeds = sorted(records)
    names = [m.name for m in records[seeds[0]].models]
    for s in seeds[1:]:
        other = [m.name for m in records[s].models]
        if other != names:
            raise Sim2RealError(f"seed {s}: its report lists models {other}, seed {seeds[0]}'s {names} (not comparable)")
    models: dict[str, dict] = {}
    for i, name in enumerate(names):
        models[name] = {key: _summarise({s: _model_value(records[s].models[i], key) for s in seeds})
                        for key, _, _ in MODEL_METRICS}
    gap = None
    gaps = [records[s].gap_closed for s in seeds]
    if all(g is not None for g in gaps):
        refs = {(g.source_only, g.target_only) for g in gaps}
        if len(refs) > 1:
            raise Sim2RealError(f"--seeds: the reports use different source-only / target-only references {sorted(refs)}")
        base, upper = refs.pop()
        others = [n for n in names if n not in (base, upper)]
        gap = {"source_only": base, "target_only": upper,
               "models": {name: {key: _summarise({s: records[s].gap_closed.share(name, key) for s in seeds})
                                 for key, _ in GAP_METRICS} for name in others}}
    chance = None
    if all(records[s].chance for s in seeds):
        chance = {key: _summarise({s: records[s].chance.get(key) for s in seeds})
                  for key in ("median_angle_sym_deg", "mean_angle_sym_deg")}
    return {"seeds_version": SEEDS_VERSION,
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "seeds": seeds, "models": models, "gap_closed": gap, "chance": chance}


def cell(stat: Mapping[str, Any], kind: str, per_seed: bool = True) -> str:
    """``"48.7 ± 8.1% (35.7, 55.7, 54.7)"``: mean ± std, then each seed's value; ``"–"`` when there is none."""
    if not stat or stat.get("mean") is None:
        return "–"
    scale, unit = (100.0, "%") if kind == "share" else (1.0, "°")
    text = f"{scale * stat['mean']:.1f}"
    if stat.get("std") is not None:
        text += f" ± {scale * stat['std']:.1f}"
    text += unit
    if per_seed and len(stat.get("values", {})) > 1:
        text += " (" + ", ".join(f"{scale * v:.1f}" for v in stat["values"].values()) + ")"
    return text


def seeds_png(summary: Mapping[str, Any]) -> bytes:
    """Per model: each seed's value (dots) and mean ± std (bar), for accuracy and the symmetry-aware median angle."""
    from sim2real.eval.plots import CHANCE_COLOUR, CHANCE_LABEL, _figure, _png

    names = list(summary["models"])
    fig = _figure(max(6.0, 1.3 * len(names) + 3), 3.6)
    axes = fig.subplots(1, 2)
    for ax, (key, label, kind) in zip(axes, (MODEL_METRICS[0], MODEL_METRICS[1])):
        scale = 100.0 if kind == "share" else 1.0
        x = np.arange(len(names))
        means = [summary["models"][n][key]["mean"] for n in names]
        stds = [summary["models"][n][key]["std"] or 0.0 for n in names]
        ok = [m is not None for m in means]
        ax.bar(x[ok], [scale * m for m, o in zip(means, ok) if o], yerr=[scale * s for s, o in zip(stds, ok) if o],
               color="#9ecae1", edgecolor="#3182bd", capsize=4, label="mean ± std")
        for j, n in enumerate(names):
            vals = list(summary["models"][n][key]["values"].values())
            if vals:
                jitter = np.linspace(-0.15, 0.15, len(vals)) if len(vals) > 1 else np.zeros(1)
                ax.scatter(j + jitter, [scale * v for v in vals], color="#08306b", s=14, zorder=3,
                           label="one seed" if j == 0 else None)
        if kind == "deg" and summary.get("chance") and summary["chance"].get(key, {}).get("mean") is not None:
            ax.axhline(summary["chance"][key]["mean"], color=CHANCE_COLOUR, ls="--", lw=1, label=CHANCE_LABEL)
        ax.set_xticks(x, names, rotation=20, ha="right")
        ax.set_ylabel(f"{label} ({'%' if kind == 'share' else 'deg'})")
        ax.set_title(f"{label} over {len(summary['seeds'])} seeds")
        ax.legend(fontsize=7)
    return _png(fig)


def write_seed_report(out_dir: str | Path, summary: dict[str, Any], reports: Mapping[int, str | Path]) -> dict[str, str]:
    """Write ``summary.json``, ``report.html``, ``report.md`` and ``figures/seeds.png`` into ``out_dir``.

    Args:
        summary: :func:`aggregate`'s mapping.
        reports: per seed, the folder of that seed's full report (linked from this one).

    Returns:
        ``{"summary", "html", "md"}`` paths.
    """
    from sim2real.eval.report.document import Doc
    from sim2real.utils import atomic_write_text

    out = Path(out_dir)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise Sim2RealError(f"{out}: cannot create the report folder ({e.strerror})") from None
    summary = dict(summary, reports={str(s): str(Path(p) / "metrics.json") for s, p in reports.items()})
    seeds = summary["seeds"]
    doc = Doc(out, title="sim2real results over seeds")
    doc.heading(1, f"Results over {len(seeds)} training seeds ({', '.join(map(str, seeds))})")
    doc.para("Each cell: mean ± sample std (ddof = 1) over the seeds, then every seed's value in seed order. "
             "Only the training stages change with the seed (train.seed); the rendered and target data are the same.",
             cls="note")
    header = ["model"] + [label for _, label, _ in MODEL_METRICS]
    rows = [[name] + [cell(summary["models"][name][key], kind) for key, _, kind in MODEL_METRICS]
            for name in summary["models"]]
    if summary.get("chance"):
        rows.append(["chance (constant rotation)", "–", cell(summary["chance"]["median_angle_sym_deg"], "deg"),
                     cell(summary["chance"]["mean_angle_sym_deg"], "deg"), "–", "–", "–"])
    doc.table(header, rows, cls="headline")
    if summary.get("gap_closed"):
        g = summary["gap_closed"]
        doc.heading(2, f"Gap closed (share of the {g['source_only']} -> {g['target_only']} gap)")
        rows = [[name] + [cell(g["models"][name][key], "share") for key, _ in GAP_METRICS] for name in g["models"]]
        doc.table(["model"] + [label for _, label in GAP_METRICS], rows)
        doc.para("A seed whose gap was within noise has no share for that metric (left out of n).", cls="sub")
    doc.figure(seeds_png(summary), "seeds.png", "accuracy and median angle per model and seed")
    doc.heading(2, "Per-seed reports")
    doc.bullets([f"seed {s}: {Path(p) / 'report.html'}" for s, p in reports.items()])
    paths = {"summary": str(out / "summary.json"), "html": str(out / "report.html"), "md": str(out / "report.md")}
    atomic_write_text(out / "summary.json", json.dumps(summary, indent=2))
    atomic_write_text(out / "report.html", doc.html_page())
    atomic_write_text(out / "report.md", doc.markdown())
    return paths
