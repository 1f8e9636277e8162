"""Typed config of I2I Adapt (Murez et al., CVPR 2018; ``sim2real adapt --method i2i``).

Sections are those of every trainer: ``model`` (f, g_x / g_y, h, the latent and image discriminators), ``loss``
(the six lambdas of the paper, the pose term, the gradient penalty), ``optim``, ``train``, ``perf``. Keys that
``--resume`` may change carry the field metadata :data:`~sim2real.engine.run.RESUMABLE`. Shipped presets:
``sim2real/configs/i2i-demo.yaml`` (32x32 bundled objects, CPU-sized), ``i2i-digits.yaml`` (MNIST -> MNIST-M-style,
the paper's digit weights and widths), ``i2i-tiny.yaml`` (tests). See ``docs/adapt.md``.

The dataclass defaults are the paper's digit setting (REFERENCE: encoder 4 stride-2 conv4x4 64-64-128-128,
decoder 512-256-128-C, feature D 500-500-1, image D 64-128-256-1; weights c 1.0, z 0.2, tr 0.02, id 0.1,
cyc 0.05, trc 0).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from sim2real.engine.perf import PerfConfig
from sim2real.engine.run import RESUMABLE
from sim2real.engine.selection import SelectConfig
from sim2real.errors import Sim2RealError

#: ``run.json`` / checkpoint kind of an I2I Adapt run.
KIND = "i2i"


def _widths(name: str, widths: list[int], min_len: int = 1) -> None:
    if len(widths) < min_len or any(int(w) < 1 for w in widths):
        raise Sim2RealError(f"{name}: expected at least {min_len} widths >= 1, got {widths}")


@dataclass
class EncoderConfig:
    """f: the encoder shared by both domains (all weights shared), image -> latent map Z."""

    widths: list[int] = field(default_factory=lambda: [64, 64, 128, 128])
    """Channels of the stride-2 conv4x4 + BN + ReLU layers (paper digits: 64, 64, 128, 128). Each halves H and W:
    Z is ``(widths[-1], H / 2^n, W / 2^n)``; H and W must be divisible by 2^n (n = the number of layers)."""


@dataclass
class DecoderConfig:
    """g_x (to the source domain) and g_y (to the target domain): Z -> image, transposed convs mirroring f."""

    widths: list[int] = field(default_factory=lambda: [512, 256, 128])
    """Channels of the hidden stride-2 transposed conv4x4 + BN + ReLU layers; a last stride-2 transposed conv4x4 to
    the image channels + tanh follows (paper digits: 512, 256, 128, C). Needs one width fewer than the encoder
    has layers, so the output has the input's size."""
    shared_layers: int = 1
    """How many leading hidden layers g_x and g_y share (the paper shares the decoders' first layers); the rest,
    and the output layer, are per domain."""


@dataclass
class ClassifierConfig:
    """h: the classifier on the flattened latent Z (class logits and, with a pose head, per-class quaternions)."""

    hidden: list[int] = field(default_factory=list)
    """Hidden FC widths (ReLU after each) before the heads; [] = linear heads on Z."""
    dropout: float = 0.0
    """Dropout before the heads (training mode only)."""
    pose_head: bool = True
    """Quaternion head (the project's :class:`~sim2real.models.quat_head.QuatHead`); off for digits."""
    quat_head: Literal["per_class", "shared"] = "per_class"
    """``per_class``: one quaternion per class (the true class's in training, the predicted class's at test)."""
    quat_activation: Literal["none", "tanh"] = "none"
    """Activation before the quaternion's L2 normalisation."""


@dataclass
class LatentDiscriminatorConfig:
    """D_z: an MLP on the flattened latent Z -> one score (LSGAN: 1 = source latent, 0 = target latent)."""

    hidden: list[int] = field(default_factory=lambda: [500, 500])
    """Hidden widths (paper: 3 linear layers 500-500-1)."""
    leak: float = 0.2
    """LeakyReLU slope."""


@dataclass
class ImageDiscriminatorConfig:
    """D_x (source domain) and D_y (target domain): WGAN critics on images, one per domain, same shape."""

    widths: list[int] = field(default_factory=lambda: [64, 128, 256])
    """Channels of the hidden stride-2 conv4x4 + InstanceNorm + LeakyReLU layers (the first without norm); a last
    stride-2 conv4x4 to one channel follows (paper: 64, 128, 256, 1). The critic value of an image is the mean of
    that last map."""
    leak: float = 0.2
    """LeakyReLU slope."""


@dataclass
class I2IModelConfig:
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    decoder: DecoderConfig = field(default_factory=DecoderConfig)
    classifier: ClassifierConfig = field(default_factory=ClassifierConfig)
    latent_discriminator: LatentDiscriminatorConfig = field(default_factory=LatentDiscriminatorConfig)
    image_discriminator: ImageDiscriminatorConfig = field(default_factory=ImageDiscriminatorConfig)
    init_std: float = 0.02
    """Conv and linear weights ~ N(0, init_std), biases 0 (DCGAN habit); 0 keeps PyTorch's default init."""
    use_depth: bool = False
    """RGB-D input (4 channels); source and target both need a depth dataset."""
    image_size: list[int] | None = None
    """Expected (H, W) of the source images (null: any); a source of another size is a one-line error."""

    def validate(self) -> None:
        _widths("encoder.widths", self.encoder.widths)
        _widths("decoder.widths", self.decoder.widths, 0)
        _widths("latent_discriminator.hidden", self.latent_discriminator.hidden, 0)
        _widths("image_discriminator.widths", self.image_discriminator.widths)
        _widths("classifier.hidden", self.classifier.hidden, 0)
        if len(self.decoder.widths) != len(self.encoder.widths) - 1:
            raise Sim2RealError(f"decoder.widths: expected {len(self.encoder.widths) - 1} widths (one fewer than "
                                f"encoder.widths, so the decoders give back the input size), got {self.decoder.widths}")
        if not 0 <= self.decoder.shared_layers <= len(self.decoder.widths):
            raise Sim2RealError(f"decoder.shared_layers: expected 0..{len(self.decoder.widths)}, "
                                f"got {self.decoder.shared_layers}")
        if not 0 <= self.classifier.dropout < 1 or self.init_std < 0:
            raise Sim2RealError("expected 0 <= classifier.dropout < 1 and init_std >= 0")
        if self.image_size is not None and (len(self.image_size) != 2 or min(self.image_size) < 4):
            raise Sim2RealError(f"image_size: expected [H, W] with H, W >= 4, got {self.image_size}")


@dataclass
class I2ILossConfig:
    """The paper's objective (Murez et al. 2018, Sec. 3), with ``task(h(.)) = CE + pose_weight * P`` (P the quaternion
    log loss on the true class's quaternion, symmetry-aware):

    ``c_weight * task(h(f(x_s))) + z_weight * L_z + tr_weight * L_tr + id_weight * L_id + cyc_weight * L_cyc
    + trc_weight * task(h(f(g_y(f(x_s)))))``

    L_z: LSGAN on D_z(f(x)) (D_z: source 1, target 0; the encoder's term ``(D_z(f(x_t)) - 1)^2`` on target latents
    only); L_tr: WGAN-GP critics D_y (real x_t vs g_y(f(x_s))) and D_x (real x_s vs g_x(f(x_t))); L_id:
    ``|g_x(f(x_s)) - x_s| + |g_y(f(x_t)) - x_t|``; L_cyc: ``|g_x(f(g_y(f(x_s)))) - x_s| + |g_y(f(g_x(f(x_t)))) - x_t|``
    (L1 means over pixels). The discriminators' own losses carry the same lambda as their term.
    Defaults: the paper's digit weights."""

    c_weight: float = 1.0
    """lambda_c: task loss on the source latents h(f(x_s)) (paper digits 1.0)."""
    z_weight: float = 0.2
    """lambda_z: latent-space LSGAN (paper digits 0.2)."""
    tr_weight: float = 0.02
    """lambda_tr: the image-space translation critics, WGAN-GP (paper digits 0.02)."""
    id_weight: float = 0.1
    """lambda_id: L1 reconstruction (identity) g_x(f(x_s)) ~ x_s, g_y(f(x_t)) ~ x_t (paper digits 0.1)."""
    cyc_weight: float = 0.05
    """lambda_cyc: L1 cycle consistency through the other domain (paper digits 0.05)."""
    trc_weight: float = 0.0
    """lambda_trc: task loss on the translated source images h(f(g_y(f(x_s)))) (semantic consistency; paper digits 0)."""
    pose_weight: float = 1.0
    """Weight of the quaternion pose loss inside each task loss (as the feature baselines' ``pose_source_weight``);
    0 without a pose head."""
    pose_eps: float = 1e-4
    """eps in log(eps + 1 - |q . q_hat|)."""
    symmetric_pose: bool = True
    """Symmetry-aware pose loss (minimum over each object's symmetry group from the source file)."""
    sym_step_deg: float = 5.0
    """Discretisation step (degrees) of continuous symmetries in the pose loss."""
    gp_weight: float = 10.0
    """WGAN-GP penalty weight ``E[(||grad_x D(x_hat)||_2 - 1)^2]`` on random interpolates of real and translated
    images (Gulrajani et al. 2017: 10)."""

    def validate(self) -> None:
        names = ("c_weight", "z_weight", "tr_weight", "id_weight", "cyc_weight", "trc_weight", "pose_weight", "gp_weight")
        bad = [n for n in names if getattr(self, n) < 0]
        if bad:
            raise Sim2RealError(f"{bad[0]}: expected a weight >= 0, got {getattr(self, bad[0])}")


@dataclass
class I2IOptimConfig:
    lr: float = 2e-4
    """Adam learning rate of both optimisers (f, g_x, g_y, h; and the three discriminators)."""
    beta1: float = 0.5
    """Adam beta1 (DCGAN's 0.5)."""
    beta2: float = 0.999
    lr_decay_rate: float = 0.95
    """Staircase decay: lr * rate ** (step // lr_decay_steps)."""
    lr_decay_steps: int = 20000
    clip_grad_norm: float = 5.0
    """Gradient-norm clipping threshold; 0 disables."""
    clip_mode: Literal["per_param", "global"] = "per_param"
    """``per_param``: each tensor clipped separately (as PixelDA's); ``global``: one norm over all."""

    def validate(self) -> None:
        if self.lr <= 0 or self.lr_decay_steps < 1 or not 0 < self.lr_decay_rate <= 1 or self.clip_grad_norm < 0:
            raise Sim2RealError("expected lr > 0, lr_decay_steps >= 1, 0 < lr_decay_rate <= 1, clip_grad_norm >= 0")


@dataclass
class I2ITrainConfig:
    steps: int = field(default=100000, metadata=RESUMABLE)
    """Total number of steps (one discriminator update, then one encoder / decoders / classifier update)."""
    batch_size: int = 32
    """Images per domain per step."""
    seed: int = 0
    """Seeds the models, the batch streams and the gradient-penalty interpolation; recorded in run.json and checkpoints."""
    log_every: int = field(default=100, metadata=RESUMABLE)
    """Steps between metrics.jsonl / TensorBoard entries (and the NaN / divergence check)."""
    val_every: int = field(default=1000, metadata=RESUMABLE)
    """Steps between evaluations of h o f on the labelled target validation set (``--val``)."""
    sample_every: int = field(default=1000, metadata=RESUMABLE)
    """Steps between sample grids (samples/step_XXXXXXX.png)."""
    checkpoint_every: int = field(default=2000, metadata=RESUMABLE)
    """Steps between checkpoints (also written at the end and on Ctrl-C)."""
    keep_checkpoints: int = field(default=3, metadata=RESUMABLE)
    """Numbered checkpoints kept (last.pt and best.pt always kept). 0 keeps all."""
    sample_rows: int = 8
    """Images per direction in a sample grid."""
    max_loss: float = field(default=1000.0, metadata=RESUMABLE)
    """A logged loss above this stops the run as diverged."""
    tensorboard: bool = field(default=True, metadata=RESUMABLE)
    """Also write TensorBoard events under RUN/tb."""

    def validate(self) -> None:
        if self.steps < 1:
            raise Sim2RealError(f"steps: expected an integer >= 1, got {self.steps}")
        if self.batch_size < 2:  # batch norm needs at least two samples per batch
            raise Sim2RealError(f"batch_size: expected an integer >= 2, got {self.batch_size}")
        for name in ("log_every", "val_every", "sample_every", "checkpoint_every", "sample_rows"):
            if getattr(self, name) < 1:
                raise Sim2RealError(f"{name}: expected an integer >= 1, got {getattr(self, name)}")


#: the shared speed section (:mod:`sim2real.engine.perf`)
I2IPerfConfig = PerfConfig


@dataclass
class I2IConfig:
    """The resolved configuration of an I2I Adapt run (saved as config.yaml and inside every checkpoint)."""

    model: I2IModelConfig = field(default_factory=I2IModelConfig)
    loss: I2ILossConfig = field(default_factory=I2ILossConfig)
    optim: I2IOptimConfig = field(default_factory=I2IOptimConfig)
    train: I2ITrainConfig = field(default_factory=I2ITrainConfig)
    perf: I2IPerfConfig = field(default_factory=I2IPerfConfig, metadata=RESUMABLE)
    select: SelectConfig = field(default_factory=SelectConfig)
    """Which checkpoint is best.pt: the labelled --val split (oracle) or a label-free validator (``--select``)."""

    def validate(self) -> None:
        if not self.model.classifier.pose_head and self.loss.pose_weight:
            raise Sim2RealError("loss.pose_weight must be 0 when h has no pose head (model.classifier.pose_head is off)")
