"""Closed-loop load with ``wrk``: ``c`` connections, each sending its next request as soon as the last answer
arrives, as fast as the server allows. What it measures is the maximum throughput.

The requests come from a file of paths (:func:`write_paths`), walked in order by ``zipf_paths.lua``, which
prints the run's counts, errors and latency percentiles from wrk's own histogram as one JSON line.

Two things to know when reading wrk's latencies (wrk 4, ``src/wrk.c`` and ``src/stats.c``):

* the histogram has 1 µs buckets up to the ``--timeout``; a slower answer counts as a timeout error;
* before the percentiles are taken, wrk "corrects" for coordinated omission (``stats_correct``): every
  latency above twice the mean interval between requests on a connection adds synthetic samples below
  it, as if the requests that the waiting connection did not send had been sent on schedule. The
  schedule is the one the closed loop itself achieved, not an offered rate, so this does not turn wrk
  into an open-loop generator (for latency against offered rate, see :mod:`cachelab.load.paced`).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import arguments
from .processes import run_pinned

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

    def to_dict(self) -> dict:
        return {"requests": self.requests, "seconds": self.seconds, "connections": self.connections,
                "requests_per_second": self.requests_per_second, "errors": dict(self.errors),
                "latency_us": dict(self.latency_us)}


def parse_output(stdout: str, connections: int) -> WrkResult:
    """The :class:`WrkResult` in the line that ``zipf_paths.lua``'s ``done()`` printed."""
    for line in stdout.splitlines():
        if line.startswith(MARKER):
            data = json.loads(line[len(MARKER):])
            return WrkResult(int(data["requests"]), data["duration_us"] / 1e6, connections,
                             {k: int(v) for k, v in data["errors"].items()}, dict(data["latency_us"]))
    raise WrkError("wrk printed no result line (was the script zipf_paths.lua?):\n" + stdout[-2000:])


def run_wrk(base_url: str, paths_file: str | Path, *, seconds: int = 2, connections: int = 8, threads: int = 1,
            cpus: Sequence[int] | None = None, timeout_s: int = 10,
            headers: Mapping[str, str] | None = None) -> WrkResult:
    """Run wrk against ``base_url`` with the requests of ``paths_file`` for ``seconds`` (whole seconds: wrk's
    unit), pinned to ``cpus`` when given. A request slower than ``timeout_s`` counts as an error. ``headers``
    are added to every request (wrk's ``-H``; ``{"Connection": "close"}``: a new connection per request)."""
    exe = shutil.which("wrk")
    if exe is None:
        raise WrkError("wrk is not on PATH: `make setup` installs it (apt/dnf/brew package 'wrk')")
    seconds = arguments.integer("seconds", seconds, minimum=1)
    connections = arguments.integer("connections", connections, minimum=1)
    threads = arguments.integer("threads", threads, minimum=1, maximum=connections)
    extra = [arg for name, value in (headers or {}).items() for arg in ("-H", f"{name}: {value}")]
    command = [exe, f"-t{threads}", f"-c{connections}", f"-d{seconds}s", f"--timeout={timeout_s}s", *extra,
               "-s", str(SCRIPT), base_url, "--", str(paths_file), str(threads)]
    try:
        out = run_pinned(command, cpus=cpus, timeout=seconds + timeout_s + 30)
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
