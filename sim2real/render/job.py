"""A render job: worker processes, resumable shards, the final HDF5 file.

Crash safety: samples are rendered in shards of ``shard_size``; each shard is written to
``OUT.h5.partial/shard_NNNNNN.npz`` through a temporary file and an atomic rename, so after a kill at any
moment every shard file present is complete and a half-written one is never counted. ``--resume`` renders
the missing shards; the final file is assembled into a temporary file, validated, and renamed into place,
and only then is the partial folder removed. Sample ``i`` depends only on (seed, i), so the result is the
same for any worker count and any interruption.

Shards are drawn by one of two executors running the same worker code
(:class:`~sim2real.render.worker.ShardRenderer`): a pool of local processes that write their shards (default), or
Ray actors on a laptop or a cluster whose shards this process writes (``ray=``, :mod:`sim2real.render.ray_pool`).
Everything else (output checks, the lock, resume, the EGL -> OSMesa fallback, assembly) is this module's, for both.

Workers draw with :func:`~sim2real.render.backend.create_renderer`: the real pyrender renderer unless the caller
asks for the ``"fake"`` test double (``run_render(..., renderer="fake")``), which is recorded in the job folder
and in the file's ``renderer`` attribute, so a file or a resume never mixes the two.
"""

from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import os
import queue
import shutil
import time
import traceback
from pathlib import Path

import numpy as np

from sim2real.config import to_dict, to_json
from sim2real.errors import Sim2RealError
from sim2real.render.backend import DEFAULT_RENDERER, RENDERER_KINDS
from sim2real.render.config import RenderConfig
from sim2real.render.worker import (BackendFailed, ShardRenderer, camera_matrix, load_inputs,  # noqa: F401
                                    render_shard, shard_path, shard_ranges, write_shard)

JOB_FILE = "job.json"


@dataclasses.dataclass
class RenderResult:
    path: Path
    n_samples: int
    rendered: int
    seconds: float
    workers: int
    """Worker processes, or Ray actors (``executor == "ray"``), that drew the missing shards."""
    platform: str
    already_complete: bool = False
    executor: str = "local"
    """``local`` (a pool of processes on this machine) or ``ray`` (Ray actors)."""


def partial_dir(out: Path) -> Path:
    return out.with_name(out.name + ".partial")


# ---------------------------------------------------------------------------------------------
# workers die with their parent; a resume never races a previous run's workers
# ---------------------------------------------------------------------------------------------

#: How long a new run waits for the workers of a killed earlier run of the same output to exit.
LOCK_WAIT_S = 20.0


def _die_with_parent(parent_pid: int) -> None:
    """Make this worker exit when the render process that started it dies (even by kill -9).

    Linux: ``prctl(PR_SET_PDEATHSIG, SIGKILL)``, so the kernel kills the worker with its parent. Everywhere
    (and as a fallback): a daemon thread that watches the parent pid twice a second and exits the process.
    """
    import signal
    import sys
    import threading

    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            PR_SET_PDEATHSIG = 1
            libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        os._exit(1)

    def watch() -> None:
        while True:
            time.sleep(0.5)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="sim2real-parent-watchdog", daemon=True).start()


def _lock_folder(folder: Path, exclusive: bool, wait_s: float = LOCK_WAIT_S) -> int:
    """Open ``folder`` and ``flock`` it (shared or exclusive), waiting up to ``wait_s``; returns the fd.

    The render process and its workers hold shared locks on ``OUT.h5.partial`` while they write shards there; a
    new run of the same output first takes an exclusive lock, so it never counts or removes shards while an
    earlier run (or a worker it left) is still writing.
    """
    import fcntl

    fd = os.open(folder, os.O_RDONLY)
    mode = fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH
    deadline = time.monotonic() + wait_s
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() > deadline:
                os.close(fd)
                raise Sim2RealError(f"{folder}: another render of this output (or a worker of one) is still writing "
                                    f"here after {wait_s:.0f} s; wait for it to finish or stop it") from None
            time.sleep(0.1)


def _wait_for_writers(folder: Path) -> None:
    """Return once no process holds a lock on ``folder`` (no-op if it does not exist)."""
    if folder.is_dir():
        os.close(_lock_folder(folder, exclusive=True))


#: Rough lzf/gzip compression of a render's image-like datasets (black or photo backgrounds), for the space check.
COMPRESSION_RATIO = {"lzf": 0.5, "gzip": 0.35, "none": 1.0}


def estimate_bytes(cfg: RenderConfig, n_samples: int | None = None) -> tuple[int, int]:
    """(bytes of the shard files, bytes of the final HDF5 file) for ``n_samples`` samples (default all), roughly.

    Per sample: rgb H*W*3 (uint8), depth H*W*4 (float32), mask H*W (bool), label, quat, trans. Shards are
    uncompressed ``.npz``; the final file applies :data:`COMPRESSION_RATIO` of the configured compression.
    """
    h, w = cfg.size_hw
    n = cfg.n_samples if n_samples is None else n_samples
    per_sample = h * w * (3 + 4 + 1) + 8 + 16 + 12
    final = int(cfg.n_samples * per_sample * COMPRESSION_RATIO.get(cfg.compression, 1.0))
    return n * per_sample, final


def _check_disk(out: Path, cfg: RenderConfig, todo_samples: int) -> None:
    """Refuse up front when the disk cannot hold the missing shards plus the final file (both exist at the end)."""
    from sim2real.outputs import free_bytes, human_bytes

    shards, final = estimate_bytes(cfg, todo_samples)
    need = shards + final
    free = free_bytes(out.parent if str(out.parent) else Path("."))
    if free is not None and need > free:
        raise Sim2RealError(f"{out}: {todo_samples} samples of {cfg.size_hw[0]}x{cfg.size_hw[1]} need about "
                            f"{human_bytes(need)} of disk ({human_bytes(shards)} of shards + {human_bytes(final)} "
                            f"{cfg.compression} HDF5), but {human_bytes(free)} is free; lower n_samples or free space")


def _worker_main(cfg_json: str, folder: str, distances: list, tasks, results, platform: str,
                 parent_pid: int | None = None, renderer_kind: str = DEFAULT_RENDERER) -> None:
    """Entry point of a worker process: make a :class:`~sim2real.render.worker.ShardRenderer`, then render and write
    the shards from ``tasks`` until None."""
    from sim2real.config import from_dict

    if parent_pid is not None:
        _die_with_parent(parent_pid)
    lock = _lock_folder(Path(folder), exclusive=False, wait_s=0)  # held until the process exits
    try:
        cfg = from_dict(RenderConfig, json.loads(cfg_json), "render config")
        try:
            worker = ShardRenderer(cfg, distances, None, platform, renderer_kind)
        except BackendFailed as e:  # the parent may fall back to OSMesa
            results.put(("backend_failed", str(e)))
            return
        results.put(("ready", None))
        while True:
            k = tasks.get()
            if k is None:
                break
            arrays = worker.render(k)
            write_shard(shard_path(Path(folder), k), arrays)
            results.put(("done", (k, len(arrays["label"]))))
        worker.close()
    except Sim2RealError as e:
        results.put(("user_error", str(e)))
    except OSError as e:  # disk full, read-only: the parent reports it in one line
        results.put(("os_error", (e.errno, e.strerror or str(e), str(e.filename or folder))))
    except BaseException:  # report, the parent decides
        results.put(("crash", traceback.format_exc()))
    finally:
        os.close(lock)


# ---------------------------------------------------------------------------------------------
# parent side
# ---------------------------------------------------------------------------------------------


def _check_output(out: Path, cfg: RenderConfig, resume: bool, overwrite: bool, renderer: str = DEFAULT_RENDERER) -> bool:
    """Validate the output location; returns True when ``out`` is already a complete file of this config (and
    renderer kind)."""
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise Sim2RealError(f"{out}: the output folder {parent} does not exist")
    if not os.access(parent, os.W_OK):
        raise Sim2RealError(f"{out}: the output folder {parent} is not writable")
    part = partial_dir(out)
    if overwrite:
        _wait_for_writers(part)  # a killed run's workers must be gone before its shards are removed
        if out.exists():
            out.unlink()
        if part.exists():
            shutil.rmtree(part)
        return False
    if out.exists():
        if not resume:
            raise Sim2RealError(f"{out}: already exists (pass --resume to complete/keep it or --overwrite to replace it)")
        from sim2real.data import h5

        attrs = h5.read_attrs(out)
        if attrs.get("config") == to_json(cfg):
            drawn_by = attrs.get("renderer", DEFAULT_RENDERER)
            if drawn_by != renderer:
                raise Sim2RealError(f"{out}: exists, drawn by the {drawn_by} renderer, not {renderer} "
                                    "(use --overwrite to replace it)")
            h5.read(out)  # validates
            return True
        raise Sim2RealError(f"{out}: exists with a different config (use --overwrite to replace it)")
    if part.exists():
        if not resume:
            raise Sim2RealError(f"{part}: an interrupted render of {out.name} exists (pass --resume to finish it or --overwrite to restart)")
        try:
            job = json.loads((part / JOB_FILE).read_text())
        except (OSError, ValueError):
            raise Sim2RealError(f"{part}: unreadable {JOB_FILE} (use --overwrite to restart)") from None
        if job.get("config") != to_json(cfg):
            raise Sim2RealError(f"{part}: the interrupted render used a different config (same config to --resume, or --overwrite)")
        drawn_by = job.get("renderer", DEFAULT_RENDERER)
        if drawn_by != renderer:
            raise Sim2RealError(f"{part}: the interrupted render used the {drawn_by} renderer, not {renderer} "
                                "(resume with the same renderer, or --overwrite)")
    return False


def _assemble(out: Path, cfg: RenderConfig, objects: list, K: np.ndarray, renderer: str = DEFAULT_RENDERER) -> None:
    from sim2real.data import h5

    part = partial_dir(out)
    chunks = []
    for k in range(len(shard_ranges(cfg.n_samples, cfg.shard_size))):
        try:
            with np.load(shard_path(part, k)) as z:
                chunks.append({key: z[key] for key in z.files})
        except (OSError, ValueError, EOFError):
            shard_path(part, k).unlink(missing_ok=True)
            raise Sim2RealError(f"{shard_path(part, k)}: corrupt shard removed; run again with --resume") from None
    arrays = {key: np.concatenate([c[key] for c in chunks]) for key in chunks[0]}
    arrays.update({"K": K.astype(np.float32),
                   "model_points": np.stack([o.points for o in objects]).astype(np.float32),
                   "diameters": np.array([o.diameter for o in objects], np.float32),
                   "extents": np.stack([o.extents for o in objects]).astype(np.float32)})
    # the real renderer's files carry no renderer attribute (as before the seam); a test double's always do
    marks = {} if renderer == DEFAULT_RENDERER else {"renderer": renderer}
    attrs = h5.make_attrs("source", to_dict(cfg), cfg.seed,
                          object_files=[str(o.file) for o in objects], **marks)
    from sim2real.render.assets import object_symmetries

    h5.write(out, arrays, attrs, class_names=[o.name for o in objects],
             compression=None if cfg.compression == "none" else cfg.compression,
             symmetries=object_symmetries(objects))  # from the manifest; None (not stored) when it has none
    shutil.rmtree(part, ignore_errors=True)


def run_render(cfg: RenderConfig, out: str | Path, workers: int | None = None, resume: bool = False,
               overwrite: bool = False, show_progress: bool = True, renderer: str = DEFAULT_RENDERER,
               ray: str | None = None, ray_gpus: float = 0.0) -> RenderResult:
    """Render ``cfg.n_samples`` samples into ``out`` (HDF5), with ``workers`` processes (None: one per core).

    Args:
        renderer: ``"pyrender"`` (default: the real renderer) or ``"fake"``, the GL-free test double of
            :mod:`sim2real.render.fake` for testing this job's machinery; a fake file has ``renderer = "fake"``
            in its attributes and its platform (:class:`RenderResult`) is ``"fake"``.
        ray: None (a local process pool) or draw the shards with Ray actors (:mod:`sim2real.render.ray_pool`):
            ``"auto"`` joins the local Ray cluster or starts one, any other value is the address of a running
            cluster (``ray://host:10001``, ``host:6379``). ``workers`` is then the number of actors (None: the
            cluster's CPUs). The file is the same, array for array, as a local render's.
        ray_gpus: GPUs (a fraction, e.g. 0.25) each Ray actor asks for; 0: none (CPU rendering).

    Raises:
        Sim2RealError: bad objects, an existing output without resume/overwrite, a config mismatch on resume,
            a renderer that cannot start on any backend, ``ray`` without Ray installed or without a cluster.
    """
    from sim2real.render.assets import load_objects
    from sim2real.render.sampling import class_distance
    from sim2real.utils import atomic_write_text, progress

    out = Path(out)
    t0 = time.perf_counter()
    if workers is not None and workers < 1:
        raise Sim2RealError(f"--workers: must be >= 1, got {workers}")
    if renderer not in RENDERER_KINDS:
        raise Sim2RealError(f"renderer {renderer!r}: expected one of {', '.join(RENDERER_KINDS)}")
    if ray is not None:
        from sim2real.render import ray_pool

        ray_pool.require_ray()  # before any work: a missing extra is a one-line error
        if ray_gpus < 0:
            raise Sim2RealError(f"--ray-gpus: must be >= 0, got {ray_gpus}")
    if _check_output(out, cfg, resume, overwrite, renderer):
        return RenderResult(out, cfg.n_samples, 0, time.perf_counter() - t0, 0, "", already_complete=True)
    objects = load_objects(cfg.objects, cfg.mesh_units, cfg.classes, cfg.model_points, cfg.seed)
    if cfg.background.kind == "photos":
        from sim2real.data.photos import load_photos

        load_photos(cfg.background.photos)  # fail early on a bad photo source
    K = camera_matrix(cfg)
    distances = [class_distance(cfg, K, o.diameter) for o in objects]
    part = partial_dir(out)
    ranges = shard_ranges(cfg.n_samples, cfg.shard_size)
    if not part.exists():
        _check_disk(out, cfg, cfg.n_samples)
    part.mkdir(exist_ok=True)
    import fcntl

    lock = _lock_folder(part, exclusive=True)  # waits for the workers of a killed earlier run to be gone
    try:
        fcntl.flock(lock, fcntl.LOCK_SH)  # shared from here: this run's workers take it too
        for stale in part.glob("*.tmp"):  # half-written shards of a killed run
            stale.unlink(missing_ok=True)
        if not (part / JOB_FILE).exists():
            job = {"config": to_json(cfg), "n_samples": cfg.n_samples}
            if renderer != DEFAULT_RENDERER:
                job["renderer"] = renderer
            atomic_write_text(part / JOB_FILE, json.dumps(job))
        todo = [k for k in range(len(ranges)) if not shard_path(part, k).exists()]
        done_samples = cfg.n_samples - sum(ranges[k][1] - ranges[k][0] for k in todo)
        _check_disk(out, cfg, cfg.n_samples - done_samples)
        n_workers = min(workers or (os.cpu_count() or 1), max(len(todo), 1), 16)
        from sim2real.render.backend import select_platform_name

        platform = select_platform_name(cfg.backend) if renderer == "pyrender" else renderer
        if todo:
            bar = progress(total=cfg.n_samples, desc=f"render {out.name}", unit="img", initial=done_samples,
                           disable=None if show_progress else True)
            try:
                if ray is None:
                    platform = _with_fallback(cfg, part, todo, platform, renderer, bar, lambda todo, platform: _run_workers(
                        cfg, part, distances, todo, n_workers, platform, bar, renderer))
                else:
                    with ray_pool.session(ray, num_cpus=workers):
                        pool = ray_pool.ActorPool(cfg, distances, load_inputs(cfg, objects), renderer,
                                                  ray_pool.actor_count(workers, len(todo), ray_gpus), ray_gpus)
                        n_workers = pool.n_actors
                        platform = _with_fallback(cfg, part, todo, platform, renderer, bar,
                                                  lambda todo, platform: pool.run(part, todo, platform, bar))
            finally:
                bar.close()
        _assemble(out, cfg, objects, K, renderer)
    finally:
        os.close(lock)
    return RenderResult(out, cfg.n_samples, cfg.n_samples - done_samples, time.perf_counter() - t0, n_workers, platform,
                        executor="local" if ray is None else "ray")


def _with_fallback(cfg: RenderConfig, part: Path, todo: list[int], platform: str, renderer: str, bar, execute) -> str:
    """Render the shards in ``todo`` with ``execute(todo, platform)``; returns the platform that drew them.

    ``execute`` is an executor (the local pool, or Ray actors): it returns None once every shard is on disk, or the
    message of a renderer that could not start. Then, under ``backend: auto`` with no ``PYOPENGL_PLATFORM`` set by
    the user, EGL falls back to OSMesa for the shards still missing; otherwise it is a one-line error.
    """
    while True:
        failed = execute(todo, platform)
        if failed is None:
            return platform
        if renderer != "pyrender":
            raise RuntimeError(f"the {renderer} renderer failed to start: {failed}")
        explicit = "PYOPENGL_PLATFORM" in os.environ  # the parent never sets it: only a user does
        if platform == "egl" and cfg.backend == "auto" and not explicit:
            bar.write(f"render: EGL is unavailable ({failed}); falling back to OSMesa")
            platform = "osmesa"
            todo = [k for k in todo if not shard_path(part, k).exists()]
            continue
        raise Sim2RealError(f"{platform}: cannot create an OpenGL context ({failed}); install the EGL/Mesa libraries "
                            "(Debian: libegl1 libegl-mesa0 libgl1-mesa-dri libosmesa6) or set PYOPENGL_PLATFORM")


def _run_workers(cfg: RenderConfig, part: Path, distances: list, todo: list[int], n_workers: int, platform: str, bar,
                 renderer: str = DEFAULT_RENDERER) -> str | None:
    """The local executor: render the shards in ``todo`` with ``n_workers`` processes that write them.

    Returns None when all are done, or the message of a renderer that could not start (:func:`_with_fallback`).
    """
    ctx = mp.get_context("spawn")
    # llvmpipe (Mesa's CPU rasteriser): one thread per worker. Parallelism comes from worker processes, and
    # the pixels must not depend on the thread count (a multi-threaded llvmpipe can differ in the last bit).
    env_backup = os.environ.get("LP_NUM_THREADS")
    if env_backup is None:
        os.environ["LP_NUM_THREADS"] = "1"
    try:
        tasks, results = ctx.Queue(), ctx.Queue()
        for k in todo:
            tasks.put(k)
        for _ in range(n_workers):
            tasks.put(None)
        procs = [ctx.Process(target=_worker_main, args=(to_json(cfg), str(part), distances, tasks, results, platform,
                                                         os.getpid(), renderer),
                             daemon=True) for _ in range(n_workers)]
        for p in procs:
            p.start()
        try:
            failed = _collect(procs, results, len(todo), bar)
        except BaseException:
            for p in procs:
                p.terminate()
            raise
        for p in procs:
            p.join(timeout=10)
        return failed
    finally:
        if env_backup is None:
            os.environ.pop("LP_NUM_THREADS", None)


def _collect(procs: list, results, n_tasks: int, bar) -> str | None:
    """Wait for ``n_tasks`` shards; returns a backend failure message, or None when all are done."""
    finished = 0
    while finished < n_tasks:
        try:
            kind, payload = results.get(timeout=1.0)
        except queue.Empty:
            if not any(p.is_alive() for p in procs):
                codes = [p.exitcode for p in procs]
                raise Sim2RealError(f"render workers exited unexpectedly (exit codes {codes}); finished shards are kept, rerun with --resume")
            continue
        if kind == "done":
            finished += 1
            bar.update(payload[1])
        elif kind == "backend_failed":
            for p in procs:
                p.terminate()
            return payload
        elif kind == "user_error":
            raise Sim2RealError(payload)
        elif kind == "os_error":
            for p in procs:
                p.terminate()
            raise OSError(*payload)
        elif kind == "crash":
            raise RuntimeError(f"a render worker crashed:\n{payload}")
    return None
