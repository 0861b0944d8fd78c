"""Real worker processes for the notebooks: the one harness the package has for code in other processes.

* :func:`in_fresh_process`: one call in a brand-new Python process, and its result;
* :func:`worker_pool` and :func:`deal`: N processes, and a request stream dealt round-robin over them,
  as a load balancer would;
* :func:`serve_share` and :func:`run_workers`: the flight service run by N processes, each with its own
  cache or sharing memcached;
* :func:`run_together`: one call in each of N processes, all released at the same instant (two processes
  missing the same key at once), optionally pinned to chosen CPUs (:func:`usable_cpus`);
* :func:`hot_key_share` and :func:`run_hot_key`: N processes asking for one hot key at a steady rate
  through a stampede strategy of :mod:`cachelab.stampede`, each with its own database and cache
  connection; every request's latency and every recomputation are recorded (:class:`HotKeyRun`);
* :func:`near_cache_reader`: a process that reads one key through a :class:`~cachelab.near_cache.NearCache`
  and records what it saw, for invalidation across processes.

Worker functions live in modules, not in notebook cells, because a process started with ``spawn``
imports the function it runs by name. Each worker opens its own :class:`~cachelab.data.FlightService`
(its own SQLite connection) and returns how many backend queries it made and the latency of each request
(:func:`cachelab.timing.time_calls`).
"""

from __future__ import annotations

import contextlib
import functools
import gc
import importlib
import multiprocessing
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from .data import Route
from .keys import check_prefix
from .timing import time_calls

MODES = ("local", "memcached")
PRELOAD = ("cachelab.data", "cachelab.stampede", "cachelab.near_cache", "cachelab.servers", "redis", "pymemcache")


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


def usable_cpus() -> list[int]:
    """The CPUs this process may run on: its affinity mask where the system has one (Linux), else all."""
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def can_pin() -> bool:
    """Whether worker processes can be confined to chosen CPUs here (``os.sched_setaffinity``, Linux)."""
    return hasattr(os, "sched_setaffinity")


class WorkerPool(ProcessPoolExecutor):
    """A ``ProcessPoolExecutor`` of fresh interpreters that knows the process id of each of its workers."""

    pids: tuple[int, ...] = ()


@contextlib.contextmanager
def worker_pool(processes: int, *, preload: Sequence[str] = PRELOAD) -> Iterator[WorkerPool]:
    """A pool of ``processes`` fresh interpreter processes (``spawn``: nothing inherited from the notebook).

    Every process is started now, not inside a measurement, and imports the modules of ``preload`` first
    (add the module of any function you will run in it): a worker that imports a module on its first task
    would start that task late. The pool's ``pids`` lists its processes.
    """
    pool = WorkerPool(max_workers=processes, mp_context=multiprocessing.get_context("spawn"))
    try:
        start_at = time.time() + 1.0
        ready = [pool.submit(_ready, start_at, tuple(preload)) for _ in range(processes)]
        pids = {f.result(timeout=120) for f in ready}
        while len(pids) < processes:  # a slow start: one process took two of the tasks; try again
            start_at = time.time() + 2.0
            ready = [pool.submit(_ready, start_at, tuple(preload)) for _ in range(processes)]
            pids = {f.result(timeout=120) for f in ready}
        pool.pids = tuple(sorted(pids))
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _ready(start_at: float, modules: tuple[str, ...]) -> int:
    for name in modules:
        importlib.import_module(name)  # import the package's modules once, before any timing
    _sleep_until(start_at)  # each process holds its task until then, so every process takes one
    return os.getpid()


def _sleep_until(when: float) -> None:
    while True:
        left = when - time.time()
        if left <= 0:
            return
        time.sleep(min(left, 0.05) if left > 0.002 else 0)  # the last 2 ms: spin on the clock


def _at(start_at: float, func: Callable, args: tuple, cpus: Sequence[int] | None) -> dict:
    """In a worker: pin to ``cpus``, wait for ``start_at`` (wall clock, shared by processes), call ``func``."""
    pinned = cpus is not None and can_pin()
    before = os.sched_getaffinity(0) if pinned else None
    if pinned:
        os.sched_setaffinity(0, set(cpus))
    try:
        _sleep_until(start_at)
        late = time.time() - start_at
        return {"pid": os.getpid(), "late_s": late, "result": func(*args)}
    finally:
        if pinned:
            os.sched_setaffinity(0, before)


def run_together(pool: Executor, func: Callable, calls: Sequence[tuple], *, start_in: float = 0.3,
                 start_at: float | None = None, cpus: Sequence[int] | None = None,
                 timeout: float = 120.0) -> list:
    """``func(*args)`` for each ``args`` of ``calls``, each in its own process of ``pool``, all at one instant.

    The processes wait for the same moment of the wall clock (``start_at``, or ``start_in`` seconds from
    now) and are then released together, as requests that arrive at once would be. With ``cpus``, each
    process runs on those CPUs only for the call (``os.sched_setaffinity``, where it exists). ``func`` must be
    importable by name. Raises ``RuntimeError`` if two calls ran in one process (give the pool at least
    ``len(calls)`` processes) and ``TimeoutError`` after ``timeout`` seconds. Returns the results in order.
    """
    futures = start_together(pool, func, calls, start_in=start_in, start_at=start_at, cpus=cpus)
    return collect(futures, timeout=timeout)


def start_together(pool: Executor, func: Callable, calls: Sequence[tuple], *, start_in: float = 0.3,
                   start_at: float | None = None, cpus: Sequence[int] | None = None) -> list:
    """The first half of :func:`run_together`: submit the calls and return their futures at once.

    For a notebook that acts while the processes run (writes a value, pauses a process); then
    :func:`collect` the results.
    """
    when = start_at if start_at is not None else time.time() + start_in
    return [pool.submit(_at, when, func, tuple(args), None if cpus is None else list(cpus)) for args in calls]


def collect(futures: Sequence, *, timeout: float = 120.0) -> list:
    """The results of :func:`start_together`'s futures, in order, checking that each ran in its own process."""
    outcomes = [f.result(timeout=timeout) for f in futures]
    pids = [o["pid"] for o in outcomes]
    if len(set(pids)) != len(pids):
        raise RuntimeError(f"{len(pids)} calls ran in {len(set(pids))} processes: a pool of at least "
                           f"{len(pids)} processes is needed for them to run at once")
    return [o["result"] for o in outcomes]


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


# --------------------------------------------------------------------------- a hot key, many processes

def strategy_in_process(spec: dict, compute: Callable[[str], object]):
    """The stampede strategy ``spec`` describes, with this process's own connection to its cache.

    ``spec``: ``strategy`` (a name of :data:`cachelab.stampede.STRATEGIES`), ``prefix``, ``options`` (the
    strategy's keyword arguments, ``ttl`` among them) and either ``redis_url`` or ``memcached`` (the
    ``(host, port)`` of the node that holds the key, for ``"memcached lease"``).
    """
    from . import stampede

    cls = stampede.STRATEGIES[spec["strategy"]]
    if cls is stampede.MemcachedLease:
        client = stampede.MetaClient(tuple(spec["memcached"]), written_prefix=spec["prefix"])
    else:
        from .servers import redis_client_for

        client = redis_client_for(spec["redis_url"])
    return cls(client, spec["prefix"], compute, **spec["options"])


def _outcome(before: dict, after: dict) -> str:
    """What one request did, from the strategy's counters before and after it."""
    for name, label in (("hits", "hit"), ("stale_hits", "stale"), ("waits", "waited"), ("computes", "computed"),
                        ("misses", "missed")):  # in this order: a background refresh only adds to computes
        if after.get(name, 0) > before.get(name, 0):
            return label
    return "hit"


def hot_key_share(spec: dict, key: str, route: tuple[str, str, int], db_path: str, start_at: float | None,
                  duration: float, interval: float, barrier: str | None = None) -> dict:
    """One worker of a stampede run: ask for ``key`` once every ``interval`` s for ``duration`` s.

    The requests go through the strategy of ``spec`` (:func:`strategy_in_process`); a recomputation is a
    real query of ``route`` on this process's own :class:`~cachelab.data.FlightService`. Before ``start_at``
    the process opens its connections and runs the query once, as a worker that has served for a while
    has (a first command opens the connection, a first query warms SQLite's page cache), so that neither
    lands in a measured request. Arrivals follow a fixed schedule from ``start_at``: a request that took
    longer than ``interval`` delays the next one, as a busy worker would. With ``barrier`` (a key under the
    spec's prefix, for :func:`run_hot_key`), the process says it is ready on that Redis list and takes
    ``start_at`` from the parent once every process is (``start_at`` is then ``None``). Returns the start of
    each request (s from ``start_at``), its latency (ns) and its outcome (``hit``, ``stale``, ``computed``,
    ``waited``, ``missed``), the start and end of each recomputation, and this process's backend queries in
    the run.
    """
    from .data import FlightService

    service = FlightService(db_path)
    asked = Route(*route)
    computes: list[tuple[float, float]] = []

    def compute(_key: str):
        began = time.time()
        value = service.ask(asked)
        computes.append((began - start_at, time.time() - start_at))
        return value

    cache = strategy_in_process(spec, compute)
    _warm_up(cache, service, asked)
    if barrier is not None:
        start_at = _start_from_parent(spec["redis_url"], barrier)
    calls_before = service.calls
    _sleep_until(start_at)
    starts, latencies, outcomes = [], [], []
    clock = time.perf_counter_ns
    gc_was_enabled = gc.isenabled()
    gc.disable()  # as timeit does: a collection would land in one request's latency
    try:
        deadline, arrivals = start_at + duration, int(round(duration / interval))
        for i in range(arrivals):
            next_at, now = start_at + i * interval, time.time()
            if now >= deadline:
                break
            if now < next_at:
                time.sleep(next_at - now)  # the gap between arrivals: part of no request's latency
            before = cache.counters()
            began, t0 = time.time(), clock()
            cache.get(key)
            latencies.append(clock() - t0)
            starts.append(began - start_at)
            outcomes.append(_outcome(before, cache.counters()))
    finally:
        if gc_was_enabled:
            gc.enable()
        cache.close()  # background refreshes finish before the counts are read
        with contextlib.suppress(Exception):
            cache.client.close()
        service.close()
    return {"pid": os.getpid(), "starts": starts, "latencies_ns": latencies, "outcomes": outcomes,
            "computes": computes, "calls": service.calls - calls_before}


BARRIER_TIMEOUT = 120.0
"""How long the processes of a hot-key run and their parent wait for each other at its start, at most (s)."""


def _start_from_parent(redis_url: str, barrier: str) -> float:
    """In a worker: say this process is ready (``RPUSH <barrier>:ready``), then wait for the start time its
    parent pushes once every process is (``BLPOP <barrier>:go``, in steps shorter than the socket timeout)."""
    from .servers import redis_client_for

    client = redis_client_for(redis_url)
    try:
        client.rpush(f"{barrier}:ready", os.getpid())
        deadline = time.monotonic() + BARRIER_TIMEOUT
        while time.monotonic() < deadline:
            got = client.blpop([f"{barrier}:go"], timeout=1)
            if got is not None:
                return float(got[1])
        raise TimeoutError(f"no start time from the parent of this hot-key run after {BARRIER_TIMEOUT:.0f} s")
    finally:
        client.close()


def _warm_up(cache, service, route: Route) -> None:
    """Open the strategy's connection (one harmless command) and warm this process's SQLite connection."""
    from . import stampede

    if isinstance(cache.client, stampede.MetaClient):
        cache.client.get(cache.prefix + "warm-up")
    else:
        cache.client.ping()
    service.ask(route)


@dataclass
class HotKeyRun:
    """Every request and every recomputation of one stampede run (:func:`run_hot_key`)."""

    strategy: str
    workers: int
    ttl: float
    duration: float
    starts: np.ndarray  # seconds from the start of the run
    latencies_ns: np.ndarray
    outcomes: np.ndarray  # "hit", "stale", "computed", "waited", "missed"
    worker_of: np.ndarray
    compute_spans: list[tuple[float, float]] = field(default_factory=list)  # (start, end), sorted
    backend_calls: int = 0

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ns, q))

    def episodes(self, gap: float | None = None) -> list[list[tuple[float, float]]]:
        """The recomputations grouped by expiry: a gap of more than ``gap`` (half the TTL) starts a new group."""
        gap = self.ttl / 2 if gap is None else gap
        groups: list[list[tuple[float, float]]] = []
        for span in self.compute_spans:
            if groups and span[0] - groups[-1][-1][0] <= gap:
                groups[-1].append(span)
            else:
                groups.append([span])
        return groups

    def computes_per_expiry(self) -> list[int]:
        """How many recomputations each expiry (each group of :meth:`episodes`) cost the backend."""
        return [len(group) for group in self.episodes()]

    def count(self, outcome: str) -> int:
        return int((self.outcomes == outcome).sum())


def run_hot_key(pool: Executor, spec: dict, *, workers: int, key: str, route: Route, db_path,
                duration: float, interval: float, start_in: float = 0.3, cpus: Sequence[int] | None = None,
                prime: Callable[[float], object] | None = None) -> HotKeyRun:
    """``workers`` processes of ``pool`` ask for one hot key through the strategy of ``spec`` (see
    :func:`strategy_in_process`), one request every ``interval`` s each, for ``duration`` s, starting
    together; with ``cpus``, on those CPUs only.

    With ``prime``, the run starts once every process has connected and warmed up, however long that takes on
    a busy machine (a barrier on a Redis list under the spec's prefix): ``prime(start_at)`` is called then, to
    store the key so that it expires at a chosen moment of the run, and the processes start at ``start_at``.
    Without it, they start ``start_in`` seconds from now (at least 0.6 s, for the processes to connect first):
    prime the key before, so that the run measures expiries and not a cold start; a process that warms up
    later than that starts late, and may miss the expiry.
    """
    release_at = time.time() + 0.1
    route_args = (route.origin, route.dest, route.month)
    if prime is None:
        start_at = time.time() + max(start_in, 0.6)  # after each process has connected and warmed up
        args = (spec, key, route_args, str(db_path), start_at, duration, interval)
        shares = run_together(pool, hot_key_share, [args] * workers, start_at=release_at, cpus=cpus,
                              timeout=duration + 120)
    else:
        barrier = f"{check_prefix(spec['prefix'])}barrier"
        args = (spec, key, route_args, str(db_path), None, duration, interval, barrier)
        futures = start_together(pool, hot_key_share, [args] * workers, start_at=release_at, cpus=cpus)
        start_at = _release_when_ready(spec["redis_url"], barrier, workers, futures, prime)
        shares = collect(futures, timeout=duration + 120)
    spans = sorted(span for share in shares for span in share["computes"])
    return HotKeyRun(
        strategy=spec["strategy"], workers=workers, ttl=float(spec["options"]["ttl"]), duration=duration,
        starts=np.concatenate([np.asarray(s["starts"], dtype=float) for s in shares]),
        latencies_ns=np.concatenate([np.asarray(s["latencies_ns"], dtype=float) for s in shares]),
        outcomes=np.concatenate([np.asarray(s["outcomes"], dtype=object) for s in shares]).astype(str),
        worker_of=np.concatenate([np.full(len(s["starts"]), i) for i, s in enumerate(shares)]),
        compute_spans=[tuple(s) for s in spans], backend_calls=sum(s["calls"] for s in shares))


def _release_when_ready(redis_url: str, barrier: str, workers: int, futures: Sequence, prime) -> float:
    """In the parent: wait until ``workers`` processes are ready (``BLPOP <barrier>:ready``), call
    ``prime(start_at)`` and hand every process ``start_at`` (``RPUSH <barrier>:go``, one each)."""
    from .servers import redis_client_for

    client = redis_client_for(redis_url)
    try:
        ready, deadline = 0, time.monotonic() + BARRIER_TIMEOUT
        while ready < workers:
            failed = next((f for f in futures if f.done() and f.exception() is not None), None)
            if failed is not None:
                raise failed.exception()
            if time.monotonic() > deadline:
                raise TimeoutError(f"{ready} of {workers} processes ready after {BARRIER_TIMEOUT:.0f} s")
            ready += client.blpop([f"{barrier}:ready"], timeout=1) is not None
        start_at = time.time() + 0.05  # time to prime the key and hand the start over
        prime(start_at)
        client.rpush(f"{barrier}:go", *[repr(start_at)] * workers)
        return start_at
    finally:
        client.close()


def ask_once(spec: dict, key: str, route: tuple[str, str, int], db_path: str, at: float | None = None) -> dict:
    """One request for ``key`` through the strategy of ``spec``, in this process: for :func:`run_together`.

    With ``at`` (wall time), the process first opens its connections and warms its database connection,
    then sends the request at that instant, so that neither set-up lands in the request's latency.
    Returns its latency (ns), its outcome and whether this process queried the backend for it.
    """
    from .data import FlightService

    service = FlightService(db_path)
    asked = Route(*route)
    cache = strategy_in_process(spec, lambda _key: service.ask(asked))
    try:
        if at is not None:
            _warm_up(cache, service, asked)
            _sleep_until(at)
        calls_before = service.calls
        before = cache.counters()
        t0 = time.perf_counter_ns()
        cache.get(key)
        latency = time.perf_counter_ns() - t0
        outcome = _outcome(before, cache.counters())
        cache.close()
        return {"latency_ns": latency, "outcome": outcome, "calls": service.calls - calls_before}
    finally:
        with contextlib.suppress(Exception):
            cache.client.close()
        service.close()


# --------------------------------------------------------------------------- a near cache in another process

def near_cache_reader(redis_url: str, prefix: str, key: str, start_at: float, duration: float, period: float,
                      local_ttl: float, clear_on_reconnect: bool, name: str) -> dict:
    """Read ``key`` through a :class:`~cachelab.near_cache.NearCache` every ``period`` s for ``duration`` s.

    The process's Redis connections are named ``<name>-<pid>`` (``CLIENT SETNAME``), so that the notebook can
    find this reader's pub/sub connection (``CLIENT LIST``) and the process to pause. Returns, for each
    read, its time (s from ``start_at``), the ``version`` field of the value read and whether it came from
    the local tier; the time each invalidation message arrived; and how often the listener's connection was
    made again (``reconnects``) and the local tier emptied for it (``local_clears``).
    """
    from .near_cache import NearCache
    from .servers import redis_client_for

    client = redis_client_for(redis_url, client_name=f"{name}-{os.getpid()}")
    arrivals: list[float] = []
    cache = NearCache(client, prefix, local_ttl=local_ttl, clear_on_reconnect=clear_on_reconnect,
                      on_invalidate=lambda _key: arrivals.append(time.time() - start_at))
    times, versions, local = [], [], []
    try:
        _sleep_until(start_at)
        next_at = start_at
        while time.time() < start_at + duration:
            was_local = cache.cached_locally(key)
            value = cache.get(key)
            times.append(time.time() - start_at)
            versions.append(None if value is None else value.get("version"))
            local.append(was_local)
            next_at += period
            time.sleep(max(0.0, next_at - time.time()))
    finally:
        cache.close()
        client.close()
    return {"pid": os.getpid(), "times": times, "versions": versions, "local": local, "arrivals": arrivals,
            "reconnects": cache.reconnects, "local_clears": cache.local_clears}
