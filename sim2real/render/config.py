"""``RenderConfig``: what ``sim2real render`` draws, typed and documented per field.

The crop convention (shared with BOP import and make-target): the object is centred; with ``camera.distance``
unset, each class is placed at the distance where its diameter spans ``camera.fill`` of the image width,
i.e. ``t_z = fx * diameter / (fill * W)`` (Cropped-LineMod-like object-centred crops).
"""

from __future__ import annotations

import dataclasses
from typing import Literal, Optional, Union

from sim2real.config import check_range as _range
from sim2real.errors import Sim2RealError


@dataclasses.dataclass
class CameraConfig:
    """Intrinsics and object distance (OpenCV camera)."""

    #: Horizontal field of view in degrees, used when fx/fy/cx/cy are not all given.
    fov_deg: float = 20.0
    #: Explicit intrinsics in pixels (all four, or none). cx, cy follow OpenCV: the image centre is (W-1)/2.
    fx: Optional[float] = None
    fy: Optional[float] = None
    cx: Optional[float] = None
    cy: Optional[float] = None
    #: Fixed object distance in metres; ``null`` fits each class so its diameter spans ``fill`` of the width.
    distance: Optional[float] = None
    #: Fraction of the image width spanned by the model diameter when ``distance`` is null.
    fill: float = 0.8
    #: Clipping planes in metres.
    znear: float = 0.01
    zfar: float = 20.0

    def validate(self) -> None:
        given = [v is not None for v in (self.fx, self.fy, self.cx, self.cy)]
        if any(given) and not all(given):
            raise Sim2RealError("camera: give all of fx, fy, cx, cy or none of them")
        if not 0 < self.fov_deg < 180:
            raise Sim2RealError(f"camera.fov_deg: must lie in (0, 180), got {self.fov_deg}")
        if self.fx is not None and (self.fx <= 0 or self.fy <= 0):
            raise Sim2RealError("camera.fx/fy: must be > 0")
        if self.distance is not None and self.distance <= 0:
            raise Sim2RealError(f"camera.distance: must be > 0 metres, got {self.distance}")
        if not 0 < self.fill <= 2:
            raise Sim2RealError(f"camera.fill: must lie in (0, 2], got {self.fill}")
        if not 0 < self.znear < self.zfar:
            raise Sim2RealError("camera: need 0 < znear < zfar")


@dataclasses.dataclass
class PoseSamplerConfig:
    """How object orientations and translations are sampled."""

    #: ``uniform``: uniform over SO(3); ``view_sphere``: camera on a sphere around the object.
    sampler: Literal["uniform", "view_sphere"] = "uniform"
    #: view_sphere: camera elevation above the model's x-y plane, degrees, [low, high] within [-90, 90].
    elevation_deg: tuple[float, float] = (0.0, 90.0)
    #: view_sphere: camera azimuth around the model's z axis, degrees.
    azimuth_deg: tuple[float, float] = (0.0, 360.0)
    #: view_sphere: in-plane rotation about the optical axis, degrees.
    inplane_deg: tuple[float, float] = (-45.0, 45.0)
    #: Uniform translation jitter: x, y as a fraction of the distance; z likewise (e.g. 0.05 = +-5%).
    translation_jitter: float = 0.0

    def validate(self) -> None:
        _range("pose.elevation_deg", self.elevation_deg, -90, 90)
        _range("pose.azimuth_deg", self.azimuth_deg)
        _range("pose.inplane_deg", self.inplane_deg)
        if not 0 <= self.translation_jitter < 0.5:
            raise Sim2RealError(f"pose.translation_jitter: must lie in [0, 0.5), got {self.translation_jitter}")


@dataclasses.dataclass
class LightConfig:
    """Light randomisation: directional lights from the camera's side plus ambient light."""

    #: Number of directional lights, [min, max] inclusive.
    count: tuple[int, int] = (1, 3)
    #: Intensity per light (pyrender units, W/m^2-like), [low, high].
    intensity: tuple[float, float] = (1.5, 4.0)
    #: Ambient light level in [0, 1], [low, high].
    ambient: tuple[float, float] = (0.25, 0.5)
    #: Per-channel light colour jitter: each channel in [1 - j, 1].
    colour_jitter: float = 0.15
    #: Maximum angle in degrees between a light's direction and the optical axis.
    spread_deg: float = 60.0

    def validate(self) -> None:
        if self.count[0] < 0 or self.count[0] > self.count[1] or self.count[1] > 8:
            raise Sim2RealError(f"lights.count: expected [min, max] with 0 <= min <= max <= 8, got {list(self.count)}")
        _range("lights.intensity", self.intensity, 0)
        _range("lights.ambient", self.ambient, 0, 1)
        if not 0 <= self.colour_jitter <= 1:
            raise Sim2RealError("lights.colour_jitter: must lie in [0, 1]")
        if not 0 <= self.spread_deg < 90:
            raise Sim2RealError("lights.spread_deg: must lie in [0, 90)")


@dataclasses.dataclass
class MaterialConfig:
    """Material randomisation."""

    #: Per-channel multiplicative base-colour jitter: each channel scaled by a factor in [1 - j, 1 + j].
    colour_jitter: float = 0.1

    def validate(self) -> None:
        if not 0 <= self.colour_jitter < 1:
            raise Sim2RealError("material.colour_jitter: must lie in [0, 1)")


@dataclasses.dataclass
class BackgroundConfig:
    """What lies behind the object."""

    #: ``black`` (as in the paper's source renders) or ``photos`` (random crops of real photos).
    kind: Literal["black", "photos"] = "black"
    #: Photo source for ``photos``: a folder, or auto / skimage / sklearn / debian (installed packages).
    photos: str = "auto"


@dataclasses.dataclass
class RenderConfig:
    """Configuration of ``sim2real render``. Every file records the resolved config (``config`` attribute)."""

    #: Object set: ``bundled`` (assets/objects.yaml), a manifest YAML, or a folder of meshes (OBJ, PLY, STL, GLB).
    objects: str = "bundled"
    #: Subset of class names to render (default: all, in manifest order).
    classes: Optional[list[str]] = None
    #: Units of meshes loaded from a folder (a manifest states its own): m, cm or mm.
    mesh_units: Literal["m", "cm", "mm"] = "m"
    #: Number of samples.
    n_samples: int = 1000
    #: Seed: sample i depends only on (seed, i).
    seed: int = 0
    #: Image size in pixels: one int (square) or [height, width].
    image_size: Union[int, tuple[int, int]] = 64
    camera: CameraConfig = dataclasses.field(default_factory=CameraConfig)
    pose: PoseSamplerConfig = dataclasses.field(default_factory=PoseSamplerConfig)
    lights: LightConfig = dataclasses.field(default_factory=LightConfig)
    material: MaterialConfig = dataclasses.field(default_factory=MaterialConfig)
    background: BackgroundConfig = dataclasses.field(default_factory=BackgroundConfig)
    #: Points sampled on each model surface for ADD metrics (``model_points``, (C, P, 3)).
    model_points: int = 1000
    #: Samples per resumable shard.
    shard_size: int = 128
    #: HDF5 compression of image-like datasets: lzf (fast), gzip, or none.
    compression: Literal["lzf", "gzip", "none"] = "lzf"
    #: 4x multisampled colour. Off: colour, depth and mask all sample pixel centres (exact z-buffer mask).
    antialias: bool = False
    #: Rendering backend: auto (EGL, falling back to OSMesa), egl or osmesa. PYOPENGL_PLATFORM, if set, wins.
    backend: Literal["auto", "egl", "osmesa"] = "auto"

    @property
    def size_hw(self) -> tuple[int, int]:
        s = self.image_size
        return (s, s) if isinstance(s, int) else (int(s[0]), int(s[1]))

    def validate(self) -> None:
        h, w = self.size_hw
        if h <= 0 or w <= 0:
            raise Sim2RealError(f"image_size: must be > 0, got {self.image_size}")
        if h > 4096 or w > 4096:
            raise Sim2RealError(f"image_size: at most 4096, got {self.image_size}")
        if self.n_samples <= 0:
            raise Sim2RealError(f"n_samples: must be > 0, got {self.n_samples}")
        if self.model_points <= 0:
            raise Sim2RealError(f"model_points: must be > 0, got {self.model_points}")
        if self.shard_size <= 0:
            raise Sim2RealError(f"shard_size: must be > 0, got {self.shard_size}")
        if self.classes is not None and len(self.classes) == 0:
            raise Sim2RealError("classes: an empty list selects nothing (omit it to render all classes)")
