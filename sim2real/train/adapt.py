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

Each step draws a source batch and a target batch from two independent infinite streams
(:func:`~sim2real.train.common.infinite_batches`; no ``zip`` truncation). Resume is exact: a checkpoint
holds the models, optimisers, step and RNG states, and the batch streams are re-seeded and fast-forwarded
to the step. Logging, sample grids and validation never draw from the global RNG.

The run folder layout is documented in ``docs/adapt.md``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sim2real.config import from_dict, load_config, read_yaml, to_dict, dump_yaml
from sim2real.errors import Sim2RealError
from sim2real.losses import d_accuracy, gan_d_loss, gan_g_loss, masked_pmse, quat_log_loss, task_ce
from sim2real.models import Discriminator, Generator, TaskNet
from sim2real.models.factory import build_models, pose_enabled
from sim2real.models.quat_head import pick_quat
from sim2real.train.adapt_config import KIND, RESUMABLE_KEYS, AdaptConfig, diff_keys
from sim2real.train.adapt_data import DomainTensors, choose_storage, load_source, load_target, load_val
from sim2real.train.adapt_samples import SampleGrid, write_png
from sim2real.train.amp import (Speed, autocast, clip_grad_norm_per_param_, configure_backend, make_adam,
                                resolve_speed, to_memory_format)
from sim2real.train.common import (clear_unstarted_run, has_checkpoint, infinite_batches,
                                   load_checkpoint, prepare_run_dir, read_run_info,
                                   resolve_device, rng_state, save_checkpoint, seed_everything, set_rng_state,
                                   write_run_info)
from sim2real.utils import atomic_write_text, progress

DEFAULT_CONFIG = "pixelda-linemod"


# --------------------------------------------------------------------------------------------------------
# one training step


class PixelDAStep:
    """The D(+T) step and the G step of PixelDA, with their optimisers.

    Args:
        G, D, T: the networks (already on ``speed.device``, in training mode).
        cfg: the run config (``loss``, ``optim`` and ``perf`` sections are used).
        speed: resolved speed settings.

    Calling it with a source batch ``{"x", "label", ["quat"], ["mask"]}``, a target batch ``{"x"}`` and the
    step index returns the step's metrics as detached 0-d tensors (no host synchronisation), keys
    ``d/*`` (D step), ``t/*`` (T's losses in the D step) and ``g/*`` (G step).
    """

    def __init__(self, G: Generator, D: Discriminator, T: TaskNet, cfg: AdaptConfig, speed: Speed) -> None:
        self.G, self.D, self.T = G, D, T
        self.loss, self.optim, self.perf = cfg.loss, cfg.optim, cfg.perf
        self.speed = speed
        self.pose = T.has_pose_head and (self.loss.pose_source_weight > 0 or self.loss.pose_adapted_weight > 0)
        o = cfg.optim
        betas = (o.beta1, o.beta2)
        self.opt_d = make_adam([{"params": list(D.parameters())},
                                {"params": list(T.parameters()), "weight_decay": o.task_weight_decay}],
                               o.lr, betas, 0.0, speed)
        self.opt_g = make_adam(G.parameters(), o.lr, betas, 0.0, speed)
        self._dt_params = list(D.parameters()) + list(T.parameters())
        #: (C, S, 4) symmetry rotations per class for the pose loss, or None (set by the trainer from the source file)
        self.sym_table: torch.Tensor | None = None
        self._g_params = list(G.parameters())

    def lr_at(self, step: int) -> float:
        """Staircase decay: ``lr * rate ** (step // decay_steps)`` (official ``exponential_decay(staircase=True)``)."""
        o = self.optim
        return o.lr * o.lr_decay_rate ** (step // o.lr_decay_steps)

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
        if not self.pose:
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

    def __call__(self, src: dict[str, torch.Tensor], tgt: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        L, sp = self.loss, self.speed
        lr = self.lr_at(step)
        for opt in (self.opt_d, self.opt_g):
            for group in opt.param_groups:
                group["lr"] = lr
        xs, xt = src["x"], tgt["x"]
        z = self.G.sample_noise(xs.shape[0], device=xs.device) if self.G.noise_dim > 0 else None
        with autocast(sp):
            fake = self.G(xs, z)
        fake_d = fake.detach()

        # ---- D step: D learns real target vs adapted; T learns the task on source and adapted images.
        if self.perf.freeze_inactive:
            self._set_dt_grad(True)
        with autocast(sp):
            real_logits = self.D(xt)          # separate calls: BN statistics of real and fake not mixed
            fake_logits = self.D(fake_d)
            t_src = self.T(xs, "source")
            t_ad = self.T(fake_d, "adapted")
        d_gan = gan_d_loss(real_logits, fake_logits, L.gan)
        ce_src, pose_src = self.task_terms(t_src, src)
        ce_ad, pose_ad = self.task_terms(t_ad, src)
        d_total = L.d_weight * d_gan + L.task_source_weight * ce_src + L.task_adapted_weight * ce_ad
        if pose_src is not None:
            d_total = d_total + L.pose_source_weight * pose_src + L.pose_adapted_weight * pose_ad
        self.opt_d.zero_grad(set_to_none=True)
        d_total.backward()
        self._clip(self._dt_params)
        self.opt_d.step()

        # ---- G step: fool the updated D, keep content (PMSE), keep T's task working on adapted images.
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
        g_ce = g_pose = None
        if t_g is not None:
            g_ce, g_pose = self.task_terms(t_g, src)
            g_task = L.task_adapted_weight * g_ce
            if g_pose is not None:
                g_task = g_task + L.pose_adapted_weight * g_pose
            g_total = g_total + L.task_in_g_weight * g_task
        self.opt_g.zero_grad(set_to_none=True)
        g_total.backward()
        self._clip(self._g_params)
        self.opt_g.step()
        if self.perf.freeze_inactive:
            self._set_dt_grad(True)

        m: dict[str, torch.Tensor] = {
            "d/total": d_total, "d/gan": d_gan, "d/acc": d_accuracy(real_logits, fake_logits, L.gan),
            "d/real_logit": real_logits.float().mean(), "d/fake_logit": fake_logits.float().mean(),
            "t/ce_source": ce_src, "t/ce_adapted": ce_ad,
            "t/acc_source": (t_src["logits"].argmax(1) == src["label"]).float().mean(),
            "t/acc_adapted": (t_ad["logits"].argmax(1) == src["label"]).float().mean(),
            "g/total": g_total, "g/adv": g_adv,
        }
        if pose_src is not None:
            m["t/pose_source"], m["t/pose_adapted"] = pose_src, pose_ad
        if content is not None:
            m["g/content"] = content
        if g_ce is not None:
            m["g/task_ce"] = g_ce
        if g_pose is not None:
            m["g/task_pose"] = g_pose
        return {k: v.detach().float() for k, v in m.items()}

    def state_dict(self) -> dict[str, Any]:
        return {"G": self.G.state_dict(), "D": self.D.state_dict(), "T": self.T.state_dict(),
                "opt_d": self.opt_d.state_dict(), "opt_g": self.opt_g.state_dict()}

    def load_state_dict(self, state: dict[str, Any], where: str) -> None:
        try:
            self.G.load_state_dict(state["G"])
            self.D.load_state_dict(state["D"])
            self.T.load_state_dict(state["T"])
            self.opt_d.load_state_dict(state["opt_d"])
            self.opt_g.load_state_dict(state["opt_g"])
        except (KeyError, RuntimeError, ValueError) as e:
            raise Sim2RealError(f"{where}: checkpoint does not match this config's models "
                                f"({str(e).splitlines()[0][:160]})") from None


# --------------------------------------------------------------------------------------------------------
# metrics accumulation (no per-step host sync)


class _Meter:
    """Sums and max-abs of the step metrics, kept on the device; :meth:`flush` syncs once."""

    def __init__(self) -> None:
        self.keys: list[str] | None = None
        self.sum: torch.Tensor | None = None
        self.maxabs: torch.Tensor | None = None
        self.count = 0

    def add(self, m: dict[str, torch.Tensor]) -> None:
        if self.keys is None:
            self.keys = list(m)
        v = torch.stack([m[k] for k in self.keys])
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
        mean = (self.sum / self.count).tolist()
        mx = self.maxabs.tolist()
        means = dict(zip(self.keys, mean))
        maxes = dict(zip(self.keys, mx))
        if reset:
            self.sum = self.maxabs = None
            self.count = 0
        return means, maxes


def _check_health(means: dict[str, float], maxes: dict[str, float], step: int, max_loss: float,
                  run_dir: Path, last_saved: int | None) -> None:
    """Stop with a one-line error on a non-finite or diverged loss (the last good checkpoint is kept)."""
    bad = [k for k, v in maxes.items() if not math.isfinite(v)]
    keep = (f"the last good checkpoint is step {last_saved} ({run_dir / 'checkpoints' / 'last.pt'})"
            if last_saved is not None else "no checkpoint had been written")
    if bad:
        raise Sim2RealError(f"{run_dir}: training stopped at step {step}: non-finite {', '.join(bad)}; {keep}. "
                            "Try a lower optim.lr or smaller loss weights")
    big = [k for k, v in maxes.items() if not k.endswith("acc") and "logit" not in k and v > max_loss]
    if big:
        raise Sim2RealError(f"{run_dir}: training stopped at step {step}: loss diverged ({big[0]} reached "
                            f"{maxes[big[0]]:.3g} > train.max_loss={max_loss:g}); {keep}")


# --------------------------------------------------------------------------------------------------------
# evaluation on a labelled target validation set


@torch.no_grad()
def evaluate_task(T: TaskNet, data: DomainTensors, speed: Speed, batch_size: int = 256,
                  symmetries: list | None = None) -> dict[str, float]:
    """T's accuracy and rotation errors on labelled *target* images.

    Keys: ``val/acc``; with poses ``val/angle_deg`` (mean of 2*arccos|q . q_hat|), ``val/angle_sym_deg`` (mean
    symmetry-aware error over the objects' ``symmetries``, :func:`sim2real.symmetry.sym_rotation_error_deg`) and
    ``val/acc30_sym`` (right class and symmetry-aware error < 30 deg). T runs in eval mode with its
    target-private layers (``domain="target"``); the train mode is restored.
    """
    from sim2real.eval.metrics import rotation_error_deg
    from sim2real.symmetry import sym_rotation_error_deg

    was = T.training
    T.eval()
    correct, labels, preds, q_est, q_gt, n = [], [], [], [], [], len(data)
    try:
        for start in range(0, n, batch_size):
            idx = torch.arange(start, min(n, start + batch_size))
            b = data.batch(idx, speed.device, speed.channels_last)
            with autocast(speed):
                out = T(b["x"], "target")
            pred = out["logits"].argmax(1)
            correct.append((pred == b["label"]).cpu())
            labels.append(b["label"].cpu())
            if out["quat"] is not None and "quat" in b:
                q_est.append(out["quat"].float().cpu())
                q_gt.append(b["quat"].float().cpu())
    finally:
        T.train(was)
    ok = torch.cat(correct).numpy()
    res = {"val/acc": float(ok.mean())}
    if q_est:
        qe, qg = torch.cat(q_est).double().numpy(), torch.cat(q_gt).double().numpy()
        plain = rotation_error_deg(qe, qg)
        sym = (sym_rotation_error_deg(qe, qg, symmetries, torch.cat(labels).numpy())
               if symmetries is not None else plain)
        res.update({"val/angle_deg": float(plain.mean()), "val/angle_sym_deg": float(sym.mean()),
                    "val/acc30_sym": float(np.mean(ok & (sym < 30.0)))})
    return res


def _better(new: dict[str, float], best: dict[str, float] | None) -> bool:
    if best is None:
        return True
    if "val/acc30_sym" in new and "val/acc30_sym" in best:  # a pose estimator: right class AND rotation
        if new["val/acc30_sym"] != best["val/acc30_sym"]:
            return new["val/acc30_sym"] > best["val/acc30_sym"]
        return new["val/angle_sym_deg"] < best["val/angle_sym_deg"]
    return new["val/acc"] > best["val/acc"]


# --------------------------------------------------------------------------------------------------------
# config resolution, run folder helpers


def resolve_adapt_config(config: str | None, sets: list[str] | None, run_dir: str | Path, resume: bool) -> AdaptConfig:
    """The config of a fresh run (``config`` or the default preset, plus ``--set``) or of a resumed one.

    On ``--resume`` the run's own ``config.yaml`` is the base; only keys that do not change past steps
    (:data:`~sim2real.train.adapt_config.RESUMABLE_KEYS` and ``perf.*``) may differ.
    """
    stored_path = Path(run_dir) / "config.yaml"
    if not resume or not stored_path.is_file():  # a run killed before it saved its config starts afresh
        return load_config(AdaptConfig, config or DEFAULT_CONFIG, sets)
    stored = from_dict(AdaptConfig, read_yaml(stored_path), str(stored_path))
    new = load_config(AdaptConfig, config or stored_path, sets)
    changed = [k for k in diff_keys(to_dict(stored), to_dict(new)) if k not in RESUMABLE_KEYS and not k.startswith("perf.")]
    if changed:
        raise Sim2RealError(f"{run_dir}: cannot resume with a different {changed[0]} (changeable on resume: "
                            f"{', '.join(RESUMABLE_KEYS)}, perf.*)")
    return new


def _link_or_copy(src: Path, dst: Path) -> None:
    """Make ``dst`` the same file as ``src`` atomically (hard link; a copy where links are unsupported)."""
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metrics.jsonl lines after ``step`` (steps an interrupted run logged past its last checkpoint)."""
    if not path.is_file():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= step:
                keep.append(line)
        except ValueError:
            continue
    atomic_write_text(path, "".join(k + "\n" for k in keep))


def _stream_seed(seed: int, stream: int) -> int:
    return (int(seed) * 1_000_003 + 7919 * stream) % (2**63 - 1)


def batch_streams(n_src: int, n_tgt: int, batch_size: int, seed: int, start: int = 0):
    """Independent infinite index streams for source and target, positioned at step ``start``."""
    streams = []
    for k, n in ((1, n_src), (2, n_tgt)):
        g = torch.Generator().manual_seed(_stream_seed(seed, k))
        it = infinite_batches(n, batch_size, g)
        for _ in range(start):
            next(it)
        streams.append(it)
    return streams[0], streams[1]


# --------------------------------------------------------------------------------------------------------
# the training loop


def train_adapt(cfg: AdaptConfig, source: str | Path, target: str | Path, run_dir: str | Path, resume: bool = False,
                val: str | Path | None = None, log=print, skip_bad: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Train PixelDA and write the run folder (see ``docs/adapt.md``).

    Args:
        cfg: resolved config (:func:`resolve_adapt_config`).
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

    Returns:
        ``{"run_dir", "step", "metrics" (last logged means), "best_val"}``.
    """
    run_dir = Path(run_dir)
    restart = resume and not has_checkpoint(run_dir)
    if restart:
        resume = False
    device = resolve_device(cfg.perf.device)
    speed = resolve_speed(device, cfg.perf.amp, cfg.perf.channels_last, cfg.perf.foreach)
    configure_backend(speed)
    tc, L = cfg.train, cfg.loss
    use_depth = cfg.model.use_depth
    pose = pose_enabled(cfg) and (L.pose_source_weight > 0 or L.pose_adapted_weight > 0)
    need_mask = L.content == "masked_pmse" and L.content_weight > 0

    src_data = load_source(source, use_depth, need_mask=need_mask, need_quat=pose)
    size = src_data.image_size
    if cfg.model.image_size is not None and tuple(cfg.model.image_size) != tuple(size):
        raise Sim2RealError(f"{source}: images are {size[0]}x{size[1]}, the config expects "
                            f"{cfg.model.image_size[0]}x{cfg.model.image_size[1]} (size mismatch; "
                            f"--set model.image_size=null accepts any size)")
    tgt_data = load_target(target, size, use_depth, skip_bad=skip_bad)
    if tgt_data.attrs.get("skipped"):
        log(f"{target}: {tgt_data.attrs.get('skipped_summary', '')}")
    if tgt_data.attrs.get("resized"):
        log(f"{target}: {tgt_data.attrs['resized_summary']}")
    class_names = list(src_data.class_names)
    val_data = load_val(val, size, use_depth, class_names, need_quat=pose_enabled(cfg)) if val is not None else None
    in_channels = 4 if use_depth else 3
    info = {"class_names": class_names, "num_classes": len(class_names), "image_size": list(size),
            "use_depth": use_depth, "in_channels": in_channels, "source": str(source), "target": str(target),
            "val": str(val) if val is not None else None, "n_source": len(src_data), "n_target": len(tgt_data),
            "skip_bad": skip_bad}

    if resume:
        old = read_run_info(run_dir)
        if old.get("kind") != KIND:
            raise Sim2RealError(f"{run_dir}: is a {old.get('kind')!r} run, expected a {KIND!r} run")
        for key in ("class_names", "image_size", "use_depth", "n_source", "n_target"):
            if key in old and old[key] != info[key]:
                raise Sim2RealError(f"{run_dir}: cannot resume with different data: {key} was {old[key]}, now {info[key]} "
                                    "(give the same --source and --target)")
    if restart:
        log(f"{run_dir}: no checkpoint to resume yet (the run stopped before its first); starting from step 0")
        clear_unstarted_run(run_dir)
    prepare_run_dir(run_dir, resume, overwrite=overwrite)
    ckpt_dir = run_dir / "checkpoints"
    (ckpt_dir).mkdir(exist_ok=True)
    (run_dir / "samples").mkdir(exist_ok=True)

    # Models and optimisers: seeded once, here.
    seed = tc.seed
    seed_everything(seed)
    G, D, T = build_models(cfg, len(class_names), in_channels, size)
    G, D, T = (to_memory_format(m.to(device), speed) for m in (G, D, T))
    stepper = PixelDAStep(G, D, T, cfg, speed)
    if pose and cfg.loss.symmetric_pose:
        from sim2real.train.pose import symmetry_table

        stepper.sym_table = symmetry_table(getattr(src_data, "symmetries", None), cfg.loss.sym_step_deg, speed.device)
    cfg_dict = to_dict(cfg)

    keep = ("mask", "label", "quat")
    src_t = DomainTensors.from_h5(src_data, use_depth, keep=keep if need_mask else ("label", "quat"))
    tgt_t = DomainTensors.from_h5(tgt_data, use_depth, keep=())
    val_t = DomainTensors.from_h5(val_data, use_depth, keep=("label", "quat")) if val_data is not None else None
    # the objects' symmetries, for the symmetry-aware val error (from the val file, else the source's)
    val_symmetries = next((d.symmetries for d in (val_data, src_data) if getattr(d, "symmetries", None) is not None), None)
    total_bytes = src_t.nbytes() + tgt_t.nbytes() + (val_t.nbytes() if val_t is not None else 0)
    storage = choose_storage(device, total_bytes, cfg.perf.data_on_device)
    src_t, tgt_t = src_t.to(storage), tgt_t.to(storage)
    if val_t is not None:
        val_t = val_t.to(storage)
    del src_data, tgt_data, val_data

    start, last_saved, best = 0, None, None
    if resume:
        blob = load_checkpoint(ckpt_dir / "last.pt", KIND, map_location=device)
        stepper.load_state_dict(blob["state"], str(ckpt_dir / "last.pt"))
        start = last_saved = int(blob["step"])
        best = blob.get("extra", {}).get("best_val")
        set_rng_state(blob["state"]["rng"])
        _truncate_metrics(run_dir / "metrics.jsonl", start)
        dump_yaml(cfg, run_dir / "config.yaml")  # e.g. a longer train.steps, for the next --resume
        if start >= tc.steps:
            log(f"{run_dir}: already at step {start} of train.steps={tc.steps}; nothing to do "
                "(--set train.steps=N to train longer)")
            return {"run_dir": str(run_dir), "step": start, "metrics": {}, "best_val": best}
        log(f"resuming {run_dir} at step {start} of {tc.steps}")
    else:
        write_run_info(run_dir, KIND, cfg_dict, seed, device, extra=info)
        dump_yaml(cfg, run_dir / "config.yaml")
    log(f"pixelda: {info['n_source']} source / {info['n_target']} target images {size[0]}x{size[1]}x{in_channels}, "
        f"{len(class_names)} classes; device {speed.describe()}; data on {storage.type}")

    src_stream, tgt_stream = batch_streams(len(src_t), len(tgt_t), tc.batch_size, seed, start)
    rows = min(tc.sample_rows, len(src_t))
    pick = lambda n, r: torch.from_numpy(np.linspace(0, n - 1, r).round().astype(np.int64))  # noqa: E731
    grid = SampleGrid(src_t.batch(pick(len(src_t), rows), torch.device("cpu"))["x"],
                      tgt_t.batch(pick(len(tgt_t), min(rows, len(tgt_t))), torch.device("cpu"))["x"],
                      tc.sample_draws, cfg.model.generator.noise_dim, seed)

    from torch.utils.tensorboard import SummaryWriter

    writer = SummaryWriter(str(run_dir / "tb"), purge_step=start if resume else None)
    metrics_path = run_dir / "metrics.jsonl"
    meter = _Meter()
    last_means: dict[str, float] = {}

    def save(step: int) -> None:
        nonlocal last_saved
        state = stepper.state_dict()
        state["rng"] = rng_state()
        path = ckpt_dir / f"step_{step:07d}.pt"
        save_checkpoint(path, KIND, step, state, cfg_dict, seed, extra={**info, "best_val": best})
        _link_or_copy(path, ckpt_dir / "last.pt")
        last_saved = step
        if tc.keep_checkpoints > 0:
            numbered = sorted(ckpt_dir.glob("step_*.pt"))
            for old in numbered[:-tc.keep_checkpoints]:
                with contextlib.suppress(OSError):
                    old.unlink()

    def check(step: int, reset: bool = True) -> dict[str, float]:
        means, maxes = meter.flush(reset)
        _check_health(means, maxes, step, tc.max_loss, run_dir, last_saved)
        return means

    if not resume:
        write_png(run_dir / "samples" / f"step_{0:07d}.png", grid.render(G, speed))

    bar = progress(total=tc.steps, initial=start, desc="adapt", unit="step")
    t0, s0 = time.perf_counter(), start
    try:
        with _DeferInterrupt() as interrupt:
            for step in range(start + 1, tc.steps + 1):
                sb = src_t.batch(next(src_stream), device, speed.channels_last)
                tb = tgt_t.batch(next(tgt_stream), device, speed.channels_last)
                meter.add(stepper(sb, tb, step - 1))
                bar.update(1)
                record: dict[str, Any] = {}
                if step % tc.log_every == 0 or step == tc.steps:
                    means = check(step)
                    now = time.perf_counter()
                    rate = (step - s0) / max(now - t0, 1e-9)
                    t0, s0 = now, step
                    last_means = means
                    record.update(means)
                    record["lr"] = stepper.lr_at(step - 1)
                    record["steps_per_s"] = rate
                    bar.set_postfix({"D": f"{means.get('d/total', 0):.3f}", "G": f"{means.get('g/total', 0):.3f}",
                                     "Dacc": f"{means.get('d/acc', 0):.2f}"}, refresh=False)
                if val_t is not None and (step % tc.val_every == 0 or step == tc.steps):
                    res = evaluate_task(T, val_t, speed, symmetries=val_symmetries)
                    record.update(res)
                    if _better(res, best):
                        best = {**res, "step": step}
                        state = stepper.state_dict()
                        state["rng"] = rng_state()
                        save_checkpoint(ckpt_dir / "best.pt", KIND, step, state, cfg_dict, seed,
                                        extra={**info, "best_val": best})
                if record:
                    for k, v in record.items():
                        writer.add_scalar(k, v, step)
                    with open(metrics_path, "a") as f:
                        f.write(json.dumps({"step": step, **record}, sort_keys=True) + "\n")
                if step % tc.sample_every == 0 or step == tc.steps:
                    write_png(run_dir / "samples" / f"step_{step:07d}.png", grid.render(G, speed))
                if step % tc.checkpoint_every == 0 or step == tc.steps or interrupt.requested:
                    check(step, reset=False)
                    save(step)
                if interrupt.requested:
                    log(f"interrupted: checkpoint written at step {step}")
                    raise KeyboardInterrupt
    finally:
        bar.close()
        writer.close()
    return {"run_dir": str(run_dir), "step": tc.steps, "metrics": last_means, "best_val": best}


class _DeferInterrupt:
    """Turn the first Ctrl-C / SIGTERM into a flag checked between steps, so the step in flight completes
    and a consistent checkpoint is written; a second Ctrl-C interrupts at once."""

    def __init__(self) -> None:
        self.requested = False
        self._old: dict[int, Any] = {}

    def _handler(self, signum, frame) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True

    def __enter__(self) -> "_DeferInterrupt":
        import signal
        import threading

        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handler)
        return self

    def __exit__(self, *exc) -> None:
        import signal

        for sig, old in self._old.items():
            signal.signal(sig, old)
