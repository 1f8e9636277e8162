"""The training loop every trainer runs: a method's step, logged, validated, checkpointed, resumable.

A *method* (PixelDA in :mod:`sim2real.adapt.pixelda`, the pose network in :mod:`sim2real.train.pose`) supplies:

* ``models`` and ``optimizers``: ``{name: module}`` / ``{name: optimizer}``, saved in checkpoints by name;
* ``batch(step)``: the batch of 0-based step ``step`` (from its :class:`~sim2real.engine.sampler.StepSampler`);
* ``step(batch, step)``: a generator that yields one :class:`Update` per optimiser step (named losses with the
  total to back-propagate) and returns the step's other named metrics; the engine runs
  ``zero_grad -> backward -> clip -> optimizer.step`` after each yield, so a later update sees the earlier one
  (PixelDA's G step fools the D just updated) -- pytorch-adapt's losses-grouped-by-optimiser habit;
* ``lr_factor(step)``: the learning rate of step ``step`` as a multiple of each group's initial rate (a pure
  function of the step: resume needs no scheduler state);
* ``validate()``: metrics on the labelled validation split (:mod:`sim2real.engine.validate`), or None;
* optional ``select_by``, ``postfix(means)``, ``on_step_end(step, final)``, ``extra()`` (plain data saved in
  every checkpoint beside the best validation result).

The engine owns the rest: metrics log and health check, validation cadence and ``best.pt``, checkpoints
(``last.pt``, ``step_N.pt`` with retention), deferred Ctrl-C, progress bar.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, Callable, Generator, Iterable, Sequence

import torch

from sim2real.engine.checkpoint import Checkpointer
from sim2real.engine.device import rng_state, set_rng_state
from sim2real.engine.distributed import any_rank, average_gradients, is_main, max_over_ranks, mean_over_ranks, \
    sync_batchnorm
from sim2real.engine.distributed import world as dist_world
from sim2real.engine.interrupt import DeferInterrupt
from sim2real.engine.metrics import Meter, MetricsLog, check_health
from sim2real.engine.run import RunFolder
from sim2real.engine.validate import SELECT_BY, better
from sim2real.errors import Sim2RealError


@dataclasses.dataclass
class Update:
    """One optimiser step of a method's step: back-propagate ``total``, clip, step ``optimizer``.

    Attributes:
        optimizer: name in the method's ``optimizers``.
        total: the 0-d loss to back-propagate.
        losses: named 0-d tensors logged for this update (the total among them, under the method's name for it).
        params: the parameters ``clip`` is applied to.
        clip: gradient clipping, ``clip(params)``, or None.
    """

    optimizer: str
    total: torch.Tensor
    losses: dict[str, torch.Tensor]
    params: Sequence[torch.nn.Parameter] = ()
    clip: Callable[[Sequence[torch.nn.Parameter]], None] | None = None


def scale_lr(optimizers: Iterable[torch.optim.Optimizer], factor: float) -> None:
    """Set every parameter group's rate to ``factor`` times its own initial rate (``initial_lr``, recorded on first
    use), so groups with different rates (PixelDA's T beside D) follow one schedule."""
    for opt in optimizers:
        for group in opt.param_groups:
            group.setdefault("initial_lr", group["lr"])
            group["lr"] = group["initial_lr"] * factor


def apply_updates(gen: Generator, optimizers: dict[str, torch.optim.Optimizer],
                  progress: list | None = None) -> dict[str, torch.Tensor]:
    """Drive a method's step generator: after each yielded :class:`Update`, ``zero_grad -> backward -> clip ->
    step`` its optimiser, then resume the generator. Returns the step's metrics (detached float 0-d tensors, no host
    sync): every update's ``losses`` and the generator's return value. ``progress[0]`` counts updates applied."""
    metrics: dict[str, torch.Tensor] = {}
    try:
        upd = next(gen)
        while True:
            opt = optimizers[upd.optimizer]
            opt.zero_grad(set_to_none=True)
            upd.total.backward()
            if dist_world().active:  # torchrun: the mean gradient over the ranks, before clipping
                average_gradients(p for g in opt.param_groups for p in g["params"])
            if upd.clip is not None:
                upd.clip(upd.params)
            if progress is not None:
                progress[0] += 1
            opt.step()
            metrics.update({k: v.detach().float() for k, v in upd.losses.items()})
            upd = gen.send(None)
    except StopIteration as stop:
        metrics.update({k: v.detach().float() for k, v in (stop.value or {}).items()})
    return metrics


@dataclasses.dataclass
class Schedule:
    """How long a run is and how often it logs, validates and checkpoints (the config's ``train`` section)."""

    steps: int
    log_every: int
    val_every: int
    checkpoint_every: int
    max_loss: float = 1000.0


class Trainer:
    """Runs ``method`` in run folder ``run`` (see the module docstring).

    Args:
        method: the method.
        run: the opened run folder (:func:`sim2real.engine.run.open_run`).
        checkpointer: where checkpoints go.
        schedule: steps and cadences.
        tensorboard: also write TensorBoard events.
        desc: progress bar label.
        log: one-line status messages.
        show_progress: progress bar (None: :func:`sim2real.utils.progress` decides).
    """

    def __init__(self, method: Any, run: RunFolder, checkpointer: Checkpointer, schedule: Schedule, tensorboard: bool,
                 desc: str, log: Callable[[str], None] = print, show_progress: bool | None = None) -> None:
        self.method, self.run, self.ckpt, self.sched = method, run, checkpointer, schedule
        self.tensorboard, self.desc, self.log, self.show_progress = tensorboard, desc, log, show_progress
        self.step = 0
        self.best: dict | None = None
        self.last_val: dict | None = None
        self.last_means: dict[str, float] = {}
        for opt in method.optimizers.values():
            for group in opt.param_groups:
                group.setdefault("initial_lr", group["lr"])
        for model in method.models.values():  # torchrun: batch-norm statistics of the global batch
            sync_batchnorm(model)

    # ---- state

    def state(self, rng: dict | None = None) -> dict:
        st = {name: m.state_dict() for name, m in self.method.models.items()}
        st.update({name: o.state_dict() for name, o in self.method.optimizers.items()})
        st["rng"] = rng if rng is not None else rng_state()
        return st

    def _extra(self) -> dict:
        extra = dict(self.method.extra()) if hasattr(self.method, "extra") else {}
        extra["best_val"] = self.best
        return extra

    def restore(self) -> int:
        """Load ``last.pt`` into the method (resume); returns its step."""
        blob = self.ckpt.load_last(map_location="cpu")
        where = str(self.ckpt.last)
        try:
            for name, m in self.method.models.items():
                m.load_state_dict(blob["state"][name])
            for name, o in self.method.optimizers.items():
                o.load_state_dict(blob["state"][name])
        except (KeyError, RuntimeError, ValueError) as e:
            raise Sim2RealError(f"{where}: checkpoint does not match this config's models or optimisers "
                                f"({str(e).splitlines()[0][:160] if str(e) else type(e).__name__})") from None
        set_rng_state(blob["state"]["rng"])
        self.step = int(blob["step"])
        self.best = (blob.get("extra") or {}).get("best_val")
        return self.step

    def save(self, step: int, rng: dict | None = None) -> None:
        if is_main():  # torchrun: rank 0 writes; the ranks' states are identical
            self.ckpt.save_last(step, self.state(rng), self._extra())
        else:
            self.ckpt.last_step = int(step)

    def save_best(self, step: int) -> None:
        if is_main():
            self.ckpt.save_best(step, self.state(), self._extra())

    def begin(self, cfg: Any, device: torch.device, info: dict) -> bool:
        """Start or continue the run: on resume, restore ``last.pt`` and say where it continues; on a new run,
        write ``run.json``. ``config.yaml`` is (re)written either way (a longer ``train.steps`` is what the next
        ``--resume`` continues with). Returns False when a resumed run is already at ``schedule.steps``."""
        from sim2real.config import dump_yaml, to_dict
        from sim2real.engine.run import write_run_info

        path, steps = self.run.path, self.sched.steps
        if self.run.resume:
            start = self.restore()
            if is_main():
                dump_yaml(cfg, path / "config.yaml")
            if start >= steps:
                self.log(f"{path}: already at step {start} of train.steps={steps}; nothing to do "
                         "(--set train.steps=N to train longer)")
                return False
            self.log(f"resuming {path} at step {start} of {steps}")
        elif is_main():
            write_run_info(path, self.run.kind, to_dict(cfg), self.ckpt.seed, device, extra=info)
            dump_yaml(cfg, path / "config.yaml")
        return True

    # ---- one step

    def _set_lr(self, step: int) -> float:
        scale_lr(self.method.optimizers.values(), self.method.lr_factor(step))
        first = next(iter(self.method.optimizers.values()))
        return first.param_groups[0]["lr"]

    def run_step(self, step: int, progress: list) -> dict[str, torch.Tensor]:
        """Run 0-based step ``step``; ``progress[0]`` counts optimiser updates applied (for interrupt safety)."""
        lr = self._set_lr(step)
        metrics = apply_updates(self.method.step(self.method.batch(step), step), self.method.optimizers, progress)
        self._lr = lr
        return metrics

    # ---- the loop

    def fit(self) -> dict:
        """Train from ``self.step`` to ``schedule.steps``; returns ``{"step", "last_means", "last_val", "best_val"}``."""
        from sim2real.utils import progress

        m, s = self.method, self.sched
        resume_step = self.step if self.run.resume else None
        main = is_main()  # torchrun: rank 0 logs, shows progress and writes
        mlog = MetricsLog(self.run.path, resume_step, self.tensorboard) if main else None
        meter = Meter()
        select_by = getattr(m, "select_by", SELECT_BY)
        bar = progress(total=s.steps, initial=min(self.step, s.steps), desc=self.desc, unit="step",
                       disable=(None if self.show_progress is None else not self.show_progress) if main else True)
        t_start = t0 = time.perf_counter()
        s0 = self.step
        self._lr = 0.0
        cuda = torch.cuda.is_available()
        try:
            with DeferInterrupt() as interrupt:
                while self.step < s.steps:
                    torch_rng = torch.get_rng_state()  # cheap; the state a mid-step Ctrl-C must save
                    cuda_rng = torch.cuda.get_rng_state_all() if cuda else None
                    applied = [0]
                    try:
                        metrics = self.run_step(self.step, applied)
                    except KeyboardInterrupt:
                        if applied[0] == 0:  # nothing of this step was applied: the state is the last step's
                            rng = rng_state()
                            rng["torch"] = torch_rng
                            if cuda_rng is not None:
                                rng["cuda"] = cuda_rng
                            self.save(self.step, rng)
                            self.log(f"interrupted: checkpoint written at step {self.step}")
                        raise
                    self.step += 1
                    step = self.step
                    meter.add(metrics)
                    bar.update(1)
                    final = step == s.steps
                    if step % s.log_every == 0 or final:
                        means, maxes = meter.flush()
                        means, maxes = mean_over_ranks(means), max_over_ranks(maxes)
                        check_health(maxes, step, s.max_loss, self.run.path, self.ckpt.last_step)
                        now = time.perf_counter()
                        rate = (step - s0) / max(now - t0, 1e-9)
                        t0, s0 = now, step
                        self.last_means = means
                        if mlog is not None:
                            mlog.write(step, "train", {**means, "lr": self._lr, "steps_per_s": rate,
                                                       "time_s": round(now - t_start, 3)})
                        if hasattr(m, "postfix"):
                            bar.set_postfix(m.postfix(means), refresh=False)
                    if (step % s.val_every == 0 or final) and hasattr(m, "validate"):
                        res = m.validate()
                        if res is not None:
                            self.last_val = res
                            if mlog is not None:
                                mlog.write(step, "val", res)
                            # a result without the selection's keys (only label-free scores logged, no --val)
                            # picks nothing
                            selectable = any(k in res for k, _ in select_by) or "accuracy" in res
                            if selectable and better(res, self.best, select_by):
                                self.best = {**res, "step": step}
                                self.save_best(step)
                    if hasattr(m, "on_step_end") and main:  # sample grids: eval mode, no collectives
                        m.on_step_end(step, final)
                    stop = any_rank(interrupt.requested)  # every rank stops at the same step
                    if step % s.checkpoint_every == 0 or final or stop:
                        _, maxes = meter.flush(reset=False)
                        maxes = max_over_ranks(maxes)
                        check_health(maxes, step, s.max_loss, self.run.path, self.ckpt.last_step)
                        self.save(step)
                    if stop:
                        self.log(f"interrupted: checkpoint written at step {step}")
                        raise KeyboardInterrupt
        finally:
            bar.close()
            if mlog is not None:
                mlog.close()
        return {"step": self.step, "last_means": self.last_means, "last_val": self.last_val, "best_val": self.best}
