"""The alignment losses of the feature-level baselines: gradient reversal (DANN), CORAL, multi-kernel MMD.

Each takes features ``(B, F)`` of a source batch and of a target batch (the penultimate features of the task
network, :meth:`sim2real.models.task.TaskNet.features`) and computes in float32 at least (the inputs are cast
up, so a bf16 autocast forward does not square bf16 values). A functional form and, where a module is useful,
an ``nn.Module`` wrapper.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import nn


def _check_features(fs: torch.Tensor, ft: torch.Tensor, name: str, min_rows: int = 1) -> None:
    if fs.ndim != 2 or ft.ndim != 2 or fs.shape[1] != ft.shape[1]:
        raise ValueError(f"{name}: expected source and target features (B_s, F), (B_t, F), "
                         f"got {tuple(fs.shape)} and {tuple(ft.shape)}")
    if fs.shape[0] < min_rows or ft.shape[0] < min_rows:
        raise ValueError(f"{name}: expected at least {min_rows} samples per domain, "
                         f"got {fs.shape[0]} and {ft.shape[0]}")


def _up(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype == torch.float64 else x.float()


# --------------------------------------------------------------------------------------------
# Gradient reversal (Ganin & Lempitsky 2015, Sec. 3.2)
# --------------------------------------------------------------------------------------------


class _GradReverse(torch.autograd.Function):
    """Identity forward; backward multiplies the incoming gradient by ``-lambd``."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, lambd: float) -> torch.Tensor:
        ctx.lambd = float(lambd)
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        return -ctx.lambd * grad, None


def grad_reverse(x: torch.Tensor, lambd: float = 1.0) -> torch.Tensor:
    """The gradient-reversal layer R_lambda: ``R(x) = x``, ``dR/dx = -lambda I`` (Ganin & Lempitsky 2015, Eq. 12-13).

    Put between the features and DANN's domain classifier, one optimiser minimising the domain loss trains the
    classifier to tell the domains apart and the feature extractor to make them indistinguishable.
    """
    return _GradReverse.apply(x, lambd)


class GradientReversal(nn.Module):
    """Module form of :func:`grad_reverse`; ``lambd`` may be changed between steps (``module.lambd = ...``)."""

    def __init__(self, lambd: float = 1.0) -> None:
        super().__init__()
        self.lambd = float(lambd)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return grad_reverse(x, self.lambd)


def grl_lambda(step: int, steps: int, gamma: float = 10.0) -> float:
    """DANN's reversal coefficient ``2 / (1 + exp(-gamma p)) - 1`` with training progress ``p = step / steps``
    (Ganin et al. JMLR 2016, Sec. 5.2.2, gamma = 10): 0 at step 0, rising to ~1; a pure function of the step."""
    p = min(max(step / max(steps, 1), 0.0), 1.0)
    return 2.0 / (1.0 + math.exp(-gamma * p)) - 1.0


class DomainClassifier(nn.Module):
    """DANN's domain classifier: features ``(B, F)`` -> one raw logit ``(B,)`` (target vs source).

    Args:
        in_features: F.
        hidden: hidden layer widths (Linear + ReLU each).
    """

    def __init__(self, in_features: int, hidden: Sequence[int] = (64, 64)) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = int(in_features)
        for w in hidden:
            layers += [nn.Linear(prev, int(w)), nn.ReLU(inplace=True)]
            prev = int(w)
        layers.append(nn.Linear(prev, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        return self.net(f).squeeze(1)


def dann_domain_loss(logit_s: torch.Tensor, logit_t: torch.Tensor) -> torch.Tensor:
    """Domain-classification loss: ``(BCE(logit_s, 0) + BCE(logit_t, 1)) / 2`` on raw logits ``(B_s,)``, ``(B_t,)``
    (BCE with logits: numerically stable; each domain weighs half whatever the batch sizes)."""
    bce = nn.functional.binary_cross_entropy_with_logits
    ls, lt = _up(logit_s), _up(logit_t)
    return 0.5 * (bce(ls, torch.zeros_like(ls)) + bce(lt, torch.ones_like(lt)))


# --------------------------------------------------------------------------------------------
# Deep CORAL (Sun & Saenko 2016, Eq. 1-3)
# --------------------------------------------------------------------------------------------


def covariance(f: torch.Tensor) -> torch.Tensor:
    """Unbiased covariance ``(F, F)`` of ``(B, F)`` samples: ``(X - mean)^T (X - mean) / (B - 1)`` (= ``np.cov(X.T)``)."""
    f = _up(f)
    c = f - f.mean(0, keepdim=True)
    return c.T @ c / (f.shape[0] - 1)


def coral_loss(fs: torch.Tensor, ft: torch.Tensor) -> torch.Tensor:
    """CORAL loss ``||C_s - C_t||_F^2 / (4 d^2)`` (Sun & Saenko 2016, Eq. 1), unbiased covariances (Eq. 2-3).

    Args:
        fs: ``(B_s, d)`` source features, ``B_s >= 2``.
        ft: ``(B_t, d)`` target features, ``B_t >= 2``.

    Returns:
        0-d float32 (float64 for float64 inputs).
    """
    _check_features(fs, ft, "coral_loss", min_rows=2)
    d = fs.shape[1]
    return (covariance(fs) - covariance(ft)).pow(2).sum() / (4 * d * d)


class CORALLoss(nn.Module):
    """Module form of :func:`coral_loss`."""

    def forward(self, fs: torch.Tensor, ft: torch.Tensor) -> torch.Tensor:
        return coral_loss(fs, ft)


# --------------------------------------------------------------------------------------------
# Multi-kernel MMD (Gretton et al. 2012; DAN, Long et al. 2015)
# --------------------------------------------------------------------------------------------


def median_sq_distance(z: torch.Tensor) -> torch.Tensor:
    """Median of ``||z_i - z_j||^2`` over the unordered pairs ``i < j`` of ``(N, F)`` samples (0-d, detached;
    linear interpolation between the two middle values for an even count, as ``np.median``)."""
    z = _up(z.detach())
    d2 = torch.cdist(z, z).pow(2)
    i, j = torch.triu_indices(z.shape[0], z.shape[0], offset=1, device=z.device)
    return torch.quantile(d2[i, j], 0.5)


def mmd2_multi_kernel(fs: torch.Tensor, ft: torch.Tensor, multipliers: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 4.0),
                      bandwidth: float | None = None) -> torch.Tensor:
    """Biased MMD^2 with the average of Gaussian kernels ``k(x, y) = (1/M) sum_m exp(-||x - y||^2 / (m h))``.

    ``MMD^2 = mean_ij k(s_i, s_j) + mean_ij k(t_i, t_j) - 2 mean_ij k(s_i, t_j)`` (Gretton et al. 2012, Eq. 5,
    the V-statistic: diagonal terms included, >= 0). The kernel family is DAN's (Long et al. 2015) with equal
    weights; ``h`` is ``bandwidth`` or, when None, the median pairwise squared distance of the joint batch
    (:func:`median_sq_distance`; no gradient flows through it).

    Args:
        fs: ``(B_s, F)`` source features.
        ft: ``(B_t, F)`` target features.
        multipliers: the m of each kernel (> 0).
        bandwidth: fixed h > 0, or None for the median heuristic.

    Returns:
        0-d float32 (float64 for float64 inputs).
    """
    _check_features(fs, ft, "mmd2_multi_kernel")
    if not multipliers or min(multipliers) <= 0:
        raise ValueError(f"mmd2_multi_kernel: expected positive multipliers, got {list(multipliers)}")
    fs, ft = _up(fs), _up(ft)
    z = torch.cat([fs, ft])
    sq = z.pow(2).sum(1)
    d2 = (sq[:, None] + sq[None, :] - 2 * z @ z.T).clamp_min(0)  # ||z_i - z_j||^2, differentiable at i == j
    if bandwidth is None:
        h = median_sq_distance(z).clamp_min(1e-12)
    else:
        if bandwidth <= 0:
            raise ValueError(f"mmd2_multi_kernel: expected bandwidth > 0, got {bandwidth}")
        h = torch.as_tensor(float(bandwidth), dtype=z.dtype, device=z.device)
    k = sum(torch.exp(-d2 / (float(m) * h)) for m in multipliers) / len(multipliers)
    n = fs.shape[0]
    return k[:n, :n].mean() + k[n:, n:].mean() - 2 * k[:n, n:].mean()


class MMDLoss(nn.Module):
    """Module form of :func:`mmd2_multi_kernel`."""

    def __init__(self, multipliers: Sequence[float] = (0.25, 0.5, 1.0, 2.0, 4.0), bandwidth: float | None = None) -> None:
        super().__init__()
        self.multipliers, self.bandwidth = tuple(float(m) for m in multipliers), bandwidth

    def forward(self, fs: torch.Tensor, ft: torch.Tensor) -> torch.Tensor:
        return mmd2_multi_kernel(fs, ft, self.multipliers, self.bandwidth)
