"""DTN training (Taigman, Polyak & Wolf, ICLR 2017) on the engine: pretrain f, then the ternary GAN and T.

Two phases of one run (``train.pretrain_steps`` = P):

* **steps 0 .. P-1** (one update, ``opt_f``): f and its class (+ quaternion) heads learn the labelled source
  images: ``CE + pretrain_pose_weight * P`` with ``P`` PixelDA's quaternion loss on the true class's quaternion
  (symmetry-aware with the source file's symmetries).
* **steps P ..** f is frozen (eval mode, ``requires_grad`` off; its optimiser is never stepped again) and each step
  is three updates, each seeing the one before:

  1. ``opt_d``: ``L_D = CE(D(G(x_s)), 0) + CE(D(G(x_t)), 1) + CE(D(x_t), 2)`` (G detached);
  2. ``opt_g`` (g only): ``L_GANG + alpha * L_CONST + beta * L_TID + gamma * L_TV`` against the updated D, D's
     parameters frozen for it; L_CONST = MSE(f(x_s), f(G(x_s))) goes *through* the frozen f into g;
  3. ``opt_t``: T on G(x_s) (detached) with the source labels: ``task_weight * CE + pose_weight * P``, plus
     ``task_source_weight * (CE + pose_weight * P)`` on x_s itself when that weight is > 0; either input
     photometrically augmented when ``task_augment`` lists its domain.

Everything else is PixelDA's: the inputs (:mod:`sim2real.adapt.data`), the banks, two step-indexed batch streams
(``"chain"`` seeding, PixelDA's formula), T validated on ``--val`` with ``domain="target"`` and ``best.pt`` (from
the first step after pretraining), sample grids, the run folder, checkpoints, exact resume
(:class:`~sim2real.engine.loop.Trainer`). Every step logs the same names (the engine's meter needs it): the
inactive phase's are 0, and ``phase/pretrain`` is 1 while pretraining.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from sim2real.adapt.data import load_inputs
from sim2real.adapt.dtn.config import KIND, DTNConfig
from sim2real.adapt.dtn.losses import const_loss, d_accuracy, dtn_d_loss, dtn_g_gan_loss, tid_loss, total_variation
from sim2real.adapt.dtn.models import ContextEncoder, Decoder, DTNGenerator, TernaryDiscriminator, build_dtn, \
    pose_enabled
from sim2real.adapt.samples import compose_grid, write_png
from sim2real.config import to_dict
from sim2real.data.tensors import tensor_to_rgb
from sim2real.engine.amp import Speed, autocast, clip_grad_norm_per_param_, configure_backend, make_adam, \
    resolve_speed, to_memory_format
from sim2real.engine.bank import TensorBank
from sim2real.engine.checkpoint import Checkpointer
from sim2real.engine.device import resolve_device, seed_everything
from sim2real.engine.loop import Schedule, Trainer, Update
from sim2real.engine.run import open_run
from sim2real.engine.sampler import StepSampler
from sim2real.engine.validate import predict, score
from sim2real.engine.validators import attach_validators
from sim2real.errors import Sim2RealError
from sim2real.losses import quat_log_loss, task_ce
from sim2real.models.factory import build_task
from sim2real.models.quat_head import pick_quat
from sim2real.models.task import TaskNet
from sim2real.train.augment import PhotometricAugment, TaskInputAugment

#: T's checkpoint selection on --val (as PixelDA's and the feature baselines'): class right and rotation within
#: 30 deg, then the mean symmetry-aware error.
SELECT_BY = (("acc30_sym", True), ("mean_angle_sym_deg", False))

#: every name a step logs, in this order (pretraining's and the GAN phase's; the inactive phase's are 0)
LOGGED = ("phase/pretrain", "f/total", "f/ce", "f/pose", "f/acc", "d/total", "d/acc", "g/total", "g/gan", "g/const",
          "g/tid", "g/tv", "t/total", "t/ce", "t/ce_source", "t/pose", "t/acc")


def _logged(device: torch.device, **values: torch.Tensor) -> dict[str, torch.Tensor]:
    """All of :data:`LOGGED` in order (the engine's meter wants the same names every step): ``values`` (keys with
    ``_`` for ``/``), zeros for the rest."""
    zero = torch.zeros((), device=device)
    given = {k.replace("_", "/", 1): v for k, v in values.items()}
    unknown = set(given) - set(LOGGED)
    if unknown:
        raise KeyError(f"DTN: not a logged name: {sorted(unknown)}")
    return {k: given.get(k, zero) for k in LOGGED}


def _stream_seed(seed: int, stream: int) -> int:
    """The seed of batch stream ``stream`` (1 source, 2 target): PixelDA's formula, so every method sees the same
    source batches under the same ``train.seed``."""
    return (int(seed) * 1_000_003 + 7919 * stream) % (2**63 - 1)


class DTNSampleGrid:
    """Fixed images for the periodic grids: rows ``source | G(source) | target | G(target)``.

    G runs in eval mode (what ``sim2real export`` produces); no random numbers are drawn (G is noise-free), so a grid
    never changes the training run.

    Args:
        src_x: ``(R, C, H, W)`` source images in [-1, 1].
        tgt_x: ``(R', C, H, W)`` target images (shown beside, unpaired; repeated when R' < R).
    """

    def __init__(self, src_x: torch.Tensor, tgt_x: torch.Tensor) -> None:
        rows = src_x.shape[0]
        self.src_x, self.tgt_x = src_x, tgt_x[torch.arange(rows) % tgt_x.shape[0]]

    @torch.no_grad()
    def render(self, G: DTNGenerator, speed: Speed) -> np.ndarray:
        """The grid as uint8 ``(rows * h', 4 * w', 3)`` (RGB channels only)."""
        was_training = G.training
        G.eval()
        try:
            outs = []
            for x in (self.src_x, self.tgt_x):
                with autocast(speed):
                    outs.append(G(to_memory_format(x.to(speed.device), speed)).float().cpu())
        finally:
            G.train(was_training)
        return compose_grid([tensor_to_rgb(self.src_x), tensor_to_rgb(outs[0]), tensor_to_rgb(self.tgt_x),
                             tensor_to_rgb(outs[1])])


class DTNMethod:
    """DTN as an engine method over a source and a target bank (see the module docstring).

    Args:
        cfg: the run config.
        f, g, D: DTN's networks (:func:`~sim2real.adapt.dtn.models.build_dtn`), T: the task network; all on
            ``speed.device``.
        src, tgt, val: the banks (``val`` may be None).
        num_classes: C.
        speed: resolved speed settings.
        grid: the sample grid, or None (no grids).
        run_dir: where ``samples/`` goes.
        extra: plain data saved in every checkpoint (class names, image size, ...).
    """

    select_by = SELECT_BY

    def __init__(self, cfg: DTNConfig, f: ContextEncoder, g: Decoder, D: TernaryDiscriminator, T: TaskNet,
                 src: TensorBank, tgt: TensorBank, val: TensorBank | None, num_classes: int, speed: Speed,
                 grid: DTNSampleGrid | None = None, run_dir: Path | None = None, extra: dict | None = None) -> None:
        self.cfg, self.f, self.g, self.D, self.T = cfg, f, g, D, T
        self.src, self.tgt, self.val, self.num_classes, self.speed = src, tgt, val, num_classes, speed
        self.grid, self.run_dir, self._extra = grid, run_dir, extra or {}
        self.G = DTNGenerator(f, g, frozen_f=False)
        L, o = cfg.loss, cfg.optim
        self.pose_t = T.has_pose_head and L.pose_weight > 0
        self.pose_f = f.has_pose_head and L.pretrain_pose_weight > 0
        #: (C, S, 4) symmetry rotations per class for the pose loss, or None (set by the trainer from the source file)
        self.sym_table: torch.Tensor | None = None
        self.models: dict[str, torch.nn.Module] = {"f": f, "g": g, "D": D, "T": T}
        betas = (o.beta1, o.beta2)
        self.opt_f = make_adam(f.parameters(), o.pretrain_lr if o.pretrain_lr is not None else o.lr,
                               (0.9, o.beta2), 0.0, speed)
        self.opt_d = make_adam(D.parameters(), o.lr, betas, 0.0, speed)
        self.opt_g = make_adam(g.parameters(), o.lr, betas, 0.0, speed)
        self.opt_t = make_adam([{"params": list(T.parameters()), "weight_decay": o.task_weight_decay}], o.lr, betas,
                               0.0, speed)
        self.optimizers = {"opt_f": self.opt_f, "opt_d": self.opt_d, "opt_g": self.opt_g, "opt_t": self.opt_t}
        self._params = {name: list(m.parameters()) for name, m in self.models.items()}
        tc = cfg.train
        self.src_sampler = StepSampler([len(src)], tc.batch_size, _stream_seed(tc.seed, 1), seeding="chain")
        self.tgt_sampler = StepSampler([len(tgt)], tc.batch_size, _stream_seed(tc.seed, 2), seeding="chain")
        self._done = 0  # steps completed (0-based step + 1 of the last step run)
        self.pretrain_augment = (PhotometricAugment(cfg.pretrain_augment).to(speed.device)
                                 if cfg.pretrain_augment.enabled else None)
        self.task_input = TaskInputAugment(cfg.task_augment, speed.device)  # T's inputs only

    # ---- phases and schedules (pure functions of the step: resume needs no state of its own)

    @property
    def pretrain_steps(self) -> int:
        return self.cfg.train.pretrain_steps

    def freeze_f(self, frozen: bool) -> None:
        """f frozen (eval mode, no parameter gradients, the last pretraining gradients dropped) or trainable
        (training mode)."""
        self.G.frozen_f = frozen
        self.f.train(not frozen)
        for p in self._params["f"]:
            p.requires_grad_(not frozen)
            if frozen:
                p.grad = None

    def lr_factor(self, step: int) -> float:
        o = self.cfg.optim
        return o.lr_decay_rate ** (step // o.lr_decay_steps)

    def _clip(self, params) -> None:
        c, o = self.cfg.optim.clip_grad_norm, self.cfg.optim
        if c <= 0:
            return
        if o.clip_mode == "per_param":
            clip_grad_norm_per_param_(params, c, foreach=self.speed.foreach)
        else:
            torch.nn.utils.clip_grad_norm_(params, c, foreach=self.speed.foreach)

    def _pose(self, quat_all: torch.Tensor, src: dict) -> torch.Tensor:
        sym = self.sym_table[src["label"]] if self.sym_table is not None else None
        return quat_log_loss(pick_quat(quat_all, src["label"]), src["quat"], self.cfg.loss.pose_eps, sym_quats=sym)

    # ---- one step

    def batch(self, step: int) -> tuple[dict, dict | None]:
        dev, cl = self.speed.device, self.speed.channels_last
        src = self.src.batch(self.src_sampler(step), dev, cl)
        if step < self.pretrain_steps:  # pretraining reads no target images
            return src, None
        return src, self.tgt.batch(self.tgt_sampler(step), dev, cl)

    def step(self, batch: tuple[dict, dict | None], step: int):
        self._done = step + 1
        if step < self.pretrain_steps:
            return (yield from self._pretrain_step(batch[0]))
        return (yield from self._gan_step(*batch))

    def _pretrain_step(self, src: dict):
        self.freeze_f(False)
        L = self.cfg.loss
        x = src["x"] if self.pretrain_augment is None else self.pretrain_augment(src["x"])
        with autocast(self.speed):
            out = self.f.classify(x)
        ce = task_ce(out["logits"], src["label"])
        pose = self._pose(out["quat_all"], src) if self.pose_f else torch.zeros((), device=ce.device)
        total = ce + L.pretrain_pose_weight * pose
        acc = (out["logits"].argmax(1) == src["label"]).float().mean()
        logged = _logged(ce.device, phase_pretrain=torch.ones((), device=ce.device), f_total=total, f_ce=ce,
                         f_pose=pose, f_acc=acc)
        yield Update("opt_f", total, logged, params=self._params["f"], clip=self._clip)
        return {}

    def _gan_step(self, src: dict, tgt: dict):
        self.freeze_f(True)
        L, sp = self.cfg.loss, self.speed
        xs, xt = src["x"], tgt["x"]
        with autocast(sp):
            f_s = self.f(xs)                  # no gradient: f frozen, x a leaf without grad
            fake_s = self.g(f_s)
            fake_t = self.g(self.f(xt))

        # ---- D: three classes, G detached; separate calls (batch-norm statistics of the three batches not mixed)
        for p in self._params["D"]:
            p.requires_grad_(True)
        with autocast(sp):
            ls, lt, lr = self.D(fake_s.detach()), self.D(fake_t.detach()), self.D(xt)
        d_total = dtn_d_loss(ls, lt, lr)
        # the first update logs every name (their order is fixed here); the later ones overwrite their own
        yield Update("opt_d", d_total, _logged(d_total.device, d_total=d_total, d_acc=d_accuracy(ls, lt, lr)),
                     params=self._params["D"], clip=self._clip)

        # ---- G (g only): fool the updated D; f-constancy through the frozen f; target identity; TV
        for p in self._params["D"]:
            p.requires_grad_(False)
        try:
            with autocast(sp):
                gs, gt = self.D(fake_s), self.D(fake_t)
                f_fake = self.f(fake_s)
            gan = dtn_g_gan_loss(gs, gt)
            const = const_loss(f_s, f_fake)
            tid = tid_loss(xt, fake_t)
            tv = 0.5 * (total_variation(fake_s, L.tv_exponent) + total_variation(fake_t, L.tv_exponent))
            g_total = gan + L.alpha * const + L.beta * tid + L.gamma * tv
            yield Update("opt_g", g_total, {"g/total": g_total, "g/gan": gan, "g/const": const, "g/tid": tid,
                                            "g/tv": tv}, params=self._params["g"], clip=self._clip)
        finally:
            for p in self._params["D"]:
                p.requires_grad_(True)

        # ---- T on the adapted source images (detached), source labels
        with autocast(sp):
            out = self.T(self.task_input(fake_s.detach(), "adapted"), "adapted")
        ce = task_ce(out["logits"], src["label"])
        pose = self._pose(out["quat_all"], src) if self.pose_t else torch.zeros((), device=ce.device)
        t_total = L.task_weight * ce + L.pose_weight * pose
        t_acc = (out["logits"].argmax(1) == src["label"]).float().mean()
        ce_src = torch.zeros((), device=ce.device)
        if L.task_source_weight > 0:  # T also learns the labelled source images (PixelDA's layout)
            with autocast(sp):
                out_s = self.T(self.task_input(xs, "source"), "source")
            ce_src = task_ce(out_s["logits"], src["label"])
            pose_s = self._pose(out_s["quat_all"], src) if self.pose_t else torch.zeros((), device=ce.device)
            t_total = t_total + L.task_source_weight * (ce_src + L.pose_weight * pose_s)
        yield Update("opt_t", t_total, {"t/total": t_total, "t/ce": ce, "t/ce_source": ce_src, "t/pose": pose,
                                        "t/acc": t_acc},
                     params=self._params["T"], clip=self._clip)
        return {}

    # ---- validation, samples, logging

    #: the label-free validators (:mod:`sim2real.engine.validators`), set by the trainer when ``select`` asks
    label_free = None

    def validate(self) -> dict | None:
        if self._done <= self.pretrain_steps:  # T has not trained yet
            return None
        T = self.T
        res = {}
        if self.val is not None:
            labels, quats = predict(lambda x: T(x, "target"), [T], self.val, self.speed)
            res = score(self.val, labels, quats, self.num_classes)
        if self.label_free is not None:
            res.update(self.label_free.scores(T))
        return res or None

    def write_samples(self, step: int) -> None:
        if self.grid is not None and self.run_dir is not None:
            write_png(self.run_dir / "samples" / f"step_{step:07d}.png", self.grid.render(self.G, self.speed))

    def on_step_end(self, step: int, final: bool) -> None:
        if step % self.cfg.train.sample_every == 0 or final:
            self.write_samples(step)

    def postfix(self, means: dict[str, float]) -> dict[str, str]:
        if means.get("phase/pretrain", 0) >= 1:
            return {"f": f"{means.get('f/total', 0):.3f}", "f_acc": f"{means.get('f/acc', 0):.2f}"}
        return {"D": f"{means.get('d/total', 0):.3f}", "G": f"{means.get('g/total', 0):.3f}",
                "T": f"{means.get('t/total', 0):.3f}"}

    def extra(self) -> dict:
        return self._extra


def train_dtn(cfg: DTNConfig, source: str | Path, target: str | Path, run_dir: str | Path, resume: bool = False,
              val: str | Path | None = None, log: Callable[[str], None] = print, skip_bad: bool = False,
              overwrite: bool = False) -> dict[str, Any]:
    """Train DTN and write the run folder (see ``docs/adapt.md``).

    The arguments and the result are those of :func:`sim2real.adapt.pixelda.train.train_pixelda`: ``source``
    labelled renders, ``target`` unlabelled target images (HDF5 or image folder), ``val`` a small labelled target
    validation set (T's metrics logged, ``checkpoints/best.pt`` kept), ``resume`` / ``overwrite`` as there.

    Returns:
        ``{"run_dir", "step", "metrics" (last logged means), "best_val"}``.
    """
    device = resolve_device(cfg.perf.device)
    speed = resolve_speed(device, cfg.perf.amp, cfg.perf.channels_last, cfg.perf.foreach)
    configure_backend(speed)
    tc, L = cfg.train, cfg.loss
    use_depth = cfg.model.use_depth
    pose = pose_enabled(cfg) and (L.pose_weight > 0 or L.pretrain_pose_weight > 0)

    inp = load_inputs(source, target, val, use_depth=use_depth, expected_size=cfg.model.image_size, need_mask=False,
                      need_quat=pose, val_needs_quat=pose_enabled(cfg), skip_bad=skip_bad, log=log)
    size, class_names, in_channels, info = inp.size, inp.class_names, inp.in_channels, inp.info
    run = open_run(run_dir, KIND, resume, overwrite=overwrite, data=info, log=log, data_keys=inp.RESUME_KEYS,
                   data_hint="give the same --source and --target")
    run_dir = run.path
    (run_dir / "samples").mkdir(exist_ok=True)

    # Models: seeded once, here (f, g, D, then T).
    seed_everything(tc.seed)
    try:
        nets = build_dtn(cfg, len(class_names), in_channels, size)
        T = build_task(cfg, len(class_names), in_channels, size)
    except ValueError as e:  # e.g. an image size the stride-2 layers cannot halve
        raise Sim2RealError(f"model: {e}") from None
    f, g, D, T = (to_memory_format(m.to(device), speed) for m in (nets["f"], nets["g"], nets["D"], T))
    cfg_dict = to_dict(cfg)

    src_t, tgt_t, val_t, storage = inp.banks(use_depth, ("label", "quat"), device, cfg.perf.data_on_device)
    src_t, src_held = src_t.split_holdout(cfg.select.source_val_n, tc.seed)  # for the src_val / dev validators
    rows = min(tc.sample_rows, len(src_t))
    pick = lambda n, r: torch.from_numpy(np.linspace(0, n - 1, r).round().astype(np.int64))  # noqa: E731
    grid = DTNSampleGrid(src_t.batch(pick(len(src_t), rows), torch.device("cpu"))["x"],
                         tgt_t.batch(pick(len(tgt_t), min(rows, len(tgt_t))), torch.device("cpu"))["x"])
    method = DTNMethod(cfg, f, g, D, T, src_t, tgt_t, val_t, len(class_names), speed, grid, run_dir, info)
    if pose and L.symmetric_pose:
        from sim2real.train.pose import symmetry_table

        method.sym_table = symmetry_table(getattr(inp.source, "symmetries", None), L.sym_step_deg, speed.device)
    del inp
    attach_validators(method, cfg.select, tgt_t, src_held, len(class_names), speed, tc.seed, L.pose_eps,
                      method.sym_table, has_disc=False)
    ckpt = Checkpointer(run.checkpoints, KIND, cfg_dict, tc.seed, keep=tc.keep_checkpoints)
    schedule = Schedule(tc.steps, tc.log_every, tc.val_every, tc.checkpoint_every, tc.max_loss)
    trainer = Trainer(method, run, ckpt, schedule, tensorboard=tc.tensorboard, desc="adapt dtn", log=log)
    if not trainer.begin(cfg, device, info):
        return {"run_dir": str(run_dir), "step": trainer.step, "metrics": {}, "best_val": trainer.best}
    log(f"dtn: {info['n_source']} source / {info['n_target']} target images {size[0]}x{size[1]}x{in_channels}, "
        f"{len(class_names)} classes; f pretrained for {tc.pretrain_steps} of {tc.steps} steps; "
        f"device {speed.describe()}; data on {storage.type}")
    # f's phase at the step the run continues from (a resumed run past pretraining starts frozen)
    method.freeze_f(trainer.step >= tc.pretrain_steps)
    if not run.resume:
        method.write_samples(0)
    res = trainer.fit()
    return {"run_dir": str(run_dir), "step": res["step"], "metrics": res["last_means"], "best_val": res["best_val"]}
