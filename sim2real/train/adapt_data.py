"""Datasets of a PixelDA run as tensors, kept compact (uint8) and on the GPU when they fit.

A domain's images are stored once as uint8 NHWC (plus the precomputed depth channel for RGB-D), and
each batch is gathered and converted on the compute device, so the only host->device traffic per step
is the index vector. The conversion is exactly :func:`sim2real.data.tensors.images_from`: RGB / 127.5 - 1
(:func:`sim2real.conventions.image_to_net`) and :func:`~sim2real.data.tensors.depth_to_channel` for depth.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch

from sim2real.conventions import image_to_net
from sim2real.data import h5
from sim2real.data.sources import load_any
from sim2real.data.tensors import depth_to_channel
from sim2real.errors import Sim2RealError


@dataclasses.dataclass
class DomainTensors:
    """One domain's samples as tensors on ``storage`` (GPU or CPU).

    Attributes:
        rgb: uint8 ``(N, H, W, 3)``.
        depth: float32 ``(N, H, W)`` depth channel in [-1, 1] (RGB-D runs), else ``None``.
        mask: bool ``(N, H, W)`` z-buffer foreground, or ``None``.
        label: int64 ``(N,)`` or ``None``.
        quat: float32 ``(N, 4)`` (w, x, y, z) or ``None``.
    """

    rgb: torch.Tensor
    depth: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    label: torch.Tensor | None = None
    quat: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.rgb.shape[0])

    @property
    def channels(self) -> int:
        return 3 + (1 if self.depth is not None else 0)

    @staticmethod
    def from_h5(data: h5.H5Data, use_depth: bool, keep: tuple[str, ...] = ("mask", "label", "quat")) -> "DomainTensors":
        """Tensors (on the CPU) from an :class:`~sim2real.data.h5.H5Data`; ``keep`` selects the per-sample extras."""
        if use_depth:
            data.require("depth", why="the config asks for RGB-D input (model.use_depth)")
        out = DomainTensors(rgb=torch.from_numpy(np.ascontiguousarray(data.rgb)))
        if use_depth:
            out.depth = torch.from_numpy(depth_to_channel(data.depth))
        for key in keep:
            arr = getattr(data, key)
            if arr is not None:
                setattr(out, key, torch.from_numpy(np.ascontiguousarray(arr)))
        return out

    def nbytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in self._tensors().values())

    def _tensors(self) -> dict[str, torch.Tensor]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name) is not None}

    def to(self, device: torch.device) -> "DomainTensors":
        """A copy on ``device``."""
        return DomainTensors(**{f.name: (None if getattr(self, f.name) is None else getattr(self, f.name).to(device))
                                for f in dataclasses.fields(self)})

    def batch(self, idx: torch.Tensor, device: torch.device, channels_last: bool = False) -> dict[str, torch.Tensor]:
        """Gather samples ``idx`` and convert: ``{"x": (B, C, H, W) float32 in [-1, 1], "mask": (B, 1, H, W) bool,
        "label": (B,), "quat": (B, 4)}`` on ``device`` (absent keys are left out)."""
        idx = idx.to(self.rgb.device)
        x = image_to_net(self.rgb.index_select(0, idx).to(device).permute(0, 3, 1, 2))
        if self.depth is not None:
            d = self.depth.index_select(0, idx).to(device).unsqueeze(1)
            x = torch.cat([x, d], dim=1)
        x = x.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)
        out = {"x": x}
        if self.mask is not None:
            out["mask"] = self.mask.index_select(0, idx).to(device).unsqueeze(1)
        for key in ("label", "quat"):
            t = getattr(self, key)
            if t is not None:
                out[key] = t.index_select(0, idx).to(device)
        return out


def load_source(path: str | Path, use_depth: bool, need_mask: bool, need_quat: bool) -> h5.H5Data:
    """The labelled source (rendered) dataset; a missing label/quat/mask the config needs is a one-line error."""
    data = h5.read(path)
    data.require("label", why="the source of PixelDA must be labelled: T is trained on it")
    if need_quat:
        data.require("quat", why="the config trains a pose head (loss.pose_*_weight > 0)")
    if need_mask:
        data.require("mask", why="loss.content is masked_pmse, which needs the z-buffer mask; "
                                 "use --set loss.content=pmse for unmasked PMSE")
    if use_depth:
        data.require("depth", why="the config asks for RGB-D input (model.use_depth)")
    if data.class_names is None:
        raise Sim2RealError(f"{path}: has no 'class_names' dataset")
    return data


def load_target(path: str | Path, size: tuple[int, int], use_depth: bool, skip_bad: bool = False) -> h5.H5Data:
    """The unlabelled target dataset: an HDF5 file of the source's size, or a folder of images (resized).

    ``skip_bad`` skips unreadable images in a folder (their count is in ``attrs["skipped"]``).
    """
    p = Path(path)
    if p.is_dir() and use_depth:
        raise Sim2RealError(f"{p}: a folder of images has no depth, but the config asks for RGB-D input "
                            "(model.use_depth); give an HDF5 target with a 'depth' dataset or --set model.use_depth=false")
    data = load_any(p, size=size, skip_bad=skip_bad)
    if use_depth:
        data.require("depth", why="the config asks for RGB-D input (model.use_depth)")
    return data


def load_val(path: str | Path, size: tuple[int, int], use_depth: bool, class_names: list[str],
             need_quat: bool) -> h5.H5Data:
    """A small labelled *target* validation set (the paper's ~1,000-sample protocol); never a test set."""
    data = load_any(path, size=size, class_names=class_names)
    data.require("label", why="--val must be a labelled target validation set")
    if data.class_names is not None and list(data.class_names) != list(class_names):
        raise Sim2RealError(f"{path}: class_names {data.class_names} differ from the source's {class_names}")
    if need_quat and data.quat is None:
        raise Sim2RealError(f"{path}: has no 'quat' dataset (the validation set must have poses to measure angle error)")
    if use_depth:
        data.require("depth", why="the config asks for RGB-D input (model.use_depth)")
    return data


def choose_storage(device: torch.device, nbytes: int, request: bool | None) -> torch.device:
    """Where to keep the datasets: on the GPU when asked, or (``None``) when they fit in 1/4 of free memory."""
    if device.type != "cuda":
        return torch.device("cpu")
    if request is not None:
        return device if request else torch.device("cpu")
    free, _ = torch.cuda.mem_get_info(device)
    return device if nbytes <= free // 4 else torch.device("cpu")
