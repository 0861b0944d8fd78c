"""Prefix-scoped cleanup: delete this project's keys under one prefix, and nothing else, on any server.

Redis: ``SCAN MATCH <prefix>*`` and ``UNLINK`` (never ``KEYS``, never ``FLUSHALL``).

memcached has no key listing command in its protocol, and never gets ``flush_all`` from here. Two ways:

* On the project's own servers (``make servers``, docker compose, private ones: a few thousand items),
  :func:`cleanup_memcached`: ``lru_crawler metadump`` (memcached 1.4.31+) lists every key a node holds, and
  each one under the prefix is deleted by name. That walk visits every item of the node.
* On a memcached of the user's own (``MEMCACHED_SERVERS``), which may be a production node with millions of
  items, :func:`cleanup_written`: no walk, no listing. Every key the project's clients store is written down
  as it is stored (:mod:`.written`), and exactly those keys are deleted, by name, on each node.
  :meth:`cachelab.servers.Servers.cleanup` chooses between the two by where the servers came from.
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

    This walks every item the node holds: meant for the project's own servers, never for a production node
    (:func:`cleanup_written` deletes what the project wrote without it).

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




def _valid_key(key: bytes) -> bool:
    return 0 < len(key) <= 250 and not any(c <= 32 or c == 127 for c in key)


def delete_keys(node: tuple[str, int], keys, batch: int = 500) -> int:
    """Delete ``keys`` (full keys) on one node by name, ``batch`` commands sent at once; how many it held."""
    node = tuple(node)
    wanted = [k.encode() if isinstance(k, str) else bytes(k) for k in keys]
    wanted = [k for k in wanted if _valid_key(k)]
    deleted = 0
    with socket.create_connection(node, timeout=config.CONNECT_TIMEOUT) as sock:
        sock.settimeout(config.SOCKET_TIMEOUT)
        buffer = b""
        for start in range(0, len(wanted), batch):
            chunk = wanted[start:start + batch]
            sock.sendall(b"".join(b"delete " + k + b"\r\n" for k in chunk))
            replies = 0
            while replies < len(chunk):
                while b"\r\n" not in buffer:
                    data = sock.recv(65536)
                    if not data:
                        raise ConnectionError(f"memcached {node} closed the connection during a cleanup")
                    buffer += data
                line, buffer = buffer.split(b"\r\n", 1)
                if line not in (b"DELETED", b"NOT_FOUND"):
                    raise RuntimeError(f"memcached {node} answered {line[:80]!r} to a delete")
                deleted += line == b"DELETED"
                replies += 1
    return deleted


def cleanup_written(nodes, prefix: str) -> int:
    """Delete on each node the keys the project wrote down under ``prefix`` (:mod:`.written`), and no other.

    No ``lru_crawler metadump``: nothing walks or lists the node's keys, so this is the cleanup for a memcached
    of the user's own. A key is deleted on every node (a failover may have written it on another node than its
    home). The ledgers are removed once every node answered. Returns how many items were deleted.
    """
    from . import written

    check_prefix(prefix)
    ledgers = written.written_under(prefix)
    keys = sorted({k for found in ledgers.values() for k in found})
    deleted = sum(delete_keys(node, keys) for node in nodes) if keys else 0
    written.forget_written(ledgers)
    return deleted
