"""The networks of I2I Adapt (Murez et al., CVPR 2018), and the two views the rest of the package loads.

* :class:`Encoder` f: images ``(B, C, H, W)`` in [-1, 1] -> latent map Z ``(B, Z_c, H / 2^n, W / 2^n)``; n stride-2
  conv4x4 + BN + ReLU layers; **shared by both domains** (all weights).
* :class:`Decoders` g_x / g_y: Z -> a source-domain / target-domain image (stride-2 transposed conv4x4 + BN + ReLU,
  a last transposed conv4x4 + tanh); the first ``shared_layers`` hidden layers are shared by the two.
* :class:`LatentClassifier` h: flattened Z -> class logits and per-class unit quaternions (w, x, y, z).
* :class:`LatentDiscriminator` D_z: flattened Z -> one LSGAN score (3 linear layers, LeakyReLU).
* :class:`ImageCritic` D_x, D_y: images -> one WGAN score (stride-2 conv4x4, InstanceNorm, LeakyReLU; the mean of the
  last one-channel map). No batch norm: the gradient penalty needs each score to depend on its own image only.

Views (no weights of their own):

* :class:`I2ITaskNet` = h o f with :class:`~sim2real.models.task.TaskNet`'s interface
  (``forward(x, domain="target") -> {"logits", "quat", "quat_all"}``, ``has_pose_head``, ...): what ``evaluate``,
  ``load_task_model`` and the trainer's validation run.
* :class:`I2ITranslator` = g_y o f (source -> target) with PixelDA's generator interface (``noise_dim = 0``,
  ``forward(x, z=None)``): what ``sim2real export`` and the sample grids run. ``to="source"`` gives g_x o f.

Sizes are derived by running the modules once on a zero image (never by hand); an image size the layers cannot
take is a ``ValueError`` that says so. This module imports no training loop (``models.loading`` builds from it).
"""

from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from sim2real.models.quat_head import QuatHead, quat_outputs

DOMAINS: tuple[str, ...] = ("source", "target")


def init_weights(module: nn.Module, std: float) -> None:
    """Conv / transposed conv / linear weights ~ N(0, std), biases 0 (std 0: PyTorch's default init is kept)."""
    if std <= 0:
        return
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class Encoder(nn.Module):
    """f: ``(B, C, H, W)`` -> Z ``(B, widths[-1], H / 2^n, W / 2^n)``, n = ``len(widths)`` stride-2 conv4x4 + BN + ReLU.

    Args:
        in_channels: C (3 RGB, 4 RGB-D).
        image_size: (H, W); each must be divisible by 2^n.
        widths: the layers' output channels (paper digits: 64, 64, 128, 128).
    """

    def __init__(self, in_channels: int, image_size: Sequence[int], widths: Sequence[int] = (64, 64, 128, 128)) -> None:
        super().__init__()
        h, w = int(image_size[0]), int(image_size[1])
        n = len(widths)
        if n < 1 or h % 2**n or w % 2**n:
            raise ValueError(f"I2I encoder: image_size {h}x{w} must be divisible by 2^{n} = {2**n} "
                             f"({n} stride-2 layers, model.encoder.widths)")
        layers: list[nn.Module] = []
        prev = in_channels
        for width in widths:
            layers += [nn.Conv2d(prev, width, 4, 2, 1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True)]
            prev = width
        self.net = nn.Sequential(*layers)
        self.in_channels, self.image_size = int(in_channels), (h, w)
        #: (Z_c, Z_h, Z_w), the latent map's shape
        self.latent_shape = (int(widths[-1]), h // 2**n, w // 2**n)
        self.latent_dim = self.latent_shape[0] * self.latent_shape[1] * self.latent_shape[2]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels or tuple(x.shape[-2:]) != self.image_size:
            raise ValueError(f"I2I encoder: expected input (B, {self.in_channels}, {self.image_size[0]}, "
                             f"{self.image_size[1]}), got {tuple(x.shape)}")
        return self.net(x)


def _up(cin: int, cout: int) -> list[nn.Module]:
    return [nn.ConvTranspose2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class Decoders(nn.Module):
    """g_x and g_y: Z ``(B, Z_c, h, w)`` -> images ``(B, C, h 2^n, w 2^n)`` in [-1, 1], n = ``len(widths) + 1``.

    Args:
        latent_channels: Z_c.
        out_channels: C.
        widths: hidden stride-2 transposed conv4x4 + BN + ReLU layers (paper digits: 512, 256, 128); a last
            transposed conv4x4 to C channels + tanh follows.
        shared_layers: how many leading hidden layers the two decoders share.

    ``forward(z, domain)``: ``domain="source"`` is g_x, ``"target"`` is g_y.
    """

    def __init__(self, latent_channels: int, out_channels: int, widths: Sequence[int] = (512, 256, 128),
                 shared_layers: int = 1) -> None:
        super().__init__()
        if not 0 <= shared_layers <= len(widths):
            raise ValueError(f"I2I decoders: shared_layers must be in [0, {len(widths)}], got {shared_layers}")
        chans = (int(latent_channels),) + tuple(int(w) for w in widths)
        shared: list[nn.Module] = []
        for i in range(shared_layers):
            shared += _up(chans[i], chans[i + 1])
        self.shared = nn.Sequential(*shared)

        def branch() -> nn.Sequential:
            layers: list[nn.Module] = []
            for i in range(shared_layers, len(widths)):
                layers += _up(chans[i], chans[i + 1])
            return nn.Sequential(*layers, nn.ConvTranspose2d(chans[-1], out_channels, 4, 2, 1), nn.Tanh())

        self.to_source, self.to_target = branch(), branch()

    def forward(self, z: torch.Tensor, domain: str = "target") -> torch.Tensor:
        if domain not in DOMAINS:
            raise ValueError(f"I2I decoders: domain must be one of {DOMAINS}, got {domain!r}")
        h = self.shared(z)
        return self.to_source(h) if domain == "source" else self.to_target(h)


class LatentClassifier(nn.Module):
    """h: Z -> ``{"logits": (B, C), "quat": (B, 4) or None, "quat_all": (B, K, 4) or None}`` (raw logits; unit
    quaternions (w, x, y, z), the predicted class's in ``quat``), from the flattened latent map.

    Args:
        latent_dim: Z_c * Z_h * Z_w.
        num_classes: C.
        hidden: hidden FC widths (ReLU), [] for linear heads.
        dropout: before the heads.
        pose_head, quat_head, quat_activation: the project's :class:`~sim2real.models.quat_head.QuatHead`.
    """

    def __init__(self, latent_dim: int, num_classes: int, hidden: Sequence[int] = (), dropout: float = 0.0,
                 pose_head: bool = True, quat_head: str = "per_class", quat_activation: str = "none") -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = int(latent_dim)
        for width in hidden:
            layers += [nn.Linear(prev, int(width)), nn.ReLU(inplace=True)]
            prev = int(width)
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        self.fc = nn.Sequential(*layers)
        self.feature_dim = prev
        self.fc_logits = nn.Linear(prev, num_classes)
        self.fc_quat = QuatHead(prev, num_classes, quat_head, quat_activation) if pose_head else None

    def forward(self, z: torch.Tensor) -> dict[str, torch.Tensor | None]:
        f = self.fc(torch.flatten(z, 1))
        logits = self.fc_logits(f)
        if self.fc_quat is None:
            return {"logits": logits, "quat": None, "quat_all": None}
        return {"logits": logits, **quat_outputs(self.fc_quat, f, logits)}


class LatentDiscriminator(nn.Module):
    """D_z: Z -> ``(B,)`` raw LSGAN scores (1: a source latent, 0: a target latent); Linear + LeakyReLU per hidden width."""

    def __init__(self, latent_dim: int, hidden: Sequence[int] = (500, 500), leak: float = 0.2) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = int(latent_dim)
        for width in hidden:
            layers += [nn.Linear(prev, int(width)), nn.LeakyReLU(leak)]
            prev = int(width)
        self.net = nn.Sequential(*layers, nn.Linear(prev, 1))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(torch.flatten(z, 1))[:, 0]


class ImageCritic(nn.Module):
    """D_x / D_y: images ``(B, C, H, W)`` -> ``(B,)`` WGAN scores.

    Layers: stride-2 conv4x4 + LeakyReLU (first), stride-2 conv4x4 + InstanceNorm (affine) + LeakyReLU (others),
    then a stride-2 conv4x4 (no bias) to one channel whose map is averaged per image.
    """

    def __init__(self, in_channels: int, image_size: Sequence[int], widths: Sequence[int] = (64, 128, 256),
                 leak: float = 0.2) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        prev = int(in_channels)
        for i, width in enumerate(widths):
            layers.append(nn.Conv2d(prev, int(width), 4, 2, 1))
            if i > 0:
                layers.append(nn.InstanceNorm2d(int(width), affine=True))
            layers.append(nn.LeakyReLU(leak))
            prev = int(width)
        # no bias on the score: the Wasserstein loss (a difference of means) and the penalty are blind to it
        self.net = nn.Sequential(*layers, nn.Conv2d(prev, 1, 4, 2, 1, bias=False))
        h, w = int(image_size[0]), int(image_size[1])
        try:  # in training mode: instance norm refuses a 1x1 map there
            out = self.net(torch.zeros(2, in_channels, h, w))
        except (RuntimeError, ValueError):
            out = None
        if out is None or out.shape[-1] < 1 or out.shape[-2] < 1:
            raise ValueError(f"I2I image discriminator: image_size {h}x{w} is too small for {len(widths) + 1} "
                             f"stride-2 layers (model.image_discriminator.widths)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).flatten(1).mean(1)


# --------------------------------------------------------------------------------------------
# Views: h o f (the task network) and g_y o f (the generator)
# --------------------------------------------------------------------------------------------


class I2ITaskNet(nn.Module):
    """h o f with :class:`~sim2real.models.task.TaskNet`'s interface (no private layers: f is shared).

    ``forward(x, domain="target", return_features=False)``: x ``(B, C, H, W)`` in [-1, 1] ->
    ``{"logits": (B, C), "quat": (B, 4) or None, "quat_all": (B, K, 4) or None}`` (plus ``"features"``, the
    flattened Z ``(B, latent_dim)``, with ``return_features``). ``domain`` is accepted for the interface and ignored.
    """

    private_layers = False

    def __init__(self, encoder: Encoder, classifier: LatentClassifier, num_classes: int) -> None:
        super().__init__()
        self.encoder, self.classifier = encoder, classifier
        self.num_classes = int(num_classes)
        self.in_channels, self.image_size = encoder.in_channels, encoder.image_size
        self.has_pose_head = classifier.fc_quat is not None
        self.feature_dim = encoder.latent_dim

    def forward(self, x: torch.Tensor, domain: str = "target", return_features: bool = False) -> dict:
        if domain not in ("source", "target", "adapted"):
            raise ValueError(f"I2ITaskNet: domain must be source, target or adapted, got {domain!r}")
        z = self.encoder(x)
        out = self.classifier(z)
        if return_features:
            out["features"] = torch.flatten(z, 1)
        return out


class I2ITranslator(nn.Module):
    """g_y o f (``to="target"``: source -> target) or g_x o f (``to="source"``) with PixelDA G's interface.

    ``noise_dim = 0``; ``forward(x, z=None)``: x ``(B, C, H, W)`` in [-1, 1] -> ``(B, C, H, W)`` in [-1, 1]
    (deterministic: ``z`` must be None or have no columns).
    """

    noise_dim = 0

    def __init__(self, encoder: Encoder, decoders: Decoders, to: str = "target") -> None:
        super().__init__()
        if to not in DOMAINS:
            raise ValueError(f"I2ITranslator: to must be one of {DOMAINS}, got {to!r}")
        self.encoder, self.decoders = encoder, decoders
        #: the output domain (not ``self.to``: that is nn.Module.to)
        self.direction = to
        self.in_channels, self.image_size = encoder.in_channels, encoder.image_size

    def forward(self, x: torch.Tensor, z: torch.Tensor | None = None) -> torch.Tensor:
        if z is not None and z.numel():
            raise ValueError(f"I2ITranslator: takes no noise (noise_dim 0), got z of shape {tuple(z.shape)}")
        return self.decoders(self.encoder(x), self.direction)


# --------------------------------------------------------------------------------------------
# Building from a config
# --------------------------------------------------------------------------------------------

#: the trained modules, in build (initialisation) order: checkpoint state keys
MODULES: tuple[str, ...] = ("f", "g", "h", "Dz", "Dx", "Dy")


def build_i2i(cfg, num_classes: int, in_channels: int, image_size: Sequence[int],
              discriminators: bool = True) -> dict[str, nn.Module]:
    """The networks of an :class:`~sim2real.adapt.i2i.config.I2IConfig`, by :data:`MODULES` name (``discriminators``
    False: f, g, h only, for loading). The order fixes which random numbers initialise which weights."""
    m = cfg.model
    f = Encoder(in_channels, image_size, m.encoder.widths)
    g = Decoders(f.latent_shape[0], in_channels, m.decoder.widths, m.decoder.shared_layers)
    c = m.classifier
    h = LatentClassifier(f.latent_dim, num_classes, c.hidden, c.dropout, c.pose_head, c.quat_head, c.quat_activation)
    nets: dict[str, nn.Module] = {"f": f, "g": g, "h": h}
    if discriminators:
        nets["Dz"] = LatentDiscriminator(f.latent_dim, m.latent_discriminator.hidden, m.latent_discriminator.leak)
        d = m.image_discriminator
        nets["Dx"] = ImageCritic(in_channels, image_size, d.widths, d.leak)
        nets["Dy"] = ImageCritic(in_channels, image_size, d.widths, d.leak)
    for net in nets.values():
        init_weights(net, m.init_std)
    return nets
