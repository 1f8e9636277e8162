"""Pure scene sampling: (config, seed, sample index) -> pose, lights, material and background parameters.

No OpenGL here. Sample ``i`` uses its own generator ``np.random.default_rng([seed, i])``, so a sample
depends only on (seed, i): any number of workers, any shard order, and a resumed run give the same data.
All poses are object-to-camera in the OpenCV camera frame (see :mod:`sim2real.conventions`).
"""

from __future__ import annotations

import dataclasses

import numpy as np

from sim2real.conventions import canonical_quat, fill_distance, matrix_from_quat
from sim2real.render.config import LightConfig, PoseSamplerConfig, RenderConfig


@dataclasses.dataclass
class SceneParams:
    """Everything random about one sample.

    Attributes:
        label: class id.
        R_m2c: (3, 3) rotation, OpenCV camera.
        t_m2c: (3,) metres.
        light_dirs: (L, 3) unit directions the light travels, OpenCV camera frame (z > 0: away from the camera).
        light_colours: (L, 3) in [0, 1]; light_intensity: (L,).
        ambient: ambient level in [0, 1].
        material_scale: (3,) multiplicative RGB base-colour factor.
        background: (photo index, crop rng seed) or None for black.
    """

    label: int
    R_m2c: np.ndarray
    t_m2c: np.ndarray
    light_dirs: np.ndarray
    light_colours: np.ndarray
    light_intensity: np.ndarray
    ambient: float
    material_scale: np.ndarray
    background: tuple[int, int] | None


def sample_rng(seed: int, index: int) -> np.random.Generator:
    """The generator of sample ``index``: independent streams per (seed, index)."""
    return np.random.default_rng([int(seed), int(index)])


def uniform_rotation(rng: np.random.Generator) -> np.ndarray:
    """A rotation matrix uniform over SO(3) (normalised 4-D Gaussian -> uniform unit quaternion)."""
    return matrix_from_quat(canonical_quat(rng.normal(size=4)))


def look_at_rotation(elevation_deg: float, azimuth_deg: float, inplane_deg: float) -> np.ndarray:
    """R_m2c of an OpenCV camera on the view sphere looking at the model origin.

    The camera sits at direction (cos e cos a, cos e sin a, sin e) from the origin (model z is "up");
    its z axis points at the origin, its y axis (image down) follows the model's -z as far as possible,
    then the image is rotated by ``inplane_deg`` about the optical axis.
    """
    e, a = np.radians(elevation_deg), np.radians(azimuth_deg)
    pos = np.array([np.cos(e) * np.cos(a), np.cos(e) * np.sin(a), np.sin(e)])
    z = -pos  # optical axis, model frame
    up = np.array([0.0, 0.0, 1.0])
    if abs(np.dot(up, z)) > 0.999:  # looking straight down/up: any horizontal x axis will do
        up = np.array([np.cos(a), np.sin(a), 0.0]) * (1 if z[2] < 0 else -1)
    x = np.cross(z, up)  # camera x = right
    x /= np.linalg.norm(x)
    y = np.cross(z, x)  # camera y = down
    R_c2m = np.stack([x, y, z], axis=1)  # columns: camera axes in model coordinates
    R = R_c2m.T
    c, s = np.cos(np.radians(inplane_deg)), np.sin(np.radians(inplane_deg))
    Rz = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    return Rz @ R


def sample_rotation(cfg: PoseSamplerConfig, rng: np.random.Generator) -> np.ndarray:
    """R_m2c from the configured sampler."""
    if cfg.sampler == "uniform":
        return uniform_rotation(rng)
    # uniform over the sphere zone between the elevation limits: sample sin(elevation) uniformly
    s = rng.uniform(np.sin(np.radians(cfg.elevation_deg[0])), np.sin(np.radians(cfg.elevation_deg[1])))
    e = np.degrees(np.arcsin(s))
    a = rng.uniform(*cfg.azimuth_deg)
    r = rng.uniform(*cfg.inplane_deg)
    return look_at_rotation(e, a, r)


def sample_lights(cfg: LightConfig, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Directions (L, 3) (OpenCV frame, z > 0), colours (L, 3), intensities (L,), ambient."""
    n = int(rng.integers(cfg.count[0], cfg.count[1] + 1))
    cos_max = np.cos(np.radians(cfg.spread_deg))
    cz = rng.uniform(cos_max, 1.0, size=n)  # uniform over the spherical cap around the optical axis
    phi = rng.uniform(0, 2 * np.pi, size=n)
    sz = np.sqrt(1 - cz**2)
    dirs = np.stack([sz * np.cos(phi), sz * np.sin(phi), cz], axis=1)
    colours = 1.0 - rng.uniform(0, cfg.colour_jitter, size=(n, 3))
    intensity = rng.uniform(*cfg.intensity, size=n)
    ambient = float(rng.uniform(*cfg.ambient))
    return dirs, colours, intensity, ambient


def class_distance(cfg: RenderConfig, K: np.ndarray, diameter: float) -> float:
    """Object distance in metres: fixed, or fitted so the diameter spans ``fill`` of the width (the crop "fill"
    rule, :func:`sim2real.conventions.fill_distance`)."""
    if cfg.camera.distance is not None:
        return float(cfg.camera.distance)
    width = cfg.size_hw[1]
    return float(fill_distance(K[0, 0], diameter, width, cfg.camera.fill))


def sample_scene(cfg: RenderConfig, index: int, distances: np.ndarray, num_photos: int = 0) -> SceneParams:
    """Sample ``index`` of a render job.

    Args:
        cfg: the render config.
        index: sample index in [0, n_samples).
        distances: (C,) object distance per class, metres (:func:`class_distance`).
        num_photos: number of background photos (``background.kind == "photos"``).
    """
    rng = sample_rng(cfg.seed, index)
    num_classes = len(distances)
    label = index % num_classes  # balanced classes, independent of the worker split
    R = sample_rotation(cfg.pose, rng)
    d = float(distances[label])
    j = cfg.pose.translation_jitter
    t = np.array([0.0, 0.0, d]) + (rng.uniform(-j, j, size=3) * d if j > 0 else 0.0)
    dirs, colours, intensity, ambient = sample_lights(cfg.lights, rng)
    mj = cfg.material.colour_jitter
    material_scale = rng.uniform(1 - mj, 1 + mj, size=3) if mj > 0 else np.ones(3)
    background = None
    if cfg.background.kind == "photos":
        background = (int(rng.integers(num_photos)), int(rng.integers(2**31)))
    return SceneParams(label=label, R_m2c=R, t_m2c=t, light_dirs=dirs, light_colours=colours, light_intensity=intensity,
                       ambient=ambient, material_scale=material_scale, background=background)
