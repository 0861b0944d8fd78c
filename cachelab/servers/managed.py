"""Servers the project starts itself: real ``redis-server`` and ``memcached`` processes on 127.0.0.1.

Each one has the secure, cache-shaped defaults of the compose file (:mod:`.config`), runs as user
``nobody`` when started by root, and stops with the process that started it: at exit, and on Linux even
when that process is killed (``PR_SET_PDEATHSIG``). Only these servers are ever flushed, stopped, frozen or
filled by a demo.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from .. import arguments
from . import config, probes
from .config import ServersUnavailable


def child_setup(cpus=None, death_signal: int = signal.SIGTERM):
    """A ``preexec_fn`` for a child the project starts: on Linux it gets ``death_signal`` when the thread that
    started it ends, even by SIGKILL (``PR_SET_PDEATHSIG``; a thread, not the process: start long-lived children
    from the main thread), and runs on ``cpus`` when given."""
    cpus = tuple(cpus) if cpus else None

    def setup() -> None:  # pragma: no cover - runs in the child between fork and exec
        if sys.platform.startswith("linux"):
            with contextlib.suppress(Exception):
                ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, death_signal)  # PR_SET_PDEATHSIG
        if cpus:
            os.sched_setaffinity(0, cpus)

    return setup


_die_with_parent = child_setup()


@dataclass
class ManagedServer:
    """A real ``redis-server`` or ``memcached`` process started by this project, on 127.0.0.1."""

    kind: str  # "redis" or "memcached"
    port: int
    password: str | None = None
    memory_mb: int = 64
    detached: bool = False
    host: str = "127.0.0.1"
    process: subprocess.Popen | None = field(default=None, repr=False)
    workdir: Path | None = field(default=None, repr=False)
    pid: int | None = None

    def __post_init__(self):
        if self.kind not in ("redis", "memcached"):
            raise ValueError(f"unknown server kind {self.kind!r}: 'redis' or 'memcached'")

    @property
    def url(self) -> str:
        if self.kind != "redis":
            raise AttributeError("only a Redis server has a URL")
        auth = f":{urllib.parse.quote(self.password, safe='')}@" if self.password else ""
        return f"redis://{auth}{self.host}:{self.port}/0"

    @property
    def address(self) -> tuple[str, int]:
        return (self.host, self.port)

    def command(self) -> list[str]:
        if self.kind == "redis":
            exe = shutil.which("redis-server")
            if not exe:
                raise ServersUnavailable("redis-server is not on PATH.\n" + config.HOW_TO_GET_SERVERS)
            cmd = [exe, "--port", str(self.port), "--bind", self.host, "--protected-mode", "yes",
                   *config.REDIS_FLAGS, "--dir", str(self.workdir), "--logfile", ""]
            cmd[cmd.index("--maxmemory") + 1] = f"{self.memory_mb}mb"
            if self.password:
                cmd += ["--requirepass", self.password]
            return cmd
        if self.kind == "memcached":
            exe = shutil.which("memcached")
            if not exe:
                raise ServersUnavailable("memcached is not on PATH.\n" + config.HOW_TO_GET_SERVERS)
            cmd = [exe, "-l", self.host, "-p", str(self.port), *config.MEMCACHED_FLAGS]
            cmd[cmd.index("-m") + 1] = str(self.memory_mb)
            if _unprivileged_user() is None and hasattr(os, "geteuid") and os.geteuid() == 0:
                cmd += ["-u", "root"]  # memcached refuses root without -u; only when no 'nobody' exists
            return cmd
        raise ValueError(f"unknown server kind {self.kind!r}: 'redis' or 'memcached'")

    def start(self, timeout: float = 10.0) -> ManagedServer:
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix=f"cachelab-{self.kind}-"))
        log = open(self.workdir / "server.log", "ab")  # noqa: SIM115 - kept open by the child
        drop = _unprivileged_user()
        if drop:
            self.workdir.chmod(0o755)
        self.process = subprocess.Popen(
            self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            cwd=self.workdir, start_new_session=True,
            # As root, run the server as 'nobody'. CPython switches user before calling preexec_fn,
            # so the parent-death signal set there survives (a setuid inside the server would clear it).
            user=drop[0] if drop else None, group=drop[1] if drop else None,
            preexec_fn=None if self.detached or not sys.platform.startswith("linux") else _die_with_parent,
        )
        log.close()
        self.pid = self.process.pid
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ServersUnavailable(f"{self.kind} exited at start (code {self.process.returncode}):\n"
                                         + self.log_tail())
            if self.ping():
                if not self.detached:
                    _MANAGED.append(self)
                return self
            time.sleep(0.02)
        self.stop()
        raise ServersUnavailable(f"{self.kind} did not answer on {self.host}:{self.port} within {timeout}s")

    def log_tail(self, lines: int = 20) -> str:
        try:
            text = (self.workdir / "server.log").read_text(errors="replace")
        except (OSError, TypeError):
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def ping(self) -> bool:
        if self.kind == "memcached":
            return probes.memcached_version(self.host, self.port, timeout=0.5) is not None
        return probes.redis_ping(self.host, self.port, self.password)

    def alive(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return self.pid is not None and pid_alive(self.pid)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL). Data in it is gone: it was only ever a cache."""
        if self.process is not None:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout)
        elif self.pid and pid_alive(self.pid) and is_server_pid(self.pid, self.kind):
            os.kill(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while pid_alive(self.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if pid_alive(self.pid):
                os.kill(self.pid, signal.SIGKILL)
        if self in _MANAGED:
            _MANAGED.remove(self)

    def flush(self) -> None:
        """Empty this server. Allowed only on a server this process started itself and still runs: a
        ``ManagedServer`` rebuilt from a port and a pid (as ``make stop`` does) is refused, whoever owns it."""
        if self.process is None:
            raise PermissionError(f"{self.kind} on port {self.port} was not started by this process: "
                                  "cachelab empties only servers it started itself")
        if self.process.poll() is not None:
            raise RuntimeError(f"{self.kind} on port {self.port} is not running")
        if self.kind == "memcached":
            with socket.create_connection(self.address, timeout=config.CONNECT_TIMEOUT) as sock:
                sock.settimeout(config.SOCKET_TIMEOUT)
                sock.sendall(b"flush_all\r\n")
                if not sock.recv(64).startswith(b"OK"):
                    raise RuntimeError("flush_all was refused")
        else:
            from .clients import redis_client_for

            client = redis_client_for(self.url, decode_responses=False)
            try:
                client.execute_command("FLUSHDB")  # our own private instance only
            finally:
                client.close()

    def __enter__(self) -> ManagedServer:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


_MANAGED: list[ManagedServer] = []


def _stop_all_managed() -> None:
    for server in list(_MANAGED):
        with contextlib.suppress(Exception):
            server.stop(timeout=2.0)


atexit.register(_stop_all_managed)


def _unprivileged_user() -> tuple[int, int] | None:
    """(uid, gid) of 'nobody' when running as root, so servers never run as root; else None."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None
    try:
        import pwd

        entry = pwd.getpwnam("nobody")
        return entry.pw_uid, entry.pw_gid
    except (ImportError, KeyError):
        return None


def pid_alive(pid: int) -> bool:
    """Whether a process with this pid exists."""
    arguments.integer("pid", pid, minimum=1)  # 0 and -1 would ask about a whole process group
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_server_pid(pid: int, kind: str) -> bool:
    """Guard against a recycled pid: only signal a process that is the server we recorded."""
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except OSError:
        return sys.platform != "linux"
    return ("redis-server" if kind == "redis" else "memcached") in cmdline


def start_redis(port: int | None = None, *, password: str | None = None, memory_mb: int = 64,
                detached: bool = False, attempts: int = 3) -> ManagedServer:
    """Start a private ``redis-server`` on 127.0.0.1 (a random password unless one is given)."""
    _check_start(port, memory_mb, attempts)
    if password is not None:
        arguments.text("password", password)
    password = password if password is not None else secrets.token_urlsafe(16)
    return _start("redis", port, password, memory_mb, detached, attempts)


def start_memcached(port: int | None = None, *, memory_mb: int = 64, detached: bool = False,
                    attempts: int = 3) -> ManagedServer:
    """Start a private ``memcached`` on 127.0.0.1 with UDP off."""
    _check_start(port, memory_mb, attempts)
    return _start("memcached", port, None, memory_mb, detached, attempts)


def _check_start(port, memory_mb, attempts) -> None:
    if port is not None:
        arguments.port("port", port)
    arguments.integer("memory_mb", memory_mb, minimum=1)
    arguments.integer("attempts", attempts, minimum=1)


def _start(kind, port, password, memory_mb, detached, attempts) -> ManagedServer:
    last = None
    for _ in range(attempts if port is None else 1):
        server = ManagedServer(kind, port or probes.free_port(), password=password, memory_mb=memory_mb,
                               detached=detached)
        try:
            return server.start()
        except ServersUnavailable as exc:  # the port was taken between free_port() and bind: retry
            last = exc
            if "not on PATH" in str(exc):
                raise
    raise last
