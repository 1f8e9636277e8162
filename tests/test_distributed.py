"""Data-parallel training (torchrun, gloo on the CPU) against one process: sharding, gradient averaging, synced
batch norm, and the rank-0 checkpoint of a 2-process run against a single-process run with the same global batch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from sim2real.engine import distributed
from sim2real.engine.distributed import World
from sim2real.errors import Sim2RealError
from sim2real.testing import make_synthetic


# ---------------------------------------------------------------------------------------------- in one process


def test_single_process_is_a_no_op():
    t = torch.arange(6)
    assert distributed.world().size == 1 and distributed.is_main()
    assert distributed.shard(t) is t
    assert distributed.mean_over_ranks({"a": 1.5}) == {"a": 1.5}
    m = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 1), torch.nn.BatchNorm2d(4))
    assert isinstance(distributed.sync_batchnorm(m)[1], torch.nn.BatchNorm2d)


def test_shard_takes_this_ranks_contiguous_share(monkeypatch):
    monkeypatch.setattr(distributed, "_WORLD", World(rank=1, size=2, backend="gloo"))
    assert distributed.shard(torch.arange(8)).tolist() == [4, 5, 6, 7]
    assert not distributed.is_main()
    with pytest.raises(Sim2RealError, match="does not split evenly over 2"):
        distributed.shard(torch.arange(7))
    with pytest.raises(Sim2RealError, match="train.batch_size=7: must be divisible by the number of processes"):
        distributed.check_batch_size(7)


def test_sampler_shards_the_global_batch(monkeypatch):
    from sim2real.engine.sampler import StepSampler

    full = StepSampler([10], 4, seed=3)(2)
    parts = []
    for r in range(2):
        monkeypatch.setattr(distributed, "_WORLD", World(rank=r, size=2, backend="gloo"))
        parts.append(StepSampler([10], 4, seed=3)(2))
    assert torch.equal(torch.cat(parts), full)


def test_noise_is_the_global_draw_sliced(monkeypatch):
    from sim2real.models.generator import Generator

    G = Generator(3, (8, 8), noise_dim=5, filters=4, blocks=1)
    torch.manual_seed(0)
    full = G.sample_noise(6)
    for r in range(2):
        monkeypatch.setattr(distributed, "_WORLD", World(rank=r, size=2, backend="gloo"))
        torch.manual_seed(0)
        assert torch.equal(G.sample_noise(3), full[3 * r:3 * r + 3])
    assert torch.get_rng_state().equal(_state_after(lambda: torch.rand(6, 5)))  # consumed what one process does


def _state_after(fn):
    torch.manual_seed(0)
    fn()
    return torch.get_rng_state()


# ---------------------------------------------------------------------------------------------- two gloo processes


def _worker(rank: int, world: int, init_file: str, out: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    distributed._WORLD = World(rank=rank, size=world, backend="gloo")
    torch.manual_seed(0)
    x = torch.randn(8, 3, 5, 5)
    w_out = torch.randn(8, 3, 5, 5)
    bn = torch.nn.BatchNorm2d(3, momentum=0.1)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5), bn.bias.uniform_(-0.5, 0.5)
    sync = distributed.sync_batchnorm(torch.nn.Sequential(bn))[0]
    k = 8 // world
    xs = x[rank * k:(rank + 1) * k].clone().requires_grad_(True)
    y = sync(xs)
    loss = (y * w_out[rank * k:(rank + 1) * k]).sum() / 8 * world  # this rank's share of the global mean's sum
    loss.backward()
    distributed.average_gradients(sync.parameters())
    means = distributed.mean_over_ranks({"v": float(rank)})
    torch.save({"y": y.detach(), "xgrad": xs.grad, "wgrad": sync.weight.grad, "bgrad": sync.bias.grad,
                "rm": sync.running_mean, "rv": sync.running_var, "means": means,
                "any": distributed.any_rank(rank == 1)}, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


@pytest.mark.slow
def test_synced_batchnorm_and_gradients_match_one_big_batch(tmp_path):
    """Two ranks with 4 images each give plain BatchNorm2d's outputs, input gradients, parameter gradients and
    running statistics on the 8 images (the reference: one process, autograd)."""
    import torch.multiprocessing as mp

    mp.spawn(_worker, args=(2, str(tmp_path / "init"), str(tmp_path)), nprocs=2, join=True)
    torch.manual_seed(0)
    x = torch.randn(8, 3, 5, 5).requires_grad_(True)
    w_out = torch.randn(8, 3, 5, 5)
    bn = torch.nn.BatchNorm2d(3, momentum=0.1)
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5), bn.bias.uniform_(-0.5, 0.5)
    y = bn(x)
    ((y * w_out).sum() / 8).backward()
    for r in range(2):
        got = torch.load(tmp_path / f"rank{r}.pt", weights_only=False)
        sl = slice(4 * r, 4 * r + 4)
        torch.testing.assert_close(got["y"], y.detach()[sl], atol=1e-5, rtol=1e-5)
        # the ranks' losses sum to 2x the global mean, and an input's gradient is not averaged (only parameters'
        # are), so each rank's input gradient is twice the one-process one; upstream parameters, whose gradients
        # are averaged over the 2 ranks, then get exactly the one-process gradient
        torch.testing.assert_close(got["xgrad"], 2 * x.grad[sl], atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(got["wgrad"], bn.weight.grad, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(got["bgrad"], bn.bias.grad, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(got["rm"], bn.running_mean, atol=1e-6, rtol=1e-5)
        torch.testing.assert_close(got["rv"], bn.running_var, atol=1e-6, rtol=1e-5)
        assert got["means"] == {"v": 0.5} and got["any"] is True


# ---------------------------------------------------------------------------------------------- torchrun CLI runs


def _torchrun(nproc: int, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    if nproc == 1:
        env.pop("WORLD_SIZE", None)
        cmd = [sys.executable, "-m", "sim2real", *args]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", str(nproc), "--standalone",
               "-m", "sim2real", *args]
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def _states(path: Path) -> dict:
    return torch.load(path, weights_only=True)["state"]


def _assert_same_models(a: Path, b: Path, names) -> None:
    sa, sb = _states(a), _states(b)
    for n in names:
        for k in sa[n]:
            torch.testing.assert_close(sb[n][k], sa[n][k], atol=2e-5, rtol=1e-4, msg=f"{n}.{k}")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    d = tmp_path_factory.mktemp("ddp")
    make_synthetic(d / "src.h5", n=32, size=16, seed=0)
    make_synthetic(d / "tgt.h5", n=32, size=16, seed=1, domain="target", labels=False)
    make_synthetic(d / "val.h5", n=16, size=16, seed=2, domain="target")
    return d


# D's dropout and input noise are per-element randomness drawn per rank (not what one process draws): off here
ADAPT = ["adapt", "--source", "src.h5", "--target", "tgt.h5", "--val", "val.h5", "--config", "pixelda-tiny",
         "--set", "model.discriminator.dropout_keep=1", "--set", "model.discriminator.noise_std=0",
         "--set", "train.checkpoint_every=2"]


@pytest.mark.slow
def test_two_process_adapt_matches_one_process_and_resumes_across_world_sizes(data):
    """PixelDA (batch norm in G and D, noise z, two updates per step): the rank-0 checkpoint of 2 gloo processes
    equals one process with the same global batch (float tolerance); a run started on 2 processes and resumed on
    1 ends where an uninterrupted run does."""
    one = _torchrun(1, ADAPT + ["--set", "train.steps=4", "-o", "one"], data)
    assert one.returncode == 0, one.stderr
    two = _torchrun(2, ADAPT + ["--set", "train.steps=4", "-o", "two"], data)
    assert two.returncode == 0, two.stderr
    assert two.stdout.count("adapt: 4 steps -> two") == 1  # rank 0 prints the summary, the other rank is silent
    _assert_same_models(data / "one/checkpoints/last.pt", data / "two/checkpoints/last.pt", "GDT")
    assert not (data / "two" / "rank1").exists()
    lines = (data / "two/metrics.jsonl").read_text().splitlines()
    assert len(lines) == len((data / "one/metrics.jsonl").read_text().splitlines())  # written once, by rank 0

    half = _torchrun(2, ADAPT + ["--set", "train.steps=2", "-o", "mixed"], data)
    assert half.returncode == 0, half.stderr
    rest = _torchrun(1, ADAPT + ["--set", "train.steps=4", "-o", "mixed", "--resume"], data)
    assert rest.returncode == 0, rest.stderr
    _assert_same_models(data / "one/checkpoints/last.pt", data / "mixed/checkpoints/last.pt", "GDT")


@pytest.mark.slow
def test_two_process_train_pose_matches_one_process(data):
    args = ["train-pose", "--train", "src.h5", "--val", "val.h5", "--config", "pose-tiny", "--set", "train.steps=6"]
    one = _torchrun(1, args + ["-o", "p1"], data)
    two = _torchrun(2, args + ["-o", "p2"], data)
    assert one.returncode == 0 and two.returncode == 0, two.stderr
    _assert_same_models(data / "p1/checkpoints/last.pt", data / "p2/checkpoints/last.pt", ["model"])


@pytest.mark.slow
def test_torchrun_errors_are_one_line(data):
    bad = _torchrun(2, ADAPT + ["--set", "train.batch_size=7", "--set", "train.steps=2", "-o", "bad"], data)
    assert bad.returncode != 0
    assert "sim2real adapt: error: train.batch_size=7: must be divisible by the number of processes (2)" in bad.stderr
    # each rank's error is one line; the only traceback is torchrun's own launcher reporting the failed ranks
    assert "site-packages/sim2real" not in bad.stderr and "/sim2real/engine/" not in bad.stderr
    render = _torchrun(2, ["inspect", "src.h5"], data)
    assert render.returncode != 0 and "only adapt, train-pose run data-parallel" in render.stderr


@pytest.mark.slow
@pytest.mark.parametrize("method,config", [("dann", "feature-tiny"), ("dtn", "dtn-tiny"), ("i2i", "i2i-tiny")])
def test_two_process_runs_of_the_other_methods_match_one_process(data, method, config):
    args = ["adapt", "--method", method, "--source", "src.h5", "--target", "tgt.h5", "--val", "val.h5", "--config",
            config, "--set", "train.steps=3"]
    one = _torchrun(1, args + ["-o", f"{method}1"], data)
    two = _torchrun(2, args + ["-o", f"{method}2"], data)
    assert one.returncode == 0 and two.returncode == 0, two.stderr
    sa, sb = _states(data / f"{method}1/checkpoints/last.pt"), _states(data / f"{method}2/checkpoints/last.pt")
    nets = [k for k, v in sa.items() if k != "rng" and isinstance(v, dict) and not k.startswith("opt")
            and "state" not in v]
    assert nets
    for n in nets:
        for k in sa[n]:
            if method == "i2i" and n in ("Dx", "Dy") and k in ("net.2.bias", "net.5.bias"):
                # conv biases right before an InstanceNorm: their true gradient is 0, Adam turns the rounding noise
                # of the two summation orders into steps of size lr; they do not change the critic's output
                continue
            torch.testing.assert_close(sb[n][k], sa[n][k], atol=2e-5, rtol=1e-4, msg=f"{n}.{k}")
