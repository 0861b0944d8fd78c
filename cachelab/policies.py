"""Eviction policies of cachetools, replayed on request streams: hit ratio against size, and warming.

Whether a request hits depends only on the sequence of keys and on the policy, not on what the values
are or how long they take to compute. So a policy is compared by *replaying keys*: every request is a
lookup in a real cachetools cache, and a miss stores a placeholder. A million requests replay in about
a second, where running the real queries behind them would take hours. The placeholder stands only
for the value; the cache, its eviction and its bookkeeping are the library's own code.

* :func:`make_cache`: a cachetools cache by policy name (``"LRU"``, ``"LFU"``, ``"FIFO"``, ``"RR"``,
  ``"TTL"``, ``"TLRU"``), seeded where the policy is random.
* :func:`replay`: run a stream through a cache, count hits and misses, keep the hit of each request.
* :func:`hit_ratio_curves`: hit ratio against cache size, one curve per policy, on the same stream.
* :func:`belady`, :func:`belady_curve`: Belady's optimal replacement (OPT), which knows the future: the
  most hits a policy that stores every miss can get on a stream, at each size.
* :func:`a0`, :func:`a0_curve`: A0, which knows each key's popularity but not the future: on a stream of
  independent requests, the best on average of the policies that store every miss and cannot see ahead. A
  policy that may decline to store a miss (an admission policy, such as W-TinyLFU's) is not bound by it.
* :func:`most_requested`, :func:`warm`: yesterday's hottest keys, preloaded into today's cache.
* :func:`cumulative_hit_ratio`, :func:`rolling_hit_ratio`: how the hit ratio evolves along a stream.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import cachetools
import numpy as np

EVICTION_POLICIES = ("LRU", "LFU", "FIFO", "RR")
"""The four policies that differ in what they evict when the cache is full."""

TIMED_POLICIES = ("TTL", "TLRU")
"""Caches whose entries also expire; without expiry they evict like LRU."""

ALL_POLICIES = EVICTION_POLICIES + TIMED_POLICIES

_NO_EXPIRY = math.inf


def make_cache(policy: str, maxsize: int, *, seed: int = 0, ttl: float = _NO_EXPIRY,
               timer: Callable[[], float] | None = None,
               getsizeof: Callable[[object], float] | None = None) -> cachetools.Cache:
    """A new, empty cachetools cache for ``policy`` (one of :data:`ALL_POLICIES`).

    ``RR`` draws its victims from a ``random.Random(seed)``, so a replay is repeatable. ``TTL`` and
    ``TLRU`` use ``ttl`` (infinite by default: they then behave as plain LRU caches) and ``timer``
    (``time.monotonic`` by default; pass a :class:`cachelab.expiry.ManualClock` for deterministic runs).
    """
    if maxsize < 0:
        raise ValueError(f"maxsize must be >= 0, not {maxsize!r}")
    timed = {"timer": timer} if timer is not None else {}
    if policy == "LRU":
        return cachetools.LRUCache(maxsize, getsizeof=getsizeof)
    if policy == "LFU":
        return cachetools.LFUCache(maxsize, getsizeof=getsizeof)
    if policy == "FIFO":
        return cachetools.FIFOCache(maxsize, getsizeof=getsizeof)
    if policy == "RR":
        return cachetools.RRCache(maxsize, choice=random.Random(seed).choice, getsizeof=getsizeof)
    if policy == "TTL":
        return cachetools.TTLCache(maxsize, ttl=ttl, getsizeof=getsizeof, **timed)
    if policy == "TLRU":
        return cachetools.TLRUCache(maxsize, ttu=lambda _key, _value, now: now + ttl, getsizeof=getsizeof,
                                    **timed)
    raise ValueError(f"unknown policy {policy!r}; expected one of {', '.join(ALL_POLICIES)}")


@dataclass(frozen=True)
class Replay:
    """What a cache did with a stream: hit and miss counts, and (if kept) the hit of every request."""

    hits: int
    misses: int
    hit_flags: np.ndarray | None = None

    @property
    def requests(self) -> int:
        return self.hits + self.misses

    @property
    def hit_ratio(self) -> float:
        return self.hits / self.requests if self.requests else 0.0


def replay(cache: cachetools.Cache | dict, stream: Iterable[Hashable], *, keep_flags: bool = False,
           value: Callable[[Hashable], object] | None = None) -> Replay:
    """Look every key of ``stream`` up in ``cache``; on a miss, store ``value(key)`` (``True`` by default).

    A lookup is ``cache[key]``, exactly as ``@cached`` does it, so LRU recency and LFU counts are
    updated the way the decorator updates them. The cache is used as given: pass a warmed cache to
    replay a warm start. ``keep_flags`` keeps one boolean per request (``True`` for a hit).
    """
    hits = misses = 0
    flags: list[bool] | None = [] if keep_flags else None
    for key in stream:
        try:
            cache[key]
        except KeyError:
            misses += 1
            try:
                cache[key] = True if value is None else value(key)
            except ValueError:  # larger than the whole cache: not stored, as @cached does
                pass
            if flags is not None:
                flags.append(False)
        else:
            hits += 1
            if flags is not None:
                flags.append(True)
    return Replay(hits, misses, None if flags is None else np.asarray(flags, dtype=bool))


def hit_ratio_curves(stream: Sequence[Hashable], sizes: Sequence[int],
                     policies: Sequence[str] = EVICTION_POLICIES, *, seed: int = 0,
                     counted: Sequence[bool] | None = None) -> dict[str, list[float]]:
    """Hit ratio of each policy at each cache size, every run on a fresh cache and the same ``stream``.

    ``counted`` (one boolean per request) restricts the ratio to some requests, for example the regular
    traffic of a stream into which a one-off scan was spliced; all requests still go through the cache.
    """
    stream = list(stream)
    if counted is None:
        return {policy: [replay(make_cache(policy, size, seed=seed), stream).hit_ratio for size in sizes]
                for policy in policies}
    mask = np.asarray(counted, dtype=bool)
    if mask.shape != (len(stream),) or not mask.any():
        raise ValueError("counted needs one boolean per request, at least one of them True")
    return {policy: [float(replay(make_cache(policy, size, seed=seed), stream, keep_flags=True).hit_flags[mask].mean())
                     for size in sizes]
            for policy in policies}


def next_use(stream: Sequence[Hashable]) -> list[int]:
    """For each request ``i``, the position of the next request for the same key (``len(stream)`` if none)."""
    stream = list(stream)
    out = [0] * len(stream)
    upcoming: dict = {}
    for i in range(len(stream) - 1, -1, -1):
        out[i] = upcoming.get(stream[i], len(stream))
        upcoming[stream[i]] = i
    return out


def belady(stream: Iterable[Hashable], maxsize: int, *, keep_flags: bool = False) -> Replay:
    """Replay ``stream`` through Belady's optimal cache of ``maxsize`` entries (OPT, or MIN).

    Every miss is stored, as every cachetools policy does; when the cache is full, OPT evicts the key
    whose next request lies farthest in the future (never requested again counts as farthest). No policy
    that stores every miss can hit more often on the same stream (Belady, IBM Systems Journal 1966;
    Mattson, Gecsei, Slutz and Traiger 1970 proved it optimal). It needs the whole future, so it is a
    yardstick for the real policies, not a policy you can run.
    """
    maxsize = int(maxsize)
    if maxsize < 0:
        raise ValueError(f"maxsize must be >= 0, not {maxsize!r}")
    stream = list(stream)
    upcoming = next_use(stream)
    cached: dict = {}  # key -> position of its next request
    farthest: list[tuple[int, int, Hashable]] = []  # a max-heap on next use (negated), stale entries skipped
    hits = 0
    flags: list[bool] | None = [] if keep_flags else None
    for i, key in enumerate(stream):
        hit = key in cached
        if hit:
            hits += 1
        elif maxsize == 0:
            if flags is not None:
                flags.append(False)
            continue
        elif len(cached) >= maxsize:
            while True:
                negated, _, victim = heapq.heappop(farthest)
                if cached.get(victim) == -negated:  # an entry that is still current
                    del cached[victim]
                    break
        cached[key] = upcoming[i]
        heapq.heappush(farthest, (-upcoming[i], i, key))
        if flags is not None:
            flags.append(hit)
    return Replay(hits, len(stream) - hits, None if flags is None else np.asarray(flags, dtype=bool))


def belady_curve(stream: Sequence[Hashable], sizes: Iterable[int]) -> list[float]:
    """Belady's optimal hit ratio on ``stream`` at each of ``sizes``: the ceiling of any eviction policy."""
    stream = list(stream)
    return [belady(stream, size).hit_ratio for size in sizes]


def a0(stream: Iterable[Hashable], maxsize: int, popularity: Mapping[Hashable, float], *,
       keep_flags: bool = False) -> Replay:
    """Replay ``stream`` through A0 (Aho, Denning and Ullman, JACM 1971) with ``maxsize`` entries.

    A0 knows how likely each key is to be asked (``popularity``: a probability, or any score where more is
    more likely; a key it does not list counts as the least likely) and nothing about the order of the
    requests. Every miss is stored, as every cachetools policy does; when the cache is full, A0 evicts the
    cached key least likely to be asked. When requests are drawn independently from fixed probabilities
    (the independent reference model, which :func:`cachelab.workload.zipf_stream` follows), no policy that
    stores every miss and cannot see the future has a lower expected miss rate (Aho, Denning and Ullman
    prove it): the gap between A0 and :func:`belady` is what knowing the future is worth, which no real
    policy that stores every miss can recover on such a stream. The bound is for those policies, and on
    average: one that declines to store a miss less popular than its victim (admission) does better in
    expectation, as a cache that holds only the most popular keys does; and on one finite stream, a policy
    that stores every miss can beat A0 by luck.
    """
    maxsize = int(maxsize)
    if maxsize < 0:
        raise ValueError(f"maxsize must be >= 0, not {maxsize!r}")
    if not isinstance(popularity, Mapping):
        raise TypeError(f"popularity must be a mapping of keys to scores, not {type(popularity).__name__}")
    cached: set = set()
    coldest: list[tuple[float, int, Hashable]] = []  # a min-heap on popularity, one entry per cached key
    hits = requests = 0
    flags: list[bool] | None = [] if keep_flags else None
    for key in stream:
        requests += 1
        hit = key in cached
        if hit:
            hits += 1
        elif maxsize > 0:
            if len(cached) >= maxsize:
                cached.discard(heapq.heappop(coldest)[2])  # the cached key least likely to be asked
            cached.add(key)
            heapq.heappush(coldest, (float(popularity.get(key, -math.inf)), requests, key))
        if flags is not None:
            flags.append(hit)
    return Replay(hits, requests - hits, None if flags is None else np.asarray(flags, dtype=bool))


def a0_curve(stream: Sequence[Hashable], sizes: Iterable[int], popularity: Mapping[Hashable, float]) -> list[float]:
    """A0's hit ratio on ``stream`` at each of ``sizes``: on a stream of independent requests, the best on average
    of the policies that store every miss and cannot see the future (see :func:`a0`)."""
    stream = list(stream)
    return [a0(stream, size, popularity).hit_ratio for size in sizes]


def best_policy(curves: Mapping[str, Sequence[float]], index: int) -> str:
    """The policy with the highest hit ratio at position ``index`` of the curves (first listed wins ties)."""
    return max(curves, key=lambda policy: curves[policy][index])


def most_requested(stream: Iterable[Hashable], k: int) -> list:
    """The ``k`` keys requested most often in ``stream``, most requested first (ties: first seen first)."""
    if k < 0:
        raise ValueError(f"k must be >= 0, not {k!r}")
    return [key for key, _count in Counter(stream).most_common(k)]


def warm(cache: cachetools.Cache | dict, keys: Iterable[Hashable],
         load: Callable[[Hashable], object] | None = None) -> int:
    """Preload ``keys`` into ``cache`` (``load(key)`` computes each value; ``True`` if not given).

    Keys are inserted in reverse order, so that with LRU or FIFO the first key (the hottest, when
    ``keys`` comes from :func:`most_requested`) is the last to be evicted. Returns how many were loaded.
    """
    keys = list(keys)
    for key in reversed(keys):
        cache[key] = True if load is None else load(key)
    return len(keys)


def cumulative_hit_ratio(hit_flags: Sequence[bool]) -> np.ndarray:
    """Hit ratio over the first ``i + 1`` requests, for every ``i``."""
    flags = np.asarray(hit_flags, dtype=float)
    return np.cumsum(flags) / np.arange(1, flags.size + 1) if flags.size else flags


def rolling_hit_ratio(hit_flags: Sequence[bool], window: int) -> np.ndarray:
    """Hit ratio over the last ``window`` requests, at every request from the ``window``-th on."""
    if window < 1:
        raise ValueError("window must be at least 1")
    flags = np.asarray(hit_flags, dtype=float)
    if flags.size < window:
        return np.empty(0)
    sums = np.convolve(flags, np.ones(window), mode="valid")
    return sums / window
