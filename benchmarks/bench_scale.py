"""Scaling: the render's two executors (local process pool vs Ray actors) and, from the engine work, DDP training.

``render``: `sim2real render`'s job (``run_render``, HDF5 file included) with the real pyrender renderer on the
bundled objects (the shipped ``render-default`` config), one after the other in this one run so the printed ratios
compare like with like on a noisy machine: the local pool with 2 workers, then Ray with 1 and 2 actors on a local
Ray cluster of 2 CPUs. The cluster's start-up (``ray.init``) is timed on its own line; the Ray throughputs are those
of the render jobs inside the running cluster (actor start, GL contexts and shard writes included, as the local
pool's include its process start), so they measure what a second render on a warm cluster costs.

Usage: python benchmarks/bench_scale.py [--part render|ddp|all] [--samples 3000] [--size 64] [--shard-size N]
       [--repeats 1]
Target (issue #15): Ray with 2 actors within 10% of the local pool with 2 workers (ratio >= 0.90).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path


def bench_render(args) -> None:
    """Local pool (2 workers) vs Ray (1 and 2 actors): img/s of whole render jobs, and the cluster start-up."""
    from sim2real.config import load_config
    from sim2real.render import ray_pool
    from sim2real.render.config import RenderConfig
    from sim2real.render.job import run_render

    os.environ.setdefault("LP_NUM_THREADS", "1")
    sets = [f"n_samples={args.samples}", f"image_size={args.size}"]
    sets += [f"shard_size={args.shard_size}"] if args.shard_size else []
    cfg = load_config(RenderConfig, "render-default", sets)
    best = {"local2": 1e9, "ray1": 1e9, "ray2": 1e9, "startup": 1e9}
    platform = ""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "bench.h5"
        for _ in range(args.repeats):
            # the local pool first, with no Ray cluster running beside it
            res = run_render(cfg, out, workers=2, overwrite=True, show_progress=False)
            best["local2"], platform = min(best["local2"], res.seconds), res.platform
            t = time.perf_counter()
            with ray_pool.session("auto", num_cpus=2):
                best["startup"] = min(best["startup"], time.perf_counter() - t)
                for n in (1, 2):
                    res = run_render(cfg, out, workers=n, overwrite=True, show_progress=False, ray="auto")
                    if res.workers != n:
                        raise SystemExit(f"bench_scale: {cfg.n_samples} samples make fewer than {n} shards of "
                                         f"{cfg.shard_size}; lower --shard-size")
                    best[f"ray{n}"] = min(best[f"ray{n}"], res.seconds)
    rate = {k: args.samples / v for k, v in best.items() if k != "startup"}
    print(f"bench_scale render: {args.samples} samples of {args.size}x{args.size}, bundled objects, render-default "
          f"[{platform}], {os.cpu_count()} cores, best of {args.repeats}")
    print(f"  local pool, 2 workers     {best['local2']:7.2f} s  {rate['local2']:7.1f} img/s")
    print(f"  Ray, 1 actor              {best['ray1']:7.2f} s  {rate['ray1']:7.1f} img/s")
    print(f"  Ray, 2 actors             {best['ray2']:7.2f} s  {rate['ray2']:7.1f} img/s")
    print(f"  Ray cluster start-up      {best['startup']:7.2f} s  (once per command; not in the rates above)")
    print(f"  ratio Ray 2 actors / local 2 workers:  {rate['ray2'] / rate['local2']:.2f}  (target >= 0.90)")
    print(f"  ratio Ray 1 actor  / local 2 workers:  {rate['ray1'] / rate['local2']:.2f}")
    print(f"  ratio Ray 2 actors / Ray 1 actor:      {rate['ray2'] / rate['ray1']:.2f}")


# ---------------------------------------------------------------------------------------------
# ddp: data-parallel training throughput -- TO BE FILLED IN BY THE ENGINE WORK
# ---------------------------------------------------------------------------------------------


def bench_ddp(args) -> None:
    """DDP training throughput (steps/s, scaling over processes); added by the engine work."""
    raise NotImplementedError("added by the engine work")


PARTS = {"render": bench_render, "ddp": bench_ddp}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=[*PARTS, "all"], default="all", help="which benchmark to run (default: all)")
    ap.add_argument("--samples", type=int, default=3000, help="render: samples per job")
    ap.add_argument("--size", type=int, default=64, help="render: image side, pixels")
    ap.add_argument("--shard-size", type=int, default=None, help="render: samples per shard (default: the config's, 128)")
    ap.add_argument("--repeats", type=int, default=1, help="alternate the runs this many times; the best time of each counts")
    args = ap.parse_args()
    for name, fn in PARTS.items():
        if args.part in (name, "all"):
            fn(args)


if __name__ == "__main__":
    main()
