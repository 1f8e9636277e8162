"""numpy arrays from HDF5 files -> network inputs (torch). Imports torch; the rest of ``data`` does not.

Network images are float32 ``(B, C, H, W)`` in [-1, 1] (PixelDA's scaling, :func:`sim2real.conventions.image_to_net`):
C = 3 for RGB, 4 for RGB-D.
The depth channel follows Cropped LineMod: depth relative to the object centre, clipped to +-``depth_range``
metres and scaled to [-1, 1]; background pixels (depth 0) are +1 (far). The centre is the median foreground
depth of each image, so no label is needed (target images have none).
"""

from __future__ import annotations

import numpy as np
import torch

from sim2real.conventions import image_to_net, net_to_image

#: Half-range of the depth channel in metres (+-20 cm, as in Cropped LineMod).
DEPTH_RANGE_M = 0.2


def rgb_to_tensor(rgb: np.ndarray) -> torch.Tensor:
    """uint8 ``(N, H, W, 3)`` -> float32 ``(N, 3, H, W)`` in [-1, 1] (:func:`sim2real.conventions.image_to_net`)."""
    return image_to_net(torch.from_numpy(np.ascontiguousarray(rgb)).permute(0, 3, 1, 2))


def tensor_to_rgb(x: torch.Tensor) -> np.ndarray:
    """float ``(N, C>=3, H, W)`` in [-1, 1] -> uint8 ``(N, H, W, 3)`` (extra channels dropped;
    :func:`sim2real.conventions.net_to_image`)."""
    return net_to_image(x[:, :3]).permute(0, 2, 3, 1).cpu().numpy()


def depth_to_channel(depth: np.ndarray, depth_range: float = DEPTH_RANGE_M) -> np.ndarray:
    """z-depth ``(N, H, W)`` metres (0 = background) -> float32 ``(N, H, W)`` in [-1, 1], centred per image."""
    depth = np.asarray(depth, dtype=np.float32)
    fg = depth > 0
    out = np.ones_like(depth, dtype=np.float32)
    for i in range(depth.shape[0]):
        if fg[i].any():
            centre = np.median(depth[i][fg[i]])
            out[i][fg[i]] = np.clip((depth[i][fg[i]] - centre) / depth_range, -1.0, 1.0)
    return out


def images_from(data, use_depth: bool = False) -> torch.Tensor:
    """Network input for an :class:`~sim2real.data.h5.H5Data`: ``(N, 3 or 4, H, W)`` float32 in [-1, 1]."""
    x = rgb_to_tensor(data.rgb)
    if use_depth:
        if data.depth is None:
            from sim2real.errors import Sim2RealError

            raise Sim2RealError(f"{data.path}: has no 'depth' dataset (the config asks for RGB-D input)")
        d = torch.from_numpy(depth_to_channel(data.depth)).unsqueeze(1)
        x = torch.cat([x, d], dim=1)
    return x
