"""Ray actors for the data stages after rendering: ``export --ray`` and ``import-bop --ray`` (docs/scaling.md).

The design of :mod:`sim2real.render.ray_pool`, for any work that splits into shards: each actor makes one worker
(``make_worker(*args)``: a generator loaded on its device, a BOP reader) on its first shard and keeps it for all the
shards it is sent; the driver (this process) sends shard ``k``'s inputs with the request and gets its arrays back, so
a cluster needs no shared file system: ``args`` travel once through Ray's object store, each shard's inputs with its
request, and only ``sim2real`` (same version) must be installed on the nodes. What the driver does with a shard
(write it for ``--resume``, or keep it in memory) is the caller's.

Kill-safe: when an actor dies (its process or node is lost), the shards it had in flight go to a replacement actor;
a shard lost :data:`MAX_SHARD_RETRIES` times ends the run with a one-line error. A killed driver takes its actors
with it (they belong to its Ray job).

Connecting (:func:`~sim2real.render.ray_pool.session`), the "Ray is missing" error
(:func:`~sim2real.render.ray_pool.require_ray`) and the test-only fault injection
(:data:`~sim2real.render.ray_pool.FAULT_ENV`) are the render executor's, so every ``--ray`` behaves alike. Ray is an
optional extra (``pip install sim2real[ray]``), imported only when asked for.
"""

from __future__ import annotations

import collections
import contextlib
import os
from typing import Any, Callable, Iterator, Sequence

from sim2real.errors import Sim2RealError
from sim2real.render.ray_pool import FAULT_ENV, INSTALL_HINT, _injected_fault, require_ray, session  # noqa: F401 (re-exported)

#: Shards queued per actor: one working and one waiting, so an actor never idles while the driver handles a result.
IN_FLIGHT = 2
#: Times a shard may be lost with its actor before the run gives up.
MAX_SHARD_RETRIES = 3
#: Most actors a run starts when ``--workers`` is not given (also capped by the cluster's CPUs and the shards to do).
MAX_DEFAULT_ACTORS = 64


def actor_count(workers: int | None, n_shards: int, gpus: float = 0.0, what: str = "actor") -> int:
    """How many actors to start for ``n_shards`` shards on the connected cluster.

    ``workers`` (None: the cluster's CPUs, at most :data:`MAX_DEFAULT_ACTORS`, and as many as its GPUs hold at
    ``gpus`` each), never more than the shards. Each actor takes one CPU (and ``gpus``), so a count the cluster
    cannot hold is a one-line error (``what`` names the actors in it) rather than actors that wait forever.
    """
    ray = require_ray()
    if workers is not None and workers < 1:
        raise Sim2RealError(f"--workers: must be >= 1, got {workers}")
    if gpus < 0:
        raise Sim2RealError(f"--ray-gpus: must be >= 0, got {gpus}")
    res = ray.cluster_resources()
    cpus, n_gpus = int(res.get("CPU", 0)), float(res.get("GPU", 0.0))
    n = workers or min(cpus, MAX_DEFAULT_ACTORS)
    if workers is None and gpus > 0:
        n = min(n, int(n_gpus / gpus + 1e-9))
    n = max(min(n, n_shards), 1)
    if n > cpus:
        raise Sim2RealError(f"--workers {n}: the Ray cluster has {cpus} CPU(s), one per {what}; "
                            "lower --workers or add nodes")
    if gpus > 0 and n * gpus > n_gpus + 1e-9:
        raise Sim2RealError(f"--ray-gpus {gpus:g}: {n} actors need {n * gpus:g} GPU(s), the Ray cluster has "
                            f"{n_gpus:g}; lower --workers or --ray-gpus")
    return n


class ShardActor:
    """A Ray actor's state (wrapped by ``ray.remote`` in :class:`ShardPool`): one worker, made on the first shard.

    Args:
        make_worker: ``make_worker(*args)`` -> an object with ``run(k, *payload)`` (a class, or a module-level
            function: it is pickled by reference, so ``sim2real`` must be importable on the node).
        env: environment variables set in the actor's process before the worker is made.
        args: the worker's arguments (Ray resolves object references given here).
    """

    def __init__(self, make_worker: Callable, env: dict, *args: Any):
        self._make, self._env, self._args = make_worker, env, args
        self._worker = None

    def run(self, k: int, *payload: Any) -> Any:
        """The result of shard ``k``: ``worker.run(k, *payload)``."""
        if self._worker is None:
            os.environ.update(self._env)
            self._worker = self._make(*self._args)
        _injected_fault(k)
        return self._worker.run(k, *payload)


class ShardPool:
    """``n_actors`` actors of one job on the connected Ray cluster (inside a :func:`session`).

    Args:
        make_worker, args: what each actor makes once (:class:`ShardActor`); ``args`` are put in the object
            store once and shared by every actor (and its replacements).
        n_actors: actors (:func:`actor_count`); gpus: GPUs each asks for (0: none).
        what: the shard's name in errors (``"export shard"``); retry_hint: what to do after a lost shard.
        env: environment variables for the actors' processes (the test-only fault injection is passed on).
    """

    def __init__(self, make_worker: Callable, args: Sequence[Any], n_actors: int, gpus: float = 0.0,
                 what: str = "shard", retry_hint: str = "rerun", env: dict | None = None):
        ray = require_ray()
        self._ray = ray
        self.n_actors, self.what, self.retry_hint = n_actors, what, retry_hint
        self._make = make_worker
        self._args = [ray.put(a) for a in args]
        self._env = dict(env or {})
        if os.environ.get(FAULT_ENV):
            self._env[FAULT_ENV] = os.environ[FAULT_ENV]
        self._actor_cls = ray.remote(ShardActor).options(num_cpus=1, num_gpus=gpus, max_restarts=0)

    def _spawn(self):
        return self._actor_cls.remote(self._make, self._env, *self._args)

    def imap(self, todo: Sequence[int], payload: Callable[[int], tuple]) -> Iterator[tuple[int, Any]]:
        """Run the shards in ``todo``; yields ``(k, result)`` as each finishes (in no fixed order).

        ``payload(k)`` gives shard ``k``'s inputs (made when the shard is sent, so only the shards in flight are
        in memory). Closing the iterator early (the caller stops, or raises) kills the actors.

        Raises:
            Sim2RealError: a user error in an actor (its one line), or a shard lost with its actor more than
                :data:`MAX_SHARD_RETRIES` times.
        """
        ray = self._ray
        from ray.exceptions import RayActorError, RayTaskError

        actors = [self._spawn() for _ in range(min(self.n_actors, len(todo)))]
        dead: list = []
        load = [0] * len(actors)  # shards in flight on each slot's current actor
        pending = collections.deque(todo)
        inflight: dict = {}  # ObjectRef -> (shard, slot, actor)
        lost: collections.Counter = collections.Counter()

        def feed() -> None:
            for slot, a in enumerate(actors):
                while pending and load[slot] < IN_FLIGHT:
                    k = pending.popleft()
                    inflight[a.run.remote(k, *payload(k))] = (k, slot, a)
                    load[slot] += 1

        try:
            feed()
            while inflight:
                [ref], _ = ray.wait(list(inflight), num_returns=1)
                k, slot, actor = inflight.pop(ref)
                current = actors[slot] is actor
                try:
                    result = ray.get(ref)
                except RayActorError as e:  # the actor's process (or node) died: redo its shard elsewhere
                    lost[k] += 1
                    if lost[k] > MAX_SHARD_RETRIES:
                        why = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                        raise Sim2RealError(f"{self.what} {k} was lost with its Ray actor {lost[k]} times ({why}); "
                                            f"{self.retry_hint}") from None
                    pending.appendleft(k)
                    if current:  # the first loss seen from this actor: replace it
                        dead.append(actor)
                        actors[slot], load[slot] = self._spawn(), 0
                    feed()
                    continue
                except RayTaskError as e:
                    cause = getattr(e, "cause", None)
                    if isinstance(cause, Sim2RealError):
                        raise Sim2RealError(str(cause)) from None
                    if isinstance(cause, OSError):
                        raise cause from None
                    raise RuntimeError(f"a Ray actor crashed on {self.what} {k}:\n{e}") from None
                del ref
                if current:
                    load[slot] -= 1
                feed()  # before handing the result over: the actors keep working meanwhile
                yield k, result
                del result
        finally:
            for a in actors + dead:
                with contextlib.suppress(Exception):
                    ray.kill(a)
