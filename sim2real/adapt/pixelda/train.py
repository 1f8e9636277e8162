"""PixelDA training (Bousmalis et al., CVPR 2017): G adapts renders to the target domain; D and T train with it.

One training step (official ``pixelda_train.py``: ``discriminator_steps = generator_steps = 1``):

1. **D step** (updates D and T): ``d_weight * L_gan(D(x_t), D(G(x_s, z)))`` + the task losses of T on the
   source images ``T(x_s, "source")`` and on the adapted images ``T(G(x_s, z), "adapted")``: cross-entropy
   on both, plus the quaternion pose loss for LineMod.
2. **G step** (updates G): ``g_adv_weight * L_gan(D(G(x_s, z)))`` (non-saturating) ``+ content_weight *
   PMSE(G(x_s, z), x_s; mask)`` ``+ task_in_g_weight * task loss of T on G(x_s, z)``. Terms that do not
   depend on G (T on the source images) are left out of the G step: their gradient w.r.t. G is zero.

Real and adapted batches pass through D in separate calls (batch-norm statistics not mixed). Adam
(beta1 0.5) with staircase decay and gradient clipping per tensor (official) or global.

Each step draws a source batch and a target batch from two independent step-indexed streams
(:class:`~sim2real.engine.sampler.StepSampler`, ``"chain"`` seeding; no ``zip`` truncation). The loop is the
engine's (:class:`~sim2real.engine.loop.Trainer`): resume is exact (a checkpoint holds the models, optimisers,
step and RNG states; batches are a function of the step). Logging, sample grids and validation never draw from
the global RNG.

The run folder layout is documented in ``docs/adapt.md``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from sim2real.adapt.data import load_inputs
from sim2real.adapt.pixelda.config import KIND, PixelDAConfig
from sim2real.adapt.pixelda.step import PixelDAStep
from sim2real.adapt.samples import SampleGrid, write_png
from sim2real.config import to_dict
from sim2real.engine.amp import configure_backend, resolve_speed, to_memory_format
from sim2real.engine.bank import TensorBank
from sim2real.engine.checkpoint import Checkpointer
from sim2real.engine.device import resolve_device, seed_everything
from sim2real.engine.ema import ema_copy, ema_update
from sim2real.engine.loop import Schedule, Trainer
from sim2real.engine.run import open_run
from sim2real.engine.sampler import StepSampler
from sim2real.engine.validate import predict, score
from sim2real.engine.validators import attach_validators
from sim2real.errors import Sim2RealError
from sim2real.models.factory import build_models, pose_enabled

DEFAULT_CONFIG = "pixelda-linemod"

#: T's checkpoint selection on --val: right class and rotation within 30 deg, then the mean symmetry-aware error.
SELECT_BY = (("acc30_sym", True), ("mean_angle_sym_deg", False))


def _stream_seed(seed: int, stream: int) -> int:
    return (int(seed) * 1_000_003 + 7919 * stream) % (2**63 - 1)


class PixelDAMethod:
    """PixelDA as an engine method: :class:`~sim2real.adapt.pixelda.step.PixelDAStep` over a source and a target
    bank, T validated on the labelled target split, sample grids of G."""

    select_by = SELECT_BY

    def __init__(self, cfg: PixelDAConfig, stepper: PixelDAStep, src: TensorBank, tgt: TensorBank,
                 val: TensorBank | None, num_classes: int, speed, grid: SampleGrid, run_dir: Path, extra: dict,
                 labelled: TensorBank | None = None) -> None:
        self.cfg, self.stepper, self.src, self.tgt, self.val, self.labelled = cfg, stepper, src, tgt, val, labelled
        self.num_classes, self.speed, self.grid, self.run_dir, self._extra = num_classes, speed, grid, run_dir, extra
        self.models = {"G": stepper.G, "D": stepper.D, "T": stepper.T}
        #: the averaged T (``train.ema_decay`` > 0), validated and loaded by ``evaluate`` in T's place
        self.T_ema = ema_copy(stepper.T) if cfg.train.ema_decay > 0 else None
        if self.T_ema is not None:
            self.models["T_ema"] = self.T_ema
        stepper.teacher = self.T_ema  # labels the target images for T's self-training (``self_train``)
        self.optimizers = stepper.optimizers
        tc = cfg.train
        self.src_sampler = StepSampler([len(src)], tc.batch_size, _stream_seed(tc.seed, 1), seeding="chain")
        self.tgt_sampler = StepSampler([len(tgt)], tc.batch_size, _stream_seed(tc.seed, 2), seeding="chain")
        self.labelled_sampler = None if labelled is None else \
            StepSampler([len(labelled)], tc.batch_size, _stream_seed(tc.seed, 3), seeding="chain")
        #: the label-free validators (:mod:`sim2real.engine.validators`), set by the trainer when ``select`` asks
        self.label_free = None

    def lr_factor(self, step: int) -> float:
        return self.stepper.lr_factor(step)

    def batch(self, step: int) -> tuple[dict, dict, dict | None]:
        dev, cl = self.speed.device, self.speed.channels_last
        tl = None if self.labelled is None else self.labelled.batch(self.labelled_sampler(step), dev, cl)
        return self.src.batch(self.src_sampler(step), dev, cl), self.tgt.batch(self.tgt_sampler(step), dev, cl), tl

    @property
    def task_net(self) -> torch.nn.Module:
        """The T that validation scores: the averaged one when ``train.ema_decay`` > 0."""
        return self.stepper.T if self.T_ema is None else self.T_ema

    def step(self, batch: tuple[dict, dict, dict | None], step: int):
        metrics = yield from self.stepper.updates(*batch)
        if self.T_ema is not None:  # after both updates of the step, so resume at any step boundary is exact
            ema_update(self.T_ema, self.stepper.T, self.cfg.train.ema_decay, step + 1)
        return metrics

    def validate(self) -> dict | None:
        T = self.task_net
        res = {}
        if self.val is not None:
            labels, quats = predict(lambda x: T(x, "target"), [T], self.val, self.speed)
            res = score(self.val, labels, quats, self.num_classes)
            if self.T_ema is not None:  # the trained (not averaged) T beside it, "raw_*": what the average gains
                Tr = self.stepper.T
                raw = score(self.val, *predict(lambda x: Tr(x, "target"), [Tr], self.val, self.speed), self.num_classes)
                res.update({f"raw_{k}": v for k, v in raw.items()
                            if k in ("accuracy", "acc30_sym", "median_angle_sym_deg", "mean_angle_sym_deg")})
        if self.label_free is not None:
            res.update(self.label_free.scores(T, self.disc_accuracy))
        return res or None

    @torch.no_grad()
    def disc_accuracy(self) -> float:
        """D's accuracy at telling real target images from G(source) on the validators' fixed images (fixed z;
        G with batch statistics, as in training, its running statistics restored after)."""
        from sim2real.engine.amp import autocast
        from sim2real.engine.bn import batch_statistics, running_statistics
        from sim2real.losses import d_accuracy

        G, D, lf = self.stepper.G, self.stepper.D, self.label_free
        idx = lf.target_idx[:256]
        xt = self.tgt.images(idx, self.speed.device, self.speed.channels_last)
        xs = self.src.images(torch.arange(min(len(idx), len(self.src))), self.speed.device, self.speed.channels_last)
        z = None
        if G.noise_dim > 0:  # a private generator: validation never draws from the global RNG
            z = torch.rand(len(xs), G.noise_dim, generator=torch.Generator().manual_seed(5)).mul_(2).sub_(1)
            z = z.to(self.speed.device)
        with autocast(self.speed):
            with batch_statistics(G):
                fake_x = G(xs, z)
            with running_statistics(D):
                real, fake = D(xt), D(fake_x)
        return float(d_accuracy(real, fake, self.cfg.loss.gan))

    def postfix(self, means: dict[str, float]) -> dict[str, str]:
        return {"D": f"{means.get('d/total', 0):.3f}", "G": f"{means.get('g/total', 0):.3f}",
                "Dacc": f"{means.get('d/acc', 0):.2f}"}

    def on_step_end(self, step: int, final: bool) -> None:
        if step % self.cfg.train.sample_every == 0 or final:
            write_png(self.run_dir / "samples" / f"step_{step:07d}.png", self.grid.render(self.stepper.G, self.speed))

    def extra(self) -> dict:
        return self._extra


def train_pixelda(cfg: PixelDAConfig, source: str | Path, target: str | Path, run_dir: str | Path, resume: bool = False,
                  val: str | Path | None = None, log: Callable[[str], None] = print, skip_bad: bool = False,
                  overwrite: bool = False, target_labelled: str | Path | None = None) -> dict[str, Any]:
    """Train PixelDA and write the run folder (see ``docs/adapt.md``).

    Args:
        cfg: resolved config (:func:`sim2real.adapt.resolve_adapt_config`).
        source: labelled source HDF5 (renders).
        target: unlabelled target: HDF5 of the source's image size, or a folder of png/jpg (resized).
        run_dir: output folder (must be new or empty unless ``resume``).
        resume: continue the run in ``run_dir`` from ``checkpoints/last.pt``; a run folder without a checkpoint
            yet (stopped before its first) is emptied and started from step 0, saying so.
        overwrite: replace an existing run folder (``--overwrite``).
        val: optional small labelled *target* validation set (HDF5 or folder + labels.csv); T's accuracy
            and angle error on it are logged, and the best checkpoint is kept as ``checkpoints/best.pt``.
        log: where one-line status messages go.
        skip_bad: skip unreadable images in a target folder (reported) instead of stopping at the first.
        target_labelled: a few *labelled* target images (HDF5, e.g. from ``sim2real subset``): T also learns the
            task on them (``loss.task_target_weight`` / ``pose_target_weight``; paper Table 6). Never the test set,
            nor (for an honest validation) the ``val`` file.

    Returns:
        ``{"run_dir", "step", "metrics" (last logged means), "best_val"}``.
    """
    device = resolve_device(cfg.perf.device)
    speed = resolve_speed(device, cfg.perf.amp, cfg.perf.channels_last, cfg.perf.foreach)
    configure_backend(speed)
    tc, L = cfg.train, cfg.loss
    use_depth = cfg.model.use_depth
    pose = pose_enabled(cfg) and (L.pose_source_weight > 0 or L.pose_adapted_weight > 0)
    need_mask = L.content == "masked_pmse" and L.content_weight > 0

    inp = load_inputs(source, target, val, use_depth=use_depth, expected_size=cfg.model.image_size, need_mask=need_mask,
                      need_quat=pose, val_needs_quat=pose_enabled(cfg), skip_bad=skip_bad, log=log,
                      classes=tc.source_classes)
    size, class_names, in_channels, info = inp.size, inp.class_names, inp.in_channels, inp.info
    if not need_mask and getattr(inp.source, "mask", None) is not None and not resume:
        log(f"pixelda: note: {source} has foreground masks that this config does not use (loss.content="
            f"{L.content}, weight {L.content_weight:g}); --set loss.content=masked_pmse --set loss.content_weight=1 "
            "keeps G from repainting the object (docs/adapt.md, 'Which method for which gap')")
    labelled = None
    if target_labelled is not None:
        from sim2real.adapt.data import load_val

        if val is not None and Path(target_labelled).resolve() == Path(val).resolve():
            raise Sim2RealError(f"--target-labelled {target_labelled}: is also --val (T would be selected on the images "
                                "it trained on); give a separate labelled file")
        labelled = load_val(target_labelled, size, use_depth, class_names, need_quat=False, what="--target-labelled")
        info["target_labelled"] = str(target_labelled)
        info["n_target_labelled"] = len(labelled)
    run = open_run(run_dir, KIND, resume, overwrite=overwrite, data=info, log=log,
                   data_keys=inp.RESUME_KEYS + ("n_target_labelled",),
                   data_hint="give the same --source, --target and --target-labelled")
    run_dir = run.path
    (run_dir / "samples").mkdir(exist_ok=True)

    # Models and optimisers: seeded once, here.
    seed_everything(tc.seed)
    G, D, T = build_models(cfg, len(class_names), in_channels, size)
    G, D, T = (to_memory_format(m.to(device), speed) for m in (G, D, T))
    stepper = PixelDAStep(G, D, T, cfg, speed)
    if pose and cfg.loss.symmetric_pose:
        from sim2real.train.pose import symmetry_table

        stepper.sym_table = symmetry_table(getattr(inp.source, "symmetries", None), cfg.loss.sym_step_deg, speed.device)
    cfg_dict = to_dict(cfg)

    src_t, tgt_t, val_t, storage = inp.banks(use_depth, ("mask", "label", "quat") if need_mask else ("label", "quat"),
                                             device, cfg.perf.data_on_device)
    src_t, src_held = src_t.split_holdout(cfg.select.source_val_n, tc.seed)  # for the src_val / dev validators
    labelled_t = None
    if labelled is not None:
        labelled_t = TensorBank.from_data([labelled], use_depth, keep=("label", "quat")).to(storage)
        del labelled
    del inp

    rows = min(tc.sample_rows, len(src_t))
    pick = lambda n, r: torch.from_numpy(np.linspace(0, n - 1, r).round().astype(np.int64))  # noqa: E731
    grid = SampleGrid(src_t.batch(pick(len(src_t), rows), torch.device("cpu"))["x"],
                      tgt_t.batch(pick(len(tgt_t), min(rows, len(tgt_t))), torch.device("cpu"))["x"],
                      tc.sample_draws, cfg.model.generator.noise_dim, tc.seed)
    method = PixelDAMethod(cfg, stepper, src_t, tgt_t, val_t, len(class_names), speed, grid, run_dir, info,
                           labelled=labelled_t)
    attach_validators(method, cfg.select, tgt_t, src_held, len(class_names), speed, tc.seed, L.pose_eps, stepper.sym_table,
                      has_disc=True)
    ckpt = Checkpointer(run.checkpoints, KIND, cfg_dict, tc.seed, keep=tc.keep_checkpoints)
    trainer = Trainer(method, run, ckpt, Schedule(tc.steps, tc.log_every, tc.val_every, tc.checkpoint_every, tc.max_loss),
                      tensorboard=tc.tensorboard, desc="adapt", log=log)
    if not trainer.begin(cfg, device, info):
        return {"run_dir": str(run_dir), "step": trainer.step, "metrics": {}, "best_val": trainer.best}
    log(f"pixelda: {info['n_source']} source / {info['n_target']} target images {size[0]}x{size[1]}x{in_channels}, "
        f"{len(class_names)} classes; device {speed.describe()}; data on {storage.type}"
        + (f"; T also trains on {len(labelled_t)} labelled target images" if labelled_t is not None else ""))
    if not run.resume:
        write_png(run_dir / "samples" / f"step_{0:07d}.png", grid.render(G, speed))
    res = trainer.fit()
    return {"run_dir": str(run_dir), "step": res["step"], "metrics": res["last_means"], "best_val": res["best_val"]}
