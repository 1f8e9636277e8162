"""Feature-level adaptation baselines on the engine: DANN, Deep CORAL, multi-kernel MMD.

One step (one optimiser update, Adam over T and, for DANN, the domain classifier):

    total = task_source_weight * CE(T(x_s)) + pose_source_weight * P(T(x_s)) + align_weight * L_align(f_s, f_t)

with ``f_s``, ``f_t`` T's penultimate features of the source batch (``domain="source"``) and of the target batch
(``domain="target"``) and ``P`` PixelDA's quaternion pose loss on the true class's quaternion (symmetry-aware
with the source file's symmetries). ``L_align``:

* **dann** (Ganin & Lempitsky 2015): the domain classifier's BCE on ``R_lambda(f)`` (gradient reversal,
  :func:`~sim2real.adapt.feature.losses.grad_reverse`), lambda = 2 / (1 + exp(-10 p)) - 1, p = step / steps;
* **coral** (Sun & Saenko 2016): ``||C_s - C_t||_F^2 / (4 d^2)``;
* **mmd** (DAN, Long et al. 2015): multi-kernel Gaussian MMD^2 (biased), median-heuristic bandwidths.

Everything else is PixelDA's: the inputs (:mod:`sim2real.adapt.data`), the banks, two step-indexed batch streams
(``"chain"`` seeding, as PixelDA's), validation of T on ``--val`` with ``domain="target"`` and ``best.pt``, the
run folder, checkpoints, exact resume (:class:`~sim2real.engine.loop.Trainer`). No sample grids: there is no G.

``align_weight = 0`` is the source-only baseline on the same T ("T source-only"): the target batch is not put
through T, no alignment term is computed or logged (so the health check never watches an unoptimised term), and
DANN builds no domain classifier. Whichever method's config it comes from, the run is the same.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch

from sim2real.adapt.data import load_inputs
from sim2real.adapt.feature.config import DANN_KIND, MMD_KIND, FeatureDAConfig
from sim2real.adapt.feature.losses import DomainClassifier, coral_loss, dann_domain_loss, grad_reverse, grl_lambda, \
    mmd2_multi_kernel
from sim2real.config import to_dict
from sim2real.engine.amp import autocast, clip_grad_norm_per_param_, configure_backend, make_adam, resolve_speed, \
    to_memory_format
from sim2real.engine.bank import TensorBank
from sim2real.engine.checkpoint import Checkpointer
from sim2real.engine.device import resolve_device, seed_everything
from sim2real.engine.loop import Schedule, Trainer, Update
from sim2real.engine.run import open_run
from sim2real.engine.sampler import StepSampler
from sim2real.engine.schedule import lr_factor
from sim2real.engine.validate import predict, score
from sim2real.engine.validators import attach_validators
from sim2real.errors import Sim2RealError
from sim2real.losses import quat_log_loss, task_ce
from sim2real.models.factory import build_task, pose_enabled
from sim2real.models.quat_head import pick_quat
from sim2real.models.task import TaskNet

#: T's checkpoint selection on --val (as PixelDA's): class right and rotation within 30 deg, then the mean error.
SELECT_BY = (("acc30_sym", True), ("mean_angle_sym_deg", False))


def _stream_seed(seed: int, stream: int) -> int:
    """The seed of batch stream ``stream`` (1 source, 2 target): PixelDA's formula, so both methods see the same
    source batches under the same ``train.seed``."""
    return (int(seed) * 1_000_003 + 7919 * stream) % (2**63 - 1)


class FeatureDAMethod:
    """DANN / CORAL / MMD (``cfg.METHOD``) as an engine method over a source and a target bank.

    Args:
        cfg: the run config (its class names the method).
        T: the task network (on ``speed.device``).
        D: DANN's domain classifier, else None.
        src, tgt, val: the banks (``val`` may be None).
        num_classes: C.
        speed: resolved speed settings.
        extra: plain data saved in every checkpoint (class names, image size, ...).
    """

    select_by = SELECT_BY

    def __init__(self, cfg: FeatureDAConfig, T: TaskNet, D: DomainClassifier | None, src: TensorBank, tgt: TensorBank,
                 val: TensorBank | None, num_classes: int, speed, extra: dict) -> None:
        self.cfg, self.kind, self.T, self.D = cfg, cfg.METHOD, T, D
        self.src, self.tgt, self.val, self.num_classes, self.speed, self._extra = src, tgt, val, num_classes, speed, extra
        L, o = cfg.loss, cfg.optim
        self.pose = T.has_pose_head and L.pose_source_weight > 0
        #: False with ``align_weight == 0``: the source-only baseline on the method's T. No target batch is drawn
        #: through T and no alignment term is computed, so nothing unweighted is logged or health-checked.
        self.aligning = L.align_weight > 0
        #: (C, S, 4) symmetry rotations per class for the pose loss, or None (set by the trainer from the source file)
        self.sym_table: torch.Tensor | None = None
        self.models: dict[str, torch.nn.Module] = {"T": T}
        groups = [{"params": list(T.parameters()), "weight_decay": o.task_weight_decay}]
        if D is not None:
            self.models["D"] = D
            groups.append({"params": list(D.parameters())})
        self.opt = make_adam(groups, o.lr, (o.beta1, o.beta2), 0.0, speed)
        self.optimizers = {"opt": self.opt}
        self._params = [p for m in self.models.values() for p in m.parameters()]
        tc = cfg.train
        self.src_sampler = StepSampler([len(src)], tc.batch_size, _stream_seed(tc.seed, 1), seeding="chain")
        self.tgt_sampler = StepSampler([len(tgt)], tc.batch_size, _stream_seed(tc.seed, 2), seeding="chain")
        #: the label-free validators (:mod:`sim2real.engine.validators`), set by the trainer when ``select`` asks
        self.label_free = None

    # ---- schedules (pure functions of the step: resume needs no scheduler state)

    @property
    def horizon(self) -> int:
        """The steps of the progress ``p = step / horizon`` (``train.schedule_steps``, else ``train.steps``)."""
        tc = self.cfg.train
        return tc.schedule_steps if tc.schedule_steps is not None else tc.steps

    def lr_factor(self, step: int) -> float:
        o = self.cfg.optim
        return lr_factor(o.lr_schedule, step, self.horizon, o.lr_decay_rate, o.lr_decay_steps)

    def grl_lambda(self, step: int) -> float:
        """DANN's reversal coefficient of 0-based step ``step``."""
        L = self.cfg.loss
        return grl_lambda(step, self.horizon, L.grl_gamma) if L.grl_schedule else 1.0

    def align_factor(self, step: int) -> float:
        """The alignment term's weight at 0-based step ``step``: ``align_weight``, ramped when ``align_warmup``."""
        L = self.cfg.loss
        return L.align_weight * (grl_lambda(step, self.horizon, 10.0) if L.align_warmup else 1.0)

    # ---- one step

    def batch(self, step: int) -> tuple[dict, dict]:
        dev, cl = self.speed.device, self.speed.channels_last
        return self.src.batch(self.src_sampler(step), dev, cl), self.tgt.batch(self.tgt_sampler(step), dev, cl)

    def _clip(self, params) -> None:
        c, o = self.cfg.optim.clip_grad_norm, self.cfg.optim
        if c <= 0:
            return
        if o.clip_mode == "per_param":
            clip_grad_norm_per_param_(params, c, foreach=self.speed.foreach)
        else:
            torch.nn.utils.clip_grad_norm_(params, c, foreach=self.speed.foreach)

    def align(self, fs: torch.Tensor, ft: torch.Tensor, step: int) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(the alignment loss L_align, other metrics) of source / target features ``(B, F)``."""
        L = self.cfg.loss
        if self.kind == DANN_KIND:
            lam = self.grl_lambda(step)
            with autocast(self.speed):
                ls, lt = self.D(grad_reverse(fs, lam)), self.D(grad_reverse(ft, lam))
            loss = dann_domain_loss(ls, lt)
            acc = torch.cat([(ls <= 0), (lt > 0)]).float().mean()
            return loss, {"dann/lambda": torch.tensor(lam, device=fs.device), "dann/domain_acc": acc}
        if self.kind == MMD_KIND:
            return mmd2_multi_kernel(fs, ft, L.kernel_multipliers, L.bandwidth), {}
        return coral_loss(fs, ft), {}

    def step(self, batch: tuple[dict, dict], step: int):
        src, tgt = batch
        L = self.cfg.loss
        with autocast(self.speed):
            out_s = self.T(src["x"], "source", return_features=self.aligning)
            out_t = self.T(tgt["x"], "target", return_features=True) if self.aligning else None
        ce = task_ce(out_s["logits"], src["label"])
        total = L.task_source_weight * ce
        logged = {"t/ce_source": ce}
        if self.pose:
            sym = self.sym_table[src["label"]] if self.sym_table is not None else None
            pose = quat_log_loss(pick_quat(out_s["quat_all"], src["label"]), src["quat"], L.pose_eps, sym_quats=sym)
            total = total + L.pose_source_weight * pose
            logged["t/pose_source"] = pose
        other = {}
        if self.aligning:
            align, other = self.align(out_s["features"], out_t["features"], step)
            total = total + self.align_factor(step) * align
            logged[f"align/{self.kind}"] = align
        logged["t/total"] = total
        yield Update("opt", total, logged, params=self._params, clip=self._clip)
        return {**other, "t/acc_source": (out_s["logits"].argmax(1) == src["label"]).float().mean()}

    # ---- validation and logging

    def validate(self) -> dict | None:
        T = self.T
        res = {}
        if self.val is not None:
            labels, quats = predict(lambda x: T(x, "target"), [T], self.val, self.speed)
            res = score(self.val, labels, quats, self.num_classes)
        if self.label_free is not None:
            res.update(self.label_free.scores(T, self.disc_accuracy if self.D is not None else None))
        return res or None

    @torch.no_grad()
    def disc_accuracy(self) -> float:
        """DANN's domain classifier accuracy on T's features of fixed source / target images (0.5: aligned)."""
        from sim2real.engine.amp import autocast

        T, D, lf = self.T, self.D, self.label_free
        modes = (T.training, D.training)
        T.eval(), D.eval()
        try:
            idx = lf.target_idx[:256]
            xt = self.tgt.images(idx, self.speed.device, self.speed.channels_last)
            xs = self.src.images(torch.arange(min(len(idx), len(self.src))), self.speed.device, self.speed.channels_last)
            with autocast(self.speed):
                ls = D(T(xs, "source", return_features=True)["features"])
                lt = D(T(xt, "target", return_features=True)["features"])
            return float(torch.cat([(ls <= 0), (lt > 0)]).float().mean())
        finally:
            T.train(modes[0]), D.train(modes[1])

    def postfix(self, means: dict[str, float]) -> dict[str, str]:
        out = {"T": f"{means.get('t/total', 0):.3f}"}
        if self.aligning:
            out[self.kind] = f"{means.get(f'align/{self.kind}', 0):.3g}"
        return out

    def extra(self) -> dict:
        return self._extra


def train_feature_da(cfg: FeatureDAConfig, source: str | Path, target: str | Path, run_dir: str | Path,
                     resume: bool = False, val: str | Path | None = None, log: Callable[[str], None] = print,
                     skip_bad: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Train the feature-level method of ``cfg`` (its class: DANN, CORAL or MMD) and write the run folder.

    The arguments and the result are those of :func:`sim2real.adapt.pixelda.train.train_pixelda`: ``source``
    labelled renders, ``target`` unlabelled target images (HDF5 or image folder), ``val`` a small labelled target
    validation set (T's metrics logged, ``checkpoints/best.pt`` kept), ``resume`` / ``overwrite`` as there.

    Returns:
        ``{"run_dir", "step", "metrics" (last logged means), "best_val"}``.
    """
    kind = cfg.METHOD
    if not kind:
        raise Sim2RealError(f"{type(cfg).__name__}: not a method's config (expected DANNConfig, CORALConfig or MMDConfig)")
    device = resolve_device(cfg.perf.device)
    speed = resolve_speed(device, cfg.perf.amp, cfg.perf.channels_last, cfg.perf.foreach)
    configure_backend(speed)
    tc, L = cfg.train, cfg.loss
    use_depth = cfg.model.use_depth
    pose = pose_enabled(cfg) and L.pose_source_weight > 0

    inp = load_inputs(source, target, val, use_depth=use_depth, expected_size=cfg.model.image_size, need_mask=False,
                      need_quat=pose, val_needs_quat=pose_enabled(cfg), skip_bad=skip_bad, log=log)
    size, class_names, in_channels, info = inp.size, inp.class_names, inp.in_channels, inp.info
    run = open_run(run_dir, kind, resume, overwrite=overwrite, data=info, log=log, data_keys=inp.RESUME_KEYS,
                   data_hint="give the same --source and --target")
    run_dir = run.path

    # Models: seeded once, here (T first, then DANN's domain classifier).
    seed_everything(tc.seed)
    try:
        T = build_task(cfg, len(class_names), in_channels, size)
    except ValueError as e:  # e.g. images too small for the pooling blocks
        raise Sim2RealError(f"model.task: {e}") from None
    aligning = L.align_weight > 0
    D = DomainClassifier(T.feature_dim, cfg.model.domain_classifier.hidden) if kind == DANN_KIND and aligning else None
    T = to_memory_format(T.to(device), speed)
    if D is not None:
        D = D.to(device)
    cfg_dict = to_dict(cfg)

    src_t, tgt_t, val_t, storage = inp.banks(use_depth, ("label", "quat"), device, cfg.perf.data_on_device)
    src_t, src_held = src_t.split_holdout(cfg.select.source_val_n, tc.seed)  # for the src_val / dev validators

    method = FeatureDAMethod(cfg, T, D, src_t, tgt_t, val_t, len(class_names), speed, info)
    if pose and L.symmetric_pose:
        from sim2real.train.pose import symmetry_table

        method.sym_table = symmetry_table(getattr(inp.source, "symmetries", None), L.sym_step_deg, speed.device)
    del inp
    attach_validators(method, cfg.select, tgt_t, src_held, len(class_names), speed, tc.seed, L.pose_eps, method.sym_table,
                      has_disc=D is not None)
    ckpt = Checkpointer(run.checkpoints, kind, cfg_dict, tc.seed, keep=tc.keep_checkpoints)
    trainer = Trainer(method, run, ckpt, Schedule(tc.steps, tc.log_every, tc.val_every, tc.checkpoint_every, tc.max_loss),
                      tensorboard=tc.tensorboard, desc=f"adapt {kind}", log=log)
    if not trainer.begin(cfg, device, info):
        return {"run_dir": str(run_dir), "step": trainer.step, "metrics": {}, "best_val": trainer.best}
    log(f"{kind}: {info['n_source']} source / {info['n_target']} target images {size[0]}x{size[1]}x{in_channels}, "
        f"{len(class_names)} classes; device {speed.describe()}; data on {storage.type}"
        + ("" if aligning else "; loss.align_weight=0: source-only on this T (no alignment term, target images unused "
                               "in training)"))
    res = trainer.fit()
    return {"run_dir": str(run_dir), "step": res["step"], "metrics": res["last_means"], "best_val": res["best_val"]}
