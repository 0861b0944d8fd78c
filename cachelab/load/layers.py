"""Notebook 09's measurements: 07's load protocol applied to servers other than 07's gunicorn.

* :func:`wrk_run`: one wrk run (``zipf_paths.lua``, the same stream files, connections and placement as 07),
  against any base URL (nginx, gunicorn, uvicorn), with the counters of the app server behind it and the CPU
  time its processes spent: what a request costs the server, beside how many it served.
* :func:`runs_in_turn`: several such runs taken in turn, round after round, with the order rotated each
  round (:func:`cachelab.timing.take_in_turn`), so that a busy moment of the machine touches every server alike.
* :func:`burst`: ``n`` requests for one URL sent at the same moment from ``n`` threads (a stampede on a cold
  key), each with its status and latency.
* :func:`cpu_seconds`: the CPU time (user + system) processes have used, from ``/proc``; :func:`cpu_times`
  and :func:`cpu_busy`: how busy whole CPUs were (every process on them, this project's or not).
* :func:`ready`, :func:`stop_servers`: several servers started side by side, placed, and stopped together;
  :func:`pin_this_thread` keeps the notebook's own requests off the server CPUs; :func:`placement_text` says
  what runs where.

Everything returned is plain data, ready for :meth:`cachelab.results.Results.put`.
"""

from __future__ import annotations

import contextlib
import os
import signal
import statistics
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path

from .. import arguments
from ..timing import take_in_turn
from ..webapp import read_counters
from . import wrk


def cpu_seconds(pids: Sequence[int]) -> float:
    """User + system CPU seconds used so far by ``pids`` (their threads included; a pid gone counts 0)."""
    tick = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime: fields 14 and 15 of stat(5)
    return total / tick


def cpu_times(cpus: Sequence[int]) -> dict[int, dict[str, int]]:
    """Each CPU's time so far, in clock ticks, from ``/proc/stat`` (every process's, this project's or not):
    ``busy`` (user, nice, system, irq, softirq, steal), ``softirq`` alone, and ``total`` (idle and iowait too).
    Empty where ``/proc/stat`` is missing."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return {}
    out = {}
    for line in lines:
        name, *values = line.split()
        if not (name.startswith("cpu") and name[3:].isdigit() and int(name[3:]) in set(cpus)):
            continue
        user, nice, system, idle, iowait, irq, softirq, steal = (int(v) for v in values[:8])
        out[int(name[3:])] = {"busy": user + nice + system + irq + softirq + steal, "softirq": softirq,
                              "total": user + nice + system + idle + iowait + irq + softirq + steal}
    return out


def cpu_busy(before: dict, after: dict) -> dict[str, float]:
    """What the CPUs of two :func:`cpu_times` readings did in between, as fractions of their time: ``busy``
    (any process, this project's or not) and ``softirq`` (the kernel's deferred work, loopback's packets
    among it, charged to no process); NaN without readings."""
    total = sum(after[c]["total"] - before[c]["total"] for c in after if c in before)
    if total <= 0:
        return {"busy": float("nan"), "softirq": float("nan")}
    return {name: sum(after[c][name] - before[c][name] for c in after if c in before) / total
            for name in ("busy", "softirq")}


def totals(counters_dir: str | os.PathLike) -> dict[str, int]:
    """Every worker's counters in a counters folder, summed (workers that exited included)."""
    out: dict[str, int] = {}
    for counts in read_counters(counters_dir).values():
        for name, value in counts.items():
            out[name] = out.get(name, 0) + value
    return out


def wrk_run(base_url: str, paths_file: str | os.PathLike, *, seconds: int = 1, connections: int = 8,
            cpus: Sequence[int] | None = None, app=None, processes: Sequence[int] = (),
            server_cpus: Sequence[int] | None = None, headers: Mapping[str, str] | None = None) -> dict:
    """One wrk run; ``app``: the app server behind ``base_url`` (its counters are read before and after);
    ``processes``: the pids whose CPU time the run is charged (the serving processes, a cache server);
    ``server_cpus``: the CPUs they run on, whose use by every process is read too (``server_busy``,
    ``server_softirq``), beside the share charged to ``processes`` (``charged``: CPU seconds per second of
    the run and per server CPU). ``headers``: added to every request (:func:`cachelab.load.wrk.run_wrk`)."""
    before = totals(app.counters_dir) if app is not None else {}
    cpu_before, times_before = cpu_seconds(processes), cpu_times(server_cpus or ())
    result = wrk.run_wrk(base_url, paths_file, seconds=seconds, connections=connections, cpus=cpus,
                         headers=headers)
    cpu, busy = cpu_seconds(processes) - cpu_before, cpu_busy(times_before, cpu_times(server_cpus or ()))
    after = totals(app.counters_dir) if app is not None else {}
    counts = {name: after[name] - before.get(name, 0) for name in after}
    per_cpu = result.seconds * max(1, len(server_cpus or ()))
    return {**result.to_dict(), "non_2xx": result.non_2xx, "socket_errors": result.socket_errors,
            "p50_ms": result.percentile_ms(50), "p99_ms": result.percentile_ms(99), "counters": counts,
            "cpu_s": cpu, "cpu_us_per_request": 1e6 * cpu / result.requests if result.requests else float("nan"),
            "charged": cpu / per_cpu if per_cpu > 0 else float("nan"), "server_busy": busy["busy"],
            "server_softirq": busy["softirq"]}


def runs_in_turn(runs: Mapping[str, Callable[[], dict]], rounds: int) -> dict[str, list[dict]]:
    """``rounds`` results of each run, taken in turn (the order rotates every round)."""
    taken: dict[str, list[dict]] = {name: [] for name in runs}

    def sampler(name):
        def sample() -> float:
            taken[name].append(runs[name]())
            return 1e9 / max(taken[name][-1]["requests_per_second"], 1e-9)  # ns per request
        return sample

    take_in_turn({name: sampler(name) for name in runs}, arguments.integer("rounds", rounds, minimum=1))
    return taken


def burst(url: str, n: int, *, timeout: float = 15.0) -> list[dict]:
    """``n`` GETs of ``url`` released together from ``n`` threads; each one's ``status`` and ``seconds``."""
    n = arguments.integer("n", n, minimum=1, maximum=256)
    gate = threading.Barrier(n)
    out: list[dict] = [{} for _ in range(n)]

    def one(i: int) -> None:
        gate.wait(timeout)
        start = time.perf_counter()
        try:
            with urllib.request.urlopen(url, timeout=timeout) as response:  # noqa: S310 - our own servers
                response.read()
                status = response.status
        except urllib.error.HTTPError as error:
            status = error.code
        except OSError as error:
            status = f"{type(error).__name__}"
        out[i] = {"status": status, "seconds": time.perf_counter() - start}

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout + 5)
    return out


def pin_group(pid: int, cpus: Sequence[int] | None) -> list[int]:
    """Restrict every process of process group ``pid`` (a server this project started: its master and workers)
    to ``cpus``; workers forked later inherit the master's. Returns the pids pinned."""
    from ..servers.gunicorn import group_pids
    from .processes import pin

    pinned = []
    for member in group_pids(pid):
        try:
            pin(member, cpus)
        except ProcessLookupError:
            continue
        pinned.append(member)
    return pinned


def ready(launching: Mapping[str, object], cpus: Sequence[int] | None) -> dict[str, object]:
    """Wait for each server of ``launching`` (started with ``wait=False``, side by side on every CPU), then pin
    it, master and workers, to ``cpus``; returns them by name. If one fails, every one of them is stopped and
    the error raised."""
    out = {}
    try:
        for name, server in launching.items():
            out[name] = server.wait_ready()
            pin_group(server.pid, cpus)
    except BaseException:
        stop_servers(launching.values())
        raise
    return out


def stop_servers(servers: Iterable) -> list[int]:
    """Stop several servers (nginx, gunicorn, uvicorn) side by side: SIGTERM to every master first, so that
    their graceful waits overlap, then each one's ``stop()`` (SIGKILL to what is left). Every server is
    stopped even if one fails (the first error is raised); returns their process-group leaders."""
    servers = list(servers)
    for server in servers:
        if server.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                server.process.send_signal(signal.SIGTERM)
    errors = []
    for server in servers:
        try:
            server.stop()
        except Exception as exc:  # noqa: BLE001 - stop the others, then raise the first
            errors.append(exc)
    if errors:
        raise errors[0]
    return [server.pid for server in servers]


def pin_this_thread(cpus: Sequence[int] | None) -> tuple[int, ...] | None:
    """Run the calling thread (on Linux, only it, and the threads it starts afterwards) on ``cpus``; returns the
    CPUs it could run on before, to restore them. Does nothing where the system cannot pin, or without ``cpus``."""
    if not cpus or not hasattr(os, "sched_setaffinity"):
        return None
    before = tuple(sorted(os.sched_getaffinity(0)))
    os.sched_setaffinity(0, set(cpus))
    return before


def placement_text(where) -> str:
    """What runs where in notebook 09, for a :class:`cachelab.load.placement.Placement`."""
    if where.generator is None:
        return f"{len(where.cpus)} CPU(s), not pinned: the scheduler places every process"
    if not where.separate:
        return (f"1 CPU ({where.cpus[0]}): nginx, the app servers, Redis, wrk, the writer and checker threads and "
                "this kernel share it")
    servers, generator = (", ".join(map(str, cpus)) for cpus in (where.servers, where.generator))
    return (f"server CPU {servers}: nginx, the app servers and Redis; CPU {generator}: wrk, the writer and checker "
            "threads, and this kernel (its requests, bursts and timings)")


HANDSHAKE = frozenset({"info", "hello", "auth", "select", "client|setinfo", "client|setname", "ping"})
"""Commands :func:`redis_commands` leaves out: ``INFO``, and a new connection's handshake."""


def redis_commands(client, during: Callable[[], object]) -> dict[str, int]:
    """The Redis commands (``{"get": 1, ...}``) a server ran while ``during()`` ran, from ``INFO commandstats``
    before and after. Left out: the INFO calls themselves, and what a client sends once when it opens a
    connection (:data:`HANDSHAKE`), which a worker's first request pays. Meant for a private Redis: any other
    client's commands in between count too."""
    def calls() -> dict[str, int]:
        return {name.removeprefix("cmdstat_"): stats["calls"] for name, stats in client.info("commandstats").items()}

    before = calls()
    during()
    after = calls()
    return {name: n - before.get(name, 0) for name, n in after.items()
            if n != before.get(name, 0) and name not in HANDSHAKE}


def bursts(designs: Mapping[str, tuple], routes: Iterator, n: int, rounds: int) -> dict[str, list[dict]]:
    """``rounds`` :func:`burst` of ``n`` requests for each design, each time on the next route of ``routes`` (keys
    no cache holds yet). ``designs`` maps a name to ``(server, prefix, app)``: the URL is ``server.url(prefix +
    route's path)``, and ``app`` the app server whose backend queries the burst is charged. Each burst: its
    ``queries``, and each answer's ``statuses`` and ``seconds``."""
    out: dict[str, list[dict]] = {name: [] for name in designs}
    for _ in range(arguments.integer("rounds", rounds, minimum=1)):
        for name, (server, prefix, app) in designs.items():
            route = next(routes)
            before = totals(app.counters_dir)["backend_queries"]
            answers = burst(server.url(prefix + wrk.route_path(route)), n)
            out[name].append({"queries": totals(app.counters_dir)["backend_queries"] - before,
                              "statuses": [a["status"] for a in answers], "seconds": [a["seconds"] for a in answers]})
    return out


def burst_table(results: Mapping[str, list[dict]]) -> str:
    """:func:`bursts`' results as a table: each design's queries per burst, and its slowest answer (the median
    over its bursts)."""
    lines = [f"{'design':<28}{'queries per burst':>20}{'slowest answer, ms (median of bursts)':>40}"]
    for name, runs in results.items():
        slowest = sorted(max(b["seconds"]) for b in runs)[(len(runs) - 1) // 2] if runs else float("nan")
        lines.append(f"{name:<28}{' '.join(str(b['queries']) for b in runs):>20}{slowest * 1000:>40.0f}")
    return "\n".join(lines)


def throughput_table(taken: Mapping[str, list[dict]]) -> str:
    """:func:`runs_in_turn`'s results as a table, one row per server, each column the median of its runs:
    requests per second, p99 latency, CPU per answer, how busy the server CPU was, and the share of it charged
    to the processes measured."""
    columns = (("req/s", "requests_per_second", 8, ".0f"), ("p99 ms", "p99_ms", 8, ".1f"),
               ("CPU µs/answer", "cpu_us_per_request", 15, ".0f"), ("CPU busy", "server_busy", 10, ".0%"),
               ("charged", "charged", 9, ".0%"))
    lines = [f"{'server':<40}{'runs':>5}" + "".join(f"{title:>{width}}" for title, _, width, _ in columns)]
    for name, runs in taken.items():
        lines.append(f"{name:<40}{len(runs):>5}" + "".join(
            f"{statistics.median(r[key] for r in runs):>{width}{form}}" for _, key, width, form in columns))
    return "\n".join(lines)
