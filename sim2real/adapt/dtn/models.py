"""The networks of DTN (Taigman, Polyak & Wolf, ICLR 2017), and the generator view the rest of the package loads.

* :class:`ContextEncoder` f: images ``(B, C, H, W)`` in [-1, 1] -> ``(B, feature_dim)`` in [-1, 1] (n stride-2
  conv4x4 + BN + ReLU, one conv over the remaining ``H / 2^n x W / 2^n`` map + BN + tanh), with a class head and a
  per-class quaternion head used only to pretrain it on labelled source images (:meth:`ContextEncoder.classify`).
* :class:`Decoder` g: ``(B, feature_dim)`` -> an image ``(B, C, H, W)`` in [-1, 1] (the mirror of f: a transposed
  conv to the ``H / 2^n x W / 2^n`` map, n stride-2 transposed conv4x4 layers, tanh).
* :class:`DTNGenerator` G = g o f, with PixelDA's generator interface (``noise_dim = 0``, ``forward(x, z=None)``):
  what ``sim2real export`` and the sample grids run. While ``frozen_f`` is set, ``G.train()`` keeps f in eval mode
  (its batch-norm statistics are part of the frozen f).
* :class:`TernaryDiscriminator` D: images -> 3 logits (:data:`FAKE_SOURCE`, :data:`FAKE_TARGET`, :data:`REAL_TARGET`).

Sizes are derived by running the modules once on a zero image (never by hand); an image size the layers cannot
take is a ``ValueError`` that says so. This module imports no training loop (``models.loading`` builds from it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

import torch
from torch import nn

from sim2real.models.quat_head import QuatHead, quat_outputs

if TYPE_CHECKING:
    from sim2real.adapt.dtn.config import DTNConfig

#: D's classes (paper Sec. 3: D1 = G(x) for x in s, D2 = G(x) for x in t, D3 = x in t)
FAKE_SOURCE, FAKE_TARGET, REAL_TARGET = 0, 1, 2


def init_weights(module: nn.Module, std: float) -> None:
    """Conv / transposed conv / linear weights ~ N(0, std), biases 0 (std 0: PyTorch's default init is kept)."""
    if std <= 0:
        return
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def _check_size(name: str, image_size: Sequence[int], n: int, key: str) -> tuple[int, int]:
    h, w = int(image_size[0]), int(image_size[1])
    if n < 1 or h % 2**n or w % 2**n:
        raise ValueError(f"DTN {name}: image_size {h}x{w} must be divisible by 2^{n} = {2**n} "
                         f"({n} stride-2 layers, {key})")
    return h, w


def _check_input(name: str, x: torch.Tensor, channels: int, size: tuple[int, int]) -> None:
    if x.ndim != 4 or x.shape[1] != channels or tuple(x.shape[-2:]) != size:
        raise ValueError(f"DTN {name}: expected input (B, {channels}, {size[0]}, {size[1]}), got {tuple(x.shape)}")


class ContextEncoder(nn.Module):
    """f: ``(B, C, H, W)`` -> ``(B, feature_dim)``, plus the heads it is pretrained with.

    Args:
        in_channels: C (3 RGB, 4 RGB-D).
        image_size: (H, W); each divisible by 2^len(widths).
        num_classes: classes of the pretraining head.
        widths: channels of the stride-2 conv4x4 layers (paper digits: 64, 128, 256).
        feature_dim: size of f(x) (paper: 128).
        pose_head: add the quaternion head (per class, as T's).
    """

    def __init__(self, in_channels: int, image_size: Sequence[int], num_classes: int,
                 widths: Sequence[int] = (64, 128, 256), feature_dim: int = 128, pose_head: bool = True) -> None:
        super().__init__()
        h, w = _check_size("encoder", image_size, len(widths), "model.encoder.widths")
        self.in_channels, self.image_size, self.feature_dim = int(in_channels), (h, w), int(feature_dim)
        layers: list[nn.Module] = []
        prev = self.in_channels
        for width in widths:
            layers += [nn.Conv2d(prev, int(width), 4, 2, 1, bias=False), nn.BatchNorm2d(int(width)),
                       nn.ReLU(inplace=True)]
            prev = int(width)
        n = len(widths)
        #: (H, W) of the last stride-2 map, which the final conv covers
        self.map_size = (h // 2**n, w // 2**n)
        layers += [nn.Conv2d(prev, self.feature_dim, self.map_size, bias=False), nn.BatchNorm2d(self.feature_dim),
                   nn.Tanh()]
        self.net = nn.Sequential(*layers)
        self.fc_logits = nn.Linear(self.feature_dim, int(num_classes))
        self.fc_quat = QuatHead(self.feature_dim, int(num_classes)) if pose_head else None
        self.has_pose_head = pose_head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """f(x) ``(B, feature_dim)`` in [-1, 1] for images ``x`` ``(B, C, H, W)`` in [-1, 1]."""
        _check_input("encoder", x, self.in_channels, self.image_size)
        return torch.flatten(self.net(x), 1)

    def classify(self, x: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """The pretraining heads: ``{"features": (B, F), "logits": (B, C), "quat": (B, 4) or None,
        "quat_all": (B, C, 4) or None}`` (quaternions (w, x, y, z), unit, not canonicalised)."""
        f = self.forward(x)
        logits = self.fc_logits(f)
        if self.fc_quat is None:
            return {"features": f, "logits": logits, "quat": None, "quat_all": None}
        return {"features": f, "logits": logits, **quat_outputs(self.fc_quat, f, logits)}


class Decoder(nn.Module):
    """g: ``(B, feature_dim)`` -> ``(B, out_channels, H, W)`` in [-1, 1].

    Args:
        feature_dim: size of f(x).
        out_channels: image channels.
        image_size: (H, W); each divisible by 2^len(widths).
        widths: hidden channels, coarsest first; one stride-2 transposed conv4x4 (+ BN + ReLU) follows each, the
            last to ``out_channels`` with tanh.
        init_std: N(0, std) weight init (0: PyTorch's default).
    """

    def __init__(self, feature_dim: int, out_channels: int, image_size: Sequence[int],
                 widths: Sequence[int] = (256, 128, 64), init_std: float = 0.02) -> None:
        super().__init__()
        h, w = _check_size("decoder", image_size, len(widths), "model.decoder.widths")
        n = len(widths)
        self.feature_dim, self.out_channels, self.image_size = int(feature_dim), int(out_channels), (h, w)
        widths = [int(v) for v in widths]
        layers: list[nn.Module] = [nn.ConvTranspose2d(self.feature_dim, widths[0], (h // 2**n, w // 2**n), bias=False),
                                   nn.BatchNorm2d(widths[0]), nn.ReLU(inplace=True)]
        for cin, cout in zip(widths[:-1], widths[1:]):
            layers += [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        layers += [nn.ConvTranspose2d(widths[-1], self.out_channels, 4, 2, 1), nn.Tanh()]
        self.net = nn.Sequential(*layers)
        init_weights(self, init_std)
        with torch.no_grad():
            got = tuple(self.net.eval()(torch.zeros(1, self.feature_dim, 1, 1)).shape[-2:])
        self.net.train()
        if got != (h, w):  # cannot happen for sizes divisible by 2^n; a guard, not a computation
            raise ValueError(f"DTN decoder: produces {got[0]}x{got[1]} images, expected {h}x{w}")

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        if f.ndim != 2 or f.shape[1] != self.feature_dim:
            raise ValueError(f"DTN decoder: expected features (B, {self.feature_dim}), got {tuple(f.shape)}")
        return self.net(f[:, :, None, None])


class DTNGenerator(nn.Module):
    """G = g o f with PixelDA's generator interface: ``forward(x, z=None)`` -> ``(B, C, H, W)`` in [-1, 1].

    ``noise_dim`` is 0 (DTN is noise-free; ``z`` must be None or empty). While ``frozen_f`` is True (after
    pretraining, and always for a loaded run), :meth:`train` leaves f in eval mode, so a sample grid (``G.eval()``
    then ``G.train()``) never turns f's batch-norm statistics back on.
    """

    noise_dim = 0

    def __init__(self, f: ContextEncoder, g: Decoder, frozen_f: bool = True) -> None:
        super().__init__()
        self.f, self.g, self.frozen_f = f, g, frozen_f
        self.in_channels, self.image_size = f.in_channels, f.image_size

    def train(self, mode: bool = True) -> DTNGenerator:
        super().train(mode)
        if self.frozen_f:
            self.f.eval()
        return self

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        if z is not None and z.numel():
            raise ValueError(f"DTNGenerator: noise-free (noise_dim 0), got z of shape {tuple(z.shape)}")
        return self.g(self.f(x))


class TernaryDiscriminator(nn.Module):
    """D: ``(B, C, H, W)`` -> raw logits ``(B, 3)`` over {G(x_s), G(x_t), real x_t}.

    Args:
        in_channels: C.
        image_size: (H, W); each divisible by 2^len(widths).
        widths: channels of the stride-2 conv4x4 layers (BN on all but the first).
        leak: LeakyReLU slope.
        init_std: N(0, std) weight init (0: PyTorch's default).
    """

    def __init__(self, in_channels: int, image_size: Sequence[int], widths: Sequence[int] = (64, 128, 256),
                 leak: float = 0.2, init_std: float = 0.02) -> None:
        super().__init__()
        h, w = _check_size("discriminator", image_size, len(widths), "model.discriminator.widths")
        self.in_channels, self.image_size = int(in_channels), (h, w)
        layers: list[nn.Module] = []
        prev = self.in_channels
        for i, width in enumerate(widths):
            layers.append(nn.Conv2d(prev, int(width), 4, 2, 1, bias=i == 0))
            if i > 0:
                layers.append(nn.BatchNorm2d(int(width)))
            layers.append(nn.LeakyReLU(leak, inplace=True))
            prev = int(width)
        self.features = nn.Sequential(*layers)
        with torch.no_grad():
            n_flat = int(self.features.eval()(torch.zeros(1, self.in_channels, h, w)).numel())
        self.features.train()
        self.fc = nn.Linear(n_flat, 3)
        init_weights(self, init_std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input("discriminator", x, self.in_channels, self.image_size)
        return self.fc(torch.flatten(self.features(x), 1))


def pose_enabled(cfg: DTNConfig) -> bool:
    """Whether T (and f's pretraining head) has a quaternion head under ``cfg``."""
    t = cfg.model.task
    return t.pose_head if t.pose_head is not None else t.tower == "pose_mini"


def build_dtn(cfg: DTNConfig, num_classes: int, in_channels: int, image_size: Sequence[int],
              discriminator: bool = True) -> dict[str, nn.Module]:
    """``{"f", "g"[, "D"]}`` for ``cfg`` (in that order: it fixes which random numbers initialise which weights).
    T is :func:`sim2real.models.factory.build_task` of the same config."""
    m = cfg.model
    f = ContextEncoder(in_channels, image_size, num_classes, m.encoder.widths, m.encoder.feature_dim,
                       pose_head=pose_enabled(cfg))
    widths = m.decoder.widths if m.decoder.widths is not None else list(reversed(m.encoder.widths))
    nets: dict[str, nn.Module] = {"f": f, "g": Decoder(m.encoder.feature_dim, in_channels, image_size, widths,
                                                       m.init_std)}
    if discriminator:
        nets["D"] = TernaryDiscriminator(in_channels, image_size, m.discriminator.widths, m.discriminator.leak,
                                         m.init_std)
    return nets
