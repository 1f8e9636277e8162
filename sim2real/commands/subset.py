"""``sim2real subset IN.h5 -n N -o FEW.h5 [--per-class]``: a stratified, deterministic draw of labelled images.

In a pipeline stage: ``{command: subset, args: {input: ${target}/train.h5, count: 100, per_class: true}}``.
"""

from __future__ import annotations

import argparse
import dataclasses

from sim2real.commands.registry import options_from_namespace


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", metavar="IN.h5", help="labelled HDF5 file to draw from (e.g. a target train split)")
    p.add_argument("-n", "--count", dest="n", type=int, required=True, metavar="N",
                   help="images in all, split over the classes in proportion to their counts (with --per-class: per class)")
    p.add_argument("-o", "--output", required=True, metavar="FEW.h5", help="HDF5 file to write")
    p.add_argument("--per-class", action="store_true", help="N images of every class instead of N in all")
    p.add_argument("--seed", type=int, default=0, help="seed of the draw (default 0): same seed, same subset")
    p.add_argument("--overwrite", action="store_true", help="replace an existing FEW.h5 (never the input)")


@dataclasses.dataclass
class Options:
    """``sim2real subset`` options."""

    input: str
    """Labelled HDF5 file to draw from."""
    n: int
    """Images in all (or per class with ``per_class``)."""
    output: str
    """HDF5 file to write."""
    per_class: bool = False
    seed: int = 0
    overwrite: bool = False


def options(args: argparse.Namespace) -> Options:
    return options_from_namespace(Options, args)


def execute(opts: Options) -> dict:
    """Write the subset; returns :func:`sim2real.data.subset.write_subset`'s result."""
    from sim2real.data.subset import write_subset
    from sim2real.outputs import check_output

    check_output(opts.output, [opts.input], overwrite=opts.overwrite)
    return write_subset(opts.input, opts.output, opts.n, per_class=opts.per_class, seed=opts.seed)


def report(opts: Options, res: dict) -> int:
    counts = ", ".join(f"{k} {v}" for k, v in res["per_class_counts"].items())
    print(f"subset: {res['n']} of {res['of']} images ({counts}) -> {res['out']}")
    if res["short"]:
        print(f"note: fewer than {opts.n} images in {', '.join(res['short'])}: all of them taken")
    return 0
