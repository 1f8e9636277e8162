"""PixelDA losses: GAN (on logits), task cross-entropy, masked pairwise MSE, quaternion pose loss.

PixelDA objective (Bousmalis et al. 2017, Eq. 1):  min_{G,T} max_D  alpha*L_d + beta*L_t + gamma*L_c.

* :func:`gan_d_loss` / :func:`gan_g_loss` -- L_d (Eq. 2). Non-saturating GAN on logits by default
  (``BCEWithLogits``: D maximises log D(x_t) + log(1 - D(G(x_s, z))); G minimises -log D(G(x_s, z))),
  LSGAN as an option. D(x) > 0 means "real target image".
* :func:`task_ce` -- L_t (Eq. 3) cross-entropy on raw logits; the trainer applies it to BOTH T(x_s) and
  T(G(x_s, z)) (training T on the source too is what stops class permutations, paper Table 5).
* :func:`masked_pmse` -- L_c (Eq. 4), masked pairwise mean squared error between x_s and G(x_s, z).
* :func:`quat_log_loss` -- the LineMod pose term ``log(eps + 1 - |q . q_hat|)`` (paper Sec. 4.3; official
  ``log_quaternion_loss`` with eps = 1e-4). Sign-invariant: q and -q give the same loss. With ``sym_quats``
  it is symmetry-aware: the minimum over the object's symmetry group (every ``R_gt S_k`` is a correct answer).

Every function takes float tensors, computes in float32 or float64 (safe under bf16 autocast) and returns a
scalar tensor (``reduction="mean"``) or per-sample values (``reduction="none"``).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

GanKind = Literal["nsgan", "lsgan"]
Reduction = Literal["mean", "sum", "none"]


def _f(x: torch.Tensor) -> torch.Tensor:
    """At least float32 (bf16/fp16 inputs from autocast are upcast; float64 stays float64)."""
    return x if x.dtype == torch.float64 else x.float()


def _reduce(x: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return x.mean()
    if reduction == "sum":
        return x.sum()
    if reduction == "none":
        return x
    raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")


def _check_logits(name: str, t: torch.Tensor) -> torch.Tensor:
    if t.ndim == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.ndim != 1:
        raise ValueError(f"{name}: expected discriminator logits of shape (B,) or (B, 1), got {tuple(t.shape)}")
    return _f(t)


def gan_d_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, kind: GanKind = "nsgan") -> torch.Tensor:
    """Discriminator loss from D's logits on real target images and on adapted images.

    Args:
        real_logits: ``(B_t,)`` D(x_t).
        fake_logits: ``(B_s,)`` D(G(x_s, z)).
        kind: ``"nsgan"``: ``BCE(real, 1) + BCE(fake, 0)`` with logits (the official
            ``add_domain_classifier_losses``: the two batch means are summed). ``"lsgan"``:
            ``mean((real - 1)^2) + mean(fake^2)`` on the raw outputs (Mao et al. 2017, a = 0, b = c = 1).

    Returns:
        Scalar loss (the trainer multiplies it by the D-side weight alpha).
    """
    real = _check_logits("gan_d_loss", real_logits)
    fake = _check_logits("gan_d_loss", fake_logits)
    if kind == "nsgan":
        return (F.binary_cross_entropy_with_logits(real, torch.ones_like(real))
                + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake)))
    if kind == "lsgan":
        return (real - 1).square().mean() + fake.square().mean()
    raise ValueError(f"gan_d_loss: kind must be 'nsgan' or 'lsgan', got {kind!r}")


def gan_g_loss(fake_logits: torch.Tensor, kind: GanKind = "nsgan") -> torch.Tensor:
    """Generator adversarial loss: ``BCE(D(G(x_s, z)), 1)`` (non-saturating, -log D) or LSGAN ``mean((fake - 1)^2)``."""
    fake = _check_logits("gan_g_loss", fake_logits)
    if kind == "nsgan":
        return F.binary_cross_entropy_with_logits(fake, torch.ones_like(fake))
    if kind == "lsgan":
        return (fake - 1).square().mean()
    raise ValueError(f"gan_g_loss: kind must be 'nsgan' or 'lsgan', got {kind!r}")


def d_accuracy(real_logits: torch.Tensor, fake_logits: torch.Tensor, kind: GanKind = "nsgan") -> torch.Tensor:
    """Fraction of real and adapted images D classifies correctly (threshold: logit 0, or 0.5 for LSGAN)."""
    thr = 0.0 if kind == "nsgan" else 0.5
    real = _check_logits("d_accuracy", real_logits)
    fake = _check_logits("d_accuracy", fake_logits)
    correct = (real > thr).float().sum() + (fake <= thr).float().sum()
    return correct / (real.numel() + fake.numel())


def task_ce(logits: torch.Tensor, labels: torch.Tensor, reduction: Reduction = "mean") -> torch.Tensor:
    """Cross-entropy of raw class logits ``(B, C)`` against integer labels ``(B,)`` (never softmax first)."""
    if logits.ndim != 2 or labels.shape != logits.shape[:1]:
        raise ValueError(f"task_ce: expected logits (B, C) and labels (B,), got {tuple(logits.shape)} and {tuple(labels.shape)}")
    return F.cross_entropy(_f(logits), labels.long(), reduction=reduction)


def masked_pmse(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
                variant: Literal["paper", "official"] = "paper", reduction: Reduction = "mean") -> torch.Tensor:
    """Masked pairwise mean squared error, PixelDA's content-similarity loss L_c (paper Eq. 4).

    For one image with difference ``d = (pred - target) o m`` (m the foreground mask broadcast over
    channels) and ``k`` the number of values in the image (C * H * W):

        L_c = (1/k) * ||d||^2 - (1/k^2) * (sum d)^2
            = (1 / (2 k^2)) * sum_{i,j} ((d_i - d_j)^2)          (all ordered pairs of values i, j)

    so it penalises differences between *pairs* of pixels: a consistent shift of all foreground
    values is free, only the relative appearance must be kept. Background values (m = 0) enter with
    d = 0; ``k`` counts every value of the image, masked or not, as in the official code (which zeroes
    the background and calls ``mean_pairwise_squared_error`` with a scalar weight).

    Variants:
        * ``"paper"``: the formula above, averaged over the batch (``reduction="mean"``; E[.] in Eq. 4).
        * ``"official"``: TF's ``mean_pairwise_squared_error`` as the official code calls it: each
          per-image term is doubled (``2/k * ||d||^2 - 2/k^2 * (sum d)^2``) and the terms are summed over
          the batch. It equals ``2 * B * paper``; ``reduction`` then selects ``"sum"`` semantics.

    Args:
        pred: ``(B, C, H, W)`` G(x_s, z).
        target: ``(B, C, H, W)`` x_s.
        mask: foreground mask ``(B, H, W)`` or ``(B, 1, H, W)`` (bool or float in {0, 1}); ``None`` = no mask.
        variant: ``"paper"`` or ``"official"``.
        reduction: ``"mean"`` / ``"sum"`` over the batch or ``"none"`` (per image, ``(B,)``); ignored
            for ``variant="official"``, which is batch-summed by definition.

    Returns:
        Scalar loss (or ``(B,)`` for ``reduction="none"`` with the paper variant).
    """
    if pred.shape != target.shape or pred.ndim != 4:
        raise ValueError(f"masked_pmse: expected pred and target of one shape (B, C, H, W), got "
                         f"{tuple(pred.shape)} and {tuple(target.shape)}")
    d = _f(pred) - _f(target)
    if mask is not None:
        b, _, h, w = d.shape
        if mask.ndim == 3:
            mask = mask.unsqueeze(1)
        if mask.shape != (b, 1, h, w):
            raise ValueError(f"masked_pmse: expected mask (B, H, W) or (B, 1, H, W) = ({b}, {h}, {w}), got {tuple(mask.shape)}")
        d = d * mask.to(d.dtype)  # explicit (B, 1, H, W) -> (B, C, H, W) broadcast over channels
    k = d[0].numel()
    flat = d.flatten(1)
    per_image = flat.square().sum(1) / k - flat.sum(1).square() / (k * k)
    if variant == "paper":
        return _reduce(per_image, reduction)
    if variant == "official":
        return 2.0 * per_image.sum()
    raise ValueError(f"masked_pmse: variant must be 'paper' or 'official', got {variant!r}")


def quat_mul(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Hamilton product of (w, x, y, z) quaternions, broadcast over leading dims: ``R(a b) = R(a) R(b)``."""
    aw, ax, ay, az = a.unbind(-1)
    bw, bx, by, bz = b.unbind(-1)
    return torch.stack((aw * bw - ax * bx - ay * by - az * bz,
                        aw * bx + ax * bw + ay * bz - az * by,
                        aw * by - ax * bz + ay * bw + az * bx,
                        aw * bz + ax * by - ay * bx + az * bw), dim=-1)


def quat_log_loss(q_pred: torch.Tensor, q_true: torch.Tensor, eps: float = 1e-4,
                  reduction: Reduction = "mean", sym_quats: torch.Tensor | None = None) -> torch.Tensor:
    """PixelDA's pose loss ``log(eps + 1 - |q_true . q_pred|)`` for unit quaternions (paper Sec. 4.3).

    Conventions: quaternions are (w, x, y, z) and unit norm; q and -q are the same rotation, and the
    absolute value makes the loss sign-invariant. It is minimal (``log(eps)``) when q_pred = +-q_true
    and maximal (``log(1 + eps)``) for a 180 degree error (orthogonal quaternions). Its gradient is finite
    everywhere, a perfect estimate included (``d/d dot = -1 / (eps + 1 - dot)``, at most ``1 / eps``).

    Symmetry-aware form: ``sym_quats`` ``(B, S, 4)`` holds, per sample, the object's symmetry rotations
    ``S_k`` in the model frame (identity included; pad with identities). Every ``R_gt S_k`` images the
    object identically, so the loss is ``min_k log(eps + 1 - |q_pred . (q_true S_k)|)`` (as BOP's MSSD takes
    the minimum over the symmetry group). Without it the object is treated as asymmetric.

    Args:
        q_pred: ``(B, 4)`` predicted unit quaternions.
        q_true: ``(B, 4)`` ground-truth unit quaternions.
        eps: keeps the log finite at a perfect prediction (official code: 1e-4).
        reduction: ``"mean"`` (official: sum / batch_size), ``"sum"`` or ``"none"`` ``(B,)``.
        sym_quats: optional ``(B, S, 4)`` symmetry rotations per sample.
    """
    if q_pred.shape != q_true.shape or q_pred.ndim != 2 or q_pred.shape[1] != 4:
        raise ValueError(f"quat_log_loss: expected two (B, 4) quaternion batches (w, x, y, z), got "
                         f"{tuple(q_pred.shape)} and {tuple(q_true.shape)}")
    qp, qt = _f(q_pred), _f(q_true)
    if sym_quats is None:
        dot = (qp * qt).sum(1).abs()
    else:
        if sym_quats.ndim != 3 or sym_quats.shape[0] != q_pred.shape[0] or sym_quats.shape[2] != 4:
            raise ValueError(f"quat_log_loss: expected sym_quats (B, S, 4) with B = {q_pred.shape[0]}, "
                             f"got {tuple(sym_quats.shape)}")
        equiv = quat_mul(qt[:, None, :], sym_quats.to(qt.dtype))  # (B, S, 4): q_true * S_k
        dot = (equiv * qp[:, None, :]).sum(-1).abs().amax(1)     # the closest equivalent pose
    return _reduce(torch.log(eps + 1.0 - dot.clamp(max=1.0)), reduction)


class MaskedPMSE(nn.Module):
    """Module form of :func:`masked_pmse`."""

    def __init__(self, variant: Literal["paper", "official"] = "paper", reduction: Reduction = "mean") -> None:
        super().__init__()
        self.variant, self.reduction = variant, reduction

    def forward(self, pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return masked_pmse(pred, target, mask, self.variant, self.reduction)


class QuatLogLoss(nn.Module):
    """Module form of :func:`quat_log_loss`."""

    def __init__(self, eps: float = 1e-4, reduction: Reduction = "mean") -> None:
        super().__init__()
        self.eps, self.reduction = eps, reduction

    def forward(self, q_pred: torch.Tensor, q_true: torch.Tensor, sym_quats: torch.Tensor | None = None) -> torch.Tensor:
        return quat_log_loss(q_pred, q_true, self.eps, self.reduction, sym_quats)
