"""Clients with the project's settings: connect and socket timeouts, bounded retries, key prefixes, JSON.

Every Redis and memcached client the package makes comes from here, so that none of them can wait
forever on a dead server or read a pickle someone else wrote.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from .. import arguments
from ..keys import check_prefix
from . import config
from .written import RecordingSerde


def redis_client_for(url: str, *, decode_responses: bool = True, retries: int = 1, **kwargs):
    """A ``redis.Redis`` for ``url`` with the project's connect/socket timeouts and a short bounded retry."""
    arguments.integer("retries", retries, minimum=0)
    import redis
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry

    options = dict(
        socket_connect_timeout=config.CONNECT_TIMEOUT,
        socket_timeout=config.SOCKET_TIMEOUT,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries),
        decode_responses=decode_responses,
        health_check_interval=30,
    )
    options.update(kwargs)
    return redis.Redis.from_url(url, **options)


def memcached_client_for(nodes: Sequence[tuple[str, int]], prefix: str, *, serde=None, **kwargs):
    """A pymemcache ``HashClient`` over ``nodes`` (rendezvous hashing), JSON by default.

    Every key is written under ``prefix`` (pymemcache's ``key_prefix``), so cleanup can find them, and is
    written down on disk as it is stored (:class:`.written.RecordingSerde`), so that a cleanup on a memcached
    of the user's own deletes those keys by name instead of walking the node.
    A node that dies or stops answering costs misses, not errors (``ignore_exc=True``): a read
    returns ``None`` and a write is dropped, the node is retried once, then left out for
    ``dead_timeout`` seconds while its keys go to the other nodes. A cache is an optimisation; its
    outage must not become the application's. Pass ``ignore_exc=False`` to see the errors.
    ``no_delay=True`` turns Nagle's algorithm off: without it, a ``get`` sent right after a
    ``noreply`` ``set`` waits for the server's delayed ACK, tens of milliseconds on Linux.
    """
    from pymemcache.client.hash import HashClient

    check_prefix(prefix)
    nodes = [arguments.node("each node", tuple(node) if isinstance(node, list) else node) for node in nodes]
    if not nodes:
        raise ValueError("memcached_client_for needs at least one (host, port) node")
    options = dict(connect_timeout=config.CONNECT_TIMEOUT, timeout=config.SOCKET_TIMEOUT,
                   serde=RecordingSerde(serde or JsonSerde(), prefix), key_prefix=prefix.encode(),
                   retry_attempts=1, retry_timeout=0.5,
                   dead_timeout=5, ignore_exc=True, no_delay=True)
    options.update(kwargs)
    return HashClient(nodes, **options)


def memcached_node_client(node: tuple[str, int], prefix: str, *, serde=None, **kwargs):
    """A plain pymemcache ``Client`` for one node, with the same timeouts, prefix and serde."""
    from pymemcache.client.base import Client

    check_prefix(prefix)
    options = dict(connect_timeout=config.CONNECT_TIMEOUT, timeout=config.SOCKET_TIMEOUT,
                   serde=RecordingSerde(serde or JsonSerde(), prefix), key_prefix=prefix.encode(), no_delay=True)
    options.update(kwargs)
    return Client(tuple(node), **options)


class JsonSerde:
    """pymemcache serde that stores JSON: safe to read back from a cache others can write to.

    The pickle serde would run code chosen by anyone who can write to the cache (the class of bug
    behind CVE-2021-33026 in Flask-Caching), so the project never uses it by default.

    memcached keeps a number beside each value, its *flags*, for the client to decode it by. pymemcache's
    own serde (``pymemcache.serde``, after python-memcache) gives each bit a meaning: 1 a pickle, 2 an int,
    4 a long, 8 compressed, 16 text, and 0 raw bytes. So this serde writes raw bytes with :attr:`BYTES`
    (0, which every client reads as bytes) and JSON with :attr:`JSON` (``1 << 8``, a bit no serde of those
    uses): a client with the pickle serde reads the project's JSON as bytes, and never unpickles it or
    ``int()``-s it. It reads :attr:`OLD_JSON` (2) as JSON too, the flag the project stored JSON with before,
    so the values of an older run still read. It refuses every other flag with a ``ValueError``: a pickle's
    (1) among them, which is also the flag an older run stored raw bytes with, so such a value is refused,
    never misread (a ``HashClient`` with ``ignore_exc=True`` turns the refusal into a miss).
    """

    BYTES = 0
    JSON = 1 << 8
    OLD_JSON = 1 << 1

    def serialize(self, key, value):
        if isinstance(value, bytes):
            return value, self.BYTES
        return json.dumps(value, separators=(",", ":")).encode(), self.JSON

    def deserialize(self, key, value, flags):
        if flags == self.BYTES:
            return value
        if flags in (self.JSON, self.OLD_JSON):
            return json.loads(value)
        what = " (pymemcache's flag of a pickle, which JsonSerde never loads)" if flags == 1 else ""
        raise ValueError(f"unknown flags {flags}{what} for key {key!r}: not written by JsonSerde")
