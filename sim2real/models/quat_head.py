"""The rotation head shared by every class + pose network: features -> unit quaternion(s) of R_m2c.

Two layouts:

* ``"per_class"`` (default): one quaternion per class, ``FC(F -> 4 C)``. Training reads the slice of the
  **true** class (so each class's head only learns its own object's appearance -> pose mapping); at test time
  the slice of the **predicted** class is used. This is the layout of PoseCNN-style class-specific
  regression; measured on 20,000 view-sphere renders of the bundled objects it halves the median rotation
  error of the shared head at equal steps (``benchmarks/bench_pose.py``, ``docs/train-pose.md``).
* ``"shared"``: one quaternion for all classes, ``FC(F -> 4)``: the official PixelDA "pose_mini" head.

Activation before the L2 normalisation: ``"none"`` (default) or ``"tanh"`` (the official PixelDA head:
``tanh`` then ``tf.nn.l2_normalize``). tanh saturates: once a raw component nears +-1 its gradient vanishes
and the direction of the quaternion can no longer move freely, which is measurably worse at equal steps.

Outputs are unit quaternions (w, x, y, z), not canonicalised (q and -q are the same rotation; the loss and
the angle metric are sign-invariant, :mod:`sim2real.conventions`).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

HeadLayout = Literal["per_class", "shared"]
Activation = Literal["none", "tanh"]
HEAD_LAYOUTS: tuple[str, ...] = ("per_class", "shared")
ACTIVATIONS: tuple[str, ...] = ("none", "tanh")


class QuatHead(nn.Module):
    """Features ``(B, F)`` -> unit quaternions ``(B, K, 4)`` with ``K = num_classes`` (per_class) or 1 (shared).

    Args:
        in_features: F.
        num_classes: C.
        layout: ``"per_class"`` or ``"shared"``.
        activation: ``"none"`` or ``"tanh"`` before the L2 normalisation.
    """

    def __init__(self, in_features: int, num_classes: int, layout: HeadLayout = "per_class",
                 activation: Activation = "none") -> None:
        super().__init__()
        if layout not in HEAD_LAYOUTS:
            raise ValueError(f"QuatHead: layout must be one of {HEAD_LAYOUTS}, got {layout!r}")
        if activation not in ACTIVATIONS:
            raise ValueError(f"QuatHead: activation must be one of {ACTIVATIONS}, got {activation!r}")
        self.layout, self.activation = layout, activation
        self.k = int(num_classes) if layout == "per_class" else 1
        self.fc = nn.Linear(in_features, 4 * self.k)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        """``(B, K, 4)`` float32 unit quaternions (w, x, y, z)."""
        q = self.fc(f).float().view(f.shape[0], self.k, 4)
        if self.activation == "tanh":
            q = torch.tanh(q)
        # eps 1e-12 as tf.nn.l2_normalize: finite even for an all-zero output
        return F.normalize(q, dim=-1, eps=1e-12)


def pick_quat(quat_all: torch.Tensor, label: torch.Tensor) -> torch.Tensor:
    """The quaternion of class ``label[i]`` for each sample: ``(B, K, 4)``, ``(B,)`` -> ``(B, 4)``.

    With a shared head (K == 1) the one quaternion is returned whatever the label.
    """
    if quat_all.ndim != 3 or quat_all.shape[-1] != 4:
        raise ValueError(f"pick_quat: expected (B, K, 4) quaternions, got {tuple(quat_all.shape)}")
    if quat_all.shape[1] == 1:
        return quat_all[:, 0]
    if label.shape != quat_all.shape[:1]:
        raise ValueError(f"pick_quat: expected labels ({quat_all.shape[0]},), got {tuple(label.shape)}")
    return quat_all[torch.arange(quat_all.shape[0], device=quat_all.device), label.long()]


def quat_outputs(head: QuatHead, f: torch.Tensor, logits: torch.Tensor) -> dict[str, torch.Tensor]:
    """The network outputs of a quaternion head: ``quat_all (B, K, 4)`` and ``quat (B, 4)``.

    ``quat`` is the predicted class's quaternion (``argmax`` of ``logits``); losses that know the true class
    take ``pick_quat(out["quat_all"], label)`` instead.
    """
    quat_all = head(f)
    return {"quat_all": quat_all, "quat": pick_quat(quat_all, logits.detach().argmax(1))}
