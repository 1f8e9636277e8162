"""``sim2real adapt [--method NAME]``: train an adaptation method (default PixelDA: G, D, T) from labelled renders to an
unlabelled target domain (docs/adapt.md); methods are registered in :mod:`sim2real.adapt`."""

from __future__ import annotations

import argparse
import dataclasses

from sim2real.commands.registry import options_from_namespace


def add_arguments(p: argparse.ArgumentParser) -> None:
    from sim2real.adapt import DEFAULT_METHOD, METHODS

    p.add_argument("--method", choices=sorted(METHODS), default=None,
                   help=f"adaptation method (default {DEFAULT_METHOD}; with --resume, the run's): "
                        + "; ".join(f"{m.name}: {m.summary}" for m in METHODS.values()))
    p.add_argument("--source", metavar="S.h5", help="labelled source HDF5 (renders: rgb, label[, quat, mask, depth])")
    p.add_argument("--target", metavar="T", help="unlabelled target: HDF5 file, or a folder of png/jpg images "
                                                 "(centre-cropped to the source aspect and resized)")
    p.add_argument("-o", "--output", required=True, metavar="RUN_DIR", help="run folder to create (or continue with --resume)")
    p.add_argument("--config", metavar="C.yaml", help="config file or shipped name (pixelda-linemod, pixelda-linemod-official, "
                                                       "pixelda-mnistm, pixelda-mnistm-official, pixelda-tiny; "
                                                       "dann-demo, coral-demo, mmd-demo, feature-tiny; "
                                                       "dtn-demo, dtn-digits, dtn-tiny; i2i-demo, i2i-digits, i2i-tiny); "
                                                       "default: the method's (pixelda-linemod, dann-demo, ...)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config key, e.g. --set train.steps=5000 (repeatable)")
    p.add_argument("--val", metavar="V.h5", help="small labelled TARGET validation set (the paper's ~1,000-image protocol): "
                                                 "T's accuracy / angle error are logged and best.pt kept; never a test set")
    p.add_argument("--select", metavar="VALIDATOR", choices=("oracle", "src_val", "entropy", "im", "dev", "disc"),
                   help="which checkpoint is best.pt: oracle (the labelled --val split, default) or a label-free "
                        "validator: src_val, entropy, im, dev, disc (docs/adapt.md, 'Choosing a checkpoint without "
                        "target labels'); same as --set select.by=NAME")
    p.add_argument("--target-labelled", metavar="FEW.h5",
                   help="a few LABELLED target images T also trains on (PixelDA; paper Table 6; draw them with "
                        "sim2real subset); never the test or --val file")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true", help="continue the run in RUN_DIR from checkpoints/last.pt "
                                                         "(a run stopped before its first checkpoint starts at step 0)")
    g.add_argument("--overwrite", action="store_true", help="replace an existing RUN_DIR (never one holding an input)")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable images in a --target folder (counted and "
                                                           "reported) instead of stopping at the first")


@dataclasses.dataclass
class Options:
    """``sim2real adapt`` options."""

    output: str
    """Run folder to create (or continue with ``resume``)."""
    method: str | None = None
    """Adaptation method (:data:`sim2real.adapt.METHODS`); None: the default, or the resumed run's."""
    source: str | None = None
    """Labelled source HDF5 (renders); with ``resume``, default: the run's."""
    target: str | None = None
    """Unlabelled target: HDF5 file or image folder; with ``resume``, default: the run's."""
    config: str | None = None
    """Config file or shipped name (None: the method's default, e.g. pixelda-linemod)."""
    set: list[str] = dataclasses.field(default_factory=list)
    """``KEY=VALUE`` config overrides."""
    val: str | None = None
    """Small labelled target validation set (never a test set)."""
    target_labelled: str | None = None
    """A few labelled target images T also trains on (PixelDA only); with ``resume``, default: the run's."""
    select: str | None = None
    """``select.by``: ``oracle`` or a label-free validator (None: the config's)."""
    resume: bool = False
    overwrite: bool = False
    skip_bad: bool = False
    """Skip unreadable images in a target folder."""


def options(args: argparse.Namespace) -> Options:
    return options_from_namespace(Options, args)


def preflight(opts: Options) -> None:
    """Load the config (file + ``--set``): a bad key or value fails before a pipeline starts any stage."""
    from sim2real.config import load_config
    from sim2real.adapt import get_method

    spec = get_method(opts.method)
    load_config(spec.config_class(), opts.config or spec.default_config, opts.set)


def execute(opts: Options) -> dict:
    """Train (or continue) the run of the chosen method; returns :func:`sim2real.adapt.train_adapt`'s result."""
    from pathlib import Path

    from sim2real.errors import Sim2RealError
    from sim2real.outputs import check_output
    from sim2real.adapt import resolve_adapt_config, train_adapt
    from sim2real.engine.run import read_run_info

    out = Path(opts.output)
    source, target, val, skip_bad = opts.source, opts.target, opts.val, opts.skip_bad
    labelled = opts.target_labelled
    method = opts.method
    if opts.resume and (out / "run.json").is_file():
        info = read_run_info(out)
        from sim2real.adapt import method_of_kind

        ran = method_of_kind(info.get("kind"))
        if ran is not None and method is not None and ran.name != method:
            raise Sim2RealError(f"{out}: is a {ran.name} run; --resume continues it with --method {ran.name}, not {method}")
        method = method or (ran.name if ran is not None else None)
        source, target = source or info.get("source"), target or info.get("target")
        val = val or info.get("val")
        labelled = labelled or info.get("target_labelled")
        skip_bad = skip_bad or bool(info.get("skip_bad"))
    if not source or not target:
        raise Sim2RealError("--source and --target are required (a labelled source HDF5 and the target images)")
    if not opts.resume:
        check_output(out, [source, target, val, labelled], overwrite=opts.overwrite, folder=True,
                     flag="--resume to continue it, or --overwrite")
    sets = list(opts.set)
    if opts.select is not None:
        from sim2real.adapt import get_method

        spec = get_method(method)
        if not any(f.name == "select" for f in dataclasses.fields(spec.config_class())):
            raise Sim2RealError(f"--select: --method {spec.name} has no label-free validators")
        sets.append(f"select.by={opts.select}")
    cfg = resolve_adapt_config(opts.config, sets, out, opts.resume, method=method)
    res = train_adapt(cfg, source, target, out, resume=opts.resume, val=val, skip_bad=skip_bad,
                      overwrite=opts.overwrite, method=method, target_labelled=labelled)
    res["selection"] = write_selection(out, getattr(cfg, "select", None))
    return res


def write_selection(run_dir, sel) -> dict | None:
    """``RUN/selection.json``: per label-free validator logged, the checkpoint it picks and that checkpoint's
    oracle (labelled --val) numbers next to the oracle's pick and the last validation (None: nothing logged)."""
    import json
    from pathlib import Path

    from sim2real.engine.validators import selection_table
    from sim2real.utils import atomic_write_text

    p = Path(run_dir) / "metrics.jsonl"
    if sel is None or not sel.active or not p.is_file():
        return None
    rows = [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
    if not any(k.startswith("v/") for r in rows for k in r):
        return None
    from sim2real.adapt.pixelda.train import SELECT_BY

    table = {"select": sel.by, **selection_table(rows, SELECT_BY)}
    atomic_write_text(Path(run_dir) / "selection.json", json.dumps(table, indent=2))
    return table


def report(opts: Options, res: dict) -> int:
    from pathlib import Path

    out = Path(opts.output)
    m = res["metrics"]
    if m and "d/total" in m:  # PixelDA
        print(f"adapt: {res['step']} steps -> {out}  (D loss {m['d/total']:.3f}, G loss {m['g/total']:.3f}, "
              f"D accuracy {m['d/acc']:.2f})")
    elif m and "t/total" in m:  # a feature-level method: T's total and its alignment term
        align = ", ".join(f"{k} {v:.4g}" for k, v in m.items() if k.startswith("align/"))
        print(f"adapt: {res['step']} steps -> {out}  (T loss {m['t/total']:.3f}, {align})")
    if res.get("best_val"):
        b = res["best_val"]
        angle = ""
        if "mean_angle_deg" in b:
            angle = f", mean angle error {b['mean_angle_deg']:.1f} deg"
            if "mean_angle_sym_deg" in b:
                angle += f" ({b['mean_angle_sym_deg']:.1f} symmetry-aware), acc@30 {100 * b['acc30_sym']:.1f}%"
        by = None if res.get("selection") is None or res["selection"]["select"] == "oracle" else res["selection"]["select"]
        if "accuracy" in b and by is None:
            print(f"adapt: best on --val: accuracy {100 * b['accuracy']:.1f}%{angle} at step {b['step']} (checkpoints/best.pt)")
        elif "accuracy" in b:
            print(f"adapt: best.pt picked by {by} at step {b['step']}: --val accuracy {100 * b['accuracy']:.1f}%{angle}")
        else:
            print(f"adapt: best.pt picked by {res['selection']['select'] if res.get('selection') else 'a validator'} "
                  f"at step {b['step']} (no --val: its accuracy is unknown here)")
    _print_selection(res.get("selection"))
    return 0


def _print_selection(table: dict | None) -> None:
    """What each label-free validator would have picked, in oracle (--val) terms."""
    if not table or table.get("oracle") is None:
        return

    def row(name, r):
        if r is None:
            return f"  {name:<10s} –"
        angle = f", median {r['median_angle_sym_deg']:.1f} deg sym" if "median_angle_sym_deg" in r else ""
        acc30 = f", acc@30 {100 * r['acc30_sym']:.1f}%" if "acc30_sym" in r else ""
        return f"  {name:<10s} step {r['step']:>6d}: --val accuracy {100 * r.get('accuracy', float('nan')):.1f}%{acc30}{angle}"

    print("adapt: the checkpoint each validator picks, scored on --val (selection.json):")
    print(row("oracle", table["oracle"]))
    for name, r in table["validators"].items():
        print(row(name, r))
    print(row("last", table["last"]))
