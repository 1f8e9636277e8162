"""``sim2real train-pose``: train a class + unit-quaternion network on labelled HDF5 data.

What the training data is decides what the run measures (the run records it as ``role`` in ``run.json``):

* renders (domain ``source``): the *source-only* baseline;
* PixelDA-adapted renders (domain ``adapted``, from ``sim2real export``): *adapted*;
* labelled target images (domain ``target``): the *target-only* upper bound;
* adapted + a few labelled target images: *semi-supervised* (use ``mix: balanced`` so the few target
  images are not drowned: each batch then draws equally from every ``--train`` file).

Loss (PixelDA, Bousmalis et al. 2017, Sec. 4.3; official code's ``log(1e-4 + 1 - |q.q_hat|)``)::

    L = CE(logits, label) + xi * mean_i min_k log(eps + 1 - |(q_i S_k) . q_hat_i[label_i]|)

``q_hat_i[label_i]`` is the true class's quaternion of the per-class head (the predicted class's at test time);
``S_k`` runs over the object's symmetry group (identity only for asymmetric objects; ``symmetric_loss``).
The pose term is averaged over the samples of the batch that have a quaternion label (files without ``quat``,
e.g. digits, train the classifier only). It is sign-invariant (q == -q) and minimal (log eps) at a perfect pose.
The defaults (per-class head, no tanh, no dropout, xi = 1, batch 64, cosine schedule) are the measured best;
the official PixelDA head and weights are ``pose-small-official`` (``docs/train-pose.md`` has the study).

Run folder (documented in ``docs/train-pose.md``)::

    RUN/run.json          kind "pose", resolved config, seed, device, versions, training files, role
    RUN/config.yaml       the resolved config (resume reads it)
    RUN/metrics.jsonl     one JSON object per line: train losses every log_every steps, val metrics every val_every
    RUN/checkpoints/last.pt   latest state (model, optimiser, scheduler, RNG): resume continues from it exactly
    RUN/checkpoints/best.pt   best on --val (acc@30 deg symmetry-aware, then median angle; accuracy without poses)
    RUN/tb/               TensorBoard events (tensorboard: true)

Batches are a pure function of (seed, step) (:class:`StepSampler`), so a resumed run sees exactly the batches an
uninterrupted run would have seen.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from sim2real.config import dump_yaml, from_dict, read_yaml, to_dict
from sim2real.conventions import image_to_net
from sim2real.errors import Sim2RealError
from sim2real.models.factory import build_pose_model as build_model
from sim2real.train.amp import resolve_speed, to_memory_format
from sim2real.train.pose_config import KIND, PoseConfig


# --------------------------------------------------------------------------------------------
# Config
# --------------------------------------------------------------------------------------------


#: Keys that ``--resume`` may change (everything else must match the run's saved config).
RESUMABLE_KEYS = ("steps", "device", "log_every", "val_every", "checkpoint_every", "eval_batch_size", "tensorboard")


def _flatten(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flatten(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def resume_config(run_dir: str | Path, config: str | Path | None = None, sets: Sequence[str] | None = None) -> PoseConfig:
    """The config to continue a run with.

    The run's saved ``config.yaml`` is the base. ``config`` / ``sets`` may be given again (a pipeline re-issues
    the same command with ``--resume``): the result may differ from the saved config only in
    :data:`RESUMABLE_KEYS` (e.g. ``--set steps=N`` trains longer); any other change is a one-line error.
    """
    from sim2real.config import load_config

    run_dir = Path(run_dir)
    path = run_dir / "config.yaml"
    if not path.is_file():
        raise Sim2RealError(f"{run_dir}: no config.yaml (not a train-pose run folder, nothing to resume)")
    saved = from_dict(PoseConfig, read_yaml(path), str(path))
    new = load_config(PoseConfig, config if config is not None else path, list(sets or []))
    a, b = _flatten(to_dict(saved)), _flatten(to_dict(new))
    changed = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k) and k not in RESUMABLE_KEYS)
    if changed:
        k = changed[0]
        raise Sim2RealError(f"{run_dir}: cannot change {k} on --resume (run: {a.get(k)!r}, now: {b.get(k)!r}; "
                            f"changeable: {', '.join(RESUMABLE_KEYS)})")
    return new


# --------------------------------------------------------------------------------------------
# Model and loss
# --------------------------------------------------------------------------------------------


def task_loss(out: dict[str, torch.Tensor], label: torch.Tensor, quat: torch.Tensor, has_quat: torch.Tensor,
              xi: float, eps: float, sym_quats: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
    """``total = CE + xi * pose``; pose averaged over samples with a quaternion label (0 when there are none).

    The pose term is :func:`sim2real.losses.quat_log_loss` on the **true** class's quaternion (per-class head),
    symmetry-aware when ``sym_quats`` is given.

    Args:
        out: network output (``logits (B, C)``, ``quat_all (B, K, 4)``).
        label: ``(B,)`` int64; quat: ``(B, 4)``; has_quat: ``(B,)`` bool.
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
            d.require("depth", why="the config has use_depth: true")
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


class ImageBank:
    """Labelled images kept as uint8 ``(N, 3, H, W)`` (+ a float depth channel), converted per batch on the device.

    Attributes:
        rgb: uint8 ``(N, 3, H, W)``; depth: float32 ``(N, 1, H, W)`` in [-1, 1] or None.
        label: int64 ``(N,)``; quat: float32 ``(N, 4)`` (zeros where unknown); has_quat: bool ``(N,)``.
        group_sizes: samples per source file, in order (files are concatenated).
    """

    def __init__(self, datas: Sequence, use_depth: bool) -> None:
        from sim2real.data.tensors import depth_to_channel

        self.rgb = torch.cat([torch.from_numpy(np.ascontiguousarray(d.rgb)).permute(0, 3, 1, 2).contiguous() for d in datas])
        self.depth = None
        if use_depth:
            self.depth = torch.cat([torch.from_numpy(depth_to_channel(d.depth)).unsqueeze(1) for d in datas])
        self.label = torch.cat([torch.from_numpy(np.asarray(d.label, dtype=np.int64)) for d in datas])
        quats, has = [], []
        for d in datas:
            if d.quat is not None:
                quats.append(torch.from_numpy(np.asarray(d.quat, dtype=np.float32)))
                has.append(torch.ones(len(d), dtype=torch.bool))
            else:
                quats.append(torch.zeros(len(d), 4))
                has.append(torch.zeros(len(d), dtype=torch.bool))
        self.quat = torch.cat(quats)
        self.has_quat = torch.cat(has)
        self.group_sizes = [len(d) for d in datas]
        #: per-class symmetry annotations (:class:`sim2real.symmetry.Symmetry` or None) of the first file that has them
        self.symmetries = next((d.symmetries for d in datas if getattr(d, "symmetries", None) is not None), None)

    def __len__(self) -> int:
        return int(self.rgb.shape[0])

    def to(self, device: torch.device) -> "ImageBank":
        for k in ("rgb", "depth", "label", "quat", "has_quat"):
            v = getattr(self, k)
            if v is not None:
                setattr(self, k, v.to(device))
        return self

    def images(self, idx: torch.Tensor | slice, device: torch.device) -> torch.Tensor:
        """Network input ``(B, 3|4, H, W)`` float32 in [-1, 1] on ``device``."""
        if isinstance(idx, torch.Tensor):
            idx = idx.to(self.rgb.device)
        x = image_to_net(self.rgb[idx].to(device, non_blocking=True))
        if self.depth is not None:
            x = torch.cat([x, self.depth[idx].to(device, non_blocking=True)], dim=1)
        return x

    def batch(self, idx: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """(images, label, quat, has_quat) for the given indices, on ``device``."""
        i = idx.to(self.rgb.device)
        return (self.images(i, device), self.label[i].to(device), self.quat[i].to(device), self.has_quat[i].to(device))


class StepSampler:
    """Index batches as a pure function of the step number (exact resume with no sampler state).

    Each stream walks through a fresh random permutation per epoch, seeded by (seed, stream, epoch); a batch
    that crosses an epoch boundary takes the rest of one permutation and the start of the next, so no sample
    is skipped and nothing is truncated.

    Args:
        group_sizes: samples per --train file (concatenated in this order).
        batch_size: indices per step.
        seed: run seed.
        balanced: False: one stream over all samples; True: one stream per file, ``batch_size`` split evenly.
    """

    def __init__(self, group_sizes: Sequence[int], batch_size: int, seed: int, balanced: bool) -> None:
        if not group_sizes or min(group_sizes) < 1:
            raise ValueError("StepSampler: every group needs at least one sample")
        self.seed = int(seed)
        self.offsets = np.concatenate([[0], np.cumsum(group_sizes)[:-1]]).astype(np.int64)
        if balanced and len(group_sizes) > 1:
            k = len(group_sizes)
            if batch_size < k:
                raise Sim2RealError(f"batch_size={batch_size}: mix: balanced needs at least one sample per --train file ({k})")
            self.streams = [(int(self.offsets[g]), int(group_sizes[g]), batch_size // k + (1 if g < batch_size % k else 0))
                            for g in range(k)]
        else:
            self.streams = [(0, int(sum(group_sizes)), batch_size)]
        self._cache: dict[tuple[int, int], torch.Tensor] = {}

    def _perm(self, stream: int, n: int, epoch: int) -> torch.Tensor:
        key = (stream, epoch)
        if key not in self._cache:
            if len(self._cache) > 8:
                self._cache.clear()
            seed = int(np.random.SeedSequence([self.seed, stream, epoch]).generate_state(1)[0])
            self._cache[key] = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
        return self._cache[key]

    def __call__(self, step: int) -> torch.Tensor:
        """CPU int64 ``(batch_size,)`` global indices of step ``step`` (0-based)."""
        parts = []
        for s, (offset, n, b) in enumerate(self.streams):
            pos = step * b
            got = 0
            while got < b:
                epoch, start = divmod(pos + got, n)
                take = min(b - got, n - start)
                parts.append(self._perm(s, n, epoch)[start:start + take] + offset)
                got += take
        return torch.cat(parts)


# --------------------------------------------------------------------------------------------
# Training
# --------------------------------------------------------------------------------------------


def _file_record(d) -> dict:
    return {"path": str(Path(d.path).resolve()), "n": len(d), "domain": d.attrs.get("domain"),
            "has_quat": d.quat is not None, "created": d.attrs.get("created")}


@torch.no_grad()
def evaluate_bank(model: nn.Module, bank: ImageBank, num_classes: int, device: torch.device, batch_size: int) -> dict:
    """Accuracy and angle errors (plain and symmetry-aware) of ``model`` on a whole bank (eval mode; restores train mode).

    Returns ``accuracy`` and, with poses, ``mean_angle_deg``, ``median_angle_deg``, ``median_angle_sym_deg`` and
    ``acc30_sym`` (share with the right class and a symmetry-aware error below 30 degrees).
    """
    from sim2real.eval.metrics import evaluate_arrays
    from sim2real.models.loading import run_model

    x = bank.rgb if bank.depth is None else torch.cat([image_to_net(bank.rgb), bank.depth], dim=1)
    out = run_model(model, x, batch_size=batch_size, device=device)
    has = bank.has_quat.cpu().numpy()
    q_true = bank.quat.cpu().numpy() if has.all() and out["quat_pred"] is not None else None
    kw = {}
    if q_true is not None and bank.symmetries is not None:
        kw["symmetries"] = bank.symmetries  # Symmetry objects: continuous symmetries are minimised exactly
    m = evaluate_arrays(bank.label.cpu().numpy(), out["label_pred"], num_classes,
                        quat_true=q_true, quat_pred=out["quat_pred"] if q_true is not None else None, **kw)
    res = {"accuracy": m["accuracy"]}
    if m["has_pose"]:
        res.update(mean_angle_deg=m["mean_angle_deg"], median_angle_deg=m["median_angle_deg"],
                   median_angle_sym_deg=m.get("median_angle_sym_deg", m["median_angle_deg"]),
                   acc30_sym=m.get("acc_at_deg_sym", m["acc_at_deg"])["30"])
    return res


def _better(new: dict, best: dict | None) -> bool:
    """Which validation result is the better checkpoint.

    With poses: higher ``acc30_sym`` (right class and symmetry-aware rotation error < 30 deg: a pose
    estimator's one-number summary), then lower symmetry-aware median angle. Without poses: higher accuracy.
    """
    if best is None:
        return True
    if "acc30_sym" in new and "acc30_sym" in best:
        if abs(new["acc30_sym"] - best["acc30_sym"]) > 1e-9:
            return new["acc30_sym"] > best["acc30_sym"]
        return new["median_angle_sym_deg"] < best["median_angle_sym_deg"] - 1e-9
    return new["accuracy"] > best["accuracy"] + 1e-9


def _truncate_metrics(path: Path, after_step: int) -> None:
    """Drop metrics.jsonl lines logged after the checkpoint we resume from (they will be logged again)."""
    if not path.is_file():
        return
    from sim2real.utils import atomic_write_text

    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line).get("step", 0) <= after_step:
                keep.append(line)
        except ValueError:
            continue  # a torn last line from a kill mid-write
    atomic_write_text(path, "".join(x + "\n" for x in keep))


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
    from sim2real.train.common import (clear_unstarted_run, load_checkpoint, prepare_run_dir, read_run_info,
                                       resolve_device, rng_state, save_checkpoint, seed_everything, set_rng_state,
                                       write_run_info)
    from sim2real.utils import progress

    device = resolve_device(cfg.device)
    datas = load_training_sets(train_paths, cfg.use_depth)
    train_files = [_file_record(d) for d in datas]
    class_names = list(datas[0].class_names)
    image_size = datas[0].image_size
    val = None
    if val_path is not None:
        val = h5.read(val_path)
        check_val_set(val, datas[0])
        if cfg.use_depth:
            val.require("depth", why="the config has use_depth: true")
        if any(Path(val.path).resolve() == Path(d.path).resolve() for d in datas):
            raise Sim2RealError(f"{val_path}: is also a --train file (the validation set must be held out)")
    role = role_of([d.attrs.get("domain", "?") for d in datas])

    run_dir = Path(run_dir)
    ckpt_dir = run_dir / "checkpoints"
    last_path = ckpt_dir / "last.pt"
    if resume and (run_dir / "run.json").is_file():
        old = read_run_info(run_dir)
        if old.get("kind") != KIND:
            raise Sim2RealError(f"{run_dir}: is a {old.get('kind')!r} run, not a train-pose run")
        # the file's creation time catches a file re-made under the same name with the same size
        was = [(f["path"], f["n"], f.get("created")) for f in old.get("train", [])]
        now = [(f["path"], f["n"], f.get("created")) for f in train_files]
        if was and was != now:
            raise Sim2RealError(f"{run_dir}: was trained on {[w[0] for w in was]} (as they were then); "
                                "--resume needs the same, unchanged --train files")
    if resume and not last_path.is_file():
        clear_unstarted_run(run_dir)  # nothing to continue: start from step 0 (the command says so)
        resume = False
    prepare_run_dir(run_dir, resume, overwrite=overwrite)
    ckpt_dir.mkdir(exist_ok=True)

    seed_everything(cfg.seed)  # weights init, dropout, augmentation; batches come from StepSampler
    bank = ImageBank(datas, cfg.use_depth)
    if device.type == "cuda":
        bank.to(device)  # uint8 crops are small; this keeps the input pipeline on the GPU
    val_bank = ImageBank([val], cfg.use_depth) if val is not None else None
    del datas
    in_ch = 4 if cfg.use_depth else 3
    speed = resolve_speed(device, amp="fp32")  # channels_last (faster on the CPU too); train-pose has no AMP
    model = to_memory_format(build_model(cfg.model, len(class_names), in_ch, image_size).to(device), speed)
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda i: cfg.lr_factor(i))
    augment = None
    if cfg.augment.enabled:
        from sim2real.train.augment import PhotometricAugment

        augment = PhotometricAugment(cfg.augment).to(device)
    sampler = StepSampler(bank.group_sizes, cfg.batch_size, cfg.seed, balanced=cfg.mix == "balanced")
    sym_table = symmetry_table(bank.symmetries, cfg.sym_step_deg, device) if cfg.symmetric_loss else None

    step, best = 0, None
    if resume and last_path.is_file():
        blob = load_checkpoint(last_path, KIND, map_location="cpu")
        try:
            model.load_state_dict(blob["state"]["model"])
            opt.load_state_dict(blob["state"]["optimizer"])
            sched.load_state_dict(blob["state"]["scheduler"])
        except (RuntimeError, KeyError, ValueError):
            raise Sim2RealError(f"{last_path}: checkpoint does not match this run's config (model or optimiser differ)") from None
        set_rng_state(blob["state"]["rng"])
        step = int(blob["step"])
        best = blob.get("extra", {}).get("best_val")
        _truncate_metrics(run_dir / "metrics.jsonl", step)

    cfg_dict = to_dict(cfg)
    dump_yaml(cfg, run_dir / "config.yaml")
    extra = {"train": train_files, "val": _file_record(val) if val is not None else None, "role": role,
             "class_names": class_names, "image_size": list(image_size), "use_depth": cfg.use_depth,
             "in_channels": in_ch, "arch": cfg.model.arch}
    write_run_info(run_dir, KIND, cfg_dict, cfg.seed, device, extra=extra)

    writer = None
    if cfg.tensorboard:
        from torch.utils.tensorboard import SummaryWriter

        writer = SummaryWriter(str(run_dir / "tb"))

    def checkpoint(path: Path, at_step: int) -> None:
        state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "rng": rng_state()}
        save_checkpoint(path, KIND, at_step, state, cfg_dict, cfg.seed, extra={**extra, "best_val": best})

    last_val = None
    metrics_file = open(run_dir / "metrics.jsonl", "a")

    def log(rec: dict) -> None:
        metrics_file.write(json.dumps(rec) + "\n")
        metrics_file.flush()
        if writer is not None:
            for k, v in rec.items():
                if isinstance(v, (int, float)) and k != "step":
                    writer.add_scalar(f"{rec.get('split', 'train')}/{k}", v, rec["step"])

    def validate(at_step: int) -> None:
        nonlocal best, last_val
        last_val = evaluate_bank(model, val_bank, len(class_names), device, cfg.eval_batch_size)
        log({"step": at_step, "split": "val", **last_val})
        if _better(last_val, best):
            best = {"step": at_step, **last_val}
            checkpoint(ckpt_dir / "best.pt", at_step)

    model.train()
    in_update = False
    t0 = time.time()
    sums = {"loss": 0.0, "ce": 0.0, "pose": 0.0, "acc": 0.0}
    count = 0
    bar = progress(total=cfg.steps, initial=min(step, cfg.steps), desc="train-pose", unit="step",
                   disable=None if show_progress is None else not show_progress)
    try:
        while step < cfg.steps:
            x, y, q, has_q = bank.batch(sampler(step), device)
            x = to_memory_format(x, speed)
            if augment is not None:
                x = augment(x)
            out = model(x)
            sym = sym_table[y] if sym_table is not None else None
            losses = task_loss(out, y, q, has_q, cfg.xi, cfg.pose_eps, sym)
            opt.zero_grad(set_to_none=True)
            losses["total"].backward()
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            in_update = True  # an interrupt from here to step += 1 leaves a half-applied update: not saved
            opt.step()
            sched.step()
            step += 1
            in_update = False
            count += 1
            sums["loss"] += float(losses["total"].detach())
            sums["ce"] += float(losses["ce"].detach())
            sums["pose"] += float(losses["pose"].detach())
            sums["acc"] += float((out["logits"].detach().argmax(1) == y).float().mean())
            bar.update(1)
            if step % cfg.log_every == 0 or step == cfg.steps:
                rec = {"step": step, "split": "train", **{k: v / count for k, v in sums.items()},
                       "lr": opt.param_groups[0]["lr"], "time_s": round(time.time() - t0, 3)}
                log(rec)
                bar.set_postfix(loss=f"{rec['loss']:.3f}", acc=f"{rec['acc']:.2f}")
                sums = dict.fromkeys(sums, 0.0)
                count = 0
            if val_bank is not None and (step % cfg.val_every == 0 or step == cfg.steps):
                validate(step)
            if step % cfg.checkpoint_every == 0 or step == cfg.steps:
                checkpoint(last_path, step)
    except KeyboardInterrupt:
        if not in_update:
            checkpoint(last_path, step)  # keep the work done so far; --resume continues exactly from here
        raise
    finally:
        bar.close()
        metrics_file.close()
        if writer is not None:
            writer.close()
    return {"run_dir": str(run_dir), "step": step, "role": role, "n_train": len(bank), "last_val": last_val,
            "best_val": best, "pose_supervised": int(bank.has_quat.sum()), "device": str(device)}
