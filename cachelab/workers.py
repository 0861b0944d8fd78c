"""Real worker processes for the notebooks: the one harness the package has for code in other processes.

* :func:`in_fresh_process`: one call in a brand-new Python process, and its result;
* :func:`worker_pool` and :func:`deal`: N processes, and a request stream dealt round-robin over them,
  as a load balancer would;
* :func:`serve_share` and :func:`run_workers`: the flight service run by N processes, each with its own
  cache or sharing memcached.

Worker functions live in modules, not in notebook cells, because a process started with ``spawn``
imports the function it runs by name. Each worker opens its own :class:`~cachelab.data.FlightService`
(its own SQLite connection) and returns how many backend queries it made and the latency of each request
(:func:`cachelab.timing.time_calls`).
"""

from __future__ import annotations

import contextlib
import functools
import multiprocessing
from collections.abc import Callable, Iterator, Sequence
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


def in_fresh_process(func: Callable, *args, timeout: float = 120.0):
    """``func(*args)`` run in a brand-new Python process (``spawn``), and its result.

    ``func`` must be importable by name (a function of a module, not one defined in a notebook),
    because the new process imports it. Raises ``TimeoutError`` after ``timeout`` seconds.
    """
    pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"))
    try:
        result = pool.submit(func, *args).result(timeout=timeout)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)  # never wait on a worker that misbehaved
        raise
    pool.shutdown(wait=True)
    return result


def deal(requests: Sequence, workers: int) -> list[list]:
    """Round-robin shards of a request stream: worker ``i`` of ``workers`` gets ``requests[i::workers]``."""
    if isinstance(workers, bool) or not isinstance(workers, int):
        raise TypeError(f"workers must be an integer, not {type(workers).__name__}")
    if workers < 1:
        raise ValueError(f"workers must be at least 1, not {workers}")
    return [list(requests[i::workers]) for i in range(workers)]


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
            from .servers import memcached_client_for

            client = memcached_client_for([tuple(n) for n in nodes], prefix)
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
    shares = [[(r.origin, r.dest, r.month) for r in share] for share in deal(stream, workers)]
    futures = [pool.submit(serve_share, mode, share, str(db_path), list(nodes or []), prefix)
               for share in shares]
    outcomes = [f.result() for f in futures]
    latencies = np.concatenate([np.asarray(o["latencies_ns"], dtype=np.float64) for o in outcomes])
    return WorkersRun(mode, workers, sum(o["calls"] for o in outcomes), latencies)
