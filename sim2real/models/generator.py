"""PixelDA generator G(x, z): maps a rendered image to the target domain, resolution preserved.

Architecture (Bousmalis et al. 2017, Sec. 3.1 and Fig. 2; official ``resnet_generator``):

1. noise ``z`` in R^``noise_dim`` (~ U(-1, 1)) -> FC (H*W units, no bias) -> BatchNorm -> ReLU, reshaped to
   one ``(H, W)`` noise channel and concatenated to the image;
2. conv3x3-``filters`` + ReLU (no batch norm on the first layer);
3. ``blocks`` residual blocks ``[conv3x3, BN, ReLU, conv3x3, BN] + skip``;
4. conv1x1 to ``out_channels``, tanh -> output in [-1, 1].

Every convolution has stride 1 and "same" padding, so G's output has the input's height and width.
Weights are initialised N(0, ``init_std``) as in the official code (``normal_init_std=0.02``); biases 0.
Batch norm follows TF-slim's settings there: moving-average decay 0.9 (PyTorch momentum 0.1), eps 1e-3.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

#: TF-slim batch-norm epsilon used by the official PixelDA code.
BN_EPS = 1e-3
#: PyTorch momentum equivalent to TF's moving-average decay 0.9.
BN_MOMENTUM = 0.1


def init_normal_(module: nn.Module, std: float = 0.02) -> nn.Module:
    """Initialise conv/linear weights N(0, std) and their biases to 0 (BN layers keep gamma=1, beta=0)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


class ResidualBlock(nn.Module):
    """``x + BN(conv(ReLU(BN(conv(x)))))``, channels and resolution preserved (official ``resnet_block``)."""

    def __init__(self, channels: int, kernel_size: int = 3, padding_mode: str = "zeros") -> None:
        super().__init__()
        pad = kernel_size // 2
        self.body = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size, padding=pad, bias=False, padding_mode=padding_mode),
            nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, kernel_size, padding=pad, bias=False, padding_mode=padding_mode),
            nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class Generator(nn.Module):
    """G(x, z) -> adapted image, same shape as the input (apart from ``out_channels``).

    Args:
        in_channels: image channels of x (3 RGB, 4 RGB-D).
        image_size: (H, W); the noise FC layer produces exactly one H x W channel.
        out_channels: output channels (default ``in_channels``; the official code uses the target's).
        noise_dim: dimension of z (10 in the paper). 0 disables the noise channel.
        filters: width of the residual trunk (64).
        blocks: number of residual blocks (6).
        kernel_size: trunk kernel size (3).
        init_std: std of the N(0, std) weight initialisation (0.02); ``None`` keeps PyTorch's default.
        padding_mode: ``"zeros"`` (official, TF "SAME") or ``"reflect"``/``"replicate"``. With images in
            [-1, 1] and black (-1) render backgrounds, zero padding looks like a grey frame to every conv,
            and G can learn a bright, saturated border that D then spots (see docs/adapt.md).

    ``forward(x, z)``: x float ``(B, in_channels, H, W)`` in [-1, 1]; z ``(B, noise_dim)`` in [-1, 1] or
    ``None`` (then drawn from U(-1, 1) with the global torch RNG on x's device). Returns
    ``(B, out_channels, H, W)`` in [-1, 1].
    """

    def __init__(self, in_channels: int = 3, image_size: Sequence[int] = (64, 64), out_channels: int | None = None,
                 noise_dim: int = 10, filters: int = 64, blocks: int = 6, kernel_size: int = 3,
                 init_std: float | None = 0.02, padding_mode: str = "zeros") -> None:
        super().__init__()
        h, w = int(image_size[0]), int(image_size[1])
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels or in_channels)
        self.image_size = (h, w)
        self.noise_dim = int(noise_dim)
        if self.noise_dim > 0:
            # TF-slim FC with a normalizer has no bias; BN then ReLU (official project_latent_vars).
            self.noise_fc = nn.Sequential(
                nn.Linear(self.noise_dim, h * w, bias=False),
                nn.BatchNorm1d(h * w, eps=BN_EPS, momentum=BN_MOMENTUM),
                nn.ReLU(inplace=True),
            )
        else:
            self.noise_fc = None
        cin = self.in_channels + (1 if self.noise_dim > 0 else 0)
        self.conv_in = nn.Sequential(
            nn.Conv2d(cin, filters, kernel_size, padding=kernel_size // 2, padding_mode=padding_mode), nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(*[ResidualBlock(filters, kernel_size, padding_mode) for _ in range(blocks)])
        self.conv_out = nn.Conv2d(filters, self.out_channels, 1)
        if init_std is not None:
            init_normal_(self, init_std)

    def sample_noise(self, batch: int, device: torch.device | str | None = None,
                     generator: torch.Generator | None = None) -> torch.Tensor:
        """z ~ U(-1, 1), shape ``(batch, noise_dim)`` float32 (paper Sec. 3.1).

        Under ``torchrun`` (global RNG, no ``generator``) ``batch`` is this rank's share: z is drawn for the global
        batch and sliced (:func:`sim2real.engine.distributed.shard`), so it is the noise one process would draw."""
        if generator is None:
            from sim2real.engine.distributed import batch_rand

            return batch_rand(batch, self.noise_dim, device=device).mul_(2).sub_(1)
        return torch.rand(batch, self.noise_dim, device=device, generator=generator).mul_(2).sub_(1)

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels or tuple(x.shape[-2:]) != self.image_size:
            raise ValueError(f"Generator: expected x of shape (B, {self.in_channels}, {self.image_size[0]}, "
                             f"{self.image_size[1]}), got {tuple(x.shape)}")
        if self.noise_fc is not None:
            if z is None:
                z = self.sample_noise(x.shape[0], x.device)
            if z.shape != (x.shape[0], self.noise_dim):
                raise ValueError(f"Generator: expected z of shape ({x.shape[0]}, {self.noise_dim}), got {tuple(z.shape)}")
            noise = self.noise_fc(z).view(x.shape[0], 1, *self.image_size).to(x.dtype)
            if x.is_contiguous(memory_format=torch.channels_last):
                noise = noise.contiguous(memory_format=torch.channels_last)
            x = torch.cat([x, noise], dim=1)
        return torch.tanh(self.conv_out(self.blocks(self.conv_in(x))))
