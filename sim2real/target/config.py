"""The typed configuration of ``sim2real make-target``: the job (:class:`MakeTargetConfig`) and its camera model
(:class:`CameraEffectsConfig`, one section per effect of :mod:`sim2real.target.effects`).

Loaded with :func:`sim2real.config.load_config` and ``defaults=MakeTargetConfig()``,
so keys a file leaves out take the *stand-in* defaults, also inside a partial ``render:`` section.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from sim2real.config import check_range as _range
from sim2real.errors import Sim2RealError
from sim2real.render.config import BackgroundConfig, LightConfig, MaterialConfig, RenderConfig

# ---------------------------------------------------------------------------------------------
# the camera effects
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class ExposureConfig:
    """Exposure error: linear light scaled by ``2 ** ev``."""

    enabled: bool = True
    #: Exposure offset in stops (EV), [low, high].
    ev: tuple[float, float] = (-0.7, 0.4)

    def validate(self) -> None:
        _range("effects.exposure.ev", self.ev, -5, 5)


@dataclasses.dataclass
class BlurConfig:
    """Gaussian defocus blur in linear light."""

    enabled: bool = True
    #: Standard deviation in pixels of the output image, [low, high].
    sigma_px: tuple[float, float] = (0.0, 0.9)

    def validate(self) -> None:
        _range("effects.blur.sigma_px", self.sigma_px, 0, 20)


@dataclasses.dataclass
class VignettingConfig:
    """cos^4 radial falloff (see the module docstring)."""

    enabled: bool = True
    #: Falloff at the half diagonal from the centre: 0 = none, 0.4 = 40% darker, [low, high] within [0, 1).
    strength: tuple[float, float] = (0.0, 0.4)
    #: Maximum shift of the vignetting centre from the image centre, as a fraction of (W, H).
    centre_shift: float = 0.5

    def validate(self) -> None:
        _range("effects.vignetting.strength", self.strength, 0)
        if self.strength[1] >= 1:
            raise Sim2RealError(f"effects.vignetting.strength: must stay below 1, got {self.strength[1]}")
        if not 0 <= self.centre_shift <= 2:
            raise Sim2RealError(f"effects.vignetting.centre_shift: must lie in [0, 2], got {self.centre_shift}")


@dataclasses.dataclass
class NoiseConfig:
    """Poisson-Gaussian sensor noise on linear light in [0, 1]: variance ``shot * x + read**2``."""

    enabled: bool = True
    #: Shot-noise gain ``a`` (1 / full-well electrons; 0.001 ~ 1000 e-), [low, high].
    shot: tuple[float, float] = (0.0005, 0.004)
    #: Read-noise standard deviation ``b`` (fraction of full scale), [low, high].
    read: tuple[float, float] = (0.001, 0.006)

    def validate(self) -> None:
        _range("effects.noise.shot", self.shot, 0, 1)
        _range("effects.noise.read", self.read, 0, 1)


@dataclasses.dataclass
class WhiteBalanceConfig:
    """White-balance error: gains on the red and blue channels of linear light (green = 1)."""

    enabled: bool = True
    #: Red gain, [low, high].
    red: tuple[float, float] = (0.75, 1.3)
    #: Blue gain, [low, high].
    blue: tuple[float, float] = (0.75, 1.3)

    def validate(self) -> None:
        _range("effects.white_balance.red", self.red, 0.1, 10)
        _range("effects.white_balance.blue", self.blue, 0.1, 10)


@dataclasses.dataclass
class GammaConfig:
    """The camera's encoding gamma ``y = x ** (1 / gamma)`` (2.2 when off)."""

    enabled: bool = True
    #: Encoding gamma, [low, high].
    gamma: tuple[float, float] = (1.8, 2.6)

    def validate(self) -> None:
        _range("effects.gamma.gamma", self.gamma, 0.5, 5)


@dataclasses.dataclass
class JpegConfig:
    """JPEG re-encoding (PIL, 4:2:0)."""

    enabled: bool = True
    #: JPEG quality, [low, high] inclusive, within [1, 100].
    quality: tuple[int, int] = (45, 92)

    def validate(self) -> None:
        _range("effects.jpeg.quality", self.quality, 1, 100)


@dataclasses.dataclass
class DepthNoiseConfig:
    """Axial depth noise ``sigma(z) = sigma_base + sigma_quad (z - 0.4)^2`` metres (Nguyen et al. 2012)."""

    enabled: bool = True
    #: Noise standard deviation in metres at z = 0.4 m.
    sigma_base: float = 0.0012
    #: Quadratic growth in metres per metre^2.
    sigma_quad: float = 0.0019

    def validate(self) -> None:
        if self.sigma_base < 0 or self.sigma_quad < 0:
            raise Sim2RealError("effects.depth: sigma_base and sigma_quad must be >= 0")


@dataclasses.dataclass
class CameraEffectsConfig:
    """The camera model of ``make-target``: each effect has ``enabled`` and its parameter ranges."""

    exposure: ExposureConfig = dataclasses.field(default_factory=ExposureConfig)
    blur: BlurConfig = dataclasses.field(default_factory=BlurConfig)
    vignetting: VignettingConfig = dataclasses.field(default_factory=VignettingConfig)
    noise: NoiseConfig = dataclasses.field(default_factory=NoiseConfig)
    white_balance: WhiteBalanceConfig = dataclasses.field(default_factory=WhiteBalanceConfig)
    gamma: GammaConfig = dataclasses.field(default_factory=GammaConfig)
    jpeg: JpegConfig = dataclasses.field(default_factory=JpegConfig)
    depth: DepthNoiseConfig = dataclasses.field(default_factory=DepthNoiseConfig)

    @classmethod
    def none(cls) -> "CameraEffectsConfig":
        """Every effect off (the identity on images and depth)."""
        cfg = cls()
        for f in dataclasses.fields(cfg):
            getattr(cfg, f.name).enabled = False
        return cfg

    @property
    def any_image_effect(self) -> bool:
        return any(getattr(self, f.name).enabled for f in dataclasses.fields(self) if f.name != "depth")


# ---------------------------------------------------------------------------------------------
# the job
# ---------------------------------------------------------------------------------------------


def standin_render_config() -> RenderConfig:
    """The render section's defaults for the stand-in: photo backgrounds, wider and coloured lights, stronger
    material colour jitter. Camera, pose sampler and ``fill`` stay those of ``render`` (same crop convention)."""
    return RenderConfig(
        background=BackgroundConfig(kind="photos", photos="auto"),
        lights=LightConfig(count=(1, 4), intensity=(1.0, 6.0), ambient=(0.1, 0.6), colour_jitter=0.4, spread_deg=75.0),
        material=MaterialConfig(colour_jitter=0.35),
    )


_RENDER_DEFAULTS = RenderConfig()


@dataclasses.dataclass
class MakeTargetConfig:
    """Configuration of ``sim2real make-target``. Every output file records it (``config`` attribute).

    ``render.n_samples`` and ``render.seed`` are not used (each split sets its own from ``n_*`` and ``seed``);
    changing them is an error rather than silently ignored.
    """

    #: How the objects are rendered (RenderConfig; defaults: :func:`standin_render_config`).
    render: RenderConfig = dataclasses.field(default_factory=standin_render_config)
    #: The camera model applied to every rendered image (and the depth noise).
    effects: CameraEffectsConfig = dataclasses.field(default_factory=CameraEffectsConfig)
    #: Unlabelled training images (``train.h5``).
    n_train: int = 5000
    #: Labelled validation images for model selection (``val.h5``).
    n_val: int = 1000
    #: Labelled test images (``test.h5``).
    n_test: int = 2000
    #: Seed of the whole job; the split seeds are derived from it (:func:`~sim2real.target.job.split_seed`).
    seed: int = 0
    #: Keep labels in ``train.h5`` too. Only for a target-only upper bound on the stand-in: a real camera's
    #: images come unlabelled, and an adapt run never reads target labels.
    label_train: bool = False

    def validate(self) -> None:
        for name in ("n_train", "n_val", "n_test"):
            if getattr(self, name) <= 0:
                raise Sim2RealError(f"{name}: must be > 0, got {getattr(self, name)}")
        if self.seed < 0:
            raise Sim2RealError(f"seed: must be >= 0, got {self.seed}")
        if self.render.n_samples != _RENDER_DEFAULTS.n_samples:
            raise Sim2RealError("render.n_samples: not used by make-target; set n_train, n_val and n_test instead")
        if self.render.seed != _RENDER_DEFAULTS.seed:
            raise Sim2RealError("render.seed: not used by make-target; set the top-level seed instead")

    def count(self, split: str) -> int:
        return {"train": self.n_train, "val": self.n_val, "test": self.n_test}[split]
