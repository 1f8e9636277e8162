"""``sim2real render CONFIG -o OUT.h5``: CAD objects in sampled poses -> HDF5 (schema: docs/schema.md).

``SIM2REAL_RENDERER=fake`` (read here, at the entry point) swaps in the GL-free test double of
:mod:`sim2real.render.fake` for the test suite; the summary line then says so and the file records it.
Unset (or ``pyrender``): the real renderer.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="render config YAML, or a shipped config name (e.g. render-default)")
    p.add_argument("-o", "--output", required=True, help="output HDF5 file")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value (repeatable), e.g. --set n_samples=100 --set camera.fov_deg=30")
    p.add_argument("--workers", type=int, default=None, help="render processes (default: one per CPU core)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true", help="finish an interrupted render of the same config")
    g.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


#: Environment variable that selects the renderer kind (tests only: ``fake``); unset means the real renderer.
RENDERER_ENV = "SIM2REAL_RENDERER"


def run(args: argparse.Namespace) -> int:
    import os
    from pathlib import Path

    from sim2real.config import load_config
    from sim2real.errors import Sim2RealError
    from sim2real.outputs import check_output
    from sim2real.render.backend import DEFAULT_RENDERER, RENDERER_KINDS
    from sim2real.render.config import RenderConfig
    from sim2real.render.job import run_render

    renderer = os.environ.get(RENDERER_ENV) or DEFAULT_RENDERER
    if renderer not in RENDERER_KINDS:
        raise Sim2RealError(f"{RENDERER_ENV}={renderer}: expected one of {', '.join(RENDERER_KINDS)} (unset: pyrender)")
    cfg = load_config(RenderConfig, args.config, args.sets)
    # existence / --resume / --overwrite are decided by run_render; an input is never an output, even with --overwrite
    check_output(args.output, [args.config, cfg.objects if Path(str(cfg.objects)).is_file() else None],
                 overwrite=True)
    res = run_render(cfg, args.output, workers=args.workers, resume=args.resume, overwrite=args.overwrite,
                     show_progress=not args.quiet, renderer=renderer)
    if res.already_complete:
        print(f"{res.path}: already complete ({res.n_samples} samples)")
    else:
        rate = res.rendered / res.seconds if res.seconds > 0 else float("nan")
        print(f"{res.path}: {res.n_samples} samples ({res.rendered} rendered now) in {res.seconds:.1f} s "
              f"= {rate:.0f} img/s with {res.workers} worker(s) [{res.platform}]")
    if renderer != DEFAULT_RENDERER:
        print(f"render: {RENDERER_ENV}={renderer}: drawn by a test double (no GL), not real renders; "
              f"the file records renderer = {renderer!r}", file=sys.stderr)
    return 0
