"""Notebook 09's measurements: 07's load protocol applied to servers other than 07's gunicorn.

* :func:`wrk_run`: one wrk run (``zipf_paths.lua``, the same stream files, connections and placement as 07),
  against any base URL (nginx, gunicorn, uvicorn), with the counters of the app server behind it and the CPU
  time its processes spent: what a request costs the server, beside how many it served.
* :func:`runs_in_turn`: several such runs taken in turn, round after round, with the order rotated each
  round (:func:`cachelab.timing.take_in_turn`), so that a busy moment of the machine touches every server alike.
* :func:`burst`: ``n`` requests for one URL sent at the same moment from ``n`` threads (a stampede on a cold
  key), each with its status and latency.
* :func:`cpu_seconds`: the CPU time (user + system) processes have used, from ``/proc``.

Everything returned is plain data, ready for :meth:`cachelab.results.Results.put`.
"""

from __future__ import annotations

import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping, Sequence
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


def totals(counters_dir: str | os.PathLike) -> dict[str, int]:
    """Every worker's counters in a counters folder, summed (workers that exited included)."""
    out: dict[str, int] = {}
    for counts in read_counters(counters_dir).values():
        for name, value in counts.items():
            out[name] = out.get(name, 0) + value
    return out


def wrk_run(base_url: str, paths_file: str | os.PathLike, *, seconds: int = 1, connections: int = 8,
            cpus: Sequence[int] | None = None, app=None, processes: Sequence[int] = ()) -> dict:
    """One wrk run; ``app``: the app server behind ``base_url`` (its counters are read before and after);
    ``processes``: the pids whose CPU time the run is charged (the serving processes, a cache server)."""
    before = totals(app.counters_dir) if app is not None else {}
    cpu_before = cpu_seconds(processes)
    result = wrk.run_wrk(base_url, paths_file, seconds=seconds, connections=connections, cpus=cpus)
    cpu = cpu_seconds(processes) - cpu_before
    after = totals(app.counters_dir) if app is not None else {}
    counts = {name: after[name] - before.get(name, 0) for name in after}
    return {**result.to_dict(), "non_2xx": result.non_2xx, "socket_errors": result.socket_errors,
            "p50_ms": result.percentile_ms(50), "p99_ms": result.percentile_ms(99), "counters": counts,
            "cpu_s": cpu, "cpu_us_per_request": 1e6 * cpu / result.requests if result.requests else float("nan")}


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
