"""``sim2real export-bop``: a labelled sim2real HDF5 file -> a BOP dataset folder (docs/data-formats.md)."""

from __future__ import annotations

import argparse
import dataclasses

from sim2real.commands.registry import options_from_namespace


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", metavar="X.h5", help="sim2real HDF5 with label, quat, trans and K (e.g. renders)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="BOP dataset folder to write (created if needed)")
    p.add_argument("--split", default="test", metavar="NAME", help="split folder to write (default test)")
    p.add_argument("--depth-scale", type=float, default=None, metavar="MM",
                   help="millimetres per stored depth unit (default 0.1, raised tenfold until the deepest pixel fits uint16)")
    p.add_argument("--overwrite", action="store_true", help="replace DIR/SPLIT if it exists (never when it holds the input)")


@dataclasses.dataclass
class Options:
    """``sim2real export-bop`` options."""

    input: str
    """Labelled sim2real HDF5 with label, quat, trans and K."""
    output: str
    """BOP dataset folder to write."""
    split: str = "test"
    """Split folder to write."""
    depth_scale: float | None = None
    """Millimetres per stored depth unit (None: 0.1, raised tenfold until the deepest pixel fits uint16)."""
    overwrite: bool = False


def options(args: argparse.Namespace) -> Options:
    return options_from_namespace(Options, args)


def execute(opts: Options):
    """Write the BOP split; returns :func:`sim2real.data.bop.export_bop`'s result."""
    from pathlib import Path

    from sim2real.data.bop import CLASS_MAP_FILE, EXPORT_INFO_FILE, export_bop
    from sim2real.errors import Sim2RealError
    from sim2real.outputs import check_output

    out = Path(opts.output)
    check_output(out / opts.split, [opts.input], overwrite=opts.overwrite, folder=True)
    for shared in ("camera.json", CLASS_MAP_FILE, EXPORT_INFO_FILE, "models"):  # rewritten by every export
        check_output(out / shared, [opts.input], overwrite=True)
    if opts.depth_scale is not None and not opts.depth_scale > 0:
        raise Sim2RealError(f"--depth-scale {opts.depth_scale}: expected a positive number of millimetres")
    return export_bop(opts.input, opts.output, split=opts.split, depth_scale=opts.depth_scale, overwrite=opts.overwrite)


def report(opts: Options, res) -> int:
    depth = f", depth_scale {res.depth_scale} mm" if res.depth_scale is not None else ""
    print(f"export-bop: {res.n_images} images -> {res.split_dir}/000000 (BOP, millimetres{depth})")
    for note in res.notes:
        print(f"export-bop: note: {note}")
    return 0
