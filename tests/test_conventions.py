"""Pose conventions: quaternions (w, x, y, z, w >= 0), R <-> q, angle error, projection, the OpenGL seam."""

import numpy as np
import pytest

from sim2real import conventions as cv


def rodrigues(axis, angle):
    """Independent reference: rotation matrix from axis-angle (Rodrigues' formula)."""
    k = np.asarray(axis, float) / np.linalg.norm(axis)
    Kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + np.sin(angle) * Kx + (1 - np.cos(angle)) * Kx @ Kx


def test_matrix_from_quat_matches_axis_angle(rng):
    for _ in range(20):
        axis = rng.normal(size=3)
        angle = rng.uniform(0, np.pi)
        k = axis / np.linalg.norm(axis)
        q = np.concatenate([[np.cos(angle / 2)], np.sin(angle / 2) * k])
        np.testing.assert_allclose(cv.matrix_from_quat(q), rodrigues(axis, angle), atol=1e-12)


def test_quat_from_matrix_roundtrip_and_canonical(rng):
    q = cv.canonical_quat(rng.normal(size=(500, 4)))
    R = cv.matrix_from_quat(q)
    q2 = cv.quat_from_matrix(R)
    assert np.all(q2[:, 0] >= 0)
    np.testing.assert_allclose(np.linalg.norm(q2, axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(q2, q, atol=1e-9)
    # q and -q give the same matrix, and canonicalise to the same quaternion
    np.testing.assert_allclose(cv.matrix_from_quat(-q), R, atol=1e-12)
    np.testing.assert_allclose(cv.canonical_quat(-q), q, atol=1e-12)


def test_canonical_quat_tie_w_zero():
    q = np.array([[0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -0.6, 0.8]])
    c = cv.canonical_quat(q)
    np.testing.assert_allclose(c, [[0, 1, 0, 0], [0, 0, 0.6, -0.8]])
    with pytest.raises(ValueError):
        cv.canonical_quat(np.zeros(4))


def test_angle_error_equals_bop_rotation_error(rng):
    q1 = cv.canonical_quat(rng.normal(size=(200, 4)))
    q2 = cv.canonical_quat(rng.normal(size=(200, 4)))
    R1, R2 = cv.matrix_from_quat(q1), cv.matrix_from_quat(q2)
    # BOP: re = arccos((trace(R_est R_gt^T) - 1) / 2)
    tr = np.einsum("nij,nij->n", R1, R2)
    bop = np.degrees(np.arccos(np.clip((tr - 1) / 2, -1, 1)))
    np.testing.assert_allclose(cv.quat_angle_deg(q1, q2), bop, atol=1e-6)
    np.testing.assert_allclose(cv.quat_angle_deg(q1, -q1), 0.0, atol=1e-5)


def test_projection_by_hand():
    K = cv.intrinsics(100.0, 120.0, 31.5, 15.5)
    pts = np.array([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0], [0.0, 0.1, 0.5]])
    uv = cv.project(pts, K, np.eye(3), np.array([0.0, 0.0, 1.0]))
    # u = fx X / Z + cx, v = fy Y / Z + cy; y points down in the image
    np.testing.assert_allclose(uv, [[31.5, 15.5], [41.5, 15.5], [31.5, 15.5 + 120 * 0.1 / 1.5]])


def test_intrinsics_from_fov_centre():
    K = cv.intrinsics_from_fov(90.0, 64, 48)
    assert K[0, 0] == pytest.approx(32.0)
    assert (K[0, 2], K[1, 2]) == (31.5, 23.5)


def test_opengl_seam_flips_y_and_z(rng):
    R = cv.matrix_from_quat(cv.canonical_quat(rng.normal(size=4)))
    t = np.array([0.01, -0.02, 0.7])
    T = cv.opencv_to_opengl_pose(R, t)
    p_model = rng.normal(size=3) * 0.05
    p_cv = R @ p_model + t
    p_gl = T[:3, :3] @ p_model + T[:3, 3]
    # OpenGL camera: same x, y up (= -y_cv), looks down -z (z_gl = -z_cv)
    np.testing.assert_allclose(p_gl, [p_cv[0], -p_cv[1], -p_cv[2]], atol=1e-12)


def test_pyrender_projection_matches_opencv():
    """pyrender's projection matrix with the seam's intrinsics lands a point on the OpenCV pixel centre."""
    K = cv.intrinsics(80.0, 90.0, 20.0, 11.0)
    W, H = 40, 24
    fx, fy, cx, cy = cv.pyrender_intrinsics(K)
    # pyrender.IntrinsicsCamera.get_projection_matrix, written out (see conventions.pyrender_intrinsics)
    P = np.zeros((4, 4))
    P[0, 0], P[1, 1] = 2 * fx / W, 2 * fy / H
    P[0, 2], P[1, 2] = 1 - 2 * cx / W, 2 * cy / H - 1
    P[3, 2] = -1
    p_cv = np.array([0.03, -0.02, 0.8])
    p_gl = cv.OPENCV_TO_OPENGL @ p_cv
    clip = P @ np.append(p_gl, 1.0)
    ndc = clip[:3] / clip[3]
    win_x = (ndc[0] + 1) / 2 * W  # window coords: pixel i spans [i, i+1]
    win_y = (ndc[1] + 1) / 2 * H  # from the bottom
    col = win_x - 0.5  # OpenCV pixel-centre coordinate
    row = (H - win_y) - 0.5  # image rows from the top
    u, v = cv.project(p_cv[None], K, np.eye(3), np.zeros(3))[0]
    assert (col, row) == pytest.approx((u, v), abs=1e-9)


# ------------------------------------------------------------------------------------------------
# torch twins of the numpy conventions, checked against them (and against independent references)
# ------------------------------------------------------------------------------------------------

torch = pytest.importorskip("torch")


def _quats_with_ties(rng, n: int = 300) -> np.ndarray:
    """Random quaternions (any norm, both hemispheres) plus the w == 0 ties of the canonical-sign rule."""
    q = rng.normal(size=(n, 4)) * rng.uniform(0.2, 3.0, size=(n, 1))
    ties = np.array([[0.0, -1.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0], [0.0, 0.0, -0.6, 0.8], [0.0, 0.0, 0.6, -0.8],
                     [0.0, 0.0, 0.0, -1.0], [0.0, 0.0, 0.0, 2.0], [-0.0, -0.3, 0.4, 0.0], [1.0, 0.0, 0.0, 0.0],
                     [-1.0, 0.0, 0.0, 0.0]])
    w0 = rng.normal(size=(20, 4))
    w0[:, 0] = 0.0
    return np.concatenate([q, ties, w0])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_canonical_quat_torch_matches_numpy(rng, dtype):
    q = _quats_with_ties(rng).astype(dtype)
    ref = cv.canonical_quat(q, keep_dtype=True)
    got = cv.canonical_quat_torch(torch.from_numpy(q))
    assert got.dtype == torch.from_numpy(ref).dtype
    np.testing.assert_allclose(got.numpy(), ref, rtol=0, atol=4 * np.finfo(dtype).eps)
    np.testing.assert_array_equal(np.sign(got.numpy()), np.sign(ref))  # the same representative, ties included
    # idempotent bit for bit, and q / -q give the same representative
    np.testing.assert_array_equal(cv.canonical_quat_torch(got).numpy(), got.numpy())
    np.testing.assert_array_equal(cv.canonical_quat_torch(-got).numpy(), got.numpy())


def test_canonical_quat_torch_rejects_bad_input():
    with pytest.raises(ValueError, match="zero quaternion"):
        cv.canonical_quat_torch(torch.zeros(2, 4))
    with pytest.raises(ValueError, match=r"\(\.\.\., 4\)"):
        cv.canonical_quat_torch(torch.ones(2, 3))


def _rotate_by(q: np.ndarray, axis: np.ndarray, angle_rad: np.ndarray) -> np.ndarray:
    """q * r with r a rotation of ``angle_rad`` about ``axis`` (so the angle between q and the result is angle_rad)."""
    k = axis / np.linalg.norm(axis, axis=-1, keepdims=True)
    r = np.concatenate([np.cos(angle_rad / 2)[:, None], np.sin(angle_rad / 2)[:, None] * k], axis=1)
    w1, v1, w2, v2 = q[:, :1], q[:, 1:], r[:, :1], r[:, 1:]
    return np.concatenate([w1 * w2 - np.sum(v1 * v2, axis=1, keepdims=True), w1 * v2 + w2 * v1 + np.cross(v1, v2)], axis=1)


def test_quat_angle_deg_torch_matches_numpy(rng):
    q1, q2 = _quats_with_ties(rng), _quats_with_ties(rng)[::-1].copy()
    ref = cv.quat_angle_deg(q1, q2)
    t1, t2 = torch.from_numpy(q1), torch.from_numpy(q2)
    got = cv.quat_angle_deg_torch(t1, t2).numpy()
    np.testing.assert_allclose(got, ref, atol=1e-6)
    # sign-invariant (q == -q), symmetric, zero against itself, and within [0, 180]
    np.testing.assert_allclose(cv.quat_angle_deg_torch(-t1, t2).numpy(), got, atol=1e-9)
    np.testing.assert_allclose(cv.quat_angle_deg_torch(t2, t1).numpy(), got, atol=1e-9)
    np.testing.assert_allclose(cv.quat_angle_deg_torch(t1, -t1).numpy(), 0.0, atol=1e-9)
    assert got.min() >= 0.0 and got.max() <= 180.0
    # float32 inputs: the same angles to float32 precision; broadcasting one quaternion against many
    got32 = cv.quat_angle_deg_torch(t1.float(), t2.float())
    assert got32.dtype == torch.float32
    np.testing.assert_allclose(got32.numpy(), ref, atol=2e-3)
    np.testing.assert_allclose(cv.quat_angle_deg_torch(t1[:1], t2).numpy(), cv.quat_angle_deg(q1[:1], q2), atol=1e-6)


def test_quat_angle_deg_near_identical_and_opposite(rng):
    """Tiny and near-180-degree rotations: numpy's arccos and torch's atan2 agree; atan2 keeps full precision."""
    n = 64
    q = cv.canonical_quat(rng.normal(size=(n, 4)))
    axis = rng.normal(size=(n, 3))
    for angle_deg in (1e-5, 1e-3, 0.1, 179.9, 180.0 - 1e-4):
        angle = np.full(n, np.radians(angle_deg))
        q2 = _rotate_by(q, axis, angle)
        got = cv.quat_angle_deg_torch(torch.from_numpy(q), torch.from_numpy(q2)).numpy()
        np.testing.assert_allclose(got, angle_deg, rtol=1e-6, atol=1e-9)  # the constructed angle, to ~ulps
        np.testing.assert_allclose(cv.quat_angle_deg(q, q2), got, atol=2e-5)  # arccos loses digits near 0 / 180


def test_quat_angle_deg_torch_gradient():
    q1 = torch.tensor([[0.9, 0.1, -0.3, 0.2], [0.1, 0.7, 0.2, -0.6]], dtype=torch.float64, requires_grad=True)
    q2 = torch.tensor([[0.5, -0.5, 0.5, 0.5], [-0.2, 0.3, 0.9, 0.1]], dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(cv.quat_angle_deg_torch, (q1, q2))


def test_angle_deg_from_dot_is_the_clipped_arccos():
    dots = np.array([-1.2, -1.0, -0.5, 0.0, 0.5, 1.0, 1.0 + 1e-12])
    np.testing.assert_allclose(cv.angle_deg_from_dot(dots), [0.0, 0.0, 120.0, 180.0, 120.0, 0.0, 0.0], atol=1e-9)


def test_image_scaling_matches_numpy_and_round_trips(rng):
    rgb = rng.integers(0, 256, size=(3, 5, 7, 3), dtype=np.uint8)
    rgb[0, 0, :3, 0] = [0, 255, 128]
    t = torch.from_numpy(rgb)
    x = cv.image_to_net(t)
    assert x.dtype == torch.float32
    np.testing.assert_array_equal(x.numpy(), rgb.astype(np.float32) / np.float32(127.5) - np.float32(1.0))
    assert x[0, 0, 0, 0] == -1.0 and x[0, 0, 1, 0] == 1.0
    np.testing.assert_array_equal(t.numpy(), rgb)  # the input is not modified
    # every uint8 value survives the round trip exactly; out-of-range floats are clamped
    every = torch.arange(256, dtype=torch.uint8)
    assert torch.equal(cv.net_to_image(cv.image_to_net(every)), every)
    assert cv.net_to_image(torch.tensor([-3.0, 3.0])).tolist() == [0, 255]
    # a permuted (N, 3, H, W) view keeps its shape and strides: the same numbers as the contiguous copy
    v = t.permute(0, 3, 1, 2)
    xv = cv.image_to_net(v)
    assert xv.shape == v.shape and xv.stride() == v.stride()
    assert torch.equal(xv, cv.image_to_net(v.contiguous()))
    with pytest.raises(ValueError, match="uint8"):
        cv.image_to_net(x)


def test_data_tensors_use_the_conventions_scaling(rng):
    from sim2real.data.tensors import rgb_to_tensor, tensor_to_rgb

    rgb = rng.integers(0, 256, size=(2, 4, 6, 3), dtype=np.uint8)
    x = rgb_to_tensor(rgb)
    assert x.shape == (2, 3, 4, 6)
    assert torch.equal(x, cv.image_to_net(torch.from_numpy(rgb)).permute(0, 3, 1, 2))
    extra = torch.cat([x, torch.zeros(2, 1, 4, 6)], dim=1)  # an RGB-D image: the depth channel is dropped
    np.testing.assert_array_equal(tensor_to_rgb(extra), rgb)


def test_fill_rule_side_and_distance_are_one_rule():
    """render places the object at fill_distance; a crop of that image by fill_side_px is the whole image."""
    K = cv.intrinsics_from_fov(20.0, 64, 64)
    diameter, fill = 0.12, 0.8
    t_z = cv.fill_distance(K[0, 0], diameter, 64, fill)
    assert cv.fill_side_px(K[0, 0], diameter, t_z, fill) == pytest.approx(64.0, rel=1e-12)
    # by hand: the projected diameter f * D / t_z is fill of the side
    assert K[0, 0] * diameter / t_z == pytest.approx(fill * 64, rel=1e-12)
    # the renderer's class distance and the BOP crop both use it
    from sim2real.data.bop import crop_box
    from sim2real.render.config import RenderConfig
    from sim2real.render.sampling import class_distance

    cfg = RenderConfig()
    Kr = cv.intrinsics_from_fov(cfg.camera.fov_deg, cfg.size_hw[1], cfg.size_hw[0])
    d = class_distance(cfg, Kr, diameter)
    assert d == cv.fill_distance(Kr[0, 0], diameter, cfg.size_hw[1], cfg.camera.fill)
    box = crop_box(Kr, np.array([0.0, 0.0, d * 1000]), diameter * 1000, 32, cfg.camera.fill)
    assert box.wx == pytest.approx(cfg.size_hw[1], rel=1e-12)
