"""Where the load generator and the servers run: on a small machine they compete for the same CPUs.

With two CPUs or more, the load generator (and the notebook's helper threads: the writer, the checker, the
counter sampler) gets one CPU of its own and the gunicorn workers and cache servers share the others, so
that the generator never steals the time it is measuring. With one CPU
everything shares it, and the results say so. The CPU count is read (``os.sched_getaffinity``: the CPUs
this process may use, which a container or ``taskset`` may restrict), never assumed.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


def available_cpus() -> tuple[int, ...]:
    """The CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return tuple(sorted(os.sched_getaffinity(0)))
    return tuple(range(os.cpu_count() or 1))


@dataclass(frozen=True)
class Placement:
    """The CPUs of the load generator and of the servers (``None``: not pinned, where the OS cannot pin)."""

    cpus: tuple[int, ...]
    generator: tuple[int, ...] | None
    servers: tuple[int, ...] | None

    @property
    def separate(self) -> bool:
        """Whether the generator has CPUs that no server uses."""
        return bool(self.generator and self.servers and not set(self.generator) & set(self.servers))

    def describe(self) -> str:
        if self.generator is None:
            return f"{len(self.cpus)} CPU(s); this system cannot pin processes, so the scheduler places them"
        if not self.separate:
            return (f"1 CPU ({self.cpus[0]}): the load generators, the notebook's helper threads, the gunicorn "
                    "workers and the cache servers share it")
        n = len(self.servers)
        return (f"{len(self.cpus)} CPUs: {n} server CPU{'s' if n > 1 else ''} ({', '.join(map(str, self.servers))}), "
                f"which the gunicorn workers share with Redis and memcached; the load generators (wrk, locust) and "
                f"this notebook's helper threads (writer, checker, counter sampler) on CPU "
                f"{', '.join(map(str, self.generator))}")

    def to_dict(self) -> dict:
        return {"cpus": list(self.cpus), "generator": list(self.generator) if self.generator else None,
                "servers": list(self.servers) if self.servers else None, "separate": self.separate}


def plan(cpus: tuple[int, ...] | None = None) -> Placement:
    """One CPU for the generator (the last), the others for the servers; all shared on a one-CPU machine."""
    cpus = tuple(cpus) if cpus is not None else available_cpus()
    if not cpus:
        raise ValueError("no CPU to run on")
    if not hasattr(os, "sched_setaffinity"):
        return Placement(cpus, None, None)
    if len(cpus) == 1:
        return Placement(cpus, cpus, cpus)
    return Placement(cpus, (cpus[-1],), cpus[:-1])
