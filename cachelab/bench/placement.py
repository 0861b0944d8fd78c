"""Where the client and the servers run: the CPUs each process may use and last ran on, and pinning."""

from __future__ import annotations

import contextlib
import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Pinning:
    """The CPU the client is pinned to and the CPU the servers are pinned to (the same one for ``--pin``)."""

    client_cpu: int
    server_cpu: int

    @property
    def one_cpu(self) -> bool:
        return self.client_cpu == self.server_cpu

    def describe(self) -> str:
        if self.one_cpu:
            return f"Pinned to CPU {self.client_cpu}: the client and the servers on one CPU."
        return f"Pinned: the client on CPU {self.client_cpu}, the servers on CPU {self.server_cpu}."

    def to_dict(self) -> dict:
        return {"client_cpu": self.client_cpu, "server_cpu": self.server_cpu}


def default_pinning(allowed: Iterable[int]) -> Pinning:
    """The default placement over the CPUs this process may use (``os.sched_getaffinity(0)``).

    With two or more, the client on the first and the servers on the second: each keeps a CPU of its own,
    and no run depends on where the scheduler happened to put them. With one, everything shares it.
    """
    cpus = sorted(set(allowed))
    if not cpus:
        raise ValueError("no CPU to run on")
    return Pinning(cpus[0], cpus[1] if len(cpus) > 1 else cpus[0])


def choose_pinning(pin: int | None, no_pin: bool, allowed: Iterable[int]) -> Pinning | None:
    """What ``--pin CPU`` / ``--no-pin`` / neither (the default) mean, over the CPUs in ``allowed``."""
    allowed = set(allowed)
    if pin is not None and no_pin:
        raise ValueError("--pin and --no-pin contradict each other: give one of them")
    if no_pin:
        return None
    if pin is None:
        return default_pinning(allowed)
    if isinstance(pin, bool) or not isinstance(pin, int) or pin not in allowed:
        raise ValueError(f"--pin takes a CPU this process may use, one of {sorted(allowed)}; got {pin!r}")
    return Pinning(pin, pin)


def thread_stats(pid: int) -> dict[int, tuple[int, int]]:
    """Each thread of ``pid``: (CPU time used so far in clock ticks, the CPU it last ran on), from ``/proc``.

    Empty where ``/proc`` does not say (not Linux, or a process that is not visible from here).
    """
    out = {}
    try:
        tids = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tids:
        try:
            stat = Path(f"/proc/{pid}/task/{tid}/stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # fields[0] is field 3 of proc(5), "state"
        out[int(tid)] = (int(fields[11]) + int(fields[12]), int(fields[36]))  # utime + stime, processor
    return out


def process_placement(pid: int, before: dict[int, tuple[int, int]] | None = None) -> dict:
    """Where a process may run (what ``taskset -p`` shows) and where its threads ran.

    With ``before`` (a :func:`thread_stats` taken earlier), only the threads that used CPU time since
    count: an idle thread's last CPU says nothing about the run.
    """
    try:
        allowed = sorted(os.sched_getaffinity(pid))
    except (OSError, AttributeError):
        allowed = None
    now = thread_stats(pid)
    busy = {tid: cpu for tid, (ticks, cpu) in now.items()
            if before is None or ticks > before.get(tid, (-1, None))[0]}
    return {"pid": pid, "allowed_cpus": allowed, "threads": len(now), "busy_threads": len(busy),
            "busy_threads_ran_on": sorted(set(busy.values()))}


def local_pid(pid: int | None, name: str, port: int) -> int | None:
    """``pid`` if it is, seen from here, the ``name`` server on ``port`` (not one in a container)."""
    if not pid:
        return None
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return None
    return pid if name in cmdline and str(port) in cmdline else None


def redis_server_pid(client) -> int | None:
    """The Redis server's own pid, from ``INFO server`` (as the server sees it: maybe in a container)."""
    return int(client.info("server").get("process_id", 0)) or None


def memcached_server_pid(node: tuple[str, int], timeout: float = 2.0) -> int | None:
    """The memcached server's own pid, from its ``stats``."""
    with socket.create_connection(node, timeout=timeout) as sock:
        sock.settimeout(timeout)
        sock.sendall(b"stats\r\n")
        data = b""
        while not data.endswith(b"END\r\n"):
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    for line in data.decode(errors="replace").splitlines():
        if line.startswith("STAT pid "):
            return int(line.split()[2])
    return None


def set_affinity(pid: int, cpus: set[int]) -> dict[int, set[int]]:
    """Pin every thread of ``pid`` to ``cpus`` (like ``taskset -a -p -c``); return what to restore."""
    previous = {}
    for tid in thread_stats(pid) or [pid]:
        with contextlib.suppress(ProcessLookupError):
            previous[tid] = os.sched_getaffinity(tid)
            os.sched_setaffinity(tid, cpus)
    return previous


def restore_affinity(previous: dict[int, set[int]]) -> None:
    """Undo :func:`set_affinity` (threads that have ended since are skipped)."""
    for tid, cpus in previous.items():
        with contextlib.suppress(OSError):
            os.sched_setaffinity(tid, cpus)


def describe_placement(placement: dict, pinning: Pinning | None) -> str:
    """The pinning, then one sentence per process: where it could run and where it ran."""
    def where(p):
        if not p or p.get("allowed_cpus") is None:
            return "not visible from here (remote, or in a container)"
        return (f"may run on CPUs {p['allowed_cpus']}, its {p['busy_threads']} busy thread(s) last ran on "
                f"{p['busy_threads_ran_on']}")

    head = pinning.describe() if pinning is not None else "Not pinned (--no-pin: the scheduler placed everything)."
    parts = [f"{name} ({where(p)})" for name, p in placement.items()]
    return head + (" " + "; ".join(parts) + "." if parts else "")



def off_pinning(placement: dict, pinning: Pinning | None) -> list[str]:
    """A sentence for each process whose busy threads ran on a CPU other than the one it was pinned to."""
    if pinning is None:
        return []
    out = []
    for name, p in placement.items():
        wanted = pinning.client_cpu if name == "client" else pinning.server_cpu
        ran = (p or {}).get("busy_threads_ran_on") or []
        if any(cpu != wanted for cpu in ran):
            out.append(f"{name} was pinned to CPU {wanted} but its busy threads ran on {ran}.")
    return out
