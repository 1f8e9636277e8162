"""``sim2real export-bop``: a labelled sim2real HDF5 file -> a BOP dataset folder (docs/data-formats.md)."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", metavar="X.h5", help="sim2real HDF5 with label, quat, trans and K (e.g. renders)")
    p.add_argument("-o", "--output", required=True, metavar="DIR", help="BOP dataset folder to write (created if needed)")
    p.add_argument("--split", default="test", metavar="NAME", help="split folder to write (default test)")
    p.add_argument("--depth-scale", type=float, default=None, metavar="MM",
                   help="millimetres per stored depth unit (default 0.1, raised tenfold until the deepest pixel fits uint16)")
    p.add_argument("--overwrite", action="store_true", help="replace DIR/SPLIT if it exists (never when it holds the input)")


def run(args: argparse.Namespace) -> int:
    from sim2real.data.bop import export_bop
    from sim2real.errors import Sim2RealError

    from pathlib import Path

    from sim2real.data.bop import CLASS_MAP_FILE, EXPORT_INFO_FILE
    from sim2real.outputs import check_output

    out = Path(args.output)
    check_output(out / args.split, [args.input], overwrite=args.overwrite, folder=True)
    for shared in ("camera.json", CLASS_MAP_FILE, EXPORT_INFO_FILE, "models"):  # rewritten by every export
        check_output(out / shared, [args.input], overwrite=True)
    if args.depth_scale is not None and not args.depth_scale > 0:
        raise Sim2RealError(f"--depth-scale {args.depth_scale}: expected a positive number of millimetres")
    res = export_bop(args.input, args.output, split=args.split, depth_scale=args.depth_scale, overwrite=args.overwrite)
    depth = f", depth_scale {res.depth_scale} mm" if res.depth_scale is not None else ""
    print(f"export-bop: {res.n_images} images -> {res.split_dir}/000000 (BOP, millimetres{depth})")
    for note in res.notes:
        print(f"export-bop: note: {note}")
    return 0
