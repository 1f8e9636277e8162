"""One PixelDA training step as two optimiser updates (D+T, then G), for the engine to apply.

D step (updates D and T): ``d_weight * L_gan(D(x_t), D(G(x_s, z)))`` + T's task losses on the source images
``T(x_s, "source")`` and on the adapted images ``T(G(x_s, z), "adapted")`` (cross-entropy, plus the quaternion
pose loss for LineMod; either input photometrically augmented when ``task_augment`` lists its domain). G step
(updates G): ``g_adv_weight * L_gan(D(G(x_s, z)))`` (non-saturating) ``+
content_weight * PMSE(G(x_s, z), x_s; mask) + task_in_g_weight *`` T's task loss on ``G(x_s, z)``; terms that do
not depend on G are left out of it (their gradient w.r.t. G is zero). The G step runs after the D update, so it
fools the updated D (official ``pixelda_train.py``: one D step, one G step).
"""

from __future__ import annotations

from typing import Any, Generator as Gen

import torch

from sim2real.adapt.pixelda.config import PixelDAConfig
from sim2real.engine.amp import Speed, autocast, clip_grad_norm_per_param_, make_adam
from sim2real.engine.loop import Update, apply_updates, scale_lr
from sim2real.engine.schedule import lr_factor
from sim2real.losses import d_accuracy, gan_d_loss, gan_g_loss, masked_pmse, quat_log_loss, task_ce
from sim2real.models import Discriminator, Generator, TaskNet
from sim2real.models.quat_head import pick_quat
from sim2real.train.augment import PhotometricAugment, TaskInputAugment


class PixelDAStep:
    """The D(+T) update and the G update of PixelDA, with their optimisers.

    Args:
        G, D, T: the networks (already on ``speed.device``, in training mode).
        cfg: the run config (``loss``, ``optim`` and ``perf`` sections are used).
        speed: resolved speed settings.

    :meth:`updates` is the step as the engine runs it (a generator of :class:`~sim2real.engine.loop.Update`);
    calling the object applies one whole step itself and returns its metrics as detached 0-d tensors (no host
    synchronisation): keys ``d/*`` (D update), ``t/*`` (T's losses in the D update) and ``g/*`` (G update).
    """

    def __init__(self, G: Generator, D: Discriminator, T: TaskNet, cfg: PixelDAConfig, speed: Speed) -> None:
        self.G, self.D, self.T = G, D, T
        self.loss, self.optim, self.perf = cfg.loss, cfg.optim, cfg.perf
        self.horizon = cfg.train.steps
        self.speed = speed
        self.pose = T.has_pose_head and (self.loss.pose_source_weight > 0 or self.loss.pose_adapted_weight > 0)
        o = cfg.optim
        betas = (o.beta1, o.beta2)
        t_group = {"params": list(T.parameters()), "weight_decay": o.task_weight_decay,
                   "lr": o.lr if o.task_lr is None else o.task_lr,
                   "betas": (o.beta1 if o.task_beta1 is None else o.task_beta1, o.beta2)}
        self.opt_d = make_adam([{"params": list(D.parameters())}, t_group], o.lr, betas, 0.0, speed)
        self.opt_g = make_adam(G.parameters(), o.lr, betas, 0.0, speed)
        self.optimizers = {"opt_d": self.opt_d, "opt_g": self.opt_g}
        self._dt_params = list(D.parameters()) + list(T.parameters())
        #: (C, S, 4) symmetry rotations per class for the pose loss, or None (set by the trainer from the source file)
        self.sym_table: torch.Tensor | None = None
        self._g_params = list(G.parameters())
        #: T's inputs in the D(+T) update, augmented per ``task_augment`` (G's and D's inputs never are)
        self.task_input = TaskInputAugment(cfg.task_augment, speed.device)
        #: self-training on the target images (``self_train``): the teacher (the averaged T, set by the method)
        #: and the student's augmentation of its input
        self.self_train = st = cfg.self_train
        self.teacher: torch.nn.Module | None = None
        self.student_augment = PhotometricAugment(st.augment).to(speed.device) \
            if st.weight > 0 and st.augment.enabled else None

    def pseudo_label_term(self, xt: torch.Tensor) -> dict[str, torch.Tensor]:
        """T's self-training loss on the target batch ``xt`` (``self_train``): the teacher's confident argmax
        labels on the plain images, cross-entropy of T on the augmented ones, averaged over the whole batch
        (unconfident images count as 0). Returns ``t/pseudo_ce`` (the term, unweighted) and ``t/pseudo_frac``
        (the confident fraction)."""
        if self.teacher is None:
            raise RuntimeError("PixelDAStep: self_train.weight > 0 needs a teacher (the averaged T)")
        sp = self.speed
        with torch.no_grad(), autocast(sp):
            probs = torch.softmax(self.teacher(xt, "target")["logits"].float(), dim=1)
        conf, pseudo = probs.max(dim=1)
        keep = (conf >= self.self_train.threshold).float()
        x_in = xt
        if self.student_augment is not None:
            with torch.no_grad():
                x_in = self.student_augment(xt)
        with autocast(sp):
            logits = self.T(x_in, "target")["logits"]
        ce = task_ce(logits, pseudo, reduction="none")
        return {"t/pseudo_ce": (keep * ce).mean(), "t/pseudo_frac": keep.mean()}

    def lr_factor(self, step: int) -> float:
        """``optim.lr_schedule`` at 0-based ``step``: the official staircase ``rate ** (step // decay_steps)`` (TF
        ``exponential_decay(staircase=True)``) or cosine over ``train.steps`` (:mod:`sim2real.engine.schedule`)."""
        o = self.optim
        return lr_factor(o.lr_schedule, step, self.horizon, o.lr_decay_rate, o.lr_decay_steps)

    def _clip(self, params: list[torch.nn.Parameter]) -> None:
        c = self.optim.clip_grad_norm
        if c <= 0:
            return
        if self.optim.clip_mode == "per_param":
            clip_grad_norm_per_param_(params, c, foreach=self.speed.foreach)
        else:
            torch.nn.utils.clip_grad_norm_(params, c, foreach=self.speed.foreach)

    def _set_dt_grad(self, flag: bool) -> None:
        for p in self._dt_params:
            p.requires_grad_(flag)

    def task_terms(self, out: dict[str, torch.Tensor | None], src: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """(cross-entropy, pose loss or None) of T's output against the source labels.

        The pose term reads the quaternion of the true class (per-class head) and is symmetry-aware when
        ``self.sym_table`` ``(C, S, 4)`` is set (see :func:`sim2real.losses.quat_log_loss`).
        """
        ce = task_ce(out["logits"], src["label"])
        if not self.pose or src.get("quat") is None:
            return ce, None
        sym = self.sym_table[src["label"]] if self.sym_table is not None else None
        pose = quat_log_loss(pick_quat(out["quat_all"], src["label"]), src["quat"], self.loss.pose_eps, sym_quats=sym)
        return ce, pose

    def content_term(self, fake: torch.Tensor, src: dict[str, torch.Tensor]) -> torch.Tensor | None:
        L = self.loss
        if L.content == "none" or L.content_weight == 0:
            return None
        mask = src["mask"] if L.content == "masked_pmse" else None
        return masked_pmse(fake, src["x"], mask, variant=L.pmse_variant)

    def updates(self, src: dict[str, torch.Tensor], tgt: dict[str, torch.Tensor],
                labelled: dict[str, torch.Tensor] | None = None) -> Gen[Update, None, dict[str, torch.Tensor]]:
        """The step: yields the D(+T) update, then (after it is applied) the G update; returns the other metrics.

        ``labelled``: a batch of labelled target images (``adapt --target-labelled``): T also learns the task on
        them in the D update (``task_target_weight`` / ``pose_target_weight``), through its target branch.
        """
        L, sp = self.loss, self.speed
        xs, xt = src["x"], tgt["x"]
        z = self.G.sample_noise(xs.shape[0], device=xs.device) if self.G.noise_dim > 0 else None
        with autocast(sp):
            fake = self.G(xs, z)
        fake_d = fake.detach()

        # ---- D update: D learns real target vs adapted; T learns the task on source and adapted images.
        if self.perf.freeze_inactive:
            self._set_dt_grad(True)
        with autocast(sp):
            real_logits = self.D(xt)          # separate calls: BN statistics of real and fake not mixed
            fake_logits = self.D(fake_d)
            t_src = self.T(self.task_input(xs, "source"), "source")
            t_ad = self.T(self.task_input(fake_d, "adapted"), "adapted")
        d_gan = gan_d_loss(real_logits, fake_logits, L.gan)
        ce_src, pose_src = self.task_terms(t_src, src)
        ce_ad, pose_ad = self.task_terms(t_ad, src)
        d_total = L.d_weight * d_gan + L.task_source_weight * ce_src + L.task_adapted_weight * ce_ad
        if pose_src is not None:
            d_total = d_total + L.pose_source_weight * pose_src + L.pose_adapted_weight * pose_ad
        d_logged = {"d/gan": d_gan, "t/ce_source": ce_src, "t/ce_adapted": ce_ad}
        if pose_src is not None:
            d_logged["t/pose_source"], d_logged["t/pose_adapted"] = pose_src, pose_ad
        if labelled is not None:
            with autocast(sp):
                t_tl = self.T(labelled["x"], "target")
            ce_tl, pose_tl = self.task_terms(t_tl, labelled)
            d_total = d_total + L.task_target_weight * ce_tl
            d_logged["t/ce_target"] = ce_tl
            if pose_tl is not None and "quat" in labelled:
                d_total = d_total + L.pose_target_weight * pose_tl
                d_logged["t/pose_target"] = pose_tl
        if self.self_train.weight > 0:
            pseudo = self.pseudo_label_term(xt)
            d_total = d_total + self.self_train.weight * pseudo["t/pseudo_ce"]
            d_logged.update(pseudo)
        d_logged = {"d/total": d_total, **d_logged}
        yield Update("opt_d", d_total, d_logged, params=self._dt_params, clip=self._clip)

        # ---- G update: fool the updated D, keep content (PMSE), keep T's task working on adapted images.
        if self.perf.freeze_inactive:
            self._set_dt_grad(False)
        if not self.perf.reuse_fake:
            with autocast(sp):
                fake = self.G(xs, z)
        with autocast(sp):
            g_logits = self.D(fake)
            t_g = self.T(fake, "adapted") if L.task_in_g_weight > 0 else None
        g_adv = gan_g_loss(g_logits, L.gan)
        g_total = L.g_adv_weight * g_adv
        content = self.content_term(fake, src)
        if content is not None:
            g_total = g_total + L.content_weight * content
        g_logged = {"g/adv": g_adv}
        if t_g is not None:
            g_ce, g_pose = self.task_terms(t_g, src)
            g_task = L.task_adapted_weight * g_ce
            g_logged["g/task_ce"] = g_ce
            if g_pose is not None:
                g_task = g_task + L.pose_adapted_weight * g_pose
                g_logged["g/task_pose"] = g_pose
            g_total = g_total + L.task_in_g_weight * g_task
        if content is not None:
            g_logged["g/content"] = content
        g_logged["g/total"] = g_total
        try:
            yield Update("opt_g", g_total, g_logged, params=self._g_params, clip=self._clip)
        finally:
            if self.perf.freeze_inactive:
                self._set_dt_grad(True)
        return {"d/acc": d_accuracy(real_logits, fake_logits, L.gan),
                "d/real_logit": real_logits.float().mean(), "d/fake_logit": fake_logits.float().mean(),
                "t/acc_source": (t_src["logits"].argmax(1) == src["label"]).float().mean(),
                "t/acc_adapted": (t_ad["logits"].argmax(1) == src["label"]).float().mean()}

    def __call__(self, src: dict[str, torch.Tensor], tgt: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        """Apply one whole step (learning rate of ``step``) outside the engine; returns its metrics."""
        scale_lr((self.opt_d, self.opt_g), self.lr_factor(step))  # each group's own rate (T's may differ)
        return apply_updates(self.updates(src, tgt), self.optimizers)

    def state_dict(self) -> dict[str, Any]:
        return {"G": self.G.state_dict(), "D": self.D.state_dict(), "T": self.T.state_dict(),
                "opt_d": self.opt_d.state_dict(), "opt_g": self.opt_g.state_dict()}
