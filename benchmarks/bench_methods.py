"""Training throughput of every adaptation method, measured in one run, beside PixelDA's.

Each method is trained by the real ``sim2real adapt --method NAME`` command line, with the config and ``--set``
overrides of its stage in a pipeline (default ``pipelines/methods-digits-cpu.yaml``: 32x32 RGB digits, batch 32),
on synthetic 32x32 source / target files made here (``sim2real.testing.make_synthetic``: the step's cost does not
depend on the pixels). Every run trains ``--warmup`` untimed steps, then ``--steps`` timed ones; the time is read
from the run's ``metrics.jsonl`` (``time_s`` of the last train line minus that of the warm-up's), so process
start, data loading, validation, sample grids and checkpoints are outside it (validation, samples and checkpoints
are moved to the last step). DTN's pretraining of f is kept inside the warm-up, so its timed steps are GAN steps.

Throughput = source images per second (``train.batch_size`` x steps/s); each method's is also given as a ratio to
PixelDA's measured in the same round. Methods run one after another; with ``--rounds R`` the whole list runs R
times and each method's median over rounds is reported, so a change in background load affects every method.

Usage: ``python benchmarks/bench_methods.py`` (about 3 minutes on a 2-core CPU);
``--pipeline pipelines/methods-demo.yaml`` for the demo's 32x32 renders with pose heads (the synthetic data then
carries masks and depth as renders do).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _timed(run_dir: Path, warmup: int) -> tuple[float, int]:
    """(seconds, steps) between the warm-up's train line and the last train line of ``run_dir/metrics.jsonl``."""
    rows = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines() if x.strip()]
    train = [r for r in rows if r.get("split") == "train"]
    first = next(r for r in train if r["step"] == warmup)
    last = train[-1]
    return last["time_s"] - first["time_s"], last["step"] - first["step"]


def _stage_argv(stage, source: Path, target: Path, val: Path, out: Path, steps: int, warmup: int) -> list[str]:
    from sim2real.pipeline import build_argv

    args = dict(stage.args)
    args.update(source=str(source), target=str(target), val=str(val))
    sets = dict(args.get("set") or {}) if not isinstance(args.get("set"), list) else \
        dict(str(x).split("=", 1) for x in args["set"])
    total = warmup + steps
    sets.update({"train.steps": total, "train.log_every": warmup, "train.val_every": total,
                 "train.checkpoint_every": total, "train.keep_checkpoints": 1})
    if stage.args.get("method") in ("pixelda", "dtn", "i2i", None):
        sets["train.sample_every"] = total
    if stage.args.get("method") == "dtn":
        sets["train.pretrain_steps"] = max(1, warmup // 2)
    args["set"] = sets
    return build_argv(stage, args, out, resume=False)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pipeline", default=str(ROOT / "pipelines" / "methods-digits-cpu.yaml"),
                    help="pipeline whose adapt stages give the methods and settings (default methods-digits-cpu)")
    ap.add_argument("--steps", type=int, default=60, help="timed steps per method (a multiple of --warmup)")
    ap.add_argument("--warmup", type=int, default=20, help="untimed steps first (default 20)")
    ap.add_argument("--rounds", type=int, default=1, help="run the list this many times; report medians")
    ap.add_argument("--only", nargs="*", help="stage names to time (default: every adapt stage)")
    ap.add_argument("--size", type=int, default=32, help="image size of the synthetic data (default 32)")
    a = ap.parse_args()
    if a.steps % a.warmup:
        ap.error("--steps must be a multiple of --warmup (the metrics log writes a line every --warmup steps)")

    from sim2real.pipeline import load_pipeline
    from sim2real.testing import make_synthetic

    pipe = load_pipeline(a.pipeline)
    stages = [s for s in pipe.stages.values() if s.command == "adapt" and (not a.only or s.name in a.only)]
    if not stages:
        print(f"{a.pipeline}: no adapt stages to time", file=sys.stderr)
        return 2
    env = dict(os.environ, SIM2REAL_PROGRESS="0")
    results: dict[str, list[float]] = {s.name: [] for s in stages}
    ratios: dict[str, list[float]] = {s.name: [] for s in stages}
    batch: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="bench_methods_") as tmp:
        tmp = Path(tmp)
        src = make_synthetic(tmp / "source.h5", n=512, size=a.size, num_classes=10, seed=0)
        tgt = make_synthetic(tmp / "target.h5", n=512, size=a.size, num_classes=10, seed=1, domain="target")
        val = make_synthetic(tmp / "val.h5", n=64, size=a.size, num_classes=10, seed=2, domain="target")
        for r in range(a.rounds):
            round_rate: dict[str, float] = {}
            for st in stages:
                out = tmp / f"{st.name}-r{r}"
                argv = _stage_argv(st, src, tgt, val, out, a.steps, a.warmup)
                t0 = time.perf_counter()
                p = subprocess.run([sys.executable, "-m", "sim2real", *argv], env=env, capture_output=True, text=True)
                if p.returncode != 0:
                    print(f"{st.name}: sim2real {' '.join(argv)} failed:\n{p.stderr.strip()}", file=sys.stderr)
                    return 1
                secs, n = _timed(out, a.warmup)
                cfg = json.loads((out / "run.json").read_text()).get("config", {})
                batch[st.name] = int(cfg.get("train", {}).get("batch_size", 32))
                round_rate[st.name] = n / secs
                results[st.name].append(n * batch[st.name] / secs)
                print(f"round {r + 1}/{a.rounds} {st.name:>10}: {n / secs:6.2f} steps/s "
                      f"({time.perf_counter() - t0:.1f} s with start-up)", flush=True)
            ref = next((s.name for s in stages if s.args.get("method", "pixelda") == "pixelda"), None)
            for name, rate in round_rate.items():
                if ref is not None:
                    ratios[name].append(rate * batch[name] / (round_rate[ref] * batch[ref]))

    print(f"\n{Path(a.pipeline).name}: {a.steps} timed steps after {a.warmup} warm-up, {a.rounds} round(s), "
          f"{torch_threads()} threads")
    print(f"{'stage':>12} {'method':>8} {'batch':>5} {'img/s':>8} {'x PixelDA':>10}")
    for st in stages:
        method = st.args.get("method", "pixelda")
        ratio = f"{statistics.median(ratios[st.name]):.2f}" if ratios[st.name] else "n/a"
        print(f"{st.name:>12} {method:>8} {batch[st.name]:>5} {statistics.median(results[st.name]):8.1f} {ratio:>10}")
    return 0


def torch_threads() -> int:
    import torch

    return torch.get_num_threads()


if __name__ == "__main__":
    sys.exit(main())
