"""Prefix-scoped cleanup: delete this project's keys under one prefix, and nothing else, on any server.

Redis: ``SCAN MATCH <prefix>*`` and ``UNLINK`` (never ``KEYS``, never ``FLUSHALL``). memcached has no key
listing command in its protocol, but ``lru_crawler metadump all`` (memcached 1.4.31+) lists the keys a
node holds; each one under the prefix is deleted by name (never ``flush_all``).
"""

from __future__ import annotations

import socket
import time
import urllib.parse

from ..keys import check_prefix
from . import config


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


def memcached_keys(node: tuple[str, int], timeout: float | None = None) -> list[str]:
    """Every key on one memcached node, from ``lru_crawler metadump all`` (memcached 1.4.31+)."""
    node = tuple(node)
    timeout = config.SOCKET_TIMEOUT if timeout is None else timeout
    keys, buffer = [], b""
    with socket.create_connection(node, timeout=config.CONNECT_TIMEOUT) as sock:
        sock.settimeout(timeout)
        sock.sendall(b"lru_crawler metadump all\r\n")
        deadline = time.monotonic() + 10 * timeout
        while not (buffer.endswith(b"END\r\n") or buffer.startswith(b"ERROR") or b"BUSY" in buffer[:20]):
            if time.monotonic() > deadline:
                raise TimeoutError(f"metadump on {node} did not finish")
            chunk = sock.recv(65536)
            if not chunk:
                break
            buffer += chunk
    if not buffer.endswith(b"END\r\n"):
        raise RuntimeError(f"memcached {node} refused metadump: {buffer[:80]!r}")
    for line in buffer.decode("ascii", "replace").splitlines():
        if line.startswith("key="):
            keys.append(urllib.parse.unquote(line.split(" ", 1)[0][4:]))
    return keys


def cleanup_memcached(node: tuple[str, int], prefix: str) -> int:
    """Delete this prefix's keys on one memcached node, found by metadump; nothing else is touched."""
    from pymemcache.client.base import Client

    check_prefix(prefix)
    node = tuple(node)
    targets = [k for k in memcached_keys(node) if k.startswith(prefix)]
    if not targets:
        return 0
    client = Client(node, connect_timeout=config.CONNECT_TIMEOUT, timeout=config.SOCKET_TIMEOUT)
    try:
        return sum(bool(client.delete(k, noreply=False)) for k in targets)
    finally:
        client.close()


