"""``sim2real inspect FILE.h5 [--grid out.png]``: validate, summarise, and draw rgb | mask | depth."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="a sim2real HDF5 file")
    p.add_argument("--grid", metavar="PNG", help="write a grid of samples (rgb | mask | depth) to this PNG")
    p.add_argument("--count", type=int, default=16, help="samples in the grid (default 16)")


def run(args: argparse.Namespace) -> int:
    from sim2real.data import h5
    from sim2real.data.inspect import grid, summary
    from sim2real.errors import Sim2RealError

    if args.count <= 0:
        raise Sim2RealError(f"--count: must be > 0, got {args.count}")
    d = h5.read(args.file)
    print(summary(d))
    if args.grid:
        print(f"grid: {grid(d, args.grid, count=args.count)}")
    return 0
