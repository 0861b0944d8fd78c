"""The floors: a hand-written request on a plain TCP socket, and ``redis-benchmark -c 1``, the C client that
ships with Redis. No client library can answer faster than these, over the same connection and CPUs."""

from __future__ import annotations

import shutil
import socket
import subprocess
import urllib.parse
from collections.abc import Callable

from ..timing import Timing, from_samples
from .report import REDIS_BENCHMARK


def resp_command(*parts: str | bytes) -> bytes:
    """A Redis command in RESP, the wire format: ``resp_command("GET", "k")`` is ``*2\\r\\n$3\\r\\nGET...``."""
    if not parts:
        raise ValueError("a command needs at least its name")
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        if isinstance(part, str):
            part = part.encode()
        if not isinstance(part, bytes):
            raise TypeError(f"command parts are str or bytes, not {type(part).__name__}")
        out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)


class RawRoundTrip:
    """One TCP connection (``TCP_NODELAY``) that sends a fixed request and reads its fixed-size reply.

    The least any client can do for a GET: no parsing beyond counting bytes, no objects built. The
    first exchange learns the reply's length (``complete`` says when a reply is whole); every later one
    reads exactly that many bytes.
    """

    def __init__(self, host: str, port: int, request: bytes, complete: Callable[[bytes], bool],
                 *, timeout: float = 2.0):
        sock = socket.create_connection((host, port), timeout=timeout)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._start(sock, request, complete, owned=True)

    @classmethod
    def over(cls, sock: socket.socket, request: bytes, complete: Callable[[bytes], bool]) -> RawRoundTrip:
        """The same, down a socket someone else opened and keeps: a client library's own connection.

        The floor then reaches the server exactly as that client does: through the same connection, so
        (for memcached) the same worker thread. Each exchange reads its whole reply, so the connection
        stays in step for the client; :meth:`close` leaves the socket open for its owner.
        """
        if not isinstance(sock, socket.socket):
            raise TypeError(f"sock must be a connected socket, not {type(sock).__name__}")
        trip = cls.__new__(cls)
        trip._start(sock, request, complete, owned=False)
        return trip

    def _start(self, sock: socket.socket, request: bytes, complete: Callable[[bytes], bool], *, owned: bool) -> None:
        self.sock, self._owned = sock, owned
        self.request = request
        try:
            self.reply = self._exchange_until(request, complete)
        except BaseException:
            self.close()
            raise
        self._buffer = bytearray(len(self.reply))
        self._view = memoryview(self._buffer)

    def _exchange_until(self, request: bytes, complete: Callable[[bytes], bool]) -> bytes:
        self.sock.sendall(request)
        data = b""
        while not complete(data):
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            data += chunk
        return data

    def command(self, request: bytes, complete: Callable[[bytes], bool]) -> bytes:
        """Send another request (AUTH, SELECT...) and return its whole reply."""
        return self._exchange_until(request, complete)

    def __call__(self) -> None:
        """One round trip: send the request, read the reply's bytes."""
        sock, view, size = self.sock, self._view, len(self._buffer)
        sock.sendall(self.request)
        got = 0
        while got < size:
            n = sock.recv_into(view[got:])
            if not n:
                raise ConnectionError("the server closed the connection")
            got += n

    def close(self) -> None:
        """Close the connection if this object opened it (one given to :meth:`over` stays open)."""
        if self._owned:
            self.sock.close()


def _resp_line_complete(data: bytes) -> bool:
    return data.endswith(b"\r\n")


def _resp_bulk_complete(data: bytes) -> bool:
    head, sep, rest = data.partition(b"\r\n")
    if not sep:
        return False
    if not head.startswith(b"$"):
        return True  # an error or a simple string: one line
    size = int(head[1:])
    return size < 0 or len(rest) >= size + 2


def _memcached_get_complete(data: bytes) -> bool:
    return data.endswith(b"END\r\n") or data.startswith((b"ERROR", b"CLIENT_ERROR", b"SERVER_ERROR"))


def raw_redis_get(url: str, key: str, *, timeout: float = 2.0) -> RawRoundTrip:
    """A :class:`RawRoundTrip` doing ``GET key`` on the Redis at ``url`` (after AUTH and SELECT).

    A connection of its own is the same placement as a client's: Redis runs every command of every
    connection on its one main thread (``io-threads`` is 1 by default, and even with I/O threads the
    commands run on the main thread).
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "redis":
        raise ValueError(f"a raw socket speaks plain redis:// only, not {parts.scheme}://")
    probe = RawRoundTrip(parts.hostname, parts.port or 6379, resp_command("PING"), _resp_line_complete,
                         timeout=timeout)
    try:
        if parts.password:
            auth = [urllib.parse.unquote(parts.password)]
            if parts.username:
                auth.insert(0, urllib.parse.unquote(parts.username))
            reply = probe.command(resp_command("AUTH", *auth), _resp_line_complete)
            if not reply.startswith(b"+OK"):
                raise ConnectionError(f"AUTH was refused: {reply[:60]!r}")
        db = parts.path.strip("/") or "0"
        if db != "0":
            probe.command(resp_command("SELECT", db), _resp_line_complete)
        probe.request = resp_command("GET", key)
        probe.reply = probe.command(probe.request, _resp_bulk_complete)
        if not probe.reply.startswith(b"$") or probe.reply.startswith(b"$-1"):
            raise ConnectionError(f"GET {key} returned {probe.reply[:60]!r}")
        probe._buffer = bytearray(len(probe.reply))
        probe._view = memoryview(probe._buffer)
        return probe
    except BaseException:
        probe.close()
        raise


def raw_memcached_get(node: tuple[str, int], key: str, *, timeout: float = 2.0,
                      over: socket.socket | None = None) -> RawRoundTrip:
    """A :class:`RawRoundTrip` doing ``get key`` on one memcached node.

    ``over``: a socket already connected to that node to send it down, such as a pymemcache ``Client``'s
    ``sock``. memcached hands each new connection to its next worker thread in turn (``-t`` threads,
    round robin: ``select_thread_round_robin`` in its ``thread.c``), and that thread serves the connection
    for its whole life; a floor on a connection of its own may be served by another thread, on another CPU.
    """
    request = f"get {key}\r\n".encode()
    if over is None:
        trip = RawRoundTrip(node[0], node[1], request, _memcached_get_complete, timeout=timeout)
    else:
        trip = RawRoundTrip.over(over, request, _memcached_get_complete)
    if not trip.reply.startswith(b"VALUE "):
        trip.close()
        raise ConnectionError(f"get {key} returned {trip.reply[:60]!r}")
    return trip


def redis_benchmark_get(url: str, key: str, *, requests: int, runs: int, timeout: float = 120.0) -> Timing:
    """Per-request time of ``redis-benchmark -c 1 -n requests GET key``, one sample per run.

    With one connection each request waits for the previous reply, so ``1 / requests-per-second`` is
    the time of one round trip as Redis's own C client sees it. Started from this process, it runs where
    this process may run: a child inherits its parent's CPU affinity, and keeps it across ``execve``
    (``sched_setaffinity(2)``), so with the client pinned, ``redis-benchmark`` runs on the client's CPU.
    """
    exe = shutil.which("redis-benchmark")
    if exe is None:
        raise FileNotFoundError("redis-benchmark is not on PATH (apt install redis-tools, or brew install redis)")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "redis":
        raise ValueError(f"redis-benchmark is run here over plain redis:// only, not {parts.scheme}://")
    cmd = [exe, "-h", parts.hostname, "-p", str(parts.port or 6379), "-c", "1", "-n", str(requests), "--csv"]
    if parts.password:
        # redis-benchmark reads the password from its command line only (it ignores REDISCLI_AUTH).
        cmd += ["-a", urllib.parse.unquote(parts.password)]
        if parts.username:
            cmd += ["--user", urllib.parse.unquote(parts.username)]
    db = parts.path.strip("/") or "0"
    if db != "0":
        cmd += ["--dbnum", db]
    cmd += ["GET", key]
    samples = []
    for _ in range(runs):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        lines = [line for line in proc.stdout.splitlines() if line.startswith('"GET')]
        if proc.returncode != 0 or not lines:
            message = (proc.stderr + proc.stdout).replace(parts.password or "\0", "***").strip()
            raise RuntimeError(f"redis-benchmark failed (exit {proc.returncode}): {message[-300:]}")
        rps = float(lines[-1].split('","')[1].strip('"'))
        samples.append(1e9 / rps)
    return from_samples(REDIS_BENCHMARK, samples, requests=requests)


def redis_benchmark_version() -> str | None:
    """``redis-benchmark --version``, or ``None`` when it is not installed."""
    exe = shutil.which("redis-benchmark")
    if exe is None:
        return None
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10).stdout
    return out.strip() or None

