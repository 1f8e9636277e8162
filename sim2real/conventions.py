"""Frames, units and quaternion order: stated once, here.

Conventions used everywhere in sim2real (code, HDF5 files, docs):

* **Camera frame: OpenCV.** x right, y down, z forward (into the scene). Pixel ``(u, v)`` has its
  centre at integer coordinates: ``u = fx * X / Z + cx``, ``v = fy * Y / Z + cy``; the top-left
  pixel's centre is ``(0, 0)``. ``K = [[fx, 0, cx], [0, fy, cy], [0, 0, 1]]``.
* **Pose: object (model) to camera.** ``X_cam = R_m2c @ X_model + t_m2c``; ``t_m2c`` in **metres**.
  Model frames have their origin at the bounding-box centre (as in BOP).
* **Quaternion: (w, x, y, z), unit norm, w >= 0.** ``q`` and ``-q`` are the same rotation; files always
  store the canonical one (w >= 0; where w == 0 the first non-zero of x, y, z is positive).
* **Depth:** z-depth along the optical axis in metres (not ray length); 0 means background.
* **Network images:** float32 in [-1, 1], ``x = rgb / 127.5 - 1`` for uint8 RGB (PixelDA's scaling):
  :func:`image_to_net` and :func:`net_to_image` (torch) are the only place it is written.
* **Object-centred crops (Cropped LineMod):** the object's diameter at its depth spans ``fill`` of the crop
  side: ``side_px = f * diameter / (fill * t_z)`` (:func:`fill_side_px`; solved for the depth,
  :func:`fill_distance`). ``render`` places objects by it, ``import-bop`` cuts crops by it: the window is
  :func:`crop_window`, the crop's intrinsics :func:`crop_intrinsics`.
* **Projection:** :func:`project` (model points with a pose) and :func:`camera_to_pixel` (camera-frame
  coordinates, numpy or torch).

Quaternion functions come as numpy (float64) and torch versions with the same conventions
(:func:`canonical_quat` / :func:`canonical_quat_torch`, :func:`quat_angle_deg` / :func:`quat_angle_deg_torch`);
torch is imported only when a torch function is called, so the numpy side (render workers) never loads it.

The one OpenGL seam: pyrender's camera is OpenGL (x right, y up, z backward) and its pixel centres
lie at half-integers. :func:`opencv_to_opengl_pose` and :func:`pyrender_intrinsics` are the only
place where that is converted; ``sim2real.render.backend`` is the only caller.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import torch

#: Maps OpenCV camera coordinates to OpenGL camera coordinates (and back: it is its own inverse).
OPENCV_TO_OPENGL = np.diag([1.0, -1.0, -1.0])


def canonical_quat(q: np.ndarray, keep_dtype: bool = False) -> np.ndarray:
    """Normalise quaternions to unit norm and the w >= 0 hemisphere; idempotent, bit for bit.

    A quaternion that is already unit (to within a few ulps of its own dtype) is not re-divided by its norm,
    only sign-flipped if needed, so canonicalising a stored float32 ``quat`` again (``export`` copying a source's
    poses, every HDF5 write) changes no bit. Others are divided by their norm (in float64) first.

    Args:
        q: ``(..., 4)`` quaternions (w, x, y, z), any non-zero norm.
        keep_dtype: return the input's floating dtype (float32 stays float32) instead of float64.

    Returns:
        ``(..., 4)`` unit quaternions with ``w >= 0`` (float64, or the input dtype with ``keep_dtype``); where
        ``w == 0`` exactly, the first non-zero of (x, y, z) is made positive, so the representative is unique.
    """
    q_in = np.asarray(q)
    in_dtype = q_in.dtype if np.issubdtype(q_in.dtype, np.floating) else np.dtype(np.float64)
    q = q_in.astype(np.float64)
    if q.shape[-1] != 4:
        raise ValueError(f"canonical_quat: expected (..., 4) quaternions (w, x, y, z), got shape {q.shape}")
    norm = np.linalg.norm(q, axis=-1, keepdims=True)
    if np.any(norm < 1e-12):
        raise ValueError("canonical_quat: got a zero quaternion")
    # sign key: w, then x, y, z for the w == 0 tie
    key = q[..., 0].copy()
    for j in (1, 2, 3):
        tie = key == 0
        key[tie] = q[..., j][tie]
    # "already unit": within 4 ulps of the input's precision (a float32 cast of a unit float64 is ~1 ulp off)
    tol = 4 * float(np.finfo(in_dtype).eps)
    unit = np.abs(norm - 1.0) <= tol
    out = np.where(unit, q, q / norm)
    out = np.where((key < 0)[..., None], -out, out)  # a sign flip is exact: -q of a canonical q round-trips
    return out.astype(in_dtype) if keep_dtype else out


def quat_from_matrix(R: np.ndarray) -> np.ndarray:
    """Rotation matrices to canonical quaternions.

    Args:
        R: ``(..., 3, 3)`` proper rotation matrices.

    Returns:
        ``(..., 4)`` float64 quaternions (w, x, y, z), unit, ``w >= 0``.
    """
    import quaternion as npq  # numpy-quaternion; its float arrays are (w, x, y, z)

    R = np.asarray(R, dtype=np.float64)
    if R.shape[-2:] != (3, 3):
        raise ValueError(f"quat_from_matrix: expected (..., 3, 3), got shape {R.shape}")
    q = npq.as_float_array(npq.from_rotation_matrix(R, nonorthogonal=True))
    return canonical_quat(q)


def matrix_from_quat(q: np.ndarray) -> np.ndarray:
    """Quaternions (w, x, y, z) to rotation matrices ``(..., 3, 3)``; ``q`` and ``-q`` give the same R."""
    q = np.asarray(q, dtype=np.float64)
    if q.shape[-1] != 4:
        raise ValueError(f"matrix_from_quat: expected (..., 4) quaternions (w, x, y, z), got shape {q.shape}")
    q = q / np.linalg.norm(q, axis=-1, keepdims=True)
    w, x, y, z = q[..., 0], q[..., 1], q[..., 2], q[..., 3]
    R = np.empty(q.shape[:-1] + (3, 3))
    R[..., 0, 0] = 1 - 2 * (y * y + z * z)
    R[..., 0, 1] = 2 * (x * y - w * z)
    R[..., 0, 2] = 2 * (x * z + w * y)
    R[..., 1, 0] = 2 * (x * y + w * z)
    R[..., 1, 1] = 1 - 2 * (x * x + z * z)
    R[..., 1, 2] = 2 * (y * z - w * x)
    R[..., 2, 0] = 2 * (x * z - w * y)
    R[..., 2, 1] = 2 * (y * z + w * x)
    R[..., 2, 2] = 1 - 2 * (x * x + y * y)
    return R


def quat_angle_deg(q1: np.ndarray, q2: np.ndarray) -> np.ndarray:
    """Rotation angle between two orientations, ``2 * arccos(|q1 . q2|)`` in degrees (sign-invariant).

    Equals BOP's ``re(R1, R2) = arccos((trace(R1 R2^T) - 1) / 2)``.
    Args: ``(..., 4)`` quaternions (w, x, y, z), normalised here. Returns ``(...)`` degrees in [0, 180].
    """
    q1 = np.asarray(q1, dtype=np.float64)
    q2 = np.asarray(q2, dtype=np.float64)
    q1 = q1 / np.linalg.norm(q1, axis=-1, keepdims=True)
    q2 = q2 / np.linalg.norm(q2, axis=-1, keepdims=True)
    return angle_deg_from_dot(np.sum(q1 * q2, axis=-1))


def angle_deg_from_dot(dot: np.ndarray) -> np.ndarray:
    """Rotation angle in degrees from the dot product of two unit quaternions: ``2 * arccos(clip(|dot|, 0, 1))``.

    The one place the numpy angle formula is written (:func:`quat_angle_deg`, the symmetry-aware error and the
    constant-rotation baseline call it on their own dot products). Args: ``(...)`` dots. Returns ``(...)`` float64
    degrees in [0, 180].
    """
    return np.degrees(2.0 * np.arccos(np.clip(np.abs(dot), 0.0, 1.0)))


def canonical_quat_torch(q: "torch.Tensor") -> "torch.Tensor":
    """:func:`canonical_quat` for torch tensors: unit norm, ``w >= 0``, and the same ``w == 0`` tie rule.

    Computed in float64 and returned in the input's floating dtype (an integer input comes back float64), on
    its device. As the numpy version, a quaternion already unit to within 4 ulps of its dtype is only
    sign-flipped, not re-divided, so canonicalising twice changes no bit.

    Args:
        q: ``(..., 4)`` quaternions (w, x, y, z), any non-zero norm.

    Returns:
        ``(..., 4)`` unit quaternions with ``w >= 0``; where ``w == 0`` exactly the first non-zero of (x, y, z)
        is positive.
    """
    import torch

    if q.shape[-1:] != (4,):
        raise ValueError(f"canonical_quat_torch: expected (..., 4) quaternions (w, x, y, z), got shape {tuple(q.shape)}")
    out_dtype = q.dtype if q.is_floating_point() else torch.float64
    q64 = q.to(torch.float64)
    norm = torch.linalg.vector_norm(q64, dim=-1, keepdim=True)
    if bool((norm < 1e-12).any()):
        raise ValueError("canonical_quat_torch: got a zero quaternion")
    key = q64[..., 0]
    for j in (1, 2, 3):  # sign key: w, then x, y, z for the w == 0 tie
        key = torch.where(key == 0, q64[..., j], key)
    tol = 4 * torch.finfo(out_dtype).eps
    out = torch.where((norm - 1.0).abs() <= tol, q64, q64 / norm)
    out = torch.where((key < 0)[..., None], -out, out)
    return out.to(out_dtype)


def quat_angle_deg_torch(q1: "torch.Tensor", q2: "torch.Tensor") -> "torch.Tensor":
    """Rotation angle between two orientations in degrees, for torch tensors; sign-invariant (q == -q).

    The same angle as :func:`quat_angle_deg` (``2 * arccos(|q1 . q2|)``, BOP's ``re``), written as
    ``2 * atan2(|v|, |w|)`` of the relative quaternion ``r = conj(q1) * q2 = (w, v)``: no clamp is needed and
    small angles keep full precision (``arccos`` near 1 loses half the digits); differentiable except at 0.

    Args:
        q1, q2: ``(..., 4)`` quaternions (w, x, y, z), broadcastable; normalised here.

    Returns:
        ``(...)`` degrees in [0, 180], in the inputs' (promoted) floating dtype.
    """
    import torch

    if q1.shape[-1:] != (4,) or q2.shape[-1:] != (4,):
        raise ValueError(f"quat_angle_deg_torch: expected (..., 4) quaternions (w, x, y, z), "
                         f"got shapes {tuple(q1.shape)} and {tuple(q2.shape)}")
    q1 = q1 / torch.linalg.vector_norm(q1, dim=-1, keepdim=True)
    q2 = q2 / torch.linalg.vector_norm(q2, dim=-1, keepdim=True)
    q1, q2 = torch.broadcast_tensors(q1, q2)
    w1, v1, w2, v2 = q1[..., :1], q1[..., 1:], q2[..., :1], q2[..., 1:]
    w = (q1 * q2).sum(-1)
    v = w1 * v2 - w2 * v1 - torch.linalg.cross(v1, v2, dim=-1)
    return torch.rad2deg(2.0 * torch.atan2(torch.linalg.vector_norm(v, dim=-1), w.abs()))


# --------------------------------------------------------------------------------------------
# Network images: uint8 RGB <-> float [-1, 1]
# --------------------------------------------------------------------------------------------


def image_to_net(rgb: "torch.Tensor") -> "torch.Tensor":
    """uint8 images -> float32 network input in [-1, 1]: ``rgb / 127.5 - 1`` (PixelDA's scaling).

    Any shape and memory layout (``(N, H, W, 3)``, a permuted ``(N, 3, H, W)`` view, ...): the result keeps the
    input's shape and strides, on its device; the input is not modified.
    """
    import torch

    if rgb.dtype != torch.uint8:
        raise ValueError(f"image_to_net: expected uint8 images, got {rgb.dtype}")
    return rgb.float().div_(127.5).sub_(1.0)


def net_to_image(x: "torch.Tensor") -> "torch.Tensor":
    """Float network images in [-1, 1] -> uint8: ``round((clamp(x, -1, 1) + 1) * 127.5)``, the inverse of
    :func:`image_to_net` (exact on its outputs). Any shape; detached, on the input's device."""
    import torch

    return x.detach().float().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)


# --------------------------------------------------------------------------------------------
# Object-centred crops: the "fill" rule
# --------------------------------------------------------------------------------------------


def fill_side_px(f: float, diameter: float, t_z: float, fill: float) -> float:
    """Crop side in pixels over which an object's diameter at depth ``t_z`` spans ``fill`` of the side.

    ``side_px = f * diameter / (fill * t_z)`` (Cropped LineMod's object-centred crop, Wohlhart & Lepetit 2015).

    Args:
        f: focal length in pixels (``K[0, 0]`` or ``K[1, 1]`` for the other axis).
        diameter: object diameter, same unit as ``t_z`` (metres here; BOP's millimetres work the same).
        t_z: depth of the object origin. fill: in (0, 2]; 0.8 means the diameter spans 80% of the side.
    Scalars or broadcastable numpy arrays.
    """
    return f * diameter / (fill * t_z)


def fill_distance(f: float, diameter: float, side_px: float, fill: float) -> float:
    """Depth ``t_z`` at which an object's diameter spans ``fill`` of a ``side_px``-pixel image: the
    :func:`fill_side_px` rule solved for the depth, ``t_z = f * diameter / (fill * side_px)``.

    Args as :func:`fill_side_px`; the result is in the unit of ``diameter``.
    """
    return f * diameter / (fill * side_px)


def crop_window(K: np.ndarray, t: np.ndarray, diameter: float, fill: float) -> tuple[float, float, float, float]:
    """The object-centred crop window (Cropped LineMod) in full-image pixels: ``(x0, y0, wx, wy)``.

    Centred on the projection of the model origin ``t`` (:func:`camera_to_pixel`), ``wx, wy`` by the fill rule
    per axis (:func:`fill_side_px` with ``fx`` and ``fy``, so the crop stays square in the object's extent when
    fx != fy); ``x0, y0`` is the window's top-left *edge* (pixel i spans [i - 0.5, i + 0.5]).

    Args:
        K: ``(3, 3)`` intrinsics of the full image.
        t: ``(3,)`` t_m2c, any unit (the same as ``diameter``: BOP's millimetres or metres).
        diameter: object diameter. fill: in (0, 2].
    """
    K = np.asarray(K, dtype=np.float64)
    t = np.asarray(t, dtype=np.float64)
    u, v = camera_to_pixel(t[0], t[1], t[2], K)
    wx = fill_side_px(K[0, 0], diameter, t[2], fill)
    wy = fill_side_px(K[1, 1], diameter, t[2], fill)
    return u - wx / 2, v - wy / 2, wx, wy


def crop_intrinsics(K: np.ndarray, x0: float, y0: float, wx: float, wy: float, size: int) -> np.ndarray:
    """Intrinsics of a crop: the window ``(x0, y0, wx, wy)`` of a full image (top-left edge, size in full-image
    pixels) resampled to ``size`` x ``size``. Shift by the window's edge, scale by ``s = size / side``.

    A full-image point at x lands in crop pixel ``j = (x - x0) s - 0.5`` (pixel j's centre maps back to
    ``x0 + (j + 0.5) / s``), so ``fx' = fx s`` and ``cx' = (cx - x0) s - 0.5``; with x0 written as the
    left-most pixel's index plus -0.5 this is ``(cx - x_left + 0.5) s - 0.5``.

    Args:
        K: ``(3, 3)`` intrinsics of the full image. Returns: ``(3, 3)`` float64 intrinsics of the crop.
    """
    K = np.asarray(K, dtype=np.float64)
    sx, sy = size / wx, size / wy
    out = K.copy()
    out[0, 0] = K[0, 0] * sx
    out[0, 1] = K[0, 1] * sx
    out[0, 2] = (K[0, 2] - x0) * sx - 0.5
    out[1, 1] = K[1, 1] * sy
    out[1, 2] = (K[1, 2] - y0) * sy - 0.5
    return out


# --------------------------------------------------------------------------------------------
# Cameras and projection
# --------------------------------------------------------------------------------------------


def camera_to_pixel(x, y, z, K):
    """Pinhole projection of camera-frame coordinates: ``u = fx x / z + s y / z + cx``, ``v = fy y / z + cy``.

    Written term by term (not ``K @ X``), the one expression the crop window (:func:`crop_window`) and the
    test-double renderer use; numpy arrays and torch tensors (``x, y, z`` and ``K`` of one kind) take it alike.

    Args:
        x, y, z: broadcastable camera-frame coordinates (OpenCV camera, ``z > 0``), any one unit.
        K: ``(3, 3)`` OpenCV intrinsics (``s = K[0, 1]``, the skew).

    Returns:
        ``(u, v)``: pixel coordinates (pixel centres at integers), each of the broadcast shape of ``x, y, z``.
    """
    u = K[0, 0] * x / z + K[0, 1] * y / z + K[0, 2]
    v = K[1, 1] * y / z + K[1, 2]
    return u, v


def intrinsics(fx: float, fy: float, cx: float, cy: float) -> np.ndarray:
    """OpenCV intrinsic matrix ``K`` (3, 3) float64."""
    return np.array([[fx, 0.0, cx], [0.0, fy, cy], [0.0, 0.0, 1.0]])


def intrinsics_from_fov(fov_deg: float, width: int, height: int) -> np.ndarray:
    """``K`` for a horizontal field of view, square pixels, principal point at the image centre.

    The centre of a W-pixel-wide image is ``(W - 1) / 2`` in the OpenCV pixel convention.
    """
    fx = 0.5 * width / np.tan(np.radians(fov_deg) / 2.0)
    return intrinsics(fx, fx, (width - 1) / 2.0, (height - 1) / 2.0)


def project(points: np.ndarray, K: np.ndarray, R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Project model points into the image.

    Args:
        points: ``(P, 3)`` points in the model frame, metres.
        K: ``(3, 3)`` OpenCV intrinsics.
        R: ``(3, 3)`` R_m2c.
        t: ``(3,)`` t_m2c in metres.

    Returns:
        ``(P, 2)`` pixel coordinates (u, v), OpenCV convention (pixel centres at integers).
    """
    X = np.asarray(points, dtype=np.float64) @ np.asarray(R, dtype=np.float64).T + np.asarray(t, dtype=np.float64).reshape(1, 3)
    uvw = X @ np.asarray(K, dtype=np.float64).T
    return uvw[:, :2] / uvw[:, 2:3]


def pose_matrix(R: np.ndarray, t: np.ndarray) -> np.ndarray:
    """4x4 homogeneous transform from R (3, 3) and t (3,)."""
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = np.asarray(t).reshape(3)
    return T


# --------------------------------------------------------------------------------------------
# The OpenGL seam (pyrender). Nothing else in the package converts between the two cameras.
# --------------------------------------------------------------------------------------------


def opencv_to_opengl_pose(R_m2c: np.ndarray, t_m2c: np.ndarray) -> np.ndarray:
    """Object pose for a pyrender scene whose camera sits at the identity (OpenGL camera frame).

    With the camera node at the identity, the scene's world frame *is* the OpenGL camera frame, so the
    object's node pose is ``diag(1, -1, -1, 1) @ [R_m2c | t_m2c]`` (flip y and z).

    Returns:
        ``(4, 4)`` float64 node pose for the object.
    """
    T = pose_matrix(R_m2c, t_m2c)
    T[:3, :] = OPENCV_TO_OPENGL @ T[:3, :]
    return T


def pyrender_intrinsics(K: np.ndarray) -> tuple[float, float, float, float]:
    """(fx, fy, cx, cy) to give ``pyrender.IntrinsicsCamera`` so it images like the OpenCV ``K``.

    pyrender's projection puts ``u = fx X/Z + cx`` at the *window* coordinate u, whose pixel centres lie at
    half-integers (pixel i spans [i, i + 1]); in OpenCV pixel i's centre is at i. Hence ``+ 0.5``.
    (Derivation: pyrender sets ``P[0,2] = 1 - 2 cx / W``, so ``x_ndc = 2 u / W - 1`` and window x = u.)
    """
    K = np.asarray(K, dtype=np.float64)
    return float(K[0, 0]), float(K[1, 1]), float(K[0, 2]) + 0.5, float(K[1, 2]) + 0.5
