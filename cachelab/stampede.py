"""Stampede protection for a hot key: no protection, a lock, XFetch, stale-while-revalidate, memcached leases.

When a hot key expires, every worker that asks for it in the next instant misses, and every one of them
recomputes the same value: the backend gets N queries instead of one, just when it is busiest (a cache
stampede, or dog-piling). Each strategy below is a class with ``get(key)``, ``put(key, value, ttl=...)``
(to prime a key) and the same counters (``hits``, ``stale_hits``, ``misses``, ``computes``, ``waits``),
plus ``last_compute_seconds``, how long the last recomputation took (under load, often far longer than the
same query on a quiet machine):

* :class:`Unprotected`: plain cache-aside, for comparison.
* :class:`LockedRecompute`: the first worker to miss takes a lock (``SET lock token NX PX ttl``) and
  recomputes; the others poll the cache until the value appears. After taking the lock the worker looks
  again, so one computation happens per expiry, as long as the holder finishes within ``lock_ttl`` (a
  slower one loses the lock, and the next worker computes too) and ``fallback_compute`` is off (a waiter
  that gives up then computes as well). The lock expires by itself if its holder dies, and is released
  with a compare-and-delete script (:data:`RELEASE_SCRIPT`) so a worker never frees a lock it no longer
  owns.
* :class:`XFetch`: probabilistic early recomputation (Vattani, Chierichetti and Lowenstein, "Optimal
  Probabilistic Cache Stampede Prevention", VLDB 2015). Each read recomputes *before* expiry with a
  probability that grows as expiry nears and with the time the computation takes (``delta``). No lock,
  no waiting, and no promise of a single refresh: every read that draws an early recomputation before the
  first one has stored its value recomputes too. That stays rare while the traffic starts before the early
  window opens (:func:`xfetch_window`) and a recomputation is short next to ``beta * delta``; after a
  refresh, the TTL must be long next to ``beta * delta`` too, or the next early window opens at once.
* :class:`StaleWhileRevalidate`: a soft TTL and a hard one. Past the soft TTL the value is stale but still
  served; the first reader to take a refresh lock recomputes in a background thread while every reader,
  itself included, gets the stale value at once. Past the hard TTL (Redis's ``PX``) the key is gone and
  readers fall back to the lock.
* :class:`MemcachedLease`: the same two ideas built into memcached 1.6's meta commands, spoken by
  :class:`MetaClient` on a raw socket. ``mg <key> v c N<ttl>`` on a miss creates an empty placeholder and
  hands a *win* flag (``W``) to exactly one client, which recomputes; the others see ``Z`` (someone else
  won) and wait. An item marked stale (``md <key> I``) is served with ``X``, and again one client wins.
  The winner stores with the placeholder's CAS (``ms <key> <size> T<ttl> C<cas>``), so a value computed
  before a write that deleted or invalidated the key meanwhile is refused: a lease against stale sets.

:func:`hammer` runs N threads against one key for a while and returns every request's latency, from the
:func:`cachelab.timing.time_calls` harness; notebook 06 runs the strategies in real worker processes
instead (:func:`cachelab.workers.run_hot_key`).
"""

from __future__ import annotations

import json
import math
import random
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from .keys import check_prefix
from .timing import time_calls

#: The lock's release, run inside Redis so that reading the owner and deleting are one atomic step: delete
#: the lock only if it still holds our token (it may have expired and been taken by another worker).
RELEASE_SCRIPT = ("if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) "
                  "else return 0 end")
_RELEASE = RELEASE_SCRIPT  # the name used before; kept for readers of older notebooks

COUNTERS = ("hits", "stale_hits", "misses", "computes", "waits")


class LockTimeout(TimeoutError):
    """A worker waited ``wait_timeout`` seconds for another worker's recomputation, in vain."""


class _Strategy:
    """What the strategies share: JSON values under a prefix, counters, the TTL."""

    def __init__(self, client, prefix: str, compute: Callable[[str], object], *, ttl: float):
        if ttl <= 0:
            raise ValueError("ttl must be positive")
        self.client = client
        self.prefix = check_prefix(prefix)
        self.compute = compute
        self.ttl = ttl
        self.hits = self.stale_hits = self.misses = self.computes = self.waits = 0
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
        with self._lock:
            return {name: getattr(self, name) for name in COUNTERS}

    def close(self) -> None:
        """Wait for work this strategy started in the background (none, except for stale-while-revalidate)."""


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
    """One recomputation per expiry: a ``SET NX PX`` lock with an owner token, a second look, waiters that poll.

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
        self._release = client.register_script(RELEASE_SCRIPT)

    def lock_key(self, key: str) -> str:
        return f"{self.prefix}lock:{key}"

    # How values are read and written: LockedRecompute stores the value itself; StaleWhileRevalidate a record.
    def _read(self, key: str):
        raw = self.client.get(self.prefix + key)
        return None if raw is None else json.loads(raw)

    def _store(self, key: str, value) -> None:
        self.client.set(self.prefix + key, json.dumps(value), px=self._px())

    def get(self, key: str):
        value = self._read(key)
        if value is not None:
            self._count("hits")
            return value
        self._count("misses")
        return self._fill_under_lock(key)

    def _fill_under_lock(self, key: str):
        """The miss path: take the lock and recompute, or wait for the worker that holds it."""
        deadline = time.monotonic() + self.wait_timeout
        token = uuid.uuid4().hex  # our name on the lock: only the holder of this token may release it
        waited = False
        while True:
            if self.client.set(self.lock_key(key), token, nx=True, px=self._px(self.lock_ttl)):
                try:
                    value = self._read(key)  # the second look: filled while we raced for the lock?
                    if value is not None:
                        return value
                    value = self._recompute(key)
                    self._store(key, value)
                    return value
                finally:
                    self._release(keys=[self.lock_key(key)], args=[token])
            if not waited:
                self._count("waits")
                waited = True
            # Someone else is recomputing: wait for the value rather than recompute it too.
            time.sleep(self.poll)
            value = self._read(key)
            if value is not None:
                return value
            if time.monotonic() > deadline:
                if self.fallback_compute:
                    value = self._recompute(key)
                    self._store(key, value)
                    return value
                raise LockTimeout(f"no value for {key!r} after waiting {self.wait_timeout}s for the lock holder")


def xfetch_should_recompute(now: float, expiry: float, delta: float, beta: float = 1.0,
                            u: float | None = None) -> bool:
    """The XFetch test: recompute when ``now - delta * beta * ln(u) >= expiry`` (``u`` uniform in (0, 1]).

    ``-ln(u)`` is exponentially distributed, so the probability of recomputing with ``r`` seconds left
    is ``exp(-r / (delta * beta))``: negligible while ``r`` is many ``delta``, certain at expiry.
    """
    u = 1.0 - random.random() if u is None else u  # random() is in [0, 1): 1 - random() is in (0, 1]
    u = max(u, 1e-300)  # a u of 0 given by a caller: ln(0) is -inf
    return now - delta * beta * math.log(u) >= expiry


def xfetch_window(delta: float, beta: float, reads_per_second: float) -> float:
    """About how long before expiry XFetch's first early recomputation comes, for a key read steadily.

    With ``reads_per_second`` reads, each recomputing with probability ``exp(-r / (beta * delta))`` when ``r``
    seconds are left (:func:`xfetch_early_probability`), the expected number of early recomputations drawn
    from long before expiry down to ``r`` is ``reads_per_second * beta * delta * exp(-r / (beta * delta))``. It
    reaches 1 at ``r = beta * delta * ln(reads_per_second * beta * delta)``, returned here (0 when the
    logarithm is negative: fewer than one read in a ``beta * delta``). The first recomputation comes before
    that point with probability ``1 - exp(-1)`` (63%), after it otherwise. Traffic that starts well before it
    covers the window; traffic that starts inside it draws several recomputations from its first reads.
    While the first recomputation runs (``d`` seconds), the reads draw about ``exp(d / (beta * delta)) - 1``
    more.
    """
    if not delta > 0 or not beta > 0 or not reads_per_second > 0:
        raise ValueError(f"delta, beta and reads_per_second must be positive, got {delta!r}, {beta!r}, "
                         f"{reads_per_second!r}")
    scale = beta * delta
    return max(0.0, scale * math.log(reads_per_second * scale))


def xfetch_early_probability(remaining: float, delta: float, beta: float = 1.0) -> float:
    """The probability that one XFetch read recomputes with ``remaining`` seconds left before expiry.

    The read recomputes when ``delta * beta * -ln(u) >= remaining`` (:func:`xfetch_should_recompute`);
    ``-ln(u)`` is exponential with mean 1, so that probability is ``exp(-remaining / (delta * beta))``,
    1 at expiry and after it.
    """
    if not delta > 0 or not beta > 0:
        raise ValueError(f"delta and beta must be positive, got delta={delta!r}, beta={beta!r}")
    return math.exp(-max(remaining, 0.0) / (delta * beta))


class XFetch(_Strategy):
    """Probabilistic early recomputation. The stored value carries ``delta`` and the logical ``expiry``.

    ``beta`` > 1 favours earlier recomputation, < 1 later; the paper shows ``beta = 1`` is optimal for
    its cost model. ``delta`` is what the last recomputation took, measured by the worker that did it, so
    it follows the load the key is under. ``clock`` (wall time, shared by processes) and ``rng`` can be
    injected for tests; ``rng`` draws from [0, 1) as ``random.random`` does, and ``u = 1 - rng()``, in
    (0, 1], is the draw the test takes, so that ``ln(u)`` is always defined.
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
                                           1.0 - self.rng()):
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

    def put(self, key: str, value, *, delta: float | None = None, ttl: float | None = None) -> None:
        """Store ``value`` with its recomputation time ``delta`` and a logical expiry ``ttl`` from now.

        Without ``delta``, the duration of this strategy's last recomputation is used.
        """
        if delta is None:
            if self.last_compute_seconds is None:
                raise ValueError("give delta, the time a recomputation takes (none has been timed yet)")
            delta = self.last_compute_seconds
        ttl = self.ttl if ttl is None else ttl
        record = {"value": value, "delta": delta, "expiry": self.clock() + ttl}
        self.client.set(self.prefix + key, json.dumps(record), px=self._px(ttl))

    def counters(self) -> dict[str, int]:
        with self._lock:
            early = self.early
        return {**super().counters(), "early": early}


class StaleWhileRevalidate(LockedRecompute):
    """A soft TTL (``ttl``) and a hard one (``ttl + stale_ttl``): stale values are served while one reader refreshes.

    The stored record is ``{"value": ..., "fresh_until": <wall time>}`` with ``PX`` set to the hard TTL.
    A read before ``fresh_until`` is a hit. A read after it is a *stale hit*: the value is returned at once,
    and the first reader to take the refresh lock (``SET NX PX lock_ttl`` with an owner token, released by
    compare-and-delete) and still find the value stale once it holds the lock recomputes, in a background
    thread when ``background`` is true (its own request is served stale too), inline otherwise. A read after
    the hard TTL finds nothing and takes the miss path of :class:`LockedRecompute`. ``stale_ttl`` bounds how
    old a served value can be: keep it short enough that a value that old is still acceptable.
    """

    def __init__(self, client, prefix: str, compute: Callable[[str], object], *, ttl: float, stale_ttl: float,
                 background: bool = True, clock: Callable[[], float] = time.time, **lock_options):
        super().__init__(client, prefix, compute, ttl=ttl, **lock_options)
        if stale_ttl <= 0:
            raise ValueError("stale_ttl must be positive")
        self.stale_ttl, self.background, self.clock = stale_ttl, background, clock
        self.refreshes = 0
        self._threads: list[threading.Thread] = []

    def refresh_key(self, key: str) -> str:
        return f"{self.prefix}refresh:{key}"

    def _record(self, key: str):
        raw = self.client.get(self.prefix + key)
        return None if raw is None else json.loads(raw)

    def _read(self, key: str):  # the miss path waits for any value, fresh or stale
        record = self._record(key)
        return None if record is None else record["value"]

    def _store(self, key: str, value, ttl: float | None = None) -> None:
        ttl = self.ttl if ttl is None else ttl
        record = {"value": value, "fresh_until": self.clock() + ttl}
        self.client.set(self.prefix + key, json.dumps(record), px=self._px(ttl + self.stale_ttl))

    def put(self, key: str, value, ttl: float | None = None) -> None:
        """Store a value, fresh for ``ttl`` (the soft TTL by default), then stale for ``stale_ttl``."""
        self._store(key, value, ttl)

    def get(self, key: str):
        record = self._record(key)
        if record is None:
            self._count("misses")
            return self._fill_under_lock(key)
        if self.clock() < record["fresh_until"]:
            self._count("hits")
            return record["value"]
        self._count("stale_hits")
        token = uuid.uuid4().hex
        if self.client.set(self.refresh_key(key), token, nx=True, px=self._px(self.lock_ttl)):
            # The second look: between our read and our lock, another reader may have refreshed the value
            # and released its lock. Its store came before its release, so a read after our lock sees it.
            current = self._record(key)
            if current is not None and self.clock() < current["fresh_until"]:
                self._release(keys=[self.refresh_key(key)], args=[token])
                return record["value"]
            self._count("refreshes")
            if self.background:
                thread = threading.Thread(target=self._refresh, args=(key, token), daemon=True,
                                          name=f"refresh-{key}")
                self._threads.append(thread)
                thread.start()
            else:
                self._refresh(key, token)
        return record["value"]

    def _refresh(self, key: str, token: str) -> None:
        try:
            self._store(key, self._recompute(key))
        finally:
            self._release(keys=[self.refresh_key(key)], args=[token])

    def counters(self) -> dict[str, int]:
        with self._lock:
            refreshes = self.refreshes
        return {**super().counters(), "refreshes": refreshes}

    def close(self, timeout: float = 10.0) -> None:
        """Wait for the background refreshes this instance started."""
        for thread in self._threads:
            thread.join(timeout)
        self._threads = [t for t in self._threads if t.is_alive()]


# --------------------------------------------------------------------------- memcached's meta commands

class MetaError(RuntimeError):
    """memcached answered a meta command with ``ERROR``, ``CLIENT_ERROR`` or ``SERVER_ERROR``."""


@dataclass(frozen=True)
class MetaReply:
    """A meta command's reply: the return code (``VA``, ``HD``, ``EN``, ``NS``, ``NF``...), its flags, the value.

    ``flags`` maps each returned flag to its token: ``{"W": "", "t": "3"}`` for ``W t3``.
    """

    code: str
    flags: dict = field(default_factory=dict)
    value: bytes | None = None

    @property
    def won(self) -> bool:
        """``W``: this client won the right to recompute the item (on a miss with ``N``, or on a stale item)."""
        return "W" in self.flags

    @property
    def stale(self) -> bool:
        """``X``: the item was marked stale (``md <key> I``)."""
        return "X" in self.flags

    @property
    def lost(self) -> bool:
        """``Z``: another client already received the win flag and is recomputing."""
        return "Z" in self.flags


class MetaClient:
    """memcached's meta protocol (``mg``, ``ms``, ``md``) on one connection, with timeouts.

    pymemcache 4.0 has no meta-command API, and its ``raw_command`` reads a reply up to an end token, while
    a meta reply with a value is framed by its length (``VA <size> <flags>`` then ``<size>`` bytes). So this
    class speaks the protocol itself, as described in memcached's ``doc/protocol.txt`` (1.6): one command
    line, an optional data block, one reply line, and for ``VA`` a data block of the announced size.
    Not thread-safe: one instance per thread or process.

    With ``written_prefix`` (a ``cachelab:`` prefix), every key under it that this client stores (``ms``) or
    creates (``mg`` with ``N``, a placeholder) is written down for cleanup (:mod:`cachelab.servers.written`),
    as the series' pymemcache clients do: on a memcached of the user's own, a cleanup deletes those keys by
    name instead of leaving them until their TTL.
    """

    def __init__(self, address: tuple[str, int], *, connect_timeout: float = 1.0, timeout: float = 2.0,
                 written_prefix: str | None = None):
        self.address = (str(address[0]), int(address[1]))
        self.connect_timeout, self.timeout = connect_timeout, timeout
        self.written_prefix = None if written_prefix is None else check_prefix(written_prefix)
        self._sock: socket.socket | None = None
        self._buf = b""

    def _write_down(self, key: str) -> None:
        if self.written_prefix is not None and key.startswith(self.written_prefix):
            from .servers import written

            written.ledger(self.written_prefix).add(key)

    def _connect(self) -> socket.socket:
        if self._sock is None:
            sock = socket.create_connection(self.address, timeout=self.connect_timeout)
            sock.settimeout(self.timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._sock, self._buf = sock, b""
        return self._sock

    def _fill(self, sock: socket.socket) -> None:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"memcached at {self.address[0]}:{self.address[1]} closed the connection")
        self._buf += chunk

    def _line(self, sock: socket.socket) -> bytes:
        while b"\r\n" not in self._buf:
            self._fill(sock)
        line, self._buf = self._buf.split(b"\r\n", 1)
        return line

    def _exactly(self, sock: socket.socket, n: int) -> bytes:
        while len(self._buf) < n:
            self._fill(sock)
        data, self._buf = self._buf[:n], self._buf[n:]
        return data

    def command(self, line: str, data: bytes | None = None) -> MetaReply:
        """Send one meta command (``"mg key v t"``, or ``"ms key 5 T30"`` with ``data``) and read its reply."""
        if "\r" in line or "\n" in line:
            raise ValueError("a meta command is one line")
        request = line.encode() + b"\r\n" + (b"" if data is None else bytes(data) + b"\r\n")
        try:
            sock = self._connect()
            sock.sendall(request)
            header = self._line(sock).split()
            if not header:
                raise MetaError("empty reply")
            code = header[0].decode()
            if code in ("ERROR", "CLIENT_ERROR", "SERVER_ERROR"):
                raise MetaError(b" ".join(header).decode())
            value = None
            tokens = header[1:]
            if code == "VA":
                size, tokens = int(tokens[0]), tokens[1:]
                value = self._exactly(sock, size + 2)[:-2]
            flags = {t[:1].decode(): t[1:].decode() for t in tokens}
            return MetaReply(code, flags, value)
        except BaseException:
            self.close()  # a half-read reply would poison the next command
            raise

    def get(self, key: str, flags: str = "v") -> MetaReply:
        if any(token.startswith("N") for token in flags.split()):  # on a miss, mg ... N creates the item
            self._write_down(key)
        return self.command(f"mg {key} {flags}".rstrip())

    def set(self, key: str, data: bytes, ttl: int, flags: str = "") -> MetaReply:
        self._write_down(key)
        return self.command(f"ms {key} {len(data)} T{int(ttl)} {flags}".rstrip(), data)

    def delete(self, key: str, flags: str = "") -> MetaReply:
        return self.command(f"md {key} {flags}".rstrip())

    def close(self) -> None:
        if self._sock is not None:
            try:
                self._sock.close()
            finally:
                self._sock, self._buf = None, b""


class MemcachedLease(_Strategy):
    """Stampede protection and stale-while-revalidate done by memcached itself, with its meta commands.

    ``get`` sends ``mg <key> v c N<lease_ttl>`` (``mg <key> v`` with ``lease=False``: plain cache-aside,
    for comparison):

    * a hit returns the value;
    * a miss creates an empty placeholder that lives ``lease_ttl`` seconds and returns ``W`` to exactly one
      client, which recomputes and stores with the placeholder's CAS (``ms <key> <size> T<ttl> C<cas>``);
      the others get the placeholder with ``Z`` and poll until the value is there (if the winner dies, the
      placeholder expires and the next reader wins);
    * a write that deletes the key (``md``) or marks it stale while the winner computes changes what the
      winner's CAS names: memcached answers its set ``NF`` or ``EX`` and stores nothing, so a value read
      before the write never lands after it (Nishtala et al., NSDI 2013, section 3.2.1: leases against
      stale sets). The winner still returns its value to its caller; :attr:`refused_sets` counts them;
    * an item marked stale by :meth:`mark_stale` (``md <key> I T<stale_ttl>``) comes back with ``X``, and
      again ``W`` to one client only: that one recomputes (in a background thread when ``background``),
      every other reader is served the stale value at once, marked ``Z``.

    ``client`` is a :class:`MetaClient` for the node that holds the key. memcached counts TTLs in whole
    seconds. Values are JSON. The stale winner's request counts as a compute (``background=False``) or a
    stale hit (``background=True``).
    """

    def __init__(self, client: MetaClient, prefix: str, compute: Callable[[str], object], *, ttl: int,
                 lease_ttl: int = 5, stale_ttl: int = 30, poll: float = 0.005, wait_timeout: float = 5.0,
                 background: bool = False, lease: bool = True):
        super().__init__(client, prefix, compute, ttl=ttl)
        if min(lease_ttl, stale_ttl) < 1 or int(ttl) != ttl:
            raise ValueError("memcached TTLs are whole seconds: ttl, lease_ttl and stale_ttl at least 1")
        self.lease_ttl, self.stale_ttl, self.poll, self.wait_timeout = lease_ttl, stale_ttl, poll, wait_timeout
        self.background, self.lease = background, lease
        self.refused_sets = 0  # sets refused because the key was deleted or invalidated since the lease
        self._threads: list[threading.Thread] = []

    def get(self, key: str):
        full = self.prefix + key
        deadline = time.monotonic() + self.wait_timeout
        waited = False
        while True:
            reply = self.client.get(full, f"v c N{self.lease_ttl}" if self.lease else "v")
            cas = reply.flags.get("c") or None  # the lease: the placeholder's (or the stale item's) CAS
            has_value = bool(reply.value)  # the placeholder of a miss has 0 bytes
            if reply.code == "EN":  # a miss, without a lease (lease=False): everyone computes
                self._count("misses")
                value = self._recompute(key)
                self._set(full, value)
                return value
            if reply.won:
                if not has_value:  # a miss, and the lease is ours
                    self._count("misses")
                    value = self._recompute(key)
                    self._set(full, value, cas=cas)
                    return value
                if self.background:  # stale, and ours to recompute: serve it, refresh behind
                    self._count("stale_hits")
                    thread = threading.Thread(target=self._refresh, args=(key, cas), daemon=True)
                    self._threads.append(thread)
                    thread.start()
                    return json.loads(reply.value)
                value = self._recompute(key)
                self._set(full, value, cas=cas)
                return value
            if has_value:
                self._count("stale_hits" if reply.stale else "hits")
                return json.loads(reply.value)
            if not waited:  # Z on an empty placeholder: another client holds the lease
                self._count("misses")
                self._count("waits")
                waited = True
            if time.monotonic() > deadline:
                raise LockTimeout(f"no value for {key!r} after waiting {self.wait_timeout}s for the lease holder")
            time.sleep(self.poll)

    def _refresh(self, key: str, cas: str | None = None) -> None:
        self._set(self.prefix + key, self._recompute(key), cas=cas, own_connection=True)

    def _set(self, full: str, value, *, cas: str | None = None, own_connection: bool = False) -> None:
        data = json.dumps(value, separators=(",", ":")).encode()
        flags = f"C{cas}" if cas else ""  # with the lease's CAS: refused if the key changed since
        if own_connection:  # a background thread must not share the caller's socket
            other = MetaClient(self.client.address, connect_timeout=self.client.connect_timeout,
                               timeout=self.client.timeout, written_prefix=self.client.written_prefix)
            try:
                reply = other.set(full, data, int(self.ttl), flags)
            finally:
                other.close()
        else:
            reply = self.client.set(full, data, int(self.ttl), flags)
        if reply.code in ("EX", "NF"):
            with self._lock:
                self.refused_sets += 1

    def put(self, key: str, value, ttl: int | None = None) -> None:
        data = json.dumps(value, separators=(",", ":")).encode()
        self.client.set(self.prefix + key, data, int(self.ttl if ttl is None else ttl))

    def mark_stale(self, key: str) -> MetaReply:
        """Invalidate without deleting: the value stays, marked stale, for ``stale_ttl`` more seconds."""
        return self.client.delete(self.prefix + key, f"I T{self.stale_ttl}")

    def close(self, timeout: float = 10.0) -> None:
        for thread in self._threads:
            thread.join(timeout)
        self._threads = [t for t in self._threads if t.is_alive()]


#: The strategies by the names the notebooks and the worker processes use.
STRATEGIES = {"unprotected": Unprotected, "lock": LockedRecompute, "xfetch": XFetch,
              "stale-while-revalidate": StaleWhileRevalidate, "memcached lease": MemcachedLease}


# --------------------------------------------------------------------------- the experiment, with threads

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
    and ends that worker's run. Threads share one process (and its GIL): for latencies, use worker
    processes (:func:`cachelab.workers.run_hot_key`).
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
