"""A trained pose network ready to predict on sim2real data: :class:`Predictor` and :func:`load_predictor`.

Any run ``evaluate`` accepts loads through :func:`sim2real.models.loading.load_run_model`, which dispatches on the
run folder's ``run.json`` ``kind``:

* ``"pose"``: a ``sim2real train-pose`` run (:func:`sim2real.models.loading.load_pose_model`);
* ``"pixelda"``, ``"dann"``, ``"coral"``, ``"mmd"``: a ``sim2real adapt`` run; its task network T
  (:func:`sim2real.models.loading.load_task_model`), run on the target-domain branch (``domain="target"``).

``MODEL`` may be a run folder or a checkpoint file inside one (``RUN/checkpoints/best.pt``).
Predictions are made in eval mode under ``torch.no_grad()`` (:func:`sim2real.models.loading.run_model`): batch-norm
statistics and dropout are not touched.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sim2real.errors import Sim2RealError
from sim2real.models.loading import load_run_model, run_model


@dataclasses.dataclass
class Predictor:
    """A loaded model ready to predict on sim2real data.

    Attributes:
        name: display name (the run folder's name unless given).
        path: the run folder (or checkpoint) it came from.
        kind: ``"pose"``, or an adapt run's (``"pixelda"``, ``"dann"``, ``"coral"``, ``"mmd"``).
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

    @property
    def method(self) -> str:
        """The adaptation method behind the model: an adapt run's own (its T: ``pixelda``, ``dann``, ``dtn``, ...);
        for a pose network, the method that made its adapted training files (their provenance's run), joined with
        "+" when several; ``none`` when it trained on renders or target images only."""
        if self.kind != "pose":
            return self.kind
        return method_of_training_files(self.info.get("train") or [])

    @property
    def seen_classes(self) -> list[str] | None:
        """The classes its adaptation saw, when it left some out (the unseen-class study; None: all were seen).

        An adapt run's own ``train.source_classes`` (run.json ``source_classes``); for a pose network, the
        ``adapted_on_classes`` of its adapted training files that name classes unseen in adaptation.
        """
        import json

        if self.kind != "pose":
            try:
                run = json.loads((Path(self.info.get("run_dir") or self.path) / "run.json").read_text())
            except (OSError, ValueError):
                return None
            return list(run["source_classes"]) if run.get("source_classes") else None
        from sim2real.data import h5

        for f in self.info.get("train") or []:
            if f.get("domain") != "adapted":
                continue
            try:
                prov = json.loads(h5.read_attrs(f["path"]).get("provenance", "{}"))
            except (OSError, ValueError, Sim2RealError):
                continue
            if prov.get("classes_unseen_in_adaptation"):
                return list(prov.get("adapted_on_classes") or [])
        return None

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


def load_predictor(path: str | Path, name: str | None = None) -> Predictor:
    """Load a train-pose run, an adapt run (its task network), or a checkpoint inside either
    (:func:`sim2real.models.loading.load_run_model`).

    Args:
        path: run folder or checkpoint file.
        name: display name; default: the run folder's name (plus the checkpoint's stem if one was given).
    """
    model, info, run_dir, ckpt = load_run_model(path)
    default = run_dir.name if ckpt is None else f"{run_dir.name}/{ckpt.stem}"
    return Predictor(name=name or default, path=str(path), kind=str(info["kind"]), model=model,
                     class_names=list(info["class_names"]), use_depth=bool(info["use_depth"]),
                     image_size=tuple(int(v) for v in info["image_size"]), info=dict(info))


def method_of_training_files(train: list[dict]) -> str:
    """The adaptation method(s) that wrote the ``adapted`` files among a run's training files (``none`` if none).

    An adapted file's ``provenance`` attribute names the adapt run it came from (``sim2real export``); that run's
    ``run.json`` kind is the method. A file or run that can no longer be read counts as ``adapted (unknown)``.
    """
    import json

    from sim2real.data import h5

    methods = []
    for f in train:
        if f.get("domain") != "adapted":
            continue
        try:
            prov = json.loads(h5.read_attrs(f["path"]).get("provenance", "{}"))
            run = json.loads((Path(prov["run_dir"]) / "run.json").read_text())
            m = str(run.get("kind") or "adapted (unknown)")
        except (OSError, KeyError, ValueError, TypeError, Sim2RealError):
            m = "adapted (unknown)"
        if m not in methods:
            methods.append(m)
    return "+".join(methods) if methods else "none"
