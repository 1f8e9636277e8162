"""I2I Adapt (Murez et al., CVPR 2018) on the engine: a shared encoder, two decoders, a latent classifier.

One step, two optimiser updates on a source batch x_s (labelled) and a target batch x_t (two step-indexed streams,
PixelDA's ``"chain"`` seeding and stream seeds):

1. **discriminators** (Adam ``opt_d``: D_z, D_x, D_y), on detached latents and translations:
   ``z_weight * LSGAN_D(D_z(f(x_s)) -> 1, D_z(f(x_t)) -> 0)
   + tr_weight * [W_D(D_y; x_t, g_y(f(x_s))) + gp_weight * GP(D_y) + W_D(D_x; x_s, g_x(f(x_t))) + gp_weight * GP(D_x)]``
   with ``W_D(D; real, fake) = mean D(fake) - mean D(real)`` and GP WGAN-GP's gradient penalty on random interpolates
   (:func:`~sim2real.adapt.i2i.losses.gradient_penalty`, ``create_graph=True``: the engine's backward of the total
   differentiates through the penalty's gradient).
2. **encoder, decoders, classifier** (Adam ``opt_g``: f, g_x / g_y, h), against the discriminators just updated (their
   parameters frozen for this update):
   ``c_weight * task(h(f(x_s))) + z_weight * (D_z(f(x_t)) - 1)^2 + tr_weight * (-D_y(g_y(f(x_s))) - D_x(g_x(f(x_t))))
   + id_weight * (|g_x(f(x_s)) - x_s| + |g_y(f(x_t)) - x_t|)
   + cyc_weight * (|g_x(f(g_y(f(x_s)))) - x_s| + |g_y(f(g_x(f(x_t)))) - x_t|) + trc_weight * task(h(f(g_y(f(x_s)))))``.
   The latent adversary reaches the encoder through the **target** latents only (the source latents are the
   anchor, as the paper says). ``task = CE + pose_weight * P``, P the quaternion log loss on the true class's
   quaternion (symmetry-aware, as the feature baselines').

Latents and translations are computed once per step: the discriminator update uses them detached, the second update
back-propagates through the same tensors (f and g do not change in between). h o f is validated on ``--val``
(:class:`~sim2real.adapt.i2i.models.I2ITaskNet`, ``best.pt`` as the feature baselines); sample grids show both
translations. The run folder, checkpoints and exact resume are the engine's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from sim2real.adapt.data import load_inputs
from sim2real.adapt.i2i.config import KIND, I2IConfig
from sim2real.adapt.i2i.losses import gradient_penalty, l1, lsgan_d_loss, lsgan_g_loss, wgan_critic_loss, \
    wgan_generator_loss
from sim2real.adapt.i2i.models import MODULES, I2ITaskNet, I2ITranslator, build_i2i
from sim2real.adapt.samples import SampleGrid, write_png
from sim2real.config import to_dict
from sim2real.engine.amp import autocast, clip_grad_norm_per_param_, configure_backend, make_adam, resolve_speed, \
    to_memory_format
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
from sim2real.models.quat_head import pick_quat

#: h o f's checkpoint selection on --val (as PixelDA's and the feature baselines'): class right and rotation within
#: 30 deg, then the mean symmetry-aware error.
SELECT_BY = (("acc30_sym", True), ("mean_angle_sym_deg", False))


def _stream_seed(seed: int, stream: int) -> int:
    """Batch stream ``stream``'s seed (1 source, 2 target): PixelDA's formula (same source batches per train.seed)."""
    return (int(seed) * 1_000_003 + 7919 * stream) % (2**63 - 1)


class I2IMethod:
    """I2I Adapt as an engine method over a source and a target bank.

    Args:
        cfg: the run config.
        nets: the networks by :data:`~sim2real.adapt.i2i.models.MODULES` name, on ``speed.device``.
        src, tgt, val: the banks (``val`` may be None).
        num_classes: C.
        speed: resolved speed settings.
        grids: (source -> target, target -> source) sample grids, or None (no grids written).
        run_dir: where ``samples/`` goes.
        extra: plain data saved in every checkpoint (class names, image size, ...).
    """

    select_by = SELECT_BY

    def __init__(self, cfg: I2IConfig, nets: dict[str, torch.nn.Module], src: TensorBank, tgt: TensorBank,
                 val: TensorBank | None, num_classes: int, speed, grids: tuple[SampleGrid, SampleGrid] | None = None,
                 run_dir: Path | None = None, extra: dict | None = None) -> None:
        self.cfg, self.src, self.tgt, self.val, self.num_classes, self.speed = cfg, src, tgt, val, num_classes, speed
        self.grids, self.run_dir, self._extra = grids, run_dir, extra or {}
        self.models: dict[str, torch.nn.Module] = {k: nets[k] for k in MODULES}
        self.f, self.g, self.h = nets["f"], nets["g"], nets["h"]
        self.Dz, self.Dx, self.Dy = nets["Dz"], nets["Dx"], nets["Dy"]
        #: h o f (validation, evaluate) and g_y o f / g_x o f (sample grids, export): views on the same modules
        self.task = I2ITaskNet(self.f, self.h, num_classes)
        self.to_target = I2ITranslator(self.f, self.g, "target")
        self.to_source = I2ITranslator(self.f, self.g, "source")
        L, o = cfg.loss, cfg.optim
        self.pose = self.task.has_pose_head and L.pose_weight > 0
        #: (C, S, 4) symmetry rotations per class for the pose loss, or None (set by the trainer from the source file)
        self.sym_table: torch.Tensor | None = None
        self.g_params = [p for k in ("f", "g", "h") for p in nets[k].parameters()]
        self.d_params = [p for k in ("Dz", "Dx", "Dy") for p in nets[k].parameters()]
        # named apart from the models: a checkpoint's state holds both under their names
        self.optimizers = {"opt_d": make_adam(self.d_params, o.lr, (o.beta1, o.beta2), 0.0, speed),
                           "opt_g": make_adam(self.g_params, o.lr, (o.beta1, o.beta2), 0.0, speed)}
        tc = cfg.train
        self.src_sampler = StepSampler([len(src)], tc.batch_size, _stream_seed(tc.seed, 1), seeding="chain")
        self.tgt_sampler = StepSampler([len(tgt)], tc.batch_size, _stream_seed(tc.seed, 2), seeding="chain")

    # ---- schedule and batches (pure functions of the step)

    def lr_factor(self, step: int) -> float:
        o = self.cfg.optim
        return o.lr_decay_rate ** (step // o.lr_decay_steps)

    def batch(self, step: int) -> tuple[dict, dict]:
        dev, cl = self.speed.device, self.speed.channels_last
        return self.src.batch(self.src_sampler(step), dev, cl), self.tgt.batch(self.tgt_sampler(step), dev, cl)

    def _clip(self, params) -> None:
        o = self.cfg.optim
        if o.clip_grad_norm <= 0:
            return
        if o.clip_mode == "per_param":
            clip_grad_norm_per_param_(params, o.clip_grad_norm, foreach=self.speed.foreach)
        else:
            torch.nn.utils.clip_grad_norm_(params, o.clip_grad_norm, foreach=self.speed.foreach)

    # ---- losses

    def task_loss(self, out: dict, src: dict) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """``CE + pose_weight * P`` of h's outputs ``out`` against the source batch's labels (and poses)."""
        ce = task_ce(out["logits"], src["label"])
        if not self.pose:
            return ce, {"ce": ce}
        sym = self.sym_table[src["label"]] if self.sym_table is not None else None
        L = self.cfg.loss
        pose = quat_log_loss(pick_quat(out["quat_all"], src["label"]), src["quat"], L.pose_eps, sym_quats=sym)
        return ce + L.pose_weight * pose, {"ce": ce, "pose": pose}

    def _critic(self, D: torch.nn.Module, real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(Wasserstein critic loss, gradient penalty) of critic ``D``; ``fake`` detached. The penalty runs in fp32
        (double back-propagation through a bf16 forward would square rounding errors)."""
        with autocast(self.speed):
            w = wgan_critic_loss(D(real), D(fake.detach()))
        with torch.autocast(device_type=real.device.type, enabled=False):
            gp = gradient_penalty(D, real.float(), fake.detach().float())
        return w, gp

    # ---- one step

    def step(self, batch: tuple[dict, dict], step: int):
        src, tgt = batch
        L = self.cfg.loss
        xs, xt = src["x"], tgt["x"]
        f, g, h = self.f, self.g, self.h
        use_z, use_tr = L.z_weight > 0, L.tr_weight > 0
        with autocast(self.speed):
            zs, zt = f(xs), f(xt)
            x_st = g(zs, "target")  # source -> target translation g_y(f(x_s))
            x_ts = g(zt, "source")  # target -> source translation g_x(f(x_t))

        # 1. the discriminators, on detached latents and translations
        if use_z or use_tr:
            d_total = xs.new_zeros((), dtype=torch.float32)
            d_logged: dict[str, torch.Tensor] = {}
            with autocast(self.speed), torch.set_grad_enabled(use_z):
                s_s, s_t = self.Dz(zs.detach()), self.Dz(zt.detach())
            # always logged with a discriminator update (the adapt command reports it as "D accuracy")
            d_logged["d/acc"] = torch.cat([s_s.detach().float() > 0.5, s_t.detach().float() <= 0.5]).float().mean()
            if use_z:
                dz = lsgan_d_loss(s_s, s_t)
                d_total = d_total + L.z_weight * dz
                d_logged["d/latent"] = dz
            if use_tr:
                wy, gpy = self._critic(self.Dy, xt, x_st)
                wx, gpx = self._critic(self.Dx, xs, x_ts)
                d_total = d_total + L.tr_weight * (wy + L.gp_weight * gpy + wx + L.gp_weight * gpx)
                d_logged.update({"d/critic_y": wy, "d/gp_y": gpy, "d/critic_x": wx, "d/gp_x": gpx})
            d_logged["d/total"] = d_total
            yield Update("opt_d", d_total, d_logged, params=self.d_params, clip=self._clip)

        # 2. encoder, decoders, classifier against the updated discriminators (frozen: only the inputs need gradients)
        for p in self.d_params:
            p.requires_grad_(False)
        try:
            with autocast(self.speed):
                out_s = h(zs)
                task_s, parts = self.task_loss(out_s, src)
                total = L.c_weight * task_s
                logged = {"g/task": task_s, **{f"g/{k}_source": v for k, v in parts.items()}}
                if use_z:  # target latents only: the source latents are the anchor
                    adv_z = lsgan_g_loss(self.Dz(zt))
                    total = total + L.z_weight * adv_z
                    logged["g/latent"] = adv_z
                if use_tr:
                    adv_tr = wgan_generator_loss(self.Dy(x_st)) + wgan_generator_loss(self.Dx(x_ts))
                    total = total + L.tr_weight * adv_tr
                    logged["g/translation"] = adv_tr
                if L.id_weight > 0:
                    rec = l1(g(zs, "source"), xs) + l1(g(zt, "target"), xt)
                    total = total + L.id_weight * rec
                    logged["g/identity"] = rec
                if L.cyc_weight > 0 or L.trc_weight > 0:
                    z_st = f(x_st)
                if L.cyc_weight > 0:
                    cyc = l1(g(z_st, "source"), xs) + l1(g(f(x_ts), "target"), xt)
                    total = total + L.cyc_weight * cyc
                    logged["g/cycle"] = cyc
                if L.trc_weight > 0:
                    task_st, _ = self.task_loss(h(z_st), src)
                    total = total + L.trc_weight * task_st
                    logged["g/translated_task"] = task_st
            logged["g/total"] = total
            yield Update("opt_g", total, logged, params=self.g_params, clip=self._clip)
        finally:
            for p in self.d_params:
                p.requires_grad_(True)
        return {"t/acc_source": (out_s["logits"].argmax(1) == src["label"]).float().mean()}

    # ---- validation, samples, logging

    #: the label-free validators (:mod:`sim2real.engine.validators`), set by the trainer when ``select`` asks
    label_free = None

    def validate(self) -> dict | None:
        task = self.task
        res = {}
        if self.val is not None:
            labels, quats = predict(lambda x: task(x, "target"), [task], self.val, self.speed)
            res = score(self.val, labels, quats, self.num_classes)
        if self.label_free is not None:
            res.update(self.label_free.scores(task))
        return res or None

    def render_samples(self) -> np.ndarray:
        """Both translations as one uint8 image: rows ``source | g_y(f(source)) | a target image`` above rows
        ``target | g_x(f(target)) | a source image`` (fixed inputs, f and g in eval mode)."""
        s2t, t2s = self.grids
        top, bottom = s2t.render(self.to_target, self.speed), t2s.render(self.to_source, self.speed)
        return np.concatenate([top, bottom], axis=0)

    def on_step_end(self, step: int, final: bool) -> None:
        if self.grids is not None and (step % self.cfg.train.sample_every == 0 or final):
            write_png(self.run_dir / "samples" / f"step_{step:07d}.png", self.render_samples())

    def postfix(self, means: dict[str, float]) -> dict[str, str]:
        return {"D": f"{means.get('d/total', 0):.3f}", "G": f"{means.get('g/total', 0):.3f}",
                "acc": f"{means.get('t/acc_source', 0):.2f}"}

    def extra(self) -> dict:
        return self._extra


def train_i2i(cfg: I2IConfig, source: str | Path, target: str | Path, run_dir: str | Path, resume: bool = False,
              val: str | Path | None = None, log: Callable[[str], None] = print, skip_bad: bool = False,
              overwrite: bool = False) -> dict[str, Any]:
    """Train I2I Adapt and write the run folder (``docs/adapt.md``).

    The arguments and the result are those of :func:`sim2real.adapt.pixelda.train.train_pixelda`: ``source``
    labelled renders, ``target`` unlabelled target images (HDF5 or image folder), ``val`` a small labelled target
    validation set (h o f's metrics logged, ``checkpoints/best.pt`` kept), ``resume`` / ``overwrite`` as there.

    Returns:
        ``{"run_dir", "step", "metrics" (last logged means), "best_val"}``.
    """
    device = resolve_device(cfg.perf.device)
    speed = resolve_speed(device, cfg.perf.amp, cfg.perf.channels_last, cfg.perf.foreach)
    configure_backend(speed)
    tc, L = cfg.train, cfg.loss
    use_depth = cfg.model.use_depth
    pose_head = cfg.model.classifier.pose_head
    pose = pose_head and L.pose_weight > 0

    inp = load_inputs(source, target, val, use_depth=use_depth, expected_size=cfg.model.image_size, need_mask=False,
                      need_quat=pose, val_needs_quat=pose_head, skip_bad=skip_bad, log=log)
    size, class_names, in_channels, info = inp.size, inp.class_names, inp.in_channels, inp.info
    run = open_run(run_dir, KIND, resume, overwrite=overwrite, data=info, log=log, data_keys=inp.RESUME_KEYS,
                   data_hint="give the same --source and --target")
    run_dir = run.path
    (run_dir / "samples").mkdir(exist_ok=True)

    # Models: seeded once, here (f, g, h, D_z, D_x, D_y in that order).
    seed_everything(tc.seed)
    try:
        nets = build_i2i(cfg, len(class_names), in_channels, size)
    except ValueError as e:  # an image size the layers cannot take
        raise Sim2RealError(f"model: {e}") from None
    nets = {k: to_memory_format(m.to(device), speed) for k, m in nets.items()}
    cfg_dict = to_dict(cfg)

    src_t, tgt_t, val_t, storage = inp.banks(use_depth, ("label", "quat"), device, cfg.perf.data_on_device)
    src_t, src_held = src_t.split_holdout(cfg.select.source_val_n, tc.seed)  # for the src_val / dev validators
    rows = min(tc.sample_rows, len(src_t), len(tgt_t))
    pick = lambda n: torch.from_numpy(np.linspace(0, n - 1, rows).round().astype(np.int64))  # noqa: E731
    cpu = torch.device("cpu")
    xs, xt = src_t.batch(pick(len(src_t)), cpu)["x"], tgt_t.batch(pick(len(tgt_t)), cpu)["x"]
    grids = (SampleGrid(xs, xt, 1, 0, tc.seed, batch_stats=False),
             SampleGrid(xt, xs, 1, 0, tc.seed, batch_stats=False))

    method = I2IMethod(cfg, nets, src_t, tgt_t, val_t, len(class_names), speed, grids, run_dir, info)
    if pose and L.symmetric_pose:
        from sim2real.train.pose import symmetry_table

        method.sym_table = symmetry_table(getattr(inp.source, "symmetries", None), L.sym_step_deg, speed.device)
    del inp
    attach_validators(method, cfg.select, tgt_t, src_held, len(class_names), speed, tc.seed, L.pose_eps,
                      method.sym_table, has_disc=False)
    ckpt = Checkpointer(run.checkpoints, KIND, cfg_dict, tc.seed, keep=tc.keep_checkpoints)
    trainer = Trainer(method, run, ckpt, Schedule(tc.steps, tc.log_every, tc.val_every, tc.checkpoint_every, tc.max_loss),
                      tensorboard=tc.tensorboard, desc="adapt i2i", log=log)
    if not trainer.begin(cfg, device, info):
        return {"run_dir": str(run_dir), "step": trainer.step, "metrics": {}, "best_val": trainer.best}
    log(f"i2i: {info['n_source']} source / {info['n_target']} target images {size[0]}x{size[1]}x{in_channels}, "
        f"{len(class_names)} classes, latent {tuple(nets['f'].latent_shape)}; device {speed.describe()}; "
        f"data on {storage.type}")
    if not run.resume:
        write_png(run_dir / "samples" / f"step_{0:07d}.png", method.render_samples())
    res = trainer.fit()
    return {"run_dir": str(run_dir), "step": res["step"], "metrics": res["last_means"], "best_val": res["best_val"]}
