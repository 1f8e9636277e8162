"""The losses of I2I Adapt (Murez et al., CVPR 2018) beyond the task loss: LSGAN, WGAN-GP, L1.

* :func:`lsgan_d_loss` / :func:`lsgan_g_loss`: least-squares GAN (Mao et al. 2017, a = 0, b = c = 1) on the latent
  discriminator's raw scores; the paper's latent-space adversary.
* :func:`wgan_critic_loss` / :func:`wgan_generator_loss` / :func:`gradient_penalty`: WGAN-GP (Gulrajani et al.
  2017, Alg. 1) for the image-space translation critics; the paper's image discriminators.
* :func:`l1` : mean absolute error, the reconstruction (identity) and cycle terms.

Scores are ``(B,)`` (or ``(B, 1)``) raw critic / discriminator outputs. Every function computes in float32 at
least (bf16 inputs from autocast are cast up) and returns a 0-d tensor.
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


def _f(x: torch.Tensor) -> torch.Tensor:
    return x if x.dtype == torch.float64 else x.float()


def _scores(name: str, s: torch.Tensor) -> torch.Tensor:
    if s.ndim == 2 and s.shape[1] == 1:
        s = s[:, 0]
    if s.ndim != 1:
        raise ValueError(f"{name}: expected scores of shape (B,) or (B, 1), got {tuple(s.shape)}")
    return _f(s)


# --------------------------------------------------------------------------------------------
# LSGAN (the latent discriminator)
# --------------------------------------------------------------------------------------------


def lsgan_d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """The discriminator's least-squares loss ``mean((real - 1)^2) + mean(fake^2)``.

    Args:
        real: ``(B_r,)`` scores of the samples labelled 1 (I2I: source latents D_z(f(x_s))).
        fake: ``(B_f,)`` scores of the samples labelled 0 (I2I: target latents D_z(f(x_t))).
    """
    return (_scores("lsgan_d_loss", real) - 1).square().mean() + _scores("lsgan_d_loss", fake).square().mean()


def lsgan_g_loss(fake: torch.Tensor) -> torch.Tensor:
    """The generator's (here: the encoder's, on target latents) least-squares loss ``mean((fake - 1)^2)``."""
    return (_scores("lsgan_g_loss", fake) - 1).square().mean()


# --------------------------------------------------------------------------------------------
# WGAN-GP (the image critics)
# --------------------------------------------------------------------------------------------


def wgan_critic_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """The critic's Wasserstein loss ``mean(D(fake)) - mean(D(real))`` (minimised; the penalty is added separately)."""
    return _scores("wgan_critic_loss", fake).mean() - _scores("wgan_critic_loss", real).mean()


def wgan_generator_loss(fake: torch.Tensor) -> torch.Tensor:
    """The generator's Wasserstein loss ``-mean(D(fake))``."""
    return -_scores("wgan_generator_loss", fake).mean()


def gradient_penalty(critic: Callable[[torch.Tensor], torch.Tensor], real: torch.Tensor, fake: torch.Tensor,
                     alpha: torch.Tensor | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """WGAN-GP's penalty ``mean_i (||grad_x D(x_hat_i)||_2 - 1)^2``, ``x_hat = alpha x_real + (1 - alpha) x_fake``
    (Gulrajani et al. 2017, Eq. 3).

    The gradient is taken with ``create_graph=True``: back-propagating the returned value (as the engine does with a
    step's total) reaches the critic's parameters through the gradient itself (double back-propagation).

    Args:
        critic: images ``(B, C, H, W)`` -> scores ``(B,)``.
        real: ``(B, C, H, W)`` real images; fake: ``(B, C, H, W)`` generated ones (both detached here).
        alpha: ``(B,)`` interpolation weights in [0, 1]; None draws them ~ U(0, 1) from ``generator`` (None: the
            global RNG, which checkpoints save: resume stays exact).

    Returns:
        The 0-d penalty (not yet multiplied by its weight).
    """
    if real.shape != fake.shape or real.ndim < 2:
        raise ValueError(f"gradient_penalty: expected real and fake batches of one shape (B, ...), got "
                         f"{tuple(real.shape)} and {tuple(fake.shape)}")
    b = real.shape[0]
    if alpha is None:
        if generator is not None:
            alpha = torch.rand(b, generator=generator, device="cpu")
        else:  # the global RNG; under torchrun, this rank's share of the global batch's draw
            from sim2real.engine.distributed import batch_rand

            alpha = batch_rand(b, device=real.device)
    if alpha.shape != (b,):
        raise ValueError(f"gradient_penalty: expected alpha of shape ({b},), got {tuple(alpha.shape)}")
    real, fake = _f(real.detach()), _f(fake.detach())
    a = alpha.to(device=real.device, dtype=real.dtype).view(b, *([1] * (real.ndim - 1)))
    x_hat = (a * real + (1 - a) * fake).requires_grad_(True)
    scores = _scores("gradient_penalty", critic(x_hat))
    (grad,) = torch.autograd.grad(scores.sum(), x_hat, create_graph=True)
    # each score depends on its own sample only (no batch norm in a WGAN-GP critic): the row of the summed score's
    # gradient is that sample's gradient. The 1e-12 keeps the norm's derivative finite at a zero gradient.
    norm = (grad.flatten(1).square().sum(1) + 1e-12).sqrt()
    return (norm - 1).square().mean()


# --------------------------------------------------------------------------------------------
# L1 (reconstruction and cycle)
# --------------------------------------------------------------------------------------------


def l1(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error over every value of ``(B, C, H, W)`` images (the paper's L1 identity and cycle terms)."""
    if pred.shape != target.shape:
        raise ValueError(f"l1: expected two tensors of one shape, got {tuple(pred.shape)} and {tuple(target.shape)}")
    return (_f(pred) - _f(target)).abs().mean()


class GradientPenalty(nn.Module):
    """Module form of :func:`gradient_penalty` for one critic."""

    def __init__(self, critic: nn.Module) -> None:
        super().__init__()
        self.critic = critic

    def forward(self, real: torch.Tensor, fake: torch.Tensor, alpha: torch.Tensor | None = None) -> torch.Tensor:
        return gradient_penalty(self.critic, real, fake, alpha)
