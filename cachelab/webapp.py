"""The flight-delay service as a web application: Flask, served by gunicorn's pre-forked workers.

Open this file next to notebook 07. The endpoints, JSON in and out:

* ``GET /delay/<origin>/<dest>/<month>``: the delay statistics of one route in one month, through the cache;
* ``POST /flights`` with ``{"origin": ..., "dest": ..., "month": ..., "arr_delay": ...}``: record a flight
  in SQLite, which changes that route's answer, then tell the cache as far as its mode can;
* ``GET /stats``: this worker's counters (pid, requests, hits, misses, backend queries, floor answers) and
  the state of its garbage collector (enabled, objects frozen by ``gc.freeze``);
* ``GET /health``: this worker is up and its database answers;
* ``GET /floor``: a fixed answer of the same shape (a few bytes shorter), with no database and no cache: the
  most the HTTP stack alone can serve, the ceiling of every cache mode;
* ``GET /gc``: a full collection (``gc.collect()``) in the worker that answers, with its pid (notebook 07 makes
  every worker collect before it reads their memory).

Bad input (an unknown airport, month 13, a body that is not a JSON object) gets a 400 with a JSON error,
never a 500. The cache mode is chosen when the server starts, by ``CACHELAB_WEB_MODE`` or
``create_app(mode=...)``:

* ``none``: every request queries SQLite;
* ``lru``: a ``functools.lru_cache`` in each worker (notebook 02). It never expires and a write cannot
  reach the other workers' copies: stale until the process restarts;
* ``ttl``: a ``cachetools.TTLCache`` in each worker (notebook 03): stale for at most its TTL (``local_ttl``);
* ``memcached`` and ``redis``: :class:`~cachelab.cache_aside.CacheAside` over one server that every worker
  shares (notebooks 05 and 06), delete-on-write;
* ``redis-lock``: the same, with the miss path of :class:`~cachelab.stampede.LockedRecompute` (notebook 06):
  the first worker to miss a key takes a lock in Redis and queries, the others wait for its answer, so a
  deleted hot key costs one query however many workers ask for it at once (a waiter that gives up after
  10 s answers from the database itself, and is counted in ``lock_timeouts``);
* ``near``: :class:`~cachelab.near_cache.NearCache`, a local tier in each worker in front of Redis, whose
  writes tell every worker to drop its copy (pub/sub).

A cache server that goes away degrades to the database: the request is a miss, answered from SQLite,
and counted in ``store_errors``. Every worker opens its own connections after the fork (a SQLite
connection or a socket must not be shared by two processes), on its first request or when gunicorn's
``post_worker_init`` hook calls :func:`open_worker`.

With a counters folder (``CACHELAB_WEB_COUNTERS``), each worker keeps its counters in a small file there, and
logs every backend query, one line each (the time on the system's monotonic clock and the key), so that
the process that started the server can count the queries of each key, and of each write
(:class:`QueryLog`, :func:`read_queries`).

Run it by hand (the package's :mod:`cachelab.servers.gunicorn` does this for the notebook)::

    CACHELAB_WEB_MODE=redis CACHELAB_WEB_REDIS=redis://:PASSWORD@127.0.0.1:6379/0 \\
        gunicorn --workers 4 --bind 127.0.0.1:8000 'cachelab.webapp:create_app()'
"""

from __future__ import annotations

import contextlib
import functools
import gc
import math
import mmap
import os
import re
import sqlite3
import time
from dataclasses import dataclass, field
from pathlib import Path

import cachetools
from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from .cache_aside import STORE_ERRORS, CacheAside, MemcachedStore, RedisStore
from .data import FlightService, Route, database_path
from .stampede import LockTimeout

MODES = ("none", "lru", "ttl", "memcached", "redis", "near", "redis-lock")
LOCAL_MODES = ("lru", "ttl")
SHARED_MODES = ("memcached", "redis", "near", "redis-lock")
#: The counters every worker keeps, in this order in its counters file. ``requests``, ``hits``, ``misses`` and
#: ``backend_queries`` count the delay endpoint, ``local_hits`` the hits answered from the worker's own memory
#: (``lru``, ``ttl``, the near cache's local tier); ``floor`` the answers of ``/floor``, ``collections`` the
#: collections of ``/gc``; ``lock_timeouts`` the waiters of ``redis-lock`` that gave up and queried themselves.
COUNTERS = ("requests", "hits", "misses", "backend_queries", "writes", "store_errors", "bad_requests", "floor",
            "local_hits", "collections", "lock_timeouts")
_AIRPORT = re.compile(r"^[A-Z]{3}$")


class BadRequest(ValueError):
    """Input the service refuses: answered with a 400 and ``{"error": message}``."""


@dataclass(frozen=True)
class Settings:
    """How a server is configured; :meth:`from_environment` reads the ``CACHELAB_WEB_*`` variables."""

    mode: str = "none"
    db_path: str | None = None  # a writable copy (``copy_database``) for the write endpoint; None: read-only
    ttl: float = 60.0  # seconds, the shared caches: memcached, redis, and near's Redis tier
    local_ttl: float = 5.0  # seconds, each worker's own TTL cache: ttl, and near's local tier
    maxsize: int = 10_000  # entries of each worker's own cache (lru, ttl, near's local tier)
    redis_url: str | None = None
    memcached: tuple[tuple[str, int], ...] = ()
    prefix: str = "cachelab:webapp:"
    counters_dir: str | None = None  # where each worker keeps its counters file, read by the notebook
    warm: bool = False  # fill the local cache from one query when the app is created (see gunicorn --preload)
    warm_in_worker: bool = False  # fill it in each worker once it has forked (post_worker_init), not before

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"unknown cache mode {self.mode!r}: one of {', '.join(MODES)}")
        if self.mode in ("redis", "near", "redis-lock") and not self.redis_url:
            raise ValueError(f"mode {self.mode!r} needs a Redis URL (CACHELAB_WEB_REDIS)")
        if self.mode == "memcached" and not self.memcached:
            raise ValueError("mode 'memcached' needs memcached nodes (CACHELAB_WEB_MEMCACHED=host:port,...)")
        if not self.ttl > 0 or not self.local_ttl > 0 or self.maxsize < 1:
            raise ValueError("ttl and local_ttl must be positive, maxsize at least 1")

    @classmethod
    def from_environment(cls, env=os.environ, **overrides) -> Settings:
        nodes = tuple((h, int(p)) for h, _, p in (n.strip().rpartition(":") for n in
                                                   env.get("CACHELAB_WEB_MEMCACHED", "").split(",") if n.strip()))
        values = dict(mode=env.get("CACHELAB_WEB_MODE", "none"), db_path=env.get("CACHELAB_WEB_DB") or None,
                      ttl=float(env.get("CACHELAB_WEB_TTL", 60)), local_ttl=float(env.get("CACHELAB_WEB_LOCAL_TTL", 5)),
                      maxsize=int(env.get("CACHELAB_WEB_MAXSIZE", 10_000)),
                      redis_url=env.get("CACHELAB_WEB_REDIS") or None, memcached=nodes,
                      prefix=env.get("CACHELAB_WEB_PREFIX", "cachelab:webapp:"),
                      counters_dir=env.get("CACHELAB_WEB_COUNTERS") or None,
                      warm=env.get("CACHELAB_WEB_WARM", "") == "1",
                      warm_in_worker=env.get("CACHELAB_WEB_WARM_IN_WORKER", "") == "1")
        values.update(overrides)
        return cls(**values)


class Counters:
    """This worker's counters. With a folder, they live in a small memory-mapped file named after the
    pid, so that the process that started the server reads every worker's counters at any moment
    (:func:`read_counters`) without asking each worker, and without a system call per request; and every
    backend query is logged in ``<pid>.queries`` beside it (:meth:`query`)."""

    def __init__(self, folder: str | None = None):
        size = 8 * len(COUNTERS)
        self.path = None
        self._log = None
        if folder is None:
            self._buffer = bytearray(size)
        else:
            self.path = Path(folder) / f"{os.getpid()}.counters"
            with open(self.path, "w+b") as handle:
                handle.truncate(size)
                self._buffer = mmap.mmap(handle.fileno(), size)
            self._log = os.open(Path(folder) / f"{os.getpid()}.queries", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        self._values = memoryview(self._buffer).cast("q")

    def add(self, name: str, n: int = 1) -> None:
        self._values[COUNTERS.index(name)] += n

    def query(self, key: str) -> None:
        """Log one backend query of ``key``, at this moment of the system's monotonic clock (with a folder)."""
        if self._log is not None:
            os.write(self._log, f"{time.monotonic():.6f} {key}\n".encode())  # one write: a whole line, appended

    def as_dict(self) -> dict[str, int]:
        return dict(zip(COUNTERS, self._values.tolist(), strict=True))


def read_queries(path: str | os.PathLike, offset: int = 0) -> tuple[list[tuple[float, str]], int]:
    """The backend queries logged in one worker's ``<pid>.queries`` file from byte ``offset`` on, as
    ``(monotonic time, key)``, and the offset to read from next time (a line still being written waits)."""
    with open(path, "rb") as handle:
        handle.seek(offset)
        data = handle.read()
    end = data.rfind(b"\n") + 1
    out = []
    for line in data[:end].decode().splitlines():
        t, _, key = line.partition(" ")
        out.append((float(t), key))
    return out, offset + end


class QueryLog:
    """Every worker's query log in a counters folder, read piece by piece: :meth:`read_new` returns the queries
    logged since the last call, as ``(monotonic time, key, pid)``, sorted by time."""

    def __init__(self, folder: str | os.PathLike):
        self.folder = Path(folder)
        self._offsets: dict[Path, int] = {}

    def read_new(self) -> list[tuple[float, str, int]]:
        out = []
        for path in sorted(self.folder.glob("*.queries")):
            found, self._offsets[path] = read_queries(path, self._offsets.get(path, 0))
            pid = int(path.stem)
            out += [(t, key, pid) for t, key in found]
        return sorted(out)


def read_counters(folder: str | os.PathLike) -> dict[int, dict[str, int]]:
    """Every worker's counters in ``folder``, by pid (workers that have exited included)."""
    out = {}
    for path in sorted(Path(folder).glob("*.counters")):
        raw = path.read_bytes()
        if len(raw) == 8 * len(COUNTERS):
            out[int(path.stem)] = dict(zip(COUNTERS, memoryview(raw).cast("q").tolist(), strict=True))
    return out


@dataclass
class Worker:
    """What one worker process opens for itself after the fork: its database connection and cache clients."""

    pid: int
    service: FlightService
    counters: Counters
    aside: CacheAside | None = None  # memcached, redis
    near: object | None = None  # near
    locked: object | None = None  # redis-lock
    clients: list = field(default_factory=list)

    def close(self) -> None:
        if self.near is not None:
            self.near.close()
        for client in self.clients:
            client.close()
        self.service.close()


class FlightApp:
    """The service behind the routes: the settings, the per-worker state, and one method per endpoint."""

    def __init__(self, settings: Settings):
        self.settings = settings
        self._worker: Worker | None = None
        self._warm_answers: dict = {}
        self.airports = known_airports(settings.db_path)
        # The per-worker caches are built here, so that with --preload (and warm=True) the master fills
        # them before the fork and every worker starts with the master's copy.
        self.lru = functools.lru_cache(maxsize=settings.maxsize)(self._query)
        self.ttl_cache = cachetools.TTLCache(maxsize=settings.maxsize, ttl=settings.local_ttl)
        if settings.warm:
            self.warm()

    # -- per worker
    def worker(self) -> Worker:
        """This process's :class:`Worker`, opened on first use in each process (after the fork)."""
        if self._worker is None or self._worker.pid != os.getpid():
            self._worker = self._open()
        return self._worker

    def _open(self) -> Worker:
        s = self.settings
        writable = s.db_path is not None
        worker = Worker(os.getpid(), FlightService(s.db_path, writable=writable), Counters(s.counters_dir))
        if s.mode in ("redis", "near", "redis-lock"):
            from .servers import redis_client_for

            client = redis_client_for(s.redis_url)
            worker.clients.append(client)
            if s.mode == "redis":
                worker.aside = CacheAside(RedisStore(client, s.prefix), self._query, ttl=s.ttl, jitter=0.1,
                                          key_of=Route.key)
            elif s.mode == "redis-lock":
                from .stampede import LockedRecompute

                # waiters poll every 5 ms; a holder that died frees the lock after lock_ttl; a waiter that gives
                # up after wait_timeout raises LockTimeout, and _cached answers from the database (counted)
                worker.locked = LockedRecompute(client, s.prefix, lambda key: self._query(route_of(key)), ttl=s.ttl,
                                                lock_ttl=10.0, wait_timeout=10.0)
            else:
                from .near_cache import NearCache

                worker.near = NearCache(client, s.prefix, ttl=s.ttl, local_ttl=s.local_ttl, maxsize=s.maxsize)
        elif s.mode == "memcached":
            from .servers import memcached_client_for

            client = memcached_client_for(list(s.memcached), s.prefix)  # timeouts; a dead node is a miss
            worker.clients.append(client)
            worker.aside = CacheAside(MemcachedStore(client), self._query, ttl=s.ttl, jitter=0.1, key_of=Route.key)
        return worker

    def _query(self, route: Route) -> dict:
        """A miss: the full-table query (or, while warming before the fork, the answer read in one query)."""
        if route in self._warm_answers:
            return self._warm_answers.pop(route)
        worker = self.worker()
        worker.counters.query(route.key())
        return worker.service.ask(route)

    def warm(self) -> int:
        """Fill this process's own cache (lru or ttl) with every answer, from one ``GROUP BY`` query."""
        with FlightService(self.settings.db_path) as service:
            self._warm_answers = service.all_route_delays()
        routes = list(self._warm_answers)
        for route in routes:
            if self.settings.mode == "lru":
                self.lru(route)
            elif self.settings.mode == "ttl":
                self.ttl_cache[route.key()] = self._warm_answers[route]
        self._warm_answers = {}
        return len(routes)

    # -- parsing
    def route(self, origin: str, dest: str, month: str) -> Route:
        for name, code in (("origin", origin), ("dest", dest)):
            if not _AIRPORT.match(code) or code not in self.airports:
                raise BadRequest(f"unknown airport {code!r} for {name}")
        if not month.isdigit() or not 1 <= int(month) <= 12:
            raise BadRequest(f"month must be 1 to 12, not {month!r}")
        return Route(origin, dest, int(month))

    def flight(self, body) -> tuple[Route, float]:
        if not isinstance(body, dict):
            raise BadRequest("the body must be a JSON object with origin, dest, month and arr_delay")
        missing = {"origin", "dest", "month", "arr_delay"} - body.keys()
        if missing:
            raise BadRequest(f"missing field(s): {', '.join(sorted(missing))}")
        origin, dest, month, delay = body["origin"], body["dest"], body["month"], body["arr_delay"]
        if not isinstance(origin, str) or not isinstance(dest, str):
            raise BadRequest("origin and dest must be airport codes")
        if isinstance(month, bool) or not isinstance(month, int):
            raise BadRequest(f"month must be an integer from 1 to 12, not {month!r}")
        if isinstance(delay, bool) or not isinstance(delay, int | float) or not math.isfinite(delay) \
                or abs(delay) > 10_000:
            raise BadRequest(f"arr_delay must be a number of minutes, not {delay!r}")
        return self.route(origin, dest, str(month)), float(delay)

    # -- endpoints
    def delay(self, route: Route) -> dict:
        worker = self.worker()
        before = worker.service.calls
        local = worker.near.local_hits if worker.near is not None else 0
        answer = self._cached(worker, route)
        hit = worker.service.calls == before
        worker.counters.add("requests")
        worker.counters.add("hits" if hit else "misses")
        worker.counters.add("backend_queries", worker.service.calls - before)
        if hit and (self.settings.mode in LOCAL_MODES or (worker.near is not None and worker.near.local_hits > local)):
            worker.counters.add("local_hits")
        return answer

    def _cached(self, worker: Worker, route: Route) -> dict:
        mode = self.settings.mode
        if mode == "none":
            return self._query(route)
        if mode == "lru":
            return self.lru(route)
        if mode == "ttl":
            key = route.key()
            answer = self.ttl_cache.get(key)
            if answer is None:
                answer = self.ttl_cache[key] = self._query(route)
            return answer
        if mode == "redis-lock":
            try:
                return worker.locked.get(route.key())  # a miss: one worker queries under the lock, the others wait
            except LockTimeout:  # waited wait_timeout for the holder in vain: query, and say so
                worker.counters.add("lock_timeouts")
                return self._query(route)
            except STORE_ERRORS:
                worker.counters.add("store_errors")
                return self._query(route)
        if mode == "near":
            try:
                answer = worker.near.get(route.key())  # the local tier, then Redis; None when neither has it
            except STORE_ERRORS:
                worker.counters.add("store_errors")
                return self._query(route)
            if answer is None:
                answer = self._query(route)
                try:
                    worker.near.set(route.key(), answer)
                except STORE_ERRORS:
                    worker.counters.add("store_errors")
            return answer
        errors = worker.aside.store_errors
        answer = worker.aside.get(route)  # memcached, redis: a cache that is down is a miss
        worker.counters.add("store_errors", worker.aside.store_errors - errors)
        return answer

    def record(self, route: Route, arr_delay: float) -> dict:
        worker = self.worker()
        if not worker.service.writable:
            raise BadRequest("this server is read-only: start it with a writable copy of the database")
        worker.service.record_flight(route.origin, route.dest, route.month, arr_delay)
        worker.counters.add("writes")
        told = self._invalidate(worker, route)
        return {"recorded": {"origin": route.origin, "dest": route.dest, "month": route.month,
                             "arr_delay": arr_delay}, "cache": told}

    def _invalidate(self, worker: Worker, route: Route) -> str:
        """Tell the cache about a write, as far as this mode can; returns what was done."""
        mode = self.settings.mode
        if mode == "none":
            return "no cache"
        if mode == "lru":
            return "nothing: lru_cache cannot drop one key, and the other workers' copies are out of reach"
        if mode == "ttl":
            self.ttl_cache.pop(route.key(), None)
            return "dropped this worker's copy; the other workers' copies expire within the TTL"
        try:
            if mode == "near":
                worker.near.invalidate(route.key())
                return "deleted from Redis and published: every worker drops its local copy"
            if mode == "redis-lock":
                worker.locked.client.delete(worker.locked.prefix + route.key())
                return "deleted from redis"
            worker.aside.invalidate(route)
            return f"deleted from {mode}"
        except STORE_ERRORS:
            worker.counters.add("store_errors")
            return f"{mode} unreachable: the cached answer stays until its TTL"

    def stats(self) -> dict:
        worker = self.worker()
        out = {"pid": worker.pid, "mode": self.settings.mode, **worker.counters.as_dict(),
               "gc": {"enabled": gc.isenabled(), "frozen": gc.get_freeze_count()}}
        if self.settings.mode == "lru":
            out["cache"] = self.lru.cache_info()._asdict()
        elif self.settings.mode == "ttl":
            out["cache"] = {"currsize": len(self.ttl_cache), "maxsize": self.ttl_cache.maxsize}
        elif self.settings.mode == "near":
            out["cache"] = worker.near.counters()
        elif self.settings.mode == "redis-lock":
            out["cache"] = worker.locked.counters()
        elif worker.aside is not None:
            out["cache"] = {name: getattr(worker.aside, name) for name in ("hits", "misses", "store_errors")}
        return out


def create_app(mode: str | None = None, **settings) -> Flask:
    """The Flask application, configured from ``CACHELAB_WEB_*`` and these arguments (which win).

    gunicorn calls it once per worker (or once in the master with ``--preload``): ``'cachelab.webapp:create_app()'``.
    """
    config = Settings.from_environment(**({"mode": mode} if mode else {}), **settings)
    service = FlightApp(config)
    app = Flask(__name__, static_folder=None)
    app.extensions["cachelab"] = service
    floor = {"origin": "JFK", "dest": "LAX", "month": 7, "flights": 0, "mean_arr_delay": 0.0,
             "mean_dep_delay": 0.0, "on_time_rate": 0.0, "cancelled": 0, "worst_arr_delay": 0.0}

    @app.errorhandler(BadRequest)
    def bad_request(error):
        service.worker().counters.add("bad_requests")
        return jsonify(error=str(error)), 400

    @app.errorhandler(HTTPException)
    def http_error(error):  # 404, 405...: JSON like every other answer
        return jsonify(error=error.description), error.code

    @app.get("/delay/<origin>/<dest>/<month>")
    def delay(origin, dest, month):
        return jsonify(service.delay(service.route(origin, dest, month)))

    @app.post("/flights")
    def flights():
        route, arr_delay = service.flight(request.get_json(silent=True))
        return jsonify(service.record(route, arr_delay)), 201

    @app.get("/stats")
    def stats():
        return jsonify(service.stats())

    @app.get("/health")
    def health():
        worker = service.worker()
        worker.service._conn.execute("SELECT 1").fetchone()
        return jsonify(ok=True, pid=worker.pid, mode=config.mode)

    @app.get("/floor")
    def static_answer():
        service.worker().counters.add("floor")
        return jsonify(floor)

    @app.get("/gc")
    def collect():
        worker = service.worker()
        collected = gc.collect()
        worker.counters.add("collections")
        return jsonify(pid=worker.pid, collected=collected, frozen=gc.get_freeze_count())

    return app


def open_worker(app: Flask) -> None:
    """Open this worker's connections now (gunicorn's ``post_worker_init`` hook), not on its first request;
    with ``warm_in_worker``, fill this worker's own cache too."""
    service = app.extensions["cachelab"]
    service.worker()
    if service.settings.warm_in_worker:
        service.warm()


def close_worker(app: Flask) -> None:
    """Close this worker's connections (gunicorn's ``worker_exit`` hook)."""
    service = app.extensions["cachelab"]
    if service._worker is not None and service._worker.pid == os.getpid():
        service._worker.close()
        service._worker = None


def route_of(key: str) -> Route:
    """The :class:`~cachelab.data.Route` of a cache key made by ``Route.key()`` (``JFK-LAX-07``)."""
    origin, dest, month = key.split("-")
    return Route(origin, dest, int(month))


def known_airports(db_path: str | None = None) -> frozenset[str]:
    """Every airport a flight of the table leaves from or flies to: what a request may name (one scan)."""
    if db_path is not None and not Path(db_path).exists():
        raise FileNotFoundError(f"no database at {db_path}")
    mode = "rw" if db_path else "ro"  # a private copy may be in WAL mode, which a read-only open cannot set up
    with contextlib.closing(sqlite3.connect(f"file:{db_path or database_path()}?mode={mode}", uri=True)) as conn:
        rows = conn.execute("SELECT DISTINCT origin, dest FROM flights").fetchall()
    return frozenset(code for pair in rows for code in pair)
