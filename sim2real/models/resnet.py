"""A ResNet-18-style class + quaternion network for small object crops, trained from scratch.

The layout is He et al.'s ResNet-18 (four stages of two basic blocks, channels ``w, 2w, 4w, 8w``) with the
CIFAR-style *small-image stem*: one 3x3 stride-1 convolution and no max-pool, so a 32x32 or 64x64 crop is not
reduced to 8x8 before the first residual block. No pretrained weights exist here (nothing can be downloaded),
so ``width`` can be lowered for small data and tests.

Forward contract (shared with :class:`sim2real.models.task.TaskNet`)::

    out = net(x, domain="target")      # x: (B, C_in, H, W) float in [-1, 1]; domain is accepted and ignored
    out["logits"]: (B, num_classes)    # class scores (pre-softmax)
    out["quat"]:   (B, 4)              # unit quaternion (w, x, y, z) of R_m2c; sign is free (q == -q)

    out["quat_all"]: (B, K, 4)         # one quaternion per class (K = C) or K = 1 (shared head)

The quaternion head is :class:`sim2real.models.quat_head.QuatHead` (per-class, no tanh, by default).
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from sim2real.models.quat_head import QuatHead, quat_outputs


class BasicBlock(nn.Module):
    """Two 3x3 convolutions with batch norm and an identity (or 1x1 projection) shortcut."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_ch)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_ch)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + self.shortcut(x))


class ResNetPose(nn.Module):
    """ResNet-18-style classifier + quaternion regressor.

    Args:
        num_classes: C, the number of object classes.
        in_channels: 3 (RGB) or 4 (RGB-D).
        image_size: (H, W) of the input crops; recorded for checks (global pooling makes the net size-agnostic).
        width: channels of the first stage (64 in ResNet-18); stages use ``width * (1, 2, 4, 8)``.
        blocks: basic blocks per stage ((2, 2, 2, 2) is ResNet-18).
        dropout: dropout before the heads.
        quat_head, quat_activation: see :class:`sim2real.models.quat_head.QuatHead`.
    """

    def __init__(self, num_classes: int, in_channels: int = 3, image_size: Sequence[int] = (64, 64), width: int = 64,
                 blocks: Sequence[int] = (2, 2, 2, 2), dropout: float = 0.0, quat_head: str = "per_class",
                 quat_activation: str = "none") -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"ResNetPose: num_classes must be >= 1, got {num_classes}")
        if in_channels not in (1, 3, 4):
            raise ValueError(f"ResNetPose: in_channels must be 1, 3 or 4, got {in_channels}")
        if width < 1 or not blocks or any(b < 1 for b in blocks):
            raise ValueError(f"ResNetPose: width must be >= 1 and blocks positive, got width={width}, blocks={tuple(blocks)}")
        self.num_classes = int(num_classes)
        self.in_channels = int(in_channels)
        self.image_size = (int(image_size[0]), int(image_size[1]))
        # small-image stem: 3x3 stride 1, no max-pool (CIFAR ResNet), keeps detail of 32-64 px crops
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, stride=1, padding=1, bias=False),
                                  nn.BatchNorm2d(width), nn.ReLU(inplace=True))
        stages = []
        ch = width
        for i, n in enumerate(blocks):
            out_ch = width * 2**i
            stride = 1 if i == 0 else 2
            layers = [BasicBlock(ch, out_ch, stride)] + [BasicBlock(out_ch, out_ch, 1) for _ in range(n - 1)]
            stages.append(nn.Sequential(*layers))
            ch = out_ch
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(dropout)
        self.fc_logits = nn.Linear(ch, num_classes)
        self.fc_quat = QuatHead(ch, num_classes, quat_head, quat_activation)
        self._init_weights()

    def _init_weights(self) -> None:
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # zero-init the last BN of each residual branch: each block starts as the identity (Goyal et al. 2017)
        for m in self.modules():
            if isinstance(m, BasicBlock):
                nn.init.zeros_(m.bn2.weight)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, C_in, H, W)`` -> ``(B, 8 * width)`` pooled features."""
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"ResNetPose: expected input (B, {self.in_channels}, H, W), got {tuple(x.shape)}")
        return self.pool(self.stages(self.stem(x))).flatten(1)

    def forward(self, x: torch.Tensor, domain: str = "target") -> dict[str, torch.Tensor]:
        """Class logits ``(B, C)``, unit quaternions ``quat (B, 4)`` (predicted class) and ``quat_all (B, K, 4)``.

        ``domain`` is ignored (no private layers).
        """
        h = self.dropout(self.features(x))
        logits = self.fc_logits(h)
        return {"logits": logits, **quat_outputs(self.fc_quat, h, logits)}
