"""A trainer's datasets as tensors: uint8 images kept compact (on the GPU when they fit), converted per batch.

A bank stores images once as uint8 NHWC (plus the precomputed depth channel for RGB-D) and gathers and converts
each batch on the compute device, so the only host-to-device traffic per step is the index vector. The
conversion is the one of :func:`sim2real.conventions.image_to_net` (``rgb / 127.5 - 1``) and
:func:`sim2real.data.tensors.depth_to_channel` for depth.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Sequence

import numpy as np
import torch

from sim2real.conventions import image_to_net


@dataclasses.dataclass
class TensorBank:
    """Samples of one or more files as tensors on one device.

    Attributes:
        rgb: uint8 ``(N, H, W, 3)``.
        depth: float32 ``(N, H, W)`` depth channel in [-1, 1] (RGB-D), else None.
        mask: bool ``(N, H, W)`` z-buffer foreground, or None.
        label: int64 ``(N,)``, or None.
        quat: float32 ``(N, 4)`` (w, x, y, z; zeros where a file has none), or None when no file has poses.
        has_quat: bool ``(N,)`` which samples have a pose label (None with ``quat``).
        group_sizes: samples per file, in order (files are concatenated).
        symmetries: per-class symmetry annotations of the first file that has them, or None.
    """

    rgb: torch.Tensor
    depth: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    label: torch.Tensor | None = None
    quat: torch.Tensor | None = None
    has_quat: torch.Tensor | None = None
    group_sizes: list[int] = dataclasses.field(default_factory=list)
    symmetries: Any = None

    _TENSORS = ("rgb", "depth", "mask", "label", "quat", "has_quat")

    def __len__(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def channels(self) -> int:
        return 3 + (1 if self.depth is not None else 0)

    @staticmethod
    def from_data(datas: Sequence, use_depth: bool, keep: Sequence[str] = ("mask", "label", "quat")) -> "TensorBank":
        """A bank (on the CPU) of one or more :class:`~sim2real.data.h5.H5Data` (concatenated in order).

        ``keep`` selects the per-sample extras; a file lacking one leaves it None (``quat``: zeros, with
        ``has_quat`` False for that file's samples, when another file has poses).
        """
        from sim2real.data.tensors import depth_to_channel

        if not isinstance(datas, (list, tuple)):
            datas = [datas]
        if use_depth:
            for d in datas:
                d.require("depth", why="the config asks for RGB-D input (model.use_depth)")
        cat = lambda ts: ts[0] if len(ts) == 1 else torch.cat(ts)  # noqa: E731
        bank = TensorBank(rgb=cat([torch.from_numpy(np.ascontiguousarray(d.rgb)) for d in datas]),
                          group_sizes=[len(d) for d in datas])
        if use_depth:
            bank.depth = cat([torch.from_numpy(depth_to_channel(d.depth)) for d in datas])
        if "mask" in keep and all(d.mask is not None for d in datas):
            bank.mask = cat([torch.from_numpy(np.ascontiguousarray(d.mask)) for d in datas])
        if "label" in keep and all(d.label is not None for d in datas):
            bank.label = cat([torch.from_numpy(np.ascontiguousarray(d.label)).to(torch.int64) for d in datas])
        if "quat" in keep and any(d.quat is not None for d in datas):
            bank.quat = cat([torch.from_numpy(np.ascontiguousarray(d.quat, dtype=np.float32)) if d.quat is not None
                             else torch.zeros(len(d), 4) for d in datas])
            bank.has_quat = cat([torch.full((len(d),), d.quat is not None, dtype=torch.bool) for d in datas])
        bank.symmetries = next((d.symmetries for d in datas if getattr(d, "symmetries", None) is not None), None)
        return bank

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self._tensors().values())

    def _tensors(self) -> dict[str, torch.Tensor]:
        return {k: getattr(self, k) for k in self._TENSORS if getattr(self, k) is not None}

    def take(self, idx: torch.Tensor) -> "TensorBank":
        """A bank of samples ``idx`` (one group)."""
        idx = idx.to(self.rgb.device)
        picked = {k: v.index_select(0, idx) for k, v in self._tensors().items()}
        return dataclasses.replace(self, **picked, group_sizes=[len(idx)])

    def split_holdout(self, n: int, seed: int) -> tuple["TensorBank", "TensorBank | None"]:
        """(the rest, ``n`` held-out samples): a draw fixed by ``seed``, both in file order; ``n = 0``: (self, None)."""
        if n <= 0:
            return self, None
        if n >= len(self) - 1:
            from sim2real.errors import Sim2RealError

            raise Sim2RealError(f"select.source_val_n={n}: the source has only {len(self)} images")
        if len(self.group_sizes) > 1:
            raise ValueError("TensorBank.split_holdout: one group only")
        g = torch.Generator().manual_seed(int(seed) * 104729 + 3)
        perm = torch.randperm(len(self), generator=g)
        return self.take(perm[n:].sort().values), self.take(perm[:n].sort().values)

    def to(self, device: torch.device) -> "TensorBank":
        """A copy on ``device``."""
        moved = {k: v.to(device) for k, v in self._tensors().items()}
        return dataclasses.replace(self, **moved)

    def images(self, idx: torch.Tensor, device: torch.device, channels_last: bool = False) -> torch.Tensor:
        """Network input ``(B, 3|4, H, W)`` float32 in [-1, 1] of samples ``idx`` on ``device``."""
        idx = idx.to(self.rgb.device)
        x = image_to_net(self.rgb.index_select(0, idx).to(device).permute(0, 3, 1, 2))
        if self.depth is not None:
            x = torch.cat([x, self.depth.index_select(0, idx).to(device).unsqueeze(1)], dim=1)
        return x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)

    def batch(self, idx: torch.Tensor, device: torch.device, channels_last: bool = False) -> dict[str, torch.Tensor]:
        """``{"x": (B, C, H, W) float32 in [-1, 1], "mask": (B, 1, H, W) bool, "label": (B,), "quat": (B, 4),
        "has_quat": (B,)}`` of samples ``idx`` on ``device`` (absent keys are left out)."""
        idx = idx.to(self.rgb.device)
        out = {"x": self.images(idx, device, channels_last)}
        if self.mask is not None:
            out["mask"] = self.mask.index_select(0, idx).to(device).unsqueeze(1)
        for key in ("label", "quat", "has_quat"):
            t = getattr(self, key)
            if t is not None:
                out[key] = t.index_select(0, idx).to(device)
        return out


def choose_storage(device: torch.device, nbytes: int, request: bool | None) -> torch.device:
    """Where to keep the banks: on the GPU when asked, or (``None``) when they fit in 1/4 of free memory."""
    if device.type != "cuda":
        return torch.device("cpu")
    if request is not None:
        return device if request else torch.device("cpu")
    free, _ = torch.cuda.mem_get_info(device)
    return device if nbytes <= free // 4 else torch.device("cpu")
