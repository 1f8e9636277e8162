"""``sim2real import-bop``: a BOP dataset split -> object-centred crops in a sim2real HDF5 file (docs/data-formats.md)."""

from __future__ import annotations

import argparse
import dataclasses

from sim2real.commands.registry import options_from_namespace


def add_arguments(p: argparse.ArgumentParser) -> None:
    from sim2real.data.bop import DEFAULT_FILL, DEFAULT_MIN_VISIB, DEFAULT_SIZE
    from sim2real.data.bop.importer import SHARD_IMAGES

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
    p.add_argument("--ray", nargs="?", const="auto", default=None, metavar="ADDRESS",
                   help=f"read and crop the images on Ray actors, in chunks of {SHARD_IMAGES} images (pip install sim2real[ray]): "
                        "alone or 'auto' joins or starts a local Ray cluster; ADDRESS connects to a running one "
                        "(ray://HOST:10001 or HOST:6379); the image files travel to the actors. Same file as without it")
    p.add_argument("--workers", type=int, default=None, help="with --ray: Ray actors (default: the cluster's CPUs)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing T.h5 (never one of the inputs)")


@dataclasses.dataclass
class Options:
    """``sim2real import-bop`` options."""

    root: str
    """BOP dataset root (holds models/ and the split folders)."""
    split: str
    """Split folder, e.g. test, train_pbr."""
    output: str
    """HDF5 file to write."""
    class_map: str | None = None
    """obj_id -> class name (YAML/JSON, or a sim2real HDF5); None: DIR/class_map.json, else obj_XXXXXX names."""
    size: int | None = None
    """Crop side in pixels (None: the default)."""
    fill: float | None = None
    """Fraction of the crop side spanned by the object's diameter (None: the default)."""
    no_crop: bool = False
    min_visib: float | None = None
    """Import instances with visib_fract >= this (None: the default)."""
    no_depth: bool = False
    domain: str = "target"
    skip_bad: bool = False
    ray: str | None = None
    """None: read in this process; ``"auto"`` or a cluster address: Ray actors (:mod:`sim2real.ray_shards`)."""
    workers: int | None = None
    """Ray actors (None: the cluster's CPUs); only with ``ray``."""
    overwrite: bool = False


def options(args: argparse.Namespace) -> Options:
    return options_from_namespace(Options, args)


def execute(opts: Options):
    """Import the split; returns ``(output path, import result)`` of :func:`sim2real.data.bop.import_bop`."""
    from sim2real.data.bop import DEFAULT_FILL, DEFAULT_MIN_VISIB, DEFAULT_SIZE, ImportOptions, import_bop, load_class_map
    from sim2real.errors import Sim2RealError
    from sim2real.outputs import check_output

    if opts.ray is not None:
        from sim2real.ray_shards import require_ray

        require_ray()  # a missing extra is the first thing said
    elif opts.workers is not None:
        raise Sim2RealError("--workers: applies to Ray actors; add --ray (import-bop reads in one process without it)")
    check_output(opts.output, [opts.root, opts.class_map], overwrite=opts.overwrite)
    if opts.no_crop and opts.size is not None:
        raise Sim2RealError("--size applies to crops; with --no-crop the images keep their own size")
    opt = ImportOptions(size=opts.size or DEFAULT_SIZE, fill=DEFAULT_FILL if opts.fill is None else opts.fill,
                        crop=not opts.no_crop, min_visib=DEFAULT_MIN_VISIB if opts.min_visib is None else opts.min_visib,
                        depth=not opts.no_depth, domain=opts.domain, skip_bad=opts.skip_bad)
    cmap = load_class_map(opts.class_map) if opts.class_map else None
    return import_bop(opts.root, opts.split, opts.output, class_map=cmap, options=opt, ray=opts.ray,
                      workers=opts.workers)


def report(opts: Options, result) -> int:
    out, res = result
    a = res.arrays
    h, w = a["rgb"].shape[1:3]
    keys = ", ".join(k for k in ("depth", "mask", "K", "model_points") if k in a)
    print(f"import-bop: {len(a['rgb'])} samples of {w}x{h}, {len(res.class_names)} classes "
          f"({', '.join(res.class_names)}) -> {out}" + (f" [+ {keys}]" if keys else ""))
    for note in res.notes:
        print(f"import-bop: note: {note}")
    if opts.skip_bad:
        print(f"import-bop: {res.skips.summary()}")
    return 0
