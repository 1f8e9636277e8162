"""Batch-norm statistics of a network that is only ever trained with batch statistics (PixelDA's G).

In training, G runs in train mode: each batch-norm layer normalises with the statistics of the batch at hand, and
its running averages (momentum 0.1, i.e. the last ~10 batches while the weights still move) are a side product
nobody trains against. In eval mode G normalises with those running averages instead, and for a layer whose batch
variance is small a slightly stale running mean shifts everything after it. Measured on the demo's seed-0 run
(2026-12-04, 2,048 renders): eval-mode G(x, z) differed from train-mode G(x, z) by 0.28 RMS on [-1, 1] (36 of 255
levels) and its images were brighter than the target's (channel means +0.08 / 0.00 / -0.02 against the train-mode
outputs' -0.08 / -0.16 / -0.22 and the target's -0.09 / -0.21 / -0.26), i.e. ``export`` wrote images of another
domain than the one T was trained on.

:func:`precise_bn_` recomputes the running statistics as the exact average over many batches with the final
weights ("precise BN", Wu & Johnson 2021; what ``torch.optim.swa_utils.update_bn`` does for a one-input model,
which G(x, z) is not). After it, eval-mode G differed from train-mode G by 0.056 RMS on the same images, less than
train-mode G differs from itself when the same images are batched with others (0.086). :func:`batch_statistics`
runs a network in train mode for a forward pass and restores its running statistics, so a sample grid or a
validator sees the images training produces without changing the run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
from torch.nn.modules.batchnorm import _BatchNorm


def bn_layers(model: torch.nn.Module) -> list[_BatchNorm]:
    """The batch-norm layers of ``model`` that keep running statistics."""
    return [m for m in model.modules() if isinstance(m, _BatchNorm) and m.track_running_stats]


@torch.no_grad()
def precise_bn_(model: torch.nn.Module, batches: int, forward: Callable[[int], None]) -> int:
    """Replace every batch-norm layer's running mean and variance by their average over ``batches`` batches.

    Args:
        model: the network (changed in place; its train/eval mode is restored).
        batches: how many forward passes to average.
        forward: ``forward(i)`` runs ``model`` on batch ``i`` (the caller picks inputs and noise).

    Returns: the number of batch-norm layers recalibrated (0: nothing to do, ``forward`` is not called).
    """
    layers = bn_layers(model)
    if not layers or batches < 1:
        return 0
    was_training, momenta = model.training, [m.momentum for m in layers]
    for m in layers:
        m.reset_running_stats()
        m.momentum = None  # cumulative average: every batch weighs the same
    model.train()
    try:
        for i in range(batches):
            forward(i)
    finally:
        for m, mom in zip(layers, momenta):
            m.momentum = mom
        model.train(was_training)
    return len(layers)


@contextlib.contextmanager
def running_statistics(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """``with running_statistics(G): G(x, z)``: eval mode for the block, then the model's mode as it was."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


@contextlib.contextmanager
def batch_statistics(model: torch.nn.Module) -> Iterator[torch.nn.Module]:
    """``with batch_statistics(G): G(x, z)``: train-mode batch norm (the batch's own statistics, as in training)
    for the block, then the model's mode and running statistics exactly as they were."""
    from sim2real.engine.distributed import CPUSyncBatchNorm

    layers = bn_layers(model)
    if any(isinstance(m, (torch.nn.SyncBatchNorm, CPUSyncBatchNorm)) for m in layers):
        # under torchrun a train-mode synced batch norm waits for every rank, and grids / validators run on rank 0
        # only: fall back to eval mode (running statistics) there
        with running_statistics(model):
            yield model
        return
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()) for m in layers]
    was_training = model.training
    model.train()
    try:
        yield model
    finally:
        model.train(was_training)
        with torch.no_grad():
            for m, (mean, var, count) in zip(layers, saved):
                m.running_mean.copy_(mean), m.running_var.copy_(var), m.num_batches_tracked.copy_(count)
