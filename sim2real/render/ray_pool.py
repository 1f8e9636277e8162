"""Ray actors as the render job's executor: ``sim2real render/make-target --ray [ADDRESS]`` (docs/render.md).

Each actor makes one :class:`~sim2real.render.worker.ShardRenderer` (meshes uploaded, one GL context) on its first
shard and then renders shard ``k`` on request, returning the arrays; this process (the driver) writes every shard
file (:func:`~sim2real.render.worker.write_shard`), so a cluster needs no shared filesystem: the meshes and photos
travel once through Ray's object store, and only ``sim2real`` (same version) must be installed on its nodes.
Everything around the shards (output checks, the lock, resume, the EGL -> OSMesa fallback, assembly) is the render
job's (:func:`sim2real.render.job.run_render`), the same as for the local pool, and so is the file.

Kill-safe: when an actor dies (its process or node is lost), the shards it had in flight go to a replacement actor;
a shard lost :data:`MAX_SHARD_RETRIES` times ends the run with a one-line error (finished shards are kept, and
``--resume`` renders the rest). A killed driver takes its actors with it (they belong to its Ray job) and resumes
with ``--resume`` like a local render.

Ray is an optional extra (``pip install sim2real[ray]``), imported only here and only when asked for.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
from pathlib import Path

from sim2real.config import to_json
from sim2real.errors import Sim2RealError
from sim2real.render.config import RenderConfig
from sim2real.render.worker import BackendFailed, RenderInputs, ShardRenderer, shard_path, shard_ranges, write_shard

#: How to get Ray, named in every "Ray is missing" error.
INSTALL_HINT = "pip install sim2real[ray]"
#: Shards queued per actor: one rendering and one waiting, so an actor never idles while the driver writes.
IN_FLIGHT = 2
#: Times a shard may be lost with its actor before the run gives up.
MAX_SHARD_RETRIES = 3
#: Most actors a run starts when ``--workers`` is not given (also capped by the cluster's CPUs and the shards to do).
MAX_DEFAULT_ACTORS = 64
#: Test-only fault injection: ``K:MARKER``: an actor about to render shard K exits (``os._exit(1)``) unless the file
#: MARKER exists, which it creates first, so the retry succeeds; ``K`` alone: every time. Passed on to the actors
#: when set in the driver's environment.
FAULT_ENV = "SIM2REAL_TEST_ACTOR_EXIT"


def require_ray():
    """The ``ray`` module, or a one-line :class:`~sim2real.errors.Sim2RealError` naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise Sim2RealError(f"--ray: Ray is not installed; install it with {INSTALL_HINT}") from None
    return ray


def _host_port(address: str) -> tuple[str, int]:
    """``("host", port)`` of ``ray://host:port`` or ``host:port``."""
    rest = address.removeprefix("ray://")
    host, _, port = rest.rpartition(":")
    if not host or not port.isdigit():
        raise Sim2RealError(f"--ray {address}: expected auto, ray://HOST:PORT (Ray Client) or HOST:PORT (the GCS)")
    return host.strip("[]"), int(port)


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail in one line when nothing listens at ``address`` (Ray itself would retry for minutes)."""
    import socket

    host, port = _host_port(address)
    try:
        socket.create_connection((host, port), timeout=timeout_s).close()
    except OSError as e:
        raise Sim2RealError(f"--ray {address}: no Ray cluster answers at {host}:{port} ({e.strerror or e}); start one "
                            "with `ray start --head`, or pass --ray auto for a local one") from None


@contextlib.contextmanager
def session(address: str, num_cpus: int | None = None):
    """Be connected to Ray inside the block; yields the ``ray`` module.

    Args:
        address: ``"auto"``: join the local cluster (``RAY_ADDRESS``, or the latest ``ray start``), else start one
            with ``num_cpus`` CPUs (None: every core) for the block. Otherwise a running cluster's address,
            ``ray://host:10001`` (Ray Client) or ``host:6379``.
        num_cpus: CPUs of a local cluster this call starts.

    An already initialised Ray (the caller's own ``ray.init``, or an enclosing ``session``) is used as it is and
    left running; a connection or a cluster made here is shut down at the end. Ray's start-up logs stay quiet:
    no dashboard, actor output not forwarded (their errors come back as exceptions), logging at ERROR.
    """
    ray = require_ray()
    if ray.is_initialized():
        yield ray
        return
    quiet = {"log_to_driver": False, "logging_level": logging.ERROR}
    if address == "auto":
        try:
            ray.init(address="auto", **quiet)
        except ConnectionError:  # no cluster here: start one for this run
            ray.init(num_cpus=num_cpus or os.cpu_count() or 1, include_dashboard=False, ignore_reinit_error=True,
                     **quiet)
    else:
        _check_reachable(address)
        try:
            ray.init(address=address, **quiet)
        except (ConnectionError, RuntimeError, ValueError) as e:
            raise Sim2RealError(f"--ray {address}: cannot connect to the Ray cluster "
                                f"({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})") from None
    try:
        yield ray
    finally:
        ray.shutdown()


def actor_count(workers: int | None, n_shards: int, gpus: float = 0.0) -> int:
    """How many actors to start for ``n_shards`` shards on the connected cluster.

    ``workers`` (None: the cluster's CPUs, at most :data:`MAX_DEFAULT_ACTORS`, and as many as its GPUs hold at
    ``gpus`` each), never more than the shards. Each actor takes one CPU (and ``gpus``), so a count the cluster
    cannot hold is a one-line error rather than actors that wait for resources forever.
    """
    ray = require_ray()
    res = ray.cluster_resources()
    cpus, n_gpus = int(res.get("CPU", 0)), float(res.get("GPU", 0.0))
    n = workers or min(cpus, MAX_DEFAULT_ACTORS)
    if workers is None and gpus > 0:
        n = min(n, int(n_gpus / gpus + 1e-9))
    n = min(n, n_shards)
    if n < 1 or n > cpus:
        raise Sim2RealError(f"--workers {workers or n}: the Ray cluster has {cpus} CPU(s), one per render actor; "
                            "lower --workers or add nodes")
    if gpus > 0 and n * gpus > n_gpus + 1e-9:
        raise Sim2RealError(f"--ray-gpus {gpus}: {n} actors need {n * gpus:g} GPU(s), the Ray cluster has {n_gpus:g}; "
                            "lower --workers or --ray-gpus")
    return n


class RenderActor:
    """A Ray actor's state (wrapped by ``ray.remote`` in :class:`ActorPool`): one renderer, made on the first shard.

    Args:
        cfg_json: the render config (:func:`~sim2real.config.to_json`).
        distances: (C,) camera distance per class, metres.
        inputs: the meshes and photos (sent once through the object store).
        platform: the PyOpenGL platform; kind: the renderer kind (``pyrender`` or ``fake``).
        env: environment variables set in the actor's process before its renderer is made (``LP_NUM_THREADS``).
            Set here rather than as a Ray ``runtime_env``, which would cost every actor a fresh worker process
            (about a second) instead of one of the workers Ray keeps started.
    """

    def __init__(self, cfg_json: str, distances: list, inputs: RenderInputs, platform: str, kind: str, env: dict):
        self._args = (cfg_json, distances, inputs, platform, kind)
        self._env = env
        self._worker: ShardRenderer | None = None

    def render(self, k: int) -> dict:
        """The arrays of shard ``k``; raises :class:`~sim2real.render.worker.BackendFailed` when no renderer starts."""
        if self._worker is None:
            import json

            import ray

            from sim2real.config import from_dict

            cfg_json, distances, inputs, platform, kind = self._args
            os.environ.update(self._env)  # before OpenGL is loaded (the renderer is made below)
            gpu_ids = ray.get_gpu_ids()
            if gpu_ids:  # pyrender's EGL platform opens device EGL_DEVICE_ID: the GPU Ray gave this actor
                os.environ["EGL_DEVICE_ID"] = str(int(gpu_ids[0]))
            cfg = from_dict(RenderConfig, json.loads(cfg_json), "render config")
            self._worker = ShardRenderer(cfg, distances, inputs, platform, kind)
        _injected_fault(k)
        return self._worker.render(k)


def _injected_fault(k: int) -> None:
    """Tests only (:data:`FAULT_ENV`): die on shard K the first time."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return
    shard, _, marker = spec.partition(":")
    if int(shard) != k:
        return
    if marker:
        if Path(marker).exists():
            return
        Path(marker).touch()
    os._exit(1)


class ActorPool:
    """``n_actors`` render actors of one render job on the connected Ray cluster (inside a :func:`session`).

    Args:
        cfg: the render config; distances: (C,) camera distance per class, metres; inputs: meshes and photos.
        renderer: the renderer kind (``pyrender`` or ``fake``).
        n_actors: actors (:func:`actor_count`); gpus: GPUs each asks for (0: none).
    """

    def __init__(self, cfg: RenderConfig, distances: list, inputs: RenderInputs, renderer: str, n_actors: int,
                 gpus: float = 0.0):
        ray = require_ray()
        self.cfg, self.distances, self.renderer, self.n_actors = cfg, list(distances), renderer, n_actors
        self._ray = ray
        self._inputs = ray.put(inputs)
        # llvmpipe with one thread per actor, as the local pool: the pixels must not depend on the thread count
        self._env = {"LP_NUM_THREADS": os.environ.get("LP_NUM_THREADS", "1")}
        if os.environ.get(FAULT_ENV):
            self._env[FAULT_ENV] = os.environ[FAULT_ENV]
        self._actor_cls = ray.remote(RenderActor).options(num_cpus=1, num_gpus=gpus, max_restarts=0)

    def _spawn(self, platform: str):
        return self._actor_cls.remote(to_json(self.cfg), self.distances, self._inputs, platform, self.renderer,
                                      self._env)

    def run(self, part: Path, todo: list[int], platform: str, bar) -> str | None:
        """The Ray executor: render the shards in ``todo`` and write them into ``part``; ``bar`` counts samples.

        Returns None when all are done, or the message of a renderer that could not start (the job may fall back
        to OSMesa). Raises :class:`~sim2real.errors.Sim2RealError` for a user error in an actor, or a shard lost
        with its actor more than :data:`MAX_SHARD_RETRIES` times.
        """
        ray = self._ray
        from ray.exceptions import RayActorError, RayTaskError

        ranges = shard_ranges(self.cfg.n_samples, self.cfg.shard_size)
        actors = [self._spawn(platform) for _ in range(min(self.n_actors, len(todo)))]
        dead = []
        load = [0] * len(actors)  # shards in flight on each slot's current actor
        pending = collections.deque(todo)
        inflight: dict = {}  # ObjectRef -> (shard, slot, actor)
        lost: collections.Counter = collections.Counter()

        def feed() -> None:
            for slot, a in enumerate(actors):
                while pending and load[slot] < IN_FLIGHT:
                    k = pending.popleft()
                    inflight[a.render.remote(k)] = (k, slot, a)
                    load[slot] += 1

        try:
            feed()
            while inflight:
                [ref], _ = ray.wait(list(inflight), num_returns=1)
                k, slot, actor = inflight.pop(ref)
                current = actors[slot] is actor
                try:
                    arrays = ray.get(ref)
                except RayActorError as e:  # the actor's process (or node) died: redo its shard elsewhere
                    lost[k] += 1
                    if lost[k] > MAX_SHARD_RETRIES:
                        start, stop = ranges[k]
                        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                        raise Sim2RealError(f"render shard {k} (samples {start}-{stop - 1}) was lost with its Ray actor "
                                            f"{lost[k]} times ({why}); finished shards are kept, rerun with --resume") from None
                    pending.appendleft(k)
                    if current:  # the first loss seen from this actor: replace it
                        dead.append(actor)
                        actors[slot], load[slot] = self._spawn(platform), 0
                    feed()
                    continue
                except RayTaskError as e:
                    cause = getattr(e, "cause", None)
                    if isinstance(cause, BackendFailed):
                        return str(cause)
                    if isinstance(cause, Sim2RealError):
                        raise Sim2RealError(str(cause)) from None
                    if isinstance(cause, OSError):
                        raise cause from None
                    raise RuntimeError(f"a render actor crashed:\n{e}") from None
                del ref
                write_shard(shard_path(part, k), arrays)
                bar.update(len(arrays["label"]))
                del arrays
                if current:
                    load[slot] -= 1
                feed()
            return None
        finally:
            for a in actors + dead:
                with contextlib.suppress(Exception):
                    ray.kill(a)
