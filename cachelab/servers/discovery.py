"""Finding the servers: the user's, ``make servers``'s, docker compose's, or private ones started here.

:func:`connect` resolves each service in the order the package docstring gives; :class:`Servers` holds
what it found, with clients that have timeouts and key prefixes, and the cleanup of one prefix.
:func:`servers_up` and :func:`servers_down` are ``make servers`` and ``make stop``: the state file records
the pids of the detached servers started, so that only those are ever stopped.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import statistics
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from .. import arguments, paths
from ..keys import check_prefix
from . import config, probes
from .addresses import parse_memcached_servers, parse_redis_url, redacted
from .cleanup import cleanup_memcached, cleanup_redis, cleanup_written
from .clients import memcached_client_for, memcached_node_client, redis_client_for
from .config import ServersUnavailable
from .managed import ManagedServer, is_server_pid, pid_alive, start_memcached, start_redis


def _redis_version(client) -> str:
    """The server's version: from ``INFO server``, or, for a user whose ACL leaves out ``@dangerous`` (where
    ``INFO`` belongs, as for a participant's user on a room's shared server), from ``HELLO``, which every
    connection may send."""
    from redis.exceptions import NoPermissionError

    try:
        return str(client.info("server").get("redis_version", "?"))
    except NoPermissionError:
        reply = client.execute_command("HELLO")
        if isinstance(reply, list | tuple):  # RESP2: a flat list of names and values
            reply = dict(zip(reply[::2], reply[1::2], strict=True))
        reply = {(k.decode() if isinstance(k, bytes) else k): v for k, v in reply.items()}
        version = reply.get("version", "?")
        return version.decode() if isinstance(version, bytes) else str(version)


@dataclass
class Endpoint:
    """Where one service is, who provided it, and whether the project started it (``owned``)."""

    source: str  # "environment", "make servers", "docker compose", "private"
    owned: bool


@dataclass
class RedisEndpoint(Endpoint):
    url: str = ""

    def describe(self) -> str:
        return f"Redis at {redacted(self.url)} ({self.source})"


@dataclass
class MemcachedEndpoint(Endpoint):
    nodes: list[tuple[str, int]] = field(default_factory=list)

    @property
    def projects_own(self) -> bool:
        """Servers of the project's own (``make servers``, docker compose, private), not the user's."""
        return self.source != "environment"

    def describe(self) -> str:
        nodes = ", ".join(f"{h}:{p}" for h, p in self.nodes)
        if self.projects_own:
            return f"memcached at {nodes} ({self.source})"
        return (f"memcached at {nodes} ({self.source}: a server of your own. Cleanup deletes, by name, only the "
                "keys this project wrote down as it stored them; it never lists or walks the node's keys)")


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
        """A pymemcache ``HashClient`` over the memcached nodes: see :func:`.clients.memcached_client_for`."""
        return memcached_client_for(list(nodes or self.memcached.nodes), prefix, serde=serde, **kwargs)

    def memcached_node(self, index: int, prefix: str, *, serde=None, **kwargs):
        """A plain pymemcache ``Client`` for one node (index into the node list)."""
        arguments.integer("index", index, minimum=0, maximum=len(self.memcached.nodes) - 1)
        return memcached_node_client(self.memcached.nodes[index], prefix, serde=serde, **kwargs)

    # -- information
    def versions(self) -> dict[str, str]:
        out = {}
        try:
            client = self.redis_client()
            try:
                out["redis"] = _redis_version(client)
            finally:
                client.close()
        except Exception as exc:  # noqa: BLE001 - a banner must not fail
            out["redis"] = f"unavailable ({type(exc).__name__})"
        for i, (host, port) in enumerate(self.memcached.nodes):
            out[f"memcached[{i}]"] = probes.memcached_version(host, port) or "unavailable"
        return out

    def round_trip_ns(self, service: str = "redis", samples: int = 21) -> float:
        """The median time of a request that does nothing (Redis ``PING``, memcached ``version``), in ns.

        What a placement costs every request: tens of microseconds on loopback, milliseconds across a room.
        """
        if service not in ("redis", "memcached"):
            raise ValueError(f"service must be 'redis' or 'memcached', not {service!r}")
        samples = arguments.integer("samples", samples, minimum=1)
        if service == "redis":
            client = self.redis_client()
            call = client.ping
        else:
            client = self.memcached_node(0, "cachelab:rtt:")
            call = client.version
        try:
            for _ in range(3):
                call()
            times = []
            for _ in range(samples):
                t0 = time.perf_counter_ns()
                call()
                times.append(time.perf_counter_ns() - t0)
        finally:
            client.close()
        return float(statistics.median(times))

    def room_for(self, service: str, planned_bytes: int) -> tuple[bool, str]:
        """Whether ``planned_bytes`` more can be written without pushing anyone's keys out: ``(ok, why)``.

        On a server the project started (``make servers``, a private one), always. On anyone else's (the
        environment's, docker compose's, a room's), only while the server reports room for four times the plan
        and has never evicted (memcached ``stats``: ``limit_maxbytes``, ``bytes``, ``evictions``; Redis ``INFO
        memory``: ``maxmemory``, ``used_memory``; with no ``maxmemory``, 64 MB at most). A demo that writes in bulk
        asks first, and writes to a private server, or less, when the answer is no.
        """
        if service not in ("redis", "memcached"):
            raise ValueError(f"service must be 'redis' or 'memcached', not {service!r}")
        planned = arguments.integer("planned_bytes", planned_bytes, minimum=0)
        endpoint = self.redis if service == "redis" else self.memcached
        if endpoint.owned:
            return True, f"{service} was started by cachelab ({endpoint.source})"
        try:
            if service == "memcached":
                stats = [probes.memcached_stats(host, port) for host, port in endpoint.nodes]
                if any(not s for s in stats):
                    return False, "a memcached node did not answer `stats`"
                evicted = sum(int(s.get("evictions", 0)) for s in stats)
                free = min(int(s["limit_maxbytes"]) - int(s["bytes"]) for s in stats)
                if evicted:
                    return False, f"the memcached nodes have evicted {evicted:,} items already: they are full"
                need = 4 * planned  # spread over the nodes, but one node may get most of a small plan
                return (free >= need, f"the fullest memcached node has {free / 1e6:,.1f} MB free, "
                        f"{'enough' if free >= need else 'not enough'} for {planned / 1e6:,.1f} MB four times over")
            client = self.redis_client()
            try:
                info = client.info("memory")
            finally:
                client.close()
            limit, used = int(info.get("maxmemory", 0)), int(info.get("used_memory", 0))
            if not limit:
                ok = planned <= 64_000_000
                return ok, (f"Redis has no maxmemory; a plan of {planned / 1e6:,.1f} MB is "
                            f"{'within' if ok else 'over'} 64 MB")
            free, need = limit - used, 4 * planned
            return (free >= need, f"Redis has {free / 1e6:,.1f} MB free under its maxmemory, "
                    f"{'enough' if free >= need else 'not enough'} for {planned / 1e6:,.1f} MB four times over")
        except Exception as exc:  # noqa: BLE001 - when in doubt, write nothing in bulk there
            return False, f"{service} did not say how full it is ({type(exc).__name__})"

    @contextlib.contextmanager
    def bulk_memcached(self, planned_bytes: int, *, what: str = "this demo", nodes: int = 3,
                       memory_mb: int = 16) -> Iterator[list[tuple[str, int]] | None]:
        """The memcached nodes a bulk write of ``planned_bytes`` may use, for the length of a ``with`` block.

        These servers' own nodes while :meth:`room_for` says they have room. Otherwise ``nodes`` private nodes
        started for the block (``memory_mb`` each) and stopped after it, when the ``memcached`` binary is on
        ``PATH``; otherwise ``None``, and the caller writes nothing in bulk. In those two cases one printed line
        names ``what`` and says why::

            with lab.servers.bulk_memcached(2_000 * 300, what="the replay") as nodes:
                if nodes:
                    client = lab.servers.memcached_client(lab.prefix, nodes=nodes)
        """
        ok, why = self.room_for("memcached", planned_bytes)
        if ok:
            yield list(self.memcached.nodes)
            return
        if shutil.which("memcached") is None:
            print(f"Skipped {what}: {why}, and with no memcached binary on PATH no private node can stand in.")
            yield None
            return
        private: list[ManagedServer] = []
        try:
            for _ in range(arguments.integer("nodes", nodes, minimum=1)):
                private.append(start_memcached(memory_mb=memory_mb))
            print(f"Writing {what} to {nodes} private memcached nodes started here instead: {why}.")
            yield [server.address for server in private]
        finally:
            for server in private:
                server.stop()

    @contextlib.contextmanager
    def bulk_redis(self, planned_bytes: int, *, what: str = "this demo", memory_mb: int = 16) -> Iterator[str | None]:
        """The URL of the Redis a bulk write of ``planned_bytes`` may use, for the length of a ``with`` block.

        This Redis while :meth:`room_for` says it has room. Otherwise a private Redis started for the block
        (``memory_mb``, ``allkeys-lru`` as every server of the project) and stopped after it, when
        ``redis-server`` is on ``PATH``; otherwise ``None``, and the caller writes nothing in bulk (or writes
        less). In those two cases one printed line names ``what`` and says why::

            with lab.servers.bulk_redis(2_000 * 300, what="the replay") as url:
                if url:
                    client = redis_client_for(url)
        """
        ok, why = self.room_for("redis", planned_bytes)
        if ok:
            yield self.redis.url
            return
        if shutil.which("redis-server") is None:
            print(f"Skipped {what} on this Redis: {why}, and with no redis-server on PATH no private server can "
                  "stand in.")
            yield None
            return
        server = start_redis(memory_mb=memory_mb)
        try:
            print(f"Writing {what} to a private Redis started here instead: {why}.")
            yield server.url
        finally:
            server.stop()

    def describe(self) -> str:
        out = f"{self.redis.describe()}\n{self.memcached.describe()}"
        if not (self.redis.owned and self.memcached.owned):
            out += ("\nServers not started by cachelab: only keys under cachelab:<participant>:<notebook>: are "
                    "written and deleted, and a demo that writes in bulk first checks that the server has room "
                    "(Servers.room_for), so that nobody's keys are pushed out.")
        return out

    def __repr__(self) -> str:
        return f"Servers({self.redis.describe()}; {self.memcached.describe()})"

    # -- cleanup
    def cleanup(self, prefix: str) -> dict[str, int]:
        """Delete every key under ``prefix`` (a ``cachelab:`` prefix) and nothing else. Returns counts."""
        check_prefix(prefix)
        return {"redis": cleanup_redis(self.redis_client(decode_responses=False), prefix),
                "memcached": self.cleanup_memcached(prefix)}

    def cleanup_memcached(self, prefix: str) -> int:
        """memcached's part of :meth:`cleanup`. On the project's own servers, every key under ``prefix`` found
        by ``lru_crawler metadump``; on a server of the user's own, only the keys the project wrote down
        (:func:`.cleanup.cleanup_written`), so that a production node's keys are never walked."""
        from . import written

        check_prefix(prefix)
        nodes = self.memcached.nodes
        if not self.memcached.projects_own:
            return cleanup_written(nodes, prefix)
        deleted = sum(cleanup_memcached(node, prefix) for node in nodes)
        written.forget_written(written.written_under(prefix))  # deleted already, with every other key of the prefix
        return deleted

    def stop(self) -> None:
        """Stop the servers this object started (never anyone else's)."""
        for server in self.managed:
            server.stop()


def state_file() -> Path:
    return paths.cache_dir() / config.STATE_FILE_NAME


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
                f"REDIS_URL={redacted(url)} was given but {parts['host']}:{parts['port']} did not answer "
                f"PING ({type(exc).__name__}: {exc}). Check the server and password, or unset REDIS_URL."
            ) from exc
        finally:
            client.close()
        redis_ep = RedisEndpoint("environment", owned=False, url=url)
    spec = os.environ.get("MEMCACHED_SERVERS", "").strip()
    if spec:
        nodes = parse_memcached_servers(spec)
        dead = [f"{h}:{p}" for h, p in nodes if probes.memcached_version(h, p) is None]
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
    if probes.redis_ping("127.0.0.1", r["port"], r["password"]):
        redis_ep = RedisEndpoint("make servers", owned=True,
                                 url=ManagedServer("redis", r["port"], password=r["password"]).url)
    if nodes and all(probes.memcached_version(h, p, timeout=0.5) for h, p in nodes):
        memcached_ep = MemcachedEndpoint("make servers", owned=True, nodes=nodes)
    return redis_ep, memcached_ep


def _from_compose() -> tuple[RedisEndpoint | None, MemcachedEndpoint | None]:
    redis_ep = memcached_ep = None
    password = config.redis_password()
    if probes.redis_ping("127.0.0.1", config.COMPOSE_REDIS_PORT, password):
        redis_ep = RedisEndpoint("docker compose", owned=False,
                                 url=ManagedServer("redis", config.COMPOSE_REDIS_PORT, password=password).url)
    nodes = [("127.0.0.1", p) for p in config.COMPOSE_MEMCACHED_PORTS]
    if all(probes.memcached_version(h, p, timeout=0.5) for h, p in nodes):
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
            raise ServersUnavailable(f"No {' or '.join(missing)} found.\n" + config.HOW_TO_GET_SERVERS)
        try:
            if redis_ep is None:
                server = start_redis()
                managed.append(server)
                redis_ep = RedisEndpoint("private", owned=True, url=server.url)
            if memcached_ep is None:
                nodes = [start_memcached() for _ in range(config.MEMCACHED_NODES)]
                managed.extend(nodes)
                memcached_ep = MemcachedEndpoint("private", owned=True, nodes=[n.address for n in nodes])
        except ServersUnavailable as exc:
            for server in managed:
                server.stop()
            raise ServersUnavailable(f"No {' or '.join(missing)} found, and cachelab could not start one: "
                                     f"{str(exc).splitlines()[0]}\n" + config.HOW_TO_GET_SERVERS) from None
        _connected = Servers(redis_ep, memcached_ep, managed)
        return _connected


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
    nodes = [start_memcached(detached=True) for _ in range(config.MEMCACHED_NODES)]
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
        if server.pid and pid_alive(server.pid) and is_server_pid(server.pid, kind):
            server.stop()
            stopped += 1
    path.unlink(missing_ok=True)
    return f"Stopped {stopped} cachelab server(s)."
