"""The memcached keys this project wrote, kept on disk, so that a cleanup can delete them by name.

memcached has no command that lists keys; the only way to find a prefix's keys on a node is
``lru_crawler metadump``, which walks every item the node holds. On the project's own servers (``make
servers``, docker compose, private ones) that is a few thousand items. On a memcached of the user's own,
given through ``MEMCACHED_SERVERS``, it may be a production node with millions of items, and a walk of all of
them is not the project's to start. So every key the project stores is also written down here, under its
client's prefix, and a cleanup on a user's server deletes those keys by name, and nothing else
(:func:`cachelab.servers.cleanup.cleanup_written`).

:class:`RecordingSerde` does the writing down: pymemcache calls a serde's ``serialize(key, value)`` with the
full key (prefix included) for every store command (``set``, ``set_many``, ``add``, ``replace``, ``cas``...),
so wrapping the serde sees every write of a ``Client`` or a ``HashClient`` without touching pymemcache.
One file per client prefix, ``<cache dir>/memcached-written/<prefix, quoted>.keys``, one key per line, appended
with one ``write`` each (atomic between the processes of a run that share a prefix).
"""

from __future__ import annotations

import os
import threading
import urllib.parse
from pathlib import Path

from .. import paths
from ..keys import check_prefix

FOLDER = "memcached-written"
_LEDGERS: dict[tuple[str, str], Ledger] = {}
_LEDGERS_LOCK = threading.Lock()


def folder() -> Path:
    """Where the ledgers are kept: ``<cache dir>/memcached-written/``."""
    return paths.cache_dir() / FOLDER


def _file_for(prefix: str, where: Path) -> Path:
    return where / (urllib.parse.quote(prefix, safe="") + ".keys")


def _prefix_of(path: Path) -> str:
    return urllib.parse.unquote(path.name[:-len(".keys")])


class Ledger:
    """The keys written under one prefix: :meth:`add` appends a key once, :func:`written_under` reads them back."""

    def __init__(self, prefix: str, where: Path | None = None):
        self.prefix = check_prefix(prefix)
        self.path = _file_for(prefix, Path(where) if where is not None else folder())
        self._seen: set[bytes] = set()
        self._lock = threading.Lock()

    def add(self, key: bytes | str) -> None:
        key = key.encode() if isinstance(key, str) else bytes(key)
        if key in self._seen:
            return
        with self._lock:
            if key in self._seen:
                return
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, key + b"\n")
            finally:
                os.close(fd)
            self._seen.add(key)

    def forget(self) -> None:
        """This process's memory of what it wrote down (after a cleanup removed the file)."""
        with self._lock:
            self._seen.clear()


def ledger(prefix: str) -> Ledger:
    """The ledger of ``prefix`` in the current cache folder, one per process."""
    where = folder()
    with _LEDGERS_LOCK:
        found = _LEDGERS.get((prefix, str(where)))
        if found is None:
            found = _LEDGERS[(prefix, str(where))] = Ledger(prefix, where)
        return found


class RecordingSerde:
    """A pymemcache serde that writes down each key it serialises a value for, then lets ``serde`` do the work."""

    def __init__(self, serde, prefix: str):
        self.serde = serde
        self.ledger = ledger(prefix)

    def serialize(self, key, value):
        self.ledger.add(key)
        return self.serde.serialize(key, value)

    def deserialize(self, key, value, flags):
        return self.serde.deserialize(key, value, flags)

    def __repr__(self) -> str:
        return f"{type(self.serde).__name__}, each key written down for cleanup"


def written_under(prefix: str, where: Path | None = None) -> dict[Path, list[str]]:
    """The ledgers of ``prefix`` and of every longer prefix that starts with it, with their keys (those under
    ``prefix`` only: a key outside it is never returned)."""
    check_prefix(prefix)
    where = Path(where) if where is not None else folder()
    out = {}
    if not where.is_dir():
        return out
    for path in sorted(where.glob("*.keys")):
        if not _prefix_of(path).startswith(prefix):
            continue
        lines = path.read_bytes().decode("utf-8", "replace").splitlines()
        out[path] = sorted({k for k in lines if k.startswith(prefix)})
    return out


def forget_written(files) -> None:
    """Remove ledgers whose keys were deleted, and this process's memory of them."""
    for path in files:
        Path(path).unlink(missing_ok=True)
        with _LEDGERS_LOCK:
            for led in _LEDGERS.values():
                if led.path == Path(path):
                    led.forget()
