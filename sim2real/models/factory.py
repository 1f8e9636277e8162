"""Network factories: a run's config -> its untrained networks (train-pose's pose network, PixelDA's G, D, T).

Training builds its networks here and loading a trained run (:mod:`sim2real.models.loading`) rebuilds them here
before reading the weights, so both agree on the architecture a config names. Configs are only read (their
classes live with the trainers' configs: :mod:`sim2real.train.pose_config`, :mod:`sim2real.adapt.pixelda.config`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Sequence

from torch import nn

from sim2real.errors import Sim2RealError
from sim2real.models.discriminator import Discriminator
from sim2real.models.generator import Generator
from sim2real.models.task import TaskNet

if TYPE_CHECKING:
    from sim2real.adapt.pixelda.config import PixelDAConfig
    from sim2real.train.pose_config import PoseModelConfig


# --------------------------------------------------------------------------------------------
# train-pose
# --------------------------------------------------------------------------------------------


def build_pose_model(cfg: PoseModelConfig, num_classes: int, in_channels: int, image_size: Sequence[int]) -> nn.Module:
    """The train-pose network named by ``cfg.arch``; forward returns ``{"logits": (B, C), "quat": (B, 4)}``."""
    if cfg.arch == "small":
        try:
            return TaskNet(num_classes, in_channels, tuple(image_size), private_layers=False, tower="pose_mini",
                           conv_widths=cfg.conv_widths, fc_widths=cfg.fc_widths, dropout=cfg.dropout, pose_head=True,
                           quat_head=cfg.quat_head, quat_activation=cfg.quat_activation, batch_norm=cfg.batch_norm,
                           kernel_size=cfg.kernel_size)
        except ValueError as e:  # e.g. images too small for the pooling blocks
            raise Sim2RealError(f"model: {e}") from None
    if cfg.arch == "resnet18":
        from sim2real.models.resnet import ResNetPose

        return ResNetPose(num_classes, in_channels, image_size, width=cfg.width, blocks=cfg.blocks, dropout=cfg.dropout,
                          quat_head=cfg.quat_head, quat_activation=cfg.quat_activation)
    raise Sim2RealError(f"model.arch: expected small or resnet18, got {cfg.arch!r}")


# --------------------------------------------------------------------------------------------
# PixelDA (sim2real adapt)
# --------------------------------------------------------------------------------------------


def pose_enabled(cfg: PixelDAConfig) -> bool:
    """Whether T has a quaternion head under ``cfg``."""
    t = cfg.model.task
    return t.pose_head if t.pose_head is not None else t.tower == "pose_mini"


def build_task(cfg: PixelDAConfig, num_classes: int, in_channels: int, image_size: tuple[int, int]) -> TaskNet:
    """T for ``cfg`` (PyTorch default init; see ``ModelConfig.init_std``)."""
    t = cfg.model.task
    return TaskNet(num_classes, in_channels, image_size, private_layers=t.private_layers, tower=t.tower,
                   conv_widths=t.conv_widths, fc_widths=t.fc_widths, dropout=t.dropout, pose_head=pose_enabled(cfg),
                   num_private_layers=t.num_private_layers, quat_head=t.quat_head, quat_activation=t.quat_activation,
                   batch_norm=t.batch_norm)


def build_generator(cfg: PixelDAConfig, in_channels: int, image_size: tuple[int, int]) -> Generator:
    g = cfg.model.generator
    return Generator(in_channels, image_size, noise_dim=g.noise_dim, filters=g.filters, blocks=g.blocks,
                     kernel_size=g.kernel_size, init_std=cfg.model.init_std, padding_mode=g.padding)


def build_discriminator(cfg: PixelDAConfig, in_channels: int, image_size: tuple[int, int]) -> Discriminator:
    d = cfg.model.discriminator
    return Discriminator(in_channels, image_size, filters=d.filters, filter_factor=d.filter_factor,
                         first_stride=d.first_stride, final_size=d.final_size, kernel_size=d.kernel_size,
                         dropout_keep=d.dropout_keep, noise_std=d.noise_std, image_noise=d.image_noise, leak=d.leak,
                         init_std=cfg.model.init_std)


def build_models(cfg: PixelDAConfig, num_classes: int, in_channels: int,
                 image_size: tuple[int, int]) -> tuple[Generator, Discriminator, TaskNet]:
    """G, D, T in that order (the order fixes which random numbers initialise which weights)."""
    return (build_generator(cfg, in_channels, image_size), build_discriminator(cfg, in_channels, image_size),
            build_task(cfg, num_classes, in_channels, image_size))
