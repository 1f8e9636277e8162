"""Camera effects: what a real camera does to an image between the scene and the file (pure numpy, no GL).

Used by ``sim2real make-target`` to turn clean renders into camera-like stand-in target images. The model
follows a simple camera pipeline, in this order (each step can be switched off in
:class:`~sim2real.target.config.CameraEffectsConfig`):

1. **decode** the uint8 sRGB image to linear light ``x = (v / 255) ** 2.2`` in [0, 1]
   (sRGB approximated by a pure 2.2 power law);
2. **exposure**: ``x *= 2 ** ev`` with ``ev`` (stops) drawn per image;
3. **blur** (defocus / lens softness): Gaussian with standard deviation ``sigma`` pixels, applied per channel
   in linear light (optics act on light, not on encoded values); borders reflect;
4. **vignetting**: ``x *= v(r)`` with the cos^4 law ``v(r) = cos^4(theta) = (1 + k (r / r_c)^2)^-2``, where ``r`` is
   the distance in pixels from the vignetting centre and ``r_c`` the half diagonal of the image;
   ``k = (1 - s)^-1/2 - 1`` so that the falloff at ``r_c`` is exactly ``1 - s`` (``s`` = ``strength``).
   ``v(centre) = 1``. The centre is the image centre shifted by up to ``centre_shift`` x (W, H): a crop is cut
   from anywhere in the full camera frame, so its vignetting is rarely centred;
5. **sensor noise** (Poisson-Gaussian, the standard raw-sensor model, e.g. Foi et al. 2008):
   ``x' = x + sqrt(a x + b^2) n`` with ``n ~ N(0, 1)`` per pixel and channel, ``a`` = shot-noise gain
   (1 / full-well capacity in electrons, signal-dependent), ``b`` = read-noise standard deviation; then the
   sensor saturates: ``x'`` is clipped to [0, 1];
6. **white balance** error of the camera's ISP: per-channel gains ``(g_r, 1, g_b)`` on linear light, clipped to 1;
7. **gamma**: encode with the camera's tone curve ``y = x ** (1 / gamma)`` (``gamma`` drawn per image; 2.2 when
   off, which makes decode + encode the identity), then quantise to uint8;
8. **JPEG**: re-encode with PIL at a quality drawn per image (4:2:0 chroma subsampling, as most cameras).

Depth maps get the axial noise model of a structured-light sensor (Nguyen, Izadi & Lovell 2012, Kinect):
``sigma(z) = sigma_base + sigma_quad * (z - 0.4 m)^2`` metres, Gaussian, on pixels with ``z > 0`` only
(background stays 0, so ``mask == depth > 0`` still holds).

Determinism: the parameters and the noise of sample ``i`` come from generators seeded with
``[seed, i, 7, k]`` (``k`` = the effect's number), so a sample depends only on (seed, i), and switching one
effect off leaves the draws of the others unchanged.
"""

from __future__ import annotations

import dataclasses
import io
import os
from typing import Optional

import numpy as np

from sim2real.target.config import CameraEffectsConfig, DepthNoiseConfig

#: Generator stream tag of the camera effects (the renderer's sample stream is ``[seed, i]``).
STREAM = 7
#: Effect numbers: the last entry of each effect's generator seed.
_K_EXPOSURE, _K_BLUR, _K_VIGNETTE, _K_NOISE, _K_WB, _K_GAMMA, _K_JPEG, _K_DEPTH = range(8)
#: The fixed decoding gamma (sRGB approximated by a power law).
DECODE_GAMMA = 2.2


# ---------------------------------------------------------------------------------------------
# per-sample parameters
# ---------------------------------------------------------------------------------------------


@dataclasses.dataclass
class EffectParams:
    """The drawn camera of one sample. ``None`` = effect off.

    Attributes:
        ev: exposure offset, stops.
        sigma: blur standard deviation, pixels.
        vignette: (strength s, centre shift dx, dy as fractions of W, H).
        noise: (shot gain a, read std b).
        wb: (3,) RGB gains on linear light.
        gamma: encoding gamma.
        quality: JPEG quality.
        noise_seed: seed of the per-pixel noise generator.
    """

    ev: Optional[float] = None
    sigma: Optional[float] = None
    vignette: Optional[tuple[float, float, float]] = None
    noise: Optional[tuple[float, float]] = None
    wb: Optional[np.ndarray] = None
    gamma: Optional[float] = None
    quality: Optional[int] = None
    noise_seed: Optional[list[int]] = None


def _rng(seed: int, index: int, k: int) -> np.random.Generator:
    return np.random.default_rng([int(seed), int(index), STREAM, k])


def sample_params(cfg: CameraEffectsConfig, seed: int, index: int) -> EffectParams:
    """The camera effects of sample ``index`` of a job with ``seed`` (depends only on (seed, index))."""
    p = EffectParams()
    if cfg.exposure.enabled:
        p.ev = float(_rng(seed, index, _K_EXPOSURE).uniform(*cfg.exposure.ev))
    if cfg.blur.enabled:
        p.sigma = float(_rng(seed, index, _K_BLUR).uniform(*cfg.blur.sigma_px))
    if cfg.vignetting.enabled:
        g = _rng(seed, index, _K_VIGNETTE)
        c = cfg.vignetting.centre_shift
        p.vignette = (float(g.uniform(*cfg.vignetting.strength)), float(g.uniform(-c, c)), float(g.uniform(-c, c)))
    if cfg.noise.enabled:
        g = _rng(seed, index, _K_NOISE)
        p.noise = (float(g.uniform(*cfg.noise.shot)), float(g.uniform(*cfg.noise.read)))
        p.noise_seed = [int(seed), int(index), STREAM, _K_NOISE, 1]
    if cfg.white_balance.enabled:
        g = _rng(seed, index, _K_WB)
        p.wb = np.array([g.uniform(*cfg.white_balance.red), 1.0, g.uniform(*cfg.white_balance.blue)])
    if cfg.gamma.enabled:
        p.gamma = float(_rng(seed, index, _K_GAMMA).uniform(*cfg.gamma.gamma))
    if cfg.jpeg.enabled:
        lo, hi = cfg.jpeg.quality
        p.quality = int(_rng(seed, index, _K_JPEG).integers(lo, hi + 1))
    return p


# ---------------------------------------------------------------------------------------------
# the effects, on one image
# ---------------------------------------------------------------------------------------------


#: uint8 code value -> linear light (a table: decoding is a lookup).
_DECODE_LUT = (np.arange(256) / 255.0) ** DECODE_GAMMA


def decode(img: np.ndarray) -> np.ndarray:
    """uint8 sRGB (H, W, 3) -> float64 linear light ``(v / 255) ** 2.2`` in [0, 1] (power-law approximation of sRGB)."""
    return _DECODE_LUT[img]


def encode(lin: np.ndarray, gamma: float = DECODE_GAMMA) -> np.ndarray:
    """Linear light in [0, 1] -> uint8 with the tone curve ``x ** (1 / gamma)`` (rounded to nearest)."""
    return np.round(np.clip(lin, 0.0, 1.0) ** (1.0 / gamma) * 255.0).astype(np.uint8)


def gaussian_blur(lin: np.ndarray, sigma: float) -> np.ndarray:
    """(H, W, 3) float blurred per channel with a Gaussian of std ``sigma`` pixels (reflecting borders)."""
    if sigma <= 0:
        return lin
    from scipy.ndimage import gaussian_filter

    return gaussian_filter(lin, sigma=(sigma, sigma, 0.0), mode="reflect", truncate=4.0)


def vignette_field(h: int, w: int, strength: float, shift: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
    """(H, W) cos^4 falloff ``(1 + k (r / r_c)^2)^-2``, 1 at the centre and ``1 - strength`` at the half diagonal.

    Args:
        h, w: image size in pixels.
        strength: falloff ``s`` in [0, 1) at distance ``r_c = sqrt((W/2)^2 + (H/2)^2)`` from the centre.
        shift: (dx, dy) offset of the centre from the image centre ``((W-1)/2, (H-1)/2)``, as fractions of W, H.
    """
    k = (1.0 - strength) ** -0.5 - 1.0
    cx = (w - 1) / 2.0 + shift[0] * w
    cy = (h - 1) / 2.0 + shift[1] * h
    yy, xx = np.mgrid[0:h, 0:w]
    r2 = ((xx - cx) ** 2 + (yy - cy) ** 2) / ((w / 2.0) ** 2 + (h / 2.0) ** 2)
    return (1.0 + k * r2) ** -2


def sensor_noise(lin: np.ndarray, shot: float, read: float, rng: np.random.Generator) -> np.ndarray:
    """Poisson-Gaussian noise ``x + sqrt(shot * x + read**2) * N(0, 1)`` on linear light, clipped to [0, 1]."""
    std = np.sqrt(shot * np.clip(lin, 0.0, None) + read**2)
    return np.clip(lin + std * rng.standard_normal(lin.shape), 0.0, 1.0)


def jpeg_roundtrip(img: np.ndarray, quality: int) -> np.ndarray:
    """uint8 (H, W, 3) encoded as JPEG at ``quality`` (PIL, 4:2:0) and decoded again."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, format="JPEG", quality=int(quality), subsampling=2)
    buf.seek(0)
    with Image.open(buf) as im:
        return np.asarray(im.convert("RGB")).copy()


def apply_params(img: np.ndarray, p: EffectParams) -> np.ndarray:
    """Apply the drawn camera ``p`` to one uint8 (H, W, 3) image; returns uint8 (H, W, 3)."""
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"apply_params: expected uint8 (H, W, 3), got {img.dtype} {img.shape}")
    photometric = any(v is not None for v in (p.ev, p.sigma, p.vignette, p.noise, p.wb, p.gamma))
    out = img
    if photometric:
        lin = decode(img)
        if p.ev is not None:
            lin = lin * 2.0**p.ev
        if p.sigma is not None:
            lin = gaussian_blur(lin, p.sigma)
        if p.vignette is not None:
            s, dx, dy = p.vignette
            lin = lin * vignette_field(img.shape[0], img.shape[1], s, (dx, dy))[..., None]
        if p.noise is not None:
            lin = sensor_noise(np.clip(lin, 0.0, 1.0), p.noise[0], p.noise[1], np.random.default_rng(p.noise_seed))
        if p.wb is not None:
            lin = lin * p.wb
        out = encode(lin, p.gamma if p.gamma is not None else DECODE_GAMMA)
    if p.quality is not None:
        out = jpeg_roundtrip(out, p.quality)
    return out


# ---------------------------------------------------------------------------------------------
# batches
# ---------------------------------------------------------------------------------------------


def _indices(n: int, indices: np.ndarray | None) -> np.ndarray:
    if indices is None:
        return np.arange(n)
    indices = np.asarray(indices)
    if indices.shape != (n,):
        raise ValueError(f"indices: expected shape ({n},), got {indices.shape}")
    return indices


def _effects_chunk(rgb: np.ndarray, cfg: CameraEffectsConfig, seed: int, idx: np.ndarray) -> np.ndarray:
    out = np.empty_like(rgb)
    for j in range(len(rgb)):
        out[j] = apply_params(rgb[j], sample_params(cfg, seed, int(idx[j])))
    return out


#: Below this many images the effects run in the calling process (a worker's start-up costs ~0.5 s).
PARALLEL_MIN = 2000


def apply_camera_effects(rgb: np.ndarray, cfg: CameraEffectsConfig, seed: int, indices: np.ndarray | None = None,
                         show_progress: bool = False, desc: str = "camera effects",
                         workers: int | None = 1) -> np.ndarray:
    """Camera effects on a batch of images (whole image, background included, as a real camera).

    Args:
        rgb: (N, H, W, 3) uint8 sRGB.
        cfg: which effects, with their parameter ranges.
        seed: the job's seed.
        indices: (N,) sample index of each image (default ``0..N-1``): image ``j`` gets the camera of
            (seed, indices[j]), whatever else is in the batch.
        show_progress: draw a progress bar.
        workers: processes (None: one per core). Image ``j``'s camera depends only on (seed, indices[j]), so the
            result is the same for any number of workers; batches under :data:`PARALLEL_MIN` images stay in-process.

    Returns:
        (N, H, W, 3) uint8, a new array.
    """
    if rgb.ndim != 4 or rgb.shape[-1] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"apply_camera_effects: expected uint8 (N, H, W, 3), got {rgb.dtype} {rgb.shape}")
    idx = _indices(len(rgb), indices)
    from sim2real.utils import progress

    n_workers = min(workers or (os.cpu_count() or 1), os.cpu_count() or 1, max(len(rgb) // 500, 1))
    bar = progress(total=len(rgb), desc=desc, unit="img", disable=None if show_progress else True)
    out = np.empty_like(rgb)
    step = 500  # chunks small enough for a smooth progress bar, large enough that pickling is negligible
    if n_workers <= 1 or len(rgb) < PARALLEL_MIN:
        for a in range(0, len(rgb), step):
            out[a:a + step] = _effects_chunk(rgb[a:a + step], cfg, seed, idx[a:a + step])
            bar.update(len(out[a:a + step]))
        bar.close()
        return out
    import concurrent.futures as cf
    import multiprocessing as mp

    with cf.ProcessPoolExecutor(n_workers, mp_context=mp.get_context("spawn")) as pool:
        futures = {pool.submit(_effects_chunk, rgb[a:a + step], cfg, seed, idx[a:a + step]): a
                   for a in range(0, len(rgb), step)}
        for fut in cf.as_completed(futures):
            a = futures[fut]
            res = fut.result()
            out[a:a + len(res)] = res
            bar.update(len(res))
    bar.close()
    return out


def depth_sigma(z: np.ndarray, cfg: DepthNoiseConfig) -> np.ndarray:
    """Axial noise standard deviation in metres at depth ``z`` metres (Nguyen et al. 2012)."""
    return cfg.sigma_base + cfg.sigma_quad * (z - 0.4) ** 2


#: Smallest depth a noisy foreground pixel may take (metres): it must stay > 0 to remain foreground.
MIN_DEPTH = 1e-4


def apply_depth_noise(depth: np.ndarray, cfg: CameraEffectsConfig, seed: int, indices: np.ndarray | None = None) -> np.ndarray:
    """Depth sensor noise on (N, H, W) float32 metres; 0 (background) stays 0, foreground stays > 0.

    Image ``j`` uses the generator of (seed, indices[j]) (default ``0..N-1``). Returns a new float32 array.
    """
    if depth.ndim != 3:
        raise ValueError(f"apply_depth_noise: expected (N, H, W), got {depth.shape}")
    if not cfg.depth.enabled:
        return depth.astype(np.float32, copy=True)
    idx = _indices(len(depth), indices)
    out = np.empty(depth.shape, np.float32)
    for j in range(len(depth)):
        z = depth[j].astype(np.float64)
        fg = z > 0
        noisy = z + depth_sigma(z, cfg.depth) * _rng(seed, int(idx[j]), _K_DEPTH).standard_normal(z.shape)
        out[j] = np.where(fg, np.maximum(noisy, MIN_DEPTH), 0.0)
    return out
