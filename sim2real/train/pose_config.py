"""``sim2real train-pose`` settings: the network (:class:`PoseModelConfig`) and the run (:class:`PoseConfig`).

Config only: what a train-pose checkpoint's ``config`` parses back to, kept apart from the loop so that loading a
trained model (:mod:`sim2real.models.loading`) needs neither the training loop nor evaluation (as
:mod:`sim2real.train.adapt_config` for ``adapt``). Shipped presets: ``sim2real/configs/pose-*.yaml``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal

from sim2real.errors import Sim2RealError
from sim2real.train.augment import AugmentConfig

#: ``run.json`` / checkpoint kind of a train-pose run.
KIND = "pose"


@dataclasses.dataclass
class PoseModelConfig:
    """The network."""

    #: ``small``: the paper's LineMod "pose_mini" CNN (:class:`sim2real.models.task.TaskNet`, no private layers);
    #: ``resnet18``: a ResNet-18-style network with a small-image stem (:class:`sim2real.models.resnet.ResNetPose`).
    arch: Literal["small", "resnet18"] = "small"
    #: small: output channels of the conv5x5 + pool blocks.
    conv_widths: list[int] = dataclasses.field(default_factory=lambda: [32, 64])
    #: small: hidden fully connected widths.
    fc_widths: list[int] = dataclasses.field(default_factory=lambda: [128])
    #: Dropout before the heads (0.5 in the official pose_mini; 0 measured better for rotation, docs/train-pose.md).
    dropout: float = 0.0
    #: Quaternion head: ``per_class`` (one quaternion per class; the true class's in training, the predicted
    #: class's at test) or ``shared`` (one for all classes, the official pose_mini head).
    quat_head: Literal["per_class", "shared"] = "per_class"
    #: Activation before the L2 normalisation: ``none`` or ``tanh`` (official pose_mini).
    quat_activation: Literal["none", "tanh"] = "none"
    #: small: batch norm after each convolution (not in the official tower).
    batch_norm: bool = False
    #: resnet18: channels of the first stage (64 in ResNet-18).
    width: int = 64
    #: resnet18: basic blocks per stage ([2, 2, 2, 2] is ResNet-18).
    blocks: list[int] = dataclasses.field(default_factory=lambda: [2, 2, 2, 2])

    def validate(self) -> None:
        if not 0.0 <= self.dropout < 1.0:
            raise Sim2RealError(f"model.dropout: expected a value in [0, 1), got {self.dropout}")
        if self.width < 1 or not self.blocks or min(self.blocks) < 1:
            raise Sim2RealError(f"model: width and blocks must be positive, got width={self.width}, blocks={self.blocks}")
        if not self.conv_widths or min(self.conv_widths) < 1 or (self.fc_widths and min(self.fc_widths) < 1):
            raise Sim2RealError(f"model: conv_widths and fc_widths must be positive, got {self.conv_widths}, {self.fc_widths}")


@dataclasses.dataclass
class PoseConfig:
    """``sim2real train-pose`` settings (shipped: ``pose-small``, ``pose-resnet18``, ``pose-tiny``)."""

    model: PoseModelConfig = dataclasses.field(default_factory=PoseModelConfig)
    augment: AugmentConfig = dataclasses.field(default_factory=AugmentConfig)
    #: Feed depth as a 4th channel (RGB-D, as in Cropped LineMod); every file then needs ``depth``.
    use_depth: bool = False
    #: Optimisation steps (batches).
    steps: int = 20000
    batch_size: int = 32
    #: Adam learning rate and betas (the paper trains T with Adam, lr 1e-3).
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    weight_decay: float = 0.0
    #: Learning-rate schedule: ``cosine`` (from lr to 0 over ``steps``, after ``warmup_steps`` of linear warm-up)
    #: or ``step`` (multiply by ``lr_decay`` every ``lr_decay_every`` steps; official PixelDA: 0.95 / 20k).
    lr_schedule: Literal["cosine", "step"] = "cosine"
    warmup_steps: int = 0
    lr_decay: float = 0.95
    lr_decay_every: int = 20000
    #: Clip the global gradient norm (0 = off).
    grad_clip: float = 5.0
    #: Weight of the pose term (official PixelDA: 0.25 on source images) and the epsilon inside its log.
    xi: float = 1.0
    pose_eps: float = 1e-4
    #: Symmetry-aware pose loss: the minimum over each object's symmetry group (from the training file's
    #: ``symmetries``; objects without an annotation are treated as asymmetric).
    symmetric_loss: bool = True
    #: Step (degrees) at which a continuous symmetry is discretised for the loss.
    sym_step_deg: float = 5.0
    #: ``concat``: batches drawn uniformly from all --train files together; ``balanced``: equal share per file.
    mix: Literal["concat", "balanced"] = "concat"
    seed: int = 0
    #: ``auto`` (CUDA if available), ``cpu``, ``cuda``, ``cuda:N``.
    device: str = "auto"
    log_every: int = 50
    #: Evaluate on --val every this many steps (and at the end).
    val_every: int = 500
    checkpoint_every: int = 1000
    eval_batch_size: int = 256
    #: Also write TensorBoard events under RUN/tb.
    tensorboard: bool = False

    def validate(self) -> None:
        for name in ("steps", "batch_size", "lr_decay_every", "log_every", "val_every", "checkpoint_every", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise Sim2RealError(f"{name}: expected a positive integer, got {getattr(self, name)}")
        if self.lr <= 0:
            raise Sim2RealError(f"lr: expected > 0, got {self.lr}")
        if not all(0.0 <= b < 1.0 for b in self.betas):
            raise Sim2RealError(f"betas: expected two values in [0, 1), got {list(self.betas)}")
        if not 0 < self.lr_decay <= 1:
            raise Sim2RealError(f"lr_decay: expected a value in (0, 1], got {self.lr_decay}")
        if self.xi < 0 or self.pose_eps <= 0 or self.grad_clip < 0 or self.weight_decay < 0:
            raise Sim2RealError("xi, grad_clip and weight_decay must be >= 0 and pose_eps > 0")
        if self.warmup_steps < 0:
            raise Sim2RealError(f"warmup_steps: expected >= 0, got {self.warmup_steps}")
        if not 0 < self.sym_step_deg <= 90:
            raise Sim2RealError(f"sym_step_deg: expected a value in (0, 90], got {self.sym_step_deg}")

    def lr_factor(self, step: int) -> float:
        """Learning rate at 0-based ``step`` as a multiple of ``lr`` (a pure function: resume needs no state)."""
        if self.warmup_steps and step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        if self.lr_schedule == "step":
            return self.lr_decay ** (step // self.lr_decay_every)
        span = max(1, self.steps - self.warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - self.warmup_steps) / span)))
