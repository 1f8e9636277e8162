"""The ``make-target`` job: render each split, apply the camera, write ``OUT/SPLIT.h5`` (resumable).

Each split is rendered into ``OUT/.work/SPLIT.h5`` by :func:`~sim2real.render.job.run_render` (sharded,
resumable), then the camera effects of :mod:`sim2real.target.effects` are applied and ``OUT/SPLIT.h5`` is written
atomically; an interrupted run continues with ``resume=True`` and skips finished splits. Split seeds are derived
from (seed, split) by hashing (:func:`split_seed`). The outputs are described in :mod:`sim2real.target`.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
from pathlib import Path
from typing import Optional

import numpy as np

from sim2real.config import to_dict, to_json
from sim2real.errors import Sim2RealError
from sim2real.render.config import RenderConfig
from sim2real.target.config import MakeTargetConfig
from sim2real.target.effects import apply_camera_effects, apply_depth_noise

#: What every make-target file says it is.
DESCRIPTION = "synthetic stand-in for real camera images (not real data)"
SPLITS = ("train", "val", "test")
WORK_DIR = ".work"
#: Tag hashed into the split seeds (ASCII "STAN").
_SEED_TAG = 0x5354414E


def split_seed(seed: int, split: str) -> int:
    """The render/effects seed of ``split``: a 31-bit hash of (seed, split), distinct from small user seeds."""
    k = SPLITS.index(split)
    return int(np.random.SeedSequence([int(seed), _SEED_TAG, k]).generate_state(1, np.uint32)[0] >> 1)


def split_render_config(cfg: MakeTargetConfig, split: str) -> RenderConfig:
    """The RenderConfig that renders ``split``."""
    return dataclasses.replace(cfg.render, n_samples=cfg.count(split), seed=split_seed(cfg.seed, split))


@dataclasses.dataclass
class SplitResult:
    split: str
    path: Path
    n_samples: int
    labelled: bool
    rendered: int = 0
    render_seconds: float = 0.0
    effects_seconds: float = 0.0
    platform: str = ""
    already_complete: bool = False


def _final(out: Path, split: str) -> Path:
    return out / f"{split}.h5"


def _prepare_output(out: Path, resume: bool, overwrite: bool) -> None:
    parent = out.parent if str(out.parent) else Path(".")
    if out.exists() and not out.is_dir():
        raise Sim2RealError(f"{out}: exists and is not a folder (make-target writes a folder: train.h5, val.h5, test.h5)")
    if not parent.is_dir():
        raise Sim2RealError(f"{out}: the parent folder {parent} does not exist")
    work = out / WORK_DIR
    if overwrite:
        for s in SPLITS:
            _final(out, s).unlink(missing_ok=True)
        shutil.rmtree(work, ignore_errors=True)
    elif not resume:
        existing = [s for s in SPLITS if _final(out, s).exists()]
        if existing:
            raise Sim2RealError(f"{_final(out, existing[0])}: already exists (pass --resume to complete/keep it or --overwrite to replace it)")
        if work.exists():
            raise Sim2RealError(f"{work}: an interrupted make-target exists (pass --resume to finish it or --overwrite to restart)")
    out.mkdir(exist_ok=True)
    work.mkdir(exist_ok=True)


def _complete(path: Path, cfg: MakeTargetConfig, split: str) -> bool:
    """True when ``path`` is a finished split of this config; a different config is an error."""
    from sim2real.data import h5

    if not path.exists():
        return False
    attrs = h5.read_attrs(path)
    if attrs.get("config") != to_json(cfg) or attrs.get("split") != split:
        raise Sim2RealError(f"{path}: exists with a different config (use --overwrite to replace it)")
    h5.read(path)  # validates
    return True


def make_split(cfg: MakeTargetConfig, out: Path, split: str, workers: Optional[int], show_progress: bool,
               ray: Optional[str] = None, ray_gpus: float = 0.0) -> SplitResult:
    """Render, apply the camera, write ``out/SPLIT.h5`` (atomic); the work render is removed afterwards."""
    from sim2real.data import h5
    from sim2real.render.job import run_render

    rcfg = split_render_config(cfg, split)
    labelled = split != "train" or cfg.label_train
    res = SplitResult(split, _final(out, split), rcfg.n_samples, labelled)
    work = out / WORK_DIR / f"{split}.h5"
    r = run_render(rcfg, work, workers=workers, resume=True, show_progress=show_progress, ray=ray, ray_gpus=ray_gpus)
    res.rendered, res.render_seconds, res.platform = r.rendered, r.seconds, r.platform

    t0 = time.perf_counter()
    keys = ["rgb", "depth"] if not labelled else None
    d = h5.read(work, keys=keys)
    seed = rcfg.seed  # sample i's camera depends only on (split seed, i), like its scene
    rgb = apply_camera_effects(d.rgb, cfg.effects, seed, show_progress=show_progress, desc=f"camera {split}",
                               workers=workers)
    depth = apply_depth_noise(d.depth, cfg.effects, seed) if d.depth is not None else None
    arrays: dict = {"rgb": rgb, "depth": depth, "K": d.K}
    provenance = {"stand_in": True, "real_data": False, "made_by": "sim2real make-target", "split": split,
                  "split_seed": seed, "render_source": "sim2real render (pyrender)", "shuffled": not labelled}
    class_names = None
    if labelled:
        arrays.update(mask=d.mask, label=d.label, quat=d.quat, trans=d.trans, model_points=d.model_points,
                      diameters=d.diameters, extents=d.extents, symmetries=d.symmetries)
        class_names = d.class_names
    else:
        # render sample i has class i mod C: stored in render order, the index would give the labels away
        perm = np.random.default_rng([seed, _SEED_TAG]).permutation(len(rgb))
        arrays = {k: (v[perm] if k in ("rgb", "depth") and v is not None else v) for k, v in arrays.items()}
    attrs = h5.make_attrs("target", to_dict(cfg), cfg.seed, split=split, description=DESCRIPTION,
                          provenance=provenance, render_config=to_json(rcfg),
                          object_files=d.attrs.get("object_files", "[]"))
    h5.write(res.path, arrays, attrs, class_names=class_names,
             compression=None if rcfg.compression == "none" else rcfg.compression)
    work.unlink(missing_ok=True)
    res.effects_seconds = time.perf_counter() - t0
    return res


def run_make_target(cfg: MakeTargetConfig, out: str | Path, workers: Optional[int] = None, resume: bool = False,
                    overwrite: bool = False, show_progress: bool = True, ray: Optional[str] = None,
                    ray_gpus: float = 0.0) -> list[SplitResult]:
    """Make the stand-in target domain in folder ``out`` (train.h5, val.h5, test.h5).

    Args:
        cfg: the config.
        out: output folder (created; its parent must exist).
        workers: render processes (None: one per core), or Ray actors with ``ray``; the camera effects run in
            this many local processes (at most one per core).
        ray: None (local processes) or render with Ray actors (``"auto"`` or a cluster address, as
            :func:`~sim2real.render.job.run_render`); one Ray session serves the three splits.
        ray_gpus: GPUs (a fraction) each Ray actor asks for; 0: none.
        resume: finish an interrupted run of the same config (finished splits are kept).
        overwrite: replace existing outputs of make-target in ``out`` (other files there are left alone).

    Raises:
        Sim2RealError: an existing output without resume/overwrite, a config mismatch on resume, or any
            render error (bad objects, photos, no OpenGL).
    """
    out = Path(out)
    if workers is not None and workers < 1:
        raise Sim2RealError(f"--workers: must be >= 1, got {workers}")
    if ray is not None:
        from sim2real.render.ray_pool import require_ray

        require_ray()  # before any output is made
    if cfg.render.background.kind == "photos":
        from sim2real.data.photos import load_photos

        load_photos(cfg.render.background.photos)  # fail before anything is created
    created = not out.exists()
    _prepare_output(out, resume, overwrite)
    try:
        done = {s: resume and _complete(_final(out, s), cfg, s) for s in SPLITS}  # check all before any work
        results = []
        with _ray_session(ray, workers, all(done.values())):
            for split in SPLITS:
                if done[split]:
                    results.append(SplitResult(split, _final(out, split), cfg.count(split), split != "train",
                                               already_complete=True))
                    (out / WORK_DIR / f"{split}.h5").unlink(missing_ok=True)
                    continue
                results.append(make_split(cfg, out, split, workers, show_progress, ray, ray_gpus))
    except BaseException:
        _remove_if_empty(out, created)
        raise
    shutil.rmtree(out / WORK_DIR, ignore_errors=True)
    return results


def _ray_session(ray: Optional[str], workers: Optional[int], nothing_to_do: bool):
    """One Ray connection (or local cluster) for all splits, so it starts once; nothing without ``ray`` or work."""
    import contextlib

    if ray is None or nothing_to_do:
        return contextlib.nullcontext()
    from sim2real.render.ray_pool import session

    return session(ray, num_cpus=workers)


def _remove_if_empty(out: Path, created: bool) -> None:
    """After a failure: drop the work folder (and ``out`` if this run made it) when nothing was saved in them,
    so a failure before any rendering (bad meshes, no OpenGL) leaves no 'interrupted run' behind."""
    work = out / WORK_DIR
    if work.is_dir() and not any(p.is_file() for p in work.rglob("*")):
        shutil.rmtree(work, ignore_errors=True)
    if created and out.is_dir() and not any(out.iterdir()):
        out.rmdir()
