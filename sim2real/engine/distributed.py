"""Data-parallel training under ``torchrun``: every rank sees its share of each batch, rank 0 writes.

``torchrun --nproc-per-node N -m sim2real adapt ...`` (or ``train-pose``) starts N processes; :func:`init_from_env`
(called by the CLI when ``WORLD_SIZE`` > 1) joins them into one process group: NCCL on GPUs (rank ``r`` uses
``cuda:LOCAL_RANK``), gloo on CPUs. The engine then keeps one model, replicated:

* **batches**: the :class:`~sim2real.engine.sampler.StepSampler` draws the config's *global* batch as before and
  each rank takes its contiguous 1/N of it (:func:`shard`; the batch size must divide by N), so the global batch,
  the data order and the resume point do not depend on N;
* **random inputs** a method draws for its batch (PixelDA's noise z, I2I Adapt's WGAN-GP interpolation weights;
  :func:`batch_rand`) are drawn for the global batch on every rank
  and sliced (:func:`shard`): every rank's RNG advances as a single process's does and stays identical across ranks;
* **gradients** are averaged over the ranks after each backward, before clipping and the optimiser step
  (:func:`average_gradients`): the average of the ranks' per-share mean losses is the mean over the global batch,
  so the update is a one-process update up to float rounding. We do this in the engine rather than wrapping the
  networks in ``DistributedDataParallel``: a step here is several updates of different networks (GANs), with
  parameters frozen in between, which DDP's per-forward hooks handle badly; the maths is DDP's all-reduce-mean;
* **batch norm** is synchronised (:func:`sync_batchnorm`): ``torch.nn.SyncBatchNorm`` on GPUs, and on CPUs (which
  ``SyncBatchNorm`` does not support) :class:`CPUSyncBatchNorm`, built on a differentiable all-reduce; the statistics are the global batch's, as in one process;
* **writing**: only rank 0 writes checkpoints, ``run.json``, metrics and sample grids (:func:`is_main`); the
  logged means are averaged over the ranks. A checkpoint is the same object whatever N was, so a run resumes
  under a different world size (``--resume`` with another ``--nproc-per-node``).

What is *not* identical to one process: per-element randomness drawn inside the networks in training mode
(dropout, D's input noise, augmentation) is drawn per rank for its share, from the same stream on every rank
(ranks reuse one another's masks on different samples); losses that are statistics of the whole batch (Deep
CORAL's covariances, MMD's kernel sums, the pairwise terms across samples) are computed on each rank's share and
averaged, as under DDP. ``tests/test_distributed.py`` checks a 2-process gloo run against a single process.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable, Iterable, TypeVar

import torch
import torch.nn as nn

from sim2real.errors import Sim2RealError

T = TypeVar("T")


@dataclasses.dataclass(frozen=True)
class World:
    """This process's place in the process group (``rank`` 0 of ``size`` 1 outside ``torchrun``)."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def active(self) -> bool:
        return self.size > 1


_WORLD = World()


def world() -> World:
    """The current :class:`World` (single process unless :func:`init_from_env` joined a group)."""
    return _WORLD


def is_main() -> bool:
    """Whether this process writes (rank 0, or the only process)."""
    return _WORLD.rank == 0


def launched_by_torchrun() -> bool:
    """Whether the environment describes a multi-process launch (``WORLD_SIZE`` > 1, as torchrun sets it)."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        return False


def init_from_env(backend: str | None = None) -> World:
    """Join the process group ``torchrun`` describes (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``,
    ``MASTER_PORT``); a no-op returning the single-process world when ``WORLD_SIZE`` is 1 or unset.

    ``backend``: None picks NCCL when CUDA is available (and sets this rank's GPU), else gloo.
    """
    global _WORLD
    if not launched_by_torchrun():
        return _WORLD
    import torch.distributed as dist

    try:
        rank, size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
        local = int(os.environ.get("LOCAL_RANK", rank))
    except (KeyError, ValueError):
        raise Sim2RealError("WORLD_SIZE > 1 but RANK / LOCAL_RANK are missing or invalid: start multi-process runs "
                            "with torchrun (torchrun --nproc-per-node N -m sim2real ...)") from None
    if backend is None:
        backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(local % max(torch.cuda.device_count(), 1))
    if not dist.is_initialized():
        dist.init_process_group(backend=backend)
    _WORLD = World(rank=rank, size=size, local_rank=local, backend=backend)
    return _WORLD


def shutdown() -> None:
    """Leave the process group (end of a torchrun command)."""
    global _WORLD
    if _WORLD.active:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
    _WORLD = World()


def device_for_rank(device: torch.device) -> torch.device:
    """Under NCCL, a bare ``cuda`` device becomes this rank's GPU (``cuda:LOCAL_RANK``)."""
    if _WORLD.active and device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


# ------------------------------------------------------------------------------------------------------------
# batches


def check_batch_size(batch_size: int, what: str = "train.batch_size") -> None:
    """A one-line error unless the global batch splits evenly over the ranks (every
    :class:`~sim2real.engine.sampler.StepSampler` checks its batch size when it is made)."""
    if _WORLD.active and batch_size % _WORLD.size:
        raise Sim2RealError(f"{what}={batch_size}: must be divisible by the number of processes ({_WORLD.size}) "
                            "so every rank gets an equal share of the global batch")


def shard(t: torch.Tensor) -> torch.Tensor:
    """This rank's contiguous share of a global-batch tensor (dim 0); the tensor itself in one process."""
    if not _WORLD.active:
        return t
    n = t.shape[0]
    if n % _WORLD.size:
        raise Sim2RealError(f"a batch of {n} does not split evenly over {_WORLD.size} processes "
                            "(make the batch size a multiple of --nproc-per-node)")
    k = n // _WORLD.size
    return t[_WORLD.rank * k:(_WORLD.rank + 1) * k]


def batch_rand(n: int, *shape: int, device: torch.device | str | None = None) -> torch.Tensor:
    """``torch.rand(n, *shape)`` for a batch of ``n`` samples from the global RNG; under ``torchrun`` ``n`` is this
    rank's share: the global batch's numbers are drawn on every rank and this rank's share returned, so every
    rank's RNG advances as one process's does and the numbers are the ones one process would use."""
    z = torch.rand(n * _WORLD.size, *shape, device=device)
    return shard(z) if _WORLD.active else z


# ------------------------------------------------------------------------------------------------------------
# collectives


def average_gradients(params: Iterable[torch.nn.Parameter]) -> None:
    """All-reduce the ``.grad`` of ``params`` to their mean over the ranks (one flat buffer per dtype/device).

    Parameters without a gradient are skipped: which ones have none is the same on every rank (same code path)."""
    if not _WORLD.active:
        return
    import torch.distributed as dist

    groups: dict[tuple, list[torch.Tensor]] = {}
    for p in params:
        if p.grad is not None:
            groups.setdefault((p.grad.dtype, p.grad.device), []).append(p.grad)
    for grads in groups.values():
        flat = torch.cat([g.reshape(-1) for g in grads])
        dist.all_reduce(flat, op=dist.ReduceOp.SUM)
        flat.div_(_WORLD.size)
        offset = 0
        for g in grads:
            g.copy_(flat[offset:offset + g.numel()].view_as(g))
            offset += g.numel()


def _reduce_over_ranks(values: dict[str, float], op: str) -> dict[str, float]:
    """Each value reduced over the ranks (``"mean"`` or ``"max"``; the same keys on every rank), in one float64
    all-reduce; ``values`` itself in one process."""
    if not _WORLD.active or not values:
        return values
    import torch.distributed as dist

    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    if _WORLD.backend == "nccl":
        t = t.cuda()
    dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    t = (t / _WORLD.size if op == "mean" else t).cpu()
    return {k: float(v) for k, v in zip(keys, t.tolist())}


def mean_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """The mean of each value over the ranks (logged means); ``values`` itself in one process."""
    return _reduce_over_ranks(values, "mean")


def max_over_ranks(values: dict[str, float]) -> dict[str, float]:
    """The largest of each value over the ranks (the health check's per-loss maxima); ``values`` in one process."""
    return _reduce_over_ranks(values, "max")


def any_rank(flag: bool) -> bool:
    """Whether ``flag`` is true on any rank (e.g. an interrupt one rank saw first)."""
    return max_over_ranks({"flag": 1.0 if flag else 0.0})["flag"] > 0


def run_on_main(fn: Callable[[], T]) -> T:
    """Run ``fn`` on rank 0 only and hand its result to every rank; a :class:`Sim2RealError` (or ``OSError``) on
    rank 0 is raised on every rank with the same message, so no rank waits for a peer that has stopped."""
    if not _WORLD.active:
        return fn()
    import torch.distributed as dist

    box: list[Any] = [None]
    if _WORLD.rank == 0:
        try:
            box[0] = ("ok", fn())
        except (Sim2RealError, OSError) as e:
            box[0] = ("error", str(e))
    dist.broadcast_object_list(box, src=0)
    kind, payload = box[0]
    if kind == "error":
        raise Sim2RealError(payload)
    return payload


def barrier() -> None:
    if _WORLD.active:
        import torch.distributed as dist

        dist.barrier()


# ------------------------------------------------------------------------------------------------------------
# batch norm over the global batch


class _SumOverRanks(torch.autograd.Function):
    """Differentiable all-reduce (sum): the backward of a sum over the ranks sums the incoming gradients over the
    ranks (each rank's output feeds that rank's loss; the input of every rank reaches all of them)."""

    @staticmethod
    def forward(ctx, t: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        out = t.clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        g = grad.contiguous().clone()
        dist.all_reduce(g, op=dist.ReduceOp.SUM)
        return g


def sum_over_ranks(t: torch.Tensor) -> torch.Tensor:
    """``t`` summed over the ranks, differentiably (:class:`_SumOverRanks`); ``t`` in one process."""
    return _SumOverRanks.apply(t) if _WORLD.active else t


class CPUSyncBatchNorm(nn.modules.batchnorm._BatchNorm):
    """Batch norm whose training statistics are those of the global batch across the ranks (any tensor rank >= 2).

    For gloo (CPU), which ``torch.nn.SyncBatchNorm`` does not support: the per-channel sum, sum of squares and
    count are summed over the ranks by :func:`sum_over_ranks`, which is differentiable (its backward sums the
    incoming gradients over the ranks), so the gradients through the statistics are the
    global batch's too. Evaluation mode uses the running statistics (no communication). Same parameters, buffers
    and state-dict keys as ``nn.BatchNorm*d``.
    """

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"CPUSyncBatchNorm: expected at least 2-D input, got {x.dim()}-D")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        if not (self.training and _WORLD.active):
            return super().forward(x)
        dims = [0] + list(range(2, x.dim()))
        shape = [1, -1] + [1] * (x.dim() - 2)
        xf = x.float()
        count = torch.tensor([float(x.numel() // x.shape[1])], dtype=torch.float32, device=x.device)
        local = torch.cat([xf.sum(dims), (xf * xf).sum(dims), count])
        total = sum_over_ranks(local)
        c = x.shape[1]
        n = total[-1]
        mean = total[:c] / n
        var = (total[c:2 * c] / n - mean * mean).clamp_min(0)
        if self.track_running_stats and self.running_mean is not None:
            with torch.no_grad():
                if self.num_batches_tracked is not None:
                    self.num_batches_tracked.add_(1)
                m = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
                self.running_mean.mul_(1 - m).add_(mean.detach(), alpha=m)
                self.running_var.mul_(1 - m).add_(var.detach() * (n / (n - 1).clamp_min(1)), alpha=m)
        y = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)


def sync_batchnorm(module: nn.Module) -> nn.Module:
    """Replace the batch norms under ``module`` by synchronised ones (in place, keeping the same parameters and
    buffers, so optimisers built on the module keep working); ``module`` itself in one process."""
    if not _WORLD.active:
        return module
    cls = nn.SyncBatchNorm if _WORLD.backend == "nccl" else CPUSyncBatchNorm

    def convert(m: nn.Module) -> nn.Module:
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and not isinstance(m, (nn.SyncBatchNorm, CPUSyncBatchNorm)):
            new = cls(m.num_features, m.eps, m.momentum, m.affine, m.track_running_stats)
            if m.affine:
                new.weight, new.bias = m.weight, m.bias
            new.running_mean, new.running_var = m.running_mean, m.running_var
            new.num_batches_tracked = m.num_batches_tracked
            new.train(m.training)
            return new
        for name, child in list(m.named_children()):
            setattr(m, name, convert(child))
        return m

    return convert(module)
