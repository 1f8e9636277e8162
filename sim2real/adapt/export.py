"""Apply a trained PixelDA generator to a source dataset -> an "adapted" HDF5 file.

Each source sample is adapted ``per_source`` times with independent noise draws z; output sample
``i * per_source + k`` is draw k of source sample i. Labels, poses, masks, depth and the per-class data
(``class_names``, ``model_points``, ``diameters``, ``extents``, ``symmetries``, ``K``) are copied exactly; only ``rgb`` is
G's output. For RGB-D runs G also outputs a depth *channel* (in [-1, 1], relative to the object centre);
it is not converted back to metres: the source's metric depth is copied instead.

Noise: draw j of source sample i is a pure function of (seed, i, j) (:func:`noise`), so the file does not depend on
the batch size, the shard size, the number of workers or an interruption. Work is split in shards of
``shard_size`` source samples, each translated by one worker (:class:`ShardTranslator`: this process, or a Ray actor
with ``ray=``, :mod:`sim2real.ray_shards`) and written by this process to ``OUT.h5.partial/shard_NNNNNN.npz``
(atomic rename), so ``resume=True`` finishes an interrupted export; the final file is assembled from the shards,
validated, and renamed into place, and only then is the partial folder removed.

Batch norm: a PixelDA G trains with batch statistics only, and its running averages are not what it trained with
(:mod:`sim2real.engine.bn`). Before translating, G's running statistics are recomputed from ``bn_batches`` batches
of the source file (the run's batch size; images and z drawn from (seed, a stream of their own), so an export, and
its resume, is reproducible); ``bn_batches=0`` keeps the checkpoint's. Recorded in the provenance.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from sim2real.data import h5
from sim2real.data.tensors import tensor_to_rgb
from sim2real.errors import Sim2RealError
from sim2real.models.loading import load_generator
from sim2real.engine.amp import resolve_speed, to_memory_format
from sim2real.engine.bank import TensorBank
from sim2real.engine.device import resolve_device
from sim2real.utils import progress

PER_SAMPLE_COPY = ("depth", "mask", "label", "quat", "trans")
#: Source samples per shard (a shard file holds their ``per_source`` draws each); any value gives the same file.
SHARD_SIZE = 1024
#: Stream tag of export's noise, next to the seed and the source index: not the renderer's ``(seed, i)`` stream.
NOISE_STREAM = 0x6578
#: How z is drawn, recorded in the file's provenance (and in a resumable job: shards never mix two rules).
NOISE_RULE = (f"z of (source i, draw j) = row j of numpy default_rng([seed, {NOISE_STREAM}, i]).uniform(-1, 1, "
              "(per_source, noise_dim)), as float32")
JOB_FILE = "job.json"
#: Batches averaged for G's batch-norm statistics before export (:func:`recalibrate_generator`).
BN_BATCHES = 200
#: Stream tag of those batches' images and noise.
BN_STREAM = 0x626E


def noise(seed: int, start: int, stop: int, per_source: int, noise_dim: int) -> np.ndarray:
    """The noise z of source samples ``[start, stop)``: float32 ``((stop - start) * per_source, noise_dim)`` in [-1, 1).

    Row ``(i - start) * per_source + j`` is draw j of sample i: row j of
    ``np.random.default_rng([seed, NOISE_STREAM, i]).uniform(-1, 1, (per_source, noise_dim))``. It depends on
    (seed, i, j) only (PCG64 fills row by row, so not on ``per_source`` either), as a render sample depends on
    (seed, i) only.
    """
    z = np.empty(((stop - start) * per_source, noise_dim), np.float32)
    for r, i in enumerate(range(start, stop)):
        rng = np.random.default_rng([int(seed), NOISE_STREAM, int(i)])
        z[r * per_source:(r + 1) * per_source] = rng.uniform(-1.0, 1.0, (per_source, noise_dim))
    return z


#: The provenance's ``batch_norm_statistics`` when G keeps the checkpoint's running averages.
CHECKPOINT_BN_RULE = "none: the checkpoint's running statistics"


def bn_rule(G: torch.nn.Module, batches: int, batch_size: int) -> str:
    """What :func:`recalibrate_generator` does with these arguments, for the provenance and the resumable job."""
    from sim2real.engine.bn import bn_layers

    if batches < 1 or not bn_layers(G):
        return CHECKPOINT_BN_RULE
    return (f"recomputed: the average of {batches} train-mode batches of {batch_size} source images (batch b: "
            f"images and z from numpy default_rng([seed, {BN_STREAM}, b]))")


def recalibrate_generator(G: torch.nn.Module, rgb: np.ndarray, depth: np.ndarray | None, seed: int, batches: int,
                          batch_size: int, device: str) -> None:
    """Recompute G's batch-norm running statistics on ``batches`` batches of ``batch_size`` source images (at most
    the number of images); nothing when :func:`bn_rule` says so.

    Batch b's images (without replacement) and noise come from ``numpy default_rng([seed, BN_STREAM, b])``.
    """
    from sim2real.engine.bn import precise_bn_

    if bn_rule(G, batches, batch_size) == CHECKPOINT_BN_RULE:
        return
    dev = resolve_device(device)
    speed = resolve_speed(dev, amp="fp32")
    bank = TensorBank(rgb=torch.from_numpy(rgb), depth=None if depth is None else torch.from_numpy(depth))
    G.to(dev)

    def forward(b: int) -> None:
        rng = np.random.default_rng([int(seed), BN_STREAM, b])
        idx = torch.from_numpy(np.sort(rng.choice(len(rgb), size=batch_size, replace=False)))
        z = None
        if G.noise_dim > 0:
            z = torch.from_numpy(rng.uniform(-1.0, 1.0, (batch_size, G.noise_dim)).astype(np.float32)).to(dev)
        G(bank.images(idx, dev, speed.channels_last), z)

    precise_bn_(G, batches, forward)
    G.cpu()


class ShardTranslator:
    """G on one device, translating shards of source samples; made once per worker (this process or a Ray actor).

    Args:
        G: the generator (:func:`~sim2real.models.loading.load_generator`), moved to ``device`` here.
        device: ``auto`` / ``cpu`` / ``cuda[:N]``.
        seed: the noise seed; per_source: K draws per source sample; batch_size: images per G call.
    """

    def __init__(self, G: torch.nn.Module, device: str, seed: int, per_source: int, batch_size: int):
        self.dev = resolve_device(device)
        # fp32 on every device: the output is quantised to uint8, and bf16's 8-bit mantissa would cost ~1 level.
        self.speed = resolve_speed(self.dev, amp="fp32")
        self.G = to_memory_format(G.to(self.dev), self.speed).eval()
        self.seed, self.per_source, self.batch_size = int(seed), int(per_source), int(batch_size)

    @torch.no_grad()
    def run(self, k: int, start: int, rgb: np.ndarray, depth: np.ndarray | None) -> np.ndarray:
        """G's images of the source samples ``start, start + 1, ...`` (shard ``k``).

        Args:
            rgb: uint8 ``(n, H, W, 3)`` source images; depth: float32 ``(n, H, W)`` depth channel in [-1, 1]
                (:func:`~sim2real.data.tensors.depth_to_channel`) for RGB-D runs, else None.

        Returns:
            uint8 ``(n * per_source, H, W, 3)``: row ``r * per_source + j`` is draw j of sample ``start + r``.
        """
        bank = TensorBank(rgb=torch.from_numpy(np.ascontiguousarray(rgb)),
                          depth=None if depth is None else torch.from_numpy(np.ascontiguousarray(depth)))
        n, K, nd = len(bank), self.per_source, self.G.noise_dim
        out = np.empty((n * K,) + tuple(rgb.shape[1:3]) + (3,), np.uint8)
        for b0 in range(0, n, self.batch_size):
            b1 = min(n, b0 + self.batch_size)
            x = bank.images(torch.arange(b0, b1), self.dev, self.speed.channels_last)
            z = torch.from_numpy(noise(self.seed, start + b0, start + b1, K, nd)).to(self.dev) if nd > 0 else None
            out[b0 * K:b1 * K] = tensor_to_rgb(self.G(x.repeat_interleave(K, dim=0), z))
        return out


def partial_dir(out: Path) -> Path:
    """``OUT.h5.partial``: the shard folder of an interrupted export (the render job's convention)."""
    return out.with_name(out.name + ".partial")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _lock(folder: Path) -> int:
    """An exclusive ``flock`` on ``folder`` for this export (one export of an output at a time); returns the fd."""
    import fcntl

    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise Sim2RealError(f"{folder}: another export of this output is running; wait for it or stop it") from None
    return fd


def _write_shard(path: Path, rgb: np.ndarray) -> None:
    """The shard file ``{"rgb": rgb}`` (``.npz``), built in memory and written atomically; a full disk is one line
    naming it (and leaves no temporary file)."""
    import io

    from sim2real.outputs import disk_error
    from sim2real.utils import atomic_write_bytes

    buf = io.BytesIO()
    np.savez(buf, rgb=rgb)
    try:
        atomic_write_bytes(path, buf.getbuffer(), suffix=".tmp", what="the export shard")
    except OSError as e:
        err = disk_error(e, path)
        if err is not None:
            raise err from None
        raise


def _same_export(out: Path, provenance: dict, seed: int) -> bool:
    """Whether the existing file ``out`` is this export (run checkpoint, step, source, per_source, seed, noise, G's
    batch-norm statistics)."""
    try:
        attrs = h5.read_attrs(out)
        prov = json.loads(attrs.get("provenance", "{}"))
    except (OSError, ValueError, Sim2RealError):
        return False
    keys = ("checkpoint", "step", "source", "source_n", "per_source", "noise", "batch_norm_statistics")
    return int(attrs.get("seed", -1)) == seed and all(prov.get(key) == provenance[key] for key in keys)


def export_adapted(run_dir: str | Path, source: str | Path, out: str | Path, per_source: int = 1,
                   step: int | str | None = None, batch_size: int = 256, device: str = "auto",
                   seed: int | None = None, resume: bool = False, overwrite: bool = False,
                   shard_size: int = SHARD_SIZE, ray: str | None = None, ray_gpus: float = 0.0,
                   workers: int | None = None, show_progress: bool = True,
                   bn_batches: int = BN_BATCHES) -> dict[str, Any]:
    """Write ``out``: the source samples passed through the run's G (``per_source`` draws each).

    Args:
        run_dir: a ``sim2real adapt`` run folder.
        source: source HDF5 (same image size, and depth for RGB-D runs).
        out: the adapted HDF5 file to write (atomically).
        per_source: K noise draws per source sample (K >= 1).
        step: checkpoint (None = best.pt when the run had --val, else last.pt; "best", "last" or a step number).
        batch_size: images per G call (does not change the file).
        device: ``auto`` / ``cpu`` / ``cuda[:N]`` (this process; Ray actors use a CPU, or a GPU with ``ray_gpus``).
        seed: seeds the noise draws (default: the run's seed); recorded in the file.
        resume: finish an interrupted export of the same inputs from the shards in ``OUT.h5.partial/`` (an
            existing complete ``out`` of the same inputs is kept as it is).
        overwrite: remove an interrupted export's shards first (the caller checks ``out`` itself).
        shard_size: source samples per shard (does not change the file; part of a resumable job).
        ray: None (translate here) or Ray actors: ``"auto"`` (the local Ray cluster, or a new one) or a cluster's
            address (``ray://host:10001``, ``host:6379``); the file is the same as a local export's.
        ray_gpus: GPUs (a fraction) each Ray actor asks for and translates on; 0: CPU actors.
        workers: Ray actors (None: the cluster's CPUs); ignored without ``ray``.
        show_progress: the progress bar (on a terminal).
        bn_batches: batches of source images G's batch-norm statistics are recomputed from first (a PixelDA run;
            0: the checkpoint's running statistics, the behaviour before 2026-12-04).

    Returns:
        ``{"out", "n", "step", "per_source", "checkpoint", "unseen", "translated", "executor", "workers",
        "already_complete", "seconds"}``.
    """
    t0 = time.perf_counter()
    if per_source < 1:
        raise Sim2RealError(f"--per-source {per_source}: expected an integer >= 1")
    if batch_size < 1:
        raise Sim2RealError(f"--batch-size {batch_size}: expected an integer >= 1")
    if shard_size < 1:
        raise Sim2RealError(f"--shard-size {shard_size}: expected an integer >= 1")
    if workers is not None and workers < 1:
        raise Sim2RealError(f"--workers {workers}: expected an integer >= 1")
    if ray_gpus < 0:
        raise Sim2RealError(f"--ray-gpus: must be >= 0, got {ray_gpus}")
    if bn_batches < 0:
        raise Sim2RealError(f"--bn-batches {bn_batches}: expected an integer >= 0")
    if ray is not None:
        from sim2real import ray_shards

        ray_shards.require_ray()  # before any work: a missing extra is a one-line error
    out = Path(out)
    out_dir = out.parent
    if not out_dir.is_dir():
        raise Sim2RealError(f"{out}: the output folder {out_dir} does not exist")
    G, info = load_generator(run_dir, step)
    if per_source > 1 and G.noise_dim == 0:
        raise Sim2RealError(f"--per-source {per_source}: the generator of {run_dir} takes no noise (a {info.get('kind', '?')} "
                            "run is deterministic), so every draw would be the same image; use --per-source 1")
    data = h5.read(source)
    if data.image_size != tuple(info["image_size"]):
        raise Sim2RealError(f"{source}: images are {data.image_size[0]}x{data.image_size[1]}, but the generator in "
                            f"{run_dir} was trained on {info['image_size'][0]}x{info['image_size'][1]} (size mismatch)")
    use_depth = info["use_depth"]
    if use_depth and data.depth is None:
        raise Sim2RealError(f"{source}: has no 'depth' dataset, but the run was trained on RGB-D input")
    # G is class-agnostic: it translates any image of its size. Classes its run never adapted on (other objects, or
    # those left out with train.source_classes) are allowed and named in the provenance: the unseen-class study.
    run_seen = list((info.get("config", {}).get("train", {}) or {}).get("source_classes") or info["class_names"])
    unseen = [c for c in (data.class_names or []) if c not in run_seen]
    seed = info["seed"] if seed is None else int(seed)
    if ray is None:
        resolve_device(device)  # a bad or absent device fails before any work
        actor_device = device
    else:
        actor_device = "cuda" if ray_gpus > 0 else "cpu"
        if device != "auto" and torch.device(device).type != actor_device:
            raise Sim2RealError(f"--device {device}: with --ray the actors translate on "
                                f"{'their GPU (--ray-gpus)' if ray_gpus > 0 else 'a CPU (--ray-gpus 0)'}; "
                                "leave --device out, or set --ray-gpus")
    n, k = len(data), per_source
    from sim2real.adapt.pixelda.config import KIND as PIXELDA_KIND

    # only PixelDA's G: DTN's frozen f and I2I Adapt's shared encoder are not trained on this path alone
    if info.get("kind") != PIXELDA_KIND:
        bn_batches = 0
    bn_batch_size = min(int((info.get("config", {}).get("train", {}) or {}).get("batch_size", 32)), n)
    bn_statistics = bn_rule(G, bn_batches, bn_batch_size)
    provenance = {"run_dir": str(Path(run_dir).resolve()), "checkpoint": str(Path(info["checkpoint"]).resolve()),
                  "step": info["step"],
                  "per_source": k, "source": str(Path(source).resolve()), "source_n": n,
                  "order": "sample i, draw j -> index i * per_source + j", "depth": "copied from the source (metres)",
                  "noise": NOISE_RULE if G.noise_dim > 0 else "none (G takes no noise)",
                  "batch_norm_statistics": bn_statistics,
                  "adapted_on_classes": run_seen, "classes_unseen_in_adaptation": unseen}
    result = {"out": str(out), "n": n * k, "step": info["step"], "per_source": k, "checkpoint": info["checkpoint"],
              "unseen": unseen, "translated": 0, "executor": "local" if ray is None else "ray", "workers": 1,
              "already_complete": False}

    part = partial_dir(out)
    if overwrite:
        if part.exists():
            shutil.rmtree(part)
    elif resume and out.exists():
        if not _same_export(out, provenance, seed):
            raise Sim2RealError(f"{out}: exists, exported from other inputs (use --overwrite to replace it)")
        shutil.rmtree(part, ignore_errors=True)  # a run killed between the rename and the clean-up
        return {**result, "already_complete": True, "workers": 0, "seconds": time.perf_counter() - t0}
    elif part.exists() and not resume:
        raise Sim2RealError(f"{part}: an interrupted export of {out.name} exists (pass --resume to finish it or "
                            "--overwrite to restart)")
    src = Path(source).resolve()
    st = src.stat()
    job = {"checkpoint": provenance["checkpoint"], "checkpoint_sha256": _sha256(Path(info["checkpoint"])),
           "step": info["step"], "source": str(src), "source_bytes": st.st_size, "source_mtime_ns": st.st_mtime_ns,
           "source_n": n, "per_source": k, "seed": seed, "shard_size": shard_size, "noise": provenance["noise"],
           "batch_norm_statistics": bn_statistics}

    from sim2real.data.tensors import depth_to_channel
    from sim2real.render.worker import shard_path, shard_ranges
    from sim2real.utils import atomic_write_text

    rgb_src = np.ascontiguousarray(data.rgb)
    depth_ch = depth_to_channel(data.depth) if use_depth else None
    ranges = shard_ranges(n, shard_size)
    part.mkdir(exist_ok=True)
    lock = _lock(part)
    try:
        for stale in part.glob("*.tmp"):  # half-written shards of a killed run
            stale.unlink(missing_ok=True)
        if (part / JOB_FILE).exists():
            try:
                before = json.loads((part / JOB_FILE).read_text())
            except (OSError, ValueError):
                raise Sim2RealError(f"{part}: unreadable {JOB_FILE} (use --overwrite to restart)") from None
            if before != job:
                what = next(key for key in job if before.get(key) != job[key])
                raise Sim2RealError(f"{part}: the interrupted export had another {what} ({before.get(what)!r}, now "
                                    f"{job[what]!r}); resume with the same inputs, or --overwrite to restart")
        else:
            atomic_write_text(part / JOB_FILE, json.dumps(job, sort_keys=True))
        todo = [s for s in range(len(ranges)) if not shard_path(part, s).exists()]
        done = n - sum(ranges[s][1] - ranges[s][0] for s in todo)
        result["translated"] = (n - done) * k

        def payload(s: int) -> tuple:
            a, b = ranges[s]
            return a, rgb_src[a:b], None if depth_ch is None else depth_ch[a:b]

        if todo:  # G's statistics only when there is something to translate (a finished job needs none)
            recalibrate_generator(G, rgb_src, depth_ch, seed, bn_batches, bn_batch_size,
                                  "auto" if ray is not None else device)
            bar = progress(total=n * k, desc=f"export {out.name}", unit="img", initial=done * k,
                           disable=None if show_progress else True)
            try:
                if ray is None:
                    worker = ShardTranslator(G, actor_device, seed, k, batch_size)
                    for s in todo:
                        _write_shard(shard_path(part, s), worker.run(s, *payload(s)))
                        bar.update((ranges[s][1] - ranges[s][0]) * k)
                else:
                    with ray_shards.session(ray, num_cpus=workers):
                        pool = ray_shards.ShardPool(
                            ShardTranslator, (G.cpu(), actor_device, seed, k, batch_size),
                            ray_shards.actor_count(workers, len(todo), ray_gpus, what="export actor"), ray_gpus,
                            what="export shard", retry_hint="finished shards are kept, rerun with --resume")
                        result["workers"] = pool.n_actors
                        with contextlib.closing(pool.imap(todo, payload)) as done_shards:
                            for s, rgb in done_shards:
                                _write_shard(shard_path(part, s), rgb)
                                bar.update((ranges[s][1] - ranges[s][0]) * k)
            finally:
                bar.close()
        chunks = []
        for s, (a, b) in enumerate(ranges):
            path = shard_path(part, s)
            try:
                with np.load(path) as z:
                    chunk = z["rgb"]
                if chunk.dtype != np.uint8 or chunk.shape != ((b - a) * k,) + rgb_src.shape[1:]:
                    raise ValueError
            except (OSError, ValueError, KeyError, EOFError):
                path.unlink(missing_ok=True)
                raise Sim2RealError(f"{path}: corrupt shard removed; run again with --resume") from None
            chunks.append(chunk)
        arrays: dict[str, np.ndarray] = {"rgb": np.concatenate(chunks)}
        del chunks
        for key in PER_SAMPLE_COPY:
            arr = getattr(data, key)
            if arr is not None:
                arrays[key] = np.repeat(arr, k, axis=0)
        for key in ("K", "model_points", "diameters", "extents", "symmetries"):
            arr = getattr(data, key)
            if arr is not None:
                arrays[key] = arr
        attrs = h5.make_attrs("adapted", info["config"], seed, provenance=json.dumps(provenance, sort_keys=True))
        h5.write(out, arrays, attrs, class_names=data.class_names)
    finally:
        os.close(lock)
    with contextlib.suppress(OSError):
        shutil.rmtree(part)
    return {**result, "seconds": time.perf_counter() - t0}
