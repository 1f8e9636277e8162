"""``sim2real train-pose``: train a class + unit-quaternion network on labelled HDF5 data.

What the training data is decides what the run measures (the run records it as ``role`` in ``run.json``):

* renders (domain ``source``): the *source-only* baseline;
* PixelDA-adapted renders (domain ``adapted``, from ``sim2real export``): *adapted*;
* labelled target images (domain ``target``): the *target-only* upper bound;
* adapted + a few labelled target images: *semi-supervised* (use ``mix: balanced`` so the few target
  images are not drowned: each batch then draws equally from every ``--train`` file).

Loss (PixelDA, Bousmalis et al. 2017, Sec. 4.3; official code's ``log(1e-4 + 1 - |q.q_hat|)``)::

    L = CE(logits, label) + pose_weight * mean_i min_k log(eps + 1 - |(q_i S_k) . q_hat_i[label_i]|)

``q_hat_i[label_i]`` is the true class's quaternion of the per-class head (the predicted class's at test time);
``S_k`` runs over the object's symmetry group (identity only for asymmetric objects; ``loss.symmetric_pose``).
The pose term is averaged over the samples of the batch that have a quaternion label (files without ``quat``,
e.g. digits, train the classifier only). It is sign-invariant (q == -q) and minimal (log eps) at a perfect pose.
The defaults (per-class head, no tanh, no dropout, pose_weight (xi) = 1, batch 64, cosine schedule) are the measured best;
the official PixelDA head and weights are ``pose-small-official`` (``docs/train-pose.md`` has the study).

Run folder (documented in ``docs/train-pose.md``)::

    RUN/run.json          kind "pose", resolved config, seed, device, versions, training files, role
    RUN/config.yaml       the resolved config (resume reads it)
    RUN/metrics.jsonl     one JSON object per line: train losses every log_every steps, val metrics every val_every
    RUN/checkpoints/last.pt   latest state (model, optimiser, RNG): resume continues from it exactly
    RUN/checkpoints/step_N.pt the last train.keep_checkpoints numbered checkpoints
    RUN/checkpoints/best.pt   best on --val (acc@30 deg symmetry-aware, then median angle; accuracy without poses)
    RUN/tb/               TensorBoard events (tensorboard: true)

The loop is the engine's (:mod:`sim2real.engine`): batches are a pure function of (seed, step)
(:class:`~sim2real.engine.sampler.StepSampler`), so a resumed run sees exactly the batches an uninterrupted run
would have seen; bf16 autocast on CUDA (``perf.amp``), the NaN / divergence check (``train.max_loss``), deferred
Ctrl-C and checkpoint retention come with it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sim2real.config import to_dict
from sim2real.engine.amp import autocast, resolve_speed, to_memory_format
from sim2real.engine.bank import TensorBank
from sim2real.engine.checkpoint import Checkpointer
from sim2real.engine.device import resolve_device, seed_everything
from sim2real.engine.loop import Schedule, Trainer, Update
from sim2real.engine.run import open_run, resolve_config
from sim2real.engine.sampler import StepSampler
from sim2real.engine.validate import predict, score
from sim2real.errors import Sim2RealError
from sim2real.models.factory import build_pose_model as build_model
from sim2real.train.pose_config import KIND, PoseConfig

DEFAULT_CONFIG = "pose-small"


def resume_config(run_dir: str | Path, config: str | Path | None = None, sets: Sequence[str] | None = None) -> PoseConfig:
    """The config to continue a run with (:func:`sim2real.engine.run.resolve_config`).

    The run's saved ``config.yaml`` is the base. ``config`` / ``sets`` may be given again (a pipeline re-issues
    the same command with ``--resume``): the result may differ from the saved config only in the keys marked
    resumable (``train.steps``, cadences, ``perf.*``); any other change is a one-line error.
    """
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise Sim2RealError(f"{run_dir}: no config.yaml (not a train-pose run folder, nothing to resume)")
    return resolve_config(PoseConfig, run_dir, config, sets, resume=True, default=DEFAULT_CONFIG)


# --------------------------------------------------------------------------------------------
# Loss
# --------------------------------------------------------------------------------------------


def task_loss(out: dict[str, torch.Tensor], label: torch.Tensor, quat: torch.Tensor, has_quat: torch.Tensor,
              xi: float, eps: float, sym_quats: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """``total = CE + xi * pose``; pose averaged over samples with a quaternion label (0 when there are none).

    The pose term is :func:`sim2real.losses.quat_log_loss` on the **true** class's quaternion (per-class head),
    symmetry-aware when ``sym_quats`` is given.

    Args:
        out: network output (``logits (B, C)``, ``quat_all (B, K, 4)``).
        label: ``(B,)`` int64; quat: ``(B, 4)``; has_quat: ``(B,)`` bool.
        xi: weight of the pose term (``loss.pose_weight``).
        sym_quats: ``(B, S, 4)`` symmetry rotations of each sample's object, or None.
    """
    from sim2real.losses import quat_log_loss
    from sim2real.models.quat_head import pick_quat

    ce = F.cross_entropy(out["logits"], label)  # on logits: log-softmax is fused and stable
    if out.get("quat_all") is not None and bool(has_quat.any()):
        q_pred = pick_quat(out["quat_all"][has_quat], label[has_quat])
        sym = sym_quats[has_quat] if sym_quats is not None else None
        pose = quat_log_loss(q_pred, quat[has_quat], eps, sym_quats=sym)
    else:
        pose = ce.new_zeros(())
    return {"total": ce + xi * pose, "ce": ce, "pose": pose}


# --------------------------------------------------------------------------------------------
# Data
# --------------------------------------------------------------------------------------------


def symmetry_table(symmetries: Sequence | None, step_deg: float, device: torch.device) -> torch.Tensor | None:
    """``(C, S, 4)`` float32 symmetry rotations per class (identity-padded), or None when no object is symmetric.

    Args:
        symmetries: per-class :class:`sim2real.symmetry.Symmetry` (or None = asymmetric), from the training file.
        step_deg: discretisation step of continuous symmetries.
    """
    if not symmetries or all(sym is None for sym in symmetries):
        return None
    from sim2real.symmetry import pack_groups_quat, rotation_groups

    table = torch.as_tensor(np.asarray(pack_groups_quat(rotation_groups(symmetries, step_deg)), dtype=np.float32))
    return None if table.shape[1] == 1 else table.to(device)


def role_of(domains: Sequence[str]) -> str:
    """What a model trained on files of these domains measures (used to label reports)."""
    s = set(domains)
    if s == {"source"}:
        return "source-only"
    if s == {"target"}:
        return "target-only"
    if s == {"adapted"}:
        return "adapted"
    if s == {"adapted", "target"}:
        return "semi-supervised"
    return "+".join(sorted(s))


def load_training_sets(paths: Sequence[str | Path], use_depth: bool) -> list:
    """Read and check the --train files: labelled, same class names (in order), same image size, depth if needed."""
    from sim2real.data import h5

    if not paths:
        raise Sim2RealError("--train: give at least one labelled HDF5 file")
    datas = []
    for p in paths:
        d = h5.read(p)
        d.require("label", "class_names", why="train-pose needs labelled images")
        if use_depth:
            d.require("depth", why="the config has model.use_depth: true")
        if datas:
            first = datas[0]
            if list(d.class_names) != list(first.class_names):
                raise Sim2RealError(f"{p}: class names [{', '.join(d.class_names)}] differ from {first.path}'s "
                                    f"[{', '.join(first.class_names)}] (all --train files must share class names, in order)")
            if d.image_size != first.image_size:
                raise Sim2RealError(f"{p}: images are {d.image_size[0]}x{d.image_size[1]}, {first.path}'s are "
                                    f"{first.image_size[0]}x{first.image_size[1]} (all --train files must share one size)")
        datas.append(d)
    return datas


def check_val_set(val, train0) -> None:
    """The --val file must be labelled and match the training data's classes and image size."""
    val.require("label", "class_names", why="--val must be labelled")
    if list(val.class_names) != list(train0.class_names):
        raise Sim2RealError(f"{val.path}: class names [{', '.join(val.class_names)}] differ from the training data's "
                            f"[{', '.join(train0.class_names)}]")
    if val.image_size != train0.image_size:
        raise Sim2RealError(f"{val.path}: images are {val.image_size[0]}x{val.image_size[1]}, training images are "
                            f"{train0.image_size[0]}x{train0.image_size[1]}")


def _file_record(d) -> dict:
    return {"path": str(Path(d.path).resolve()), "n": len(d), "domain": d.attrs.get("domain"),
            "has_quat": d.quat is not None, "created": d.attrs.get("created")}


# --------------------------------------------------------------------------------------------
# The method the engine runs
# --------------------------------------------------------------------------------------------


class PoseMethod:
    """train-pose as an engine method: one network, one Adam, one update per step (CE + pose loss)."""

    def __init__(self, cfg: PoseConfig, model: nn.Module, bank: TensorBank, val_bank: TensorBank | None,
                 num_classes: int, speed, extra: dict) -> None:
        self.cfg, self.model, self.bank, self.val_bank = cfg, model, bank, val_bank
        self.num_classes, self.speed, self._extra = num_classes, speed, extra
        o = cfg.optim
        self.models = {"model": model}
        # batched (foreach) Adam kernels on every device with perf.foreach: on the CPU, torch's default is a loop
        # over the tensors, measured ~10x slower for the demo's small network (2026-12-02, 1.3 vs 13 ms per step)
        self.optimizers = {"optimizer": torch.optim.Adam(model.parameters(), lr=o.lr, betas=(o.beta1, o.beta2),
                                                         weight_decay=o.weight_decay, foreach=bool(cfg.perf.foreach))}
        self.sampler = StepSampler(bank.group_sizes, cfg.train.batch_size, cfg.train.seed,
                                   balanced=cfg.train.mix == "balanced")
        self.sym_table = (symmetry_table(bank.symmetries, cfg.loss.sym_step_deg, speed.device)
                          if cfg.loss.symmetric_pose else None)
        self.params = list(model.parameters())
        c = cfg.optim.clip_grad_norm
        self.clip = (lambda ps: nn.utils.clip_grad_norm_(ps, c)) if c > 0 else None
        self.augment = None
        if cfg.augment.enabled:
            from sim2real.train.augment import PhotometricAugment

            self.augment = PhotometricAugment(cfg.augment).to(speed.device)

    def lr_factor(self, step: int) -> float:
        return self.cfg.lr_factor(step)

    def batch(self, step: int) -> dict[str, torch.Tensor]:
        return self.bank.batch(self.sampler(step), self.speed.device, self.speed.channels_last)

    def step(self, b: dict[str, torch.Tensor], step: int):
        x, y = b["x"], b["label"]
        has_q = b["has_quat"] if "has_quat" in b else torch.zeros_like(y, dtype=torch.bool)
        q = b["quat"] if "quat" in b else torch.zeros(len(y), 4, device=y.device)
        if self.augment is not None:
            x = self.augment(x)
        with autocast(self.speed):
            out = self.model(x)
        sym = self.sym_table[y] if self.sym_table is not None else None
        L = self.cfg.loss
        losses = task_loss(out, y, q, has_q, L.pose_weight, L.pose_eps, sym)
        yield Update("optimizer", losses["total"], losses, params=self.params, clip=self.clip)
        return {"acc": (out["logits"].detach().argmax(1) == y).float().mean()}

    def validate(self) -> dict | None:
        if self.val_bank is None:
            return None
        labels, quats = predict(self.model, [self.model], self.val_bank, self.speed, self.cfg.train.eval_batch_size)
        return score(self.val_bank, labels, quats, self.num_classes)

    def postfix(self, means: dict[str, float]) -> dict[str, str]:
        return {"loss": f"{means.get('total', 0):.3f}", "acc": f"{means.get('acc', 0):.2f}"}

    def extra(self) -> dict:
        return self._extra


def train_pose(train_paths: Sequence[str | Path], run_dir: str | Path, cfg: PoseConfig, val_path: str | Path | None = None,
               resume: bool = False, show_progress: bool | None = None, overwrite: bool = False) -> dict:
    """Train a pose network; see the module docstring for the run folder.

    Args:
        train_paths: labelled HDF5 files (same class names and image size).
        run_dir: the run folder (must be new or empty unless ``resume``).
        cfg: resolved config (on resume, from :func:`resume_config`).
        val_path: optional labelled held-out file (never the test set): val metrics and ``best.pt``.
        resume: continue from ``RUN/checkpoints/last.pt``; a run folder without one yet (stopped before its first
            checkpoint) is emptied and starts from step 0.
        overwrite: replace an existing run folder.
        show_progress: progress bar (default: :func:`sim2real.utils.progress` decides).

    Returns:
        Summary: ``run_dir, step, role, n_train, last_val, best_val, pose_supervised`` (samples with a quaternion).
    """
    from sim2real.data import h5

    device = resolve_device(cfg.perf.device)
    use_depth = cfg.model.use_depth
    datas = load_training_sets(train_paths, use_depth)
    train_files = [_file_record(d) for d in datas]
    class_names = list(datas[0].class_names)
    image_size = datas[0].image_size
    val = None
    if val_path is not None:
        val = h5.read(val_path)
        check_val_set(val, datas[0])
        if use_depth:
            val.require("depth", why="the config has model.use_depth: true")
        if any(Path(val.path).resolve() == Path(d.path).resolve() for d in datas):
            raise Sim2RealError(f"{val_path}: is also a --train file (the validation set must be held out)")
    role = role_of([d.attrs.get("domain", "?") for d in datas])

    # the records hold each file's creation time: it catches a file re-made under the same name and size
    run = open_run(run_dir, KIND, resume, overwrite=overwrite, data={"train": train_files}, data_keys=("train",),
                   data_hint="--resume needs the same, unchanged --train files", log=lambda _m: None)

    tc = cfg.train
    seed_everything(tc.seed)  # weights init, dropout, augmentation; batches come from the StepSampler
    bank = TensorBank.from_data(datas, use_depth, keep=("label", "quat"))
    if device.type == "cuda":
        bank = bank.to(device)  # uint8 crops are small; this keeps the input pipeline on the GPU
    val_bank = TensorBank.from_data([val], use_depth, keep=("label", "quat")) if val is not None else None
    del datas
    in_ch = 4 if use_depth else 3
    speed = resolve_speed(device, cfg.perf.amp, cfg.perf.channels_last, cfg.perf.foreach)
    model = to_memory_format(build_model(cfg.model, len(class_names), in_ch, image_size).to(device), speed)
    extra = {"train": train_files, "val": _file_record(val) if val is not None else None, "role": role,
             "class_names": class_names, "image_size": list(image_size), "use_depth": use_depth,
             "in_channels": in_ch, "arch": cfg.model.arch}
    method = PoseMethod(cfg, model, bank, val_bank, len(class_names), speed, extra)
    cfg_dict = to_dict(cfg)
    ckpt = Checkpointer(run.checkpoints, KIND, cfg_dict, tc.seed, keep=tc.keep_checkpoints)
    trainer = Trainer(method, run, ckpt, Schedule(tc.steps, tc.log_every, tc.val_every, tc.checkpoint_every, tc.max_loss),
                      tensorboard=tc.tensorboard, desc="train-pose", show_progress=show_progress)
    trainer.begin(cfg, device, extra)  # restores last.pt on resume; writes run.json / config.yaml (rank 0)
    res = trainer.fit()
    return {"run_dir": str(run.path), "step": res["step"], "role": role, "n_train": len(bank),
            "last_val": res["last_val"], "best_val": res["best_val"], "pose_supervised": int(bank.has_quat.sum())
            if bank.has_quat is not None else 0, "device": str(device)}
