"""Photometric augmentations for pose training (and DTN's pretraining of f), run on the training device with kornia.

Only photometric changes (recolouring, colour jitter, blur, noise, grey) are offered: a geometric change (rotation, flip,
shift, scale) of an object-centred crop would change the object's pose, and the quaternion label with it.
Augmentations act on the RGB channels only; a depth channel (RGB-D input) passes through untouched.

Inputs and outputs are network images ``(B, C, H, W)`` float in [-1, 1] (see :mod:`sim2real.data.tensors`);
kornia's colour ops expect [0, 1], so the RGB part is rescaled around the call. Randomness comes from torch's
global generator on the input's device (seeded by the trainer, saved in checkpoints).
"""

from __future__ import annotations

import dataclasses

import torch
from torch import nn

from sim2real.errors import Sim2RealError


@dataclasses.dataclass
class AugmentConfig:
    """Photometric augmentation settings (applied to training batches only)."""

    #: Turn augmentation on.
    enabled: bool = False
    #: Probability of recolouring an image (:func:`recolour`): each RGB channel mapped affinely from [0, 1] onto
    #: [lo, hi] with lo, hi ~ U(0, 1) drawn per image and channel (hi < lo inverts the channel), so a grey source
    #: (digits, untextured renders) is seen in random foreground and background colours. Runs first.
    recolour_p: float = 0.0
    #: Probability of colour jitter per image.
    jitter_p: float = 0.8
    #: Colour-jitter strengths (kornia ColorJiggle): factors drawn from [1 - s, 1 + s]; hue in [-h, h] (of a turn / 2pi).
    brightness: float = 0.2
    contrast: float = 0.2
    saturation: float = 0.2
    hue: float = 0.03
    #: Probability of converting an image to grey.
    grayscale_p: float = 0.0
    #: Probability of a Gaussian blur, and its sigma range in pixels.
    blur_p: float = 0.2
    blur_sigma: tuple[float, float] = (0.1, 1.0)
    #: Probability and standard deviation (in [0, 1] image units) of additive Gaussian noise.
    noise_p: float = 0.5
    noise_std: float = 0.02

    def validate(self) -> None:
        for name in ("recolour_p", "jitter_p", "grayscale_p", "blur_p", "noise_p"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise Sim2RealError(f"augment.{name}: expected a probability in [0, 1], got {v}")
        for name in ("brightness", "contrast", "saturation", "noise_std"):
            if getattr(self, name) < 0:
                raise Sim2RealError(f"augment.{name}: expected >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.hue <= 0.5:
            raise Sim2RealError(f"augment.hue: expected a value in [0, 0.5], got {self.hue}")
        lo, hi = self.blur_sigma
        if not 0 < lo <= hi:
            raise Sim2RealError(f"augment.blur_sigma: expected [low, high] with 0 < low <= high, got {list(self.blur_sigma)}")


#: T's inputs a :class:`TaskAugmentConfig` may augment in an adaptation run.
TASK_DOMAINS = ("source", "adapted")


@dataclasses.dataclass
class TaskAugmentConfig(AugmentConfig):
    """Photometric augmentation of what an adaptation method's task network T learns from (PixelDA's and DTN's
    ``task_augment`` section): the keys of :class:`AugmentConfig`, plus which of T's inputs it applies to. G, D and
    f see the images as they are; only T's training batches change."""

    #: T's inputs to augment: ``"source"`` (the labelled source images T learns from) and / or ``"adapted"``
    #: (G(x_s), detached).
    domains: list[str] = dataclasses.field(default_factory=lambda: ["source"])

    def validate(self) -> None:
        super().validate()
        bad = [d for d in self.domains if d not in TASK_DOMAINS]
        if bad or not self.domains:
            raise Sim2RealError(f"task_augment.domains: expected a non-empty list of {list(TASK_DOMAINS)}, "
                                f"got {self.domains}")

    def applies(self, domain: str) -> bool:
        """Whether T's ``domain`` input is augmented (``enabled`` and listed)."""
        return self.enabled and domain in self.domains


def recolour(rgb: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """Map each channel of ``rgb`` affinely from [0, 1] onto [lo, hi]: ``lo + (hi - lo) * rgb``.

    Args:
        rgb: ``(B, 3, H, W)`` images in [0, 1].
        lo, hi: ``(B, 3)`` the values 0 and 1 are sent to, per image and channel (``hi < lo`` inverts).

    Returns:
        ``(B, 3, H, W)`` in [min(lo, hi), max(lo, hi)], a subset of [0, 1] when lo and hi are.
    """
    if rgb.ndim != 4 or lo.shape != rgb.shape[:2] or hi.shape != rgb.shape[:2]:
        raise ValueError(f"recolour: expected rgb (B, C, H, W) and lo, hi (B, C), got {tuple(rgb.shape)}, "
                         f"{tuple(lo.shape)}, {tuple(hi.shape)}")
    return lo[:, :, None, None] + (hi - lo)[:, :, None, None] * rgb


class PhotometricAugment(nn.Module):
    """Random recolouring, colour jitter, grey, blur and noise on the RGB channels of ``(B, C>=3, H, W)`` images
    in [-1, 1]."""

    def __init__(self, cfg: AugmentConfig) -> None:
        super().__init__()
        import kornia.augmentation as K

        self.cfg = cfg
        ops: list[nn.Module] = []
        if cfg.jitter_p > 0 and (cfg.brightness or cfg.contrast or cfg.saturation or cfg.hue):
            ops.append(K.ColorJiggle(brightness=cfg.brightness, contrast=cfg.contrast, saturation=cfg.saturation,
                                     hue=cfg.hue, p=cfg.jitter_p))
        if cfg.grayscale_p > 0:
            ops.append(K.RandomGrayscale(p=cfg.grayscale_p))
        if cfg.blur_p > 0:
            ops.append(K.RandomGaussianBlur((3, 3), tuple(cfg.blur_sigma), p=cfg.blur_p))
        if cfg.noise_p > 0 and cfg.noise_std > 0:
            ops.append(K.RandomGaussianNoise(mean=0.0, std=cfg.noise_std, p=cfg.noise_p))
        self.ops = nn.Sequential(*ops)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] < 3:
            raise ValueError(f"PhotometricAugment: expected (B, C>=3, H, W) images, got {tuple(x.shape)}")
        p = self.cfg.recolour_p
        if len(self.ops) == 0 and p <= 0:
            return x
        rgb = (x[:, :3] + 1.0) * 0.5  # [-1, 1] -> [0, 1] for kornia's colour ops
        if p > 0:
            b = rgb.shape[0]
            lo = torch.rand(b, 3, device=rgb.device, dtype=rgb.dtype)
            hi = torch.rand(b, 3, device=rgb.device, dtype=rgb.dtype)
            pick = (torch.rand(b, 1, 1, 1, device=rgb.device) < p).to(rgb.dtype)
            rgb = pick * recolour(rgb, lo, hi) + (1 - pick) * rgb
        if len(self.ops):
            rgb = self.ops(rgb)
        rgb = rgb.clamp(0.0, 1.0) * 2.0 - 1.0
        return torch.cat([rgb, x[:, 3:]], dim=1) if x.shape[1] > 3 else rgb


class TaskInputAugment:
    """What an adaptation method's T learns from, augmented per domain: ``aug(x, domain)`` is ``x`` passed through
    :class:`PhotometricAugment` (without autograd: the images are detached inputs) when ``cfg`` is enabled and lists
    ``domain``, else ``x`` itself.

    Args:
        cfg: the method's ``task_augment`` section.
        device: where the augmentation runs.
    """

    def __init__(self, cfg: TaskAugmentConfig, device: torch.device | str = "cpu") -> None:
        self.cfg = cfg
        self.augment = PhotometricAugment(cfg).to(device) if cfg.enabled else None

    def __call__(self, x: torch.Tensor, domain: str) -> torch.Tensor:
        if not self.cfg.applies(domain):
            return x
        with torch.no_grad():
            return self.augment(x)
