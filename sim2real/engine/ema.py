"""An exponential moving average (EMA) of a network's weights, kept beside the trained one.

``ema <- d * ema + (1 - d) * weights`` after every optimiser step, with the warm-up of TensorFlow's
``ExponentialMovingAverage(num_updates=step)`` (the PixelDA code's framework): ``d = min(decay, (1 + n) / (10 + n))``
at the n-th update, so the first steps are not an average dominated by the random initialisation. Buffers
(batch-norm running statistics) are copied, not averaged: they are already running averages.

Used for PixelDA's task network T (``train.ema_decay``): T trains against a moving G and D, and its weights
between validations move by more than the averaging window's noise; the averaged copy is what validation scores,
``best.pt`` keeps and ``evaluate`` loads (``T_ema`` in the checkpoint; ``T`` stays the trained weights, so resume
is exact). ``torch.optim.swa_utils.AveragedModel`` does the same averaging but wraps the module (``module.``
prefixed keys, an extra counter buffer), which would make the averaged T's state dict differ from T's.
"""

from __future__ import annotations

import copy

import torch


def ema_copy(model: torch.nn.Module) -> torch.nn.Module:
    """A frozen copy of ``model`` to hold its average (same class, same state-dict keys), in eval mode."""
    ema = copy.deepcopy(model)
    for p in ema.parameters():
        p.requires_grad_(False)
    return ema.eval()


def ema_decay_at(decay: float, updates: int) -> float:
    """The decay used at the ``updates``-th update (1-based): ``min(decay, (1 + n) / (10 + n))``."""
    return min(float(decay), (1.0 + updates) / (10.0 + updates))


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float, updates: int) -> None:
    """One EMA update of ``ema`` towards ``model`` (``updates``: 1-based count of this update)."""
    d = ema_decay_at(decay, updates)
    e_params = [p for p in ema.parameters()]
    m_params = [p.detach() for p in model.parameters()]
    if e_params:
        torch._foreach_lerp_(e_params, m_params, 1.0 - d)
    for eb, mb in zip(ema.buffers(), model.buffers()):
        eb.copy_(mb)
