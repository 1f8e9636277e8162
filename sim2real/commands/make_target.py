"""``sim2real make-target CONFIG -o OUT_DIR``: a camera-like stand-in target domain (synthetic, not real data).

Writes ``OUT_DIR/train.h5`` (unlabelled), ``OUT_DIR/val.h5`` and ``OUT_DIR/test.h5`` (labelled); see
docs/make-target.md.
"""

from __future__ import annotations

import argparse
import dataclasses

from sim2real.commands.registry import options_from_namespace
from sim2real.commands.render import add_ray_arguments


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="make-target config YAML, or a shipped config name (e.g. target-standin)")
    p.add_argument("-o", "--output", required=True, metavar="OUT_DIR",
                   help="output folder (train.h5, val.h5, test.h5 are written into it)")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value (repeatable), e.g. --set n_train=500 --set effects.jpeg.enabled=false")
    p.add_argument("--workers", type=int, default=None,
                   help="render processes (default: one per CPU core); with --ray: Ray actors (default: the cluster's CPUs)")
    add_ray_arguments(p)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true", help="finish an interrupted make-target of the same config")
    g.add_argument("--overwrite", action="store_true", help="replace existing make-target outputs in OUT_DIR")
    p.add_argument("--quiet", action="store_true", help="no progress bars")


@dataclasses.dataclass
class Options:
    """``sim2real make-target`` options."""

    config: str
    """make-target config YAML, or a shipped config name."""
    output: str
    """Output folder (train.h5, val.h5, test.h5)."""
    sets: list[str] = dataclasses.field(default_factory=list)
    """``KEY=VALUE`` config overrides."""
    workers: int | None = None
    """Render processes (None: one per CPU core); with ``ray``, Ray actors (None: the cluster's CPUs)."""
    ray: str | None = None
    """None: local processes; ``"auto"`` or a cluster address: Ray actors (one session for the three splits)."""
    ray_gpus: float = 0.0
    """GPUs (a fraction) each Ray actor asks for; 0: none."""
    resume: bool = False
    overwrite: bool = False
    quiet: bool = False


def options(args: argparse.Namespace) -> Options:
    return options_from_namespace(Options, args)


def preflight(opts: Options) -> None:
    """Load the config (file + ``--set``): a bad key or value fails before a pipeline starts any stage."""
    from sim2real.config import load_config
    from sim2real.target import MakeTargetConfig

    load_config(MakeTargetConfig, opts.config, opts.sets, defaults=MakeTargetConfig())


def execute(opts: Options) -> list:
    """Write the three splits; returns :func:`sim2real.target.run_make_target`'s per-split results."""
    from pathlib import Path

    from sim2real.outputs import check_output
    from sim2real.config import load_config
    from sim2real.target import MakeTargetConfig, run_make_target

    cfg = load_config(MakeTargetConfig, opts.config, opts.sets, defaults=MakeTargetConfig())
    for split in ("train", "val", "test"):  # existence / --resume / --overwrite: run_make_target; never the config
        check_output(Path(opts.output) / f"{split}.h5", [opts.config], overwrite=True)
    return run_make_target(cfg, opts.output, workers=opts.workers, resume=opts.resume, overwrite=opts.overwrite,
                           show_progress=not opts.quiet, ray=opts.ray, ray_gpus=opts.ray_gpus)


def report(opts: Options, results: list) -> int:
    from sim2real.target import DESCRIPTION

    for r in results:
        kind = "labelled" if r.labelled else "unlabelled"
        if r.already_complete:
            print(f"{r.path}: already complete ({r.n_samples} {kind} samples)")
        else:
            print(f"{r.path}: {r.n_samples} {kind} samples ({r.rendered} rendered now in {r.render_seconds:.1f} s "
                  f"[{r.platform or 'cached'}], camera effects + write {r.effects_seconds:.1f} s)")
    print(f"{opts.output}: {DESCRIPTION}")
    return 0
