"""Device, seeds and RNG states: resolved once at a trainer's entry point; model code derives them from inputs."""

from __future__ import annotations

import json
import random

import numpy as np
import torch

from sim2real.errors import Sim2RealError


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; otherwise the named device (``"cpu"``, ``"cuda:0"``).
    Under ``torchrun`` with NCCL a bare ``cuda`` is this rank's GPU."""
    from sim2real.engine.distributed import device_for_rank

    if name == "auto":
        return device_for_rank(torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise Sim2RealError(f"device={name!r}: expected auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise Sim2RealError(f"device={name!r}: no CUDA GPU is available on this machine (use device=auto or cpu)")
    return device_for_rank(dev)


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch (all devices); return a CPU generator for data sampling."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def rng_state() -> dict:
    """RNG states of python, numpy, torch (CPU and CUDA) for exact resume."""
    st = {"python": json.dumps(random.getstate()), "numpy": json.dumps(_np_state()), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def set_rng_state(st: dict) -> None:
    """Restore what :func:`rng_state` returned."""
    s = json.loads(st["python"])
    random.setstate((s[0], tuple(s[1]), s[2]))
    n = json.loads(st["numpy"])
    np.random.set_state((n[0], np.array(n[1], dtype=np.uint32), n[2], n[3], n[4]))
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


def _np_state() -> list:
    s = np.random.get_state()
    return [s[0], s[1].tolist(), int(s[2]), int(s[3]), float(s[4])]
