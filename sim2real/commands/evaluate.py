"""``sim2real evaluate``: evaluate pose models on a labelled test set -> metrics.json, report.html, report.md."""

from __future__ import annotations

import argparse


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


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    import shutil
    import tempfile

    from sim2real.errors import Sim2RealError
    from sim2real.eval.evaluate import parse_model_arg, run_evaluation
    from sim2real.outputs import check_output, clean_stale_temporaries, replace_folder, temp_prefix

    for name in ("memorisation_n", "worst", "batch_size"):
        if getattr(args, name) < 1:
            raise Sim2RealError(f"--{name.replace('_', '-')}: expected a positive integer, got {getattr(args, name)}")
    out = Path(args.output)
    inputs: list = [args.test, args.memorisation, args.target_train]
    for arg in args.models:
        p = Path(parse_model_arg(arg)[1])
        inputs += [p] if p.is_file() else [p / "run.json", *sorted(p.glob("checkpoints/*.pt"))]
    check_output(out, inputs, overwrite=args.overwrite, folder=True)
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise Sim2RealError(f"{out}: the output folder {parent} does not exist")
    # The report is written beside REPORT_DIR and moved into place when complete: a failure (or a full disk)
    # leaves no half-written report, and an old report survives a failed --overwrite.
    clean_stale_temporaries(out)
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(out), suffix=".partial", dir=parent))
    try:
        m = run_evaluation(args.models, args.test, tmp, device=args.device, batch_size=args.batch_size,
                           worst_k=args.worst, memorisation=args.memorisation, target_train=args.target_train,
                           memorisation_n=args.memorisation_n, source_only=args.source_only,
                           target_only=args.target_only, seed=args.seed, skip_bad=args.skip_bad)
        tmp.chmod(0o777 & ~_umask())
        replace_folder(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for r in m["models"]:
        line = f"{r['name']:<24} {r['role']:<16} accuracy {100 * r['accuracy']:5.1f}%"
        if r.get("mean_angle_deg") is not None:
            line += f"  mean angle {r['mean_angle_deg']:6.1f} deg  median {r['median_angle_deg']:6.1f} deg"
        gc = m.get("gap_closed") or {}
        gap = (gc.get("models") or {}).get(r["name"], {}).get("accuracy")
        if gap is not None:
            line += f"  gap closed (acc) {100 * gap:.0f}%"
        elif ((gc.get("significance") or {}).get("accuracy") or {}).get("significant") is False:
            line += "  gap closed (acc) n/a (gap too small)"
        if r.get("checkpoint"):
            step = f", step {r['step']}" if r.get("step") is not None else ""
            line += f"  [{Path(r['checkpoint']).name}{step}]"
        print(line)
    if m.get("memorisation"):
        mm = m["memorisation"]
        print(f"memorisation: {mm['near_copies']}/{mm['n_checked']} near-copies; median NN distance {mm['median_nn_distance']:.1f} "
              f"(target-to-target {mm['median_target_to_target_distance']:.1f})")
    for w in m["warnings"]:
        print(f"warning: {w}")
    for n in m.get("notes") or []:
        print(f"note: {n}")
    print(f"evaluate: wrote {out / 'report.html'}, {out / 'report.md'}, {out / 'metrics.json'}")
    return 0


def _umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask
