"""How many GETs a second one cache server serves, counted on the server over timed windows (notebook 10).

Notebook 08 counts Redis's ``GET`` calls (``INFO commandstats``) while ``redis-benchmark`` keeps 32 clients
busy. memcached has no such benchmark among the series' tools, so :func:`get_rate` drives either server the
same way with a small load generator of its own (:data:`GENERATOR`: asyncio, ``clients`` connections in
``processes`` processes, one request in flight per connection, as ``redis-benchmark -P 1``), and counts the
GETs the *server* reports (memcached's ``cmd_get`` in ``stats``, Redis's ``cmdstat_get``) over a window
that opens once every connection is busy and closes before the generator stops. A Python generator can
run out of CPU before the server does: :func:`get_rate` returns the generator's CPU too, and a rate it
measured is a lower bound of the server's capacity, never more.

Every connection has a timeout, the generator stops itself after ``max_s`` seconds whatever happens, and
the parent kills it when the window is over.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from . import arguments

GENERATOR = r"""
import asyncio, sys, time
kind, host, port, key = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
clients, max_s = int(sys.argv[5]), float(sys.argv[6])
password = sys.stdin.readline().strip()  # Redis's, if any: never on the command line
if kind == "memcached":
    request, done = f"get {key}\r\n".encode(), b"END\r\n"
else:
    request = f"*2\r\n$3\r\nGET\r\n${len(key)}\r\n{key}\r\n".encode()
    done = None
stop = time.monotonic() + max_s

async def client():
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 2)
    if kind == "redis" and password:
        writer.write(f"*2\r\n$4\r\nAUTH\r\n${len(password)}\r\n{password}\r\n".encode())
        if not (await asyncio.wait_for(reader.readline(), 2)).startswith(b"+OK"):
            raise SystemExit("AUTH refused")
    while time.monotonic() < stop:
        writer.write(request)
        if done is not None:
            await asyncio.wait_for(reader.readuntil(done), 2)
        else:
            head = await asyncio.wait_for(reader.readline(), 2)
            if head.startswith(b"$") and not head.startswith(b"$-1"):
                await asyncio.wait_for(reader.readexactly(int(head[1:]) + 2), 2)
    writer.close()

async def main():
    await asyncio.gather(*(client() for _ in range(clients)))

asyncio.run(main())
"""


def _served(kind: str, client) -> int:
    if kind == "memcached":
        return int(client.stats()[b"cmd_get"])
    return int(client.info("commandstats").get("cmdstat_get", {}).get("calls", 0))


def _cpu_seconds(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def get_rate(kind: str, address: tuple[str, int], client, key: str, *, seconds: float = 0.5,
             clients: int = 32, processes: int = 2, warmup_s: float = 0.3, password: str | None = None) -> dict:
    """GETs a second ``kind`` (``"memcached"`` or ``"redis"``) at ``address`` serves to ``clients``
    connections spread over ``processes`` generator processes, asking for ``key`` (store it first), counted
    on the server (``client``: a pymemcache or redis-py client of that server) over a window of ``seconds``
    that opens ``warmup_s`` after the generators start. ``password`` is Redis's (handed over stdin).

    Returns ``per_s``, ``requests``, ``window_s``, ``clients`` and ``generator_cpu_s`` (the generators' CPU
    in the window: near ``processes * window_s``, the generator was the limit, and ``per_s`` is a lower
    bound of the server's rate)."""
    if kind not in ("memcached", "redis"):
        raise ValueError(f"kind must be 'memcached' or 'redis', not {kind!r}")
    seconds = arguments.number("seconds", seconds, positive=True)
    clients = arguments.integer("clients", clients, minimum=1)
    processes = arguments.integer("processes", processes, minimum=1)
    host, port = address
    max_s = warmup_s + seconds + 5.0
    each = [clients // processes + (1 if i < clients % processes else 0) for i in range(processes)]
    procs = [subprocess.Popen([sys.executable, "-c", GENERATOR, kind, host, str(port), key, str(n), str(max_s)],
                              stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for n in each if n]
    for p in procs:
        p.stdin.write((password or "") + "\n")
        p.stdin.close()
    try:
        time.sleep(warmup_s)
        stopped = [p for p in procs if p.poll() is not None]
        if stopped:
            raise RuntimeError(f"the load generator stopped at once: {stopped[0].stderr.read()[-300:]}")
        cpu0 = [_cpu_seconds(p.pid) for p in procs]
        before = time.perf_counter()
        count0 = _served(kind, client)
        t0 = (before + time.perf_counter()) / 2
        time.sleep(seconds)
        before = time.perf_counter()
        count1 = _served(kind, client)
        t1 = (before + time.perf_counter()) / 2
        cpu1 = [_cpu_seconds(p.pid) for p in procs]
    finally:
        for p in procs:
            p.kill()
        for p in procs:
            p.wait(timeout=5)
            p.stderr.close()
    cpu = None if None in cpu0 + cpu1 else sum(cpu1) - sum(cpu0)
    return {"per_s": (count1 - count0) / (t1 - t0), "requests": count1 - count0, "window_s": t1 - t0,
            "clients": clients, "processes": len(procs), "generator_cpu_s": cpu}
