"""Faults injected into servers the project started itself: a node that stops, a node that freezes.

A cache node can fail in two ways that matter to a client. It can **die**: connections are refused at
once, and when it comes back it is empty. Or it can become **unreachable without dying** (a network
partition, a long pause of the host): requests time out, and when it comes back it still holds the
values it had, some of them now stale. :func:`paused` makes the second kind with ``SIGSTOP`` and
``SIGCONT``; :meth:`~cachelab.servers.ManagedServer.stop` makes the first.

Only a :class:`~cachelab.servers.ManagedServer` that this process started is ever signalled: a server
given through ``REDIS_URL`` or ``MEMCACHED_SERVERS`` belongs to someone else and is never touched.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections.abc import Iterator

from .managed import ManagedServer


def _own_process(server: ManagedServer) -> int:
    if not isinstance(server, ManagedServer) or server.process is None:
        raise ValueError("only a server this process started (start_memcached/start_redis) can be faulted")
    if not server.alive():
        raise RuntimeError(f"{server.kind} on port {server.port} is not running")
    return server.process.pid


def pause(server: ManagedServer, timeout: float = 2.0) -> None:
    """Freeze the server (``SIGSTOP``): it keeps its data and its port, and answers nothing.

    ``kill`` returns before the stop takes effect: a server thread running on another CPU can still answer
    a request sent right after it. So this returns only once the kernel reports every thread of the process
    stopped (state ``T`` in ``/proc``, on Linux).
    """
    pid = _own_process(server)
    os.kill(pid, signal.SIGSTOP)
    deadline = time.monotonic() + timeout
    while not _stopped(pid):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{server.kind} on port {server.port} did not stop within {timeout} s")
        time.sleep(0.001)


def _stopped(pid: int) -> bool:
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return True  # no /proc (macOS): nothing to wait on
    for task in tasks:
        try:
            with open(f"/proc/{pid}/task/{task}/stat") as handle:
                state = handle.read().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in ("T", "t"):
            return False
    return True


def resume(server: ManagedServer) -> None:
    """Let a paused server run again (``SIGCONT``), with the data it held when it froze."""
    os.kill(_own_process(server), signal.SIGCONT)


@contextlib.contextmanager
def paused(server: ManagedServer) -> Iterator[ManagedServer]:
    """``with paused(node): ...``: the node is frozen inside the block and always resumed after it."""
    pause(server)
    try:
        yield server
    finally:
        resume(server)
