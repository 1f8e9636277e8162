"""PixelDA training throughput: plain fp32 eager vs the optimised path, measured in one run.

Throughput = source images per second through one full training step (D+T step, then G step, with
Adam updates and gradient clipping), for the paper-size model (pixelda-linemod: G 6x64 residual blocks,
D 64..1024 filters, pose_mini T with private layers; 64x64 RGB-D, batch 32).

Paths compared (same config, same maths; see tests/test_adapt.py::test_speed_switches_do_not_change_the_maths):

* plain:     fp32, NCHW, G run twice per step (D step and G step), D/T parameter gradients computed in the
             G step too, per-tensor optimiser and clipping loops: a straightforward eager port.
* optimised: what ``sim2real adapt`` does by default (``perf`` section, "auto"): one G forward per step,
             D/T frozen during the G step, foreach/fused optimiser and clipping kernels, and on a GPU bf16
             autocast + channels_last + fused Adam + cuDNN autotuning, data held on the device.

Steps of the two paths are interleaved (plain, optimised, plain, ...) and the median step time is
reported, so a change in background load affects both alike. ``--explore`` adds rows: on the CPU,
channels_last forced on; on a GPU, the optimised path without bf16 and without channels_last.

Usage: ``python benchmarks/bench_adapt.py --steps 5`` (about 2 minutes on a 2-core CPU; seconds on a GPU).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import torch


def _make_batches(n: int, batch: int, size: int, classes: int, device: torch.device, seed: int = 0):
    """Random data held as the trainer holds it (uint8 RGB + depth channel + masks on the device)."""
    from sim2real.engine.bank import TensorBank

    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n, 4, generator=g)
    src = TensorBank(rgb=torch.randint(0, 256, (n, size, size, 3), dtype=torch.uint8, generator=g),
                        depth=torch.rand(n, size, size, generator=g) * 2 - 1,
                        mask=torch.rand(n, size, size, generator=g) > 0.5,
                        label=torch.randint(0, classes, (n,), generator=g),
                        quat=q / q.norm(dim=1, keepdim=True))
    tgt = TensorBank(rgb=torch.randint(0, 256, (n, size, size, 3), dtype=torch.uint8, generator=g),
                        depth=torch.rand(n, size, size, generator=g) * 2 - 1)
    return src.to(device), tgt.to(device)


class Path_:
    """One training path: config overrides -> models, optimisers, and a timed step."""

    def __init__(self, name: str, sets: list[str], args, device: torch.device) -> None:
        from sim2real.config import load_config
        from sim2real.models.factory import build_models
        from sim2real.adapt.pixelda.step import PixelDAStep
        from sim2real.adapt.pixelda.config import PixelDAConfig
        from sim2real.engine.amp import configure_backend, resolve_speed, to_memory_format

        self.name = name
        cfg = load_config(PixelDAConfig, args.config, [f"train.batch_size={args.batch}", "model.image_size=null"] + sets)
        self.cfg = cfg
        self.speed = resolve_speed(device, cfg.perf.amp, cfg.perf.channels_last, cfg.perf.foreach)
        configure_backend(self.speed)
        torch.manual_seed(0)
        cin = 4 if cfg.model.use_depth else 3
        G, D, T = build_models(cfg, args.classes, cin, (args.size, args.size))
        G, D, T = (to_memory_format(m.to(device), self.speed) for m in (G, D, T))
        self.step = PixelDAStep(G, D, T, cfg, self.speed)
        self.gen = torch.Generator().manual_seed(1)
        self.times: list[float] = []
        self.k = 0

    def describe(self) -> str:
        p = self.cfg.perf
        g = "G once/step" if p.reuse_fake else "G twice/step"
        f = "D,T frozen in G step" if p.freeze_inactive else "D,T grads in G step"
        return f"{self.speed.describe()}; {g}; {f}"

    def run_one(self, src, tgt, n: int, batch: int, timed: bool) -> None:
        dev = self.speed.device
        i_s = torch.randint(0, n, (batch,), generator=self.gen)
        i_t = torch.randint(0, n, (batch,), generator=self.gen)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        sb = src.batch(i_s, dev, self.speed.channels_last)
        tb = tgt.batch(i_t, dev, self.speed.channels_last)
        m = self.step(sb, tb, self.k)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        self.k += 1
        if not all(torch.isfinite(v) for v in m.values()):
            raise RuntimeError(f"{self.name}: non-finite loss in the benchmark")
        if timed:
            self.times.append(dt)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=5, help="timed steps per path (default 5)")
    ap.add_argument("--warmup", type=int, default=1, help="untimed steps per path first (default 1; 3 on a GPU)")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--classes", type=int, default=11)
    ap.add_argument("--config", default="pixelda-linemod")
    ap.add_argument("--device", default="auto", help="auto (GPU when present), cpu, cuda")
    ap.add_argument("--explore", action="store_true", help="also time single speed settings toggled (see module doc)")
    args = ap.parse_args(argv)

    from sim2real.engine.device import resolve_device

    device = resolve_device(args.device)
    warmup = args.warmup if args.device == "cpu" or device.type == "cpu" else max(args.warmup, 3)
    plain_sets = ["perf.amp=fp32", "perf.channels_last=false", "perf.reuse_fake=false",
                  "perf.freeze_inactive=false", "perf.foreach=false", f"perf.device={device}"]
    paths = [Path_("plain fp32 eager", plain_sets, args, device),
             Path_("optimised (default)", [f"perf.device={device}"], args, device)]
    if args.explore and device.type == "cpu":
        # bf16 autocast is not offered on the CPU: most CPUs emulate it (measured here: 175 s/step, 0.06x).
        paths.append(Path_("optimised + channels_last", [f"perf.device={device}", "perf.channels_last=true"], args, device))
    elif args.explore:  # what each GPU setting contributes
        paths.append(Path_("optimised without bf16", [f"perf.device={device}", "perf.amp=fp32"], args, device))
        paths.append(Path_("optimised without channels_last", [f"perf.device={device}", "perf.channels_last=false"],
                           args, device))
    n = 4 * args.batch
    src, tgt = _make_batches(n, args.batch, args.size, args.classes, device)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {torch.get_num_threads()} threads"
    print(f"bench_adapt: PixelDA training step, config {args.config} (paper size), {args.size}x{args.size} "
          f"RGB-D, batch {args.batch}; torch {torch.__version__}; device {device} ({name})")
    for p in paths:
        print(f"  {p.name:28s} {p.describe()}")
    for _ in range(warmup):
        for p in paths:
            p.run_one(src, tgt, n, args.batch, timed=False)
    for _ in range(args.steps):  # interleaved: background load hits every path alike
        for p in paths:
            p.run_one(src, tgt, n, args.batch, timed=True)

    base = statistics.median(paths[0].times)
    print(f"{'path':30s} {'median ms/step':>15s} {'images/s':>10s} {'vs plain':>9s}")
    for p in paths:
        med = statistics.median(p.times)
        print(f"{p.name:30s} {1000 * med:15.1f} {args.batch / med:10.1f} {base / med:8.2f}x")
    ratio = base / statistics.median(paths[1].times)
    print(f"ratio optimised / plain fp32 eager: {ratio:.2f}x  ({args.steps} timed steps per path, median)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
