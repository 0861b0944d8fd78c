"""Closed-loop load with ``wrk``: ``c`` connections, each sending its next request as soon as the last answer
arrives, as fast as the server allows. What it measures is the maximum throughput.

The requests come from a file of paths (:func:`write_paths`), walked in order by ``zipf_paths.lua`` from a
given line (``start``: a run can go on where the previous one stopped), which prints the run's counts, errors,
latency percentiles from wrk's own histogram and the line it sent last as one JSON line.

What to know when reading wrk's figures (wrk 4, ``src/wrk.c`` and ``src/stats.c``):

* wrk opens its ``c`` connections and writes a request on each at once: the server's queue is full from the
  first millisecond. A latency is recorded when its answer is complete (``response_complete``); the
  requests still waiting when the run stops are never recorded;
* the histogram has 1 µs buckets up to the ``--timeout``; a slower answer counts as a timeout error;
* before the percentiles are taken, wrk "corrects" for coordinated omission (``stats_correct``): with the
  interval ``runtime / (requests / connections)`` (integer division: a run of fewer requests than
  connections is not corrected at all), every latency of more than twice that interval adds synthetic
  samples below it, one per interval. The interval is the one the closed loop itself achieved, not an
  offered rate, so this does not turn wrk into an open-loop generator (for latency against offered rate,
  see :mod:`cachelab.load.paced`); and a run with a few requests per connection gets no synthetic sample,
  since none of its latencies reaches twice its duration over that few.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import arguments
from .processes import finish, run_pinned, start_pinned

SCRIPT = Path(__file__).with_name("zipf_paths.lua")
MARKER = "cachelab-wrk "


class WrkError(RuntimeError):
    """wrk is missing, failed, or printed no result line."""


def route_path(route) -> str:
    """The web app's path for a :class:`~cachelab.data.Route`: ``/delay/JFK/LAX/7``."""
    return f"/delay/{route.origin}/{route.dest}/{route.month}"


def write_paths(path: str | Path, requests: Iterable) -> Path:
    """Write one request path a line (routes become :func:`route_path`; strings are kept as they are)."""
    lines = [r if isinstance(r, str) else route_path(r) for r in requests]
    if not lines:
        raise ValueError("a paths file needs at least one request")
    path = Path(path)
    path.write_text("\n".join(lines) + "\n", encoding="ascii")
    return path


@dataclass(frozen=True)
class WrkResult:
    """One wrk run: counts, errors by kind, and latency percentiles (µs) from wrk's own histogram."""

    requests: int
    seconds: float
    connections: int
    errors: dict
    latency_us: dict
    position: int | None = None  # the line of the paths file sent last: a next run's ``start``

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds if self.seconds > 0 else 0.0

    @property
    def non_2xx(self) -> int:
        """Answers with a status above 399 (what wrk counts; the app answers no 3xx)."""
        return int(self.errors.get("status", 0))

    @property
    def socket_errors(self) -> int:
        return int(sum(self.errors.get(k, 0) for k in ("connect", "read", "write", "timeout")))

    def percentile_ms(self, p: float) -> float:
        return self.latency_us[f"p{p:g}"] / 1000

    @property
    def corrected(self) -> bool:
        """Whether wrk could correct this run's histogram for coordinated omission at all: it needs at least one
        request per connection (its interval divides by requests // connections)."""
        return self.requests // max(self.connections, 1) > 0

    def to_dict(self) -> dict:
        return {"requests": self.requests, "seconds": self.seconds, "connections": self.connections,
                "requests_per_second": self.requests_per_second, "errors": dict(self.errors),
                "latency_us": dict(self.latency_us), "position": self.position}


def parse_output(stdout: str, connections: int) -> WrkResult:
    """The :class:`WrkResult` in the line that ``zipf_paths.lua``'s ``done()`` printed."""
    for line in stdout.splitlines():
        if line.startswith(MARKER):
            data = json.loads(line[len(MARKER):])
            position = data.get("position")
            return WrkResult(int(data["requests"]), data["duration_us"] / 1e6, connections,
                             {k: int(v) for k, v in data["errors"].items()}, dict(data["latency_us"]),
                             None if position is None else int(position))
    raise WrkError("wrk printed no result line (was the script zipf_paths.lua?):\n" + stdout[-2000:])


def run_wrk(base_url: str, paths_file: str | Path, *, seconds: int = 2, connections: int = 8, threads: int = 1,
            cpus: Sequence[int] | None = None, timeout_s: int = 10,
            headers: Mapping[str, str] | None = None, start: int = 0,
            until: Callable[[], bool] | None = None, poll_s: float = 0.1) -> WrkResult:
    """Run wrk against ``base_url`` with the requests of ``paths_file`` for ``seconds`` (whole seconds: wrk's
    unit), pinned to ``cpus`` when given. A request slower than ``timeout_s`` counts as an error. ``headers``
    are added to every request (wrk's ``-H``; ``{"Connection": "close"}``: a new connection per request).

    ``start``: the line of the paths file after which the first thread begins (the ``position`` of the previous
    run, to go on where it stopped). ``until``: called every ``poll_s`` seconds while wrk runs; when it returns
    true, wrk is stopped early (SIGINT, which wrk answers by stopping and reporting as at the end of its
    duration), so that ``seconds`` is then a limit."""
    exe = shutil.which("wrk")
    if exe is None:
        raise WrkError("wrk is not on PATH: `make setup` installs it (apt/dnf/brew package 'wrk')")
    seconds = arguments.integer("seconds", seconds, minimum=1)
    connections = arguments.integer("connections", connections, minimum=1)
    threads = arguments.integer("threads", threads, minimum=1, maximum=connections)
    start = arguments.integer("start", start, minimum=0)
    extra = [arg for name, value in (headers or {}).items() for arg in ("-H", f"{name}: {value}")]
    command = [exe, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", f"--timeout={timeout_s}s", *extra,
               "-s", str(SCRIPT), base_url, "--", str(paths_file), str(threads), str(start)]
    limit = seconds + timeout_s + 30
    try:
        if until is None:
            out = run_pinned(command, cpus=cpus, timeout=limit)
        else:
            process = start_pinned(command, cpus=cpus)
            deadline = time.monotonic() + limit
            while process.poll() is None and time.monotonic() < deadline:
                if until():
                    os.kill(process.pid, signal.SIGINT)
                    break
                time.sleep(poll_s)
            out = finish(process, timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.CalledProcessError as exc:
        raise WrkError(f"wrk failed (exit {exc.returncode}): {exc.stderr or exc.stdout}") from None
    return parse_output(out.stdout, connections)


def version() -> str:
    """wrk's version line (``wrk -v`` prints it, then its usage, and exits with 1)."""
    exe = shutil.which("wrk")
    if exe is None:
        raise WrkError("wrk is not on PATH: `make setup` installs it (apt/dnf/brew package 'wrk')")
    out = subprocess.run([exe, "-v"], capture_output=True, text=True, timeout=30)
    return (out.stdout or out.stderr).splitlines()[0].strip()
