"""``sim2real import-bop``: a BOP dataset split -> object-centred crops in a sim2real HDF5 file (docs/data-formats.md)."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    from sim2real.data.bop import DEFAULT_FILL, DEFAULT_MIN_VISIB, DEFAULT_SIZE

    p.add_argument("root", metavar="DIR", help="BOP dataset root (holds models/ and the split folders)")
    p.add_argument("--split", required=True, metavar="NAME", help="split folder, e.g. test, val, train_pbr, test_primesense")
    p.add_argument("-o", "--output", required=True, metavar="T.h5", help="HDF5 file to write")
    p.add_argument("--class-map", metavar="MAP", help="obj_id -> class name: YAML/JSON {obj_id: name} (null ignores an "
                                                      "object), or a sim2real HDF5 whose class_names to use (obj_id = class "
                                                      "id + 1); default DIR/class_map.json, else obj_XXXXXX names")
    p.add_argument("--size", type=int, default=None, metavar="PX", help=f"crop side in pixels (default {DEFAULT_SIZE})")
    p.add_argument("--fill", type=float, default=DEFAULT_FILL, metavar="F",
                   help=f"fraction of the crop side spanned by the object's diameter (default {DEFAULT_FILL}, as the renderer)")
    p.add_argument("--no-crop", action="store_true", help="keep full images (all of one size) instead of cutting crops")
    p.add_argument("--min-visib", type=float, default=DEFAULT_MIN_VISIB, metavar="F",
                   help=f"import instances with visib_fract >= F (default {DEFAULT_MIN_VISIB}; 0 keeps all)")
    p.add_argument("--no-depth", action="store_true", help="leave depth out")
    p.add_argument("--domain", default="target", choices=("source", "target", "adapted"),
                   help="domain attribute of the output (default target: real photos)")
    p.add_argument("--skip-bad", action="store_true", help="skip bad images/instances and report how many")
    p.add_argument("--overwrite", action="store_true", help="replace an existing T.h5 (never one of the inputs)")


def run(args: argparse.Namespace) -> int:
    from sim2real.data.bop import DEFAULT_SIZE, ImportOptions, import_bop, load_class_map
    from sim2real.errors import Sim2RealError
    from sim2real.outputs import check_output

    check_output(args.output, [args.root, args.class_map], overwrite=args.overwrite)
    if args.no_crop and args.size is not None:
        raise Sim2RealError("--size applies to crops; with --no-crop the images keep their own size")
    opt = ImportOptions(size=args.size or DEFAULT_SIZE, fill=args.fill, crop=not args.no_crop, min_visib=args.min_visib,
                        depth=not args.no_depth, domain=args.domain, skip_bad=args.skip_bad)
    cmap = load_class_map(args.class_map) if args.class_map else None
    out, res = import_bop(args.root, args.split, args.output, class_map=cmap, options=opt)
    a = res.arrays
    h, w = a["rgb"].shape[1:3]
    keys = ", ".join(k for k in ("depth", "mask", "K", "model_points") if k in a)
    print(f"import-bop: {len(a['rgb'])} samples of {w}x{h}, {len(res.class_names)} classes "
          f"({', '.join(res.class_names)}) -> {out}" + (f" [+ {keys}]" if keys else ""))
    for note in res.notes:
        print(f"import-bop: note: {note}")
    if args.skip_bad:
        print(f"import-bop: {res.skips.summary()}")
    return 0
