"""Throughput under load: the flight service run by K worker processes, with and without a cache.

A real service runs several worker processes (gunicorn, uWSGI, Celery). This module starts them for
real (``multiprocessing`` with the ``spawn`` method, so the worker function is imported from this
package, as it would be in production) and lets them serve one request stream together:

* ``"no cache"``: every request queries SQLite;
* ``"lru_cache"``: each process keeps its own ``functools.lru_cache``, warmed separately;
* ``"memcached"`` and ``"redis"``: cache-aside through one shared server, so a key computed by one
  process is a hit for all the others.

The stream is dealt round-robin: worker ``i`` of ``K`` serves requests ``i, i+K, i+2K...``. Each run
starts with fresh caches (new key names in the shared servers, new ``lru_cache`` in each process) and
reports its wall time and the backend queries the workers made. Use it as a context manager::

    with LoadTest(lab.servers, lab.prefix, max_workers=8) as test:
        result = test.run("redis", workers=4, requests=stream)

Timings go through :func:`cachelab.timing.measure` in :meth:`LoadTest.measure`. Nothing waits forever:
every exchange with a worker has a timeout, and the workers stop with the context.

In a script (not a notebook), start the test under ``if __name__ == "__main__":``: ``spawn`` imports the
main module again in every worker, and would otherwise run the script's top level eight more times.
"""

from __future__ import annotations

import functools
import multiprocessing
import traceback
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .timing import Timing, measure
from .workers import deal

MODES = ("no cache", "lru_cache", "memcached", "redis")
SHARED_MODES = ("memcached", "redis")
DEFAULT_TTL = 300  # seconds: a crashed run leaves nothing behind for long
REPLY_TIMEOUT = 120.0  # seconds a worker may take to answer one message


class LoadTestError(RuntimeError):
    """A worker failed or did not answer in time: the message carries its traceback."""


@dataclass(frozen=True)
class WorkerReport:
    """What one worker did in one run."""

    served: int
    backend_queries: int
    hits: int


@dataclass(frozen=True)
class RunResult:
    """One run: K workers serving a stream in one mode."""

    mode: str
    workers: int
    requests: int
    seconds: float
    reports: tuple[WorkerReport, ...]

    @property
    def backend_queries(self) -> int:
        return sum(r.backend_queries for r in self.reports)

    @property
    def hits(self) -> int:
        return sum(r.hits for r in self.reports)

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else float("inf")


@dataclass
class Throughput:
    """Repeated runs of one configuration: the wall time as a :class:`Timing`, and every run's counts."""

    mode: str
    workers: int
    requests: int
    timing: Timing
    runs: list[RunResult] = field(default_factory=list)

    @property
    def requests_per_second(self) -> float:
        """At the median wall time."""
        return self.requests / (self.timing.median / 1e9)

    @property
    def backend_queries(self) -> int:
        """Backend queries of the last run (the counts barely vary between runs)."""
        return self.runs[-1].backend_queries


def expected_lru_queries(requests: Sequence, workers: int) -> int:
    """Backend queries of ``"lru_cache"`` mode: each process misses once on every key of its own shard."""
    return sum(len(set(shard)) for shard in deal(requests, workers))


# --------------------------------------------------------------------------- inside a worker process

def _route_key(route) -> str:
    return route.key() if hasattr(route, "key") else "-".join(str(p) for p in route)


def _route_args(route) -> tuple:
    return (route.origin, route.dest, route.month) if hasattr(route, "origin") else tuple(route)


def make_answer(mode: str, service, store=None, ttl: int = DEFAULT_TTL) -> tuple[Callable, object]:
    """The function a worker calls for each request in ``mode``, and what counts its cache hits (``.hits``).

    ``store`` is a :class:`~cachelab.cache_aside.MemcachedStore` or :class:`~cachelab.cache_aside.RedisStore`
    for the shared modes (already prefixed for this run): a :class:`~cachelab.cache_aside.CacheAside` over
    it answers, the same cache-aside as notebooks 05 and 06.
    """
    if mode == "no cache":
        counter = _NoHits()
        return (lambda route: service.route_delay(*_route_args(route))), counter
    if mode == "lru_cache":
        @functools.lru_cache(maxsize=None)  # noqa: UP033 - the lru_cache of notebook 02, unbounded
        def cached(args):
            return service.route_delay(*args)

        counter = _LruHits(cached)
        return (lambda route: cached(_route_args(route))), counter
    if mode in SHARED_MODES:
        from .cache_aside import CacheAside

        if store is None:
            raise ValueError(f"mode {mode!r} needs a store")
        aside = CacheAside(store, lambda route: service.route_delay(*_route_args(route)), ttl=ttl,
                           key_of=_route_key)
        return aside.get, aside
    raise ValueError(f"unknown mode {mode!r}; one of {MODES}")


class _NoHits:
    hits = 0


class _LruHits:
    def __init__(self, cached):
        self._cached = cached

    @property
    def hits(self) -> int:
        return self._cached.cache_info().hits


def _shared_store(mode, endpoints, prefix):
    """The store of a shared mode under ``prefix``, and the client to close after the run."""
    from . import servers as _servers
    from .cache_aside import MemcachedStore, RedisStore

    redis_ep, memcached_ep = endpoints
    found = _servers.Servers(redis_ep, memcached_ep)
    if mode == "memcached":
        # TCP_NODELAY: without it, a get sent right after a set waits for the server's delayed ACK
        # (Nagle's algorithm), tens of milliseconds per miss. redis-py sets it by default.
        client = found.memcached_client(prefix, no_delay=True)
        return MemcachedStore(client), client
    client = found.redis_client()
    return RedisStore(client, prefix), client


def worker_main(conn, db_path: str | None, endpoints) -> None:
    """The loop of one worker process: answer ``run`` messages until ``stop`` (or the parent is gone).

    A ``run`` message is ``("run", mode, shard, prefix, ttl)``. The worker builds its answer function
    (a fresh ``lru_cache``, or a client for the shared server), replies ``("ready",)``, waits for
    ``("go",)``, serves its shard and replies ``("done", served, backend_queries, hits)``.
    """
    from .data import FlightService

    service = None
    try:
        service = FlightService(db_path)
        first = service.routes()[0]
        service.route_delay(first.origin, first.dest, first.month)  # warm the page cache, uncounted
        conn.send(("started",))
        while True:
            try:
                message = conn.recv()
            except EOFError:
                return
            if message[0] == "stop":
                return
            _, mode, shard, prefix, ttl = message
            store, client = _shared_store(mode, endpoints, prefix) if mode in SHARED_MODES else (None, None)
            try:
                answer, counter = make_answer(mode, service, store, ttl)
                conn.send(("ready",))
                if conn.recv()[0] != "go":
                    return
                service.calls = 0
                for route in shard:
                    answer(route)
                if getattr(counter, "store_errors", 0):  # CacheAside fell back to the database: not this mode
                    raise RuntimeError(f"{counter.store_errors} request(s) could not reach the {mode} server")
                conn.send(("done", len(shard), service.calls, counter.hits))
            finally:
                if client is not None:
                    client.close()
    except Exception:  # noqa: BLE001 - reported to the parent, which raises it
        try:
            conn.send(("error", traceback.format_exc()))
        except OSError:
            pass
    finally:
        if service is not None:
            service.close()


# --------------------------------------------------------------------------- the parent side

class LoadTest:
    """A pool of real worker processes serving the flight service (see the module docstring).

    ``servers`` (a :class:`cachelab.servers.Servers`) and ``prefix`` (the notebook's ``lab.prefix``) are
    needed for the shared modes only. Keys go under ``<prefix>load:<run>:``; :meth:`cleanup` (called on
    exit) deletes the prefix's keys, and every key also expires after ``ttl`` seconds.
    """

    def __init__(self, servers=None, prefix: str | None = None, *, max_workers: int = 8,
                 db_path: str | Path | None = None, ttl: int = DEFAULT_TTL, timeout: float = REPLY_TIMEOUT):
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        if servers is not None and (not prefix or not prefix.startswith("cachelab:")):
            raise ValueError("a LoadTest with servers needs the notebook's prefix, like 'cachelab:07_x:'")
        self.servers = servers
        self.prefix = prefix
        self.max_workers = max_workers
        self.db_path = str(db_path) if db_path is not None else None
        self.ttl = ttl
        self.timeout = timeout
        self._procs: list = []
        self._conns: list = []
        self._runs = 0
        self._pending: tuple | None = None
        self.last: RunResult | None = None

    # -- life cycle
    def start(self) -> LoadTest:
        if self._procs:
            return self
        if self.db_path is None:
            from .data import database_path

            self.db_path = str(database_path())  # built once here, not by eight workers at once
        ctx = multiprocessing.get_context("spawn")
        endpoints = (self.servers.redis, self.servers.memcached) if self.servers is not None else (None, None)
        try:
            for _ in range(self.max_workers):
                parent, child = ctx.Pipe()
                proc = ctx.Process(target=worker_main, args=(child, self.db_path, endpoints), daemon=True)
                proc.start()
                child.close()
                self._procs.append(proc)
                self._conns.append(parent)
            for conn in self._conns:
                self._expect(conn, "started")
        except BaseException:
            self.close()
            raise
        return self

    def close(self) -> None:
        """Stop the workers (politely, then by force) and delete this test's keys."""
        for conn in self._conns:
            try:
                conn.send(("stop",))
            except OSError:
                pass
        for proc in self._procs:
            proc.join(timeout=5)
            if proc.is_alive():
                proc.terminate()
                proc.join(timeout=5)
        for conn in self._conns:
            conn.close()
        self._procs, self._conns = [], []
        from .cache_aside import STORE_ERRORS

        try:
            self.cleanup()
        except STORE_ERRORS as exc:  # a server gone mid-test must not hide the error that ended the test
            warnings.warn(f"could not delete the keys under {self.prefix}load: ({exc}); they expire within "
                          f"{self.ttl} s", RuntimeWarning, stacklevel=2)

    def cleanup(self) -> dict[str, int] | None:
        """Delete the keys under this test's prefix (only those) from Redis and memcached."""
        if self.servers is None or self._runs == 0:
            return None
        return self.servers.cleanup(f"{self.prefix}load:")

    def __enter__(self) -> LoadTest:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()

    # -- messages
    def _expect(self, conn, what: str):
        if not conn.poll(self.timeout):
            raise LoadTestError(f"a worker did not answer {what!r} within {self.timeout:.0f} s")
        try:
            message = conn.recv()
        except EOFError:
            raise LoadTestError(f"a worker exited before {what!r}") from None
        if message[0] == "error":
            raise LoadTestError("a worker failed:\n" + message[1])
        if message[0] != what:
            raise LoadTestError(f"expected {what!r} from a worker, got {message[0]!r}")
        return message

    # -- runs
    def prepare(self, mode: str, workers: int, requests: Sequence) -> None:
        """Hand each of ``workers`` processes its shard and fresh caches; return when all are ready."""
        if mode not in MODES:
            raise ValueError(f"unknown mode {mode!r}; one of {MODES}")
        if not 1 <= workers <= self.max_workers:
            raise ValueError(f"workers must be between 1 and {self.max_workers}")
        if mode in SHARED_MODES and self.servers is None:
            raise ValueError(f"mode {mode!r} needs servers: LoadTest(lab.servers, lab.prefix)")
        if not self._procs:
            self.start()
        self._runs += 1
        prefix = f"{self.prefix}load:{self._runs}:" if self.prefix else ""
        conns = self._conns[:workers]
        for conn, shard in zip(conns, deal(requests, workers), strict=True):
            conn.send(("run", mode, shard, prefix, self.ttl))
        for conn in conns:
            self._expect(conn, "ready")
        self._pending = (mode, workers, len(requests))

    def go(self) -> RunResult:
        """Start the prepared run and wait for every worker to finish its shard."""
        import time

        if self._pending is None:
            raise RuntimeError("call prepare() before go()")
        mode, workers, n = self._pending
        self._pending = None
        conns = self._conns[:workers]
        t0 = time.perf_counter()
        for conn in conns:
            conn.send(("go",))
        replies = [self._expect(conn, "done") for conn in conns]
        seconds = time.perf_counter() - t0
        reports = tuple(WorkerReport(served, queries, hits) for _, served, queries, hits in replies)
        self.last = RunResult(mode, workers, n, seconds, reports)
        return self.last

    def run(self, mode: str, workers: int, requests: Sequence) -> RunResult:
        """Serve ``requests`` with ``workers`` processes in ``mode``, from fresh caches: :meth:`prepare`,
        then :meth:`go`. ``seconds`` runs from the start signal to the last worker's reply."""
        self.prepare(mode, workers, requests)
        return self.go()

    def measure(self, mode: str, workers: int, requests: Sequence, *, repeat: int = 3) -> Throughput:
        """Repeated runs of one configuration through :func:`cachelab.timing.measure`: one run per sample,
        the preparation (shards sent, caches made fresh) in the untimed set-up, no extra warm-up run
        (the workers warmed SQLite when they started). Every run's counts are kept."""
        runs: list[RunResult] = []

        def one_run():
            runs.append(self.go())

        timing = measure(one_run, setup=lambda: self.prepare(mode, workers, requests), name=f"{mode} x{workers}",
                         loops=1, repeat=repeat, warmup=0, mode=mode, workers=workers, requests=len(requests))
        return Throughput(mode, workers, len(requests), timing, runs)

    def grid(self, requests: Sequence, *, modes: Sequence[str] = MODES, workers: Sequence[int] = (1, 2, 4, 8),
             repeat: int = 3) -> list[Throughput]:
        """:meth:`measure` for every mode and worker count, in that order."""
        return [self.measure(mode, k, requests, repeat=repeat) for mode in modes for k in workers]
