"""One metrics log for every trainer, the on-device meter, and the NaN / divergence health check.

``RUN/metrics.jsonl`` holds one JSON object per line, one schema for every trainer::

    {"step": 500, "split": "train", "<loss name>": 0.41, ..., "lr": 0.001, "steps_per_s": 21.3, "time_s": 23.5}
    {"step": 500, "split": "val", "accuracy": 0.93, "mean_angle_deg": 21.0, "median_angle_sym_deg": 9.8, ...}

``step`` counts completed optimisation steps; ``train`` lines hold the means of the step's named losses since the
previous line; ``val`` lines the validation metrics (:mod:`sim2real.engine.validate`). TensorBoard (``RUN/tb``)
gets the same scalars as ``SPLIT/NAME``. On resume, lines after the checkpoint's step are dropped (they are
logged again).
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import torch

from sim2real.errors import Sim2RealError
from sim2real.utils import atomic_write_text


def truncate_metrics(path: Path, step: int) -> None:
    """Drop ``metrics.jsonl`` lines after ``step`` (steps an interrupted run logged past its last checkpoint)."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                keep.append(line)
        except ValueError:
            continue  # a torn last line from a kill mid-write
    atomic_write_text(path, "".join(k + "\n" for k in keep))


class MetricsLog:
    """``RUN/metrics.jsonl`` (+ TensorBoard under ``RUN/tb`` when ``tensorboard``); see the module docstring.

    Args:
        run_dir: the run folder.
        resume_step: the step a resumed run continues from (later lines are dropped), or None for a new run.
        tensorboard: also write TensorBoard events.
    """

    def __init__(self, run_dir: str | Path, resume_step: int | None, tensorboard: bool) -> None:
        self.path = Path(run_dir) / "metrics.jsonl"
        if resume_step is not None:
            truncate_metrics(self.path, resume_step)
        self._file = open(self.path, "a")
        self._writer = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(str(Path(run_dir) / "tb"), purge_step=resume_step)

    def write(self, step: int, split: str, values: dict[str, Any]) -> None:
        rec = {"step": int(step), "split": split, **values}
        self._file.write(json.dumps(rec, sort_keys=True) + "\n")
        self._file.flush()
        if self._writer is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    self._writer.add_scalar(f"{split}/{k}", v, step)

    def close(self) -> None:
        self._file.close()
        if self._writer is not None:
            self._writer.close()


class Meter:
    """Sums and max-abs of a step's named values, kept on the device in float64; :meth:`flush` syncs once.

    float64 sums make the logged means the exact mean of the float32 step values (no accumulation error).
    """

    def __init__(self) -> None:
        self.keys: list[str] | None = None
        self.sum: torch.Tensor | None = None
        self.maxabs: torch.Tensor | None = None
        self.count = 0

    def add(self, m: dict[str, torch.Tensor]) -> None:
        if self.keys is None:
            self.keys = list(m)
        elif list(m) != self.keys:
            raise ValueError(f"Meter: a step logged {sorted(m)}, earlier steps {sorted(self.keys)} (a method must log "
                             "the same names every step)")
        v = torch.stack([m[k].detach().to(torch.float64) for k in self.keys])
        if self.sum is None:
            self.sum, self.maxabs = v.clone(), v.abs()
        else:
            self.sum += v
            self.maxabs = torch.maximum(self.maxabs, v.abs())  # NaN propagates
        self.count += 1

    def flush(self, reset: bool = True) -> tuple[dict[str, float], dict[str, float]]:
        """(means, max-abs) since the last reset; ``reset`` starts a new interval."""
        if self.count == 0 or self.keys is None:
            return {}, {}
        means = dict(zip(self.keys, (self.sum / self.count).tolist()))
        maxes = dict(zip(self.keys, self.maxabs.tolist()))
        if reset:
            self.sum = self.maxabs = None
            self.count = 0
        return means, maxes


def check_health(maxes: dict[str, float], step: int, max_loss: float, run_dir: Path, last_saved: int | None,
                 bounded: tuple[str, ...] = ("acc", "logit")) -> None:
    """Stop with a one-line error on a non-finite or diverged loss (the last good checkpoint is kept).

    Values whose name contains one of ``bounded`` (accuracies, logits) are checked for finiteness only.
    """
    bad = [k for k, v in maxes.items() if not math.isfinite(v)]
    keep = (f"the last good checkpoint is step {last_saved} ({run_dir / 'checkpoints' / 'last.pt'})"
            if last_saved is not None else "no checkpoint had been written")
    if bad:
        raise Sim2RealError(f"{run_dir}: training stopped at step {step}: non-finite {', '.join(bad)}; {keep}. "
                            "Try a lower optim.lr or smaller loss weights")
    big = [k for k, v in maxes.items() if not any(b in k for b in bounded) and v > max_loss]
    if big:
        raise Sim2RealError(f"{run_dir}: training stopped at step {step}: loss diverged ({big[0]} reached "
                            f"{maxes[big[0]]:.3g} > train.max_loss={max_loss:g}); {keep}")
