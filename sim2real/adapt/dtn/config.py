"""Typed config of DTN (``sim2real adapt --method dtn``; Taigman, Polyak & Wolf, ICLR 2017).

Shipped presets: ``sim2real/configs/dtn-demo.yaml`` (32x32 RGB bundled objects, CPU-sized), ``dtn-digits.yaml``
(MNIST -> MNIST-M-style, the paper's digit weights) and ``dtn-tiny.yaml`` (tests).

Sections (those of every trainer): ``model`` (f, g, D, T sizes), ``loss`` (alpha, beta, gamma and T's task weights),
``optim``, ``train`` (steps, the pretraining phase of f, batch, logging), ``perf``. Keys that ``--resume`` may change
carry the field metadata :data:`~sim2real.engine.run.RESUMABLE`. ``model.task`` is PixelDA's
:class:`~sim2real.adapt.pixelda.config.TaskConfig`: T is the same :class:`~sim2real.models.task.TaskNet`, built by
:func:`sim2real.models.factory.build_task`, so a comparison with PixelDA's T or the feature baselines' is one of
training data, not of networks. See ``docs/adapt.md`` (DTN).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from sim2real.adapt.pixelda.config import TaskConfig
from sim2real.engine.perf import PerfConfig
from sim2real.engine.run import RESUMABLE
from sim2real.engine.selection import SelectConfig
from sim2real.errors import Sim2RealError
from sim2real.train.augment import AugmentConfig, TaskAugmentConfig

#: ``run.json`` / checkpoint kind of a DTN run.
KIND = "dtn"


@dataclass
class EncoderConfig:
    """f, the context encoder: ``len(widths)`` stride-2 conv4x4 + BN + ReLU layers, then one conv over the whole
    remaining map + BN + tanh -> a ``feature_dim`` vector (paper digits: 64-128-256 then 128-d). Pretrained on
    labelled source images (class + pose heads) during ``train.pretrain_steps``, then frozen."""

    widths: list[int] = field(default_factory=lambda: [64, 128, 256])
    """Output channels of the stride-2 layers; H and W must be divisible by 2^len(widths)."""
    feature_dim: int = 128
    """Size of f(x) (the paper's 128-d representation)."""

    def validate(self) -> None:
        if not self.widths or min(self.widths) < 1 or self.feature_dim < 1:
            raise Sim2RealError(f"model.encoder: expected widths >= 1 (at least one) and feature_dim >= 1, "
                                f"got {self.widths}, {self.feature_dim}")


@dataclass
class DecoderConfig:
    """g: f(x) -> an image of the input size in [-1, 1]; a transposed conv to f's last map size, then stride-2
    transposed conv4x4 + BN + ReLU layers, the last one to the image channels with tanh (mirror of f)."""

    widths: list[int] | None = None
    """Channels of g's hidden maps, coarsest first, one per stride-2 layer of f; null = f's widths reversed."""

    def validate(self) -> None:
        if self.widths is not None and (not self.widths or min(self.widths) < 1):
            raise Sim2RealError(f"model.decoder.widths: expected widths >= 1 or null, got {self.widths}")


@dataclass
class TernaryDiscriminatorConfig:
    """D: images -> 3 logits (0: G(x_s), 1: G(x_t), 2: a real target image). Stride-2 conv4x4 + LeakyReLU
    (batch norm on all but the first), flatten, linear -> 3."""

    widths: list[int] = field(default_factory=lambda: [64, 128, 256])
    """Output channels of the stride-2 layers; H and W must be divisible by 2^len(widths)."""
    leak: float = 0.2
    """LeakyReLU slope."""

    def validate(self) -> None:
        if not self.widths or min(self.widths) < 1 or self.leak < 0:
            raise Sim2RealError(f"model.discriminator: expected widths >= 1 (at least one) and leak >= 0, "
                                f"got {self.widths}, {self.leak}")


@dataclass
class DTNModelConfig:
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    """f (frozen after pretraining)."""
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    """g; G = g o f."""
    discriminator: TernaryDiscriminatorConfig = field(default_factory=TernaryDiscriminatorConfig)
    """The ternary D."""
    task: TaskConfig = field(default_factory=lambda: TaskConfig(private_layers=False))
    """T, as PixelDA's ``model.task`` (same class and keys); trained on G(x_s) only. Default without private
    layers (its source branch would get no data)."""
    init_std: float = 0.02
    """g and D weights ~ N(0, init_std) (0: PyTorch's default init); f and T keep PyTorch's default init."""
    use_depth: bool = False
    """RGB-D input (4 channels); source and target both need a depth dataset."""
    image_size: list[int] | None = None
    """Expected (H, W) of the source images (null: any); a source of another size is a one-line error."""

    def validate(self) -> None:
        if self.image_size is not None and (len(self.image_size) != 2 or min(self.image_size) < 4):
            raise Sim2RealError(f"image_size: expected [H, W] with H, W >= 4, got {self.image_size}")
        if self.init_std < 0:
            raise Sim2RealError(f"init_std: expected a number >= 0, got {self.init_std}")


@dataclass
class DTNLossConfig:
    """``L_D = CE(D(G(x_s)), 0) + CE(D(G(x_t)), 1) + CE(D(x_t), 2)``;
    ``L_G = L_GANG + alpha * L_CONST + beta * L_TID + gamma * L_TV`` with
    ``L_GANG = CE(D(G(x_s)), 2) + CE(D(G(x_t)), 2)``, ``L_CONST = MSE(f(x_s), f(G(x_s)))`` (through the frozen f),
    ``L_TID = MSE(x_t, G(x_t))``, ``L_TV`` the total variation of G(x_s) and G(x_t) (paper Eq. 3-6);
    T: ``task_weight * CE(T(G(x_s))) + pose_weight * P(T(G(x_s)))``, plus ``task_source_weight * (CE + P)`` of T
    on x_s itself when that weight is > 0 (PixelDA's layout; the paper trains T on G(x_s) only); pretraining of f:
    ``CE(f's class head) + pretrain_pose_weight * P(f's pose head)`` on x_s."""

    alpha: float = 15.0
    """Weight of L_CONST (paper: 15 for digits, 100 for faces)."""
    beta: float = 15.0
    """Weight of L_TID (paper: 15 for digits, 1 for faces)."""
    gamma: float = 0.0
    """Weight of L_TV (paper: 0 for digits, 0.05 for faces; with this project's per-pixel mean, not the paper's sum)."""
    tv_exponent: float = 1.0
    """B in ``((dz_x)^2 + (dz_y)^2)^(B / 2)`` (paper: B = 1)."""
    task_weight: float = 1.0
    """Cross-entropy of T on G(x_s) (detached) against the source labels."""
    task_source_weight: float = 0.0
    """Weight of T's loss (class CE, and the pose loss at ``pose_weight``) on the labelled source images themselves,
    beside G(x_s): 0 = the paper (T learns G(x_s) only). T then sees source as domain ``"source"`` and G(x_s) as
    ``"adapted"`` (private first layers, when configured, as in PixelDA)."""
    pose_weight: float = 1.0
    """Quaternion pose loss of T on G(x_s) (as PixelDA's, :func:`sim2real.losses.quat_log_loss`); 0 without a pose
    head."""
    pretrain_pose_weight: float = 1.0
    """Pose loss of f's pretraining head on x_s; 0 without a pose head."""
    pose_eps: float = 1e-4
    """eps in log(eps + 1 - |q . q_hat|)."""
    symmetric_pose: bool = True
    """Symmetry-aware pose loss (minimum over each object's symmetry group from the source file)."""
    sym_step_deg: float = 5.0
    """Discretisation step (degrees) of continuous symmetries in the pose loss."""

    def validate(self) -> None:
        for name in ("alpha", "beta", "gamma", "task_weight", "task_source_weight", "pose_weight",
                     "pretrain_pose_weight"):
            if getattr(self, name) < 0:
                raise Sim2RealError(f"loss.{name}: expected a number >= 0, got {getattr(self, name)}")
        if self.tv_exponent <= 0:
            raise Sim2RealError(f"loss.tv_exponent: expected a number > 0, got {self.tv_exponent}")


@dataclass
class DTNOptimConfig:
    lr: float = 3e-4
    """Adam learning rate of D, g and T (one optimiser each)."""
    pretrain_lr: float | None = None
    """Adam learning rate of f's pretraining (null: ``lr``)."""
    beta1: float = 0.5
    """Adam beta1 of D, g and T (DCGAN's 0.5); f's pretraining uses 0.9."""
    beta2: float = 0.999
    lr_decay_rate: float = 0.95
    """Staircase decay: lr * rate ** (step // lr_decay_steps), step counted from 0 (pretraining included)."""
    lr_decay_steps: int = 20000
    clip_grad_norm: float = 5.0
    """Gradient-norm clipping threshold; 0 disables."""
    clip_mode: Literal["per_param", "global"] = "per_param"
    """``per_param``: each tensor clipped separately (as PixelDA's); ``global``: one norm over all."""
    task_weight_decay: float = 0.0
    """L2 weight decay on T."""

    def validate(self) -> None:
        if self.lr <= 0 or self.lr_decay_steps < 1 or not 0 < self.lr_decay_rate <= 1 or self.clip_grad_norm < 0:
            raise Sim2RealError("expected lr > 0, lr_decay_steps >= 1, 0 < lr_decay_rate <= 1, clip_grad_norm >= 0")
        if self.pretrain_lr is not None and self.pretrain_lr <= 0:
            raise Sim2RealError(f"optim.pretrain_lr: expected a number > 0 or null, got {self.pretrain_lr}")


@dataclass
class DTNTrainConfig:
    steps: int = field(default=20000, metadata=RESUMABLE)
    """Total number of steps, pretraining included."""
    pretrain_steps: int = 2000
    """Steps 0 .. pretrain_steps - 1 train f (class + pose heads) on source only; from then on f is frozen (eval
    mode, no gradient) and D, g, T train. Not resumable: changing it changes what the run did."""
    batch_size: int = 32
    """Images per domain per step."""
    seed: int = 0
    """Seeds the models and the batch streams; recorded in run.json and checkpoints."""
    log_every: int = field(default=100, metadata=RESUMABLE)
    """Steps between metrics.jsonl / TensorBoard entries (and the NaN / divergence check)."""
    sample_every: int = field(default=1000, metadata=RESUMABLE)
    """Steps between sample grids (samples/step_XXXXXXX.png: source | G(source) | target | G(target))."""
    checkpoint_every: int = field(default=2000, metadata=RESUMABLE)
    """Steps between checkpoints (also written at the end and on Ctrl-C)."""
    keep_checkpoints: int = field(default=3, metadata=RESUMABLE)
    """Numbered checkpoints kept (last.pt and best.pt always kept). 0 keeps all."""
    val_every: int = field(default=1000, metadata=RESUMABLE)
    """Steps between evaluations of T on the labelled target validation set (``--val``); none while pretraining."""
    sample_rows: int = 8
    """Source (and target) images in a sample grid."""
    max_loss: float = field(default=1000.0, metadata=RESUMABLE)
    """A logged loss above this (in absolute value) stops the run as diverged."""
    tensorboard: bool = field(default=True, metadata=RESUMABLE)
    """Also write TensorBoard events under RUN/tb."""

    def validate(self) -> None:
        if self.steps < 1:
            raise Sim2RealError(f"steps: expected an integer >= 1, got {self.steps}")
        if self.pretrain_steps < 0:
            raise Sim2RealError(f"pretrain_steps: expected an integer >= 0, got {self.pretrain_steps}")
        if self.batch_size < 2:  # batch norm needs at least two samples per batch
            raise Sim2RealError(f"batch_size: expected an integer >= 2, got {self.batch_size}")
        for name in ("log_every", "sample_every", "checkpoint_every", "val_every", "sample_rows"):
            if getattr(self, name) < 1:
                raise Sim2RealError(f"{name}: expected an integer >= 1, got {getattr(self, name)}")


#: the shared speed section (:mod:`sim2real.engine.perf`)
DTNPerfConfig = PerfConfig


@dataclass
class DTNConfig:
    """The resolved configuration of a DTN run (saved as config.yaml and inside every checkpoint)."""

    model: DTNModelConfig = field(default_factory=DTNModelConfig)
    loss: DTNLossConfig = field(default_factory=DTNLossConfig)
    optim: DTNOptimConfig = field(default_factory=DTNOptimConfig)
    train: DTNTrainConfig = field(default_factory=DTNTrainConfig)
    perf: DTNPerfConfig = field(default_factory=DTNPerfConfig, metadata=RESUMABLE)
    select: SelectConfig = field(default_factory=SelectConfig)
    """Which checkpoint is best.pt: the labelled --val split (oracle) or a label-free validator (``--select``)."""
    pretrain_augment: AugmentConfig = field(default_factory=AugmentConfig)
    """Photometric augmentation of the source images while f is pretrained (train-pose's ``augment`` keys; off by
    default, as the paper). f-constancy compares f(x_s) with f(G(x_s)), an image in the target's colours: an f
    that never saw colour (pretrained on grey MNIST) gives no meaningful distance there. ``recolour_p`` shows f
    the source in random colours; still labelled source only, no target image (docs/adapt.md, DTN)."""
    task_augment: TaskAugmentConfig = field(default_factory=TaskAugmentConfig)
    """Photometric augmentation of T's training images (``domains``: ``source``, used when
    ``loss.task_source_weight`` > 0, and / or ``adapted``, G(x_s)); off by default, as the paper."""

    def validate(self) -> None:
        pose = self.model.task.pose_head
        if pose is None:
            pose = self.model.task.tower == "pose_mini"
        if not pose and (self.loss.pose_weight or self.loss.pretrain_pose_weight):
            raise Sim2RealError("loss.pose_weight / pretrain_pose_weight must be 0 when T has no pose head "
                                "(model.task.pose_head is off)")
        d = self.model.decoder.widths
        if d is not None and len(d) != len(self.model.encoder.widths):
            raise Sim2RealError(f"model.decoder.widths: expected {len(self.model.encoder.widths)} widths (one per "
                                f"stride-2 layer of model.encoder.widths), got {d}")
