"""Time in caches: a clock you move by hand, and how stale a TTL lets answers get.

A time-to-live bounds how long a cached answer may be served after the data behind it changed. To show
that without waiting, caches take a ``timer=`` (cachetools' ``TTLCache`` and ``TLRUCache`` do), and the
notebooks pass a :class:`ManualClock` that moves only when told to. cachetools' own test suite tests
expiry the same way.

* :class:`ManualClock`: a deterministic timer.
* :func:`read_write_timeline`: reads and writes over simulated time, both Zipf-like over the same keys.
* :func:`replay_with_updates`: a ``TTLCache`` in front of a versioned source: hits, loads, stale reads,
  with loads that take time if you say so.

A read is **stale** when the cache answers it with a version older than the one the source holds at that
moment. The age of a stale answer is the time since the first write it does not include. A TTL does not
bound that age by itself: the TTL clock starts when the value is *stored*, and the value was read from the
source when the load *started*. A write that lands while a load runs makes the loaded value stale before it
is even stored, so an answer can be served stale for up to the TTL plus the load's own duration.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass

import cachetools
import numpy as np

from .workload import zipf_ranks


class ManualClock:
    """A clock that only moves when you call :meth:`advance`: pass it as ``timer=`` to a cache."""

    def __init__(self, start: float = 0.0):
        self.now = float(start)

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> float:
        """Move time forward by ``seconds`` (never backwards) and return the new time."""
        if seconds < 0:
            raise ValueError("a clock does not go backwards")
        self.now += seconds
        return self.now

    def __repr__(self) -> str:
        return f"ManualClock(now={self.now:g})"


@dataclass(frozen=True)
class Event:
    """One request of a timeline: at ``time`` (seconds), a ``"read"`` or a ``"write"`` of ``key``."""

    time: float
    kind: str
    key: Hashable


def read_write_timeline(keys: Sequence[Hashable], n_reads: int, *, reads_per_second: float = 1.0,
                        writes_per_read: float = 0.05, alpha: float = 0.8, seed: int = 0) -> list[Event]:
    """Reads at a steady rate and writes at random times, both over ``keys`` (most popular first).

    Writes follow the same popularity as reads (a busy route also gets new flights more often) and
    arrive as a Poisson process with ``writes_per_read`` writes per read on average. Seeded.
    """
    if n_reads < 0 or reads_per_second <= 0 or writes_per_read < 0:
        raise ValueError("n_reads >= 0, reads_per_second > 0 and writes_per_read >= 0 are required")
    keys = list(keys)
    rng = np.random.default_rng(seed)
    duration = n_reads / reads_per_second
    n_writes = int(rng.poisson(writes_per_read * n_reads)) if n_reads else 0
    read_keys = zipf_ranks(n_reads, len(keys), alpha=alpha, seed=seed)
    write_keys = zipf_ranks(n_writes, len(keys), alpha=alpha, seed=seed + 1)
    write_times = np.sort(rng.uniform(0, duration, size=n_writes))
    events = [Event(i / reads_per_second, "read", keys[k]) for i, k in enumerate(read_keys)]
    events += [Event(float(t), "write", keys[k]) for t, k in zip(write_times, write_keys, strict=True)]
    # At equal times a write comes first, so a read at the same instant sees it.
    events.sort(key=lambda e: (e.time, e.kind != "write"))
    return events


@dataclass(frozen=True)
class StalenessReport:
    """What a TTL cache served over a timeline."""

    ttl: float
    reads: int
    hits: int
    loads: int
    stale_reads: int
    max_stale_age: float
    """The longest time between a write and a read that still got the value from before it (seconds)."""
    load_seconds: float = 0.0
    """How long each load took, from reading the source to storing the value."""

    @property
    def stale_fraction(self) -> float:
        return self.stale_reads / self.reads if self.reads else 0.0

    @property
    def load_fraction(self) -> float:
        """Backend loads per read: 1 without a cache."""
        return self.loads / self.reads if self.reads else 0.0

    @property
    def hit_ratio(self) -> float:
        return self.hits / self.reads if self.reads else 0.0


def replay_with_updates(events: Iterable[Event], ttl: float | Callable[[Hashable], float], *,
                        maxsize: int = 1_000_000, load_seconds: float = 0.0) -> StalenessReport:
    """Serve the reads of ``events`` from a TTL cache in front of a versioned source.

    The source keeps a version number per key, bumped by every write. A read that misses starts a load:
    it reads the source's current version at once, and the value is stored ``load_seconds`` later (until
    then, reads of that key miss too and start loads of their own, as ``@cached`` without a condition
    does). A read is *stale* when the cache returns a version older than the source's. ``ttl`` is a
    number of seconds (a ``TTLCache``) or a function of the key giving each entry its own (a
    ``TLRUCache``). Time comes from a :class:`ManualClock` set to each event's time, so the replay is
    exact and repeatable.
    """
    if callable(ttl):
        ttl_of = ttl
    else:
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        ttl_of = None
    if load_seconds < 0:
        raise ValueError("load_seconds must be >= 0")
    clock = ManualClock()
    if ttl_of is None:
        cache = cachetools.TTLCache(maxsize, ttl=ttl, timer=clock)
    else:
        cache = cachetools.TLRUCache(maxsize, ttu=lambda key, _value, now: now + ttl_of(key), timer=clock)
    changed_at: dict[Hashable, list[float]] = {}
    loading: list[tuple[float, int, Hashable, int]] = []  # (stored at, order, key, version read)
    reads = hits = loads = stale = 0
    max_age = 0.0
    for n, event in enumerate(events):
        if event.time < clock.now:
            raise ValueError("events must be in time order")
        while loading and loading[0][0] <= event.time:  # loads that end before this event store their value
            stored_at, _, key, version = heapq.heappop(loading)
            clock.now = stored_at
            cache[key] = version
        clock.now = float(event.time)  # set, not advanced by the difference: sums of differences drift
        history = changed_at.setdefault(event.key, [])
        if event.kind == "write":
            history.append(event.time)
            continue
        if event.kind != "read":
            raise ValueError(f"unknown event kind {event.kind!r}")
        reads += 1
        try:
            version = cache[event.key]
        except KeyError:
            loads += 1
            if load_seconds:
                heapq.heappush(loading, (clock.now + load_seconds, n, event.key, len(history)))
            else:
                cache[event.key] = len(history)
            continue
        hits += 1
        if version < len(history):
            stale += 1
            max_age = max(max_age, event.time - history[version])
    return StalenessReport(ttl if ttl_of is None else float("nan"), reads, hits, loads, stale, max_age,
                           float(load_seconds))


def staleness_curve(events: Sequence[Event], ttls: Sequence[float], *,
                    load_seconds: float = 0.0) -> list[StalenessReport]:
    """:func:`replay_with_updates` for each TTL, on the same timeline."""
    events = list(events)
    return [replay_with_updates(events, ttl, load_seconds=load_seconds) for ttl in ttls]
