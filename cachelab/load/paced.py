"""Latency against offered load with locust: stages of paced users, and where the pacing did not hold.

Which generator, and why. A generator that starts requests on a fixed schedule whatever the answers do
(an open loop) is what a latency-against-load curve needs. ``h2load --rps`` (nghttp2) paces each client
with a timer, but a request due while the client's HTTP/1.1 connection still waits (the default ``-m 1``)
is only counted as pending, and goes out when the answer arrives (``rps_cb`` and
``Client::on_stream_close`` in ``src/h2load.cc``). Worse here, gunicorn's sync workers close the
connection after every answer, and h2load then reconnects, restarts the client's rate timer and sends one
request at once (``Client::connection_made``): against this service ``--rps`` paces nothing. So the
notebook uses locust, headless.

What locust does. A locust user is a closed loop: it sends a request and waits for the answer. With
``wait_time = constant_throughput(r)`` (``constant_pacing(1 / r)`` in ``locust/user/wait_time.py``) it
then sleeps what is left of its interval ``1 / r``, counted from the start of the task that just ended,
or not at all when the task took longer. A closed loop with pacing, then: while each user's answers come
back within its interval, the requests leave on schedule and the load is open in effect; when an answer
takes longer, that user's next request leaves late, the time is never made up, the user sends less than
it was offering, and the latency locust records starts when the request left, not when it was due:
coordinated omission. ``locustfile.py`` gives each stage ``users = ceil(rate x min_interval)`` users of
its own, their first requests spread over one interval, and records, for every request, when it was
due, when it left and locust's response time. :func:`run_paced` turns these into a :class:`Stage` per
offered rate: offered against achieved, how many requests left late, and the latency from the due time
next to the recorded one, so that a stage where the generator fell behind (:attr:`Stage.behind`) is
marked, not reported as clean.

Who was late. A request leaves late for one of two reasons: its user was still waiting for the answer to
its previous request (the server was slow), or the user was free and the generator itself did not send
on time (its CPU was busy: a late generator). Each request's own lateness, ``sent - max(due, previous
answer of its user)``, is the generator's part; :attr:`Stage.generator_behind` marks a stage where it is
large enough to matter, so that a late generator is never read as a slow server.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import json
import math
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
LATE_FRACTION = 0.1  # a request is late when it left more than this share of its user's interval after it was due
# A stage fell behind when fewer than SERVED_SHARE of the offered requests were sent and answered, or when more
# than LATE_SHARE of its requests were late and counting from the due time moves its p99 by more than P99_SHIFT.
SERVED_SHARE = 0.95
LATE_SHARE = 0.01
P99_SHIFT = 1.1


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
    """One offered rate held for ``seconds`` by ``users`` paced users, and what happened (times in ms).

    ``requests`` counts the requests sent during the stage and answered; ``late`` those that left more
    than :data:`LATE_FRACTION` of an interval after they were due; ``latency_ms`` is locust's response
    time (from the send), ``from_due_ms`` the same plus how late the request left (from the schedule);
    ``generator_cpu`` the share of one CPU that locust used during the stage; ``generator_late`` the requests
    that left late although their user was free (the generator's own lateness, ``generator_late_ms``);
    ``samples_ms`` every request's ``latency`` and ``from_due`` time, for a claim judged from them.
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
    generator_late: int = 0
    generator_late_ms: dict = field(default_factory=dict)

    @property
    def interval(self) -> float:
        """Seconds between two requests of one user, on schedule."""
        return self.users / self.rate

    @property
    def achieved(self) -> float:
        """Requests sent during the stage and answered, per second."""
        return self.requests / self.seconds

    @property
    def late_share(self) -> float:
        return self.late / self.requests if self.requests else 1.0

    @property
    def generator_late_share(self) -> float:
        return self.generator_late / self.requests if self.requests else 0.0

    @property
    def generator_behind(self) -> bool:
        """Whether the generator itself was late: more than :data:`LATE_SHARE` of the requests left more than
        :data:`LATE_FRACTION` of an interval after they were due although their user was free."""
        return self.generator_late_share > LATE_SHARE

    @property
    def behind(self) -> bool:
        """Whether the generator fell behind the offered schedule, so that its latencies are not those of that
        rate: it sent and got answers for less than it offered, or enough requests left late to move the p99."""
        if self.achieved < SERVED_SHARE * self.rate:
            return True
        recorded, from_due = self.latency_ms["p99"], self.from_due_ms["p99"]
        return self.late_share > LATE_SHARE and from_due > P99_SHIFT * recorded

    def to_dict(self) -> dict:
        return {"rate": self.rate, "seconds": self.seconds, "users": self.users, "interval": self.interval,
                "requests": self.requests, "failed": self.failed, "achieved": self.achieved, "late": self.late,
                "late_share": self.late_share, "behind": self.behind, "generator_cpu": self.generator_cpu,
                "generator_late": self.generator_late, "generator_late_share": self.generator_late_share,
                "generator_late_ms": dict(self.generator_late_ms), "generator_behind": self.generator_behind,
                "late_ms": dict(self.late_ms), "latency_ms": dict(self.latency_ms),
                "from_due_ms": dict(self.from_due_ms),
                "samples_ms": {name: list(values) for name, values in self.samples_ms.items()}}


def plan_stages(rates: Sequence[float], seconds: float, min_interval: float) -> list[dict]:
    """The stages of the locustfile's config: each rate with ``ceil(rate x min_interval)`` users, so that
    every user's interval (``users / rate``) is at least ``min_interval``."""
    out = []
    for r in rates:
        rate = arguments.number("each rate", r, positive=True)
        out.append({"rate": rate, "seconds": seconds, "users": max(1, math.ceil(rate * min_interval))})
    return out


def parse_records(data: dict, stages: Sequence[dict]) -> list[Stage]:
    """The :class:`Stage` results from what ``locustfile.py`` wrote for ``stages``."""
    cpu = data.get("cpu", [])  # [time, CPU time] at each stage's start and at the end
    out = []
    for i, stage in enumerate(stages):
        rows = [r for r in data["requests"] if r[0] == i]
        interval = stage["users"] / stage["rate"]
        late_s = np.array([r[2] - r[1] for r in rows], dtype=float)
        latency = np.array([r[3] for r in rows], dtype=float)
        own_s = _own_lateness(rows)
        cpu_share = None
        if i + 1 < len(cpu):
            (t0, c0), (t1, c1) = cpu[i], cpu[i + 1]
            cpu_share = (c1 - c0) / (t1 - t0) if t1 > t0 else None
        out.append(Stage(stage["rate"], stage["seconds"], stage["users"], len(rows), sum(1 for r in rows if not r[4]),
                         int(np.sum(late_s > LATE_FRACTION * interval)),
                         _percentiles(np.maximum(late_s, 0) * 1000, (50, 99)), _percentiles(latency),
                         _percentiles(latency + np.maximum(late_s, 0) * 1000), cpu_share,
                         {"latency": latency.tolist(), "from_due": (latency + np.maximum(late_s, 0) * 1000).tolist()},
                         int(np.sum(own_s > LATE_FRACTION * interval)),
                         _percentiles(np.maximum(own_s, 0) * 1000, (50, 99))))
    return out


def _own_lateness(rows) -> np.ndarray:
    """Each request's lateness that its user's previous answer does not explain: ``sent - max(due, when the
    previous answer came back)``, in seconds; without the user of each record (an older locustfile), all of
    its lateness."""
    own = np.array([r[2] - r[1] for r in rows], dtype=float)
    if not rows or len(rows[0]) < 6:
        return own
    by_user: dict = {}
    for index, row in enumerate(rows):
        by_user.setdefault(row[5], []).append(index)
    for indices in by_user.values():
        indices.sort(key=lambda j: rows[j][1])
        for before, j in zip(indices, indices[1:], strict=False):
            answered = rows[before][2] + rows[before][3] / 1000
            own[j] = rows[j][2] - max(rows[j][1], answered)
    return own


def run_paced(base_url: str, paths_file: str | Path, rates: Sequence[float], *, seconds: float = 2,
              min_interval: float = 0.5, cpus: Sequence[int] | None = None, request_timeout_s: float = 10,
              lead_s: float = 0.1) -> list[Stage]:
    """Offer each rate of ``rates`` (requests per second) for ``seconds``, one after the other, in one
    headless locust run pinned to ``cpus``; the requests walk ``paths_file`` in order.

    Each stage has its own users, each sending one request every ``users / rate`` seconds, at least
    ``min_interval``: the longer the interval, the slower an answer can be before its user falls behind,
    and the more users (greenlets, connections) the generator runs.
    """
    _require_locust()
    if not rates:
        raise ValueError("rates must name at least one offered rate")
    seconds = arguments.number("seconds", seconds, minimum=0.5)
    min_interval = arguments.number("min_interval", min_interval, positive=True)
    stages = plan_stages(rates, seconds, min_interval)
    users = sum(s["users"] for s in stages)
    with tempfile.TemporaryDirectory(prefix="cachelab-locust-") as folder:
        config = {"paths": str(Path(paths_file).resolve()), "out": str(Path(folder) / "requests.json"),
                  "lead": lead_s, "timeout": request_timeout_s, "stages": stages}
        (Path(folder) / "config.json").write_text(json.dumps(config))
        env = {**os.environ, "CACHELAB_LOCUST_CONFIG": str(Path(folder) / "config.json")}
        command = [sys.executable, "-m", "locust", "-f", str(SCRIPT), "--headless", "-u", str(users), "-r", str(users),
                   "--host", base_url, "--exit-code-on-error", "0", "--only-summary", "--loglevel", "WARNING"]
        total = lead_s + seconds * len(stages) + request_timeout_s + 60
        try:  # run in the temporary folder: locust reads a locust.conf or pyproject.toml it finds in its cwd
            run_pinned(command, cpus=cpus, timeout=total, env=env, cwd=folder)
        except subprocess.CalledProcessError as exc:
            raise PacedError(f"locust failed (exit {exc.returncode}):\n{(exc.stderr or '')[-2000:]}") from None
        try:
            data = json.loads((Path(folder) / "requests.json").read_text())
        except (OSError, ValueError) as exc:
            raise PacedError(f"locust wrote no records: {exc}") from None
    return parse_records(data, stages)
