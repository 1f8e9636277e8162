"""The task network T: class logits plus a unit-quaternion pose head (PixelDA's task towers).

Two towers, both from the official PixelDA code (``pixelda_task_towers.py``):

* ``"pose_mini"`` (Cropped LineMod): conv5x5-32, max-pool 2 | conv5x5-64, max-pool 2, FC-128 + ReLU,
  dropout 0.5, then two heads on the FC-128 features: FC-4 -> tanh -> L2-normalise (quaternion) and
  FC-C (class logits).
* ``"digits"`` (MNIST -> MNIST-M; the DSN/gradient-reversal "mnist" classifier): conv5x5-32, pool |
  conv5x5-48, pool, FC-100, FC-100, FC-C. No dropout by default; the quaternion head is off.

Private first layers (PixelDA Sec. 3.2, official ``create_model``): the first ``num_private_layers``
conv blocks exist twice, one copy for **source** images and one for **adapted/target** images (the
official code shares the "transferred" private layers between adapted and real target images); the
rest of the tower is shared. ``forward(x, domain)`` picks the copy. With ``private_layers=False`` the
tower is a plain CNN: this is how ``train-pose`` uses it as "the paper's small CNN".

Outputs are raw logits (never softmax; feed them to ``F.cross_entropy``), a unit quaternion per class
``quat_all`` ``(B, K, 4)`` (K = C per-class, 1 shared) and ``quat`` ``(B, 4)``, the predicted class's
(w, x, y, z). The quaternion is *not* canonicalised (w may be < 0): q and -q are the same rotation,
and the pose loss and angle metric are sign-invariant (:mod:`sim2real.conventions`).

Convolutions use "same" padding (TF-slim ``padding='SAME'``); the flattened feature size is derived
by running the conv stack once on a zero image of ``image_size``, never computed by hand.
"""

from __future__ import annotations

from typing import Literal, Sequence

import torch
from torch import nn

from sim2real.models.quat_head import QuatHead, quat_outputs

Domain = Literal["source", "target", "adapted"]
DOMAINS: tuple[str, ...] = ("source", "target", "adapted")

#: Default layer widths per tower: (conv widths, FC widths, dropout, pose head).
TOWERS: dict[str, tuple[tuple[int, ...], tuple[int, ...], float, bool]] = {
    "pose_mini": ((32, 64), (128,), 0.5, True),
    "digits": ((32, 48), (100, 100), 0.0, False),
}


def _conv_block(cin: int, cout: int, kernel_size: int, batch_norm: bool = False) -> nn.Sequential:
    """conv kxk (same padding) [+ batch norm] + ReLU + max-pool 2x2 stride 2."""
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, kernel_size, padding=kernel_size // 2, bias=not batch_norm)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(cout))
    return nn.Sequential(*layers, nn.ReLU(inplace=True), nn.MaxPool2d(2, 2))


class TaskNet(nn.Module):
    """Classifier + quaternion regressor with optional domain-private first layers.

    Args:
        num_classes: C, number of object classes.
        in_channels: 3 (RGB) or 4 (RGB-D: depth channel as in :func:`sim2real.data.tensors.images_from`).
        image_size: (H, W) of the inputs; fixes the size of the first FC layer.
        private_layers: keep separate first conv block(s) for source vs adapted/target images.
        tower: ``"pose_mini"`` (LineMod) or ``"digits"``; sets the default widths below.
        conv_widths: output channels of each conv block (default from ``tower``).
        fc_widths: widths of the hidden FC layers (default from ``tower``).
        dropout: dropout probability after the last hidden FC layer (default from ``tower``).
        pose_head: add the quaternion head (default from ``tower``).
        num_private_layers: how many leading conv blocks are private when ``private_layers`` is on.
        kernel_size: conv kernel size (5 in both official towers).
        quat_head: ``"per_class"`` (one quaternion per class) or ``"shared"`` (official).
        quat_activation: ``"none"`` or ``"tanh"`` (official) before the L2 normalisation.
        batch_norm: batch norm after each convolution (not in the official towers).

    Input: ``x`` float ``(B, in_channels, H, W)`` in [-1, 1].
    Output of ``forward``: ``{"logits": (B, C) raw logits, "quat": (B, 4) unit quaternions (w, x, y, z) of the
    predicted class, "quat_all": (B, K, 4)}``; the quaternions are ``None`` when ``pose_head`` is off.

    Example (standalone "small CNN", as ``train-pose`` uses it)::

        net = TaskNet(num_classes=11, in_channels=4, image_size=(64, 64), private_layers=False)
        out = net(x)            # domain is irrelevant without private layers
        loss = F.cross_entropy(out["logits"], labels)
    """

    def __init__(self, num_classes: int, in_channels: int = 3, image_size: Sequence[int] = (64, 64),
                 private_layers: bool = True, tower: str = "pose_mini", conv_widths: Sequence[int] | None = None,
                 fc_widths: Sequence[int] | None = None, dropout: float | None = None, pose_head: bool | None = None,
                 num_private_layers: int = 1, kernel_size: int = 5, quat_head: str = "per_class",
                 quat_activation: str = "none", batch_norm: bool = False) -> None:
        super().__init__()
        if tower not in TOWERS:
            raise ValueError(f"TaskNet: tower must be one of {sorted(TOWERS)}, got {tower!r}")
        d_conv, d_fc, d_drop, d_pose = TOWERS[tower]
        conv_widths = tuple(d_conv if conv_widths is None else conv_widths)
        fc_widths = tuple(d_fc if fc_widths is None else fc_widths)
        dropout = d_drop if dropout is None else float(dropout)
        pose_head = d_pose if pose_head is None else bool(pose_head)
        if num_classes < 1:
            raise ValueError(f"TaskNet: num_classes must be >= 1, got {num_classes}")
        if len(conv_widths) < 1:
            raise ValueError("TaskNet: need at least one conv block")
        if private_layers and not 1 <= num_private_layers <= len(conv_widths):
            raise ValueError(f"TaskNet: num_private_layers must be in [1, {len(conv_widths)}], got {num_private_layers}")
        h, w = int(image_size[0]), int(image_size[1])
        n_priv = num_private_layers if private_layers else 0

        self.num_classes = int(num_classes)
        self.in_channels = int(in_channels)
        self.image_size = (h, w)
        self.private_layers = bool(private_layers)
        self.has_pose_head = pose_head

        chans = (in_channels,) + conv_widths
        blocks = [_conv_block(chans[i], chans[i + 1], kernel_size, batch_norm) for i in range(len(conv_widths))]
        if n_priv:
            self.private_source = nn.Sequential(*blocks[:n_priv])
            self.private_target = nn.Sequential(
                *[_conv_block(chans[i], chans[i + 1], kernel_size, batch_norm) for i in range(n_priv)])
        else:
            self.private_source = None
            self.private_target = None
        self.shared_conv = nn.Sequential(*blocks[n_priv:])

        try:
            with torch.no_grad():
                feat = self.shared_conv(self._first(torch.zeros(1, in_channels, h, w), "source"))
        except RuntimeError:
            feat = torch.zeros(0, 0, 0, 0)
        if feat.ndim != 4 or feat.shape[-1] < 1 or feat.shape[-2] < 1:
            raise ValueError(f"TaskNet: image_size {h}x{w} is too small for {len(conv_widths)} pooling blocks")
        flat = int(feat[0].numel())

        fcs: list[nn.Module] = []
        prev = flat
        for width in fc_widths:
            fcs += [nn.Linear(prev, width), nn.ReLU(inplace=True)]
            prev = width
        if dropout > 0:
            fcs.append(nn.Dropout(dropout))
        self.fc = nn.Sequential(*fcs)
        #: F, the width of :meth:`features` (what the heads read)
        self.feature_dim = prev
        self.fc_logits = nn.Linear(prev, num_classes)
        self.fc_quat = QuatHead(prev, num_classes, quat_head, quat_activation) if pose_head else None

    def _first(self, x: torch.Tensor, domain: str) -> torch.Tensor:
        if self.private_source is None:
            return x
        return self.private_source(x) if domain == "source" else self.private_target(x)

    def features(self, x: torch.Tensor, domain: str = "target") -> torch.Tensor:
        """Shared features ``(B, F)`` after the hidden FC layers (and dropout in training mode)."""
        if domain not in DOMAINS:
            raise ValueError(f"TaskNet: domain must be one of {DOMAINS}, got {domain!r}")
        if x.ndim != 4 or x.shape[1] != self.in_channels or tuple(x.shape[-2:]) != self.image_size:
            raise ValueError(f"TaskNet: expected input (B, {self.in_channels}, {self.image_size[0]}, "
                             f"{self.image_size[1]}), got {tuple(x.shape)}")
        h = self.shared_conv(self._first(x, domain))
        return self.fc(torch.flatten(h, 1))

    def forward(self, x: torch.Tensor, domain: str = "target",
                return_features: bool = False) -> dict[str, torch.Tensor | None]:
        """Class logits and quaternion for ``x`` ``(B, C_in, H, W)`` in [-1, 1].

        Args:
            x: images.
            domain: ``"source"`` (rendered images: source-private first layers) or ``"target"`` /
                ``"adapted"`` (real or G-adapted images: the other private layers). Ignored without
                private layers.
            return_features: also return the penultimate features the heads read (the feature-level
                domain-adaptation losses of :mod:`sim2real.adapt.feature` align them).

        Returns:
            ``{"logits": (B, num_classes), "quat": (B, 4) unit (w, x, y, z) of the predicted class or None,
            "quat_all": (B, K, 4) or None}``, plus ``"features": (B, F)`` (:meth:`features`) with
            ``return_features``.
        """
        f = self.features(x, domain)
        logits = self.fc_logits(f)
        if self.fc_quat is None:
            out = {"logits": logits, "quat": None, "quat_all": None}
        else:
            out = {"logits": logits, **quat_outputs(self.fc_quat, f, logits)}
        if return_features:
            out["features"] = f
        return out
