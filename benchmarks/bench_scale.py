"""Scaling: the render's two executors (local process pool vs Ray actors) and data-parallel training (torchrun).

``render``: `sim2real render`'s job (``run_render``, HDF5 file included) with the real pyrender renderer on the
bundled objects (the shipped ``render-default`` config), one after the other in this one run so the printed ratios
compare like with like on a noisy machine: the local pool with 2 workers, then Ray with 1 and 2 actors on a local
Ray cluster of 2 CPUs. The cluster's start-up (``ray.init``) is timed on its own line; the Ray throughputs are those
of the render jobs inside the running cluster (actor start, GL contexts and shard writes included, as the local
pool's include its process start), so they measure what a second render on a warm cluster costs.

``ddp``: PixelDA (``pixelda-demo``) and train-pose (``pose-demo``) steps/s on synthetic 32x32 data, one process vs
``--nproc`` processes under torchrun with the same global batch (steady-state rate from ``metrics.jsonl``, start-up
excluded). On CPUs the processes share the cores (``OMP_NUM_THREADS`` = cores / processes; the one process gets
every core); on a GPU machine each process has its own GPU.

Usage: python benchmarks/bench_scale.py [--part render|ddp|all] [--samples 3000] [--size 64] [--shard-size N]
       [--repeats 1] [--nproc N] [--ddp-steps 300]
Targets (issue #15): Ray with 2 actors within 10% of the local pool with 2 workers (ratio >= 0.90); DDP on 2 GPUs
>= 1.8x one GPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch


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


# ---------------------------------------------------------------------------------------------------------------
# DDP: step throughput of 1 vs N processes (torchrun; gloo on CPUs, NCCL on GPUs)
# ---------------------------------------------------------------------------------------------------------------


def _steady_rate(run: Path) -> float:
    """Steps per second over the logged windows after the first (start-up, first-touch allocations excluded)."""
    rates = [r["steps_per_s"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
             if r.get("split") == "train" and "steps_per_s" in r]
    rates = rates[1:] or rates
    return float(np.median(rates))


def _launch(nproc: int, threads: int, args: list[str], cwd: Path) -> float:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads))
    env.pop("WORLD_SIZE", None)
    head = [sys.executable, "-m", "sim2real"] if nproc == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(nproc), "-m", "sim2real"]
    t0 = time.perf_counter()
    subprocess.run(head + args, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t0


def bench_ddp(args) -> None:
    """PixelDA (``pixelda-demo``) and train-pose (``pose-demo``) steps/s, one process vs ``--nproc`` processes
    with the same global batch. On a CPU machine the processes share its cores (``OMP_NUM_THREADS`` = cores /
    processes, so both sides use every core); on a GPU machine each process has its own GPU."""
    from sim2real.testing import make_synthetic

    gpus = torch.cuda.device_count()
    cores = os.cpu_count() or 1
    nproc = args.nproc or (gpus if gpus > 1 else 2)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_ddp_"))
    work.mkdir(parents=True, exist_ok=True)
    for name, n, dom, labels in (("src", 2048, "source", True), ("tgt", 2048, "target", False)):
        if not (work / f"{name}.h5").is_file():
            make_synthetic(work / f"{name}.h5", n=n, size=32, num_classes=4, seed=len(name), domain=dom,
                           labels=labels)
    steps = args.ddp_steps
    common = ["--set", f"train.steps={steps}", "--set", f"train.log_every={max(steps // 5, 1)}",
              "--set", f"train.checkpoint_every={steps}", "--overwrite"]
    jobs = {"adapt pixelda-demo": ["adapt", "--source", "src.h5", "--target", "tgt.h5", "--config", "pixelda-demo",
                                   "--set", f"train.val_every={steps}", "--set", f"train.sample_every={steps}",
                                   ] + common,
            "train-pose pose-demo": ["train-pose", "--train", "src.h5", "--config", "pose-demo",
                                     "--set", f"train.val_every={steps}"] + common}
    where = f"{gpus} GPU(s)" if gpus else f"{cores} CPU cores"
    print(f"DDP step throughput on {where}: 1 process vs {nproc} (same global batch), {steps} steps each")
    for label, cmd in jobs.items():
        rates = {}
        one_threads = cores if not gpus else max(cores // max(nproc, 1), 1)
        _launch(1, one_threads, cmd + ["-o", "one"], work)
        rates[1] = _steady_rate(work / "one")
        _launch(nproc, max(cores // nproc, 1), cmd + ["-o", "many"], work)
        rates[nproc] = _steady_rate(work / "many")
        print(f"  {label:22s} 1 process: {rates[1]:7.2f} steps/s   {nproc} processes: {rates[nproc]:7.2f} steps/s   "
              f"ratio {rates[nproc] / rates[1]:.2f}x" + ("  (target >= 1.8x on 2 GPUs)" if gpus > 1 else ""))


PARTS = {"render": bench_render, "ddp": bench_ddp}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=[*PARTS, "all"], default="all", help="which benchmark to run (default: all)")
    ap.add_argument("--samples", type=int, default=3000, help="render: samples per job")
    ap.add_argument("--size", type=int, default=64, help="render: image side, pixels")
    ap.add_argument("--shard-size", type=int, default=None, help="render: samples per shard (default: the config's, 128)")
    ap.add_argument("--repeats", type=int, default=1, help="alternate the runs this many times; the best time of each counts")
    ap.add_argument("--nproc", type=int, default=None, help="ddp: processes (default: the GPUs if more than one, else 2)")
    ap.add_argument("--ddp-steps", type=int, default=300, help="ddp: training steps per run")
    ap.add_argument("--workdir", default=None, help="ddp: where the synthetic data and runs go (default: a temp folder)")
    args = ap.parse_args()
    for name, fn in PARTS.items():
        if args.part in (name, "all"):
            fn(args)


if __name__ == "__main__":
    main()
