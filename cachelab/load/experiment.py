"""The experiment of notebook 07: the web app in each cache mode, under wrk and locust, with writes going on.

:class:`Bench` holds what every measurement shares: a private writable copy of the database (in WAL
mode, so that reads and writes run side by side, as a production SQLite would be set up), a private
Redis and memcached started for this experiment, the CPU placement, and the request streams.

:func:`measure_mode` runs one cache mode through the whole protocol on one gunicorn server:

1. start gunicorn with the most workers (``max(ks)``), empty caches, and start the background writer
   and checker (:mod:`cachelab.load.freshness`), which run until the server stops;
2. **cold start**: wrk runs of a second from empty caches, without writes, until the misses stop (at
   most ``cold_max_seconds``), with every worker's counters sampled every 100 ms;
3. for each worker count, from the most to one (gunicorn's TTOU stops the oldest worker, so the
   survivors stay warm): a **steady** wrk run, with its hit ratio and backend queries from the counters;
   optionally the **floor** and the **hit path** taken in turn, and a run of **paced** locust users at
   fixed offered rates (:mod:`cachelab.load.paced`);
4. the workers' memory, then the server stops (nothing left running, even when a step fails), and the
   checker's reads are judged against the writes (:func:`cachelab.load.freshness.staleness`).

Everything returned is plain data (dicts, lists, numbers), ready for :meth:`cachelab.results.Results.put`.
"""

from __future__ import annotations

import contextlib
import shutil
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..data import FlightService, Route, copy_database
from ..servers.gunicorn import Gunicorn, start_gunicorn
from ..servers.gunicorn import memory as process_memory
from ..timing import take_in_turn
from ..webapp import COUNTERS, read_counters
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
    """Every ``interval`` seconds, the summed counters of a server, with the time since the start."""

    def __init__(self, server: Gunicorn, interval: float = 0.1):
        super().__init__(daemon=True, name="cachelab-sampler")
        self.server, self.interval = server, interval
        self.samples: list[dict] = []
        self._halt = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        while True:
            self.samples.append({"t": time.monotonic() - start, **counter_totals(self.server)})
            if self._halt.wait(self.interval):
                self.samples.append({"t": time.monotonic() - start, **counter_totals(self.server)})
                return

    def __enter__(self) -> Sampler:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self._halt.set()
        self.join(5)


@dataclass
class Bench:
    """What every measurement shares (see the module docstring); a context manager that cleans up."""

    workdir: Path
    db_path: Path
    redis: object  # a ManagedServer
    memcached: object  # a ManagedServer
    placement: Placement
    prefix: str
    hot_routes: list[Route]
    written_routes: list[Route]
    paths: dict[str, Path]
    ttl: float = 30.0
    local_ttl: float = 2.0
    write_rate: float = 8.0
    check_rate: float = 20.0
    seconds: int = 1
    cold_seconds: int = 2
    cold_max_seconds: int = 4
    connections: int = 8
    extra: dict = field(default_factory=dict)

    def settings(self, mode: str, run: str) -> dict:
        """The web app's settings for ``mode``: every mode gets the same TTLs and a fresh key prefix."""
        return {"db_path": str(self.db_path), "ttl": self.ttl, "local_ttl": self.local_ttl,
                "redis_url": self.redis.url, "memcached": [self.memcached.address],
                "prefix": f"{self.prefix}{run}:"}

    def describe(self) -> dict:
        return {"placement": self.placement.to_dict(), "hot_routes": len(self.hot_routes),
                "written_routes": [r.key() for r in self.written_routes], "ttl_s": self.ttl,
                "local_ttl_s": self.local_ttl, "write_rate": self.write_rate, "check_rate": self.check_rate,
                "seconds": self.seconds, "cold_seconds": self.cold_seconds, "cold_max_seconds": self.cold_max_seconds,
                "connections": self.connections}

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
    """Copy the database (WAL mode), start a private Redis and memcached on the server CPUs, write the
    request streams (``{"name": requests}``, routes or paths) to files. ``options`` set :class:`Bench` fields."""
    from .. import servers

    placement = options.pop("placement", None) or plan()
    workdir = Path(tempfile.mkdtemp(prefix="cachelab-07-"))
    started = []
    try:
        db_path = copy_database(workdir / "flights.sqlite")
        with contextlib.closing(sqlite3.connect(db_path)) as conn:
            conn.execute("PRAGMA journal_mode=WAL")  # readers and the writer side by side
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
    return Bench(workdir, db_path, redis, memcached, placement, prefix, list(hot_routes), list(written_routes),
                 paths, **options)


def flights_now(db_path: Path, routes: Sequence[Route]) -> dict[Route, int]:
    """The true ``flights`` count of each route, read from the database."""
    with FlightService(db_path, writable=True) as service:  # writable: the WAL needs it; nothing is written
        return {route: service.ask(route)["flights"] for route in routes}


def _wrk(bench: Bench, server: Gunicorn, stream: str, seconds: int | None = None, background=()) -> dict:
    """One wrk run on ``stream``, with the writer and checker of ``background`` running alongside."""
    with contextlib.ExitStack() as stack:
        for paced in background:
            stack.enter_context(paced.running())
        before = counter_totals(server)
        result = wrk.run_wrk(server.base_url, bench.paths[stream], seconds=seconds or bench.seconds,
                             connections=max(bench.connections, 2 * server.workers), cpus=bench.placement.generator)
        counts = delta(before, counter_totals(server))
    seconds_run = result.seconds
    return {"stream": stream, "workers": server.workers, **result.to_dict(), "non_2xx": result.non_2xx,
            "socket_errors": result.socket_errors, "counters": counts, "hit_ratio": hit_ratio(counts),
            "backend_qps": counts["backend_queries"] / seconds_run, "p50_ms": result.percentile_ms(50),
            "p90_ms": result.percentile_ms(90), "p99_ms": result.percentile_ms(99)}


def _cold_start(bench: Bench, server: Gunicorn, stream: str, max_seconds: int) -> dict:
    """wrk runs of one second from empty caches, no writes, for at least ``cold_seconds`` and until a second
    has at most two misses, or ``max_seconds`` have passed."""
    chunks = []
    while True:
        chunks.append(_wrk(bench, server, stream, 1))
        elapsed = len(chunks)
        warm = chunks[-1]["counters"]["misses"] <= 2
        if elapsed >= bench.cold_seconds and (elapsed >= max_seconds or warm):
            break
    counts = {name: sum(c["counters"][name] for c in chunks) for name in COUNTERS}
    requests = sum(c["requests"] for c in chunks)
    return {"seconds": len(chunks), "warm": warm, "requests": requests, "counters": counts,
            "hit_ratio": hit_ratio(counts), "requests_per_second": requests / sum(c["seconds"] for c in chunks),
            "non_2xx": sum(c["non_2xx"] for c in chunks), "socket_errors": sum(c["socket_errors"] for c in chunks),
            "chunks": chunks}


def median_run(runs: Sequence[dict], key: str = "requests_per_second") -> dict:
    """The run whose ``key`` is the median of ``runs`` (the lower middle one of an even count), with every run
    under ``"repeats"``: a summary whose fields all come from one run."""
    if not runs:
        raise ValueError("no runs to summarise")
    ordered = sorted(runs, key=lambda r: r[key])
    return {**ordered[(len(ordered) - 1) // 2], "repeats": list(runs)}


def measure_mode(bench: Bench, mode: str, ks: Sequence[int], *, pairs: int | dict = 0, repeats: int | dict = 1,
                 open_loop: Callable[[dict], Sequence[float]] | None = None, open_loop_k: int | None = None,
                 open_loop_seconds: float = 2, open_loop_interval: float = 0.5, hot_stream: str = "hot",
                 cold: bool = True, cold_max_seconds: int | None = None, run: str | None = None) -> dict:
    """Run ``mode`` through the protocol of the module docstring; returns plain data.

    ``cold=False`` skips the cold start (a mode without a cache has none). ``repeats``: how many steady runs,
    one after the other, at each worker count (or ``{workers: repeats}``); ``steady[k]`` is then the median one
    (:func:`median_run`), with every repeat under ``"repeats"``. ``pairs``: how many (floor,
    hit path) pairs of wrk runs to take in turn at each worker count (or ``{workers: pairs}``), on the
    streams ``"floor"`` and ``"hit"`` (the hit path's keys must already be in the cache).
    ``open_loop(steady)`` returns the rates that paced locust users offer at ``open_loop_k`` workers, given
    that count's steady run, each for ``open_loop_seconds``, with users whose interval is at least
    ``open_loop_interval`` (:func:`cachelab.load.paced.run_paced`).
    """
    ks = sorted(set(ks), reverse=True)
    run = run or mode
    base = flights_now(bench.db_path, bench.written_routes)
    out: dict = {"mode": mode, "ks": sorted(ks), "cold": None, "steady": {}, "pairs": {}, "open_loop": None}
    with start_gunicorn(mode, ks[0], settings=bench.settings(mode, run), cpus=bench.placement.servers) as server:
        out["placement"] = {"gunicorn": server.placement(), "generator": bench.placement.generator}
        writer = freshness.Writer(server.base_url, bench.written_routes, bench.write_rate)
        checker = freshness.Checker(server.base_url, bench.written_routes, bench.check_rate)
        writes = (writer, checker)
        if cold and bench.cold_seconds:
            with Sampler(server) as sampler:
                out["cold"] = _cold_start(bench, server, hot_stream, cold_max_seconds or bench.cold_max_seconds)
            out["cold"]["series"] = sampler.samples
        out["memory"] = server.memory()  # the most workers, warm
        for k in ks:
            server.scale(k)
            n_repeats = repeats.get(k, 1) if isinstance(repeats, dict) else repeats
            steady = median_run([_wrk(bench, server, hot_stream, background=writes) for _ in range(max(1, n_repeats))])
            out["steady"][k] = steady
            n_pairs = pairs.get(k, 0) if isinstance(pairs, dict) else pairs
            if n_pairs:  # the floor and the hit path, sampled in turn (cachelab.timing.take_in_turn)
                taken = {"floor": [], "hit": []}

                def sampler(name, taken=taken):
                    def sample() -> float:
                        taken[name].append(_wrk(bench, server, name))
                        return 1e9 / taken[name][-1]["requests_per_second"]  # ns per request
                    return sample

                take_in_turn({"floor": sampler("floor"), "hit": sampler("hit")}, n_pairs)
                out["pairs"][k] = taken
            if open_loop is not None and k == open_loop_k:
                rates = list(open_loop(steady))
                with writer.running(), checker.running():
                    before = counter_totals(server)
                    stages = paced.run_paced(server.base_url, bench.paths[hot_stream], rates,
                                             seconds=open_loop_seconds, min_interval=open_loop_interval,
                                             cpus=bench.placement.generator)
                    counts = delta(before, counter_totals(server))
                out["open_loop"] = {"workers": k, "stages": [s.to_dict() for s in stages], "counters": counts,
                                    "hit_ratio": hit_ratio(counts)}
        out["final_counters"] = counter_totals(server)  # before the stop removes the counters files
    out["writes"] = {"done": len(writer.log), "errors": writer.errors}
    out["checks_errors"] = checker.errors
    out["staleness"] = freshness.staleness(base, writer.log, checker.log).to_dict()
    return out


def measure_fork(bench: Bench, workers: int, seconds: int = 2) -> dict:
    """Memory per worker, with and without gunicorn's ``--preload``, of an ``lru`` cache warmed with every
    answer (one ``GROUP BY`` query) and of ``none`` (no cache, the baseline of each), right after start.

    With ``--preload`` the master builds the app, and so warms the cache, before the fork: every worker
    starts with the master's pages, shared copy-on-write. Without it, each worker warms its own copy after
    the fork. The preloaded ``lru`` server is measured twice more: after a second of requests for the hot
    routes only (``"hot"``: the first requests' own costs, a few entries read), then after ``seconds`` of
    requests for every route (``"all"``): what reading the rest of the cache copied."""
    out = {}
    for preload in (True, False):
        for mode in ("lru", "none"):
            settings = {**bench.settings(mode, f"fork-{mode}"), "warm": mode == "lru"}
            with start_gunicorn(mode, workers, settings=settings, cpus=bench.placement.servers,
                                preload=preload) as server:
                found = {"start": list(server.memory().values())}
                if preload and mode == "lru":
                    found["hot_run"] = _wrk(bench, server, "hot", 1)
                    found["after hot"] = list(server.memory().values())
                    found["all_run"] = _wrk(bench, server, "all", seconds)
                    found["after all"] = list(server.memory().values())
                found["master"] = process_memory(server.pid)
            out[f"{mode}, {'preload' if preload else 'no preload'}"] = {"mode": mode, "preload": preload,
                                                                        "workers": workers, **found}
    return out
