"""PixelDA discriminator D(x): one real-vs-adapted logit per image.

Architecture (official ``predict_domain``; Bousmalis et al. 2017, Sec. 3.1):

* conv3x3-``filters`` with stride ``first_stride`` (1 in the paper) + LeakyReLU(0.2), no batch norm
  (DCGAN's advice: no BN on D's input layer);
* then stride-2 conv3x3 + BN + LeakyReLU(0.2) with the filter count multiplied by ``filter_factor`` (2)
  each time, until the feature map is ``final_size`` x ``final_size`` (4x4) or smaller;
* flatten -> FC -> 1 logit (no BN, no activation: a logit, for ``BCEWithLogits``).

Regularisation, both on by default as in the official hparams: dropout with keep probability
``dropout_keep`` (0.9) after every layer but the input, and additive Gaussian noise of std ``noise_std``
(0.2) on every hidden layer (``image_noise`` also adds it to the input image). Both act only in training mode.

The number of stride-2 layers and the FC input size are derived by running the layers on a probe
tensor of ``image_size`` while building, never computed by hand. Real and adapted batches must be
passed through D in separate calls (as the official code does) so batch-norm statistics are not mixed.
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from sim2real.models.generator import BN_EPS, BN_MOMENTUM, init_normal_


class GaussianNoise(nn.Module):
    """Adds N(0, std^2) noise in training mode; identity in eval mode or when ``std == 0``."""

    def __init__(self, std: float) -> None:
        super().__init__()
        self.std = float(std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.std == 0:
            return x
        return x + torch.randn_like(x) * self.std

    def extra_repr(self) -> str:
        return f"std={self.std}"


class Discriminator(nn.Module):
    """Real-vs-adapted classifier returning raw logits ``(B,)``.

    Args:
        in_channels: 3 (RGB) or 4 (RGB-D).
        image_size: (H, W) of the inputs.
        filters: channels of the first conv (64).
        filter_factor: channel multiplier per stride-2 layer (2).
        first_stride: stride of the first conv (1).
        final_size: stop adding stride-2 layers once max(H, W) of the feature map <= this (4).
        kernel_size: conv kernel size (3).
        dropout_keep: keep probability of the dropout after each hidden layer (0.9; 1 disables).
        noise_std: std of the Gaussian noise added to hidden layers (0.2; 0 disables).
        image_noise: also add the noise to the input image.
        leak: LeakyReLU slope (0.2).
        init_std: N(0, std) weight initialisation (0.02); ``None`` keeps PyTorch's default.
    """

    def __init__(self, in_channels: int = 3, image_size: Sequence[int] = (64, 64), filters: int = 64,
                 filter_factor: float = 2.0, first_stride: int = 1, final_size: int = 4, kernel_size: int = 3,
                 dropout_keep: float = 0.9, noise_std: float = 0.2, image_noise: bool = False, leak: float = 0.2,
                 init_std: float | None = 0.02) -> None:
        super().__init__()
        if not 0 < dropout_keep <= 1:
            raise ValueError(f"Discriminator: dropout_keep must be in (0, 1], got {dropout_keep}")
        h, w = int(image_size[0]), int(image_size[1])
        self.in_channels = int(in_channels)
        self.image_size = (h, w)
        pad = kernel_size // 2
        p_drop = 1.0 - float(dropout_keep)

        def regulariser() -> list[nn.Module]:
            out: list[nn.Module] = []
            if p_drop > 0:
                out.append(nn.Dropout(p_drop))
            if noise_std > 0:
                out.append(GaussianNoise(noise_std))
            return out

        layers: list[nn.Module] = []
        if image_noise and noise_std > 0:
            layers.append(GaussianNoise(noise_std))
        layers += [nn.Conv2d(in_channels, filters, kernel_size, stride=first_stride, padding=pad),
                   nn.LeakyReLU(leak, inplace=True)]
        layers += regulariser()
        probe = torch.zeros(1, in_channels, h, w)
        with torch.no_grad():
            probe = nn.Sequential(*layers).eval()(probe)
        block = 2
        cin = filters
        while max(probe.shape[-2:]) > final_size:
            cout = int(filters * filter_factor ** (block - 1))
            new = [nn.Conv2d(cin, cout, kernel_size, stride=2, padding=pad, bias=False),
                   nn.BatchNorm2d(cout, eps=BN_EPS, momentum=BN_MOMENTUM),
                   nn.LeakyReLU(leak, inplace=True)] + regulariser()
            with torch.no_grad():
                nxt = nn.Sequential(*new).eval()(probe)
            if tuple(nxt.shape[-2:]) == tuple(probe.shape[-2:]):  # cannot shrink further (1x1)
                break
            layers += new
            probe, cin, block = nxt, cout, block + 1
        self.features = nn.Sequential(*layers)
        self.feature_shape = tuple(int(s) for s in probe.shape[1:])
        self.fc = nn.Linear(int(probe[0].numel()), 1)
        if init_std is not None:
            init_normal_(self, init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B,)`` for images ``x`` ``(B, in_channels, H, W)`` in [-1, 1] (> 0 means "real target")."""
        if x.ndim != 4 or x.shape[1] != self.in_channels or tuple(x.shape[-2:]) != self.image_size:
            raise ValueError(f"Discriminator: expected (B, {self.in_channels}, {self.image_size[0]}, "
                             f"{self.image_size[1]}), got {tuple(x.shape)}")
        return self.fc(torch.flatten(self.features(x), 1)).squeeze(1)
