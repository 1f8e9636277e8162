"""``sim2real train-pose`` settings: the network (:class:`PoseModelConfig`) and the run (:class:`PoseConfig`).

Config only: what a train-pose checkpoint's ``config`` parses back to, kept apart from the loop so that loading a
trained model (:mod:`sim2real.models.loading`) needs neither the training loop nor evaluation (as
:mod:`sim2real.adapt.pixelda.config` for ``adapt``). Shipped presets: ``sim2real/configs/pose-*.yaml``.
"""

from __future__ import annotations

import dataclasses
from typing import Literal

from sim2real.engine.run import RESUMABLE
from sim2real.engine.schedule import lr_factor
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
    #: small: output channels of the conv + pool blocks.
    conv_widths: list[int] = dataclasses.field(default_factory=lambda: [32, 64])
    #: small: hidden fully connected widths.
    fc_widths: list[int] = dataclasses.field(default_factory=lambda: [128])
    #: small: square kernel of every conv (5 in the official pose_mini tower; 3 costs ~half the FLOPs).
    kernel_size: int = 5
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
    #: Feed depth as a 4th channel (RGB-D, as in Cropped LineMod); every file then needs ``depth``.
    use_depth: bool = False

    def validate(self) -> None:
        if not 0.0 <= self.dropout < 1.0:
            raise Sim2RealError(f"model.dropout: expected a value in [0, 1), got {self.dropout}")
        if self.width < 1 or not self.blocks or min(self.blocks) < 1:
            raise Sim2RealError(f"model: width and blocks must be positive, got width={self.width}, blocks={self.blocks}")
        if not self.conv_widths or min(self.conv_widths) < 1 or (self.fc_widths and min(self.fc_widths) < 1):
            raise Sim2RealError(f"model: conv_widths and fc_widths must be positive, got {self.conv_widths}, {self.fc_widths}")
        if self.kernel_size < 1 or self.kernel_size % 2 == 0:
            raise Sim2RealError(f"model.kernel_size: expected an odd integer >= 1, got {self.kernel_size}")


@dataclasses.dataclass
class PoseLossConfig:
    """``L = CE + pose_weight * min_k log(pose_eps + 1 - |(q S_k) . q_hat|)`` (module docstring of train/pose.py)."""

    #: Weight of the pose term, the paper's xi (official PixelDA: 0.25 on source images; 1 measured best).
    pose_weight: float = 1.0
    #: The epsilon inside the log.
    pose_eps: float = 1e-4
    #: Symmetry-aware pose loss: the minimum over each object's symmetry group (from the training file's
    #: ``symmetries``; objects without an annotation are treated as asymmetric).
    symmetric_pose: bool = True
    #: Step (degrees) at which a continuous symmetry is discretised for the loss.
    sym_step_deg: float = 5.0

    def validate(self) -> None:
        if self.pose_weight < 0 or self.pose_eps <= 0:
            raise Sim2RealError("pose_weight must be >= 0 and pose_eps > 0")
        if not 0 < self.sym_step_deg <= 90:
            raise Sim2RealError(f"sym_step_deg: expected a value in (0, 90], got {self.sym_step_deg}")


@dataclasses.dataclass
class PoseOptimConfig:
    """Adam and its learning-rate schedule (the paper trains T with Adam, lr 1e-3)."""

    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    weight_decay: float = 0.0
    #: ``cosine`` (from lr to 0 over ``train.steps``, after ``warmup_steps`` of linear warm-up) or ``step``
    #: (staircase: ``lr * lr_decay_rate ** (step // lr_decay_steps)``; official PixelDA: 0.95 / 20k).
    lr_schedule: Literal["cosine", "step"] = "cosine"
    warmup_steps: int = 0
    lr_decay_rate: float = 0.95
    lr_decay_steps: int = 20000
    #: Clip the global gradient norm (0 = off).
    clip_grad_norm: float = 5.0

    def validate(self) -> None:
        if self.lr <= 0:
            raise Sim2RealError(f"lr: expected > 0, got {self.lr}")
        if not (0.0 <= self.beta1 < 1.0 and 0.0 <= self.beta2 < 1.0):
            raise Sim2RealError(f"beta1, beta2: expected values in [0, 1), got {self.beta1}, {self.beta2}")
        if not 0 < self.lr_decay_rate <= 1:
            raise Sim2RealError(f"lr_decay_rate: expected a value in (0, 1], got {self.lr_decay_rate}")
        if self.lr_decay_steps < 1:
            raise Sim2RealError(f"lr_decay_steps: expected a positive integer, got {self.lr_decay_steps}")
        if self.clip_grad_norm < 0 or self.weight_decay < 0:
            raise Sim2RealError("clip_grad_norm and weight_decay must be >= 0")
        if self.warmup_steps < 0:
            raise Sim2RealError(f"warmup_steps: expected >= 0, got {self.warmup_steps}")


@dataclasses.dataclass
class PoseTrainConfig:
    """Steps, batches and cadences (the keys marked resumable may change on ``--resume``)."""

    #: Optimisation steps (batches).
    steps: int = dataclasses.field(default=20000, metadata=RESUMABLE)
    batch_size: int = 32
    #: Seeds the weights, the batches and the augmentation; recorded in run.json and checkpoints.
    seed: int = 0
    #: ``concat``: batches drawn uniformly from all --train files together; ``balanced``: equal share per file.
    mix: Literal["concat", "balanced"] = "concat"
    #: Steps between metrics.jsonl lines (and the NaN / divergence check).
    log_every: int = dataclasses.field(default=50, metadata=RESUMABLE)
    #: Evaluate on --val every this many steps (and at the end).
    val_every: int = dataclasses.field(default=500, metadata=RESUMABLE)
    #: Steps between checkpoints (also written at the end and on Ctrl-C).
    checkpoint_every: int = dataclasses.field(default=1000, metadata=RESUMABLE)
    #: Numbered checkpoints kept (step_N.pt; last.pt and best.pt always kept). 0 keeps all.
    keep_checkpoints: int = dataclasses.field(default=3, metadata=RESUMABLE)
    #: A logged loss above this (in absolute value) stops the run as diverged.
    max_loss: float = dataclasses.field(default=1000.0, metadata=RESUMABLE)
    eval_batch_size: int = dataclasses.field(default=256, metadata=RESUMABLE)
    #: Also write TensorBoard events under RUN/tb.
    tensorboard: bool = dataclasses.field(default=False, metadata=RESUMABLE)

    def validate(self) -> None:
        for name in ("steps", "batch_size", "log_every", "val_every", "checkpoint_every", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise Sim2RealError(f"{name}: expected a positive integer, got {getattr(self, name)}")
        if self.keep_checkpoints < 0:
            raise Sim2RealError(f"keep_checkpoints: expected >= 0, got {self.keep_checkpoints}")


@dataclasses.dataclass
class PosePerfConfig:
    """Speed settings: they change how fast a step runs, not what it computes (resumable)."""

    #: ``auto`` (CUDA if available), ``cpu``, ``cuda``, ``cuda:N``.
    device: str = "auto"
    #: Mixed precision: ``auto`` = bf16 autocast on CUDA, fp32 on the CPU.
    amp: Literal["auto", "bf16", "fp32"] = "auto"
    #: NHWC memory format; null = on (faster on the CPU too).
    channels_last: bool | None = None
    #: Batched optimiser kernels (fused Adam on CUDA).
    foreach: bool = True


#: Flat keys of train-pose configs before the sections (sim2real <= 0.1 run folders, checkpoints and files).
LEGACY_KEYS = {
    "use_depth": "model.use_depth", "steps": "train.steps", "batch_size": "train.batch_size", "seed": "train.seed",
    "mix": "train.mix", "log_every": "train.log_every", "val_every": "train.val_every",
    "checkpoint_every": "train.checkpoint_every", "eval_batch_size": "train.eval_batch_size",
    "tensorboard": "train.tensorboard", "lr": "optim.lr", "weight_decay": "optim.weight_decay",
    "lr_schedule": "optim.lr_schedule", "warmup_steps": "optim.warmup_steps", "lr_decay": "optim.lr_decay_rate",
    "lr_decay_every": "optim.lr_decay_steps", "grad_clip": "optim.clip_grad_norm", "xi": "loss.pose_weight",
    "pose_eps": "loss.pose_eps", "symmetric_loss": "loss.symmetric_pose", "sym_step_deg": "loss.sym_step_deg",
    "device": "perf.device",
}


@dataclasses.dataclass
class PoseConfig:
    """``sim2real train-pose`` settings (shipped: ``pose-small``, ``pose-demo``, ``pose-resnet18``, ``pose-tiny``).

    The sections are those of every trainer (``adapt`` too): ``model``, ``loss``, ``optim``, ``train``, ``perf``;
    train-pose adds ``augment``.
    """

    model: PoseModelConfig = dataclasses.field(default_factory=PoseModelConfig)
    loss: PoseLossConfig = dataclasses.field(default_factory=PoseLossConfig)
    optim: PoseOptimConfig = dataclasses.field(default_factory=PoseOptimConfig)
    train: PoseTrainConfig = dataclasses.field(default_factory=PoseTrainConfig)
    perf: PosePerfConfig = dataclasses.field(default_factory=PosePerfConfig, metadata=RESUMABLE)
    augment: AugmentConfig = dataclasses.field(default_factory=AugmentConfig)

    @staticmethod
    def migrate_legacy(data: dict) -> dict:
        """Move the flat keys of older configs (:data:`LEGACY_KEYS`, ``betas``) into their sections; a key
        given in its section wins over its legacy twin."""
        if not isinstance(data, dict) or not (set(data) & (set(LEGACY_KEYS) | {"betas"})):
            return data
        out = {k: (dict(v) if isinstance(v, dict) else v) for k, v in data.items()
               if k not in LEGACY_KEYS and k != "betas"}

        def put(dotted: str, value) -> None:
            sec, key = dotted.split(".")
            section = out.setdefault(sec, {})
            if isinstance(section, dict):
                section.setdefault(key, value)

        for old, new in LEGACY_KEYS.items():
            if old in data:
                put(new, data[old])
        if "betas" in data and isinstance(data["betas"], (list, tuple)) and len(data["betas"]) == 2:
            put("optim.beta1", data["betas"][0])
            put("optim.beta2", data["betas"][1])
        return out

    def lr_factor(self, step: int) -> float:
        """Learning rate at 0-based ``step`` as a multiple of ``optim.lr`` (:func:`sim2real.engine.schedule.lr_factor`)."""
        o = self.optim
        return lr_factor(o.lr_schedule, step, self.train.steps, o.lr_decay_rate, o.lr_decay_steps, o.warmup_steps)
