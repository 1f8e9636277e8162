"""Label-free model selection: scores of a checkpoint that need no target labels (``adapt --select NAME``).

The honest user has renders with labels and camera images without: a labelled target validation set (what
``best.pt`` is chosen on by default, the "oracle") is exactly what they lack. These validators score a task network
from what they do have (after pytorch-adapt's validators and Musgrave, Belongie & Lim, "Three New Validators and a
Large-Scale Benchmark Ranking for Unsupervised Domain Adaptation", 2021):

* ``src_val`` — accuracy (with poses: the share with the right class and a symmetry-aware rotation error below 30
  degrees) on **held-out labelled renders** (``select.source_val_n`` of them, withheld from training). Higher is
  better. Blind to the domain gap, but never misled by confident mistakes.
* ``entropy`` — mean prediction entropy on target images (nats); lower is better (confident on the target).
* ``im`` — information maximisation: ``H(mean_i p_i) - mean_i H(p_i)`` on target images: confident *and* diverse
  (a network that calls everything one class scores low). Higher is better.
* ``dev`` — Deep Embedded Validation (You et al., ICML 2019): the held-out source task loss (cross-entropy plus the
  pose loss with poses) importance-weighted by ``w(x) = p(target | f(x)) / p(source | f(x)) * n_s / n_t`` from a
  logistic-regression domain classifier on T's features, with DEV's control variate:
  ``mean(w l) + eta * mean(w) - eta``, ``eta = -cov(w l, w) / var(w)``. Lower is better. Rotation enters through
  the pose loss.
* ``disc`` — the method's own domain discriminator (PixelDA's D on real target vs G(source); DANN's domain
  classifier on features): its accuracy at telling the domains apart, lower (towards 0.5) is better.

Scores are logged with the ``val`` rows of ``metrics.jsonl`` under ``v/<name>`` (``v/src_acc`` and, with poses,
``v/src_acc30_sym`` for ``src_val``). :func:`selection_table` reads those rows back and gives, per validator, the
checkpoint it would pick and that checkpoint's *oracle* numbers next to the oracle's own pick and the last
checkpoint: what each validator costs, measured where labels exist.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from sim2real.engine.selection import SELECT_CHOICES, VALIDATORS, SelectConfig  # noqa: F401 (re-exported)
from sim2real.errors import Sim2RealError

# --------------------------------------------------------------------------------------------
# The scores (pure functions: tested against hand computations)
# --------------------------------------------------------------------------------------------


def entropy_score(logits: torch.Tensor) -> float:
    """Mean over samples of the prediction entropy ``-sum_c p_c log p_c`` (nats)."""
    logp = F.log_softmax(logits.double(), dim=1)
    return float(-(logp.exp() * logp).sum(1).mean())


def im_score(logits: torch.Tensor) -> float:
    """Information maximisation: entropy of the mean prediction minus the mean prediction entropy (nats)."""
    logp = F.log_softmax(logits.double(), dim=1)
    p = logp.exp()
    mean_p = p.mean(0)
    h_mean = -(mean_p * torch.log(mean_p.clamp_min(1e-300))).sum()
    return float(h_mean - (-(p * logp).sum(1).mean()))


def domain_probabilities(f_source: torch.Tensor, f_target: torch.Tensor, l2: float = 1e-3, iters: int = 100) -> torch.Tensor:
    """``p(target | f)`` for each source feature row, from an L2-regularised logistic regression (LBFGS, float64)
    fitted on ``f_source`` (label 0) against ``f_target`` (label 1), features standardised on their union."""
    x = torch.cat([f_source, f_target]).double()
    mu, sd = x.mean(0), x.std(0).clamp_min(1e-8)
    x = (x - mu) / sd
    y = torch.cat([torch.zeros(len(f_source)), torch.ones(len(f_target))]).double()
    w = torch.zeros(x.shape[1], dtype=torch.float64, requires_grad=True)
    b = torch.zeros((), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], max_iter=iters, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(x @ w + b, y) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        return torch.sigmoid(x[: len(f_source)] @ w + b)


def dev_score(losses: torch.Tensor, p_target: torch.Tensor, n_source: int, n_target: int) -> float:
    """Deep Embedded Validation risk (You et al. 2019, Algorithm 1) of per-sample held-out source ``losses``.

    ``w = p / (1 - p) * n_s / n_t``; ``DEV = mean(w l) + eta * mean(w) - eta`` with ``eta = -cov(w l, w) / var(w)``
    (the control variate; ``eta = 0`` when the weights are constant).
    """
    p = p_target.double().clamp(1e-6, 1 - 1e-6)
    w = p / (1 - p) * (n_source / n_target)
    wl = w * losses.double()
    var = w.var(unbiased=True) if len(w) > 1 else torch.zeros((), dtype=torch.float64)
    if float(var) < 1e-12:
        eta = 0.0
    else:
        cov = ((wl - wl.mean()) * (w - w.mean())).sum() / (len(w) - 1)
        eta = float(-cov / var)
    return float(wl.mean() + eta * w.mean() - eta)


# --------------------------------------------------------------------------------------------
# Running them on a task network
# --------------------------------------------------------------------------------------------


class LabelFree:
    """The label-free validators of one run: fixed target and (optionally) held-out source banks.

    Args:
        cfg: the run's :class:`SelectConfig`.
        target: the unlabelled target bank; ``select.target_n`` of its images (a draw fixed by ``seed``) are scored.
        source_val: held-out labelled renders (or None).
        num_classes: C.
        speed: the run's speed settings.
        pose_eps: the pose loss's eps (DEV's per-sample loss).
        sym_table: ``(C, S, 4)`` symmetry rotations for the pose loss, or None.
    """

    def __init__(self, cfg: SelectConfig, target, source_val, num_classes: int, speed, seed: int,
                 pose_eps: float = 1e-4, sym_table: torch.Tensor | None = None) -> None:
        self.cfg, self.source_val, self.num_classes, self.speed = cfg, source_val, num_classes, speed
        self.pose_eps, self.sym_table = pose_eps, sym_table
        g = torch.Generator().manual_seed(int(seed) * 7919 + 17)
        n = min(cfg.target_n, len(target))
        self.target_idx = torch.randperm(len(target), generator=g)[:n].sort().values
        self.target = target

    def available(self, has_disc: bool) -> list[str]:
        """The validators this run can compute."""
        out = ["entropy", "im"]
        if self.source_val is not None:
            out += ["src_val", "dev"]
        if has_disc:
            out.append("disc")
        return out

    @torch.no_grad()
    def _outputs(self, net, bank, idx: torch.Tensor, domain: str) -> dict[str, torch.Tensor]:
        from sim2real.engine.amp import autocast

        logits, feats, quats = [], [], []
        for start in range(0, len(idx), 256):
            x = bank.images(idx[start:start + 256], self.speed.device, self.speed.channels_last)
            with autocast(self.speed):
                out = net(x, domain, return_features=True)
            logits.append(out["logits"].float().cpu())
            feats.append(out["features"].float().cpu())
            if out.get("quat_all") is not None:
                quats.append(out["quat_all"].float().cpu())
        return {"logits": torch.cat(logits), "features": torch.cat(feats),
                "quat_all": torch.cat(quats) if quats else None}

    def scores(self, net: torch.nn.Module, disc_accuracy=None) -> dict[str, float]:
        """Every available score of task network ``net`` (eval mode for the pass), as ``v/*`` keys.

        ``disc_accuracy``: a callable returning the method's discriminator accuracy (None: no ``disc``).
        """
        from sim2real.engine.validate import score
        from sim2real.losses import quat_log_loss

        def pick_quat(quat_all: torch.Tensor, label: torch.Tensor) -> torch.Tensor:  # the per-class head's layout
            return quat_all[:, 0] if quat_all.shape[1] == 1 else quat_all[torch.arange(len(label)), label]

        was = net.training
        net.eval()
        try:
            tgt = self._outputs(net, self.target, self.target_idx, "target")
            res = {"v/entropy": entropy_score(tgt["logits"]), "v/im": im_score(tgt["logits"])}
            sv = self.source_val
            if sv is not None:
                idx = torch.arange(len(sv))
                src = self._outputs(net, sv, idx, "source")
                label = sv.label.cpu()
                pred = src["logits"].argmax(1).numpy()
                quat_pred = None
                if src["quat_all"] is not None:
                    qp = pick_quat(src["quat_all"], src["logits"].argmax(1))
                    quat_pred = qp.double().numpy()
                m = score(sv, pred, quat_pred, self.num_classes)
                res["v/src_acc"] = m["accuracy"]
                if "acc30_sym" in m:
                    res["v/src_acc30_sym"] = m["acc30_sym"]
                losses = F.cross_entropy(src["logits"].double(), label, reduction="none")
                if src["quat_all"] is not None and sv.quat is not None:
                    sym = self.sym_table.cpu()[label] if self.sym_table is not None else None
                    losses = losses + quat_log_loss(pick_quat(src["quat_all"], label), sv.quat.cpu().float(),
                                                    self.pose_eps, reduction="none", sym_quats=sym).double()
                p_t = domain_probabilities(src["features"], tgt["features"])
                res["v/dev"] = dev_score(losses, p_t, len(sv), len(self.target_idx))
            if disc_accuracy is not None:
                res["v/disc"] = float(disc_accuracy())
        finally:
            net.train(was)
        return {k: v for k, v in res.items() if math.isfinite(v)}


def attach_validators(method, sel: SelectConfig, target, source_val, num_classes: int, speed, seed: int,
                      pose_eps: float, sym_table, has_disc: bool) -> None:
    """Give an adaptation ``method`` the label-free validators its ``select`` section asks for (``method.label_free``,
    whose ``validate()`` then adds their scores) and the ``select_by`` order its ``best.pt`` follows."""
    if not sel.active:
        return
    lf = LabelFree(sel, target, source_val, num_classes, speed, seed, pose_eps=pose_eps, sym_table=sym_table)
    method.label_free = lf
    method.select_by = select_by(sel, method.select_by, lf.available(has_disc))


def select_by(cfg: SelectConfig, oracle: Sequence[tuple[str, bool]], available: Sequence[str]) -> tuple:
    """The ``(key, higher_is_better)`` order ``best.pt`` is chosen by; a validator this run lacks is a one-line error."""
    if cfg.by == "oracle":
        return tuple(oracle)
    if cfg.by not in available:
        raise Sim2RealError(f"--select {cfg.by}: not available for this run (available: oracle, {', '.join(available)})")
    return VALIDATORS[cfg.by]


def selection_table(rows: Sequence[dict[str, Any]], oracle: Sequence[tuple[str, bool]]) -> dict[str, Any]:
    """Per validator logged in ``rows`` (the ``val`` rows of ``metrics.jsonl``): the step it picks and that step's
    oracle metrics, next to the oracle's own pick and the last validation.

    Returns:
        ``{"oracle": {"step", metrics...} or None, "last": {...}, "validators": {name: {"step", metrics...}}}``;
        the metrics are the oracle keys present (``accuracy``, ``acc30_sym``, ``median_angle_sym_deg``, ...).
    """
    from sim2real.engine.validate import better

    rows = [r for r in rows if r.get("split") == "val"]
    keep = ("accuracy", "acc30_sym", "median_angle_sym_deg", "mean_angle_sym_deg")

    def pick(order) -> dict | None:
        best = None
        for r in rows:
            if all(k in r for k, _ in order[:1]) and better(r, best, order):
                best = r
        return None if best is None else {"step": best["step"], **{k: best[k] for k in keep if k in best},
                                          **{k: best[k] for k, _ in order if k in best}}

    have_oracle = any("accuracy" in r for r in rows)
    out: dict[str, Any] = {"oracle": pick(tuple(oracle)) if have_oracle else None,
                           "last": None, "validators": {}}
    if rows:
        last = rows[-1]
        out["last"] = {"step": last["step"], **{k: last[k] for k in keep if k in last}}
    for name, order in VALIDATORS.items():
        if any(order[0][0] in r for r in rows):
            out["validators"][name] = pick(order)
    return out
