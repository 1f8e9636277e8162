"""``sim2real train-pose``: train a class + quaternion network on labelled HDF5 files (see docs/train-pose.md)."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from sim2real.commands.registry import options_from_namespace


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


@dataclasses.dataclass
class Options:
    """``sim2real train-pose`` options."""

    output: str
    """Run folder to create (or continue with ``resume``)."""
    train: list[str] = dataclasses.field(default_factory=list)
    """Labelled HDF5 training files (mixed); with ``resume``, default: the run's."""
    val: str | None = None
    """Labelled held-out file for validation and best.pt (never the test set)."""
    config: str | None = None
    """Config file or shipped name (None: pose-small)."""
    set: list[str] = dataclasses.field(default_factory=list)
    """``KEY=VALUE`` config overrides."""
    resume: bool = False
    overwrite: bool = False
    no_progress: bool = False


def options(args: argparse.Namespace) -> Options:
    return options_from_namespace(Options, args)


def preflight(opts: Options) -> None:
    """Load the config (file + ``--set``): a bad key or value fails before a pipeline starts any stage."""
    from sim2real.config import load_config
    from sim2real.train.pose import PoseConfig

    load_config(PoseConfig, opts.config or "pose-small", opts.set)


def execute(opts: Options) -> dict:
    """Train (or continue) the pose run; returns :func:`sim2real.train.pose.train_pose`'s result."""
    from pathlib import Path

    from sim2real.config import load_config
    from sim2real.errors import Sim2RealError
    from sim2real.outputs import check_output
    from sim2real.engine.run import has_checkpoint, read_run_info
    from sim2real.train.pose import PoseConfig, resume_config, train_pose

    out = Path(opts.output)
    resuming = opts.resume and (out / "config.yaml").is_file()
    if resuming:
        cfg = resume_config(out, opts.config, opts.set)
        train = opts.train or [f["path"] for f in read_run_info(out).get("train", [])]
        val = opts.val or (read_run_info(out).get("val") or {}).get("path")
    else:
        cfg = load_config(PoseConfig, opts.config or "pose-small", opts.set)
        train, val = opts.train, opts.val
    if not train:
        raise Sim2RealError("--train: give at least one labelled HDF5 file")
    if not opts.resume:
        check_output(out, [*train, val], overwrite=opts.overwrite, folder=True,
                     flag="--resume to continue it, or --overwrite")
    elif not has_checkpoint(out):
        print(f"train-pose: {out}: no checkpoint to resume yet (the run stopped before its first); starting from step 0")
    return train_pose(train, out, cfg, val_path=val, resume=opts.resume,
                      show_progress=False if opts.no_progress else None, overwrite=opts.overwrite)


def report(opts: Options, res: dict) -> int:
    from pathlib import Path

    print(f"train-pose: {res['role']} run, {res['n_train']} training images, {res['step']} steps on {res['device']} "
          f"-> {Path(opts.output)}")
    if res["pose_supervised"] == 0:
        print("train-pose: warning: no training file has 'quat': only the classifier was trained", file=sys.stderr)
    for key in ("last_val", "best_val"):
        v = res.get(key)
        if v:
            angle = f", mean angle error {v['mean_angle_deg']:.1f} deg" if "mean_angle_deg" in v else ""
            print(f"train-pose: {key.replace('_', ' ')}: accuracy {100 * v['accuracy']:.1f}%{angle}"
                  + (f" (step {v['step']})" if "step" in v else ""))
    return 0
