"""``sim2real export``: apply a trained PixelDA generator to renders -> an adapted HDF5 file (docs/adapt.md)."""

from __future__ import annotations

import argparse
import dataclasses

from sim2real.commands.registry import options_from_namespace


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by sim2real adapt")
    p.add_argument("--source", required=True, metavar="S.h5", help="source HDF5 to adapt (the run's image size)")
    p.add_argument("-o", "--output", required=True, metavar="ADAPTED.h5", help="adapted HDF5 file to write")
    p.add_argument("--per-source", type=int, default=1, metavar="K", help="noise draws z per source sample (default 1)")
    p.add_argument("--step", default=None, metavar="N|best|last", help="checkpoint to use (default: best when the run had --val, else last)")
    p.add_argument("--batch-size", type=int, default=256, metavar="B", help="images per generator call (default 256)")
    p.add_argument("--seed", type=int, default=None, help="seed of the noise draws (default: the run's seed)")
    p.add_argument("--device", default="auto", help="auto (GPU when present), cpu, cuda, cuda:N")
    p.add_argument("--overwrite", action="store_true", help="replace an existing ADAPTED.h5 (never one of the inputs)")


@dataclasses.dataclass
class Options:
    """``sim2real export`` options."""

    run_dir: str
    """A run folder written by ``sim2real adapt``."""
    source: str
    """Source HDF5 to adapt (the run's image size)."""
    output: str
    """Adapted HDF5 file to write."""
    per_source: int = 1
    """Noise draws z per source sample."""
    step: str | None = None
    """Checkpoint: a step number, ``best`` or ``last`` (None: best when the run had --val, else last)."""
    batch_size: int = 256
    seed: int | None = None
    """Seed of the noise draws (None: the run's)."""
    device: str = "auto"
    overwrite: bool = False


def options(args: argparse.Namespace) -> Options:
    return options_from_namespace(Options, args)


def execute(opts: Options) -> dict:
    """Write the adapted file; returns :func:`sim2real.adapt.export.export_adapted`'s result."""
    from pathlib import Path

    from sim2real.outputs import check_output
    from sim2real.adapt.export import export_adapted

    run_dir = Path(opts.run_dir)
    run_files = [run_dir / "run.json", run_dir / "config.yaml", *sorted(run_dir.glob("checkpoints/*.pt"))]
    check_output(opts.output, [opts.source, *run_files], overwrite=opts.overwrite)
    step: int | str | None = opts.step
    if step is not None and step not in ("best", "last"):
        from sim2real.errors import Sim2RealError

        try:
            step = int(step)
        except ValueError:
            raise Sim2RealError(f"--step {opts.step}: expected a step number, 'best' or 'last'") from None
    return export_adapted(opts.run_dir, opts.source, opts.output, per_source=opts.per_source, step=step,
                          batch_size=opts.batch_size, device=opts.device, seed=opts.seed)


def report(opts: Options, res: dict) -> int:
    from pathlib import Path

    print(f"export: {res['n']} adapted images ({res['per_source']} per source sample, checkpoint "
          f"{Path(res['checkpoint']).name} step {res['step']}) "
          f"-> {res['out']}")
    if res.get("unseen"):
        print(f"note: the adaptation never saw classes {', '.join(res['unseen'])}: G translated them all the same "
              "(recorded in the file's provenance as classes_unseen_in_adaptation)")
    return 0
