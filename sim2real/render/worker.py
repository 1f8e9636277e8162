"""The worker side of a render job, shared by both executors: the local process pool and the Ray actors.

A worker (a pool process of :mod:`sim2real.render.job`, or an actor of :mod:`sim2real.render.ray_pool`) makes one
:class:`ShardRenderer` (meshes uploaded and one GL context made once), then renders shards on request:
shard ``k`` is samples ``shard_ranges(n_samples, shard_size)[k]``, and sample ``i`` depends only on
(seed, i), so a shard's arrays are the same whichever worker draws it. :func:`write_shard` is the atomic shard file
that makes a render resumable after a kill at any moment.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np

from sim2real.conventions import intrinsics, intrinsics_from_fov, quat_from_matrix
from sim2real.render.backend import DEFAULT_RENDERER
from sim2real.render.config import RenderConfig


def camera_matrix(cfg: RenderConfig) -> np.ndarray:
    """K (3, 3) float64 of the configured camera."""
    h, w = cfg.size_hw
    c = cfg.camera
    if c.fx is not None:
        return intrinsics(c.fx, c.fy, c.cx, c.cy)
    return intrinsics_from_fov(c.fov_deg, w, h)


def shard_ranges(n: int, size: int) -> list[tuple[int, int]]:
    """Sample ranges ``[start, stop)`` of the shards of an ``n``-sample render in shards of ``size``."""
    return [(s, min(s + size, n)) for s in range(0, n, size)]


def shard_path(folder: Path, k: int) -> Path:
    """The file of shard ``k`` in a render's partial folder."""
    return folder / f"shard_{k:06d}.npz"


def render_shard(renderer, cfg: RenderConfig, start: int, stop: int, distances: np.ndarray, photos: list) -> dict:
    """Render samples [start, stop) with a renderer of :func:`~sim2real.render.backend.create_renderer`.

    Returns per-sample arrays (n = stop - start): ``"rgb"`` (n, H, W, 3) uint8, ``"depth"`` (n, H, W) float32
    metres, ``"mask"`` (n, H, W) bool (``depth > 0``), ``"label"`` (n,) int64, ``"quat"`` (n, 4) float32 wxyz
    and ``"trans"`` (n, 3) float32 metres (R_m2c, t_m2c).
    """
    from sim2real.data.photos import random_crop
    from sim2real.render.sampling import sample_scene

    h, w = cfg.size_hw
    n = stop - start
    rgb = np.zeros((n, h, w, 3), np.uint8)
    depth = np.zeros((n, h, w), np.float32)
    label = np.zeros(n, np.int64)
    Rs = np.zeros((n, 3, 3))
    trans = np.zeros((n, 3), np.float32)
    for j, i in enumerate(range(start, stop)):
        p = sample_scene(cfg, i, distances, len(photos))
        img, dep = renderer.render(p)
        if p.background is not None:
            photo, crop_seed = p.background
            bg = random_crop(photos[photo], (h, w), np.random.default_rng(crop_seed))
            img = np.where((dep > 0)[..., None], img, bg)
        rgb[j], depth[j], label[j], Rs[j], trans[j] = img, dep, p.label, p.R_m2c, p.t_m2c
    return {"rgb": rgb, "depth": depth, "mask": depth > 0, "label": label,
            "quat": quat_from_matrix(Rs).astype(np.float32), "trans": trans}


def write_shard(path: Path, arrays: dict) -> None:
    """Write a shard's arrays to ``path`` (``.npz``) through a temporary file, fsync and an atomic rename."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@dataclasses.dataclass
class RenderInputs:
    """What a worker draws from besides the config: per class its meshes, and the background photos."""

    parts: list[list]
    """Per class id, its trimesh meshes (model frame, metres; :func:`~sim2real.render.assets.load_parts`)."""
    photos: list[np.ndarray]
    """Background photos, uint8 (H, W, 3) (empty unless ``background.kind`` is ``photos``)."""


def load_inputs(cfg: RenderConfig, objects: list | None = None) -> RenderInputs:
    """Read the meshes and photos of ``cfg`` from disk (or take the meshes of already loaded ``objects``).

    Raises:
        Sim2RealError: a bad object set or photo source.
    """
    from sim2real.render.assets import load_parts, resolve_entries

    if objects is not None:
        parts = [o.parts for o in objects]
    else:
        parts = [load_parts(e.file, e.scale) for e in resolve_entries(cfg.objects, cfg.mesh_units, cfg.classes)]
    photos = []
    if cfg.background.kind == "photos":
        from sim2real.data.photos import load_photos

        photos = load_photos(cfg.background.photos)
    return RenderInputs(parts, photos)


class BackendFailed(Exception):
    """The renderer could not start here (no GL context on this platform): the job may fall back to OSMesa."""


class ShardRenderer:
    """One worker's renderer and everything its shards need; made once per process, then ``render(k)`` per shard.

    Args:
        cfg: the render config.
        distances: (C,) float64 camera distance per class, metres (:func:`~sim2real.render.sampling.class_distance`).
        inputs: the meshes and photos (:func:`load_inputs`); None: read them from disk here, after the platform
            is set.
        platform: the PyOpenGL platform (``egl``/``osmesa``), exported as ``PYOPENGL_PLATFORM`` before OpenGL is
            imported (pyrender only).
        kind: the renderer kind (``pyrender``, or the ``fake`` test double).

    Raises:
        BackendFailed: the renderer could not be made or could not draw sample 0 (no GL context).
    """

    def __init__(self, cfg: RenderConfig, distances, inputs: RenderInputs | None, platform: str,
                 kind: str = DEFAULT_RENDERER):
        from sim2real.render.backend import create_renderer
        from sim2real.render.sampling import sample_scene

        if kind == "pyrender":
            os.environ["PYOPENGL_PLATFORM"] = platform
        if inputs is None:
            inputs = load_inputs(cfg)
        self.cfg = cfg
        self.distances = np.asarray(distances, dtype=np.float64)
        self.photos = inputs.photos
        self.ranges = shard_ranges(cfg.n_samples, cfg.shard_size)
        classes = [dataclasses.make_dataclass("C", ["parts"])(p) for p in inputs.parts]
        first = sample_scene(cfg, 0, self.distances, len(self.photos))
        try:
            self.renderer = create_renderer(kind, classes, camera_matrix(cfg), cfg.size_hw, cfg.camera.znear,
                                            cfg.camera.zfar, max_lights=max(cfg.lights.count[1], 1),
                                            antialias=cfg.antialias)
            self.renderer.render(first)
        except Exception as e:  # the GL context could not be made: the job may fall back to OSMesa
            raise BackendFailed(f"{type(e).__name__}: {e}") from None

    def render(self, k: int) -> dict:
        """The arrays of shard ``k`` (:func:`render_shard`)."""
        start, stop = self.ranges[k]
        return render_shard(self.renderer, self.cfg, start, stop, self.distances, self.photos)

    def close(self) -> None:
        """Release the renderer (its GL context)."""
        self.renderer.close()
