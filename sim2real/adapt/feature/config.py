"""Typed configs of the feature-level domain-adaptation baselines (``sim2real adapt --method dann|coral|mmd``).

One shape for the three (:class:`FeatureDAConfig`), one subclass per method (:class:`DANNConfig`,
:class:`CORALConfig`, :class:`MMDConfig`): the class fixes the method, its run kind and the method-only keys
(DANN's domain classifier and gradient-reversal schedule, MMD's kernels). Shipped presets:
``sim2real/configs/{dann,coral,mmd}-demo.yaml`` and ``feature-tiny.yaml`` (tests).

Sections are those of every trainer: ``model`` (T, and DANN's domain classifier), ``loss``, ``optim``, ``train``,
``perf``. ``model.task`` is PixelDA's :class:`~sim2real.adapt.pixelda.config.TaskConfig`: the task network is the
same :class:`~sim2real.models.task.TaskNet`, built by :func:`sim2real.models.factory.build_task`, so a
comparison with PixelDA's T is one of losses, not of networks. See ``docs/adapt.md``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar, Literal

from sim2real.adapt.pixelda.config import TaskConfig
from sim2real.engine.perf import PerfConfig
from sim2real.engine.run import RESUMABLE
from sim2real.engine.selection import SelectConfig
from sim2real.errors import Sim2RealError

#: ``run.json`` / checkpoint kinds of the feature-level methods (one per method, so ``method_of_kind`` works).
DANN_KIND = "dann"
CORAL_KIND = "coral"
MMD_KIND = "mmd"
KINDS: tuple[str, ...] = (DANN_KIND, CORAL_KIND, MMD_KIND)


@dataclass
class DomainClassifierConfig:
    """DANN's domain classifier: an MLP on T's features -> one logit (source 0, target 1)."""

    hidden: list[int] = field(default_factory=lambda: [64, 64])
    """Hidden layer widths (ReLU after each); Ganin et al. 2016 used 100 (digits) to 1024 (Office) units."""

    def validate(self) -> None:
        if any(w < 1 for w in self.hidden):
            raise Sim2RealError(f"hidden: expected widths >= 1, got {self.hidden}")


@dataclass
class FeatureModelConfig:
    task: TaskConfig = field(default_factory=lambda: TaskConfig(private_layers=False))
    """T, as PixelDA's ``model.task`` (same class and keys). Default without private layers: the three methods
    align the features of ONE shared encoder (with private layers the target branch would get no task loss)."""
    use_depth: bool = False
    """RGB-D input (4 channels); source and target both need a depth dataset."""
    image_size: list[int] | None = None
    """Expected (H, W) of the source images (null: any); a source of another size is a one-line error."""

    def validate(self) -> None:
        if self.image_size is not None and (len(self.image_size) != 2 or min(self.image_size) < 4):
            raise Sim2RealError(f"image_size: expected [H, W] with H, W >= 4, got {self.image_size}")


@dataclass
class DANNModelConfig(FeatureModelConfig):
    domain_classifier: DomainClassifierConfig = field(default_factory=DomainClassifierConfig)
    """The domain classifier behind the gradient-reversal layer."""


@dataclass
class FeatureLossConfig:
    """``total = task_source_weight * CE(T(x_s)) + pose_source_weight * P(T(x_s)) + align_weight * L_align(f_s, f_t)``
    with ``f = T's penultimate features`` (:meth:`sim2real.models.task.TaskNet.features`) of the source and the
    target batch; ``L_align`` is the method's (DANN: domain BCE through gradient reversal; CORAL; MMD^2)."""

    task_source_weight: float = 1.0
    """Cross-entropy on T(x_s) (the only labelled images)."""
    pose_source_weight: float = 1.0
    """Quaternion pose loss on T(x_s) (as PixelDA's, :func:`sim2real.losses.quat_log_loss`); 0 without a pose head."""
    pose_eps: float = 1e-4
    """eps in log(eps + 1 - |q . q_hat|)."""
    symmetric_pose: bool = True
    """Symmetry-aware pose loss (minimum over each object's symmetry group from the source file)."""
    sym_step_deg: float = 5.0
    """Discretisation step (degrees) of continuous symmetries in the pose loss."""
    align_weight: float = 1.0
    """Weight of the alignment term (DANN: of the domain loss, for D and, reversed, for T)."""
    align_warmup: bool = False
    """True: the alignment weight ramps up as DANN's lambda, ``align_weight * (2 / (1 + exp(-10 p)) - 1)``,
    ``p = step / train.steps`` (or ``train.schedule_steps``): 0 at the first step, so T learns the labelled source
    before its features are pulled together. Without it MMD collapsed T's features at the start on glyphs ->
    MNIST (cross-entropy stuck at ln 10; README Results). For DANN it multiplies the domain loss on top of the
    reversal's own schedule."""

    def validate(self) -> None:
        if self.align_weight < 0 or self.task_source_weight < 0 or self.pose_source_weight < 0:
            raise Sim2RealError("expected align_weight, task_source_weight, pose_source_weight >= 0")


@dataclass
class DANNLossConfig(FeatureLossConfig):
    grl_gamma: float = 10.0
    """Gradient-reversal coefficient schedule ``lambda(p) = 2 / (1 + exp(-gamma p)) - 1``, p = step / train.steps
    (or ``train.schedule_steps``)
    (Ganin et al. JMLR 2016, Sec. 5.2.2: gamma = 10): 0 at the start, -> 1 at the end."""
    grl_schedule: bool = True
    """False: a constant lambda = 1 from the first step."""


@dataclass
class MMDLossConfig(FeatureLossConfig):
    kernel_multipliers: list[float] = field(default_factory=lambda: [0.25, 0.5, 1.0, 2.0, 4.0])
    """Gaussian kernels ``exp(-||x - y||^2 / (m * h))``, one per multiplier m, averaged (DAN's multi-kernel
    MMD with equal kernel weights; Long et al. 2015 used bandwidths 2^k times the median)."""
    bandwidth: float | None = None
    """h: null = the median pairwise squared distance of the joint (source + target) batch, detached (the median
    heuristic); a number = that fixed h."""

    def validate(self) -> None:
        super().validate()
        if not self.kernel_multipliers or min(self.kernel_multipliers) <= 0:
            raise Sim2RealError(f"kernel_multipliers: expected positive numbers, got {self.kernel_multipliers}")
        if self.bandwidth is not None and self.bandwidth <= 0:
            raise Sim2RealError(f"bandwidth: expected a number > 0 or null, got {self.bandwidth}")


@dataclass
class FeatureOptimConfig:
    lr: float = 1e-3
    """Adam learning rate (one optimiser: T, plus DANN's domain classifier)."""
    beta1: float = 0.9
    beta2: float = 0.999
    lr_schedule: Literal["staircase", "anneal", "cosine"] = "staircase"
    """``staircase``: lr * lr_decay_rate ** (step // lr_decay_steps) (PixelDA's); ``anneal``: Ganin et al.'s
    lr / (1 + 10 p) ** 0.75, p = step / train.steps (or ``train.schedule_steps``); ``cosine``: from lr to 0 over
    the same horizon (:mod:`sim2real.engine.schedule`)."""
    lr_decay_rate: float = 0.95
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


@dataclass
class FeatureTrainConfig:
    steps: int = field(default=20000, metadata=RESUMABLE)
    """Total number of steps (one source and one target batch each)."""
    batch_size: int = 32
    """Images per domain per step."""
    seed: int = 0
    """Seeds the models and the batch streams; recorded in run.json and checkpoints."""
    log_every: int = field(default=100, metadata=RESUMABLE)
    val_every: int = field(default=1000, metadata=RESUMABLE)
    """Steps between evaluations of T on the labelled target validation set (``--val``)."""
    schedule_steps: int | None = None
    """The horizon of the progress p = step / schedule_steps that DANN's lambda and the ``anneal`` learning rate
    follow; null: ``train.steps``. A resume that changes ``train.steps`` changes those schedules unless this is set."""
    checkpoint_every: int = field(default=2000, metadata=RESUMABLE)
    keep_checkpoints: int = field(default=3, metadata=RESUMABLE)
    """Numbered checkpoints kept (last.pt and best.pt always kept). 0 keeps all."""
    max_loss: float = field(default=1000.0, metadata=RESUMABLE)
    """A logged loss above this (in absolute value) stops the run as diverged."""
    tensorboard: bool = field(default=True, metadata=RESUMABLE)

    def validate(self) -> None:
        if self.steps < 1:
            raise Sim2RealError(f"steps: expected an integer >= 1, got {self.steps}")
        if self.batch_size < 2:  # covariances and MMD need at least two samples per domain
            raise Sim2RealError(f"batch_size: expected an integer >= 2, got {self.batch_size}")
        if self.schedule_steps is not None and self.schedule_steps < 1:
            raise Sim2RealError(f"schedule_steps: expected an integer >= 1 or null, got {self.schedule_steps}")
        for name in ("log_every", "checkpoint_every", "val_every"):
            if getattr(self, name) < 1:
                raise Sim2RealError(f"{name}: expected an integer >= 1, got {getattr(self, name)}")


#: the shared speed section (:mod:`sim2real.engine.perf`)
FeaturePerfConfig = PerfConfig


@dataclass
class FeatureDAConfig:
    """The shape every feature-level method's config has (saved as config.yaml and inside every checkpoint)."""

    #: the ``--method`` name and ``run.json`` kind (set by each subclass)
    METHOD: ClassVar[str] = ""

    model: FeatureModelConfig = field(default_factory=FeatureModelConfig)
    loss: FeatureLossConfig = field(default_factory=FeatureLossConfig)
    optim: FeatureOptimConfig = field(default_factory=FeatureOptimConfig)
    train: FeatureTrainConfig = field(default_factory=FeatureTrainConfig)
    perf: FeaturePerfConfig = field(default_factory=FeaturePerfConfig, metadata=RESUMABLE)
    select: SelectConfig = field(default_factory=SelectConfig)
    """Which checkpoint is best.pt: the labelled --val split (oracle) or a label-free validator (``--select``)."""

    def validate(self) -> None:
        pose = self.model.task.pose_head
        if pose is None:
            pose = self.model.task.tower == "pose_mini"
        if not pose and self.loss.pose_source_weight:
            raise Sim2RealError("loss.pose_source_weight must be 0 when T has no pose head (model.task.pose_head is off)")


@dataclass
class DANNConfig(FeatureDAConfig):
    """DANN (Ganin & Lempitsky, ICML 2015; Ganin et al., JMLR 2016)."""

    METHOD: ClassVar[str] = DANN_KIND

    model: DANNModelConfig = field(default_factory=DANNModelConfig)
    loss: DANNLossConfig = field(default_factory=DANNLossConfig)


@dataclass
class CORALConfig(FeatureDAConfig):
    """Deep CORAL (Sun & Saenko, ECCV 2016 workshops)."""

    METHOD: ClassVar[str] = CORAL_KIND


@dataclass
class MMDConfig(FeatureDAConfig):
    """Multi-kernel MMD, as DAN (Long et al., ICML 2015)."""

    METHOD: ClassVar[str] = MMD_KIND

    loss: MMDLossConfig = field(default_factory=MMDLossConfig)


#: kind -> config class (what :mod:`sim2real.models.loading` reads a feature-DA checkpoint's config with)
CONFIGS: dict[str, type[FeatureDAConfig]] = {DANN_KIND: DANNConfig, CORAL_KIND: CORALConfig, MMD_KIND: MMDConfig}
