"""``sim2real evaluate``: evaluate pose models on a labelled test set -> metrics.json, report.html, report.md."""

from __future__ import annotations

import argparse
import dataclasses

from sim2real.commands.registry import options_from_namespace


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("models", nargs="*", metavar="MODEL",
                   help="train-pose run, adapt run (its task network), or a checkpoint inside a run; "
                        "NAME=PATH sets the name shown in the report")
    p.add_argument("--test", metavar="T.h5|DIR", help="labelled test set: HDF5 file, or a folder of images with labels.csv "
                                                     "(docs/data-formats.md); never trained or selected on")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable images in a --test folder (counted)")
    p.add_argument("-o", "--output", required=True, metavar="REPORT_DIR", help="folder for metrics.json, report.html, report.md")
    p.add_argument("--source-only", metavar="NAME", help="model to use as the source-only baseline for 'gap closed' "
                                                          "(default: the one whose run records role source-only)")
    p.add_argument("--target-only", metavar="NAME", help="model to use as the target-only upper bound for 'gap closed'")
    p.add_argument("--memorisation", metavar="ADAPTED.h5", help="PixelDA memorisation check: adapted samples (sim2real "
                                                                "export output) vs their nearest target training images")
    p.add_argument("--target-train", metavar="T.h5", help="the target training set the adapt run used (with --memorisation)")
    p.add_argument("--memorisation-n", type=int, default=24, metavar="N", help="adapted samples to check (default 24)")
    p.add_argument("--worst", type=int, default=16, metavar="K", help="worst cases shown per model (default 16)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default auto)")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0, help="which samples the memorisation check shows")
    p.add_argument("--overwrite", action="store_true", help="replace an existing REPORT_DIR (written beside it, then "
                                                            "swapped in: a failed run keeps the old report)")


@dataclasses.dataclass
class Options:
    """``sim2real evaluate`` options."""

    output: str
    """Report folder (metrics.json, report.html, report.md)."""
    models: list[str] = dataclasses.field(default_factory=list)
    """Runs or checkpoints; ``NAME=PATH`` sets the name shown."""
    test: str | None = None
    """Labelled test set: HDF5 file or image folder with labels.csv."""
    skip_bad: bool = False
    source_only: str | None = None
    """The model used as the source-only baseline for 'gap closed' (None: by recorded role)."""
    target_only: str | None = None
    memorisation: str | None = None
    """Adapted samples for the PixelDA memorisation check."""
    target_train: str | None = None
    """The target training set the adapt run used (with ``memorisation``)."""
    memorisation_n: int = 24
    worst: int = 16
    """Worst cases shown per model."""
    device: str = "auto"
    batch_size: int = 256
    seed: int = 0
    """Which samples the memorisation check shows."""
    overwrite: bool = False


def options(args: argparse.Namespace) -> Options:
    return options_from_namespace(Options, args)


def execute(opts: Options):
    """Evaluate and write the report; returns its :class:`~sim2real.eval.record.ReportRecord` (``metrics.json``)."""
    import shutil
    import tempfile
    from pathlib import Path

    from sim2real.errors import Sim2RealError
    from sim2real.eval.evaluate import parse_model_arg, run_evaluation
    from sim2real.outputs import check_output, clean_stale_temporaries, replace_folder, temp_prefix

    for name in ("memorisation_n", "worst", "batch_size"):
        if getattr(opts, name) < 1:
            raise Sim2RealError(f"--{name.replace('_', '-')}: expected a positive integer, got {getattr(opts, name)}")
    out = Path(opts.output)
    inputs: list = [opts.test, opts.memorisation, opts.target_train]
    for arg in opts.models:
        p = Path(parse_model_arg(arg)[1])
        inputs += [p] if p.is_file() else [p / "run.json", *sorted(p.glob("checkpoints/*.pt"))]
    check_output(out, inputs, overwrite=opts.overwrite, folder=True)
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise Sim2RealError(f"{out}: the output folder {parent} does not exist")
    # The report is written beside REPORT_DIR and moved into place when complete: a failure (or a full disk)
    # leaves no half-written report, and an old report survives a failed --overwrite.
    clean_stale_temporaries(out)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(out), suffix=".partial", dir=parent))
    try:
        record = run_evaluation(opts.models, opts.test, tmp, device=opts.device, batch_size=opts.batch_size,
                                worst_k=opts.worst, memorisation=opts.memorisation, target_train=opts.target_train,
                                memorisation_n=opts.memorisation_n, source_only=opts.source_only,
                                target_only=opts.target_only, seed=opts.seed, skip_bad=opts.skip_bad)
        tmp.chmod(0o777 & ~_umask())
        replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return record


def report(opts: Options, record) -> int:
    from pathlib import Path

    out = Path(opts.output)
    gc = record.gap_closed
    for r in record.models:
        line = f"{r.name:<24} {r.role:<16} accuracy {100 * r.accuracy:5.1f}%"
        if r.mean_angle_deg is not None:
            line += f"  mean angle {r.mean_angle_deg:6.1f} deg  median {r.median_angle_deg:6.1f} deg"
        gap = gc.share(r.name, "accuracy") if gc is not None else None
        if gap is not None:
            line += f"  gap closed (acc) {100 * gap:.0f}%"
        elif gc is not None and ((gc.significance or {}).get("accuracy") or {}).get("significant") is False:
            line += "  gap closed (acc) n/a (gap too small)"
        if r.checkpoint:
            step = f", step {r.step}" if r.step is not None else ""
            line += f"  [{Path(r.checkpoint).name}{step}]"
        print(line)
    if record.memorisation:
        mm = record.memorisation
        print(f"memorisation: {mm['near_copies']}/{mm['n_checked']} near-copies; median NN distance {mm['median_nn_distance']:.1f} "
              f"(target-to-target {mm['median_target_to_target_distance']:.1f})")
    for w in record.warnings:
        print(f"warning: {w}")
    for n in record.notes:
        print(f"note: {n}")
    print(f"evaluate: wrote {out / 'report.html'}, {out / 'report.md'}, {out / 'metrics.json'}")
    return 0


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask
