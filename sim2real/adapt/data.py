"""The inputs of an adaptation run: the labelled source, the unlabelled target, the labelled target val split.

Loaded and checked here (one-line errors naming the file and what the method needs); the engine's
:class:`~sim2real.engine.bank.TensorBank` then keeps them as uint8 tensors.
"""

from __future__ import annotations

from pathlib import Path

from sim2real.data import h5
from sim2real.data.sources import load_any
from sim2real.errors import Sim2RealError


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
