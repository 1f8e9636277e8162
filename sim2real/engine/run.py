"""Run folders: create, resume (kind, data and config checks), ``--overwrite``, ``run.json``.

A run folder holds what one trainer writes (:data:`RUN_ENTRIES`): ``run.json`` (kind, resolved config, seed,
device, versions, the data it was trained on), ``config.yaml`` (what ``--resume`` continues with),
``metrics.jsonl``, ``checkpoints/``, ``samples/`` and ``tb/``.

Resuming a run may change only the config keys declared *resumable* (field metadata ``{"resumable": True}`` on
the config dataclass, or a whole section marked so): they do not change the maths of past steps (more steps,
logging cadence, device). Anything else is a one-line error naming the key.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path
from typing import Any, Callable, Sequence, TypeVar

import torch

from sim2real.errors import Sim2RealError
from sim2real.utils import atomic_write_text, versions

T = TypeVar("T")

#: What a trainer writes into its run folder; a folder holding only these (and no checkpoint) may be restarted.
RUN_ENTRIES = frozenset({"run.json", "config.yaml", "metrics.jsonl", "checkpoints", "samples", "tb"})

#: Field metadata marking a config key (or a whole section) as changeable on ``--resume``.
RESUMABLE = {"resumable": True}


def has_checkpoint(run_dir: str | Path) -> bool:
    """Whether ``run_dir`` has ``checkpoints/last.pt`` (something ``--resume`` can continue from)."""
    return (Path(run_dir) / "checkpoints" / "last.pt").is_file()


def read_run_info(run_dir: str | Path) -> dict:
    """``run.json`` of a run folder, with a one-line error if it is not a run folder."""
    p = Path(run_dir) / "run.json"
    if not p.is_file():
        raise Sim2RealError(f"{run_dir}: not a sim2real run folder (no run.json)")
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        raise Sim2RealError(f"{p}: unreadable or corrupt run.json") from None


def write_run_info(run_dir: Path, kind: str, config: dict, seed: int, device: torch.device, extra: dict | None = None) -> None:
    """Record what made this run: kind, resolved config, seed, device, versions (``run.json``)."""
    info = {"kind": kind, "config": config, "seed": seed, "device": str(device), "versions": versions()}
    if extra:
        info.update(extra)
    atomic_write_text(Path(run_dir) / "run.json", json.dumps(info, indent=2, sort_keys=True))


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


def clear_unstarted_run(run_dir: str | Path) -> None:
    """Empty a run folder that stopped before its first checkpoint, so ``--resume`` can start it from step 0.

    Only a trainer's own entries (:data:`RUN_ENTRIES`, hidden temporaries) are removed; a folder holding any
    other file, or any checkpoint, is refused (one-line error) rather than deleted.
    """
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
            shutil.rmtree(path)
        else:
            raise Sim2RealError(f"{path}: run folder exists; pass --resume to continue it, --overwrite to replace it, "
                                "or choose another -o")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise Sim2RealError(f"{path}: cannot create run folder ({e.strerror})") from None
    return path


# --------------------------------------------------------------------------------------------------------
# config on resume


def resumable_keys(cls: type) -> list[str]:
    """Dotted keys of config dataclass ``cls`` declared resumable (``section.*`` for a whole section)."""
    import typing

    hints = typing.get_type_hints(cls)
    out: list[str] = []
    for f in dataclasses.fields(cls):
        section = hints.get(f.name) if dataclasses.is_dataclass(hints.get(f.name)) else None
        if f.metadata.get("resumable"):
            out.append(f"{f.name}.*" if section is not None else f.name)
        elif section is not None:
            out += [f"{f.name}.{k}" for k in resumable_keys(section)]
    return out


def _is_resumable(key: str, allowed: Sequence[str]) -> bool:
    return any(key == a or (a.endswith(".*") and key.startswith(a[:-1])) for a in allowed)


def diff_keys(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two nested config dicts."""
    out = []
    for k in sorted(set(a) | set(b)):
        va, vb = a.get(k), b.get(k)
        key = f"{prefix}{k}"
        if isinstance(va, dict) and isinstance(vb, dict):
            out += diff_keys(va, vb, key + ".")
        elif va != vb:
            out.append(key)
    return out


def _get(d: dict, key: str) -> Any:
    for part in key.split("."):
        d = d.get(part) if isinstance(d, dict) else None
    return d


def resolve_config(cls: type[T], run_dir: str | Path, config: str | Path | None, sets: Sequence[str] | None,
                   resume: bool, default: str, load: Callable[..., T] | None = None) -> T:
    """The config of a fresh run (``config`` or ``default``, plus ``--set``) or of a resumed one.

    On ``--resume`` the run's saved ``config.yaml`` is the base; ``config`` / ``sets`` may be given again (a
    pipeline re-issues the same command) and the result may differ from the saved config only in the keys
    :func:`resumable_keys` declares. A run folder without ``config.yaml`` (killed before it saved one) starts afresh.

    Args:
        load: ``load(cls, path_or_name, sets)``; default :func:`sim2real.config.load_config`.
    """
    from sim2real.config import from_dict, load_config, read_yaml, to_dict

    load = load or load_config
    stored_path = Path(run_dir) / "config.yaml"
    if not resume or not stored_path.is_file():
        return load(cls, config or default, list(sets or []))
    stored = from_dict(cls, read_yaml(stored_path), str(stored_path))
    new = load(cls, config or stored_path, list(sets or []))
    allowed = resumable_keys(cls)
    a, b = to_dict(stored), to_dict(new)
    changed = [k for k in diff_keys(a, b) if not _is_resumable(k, allowed)]
    if changed:
        k = changed[0]
        raise Sim2RealError(f"{run_dir}: cannot resume with a different {k} (run: {_get(a, k)!r}, now: {_get(b, k)!r}; "
                            f"changeable on resume: {', '.join(allowed)})")
    return new


# --------------------------------------------------------------------------------------------------------
# the folder of one run


@dataclasses.dataclass
class RunFolder:
    """An opened run folder (:func:`open_run`): where to write, and whether it continues a previous run."""

    path: Path
    kind: str
    resume: bool

    @property
    def checkpoints(self) -> Path:
        return self.path / "checkpoints"


def open_run(path: str | Path, kind: str, resume: bool, overwrite: bool = False, data: dict | None = None,
             data_keys: Sequence[str] = (), log: Callable[[str], None] | None = None,
             data_hint: str = "give the same input files") -> RunFolder:
    """Create or reopen a run folder for a trainer of ``kind``.

    * ``resume`` on a folder with ``checkpoints/last.pt``: its ``run.json`` must be of ``kind`` and record the
      same ``data`` under every ``data_keys`` (what the run was trained on); the run continues.
    * ``resume`` on a folder without a checkpoint yet (stopped before its first): emptied (only a run's own
      entries; anything else is refused) and started from step 0, saying so through ``log``.
    * otherwise a new folder; an existing non-empty one only with ``overwrite``.
    """
    from sim2real.engine.distributed import run_on_main

    # torchrun: rank 0 checks and prepares the folder; every rank gets its answer (or its one-line error)
    return run_on_main(lambda: _open_run(Path(path), kind, resume, overwrite, data, data_keys, log, data_hint))


def _open_run(path: Path, kind: str, resume: bool, overwrite: bool, data: dict | None, data_keys: Sequence[str],
              log: Callable[[str], None] | None, data_hint: str) -> RunFolder:
    restart = resume and not has_checkpoint(path)
    if resume and (path / "run.json").is_file():
        old = read_run_info(path)
        if old.get("kind") != kind:
            raise Sim2RealError(f"{path}: is a {old.get('kind')!r} run, expected a {kind!r} run")
        for key in data_keys:
            if key in old and data is not None and old[key] != data.get(key):
                was, now = old[key], data.get(key)
                if isinstance(was, list) and was and isinstance(was[0], dict):
                    was, now = [w.get("path") for w in was], [n.get("path") for n in (now or [])]
                raise Sim2RealError(f"{path}: cannot resume with different data: {key} was {was}, now {now} ({data_hint})")
    if restart:
        if log is not None:
            log(f"{path}: no checkpoint to resume yet (the run stopped before its first); starting from step 0")
        clear_unstarted_run(path)
        resume = False
    prepare_run_dir(path, resume, overwrite=overwrite)
    (path / "checkpoints").mkdir(exist_ok=True)
    return RunFolder(path=path, kind=kind, resume=resume)
