"""Stampede protection for a hot key in Redis: no protection, a ``SET NX`` lock, and XFetch.

When a hot key expires, every worker that asks for it in the next instant misses, and every one of them
recomputes the same value: the backend gets N queries instead of one, just when it is busiest (a cache
stampede, or dog-piling). Three strategies, each a class with a ``get(key)`` method and the same
counters (``hits``, ``misses``, ``computes``, ``waits``) and ``last_compute_seconds``, how long the last
recomputation took (under load, often far longer than the same query on a quiet machine):

* :class:`Unprotected`: plain cache-aside, for comparison.
* :class:`LockedRecompute`: the first worker to miss takes a lock (``SET lock token NX PX ttl``) and
  recomputes; the others poll the cache until the value appears. After taking the lock the worker looks
  again, so exactly one computation happens per expiry. The lock expires by itself if its holder dies,
  and is released with a compare-and-delete script so a worker never frees a lock it no longer owns.
* :class:`XFetch`: probabilistic early recomputation (Vattani, Chierichetti and Lowenstein, "Optimal
  Probabilistic Cache Stampede Prevention", VLDB 2015). Each read recomputes *before* expiry with a
  probability that grows as expiry nears and with the time the computation takes (``delta``), so one
  worker usually refreshes the value while the others keep being served. No lock, no waiting; the number
  of early recomputations is small but not exactly one.

:func:`hammer` runs N threads against one key for a while and returns every request's latency, from the
:func:`cachelab.timing.time_calls` harness.
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from .keys import check_prefix
from .timing import time_calls

_RELEASE = "if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) else return 0 end"


class LockTimeout(TimeoutError):
    """A worker waited ``wait_timeout`` seconds for another worker's recomputation, in vain."""


class _Strategy:
    """What the three strategies share: JSON values under a prefix, counters, the TTL."""

    def __init__(self, client, prefix: str, compute: Callable[[str], object], *, ttl: float):
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self.client = client
        self.prefix = check_prefix(prefix)
        self.compute = compute
        self.ttl = ttl
        self.hits = self.misses = self.computes = self.waits = 0
        self.last_compute_seconds: float | None = None  # how long the last recomputation took
        self._lock = threading.Lock()

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + n)

    def _recompute(self, key: str):
        start = time.perf_counter()
        value = self.compute(key)
        self.last_compute_seconds = time.perf_counter() - start
        self._count("computes")
        return value

    def _px(self, ttl: float | None = None) -> int:
        return max(1, int(round((self.ttl if ttl is None else ttl) * 1000)))

    def counters(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses, "computes": self.computes, "waits": self.waits}


class Unprotected(_Strategy):
    """Plain cache-aside: every worker that misses recomputes."""

    def get(self, key: str):
        raw = self.client.get(self.prefix + key)
        if raw is not None:
            self._count("hits")
            return json.loads(raw)
        self._count("misses")
        value = self._recompute(key)
        self.client.set(self.prefix + key, json.dumps(value), px=self._px())
        return value

    def put(self, key: str, value, ttl: float | None = None) -> None:
        """Store a value directly (to prime a hot key with a chosen TTL)."""
        self.client.set(self.prefix + key, json.dumps(value), px=self._px(ttl))


class LockedRecompute(Unprotected):
    """One recomputation per expiry: a ``SET NX PX`` lock, a second look, waiters that poll.

    ``lock_ttl`` bounds how long a crashed holder blocks the others (make it longer than a computation);
    waiters poll every ``poll`` seconds and give up after ``wait_timeout``, raising :class:`LockTimeout`
    (or computing themselves when ``fallback_compute`` is true: a stampede then, rather than an error).
    """

    def __init__(self, client, prefix: str, compute: Callable[[str], object], *, ttl: float,
                 lock_ttl: float = 5.0, wait_timeout: float = 5.0, poll: float = 0.005,
                 fallback_compute: bool = False):
        super().__init__(client, prefix, compute, ttl=ttl)
        if lock_ttl <= 0 or wait_timeout <= 0 or poll <= 0:
            raise ValueError("lock_ttl, wait_timeout and poll must be positive")
        self.lock_ttl, self.wait_timeout, self.poll = lock_ttl, wait_timeout, poll
        self.fallback_compute = fallback_compute
        self._release = client.register_script(_RELEASE)

    def lock_key(self, key: str) -> str:
        return f"{self.prefix}lock:{key}"

    def get(self, key: str):
        full = self.prefix + key
        raw = self.client.get(full)
        if raw is not None:
            self._count("hits")
            return json.loads(raw)
        self._count("misses")
        deadline = time.monotonic() + self.wait_timeout
        token = uuid.uuid4().hex
        waited = False
        while True:
            if self.client.set(self.lock_key(key), token, nx=True, px=self._px(self.lock_ttl)):
                try:
                    raw = self.client.get(full)  # the second look: filled while we raced for the lock?
                    if raw is not None:
                        return json.loads(raw)
                    value = self._recompute(key)
                    self.client.set(full, json.dumps(value), px=self._px())
                    return value
                finally:
                    self._release(keys=[self.lock_key(key)], args=[token])
            if not waited:
                self._count("waits")
                waited = True
            # Someone else is recomputing: wait for the value rather than recompute it too.
            time.sleep(self.poll)
            raw = self.client.get(full)
            if raw is not None:
                return json.loads(raw)
            if time.monotonic() > deadline:
                if self.fallback_compute:
                    value = self._recompute(key)
                    self.client.set(full, json.dumps(value), px=self._px())
                    return value
                raise LockTimeout(f"no value for {key!r} after waiting {self.wait_timeout}s for the lock holder")


def xfetch_should_recompute(now: float, expiry: float, delta: float, beta: float = 1.0,
                            u: float | None = None) -> bool:
    """The XFetch test: recompute when ``now - delta * beta * ln(u) >= expiry`` (``u`` uniform in (0, 1]).

    ``-ln(u)`` is exponentially distributed, so the probability of recomputing with ``r`` seconds left
    is ``exp(-r / (delta * beta))``: negligible while ``r`` is many ``delta``, certain at expiry.
    """
    u = random.random() if u is None else u
    u = max(u, 1e-300)  # random() may return 0.0; ln(0) is -inf
    return now - delta * beta * math.log(u) >= expiry


class XFetch(_Strategy):
    """Probabilistic early recomputation. The stored value carries ``delta`` and the logical ``expiry``.

    ``beta`` > 1 favours earlier recomputation, < 1 later; the paper shows ``beta = 1`` is optimal for
    its cost model. ``clock`` (wall time, shared by processes) and ``rng`` can be injected for tests.
    """

    def __init__(self, client, prefix: str, compute: Callable[[str], object], *, ttl: float,
                 beta: float = 1.0, clock: Callable[[], float] = time.time,
                 rng: Callable[[], float] = random.random):
        super().__init__(client, prefix, compute, ttl=ttl)
        if beta <= 0:
            raise ValueError("beta must be positive")
        self.beta, self.clock, self.rng = beta, clock, rng
        self.early = 0

    def get(self, key: str):
        raw = self.client.get(self.prefix + key)
        if raw is not None:
            record = json.loads(raw)
            if not xfetch_should_recompute(self.clock(), record["expiry"], record["delta"], self.beta,
                                           self.rng()):
                self._count("hits")
                return record["value"]
            self._count("early")
        else:
            self._count("misses")
        start = self.clock()
        value = self._recompute(key)
        delta = max(self.clock() - start, 0.0)
        self.put(key, value, delta=delta)
        return value

    def put(self, key: str, value, *, delta: float, ttl: float | None = None) -> None:
        """Store ``value`` with its recomputation time ``delta`` and a logical expiry ``ttl`` from now."""
        ttl = self.ttl if ttl is None else ttl
        record = {"value": value, "delta": delta, "expiry": self.clock() + ttl}
        self.client.set(self.prefix + key, json.dumps(record), px=self._px(ttl))

    def counters(self) -> dict[str, int]:
        return {**super().counters(), "early": self.early}


# --------------------------------------------------------------------------- the experiment

@dataclass
class HammerRun:
    """What :func:`hammer` saw: every request's latency (ns) and how many requests each worker made."""

    latencies_ns: np.ndarray
    requests_per_worker: list[int]
    errors: int

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ns, q))


def _arrivals(deadline: float, key: str, interval: float | None) -> Iterator[str]:
    """``key`` until ``deadline``: back to back, or one request every ``interval`` seconds."""
    next_at = time.monotonic()
    while True:
        now = time.monotonic()
        if now >= deadline:
            return
        if interval and now < next_at:
            time.sleep(next_at - now)  # the gap between arrivals: not part of any request's latency
        next_at += interval or 0.0
        yield key


def hammer(get: Callable[[str], object], key: str, *, workers: int, duration: float,
           interval: float | None = None) -> HammerRun:
    """``workers`` threads ask for ``key`` for ``duration`` seconds, starting together.

    Each worker sends one request every ``interval`` seconds (a steady arrival rate, as a busy web
    worker that also serves other keys would), or back to back when ``interval`` is ``None``. Only the
    requests are timed, by :func:`cachelab.timing.time_calls`. A request that raises counts as an error
    and ends that worker's run.
    """
    if workers < 1 or duration <= 0:
        raise ValueError("workers must be at least 1 and duration positive")
    if interval is not None and interval <= 0:
        raise ValueError("interval must be positive (or None for back to back)")
    barrier = threading.Barrier(workers)
    errors = 0
    lock = threading.Lock()

    def worker(_):
        nonlocal errors
        barrier.wait()
        try:
            return time_calls(get, _arrivals(time.monotonic() + duration, key, interval))
        except Exception:  # noqa: BLE001 - counted, and the run goes on with the other workers
            with lock:
                errors += 1
            return np.empty(0)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        parts = list(pool.map(worker, range(workers)))
    return HammerRun(np.concatenate(parts) if parts else np.empty(0), [len(p) for p in parts], errors)
