"""Cache-aside over an external cache: look in the cache, on a miss compute and store, with a TTL.

The pieces that production code adds to the three-line pattern, each small enough to read:

* :class:`RedisStore` and :class:`MemcachedStore`: one interface (``get``/``set``/``delete``) over a
  Redis or pymemcache client, JSON values, every key under the notebook's prefix.
* :func:`jittered_ttl`: a TTL spread at random, so keys written together do not expire together;
  :func:`busiest_second` counts how many of a burst still expire in the same second.
* :class:`CacheAside`: the pattern itself, counting hits, misses and computations, with optional
  jitter and **negative caching** (remembering "not found" for a short ``negative_ttl``).
* :class:`Namespace`: versioned keys; one ``INCR`` makes every key of a namespace unreachable at once.

Values are JSON, never pickle: anyone who can write to a shared cache could otherwise make every reader
run code of their choosing (the class of bug behind CVE-2021-33026 in Flask-Caching).
"""

from __future__ import annotations

import json
import math
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Hashable

from .keys import check_prefix


def _store_errors() -> tuple[type[BaseException], ...]:
    errors: list[type[BaseException]] = [OSError]  # socket errors and timeouts
    try:
        from redis.exceptions import ConnectionError as RedisConnectionError
        from redis.exceptions import TimeoutError as RedisTimeoutError

        errors += [RedisConnectionError, RedisTimeoutError]
    except ImportError:  # pragma: no cover - redis is a dependency
        pass
    try:
        from pymemcache.exceptions import MemcacheError

        errors.append(MemcacheError)
    except ImportError:  # pragma: no cover - pymemcache is a dependency
        pass
    return tuple(errors)


#: What an unreachable cache raises: :class:`CacheAside` treats these as a miss and asks the backend.
STORE_ERRORS = _store_errors()

#: The JSON stored for "not found" by negative caching: a value no answer of the service can take.
MISSING_MARKER = {"__cachelab_missing__": True}


def jittered_ttl(ttl: float, jitter: float = 0.1, *, rng: random.Random | None = None) -> float:
    """``ttl`` spread uniformly over ``ttl * (1 - jitter)`` to ``ttl * (1 + jitter)``.

    Keys written in the same second with the same TTL all expire in the same second, and their
    recomputations hit the backend together; a 10% jitter spreads them over a window 20% of the TTL wide.
    """
    if ttl <= 0:
        raise ValueError("ttl must be positive")
    if not 0 <= jitter < 1:
        raise ValueError("jitter must be in [0, 1)")
    if jitter == 0:
        return float(ttl)
    return ttl * (rng or random).uniform(1 - jitter, 1 + jitter)


def busiest_second(ttl: float, jitter: float, keys: int, *, seed: int) -> int:
    """The most expirations in one whole second when ``keys`` keys are written at once, each with
    ``jittered_ttl(ttl, jitter)`` drawn in turn from ``random.Random(seed)``: one burst, counted.

    Expiry times are counted by the whole second they fall in (``math.floor`` of the TTL).
    """
    if not isinstance(keys, int) or keys < 1:
        raise ValueError(f"keys must be a positive int, got {keys!r}")
    rng = random.Random(seed)
    return max(Counter(math.floor(jittered_ttl(ttl, jitter, rng=rng)) for _ in range(keys)).values())


class RedisStore:
    """JSON values in Redis under ``prefix``, with ``SET ... PX`` expiry (millisecond TTLs)."""

    def __init__(self, client, prefix: str):
        self.client = client
        self.prefix = check_prefix(prefix)

    def key(self, key: str) -> str:
        return self.prefix + key

    def get(self, key: str):
        raw = self.client.get(self.key(key))
        return None if raw is None else json.loads(raw)

    def get_many(self, keys: list[str]) -> dict:
        """``MGET``: the found values by key (one round trip for all of them)."""
        raws = self.client.mget([self.key(k) for k in keys]) if keys else []
        return {k: json.loads(r) for k, r in zip(keys, raws, strict=True) if r is not None}

    def set(self, key: str, value, ttl: float | None = None) -> None:
        px = None if ttl is None else max(1, int(round(ttl * 1000)))
        self.client.set(self.key(key), json.dumps(value, separators=(",", ":")), px=px)

    def delete(self, key: str) -> None:
        self.client.delete(self.key(key))


#: memcached reads an expiry above 30 days as a Unix timestamp, not a number of seconds from now.
MEMCACHED_MAX_RELATIVE_TTL = 60 * 60 * 24 * 30


def memcached_expire(ttl: float | None, *, now: float | None = None) -> int:
    """The ``exptime`` to send memcached for a TTL in seconds: ``0`` (no expiry) for ``None``.

    memcached counts whole seconds, so a TTL is rounded up. Above 30 days the protocol reads the number as
    a Unix time (``doc/protocol.txt``, "Expiration times"): 31 days sent as seconds would mean 1 February
    1970, a moment long past, and the item would expire at once. So a longer TTL is sent as ``now + ttl``.
    """
    if ttl is None:
        return 0
    if ttl <= 0:
        raise ValueError("ttl must be positive (or None for no expiry)")
    seconds = max(1, math.ceil(ttl))
    if seconds <= MEMCACHED_MAX_RELATIVE_TTL:
        return seconds
    return math.ceil((time.time() if now is None else now) + ttl)


def memcached_ttl_window(ttl: int, seen: float) -> str:
    """Where an item's observed end of life, ``seen`` seconds after its set, falls against memcached's window.

    memcached keeps time in whole seconds on a clock that one timer moves once a second; an item is gone once
    that clock reaches its expiry (``exptime <= current_time`` in ``items.c``), so a TTL of ``ttl`` seconds ends
    at a tick about ``ttl - 1`` to ``ttl`` seconds after the set ("roughly +/- 1s", ``doc/protocol.txt``), later
    when the timer fires late on a busy machine, and earlier when a late tick (after a pause of the server)
    moves the clock two seconds at once. A client that looks every few milliseconds sees it a little
    later still (a poll interval, a round trip).
    """
    if not isinstance(ttl, int) or isinstance(ttl, bool) or not 1 <= ttl <= MEMCACHED_MAX_RELATIVE_TTL:
        raise ValueError(f"ttl must be a whole number of seconds from 1 to 30 days, not {ttl!r}")
    if seen < 0:
        raise ValueError("seen must be a duration, not negative")
    window = f"memcached's window of {ttl - 1} to {ttl} s"
    if ttl - 1 <= seen <= ttl:
        return f"inside {window}"
    if seen > ttl:
        return (f"{seen - ttl:.2f} s past {window}: the cell looks every 20 ms, each look is a round trip, and "
                "memcached's once-a-second clock runs late on a busy machine")
    return (f"{ttl - 1 - seen:.2f} s before {window}: memcached's clock moved two seconds in one tick (its timer had "
            "fired late, as it does after the server was paused)")


class MemcachedStore:
    """A pymemcache client (``HashClient`` or ``Client``, JSON serde, ``key_prefix`` set) as a store.

    Writes wait for the server's reply (``noreply=False``): pymemcache's default of not waiting hides
    refused writes, such as a value above the item size limit. A refusal raises where the client raises
    (``ignore_exc=False``); where it does not (a ``HashClient`` with ``ignore_exc=True``, as the series builds
    them, answers ``False``), :meth:`set` returns ``False`` and counts it in :attr:`refused_writes`, and
    :class:`CacheAside` counts it as a ``store_error``: never silence. TTLs above 30 days are sent as a Unix
    time (:func:`memcached_expire`).

    ``failover_ttl`` caps the TTL of a write that lands on another node than the key's own (its home is
    marked dead in a ``HashClient``, whose keys then go to their runner-up). Such a copy becomes an orphan
    when the home node comes back, and is served again, stale, if the home node fails once more while it
    lives: a short TTL bounds that.
    """

    def __init__(self, client, *, failover_ttl: float | None = None):
        if failover_ttl is not None and failover_ttl <= 0:
            raise ValueError("failover_ttl must be positive (or None)")
        self.client = client
        self.failover_ttl = failover_ttl
        self.failover_writes = 0
        self.refused_writes = 0  # writes the client answered False for: refused, or a node that is down

    def is_failover(self, key: str) -> bool:
        """Whether a write of ``key`` now would go to another node than the key's home (a ``HashClient`` only)."""
        hasher, clients = getattr(self.client, "hasher", None), getattr(self.client, "clients", None)
        if hasher is None or not clients:
            return False
        from .sharding import node_for

        return hasher.get_node(key) != node_for(key, list(clients))

    def get(self, key: str):
        return self.client.get(key)

    def get_many(self, keys: list[str]) -> dict:
        return self.client.get_many(keys) if keys else {}

    def set(self, key: str, value, ttl: float | None = None) -> bool:
        """Store ``value``; ``False`` (counted in :attr:`refused_writes`) when the client reports it was not."""
        if self.failover_ttl is not None and self.is_failover(key):
            self.failover_writes += 1
            ttl = self.failover_ttl if ttl is None else min(ttl, self.failover_ttl)
        stored = self.client.set(key, value, expire=memcached_expire(ttl), noreply=False)
        if stored is False:
            self.refused_writes += 1
            return False
        return True

    def delete(self, key: str) -> None:
        self.client.delete(key, noreply=False)


class CacheAside:
    """Cache-aside with counters: ``get(key)`` looks in ``store``, else computes, stores and returns.

    ``compute(key)`` returns the value, or ``None`` for "not found". With ``negative_ttl`` set, a
    "not found" is remembered for that long (keep it short: a row created meanwhile stays invisible
    until it expires); without it, every lookup of a missing key reaches the backend. ``jitter`` spreads
    the TTL of each write (see :func:`jittered_ttl`). ``key_of`` turns a request into the cache key
    (``str`` by default; use ``Route.key`` for routes). Thread-safe counters: ``hits``,
    ``negative_hits``, ``misses``, ``computes``, ``store_errors``.

    A cache that is down (connection refused, timeout) is not an outage of the service: the read
    counts as a miss and a ``store_error``, the answer comes from the backend, and the write is skipped.
    The client's own timeouts bound how long that takes. A write the store reports it did not make (its
    ``set`` returns ``False``, as :meth:`MemcachedStore.set` does for a refused write) is a ``store_error`` too.
    """

    def __init__(self, store, compute: Callable[[Hashable], object], *, ttl: float, jitter: float = 0.0,
                 negative_ttl: float | None = None, key_of: Callable[[Hashable], str] = str,
                 rng: random.Random | None = None):
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        if negative_ttl is not None and negative_ttl <= 0:
            raise ValueError("negative_ttl must be positive (or None to cache no 'not found')")
        self.store, self.compute, self.ttl, self.jitter = store, compute, ttl, jitter
        self.negative_ttl, self.key_of = negative_ttl, key_of
        self.rng = rng or random.Random()
        self.hits = self.negative_hits = self.misses = self.computes = self.store_errors = 0
        self._lock = threading.Lock()

    def _count(self, name: str) -> None:
        with self._lock:
            setattr(self, name, getattr(self, name) + 1)

    def get(self, request: Hashable):
        """The value for ``request`` (``None`` when not found), from the cache when it is there."""
        key = self.key_of(request)
        try:
            cached = self.store.get(key)
        except STORE_ERRORS:
            self._count("store_errors")
            self._count("misses")
            value = self.compute(request)
            self._count("computes")
            return value
        if cached is not None:
            if cached == MISSING_MARKER:
                self._count("negative_hits")
                return None
            self._count("hits")
            return cached
        self._count("misses")
        value = self.compute(request)
        self._count("computes")
        try:
            stored = None
            if value is None:
                if self.negative_ttl is not None:
                    stored = self.store.set(key, MISSING_MARKER, self.negative_ttl)
            else:
                stored = self.store.set(key, value, jittered_ttl(self.ttl, self.jitter, rng=self.rng))
            if stored is False:  # refused, and the client said so instead of raising
                self._count("store_errors")
        except STORE_ERRORS:
            self._count("store_errors")
        return value

    __call__ = get

    def invalidate(self, request: Hashable) -> None:
        """Delete on write: drop the cached value, so the next read computes it afresh."""
        self.store.delete(self.key_of(request))

    @property
    def hit_ratio(self) -> float:
        total = self.hits + self.negative_hits + self.misses
        return (self.hits + self.negative_hits) / total if total else 0.0


class Namespace:
    """Versioned keys in Redis: ``<prefix><name>:v<version>:<key>``, with the version in Redis itself.

    :meth:`bump` increments the version (one ``INCR``): every key of the old version becomes unreachable
    at once, however many there are, and expires by its TTL later. The price: one more round trip per
    lookup to read the version (:meth:`key` reads it each time, so every process sees a bump at once).
    """

    def __init__(self, client, prefix: str, name: str):
        if not name or any(c.isspace() for c in name) or ":" in name:
            raise ValueError(f"a namespace name without spaces or ':', not {name!r}")
        self.client = client
        self.prefix = check_prefix(prefix)
        self.name = name
        self.version_key = f"{self.prefix}{name}:version"

    def version(self) -> int:
        return int(self.client.get(self.version_key) or 0)

    def key(self, key: str) -> str:
        """The key relative to the prefix (for a :class:`RedisStore`), at the current version."""
        return f"{self.name}:v{self.version()}:{key}"

    def bump(self) -> int:
        """Invalidate the whole namespace; returns the new version."""
        return int(self.client.incr(self.version_key))
