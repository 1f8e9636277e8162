"""The losses of DTN (Taigman, Polyak & Wolf, ICLR 2017, Sec. 3, Eq. 3-6): ternary GAN, f-constancy, target
identity, total variation.

D has three classes (:data:`~sim2real.adapt.dtn.models.FAKE_SOURCE` 0 = G(x_s), ``FAKE_TARGET`` 1 = G(x_t),
``REAL_TARGET`` 2 = a real x_t) and returns raw logits ``(B, 3)``; every loss here is a cross-entropy on logits
(never a softmax first) computed in float32 at least, so a bf16 autocast forward is safe.

* :func:`dtn_d_loss` -- ``L_D = -E_s log D_1(G(x)) - E_t log D_2(G(x)) - E_t log D_3(x)`` (Eq. 3): the sum of
  three batch-mean cross-entropies.
* :func:`dtn_g_gan_loss` -- ``L_GANG = -E_s log D_3(G(x)) - E_t log D_3(G(x))`` (Eq. 4): both kinds of G's output
  are pushed towards "real target".
* :func:`const_loss` -- ``L_CONST = MSE(f(x_s), f(G(x_s)))`` (Eq. 5, d = MSE); f(x_s) is a detached target.
* :func:`tid_loss` -- ``L_TID = MSE(x_t, G(x_t))`` (Eq. 6, d_2 = MSE).
* :func:`total_variation` -- ``L_TV(z) = mean_ij ((z_{i,j+1} - z_ij)^2 + (z_{i+1,j} - z_ij)^2)^(B/2)``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from sim2real.adapt.dtn.models import FAKE_SOURCE, FAKE_TARGET, REAL_TARGET


def _up(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype == torch.float64 else x.float()


def _ce_to(logits: torch.Tensor, cls: int) -> torch.Tensor:
    """Batch-mean cross-entropy of raw logits ``(B, 3)`` against class ``cls`` for every row."""
    if logits.ndim != 2 or logits.shape[1] != 3:
        raise ValueError(f"DTN: expected ternary D logits (B, 3), got {tuple(logits.shape)}")
    logits = _up(logits)
    return F.cross_entropy(logits, torch.full((logits.shape[0],), cls, dtype=torch.long, device=logits.device))


def dtn_d_loss(fake_source: torch.Tensor, fake_target: torch.Tensor, real_target: torch.Tensor) -> torch.Tensor:
    """D's ternary loss (Eq. 3): ``CE(D(G(x_s)), 0) + CE(D(G(x_t)), 1) + CE(D(x_t), 2)``.

    Args:
        fake_source: D's logits ``(B_s, 3)`` on G(x_s) (G detached).
        fake_target: D's logits ``(B_t, 3)`` on G(x_t).
        real_target: D's logits ``(B_t', 3)`` on real target images.

    Returns:
        0-d float32 (float64 for float64 inputs).
    """
    return _ce_to(fake_source, FAKE_SOURCE) + _ce_to(fake_target, FAKE_TARGET) + _ce_to(real_target, REAL_TARGET)


def dtn_g_gan_loss(fake_source: torch.Tensor, fake_target: torch.Tensor) -> torch.Tensor:
    """G's adversarial loss (Eq. 4): ``CE(D(G(x_s)), 2) + CE(D(G(x_t)), 2)`` on D's logits ``(B, 3)``."""
    return _ce_to(fake_source, REAL_TARGET) + _ce_to(fake_target, REAL_TARGET)


def d_accuracy(fake_source: torch.Tensor, fake_target: torch.Tensor, real_target: torch.Tensor) -> torch.Tensor:
    """Share of the three batches D puts in their own class (0-d float, no gradient)."""
    hits = [(lg.detach().argmax(1) == c) for lg, c in ((fake_source, FAKE_SOURCE), (fake_target, FAKE_TARGET),
                                                       (real_target, REAL_TARGET))]
    return torch.cat(hits).float().mean()


def const_loss(f_source: torch.Tensor, f_fake: torch.Tensor) -> torch.Tensor:
    """``L_CONST = mean((f(x_s) - f(G(x_s)))^2)`` over ``(B, F)`` features (Eq. 5); ``f_source`` is detached, so the
    gradient reaches G through ``f_fake`` only (with f's parameters frozen: into g, never into f)."""
    if f_source.shape != f_fake.shape:
        raise ValueError(f"const_loss: expected features of one shape, got {tuple(f_source.shape)} and "
                         f"{tuple(f_fake.shape)}")
    return F.mse_loss(_up(f_fake), _up(f_source.detach()))


def tid_loss(x_target: torch.Tensor, g_target: torch.Tensor) -> torch.Tensor:
    """``L_TID = mean((x_t - G(x_t))^2)`` over ``(B, C, H, W)`` images in [-1, 1] (Eq. 6)."""
    if x_target.shape != g_target.shape:
        raise ValueError(f"tid_loss: expected images of one shape, got {tuple(x_target.shape)} and "
                         f"{tuple(g_target.shape)}")
    return F.mse_loss(_up(g_target), _up(x_target))


def total_variation(z: torch.Tensor, exponent: float = 1.0, eps: float = 1e-8) -> torch.Tensor:
    """Total variation ``mean_{b,c,i,j} ((z_{i,j+1} - z_ij)^2 + (z_{i+1,j} - z_ij)^2 + eps)^(exponent / 2)``.

    DTN's L_TV (Sec. 3, B = ``exponent`` = 1 in the paper) over the ``(H - 1) x (W - 1)`` pixels that have both a
    right and a lower neighbour. The paper sums over pixels; this is the mean (so gamma does not scale with the
    image size). ``eps`` keeps the gradient of the square root finite on flat regions.

    Args:
        z: ``(B, C, H, W)`` images, H, W >= 2.

    Returns:
        0-d float32 (float64 for float64 inputs).
    """
    if z.ndim != 4 or min(z.shape[-2:]) < 2:
        raise ValueError(f"total_variation: expected (B, C, H, W) images with H, W >= 2, got {tuple(z.shape)}")
    z = _up(z)
    dx = z[..., :-1, 1:] - z[..., :-1, :-1]
    dy = z[..., 1:, :-1] - z[..., :-1, :-1]
    return (dx.pow(2) + dy.pow(2) + eps).pow(exponent / 2).mean()


class TotalVariation(nn.Module):
    """Module form of :func:`total_variation`."""

    def __init__(self, exponent: float = 1.0, eps: float = 1e-8) -> None:
        super().__init__()
        self.exponent, self.eps = float(exponent), float(eps)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return total_variation(z, self.exponent, self.eps)
