"""Time in caches: a clock you move by hand, and how stale a TTL lets answers get.

A time-to-live bounds how long a cached answer may be served after the data behind it changed. To show
that without waiting, caches take a ``timer=`` (cachetools' ``TTLCache`` and ``TLRUCache`` do), and the
notebooks pass a :class:`ManualClock` that moves only when told to. cachetools' own test suite tests
expiry the same way.

* :class:`ManualClock`: a deterministic timer.
* :func:`read_write_timeline`: reads and writes over simulated time, both Zipf-like over the same keys.
* :func:`replay_with_updates`: a ``TTLCache`` in front of a versioned source: hits, loads, stale reads.
"""

from __future__ import annotations

from collections.abc import Hashable, Iterable, Sequence
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


def replay_with_updates(events: Iterable[Event], ttl: float, *, maxsize: int = 1_000_000) -> StalenessReport:
    """Serve the reads of ``events`` from a ``TTLCache(maxsize, ttl)`` in front of a versioned source.

    The source keeps a version number per key, bumped by every write; a load copies the current
    version into the cache. A read is *stale* when the cache returns a version older than the
    source's. Time comes from a :class:`ManualClock` set to each event's time, so the replay is exact.
    """
    if ttl <= 0:
        raise ValueError("ttl must be positive")
    clock = ManualClock()
    cache = cachetools.TTLCache(maxsize, ttl=ttl, timer=clock)
    changed_at: dict[Hashable, list[float]] = {}
    reads = hits = loads = stale = 0
    max_age = 0.0
    for event in events:
        if event.time < clock.now:
            raise ValueError("events must be in time order")
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
            cache[event.key] = len(history)
            continue
        hits += 1
        if version < len(history):
            stale += 1
            max_age = max(max_age, event.time - history[version])
    return StalenessReport(ttl, reads, hits, loads, stale, max_age)


def staleness_curve(events: Sequence[Event], ttls: Sequence[float]) -> list[StalenessReport]:
    """:func:`replay_with_updates` for each TTL, on the same timeline."""
    events = list(events)
    return [replay_with_updates(events, ttl) for ttl in ttls]
