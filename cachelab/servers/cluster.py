"""A real Redis Cluster for notebook 08: found, or started from ``redis-server --cluster-enabled yes``.

:func:`connect_cluster` resolves the cluster in this order:

1. ``REDIS_CLUSTER_URL`` (``redis://:PASSWORD@HOST:PORT``, any one node of your cluster): exactly that
   cluster, or a clear error. Only keys under the notebook's prefix are written there, and deleted.
2. The ``docker compose --profile cluster up -d`` cluster of this repository, on 127.0.0.1:17001-17006
   with the compose password.
3. ``redis-server`` on ``PATH``: a private cluster (:func:`start_cluster`), three primaries and one
   replica each, stopped when this process exits.
4. Otherwise :class:`ServersUnavailable`, within seconds, naming the ways to get one.

A cluster found by 1 or 2 is a :class:`Cluster`: clients, topology, cleanup by prefix. Only a
:class:`ManagedCluster`, started by this process, can be hurt by a demo: a node killed or hung, a
replica cut off its primary, slots moved. The project never calls ``FLUSHALL`` on a cluster, and never
kills, hangs or reshards one it did not start.

Every node of a private cluster has the flags of :mod:`.config` (loopback only, a password, a memory cap,
no persistence) plus ``--masterauth`` (replicas authenticate to their primary), an explicit cluster bus
port (both ports are free ports, retried on a clash), ``--repl-diskless-sync-delay 0`` (a new replica
syncs at once instead of after five seconds) and a short ``--cluster-node-timeout`` for the demos. As
root the nodes run as ``nobody``, and each dies with the process that started it (``PR_SET_PDEATHSIG``,
which Linux sends when the *thread* that started the child ends: start nodes from the main thread).
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
import subprocess
import tempfile
import time
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path

from .. import arguments
from ..keys import check_prefix
from . import config, faults, probes
from .addresses import parse_redis_url, redacted
from .config import ServersUnavailable
from .managed import ManagedServer, _unprivileged_user

SLOTS = 16384
CLUSTER_URL_VAR = "REDIS_CLUSTER_URL"
COMPOSE_CLUSTER_PORTS = (17001, 17002, 17003, 17004, 17005, 17006)
NODE_TIMEOUT_MS = 1000  # failure detection after 1 s: a demo's failover takes a few seconds, not fifteen
MIN_VERSION = (6, 2, 0)  # CLUSTER SHARDS-free commands only; CLIENT TRACKING is 6.0, ADDSLOTSRANGE 7.0

HOW_TO_GET_A_CLUSTER = """\
Get a Redis Cluster in one of three ways, then rerun:
  1. Binaries: sudo apt install redis-server   or   brew install redis
               (cachelab then starts a private cluster of six nodes itself, in about two seconds)
  2. Docker:   docker compose --profile cluster up -d   (six nodes on 127.0.0.1:17001-17006)
  3. Your own: export REDIS_CLUSTER_URL=redis://:PASSWORD@HOST:PORT   (any one node of the cluster;
               cachelab writes only keys starting with 'cachelab:' there and deletes only those)"""


def redis_server_version(exe: str | None = None) -> tuple[int, int, int]:
    """The version of ``redis-server`` on PATH (``valkey-server`` prints the same ``v=`` field)."""
    exe = exe or shutil.which("redis-server")
    if not exe:
        raise ServersUnavailable("redis-server is not on PATH.\n" + HOW_TO_GET_A_CLUSTER)
    try:
        out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise ServersUnavailable(f"{exe} --version failed: {exc}") from None
    found = re.search(r"v=(\d+)\.(\d+)\.(\d+)", out.stdout + out.stderr)
    if not found:
        raise ServersUnavailable(f"cannot read the version of {exe} from {(out.stdout + out.stderr)[:120]!r}")
    return tuple(int(x) for x in found.groups())


def check_cluster_support(exe: str | None = None) -> tuple[int, int, int]:
    """The version of ``redis-server``, or :class:`ServersUnavailable` at once if it cannot run a cluster here."""
    version = redis_server_version(exe)
    if version < MIN_VERSION:
        wanted = ".".join(map(str, MIN_VERSION))
        raise ServersUnavailable(
            f"redis-server {'.'.join(map(str, version))} on PATH is too old for this notebook's cluster "
            f"(it needs {wanted} or later: cluster mode with CLIENT TRACKING).\n" + HOW_TO_GET_A_CLUSTER)
    return version


# --------------------------------------------------------------------------- the nodes

@dataclass(eq=False)
class ClusterNode(ManagedServer):
    """One ``redis-server --cluster-enabled yes`` started by this project (see the module docstring)."""

    bus_port: int = 0
    node_timeout_ms: int = NODE_TIMEOUT_MS

    def command(self) -> list[str]:
        cmd = super().command()
        cmd += ["--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
                "--cluster-node-timeout", str(self.node_timeout_ms), "--repl-diskless-sync-delay", "0"]
        if self.password:
            cmd += ["--masterauth", self.password]
        if self.bus_port:
            cmd += ["--cluster-port", str(self.bus_port)]
        return cmd

    def start(self, timeout: float = 10.0) -> ClusterNode:
        if self.workdir is None:
            self.workdir = Path(tempfile.mkdtemp(prefix="cachelab-cluster-"))
        drop = _unprivileged_user()
        if drop:  # the node writes nodes.conf into its folder, as 'nobody'
            os.chown(self.workdir, *drop)
        super().start(timeout)
        return self

    @property
    def name(self) -> str:
        return f"{self.host}:{self.port}"

    def kill(self) -> None:
        """SIGKILL: a crash. Nothing is handed over; the cluster has to notice by itself."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(5)
        self.stop()  # forget it (nothing left to stop)

    def client(self, **kwargs):
        """A plain ``redis.Redis`` to this one node (no redirections followed)."""
        return _node_client(self.host, self.port, self.password, **kwargs)


def _node_client(host: str, port: int, password: str | None, *, username: str | None = None, retries: int = 1,
                 **kwargs):
    import redis
    from redis.backoff import ExponentialBackoff
    from redis.retry import Retry

    options = dict(socket_connect_timeout=config.CONNECT_TIMEOUT, socket_timeout=config.SOCKET_TIMEOUT,
                   decode_responses=True, retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries))
    options.update(kwargs)
    return redis.Redis(host=host, port=port, password=password, username=username, **options)


def _start_node(password: str, memory_mb: int, node_timeout_ms: int, with_bus_port: bool,
                attempts: int = 5) -> ClusterNode:
    last: Exception | None = None
    for _ in range(attempts):
        port, bus = probes.free_port(), probes.free_port()
        if not with_bus_port:  # before 7.0 the bus is always port + 10000
            if port + 10000 > 65535 or probes.port_in_use(port + 10000):
                continue
            bus = 0
        node = ClusterNode("redis", port, password=password, memory_mb=memory_mb, bus_port=bus,
                           node_timeout_ms=node_timeout_ms)
        try:
            return node.start()
        except ServersUnavailable as exc:  # a port was taken between free_port() and bind: retry
            last = exc
            if "not on PATH" in str(exc):
                raise
            with contextlib.suppress(Exception):
                shutil.rmtree(node.workdir, ignore_errors=True)
    raise ServersUnavailable(f"could not start a cluster node in {attempts} attempts: {last}")


# --------------------------------------------------------------------------- any cluster

@dataclass
class Cluster:
    """A Redis Cluster in use: where it is, who provided it, and clients with timeouts."""

    startup_nodes: list[tuple[str, int]]
    password: str | None = None
    username: str | None = None
    source: str = "private"  # "environment", "docker compose", "private"
    owned: bool = False

    def client(self, *, retries: int = 3, **kwargs):
        """A ``redis.cluster.RedisCluster`` with the project's timeouts and a bounded retry.

        ``retries`` counts attempts after a connection error, a timeout or ``CLUSTERDOWN``; in redis-py
        8.1 the cluster client retries at once, refreshing its slot table in between (it takes only the
        count from its ``Retry``, not the backoff).
        """
        from redis.backoff import ExponentialBackoff
        from redis.cluster import ClusterNode as PyClusterNode
        from redis.cluster import RedisCluster
        from redis.retry import Retry

        arguments.integer("retries", retries, minimum=0)
        options = dict(socket_connect_timeout=config.CONNECT_TIMEOUT, socket_timeout=config.SOCKET_TIMEOUT,
                       decode_responses=True, retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), retries))
        options.update(kwargs)
        return RedisCluster(startup_nodes=[PyClusterNode(h, p) for h, p in self.startup_nodes],
                            password=self.password, username=self.username, **options)

    def node_client(self, host: str, port: int, **kwargs):
        """A plain ``redis.Redis`` to one node of this cluster (``CLUSTER`` commands, ``INFO``)."""
        return _node_client(host, port, self.password, username=self.username, **kwargs)

    def topology(self) -> list[dict]:
        """Every node as ``{'address', 'id', 'role', 'primary_id', 'slots', 'connected', 'myself', 'flags'}``, from
        ``CLUSTER NODES``."""
        last: Exception | None = None
        for host, port in self.startup_nodes:
            try:
                with contextlib.closing(self.node_client(host, port)) as c:
                    nodes = parse_cluster_nodes(c.execute_command("CLUSTER", "NODES"))
                for n in nodes:  # a node that has met no other does not know its own address: ':port'
                    if not n["address"][0]:
                        n["address"] = (host, n["address"][1])
                return nodes
            except Exception as exc:  # noqa: BLE001 - a node may be down: ask the next one
                last = exc
        raise ServersUnavailable(f"no node of the cluster answered CLUSTER NODES: {last}")

    def primaries(self) -> list[tuple[str, int]]:
        """The addresses of the primaries that serve slots, in slot order."""
        prim = [n for n in self.topology() if n["role"] == "primary" and n["slots"] and n["connected"]]
        return [tuple(n["address"]) for n in sorted(prim, key=lambda n: n["slots"][0][0])]

    def info(self, section: str | None = None) -> dict[str, dict]:
        """``INFO`` of every reachable node, by address ``'host:port'``."""
        out = {}
        for node in self.topology():
            if not node["connected"]:
                continue
            host, port = node["address"]
            with contextlib.suppress(Exception), contextlib.closing(self.node_client(host, port)) as c:
                out[f"{host}:{port}"] = c.info(section) if section else c.info()
        return out

    def version(self) -> str:
        """The server's version, as ``INFO`` gives it (Valkey's own version, not its Redis-compatible one)."""
        infos = self.info("server")
        info = next(iter(infos.values()), {}) if infos else {}
        return str(info.get("valkey_version") or info.get("redis_version", "?"))

    def server(self) -> str:
        """``'Redis 7.0.15'`` or ``'Valkey 9.1.2'``: what the nodes are."""
        infos = self.info("server")
        info = next(iter(infos.values()), {}) if infos else {}
        if "valkey_version" in info:
            return f"Valkey {info['valkey_version']}"
        return f"Redis {info.get('redis_version', '?')}"

    def describe(self) -> str:
        nodes = self.topology()
        n_prim = sum(n["role"] == "primary" and bool(n["slots"]) for n in nodes)
        return (f"Redis Cluster of {len(nodes)} nodes ({n_prim} primaries) at "
                f"{', '.join(f'{h}:{p}' for h, p in self.startup_nodes[:1])}... ({self.source})")

    def cleanup(self, prefix: str) -> int:
        """Delete every key under ``prefix`` (a ``cachelab:`` prefix) on every primary, and nothing else.

        ``SCAN MATCH prefix*`` on each primary, then one ``UNLINK`` per key (in a cluster a multi-key
        ``UNLINK`` must stay within one slot). Returns how many keys were deleted.
        """
        check_prefix(prefix)
        pattern = "".join("\\" + c if c in "*?[]\\^" else c for c in prefix) + "*"
        deleted = 0
        for host, port in self.primaries():
            with contextlib.closing(self.node_client(host, port)) as c:
                batch = []
                for key in c.scan_iter(match=pattern, count=1000):
                    batch.append(key)
                    if len(batch) >= 500:
                        deleted += _unlink_each(c, batch)
                        batch = []
                deleted += _unlink_each(c, batch)
        return deleted

    def stop(self) -> None:
        """Nothing to stop: this cluster is someone else's (see :class:`ManagedCluster`)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _unlink_each(client, keys) -> int:
    if not keys:
        return 0
    with client.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.unlink(key)
        return sum(pipe.execute())


def parse_cluster_nodes(text: str) -> list[dict]:
    """``CLUSTER NODES`` as a list of dicts (see :meth:`Cluster.topology`), each with its ``flags`` as a set
    (``{'master', 'fail'}``: ``fail?`` is one node's suspicion, ``fail`` the cluster's agreement)."""
    if isinstance(text, bytes):
        text = text.decode()
    nodes = []
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 8:
            continue
        address = parts[1].split("@")[0]
        host, _, port = address.rpartition(":")
        flags = set(parts[2].split(","))
        slots = []
        for item in parts[8:]:
            if item.startswith("["):
                continue  # a slot being migrated or imported
            lo, _, hi = item.partition("-")
            slots.append((int(lo), int(hi or lo)))
        nodes.append({"address": (host, int(port)), "id": parts[0],
                      "role": "primary" if "master" in flags else "replica",
                      "primary_id": None if parts[3] == "-" else parts[3], "slots": slots,
                      "connected": parts[7] == "connected" and not flags & {"fail", "fail?", "noaddr"},
                      "myself": "myself" in flags, "flags": flags})
    return nodes


# --------------------------------------------------------------------------- a cluster started here

@dataclass
class ManagedCluster(Cluster):
    """A private Redis Cluster started by this process: the only kind a demo may hurt."""

    primaries_count: int = 3
    replicas_per_primary: int = 1
    node_timeout_ms: int = NODE_TIMEOUT_MS
    memory_mb: int = 64
    nodes: list[ClusterNode] = field(default_factory=list)
    started_in_s: float = 0.0
    creation_steps: list[str] = field(default_factory=list)

    def __post_init__(self):
        arguments.integer("primaries", self.primaries_count, minimum=1)
        arguments.integer("replicas_per_primary", self.replicas_per_primary, minimum=0)
        arguments.integer("node_timeout_ms", self.node_timeout_ms, minimum=100)
        self.owned = True
        self.source = "private"
        if self.password is None:
            self.password = secrets.token_urlsafe(16)

    # -- start and stop
    def launch(self) -> ManagedCluster:
        """Start the node processes (they then take about two seconds before a primary accepts writes)."""
        self._t0 = time.perf_counter()
        version = check_cluster_support()
        total = self.primaries_count * (1 + self.replicas_per_primary)
        try:
            for _ in range(total):
                self.nodes.append(_start_node(self.password, self.memory_mb, self.node_timeout_ms,
                                              with_bus_port=version >= (7, 0, 0)))
        except BaseException:
            self.stop()
            raise
        self.startup_nodes = [n.address for n in self.nodes]
        self._version = version
        return self

    def form(self, timeout: float = 20.0) -> ManagedCluster:
        """Assign the slots, join the nodes, attach the replicas, and wait for ``cluster_state:ok``."""
        try:
            self._create(time.monotonic() + timeout)
        except BaseException:
            self.stop()
            raise
        self.started_in_s = time.perf_counter() - self._t0
        return self

    def start(self, timeout: float = 20.0) -> ManagedCluster:
        return self.launch().form(timeout)

    def _create(self, deadline: float) -> None:
        prim = self.nodes[:self.primaries_count]
        clients = [n.client() for n in self.nodes]
        steps = self.creation_steps
        try:
            for i, c in enumerate(clients):  # distinct epochs, as redis-cli --cluster create does
                c.execute_command("CLUSTER", "SET-CONFIG-EPOCH", i + 1)
                steps.append(f"{self.nodes[i].name}: CLUSTER SET-CONFIG-EPOCH {i + 1}")
            for i, c in enumerate(clients[:len(prim)]):
                lo, hi = i * SLOTS // len(prim), (i + 1) * SLOTS // len(prim) - 1
                if self._version >= (7, 0, 0):
                    c.execute_command("CLUSTER", "ADDSLOTSRANGE", lo, hi)
                    sent = f"ADDSLOTSRANGE {lo} {hi}"
                else:  # no ADDSLOTSRANGE before 7.0: one ADDSLOTS that names every slot
                    slots = list(range(lo, hi + 1))
                    c.execute_command("CLUSTER", "ADDSLOTS", *slots)
                    sent = "ADDSLOTS " + " ".join(map(str, slots if len(slots) <= 3 else [lo, lo + 1, "...", hi]))
                steps.append(f"{prim[i].name}: CLUSTER {sent}")
            for n in self.nodes[1:]:
                extra = [n.bus_port] if n.bus_port else []
                clients[0].execute_command("CLUSTER", "MEET", n.host, n.port, *extra)
                bus = f" {n.bus_port}" if n.bus_port else ""
                steps.append(f"{self.nodes[0].name}: CLUSTER MEET {n.host} {n.port}{bus}")
            ids = [c.execute_command("CLUSTER", "MYID") for c in clients]
            self._wait(lambda: all(_knows_all(c, len(self.nodes)) for c in clients), deadline, "the nodes to meet")
            for j, c in enumerate(clients[len(prim):]):
                primary = j % len(prim)
                c.execute_command("CLUSTER", "REPLICATE", ids[primary])
                steps.append(f"{self.nodes[len(prim) + j].name}: CLUSTER REPLICATE <id of {prim[primary].name}>")
        finally:
            for c in clients:
                c.close()
        self.wait_ok(max(0.1, deadline - time.monotonic()))

    @staticmethod
    def _wait(ready, deadline: float, what: str) -> None:
        while not ready():
            if time.monotonic() > deadline:
                raise ServersUnavailable(f"the private cluster timed out waiting for {what}")
            time.sleep(0.02)

    def wait_ok(self, timeout: float = 20.0) -> None:
        """Wait until every running node says ``cluster_state:ok`` and every replica's link is up."""
        deadline = time.monotonic() + timeout
        problems: list[str] = []

        def ready() -> bool:
            problems.clear()
            for n in self.nodes:
                if not n.alive():
                    continue
                try:
                    with contextlib.closing(n.client(socket_timeout=1)) as c:
                        state = c.execute_command("CLUSTER", "INFO")
                        repl = c.info("replication")
                except Exception as exc:  # noqa: BLE001 - not ready yet
                    problems.append(f"{n.name}: {type(exc).__name__}")
                    continue
                if "cluster_state:ok" not in state:
                    problems.append(f"{n.name}: cluster_state not ok")
                elif repl.get("role") == "slave" and repl.get("master_link_status") != "up":
                    problems.append(f"{n.name}: replica link {repl.get('master_link_status')}")
            return not problems

        while not ready():
            if time.monotonic() > deadline:
                raise ServersUnavailable("the cluster is not ok: " + "; ".join(problems))
            time.sleep(0.02)

    def stop(self) -> None:
        """Stop every node (SIGTERM, then SIGKILL) and remove their folders."""
        for n in self.nodes:
            with contextlib.suppress(Exception):
                n.stop()
            if n.workdir is not None:
                shutil.rmtree(n.workdir, ignore_errors=True)

    def alive_nodes(self) -> list[ClusterNode]:
        return [n for n in self.nodes if n.alive()]

    # -- who is who
    def node_at(self, address) -> ClusterNode:
        host, port = address
        for n in self.nodes:
            if n.port == int(port):
                return n
        raise KeyError(f"no node of this cluster at {host}:{port}")

    def node_id(self, node: ClusterNode) -> str:
        with contextlib.closing(node.client()) as c:
            return c.execute_command("CLUSTER", "MYID")

    def primary_nodes(self) -> list[ClusterNode]:
        return [self.node_at(a) for a in self.primaries()]

    def replica_of(self, primary: ClusterNode) -> ClusterNode:
        pid = self.node_id(primary)
        for n in self.topology():
            if n["primary_id"] == pid and n["connected"]:
                return self.node_at(n["address"])
        raise LookupError(f"{primary.name} has no connected replica")

    def role(self, node: ClusterNode) -> str:
        with contextlib.closing(node.client(socket_timeout=1)) as c:
            return "primary" if c.info("replication")["role"] == "master" else "replica"

    # -- what the demos do to it
    def kill(self, node: ClusterNode) -> float:
        """Crash one node (SIGKILL); returns the ``time.monotonic()`` of the kill."""
        node.kill()
        return time.monotonic()

    def hang(self, node: ClusterNode) -> float:
        """Freeze one node (``SIGSTOP``, :func:`cachelab.servers.faults.pause`), as a host that stalls: its port
        still accepts connections, nothing answers, and it keeps its data. Returns the ``time.monotonic()``
        once every thread of it has stopped. :meth:`resume` lets it run again."""
        faults.pause(node)
        return time.monotonic()

    def resume(self, node: ClusterNode) -> None:
        """Let a hung node run again (``SIGCONT``). It still believes what it believed when it froze, until the
        other nodes tell it otherwise (a primary whose slots went to its replica meanwhile becomes a replica)."""
        faults.resume(node)

    def restart(self, node: ClusterNode, timeout: float = 20.0) -> None:
        """Start a killed node again on its port, with its ``nodes.conf``: it rejoins (as a replica if its
        slots went to another node meanwhile), empty, and syncs from its primary."""
        node.start()
        self.wait_ok(timeout)

    def cut_replication(self, replica: ClusterNode) -> None:
        """Cut a replica off its primary's replication stream and keep it off (its reconnection fails
        authentication). Only the replication link goes: the cluster bus stays up, so every node, the primary
        included, still sees the replica as healthy while it falls behind. :meth:`heal_replication` undoes it."""
        with contextlib.closing(replica.client()) as c:
            c.config_set("masterauth", "cut-off-" + secrets.token_hex(4))
            c.client_kill_filter(_type="master")

    def heal_replication(self, replica: ClusterNode) -> None:
        with contextlib.closing(replica.client()) as c:
            c.config_set("masterauth", self.password)

    def move_slots(self, slots, source: ClusterNode, target: ClusterNode, *, batch: int = 100,
                   on_slot=None) -> int:
        """Move ``slots`` from ``source`` to ``target`` live, as ``redis-cli --cluster reshard`` does.

        For each slot: ``SETSLOT IMPORTING`` on the target, ``SETSLOT MIGRATING`` on the source, then
        ``GETKEYSINSLOT`` + ``MIGRATE`` until the slot is empty on the source (a client asking the source
        for a key already moved gets ``ASK``), then ``SETSLOT NODE`` on target and source (clients that
        still ask the source get ``MOVED``). ``on_slot(slot)`` is called after each slot. Returns the number
        of keys moved.
        """
        sid, tid = self.node_id(source), self.node_id(target)
        moved = 0
        with contextlib.closing(source.client()) as src, contextlib.closing(target.client()) as dst:
            for slot in slots:
                dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", sid)
                src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", tid)
                while True:
                    keys = src.execute_command("CLUSTER", "GETKEYSINSLOT", slot, batch)
                    if not keys:
                        break
                    src.execute_command("MIGRATE", target.host, target.port, "", 0, 5000,
                                        "AUTH", self.password, "KEYS", *keys)
                    moved += len(keys)
                dst.execute_command("CLUSTER", "SETSLOT", slot, "NODE", tid)
                src.execute_command("CLUSTER", "SETSLOT", slot, "NODE", tid)
                if on_slot is not None:
                    on_slot(slot)
        return moved

    def begin_migration(self, slot: int, source: ClusterNode, target: ClusterNode, keys=()) -> None:
        """Leave ``slot`` half moved: ``MIGRATING``/``IMPORTING``, with ``keys`` already on the target
        (a read of one of them is answered with ``ASK``). :meth:`move_slots` of the slot finishes it."""
        sid, tid = self.node_id(source), self.node_id(target)
        with contextlib.closing(source.client()) as src, contextlib.closing(target.client()) as dst:
            dst.execute_command("CLUSTER", "SETSLOT", slot, "IMPORTING", sid)
            src.execute_command("CLUSTER", "SETSLOT", slot, "MIGRATING", tid)
            if keys:
                src.execute_command("MIGRATE", target.host, target.port, "", 0, 5000,
                                    "AUTH", self.password, "KEYS", *keys)


def _knows_all(client, expected: int) -> bool:
    text = client.execute_command("CLUSTER", "NODES")
    lines = [ln for ln in text.splitlines() if ln.strip()]
    return len(lines) >= expected and "handshake" not in text and "noaddr" not in text


def start_cluster(primaries: int = 3, replicas: int = 1, *, node_timeout_ms: int = NODE_TIMEOUT_MS,
                  memory_mb: int = 64, password: str | None = None, timeout: float = 20.0) -> ManagedCluster:
    """Start a private Redis Cluster on free loopback ports (see the module docstring)."""
    return ManagedCluster(startup_nodes=[], password=password, primaries_count=primaries,
                          replicas_per_primary=replicas, node_timeout_ms=node_timeout_ms,
                          memory_mb=memory_mb).start(timeout)


def start_clusters(shapes, *, node_timeout_ms: int = NODE_TIMEOUT_MS, memory_mb: int = 64,
                   timeout: float = 20.0) -> list[ManagedCluster]:
    """Several private clusters, ``shapes`` a list of ``(primaries, replicas)``: every node is started first,
    so that the two seconds each new primary waits before accepting writes pass for all at once."""
    clusters = [ManagedCluster(startup_nodes=[], primaries_count=p, replicas_per_primary=r,
                               node_timeout_ms=node_timeout_ms, memory_mb=memory_mb) for p, r in shapes]
    try:
        for c in clusters:
            c.launch()
        for c in clusters:
            c.form(timeout)
    except BaseException:
        for c in clusters:
            c.stop()
        raise
    return clusters


# --------------------------------------------------------------------------- finding one

def _cluster_ok(host: str, port: int, password: str | None, username: str | None = None) -> bool:
    try:
        with contextlib.closing(_node_client(host, port, password, username=username, retries=0,
                                             socket_timeout=1, socket_connect_timeout=0.5)) as c:
            return "cluster_state:ok" in c.execute_command("CLUSTER", "INFO")
    except Exception:  # noqa: BLE001 - not there, not a cluster, or not ours
        return False


def connect_cluster(*, start: bool = True) -> Cluster:
    """The cluster for this process, found or started as the module docstring says."""
    url = os.environ.get(CLUSTER_URL_VAR, "").strip()
    if url:
        parts = parse_redis_url(url)
        username = urllib.parse.unquote(urllib.parse.urlsplit(url).username or "") or None
        if not _cluster_ok(parts["host"], parts["port"], parts["password"], username):
            raise ServersUnavailable(
                f"{CLUSTER_URL_VAR}={redacted(url)} was given but {parts['host']}:{parts['port']} is not a "
                "Redis Cluster in state ok (CLUSTER INFO), or the password was refused. Check it, or unset "
                f"{CLUSTER_URL_VAR}.")
        return Cluster([(parts["host"], parts["port"])], password=parts["password"], username=username,
                       source="environment", owned=False)
    password = config.redis_password()
    if probes.redis_ping("127.0.0.1", COMPOSE_CLUSTER_PORTS[0], password):  # the compose cluster, maybe forming
        deadline = time.monotonic() + 15
        while not _cluster_ok("127.0.0.1", COMPOSE_CLUSTER_PORTS[0], password):
            if time.monotonic() > deadline:
                raise ServersUnavailable(
                    f"The docker compose cluster answers on 127.0.0.1:{COMPOSE_CLUSTER_PORTS[0]} but is not in "
                    "cluster_state:ok after 15 s: see `docker compose --profile cluster logs redis-cluster`, or "
                    "`docker compose --profile cluster down` to let cachelab start a private one.")
            time.sleep(0.2)
        return Cluster([("127.0.0.1", p) for p in COMPOSE_CLUSTER_PORTS], password=password,
                       source="docker compose", owned=False)
    if not start:
        raise ServersUnavailable("No Redis Cluster found.\n" + HOW_TO_GET_A_CLUSTER)
    try:
        return start_cluster()
    except ServersUnavailable as exc:
        first = str(exc).splitlines()[0]
        raise ServersUnavailable(f"No Redis Cluster found, and cachelab could not start one: {first}\n"
                                 + HOW_TO_GET_A_CLUSTER) from None
