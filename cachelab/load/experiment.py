"""The experiment of notebook 07: the web app in each cache mode, under wrk and locust, with writes going on.

:class:`Bench` holds what every measurement shares: a private Redis and memcached started for this
experiment, the CPU placement, the request streams, the write and check rates, the TTLs. Each server of the
experiment is a :class:`Cell` of a :class:`Grid`: one cache mode at ``K`` workers, with a private writable
copy of the database of its own (in WAL mode, so that reads and writes run side by side, as a production
SQLite would be set up), its own writer and checker (:mod:`cachelab.load.freshness`), its workers' query
log (:class:`cachelab.webapp.QueryLog`) and its place in each request stream (wrk goes on where the last run
on that server stopped).

The protocol, designed so that drift on a shared machine cannot pass for a difference between modes:

1. :func:`start_grid` starts every cell's gunicorn at once, each with ``--preload``, then pins each to the
   server CPUs (the cache servers are pinned there too). The TTLs come from :func:`ttl_for`: no entry filled
   during the cold start expires before the last measurement that reads it;
2. :func:`cold_starts` fills each cell's caches from empty, side by side, without writes: one wrk run each,
   stopped once a second of it had (almost) no misses, and records how (every worker's counters every 100 ms,
   every backend query with its key);
3. a probe of the uncached service (:func:`window`) gives its closed loop's cycle, ``c / X``, and
   :func:`window_seconds` the length of every window: a settling cycle and :data:`CYCLES` more, in whole
   seconds (wrk's unit);
4. :func:`run_rotation` takes **windows** (:func:`window`) of every unit in every round, each round in its own
   shuffled order (:func:`rotation_plan`), so that each unit is measured early, in the middle and late. A
   window is one wrk run with the cell's writer and checker running, its counters sampled every 100 ms; each
   write's backend queries are counted from the query log;
5. :func:`settle_time` reads from the windows how long they take to settle (or says they did not), and
   :func:`settled` gives each window's figures from that time to the last sample before wrk stopped;
   :func:`halves` the two halves of that span, to check that it was steady; :func:`summary` the median of a
   cell's windows with the interval the rank test gives it.

:func:`sweep` runs locust's open loop against one or several cells (their writers and checkers stopped, so
that the offered rate is all the load), and :func:`measure_fork` the memory of forked workers. Everything
returned is plain data (dicts, lists, numbers), ready for :meth:`cachelab.results.Results.put`.
"""

from __future__ import annotations

import contextlib
import json
import math
import random
import shutil
import sqlite3
import statistics
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..claims import sign_interval
from ..data import FlightService, Route, copy_database
from ..servers.gunicorn import Gunicorn, start_gunicorn, stop_all
from ..servers.gunicorn import memory as process_memory
from ..webapp import COUNTERS, QueryLog, read_counters
from . import freshness, paced, wrk
from .placement import Placement, plan
from .processes import pin


def counter_totals(server: Gunicorn) -> dict[str, int]:
    """Every worker's counters summed, exited workers included (their last values stay on file)."""
    per_worker = read_counters(server.counters_dir).values()
    return {name: sum(c[name] for c in per_worker) for name in COUNTERS}


def delta(before: dict, after: dict) -> dict:
    return {name: after[name] - before[name] for name in COUNTERS}


def hit_ratio(counts: dict) -> float:
    return counts["hits"] / counts["requests"] if counts["requests"] else 0.0


class Sampler(threading.Thread):
    """Every ``interval`` seconds, the summed counters of a server, with the time since ``start`` (monotonic);
    with ``cpus``, on those CPUs only."""

    def __init__(self, server: Gunicorn, interval: float = 0.1, cpus: Sequence[int] | None = None,
                 start: float | None = None):
        super().__init__(daemon=True, name="cachelab-sampler")
        self.server, self.interval, self.cpus = server, interval, cpus
        self.origin = start
        self.samples: list[dict] = []
        self._halt = threading.Event()

    def run(self) -> None:
        freshness.pin_this_thread(self.cpus)
        origin = time.monotonic() if self.origin is None else self.origin
        while True:
            self.samples.append({"t": time.monotonic() - origin, **counter_totals(self.server)})
            if self._halt.wait(self.interval):
                self.samples.append({"t": time.monotonic() - origin, **counter_totals(self.server)})
                return

    def __enter__(self) -> Sampler:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self._halt.set()
        self.join(5)


CYCLES = 5
"""A window counts at least this many cycles ``c / X`` of the slowest service's closed loop (its uncached one)."""
SLOT_S = 0.1
"""The counters of a window are read every ``SLOT_S`` seconds."""
MAX_WINDOW_S = 4
"""The longest window :func:`window_seconds` chooses; a service slower than that is measured in fewer cycles, and
the choice says so."""
TTL_MARGIN = 2.0
""":func:`ttl_for` makes the TTL this many times the longest the measurements can take after the cold start."""
TTL_JITTER = 0.1
"""The shared caches' ``CacheAside`` draws each entry's TTL up to this share shorter (``jitter=0.1``)."""


@dataclass
class Bench:
    """What every measurement shares (see the module docstring); a context manager that cleans up.

    ``connections`` is wrk's connection count for a cached server; the uncached service gets one more than
    its workers (:meth:`connections_for`), so that every worker always has a request and one waits, and its
    closed loop's cycle stays short."""

    workdir: Path
    redis: object  # a ManagedServer
    memcached: object  # a ManagedServer
    placement: Placement
    prefix: str
    hot_routes: list[Route]
    written_routes: list[Route]
    paths: dict[str, Path]
    ttl: float = 60.0
    local_ttl: float = 60.0
    write_rate: float = 4.0
    check_rate: float = 20.0
    seconds: int = 1
    cold_seconds: int = 1
    connections: int = 8
    extra: dict = field(default_factory=dict)

    def connections_for(self, mode: str, workers: int) -> int:
        """wrk's connections for a server: ``workers + 1`` for the uncached service, :attr:`connections` else."""
        return workers + 1 if mode == "none" else self.connections

    def database(self, name: str) -> Path:
        """A writable copy of the database for ``name`` (made once, in WAL mode: readers and the writer side by
        side)."""
        path = self.workdir / f"{name.replace(' ', '').replace(',', '-').replace('=', '')}.sqlite"
        if not path.exists():
            copy_database(path)
            with contextlib.closing(sqlite3.connect(path)) as conn:
                conn.execute("PRAGMA journal_mode=WAL")
        return path

    def settings(self, mode: str, run: str, db_path: Path | None = None) -> dict:
        """The web app's settings for ``mode``: every mode gets the same TTLs and a fresh key prefix."""
        return {"db_path": str(db_path or self.database(run)), "ttl": self.ttl, "local_ttl": self.local_ttl,
                "redis_url": self.redis.url, "memcached": [self.memcached.address],
                "prefix": f"{self.prefix}{run.replace(' ', '').replace(',', '-').replace('=', '')}:"}

    def describe(self) -> dict:
        return {"placement": self.placement.to_dict(), "hot_routes": len(self.hot_routes),
                "written_routes": [r.key() for r in self.written_routes], "ttl_s": self.ttl,
                "local_ttl_s": self.local_ttl, "write_rate": self.write_rate, "check_rate": self.check_rate,
                "seconds": self.seconds, "cold_seconds": self.cold_seconds, "connections": self.connections,
                "uncached_connections": "workers + 1"}

    def close(self) -> None:
        for server in (self.redis, self.memcached):
            with contextlib.suppress(Exception):
                server.stop()
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Bench:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def open_bench(prefix: str, streams: dict[str, Sequence], hot_routes: Sequence[Route],
               written_routes: Sequence[Route], **options) -> Bench:
    """Start a private Redis and memcached on the server CPUs and write the request streams (``{"name":
    requests}``, routes or paths) to files. ``options`` set :class:`Bench` fields."""
    from .. import servers

    placement = options.pop("placement", None) or plan()
    workdir = Path(tempfile.mkdtemp(prefix="cachelab-07-"))
    started = []
    try:
        redis = servers.start_redis(memory_mb=64)
        started.append(redis)
        memcached = servers.start_memcached(memory_mb=64)
        started.append(memcached)
        for server in started:
            pin(server.pid, placement.servers)
        paths = {name: wrk.write_paths(workdir / f"{name}.paths", requests) for name, requests in streams.items()}
    except BaseException:
        for server in started:
            server.stop()
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    return Bench(workdir, redis, memcached, placement, prefix, list(hot_routes), list(written_routes), paths,
                 **options)


def ttl_for(planned_s: float, *, at_least: float = 60.0) -> float:
    """The TTL of every cache of the experiment: ``at_least`` (the story's minute), or :data:`TTL_MARGIN` times
    ``planned_s`` (the longest the cold start and the measurements after it can take, by the plan) if that is
    longer, rounded up to ten seconds. The invariant it keeps: no entry filled during the cold start expires
    before the last measurement, even drawn :data:`TTL_JITTER` shorter, unless the run takes
    ``TTL_MARGIN * (1 - TTL_JITTER)`` times its plan; :func:`expiry_margin` checks it after the run."""
    return float(max(at_least, 10 * math.ceil(TTL_MARGIN * planned_s / 10)))


def planned_seconds(windows: int, *, window_s: float = MAX_WINDOW_S, cold_s: float = 12, stages: int = 0,
                    stage_s: float = 2.5, overhead_s: float = 0.5) -> float:
    """The longest the cold start (``cold_s``, its limit), ``windows`` windows of at most ``window_s`` and
    ``stages`` locust stages of ``stage_s`` can take by the plan, with ``overhead_s`` for each (a process to
    start, a queue to drain)."""
    return cold_s + windows * (window_s + overhead_s) + stages * (2 * stage_s + overhead_s) + 10


def expiry_margin(began: float, ended: float, ttl: float) -> float:
    """Seconds between the end of the last measurement (``ended``, monotonic) and the earliest moment an entry
    filled since ``began`` (the cold start's start) can expire: ``began + ttl * (1 - TTL_JITTER)``. Positive:
    no window met an expiry."""
    return began + ttl * (1 - TTL_JITTER) - ended


def flights_now(db_path: Path, routes: Sequence[Route]) -> dict[Route, int]:
    """The true ``flights`` count of each route, read from the database."""
    with FlightService(db_path, writable=True) as service:  # writable: the WAL needs it; nothing is written
        return {route: service.ask(route)["flights"] for route in routes}


# --------------------------------------------------------------------------- the grid of servers

@dataclass
class Cell:
    """One server of the experiment: a cache mode at ``workers`` workers, with its own database copy, writer,
    checker and query log; its cold start and windows are kept here as they are measured, and ``positions``
    holds, for each request stream, the line wrk sent last on this server (the next run goes on from there)."""

    name: str
    mode: str
    workers: int
    server: Gunicorn
    db_path: Path
    base: dict  # the written routes' flights before the first write
    writer: freshness.Writer
    checker: freshness.Checker
    queries: QueryLog
    cold: dict | None = None
    windows: list = field(default_factory=list)
    positions: dict = field(default_factory=dict)

    def staleness(self) -> dict:
        """What the checker saw in every window so far, judged against the writer's log."""
        return freshness.staleness(self.base, self.writer.log, self.checker.log).to_dict()


def cell_name(mode: str, workers: int) -> str:
    return f"{mode}, K={workers}"


@dataclass
class Grid:
    """Every :class:`Cell` of the experiment, by name (``"redis, K=3"``); :meth:`close` stops them all."""

    bench: Bench
    cells: dict[str, Cell]

    def __getitem__(self, key) -> Cell:
        return self.cells[cell_name(*key) if isinstance(key, tuple) else key]

    def close(self) -> None:
        with contextlib.suppress(Exception):
            stop_all(cell.server for cell in self.cells.values())

    def __enter__(self) -> Grid:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def start_grid(bench: Bench, grid: Sequence[tuple[str, int]], *, preload: bool = True) -> Grid:
    """Start one gunicorn per ``(mode, workers)`` of ``grid``, side by side on every CPU (``--preload``: the
    master imports the app once and forks its workers), wait until each is ready, then pin each one, master
    and workers, to the server CPUs. Stops them all if one fails."""
    cells: dict[str, Cell] = {}
    started: list[Gunicorn] = []
    try:
        for mode, workers in grid:
            name = cell_name(mode, workers)
            db_path = bench.database(name)
            started.append(start_gunicorn(mode, workers, settings=bench.settings(mode, name, db_path),
                                          preload=preload, wait=False))
        for server in started:
            server.wait_ready()
            if bench.placement.servers:
                server.pin(bench.placement.servers)
        for (mode, workers), server in zip(grid, started, strict=True):
            name = cell_name(mode, workers)
            db_path = Path(bench.settings(mode, name)["db_path"])
            cpus = bench.placement.generator
            cells[name] = Cell(name, mode, workers, server, db_path, flights_now(db_path, bench.written_routes),
                               freshness.Writer(server.base_url, bench.written_routes, bench.write_rate, cpus),
                               freshness.Checker(server.base_url, bench.written_routes, bench.check_rate, cpus),
                               QueryLog(server.counters_dir))
    except BaseException:
        with contextlib.suppress(Exception):
            stop_all(started)
        raise
    return Grid(bench, cells)


def per_key(queries: Sequence[tuple], by_worker: bool = False) -> dict:
    """Backend queries counted by key (``{key: n}``), or by worker and key (``{(pid, key): n}``)."""
    out: dict = {}
    for _t, key, pid in queries:
        name = (pid, key) if by_worker else key
        out[name] = out.get(name, 0) + 1
    return out


def _run_wrk(bench: Bench, cell: Cell, stream: str, seconds: int, **options) -> wrk.WrkResult:
    """wrk on ``cell``'s ``stream`` from where the last run on it stopped, pinned to the generator's CPUs."""
    result = wrk.run_wrk(cell.server.base_url, bench.paths[stream], seconds=seconds,
                         connections=bench.connections_for(cell.mode, cell.workers), cpus=bench.placement.generator,
                         start=cell.positions.get(stream, 0), **options)
    if result.position is not None:
        cell.positions[stream] = result.position
    return result


WARM_MISSES, WARM_REQUESTS = 2, 50
"""A cache is warm once a second of its cold start had at most ``WARM_MISSES`` misses in ``WARM_REQUESTS``
requests or more."""


def _warm_now(samples: Sequence[dict], since: float) -> bool:
    """Whether the last second of a :class:`Sampler`'s samples (at least ``since`` seconds in) was warm."""
    if not samples or samples[-1]["t"] < since:
        return False
    last = samples[-1]
    ago = next((s for s in reversed(samples) if last["t"] - s["t"] >= 1.0), None)
    return ago is not None and last["misses"] - ago["misses"] <= WARM_MISSES \
        and last["requests"] - ago["requests"] >= WARM_REQUESTS


def cold_start(bench: Bench, cell: Cell, stream: str = "hot", max_seconds: int = 12) -> dict:
    """One wrk run from empty caches, without writes, stopped once its last second had at most
    :data:`WARM_MISSES` misses in :data:`WARM_REQUESTS` requests or more (after ``bench.cold_seconds`` at least),
    or after ``max_seconds``; every worker's counters every 100 ms, and every backend query with its key and
    worker."""
    cell.queries.read_new()  # nothing before the cold start counts
    before = counter_totals(cell.server)
    started = time.monotonic()
    warm = threading.Event()
    with Sampler(cell.server, cpus=bench.placement.generator, start=started) as sampler:
        def until() -> bool:
            if _warm_now(sampler.samples, bench.cold_seconds):
                warm.set()
            return warm.is_set()

        result = _run_wrk(bench, cell, stream, max_seconds, until=until)
    seconds = time.monotonic() - started
    queries = cell.queries.read_new()
    counts = delta(before, counter_totals(cell.server))
    cell.cold = {"seconds": seconds, "warm": warm.is_set(), "requests": result.requests, "counters": counts,
                 "hit_ratio": hit_ratio(counts), "requests_per_second": result.requests_per_second,
                 "non_2xx": result.non_2xx, "errors": dict(result.errors), "run": result.to_dict(),
                 "series": sampler.samples, "queries_per_key": per_key(queries),
                 "queries_per_worker_and_key": [[pid, key, n] for (pid, key), n in
                                                per_key(queries, by_worker=True).items()]}
    return cell.cold


def empty_caches(bench: Bench, cells: Sequence[Cell]) -> None:
    """Empty every cache of ``cells``, for a cold start measured again: each server's workers replaced by new ones
    (:meth:`cachelab.servers.gunicorn.Gunicorn.replace_workers`: forked from a master whose caches nothing ever
    filled), and each hot key deleted from the shared caches under the cell's prefix (the bench's own Redis and
    memcached, keys named one by one)."""
    from ..servers import memcached_client_for, redis_client_for

    redis = redis_client_for(bench.redis.url)
    try:
        for cell in cells:
            cell.server.replace_workers()
            prefix = bench.settings(cell.mode, cell.name)["prefix"]
            redis.delete(*(prefix + route.key() for route in bench.hot_routes))
            if cell.mode == "memcached":
                client = memcached_client_for([bench.memcached.address], prefix)
                try:
                    client.delete_many([route.key() for route in bench.hot_routes], noreply=False)
                finally:
                    client.close()
    finally:
        redis.close()


def cold_starts(bench: Bench, cells: Sequence[Cell], stream: str = "hot", max_seconds: int = 12) -> dict[str, dict]:
    """:func:`cold_start` of every cell of ``cells`` at once, each from a thread of its own. Their misses share
    the server CPUs, so each takes longer than alone, and a shared cache's workers, slower to fill a key, can
    miss it together more often (each such duplicate is counted)."""
    errors: list[BaseException] = []

    def one(cell: Cell) -> None:
        try:
            cold_start(bench, cell, stream, max_seconds)
        except BaseException as exc:  # noqa: BLE001 - raised below, in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(cell,), name=f"cold-{cell.name}") for cell in cells]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return {cell.name: cell.cold for cell in cells}


# --------------------------------------------------------------------------- windows and their rotation

def queries_per_write(writes: Sequence[tuple], queries: Sequence[tuple], end: float) -> list[dict]:
    """For each write ``(route, sent, committed)``, the backend queries of its route's key from the moment it
    was sent until the next write to the same route was sent, or ``end``: what that write cost the database."""
    writes = sorted(writes, key=lambda w: w[1])
    out = []
    for i, (route, sent, _committed) in enumerate(writes):
        until = next((w[1] for w in writes[i + 1:] if w[0] == route), end)
        key = route.key()
        out.append({"route": key, "sent": sent,
                    "queries": sum(1 for t, k, _pid in queries if k == key and sent <= t < until)})
    return out


def window(bench: Bench, cell: Cell, stream: str = "hot", *, seconds: float | None = None,
           writes: bool = True) -> dict:
    """One measured window of ``cell``: a wrk run of ``seconds`` on ``stream`` (going on where the last run on
    this server stopped) with the cell's writer and checker running (``writes=False``: without them), the
    server's counters every 100 ms, and the backend queries of each write. Times are seconds from the window's
    start (monotonic clock); ``wrk_s`` is when wrk ran, from the moment it was started to the end of its
    duration."""
    cell.queries.read_new()  # what came before this window is not its own
    n_writes, n_checks = len(cell.writer.log), len(cell.checker.log)
    n_late = len(cell.writer.lateness), len(cell.checker.lateness)
    timeouts = cell.writer.timeouts + cell.checker.timeouts
    start = time.monotonic()
    with contextlib.ExitStack() as stack:
        if writes:
            stack.enter_context(cell.writer.running())
            stack.enter_context(cell.checker.running())
        before = counter_totals(cell.server)
        with Sampler(cell.server, cpus=bench.placement.generator, start=start) as sampler:
            wrk_started = time.monotonic() - start
            length = seconds or bench.seconds
            began = time.monotonic()
            stop = None if float(length).is_integer() else (lambda: time.monotonic() - began >= length)
            result = _run_wrk(bench, cell, stream, math.ceil(length), until=stop, poll_s=0.02)
        after = counter_totals(cell.server)
    end = time.monotonic()
    queries = cell.queries.read_new()
    written = cell.writer.log[n_writes:]
    checks = cell.checker.log[n_checks:]
    stale = freshness.staleness(cell.base, cell.writer.log, checks)
    lateness = cell.writer.lateness[n_late[0]:] + cell.checker.lateness[n_late[1]:]
    out = {"cell": cell.name, "mode": cell.mode, "workers": cell.workers, "stream": stream, "writes_on": writes,
           "start": start, "end_s": end - start, "wrk_s": [wrk_started, wrk_started + result.seconds],
           **result.to_dict(), "wrk_requests_per_second": result.requests_per_second, "corrected": result.corrected,
           "non_2xx": result.non_2xx, "socket_errors": result.socket_errors, "counters": delta(before, after),
           "p50_ms": result.percentile_ms(50), "p90_ms": result.percentile_ms(90), "p99_ms": result.percentile_ms(99),
           "slots": [[s["t"], s["requests"], s["floor"], s["hits"], s["backend_queries"], s["local_hits"]]
                     for s in sampler.samples],
           "writes": queries_per_write(written, queries, end), "checks": stale.checks, "stale": stale.stale,
           "writes_per_second": len(written) / (end - start), "checks_per_second": len(checks) / (end - start),
           "helper_late_ms_max": 1000 * max(lateness, default=0.0),
           "helper_timeouts": cell.writer.timeouts + cell.checker.timeouts - timeouts,
           "writer_errors": len(cell.writer.errors), "checker_errors": len(cell.checker.errors)}
    out.update(settled(out, 0.0))
    cell.windows.append(out)
    return out


def _span(win: dict, settle_s: float) -> tuple[list, list]:
    """The first sample at or after ``settle_s`` seconds into wrk's run, and the last sample before wrk stopped."""
    slots = win["slots"]
    began, stopped = win.get("wrk_s", [0.0, slots[-1][0]])
    inside = [s for s in slots if s[0] <= stopped] or slots[:1]
    first = next((s for s in inside if s[0] >= began + settle_s), inside[-1])
    return first, inside[-1]


def settled(win: dict, settle_s: float) -> dict:
    """A window's figures from ``settle_s`` seconds into wrk's run to the last 100 ms sample before wrk stopped:
    answers served per second (``/delay`` answers, the checker's included, or ``/floor`` answers for the floor
    stream), hit ratio, the share of hits answered from a worker's own memory, backend queries per second, and
    how many of the service's own closed-loop cycles (``c / X``) the span held."""
    first, last = _span(win, settle_s)
    span = last[0] - first[0]
    served = (last[2] - first[2]) if win["stream"] == "floor" else (last[1] - first[1])
    requests, hits = last[1] - first[1], last[3] - first[3]
    local = (last[5] - first[5]) if len(last) > 5 else 0
    rate = served / span if span > 0 else 0.0
    return {"settle_s": settle_s, "measured_s": span, "requests_per_second": rate,
            "hit_ratio": hits / requests if requests else 0.0, "local_share": local / hits if hits else 0.0,
            "backend_qps": (last[4] - first[4]) / span if span > 0 else 0.0,
            "cycles": span * rate / win["connections"] if win.get("connections") else 0.0}


def halves(win: dict, settle_s: float) -> tuple[float, float]:
    """The answers a second of the two halves of a window's counted span (:func:`settled`), split at the sample
    nearest its middle."""
    first, last = _span(win, settle_s)
    col = 2 if win["stream"] == "floor" else 1
    inside = [s for s in win["slots"] if first[0] <= s[0] <= last[0]]
    mid = min(inside, key=lambda s: abs(s[0] - (first[0] + last[0]) / 2))

    def rate(a, b):
        return (b[col] - a[col]) / (b[0] - a[0]) if b[0] > a[0] else float("nan")

    return rate(first, mid), rate(mid, last)


def refill_sizes(windows: Sequence[dict]) -> list[float]:
    """Each window's mean backend queries per write, over the writes that cost at least one: what a refill
    after a write cost, stampede included (a window whose written keys nobody read again gives none)."""
    out = []
    for win in windows:
        costs = [w["queries"] for w in win.get("writes", []) if w["queries"]]
        if costs:
            out.append(statistics.mean(costs))
    return out


def window_seconds(probe: dict, *, cycles: int = CYCLES, longest: int = MAX_WINDOW_S) -> dict:
    """The length of every window, from a probe of the slowest service (one :func:`window` of the uncached
    one): the closed loop's cycle ``c / X`` (``c`` connections, ``X`` answers a second), then one cycle to
    settle (every connection's first request, served from a queue filled at once), ``cycles`` cycles to count
    and one 100 ms sample, in whole seconds (wrk's unit), at most ``longest`` (``fits`` says whether the rule
    was met)."""
    rate = probe["requests_per_second"]
    cycle = probe["connections"] / rate if rate > 0 else float("inf")
    need = SLOT_S + (1 + cycles) * cycle
    seconds = max(1.0, min(longest, math.ceil(10 * need - 1e-9) / 10)) if math.isfinite(need) else float(longest)
    return {"seconds": seconds, "cycle_s": cycle, "needed_s": need, "fits": need <= seconds + 1e-9,
            "cycles": cycles, "probe_rps": rate, "connections": probe["connections"]}


def rotation_plan(units: Sequence, *, rounds: int = 3, repeats: dict | None = None, seed: int = 2013) -> list[list]:
    """Rounds of a rotation: every unit of ``units`` in every round (``repeats[unit]`` times in each, one by
    default), each round in its own shuffled order (seeded): each unit is measured early, in the middle and
    late in the run, and no unit's windows all fall in one part of it. A pair (a tuple of units, taken one
    right after the other) is taken in the other order at each of its turns, so that neither of its two comes
    always first."""
    if rounds < 1:
        raise ValueError("a rotation needs at least one round")
    repeats = repeats or {}
    out, turns = [], {}
    for r in range(rounds):
        chosen = []
        for unit in units:
            for _ in range(repeats.get(unit, 1)):
                if _is_group(unit):
                    turn = turns[unit] = turns.get(unit, -1) + 1
                    chosen.append(unit[::-1] if turn % 2 else unit)
                else:
                    chosen.append(unit)
        random.Random(seed + r).shuffle(chosen)
        out.append(chosen)
    return out


def _is_group(unit) -> bool:
    return isinstance(unit, tuple) and bool(unit) and isinstance(unit[0], tuple)


def run_rotation(bench: Bench, grid: Grid, plan_: Sequence[Sequence], *,
                 probe: Callable[[], float] | None = None) -> list[dict]:
    """Take every window of ``plan_`` in order (from :func:`rotation_plan`). A unit is ``(cell name, stream,
    writes, seconds)``, or a tuple of such units, taken one right after the other (a pair taken in turn).

    ``probe``, when given, is called after each window, with wrk stopped: the seconds it returns (the same work
    timed again and again, such as 01's query) are kept as the window's ``probe_s``, how fast the machine ran
    while the windows were taken."""
    taken = []
    origin = time.monotonic()
    for r, units in enumerate(plan_):
        for unit in units:
            group = unit if _is_group(unit) else (unit,)
            for name, stream, writes, seconds in group:
                win = window(bench, grid[name], stream, seconds=seconds, writes=writes)
                win.update(round=r, order=len(taken), at_s=win["start"] - origin)
                if probe is not None:
                    win["probe_s"] = float(probe())
                taken.append(win)
    return taken


def settle_time(windows: Sequence[dict], *, tolerance: float = 0.1, slot: float = SLOT_S,
                latest: float = 0.5) -> dict:
    """How long the windows take to settle, read from their 100 ms samples.

    Counting a window from ``t`` seconds into wrk's run to its end gives a rate; divided by its server's level
    (the median, over that server's windows, of their rate over the second half of the run: other windows than
    this one among them), the median of that ratio over all windows, for each ``t`` a sample apart, is the
    profile: what counting from ``t`` would report, as a share of the level. The settle time is the first ``t``
    from which the profile stays within ``tolerance`` of 1 up to ``latest`` of the run's length; ``settled`` is
    false when there is none (``settle_s`` is then ``latest`` of the length: the windows did not settle, and say
    so). Counting to the end averages the bursts that come at a fixed rhythm (writes), which a 100 ms slot would
    show as noise. Returns ``{"settle_s", "settled", "profile": [[t, median ratio], ...], "windows"}``.
    """
    def run(win):
        col = 2 if win["stream"] == "floor" else 1
        began, stopped = win.get("wrk_s", [0.0, win["slots"][-1][0]])
        inside = [(s[0] - began, s[col]) for s in win["slots"] if s[0] <= stopped]
        return inside, stopped - began

    def rate_from(inside, t):
        first = next((x for x in inside if x[0] >= t), None)
        last = inside[-1]
        return (last[1] - first[1]) / (last[0] - first[0]) if first and last[0] > first[0] else None

    levels: dict = {}
    for win in windows:
        inside, length = run(win)
        level = rate_from(inside, length / 2)
        if level:
            levels.setdefault((win["cell"], win["stream"]), []).append(level)
    level = {k: statistics.median(v) for k, v in levels.items()}
    length = min((run(w)[1] for w in windows), default=0.0)
    ratios: dict[int, list[float]] = {}
    for win in windows:
        ref = level.get((win["cell"], win["stream"]))
        if not ref:
            continue
        inside, _ = run(win)
        for i in range(int(latest * length / slot + 1e-9) + 1):
            rate = rate_from(inside, i * slot)
            if rate is not None:
                ratios.setdefault(i, []).append(rate / ref)
    profile = [[i * slot, statistics.median(v)] for i, v in sorted(ratios.items())]
    settle, ok = latest * length, False
    for j, (t, _) in enumerate(profile):
        if all(abs(r - 1) <= tolerance for _, r in profile[j:]):
            settle, ok = t, True
            break
    return {"settle_s": settle, "settled": ok, "profile": profile, "windows": len(windows), "tolerance": tolerance,
            "latest_s": latest * length}


def interval(values: Sequence[float]) -> dict:
    """The median of ``values`` and the sign test's interval for it, with its coverage (3 windows: the lowest and
    highest, a 75% interval; 6: 97%)."""
    values = list(values)
    if len(values) == 1:
        return {"median": values[0], "low": values[0], "high": values[0], "coverage": 0.0}
    med, low, high, coverage = sign_interval(values)
    return {"median": med, "low": low, "high": high, "coverage": coverage}


def summary(windows: Sequence[dict], key: str = "requests_per_second") -> dict:
    """The median of ``key`` over ``windows``, with the sign test's interval for it and its coverage
    (:func:`interval`), and every value."""
    values = [w[key] for w in windows]
    if not values:
        raise ValueError("no windows to summarise")
    return {**interval(values), "values": values}


P99_MIN_REQUESTS = 100
"""A window's p99 is shown only when it answered at least this many requests (fewer, and it is its maximum)."""


def table(groups: dict[str, Sequence[dict]]) -> str:
    """One line per group of windows: answers a second (median, and the interval :func:`summary` gives it, with
    its coverage), and the medians of the hit ratio, backend queries a second, backend queries per write (not for
    the uncached service, where every request is a query), writes a second, and wrk's p50 and p99 (the p99 over
    the windows that answered :data:`P99_MIN_REQUESTS` requests or more)."""
    lines = [f"{'server':<16}{'windows':>8}{'answers/s':>10}{'  interval (coverage)':<24}{'hit ratio':>10}"
             f"{'DB q/s':>8}{'q/write':>8}{'writes/s':>9}{'p50 ms':>8}{'p99 ms':>8}"]
    for name, wins in groups.items():
        rate = summary(wins)
        per_write = [wr["queries"] for w in wins for wr in w.get("writes", [])]
        uncached = all(w.get("mode") == "none" for w in wins)
        enough = [w["p99_ms"] for w in wins if w["requests"] >= P99_MIN_REQUESTS]

        def med(key, wins=wins):
            return statistics.median(w[key] for w in wins)

        span = f"  {rate['low']:,.0f} - {rate['high']:,.0f} ({rate['coverage']:.0%})"
        writes = statistics.median(w.get("writes_per_second", 0.0) for w in wins) if any(
            w.get("writes_on") for w in wins) else None
        lines.append(f"{name:<16}{len(wins):>8}{rate['median']:>10,.0f}{span:<24}{med('hit_ratio'):>10.1%}"
                     f"{med('backend_qps'):>8.1f}"
                     f"{(f'{statistics.mean(per_write):.2f}' if per_write and not uncached else '-'):>8}"
                     f"{(f'{writes:.1f}' if writes is not None else '-'):>9}{med('p50_ms'):>8.1f}"
                     f"{(f'{statistics.median(enough):.1f}' if enough else '-'):>8}")
    return "\n".join(lines)


def compact(data):
    """``data`` for a results file: the 100 ms samples of windows and cold starts left out (``slots``,
    ``series``, ``queries_per_worker_and_key``), and each window's writes reduced to their query counts."""
    if isinstance(data, dict):
        return {k: ([w["queries"] for w in v] if k == "writes" and isinstance(v, list) and v and isinstance(v[0], dict)
                    else compact(v))
                for k, v in data.items() if k not in ("slots", "series", "queries_per_worker_and_key")}
    if isinstance(data, list | tuple):
        return [compact(x) for x in data]
    return data


def median_window(windows: Sequence[dict], key: str = "requests_per_second") -> dict:
    """The window whose ``key`` is the median (the lower middle one of an even count), with every window
    under ``"repeats"``: a summary whose fields all come from one run."""
    if not windows:
        raise ValueError("no windows to summarise")
    ordered = sorted(windows, key=lambda w: w[key])
    return {**ordered[(len(ordered) - 1) // 2], "repeats": list(windows)}


def retake(lab, statement: str, taken: dict[str, list], bench: Bench, grid: Grid, units: dict[str, tuple], *,
           rounds: int = 3, per_round: int = 1, paired: bool = False, settle_s: float = 0.0) -> dict[str, list]:
    """The windows a claim is judged from: ``taken`` (the rotation's, by label), or, when ``statement`` is being
    judged again (a claim not shown is measured again under ``CACHELAB_CLAIMS=strict`` by executing its cell
    again), new windows of the units it compares alone (``units``: label to ``(cell name, stream, writes,
    seconds)``): ``rounds`` rounds of ``per_round`` each, in a shuffled order (taken in turn, as pairs, when
    ``paired``), each counted from ``settle_s``. A retry measures what the claim needs, not the whole rotation."""
    if lab.claims.attempt_of(statement) == 1:
        return {label: taken[label] for label in units}
    labels = list(units)
    group = tuple(units[label] for label in labels)
    chosen = [group] if paired else list(group)
    plan_ = rotation_plan(chosen, rounds=rounds, repeats={unit: per_round for unit in chosen})
    out: dict[str, list] = {label: [] for label in labels}
    for win in run_rotation(bench, grid, plan_):
        win.update(settled(win, settle_s))
        out[next(lb for lb in labels if tuple(units[lb][:2]) == (win["cell"], win["stream"]))].append(win)
    return out


def validation_record(bench: Bench, grid: Grid, steady: dict[str, Sequence[dict]], *, workers: int,
                      window_s: float, settle_s: float, probe_s: Sequence[float] = ()) -> dict:
    """What a model must predict to be checked against this run: the set-up (workers, server CPUs, wrk's
    connections, the request stream, the write and check rates, the TTLs, the windows) and, for each mode at
    ``workers``, every window's answers a second and backend queries a second, with their medians, its hit
    ratio, the writes it took a second and what each write cost."""
    from .. import workload

    modes = {}
    for name, wins in steady.items():
        cell = grid[name]
        if cell.workers != workers or not wins:
            continue
        rates = [w["requests_per_second"] for w in wins]
        queries = [w["backend_qps"] for w in wins]
        modes[cell.mode] = {"workers": workers, "windows": len(wins), "requests_per_second": rates,
                            "requests_per_second_median": statistics.median(rates), "backend_qps": queries,
                            "backend_qps_median": statistics.median(queries),
                            "hit_ratio": [w["hit_ratio"] for w in wins],
                            "writes_per_second": [w["writes_per_second"] for w in wins],
                            "queries_per_write": [wr["queries"] for w in wins for wr in w["writes"]],
                            "connections": bench.connections_for(cell.mode, cell.workers)}
    return {"workers": workers, "server_cpus": len(bench.placement.servers or bench.placement.cpus),
            "connections": bench.connections,
            "stream": {"kind": "zipf", "keys": len(bench.hot_routes), "alpha": workload.STANDARD_ALPHA,
                       "seed": workload.STANDARD_SEED, "length": workload.STANDARD_LENGTH,
                       "routes": [r.key() for r in bench.hot_routes]},
            "written_routes": [r.key() for r in bench.written_routes], "write_rate_offered": bench.write_rate,
            "check_rate_offered": bench.check_rate, "ttl_s": bench.ttl, "local_ttl_s": bench.local_ttl,
            "window_s": window_s, "settle_s": settle_s, "probe_s": [float(x) for x in probe_s],
            "throughput_counts": "answers of /delay a second, wrk's and the checker's, from settle_s into wrk's run "
                                 "to the last 100 ms sample before it stopped",
            "modes": modes}


# --------------------------------------------------------------------------- paced users, and fork

def sweep(bench: Bench, stages: Sequence[tuple[Cell, float]], *, seconds: float, stream: str = "hot",
          seed: int = 2013) -> list[dict]:
    """locust's open loop (:func:`cachelab.load.paced.run_paced`): each ``(cell, rate)`` of ``stages`` offered for
    ``seconds``, in a shuffled order (seeded), each stage on an idle server, with every writer and checker
    stopped (the offered rate is then all the load), locust pinned to the generator's CPUs. Returns one dict a
    stage, in the order of ``stages``, with the stage's ``cell``, its place in the run (``order``) and the
    counters of its server over the whole run."""
    order = list(range(len(stages)))
    random.Random(seed).shuffle(order)
    cells = {cell.name: cell for cell, _ in stages}
    before = {name: counter_totals(cell.server) for name, cell in cells.items()}
    ran = paced.run_paced(stages[0][0].server.base_url, bench.paths[stream], [stages[i][1] for i in order],
                          seconds=seconds, hosts=[stages[i][0].server.base_url for i in order],
                          cpus=bench.placement.generator)
    counts = {name: delta(before[name], counter_totals(cell.server)) for name, cell in cells.items()}
    out: list = [None] * len(stages)
    for place, (i, stage) in enumerate(zip(order, ran, strict=True)):
        cell = stages[i][0]
        out[i] = {**stage.to_dict(), "cell": cell.name, "mode": cell.mode, "workers": cell.workers, "order": place,
                  "server_counters": counts[cell.name]}
    return out


FORK_CONFIGS = {
    "no cache, query in the master": {"mode": "none", "warm": True},
    "lru, filled in the master": {"mode": "lru", "warm": True},
    "lru, filled in the master, gc.freeze": {"mode": "lru", "warm": True, "gc_freeze": True},
    "no cache, query in each worker": {"mode": "none", "warm_in_worker": True},
    "lru, filled in each worker": {"mode": "lru", "warm_in_worker": True},
}
"""The servers of :func:`measure_fork`, every one with ``--preload`` (the code imported once, shared). The query
that fills a cache (every answer from one ``GROUP BY``) runs in the master before the fork or in each worker
after it; each cached server has a twin without a cache that runs the same query in the same process and drops
its answers, so that what the query leaves behind (SQLite's page cache, the allocator's freed blocks) is on both
sides of a comparison."""


def _collect_everywhere(server: Gunicorn, attempts: int = 30) -> set[int]:
    """Send ``/gc`` requests, a batch of two a worker at a time, until every worker of ``server`` has run a full
    collection (each answer names its pid), at most ``attempts`` batches; returns the pids that did."""
    pids, done = set(server.worker_pids()), set()

    def one(_):
        with urllib.request.urlopen(server.url("/gc"), timeout=10) as response:  # noqa: S310 - our own server
            return json.loads(response.read())["pid"]

    with ThreadPoolExecutor(2 * len(pids)) as pool:
        for _ in range(attempts):
            done |= set(pool.map(one, range(2 * len(pids))))
            if pids <= done:
                break
    return done & pids


def measure_fork(bench: Bench, workers: int, seconds: int = 1) -> dict:
    """Each worker's memory (``/proc/<pid>/smaps_rollup``) in the servers of :data:`FORK_CONFIGS`, all with
    gunicorn's ``--preload``: the ``lru`` cache filled in the master before the fork (its pages shared
    copy-on-write by the workers), the same with the recipe of Python's ``gc.freeze`` docs, the same filled in
    each worker after the fork (its own, nothing shared to copy: the control), and a twin without a cache for
    each place the query ran.

    Every server first answers a second of ``/floor`` (each worker has run the HTTP path, so that the pages that
    costs are counted before, not after), all side by side, then ``"before"`` is read. The ``lru`` servers then
    answer ``seconds`` of requests for every route in turn (stream ``"all"``, the three side by side: each gets
    about as many), ``"read"`` is read; then every worker runs a full collection (``/gc``, as it would sooner or
    later on its own), and ``"collected"`` is read. Each worker is one sample: ``{"pid", "uss", "requests"}``
    (its private memory in bytes, the requests it had answered). The servers start side by side, then are
    pinned to the server CPUs.
    """
    servers: dict[str, Gunicorn] = {}
    try:
        for name, config in FORK_CONFIGS.items():
            settings = {**bench.settings(config["mode"], "fork"), "warm": config.get("warm", False),
                        "warm_in_worker": config.get("warm_in_worker", False)}
            servers[name] = start_gunicorn(config["mode"], workers, settings=settings, preload=True,
                                           gc_freeze=config.get("gc_freeze", False), wait=False)
        for server in servers.values():
            server.wait_ready(60)
            if bench.placement.servers:
                server.pin(bench.placement.servers)

        def side_by_side(names, stream):
            with ThreadPoolExecutor(len(names)) as pool:
                runs = pool.map(lambda n: wrk.run_wrk(servers[n].base_url, bench.paths[stream], seconds=seconds,
                                                      connections=bench.connections, cpus=bench.placement.generator),
                                names)
                return dict(zip(names, runs, strict=True))

        def read(server):
            counts = server.counters()
            return [{"pid": pid, "uss": (m or {}).get("uss"), "requests": counts.get(pid, {}).get("requests", 0)}
                    for pid, m in sorted(server.memory().items())]

        floor = side_by_side(list(servers), "floor")
        out = {name: {**FORK_CONFIGS[name], "workers": workers, "floor_run": floor[name].to_dict(),
                      "before": read(server), "stats": server.get_json("/stats")} for name, server in servers.items()}
        cached = [name for name in servers if FORK_CONFIGS[name]["mode"] == "lru"]
        runs = side_by_side(cached, "all")
        for name in cached:
            out[name]["run"] = runs[name].to_dict()
            out[name]["read"] = read(servers[name])
            out[name]["collected_in"] = sorted(_collect_everywhere(servers[name]))
            out[name]["collected"] = read(servers[name])
        for name, server in servers.items():
            out[name]["master"] = process_memory(server.pid)
        return out
    finally:
        with contextlib.suppress(Exception):
            stop_all(servers.values())


def cache_bytes(db_path: str | None = None) -> int:
    """The bytes of an ``lru`` mode's cache holding every answer, measured with ``tracemalloc`` in this process: a
    :class:`cachelab.webapp.FlightApp` in mode ``lru`` warmed as a preloading master warms it (one ``GROUP BY``
    query, every answer stored), the memory still allocated afterwards less what was allocated before (the
    query's own working memory is freed by then, so it is not counted)."""
    import gc
    import tracemalloc

    from ..webapp import FlightApp, Settings

    app = FlightApp(Settings(mode="lru", db_path=db_path))
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        app.warm()
        gc.collect()
        return tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()


def model_costs(lab=None) -> dict:
    """The two throughputs the model of notebook 07 (section 9) takes: ``x_hit``, requests per second when every
    request is a Redis hit, and ``x_miss``, when none is (the uncached service), at ``workers`` workers.

    From this run when the notebook has measured them (``lab.results``), else from its last saved run, else from
    the reference run (a machine without servers); ``source`` says which.
    """
    from .. import results

    name = "07_web_service_under_load"
    if lab is not None and "web_model" in lab.results.values:
        values, source = lab.results.values, "this run"
    else:
        try:
            values, source = results.load(name).values, "the last saved run"
        except results.ResultsMissing:
            values, source = results.load_reference(name).values, "the reference run"
    model = values["web_model"]
    return {"x_hit": model["x_hit_rps"]["shared hit (Redis hit path)"], "x_miss": model["x_miss_rps"],
            "workers": model["workers"], "source": source}
