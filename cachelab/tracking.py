"""Server-assisted client-side caching: a local tier that Redis itself keeps fresh (``CLIENT TRACKING``).

06's near cache (:mod:`cachelab.near_cache`) publishes every write on a channel of its own, so a write made
by anyone who does not publish (another program, ``redis-cli``, an expiry, an eviction) leaves the local
copies stale. With tracking the *server* remembers which connection read which key, and tells it when
that key changes, whoever changed it. Since Redis 6:

* **default mode**: the server keeps a tracking table, key -> IDs of the clients that read it; on a change
  it sends each of them one invalidation and forgets the key (the client must read it again to be told
  again). Memory on the server grows with the keys read, capped by ``tracking-table-max-keys`` (when
  full, it evicts entries and invalidates them as if they had changed).
* **BCAST** with ``PREFIX p``: no table; every change of a key under ``p`` is sent to every client that
  registered the prefix, read or not. Server memory per prefix, not per key; more messages.

Invalidations travel either as RESP3 push messages on the connection itself, or (RESP2) redirected with
``REDIRECT <client id>`` to another connection subscribed to ``__redis__:invalidate``. This module uses the
redirect: it works on every Redis from 6 on (and Valkey) and with every redis-py parser. The redirect
target must speak RESP2: on a RESP3 connection the server sends it an ``invalidate`` push instead, which
redis-py 8's parser drops unless an invalidation handler is installed (a private API).

What the client must get right, each handled by :class:`TrackedCache` and covered by a test:

* **the read/invalidate race**: the reply to a ``GET`` and an invalidation of that key travel on two
  connections. A key is marked pending before its ``GET``; an invalidation clears the mark, and a reply
  whose mark is gone is served but not kept (the fix the Redis documentation describes).
* **a lost invalidation connection**: messages sent while the subscriber is gone are lost, and with RESP2
  the server cannot tell the data connection so (RESP3 gets a ``tracking-redir-broken`` push). So when a
  subscriber's connection drops, the local tier is emptied, that node's data connections are closed, and
  the next one opened subscribes again and re-enables tracking toward the new subscriber.
* **a re-opened data connection**: tracking belongs to a connection; one that is re-opened no longer
  tracks what its predecessor read, so the local tier is emptied then too. A local hit does not touch the
  connection, so a connection the server closed (``CLIENT KILL``, an idle ``timeout``, which spares
  Pub/Sub connections but not data connections) would go unnoticed while hits are served: a thread pings
  every node each ``check_interval`` seconds, which notices it (and keeps the connection from idling).

In a cluster, tracking is per node: every data connection to every node enables it, redirected to a
subscriber on that same node (a node sends invalidations only to clients connected to it).
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import threading
import time
import weakref
from collections.abc import Callable

import numpy as np
from cachetools import LRUCache

from . import arguments
from .keys import check_prefix

INVALIDATE_CHANNEL = "__redis__:invalidate"
_MISSING = object()


class _Subscriber:
    """One RESP2 connection to one node, subscribed to ``__redis__:invalidate``, read by a thread."""

    def __init__(self, owner: TrackedCache, host: str, port: int):
        from redis.backoff import NoBackoff
        from redis.connection import Connection
        from redis.retry import Retry

        from .servers import config

        self.owner, self.address = owner, (host, port)
        self.conn = Connection(host=host, port=port, password=owner._password, username=owner._username,
                               protocol=2, decode_responses=True, socket_timeout=config.SOCKET_TIMEOUT,
                               socket_connect_timeout=config.CONNECT_TIMEOUT, retry=Retry(NoBackoff(), 0))
        self.conn.connect()
        self.conn.send_command("CLIENT", "ID")
        self.id = int(self.conn.read_response())
        self.conn.send_command("SUBSCRIBE", INVALIDATE_CHANNEL)
        reply = self.conn.read_response()
        if not (isinstance(reply, list) and reply[0] == "subscribe"):
            self.conn.disconnect()
            raise ConnectionError(f"SUBSCRIBE {INVALIDATE_CHANNEL} answered {reply!r}")
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name=f"tracking-{host}:{port}", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                if not self.conn.can_read(timeout=0.2):
                    continue
                message = self.conn.read_response()
            except Exception:  # noqa: BLE001 - the connection is gone: invalidations may have been lost
                if not self._stop.is_set():
                    self.owner._subscriber_lost(self)
                return
            arrived = time.monotonic_ns()
            if isinstance(message, list) and len(message) == 3 and message[0] == "message":
                self.owner._invalidated(message[2], arrived)

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(Exception):
            self.conn.disconnect()
        if self.thread is not threading.current_thread():
            self.thread.join(timeout=2)


class TrackedCache:
    """A local LRU tier over Redis (JSON values under ``prefix``), invalidated by the server itself.

    ``source`` is a :class:`cachelab.servers.cluster.Cluster` (a client per node of the cluster) or a
    ``redis://`` URL (one server). ``get(key)`` returns the local copy, else reads Redis and keeps the
    value (a missing key is not kept). ``bcast=True`` registers ``prefix`` in BCAST mode instead of
    having reads tracked. ``on_invalidate(key, arrived_ns)`` is called from a listener thread when the
    server invalidates a key under ``prefix`` (``arrived_ns`` from ``time.monotonic_ns()``).

    Counters: ``local_hits``, ``remote_hits``, ``misses``, ``invalidations`` (keys the server
    invalidated), ``dropped`` (of those, copies that were held), ``not_kept`` (reads served but not kept
    because an invalidation overlapped them), ``flushes`` (the local tier emptied: a lost subscriber,
    a re-opened data connection, a server flush).
    """

    def __init__(self, source, prefix: str, *, bcast: bool = False, maxsize: int = 10_000,
                 check_interval: float = 1.0, on_invalidate: Callable[[str, int], None] | None = None,
                 **client_options):
        self.prefix = check_prefix(prefix)
        self.bcast = bool(bcast)
        arguments.integer("maxsize", maxsize, minimum=1)
        self.check_interval = arguments.number("check_interval", check_interval, positive=True)
        self.on_invalidate = on_invalidate
        self._lock = threading.RLock()
        self._local: LRUCache = LRUCache(maxsize=maxsize)
        self._pending: dict[str, object] = {}
        self._generation = 0
        self._repairing = 0
        self._subs: dict[tuple[str, int], _Subscriber] = {}
        self._seen: weakref.WeakSet = weakref.WeakSet()
        self._closed = False
        self._stop = threading.Event()
        self._keeper: threading.Thread | None = None
        self.local_hits = self.remote_hits = self.misses = 0
        self.invalidations = self.dropped = self.not_kept = self.flushes = self.subscribers_lost = 0
        if isinstance(source, str):
            from .servers import parse_redis_url, redis_client_for

            parts = parse_redis_url(source)
            self._password, self._username, self.cluster = parts["password"], None, False
            self.client = redis_client_for(source, protocol=2, redis_connect_func=self._on_connect_standalone,
                                           **client_options)
        else:
            self._password, self._username, self.cluster = source.password, source.username, True
            self.client = source.client(protocol=2, redis_connect_func=self._on_connect, **client_options)
        try:
            self._ping_every_node()
        except BaseException:
            self.close()
            raise
        self._keeper = threading.Thread(target=self._keep, name="tracking-check", daemon=True)
        self._keeper.start()

    # -- connections
    def _ping_every_node(self) -> None:
        """A command to every node: opens the data connections (at start, so that opening them later does
        not empty the local tier), and notices one the server closed (its re-opening empties the tier)."""
        if self.cluster:
            self.client.ping(target_nodes=self.client.PRIMARIES)
        else:
            self.client.ping()

    def _keep(self) -> None:
        while not self._stop.wait(self.check_interval):
            with contextlib.suppress(Exception):  # a node down: the subscriber's loss handles it
                self._ping_every_node()

    def _on_connect_standalone(self, connection) -> None:
        connection.on_connect()  # a redis_connect_func replaces the handshake: do it first
        self._on_connect(connection)

    def _on_connect(self, connection) -> None:
        """Every data connection, new or re-opened: tracking on, redirected to this node's subscriber."""
        sub = self._subscriber_for(connection.host, int(connection.port))
        command = ["CLIENT", "TRACKING", "ON", "REDIRECT", sub.id]
        if self.bcast:
            command += ["BCAST", "PREFIX", self.prefix]
        connection.send_command(*command)
        reply = connection.read_response()
        if (reply.decode() if isinstance(reply, bytes) else reply) != "OK":
            raise ConnectionError(f"CLIENT TRACKING answered {reply!r}")
        with self._lock:
            if connection in self._seen:  # re-opened: what it read before is tracked no more
                self._flush_locked()
            self._seen.add(connection)

    def _subscriber_for(self, host: str, port: int) -> _Subscriber:
        with self._lock:
            sub = self._subs.get((host, port))
            if sub is None:
                sub = self._subs[(host, port)] = _Subscriber(self, host, port)
            return sub

    def _subscriber_lost(self, sub: _Subscriber) -> None:
        with self._lock:
            if self._subs.get(sub.address) is sub:
                del self._subs[sub.address]
            self.subscribers_lost += 1
            self._repairing += 1
            self._flush_locked()
        try:
            if not self._closed:
                self._close_data_connections(sub.address)
        finally:
            with self._lock:
                self._repairing -= 1
                self._generation += 1
        sub.close()

    def _close_data_connections(self, address: tuple[str, int]) -> None:
        """The next command to that node opens a new connection, which re-enables tracking (and subscribes)."""
        with contextlib.suppress(Exception):
            if not self.cluster:
                self.client.connection_pool.disconnect()
                return
            node = self.client.get_node(host=address[0], port=address[1])
            if node is not None and node.redis_connection is not None:
                node.redis_connection.connection_pool.disconnect()

    # -- invalidations
    def _invalidated(self, keys, arrived_ns: int) -> None:
        if keys is None:  # FLUSHDB / FLUSHALL on the server: every key is invalid
            with self._lock:
                self._flush_locked()
            return
        dropped = []
        with self._lock:
            for full in keys:
                if not full.startswith(self.prefix):
                    continue
                key = full[len(self.prefix):]
                self.invalidations += 1
                self._pending.pop(key, None)
                if self._local.pop(key, _MISSING) is not _MISSING:
                    self.dropped += 1
                dropped.append(key)
        if self.on_invalidate is not None:
            for key in dropped:
                self.on_invalidate(key, arrived_ns)

    def _flush_locked(self) -> None:
        self._local.clear()
        self._pending.clear()
        self._generation += 1
        self.flushes += 1

    # -- reads and writes
    def get(self, key: str):
        with self._lock:
            try:
                value = self._local[key]
            except KeyError:
                pass
            else:
                self.local_hits += 1
                return value
            generation = self._generation
            token = self._pending[key] = object()
        raw = self.client.get(self.prefix + key)
        with self._lock:
            mine = self._pending.get(key) is token
            if mine:
                del self._pending[key]
            if raw is None:
                self.misses += 1
                return None
            value = json.loads(raw)
            self.remote_hits += 1
            if mine and generation == self._generation and not self._repairing:
                self._local[key] = value
            else:
                self.not_kept += 1
        return value

    __call__ = get

    def set(self, key: str, value, *, ttl: float = 300.0) -> None:
        """Write to Redis (JSON, with a TTL). The server then invalidates every tracked copy, this one's too."""
        self.client.set(self.prefix + key, json.dumps(value, separators=(",", ":")), px=max(1, int(ttl * 1000)))

    def invalidate(self, key: str) -> None:
        """Delete the key in Redis: every client holding it is told."""
        self.client.delete(self.prefix + key)

    def cached_locally(self, key: str) -> bool:
        with self._lock:
            return key in self._local

    def clear_local(self) -> None:
        with self._lock:
            self._flush_locked()

    @property
    def healthy(self) -> bool:
        """False while a lost subscriber is being replaced (reads are served, nothing is kept)."""
        return not self._repairing

    def subscriber_ids(self) -> dict[str, int]:
        """The client ID of each node's subscriber, by ``'host:port'`` (what ``REDIRECT`` points to)."""
        with self._lock:
            return {f"{h}:{p}": s.id for (h, p), s in self._subs.items()}

    def counters(self) -> dict[str, int]:
        return {"local_hits": self.local_hits, "remote_hits": self.remote_hits, "misses": self.misses,
                "invalidations": self.invalidations, "dropped": self.dropped, "not_kept": self.not_kept,
                "flushes": self.flushes, "subscribers_lost": self.subscribers_lost}

    def __len__(self) -> int:
        with self._lock:
            return len(self._local)

    # -- lifetime
    def close(self) -> None:
        """Stop listening and close every connection (idempotent)."""
        self._closed = True
        self._stop.set()
        if self._keeper is not None and self._keeper is not threading.current_thread():
            self._keeper.join(timeout=5)
        with self._lock:
            subs, self._subs = list(self._subs.values()), {}
        for sub in subs:
            sub.close()
        with contextlib.suppress(Exception):
            self.client.close()

    def __enter__(self) -> TrackedCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def tracking_info(source) -> dict[str, int]:
    """The server's tracking counters (``INFO``), summed over the nodes: clients, keys, items, prefixes,
    and ``used_memory``."""
    if isinstance(source, str):
        from .servers import redis_client_for

        with contextlib.closing(redis_client_for(source)) as client:
            infos = [client.info()]
    else:
        infos = list(source.info().values())
    fields = ("tracking_clients", "tracking_total_keys", "tracking_total_items", "tracking_total_prefixes",
              "used_memory")
    primaries = [i for i in infos if i.get("role") == "master"] or infos
    return {f: int(sum(i.get(f, 0) for i in primaries)) for f in fields}


# --------------------------------------------------------------------------- a writer in another process

def _source_spec(source) -> dict:
    if isinstance(source, str):
        return {"url": source}
    return {"startup_nodes": [list(a) for a in source.startup_nodes], "password": source.password,
            "username": source.username}


def _writer_main(spec: dict, conn) -> None:  # pragma: no cover - runs in the child process
    import redis
    from redis.cluster import ClusterNode, RedisCluster

    if "url" in spec:
        client = redis.Redis.from_url(spec["url"], socket_timeout=2, socket_connect_timeout=1)
    else:
        client = RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in spec["startup_nodes"]],
                              password=spec["password"], username=spec["username"], socket_timeout=2,
                              socket_connect_timeout=1)
    client.ping()
    conn.send("ready")
    while True:
        request = conn.recv()
        if request is None:
            break
        key, value = request
        sent = time.monotonic_ns()
        client.set(key, value)
        conn.send((sent, time.monotonic_ns()))
    client.close()


class RemoteWriter:
    """A separate process that writes a key when asked and says when it sent the write.

    Times come from ``time.monotonic_ns()``, one clock for every process of the machine (``CLOCK_MONOTONIC``
    on Linux), so the invalidation latency is the moment the local copy was dropped minus the moment the
    other process sent its write.
    """

    def __init__(self, source, *, start_timeout: float = 60.0):
        ctx = multiprocessing.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._process = ctx.Process(target=_writer_main, args=(_source_spec(source), child), daemon=True)
        self._process.start()
        if not self._conn.poll(start_timeout):
            self.close()
            raise TimeoutError("the writer process did not start")
        if self._conn.recv() != "ready":
            self.close()
            raise RuntimeError("the writer process failed to connect")

    def write(self, key: str, value, timeout: float = 5.0) -> tuple[int, int]:
        """Write ``key`` (the full Redis key) from the other process: ``(sent_ns, acknowledged_ns)``."""
        self._conn.send((key, value))
        if not self._conn.poll(timeout):
            raise TimeoutError(f"the writer process did not write {key!r} within {timeout}s")
        return self._conn.recv()

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._conn.send(None)
        self._process.join(timeout=5)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(timeout=5)

    def __enter__(self) -> RemoteWriter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def invalidation_latencies(cache: TrackedCache, writer: RemoteWriter, keys, *, rounds: int,
                           timeout: float = 2.0) -> np.ndarray:
    """``rounds`` times: read a key through ``cache`` (so it is held and tracked), have ``writer`` change it
    from another process, wait for the local copy to drop. Returns each delay from the write being sent to
    the drop, in ns."""
    arguments.integer("rounds", rounds, minimum=1)
    keys = list(keys)
    if not keys:
        raise ValueError("invalidation_latencies needs at least one key")
    arrived: dict[str, int] = {}
    event = threading.Event()
    previous = cache.on_invalidate

    def note(key: str, t: int) -> None:
        arrived[key] = t
        event.set()
        if previous is not None:
            previous(key, t)

    cache.on_invalidate = note
    out = []
    try:
        for i in range(rounds):
            key = keys[i % len(keys)]
            cache.get(key)
            if not cache.cached_locally(key):
                cache.get(key)
            arrived.pop(key, None)
            event.clear()
            sent, _ = writer.write(cache.prefix + key, json.dumps({"round": i}))
            deadline = time.monotonic() + timeout
            while key not in arrived:
                if not event.wait(max(0.0, deadline - time.monotonic())):
                    raise TimeoutError(f"no invalidation of {key!r} within {timeout}s")
                event.clear()
            out.append(arrived[key] - sent)
    finally:
        cache.on_invalidate = previous
    return np.asarray(out, dtype=np.float64)
