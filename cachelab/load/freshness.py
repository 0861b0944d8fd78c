"""Freshness under writes: a writer changes answers at a fixed rate while a checker reads them back.

Each write records one flight on a route through ``POST /flights``, which adds one to that route's
``flights`` count. Once the write's answer has come back, the row is committed: any read *sent* after
that moment must see it. A read whose ``flights`` is lower is **stale**, and its **age** is the time
since the first write it misses was committed. Reads sent while a write is in flight are judged
only against the writes committed before they were sent.

:class:`Writer` and :class:`Checker` send a request every ``1/rate`` seconds, on schedule, while their
:meth:`~_Paced.running` block lasts: an open loop, each request sent from a small pool of threads at its due
time whatever the previous answers do, so that a slow server gets the same writes and reads as a fast one.
:func:`staleness` compares their logs.
"""

from __future__ import annotations

import bisect
import contextlib
import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from .wrk import route_path

TIMEOUT = 5.0  # seconds for one request of the writer or the checker


class _Paced:
    """Sends :meth:`once` ``rate`` times a second, on schedule, while :meth:`running`: an open loop.

    A scheduler thread hands each request, at its due time, to a pool of ``concurrency`` threads, so that a
    slow answer does not hold the next request back (unless ``concurrency`` requests are all still waiting:
    then the next one leaves late, and :attr:`lateness` says by how much). With ``cpus``, every one of these
    threads runs on those CPUs only (on Linux, ``os.sched_setaffinity(0, ...)`` in a thread pins that thread
    alone): the notebook keeps its helpers off the CPUs of the server it measures.
    """

    def __init__(self, base_url: str, routes: Sequence, rate: float, cpus: Sequence[int] | None = None,
                 concurrency: int = 16):
        if not routes:
            raise ValueError("routes must not be empty")
        if not rate > 0:
            raise ValueError("rate must be positive")
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        self.base_url, self.routes, self.rate = base_url, list(routes), float(rate)
        self.cpus = tuple(cpus) if cpus else None
        self.concurrency = int(concurrency)
        self.log: list = []
        self.errors: list = []
        self.timeouts = 0  # requests that got no answer within TIMEOUT (also listed in errors)
        self.lateness: list[float] = []  # seconds between each request's due time and its send
        self._i = 0
        self._lock = threading.Lock()

    def _send(self, route, due: float) -> None:
        self.lateness.append(time.monotonic() - due)
        try:
            self.once(route)
        except (OSError, ValueError) as exc:  # a refused or slow request is a result, not a crash
            with self._lock:
                self.timeouts += isinstance(exc, TimeoutError) or "timed out" in str(exc)
            self.errors.append(repr(exc))

    def _loop(self, halt: threading.Event) -> None:
        pin_this_thread(self.cpus)
        pool = ThreadPoolExecutor(self.concurrency, thread_name_prefix=f"cachelab-{type(self).__name__}",
                                  initializer=pin_this_thread, initargs=(self.cpus,))
        try:
            start, n = time.monotonic(), 0
            while not halt.wait(max(0.0, start + n / self.rate - time.monotonic())):
                pool.submit(self._send, self.routes[self._i % len(self.routes)], start + n / self.rate)
                self._i += 1
                n += 1
        finally:  # the requests already sent finish; those still waiting for a thread are never sent
            pool.shutdown(wait=True, cancel_futures=True)

    @contextlib.contextmanager
    def running(self) -> Iterator[_Paced]:
        """Run in the background for the length of the block (its log goes on from the previous block); on
        leaving, wait for the requests already sent (each at most ``TIMEOUT``)."""
        halt = threading.Event()
        thread = threading.Thread(target=self._loop, args=(halt,), daemon=True, name=f"cachelab-{type(self).__name__}")
        thread.start()
        try:
            yield self
        finally:
            halt.set()
            thread.join(TIMEOUT + 1)


def pin_this_thread(cpus: Sequence[int] | None) -> None:
    """Run the calling thread (only it) on ``cpus``, where the system can pin (Linux); else do nothing."""
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, set(cpus))


class Writer(_Paced):
    """``POST /flights`` on each route in turn; logs ``(route, sent, committed)`` for every 201."""

    def once(self, route) -> None:
        body = json.dumps({"origin": route.origin, "dest": route.dest, "month": route.month,
                           "arr_delay": 15.0}).encode()
        request = urllib.request.Request(self.base_url + "/flights", data=body, method="POST",
                                         headers={"Content-Type": "application/json"})
        sent = time.monotonic()
        try:
            with urllib.request.urlopen(request, timeout=TIMEOUT) as response:  # noqa: S310 - our own server
                response.read()
                status = response.status
        except urllib.error.HTTPError as error:
            status = error.code
        if status == 201:
            self.log.append((route, sent, time.monotonic()))
        else:
            self.errors.append(f"POST /flights answered {status}")


class Checker(_Paced):
    """``GET`` each route in turn; logs ``(route, sent, flights in the answer)``."""

    def once(self, route) -> None:
        sent = time.monotonic()
        try:
            with urllib.request.urlopen(self.base_url + route_path(route), timeout=TIMEOUT) as response:  # noqa: S310
                answer = json.loads(response.read())
        except urllib.error.HTTPError as error:
            self.errors.append(f"GET {route_path(route)} answered {error.code}")
            return
        self.log.append((route, sent, int(answer["flights"])))


@dataclass(frozen=True)
class Staleness:
    """What the checker saw: reads, stale reads, the ages (s) of the stale ones, and per route its reads and
    stale reads."""

    checks: int
    stale: int
    ages: tuple[float, ...]
    writes: int
    by_route: dict = field(default_factory=dict, compare=False)  # route name: [checks, stale]

    @property
    def fraction(self) -> float:
        return self.stale / self.checks if self.checks else 0.0

    @property
    def max_age(self) -> float:
        return max(self.ages, default=0.0)

    def to_dict(self) -> dict:
        return {"checks": self.checks, "stale": self.stale, "fraction": self.fraction, "writes": self.writes,
                "max_age_s": self.max_age, "ages_s": list(self.ages),
                "by_route": {name: list(counts) for name, counts in self.by_route.items()}}


def staleness(base: Mapping, writes: Sequence, checks: Sequence) -> Staleness:
    """Judge every check against the writes committed before it was sent.

    ``base`` maps each route to its ``flights`` before the first write; ``writes`` are ``(route, sent,
    committed)`` and ``checks`` ``(route, sent, flights)``, as :class:`Writer` and :class:`Checker` log them.
    """
    committed: dict = {}
    for route, _sent, done in sorted(writes, key=lambda w: w[2]):
        committed.setdefault(route, []).append(done)
    stale, ages, by_route = 0, [], {}
    for route, sent, flights in checks:
        times = committed.get(route, [])
        seen_by_then = bisect.bisect_right(times, sent)  # writes committed before the read was sent
        reflected = flights - base[route]
        counts = by_route.setdefault(_name(route), [0, 0])
        counts[0] += 1
        if reflected < seen_by_then:
            stale += 1
            counts[1] += 1
            ages.append(sent - times[max(0, reflected)])
    return Staleness(len(checks), stale, tuple(ages), len(writes), by_route)


def _name(route) -> str:
    """A route's cache key (``Route.key()``), or the route itself as text."""
    return route.key() if hasattr(route, "key") else str(route)
