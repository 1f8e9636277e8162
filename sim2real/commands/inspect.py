"""``sim2real inspect FILE.h5 [--grid out.png]``: validate, summarise, and draw rgb | mask | depth."""

from __future__ import annotations

import argparse
import dataclasses

from sim2real.commands.registry import options_from_namespace


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("file", help="a sim2real HDF5 file")
    p.add_argument("--grid", metavar="PNG", help="write a grid of samples (rgb | mask | depth) to this PNG")
    p.add_argument("--count", type=int, default=16, help="samples in the grid (default 16)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing --grid PNG")
    p.add_argument("--compare", metavar="OTHER.h5", help="compare every array (bit for bit) and attribute (but "
                                                         "'created') with another file; exit code 1 if they differ")


@dataclasses.dataclass
class Options:
    """``sim2real inspect`` options."""

    file: str
    """A sim2real HDF5 file."""
    grid: str | None = None
    """PNG to draw a grid of samples into."""
    count: int = 16
    """Samples in the grid."""
    overwrite: bool = False
    compare: str | None = None
    """Another HDF5 file to compare with, array by array and attribute by attribute."""


def options(args: argparse.Namespace) -> Options:
    return options_from_namespace(Options, args)


@dataclasses.dataclass
class Result:
    summary: str | None
    """The file's summary (None with ``--compare``)."""
    compare_lines: list[str]
    same: bool
    """False when ``--compare`` found a difference (exit code 1)."""
    grid: str | None
    """The grid PNG written, or None."""


def execute(opts: Options) -> Result:
    from sim2real.data import h5
    from sim2real.data.inspect import grid, summary
    from sim2real.errors import Sim2RealError
    from sim2real.outputs import check_output

    if opts.count <= 0:
        raise Sim2RealError(f"--count: must be > 0, got {opts.count}")
    if opts.grid:
        check_output(opts.grid, [opts.file, opts.compare], overwrite=opts.overwrite)
    d = h5.read(opts.file)
    if opts.compare:
        from sim2real.data.inspect import compare

        h5.read(opts.compare)  # both must be valid sim2real files
        same, lines = compare(opts.file, opts.compare)
        if not same:
            return Result(None, list(lines), False, None)
        text = None
    else:
        same, lines, text = True, [], summary(d)
    written = grid(d, opts.grid, count=opts.count) if opts.grid else None
    return Result(text, list(lines), same, written)


def report(opts: Options, result: Result) -> int:
    for line in result.compare_lines:
        print(line)
    if result.summary is not None:
        print(result.summary)
    if result.grid is not None:
        print(f"grid: {result.grid}")
    return 0 if result.same else 1
