"""Machinery shared by the trainers (adapt, train-pose): device, seeds, run folders, checkpoints, batches.

Device and dtype are resolved once here, at the entry point; model code derives them from its inputs.
Checkpoints are written atomically and record the config, seed, step and versions; loading checks
that a checkpoint is a sim2real checkpoint of the expected kind (``weights_only=True``).
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch

from sim2real.errors import Sim2RealError
from sim2real.utils import atomic_write_bytes, atomic_write_text, versions

CHECKPOINT_FORMAT = 1


def resolve_device(name: str = "auto") -> torch.device:
    """``"auto"`` -> CUDA when available, else CPU; otherwise the named device (``"cpu"``, ``"cuda:0"``)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise Sim2RealError(f"device={name!r}: expected auto, cpu, cuda or cuda:N") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise Sim2RealError(f"device={name!r}: no CUDA GPU is available on this machine (use device=auto or cpu)")
    return dev


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch (all devices); return a CPU generator for data sampling."""
    random.seed(seed)
    np.random.seed(seed % (2**32))
    torch.manual_seed(seed)
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def infinite_batches(n: int, batch_size: int, generator: torch.Generator) -> Iterator[torch.Tensor]:
    """Endless stream of index batches over ``range(n)``: a new permutation each epoch, no truncation.

    Batches never straddle epochs silently: when fewer than ``batch_size`` indices remain, the
    remainder is topped up from the next epoch's permutation, so every sample is seen once per epoch.
    Indices are a CPU LongTensor. The state is (generator state, leftover), so iterate from a known seed
    to reproduce a run.
    """
    if n <= 0:
        raise ValueError("infinite_batches: empty dataset")
    buf = torch.empty(0, dtype=torch.long)
    while True:
        while buf.numel() < batch_size:
            buf = torch.cat([buf, torch.randperm(n, generator=generator)])
        yield buf[:batch_size]
        buf = buf[batch_size:]


#: What a trainer writes into its run folder; a folder holding only these (and no checkpoint) may be restarted.
RUN_ENTRIES = frozenset({"run.json", "config.yaml", "metrics.jsonl", "checkpoints", "samples", "tb"})


def has_checkpoint(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` has ``checkpoints/last.pt`` (something ``--resume`` can continue from)."""
    return (Path(run_dir) / "checkpoints" / "last.pt").is_file()


def clear_unstarted_run(run_dir: str | Path) -> None:
    """Empty a run folder that stopped before its first checkpoint, so ``--resume`` can start it from step 0.

    Only a trainer's own entries (:data:`RUN_ENTRIES`, hidden temporaries) are removed; a folder holding any
    other file, or any checkpoint, is refused (one-line error) rather than deleted.
    """
    import shutil

    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return
    entries = list(run_dir.iterdir())
    foreign = sorted(p.name for p in entries if p.name not in RUN_ENTRIES and not p.name.startswith("."))
    if foreign:
        raise Sim2RealError(f"{run_dir}: has no checkpoint to resume and holds files a run does not write "
                            f"({foreign[0]}); choose another -o, or pass --overwrite to replace the folder")
    pts = sorted((run_dir / "checkpoints").glob("*.pt")) if (run_dir / "checkpoints").is_dir() else []
    if pts:
        raise Sim2RealError(f"{run_dir}: has {pts[0].name} but no checkpoints/last.pt; copy the checkpoint to "
                            "last.pt to resume from it, or pass --overwrite to start again")
    for p in entries:
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p)
        else:
            p.unlink()


def prepare_run_dir(path: str | Path, resume: bool, overwrite: bool = False) -> Path:
    """Create (or reopen with ``resume``) a run folder; refuse to clobber an existing run unless ``overwrite``."""
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise Sim2RealError(f"{path}: exists and is not a folder (expected a run folder)")
    if path.exists() and any(path.iterdir()) and not resume:
        if overwrite:
            import shutil

            shutil.rmtree(path)
        else:
            raise Sim2RealError(f"{path}: run folder exists; pass --resume to continue it, --overwrite to replace it, "
                                "or choose another -o")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise Sim2RealError(f"{path}: cannot create run folder ({e.strerror})") from None
    return path


def write_run_info(run_dir: Path, kind: str, config: dict, seed: int, device: torch.device, extra: dict | None = None) -> None:
    """Record what made this run: kind, resolved config, seed, device, versions (``run.json``)."""
    info = {"kind": kind, "config": config, "seed": seed, "device": str(device), "versions": versions()}
    if extra:
        info.update(extra)
    atomic_write_text(Path(run_dir) / "run.json", json.dumps(info, indent=2, sort_keys=True))


def read_run_info(run_dir: str | Path) -> dict:
    """``run.json`` of a run folder, with a one-line error if it is not a run folder."""
    p = Path(run_dir) / "run.json"
    if not p.is_file():
        raise Sim2RealError(f"{run_dir}: not a sim2real run folder (no run.json)")
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        raise Sim2RealError(f"{p}: unreadable or corrupt run.json") from None


def default_checkpoint(run_dir: str | Path) -> Path:
    """The checkpoint a run folder stands for (``evaluate RUN``, ``export RUN``, the loaders' default).

    ``checkpoints/best.pt`` when the run was validated (``--val`` recorded in ``run.json``) and has one, else
    ``checkpoints/last.pt``: with a labelled validation split, the checkpoint chosen on it is what users expect.
    """
    run_dir = Path(run_dir)
    ckpt = run_dir / "checkpoints"
    if read_run_info(run_dir).get("val") and (ckpt / "best.pt").is_file():
        return ckpt / "best.pt"
    return ckpt / "last.pt"


def save_checkpoint(path: str | Path, kind: str, step: int, state: dict[str, Any], config: dict, seed: int,
                    extra: dict | None = None) -> None:
    """Write a checkpoint atomically: a kill mid-write leaves the previous checkpoint intact.

    Args:
        path: the file (``.pt``).
        kind: what it holds (``"pixelda"``, ``"pose"``): checked on load.
        step: the number of completed optimisation steps.
        state: ``{name: state_dict}`` of models, optimisers, schedulers, RNG states (tensors / plain data).
        config: the resolved config (plain data).
    """
    blob = {"format": CHECKPOINT_FORMAT, "kind": kind, "step": int(step), "state": state,
            "config": json.dumps(config, sort_keys=True), "seed": int(seed), "versions": json.dumps(versions())}
    if extra:
        blob["extra"] = json.dumps(extra, sort_keys=True)
    import io

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
