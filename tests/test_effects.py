"""Camera effects (sim2real.target.effects) against hand-derived expectations."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from sim2real.config import load_config
from sim2real.errors import Sim2RealError
from sim2real.target import effects as fx
from sim2real.target.config import CameraEffectsConfig
from sim2real.target.effects import EffectParams

ALL_CODES = np.arange(256, dtype=np.uint8)


def ramp_image() -> np.ndarray:
    """(16, 16, 3) uint8 holding every code value 0..255 once per channel (channels permuted)."""
    v = ALL_CODES.reshape(16, 16)
    return np.stack([v, v[::-1], v.T], axis=-1)


def assert_rounds_to(out: np.ndarray, expected_float: np.ndarray) -> None:
    """``out`` (uint8) is ``expected_float`` rounded to the nearest integer (ties either way)."""
    assert np.abs(out.astype(np.float64) - expected_float).max() <= 0.5 + 1e-9


def test_all_effects_off_is_the_identity():
    img = ramp_image()
    cfg = CameraEffectsConfig.none()
    np.testing.assert_array_equal(fx.apply_camera_effects(img[None], cfg, seed=3)[0], img)
    depth = np.array([[[0.0, 0.5], [1.0, 0.0]]], np.float32)
    np.testing.assert_array_equal(fx.apply_depth_noise(depth, cfg, seed=3), depth)


@pytest.mark.parametrize("gamma", [1.8, 2.2, 2.6])
def test_gamma_on_every_code_value(gamma):
    # decode with 2.2 then encode with 1/gamma: v -> 255 (v/255)^(2.2/gamma)
    img = ramp_image()
    out = fx.apply_params(img, EffectParams(gamma=gamma))
    assert_rounds_to(out, 255.0 * (img / 255.0) ** (2.2 / gamma))
    if gamma == 2.2:
        np.testing.assert_array_equal(out, img)


def test_white_balance_gains_on_grey():
    v = 120
    img = np.full((4, 5, 3), v, np.uint8)
    gains = np.array([1.25, 1.0, 0.8])
    out = fx.apply_params(img, EffectParams(wb=gains))
    # linear-light gain g on a 2.2 power law: v -> v * g^(1/2.2)
    assert_rounds_to(out, np.broadcast_to(v * gains ** (1 / 2.2), out.shape))
    # a gain that overflows saturates at 255 (clipped linear light)
    out = fx.apply_params(np.full((2, 2, 3), 250, np.uint8), EffectParams(wb=np.array([2.0, 1.0, 1.0])))
    assert (out[..., 0] == 255).all() and (out[..., 1] == 250).all()


def test_exposure_one_stop():
    img = np.full((3, 3, 3), 90, np.uint8)
    out = fx.apply_params(img, EffectParams(ev=1.0))
    assert_rounds_to(out, np.full(out.shape, 90 * 2 ** (1 / 2.2)))
    out = fx.apply_params(img, EffectParams(ev=-1.0))
    assert_rounds_to(out, np.full(out.shape, 90 * 2 ** (-1 / 2.2)))


def test_vignetting_is_the_cos4_law():
    h = w = 33
    s = 0.35
    v = fx.vignette_field(h, w, s)
    assert v[16, 16] == pytest.approx(1.0)
    np.testing.assert_allclose(v, v[::-1, :], atol=1e-15)
    np.testing.assert_allclose(v, v[:, ::-1], atol=1e-15)
    np.testing.assert_allclose(v, v.T, atol=1e-15)
    # independent derivation: cos^4(theta) with a focal length f chosen so the falloff is 1 - s at r_c
    r_c = np.hypot(w / 2, h / 2)
    theta_c = np.arccos((1 - s) ** 0.25)
    f = r_c / np.tan(theta_c)
    yy, xx = np.mgrid[0:h, 0:w]
    r = np.hypot(xx - 16, yy - 16)
    np.testing.assert_allclose(v, np.cos(np.arctan(r / f)) ** 4, rtol=1e-12)
    assert (v > 0).all() and v.min() > 1 - s - 0.01  # the corner pixel lies just inside r_c
    # a shifted centre: the maximum moves with it
    vs = fx.vignette_field(h, w, s, shift=(0.25, -0.25))
    iy, ix = np.unravel_index(np.argmax(vs), vs.shape)
    assert (ix, iy) == (16 + round(0.25 * w), 16 - round(0.25 * h))


def test_blur_impulse_response_is_a_gaussian():
    n, sigma = 31, 1.5
    lin = np.zeros((n, n, 3))
    lin[15, 15, :] = 1.0
    out = fx.gaussian_blur(lin, sigma)
    yy, xx = np.mgrid[0:n, 0:n]
    g = np.exp(-((xx - 15) ** 2 + (yy - 15) ** 2) / (2 * sigma**2))
    g /= g.sum()
    np.testing.assert_allclose(out[..., 1], g, atol=2e-4)
    assert out.sum() == pytest.approx(3.0, rel=1e-6)  # energy preserved, channels kept apart
    assert fx.gaussian_blur(lin, 0.0) is lin


@pytest.mark.parametrize("x", [0.1, 0.4, 0.7])
def test_sensor_noise_variance_matches_the_model(x):
    shot, read = 0.004, 0.01
    lin = np.full((200, 200, 3), x)
    noisy = fx.sensor_noise(lin, shot, read, np.random.default_rng(0))
    var = shot * x + read**2  # Poisson-Gaussian: a x + b^2
    n = noisy.size
    assert noisy.mean() == pytest.approx(x, abs=4 * np.sqrt(var / n))
    # sample variance of n Gaussians: relative standard error sqrt(2 / n)
    assert noisy.var() == pytest.approx(var, rel=4 * np.sqrt(2 / n))


def test_jpeg_roundtrip_error_shrinks_with_quality():
    yy, xx = np.mgrid[0:48, 0:48]
    img = np.stack([xx * 5, yy * 5, (xx + yy) * 2], -1).clip(0, 255).astype(np.uint8)  # smooth
    err = {q: np.abs(fx.jpeg_roundtrip(img, q).astype(float) - img).mean() for q in (10, 50, 95)}
    assert err[95] < 1.5
    assert err[10] > err[50] > err[95]
    assert fx.jpeg_roundtrip(img, 95).dtype == np.uint8 and fx.jpeg_roundtrip(img, 95).shape == img.shape


def test_depth_noise_model():
    z = np.zeros((1, 300, 300), np.float32)
    z[0, :, 100:] = 1.4
    cfg = CameraEffectsConfig()
    out = fx.apply_depth_noise(z, cfg, seed=1)
    assert out.dtype == np.float32
    assert (out[0, :, :100] == 0).all() and (out[0, :, 100:] > 0).all()  # mask == depth > 0 is kept
    sigma = 0.0012 + 0.0019 * (1.4 - 0.4) ** 2  # Nguyen et al. 2012 at z = 1.4 m
    fg = out[0, :, 100:].astype(np.float64)
    assert fg.std() == pytest.approx(sigma, rel=0.03)
    assert fg.mean() == pytest.approx(1.4, abs=4 * sigma / np.sqrt(fg.size))


def test_sample_depends_only_on_seed_and_index():
    g = np.random.default_rng(5)
    rgb = g.integers(0, 256, (6, 12, 12, 3), dtype=np.uint8)
    cfg = CameraEffectsConfig()
    full = fx.apply_camera_effects(rgb, cfg, seed=11)
    # any batch composition: image j gets the camera of (seed, index j)
    idx = np.array([4, 1])
    part = fx.apply_camera_effects(rgb[idx], cfg, seed=11, indices=idx)
    np.testing.assert_array_equal(part, full[idx])
    np.testing.assert_array_equal(fx.apply_camera_effects(rgb, cfg, seed=11), full)
    assert not np.array_equal(fx.apply_camera_effects(rgb, cfg, seed=12), full)
    # switching one effect off leaves the others' draws unchanged
    off = dataclasses.replace(cfg, blur=dataclasses.replace(cfg.blur, enabled=False))
    a, b = fx.sample_params(cfg, 11, 3), fx.sample_params(off, 11, 3)
    assert b.sigma is None and a.sigma is not None
    assert (a.ev, a.vignette, a.noise, a.gamma, a.quality) == (b.ev, b.vignette, b.noise, b.gamma, b.quality)
    np.testing.assert_array_equal(a.wb, b.wb)



def test_worker_processes_give_the_same_images(monkeypatch):
    monkeypatch.setattr(fx, "PARALLEL_MIN", 8)  # a small batch still goes through the pool (3 chunks of <= 500)
    monkeypatch.setattr(fx.os, "cpu_count", lambda: 2)
    g = np.random.default_rng(6)
    rgb = g.integers(0, 256, (1001, 6, 6, 3), dtype=np.uint8)
    idx = g.permutation(5000)[:1001]
    cfg = CameraEffectsConfig()
    one = fx.apply_camera_effects(rgb, cfg, seed=3, indices=idx, workers=1)
    np.testing.assert_array_equal(fx.apply_camera_effects(rgb, cfg, seed=3, indices=idx, workers=2), one)
    np.testing.assert_array_equal(one[5], fx.apply_params(rgb[5], fx.sample_params(cfg, 3, int(idx[5]))))

def test_drawn_parameters_stay_in_their_ranges():
    cfg = load_config(CameraEffectsConfig, None, ["jpeg.quality=[60, 61]", "gamma.gamma=[2.0, 2.1]", "noise.read=[0, 0]"])
    ps = [fx.sample_params(cfg, 0, i) for i in range(200)]
    assert {p.quality for p in ps} == {60, 61}
    assert all(2.0 <= p.gamma <= 2.1 for p in ps)
    assert all(p.noise[1] == 0 for p in ps)
    assert all(0.75 <= p.wb[0] <= 1.3 and p.wb[1] == 1.0 for p in ps)


@pytest.mark.parametrize("sets, needle", [
    (["jpeg.quality=[90, 40]"], "effects.jpeg.quality"),
    (["jpeg.quality=[0, 40]"], "below the minimum 1"),
    (["vignetting.strength=[0, 1]"], "must stay below 1"),
    (["blur.sigma_px=[-1, 1]"], "effects.blur.sigma_px"),
    (["noise.enabled=maybe"], "expected true or false"),
])
def test_bad_values_are_one_line_errors(sets, needle):
    with pytest.raises(Sim2RealError, match=needle.replace("[", r"\[")):
        load_config(CameraEffectsConfig, None, sets)


def test_bad_arrays_are_rejected():
    with pytest.raises(ValueError, match="uint8"):
        fx.apply_camera_effects(np.zeros((2, 8, 8, 3), np.float32), CameraEffectsConfig(), 0)
    with pytest.raises(ValueError, match="indices"):
        fx.apply_camera_effects(np.zeros((2, 8, 8, 3), np.uint8), CameraEffectsConfig(), 0, indices=np.arange(3))
