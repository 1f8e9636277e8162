"""``sim2real train-pose``: train a class + quaternion network on labelled HDF5 files (see docs/train-pose.md)."""

from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--train", action="append", metavar="X.h5", default=[],
                   help="labelled HDF5 training file (repeat to mix several: renders, adapted, a few target images)")
    p.add_argument("--val", metavar="V.h5", help="labelled held-out file for validation and best.pt (never the test set)")
    p.add_argument("-o", "--output", required=True, metavar="RUN_DIR", help="run folder to create (or continue with --resume)")
    p.add_argument("--config", metavar="C.yaml", help="config file or shipped name (pose-small, pose-resnet18, pose-tiny); "
                                                       "default pose-small")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key (repeatable)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR from its last checkpoint "
                                                         "(a run stopped before its first checkpoint starts at step 0)")
    g.add_argument("--overwrite", action="store_true", help="replace an existing RUN_DIR (never one holding an input)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sim2real.config import load_config
    from sim2real.errors import Sim2RealError
    from sim2real.outputs import check_output
    from sim2real.train.common import has_checkpoint, read_run_info
    from sim2real.train.pose import PoseConfig, resume_config, train_pose

    out = Path(args.output)
    resuming = args.resume and (out / "config.yaml").is_file()
    if resuming:
        cfg = resume_config(out, args.config, args.set)
        train = args.train or [f["path"] for f in read_run_info(out).get("train", [])]
        val = args.val or (read_run_info(out).get("val") or {}).get("path")
    else:
        cfg = load_config(PoseConfig, args.config or "pose-small", args.set)
        train, val = args.train, args.val
    if not train:
        raise Sim2RealError("--train: give at least one labelled HDF5 file")
    if not args.resume:
        check_output(out, [*train, val], overwrite=args.overwrite, folder=True,
                     flag="--resume to continue it, or --overwrite")
    elif not has_checkpoint(out):
        print(f"train-pose: {out}: no checkpoint to resume yet (the run stopped before its first); starting from step 0")
    res = train_pose(train, out, cfg, val_path=val, resume=args.resume,
                     show_progress=False if args.no_progress else None, overwrite=args.overwrite)
    print(f"train-pose: {res['role']} run, {res['n_train']} training images, {res['step']} steps on {res['device']} -> {out}")
    if res["pose_supervised"] == 0:
        print("train-pose: warning: no training file has 'quat': only the classifier was trained", file=sys.stderr)
    for key in ("last_val", "best_val"):
        v = res.get(key)
        if v:
            angle = f", mean angle error {v['mean_angle_deg']:.1f} deg" if "mean_angle_deg" in v else ""
            print(f"train-pose: {key.replace('_', ' ')}: accuracy {100 * v['accuracy']:.1f}%{angle}"
                  + (f" (step {v['step']})" if "step" in v else ""))
    return 0
