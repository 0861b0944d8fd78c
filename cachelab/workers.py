"""Real worker processes for the notebooks: the service run by N processes, each with its own cache or
sharing memcached or Redis, and N processes storming one expired key.

Worker functions live here, not in notebook cells, because a process started with ``spawn`` imports the
function it runs by name. Each worker opens its own :class:`~cachelab.data.FlightService` and returns
how many backend queries it made and the latency of each request (:func:`cachelab.timing.time_calls`).
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
from collections.abc import Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

from .data import Route
from .timing import time_calls

MODES = ("local", "memcached")


@dataclass
class WorkersRun:
    """The outcome of :func:`run_workers`: backend queries and per-request latencies (ns) of all workers."""

    mode: str
    workers: int
    backend_calls: int
    latencies_ns: np.ndarray

    @property
    def busy_seconds(self) -> float:
        """Total time spent answering requests, summed over workers."""
        return float(self.latencies_ns.sum() / 1e9)


@contextlib.contextmanager
def worker_pool(processes: int) -> Iterator[ProcessPoolExecutor]:
    """A pool of ``processes`` fresh interpreter processes (``spawn``: nothing inherited from the notebook)."""
    pool = ProcessPoolExecutor(max_workers=processes, mp_context=multiprocessing.get_context("spawn"))
    try:
        list(pool.map(_ready, range(processes)))  # start them all now, not inside a measurement
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _ready(_: int) -> bool:
    from . import data  # noqa: F401 - import the package's modules once, before any timing

    return True


def serve_share(mode: str, routes: Sequence[tuple[str, str, int]], db_path: str,
                nodes: Sequence[tuple[str, int]] | None = None, prefix: str | None = None,
                ttl: float = 300.0) -> dict:
    """One worker's share of a request stream, in this process.

    ``mode='local'``: a fresh ``functools.lru_cache`` of this process only. ``mode='memcached'``:
    cache-aside over a ``HashClient`` on ``nodes`` under ``prefix``, shared by every worker.
    Returns ``{"calls": backend queries, "latencies_ns": [...]}``.
    """
    from .cache_aside import CacheAside, MemcachedStore
    from .data import FlightService

    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    service = FlightService(db_path)
    try:
        if mode == "local":
            answer = functools.lru_cache(maxsize=None)(service.route_delay)
            latencies = time_calls(answer, routes, star=True)
        else:
            from pymemcache.client.hash import HashClient

            from .servers import CONNECT_TIMEOUT, SOCKET_TIMEOUT, JsonSerde

            client = HashClient([tuple(n) for n in nodes], serde=JsonSerde(), key_prefix=prefix.encode(),
                                connect_timeout=CONNECT_TIMEOUT, timeout=SOCKET_TIMEOUT)
            cache = CacheAside(MemcachedStore(client), lambda r: service.ask(r), ttl=ttl, key_of=Route.key)
            try:
                latencies = time_calls(cache.get, [Route(*r) for r in routes])
            finally:
                client.close()
        return {"calls": service.calls, "latencies_ns": latencies.tolist()}
    finally:
        service.close()


def run_workers(pool: Executor, stream: Sequence[Route], workers: int, mode: str, *, db_path,
                nodes: Sequence[tuple[str, int]] | None = None, prefix: str | None = None) -> WorkersRun:
    """Split ``stream`` round-robin over ``workers`` processes of ``pool`` (a load balancer's way) and serve.

    With ``mode='memcached'`` give ``nodes`` and a fresh ``prefix`` (under ``cachelab:``) for each run, so
    that runs do not share cached values.
    """
    if mode == "memcached" and (not nodes or not prefix):
        raise ValueError("mode='memcached' needs nodes and a prefix")
    shares = [[(r.origin, r.dest, r.month) for r in stream[i::workers]] for i in range(workers)]
    futures = [pool.submit(serve_share, mode, share, str(db_path), list(nodes or []), prefix)
               for share in shares]
    outcomes = [f.result() for f in futures]
    latencies = np.concatenate([np.asarray(o["latencies_ns"], dtype=np.float64) for o in outcomes])
    return WorkersRun(mode, workers, sum(o["calls"] for o in outcomes), latencies)


def storm_once(strategy: str, redis_url: str, prefix: str, key: str, db_path: str, *, ttl: float = 60.0,
               start_at: float | None = None) -> dict:
    """One process asks for ``key`` once through a stampede strategy, after waiting for ``start_at``.

    ``strategy`` is ``'unprotected'``, ``'lock'`` or ``'xfetch'``. Returns ``{"calls": backend queries}``.
    Used to prove across processes what the threads prove in one: one computation under the lock.
    """
    import time

    from .data import FlightService
    from .servers import redis_client_for
    from .stampede import LockedRecompute, Unprotected, XFetch

    classes = {"unprotected": Unprotected, "lock": LockedRecompute, "xfetch": XFetch}
    client = redis_client_for(redis_url)
    service = FlightService(db_path)
    try:
        compute = lambda k: service.ask(Route(*k.split("-")[:2], int(k.split("-")[2])))  # noqa: E731
        cache = classes[strategy](client, prefix, compute, ttl=ttl)
        if start_at is not None:
            while time.time() < start_at:  # line the processes up on one instant
                time.sleep(min(0.001, max(0.0, start_at - time.time())))
        cache.get(key)
        return {"calls": service.calls}
    finally:
        service.close()
        client.close()
