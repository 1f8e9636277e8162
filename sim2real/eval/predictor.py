"""Load any trained pose network (a train-pose run or the task network T of a PixelDA run) and run it on data.

:func:`load_predictor` dispatches on the run folder's ``run.json`` ``kind``:

* ``"pose"``: a ``sim2real train-pose`` run (:func:`sim2real.train.pose.load_pose_model`);
* ``"pixelda"``: a ``sim2real adapt`` run; its task network T (:func:`sim2real.train.adapt.load_task_model`),
  run on the target-domain branch (``domain="target"``).

``MODEL`` may be a run folder or a checkpoint file inside one (``RUN/checkpoints/best.pt``).
Predictions are made in eval mode under ``torch.no_grad()``: batch-norm statistics and dropout are not touched.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sim2real.errors import Sim2RealError


@torch.no_grad()
def run_model(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 256, device: torch.device | str = "cpu",
              domain: str = "target") -> dict[str, np.ndarray]:
    """Run a class + quaternion network over images in batches.

    Args:
        model: returns ``{"logits": (B, C), "quat": (B, 4)}``; put in eval mode here and restored afterwards.
        images: ``(N, C_in, H, W)`` float in [-1, 1], or uint8 ``(N, 3, H, W)`` (converted per batch).
        device: where to run; the model is moved there.

    Returns:
        ``label_pred (N,) int64``, ``probs (N, C) float32`` (softmax), ``quat_pred (N, 4) float32`` unit wxyz,
        w >= 0 (None for a network without a quaternion head).
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    model.to(device)
    probs, quats = [], []
    try:
        for i in range(0, images.shape[0], batch_size):
            x = images[i:i + batch_size].to(device, non_blocking=True)
            if x.dtype == torch.uint8:
                x = x.float().div_(127.5).sub_(1.0)
            out = model(x, domain=domain)
            probs.append(torch.softmax(out["logits"].float(), dim=1).cpu())
            if out.get("quat") is not None:
                quats.append(out["quat"].float().cpu())
    finally:
        model.train(was_training)
    p = torch.cat(probs).numpy() if probs else np.zeros((0, 0), np.float32)
    q = None
    if quats:
        q = torch.cat(quats).numpy().astype(np.float64)
        q = q / np.clip(np.linalg.norm(q, axis=1, keepdims=True), 1e-12, None)
        q = np.where(q[:, :1] < 0, -q, q).astype(np.float32)  # canonical hemisphere w >= 0 (q == -q), as in files
    return {"label_pred": p.argmax(axis=1).astype(np.int64) if len(p) else np.zeros(0, np.int64),
            "probs": p.astype(np.float32), "quat_pred": q}


@dataclasses.dataclass
class Predictor:
    """A loaded model ready to predict on sim2real data.

    Attributes:
        name: display name (the run folder's name unless given).
        path: the run folder (or checkpoint) it came from.
        kind: ``"pose"`` or ``"pixelda"``.
        class_names: the model's class id -> name.
        use_depth: whether the model takes RGB-D input.
        image_size: (H, W) the model was trained on.
        info: everything the loader returned (step, training data, role...).
    """

    name: str
    path: str
    kind: str
    model: torch.nn.Module
    class_names: list[str]
    use_depth: bool
    image_size: tuple[int, int]
    info: dict[str, Any]

    @property
    def role(self) -> str:
        """What the model was trained on: source-only, adapted, target-only, semi-supervised, pixelda..."""
        return str(self.info.get("role") or ("pixelda" if self.kind == "pixelda" else "unknown"))

    def check_compatible(self, data) -> np.ndarray:
        """Check a test set against the model; return the column order mapping model classes to the test set's.

        Raises a one-line :class:`Sim2RealError` when class names (as sets) or image sizes differ, or when the
        model needs depth the test set lacks. When the names agree up to order, predictions are re-ordered.
        """
        names = list(data.class_names or [])
        if sorted(names) != sorted(self.class_names):
            raise Sim2RealError(
                f"{data.path}: class names differ from model {self.name}'s; test set: [{', '.join(names)}], "
                f"model: [{', '.join(self.class_names)}]")
        if tuple(data.image_size) != tuple(self.image_size):
            raise Sim2RealError(
                f"{data.path}: images are {data.image_size[0]}x{data.image_size[1]} (HxW), model {self.name} was trained "
                f"on {self.image_size[0]}x{self.image_size[1]}")
        if self.use_depth and data.depth is None:
            raise Sim2RealError(f"{data.path}: has no 'depth' dataset, but model {self.name} takes RGB-D input")
        return np.array([self.class_names.index(n) for n in names], dtype=np.int64)

    def predict(self, data, batch_size: int = 256, device: torch.device | str = "cpu", chunk: int = 2048) -> dict[str, np.ndarray]:
        """Predict on an :class:`~sim2real.data.h5.H5Data`; class ids and probabilities use the DATA's class order.

        Returns ``label_pred (N,)``, ``probs (N, C)``, ``quat_pred (N, 4)`` (unit wxyz, w >= 0).
        """
        from sim2real.data.tensors import images_from

        order = self.check_compatible(data) if data.class_names is not None else np.arange(len(self.class_names))
        # convert to float a chunk at a time: a whole 64x64 RGB-D test set as float32 would take ~0.7 GB per 10k images
        chunk = max(batch_size, chunk)
        parts = [run_model(self.model, images_from(data.subset(slice(i, i + chunk)), self.use_depth),
                           batch_size=batch_size, device=device) for i in range(0, len(data), chunk)]
        out = {k: (None if parts[0][k] is None else np.concatenate([p[k] for p in parts])) for k in parts[0]}
        probs = out["probs"][:, order]
        out["probs"] = probs
        out["label_pred"] = probs.argmax(axis=1).astype(np.int64)
        return out


def _run_dir_of(path: Path) -> tuple[Path, Path | None]:
    """(run folder, checkpoint file or None) for a run folder or a checkpoint path inside one."""
    if path.is_file():
        for parent in (path.parent, path.parent.parent):
            if (parent / "run.json").is_file():
                return parent, path
        raise Sim2RealError(f"{path}: a checkpoint outside a run folder (expected RUN/checkpoints/*.pt with RUN/run.json)")
    if not path.exists():
        raise Sim2RealError(f"{path}: not found (expected a train-pose or adapt run folder)")
    return path, None


def load_predictor(path: str | Path, name: str | None = None) -> Predictor:
    """Load a train-pose run, an adapt run (its task network), or a checkpoint inside either.

    Args:
        path: run folder or checkpoint file.
        name: display name; default: the run folder's name (plus the checkpoint's stem if one was given).
    """
    from sim2real.train.common import read_run_info

    path = Path(path)
    run_dir, ckpt = _run_dir_of(path)
    kind = read_run_info(run_dir).get("kind")
    if ckpt is not None and not ckpt.suffix == ".pt":
        raise Sim2RealError(f"{path}: expected a run folder or a .pt checkpoint inside one")
    if kind == "pose":
        from sim2real.train.pose import load_pose_model

        model, info = load_pose_model(run_dir, checkpoint=ckpt)
    elif kind == "pixelda":
        try:
            from sim2real.train.adapt import load_task_model
        except ImportError:
            raise Sim2RealError(f"{run_dir}: is a PixelDA run, but this sim2real has no adapt module to load it") from None
        step: int | str | None = None
        if ckpt is not None:
            if ckpt.stem in ("best", "last"):
                step = ckpt.stem
            elif ckpt.stem.startswith("step_") and ckpt.stem[5:].isdigit():
                step = int(ckpt.stem[5:])
            else:
                raise Sim2RealError(f"{path}: expected an adapt checkpoint named last.pt, best.pt or step_N.pt")
        model, info = load_task_model(run_dir, step)
        run = read_run_info(run_dir)
        info = dict(info)
        info.setdefault("role", "pixelda")
        # what T saw, for the report's leak check: labelled renders, unlabelled target images, the val set
        info.setdefault("train", [{"path": run["source"], "n": run.get("n_source"), "domain": "source"}] if run.get("source") else [])
        info.setdefault("val", {"path": run["val"]} if run.get("val") else None)
        info.setdefault("target_unlabelled", run.get("target"))
    else:
        raise Sim2RealError(f"{run_dir}: run kind {kind!r} has no pose network (expected a train-pose or adapt run)")
    default = run_dir.name if ckpt is None else f"{run_dir.name}/{ckpt.stem}"
    return Predictor(name=name or default, path=str(path), kind=str(info.get("kind", kind)), model=model,
                     class_names=list(info["class_names"]), use_depth=bool(info["use_depth"]),
                     image_size=tuple(int(v) for v in info["image_size"]), info=dict(info))
