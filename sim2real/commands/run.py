"""``sim2real run PIPELINE.yaml [-o WORKDIR]``: every stage of a pipeline, cached, ending with the report."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from sim2real.commands.registry import options_from_namespace


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("pipeline", help="pipeline YAML (e.g. pipelines/demo.yaml); format: docs/pipelines.md")
    p.add_argument("-o", "--workdir", help="work folder for every stage's output (default: the file's workdir, else runs/NAME)")
    p.add_argument("--only", action="append", metavar="STAGE", help="run only this stage and what it needs (repeatable)")
    p.add_argument("--dry-run", action="store_true", help="show which stages would run or be reused, run nothing")
    p.add_argument("--seeds", metavar="S1,S2,...", type=_seed_list,
                   help="run the training stages once per training seed (data stages once) and report mean +- std "
                        "over the seeds, e.g. --seeds 0,1,2")
    p.add_argument("--jobs", type=int, metavar="N",
                   help="stages run at once, each stage whose inputs are ready in its own process "
                        "(default: the file's jobs, else 1)")


def _seed_list(text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]`` (argparse turns the ValueError into a one-line usage error)."""
    try:
        seeds = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 0,1,2, got {text!r}") from None
    if not seeds or min(seeds) < 0:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers >= 0 such as 0,1,2, got {text!r}")
    return seeds


@dataclasses.dataclass
class Options:
    """``sim2real run`` options."""

    pipeline: str
    """Pipeline YAML, or the name of a file in ``pipelines/``."""
    workdir: str | None = None
    """Work folder (None: the file's ``workdir``, else ``runs/<name>``)."""
    only: list[str] | None = None
    """Run only these stages and what they need."""
    dry_run: bool = False
    seeds: list[int] | None = None
    """Training seeds: the training stages run once per seed, the report gives mean +- std (None: once, as the file says)."""
    jobs: int | None = None
    """Stages run at once (None: the pipeline file's ``jobs``, else 1)."""


def options(args: argparse.Namespace) -> Options:
    return options_from_namespace(Options, args)


def _headline(report_dir: Path) -> list[str]:
    """A few lines from the report's ``metrics.json`` (:mod:`sim2real.eval.record`), if the evaluate stage wrote one."""
    from sim2real.errors import Sim2RealError
    from sim2real.eval.record import read

    p = report_dir / "metrics.json"
    if not p.is_file():
        return []
    try:
        rec = read(p)
    except Sim2RealError as e:
        return [f"  (no summary: {e})"]
    lines = []
    for r in rec.models:
        parts = []
        if r.accuracy is not None:
            parts.append(f"accuracy {100 * r.accuracy:.1f}%")
        if r.mean_angle_deg is not None:
            parts.append(f"mean angle error {r.mean_angle_deg:.1f} deg")
        if r.median_angle_sym_deg is not None and r.symmetry_known:  # unknown symmetries: it equals the plain one
            parts.append(f"median symmetry-aware {r.median_angle_sym_deg:.1f} deg")
        lines.append(f"  {r.name:<28s} {', '.join(parts)}")
    gap = rec.gap_closed
    if gap is not None:
        for name in gap.models:
            share = gap.share(name, "accuracy")
            if share is not None and name not in (gap.source_only, gap.target_only):
                lines.append(f"  {name}: closes {100 * share:.0f}% of the accuracy gap between "
                             f"{gap.source_only} and {gap.target_only}")
    return lines


def _seed_headline(report_dir: Path) -> list[str]:
    """Mean +- std lines from the combined report's ``summary.json`` (:mod:`sim2real.eval.seeds`)."""
    import json

    from sim2real.eval.seeds import cell

    p = report_dir / "summary.json"
    if not p.is_file():
        return []
    summary = json.loads(p.read_text())
    lines = [f"  over seeds {', '.join(map(str, summary['seeds']))} (mean ± std, then each seed):"]
    for name, m in summary["models"].items():
        parts = [f"accuracy {cell(m['accuracy'], 'share')}"]
        if m["median_angle_sym_deg"]["mean"] is not None:
            parts.append(f"median symmetry-aware {cell(m['median_angle_sym_deg'], 'deg')}")
        lines.append(f"  {name:<20s} {', '.join(parts)}")
    gap = summary.get("gap_closed")
    for name, g in (gap["models"] if gap else {}).items():
        if g["accuracy"]["mean"] is not None:
            lines.append(f"  {name}: closes {cell(g['accuracy'], 'share')} of the accuracy gap between "
                         f"{gap['source_only']} and {gap['target_only']}")
    return lines


def execute(opts: Options) -> dict:
    """Run the pipeline; returns :func:`sim2real.pipeline.run_pipeline`'s summary."""
    from sim2real.pipeline import run_pipeline

    return run_pipeline(opts.pipeline, workdir=opts.workdir, only=opts.only, dry_run=opts.dry_run, seeds=opts.seeds,
                        jobs=opts.jobs)


def report(opts: Options, res: dict) -> int:
    print(f"\npipeline finished in {res['seconds']:.1f} s (work folder {res['workdir']}):")
    for s in res["stages"]:
        secs = f"{s['seconds']:.1f} s" if s["status"] in ("ran", "resumed") else ""
        print(f"  {s['name']:<20s} {s['status']:<12s} {secs:>9s}  {s['output']}")
    if res["report"] and not opts.dry_run:
        rd = Path(res["report"])
        for line in (_seed_headline(rd) if res.get("seeds") else _headline(rd)):
            print(line)
        html = rd / "report.html"
        print(f"report: {html if html.exists() else rd}")
    return 0
