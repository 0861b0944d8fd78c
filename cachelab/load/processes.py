"""Running a load generator as a child process: pinned to CPUs, bounded in time, never left behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Mapping, Sequence

from ..servers.managed import child_setup


def start_pinned(command: Sequence[str], *, cpus: Sequence[int] | None = None, env: Mapping[str, str] | None = None,
                 cwd: str | os.PathLike | None = None) -> subprocess.Popen:
    """Start ``command`` on ``cpus`` (like ``taskset``), in its own process group, in ``cwd``, its output piped;
    on Linux it dies with this process. :func:`finish` waits for it."""
    cpus = tuple(cpus) if cpus else None
    return subprocess.Popen(list(command), stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True,
                            env=dict(env) if env is not None else None, cwd=cwd,
                            preexec_fn=child_setup(cpus, signal.SIGKILL))


def run_pinned(command: Sequence[str], *, cpus: Sequence[int] | None = None, timeout: float,
               env: Mapping[str, str] | None = None,
               cwd: str | os.PathLike | None = None) -> subprocess.CompletedProcess:
    """Run ``command`` to completion on ``cpus`` (like ``taskset``), in its own process group, in ``cwd``.

    Past ``timeout`` seconds the whole group is killed and ``subprocess.TimeoutExpired`` raised; a
    non-zero exit raises ``subprocess.CalledProcessError``. On Linux the child also dies with this process.
    """
    return finish(start_pinned(command, cpus=cpus, env=env, cwd=cwd), timeout=timeout)


def finish(process: subprocess.Popen, *, timeout: float) -> subprocess.CompletedProcess:
    """Wait for a process of :func:`start_pinned`: its output, or, past ``timeout`` seconds, its whole group
    killed and ``subprocess.TimeoutExpired`` raised; a non-zero exit raises ``subprocess.CalledProcessError``."""
    command = process.args
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.communicate()
        raise
    if process.returncode != 0:
        raise subprocess.CalledProcessError(process.returncode, command, stdout, stderr)
    return subprocess.CompletedProcess(command, 0, stdout, stderr)


def pin(pid: int, cpus: Sequence[int] | None) -> list[int] | None:
    """Restrict a running process (one this project started) to ``cpus``; returns where it may run now."""
    if cpus and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(pid, set(cpus))
    try:
        return sorted(os.sched_getaffinity(pid))
    except (OSError, AttributeError):
        return None
