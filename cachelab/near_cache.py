"""A two-tier near cache: a local TTL cache in each process in front of Redis, kept fresh by pub/sub.

A hit in the process's own memory costs no round trip; a hit in Redis costs a network round trip.
A near cache keeps recently read values locally, so a read of a key held there skips the round trip. The price is
staleness: when one process writes a new value, the others still hold the old one locally. Two bounds:

* **pub/sub invalidation**: every write publishes the key on a channel; every near cache listens in a
  background thread and drops its local copy when the message arrives, typically within a millisecond.
* **the local TTL**: pub/sub is at-most-once (a message sent while a subscriber is disconnected is lost),
  so the local copy also expires after ``local_ttl`` seconds, whatever happens. When the listener's
  connection is lost and comes back, the local tier is emptied, since messages may have been missed.

``timer`` is injectable (as in ``cachetools.TTLCache``), so tests advance the local TTL without waiting.
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable

from cachetools import TTLCache

from .keys import check_prefix


class NearCache:
    """Local ``TTLCache`` + Redis (JSON values, ``ttl``), invalidated across processes through pub/sub.

    ``get(key)`` returns the value from the local tier, else from Redis (then kept locally), else from
    ``compute(key)`` when given (then stored in both), else ``None``. ``set`` and ``invalidate`` write to
    Redis and publish the key, so every other near cache on the same ``prefix`` drops its local copy.
    With ``invalidation=False`` no message is sent or received: staleness is bounded by ``local_ttl``
    alone. ``on_invalidate(key)`` is called from the listener thread after a local copy is dropped.
    ``clear_on_reconnect=False`` keeps the local tier when the listener's connection drops and comes back,
    although invalidations published meanwhile were lost: only to show what the local TTL bounds then.
    Counters: ``local_hits``, ``remote_hits``, ``misses``, ``computes``, ``invalidations``; and, for the
    listener's connection, ``reconnects`` (times redis-py connected it again after it dropped) and
    ``local_clears`` (times the local tier was emptied because of such a drop).
    """

    def __init__(self, client, prefix: str, *, compute: Callable[[str], object] | None = None,
                 ttl: float = 300.0, local_ttl: float = 5.0, maxsize: int = 10_000, invalidation: bool = True,
                 timer: Callable[[], float] = time.monotonic,
                 on_invalidate: Callable[[str], None] | None = None, clear_on_reconnect: bool = True):
        if ttl <= 0 or local_ttl <= 0 or maxsize < 1:
            raise ValueError("ttl and local_ttl must be positive, maxsize at least 1")
        self.client = client
        self.prefix = check_prefix(prefix)
        self.compute, self.ttl, self.local_ttl = compute, ttl, local_ttl
        self.channel = f"{self.prefix}invalidate"
        self.id = uuid.uuid4().hex[:12]
        self.on_invalidate = on_invalidate
        self.clear_on_reconnect = clear_on_reconnect
        self._local = TTLCache(maxsize=maxsize, ttl=local_ttl, timer=timer)
        self._lock = threading.Lock()
        self.local_hits = self.remote_hits = self.misses = self.computes = self.invalidations = 0
        self.reconnects = self.local_clears = 0
        self._epoch = 0  # invalidations seen: a read that overlaps one must not keep what it read
        self._stop = threading.Event()
        self._pubsub = None
        self._thread: threading.Thread | None = None
        if invalidation:
            self._subscribe()

    # -- the listener
    def _subscribe(self) -> None:
        self._pubsub = self.client.pubsub(ignore_subscribe_messages=False)
        self._pubsub.subscribe(self.channel)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:  # wait for the confirmation: no message may be missed after it
            message = self._pubsub.get_message(timeout=0.5)
            if message and message["type"] == "subscribe":
                break
        else:
            self._pubsub.close()
            raise TimeoutError(f"no confirmation of SUBSCRIBE {self.channel}")
        # redis-py reconnects and resubscribes on its own, silently: hook the reconnection to drop the local
        # tier, which may hold values whose invalidation was published while we were away.
        self._pubsub.connection.register_connect_callback(self._on_reconnect)
        self._thread = threading.Thread(target=self._listen, name=f"near-cache-{self.id}", daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set():
            try:
                message = self._pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
            except Exception:  # noqa: BLE001 - connection lost: messages may have been missed
                if self.clear_on_reconnect:
                    self._clear_after_drop()
                if self._stop.wait(0.1):
                    return
                continue
            if message and message["type"] == "message":
                data = message["data"]
                sender, _, key = (data.decode() if isinstance(data, bytes) else data).partition(" ")
                if sender != self.id:
                    self._drop(key)

    def _on_reconnect(self, _connection) -> None:
        with self._lock:
            self.reconnects += 1
        if self.clear_on_reconnect:
            self._clear_after_drop()

    def _clear_after_drop(self) -> None:
        with self._lock:
            self._local.clear()
            self.local_clears += 1

    def _drop(self, key: str) -> None:
        with self._lock:
            self._local.pop(key, None)
            self.invalidations += 1
            self._epoch += 1
        if self.on_invalidate is not None:
            self.on_invalidate(key)

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
            epoch = self._epoch
        for _attempt in range(3):
            raw = self.client.get(self.prefix + key)
            if raw is None:
                break
            value = json.loads(raw)
            with self._lock:
                if self._epoch == epoch:
                    self.remote_hits += 1
                    self._local[key] = value
                    return value
                # An invalidation arrived while we read: what we read may predate that write, so it must
                # not be kept. Read again; a value read after the message is at least as new as the write.
                epoch = self._epoch
        else:
            with self._lock:
                self.remote_hits += 1
            return value  # invalidations kept racing the reads: serve the value, keep no local copy
        with self._lock:
            self.misses += 1
        if self.compute is None:
            return None
        value = self.compute(key)
        with self._lock:
            self.computes += 1
        self.set(key, value)
        return value

    __call__ = get

    def set(self, key: str, value) -> None:
        """Write to Redis, keep locally, and tell the other near caches to drop their copies."""
        self.client.set(self.prefix + key, json.dumps(value, separators=(",", ":")),
                        px=max(1, int(self.ttl * 1000)))
        with self._lock:
            self._local[key] = value
        self._publish(key)

    def invalidate(self, key: str) -> None:
        """Delete on write: remove the value from Redis and from every near cache."""
        self.client.delete(self.prefix + key)
        with self._lock:
            self._local.pop(key, None)
        self._publish(key)

    def _publish(self, key: str) -> None:
        if self._pubsub is not None:
            self.client.publish(self.channel, f"{self.id} {key}")

    def cached_locally(self, key: str) -> bool:
        """Whether ``key`` is in the local tier now (and not expired by the local TTL)."""
        with self._lock:
            return key in self._local

    def clear_local(self) -> None:
        with self._lock:
            self._local.clear()

    def counters(self) -> dict[str, int]:
        return {"local_hits": self.local_hits, "remote_hits": self.remote_hits, "misses": self.misses,
                "computes": self.computes, "invalidations": self.invalidations}

    # -- lifetime
    def close(self) -> None:
        """Stop listening (idempotent). The Redis client is the caller's and stays open."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)
            self._thread = None
        if self._pubsub is not None:
            self._pubsub.close()
            self._pubsub = None

    def __enter__(self) -> NearCache:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
