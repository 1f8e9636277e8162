"""``sim2real export``: apply a trained PixelDA generator to renders -> an adapted HDF5 file (docs/adapt.md)."""

from __future__ import annotations

import argparse


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


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from sim2real.outputs import check_output
    from sim2real.train.adapt_export import export_adapted

    run_dir = Path(args.run_dir)
    run_files = [run_dir / "run.json", run_dir / "config.yaml", *sorted(run_dir.glob("checkpoints/*.pt"))]
    check_output(args.output, [args.source, *run_files], overwrite=args.overwrite)
    step = args.step
    if step is not None and step not in ("best", "last"):
        from sim2real.errors import Sim2RealError

        try:
            step = int(step)
        except ValueError:
            raise Sim2RealError(f"--step {args.step}: expected a step number, 'best' or 'last'") from None
    res = export_adapted(args.run_dir, args.source, args.output, per_source=args.per_source, step=step,
                         batch_size=args.batch_size, device=args.device, seed=args.seed)
    print(f"export: {res['n']} adapted images ({res['per_source']} per source sample, checkpoint "
          f"{Path(res['checkpoint']).name} step {res['step']}) "
          f"-> {res['out']}")
    return 0
