"""Real Redis and memcached servers for the notebooks: found, or started, never faked.

:func:`connect` resolves each service (Redis, and three memcached nodes) in this order:

1. ``REDIS_URL`` / ``MEMCACHED_SERVERS`` (comma-separated ``host:port``): exactly those, or a clear error.
2. Servers started by ``make servers`` (``python -m cachelab servers up``), recorded in
   ``.cachelab/servers.json``.
3. The ``docker compose up -d`` services of this repository, on their loopback ports
   (Redis 127.0.0.1:16379 with the compose password; memcached 127.0.0.1:21211-21213). The ports are
   not the standard ones, so that a Redis or memcached of your own on 6379/11211 is never mistaken for
   the project's.
4. ``redis-server`` / ``memcached`` on ``PATH``: private instances on free loopback ports, with the
   same flags as the compose file, stopped when this process exits.
5. Otherwise :class:`ServersUnavailable`, within seconds, naming the three ways to get servers.

Safety rules, each covered by a test:

* Every client has connect and socket timeouts: nothing hangs on a dead or missing server.
* Keys carry a prefix (``cachelab:<notebook>:``); :meth:`Servers.cleanup` deletes that prefix only
  (``SCAN`` + ``UNLINK`` on Redis, ``lru_crawler metadump`` + ``delete`` on memcached).
* The project never calls ``FLUSHALL``/``FLUSHDB``; memcached ``flush_all`` exists only on
  :class:`ManagedServer`, a server this process started itself.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from . import arguments, paths

CONNECT_TIMEOUT = float(os.environ.get("CACHELAB_CONNECT_TIMEOUT", "1.0"))
SOCKET_TIMEOUT = float(os.environ.get("CACHELAB_SOCKET_TIMEOUT", "2.0"))
COMPOSE_REDIS_PORT = 16379
COMPOSE_MEMCACHED_PORTS = (21211, 21212, 21213)
DEFAULT_REDIS_PASSWORD = "cachelab-local-only"  # the compose default; override with CACHELAB_REDIS_PASSWORD
MEMCACHED_NODES = 3
REDIS_FLAGS = ("--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru", "--save", "", "--appendonly", "no")
MEMCACHED_FLAGS = ("-U", "0", "-m", "64")
STATE_FILE_NAME = "servers.json"

HOW_TO_GET_SERVERS = """\
Get Redis and memcached in one of three ways, then rerun:
  1. Docker:   docker compose up -d          (from the repository root; see docker-compose.yml)
  2. Binaries: sudo apt install redis-server memcached   or   brew install redis memcached
               (cachelab then starts private instances itself; `make servers` keeps them running)
  3. Your own: export REDIS_URL=redis://:PASSWORD@HOST:6379/0 MEMCACHED_SERVERS=HOST:11211,HOST:11212
               (cachelab writes only keys starting with 'cachelab:' there and deletes only those)"""


class ServersUnavailable(RuntimeError):
    """No usable server: the message says what was tried and how to get one."""


def redis_password() -> str:
    return os.environ.get("CACHELAB_REDIS_PASSWORD", DEFAULT_REDIS_PASSWORD)


def prefix_for(notebook: str) -> str:
    """The key prefix of one notebook: ``cachelab:<notebook>:``.

    No ``:`` in the name: notebook ``a``'s cleanup (``cachelab:a:*``) would delete notebook ``a:b``'s keys.
    """
    if notebook is not None and notebook != "":
        arguments.text("notebook", notebook)
    if not notebook or any(c.isspace() for c in notebook) or "*" in notebook or ":" in notebook:
        raise ValueError(f"a notebook name without spaces, '*' or ':', not {notebook!r}")
    return f"cachelab:{notebook}:"


def _check_prefix(prefix: str) -> str:
    if not isinstance(prefix, str) or not prefix.startswith("cachelab:") or len(prefix) <= len("cachelab:"):
        raise ValueError(f"cleanup takes a project prefix like 'cachelab:01_x:', not {prefix!r}")
    return prefix


def parse_memcached_servers(text: str) -> list[tuple[str, int]]:
    """``'h1:11211,h2:11212'`` as ``[('h1', 11211), ('h2', 11212)]``, with a clear error when malformed."""
    arguments.text("MEMCACHED_SERVERS", text, empty=True)
    nodes = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        host, sep, port = part.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"MEMCACHED_SERVERS entry {part!r} is not host:port")
        nodes.append((host.strip("[]"), int(port)))
    if not nodes:
        raise ValueError("MEMCACHED_SERVERS is empty; expected host:port[,host:port...]")
    return nodes


def parse_redis_url(url: str) -> dict:
    """Check a ``redis://`` URL and return its parts; raise ``ValueError`` with the reason otherwise."""
    arguments.text("REDIS_URL", url, empty=True)
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in {"redis", "rediss", "unix"}:
        raise ValueError(f"REDIS_URL must start with redis://, rediss:// or unix://, got {_redacted(url)!r}")
    if parsed.scheme != "unix" and not parsed.hostname:
        raise ValueError(f"REDIS_URL has no host: {_redacted(url)!r}")
    try:
        port = parsed.port if parsed.port is not None else 6379
    except ValueError:
        raise ValueError(f"REDIS_URL has a bad port: {_redacted(url)!r}") from None
    if parsed.scheme != "unix" and not 0 < port < 65536:
        raise ValueError(f"REDIS_URL has a bad port: {_redacted(url)!r}")
    if parsed.scheme != "unix" and not (parsed.path.strip("/") or "0").isdigit():
        raise ValueError(f"REDIS_URL's database must be a number, as in redis://host:6379/0: {_redacted(url)!r}")
    return {"scheme": parsed.scheme, "host": parsed.hostname, "port": port,
            "password": urllib.parse.unquote(parsed.password) if parsed.password else None}


def _redacted(url: str) -> str:
    parsed = urllib.parse.urlsplit(url)
    if parsed.password:
        netloc = parsed.netloc.replace(f":{parsed.password}@", ":***@")
        return urllib.parse.urlunsplit(parsed._replace(netloc=netloc))
    return url


# --------------------------------------------------------------------------- probes (no client libraries)

def port_is_open(host: str, port: int, timeout: float = 0.3) -> bool:
    """Whether something accepts TCP connections on ``host:port``."""
    arguments.text("host", host)
    arguments.port("port", port)
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def memcached_version(host: str, port: int, timeout: float = CONNECT_TIMEOUT) -> str | None:
    """The server's version if a memcached answers on ``host:port``, else ``None``."""
    arguments.text("host", host)
    arguments.port("port", port)
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(b"version\r\n")
            reply = sock.recv(256)
    except OSError:
        return None
    if reply.startswith(b"VERSION "):
        return reply[8:].strip().decode("ascii", "replace")
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


# --------------------------------------------------------------------------- servers we start ourselves

def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Linux: the server gets SIGTERM when the process that started it dies, even by SIGKILL."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


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
        arguments.port("port", self.port)
        if self.password is not None:
            arguments.text("password", self.password)
        arguments.integer("memory_mb", self.memory_mb, minimum=1)

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
                raise ServersUnavailable("redis-server is not on PATH.\n" + HOW_TO_GET_SERVERS)
            cmd = [exe, "--port", str(self.port), "--bind", self.host, "--protected-mode", "yes",
                   *REDIS_FLAGS, "--dir", str(self.workdir), "--logfile", ""]
            cmd[cmd.index("--maxmemory") + 1] = f"{self.memory_mb}mb"
            if self.password:
                cmd += ["--requirepass", self.password]
            return cmd
        if self.kind == "memcached":
            exe = shutil.which("memcached")
            if not exe:
                raise ServersUnavailable("memcached is not on PATH.\n" + HOW_TO_GET_SERVERS)
            cmd = [exe, "-l", self.host, "-p", str(self.port), *MEMCACHED_FLAGS]
            cmd[cmd.index("-m") + 1] = str(self.memory_mb)
            if _unprivileged_user() is None and hasattr(os, "geteuid") and os.geteuid() == 0:
                cmd += ["-u", "root"]  # memcached refuses root without -u; only when no 'nobody' exists
            return cmd
        raise ValueError(f"unknown server kind {self.kind!r}: 'redis' or 'memcached'")

    def start(self, timeout: float = 10.0) -> ManagedServer:
        timeout = arguments.number("timeout", timeout, positive=True)
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
        lines = arguments.integer("lines", lines, minimum=1)
        try:
            text = (self.workdir / "server.log").read_text(errors="replace")
        except (OSError, TypeError):
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def ping(self) -> bool:
        if self.kind == "memcached":
            return memcached_version(self.host, self.port, timeout=0.5) is not None
        return _redis_ping(self.host, self.port, self.password)

    def alive(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        return self.pid is not None and pid_alive(self.pid)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the server (SIGTERM, then SIGKILL). Data in it is gone: it was only ever a cache."""
        timeout = arguments.number("timeout", timeout, positive=True)
        if self.process is not None:
            if self.process.poll() is None:
                self.process.terminate()
                try:
                    self.process.wait(timeout)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait(timeout)
        elif self.pid and pid_alive(self.pid) and _is_server_pid(self.pid, self.kind):
            os.kill(self.pid, signal.SIGTERM)
            deadline = time.monotonic() + timeout
            while pid_alive(self.pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if pid_alive(self.pid):
                os.kill(self.pid, signal.SIGKILL)
        if self in _MANAGED:
            _MANAGED.remove(self)

    def restart(self, timeout: float = 10.0) -> ManagedServer:
        """Stop and start again on the same port (empty, as a real restart of a cache is)."""
        timeout = arguments.number("timeout", timeout, positive=True)
        self.stop()
        return self.start(timeout)

    def flush(self) -> None:
        """Empty this server. Allowed only because this project started it: see the module docstring."""
        if not self.alive():
            raise RuntimeError(f"{self.kind} on port {self.port} is not running")
        if self.kind == "memcached":
            with socket.create_connection(self.address, timeout=CONNECT_TIMEOUT) as sock:
                sock.settimeout(SOCKET_TIMEOUT)
                sock.sendall(b"flush_all\r\n")
                if not sock.recv(64).startswith(b"OK"):
                    raise RuntimeError("flush_all was refused")
        else:
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


def _is_server_pid(pid: int, kind: str) -> bool:
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
        server = ManagedServer(kind, port or free_port(), password=password, memory_mb=memory_mb,
                               detached=detached)
        try:
            return server.start()
        except ServersUnavailable as exc:  # the port was taken between free_port() and bind: retry
            last = exc
            if "not on PATH" in str(exc):
                raise
    raise last


# --------------------------------------------------------------------------- clients

def redis_client_for(url: str, *, decode_responses: bool = True, retries: int = 1, **kwargs):
    """A ``redis.Redis`` for ``url`` with the project's connect/socket timeouts and a short bounded retry."""
    arguments.integer("retries", retries, minimum=0)
    import redis
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry

    options = dict(
        socket_connect_timeout=CONNECT_TIMEOUT,
        socket_timeout=SOCKET_TIMEOUT,
        retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries),
        decode_responses=decode_responses,
        health_check_interval=30,
    )
    options.update(kwargs)
    return redis.Redis.from_url(url, **options)


def _redis_ping(host: str, port: int, password: str | None, timeout: float = 0.5) -> bool:
    """Whether a Redis that accepts ``password`` answers PING on ``host:port`` (raw RESP, no client)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            if password:
                arg = password.encode()
                sock.sendall(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(arg), arg))
                if not sock.recv(64).startswith(b"+OK"):
                    return False
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class JsonSerde:
    """pymemcache serde that stores JSON: safe to read back from a cache others can write to.

    The pickle serde would run code chosen by anyone who can write to the cache (the class of bug
    behind CVE-2021-33026 in Flask-Caching), so the project never uses it by default.
    """

    def serialize(self, key, value):
        if isinstance(value, bytes):
            return value, 1
        return json.dumps(value, separators=(",", ":")).encode(), 2

    def deserialize(self, key, value, flags):
        if flags == 1:
            return value
        if flags == 2:
            return json.loads(value)
        raise ValueError(f"unknown flags {flags} for key {key!r}: not written by JsonSerde")


@dataclass
class Endpoint:
    """Where one service is, who provided it, and whether the project started it (``owned``)."""

    source: str  # "environment", "make servers", "docker compose", "private"
    owned: bool


@dataclass
class RedisEndpoint(Endpoint):
    url: str = ""

    def describe(self) -> str:
        return f"Redis at {_redacted(self.url)} ({self.source})"


@dataclass
class MemcachedEndpoint(Endpoint):
    nodes: list[tuple[str, int]] = field(default_factory=list)

    def describe(self) -> str:
        nodes = ", ".join(f"{h}:{p}" for h, p in self.nodes)
        return f"memcached at {nodes} ({self.source})"


class Servers:
    """The Redis and memcached servers in use, with clients that have timeouts and key prefixes."""

    def __init__(self, redis: RedisEndpoint, memcached: MemcachedEndpoint,
                 managed: list[ManagedServer] | None = None):
        arguments.instance("redis", redis, RedisEndpoint | None)  # None: a service this caller does not use
        arguments.instance("memcached", memcached, MemcachedEndpoint | None)
        self.redis = redis
        self.memcached = memcached
        self.managed = managed or []

    # -- clients
    def redis_client(self, *, decode_responses: bool = True, **kwargs):
        """A ``redis.Redis`` with connect/socket timeouts and a short bounded retry."""
        return redis_client_for(self.redis.url, decode_responses=decode_responses, **kwargs)

    def memcached_client(self, prefix: str, *, serde=None, nodes: list[tuple[str, int]] | None = None,
                         **kwargs):
        """A pymemcache ``HashClient`` over the memcached nodes (rendezvous hashing), JSON by default.

        Every key is written under ``prefix`` (pymemcache's ``key_prefix``), so cleanup can find them.
        A node that dies or stops answering costs misses, not errors (``ignore_exc=True``): a read
        returns ``None`` and a write is dropped, the node is retried once, then left out for
        ``dead_timeout`` seconds while its keys go to the other nodes. A cache is an optimisation; its
        outage must not become the application's. Pass ``ignore_exc=False`` to see the errors.
        ``no_delay=True`` turns Nagle's algorithm off: without it, a ``get`` sent right after a
        ``noreply`` ``set`` waits for the server's delayed ACK, tens of milliseconds on Linux.
        """
        from pymemcache.client.hash import HashClient

        _check_prefix(prefix)
        for node in nodes or ():
            arguments.node("each node", node)
        options = dict(connect_timeout=CONNECT_TIMEOUT, timeout=SOCKET_TIMEOUT, serde=serde or JsonSerde(),
                       key_prefix=prefix.encode(), retry_attempts=1, retry_timeout=0.5, dead_timeout=5,
                       ignore_exc=True, no_delay=True)
        options.update(kwargs)
        return HashClient(list(nodes or self.memcached.nodes), **options)

    def memcached_node(self, index: int, prefix: str, *, serde=None, **kwargs):
        """A plain pymemcache ``Client`` for one node (index into the node list)."""
        from pymemcache.client.base import Client

        _check_prefix(prefix)
        arguments.integer("index", index, minimum=0, maximum=len(self.memcached.nodes) - 1)
        options = dict(connect_timeout=CONNECT_TIMEOUT, timeout=SOCKET_TIMEOUT, serde=serde or JsonSerde(),
                       key_prefix=prefix.encode(), no_delay=True)
        options.update(kwargs)
        return Client(self.memcached.nodes[index], **options)

    # -- information
    def versions(self) -> dict[str, str]:
        out = {}
        try:
            client = self.redis_client()
            info = client.info("server")
            out["redis"] = info.get("redis_version", "?")
            client.close()
        except Exception as exc:  # noqa: BLE001 - a banner must not fail
            out["redis"] = f"unavailable ({type(exc).__name__})"
        for i, (host, port) in enumerate(self.memcached.nodes):
            out[f"memcached[{i}]"] = memcached_version(host, port) or "unavailable"
        return out

    def describe(self) -> str:
        return f"{self.redis.describe()}\n{self.memcached.describe()}"

    def __repr__(self) -> str:
        return f"Servers({self.redis.describe()}; {self.memcached.describe()})"

    # -- cleanup
    def cleanup(self, prefix: str) -> dict[str, int]:
        """Delete every key under ``prefix`` (a ``cachelab:`` prefix) and nothing else. Returns counts."""
        _check_prefix(prefix)
        return {"redis": cleanup_redis(self.redis_client(decode_responses=False), prefix),
                "memcached": sum(cleanup_memcached(node, prefix) for node in self.memcached.nodes)}

    def stop(self) -> None:
        """Stop the servers this object started (never anyone else's)."""
        for server in self.managed:
            server.stop()


def _glob_escape(text: str) -> str:
    return "".join("\\" + c if c in "*?[]\\^" else c for c in text)


def cleanup_redis(client, prefix: str, batch: int = 500) -> int:
    """``SCAN MATCH prefix*`` + ``UNLINK``: delete this prefix's keys only. Returns how many."""
    _check_prefix(prefix)
    batch = arguments.integer("batch", batch, minimum=1)
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


def memcached_keys(node: tuple[str, int], timeout: float = SOCKET_TIMEOUT) -> list[str]:
    """Every key on one memcached node, from ``lru_crawler metadump all`` (memcached 1.4.31+)."""
    node = arguments.node("node", node)
    keys, buffer = [], b""
    with socket.create_connection(node, timeout=CONNECT_TIMEOUT) as sock:
        sock.settimeout(timeout)
        sock.sendall(b"lru_crawler metadump all\r\n")
        deadline = time.monotonic() + 10 * timeout
        while not (buffer.endswith(b"END\r\n") or buffer.startswith(b"ERROR") or b"BUSY" in buffer[:20]):
            if time.monotonic() > deadline:
                raise TimeoutError(f"metadump on {node} did not finish")
            chunk = sock.recv(65536)
            if not chunk:
                break
            buffer += chunk
    if not buffer.endswith(b"END\r\n"):
        raise RuntimeError(f"memcached {node} refused metadump: {buffer[:80]!r}")
    for line in buffer.decode("ascii", "replace").splitlines():
        if line.startswith("key="):
            keys.append(urllib.parse.unquote(line.split(" ", 1)[0][4:]))
    return keys


def cleanup_memcached(node: tuple[str, int], prefix: str) -> int:
    """Delete this prefix's keys on one memcached node, found by metadump; nothing else is touched."""
    from pymemcache.client.base import Client

    _check_prefix(prefix)
    node = arguments.node("node", node)
    targets = [k for k in memcached_keys(node) if k.startswith(prefix)]
    if not targets:
        return 0
    client = Client(node, connect_timeout=CONNECT_TIMEOUT, timeout=SOCKET_TIMEOUT)
    try:
        return sum(bool(client.delete(k, noreply=False)) for k in targets)
    finally:
        client.close()


# --------------------------------------------------------------------------- resolution

def state_file() -> Path:
    return paths.cache_dir() / STATE_FILE_NAME


def _from_env() -> tuple[RedisEndpoint | None, MemcachedEndpoint | None]:
    redis_ep = memcached_ep = None
    url = os.environ.get("REDIS_URL", "").strip()
    if url:
        parts = parse_redis_url(url)
        client = redis_client_for(url, retries=0)
        try:
            client.ping()
        except Exception as exc:  # noqa: BLE001 - turned into a message that says what to do
            raise ServersUnavailable(
                f"REDIS_URL={_redacted(url)} was given but {parts['host']}:{parts['port']} did not answer "
                f"PING ({type(exc).__name__}: {exc}). Check the server and password, or unset REDIS_URL."
            ) from exc
        finally:
            client.close()
        redis_ep = RedisEndpoint("environment", owned=False, url=url)
    spec = os.environ.get("MEMCACHED_SERVERS", "").strip()
    if spec:
        nodes = parse_memcached_servers(spec)
        dead = [f"{h}:{p}" for h, p in nodes if memcached_version(h, p) is None]
        if dead:
            raise ServersUnavailable(f"MEMCACHED_SERVERS={spec} was given but {', '.join(dead)} did not "
                                     "answer 'version'. Check the servers, or unset MEMCACHED_SERVERS.")
        memcached_ep = MemcachedEndpoint("environment", owned=False, nodes=nodes)
    return redis_ep, memcached_ep


def _from_state_file() -> tuple[RedisEndpoint | None, MemcachedEndpoint | None]:
    path = state_file()
    if not path.exists():
        return None, None
    try:
        state = json.loads(path.read_text())
        r = state["redis"]
        nodes = [("127.0.0.1", m["port"]) for m in state["memcached"]]
    except (ValueError, KeyError, TypeError):
        return None, None
    redis_ep = memcached_ep = None
    if _redis_ping("127.0.0.1", r["port"], r["password"]):
        redis_ep = RedisEndpoint("make servers", owned=True,
                                 url=ManagedServer("redis", r["port"], password=r["password"]).url)
    if nodes and all(memcached_version(h, p, timeout=0.5) for h, p in nodes):
        memcached_ep = MemcachedEndpoint("make servers", owned=True, nodes=nodes)
    return redis_ep, memcached_ep


def _from_compose() -> tuple[RedisEndpoint | None, MemcachedEndpoint | None]:
    redis_ep = memcached_ep = None
    password = redis_password()
    if _redis_ping("127.0.0.1", COMPOSE_REDIS_PORT, password):
        redis_ep = RedisEndpoint("docker compose", owned=False,
                                 url=ManagedServer("redis", COMPOSE_REDIS_PORT, password=password).url)
    nodes = [("127.0.0.1", p) for p in COMPOSE_MEMCACHED_PORTS]
    if all(memcached_version(h, p, timeout=0.5) for h, p in nodes):
        memcached_ep = MemcachedEndpoint("docker compose", owned=False, nodes=nodes)
    return redis_ep, memcached_ep


_connected: Servers | None = None
_connect_lock = threading.Lock()


def forget() -> None:
    """Forget the servers :func:`connect` resolved, so that the next call resolves afresh."""
    global _connected
    with _connect_lock:
        _connected = None


def connect(*, start: bool = True, fresh: bool = False) -> Servers:
    """The servers for this process, found or started as the module docstring says (cached).

    ``start=False`` never starts a private server (it raises instead); ``fresh=True`` resolves again.
    """
    global _connected
    with _connect_lock:
        if _connected is not None and not fresh:
            return _connected
        redis_ep, memcached_ep = _from_env()
        for finder in (_from_state_file, _from_compose):
            if redis_ep and memcached_ep:
                break
            found_redis, found_memcached = finder()
            redis_ep = redis_ep or found_redis
            memcached_ep = memcached_ep or found_memcached
        managed: list[ManagedServer] = []
        missing = [name for name, ep in (("Redis", redis_ep), ("memcached", memcached_ep)) if ep is None]
        if missing and not start:
            raise ServersUnavailable(f"No {' or '.join(missing)} found.\n" + HOW_TO_GET_SERVERS)
        try:
            if redis_ep is None:
                server = start_redis()
                managed.append(server)
                redis_ep = RedisEndpoint("private", owned=True, url=server.url)
            if memcached_ep is None:
                nodes = [start_memcached() for _ in range(MEMCACHED_NODES)]
                managed.extend(nodes)
                memcached_ep = MemcachedEndpoint("private", owned=True, nodes=[n.address for n in nodes])
        except ServersUnavailable as exc:
            for server in managed:
                server.stop()
            raise ServersUnavailable(f"No {' or '.join(missing)} found, and cachelab could not start one: "
                                     f"{str(exc).splitlines()[0]}\n" + HOW_TO_GET_SERVERS) from None
        _connected = Servers(redis_ep, memcached_ep, managed)
        return _connected


# --------------------------------------------------------------------------- `make servers` / `make stop`

def servers_up() -> str:
    """Start detached servers for ``make servers``/``make run`` unless servers are already available."""
    redis_ep, memcached_ep = _from_env()
    if redis_ep and memcached_ep:
        return "Using the servers given by REDIS_URL and MEMCACHED_SERVERS."
    state_redis, state_mc = _from_state_file()
    if state_redis and state_mc:
        return "cachelab servers already running:\n  " + Servers(state_redis, state_mc).describe().replace(
            "\n", "\n  ")
    compose_redis, compose_mc = _from_compose()
    if compose_redis and compose_mc:
        return "Using the docker compose servers."
    servers_down(quiet=True)
    redis_server = start_redis(detached=True)
    nodes = [start_memcached(detached=True) for _ in range(MEMCACHED_NODES)]
    state = {"redis": {"port": redis_server.port, "password": redis_server.password, "pid": redis_server.pid},
             "memcached": [{"port": n.port, "pid": n.pid} for n in nodes]}
    path = state_file()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds a password
    with os.fdopen(fd, "w") as handle:
        json.dump(state, handle)
    return (f"Started redis-server on 127.0.0.1:{redis_server.port} and memcached on 127.0.0.1:"
            f"{', '.join(str(n.port) for n in nodes)} (stop them with `make stop`).")


def servers_down(quiet: bool = False) -> str:
    """Stop the servers that ``servers_up`` started (only those: pids checked against the state file)."""
    path = state_file()
    if not path.exists():
        return "" if quiet else "No cachelab servers running."
    try:
        state = json.loads(path.read_text())
        entries = [("redis", state["redis"])] + [("memcached", m) for m in state["memcached"]]
    except (ValueError, KeyError, TypeError):
        entries = []
    stopped = 0
    for kind, entry in entries:
        server = ManagedServer(kind, entry["port"], pid=entry.get("pid"))
        if server.pid and pid_alive(server.pid) and _is_server_pid(server.pid, kind):
            server.stop()
            stopped += 1
    path.unlink(missing_ok=True)
    return f"Stopped {stopped} cachelab server(s)."
