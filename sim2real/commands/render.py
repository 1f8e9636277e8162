"""``sim2real render CONFIG -o OUT.h5``: CAD objects in sampled poses -> HDF5 (schema: docs/schema.md).

``SIM2REAL_RENDERER=fake`` (read here, at the entry point) swaps in the GL-free test double of
:mod:`sim2real.render.fake` for the test suite; the summary line then says so and the file records it.
Unset (or ``pyrender``): the real renderer.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from typing import Any

from sim2real.commands.registry import options_from_namespace


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", help="render config YAML, or a shipped config name (e.g. render-default)")
    p.add_argument("-o", "--output", required=True, help="output HDF5 file")
    p.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value (repeatable), e.g. --set n_samples=100 --set camera.fov_deg=30")
    p.add_argument("--workers", type=int, default=None,
                   help="render processes (default: one per CPU core); with --ray: Ray actors (default: the cluster's CPUs)")
    add_ray_arguments(p)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true", help="finish an interrupted render of the same config")
    g.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def add_ray_arguments(p: argparse.ArgumentParser) -> None:
    """``--ray [ADDRESS]`` and ``--ray-gpus``: render with Ray actors (``render`` and ``make-target``)."""
    p.add_argument("--ray", nargs="?", const="auto", default=None, metavar="ADDRESS",
                   help="render with Ray actors (pip install sim2real[ray]): alone or 'auto' joins or starts a local "
                        "Ray cluster; ADDRESS connects to a running one (ray://HOST:10001 or HOST:6379). Same file "
                        "as without it")
    p.add_argument("--ray-gpus", type=float, default=0.0, metavar="FRACTION",
                   help="GPUs each Ray actor asks for, e.g. 0.25 (default 0: CPU rendering, no GPU reserved)")


#: Environment variable that selects the renderer kind (tests only: ``fake``); unset means the real renderer.
RENDERER_ENV = "SIM2REAL_RENDERER"


@dataclasses.dataclass
class Options:
    """``sim2real render`` options (the flags of :func:`add_arguments`)."""

    config: str
    """Render config YAML, or a shipped config name."""
    output: str
    """Output HDF5 file."""
    sets: list[str] = dataclasses.field(default_factory=list)
    """``KEY=VALUE`` config overrides."""
    workers: int | None = None
    """Render processes (None: one per CPU core); with ``ray``, Ray actors (None: the cluster's CPUs)."""
    ray: str | None = None
    """None: local processes; ``"auto"`` or a cluster address: Ray actors (:mod:`sim2real.render.ray_pool`)."""
    ray_gpus: float = 0.0
    """GPUs (a fraction) each Ray actor asks for; 0: none."""
    resume: bool = False
    overwrite: bool = False
    quiet: bool = False
    """No progress bar."""


def options(args: argparse.Namespace) -> Options:
    return options_from_namespace(Options, args)


def preflight(opts: Options) -> None:
    """Load the config (file + ``--set``): a bad key or value fails before a pipeline starts any stage."""
    from sim2real.config import load_config
    from sim2real.render.config import RenderConfig

    load_config(RenderConfig, opts.config, opts.sets)


@dataclasses.dataclass
class Result:
    job: Any
    """:func:`sim2real.render.job.run_render`'s result."""
    renderer: str
    """The renderer kind used (``pyrender``, or ``fake`` in tests)."""


def execute(opts: Options) -> Result:
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
    cfg = load_config(RenderConfig, opts.config, opts.sets)
    # existence / --resume / --overwrite are decided by run_render; an input is never an output, even with --overwrite
    check_output(opts.output, [opts.config, cfg.objects if Path(str(cfg.objects)).is_file() else None],
                 overwrite=True)
    res = run_render(cfg, opts.output, workers=opts.workers, resume=opts.resume, overwrite=opts.overwrite,
                     show_progress=not opts.quiet, renderer=renderer, ray=opts.ray, ray_gpus=opts.ray_gpus)
    return Result(res, renderer)


def report(opts: Options, result: Result) -> int:
    from sim2real.render.backend import DEFAULT_RENDERER

    res = result.job
    if res.already_complete:
        print(f"{res.path}: already complete ({res.n_samples} samples)")
    else:
        rate = res.rendered / res.seconds if res.seconds > 0 else float("nan")
        who = "Ray actor(s)" if res.executor == "ray" else "worker(s)"
        print(f"{res.path}: {res.n_samples} samples ({res.rendered} rendered now) in {res.seconds:.1f} s "
              f"= {rate:.0f} img/s with {res.workers} {who} [{res.platform}]")
    if result.renderer != DEFAULT_RENDERER:
        print(f"render: {RENDERER_ENV}={result.renderer}: drawn by a test double (no GL), not real renders; "
              f"the file records renderer = {result.renderer!r}", file=sys.stderr)
    return 0
