"""Memoization from first principles, and the helpers notebooks 01 and 02 use to measure it.

* :class:`CallCounter`: counts the calls of a function, recursive ones included.
* :class:`Memo`: a hand-written memo, a dict from arguments to results in front of a function, with
  hit and miss counters. ``functools.lru_cache`` does the same job in C, with a size bound.
* :func:`round_trip_minutes` and :func:`count_schedules`: the recursive question on the data (how many
  different sequences of round trips fit in a pilot's flying time) and a bottom-up reference answer;
  :func:`sub_budgets`, the sub-questions that recursion asks (what a memo of it holds).
* :func:`replay_memo`: a request stream replayed through a :class:`Memo` in front of a stand-in, for the
  backend calls a memo would make without making any.
* :func:`replay_lru`: a request stream replayed through a real ``functools.lru_cache``, for hit ratios
  and memory (``tracemalloc``) as ``maxsize`` grows, without paying for the backend; :func:`traced_bytes`,
  what a piece of code leaves allocated.
* :class:`SingleFlight`: threads which miss the same key at the same instant
  (:func:`cachelab.threads.call_together`) share one computation, as Go's ``singleflight`` does.
* :func:`answer_in_process`: an ``lru_cache`` lives in one process's memory; a fresh worker process
  (:func:`cachelab.workers.in_fresh_process`) starts with an empty one. A store outside the processes
  (an SQLite file of JSON answers) is shared by all of them.
"""

from __future__ import annotations

import functools
import gc
import json
import math
import os
import sqlite3
import threading
import tracemalloc
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass

from .data import FlightService

_MISSING = object()  # a sentinel no function returns, so that None can be a cached result


class CallCounter:
    """Wrap ``func`` and count its calls in :attr:`calls`.

    Decorate a recursive function with it and the recursive calls are counted too, because the function
    body looks its own name up at call time and finds the counter::

        @CallCounter
        def fib(n):
            return n if n < 2 else fib(n - 1) + fib(n - 2)
    """

    def __init__(self, func: Callable):
        functools.update_wrapper(self, func)
        self.func = func
        self.calls = 0

    def __call__(self, *args, **kwargs):
        self.calls += 1
        return self.func(*args, **kwargs)

    def reset(self) -> None:
        """Set the count back to zero."""
        self.calls = 0


class Memo:
    """A hand-written memo: remember each result under its arguments, and never compute it twice.

    The key is the tuple of positional arguments, so they must be hashable (no lists or dicts), and
    the function must be *pure*: the same arguments always give the same result, with no side effect
    worth repeating. The memo never forgets: it grows by one entry per distinct argument tuple.
    """

    def __init__(self, func: Callable):
        functools.update_wrapper(self, func)
        self.func = func
        self.cache: dict[tuple, object] = {}
        self.hits = 0
        self.misses = 0

    def __call__(self, *args):
        result = self.cache.get(args, _MISSING)  # a hit: one hash of the key, one lookup
        if result is not _MISSING:  # seen these arguments before: a hit
            self.hits += 1
            return result
        self.misses += 1  # first time: compute, then remember (a second hash, to store)
        result = self.cache[args] = self.func(*args)
        return result

    @property
    def calls(self) -> int:
        """Every call, hit or miss."""
        return self.hits + self.misses

    @property
    def hit_ratio(self) -> float:
        """Share of calls answered from the memo (0.0 before any call)."""
        return self.hits / self.calls if self.calls else 0.0

    def __len__(self) -> int:
        return len(self.cache)

    def clear(self) -> None:
        """Forget every result and reset the counters."""
        self.cache.clear()
        self.hits = self.misses = 0


# --------------------------------------------------------------------------- the recursive question

def round_trip_minutes(service: FlightService, origin: str = "LGA", count: int = 6,
                       min_flights: int = 1000) -> dict[str, int]:
    """Flying time of a round trip from ``origin`` to its ``count`` nearest busy destinations.

    For each destination with at least ``min_flights`` flights in 2013, twice the mean air time,
    rounded up to the quarter hour. Shortest first: ``{'BOS': 90, 'DCA': 105, ...}``.
    """
    if count < 1:
        raise ValueError("count must be at least 1")
    with sqlite3.connect(f"file:{service.db_path}?mode=ro", uri=True) as conn:
        rows = conn.execute(
            "SELECT dest, AVG(air_time) AS minutes FROM flights WHERE origin = ? AND air_time IS NOT NULL "
            "GROUP BY dest HAVING COUNT(*) >= ? ORDER BY minutes, dest LIMIT ?",
            (origin, min_flights, count),
        ).fetchall()
    if not rows:
        raise ValueError(f"no destination from {origin!r} with {min_flights} flights or more")
    return {dest: 15 * math.ceil(2 * minutes / 15) for dest, minutes in rows}


def count_schedules(minutes: int, legs: Sequence[int]) -> int:
    """How many ordered sequences of ``legs`` (durations) fit in ``minutes``, the empty one included.

    The bottom-up reference for the recursion ``ways(t) = 1 + sum(ways(t - leg) for leg <= t)``: one
    pass over ``t = 0..minutes``, no recursion, so it answers for any size.
    """
    if minutes < 0:
        raise ValueError("minutes must be non-negative")
    if any(leg <= 0 for leg in legs):
        raise ValueError("every leg must last a positive number of minutes")
    ways = [1] * (minutes + 1)
    for t in range(minutes + 1):
        ways[t] = 1 + sum(ways[t - leg] for leg in legs if leg <= t)
    return ways[minutes]


def sub_budgets(minutes: int, legs: Sequence[int]) -> set[int]:
    """Every budget the recursion ``ways(minutes)`` asks about, ``minutes`` itself included.

    ``ways(t)`` asks ``ways(t - leg)`` for each leg that fits, and so on down: these are the sub-questions a
    memo of the recursion computes once each and holds afterwards (nothing else is ever asked).
    """
    if minutes < 0:
        raise ValueError("minutes must be non-negative")
    if any(leg <= 0 for leg in legs):
        raise ValueError("every leg must last a positive number of minutes")
    seen: set[int] = set()
    todo = [minutes]
    while todo:
        t = todo.pop()
        if t not in seen:
            seen.add(t)
            todo.extend(t - leg for leg in legs if leg <= t)
    return seen


# --------------------------------------------------------------------------- streams through lru_cache

@dataclass(frozen=True)
class LruReplay:
    """What a stream did to an ``lru_cache`` of one ``maxsize``."""

    maxsize: int | None
    hits: int
    misses: int
    currsize: int
    traced_bytes: int | None = None

    @property
    def hit_ratio(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0


def replay_lru(stream: Sequence[Hashable], maxsize: int | None, *, make_value: Callable | None = None,
               trace_memory: bool = False) -> LruReplay:
    """Replay ``stream`` through a fresh ``functools.lru_cache(maxsize)`` and report what it did.

    The cached function is ``make_value(key)`` (``None`` when not given): the hit ratio depends only
    on the keys, so a cheap stand-in gives the same ratio as the real service. With
    ``trace_memory=True`` the bytes still allocated once the stream has been replayed (the cache, its
    keys and its values) are measured with :mod:`tracemalloc`; give a ``make_value`` that builds values
    of the real shape for that.
    """
    def stand_in(key):
        return make_value(key) if make_value is not None else None

    if trace_memory:
        was_tracing = tracemalloc.is_tracing()
        if not was_tracing:
            tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
    cached = functools.lru_cache(maxsize=maxsize)(stand_in)
    for key in stream:
        cached(key)
    traced = None
    if trace_memory:
        traced = tracemalloc.get_traced_memory()[0] - before
        if not was_tracing:
            tracemalloc.stop()
    info = cached.cache_info()
    return LruReplay(maxsize, info.hits, info.misses, info.currsize, traced)


def traced_bytes(build: Callable[[], object]) -> tuple[object, int]:
    """``build()`` and the bytes it leaves allocated, counted by :mod:`tracemalloc` after a garbage collection.

    What ``build`` allocates and frees again is not counted; what stays referenced afterwards (its result, or
    a cache it fills) is. Returns ``(result, bytes)``.
    """
    gc.collect()
    was_tracing = tracemalloc.is_tracing()
    if not was_tracing:
        tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]
    try:
        kept = build()
        held = tracemalloc.get_traced_memory()[0] - start
    finally:
        if not was_tracing:
            tracemalloc.stop()
    return kept, held


def replay_memo(stream: Iterable[Hashable]) -> Memo:
    """Replay ``stream`` through a fresh :class:`Memo` in front of a stand-in that computes nothing.

    Whether a request hits depends only on the keys, so the memo's ``misses`` are the backend calls the
    same memo would make in front of the real service, and its ``hits`` the calls it would save; the
    stand-in asks the service nothing.
    """
    replayed = Memo(lambda key: None)
    for key in stream:
        replayed(key)
    return replayed


class _Flight:
    """One computation in progress: the threads that asked for the same key wait on ``done``."""

    __slots__ = ("done", "error", "result")

    def __init__(self):
        self.done = threading.Event()
        self.result = None
        self.error: BaseException | None = None


class SingleFlight:
    """Make concurrent calls with the same arguments share one computation (Go's ``singleflight``).

    The first caller of a key (the leader) runs ``func``; callers that arrive while it runs wait for it
    and get its result (or its exception) instead of computing again. When the leader is done, the key is
    dropped, so nothing is kept per key between calls: the map holds only the computations in flight.
    Put it behind a cache, as the function the cache calls (``lru_cache(maxsize=...)(SingleFlight(func))``):
    it then runs only on a miss, a hit is the cache's alone, and callers that come later hit the cache. In
    front of the cache, every hit would pay for its lock and its ``Event``.
    """

    def __init__(self, func: Callable):
        functools.update_wrapper(self, func)
        self.func = func
        self._flights: dict[tuple, _Flight] = {}
        self._lock = threading.Lock()
        self.shared = 0
        """Calls answered with another caller's result."""

    def __call__(self, *args):
        with self._lock:
            flight = self._flights.get(args)
            leader = flight is None
            if leader:
                flight = self._flights[args] = _Flight()
            else:
                self.shared += 1
        if not leader:
            flight.done.wait()
            if flight.error is not None:
                raise flight.error
            return flight.result
        try:
            flight.result = self.func(*args)
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                del self._flights[args]  # the next call computes (or hits the cache) afresh
            flight.done.set()
        return flight.result

    @property
    def in_flight(self) -> int:
        """How many keys are being computed right now (0 when nobody is waiting)."""
        return len(self._flights)


# --------------------------------------------------------------------------- processes

_process_service: FlightService | None = None


def _service_of_this_process() -> FlightService:
    global _process_service
    if _process_service is None:
        _process_service = FlightService()
    return _process_service


@functools.cache
def cached_route_delay(origin: str, dest: str, month: int) -> dict:
    """``route_delay`` behind a module-level ``functools.cache``, as a web application would write it.

    The cache lives in this process's memory: every process that imports this module has its own.
    """
    return _service_of_this_process().route_delay(origin, dest, month)


def answer_in_process(routes: Sequence[tuple[str, str, int]], shared_path: str | None = None) -> dict:
    """Answer each ``(origin, dest, month)`` in this process, and say how many backend queries it took.

    Without ``shared_path`` the answers come from :func:`cached_route_delay`, the per-process
    ``lru_cache``. With it they come from a cache outside the process: an SQLite file that every process
    can open at the same time (SQLite serialises the writers), holding each answer as JSON, never as a
    pickle. Returns ``{"pid", "backend_calls", "hits", "misses"}``.
    """
    service = _service_of_this_process()
    before = service.calls
    hits = misses = 0
    if shared_path is None:
        for origin, dest, month in routes:
            start = cached_route_delay.cache_info()
            cached_route_delay(origin, dest, month)
            if cached_route_delay.cache_info().hits > start.hits:
                hits += 1
            else:
                misses += 1
    else:
        with sqlite3.connect(shared_path, timeout=30) as store:
            store.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, answer TEXT NOT NULL)")
            for origin, dest, month in routes:
                key = f"{origin}-{dest}-{int(month):02d}"
                row = store.execute("SELECT answer FROM answers WHERE key = ?", (key,)).fetchone()
                if row is not None:
                    json.loads(row[0])
                    hits += 1
                else:
                    misses += 1
                    answer = service.route_delay(origin, dest, month)
                    store.execute("INSERT OR REPLACE INTO answers VALUES (?, ?)", (key, json.dumps(answer)))
                    store.commit()
        store.close()
    return {"pid": os.getpid(), "backend_calls": service.calls - before, "hits": hits, "misses": misses}
