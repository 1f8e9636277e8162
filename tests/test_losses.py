"""PixelDA losses against independent numpy references (sim2real.losses)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch

from sim2real.losses import (MaskedPMSE, QuatLogLoss, d_accuracy, gan_d_loss, gan_g_loss, masked_pmse,
                             quat_log_loss, task_ce)


def _rng(seed=0):
    return np.random.default_rng(seed)


def _pmse_pairs_reference(pred: np.ndarray, target: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Per-image PMSE from explicit pixel pairs: (1 / (2 k^2)) * sum over all ordered pairs (d_i - d_j)^2."""
    out = []
    for b in range(pred.shape[0]):
        d = pred[b] - target[b]                       # (C, H, W)
        if mask is not None:
            d = d * mask[b][None].astype(np.float64)  # same mask on every channel
        v = d.ravel()
        k = v.size
        total = 0.0
        for i, j in itertools.product(range(k), range(k)):
            total += (v[i] - v[j]) ** 2
        out.append(total / (2 * k * k))
    return np.array(out)


def test_masked_pmse_equals_explicit_pixel_pairs():
    r = _rng(1)
    pred = r.uniform(-1, 1, (3, 2, 4, 3))
    target = r.uniform(-1, 1, (3, 2, 4, 3))
    mask = r.uniform(size=(3, 4, 3)) > 0.4
    ref = _pmse_pairs_reference(pred, target, mask)
    t = lambda a: torch.from_numpy(a)  # noqa: E731
    got = masked_pmse(t(pred), t(target), t(mask), reduction="none")
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(float(masked_pmse(t(pred), t(target), t(mask))), ref.mean(), rtol=1e-5)
    # (B, 1, H, W) masks, float masks and no mask
    np.testing.assert_allclose(float(masked_pmse(t(pred), t(target), t(mask)[:, None].double())), ref.mean(), rtol=1e-5)
    ref_nomask = _pmse_pairs_reference(pred, target, None)
    np.testing.assert_allclose(float(masked_pmse(t(pred), t(target))), ref_nomask.mean(), rtol=1e-5)


def test_masked_pmse_official_variant_is_2x_batch_sum():
    """TF's mean_pairwise_squared_error: 2 * sum_b [sum d^2 / k - (sum d)^2 / k^2] (official code)."""
    r = _rng(2)
    pred, target = r.uniform(-1, 1, (4, 3, 5, 5)), r.uniform(-1, 1, (4, 3, 5, 5))
    mask = r.uniform(size=(4, 5, 5)) > 0.5
    d = (pred - target) * mask[:, None]
    k = d[0].size
    flat = d.reshape(4, -1)
    tf_ref = np.sum(2.0 * (flat ** 2).sum(1) / k - 2.0 * flat.sum(1) ** 2 / k ** 2)
    t = lambda a: torch.from_numpy(a)  # noqa: E731
    got = masked_pmse(t(pred), t(target), t(mask), variant="official")
    np.testing.assert_allclose(float(got), tf_ref, rtol=1e-5)
    paper = masked_pmse(t(pred), t(target), t(mask), variant="paper")
    np.testing.assert_allclose(float(got), 2 * 4 * float(paper), rtol=1e-5)


def test_pmse_ignores_a_global_shift_and_the_background():
    r = _rng(3)
    x = torch.from_numpy(r.uniform(-1, 1, (2, 3, 6, 6)))
    assert float(masked_pmse(x + 0.3, x)) == pytest.approx(0.0, abs=1e-12)  # pairwise: shift is free
    mask = torch.zeros(2, 6, 6, dtype=torch.bool)
    mask[:, 2:4, 2:4] = True
    y = x.clone()
    y[:, :, ~mask[0]] = 5.0  # change only the background
    assert float(masked_pmse(y, x, mask)) == pytest.approx(0.0, abs=1e-12)
    assert float(masked_pmse(y, x)) > 0.1


def test_pmse_shape_checks():
    x = torch.zeros(2, 3, 4, 4)
    with pytest.raises(ValueError, match="mask"):
        masked_pmse(x, x, torch.ones(2, 3, 4, 4))  # per-channel masks are not silently broadcast
    with pytest.raises(ValueError, match="same|one shape"):
        masked_pmse(x, torch.zeros(2, 3, 4, 5))
    with pytest.raises(ValueError, match="variant"):
        masked_pmse(x, x, variant="tf")


def _unit(q):
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def test_quat_log_loss_reference_and_sign_invariance():
    r = _rng(4)
    q = _unit(r.normal(size=(16, 4)))
    qh = _unit(r.normal(size=(16, 4)))
    ref = np.log(1e-4 + 1 - np.abs((q * qh).sum(1)))
    t = lambda a: torch.from_numpy(a)  # noqa: E731
    np.testing.assert_allclose(quat_log_loss(t(qh), t(q), reduction="none").numpy(), ref, rtol=1e-6)
    np.testing.assert_allclose(float(quat_log_loss(t(qh), t(q))), ref.mean(), rtol=1e-6)
    # q and -q are the same rotation: equal loss, for either argument
    np.testing.assert_allclose(quat_log_loss(t(-qh), t(q), reduction="none").numpy(), ref, rtol=1e-6)
    np.testing.assert_allclose(quat_log_loss(t(qh), t(-q), reduction="none").numpy(), ref, rtol=1e-6)


def test_quat_log_loss_is_minimal_at_the_true_rotation():
    r = _rng(5)
    q = torch.from_numpy(_unit(r.normal(size=(1, 4))))
    best = float(quat_log_loss(q, q))
    assert best == pytest.approx(np.log(1e-4), rel=1e-3)
    others = torch.from_numpy(_unit(r.normal(size=(500, 4))))
    losses = quat_log_loss(others, q.expand(500, 4), reduction="none")
    assert float(losses.min()) > best
    # 180 degrees (orthogonal quaternions) is the maximum log(1 + eps)
    w = torch.tensor([[1.0, 0, 0, 0]], dtype=torch.float64)
    x = torch.tensor([[0.0, 1, 0, 0]], dtype=torch.float64)
    assert float(quat_log_loss(x, w)) == pytest.approx(np.log(1 + 1e-4))


def test_gan_losses_against_numpy():
    r = _rng(6)
    real, fake = r.normal(0, 3, 7), r.normal(0, 3, 5)
    softplus = lambda v: np.log1p(np.exp(v))  # noqa: E731
    t = lambda a: torch.from_numpy(a)  # noqa: E731
    # non-saturating GAN: D maximises log sigma(real) + log(1 - sigma(fake)); G minimises -log sigma(fake)
    np.testing.assert_allclose(float(gan_d_loss(t(real), t(fake))), softplus(-real).mean() + softplus(fake).mean(), rtol=1e-6)
    np.testing.assert_allclose(float(gan_g_loss(t(fake))), softplus(-fake).mean(), rtol=1e-6)
    np.testing.assert_allclose(float(gan_d_loss(t(real), t(fake), "lsgan")), ((real - 1) ** 2).mean() + (fake ** 2).mean(), rtol=1e-6)
    np.testing.assert_allclose(float(gan_g_loss(t(fake), "lsgan")), ((fake - 1) ** 2).mean(), rtol=1e-6)
    # (B, 1) logits are accepted; accuracy counts real > 0 and fake <= 0
    acc = d_accuracy(t(real)[:, None], t(fake))
    assert float(acc) == pytest.approx(((real > 0).sum() + (fake <= 0).sum()) / 12)
    with pytest.raises(ValueError):
        gan_d_loss(torch.zeros(2, 2), torch.zeros(2))


def test_gan_losses_stable_for_large_logits():
    big = torch.tensor([200.0, -200.0])
    assert torch.isfinite(gan_d_loss(big, -big)) and torch.isfinite(gan_g_loss(-big))


def test_task_ce_against_numpy_log_softmax():
    r = _rng(7)
    logits = r.normal(0, 2, (6, 4))
    labels = r.integers(0, 4, 6)
    lse = np.log(np.exp(logits).sum(1))
    ref = (lse - logits[np.arange(6), labels]).mean()
    np.testing.assert_allclose(float(task_ce(torch.from_numpy(logits), torch.from_numpy(labels))), ref, rtol=1e-6)


def test_gradcheck_float64():
    r = _rng(8)
    pred = torch.from_numpy(r.uniform(-1, 1, (2, 2, 3, 3))).requires_grad_()
    target = torch.from_numpy(r.uniform(-1, 1, (2, 2, 3, 3)))
    mask = torch.from_numpy(r.uniform(size=(2, 3, 3)) > 0.3)
    assert torch.autograd.gradcheck(lambda p: masked_pmse(p, target, mask).double(), (pred,))
    q = torch.from_numpy(_unit(r.normal(size=(3, 4)))).requires_grad_()
    qt = torch.from_numpy(_unit(r.normal(size=(3, 4))))
    assert torch.autograd.gradcheck(lambda p: quat_log_loss(p, qt).double(), (q,))


def test_modules_equal_functionals():
    r = _rng(9)
    a, b = torch.from_numpy(r.normal(size=(2, 3, 4, 4))), torch.from_numpy(r.normal(size=(2, 3, 4, 4)))
    m = torch.from_numpy(r.uniform(size=(2, 4, 4)) > 0.5)
    assert torch.equal(MaskedPMSE("official")(a, b, m), masked_pmse(a, b, m, "official"))
    q1 = torch.from_numpy(_unit(r.normal(size=(5, 4))))
    q2 = torch.from_numpy(_unit(r.normal(size=(5, 4))))
    assert torch.equal(QuatLogLoss(eps=1e-3)(q1, q2), quat_log_loss(q1, q2, eps=1e-3))


# ---------------------------------------------------------------- symmetry-aware pose loss


def _rz(deg: float) -> np.ndarray:
    """Quaternion (w, x, y, z) of a rotation by ``deg`` about z, by hand."""
    h = np.radians(deg) / 2
    return np.array([np.cos(h), 0.0, 0.0, np.sin(h)])


def test_quat_mul_matches_rotation_matrix_product():
    from sim2real.conventions import matrix_from_quat
    from sim2real.losses import quat_mul

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 4)), rng.normal(size=(5, 4))
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    b /= np.linalg.norm(b, axis=1, keepdims=True)
    ab = quat_mul(torch.from_numpy(a), torch.from_numpy(b)).numpy()
    np.testing.assert_allclose(matrix_from_quat(ab), matrix_from_quat(a) @ matrix_from_quat(b), atol=1e-12)


def test_symmetric_pose_loss_is_the_minimum_over_the_group():
    """An object with a 2-fold symmetry about z: R_gt Rz(180) is as right as R_gt; Rz(90) is 90 deg off either."""
    rng = np.random.default_rng(1)
    q_gt = rng.normal(size=4)
    q_gt /= np.linalg.norm(q_gt)
    sym = torch.tensor(np.stack([_rz(0), _rz(180)]))[None].repeat(3, 1, 1)       # (B, S, 4)
    from sim2real.losses import quat_mul

    eq = lambda deg: quat_mul(torch.tensor(q_gt), torch.tensor(_rz(deg)))      # R_gt Rz(deg)
    q_pred = torch.stack([eq(0), eq(180), eq(90)])
    q_true = torch.tensor(q_gt)[None].repeat(3, 1)
    eps = 1e-4
    got = quat_log_loss(q_pred, q_true, eps, reduction="none", sym_quats=sym).numpy()
    plain = quat_log_loss(q_pred, q_true, eps, reduction="none").numpy()
    # hand values: 0 and 180 deg about the symmetry axis are perfect; 90 deg is |cos(45 deg)| from the closest
    np.testing.assert_allclose(got, [np.log(eps), np.log(eps), np.log(eps + 1 - np.cos(np.pi / 4))], atol=2e-6)
    # without the group the 180-degree answer is the worst possible
    np.testing.assert_allclose(plain[1], np.log(1 + eps), atol=1e-6)
    # identity-only group (padding) equals the plain loss
    ident = torch.tensor(_rz(0))[None, None].repeat(3, 2, 1)
    np.testing.assert_allclose(quat_log_loss(q_pred, q_true, eps, "none", ident).numpy(), plain, atol=1e-12)


def test_pose_loss_gradient_is_finite_at_a_perfect_estimate():
    q = torch.nn.functional.normalize(torch.randn(4, 4, dtype=torch.float64), dim=1)
    for sym in (None, torch.tensor(np.stack([_rz(0), _rz(120), _rz(240)]))[None].repeat(4, 1, 1)):
        raw = q.clone().requires_grad_(True)
        loss = quat_log_loss(torch.nn.functional.normalize(raw, dim=1), q, 1e-4, sym_quats=sym)
        loss.backward()
        assert torch.isfinite(raw.grad).all()
        assert float(loss.detach()) == pytest.approx(np.log(1e-4), abs=1e-6)
