"""``sim2real inspect FILE.h5 [--grid out.png]``: validate, summarise, and draw rgb | mask | depth."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="a sim2real HDF5 file")
    p.add_argument("--grid", metavar="PNG", help="write a grid of samples (rgb | mask | depth) to this PNG")
    p.add_argument("--count", type=int, default=16, help="samples in the grid (default 16)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --grid PNG")
    p.add_argument("--compare", metavar="OTHER.h5", help="compare every array (bit for bit) and attribute (but "
                                                         "'created') with another file; exit code 1 if they differ")


def run(args: argparse.Namespace) -> int:
    from sim2real.data import h5
    from sim2real.data.inspect import grid, summary
    from sim2real.errors import Sim2RealError
    from sim2real.outputs import check_output

    if args.count <= 0:
        raise Sim2RealError(f"--count: must be > 0, got {args.count}")
    if args.grid:
        check_output(args.grid, [args.file, args.compare], overwrite=args.overwrite)
    d = h5.read(args.file)
    if args.compare:
        from sim2real.data.inspect import compare

        h5.read(args.compare)  # both must be valid sim2real files
        same, lines = compare(args.file, args.compare)
        for line in lines:
            print(line)
        if not same:
            return 1
    else:
        print(summary(d))
    if args.grid:
        print(f"grid: {grid(d, args.grid, count=args.count)}")
    return 0
