"""Checkpoints: written atomically, loaded with ``weights_only=True``, kept as last / best / step_N.

A checkpoint is a dict ``{"format", "kind", "step", "state", "config", "seed", "versions", ["extra"]}``: ``state``
maps names to state dicts (models, optimisers, RNG states), ``config`` is the resolved config as JSON, ``kind``
names the trainer (``"pixelda"``, ``"pose"``) and is checked on load. A kill mid-write leaves the previous
checkpoint intact.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch

from sim2real.errors import Sim2RealError
from sim2real.utils import atomic_write_bytes, versions

CHECKPOINT_FORMAT = 1


def save_checkpoint(path: str | Path, kind: str, step: int, state: dict[str, Any], config: dict, seed: int,
                    extra: dict | None = None) -> None:
    """Write a checkpoint atomically.

    Args:
        path: the file (``.pt``).
        kind: what it holds (``"pixelda"``, ``"pose"``): checked on load.
        step: the number of completed optimisation steps.
        state: ``{name: state_dict}`` of models, optimisers, RNG states (tensors / plain data).
        config: the resolved config (plain data).
        extra: plain data recorded beside it (class names, image size, best validation result ...).
    """
    blob = {"format": CHECKPOINT_FORMAT, "kind": kind, "step": int(step), "state": state,
            "config": json.dumps(config, sort_keys=True), "seed": int(seed), "versions": json.dumps(versions())}
    if extra:
        blob["extra"] = json.dumps(extra, sort_keys=True)
    # Serialised in memory, then written with plain writes: a full disk is an OSError naming the file (torch's
    # own writer reports it as a RuntimeError), and the previous checkpoint stays intact.
    buf = io.BytesIO()
    torch.save(blob, buf)
    atomic_write_bytes(path, buf.getbuffer(), suffix=".pt.tmp", what="the checkpoint")


def load_checkpoint(path: str | Path, kind: str, map_location: Any = "cpu") -> dict:
    """Load and check a checkpoint written by :func:`save_checkpoint`.

    Returns the blob with ``config`` (and ``extra``) parsed back to dicts.
    Raises a one-line :class:`Sim2RealError` for a missing, corrupt or foreign file, or one of another kind.
    """
    path = Path(path)
    if not path.is_file():
        raise Sim2RealError(f"{path}: checkpoint not found")
    try:
        blob = torch.load(path, map_location=map_location, weights_only=True)
    except Exception:  # torch raises many types for garbage input
        raise Sim2RealError(f"{path}: not a readable checkpoint (corrupt or not a PyTorch file)") from None
    if not isinstance(blob, dict) or blob.get("format") != CHECKPOINT_FORMAT or "state" not in blob:
        raise Sim2RealError(f"{path}: not a sim2real checkpoint (foreign file)")
    if blob.get("kind") != kind:
        raise Sim2RealError(f"{path}: is a {blob.get('kind')!r} checkpoint, expected {kind!r}")
    blob["config"] = json.loads(blob["config"])
    if "extra" in blob:
        blob["extra"] = json.loads(blob["extra"])
    return blob


def link_or_copy(src: Path, dst: Path) -> None:
    """Make ``dst`` the same file as ``src`` atomically (hard link; a copy where links are unsupported)."""
    tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copyfile(src, tmp)
    os.replace(tmp, dst)


class Checkpointer:
    """The checkpoints of one run folder: ``RUN/checkpoints/{last,best,step_XXXXXXX}.pt``.

    Args:
        directory: ``RUN/checkpoints`` (created).
        kind: checkpoint kind.
        config: resolved config (plain data), recorded in every checkpoint.
        seed: run seed.
        keep: numbered checkpoints kept (older ones deleted; ``last.pt`` and ``best.pt`` are always kept);
            0 keeps all; ``None`` writes no numbered checkpoints (``last.pt`` only).
    """

    def __init__(self, directory: str | Path, kind: str, config: dict, seed: int, keep: int | None) -> None:
        self.dir = Path(directory)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.kind, self.config, self.seed, self.keep = kind, config, int(seed), keep
        #: step of the last checkpoint written (or resumed from); None before the first
        self.last_step: int | None = None

    @property
    def last(self) -> Path:
        return self.dir / "last.pt"

    @property
    def best(self) -> Path:
        return self.dir / "best.pt"

    def save_last(self, step: int, state: dict, extra: dict) -> None:
        """``step_N.pt`` (linked as ``last.pt``) with retention, or ``last.pt`` alone when ``keep`` is None."""
        if self.keep is None:
            save_checkpoint(self.last, self.kind, step, state, self.config, self.seed, extra=extra)
        else:
            path = self.dir / f"step_{step:07d}.pt"
            save_checkpoint(path, self.kind, step, state, self.config, self.seed, extra=extra)
            link_or_copy(path, self.last)
            if self.keep > 0:
                for old in sorted(self.dir.glob("step_*.pt"))[:-self.keep]:
                    with contextlib.suppress(OSError):
                        old.unlink()
        self.last_step = int(step)

    def save_best(self, step: int, state: dict, extra: dict) -> None:
        save_checkpoint(self.best, self.kind, step, state, self.config, self.seed, extra=extra)

    def load_last(self, map_location: Any = "cpu") -> dict:
        blob = load_checkpoint(self.last, self.kind, map_location=map_location)
        self.last_step = int(blob["step"])
        return blob
