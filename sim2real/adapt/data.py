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
             need_quat: bool, what: str = "--val") -> h5.H5Data:
    """A small labelled *target* set: the validation split (the paper's ~1,000-sample protocol; never a test set),
    or (``what="--target-labelled"``) the few labelled target images T also trains on."""
    data = load_any(path, size=size, class_names=class_names)
    data.require("label", why=f"{what} must be a labelled target set")
    if data.class_names is not None and list(data.class_names) != list(class_names):
        raise Sim2RealError(f"{path}: class_names {data.class_names} differ from the source's {class_names}")
    if need_quat and data.quat is None:
        raise Sim2RealError(f"{path}: has no 'quat' dataset ({what} must have poses to measure angle error)")
    if use_depth:
        data.require("depth", why="the config asks for RGB-D input (model.use_depth)")
    return data


class Inputs:
    """The checked inputs of an adaptation run (:func:`load_inputs`) and what ``run.json`` records of them.

    Attributes:
        source, target, val: the loaded datasets (``val`` None without ``--val``).
        size: (H, W) of the source images; class_names: the source's classes; in_channels: 3 or 4.
        info: the run's data record (class names, image size, paths, sizes): ``run.json`` and checkpoints keep it,
            and ``--resume`` checks :data:`RESUME_KEYS` of it.
    """

    #: the data facts a resumed run must share with the run it continues
    RESUME_KEYS = ("class_names", "image_size", "use_depth", "n_source", "n_target")

    def __init__(self, source, target, val, use_depth: bool, paths: tuple, skip_bad: bool) -> None:
        self.source, self.target, self.val = source, target, val
        self.size = source.image_size
        self.class_names = list(source.class_names)
        self.in_channels = 4 if use_depth else 3
        src_path, tgt_path, val_path = paths
        self.info = {"class_names": self.class_names, "num_classes": len(self.class_names), "image_size": list(self.size),
                     "use_depth": use_depth, "in_channels": self.in_channels, "source": str(src_path),
                     "target": str(tgt_path), "val": str(val_path) if val_path is not None else None,
                     "n_source": len(source), "n_target": len(target), "skip_bad": skip_bad}

    def banks(self, use_depth: bool, source_keep: tuple[str, ...], device, data_on_device: bool | None):
        """(source, target, val or None) :class:`~sim2real.engine.bank.TensorBank` on the storage device chosen
        by :func:`~sim2real.engine.bank.choose_storage`, and that device. The val bank carries the objects'
        symmetries (the val file's, else the source's) for the symmetry-aware val error."""
        from sim2real.engine.bank import TensorBank, choose_storage

        src_t = TensorBank.from_data([self.source], use_depth, keep=source_keep)
        tgt_t = TensorBank.from_data([self.target], use_depth, keep=())
        val_t = TensorBank.from_data([self.val], use_depth, keep=("label", "quat")) if self.val is not None else None
        if val_t is not None:
            val_t.symmetries = next((d.symmetries for d in (self.val, self.source)
                                     if getattr(d, "symmetries", None) is not None), None)
        total = src_t.nbytes() + tgt_t.nbytes() + (val_t.nbytes() if val_t is not None else 0)
        storage = choose_storage(device, total, data_on_device)
        return src_t.to(storage), tgt_t.to(storage), (val_t.to(storage) if val_t is not None else None), storage


def keep_classes(data: h5.H5Data, classes: list[str], what: str) -> h5.H5Data:
    """The samples of ``data`` whose class is in ``classes`` (class list and ids unchanged); unknown names are a
    one-line error."""
    import numpy as np

    names = list(data.class_names or [])
    unknown = [c for c in classes if c not in names]
    if unknown:
        raise Sim2RealError(f"train.source_classes: unknown class {unknown[0]!r} in {what} {data.path} "
                            f"(classes: {', '.join(names)})")
    ids = [names.index(c) for c in classes]
    keep = np.flatnonzero(np.isin(data.label, ids))
    if len(keep) < 2:
        raise Sim2RealError(f"{data.path}: only {len(keep)} {what} images of train.source_classes {classes}")
    return data.subset(keep)


def load_inputs(source: str | Path, target: str | Path, val: str | Path | None, *, use_depth: bool,
                expected_size: list[int] | None, need_mask: bool, need_quat: bool, val_needs_quat: bool,
                skip_bad: bool = False, log=print, classes: list[str] | None = None) -> Inputs:
    """Load and check the source, target and val inputs every adaptation method reads (one-line errors).

    Args:
        expected_size: the config's ``model.image_size`` ([H, W]) or None for any size.
        need_mask / need_quat: what the method needs of the source; val_needs_quat: the val set must have poses.
        log: where the target folder's skipped / resized summaries go.
        classes: train on the source (and validate on the val) images of these classes only (the paper's
            unseen-class study, Table 4); the class list and ids stay the source's, so T still has an output per
            class and ``export`` adapts the renders of every class. The target stays whole (it is unlabelled).
    """
    src = load_source(source, use_depth, need_mask=need_mask, need_quat=need_quat)
    n_all = len(src)
    if classes:
        src = keep_classes(src, list(classes), "source")
        log(f"{source}: adapting on {len(src)} of {n_all} source images, classes {', '.join(classes)} "
            f"(the others are unseen by the adaptation)")
    size = src.image_size
    if expected_size is not None and tuple(expected_size) != tuple(size):
        raise Sim2RealError(f"{source}: images are {size[0]}x{size[1]}, the config expects "
                            f"{expected_size[0]}x{expected_size[1]} (size mismatch; "
                            f"--set model.image_size=null accepts any size)")
    tgt = load_target(target, size, use_depth, skip_bad=skip_bad)
    if tgt.attrs.get("skipped"):
        log(f"{target}: {tgt.attrs.get('skipped_summary', '')}")
    if tgt.attrs.get("resized"):
        log(f"{target}: {tgt.attrs['resized_summary']}")
    vd = load_val(val, size, use_depth, list(src.class_names), need_quat=val_needs_quat) if val is not None else None
    if vd is not None and classes:
        vd = keep_classes(vd, list(classes), "--val")  # selection sees the seen classes only
    inp = Inputs(src, tgt, vd, use_depth, (source, target, val), skip_bad)
    if classes:
        inp.info["source_classes"] = list(classes)
    return inp
