"""Validation on a labelled split: a network's accuracy and rotation errors, and which checkpoint is better.

The one validation every trainer runs: predictions over a :class:`~sim2real.engine.bank.TensorBank` in
batches (eval mode, no gradients, the run's autocast), scored by :func:`sim2real.eval.metrics.evaluate_arrays`
(plain and symmetry-aware rotation errors). Keys of the result: ``accuracy`` and, with poses,
``mean_angle_deg``, ``median_angle_deg``, ``mean_angle_sym_deg``, ``median_angle_sym_deg`` and ``acc30_sym``
(share with the right class and a symmetry-aware error below 30 degrees).
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch

from sim2real.engine.amp import Speed, autocast
from sim2real.engine.bank import TensorBank

#: Default checkpoint selection: right class and rotation within 30 deg (higher), then median error (lower).
SELECT_BY: tuple[tuple[str, bool], ...] = (("acc30_sym", True), ("median_angle_sym_deg", False))


@torch.no_grad()
def predict(forward: Callable[[torch.Tensor], dict], modules: Sequence[torch.nn.Module], bank: TensorBank, speed: Speed,
            batch_size: int = 256) -> tuple[np.ndarray, np.ndarray | None]:
    """(label_pred ``(N,)`` int64, quat_pred ``(N, 4)`` float64 or None) of ``forward`` over the whole bank.

    ``modules`` are put in eval mode for the pass and their modes restored afterwards.
    """
    modes = [m.training for m in modules]
    for m in modules:
        m.eval()
    labels, quats = [], []
    try:
        for start in range(0, len(bank), batch_size):
            idx = torch.arange(start, min(len(bank), start + batch_size))
            with autocast(speed):
                out = forward(bank.images(idx, speed.device, speed.channels_last))
            labels.append(out["logits"].argmax(1).cpu())
            if out.get("quat") is not None:
                quats.append(out["quat"].float().cpu())
    finally:
        for m, mode in zip(modules, modes):
            m.train(mode)
    q = torch.cat(quats).double().numpy() if quats else None
    return torch.cat(labels).numpy(), q


def score(bank: TensorBank, label_pred: np.ndarray, quat_pred: np.ndarray | None, num_classes: int) -> dict[str, float]:
    """Accuracy (and rotation errors when the bank and the network have poses) of predictions on ``bank``."""
    from sim2real.eval.metrics import evaluate_arrays

    label = bank.label.cpu().numpy()
    with_pose = quat_pred is not None and bank.quat is not None and bool(bank.has_quat.all())
    kw = {}
    if with_pose:
        kw = {"quat_true": bank.quat.cpu().double().numpy(), "quat_pred": quat_pred}
        if bank.symmetries is not None:
            kw["symmetries"] = bank.symmetries  # Symmetry objects: continuous symmetries are minimised exactly
    m = evaluate_arrays(label, label_pred, num_classes, **kw)
    res = {"accuracy": float(m["accuracy"])}
    if m["has_pose"]:
        res.update(mean_angle_deg=m["mean_angle_deg"], median_angle_deg=m["median_angle_deg"],
                   mean_angle_sym_deg=m["mean_angle_sym_deg"], median_angle_sym_deg=m["median_angle_sym_deg"],
                   acc30_sym=m["acc_at_deg_sym"]["30"])
    return {k: float(v) for k, v in res.items()}


def better(new: dict, best: dict | None, select_by: Sequence[tuple[str, bool]] = SELECT_BY) -> bool:
    """Whether validation result ``new`` beats ``best``: the first key of ``select_by`` (``(name,
    higher_is_better)``) both results have decides, later keys break ties; without pose keys, accuracy."""
    if best is None:
        return True
    keys = [(k, hi) for k, hi in select_by if k in new and k in best] or [("accuracy", True)]
    for k, hi in keys:
        if abs(new[k] - best[k]) > 1e-9:
            return new[k] > best[k] if hi else new[k] < best[k]
    return False
