"""``sim2real run PIPELINE.yaml [-o WORKDIR]``: every stage of a pipeline, cached, ending with the report."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pipeline", help="pipeline YAML (e.g. pipelines/demo.yaml); format: docs/pipelines.md")
    p.add_argument("-o", "--workdir", help="work folder for every stage's output (default: the file's workdir, else runs/NAME)")
    p.add_argument("--only", action="append", metavar="STAGE", help="run only this stage and what it needs (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="show which stages would run or be reused, run nothing")


def _headline(report_dir: Path) -> list[str]:
    """A few lines from the report's metrics.json, if the evaluate stage wrote one."""
    p = report_dir / "metrics.json"
    try:
        m = json.loads(p.read_text())
    except (OSError, ValueError):
        return []
    lines = []
    models = m.get("models") if isinstance(m, dict) else None
    if isinstance(models, dict):
        items = models.items()
    elif isinstance(models, list):
        items = [(x.get("name", f"model{i}"), x) for i, x in enumerate(models)]
    else:
        return []
    for name, r in items:
        r = r.get("metrics", r) if isinstance(r, dict) else {}
        acc = r.get("accuracy")
        ang = r.get("mean_angle_deg", r.get("angle_mean_deg"))
        parts = []
        if isinstance(acc, (int, float)):
            parts.append(f"accuracy {100 * acc:.1f}%")
        if isinstance(ang, (int, float)):
            parts.append(f"mean angle error {ang:.1f} deg")
        lines.append(f"  {name:<28s} {', '.join(parts)}")
    gap = m.get("gap_closed") if isinstance(m, dict) else None
    if isinstance(gap, dict) and isinstance(gap.get("models"), dict):
        for name, shares in gap["models"].items():
            share = shares.get("accuracy") if isinstance(shares, dict) else None
            if isinstance(share, (int, float)) and name not in (gap.get("source_only"), gap.get("target_only")):
                lines.append(f"  {name}: closes {100 * share:.0f}% of the accuracy gap between "
                             f"{gap.get('source_only')} and {gap.get('target_only')}")
    return lines


def run(args: argparse.Namespace) -> int:
    from sim2real.pipeline import run_pipeline

    res = run_pipeline(args.pipeline, workdir=args.workdir, only=args.only, dry_run=args.dry_run)
    print(f"\npipeline finished in {res['seconds']:.1f} s (work folder {res['workdir']}):")
    for s in res["stages"]:
        secs = f"{s['seconds']:.1f} s" if s["status"] in ("ran", "resumed") else ""
        print(f"  {s['name']:<20s} {s['status']:<12s} {secs:>9s}  {s['output']}")
    if res["report"] and not args.dry_run:
        rd = Path(res["report"])
        for line in _headline(rd):
            print(line)
        html = rd / "report.html"
        print(f"report: {html if html.exists() else rd}")
    return 0
