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


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sim2real.errors import Sim2RealError
    from sim2real.eval.evaluate import run_evaluation

    for name in ("memorisation_n", "worst", "batch_size"):
        if getattr(args, name) < 1:
            raise Sim2RealError(f"--{name.replace('_', '-')}: expected a positive integer, got {getattr(args, name)}")
    m = run_evaluation(args.models, args.test, args.output, device=args.device, batch_size=args.batch_size,
                       worst_k=args.worst, memorisation=args.memorisation, target_train=args.target_train,
                       memorisation_n=args.memorisation_n, source_only=args.source_only, target_only=args.target_only,
                       seed=args.seed, skip_bad=args.skip_bad)
    for r in m["models"]:
        line = f"{r['name']:<24} {r['role']:<16} accuracy {100 * r['accuracy']:5.1f}%"
        if r.get("mean_angle_deg") is not None:
            line += f"  mean angle {r['mean_angle_deg']:6.1f} deg  median {r['median_angle_deg']:6.1f} deg"
        gap = ((m.get("gap_closed") or {}).get("models") or {}).get(r["name"], {}).get("accuracy")
        if gap is not None:
            line += f"  gap closed (acc) {100 * gap:.0f}%"
        print(line)
    if m.get("memorisation"):
        mm = m["memorisation"]
        print(f"memorisation: {mm['near_copies']}/{mm['n_checked']} near-copies; median NN distance {mm['median_nn_distance']:.1f} "
              f"(target-to-target {mm['median_target_to_target_distance']:.1f})")
    for w in m["warnings"]:
        print(f"warning: {w}")
    out = Path(args.output)
    print(f"evaluate: wrote {out / 'report.html'}, {out / 'report.md'}, {out / 'metrics.json'}")
    return 0
