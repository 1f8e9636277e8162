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
