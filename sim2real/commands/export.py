"""``sim2real export``: apply a trained PixelDA generator to renders -> an adapted HDF5 file (docs/adapt.md)."""

from __future__ import annotations

import argparse
import dataclasses

from sim2real.commands.registry import options_from_namespace


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", metavar="RUN_DIR", help="a run folder written by sim2real adapt")
    p.add_argument("--source", required=True, metavar="S.h5", help="source HDF5 to adapt (the run's image size)")
    p.add_argument("-o", "--output", required=True, metavar="ADAPTED.h5", help="adapted HDF5 file to write")
    p.add_argument("--per-source", type=int, default=1, metavar="K", help="noise draws z per source sample (default 1)")
    p.add_argument("--step", default=None, metavar="N|best|last", help="checkpoint to use (default: best when the run had --val, else last)")
    p.add_argument("--batch-size", type=int, default=256, metavar="B",
                   help="images per generator call (default 256; does not change the file)")
    p.add_argument("--seed", type=int, default=None,
                   help="seed of the noise draws (default: the run's seed); draw j of source sample i depends on "
                        "(seed, i, j) only")
    p.add_argument("--device", default="auto", help="auto (GPU when present), cpu, cuda, cuda:N (without --ray)")
    p.add_argument("--bn-batches", type=int, default=None, metavar="N",
                   help="recompute a PixelDA G's batch-norm statistics from N batches of the source first (default "
                        "200; 0 keeps the checkpoint's running averages, which G never trained with: docs/adapt.md)")
    p.add_argument("--shard-size", type=int, default=None, metavar="N",
                   help="source samples per shard in ADAPTED.h5.partial/ (default 1024; does not change the file)")
    p.add_argument("--workers", type=int, default=None, help="with --ray: Ray actors (default: the cluster's CPUs)")
    p.add_argument("--ray", nargs="?", const="auto", default=None, metavar="ADDRESS",
                   help="translate the shards on Ray actors (pip install sim2real[ray]), each loading the checkpoint "
                        "once: alone or 'auto' joins or starts a local Ray cluster; ADDRESS connects to a running one "
                        "(ray://HOST:10001 or HOST:6379). Same file as without it")
    p.add_argument("--ray-gpus", type=float, default=0.0, metavar="FRACTION",
                   help="GPUs each Ray actor asks for and translates on, e.g. 0.25 (default 0: CPU actors)")
    g = p.add_mutually_exclusive_group()
    g.add_argument("--resume", action="store_true", help="finish an interrupted export of the same inputs")
    g.add_argument("--overwrite", action="store_true", help="replace an existing ADAPTED.h5 (never one of the inputs)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


@dataclasses.dataclass
class Options:
    """``sim2real export`` options."""

    run_dir: str
    """A run folder written by ``sim2real adapt``."""
    source: str
    """Source HDF5 to adapt (the run's image size)."""
    output: str
    """Adapted HDF5 file to write."""
    per_source: int = 1
    """Noise draws z per source sample."""
    step: str | None = None
    """Checkpoint: a step number, ``best`` or ``last`` (None: best when the run had --val, else last)."""
    batch_size: int = 256
    seed: int | None = None
    """Seed of the noise draws (None: the run's)."""
    device: str = "auto"
    shard_size: int | None = None
    """Source samples per shard (None: :data:`sim2real.adapt.export.SHARD_SIZE`)."""
    workers: int | None = None
    """Ray actors (None: the cluster's CPUs); only with ``ray``."""
    ray: str | None = None
    """None: translate in this process; ``"auto"`` or a cluster address: Ray actors (:mod:`sim2real.ray_shards`)."""
    ray_gpus: float = 0.0
    """GPUs (a fraction) each Ray actor asks for; 0: none."""
    bn_batches: int | None = None
    """Batches of source images G's batch-norm statistics are recomputed from (None: :data:`~sim2real.adapt.export.BN_BATCHES`;
    0: the checkpoint's running averages)."""
    resume: bool = False
    overwrite: bool = False
    quiet: bool = False
    """No progress bar."""


def options(args: argparse.Namespace) -> Options:
    return options_from_namespace(Options, args)


def execute(opts: Options) -> dict:
    """Write the adapted file; returns :func:`sim2real.adapt.export.export_adapted`'s result."""
    from pathlib import Path

    from sim2real.errors import Sim2RealError
    from sim2real.outputs import check_output
    from sim2real.adapt.export import BN_BATCHES, SHARD_SIZE, export_adapted

    if opts.ray is not None:
        from sim2real.ray_shards import require_ray

        require_ray()  # a missing extra is the first thing said
    elif opts.workers is not None or opts.ray_gpus:
        raise Sim2RealError(f"{'--workers' if opts.workers is not None else '--ray-gpus'}: applies to Ray actors; "
                            "add --ray (export translates in one process without it)")
    run_dir = Path(opts.run_dir)
    run_files = [run_dir / "run.json", run_dir / "config.yaml", *sorted(run_dir.glob("checkpoints/*.pt"))]
    # an existing output is kept by --resume (finished) or refused by export_adapted (other inputs)
    check_output(opts.output, [opts.source, *run_files], overwrite=opts.overwrite or opts.resume)
    step: int | str | None = opts.step
    if step is not None and step not in ("best", "last"):
        try:
            step = int(step)
        except ValueError:
            raise Sim2RealError(f"--step {opts.step}: expected a step number, 'best' or 'last'") from None
    return export_adapted(opts.run_dir, opts.source, opts.output, per_source=opts.per_source, step=step,
                          batch_size=opts.batch_size, device=opts.device, seed=opts.seed, resume=opts.resume,
                          overwrite=opts.overwrite, shard_size=SHARD_SIZE if opts.shard_size is None else opts.shard_size, ray=opts.ray,
                          ray_gpus=opts.ray_gpus, workers=opts.workers, show_progress=not opts.quiet,
                          bn_batches=BN_BATCHES if opts.bn_batches is None else opts.bn_batches)


def report(opts: Options, res: dict) -> int:
    from pathlib import Path

    if res.get("already_complete"):
        print(f"export: {res['out']}: already complete ({res['n']} adapted images)")
        return 0
    how = ""
    if res.get("executor") == "ray":
        how = f", {res['workers']} Ray actor(s)"
    if res.get("translated", res["n"]) != res["n"]:
        how = f", {res['translated']} translated now{how}"
    print(f"export: {res['n']} adapted images ({res['per_source']} per source sample, checkpoint "
          f"{Path(res['checkpoint']).name} step {res['step']}{how}) "
          f"-> {res['out']}")
    if res.get("unseen"):
        print(f"note: the adaptation never saw classes {', '.join(res['unseen'])}: G translated them all the same "
              "(recorded in the file's provenance as classes_unseen_in_adaptation)")
    return 0
