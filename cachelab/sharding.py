"""Which memcached node holds a key: rendezvous hashing, as pymemcache's ``HashClient`` does, against the
naive ``hash(key) % n``.

A client spreads keys over several nodes by hashing. The naive way takes the hash modulo the number of
nodes: add or remove one node and most keys change node (going from n to n + 1 nodes, about n/(n + 1) of
them), so most cached values are lost at once. Rendezvous (highest random weight) hashing, by Thaler and
Ravishankar (1998), scores every node for a key and picks the highest score: removing a node moves only
the keys it held, adding one moves only the keys it wins, about ``1/n`` of them either way.

:func:`node_for` reproduces exactly the node that ``HashClient`` picks (the same murmur3 scores over the
same ``"host:port"`` names), so a notebook can predict, count and check placements on real servers.
The naive method uses CRC32, the stable hash that older memcached clients took modulo ``n`` (Python's own
``hash`` of a string changes from one process to the next).
"""

from __future__ import annotations

import math
import zlib
from collections import Counter
from collections.abc import Iterable, Sequence

from pymemcache.client.rendezvous import RendezvousHash

METHODS = ("rendezvous", "modulo")


def node_name(node: str | tuple[str, int]) -> str:
    """The name ``HashClient`` hashes for a node: ``'127.0.0.1:21211'`` for ``('127.0.0.1', 21211)``."""
    if isinstance(node, str):
        return node
    host, port = node
    return f"{host}:{port}"


def _names(nodes: Iterable[str | tuple[str, int]]) -> list[str]:
    names = [node_name(n) for n in nodes]
    if not names:
        raise ValueError("at least one node is needed")
    if len(set(names)) != len(names):
        raise ValueError(f"nodes must be distinct, got {names}")
    return names


def _check_method(method: str) -> None:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, not {method!r}")


def modulo_index(key: str, n: int) -> int:
    """The naive placement: ``crc32(key) % n``."""
    if n < 1:
        raise ValueError("n must be at least 1")
    return zlib.crc32(key.encode()) % n


def assign(keys: Iterable[str], nodes: Sequence[str | tuple[str, int]], method: str = "rendezvous"
           ) -> dict[str, str]:
    """The node name each key goes to, by ``method`` (``'rendezvous'`` or ``'modulo'``)."""
    _check_method(method)
    names = _names(nodes)
    if method == "modulo":
        return {k: names[modulo_index(k, len(names))] for k in keys}
    hasher = RendezvousHash(list(names))
    return {k: hasher.get_node(k) for k in keys}


def node_for(key: str, nodes: Sequence[str | tuple[str, int]], method: str = "rendezvous") -> str:
    """The node name one key goes to: for ``'rendezvous'``, the node ``HashClient`` uses for it."""
    return assign([key], nodes, method)[key]


def distribution(keys: Iterable[str], nodes: Sequence[str | tuple[str, int]], method: str = "rendezvous"
                 ) -> dict[str, int]:
    """How many of ``keys`` each node holds (every node listed, in the order given, zeros included)."""
    names = _names(nodes)
    counts = Counter(assign(keys, names, method).values())
    return {name: counts.get(name, 0) for name in names}


def moved_fraction(keys: Sequence[str], before: Sequence[str | tuple[str, int]],
                   after: Sequence[str | tuple[str, int]], method: str = "rendezvous") -> float:
    """The fraction of ``keys`` whose node changes when the node list goes from ``before`` to ``after``.

    Each moved key is a cached value the clients can no longer find: a miss, and a trip to the backend.
    """
    keys = list(keys)
    if not keys:
        raise ValueError("keys must not be empty")
    first, second = assign(keys, before, method), assign(keys, after, method)
    return sum(first[k] != second[k] for k in keys) / len(keys)


def expected_moved_fraction(before: int, after: int, method: str = "rendezvous") -> float:
    """The fraction of keys expected to change node when ``before`` nodes become ``after`` nodes, one list
    a prefix of the other, for keys whose hashes are spread evenly.

    Rendezvous hashing moves only the keys of the nodes added or removed: ``|after - before|`` of the larger
    cluster's nodes. Modulo keeps a key only when ``h % before == h % after``, counted over one period of the
    residues (``lcm(before, after)`` of them): from ``n`` nodes to ``n + 1``, it moves ``n / (n + 1)``.
    :func:`moved_fraction` measures the same on real keys.
    """
    _check_method(method)
    for name, n in (("before", before), ("after", after)):
        if not isinstance(n, int) or isinstance(n, bool) or n < 1:
            raise ValueError(f"{name} must be a number of nodes (an int of at least 1), not {n!r}")
    if method == "rendezvous":
        return abs(after - before) / max(before, after)
    period = math.lcm(before, after)
    return sum(r % before != r % after for r in range(period)) / period
