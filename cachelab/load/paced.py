"""Latency against offered load with locust: stages of an open loop, and where the server or the generator fell behind.

Which generator, and why. A generator that starts requests on a fixed schedule whatever the answers do
(an open loop) is what a latency-against-load curve needs. ``h2load --rps`` (nghttp2) paces each client
with a timer, but a request due while the client's HTTP/1.1 connection still waits (the default ``-m 1``)
is only counted as pending, and goes out when the answer arrives (``rps_cb`` and
``Client::on_stream_close`` in ``src/h2load.cc``). Worse here, gunicorn's sync workers close the
connection after every answer, and h2load then reconnects, restarts the client's rate timer and sends one
request at once (``Client::connection_made``): against this service ``--rps`` paces nothing. So the
notebook uses locust, headless.

What locust does, and what this module makes of it. A locust user is a closed loop: it sends a request and
waits for the answer. Its pacing, ``wait_time = constant_throughput(r)`` (``constant_pacing(1 / r)`` in
``locust/user/wait_time.py``), sleeps what is left of the interval ``1 / r`` counted from the start of the
task that just ended, or not at all when the task took longer: a user whose answer comes late sends its
next request late and never catches up, and the latency locust records starts at the late send
(coordinated omission). So ``locustfile.py`` does not pace users: each request of a stage has a user of its
own, which sends it at its due time and nothing else, an open loop by construction (``users = round(rate x
seconds)`` greenlets and connections a stage). Each stage starts on an idle server: after the previous
stage's requests have all been answered, and a pause.

:func:`run_paced` turns the records into a :class:`Stage` per offered rate: offered against answered, the
latency from the send and from the due time, the generator's own lateness (a request can only leave late
because the generator was busy: its user had nothing else to do), the generator's CPU, whether the server
kept up (:attr:`Stage.behind`: a queue that grew through the stage) and, where it did, Little's law's ``L``.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import arguments
from .processes import run_pinned

SCRIPT = Path(__file__).with_name("locustfile.py")
LATE_FRACTION = 0.5  # a request is late when it left more than this share of the interval 1 / rate after it was due
LATE_FLOOR_S = 0.001  # ... and more than this (the resolution of the generator's timers)
LATE_SHARE = 0.01  # the generator fell behind when more than this share of a stage's requests left late
QUEUE_GROWTH = 1.5  # the server fell behind when the last third's median wait is this many times the first third's


class PacedError(RuntimeError):
    """locust is missing, failed, or wrote no records."""


def _require_locust() -> None:
    if importlib.util.find_spec("locust") is None:
        raise PacedError("locust is not installed: `make setup` installs it (the pinned 'locust' in requirements.txt)")


def version() -> str:
    """The installed locust's version, as ``locust 2.47.0``."""
    _require_locust()
    return f"locust {importlib.metadata.version('locust')}"


def _percentiles(values, points=(50, 90, 99)) -> dict:
    if len(values) == 0:
        return {f"p{p}": None for p in points} | {"max": None, "mean": None}
    array = np.asarray(values, dtype=float)
    return {f"p{p}": float(np.percentile(array, p)) for p in points} | {"max": float(array.max()),
                                                                         "mean": float(array.mean())}


@dataclass(frozen=True)
class Stage:
    """One offered rate held for ``seconds``, one request a user, and what happened (times in ms).

    ``users`` is the number of requests offered (one a user); ``requests`` those sent and answered, ``failed``
    those whose answer was not a 2xx or that got none within the timeout; ``answered_in_stage`` the answers
    that came back before the stage ended. ``latency_ms`` is locust's response time (from the send),
    ``from_due_ms`` the same plus how late the request left (from the schedule); ``late`` counts the requests
    that left more than half the interval ``1 / rate`` (and over a millisecond) after they were due, all
    of it the generator's own lateness (``late_ms``), since a user had nothing else to do; ``generator_cpu`` is
    the share of one CPU that locust used during the stage; ``thirds_ms`` the median wait from the due time of
    the first and the last third of the requests (by due time), from which :attr:`behind` is read;
    ``samples_ms`` every request's ``latency`` and ``from_due`` time.
    """

    rate: float
    seconds: float
    users: int
    requests: int
    failed: int
    late: int
    late_ms: dict
    latency_ms: dict
    from_due_ms: dict
    generator_cpu: float | None
    samples_ms: dict = field(default_factory=dict, compare=False)  # per request: "latency", "from_due"
    answered_in_stage: int = 0
    thirds_ms: tuple = (float("nan"), float("nan"))
    host: str = ""

    @property
    def interval(self) -> float:
        """Seconds between two requests of the stage, on schedule."""
        return 1 / self.rate

    @property
    def offered(self) -> float:
        """Requests per second offered: the stage's requests over its length."""
        return self.users / self.seconds

    @property
    def achieved(self) -> float:
        """Answers per second that came back during the stage (a queue left at its end is not counted)."""
        return self.answered_in_stage / self.seconds

    @property
    def late_share(self) -> float:
        return self.late / self.requests if self.requests else 1.0

    @property
    def generator_behind(self) -> bool:
        """Whether the generator itself was late: more than :data:`LATE_SHARE` of the requests left late. Its
        latencies from the due time then include the generator's delay, not only the server's."""
        return self.late_share > LATE_SHARE

    @property
    def behind(self) -> bool:
        """Whether the server fell behind the offered rate: a request failed or got no answer, or the queue grew
        through the stage (the last third's median wait over :data:`QUEUE_GROWTH` times the first third's, and
        longer by more than one interval between requests: about a request's worth of queue). Such a stage has
        no steady state, and Little's law gives it no ``L``."""
        if self.failed or self.requests < self.users:
            return True
        first, last = self.thirds_ms
        return bool(last > QUEUE_GROWTH * first and last - first > 1000 * self.interval)

    @property
    def in_system(self) -> float | None:
        """Little's law, ``L = lambda W``: the mean number of requests inside the server (in its socket's queue or
        in a worker), from the rate they arrived at and their mean latency from the send; ``None`` for a stage
        with no steady state (:attr:`behind`)."""
        if self.behind or self.latency_ms.get("mean") is None:
            return None
        return self.requests / self.seconds * self.latency_ms["mean"] / 1000

    def to_dict(self) -> dict:
        return {"rate": self.rate, "seconds": self.seconds, "users": self.users, "interval": self.interval,
                "offered": self.offered, "requests": self.requests, "failed": self.failed,
                "answered_in_stage": self.answered_in_stage, "achieved": self.achieved, "late": self.late,
                "late_share": self.late_share, "late_ms": dict(self.late_ms),
                "generator_behind": self.generator_behind, "generator_cpu": self.generator_cpu,
                "behind": self.behind, "thirds_ms": list(self.thirds_ms), "in_system": self.in_system,
                "latency_ms": dict(self.latency_ms), "from_due_ms": dict(self.from_due_ms), "host": self.host,
                "samples_ms": {name: list(values) for name, values in self.samples_ms.items()}}


def plan_stages(rates: Sequence[float], seconds: float, hosts: Sequence[str] | None = None) -> list[dict]:
    """The stages of the locustfile's config: each rate held for ``seconds``, ``round(rate x seconds)`` requests
    (one a user, at least one), against ``hosts[i]`` (a base URL) when given."""
    seconds = arguments.number("seconds", seconds, positive=True)
    if hosts is not None and len(hosts) != len(rates):
        raise ValueError(f"hosts must name one base URL a rate: {len(rates)} rates, {len(hosts)} hosts")
    out = []
    for i, r in enumerate(rates):
        rate = arguments.number("each rate", r, positive=True)
        out.append({"rate": rate, "seconds": seconds, "users": max(1, round(rate * seconds)),
                    "host": "" if hosts is None else str(hosts[i]).rstrip("/")})
    return out


def _thirds(due: np.ndarray, waits: np.ndarray) -> tuple[float, float]:
    """The median of ``waits`` over the first and the last third of the requests, in order of due time."""
    if waits.size == 0:
        return float("nan"), float("nan")
    order = np.argsort(due, kind="stable")
    third = max(1, waits.size // 3)
    return float(np.median(waits[order[:third]])), float(np.median(waits[order[-third:]]))


def parse_records(data: dict, stages: Sequence[dict]) -> list[Stage]:
    """The :class:`Stage` results from what ``locustfile.py`` wrote for ``stages``."""
    cpu = data.get("cpu", [])  # per stage: [[time, CPU time] at its start, [time, CPU time] at its end]
    starts = data.get("starts", [])
    out = []
    for i, stage in enumerate(stages):
        rows = [r for r in data["requests"] if r[0] == i]
        due = np.array([r[1] for r in rows], dtype=float)
        late_s = np.array([r[2] - r[1] for r in rows], dtype=float)
        latency = np.array([r[3] for r in rows], dtype=float)
        from_due = latency + np.maximum(late_s, 0) * 1000
        end = (starts[i] + stage["seconds"]) if i < len(starts) and starts[i] is not None else float("inf")
        in_stage = int(sum(1 for r in rows if r[4] and r[2] + r[3] / 1000 <= end))
        cpu_share = None
        if i < len(cpu):
            (t0, c0), (t1, c1) = cpu[i]
            cpu_share = (c1 - c0) / (t1 - t0) if t1 > t0 else None
        threshold = max(LATE_FRACTION / stage["rate"], LATE_FLOOR_S)
        out.append(Stage(stage["rate"], stage["seconds"], stage["users"], len(rows), sum(1 for r in rows if not r[4]),
                         int(np.sum(late_s > threshold)), _percentiles(np.maximum(late_s, 0) * 1000, (50, 99)),
                         _percentiles(latency), _percentiles(from_due), cpu_share,
                         {"latency": latency.tolist(), "from_due": from_due.tolist()}, in_stage,
                         _thirds(due, from_due), stage.get("host", "")))
    return out


def knee(stages: Sequence[dict], *, slower: float = 5.0) -> float | None:
    """The offered rate of the first stage, in order of rate, where the server no longer keeps up: it fell
    behind (``behind``: a queue that grew), or its median wait from the due time is over ``slower`` times that
    of the lowest rate's stage. Stages where the generator itself was late are left out (their waits include
    its delay). ``None`` when every stage kept up."""
    ordered = sorted((st for st in stages if not st["generator_behind"]), key=lambda st: st["rate"])
    if not ordered:
        return None
    first = ordered[0]["from_due_ms"]["p50"]
    for st in ordered:
        if st["behind"] or st["from_due_ms"]["p50"] > slower * first:
            return st["rate"]
    return None


def run_paced(base_url: str, paths_file: str | Path, rates: Sequence[float], *, seconds: float = 2,
              hosts: Sequence[str] | None = None, cpus: Sequence[int] | None = None, request_timeout_s: float = 10,
              lead_s: float = 0.1, pause_s: float = 0.2) -> list[Stage]:
    """Offer each rate of ``rates`` (requests per second) for ``seconds``, one stage after the other in the
    order given, in one headless locust run pinned to ``cpus``; the requests walk ``paths_file`` in order.

    Each request has a user of its own, which sends it at its due time (an open loop). A stage starts
    ``lead_s`` after the previous one's requests have all been answered (or timed out) and ``pause_s`` more;
    ``hosts`` (one base URL a rate) sends the stages to different servers, ``base_url`` otherwise.
    """
    _require_locust()
    if not rates:
        raise ValueError("rates must name at least one offered rate")
    seconds = arguments.number("seconds", seconds, minimum=0.5)
    stages = plan_stages(rates, seconds, hosts if hosts is not None else [base_url] * len(rates))
    users = sum(s["users"] for s in stages)
    with tempfile.TemporaryDirectory(prefix="cachelab-locust-") as folder:
        config = {"paths": str(Path(paths_file).resolve()), "out": str(Path(folder) / "requests.json"),
                  "lead": lead_s, "pause": pause_s, "timeout": request_timeout_s, "stages": stages}
        (Path(folder) / "config.json").write_text(json.dumps(config))
        env = {**os.environ, "CACHELAB_LOCUST_CONFIG": str(Path(folder) / "config.json")}
        command = [sys.executable, "-m", "locust", "-f", str(SCRIPT), "--headless", "-u", str(users), "-r", str(users),
                   "--host", base_url, "--exit-code-on-error", "0", "--only-summary", "--loglevel", "ERROR"]
        total = 60 + len(stages) * (lead_s + seconds + request_timeout_s + pause_s) + 60
        try:  # run in the temporary folder: locust reads a locust.conf or pyproject.toml it finds in its cwd
            run_pinned(command, cpus=cpus, timeout=total, env=env, cwd=folder)
        except subprocess.CalledProcessError as exc:
            raise PacedError(f"locust failed (exit {exc.returncode}):\n{(exc.stderr or '')[-2000:]}") from None
        try:
            data = json.loads((Path(folder) / "requests.json").read_text())
        except (OSError, ValueError) as exc:
            raise PacedError(f"locust wrote no records: {exc}") from None
    return parse_records(data, stages)
