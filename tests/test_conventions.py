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


# ------------------------------------------------------------------------------------------------
# the crop seam: projection, crop window, crop intrinsics (numpy and torch)
# ------------------------------------------------------------------------------------------------


def test_camera_to_pixel_by_hand_and_matches_project():
    K = np.array([[100.0, 2.0, 31.5], [0.0, 120.0, 15.5], [0.0, 0.0, 1.0]])
    u, v = cv.camera_to_pixel(0.1, -0.05, 0.5, K)
    # u = fx x / z + s y / z + cx = 100 * 0.2 + 2 * (-0.1) + 31.5; v = fy y / z + cy = 120 * (-0.1) + 15.5
    assert u == pytest.approx(20.0 - 0.2 + 31.5, rel=1e-15)
    assert v == pytest.approx(-12.0 + 15.5, rel=1e-15)
    pts = np.array([[0.0, 0.0, 0.0], [0.02, -0.01, 0.03]])
    t = np.array([0.05, 0.01, 0.6])
    X = pts + t
    u, v = cv.camera_to_pixel(X[:, 0], X[:, 1], X[:, 2], K)
    np.testing.assert_allclose(np.stack([u, v], axis=1), cv.project(pts, K, np.eye(3), t), rtol=1e-13)


def test_camera_to_pixel_torch_matches_numpy(rng):
    K = cv.intrinsics(90.0, 95.0, 15.5, 16.5)
    X = rng.uniform([-0.1, -0.1, 0.3], [0.1, 0.1, 1.0], size=(50, 3))
    u, v = cv.camera_to_pixel(X[:, 0], X[:, 1], X[:, 2], K)
    Xt, Kt = torch.from_numpy(X), torch.from_numpy(K)
    ut, vt = cv.camera_to_pixel(Xt[:, 0], Xt[:, 1], Xt[:, 2], Kt)
    assert ut.dtype == torch.float64 and ut.shape == (50,)
    np.testing.assert_array_equal(ut.numpy(), u)  # the same float64 expression: the same bits
    np.testing.assert_array_equal(vt.numpy(), v)


def test_fill_rule_torch_matches_numpy(rng):
    f, diam = rng.uniform(50, 500, size=20), rng.uniform(0.02, 0.3, size=20)
    t_z, side = rng.uniform(0.2, 2.0, size=20), rng.uniform(16, 256, size=20)
    for fn, args in ((cv.fill_side_px, (f, diam, t_z, 0.8)), (cv.fill_distance, (f, diam, side, 0.8))):
        ref = fn(*args)
        got = fn(*[torch.from_numpy(a) if isinstance(a, np.ndarray) else a for a in args])
        np.testing.assert_array_equal(got.numpy(), ref)
    # by hand: f = 100 px, D = 0.1 m at 0.5 m spans 20 px, which is fill 0.8 of a 25 px side
    assert cv.fill_side_px(100.0, 0.1, 0.5, 0.8) == pytest.approx(25.0, rel=1e-15)
    assert cv.fill_distance(100.0, 0.1, 25.0, 0.8) == pytest.approx(0.5, rel=1e-15)


def test_crop_window_by_hand():
    K = cv.intrinsics(100.0, 200.0, 50.0, 40.0)
    # origin at (0.1, -0.05, 1.0) m projects to (60, 30); D = 0.2 m, fill 0.5: sides 100 * 0.2 / 0.5 = 40, 80 px
    x0, y0, wx, wy = cv.crop_window(K, np.array([0.1, -0.05, 1.0]), 0.2, 0.5)
    assert (wx, wy) == (pytest.approx(40.0), pytest.approx(80.0))
    assert (x0, y0) == (pytest.approx(60.0 - 20.0), pytest.approx(30.0 - 40.0))
    from sim2real.data.bop import crop_box

    box = crop_box(K, np.array([100.0, -50.0, 1000.0]), 200.0, 32, 0.5)  # the same in millimetres
    assert (box.x0, box.y0, box.wx, box.wy) == (pytest.approx(x0), pytest.approx(y0), pytest.approx(wx), pytest.approx(wy))


def test_crop_intrinsics_by_hand_and_maps_points_like_the_crop(rng):
    K = cv.intrinsics(100.0, 110.0, 31.5, 23.5)
    # the whole 64 x 64 image as the window (edges at -0.5), resampled to its own size: K unchanged
    K64 = cv.intrinsics(100.0, 110.0, 31.5, 31.5)
    np.testing.assert_allclose(cv.crop_intrinsics(K64, -0.5, -0.5, 64.0, 64.0, 64), K64, rtol=1e-15)
    # a 2x zoom (window 16 px -> 32 px) at edge (10.5, 4.5): fx' = 2 fx, cx' = (cx - x0) * 2 - 0.5
    Kc = cv.crop_intrinsics(K, 10.5, 4.5, 16.0, 16.0, 32)
    np.testing.assert_allclose(Kc, [[200.0, 0.0, (31.5 - 10.5) * 2 - 0.5], [0.0, 220.0, (23.5 - 4.5) * 2 - 0.5],
                                    [0.0, 0.0, 1.0]], rtol=1e-15)
    # a full-image pixel x lands at crop pixel (x - x0) s - 0.5: projecting with the crop K says the same
    X = rng.uniform([-0.1, -0.1, 0.5], [0.1, 0.1, 1.0], size=(20, 3))
    u, v = cv.camera_to_pixel(X[:, 0], X[:, 1], X[:, 2], K)
    uc, vc = cv.camera_to_pixel(X[:, 0], X[:, 1], X[:, 2], Kc)
    np.testing.assert_allclose(uc, (u - 10.5) * 2 - 0.5, rtol=1e-12)
    np.testing.assert_allclose(vc, (v - 4.5) * 2 - 0.5, rtol=1e-12)
    from sim2real.data.bop import CropBox

    np.testing.assert_array_equal(CropBox(10.5, 4.5, 16.0, 16.0, 32).crop_K(K), Kc)
