"""Trained networks out of run folders, and running them: the one place evaluation and training both load from.

* :func:`load_run_model` dispatches on the run folder's ``run.json`` ``kind``: ``"pose"`` (a ``sim2real train-pose``
  run, :func:`load_pose_model`) or an adapt run with a task network T (``"pixelda"``, and the feature-level
  baselines ``"dann"``, ``"coral"``, ``"mmd"``: :func:`load_task_model`, run on the target-domain branch; ``"i2i"``:
  its h o f, :class:`~sim2real.adapt.i2i.models.I2ITaskNet`; ``"dtn"``: its T, trained on G(x_s)).
* :func:`load_generator` gives G of a PixelDA run, or the source -> target translator g_y o f of an I2I Adapt run
  (:class:`~sim2real.adapt.i2i.models.I2ITranslator`), or G = g o f of a DTN run
  (:class:`~sim2real.adapt.dtn.models.DTNGenerator`), dispatching on the run's kind (``sim2real export``).
* :func:`run_model` runs a class + quaternion network over images in batches (eval mode, ``torch.no_grad()``).

Layering: this module reads the run-folder and checkpoint format (:mod:`sim2real.engine.run`, :mod:`sim2real.engine.checkpoint`), the trainers'
config classes (:mod:`sim2real.train.pose_config`, :mod:`sim2real.adapt.pixelda.config`,
:mod:`sim2real.adapt.feature.config`, :mod:`sim2real.adapt.i2i.config`, :mod:`sim2real.adapt.dtn.config`) and the
network factories (:mod:`sim2real.models.factory`, :mod:`sim2real.adapt.i2i.models`, :mod:`sim2real.adapt.dtn.models`); it imports neither a training loop nor evaluation, so ``train-pose`` (which runs
its model on --val here) and ``evaluate`` both build on it without importing each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sim2real.config import from_dict, to_dict
from sim2real.conventions import canonical_quat, image_to_net
from sim2real.errors import Sim2RealError
from sim2real.models.factory import build_generator, build_pose_model, build_task
from sim2real.models.generator import Generator
from sim2real.models.task import TaskNet
from sim2real.adapt.pixelda.config import KIND as PIXELDA_KIND
from sim2real.adapt.pixelda.config import PixelDAConfig
from sim2real.adapt.feature.config import CONFIGS as FEATURE_CONFIGS
from sim2real.adapt.i2i.config import KIND as I2I_KIND
from sim2real.adapt.i2i.config import I2IConfig
from sim2real.adapt.i2i.models import I2ITaskNet, I2ITranslator, build_i2i
from sim2real.adapt.dtn.config import KIND as DTN_KIND
from sim2real.adapt.dtn.config import DTNConfig
from sim2real.adapt.dtn.models import DTNGenerator, build_dtn
from sim2real.engine.checkpoint import load_checkpoint
from sim2real.engine.run import default_checkpoint, read_run_info
from sim2real.train.pose_config import KIND as POSE_KIND
from sim2real.train.pose_config import PoseConfig


@torch.no_grad()
def run_model(model: torch.nn.Module, images: torch.Tensor, batch_size: int = 256, device: torch.device | str = "cpu",
              domain: str = "target") -> dict[str, np.ndarray]:
    """Run a class + quaternion network over images in batches.

    Args:
        model: returns ``{"logits": (B, C), "quat": (B, 4)}``; put in eval mode here and restored afterwards.
        images: ``(N, C_in, H, W)`` float in [-1, 1], or uint8 ``(N, 3, H, W)`` (converted per batch,
            :func:`sim2real.conventions.image_to_net`).
        device: where to run; the model is moved there.

    Returns:
        ``label_pred (N,) int64``, ``probs (N, C) float32`` (softmax), ``quat_pred (N, 4) float32`` unit wxyz,
        canonical (:func:`sim2real.conventions.canonical_quat`: w >= 0, as in files; None for a network without a
        quaternion head).
    """
    device = torch.device(device)
    was_training = model.training
    model.eval()
    model.to(device)
    probs, quats = [], []
    try:
        for i in range(0, images.shape[0], batch_size):
            x = images[i:i + batch_size].to(device, non_blocking=True)
            if x.dtype == torch.uint8:
                x = image_to_net(x)
            out = model(x, domain=domain)
            probs.append(torch.softmax(out["logits"].float(), dim=1).cpu())
            if out.get("quat") is not None:
                quats.append(out["quat"].float().cpu())
    finally:
        model.train(was_training)
    p = torch.cat(probs).numpy() if probs else np.zeros((0, 0), np.float32)
    q = None
    if quats:
        q = canonical_quat(torch.cat(quats).numpy().astype(np.float64)).astype(np.float32)
    return {"label_pred": p.argmax(axis=1).astype(np.int64) if len(p) else np.zeros(0, np.int64),
            "probs": p.astype(np.float32), "quat_pred": q}


# --------------------------------------------------------------------------------------------
# train-pose runs
# --------------------------------------------------------------------------------------------


def load_pose_model(run_dir: str | Path, checkpoint: str | Path | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """A trained train-pose network, in eval mode on the CPU.

    Args:
        run_dir: the run folder.
        checkpoint: a checkpoint file (default :func:`~sim2real.engine.run.default_checkpoint`: ``best.pt``, the
            best on --val, when the run had --val, else ``last.pt``).

    Returns:
        ``(model, info)``; info keys: ``class_names``, ``use_depth``, ``image_size`` (H, W), ``step``, ``kind`` ("pose"),
        ``role``, ``arch``, ``train`` (file records), ``val``, ``checkpoint``.
    """
    run_dir = Path(run_dir)
    run = read_run_info(run_dir)
    if run.get("kind") != POSE_KIND:
        raise Sim2RealError(f"{run_dir}: is a {run.get('kind')!r} run, not a train-pose run")
    path = Path(checkpoint) if checkpoint is not None else default_checkpoint(run_dir)
    blob = load_checkpoint(path, POSE_KIND, map_location="cpu")
    extra = blob.get("extra") or {}
    try:
        cfg = from_dict(PoseConfig, blob["config"], str(path))
        class_names = list(extra["class_names"])
        image_size = tuple(int(v) for v in extra["image_size"])
        model = build_pose_model(cfg.model, len(class_names), int(extra["in_channels"]), image_size)
        model.load_state_dict(blob["state"]["model"])
    except (KeyError, RuntimeError, TypeError, ValueError):
        raise Sim2RealError(f"{path}: checkpoint is incomplete or does not match its config (expected a train-pose checkpoint)") from None
    model.eval()
    info = {"class_names": class_names, "use_depth": bool(extra.get("use_depth", cfg.model.use_depth)), "image_size": image_size,
            "step": int(blob["step"]), "kind": POSE_KIND, "role": extra.get("role", "unknown"), "arch": cfg.model.arch,
            "train": extra.get("train", []), "val": extra.get("val"), "checkpoint": str(path)}
    return model, info


# --------------------------------------------------------------------------------------------
# sim2real adapt runs: PixelDA, and the feature-level baselines (their T only)
# --------------------------------------------------------------------------------------------

#: adapt run kind -> its config class; every one of them has a task network T (``model.task``, :func:`build_task`)
TASK_RUN_CONFIGS: dict[str, type] = {PIXELDA_KIND: PixelDAConfig, **FEATURE_CONFIGS, I2I_KIND: I2IConfig,
                                     DTN_KIND: DTNConfig}


def checkpoint_path(run_dir: str | Path, step: int | str | None = None) -> Path:
    """``checkpoints/last.pt`` (None), ``checkpoints/best.pt`` ("best") or ``checkpoints/step_XXXXXXX.pt``."""
    d = Path(run_dir) / "checkpoints"
    if step is None or step == "last":
        return d / "last.pt"
    if step == "best":
        return d / "best.pt"
    try:
        return d / f"step_{int(step):07d}.pt"
    except (TypeError, ValueError):
        raise Sim2RealError(f"--step {step}: expected a step number, 'last' or 'best'") from None


def load_run_checkpoint(run_dir: str | Path, step: int | str | None = None, map_location: Any = "cpu",
                        kinds: tuple[str, ...] = (PIXELDA_KIND,)) -> tuple[dict, Any, dict]:
    """(checkpoint blob, config, info) of an adapt run folder of one of ``kinds`` (default: PixelDA only; any of
    :data:`TASK_RUN_CONFIGS`); one-line errors for anything else.

    ``info`` has ``class_names``, ``num_classes``, ``image_size`` (H, W), ``use_depth``, ``in_channels``,
    ``step``, ``kind`` (the run's), ``checkpoint`` (path) and ``run_dir``.
    """
    run_dir = Path(run_dir)
    want = " or ".join(repr(k) for k in kinds)
    if not run_dir.is_dir():
        raise Sim2RealError(f"{run_dir}: not a folder (expected a {want} run folder written by sim2real adapt)")
    run = read_run_info(run_dir)
    kind = run.get("kind")
    if kind not in kinds or kind not in TASK_RUN_CONFIGS:
        raise Sim2RealError(f"{run_dir}: is a {kind!r} run, expected a {want} run (sim2real adapt)")
    path = default_checkpoint(run_dir) if step is None else checkpoint_path(run_dir, step)
    blob = load_checkpoint(path, kind, map_location=map_location)
    cfg = from_dict(TASK_RUN_CONFIGS[kind], blob["config"], str(path))
    extra = blob.get("extra") or {}
    missing = [k for k in ("class_names", "image_size", "use_depth", "in_channels") if k not in extra]
    if missing:
        raise Sim2RealError(f"{path}: checkpoint lacks {missing[0]!r} (not written by sim2real adapt)")
    info = {"class_names": list(extra["class_names"]), "num_classes": len(extra["class_names"]),
            "image_size": (int(extra["image_size"][0]), int(extra["image_size"][1])),
            "use_depth": bool(extra["use_depth"]), "in_channels": int(extra["in_channels"]),
            "step": int(blob["step"]), "kind": kind, "checkpoint": str(path), "run_dir": str(run_dir),
            "seed": int(blob.get("seed", 0)), "source": extra.get("source")}
    return blob, cfg, info


def _load_module(module: torch.nn.Module, state: Any, path: str) -> torch.nn.Module:
    try:
        module.load_state_dict(state)
    except (RuntimeError, TypeError, KeyError) as e:
        raise Sim2RealError(f"{path}: weights do not match the run's config ({str(e).splitlines()[0][:160]})") from None
    return module.eval()


def load_task_model(run_dir: str | Path, step: int | str | None = None) -> tuple[TaskNet, dict]:
    """T of an adapt run (PixelDA, DANN, CORAL, MMD: the same :class:`TaskNet`), in eval mode on the CPU, and its info.

    Args:
        run_dir: a folder written by ``sim2real adapt``.
        step: ``None`` (best.pt when the run had ``--val``, else last.pt), ``"last"``, ``"best"`` or a step number.

    Returns:
        ``(model, info)``: call ``model(x, domain="target")`` on ``(B, 3|4, H, W)`` images in [-1, 1]
        (:func:`sim2real.data.tensors.images_from` with ``info["use_depth"]``) for
        ``{"logits": (B, C), "quat": (B, 4) or None}``. ``info``: ``class_names``, ``use_depth``,
        ``image_size`` (H, W), ``step``, ``kind`` (the run's: "pixelda", "dann", ...), ``in_channels``, ``checkpoint``.
    """
    blob, cfg, info = load_run_checkpoint(run_dir, step, kinds=tuple(TASK_RUN_CONFIGS))
    if info["kind"] == I2I_KIND:  # h o f, with TaskNet's interface
        nets = _load_i2i(blob, cfg, info)
        return I2ITaskNet(nets["f"], nets["h"], info["num_classes"]).eval(), info
    T = build_task(cfg, info["num_classes"], info["in_channels"], info["image_size"])
    state = None
    if isinstance(blob["state"], dict):  # the averaged T when the run kept one (PixelDA train.ema_decay)
        info["ema"] = "T_ema" in blob["state"]
        state = blob["state"].get("T_ema", blob["state"].get("T"))
    return _load_module(T, state, info["checkpoint"]), info


def load_generator(run_dir: str | Path, step: int | str | None = None) -> tuple[Generator, dict]:
    """G of a PixelDA run, in eval mode on the CPU, and its info (see :func:`load_run_checkpoint`).

    ``G(x, z)``: x ``(B, in_channels, H, W)`` in [-1, 1], z ``(B, noise_dim)`` ~ U(-1, 1); output same shape.
    An I2I Adapt run gives its source -> target translator g_y o f (``noise_dim`` 0, z None).
    A DTN run gives G = g o f (``noise_dim`` 0, z None).
    """
    if (Path(run_dir) / "run.json").is_file() and read_run_info(Path(run_dir)).get("kind") == I2I_KIND:
        blob, cfg, info = load_run_checkpoint(run_dir, step, kinds=(I2I_KIND,))
        nets = _load_i2i(blob, cfg, info)
        info["noise_dim"] = I2ITranslator.noise_dim
        info["config"] = to_dict(cfg)
        return I2ITranslator(nets["f"], nets["g"], "target").eval(), info
    if (Path(run_dir) / "run.json").is_file() and read_run_info(Path(run_dir)).get("kind") == DTN_KIND:
        return _load_dtn_generator(run_dir, step)
    blob, cfg, info = load_run_checkpoint(run_dir, step)
    G = build_generator(cfg, info["in_channels"], info["image_size"])
    state = blob["state"].get("G") if isinstance(blob["state"], dict) else None
    info["noise_dim"] = G.noise_dim
    info["config"] = to_dict(cfg)
    return _load_module(G, state, info["checkpoint"]), info


def _load_dtn_generator(run_dir: str | Path, step: int | str | None) -> tuple[DTNGenerator, dict]:
    """G = g o f of a DTN run (``noise_dim`` 0, f frozen), in eval mode on the CPU, and its info."""
    blob, cfg, info = load_run_checkpoint(run_dir, step, kinds=(DTN_KIND,))
    try:
        nets = build_dtn(cfg, info["num_classes"], info["in_channels"], info["image_size"], discriminator=False)
    except ValueError as e:
        raise Sim2RealError(f"{info['checkpoint']}: {e}") from None
    state = blob["state"] if isinstance(blob["state"], dict) else {}
    f, g = (_load_module(nets[k], state.get(k), info["checkpoint"]) for k in ("f", "g"))
    info["noise_dim"] = DTNGenerator.noise_dim
    info["config"] = to_dict(cfg)
    return DTNGenerator(f, g, frozen_f=True).eval(), info


def _load_i2i(blob: dict, cfg: I2IConfig, info: dict) -> dict[str, nn.Module]:
    """f, g (g_x and g_y), h of an I2I Adapt checkpoint, in eval mode on the CPU."""
    try:
        nets = build_i2i(cfg, info["num_classes"], info["in_channels"], info["image_size"], discriminators=False)
    except ValueError as e:
        raise Sim2RealError(f"{info['checkpoint']}: {e}") from None
    state = blob["state"] if isinstance(blob["state"], dict) else {}
    return {k: _load_module(m, state.get(k), info["checkpoint"]) for k, m in nets.items()}


# --------------------------------------------------------------------------------------------
# Any run: dispatch on its kind
# --------------------------------------------------------------------------------------------


def _run_dir_of(path: Path) -> tuple[Path, Path | None]:
    """(run folder, checkpoint file or None) for a run folder or a checkpoint path inside one."""
    if path.is_file():
        for parent in (path.parent, path.parent.parent):
            if (parent / "run.json").is_file():
                return parent, path
        raise Sim2RealError(f"{path}: a checkpoint outside a run folder (expected RUN/checkpoints/*.pt with RUN/run.json)")
    if not path.exists():
        raise Sim2RealError(f"{path}: not found (expected a train-pose or adapt run folder)")
    return path, None


def load_run_model(path: str | Path) -> tuple[nn.Module, dict[str, Any], Path, Path | None]:
    """The pose network of a train-pose run, of an adapt run (its task network T), or of a checkpoint inside either.

    Args:
        path: run folder, or a ``.pt`` checkpoint inside one (``RUN/checkpoints/best.pt``; for an adapt run
            ``last.pt``, ``best.pt`` or ``step_N.pt``).

    Returns:
        ``(model, info, run_dir, checkpoint or None)``: the model in eval mode on the CPU; ``info`` as
        :func:`load_pose_model` / :func:`load_task_model` give it (an adapt run's also gets ``role``, its kind, and
        what T saw for a leak check: ``train`` (the labelled renders), ``val``, ``target_unlabelled``).
    """
    path = Path(path)
    run_dir, ckpt = _run_dir_of(path)
    kind = read_run_info(run_dir).get("kind")
    if ckpt is not None and not ckpt.suffix == ".pt":
        raise Sim2RealError(f"{path}: expected a run folder or a .pt checkpoint inside one")
    if kind == POSE_KIND:
        model, info = load_pose_model(run_dir, checkpoint=ckpt)
    elif kind in TASK_RUN_CONFIGS:
        step: int | str | None = None
        if ckpt is not None:
            if ckpt.stem in ("best", "last"):
                step = ckpt.stem
            elif ckpt.stem.startswith("step_") and ckpt.stem[5:].isdigit():
                step = int(ckpt.stem[5:])
            else:
                raise Sim2RealError(f"{path}: expected an adapt checkpoint named last.pt, best.pt or step_N.pt")
        model, info = load_task_model(run_dir, step)
        run = read_run_info(run_dir)
        info = dict(info)
        info.setdefault("role", kind)
        # what T saw, for the report's leak check: labelled renders, unlabelled target images, the val set
        train = [{"path": run["source"], "n": run.get("n_source"), "domain": "source"}] if run.get("source") else []
        if run.get("target_labelled"):  # adapt --target-labelled: T also trained on these labelled target images
            train.append({"path": run["target_labelled"], "n": run.get("n_target_labelled"), "domain": "target"})
        info.setdefault("train", train)
        info.setdefault("val", {"path": run["val"]} if run.get("val") else None)
        info.setdefault("target_unlabelled", run.get("target"))
    else:
        raise Sim2RealError(f"{run_dir}: run kind {kind!r} has no pose network (expected a train-pose or adapt run)")
    return model, info, run_dir, ckpt
