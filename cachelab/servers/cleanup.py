"""Prefix-scoped cleanup: delete this project's keys under one prefix, and nothing else, on any server.

Redis: ``SCAN MATCH <prefix>*`` and ``UNLINK`` (never ``KEYS``, never ``FLUSHALL``). memcached has no key
listing command in its protocol, but ``lru_crawler metadump`` (memcached 1.4.31+) lists the keys a
node holds; each one under the prefix is deleted by name (never ``flush_all``).
"""

from __future__ import annotations

import random
import re
import socket
import time
import urllib.parse

from ..keys import check_prefix
from . import config

MEMCACHED_DUMPS = 4
_REFUSED = re.compile(rb"(BUSY|BADCLASS|ERROR|CLIENT_ERROR|SERVER_ERROR)[^\n]*\r\n")  # one line, not a dump


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\^" else c for c in text)


def cleanup_redis(client, prefix: str, batch: int = 500) -> int:
    """``SCAN MATCH prefix*`` + ``UNLINK``: delete this prefix's keys only. Returns how many."""
    check_prefix(prefix)
    if not hasattr(client, "scan_iter"):
        raise TypeError(f"client must be a redis.Redis client, not {type(client).__name__}")
    deleted, pending = 0, []
    for key in client.scan_iter(match=_glob_escape(prefix) + "*", count=1000):
        pending.append(key)
        if len(pending) >= batch:
            deleted += client.unlink(*pending)
            pending.clear()
    if pending:
        deleted += client.unlink(*pending)
    return deleted


def _metadump(node: tuple[str, int], mode: str, timeout: float) -> bytes:
    """The raw reply of ``lru_crawler metadump <mode>``; a busy crawler (another client's dump) is waited for."""
    deadline = time.monotonic() + 10 * timeout
    while True:
        buffer = b""
        with socket.create_connection(node, timeout=config.CONNECT_TIMEOUT) as sock:
            sock.settimeout(timeout)
            sock.sendall(f"lru_crawler metadump {mode}\r\n".encode())
            while not (buffer.endswith(b"END\r\n") or _REFUSED.fullmatch(buffer)):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"metadump on {node} did not finish")
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buffer += chunk
        # one crawler per server: in a room whose kernels all start at once, the others' dumps come first
        if not buffer.startswith(b"BUSY") or time.monotonic() > deadline:
            return buffer
        time.sleep(random.uniform(0.02, 0.1))


def memcached_keys(node: tuple[str, int], timeout: float | None = None) -> list[str]:
    """Every key on one memcached node, from ``lru_crawler metadump`` (memcached 1.4.31+).

    ``metadump hash`` walks the hash table, so it sees every item once (memcached 1.6.x releases that
    have it; older ones answer ``BADCLASS`` and get ``metadump all``). ``metadump all`` walks the LRUs
    while the server keeps using them, and misses items that move meanwhile: seen here, an item read a
    moment before the dump, waiting to be moved to another LRU, is skipped by it. A cleanup dumps more
    than once (:func:`cleanup_memcached`).
    """
    node = tuple(node)
    timeout = config.SOCKET_TIMEOUT if timeout is None else timeout
    buffer = _metadump(node, "hash", timeout)
    if not buffer.endswith(b"END\r\n"):
        buffer = _metadump(node, "all", timeout)
    if not buffer.endswith(b"END\r\n"):
        raise RuntimeError(f"memcached {node} refused metadump: {buffer[:80]!r}")
    keys = []
    for line in buffer.decode("ascii", "replace").splitlines():
        if line.startswith("key="):
            keys.append(urllib.parse.unquote(line.split(" ", 1)[0][4:]))
    return keys


def cleanup_memcached(node: tuple[str, int], prefix: str) -> int:
    """Delete this prefix's keys on one memcached node, found by metadump; nothing else is touched.

    It dumps the keys again after deleting, until a dump finds none of the prefix's keys (at most
    :data:`MEMCACHED_DUMPS` dumps): one dump can skip an item (see :func:`memcached_keys`).
    """
    from pymemcache.client.base import Client

    check_prefix(prefix)
    node = tuple(node)
    deleted, client = 0, None
    try:
        for dump in range(MEMCACHED_DUMPS):  # a second dump catches the items the first one skipped
            targets = [k for k in memcached_keys(node) if k.startswith(prefix)]
            if not targets and dump > 0:
                break
            if targets and client is None:
                client = Client(node, connect_timeout=config.CONNECT_TIMEOUT, timeout=config.SOCKET_TIMEOUT)
            deleted += sum(bool(client.delete(k, noreply=False)) for k in targets)
    finally:
        if client is not None:
            client.close()
    return deleted


