"""Typed config of PixelDA (``sim2real adapt --method pixelda``). Shipped presets: ``sim2real/configs/pixelda-*.yaml``.

Sections (those of every trainer): ``model`` (G, D, T sizes), ``loss`` (weights), ``optim``, ``train`` (steps,
batch, logging), ``perf`` (speed settings that do not change the maths). Keys that ``--resume`` may change carry
the field metadata :data:`~sim2real.engine.run.RESUMABLE`. See ``docs/adapt.md`` for every key and for how the
paper's and the official code's values differ.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Literal

from sim2real.engine.run import RESUMABLE
from sim2real.engine.selection import SelectConfig
from sim2real.errors import Sim2RealError
from sim2real.train.augment import AugmentConfig, TaskAugmentConfig

#: ``run.json`` / checkpoint kind of a PixelDA (``sim2real adapt``) run.
KIND = "pixelda"


@dataclass
class GeneratorConfig:
    """G(x, z) (paper Sec. 3.1; official ``resnet_generator``)."""

    noise_dim: int = 10
    """Dimension of z ~ U(-1, 1); projected to one extra H x W input channel. 0 disables the noise channel."""
    filters: int = 64
    """Width of the residual trunk."""
    blocks: int = 6
    """Number of residual blocks."""
    kernel_size: int = 3
    """Trunk kernel size."""
    padding: Literal["zeros", "reflect", "replicate"] = "zeros"
    """Conv padding of G: ``zeros`` as the official code (TF 'SAME'), or ``reflect`` / ``replicate``
    (against a saturated bright frame G can learn with zero padding on smooth targets; docs/adapt.md)."""

    def validate(self) -> None:
        if self.noise_dim < 0 or self.filters < 1 or self.blocks < 0 or self.kernel_size < 1:
            raise Sim2RealError("expected noise_dim >= 0, filters >= 1, blocks >= 0, kernel_size >= 1")


@dataclass
class DiscriminatorConfig:
    """D(x) (official ``predict_domain``)."""

    filters: int = 64
    """Channels of the first conv; doubled (``filter_factor``) at each stride-2 layer."""
    filter_factor: float = 2.0
    """Channel multiplier per stride-2 layer."""
    first_stride: int = 1
    """Stride of the first conv (1 in the paper)."""
    final_size: int = 4
    """Stride-2 layers are added until the feature map is at most this size."""
    kernel_size: int = 3
    """Conv kernel size."""
    dropout_keep: float = 0.9
    """Keep probability of the dropout after each hidden layer (1 disables)."""
    noise_std: float = 0.2
    """Std of the Gaussian noise added to every hidden layer (0 disables)."""
    image_noise: bool = False
    """Also add that noise to D's input images."""
    leak: float = 0.2
    """LeakyReLU slope."""

    def validate(self) -> None:
        if not 0 < self.dropout_keep <= 1:
            raise Sim2RealError(f"dropout_keep: expected a value in (0, 1], got {self.dropout_keep}")
        if self.noise_std < 0 or self.filters < 1 or self.final_size < 1 or self.first_stride < 1:
            raise Sim2RealError("expected noise_std >= 0, filters >= 1, final_size >= 1, first_stride >= 1")


@dataclass
class TaskConfig:
    """T(x, domain) (official task towers; :class:`sim2real.models.task.TaskNet`)."""

    tower: Literal["pose_mini", "digits"] = "pose_mini"
    """``pose_mini`` (LineMod: classes + quaternion) or ``digits`` (MNIST-M: classes only)."""
    conv_widths: list[int] | None = None
    """Conv block widths (default per tower: pose_mini [32, 64], digits [32, 48])."""
    fc_widths: list[int] | None = None
    """Hidden FC widths (default per tower: pose_mini [128], digits [100, 100])."""
    dropout: float | None = None
    """Dropout after the hidden FC layers (default per tower: 0.5 / 0)."""
    pose_head: bool | None = None
    """Quaternion head (default per tower: on for pose_mini, off for digits)."""
    quat_head: Literal["per_class", "shared"] = "per_class"
    """``per_class``: one quaternion per class (the true class's in training, the predicted class's at test);
    ``shared``: one for all classes (official pose_mini). See :mod:`sim2real.models.quat_head`."""
    quat_activation: Literal["none", "tanh"] = "none"
    """Activation before the quaternion's L2 normalisation (official: tanh)."""
    private_layers: bool = True
    """Separate first conv block(s) for source vs adapted/target images (official code)."""
    num_private_layers: int = 1
    """How many leading conv blocks are private."""
    batch_norm: bool = False
    """Batch norm after each convolution of T (not in the official towers; each domain's batch is normalised by
    its own statistics in training, and the running averages over all of them are used in evaluation)."""


@dataclass
class ModelConfig:
    generator: GeneratorConfig = field(default_factory=GeneratorConfig)
    discriminator: DiscriminatorConfig = field(default_factory=DiscriminatorConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    init_std: float = 0.02
    """G and D weights ~ N(0, init_std) (official ``normal_init_std``); T keeps PyTorch's default init."""
    use_depth: bool = False
    """RGB-D input (4 channels: the paper's LineMod runs); both source and target need a depth dataset."""
    image_size: list[int] | None = None
    """Expected (H, W) of the source images (null: any); a source of another size is a one-line error."""

    def validate(self) -> None:
        if self.image_size is not None and (len(self.image_size) != 2 or min(self.image_size) < 4):
            raise Sim2RealError(f"image_size: expected [H, W] with H, W >= 4, got {self.image_size}")


@dataclass
class LossConfig:
    """Loss weights. D step: ``d_weight * L_gan(D) + L_task(T)``; G step:
    ``g_adv_weight * L_gan(G) + content_weight * L_c + task_in_g_weight * L_task(adapted)``, where
    ``L_task = task_source_weight * CE(T(x_s)) + task_adapted_weight * CE(T(G(x_s, z)))
    + pose_source_weight * P(T(x_s)) + pose_adapted_weight * P(T(G(x_s, z)))``."""

    gan: Literal["nsgan", "lsgan"] = "nsgan"
    """GAN loss on D's logits: non-saturating (paper/official) or least squares."""
    d_weight: float = 1.0
    """alpha on the D side (official ``domain_loss_weight``)."""
    g_adv_weight: float = 1.0
    """Weight of G's adversarial loss (official ``style_transfer_loss_weight``)."""
    task_source_weight: float = 1.0
    """Cross-entropy on T(x_s) (official ``source_task_loss_weight``)."""
    task_adapted_weight: float = 1.0
    """Cross-entropy on T(G(x_s, z)) (official ``transferred_task_loss_weight``)."""
    pose_source_weight: float = 0.25
    """Pose loss on T(x_s) (official ``source_pose_weight`` = 0.125 * 2)."""
    pose_adapted_weight: float = 0.125
    """Pose loss on T(G(x_s, z)) (official ``transferred_pose_weight``)."""
    task_target_weight: float = 1.0
    """With ``adapt --target-labelled FEW.h5`` only: cross-entropy on T(x_tl, "target") for the few labelled target
    images (paper Sec. 5.4 / Table 6, "semi-supervised"); ignored without the file."""
    pose_target_weight: float = 1.0
    """With ``--target-labelled`` only: pose loss on T(x_tl) (when T has a pose head and the file has poses)."""
    pose_eps: float = 1e-4
    """eps in log(eps + 1 - |q . q_hat|) (official 1e-4)."""
    symmetric_pose: bool = True
    """Symmetry-aware pose loss: minimum over each object's symmetry group (the source file's ``symmetries``;
    unannotated objects are asymmetric). The official code knows no symmetries (its LineMod objects have none)."""
    sym_step_deg: float = 5.0
    """Discretisation step (degrees) of continuous symmetries in the pose loss."""
    task_in_g_weight: float = 1.0
    """Weight of the adapted-image task loss in the G step (official ``task_loss_in_g_weight``); 0 turns it off."""
    content: Literal["masked_pmse", "pmse", "none"] = "masked_pmse"
    """Content-similarity loss L_c: PMSE on the z-buffer foreground (needs the source ``mask``), unmasked, or none."""
    content_weight: float = 1.0
    """gamma, weight of L_c in the G step."""
    pmse_variant: Literal["paper", "official"] = "paper"
    """``paper``: batch mean of Eq. 4; ``official``: 2x and summed over the batch (TF ``mean_pairwise_squared_error``)."""


@dataclass
class OptimConfig:
    lr: float = 1e-3
    """Adam learning rate for both optimisers."""
    beta1: float = 0.5
    """Adam beta1 (DCGAN's 0.5)."""
    beta2: float = 0.999
    lr_schedule: Literal["staircase", "cosine"] = "staircase"
    """``staircase`` (official): lr * lr_decay_rate ** (step // lr_decay_steps); ``cosine``: from lr to 0 over
    ``train.steps`` (:mod:`sim2real.engine.schedule`), for runs far shorter than the paper's 500k steps."""
    lr_decay_rate: float = 0.95
    """Staircase decay: lr * rate ** (step // lr_decay_steps)."""
    lr_decay_steps: int = 20000
    clip_grad_norm: float = 5.0
    """Gradient-norm clipping threshold; 0 disables."""
    clip_mode: Literal["per_param", "global"] = "per_param"
    """``per_param``: each tensor clipped separately (official TF-slim); ``global``: one norm over all."""
    task_weight_decay: float = 0.0
    """L2 weight decay on T (official: 1e-5 as a regulariser term)."""
    task_lr: float | None = None
    """Adam learning rate of T (its own parameter group in D's optimiser, on the same schedule); null: ``lr``, as
    the official code. T is not adversarial: a short CPU run can afford it a higher rate than the GAN's."""
    task_beta1: float | None = None
    """Adam beta1 of T; null: ``beta1`` (DCGAN's 0.5, chosen for the GAN; plain Adam uses 0.9)."""

    def validate(self) -> None:
        if self.lr <= 0 or self.lr_decay_steps < 1 or not 0 < self.lr_decay_rate <= 1 or self.clip_grad_norm < 0:
            raise Sim2RealError("expected lr > 0, lr_decay_steps >= 1, 0 < lr_decay_rate <= 1, clip_grad_norm >= 0")
        if self.task_lr is not None and self.task_lr <= 0:
            raise Sim2RealError(f"optim.task_lr: expected a number > 0 or null, got {self.task_lr}")
        if self.task_beta1 is not None and not 0 <= self.task_beta1 < 1:
            raise Sim2RealError(f"optim.task_beta1: expected a number in [0, 1) or null, got {self.task_beta1}")


@dataclass
class TrainConfig:
    steps: int = field(default=200000, metadata=RESUMABLE)
    """Total number of (D step, G step) pairs."""
    batch_size: int = 32
    """Images per domain per step (a source batch and a target batch)."""
    seed: int = 0
    """Seeds the models, the batch streams and the noise; recorded in run.json and checkpoints."""
    log_every: int = field(default=100, metadata=RESUMABLE)
    """Steps between metrics.jsonl / TensorBoard entries (and the NaN / divergence check)."""
    sample_every: int = field(default=1000, metadata=RESUMABLE)
    """Steps between sample grids (samples/step_XXXXXXX.png)."""
    checkpoint_every: int = field(default=2000, metadata=RESUMABLE)
    """Steps between checkpoints (also written at the end and on Ctrl-C)."""
    keep_checkpoints: int = field(default=3, metadata=RESUMABLE)
    """Numbered checkpoints kept (older ones deleted; last.pt and best.pt always kept). 0 keeps all."""
    val_every: int = field(default=1000, metadata=RESUMABLE)
    """Steps between evaluations of T on the labelled target validation set (``--val``)."""
    sample_rows: int = 8
    """Source images in a sample grid."""
    sample_draws: int = 3
    """Noise draws z per source image in a sample grid."""
    max_loss: float = field(default=1000.0, metadata=RESUMABLE)
    """A logged loss above this (in absolute value) stops the run as diverged."""
    tensorboard: bool = field(default=True, metadata=RESUMABLE)
    """Also write TensorBoard events under RUN/tb."""
    ema_decay: float = 0.0
    """Keep an exponential moving average of T's weights with this decay (e.g. 0.999; 0: off;
    :mod:`sim2real.engine.ema`): validation, ``best.pt`` selection and ``evaluate`` then use the averaged T."""
    source_classes: list[str] | None = None
    """Adapt on the source images of these classes only (the paper's unseen-class study, Table 4); null: all.
    The class list stays the source's: ``export`` adapts every class, and evaluate reports seen / unseen apart."""

    def validate(self) -> None:
        if self.source_classes is not None and (not self.source_classes or len(set(self.source_classes)) != len(self.source_classes)):
            raise Sim2RealError(f"train.source_classes: expected a non-empty list of distinct class names, got {self.source_classes}")
        if self.steps < 1:
            raise Sim2RealError(f"steps: expected an integer >= 1, got {self.steps}")
        if not 0.0 <= self.ema_decay < 1.0:
            raise Sim2RealError(f"train.ema_decay: expected a number in [0, 1) (0: off), got {self.ema_decay}")
        if self.batch_size < 2:  # batch norm needs at least two samples per batch
            raise Sim2RealError(f"batch_size: expected an integer >= 2, got {self.batch_size}")
        for name in ("log_every", "sample_every", "checkpoint_every", "val_every", "sample_rows", "sample_draws"):
            if getattr(self, name) < 1:
                raise Sim2RealError(f"{name}: expected an integer >= 1, got {getattr(self, name)}")


@dataclass
class PerfConfig:
    """Speed settings: they change how fast a step runs, not what it computes."""

    device: str = "auto"
    """``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:N``."""
    amp: Literal["auto", "bf16", "fp32"] = "auto"
    """Mixed precision: ``auto`` = bf16 autocast on CUDA, fp32 on the CPU."""
    channels_last: bool | None = None
    """NHWC memory format; null = on (faster on the CPU too, see docs/adapt.md)."""
    data_on_device: bool | None = None
    """Keep the datasets on the GPU; null = when they fit in a quarter of the free GPU memory."""
    reuse_fake: bool = True
    """Run G once per step: the D step uses G(x_s, z) detached, the G step back-propagates through the same
    tensor (G's weights do not change in between, so this is exactly the same computation)."""
    freeze_inactive: bool = True
    """Switch off parameter gradients of D and T during the G step (only G is updated there)."""
    foreach: bool = True
    """Batched optimiser / clipping kernels (fused Adam on CUDA)."""


@dataclass
class SelfTrainConfig:
    """T's self-training on the unlabelled target images (not in the paper; off by default): the averaged T
    (``train.ema_decay``, the teacher) labels each target batch, and T learns the labels it is confident of on a
    photometrically augmented copy (FixMatch's confidence-masked pseudo-labels, Sohn et al. 2020, with a mean
    teacher, Tarvainen & Valpola 2017). Term in the D(+T) update: ``weight * mean_i[ 1(p_i >= threshold) *
    CE(T(aug(x_t,i), "target"), argmax p_i) ]`` where ``p_i`` is the teacher's softmax on the plain ``x_t,i``."""

    weight: float = 0.0
    """Weight of the term; 0 turns self-training off."""
    threshold: float = 0.9
    """Teacher confidence (max softmax probability) at or above which a target image's pseudo-label is used."""
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    """The student's photometric augmentation of the target images (train-pose's ``augment`` keys; off by default:
    both see them plain, and the term still teaches T the averaged T's labels); the teacher always sees them plain."""

    def validate(self) -> None:
        if self.weight < 0:
            raise Sim2RealError(f"self_train.weight: expected a number >= 0 (0: off), got {self.weight}")
        if not 0.0 <= self.threshold < 1.0:
            raise Sim2RealError(f"self_train.threshold: expected a probability in [0, 1), got {self.threshold}")


@dataclass
class PixelDAConfig:
    """The resolved configuration of a PixelDA run (saved as config.yaml and inside every checkpoint)."""

    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    perf: PerfConfig = field(default_factory=PerfConfig, metadata=RESUMABLE)
    select: SelectConfig = field(default_factory=SelectConfig)
    """Which checkpoint is best.pt: the labelled --val split (oracle) or a label-free validator (``--select``)."""
    task_augment: TaskAugmentConfig = field(default_factory=TaskAugmentConfig)
    """Photometric augmentation of T's training images in the D(+T) update (train-pose's ``augment`` keys, plus
    ``domains``: ``source`` and / or ``adapted``); off by default, as the paper. G, D and T's term in G's loss see
    the images as they are (docs/adapt.md)."""
    self_train: SelfTrainConfig = field(default_factory=SelfTrainConfig)
    """T's self-training on the unlabelled target images with the averaged T's confident labels (off by default;
    needs ``train.ema_decay`` > 0)."""

    def validate(self) -> None:
        if self.self_train.weight > 0 and self.train.ema_decay <= 0:
            raise Sim2RealError(f"self_train.weight: {self.self_train.weight:g} needs train.ema_decay > 0 (the averaged "
                                "T labels the target images), got ema_decay 0")
        pose = self.model.task.pose_head
        if pose is None:
            pose = self.model.task.tower == "pose_mini"
        if not pose and (self.loss.pose_source_weight or self.loss.pose_adapted_weight):
            raise Sim2RealError("loss.pose_source_weight / pose_adapted_weight must be 0 when T has no pose head "
                                "(model.task.pose_head is off)")
