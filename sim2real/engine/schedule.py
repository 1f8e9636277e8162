"""Learning-rate schedules as pure functions of the step (resume needs no scheduler state).

Every trainer's ``lr_factor(step)`` (:mod:`~sim2real.engine.loop`) is one of these, so a schedule means the same in
``train-pose`` and in every ``adapt`` method:

* ``staircase`` (alias ``step``): ``rate ** (step // decay_steps)``, TF's ``exponential_decay(staircase=True)``, the
  official PixelDA schedule (0.95 every 20,000 steps);
* ``cosine``: from 1 to 0 over ``horizon`` steps (Loshchilov & Hutter 2017, one cycle, no restarts), after
  ``warmup_steps`` of linear warm-up;
* ``anneal``: ``(1 + 10 p) ** -0.75`` with ``p = step / horizon`` (Ganin et al., JMLR 2016, Sec. 5.2.2).

``horizon`` is the run's ``train.steps`` unless the trainer says otherwise; extending a finished run with a larger
``train.steps`` re-stretches ``cosine`` and ``anneal`` from that step on (``staircase`` does not depend on it).
"""

from __future__ import annotations

import math

#: Schedule names :func:`lr_factor` knows.
SCHEDULES = ("staircase", "step", "cosine", "anneal")


def lr_factor(schedule: str, step: int, horizon: int, decay_rate: float = 0.95, decay_steps: int = 20000,
              warmup_steps: int = 0) -> float:
    """The learning rate of 0-based ``step`` as a multiple of the initial rate.

    Args:
        schedule: one of :data:`SCHEDULES`.
        step: 0-based optimiser step.
        horizon: the steps ``cosine`` decays over and ``anneal``'s progress is measured against (``train.steps``).
        decay_rate, decay_steps: ``staircase``'s factor and period.
        warmup_steps: linear warm-up ``(step + 1) / warmup_steps`` before any schedule (0: none).
    """
    if warmup_steps and step < warmup_steps:
        return (step + 1) / warmup_steps
    if schedule in ("staircase", "step"):
        return decay_rate ** (step // decay_steps)
    if schedule == "cosine":
        span = max(1, horizon - warmup_steps)
        return 0.5 * (1.0 + math.cos(math.pi * min(1.0, (step - warmup_steps) / span)))
    if schedule == "anneal":
        return (1.0 + 10.0 * min(step / max(1, horizon), 1.0)) ** -0.75
    raise ValueError(f"unknown learning-rate schedule {schedule!r} (known: {', '.join(SCHEDULES)})")
