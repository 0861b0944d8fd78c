"""The experiment of notebook 07: the web app in each cache mode, under wrk and locust, with writes going on.

:class:`Bench` holds what every measurement shares: a private Redis and memcached started for this
experiment, the CPU placement, the request streams, the write and check rates, the TTLs. Each server of the
experiment is a :class:`Cell` of a :class:`Grid`: one cache mode at ``K`` workers, with a private writable
copy of the database of its own (in WAL mode, so that reads and writes run side by side, as a production
SQLite would be set up), its own writer and checker (:mod:`cachelab.load.freshness`), and its workers' query
log (:class:`cachelab.webapp.QueryLog`).

The protocol, designed so that drift on a shared machine cannot pass for a difference between modes:

1. :func:`start_grid` starts every cell's gunicorn at once, each with ``--preload``, then pins each to the
   server CPUs (the cache servers are pinned there too);
2. :func:`cold_start` fills each cell's caches from empty, without writes, and records how (every worker's
   counters every 100 ms, every backend query with its key);
3. :func:`run_rotation` then takes **windows** (:func:`window`) of every cell in rounds, in a shuffled order in
   each round (:func:`rotation_plan`), so that no mode and no worker count is measured only early or only
   late. A window is one wrk run of whole seconds (wrk's unit) with the cell's writer and checker running,
   its counters sampled every 100 ms; each write's backend queries are counted from the query log;
4. :func:`settle_time` reads from the windows themselves how long a window takes to settle, and
   :func:`settled` gives each window's figures after that time; :func:`summary` the median of a cell's
   windows with their range.

:func:`sweep` runs paced locust users against one cell (its writer and checker stopped, so that the
offered rate is all the load), and :func:`measure_fork` the memory of forked workers. Everything returned is
plain data (dicts, lists, numbers), ready for :meth:`cachelab.results.Results.put`.
"""

from __future__ import annotations

import contextlib
import random
import shutil
import sqlite3
import statistics
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

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


@dataclass
class Bench:
    """What every measurement shares (see the module docstring); a context manager that cleans up."""

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
                "seconds": self.seconds, "cold_seconds": self.cold_seconds, "connections": self.connections}

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


def flights_now(db_path: Path, routes: Sequence[Route]) -> dict[Route, int]:
    """The true ``flights`` count of each route, read from the database."""
    with FlightService(db_path, writable=True) as service:  # writable: the WAL needs it; nothing is written
        return {route: service.ask(route)["flights"] for route in routes}


def _wrk(bench: Bench, server: Gunicorn, stream: str, seconds: int | None = None) -> dict:
    """One wrk run on ``stream``, pinned to the generator's CPUs, with the counters before and after."""
    before = counter_totals(server)
    result = wrk.run_wrk(server.base_url, bench.paths[stream], seconds=seconds or bench.seconds,
                         connections=max(bench.connections, 2 * server.workers), cpus=bench.placement.generator)
    counts = delta(before, counter_totals(server))
    return {"stream": stream, "workers": server.workers, **result.to_dict(), "non_2xx": result.non_2xx,
            "socket_errors": result.socket_errors, "counters": counts, "hit_ratio": hit_ratio(counts),
            "backend_qps": counts["backend_queries"] / result.seconds, "p50_ms": result.percentile_ms(50),
            "p90_ms": result.percentile_ms(90), "p99_ms": result.percentile_ms(99)}


# --------------------------------------------------------------------------- the grid of servers

@dataclass
class Cell:
    """One server of the experiment: a cache mode at ``workers`` workers, with its own database copy, writer,
    checker and query log; its cold start and windows are kept here as they are measured."""

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


def cold_start(bench: Bench, cell: Cell, stream: str = "hot", max_seconds: int = 4) -> dict:
    """wrk runs of one second from empty caches, no writes, for at least ``bench.cold_seconds`` and until a
    second has at most two misses in 50 requests or more, or ``max_seconds`` have passed; every worker's
    counters every 100 ms, and every backend query with its key and worker."""
    cell.queries.read_new()  # nothing before the cold start counts
    chunks = []
    with Sampler(cell.server, cpus=bench.placement.generator) as sampler:
        while True:
            chunks.append(_wrk(bench, cell.server, stream, 1))
            last = chunks[-1]["counters"]  # warm: a second of real work with (almost) no miss
            warm = last["misses"] <= 2 and last["requests"] >= 50
            if len(chunks) >= bench.cold_seconds and (len(chunks) >= max_seconds or warm):
                break
    queries = cell.queries.read_new()
    counts = {name: sum(c["counters"][name] for c in chunks) for name in COUNTERS}
    requests = sum(c["requests"] for c in chunks)
    cell.cold = {"seconds": len(chunks), "warm": warm, "requests": requests, "counters": counts,
                 "hit_ratio": hit_ratio(counts), "requests_per_second": requests / sum(c["seconds"] for c in chunks),
                 "non_2xx": sum(c["non_2xx"] for c in chunks),
                 "socket_errors": sum(c["socket_errors"] for c in chunks), "chunks": chunks,
                 "series": sampler.samples, "queries_per_key": per_key(queries),
                 "queries_per_worker_and_key": [[pid, key, n] for (pid, key), n in
                                                per_key(queries, by_worker=True).items()]}
    return cell.cold


def cold_starts(bench: Bench, cells: Sequence[Cell], stream: str = "hot", max_seconds: int = 12) -> dict[str, dict]:
    """:func:`cold_start` of every cell of ``cells`` at once, each from a thread of its own (their misses share
    the server CPUs, so each takes longer than alone; what each cache queried does not change)."""
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
    out = []
    for i, (route, sent, _committed) in enumerate(writes):
        until = next((w[1] for w in writes[i + 1:] if w[0] == route), end)
        key = route.key()
        out.append({"route": key, "sent": sent,
                    "queries": sum(1 for t, k, _pid in queries if k == key and sent <= t < until)})
    return out


def window(bench: Bench, cell: Cell, stream: str = "hot", *, seconds: int | None = None,
           writes: bool = True) -> dict:
    """One measured window of ``cell``: a wrk run of ``seconds`` on ``stream`` with the cell's writer and
    checker running (``writes=False``: without them), the server's counters every 100 ms, and the backend
    queries of each write. Times are seconds from the window's start (monotonic clock)."""
    cell.queries.read_new()  # what came before this window is not its own
    n_writes, n_checks = len(cell.writer.log), len(cell.checker.log)
    start = time.monotonic()
    with contextlib.ExitStack() as stack:
        if writes:
            stack.enter_context(cell.writer.running())
            stack.enter_context(cell.checker.running())
        before = counter_totals(cell.server)
        with Sampler(cell.server, cpus=bench.placement.generator, start=start) as sampler:
            result = wrk.run_wrk(cell.server.base_url, bench.paths[stream], seconds=seconds or bench.seconds,
                                 connections=max(bench.connections, 2 * cell.server.workers),
                                 cpus=bench.placement.generator)
        after = counter_totals(cell.server)
    end = time.monotonic()
    queries = cell.queries.read_new()
    written = cell.writer.log[n_writes:]
    checks = cell.checker.log[n_checks:]
    stale = freshness.staleness(cell.base, cell.writer.log, checks)
    out = {"cell": cell.name, "mode": cell.mode, "workers": cell.workers, "stream": stream, "writes_on": writes,
           "start": start, "end_s": end - start, **result.to_dict(),
           "wrk_requests_per_second": result.requests_per_second,
           "non_2xx": result.non_2xx, "socket_errors": result.socket_errors, "counters": delta(before, after),
           "p50_ms": result.percentile_ms(50), "p90_ms": result.percentile_ms(90), "p99_ms": result.percentile_ms(99),
           "slots": [[s["t"], s["requests"], s["floor"], s["hits"], s["backend_queries"]] for s in sampler.samples],
           "writes": queries_per_write(written, queries, end), "checks": stale.checks, "stale": stale.stale,
           "writer_errors": len(cell.writer.errors), "checker_errors": len(cell.checker.errors)}
    out.update(settled(out, 0.0))
    cell.windows.append(out)
    return out


def settled(win: dict, settle_s: float) -> dict:
    """A window's figures from ``settle_s`` seconds after its start to the end of its wrk run, from its 100 ms
    samples: answers served per second (``/delay`` answers, the checker's included, or ``/floor`` answers for
    the floor stream), hit ratio, backend queries per second."""
    slots = win["slots"]
    first = next((s for s in slots if s[0] >= settle_s), slots[-1])
    last = slots[-1]
    span = last[0] - first[0]
    served = (last[2] - first[2]) if win["stream"] == "floor" else (last[1] - first[1])
    requests = last[1] - first[1]
    return {"settle_s": settle_s, "measured_s": span, "requests_per_second": served / span if span > 0 else 0.0,
            "hit_ratio": (last[3] - first[3]) / requests if requests else 0.0,
            "backend_qps": (last[4] - first[4]) / span if span > 0 else 0.0}


def refill_sizes(windows: Sequence[dict]) -> list[float]:
    """Each window's mean backend queries per write, over the writes that cost at least one: what a refill
    after a write cost, stampede included (a window whose written keys nobody read again gives none)."""
    out = []
    for win in windows:
        costs = [w["queries"] for w in win.get("writes", []) if w["queries"]]
        if costs:
            out.append(statistics.mean(costs))
    return out


def span_rate(win: dict, start: float, end: float) -> float:
    """A window's answers a second between ``start`` and ``end`` seconds after its start, from its samples
    (``/floor`` answers for the floor stream)."""
    col = 2 if win["stream"] == "floor" else 1
    inside = [s for s in win["slots"] if start <= s[0] <= end]
    if len(inside) < 2 or inside[-1][0] <= inside[0][0]:
        return float("nan")
    return (inside[-1][col] - inside[0][col]) / (inside[-1][0] - inside[0][0])


def rotation_plan(units: Sequence, every_round: Sequence = (), *, rounds: int = 5,
                  appearances: int | Sequence[int] = 3, seed: int = 2013) -> list[list]:
    """Rounds of a rotation: each unit of ``units`` in ``appearances`` of the ``rounds`` (its appearances dealt
    to the rounds in turn, so that each round holds as many units, give or take one), each of
    ``every_round`` in all of them; each round in its own shuffled order (seeded). ``appearances`` may be one
    number or one per unit. A pair (a tuple of units, taken one right after the other) is taken in the other
    order in every other round, so that neither of its two comes always first."""
    counts = [appearances] * len(units) if isinstance(appearances, int) else list(appearances)
    if len(counts) != len(units) or not all(1 <= n <= rounds for n in counts):
        raise ValueError("appearances must be between 1 and the number of rounds, one or one per unit")
    out = [[] for _ in range(rounds)]
    dealt = 0
    for unit, n in zip(units, counts, strict=True):
        for _ in range(n):
            out[dealt % rounds].append(unit)
            dealt += 1
    for r, chosen in enumerate(out):
        chosen += list(every_round)
        chosen[:] = [u[::-1] if r % 2 and _is_group(u) else u for u in chosen]
        random.Random(seed + r).shuffle(chosen)
    return out


def _is_group(unit) -> bool:
    return isinstance(unit, tuple) and bool(unit) and isinstance(unit[0], tuple)


def run_rotation(bench: Bench, grid: Grid, plan_: Sequence[Sequence]) -> list[dict]:
    """Take every window of ``plan_`` in order (from :func:`rotation_plan`). A unit is ``(cell name, stream,
    writes, seconds)``, or a tuple of such units, taken one right after the other (a pair taken in turn)."""
    taken = []
    origin = time.monotonic()
    for r, units in enumerate(plan_):
        for unit in units:
            group = unit if _is_group(unit) else (unit,)
            for name, stream, writes, seconds in group:
                win = window(bench, grid[name], stream, seconds=seconds, writes=writes)
                win.update(round=r, order=len(taken), at_s=win["start"] - origin)
                taken.append(win)
    return taken


def settle_time(windows: Sequence[dict], *, tolerance: float = 0.1, slot: float = 0.1, max_s: float = 0.5) -> dict:
    """How long the windows take to settle, read from their 100 ms samples.

    Each window's rate in each 100 ms slot is divided by its rate over the window's second half (its settled
    level); for each slot, the median of that ratio over all windows is the profile. The settle time is the
    start of the first slot from which the profile stays within ``tolerance`` of 1, at most ``max_s``.
    Returns ``{"settle_s", "profile": [[slot start, median ratio], ...], "windows"}``.
    """
    ratios: dict[int, list[float]] = {}
    for win in windows:
        col = 2 if win["stream"] == "floor" else 1
        slots = win["slots"]
        end = slots[-1][0]
        half = next((s for s in slots if s[0] >= end / 2), None)
        if half is None or end - half[0] <= 0 or slots[-1][col] == half[col]:
            continue
        level = (slots[-1][col] - half[col]) / (end - half[0])
        for a, b in zip(slots, slots[1:], strict=False):
            if b[0] - a[0] <= 0 or a[0] >= end / 2:
                continue
            ratios.setdefault(round(a[0] / slot), []).append((b[col] - a[col]) / (b[0] - a[0]) / level)
    profile = [[i * slot, statistics.median(v)] for i, v in sorted(ratios.items())]
    settle = max_s
    for j, (t, _) in enumerate(profile):
        if all(abs(r - 1) <= tolerance for _, r in profile[j:]):
            settle = min(t, max_s)
            break
    return {"settle_s": settle, "profile": profile, "windows": len(windows)}


def summary(windows: Sequence[dict], key: str = "requests_per_second") -> dict:
    """The median of ``key`` over ``windows``, with the lowest and highest, and every value."""
    values = [w[key] for w in windows]
    if not values:
        raise ValueError("no windows to summarise")
    return {"median": statistics.median(values), "low": min(values), "high": max(values), "values": values}


def table(groups: dict[str, Sequence[dict]]) -> str:
    """One line per group of windows: answers a second (median, lowest and highest), and the medians of the
    hit ratio, backend queries a second, backend queries per write (where there were writes) and wrk's p50 and
    p99."""
    lines = [f"{'server':<18}{'windows':>8}{'answers/s':>10}{'[range]':>16}{'hit ratio':>11}{'DB q/s':>8}"
             f"{'q/write':>9}{'p50 ms':>8}{'p99 ms':>8}"]
    for name, wins in groups.items():
        rate = summary(wins)
        per_write = [wr["queries"] for w in wins for wr in w.get("writes", [])]

        def med(key, wins=wins):
            return statistics.median(w[key] for w in wins)

        span = f"[{rate['low']:,.0f} - {rate['high']:,.0f}]"
        lines.append(f"{name:<18}{len(wins):>8}{rate['median']:>10,.0f}{span:>16}"
                     f"{med('hit_ratio'):>11.1%}{med('backend_qps'):>8.1f}"
                     f"{(f'{statistics.mean(per_write):.2f}' if per_write else '-'):>9}{med('p50_ms'):>8.1f}"
                     f"{med('p99_ms'):>8.1f}")
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


def validation_record(bench: Bench, grid: Grid, steady: dict[str, Sequence[dict]], *, workers: int,
                      window_s: float, settle_s: float) -> dict:
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
                            "writes_per_second": [len(w["writes"]) / w["end_s"] for w in wins],
                            "queries_per_write": [wr["queries"] for w in wins for wr in w["writes"]]}
    return {"workers": workers, "server_cpus": len(bench.placement.servers or bench.placement.cpus),
            "connections": bench.connections,
            "stream": {"kind": "zipf", "keys": len(bench.hot_routes), "alpha": workload.STANDARD_ALPHA,
                       "seed": workload.STANDARD_SEED, "length": workload.STANDARD_LENGTH,
                       "routes": [r.key() for r in bench.hot_routes]},
            "written_routes": [r.key() for r in bench.written_routes], "write_rate_offered": bench.write_rate,
            "check_rate_offered": bench.check_rate, "ttl_s": bench.ttl, "local_ttl_s": bench.local_ttl,
            "window_s": window_s, "settle_s": settle_s,
            "throughput_counts": "answers of /delay a second, wrk's and the checker's, from settle_s to the end",
            "modes": modes}


# --------------------------------------------------------------------------- paced users, and fork

def sweep(bench: Bench, cell: Cell, rates: Sequence[float], *, seconds: float, interval: float,
          stream: str = "hot") -> dict:
    """Paced locust users offering each of ``rates`` for ``seconds`` to ``cell``, its writer and checker
    stopped (the offered rate is then all the load), locust pinned to the generator's CPUs."""
    before = counter_totals(cell.server)
    stages = paced.run_paced(cell.server.base_url, bench.paths[stream], rates, seconds=seconds,
                             min_interval=interval, cpus=bench.placement.generator)
    counts = delta(before, counter_totals(cell.server))
    return {"cell": cell.name, "workers": cell.workers, "stages": [s.to_dict() for s in stages], "counters": counts,
            "hit_ratio": hit_ratio(counts)}


FORK_CONFIGS = {
    "none, preload": {"mode": "none"},
    "lru, preload": {"mode": "lru", "warm": True},
    "lru, preload, gc.freeze": {"mode": "lru", "warm": True, "gc_freeze": True},
    "lru, preload, filled after the fork": {"mode": "lru", "warm_in_worker": True},
}
"""The servers of :func:`measure_fork`, every one with ``--preload`` (the code imported once, shared)."""


def measure_fork(bench: Bench, workers: int, seconds: int = 2) -> dict:
    """Each worker's memory (``/proc/<pid>/smaps_rollup``) in the servers of :data:`FORK_CONFIGS`, all with
    gunicorn's ``--preload``: ``none`` (no cache, the baseline); ``lru`` warmed with every answer (one ``GROUP
    BY`` query) in the master before the fork, so that the workers start with the master's pages, shared
    copy-on-write; the same with the recipe of Python's ``gc.freeze`` docs; and the control, the same
    preloaded code with the cache filled in each worker after the fork (its own, nothing shared to copy).

    Every server first answers a second of ``/floor`` (each worker has run the HTTP path once, so that the
    pages that costs are counted before, not after), then ``"before"`` is read; the ``lru`` servers then
    answer ``seconds`` of requests for every route (stream ``"all"``, the same sequence for each), and
    ``"after"`` is read. The servers start side by side, then are pinned to the server CPUs.
    """
    servers = {}
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
        out = {}
        for name, server in servers.items():
            found = {"floor_run": _wrk(bench, server, "floor", 1), "before": list(server.memory().values()),
                     "stats": server.get_json("/stats")}
            if FORK_CONFIGS[name]["mode"] == "lru":
                found["run"] = _wrk(bench, server, "all", seconds)
                found["after"] = list(server.memory().values())
            found["master"] = process_memory(server.pid)
            out[name] = {**FORK_CONFIGS[name], "workers": workers, **found}
        return out
    finally:
        with contextlib.suppress(Exception):
            stop_all(servers.values())


def model_costs(lab=None) -> dict:
    """The two throughputs the model of notebook 07 (section 10) takes: ``x_hit``, requests per second when every
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
