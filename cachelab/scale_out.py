"""What notebook 08 does to a Redis Cluster, as functions: where keys land, a failover under load (a primary
killed or hung), slots moved under reads, throughput against the number of shards, the CPU a request costs
the client and the server, and a model of the shards a workload needs.

The demos that hurt a cluster (:func:`failover_stream`, :func:`reshard_under_reads`, the throughput runs)
take a :class:`cachelab.servers.cluster.ManagedCluster`, one this process started; the others work on any
:class:`~cachelab.servers.cluster.Cluster`, your own included.
"""

from __future__ import annotations

import contextlib
import math
import multiprocessing
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field

import numpy as np

from . import arguments
from .keys import check_prefix

SLOTS = 16384


# --------------------------------------------------------------------------- where keys land

def key_slot(key: str) -> int:
    """redis-py's CRC16 slot of ``key`` (hash tags honoured), to check a hand-written one against."""
    from redis.crc import key_slot as _key_slot

    return _key_slot(key.encode() if isinstance(key, str) else key)


def shard_of(client, key: str) -> str:
    """``'host:port'`` of the primary that serves ``key``, from the client's slot table."""
    return client.get_node_from_key(key).name


def tag_for(client, node_name: str, *, avoid: Sequence[str] = ()) -> str:
    """A short hash tag (``'t17'``) whose slot the primary ``node_name`` serves: ``'{t17}:...'`` keys land there."""
    for i in range(100_000):
        tag = f"t{i}"
        if tag not in avoid and client.get_node_from_key("{" + tag + "}").name == node_name:
            return tag
    raise LookupError(f"no hash tag found for {node_name}")


def per_node(cluster, section: str, field_of) -> dict[str, float]:
    """``field_of(info)`` of every primary's ``INFO section``, by ``'host:port'``."""
    out = {}
    for name, info in cluster.info(section).items():
        if _is_primary(cluster, name):
            out[name] = field_of(info)
    return out


def _is_primary(cluster, name: str) -> bool:
    return name in {f"{h}:{p}" for h, p in cluster.primaries()}


def command_calls(cluster, command: str) -> dict[str, int]:
    """How many times each primary ran ``command`` (``INFO commandstats``), by ``'host:port'``."""
    key = f"cmdstat_{command.lower()}"
    return {k: int(v) for k, v in per_node(cluster, "commandstats", lambda i: i.get(key, {}).get("calls", 0)).items()}


def redirects(cluster) -> dict[str, int]:
    """``MOVED`` and ``ASK`` replies sent so far, summed over every node (``INFO errorstats``, Redis 6.2+)."""
    out = {"MOVED": 0, "ASK": 0}
    for info in cluster.info("errorstats").values():
        for kind in out:
            out[kind] += int(info.get(f"errorstat_{kind}", {}).get("count", 0))
    return out


def error_replies(cluster, kind: str) -> dict[str, int]:
    """Error replies of one kind (``'CLUSTERDOWN'``, ``'MOVED'``) each reachable node has sent so far, by
    ``'host:port'`` (``INFO errorstats``, Redis 6.2+: a reply counts under its first word)."""
    return {name: int(info.get(f"errorstat_{kind}", {}).get("count", 0))
            for name, info in cluster.info("errorstats").items()}


def near(cluster, samples: int = 21):
    """The condition of a claim calibrated on loopback, for a cluster: a bare round trip (``PING`` to its
    first node, the median of ``samples``) under 1 ms, as :meth:`cachelab.Lab.near` asks of a server."""
    from .claims import Condition
    from .lab import NEAR_ROUND_TRIP_NS
    from .timing import format_ns

    samples = arguments.integer("samples", samples, minimum=1)
    host, port = cluster.primaries()[0]
    with contextlib.closing(cluster.node_client(host, port)) as c:
        for _ in range(3):
            c.ping()
        times = []
        for _ in range(samples):
            t0 = time.perf_counter_ns()
            c.ping()
            times.append(time.perf_counter_ns() - t0)
    rtt = float(np.median(times))
    return Condition(holds=rtt < NEAR_ROUND_TRIP_NS,
                     requires=f"a cluster on this machine (a bare round trip under {format_ns(NEAR_ROUND_TRIP_NS)})",
                     found=f"here a round trip to the cluster (PING) costs {format_ns(rtt)}")


def server_cpu_seconds(client) -> float:
    """User + system CPU seconds one ``redis-server`` has used so far, from its own ``INFO cpu`` (getrusage,
    to the microsecond; every thread of the process)."""
    info = client.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def cpu_per_request(cluster, keys: Sequence[str], *, requests: int, repeat: int) -> dict[str, list[float]]:
    """The CPU one ``GET`` costs the client and the server, in microseconds, ``repeat`` samples of each taken
    in turn (a pair per sample): ``{'client_us': [...], 'server_us': [...]}``.

    Each sample reads ``keys`` (which must all live on one primary: give them one hash tag) ``requests``
    times through a :class:`~redis.cluster.RedisCluster` in this thread. The client's CPU is this thread's
    (``time.thread_time``), the server's the primary's own count (``INFO cpu``, read outside the client's
    window). Whatever else the server does meanwhile (its cron, the cluster bus) is counted as the server's:
    the comparison errs on the server's side.
    """
    requests = arguments.integer("requests", requests, minimum=1)
    repeat = arguments.integer("repeat", repeat, minimum=1)
    keys = list(keys)
    if not keys:
        raise ValueError("cpu_per_request needs keys to read")
    client = cluster.client()
    owners = {shard_of(client, k) for k in keys}
    if len(owners) != 1:
        raise ValueError(f"the keys live on {len(owners)} primaries; give them one hash tag")
    host, port = next(iter(owners)).rsplit(":", 1)
    server = cluster.node_client(host, int(port))
    out: dict[str, list[float]] = {"client_us": [], "server_us": []}
    try:
        for key in keys[:20]:
            client.get(key)  # connection open, slot table loaded
        for _ in range(repeat):
            server0 = server_cpu_seconds(server)
            client0 = time.thread_time()
            for i in range(requests):
                client.get(keys[i % len(keys)])
            client1 = time.thread_time()
            server1 = server_cpu_seconds(server)
            out["client_us"].append((client1 - client0) / requests * 1e6)
            out["server_us"].append((server1 - server0) / requests * 1e6)
    finally:
        client.close()
        server.close()
    return out


def used_memory(cluster) -> int:
    """``used_memory`` summed over the primaries, in bytes."""
    return int(sum(per_node(cluster, "memory", lambda i: i.get("used_memory", 0)).values()))


# --------------------------------------------------------------------------- failover under load

VICTIM, COVERED, UNCOVERED = 0, 1, 2
"""The groups of reads of a :class:`FailoverRun`: the victim's shard, another shard whose primary requires full
coverage (``cluster-require-full-coverage yes``, the default), another shard whose primary does not."""
GROUP_NAMES = {VICTIM: "the victim's shard", COVERED: "a shard requiring full coverage (the default)",
               UNCOVERED: "a shard with cluster-require-full-coverage no"}
FAULTS = ("kill", "hang")


@dataclass
class FailoverRun:
    """What a stream of reads and writes saw while a primary was killed or hung (times in s, 0 = the fault).

    ``reads`` holds one row per read: when it was sent, whether it succeeded, its group (:data:`VICTIM`,
    :data:`COVERED`, :data:`UNCOVERED`) and how long the call took, success or failure.
    """

    victim: str
    replica: str
    fault: str  # "kill" (SIGKILL, restarted afterwards) or "hang" (SIGSTOP, resumed after the promotion)
    cut_replica: bool
    coverage: dict[str, str]  # cluster-require-full-coverage of each other primary during the run
    promoted_s: float  # the replica reported itself primary
    window_s: float  # the first write to the victim's slots that succeeded after the fault
    reads: np.ndarray  # rows of (sent, ok, group, latency)
    plain_acked: int
    plain_lost: int
    plain_failed: int
    plain_failed_but_applied: int
    waited_confirmed: int
    waited_confirmed_lost: int
    waited_unconfirmed: int
    waited_unconfirmed_lost: int
    waited_failed: int
    retries_per_call: int
    socket_timeout_s: float = 0.0
    restarted_as: str = ""
    rejoined_s: float = 0.0
    lost_examples: list[str] = field(default_factory=list)
    refused_by_others: dict[str, int] = field(default_factory=dict)  # CLUSTERDOWN replies of the other primaries
    cut_acked: int = 0  # plain writes acknowledged while the replica was cut off (the kill run's)
    wait_timeout_ms: int = 0
    probes: dict[str, dict] = field(default_factory=dict)  # by other primary: what one read got, see failover_stream

    def probe(self, group: int) -> dict | None:
        """The probe of the other primary in ``group`` (:data:`COVERED` or :data:`UNCOVERED`): ``{'served',
        'reply', 'others_failing', 'at_s'}``, or ``None`` where none was made in time."""
        wanted = "yes" if group == COVERED else "no"
        return next((p for name, p in self.probes.items() if self.coverage.get(name) == wanted), None)

    def _rows(self, group: int) -> np.ndarray:
        return self.reads[self.reads[:, 2] == group]

    def groups(self) -> list[int]:
        """The groups of reads this run has, in order."""
        return sorted({int(g) for g in self.reads[:, 2]}) if len(self.reads) else []

    def refused(self, group: int) -> int:
        """``CLUSTERDOWN`` replies the other primaries of one group sent to the readers during the run (counted by
        them, the probes left out)."""
        wanted = "yes" if group == COVERED else "no"
        return int(sum(n for name, n in self.refused_by_others.items() if self.coverage.get(name) == wanted))

    def read_errors(self, group: int | None = None) -> int:
        rows = self.reads if group is None else self._rows(group)
        return int((rows[:, 1] == 0).sum()) if len(rows) else 0

    def first_read_after_kill(self, group: int = VICTIM) -> float:
        """When the first read *sent* after the fault succeeded (s after it): a read sent before the fault that
        returned after it does not count; ``inf`` when none did."""
        rows = self._rows(group)
        rows = rows[(rows[:, 0] >= 0) & (rows[:, 1] == 1)]
        return float((rows[:, 0] + rows[:, 3]).min()) if len(rows) else math.inf

    def _answered(self, group: int) -> np.ndarray:
        """When each successful read of ``group`` was answered, s after the fault."""
        rows = self._rows(group)
        rows = rows[rows[:, 1] == 1]
        return rows[:, 0] + rows[:, 3]

    def longest_gap(self, group: int) -> float:
        """The longest time without a successful read in ``group`` (s): between two answers, or from the fault
        to the first answer after it."""
        done = np.sort(np.append(self._answered(group), 0.0))
        return float(np.diff(done).max()) if len(done) > 1 else float("nan")

    def stalled_fraction(self, group: int, *, bucket_s: float = 0.1) -> float:
        """The share of ``bucket_s`` intervals from the fault to the promotion in which not one read of ``group``
        was answered: 1.0 is down throughout, 0.0 served throughout."""
        edges = np.arange(0.0, self.promoted_s, bucket_s)
        if len(edges) < 2:
            return float("nan")
        counts, _ = np.histogram(self._answered(group), bins=edges)
        return float((counts == 0).mean())

    def latency_buckets(self, group: int, *, bucket_s: float = 0.1) -> dict[str, np.ndarray]:
        """The reads of ``group`` by the ``bucket_s`` interval they were sent in: ``{'start', 'p50', 'p99',
        'reads', 'errors'}``, one entry per interval (NaN percentiles where no read was sent), latencies in s.

        Every call counts, a failed one too: what the application waited for, whatever it got."""
        rows = self._rows(group)
        if not len(rows):
            return {k: np.array([]) for k in ("start", "p50", "p99", "reads", "errors")}
        first = math.floor(rows[:, 0].min() / bucket_s) * bucket_s
        starts = np.arange(first, rows[:, 0].max() + bucket_s / 2, bucket_s)
        index = np.clip(((rows[:, 0] - first) // bucket_s).astype(int), 0, len(starts) - 1)
        p50, p99 = np.full(len(starts), np.nan), np.full(len(starts), np.nan)
        reads, errors = np.zeros(len(starts), dtype=int), np.zeros(len(starts), dtype=int)
        for i in range(len(starts)):
            mine = rows[index == i]
            reads[i], errors[i] = len(mine), int((mine[:, 1] == 0).sum())
            if len(mine):
                p50[i], p99[i] = np.percentile(mine[:, 3], [50, 99])
        return {"start": starts, "p50": p50, "p99": p99, "reads": reads, "errors": errors}

    def latency_timeline(self, *, bucket_s: float = 0.1) -> dict[str, dict[str, np.ndarray]]:
        """:meth:`latency_buckets` of every group, by its name, latencies in ns: what
        :func:`cachelab.plots.percentile_timeline` draws."""
        out = {}
        for g in self.groups():
            b = self.latency_buckets(g, bucket_s=bucket_s)
            out[GROUP_NAMES[g]] = {"start": b["start"], "p50": b["p50"] * 1e9, "p99": b["p99"] * 1e9}
        return out

    def window_latency(self, group: int, *, until: float | None = None) -> dict[str, float]:
        """The reads of ``group`` under way at some moment from the fault to the promotion (or ``until``): sent
        before it ended and answered after the fault. How many, how many failed, and their latency's p50, p99
        and maximum, in s (every call, failed ones too: what the application waited for)."""
        end = self.promoted_s if until is None else until
        rows = self._rows(group)
        rows = rows[(rows[:, 0] < end) & (rows[:, 0] + rows[:, 3] > 0)]
        if not len(rows):
            return {"reads": 0, "errors": 0, "p50_s": None, "p99_s": None, "max_s": None}
        p50, p99 = np.percentile(rows[:, 3], [50, 99])
        return {"reads": len(rows), "errors": int((rows[:, 1] == 0).sum()), "p50_s": float(p50), "p99_s": float(p99),
                "max_s": float(rows[:, 3].max())}

    def window_latencies(self, group: int, *, until: float | None = None, sent_after_fault: bool = False) -> np.ndarray:
        """The latencies (s) of the reads :meth:`window_latency` sums up: those of ``group`` under way at some
        moment from the fault to the promotion (or ``until``), failed ones too; with ``sent_after_fault``, only
        those sent after the fault (a read the server had answered as it stopped may still arrive at once)."""
        end = self.promoted_s if until is None else until
        rows = self._rows(group)
        if not len(rows):
            return np.array([])
        start = rows[:, 0] >= 0 if sent_after_fault else rows[:, 0] + rows[:, 3] > 0
        return rows[(rows[:, 0] < end) & start][:, 3]

    def summary(self) -> dict:
        groups = {GROUP_NAMES[g]: {"longest_gap_s": _finite(round(self.longest_gap(g), 3)),
                                   "stalled_fraction": _finite(round(self.stalled_fraction(g), 3)),
                                   "clusterdown": self.refused(g) if g != VICTIM else None,
                                   "during_failover": self.window_latency(g)} for g in self.groups()}
        covered_gap = self.longest_gap(COVERED) if COVERED in self.groups() else float("nan")
        return {"victim": self.victim, "fault": self.fault, "cut_replica": self.cut_replica,
                "coverage": self.coverage, "promoted_s": round(self.promoted_s, 3),
                "window_s": round(self.window_s, 3), "reads": len(self.reads), "read_errors": self.read_errors(),
                "by_shard": groups,
                "other_shards_longest_gap_s": _finite(round(covered_gap, 3)),  # the default's stall (10 reads it)
                "victim_first_read_s": _finite(round(self.first_read_after_kill(VICTIM), 3)),
                "plain_acked": self.plain_acked, "plain_lost": self.plain_lost, "plain_failed": self.plain_failed,
                "plain_failed_but_applied": self.plain_failed_but_applied,
                "waited_confirmed": self.waited_confirmed, "waited_confirmed_lost": self.waited_confirmed_lost,
                "waited_unconfirmed": self.waited_unconfirmed,
                "waited_unconfirmed_lost": self.waited_unconfirmed_lost, "waited_failed": self.waited_failed,
                "retries_per_call": self.retries_per_call, "socket_timeout_s": self.socket_timeout_s,
                "rejoined_s": round(self.rejoined_s, 3), "restarted_as": self.restarted_as,
                "cut_acked": self.cut_acked, "wait_timeout_ms": self.wait_timeout_ms, "probes": self.probes}


def _finite(x: float) -> float | None:
    return x if math.isfinite(x) else None


def write_and_wait(client, key: str, value, *, replicas: int = 1, timeout_ms: int = 50) -> int:
    """``SET`` then ``WAIT replicas timeout_ms`` on the same connection (one pipeline to the key's primary):
    returns how many replicas acknowledged the write. ``WAIT`` counts the writes of its own connection,
    so it must follow the write on that connection. ``replicas=0`` sends the ``SET`` alone, the same way
    (to time the two alike); it returns 0."""
    arguments.integer("replicas", replicas, minimum=0)
    node = client.get_node_from_key(key)
    with client.get_redis_connection(node).pipeline(transaction=False) as pipe:
        pipe.set(key, value)
        if replicas:
            pipe.wait(replicas, timeout_ms)
        replies = pipe.execute()
    return int(replies[1]) if replicas else 0


def _errors_on(nodes, kind: str) -> dict[str, int]:
    """Error replies of one kind each of ``nodes`` (ClusterNodes of a ManagedCluster) has sent so far."""
    out = {}
    for node in nodes:
        with contextlib.closing(node.client(socket_timeout=2)) as c:
            out[node.name] = int(c.info("errorstats").get(f"errorstat_{kind}", {}).get("count", 0))
    return out


def _nodes_by_id(client) -> dict[str, dict]:
    from .servers.cluster import parse_cluster_nodes

    return {n["id"]: n for n in parse_cluster_nodes(client.execute_command("CLUSTER", "NODES"))}


def _flagged_primaries(nodes: dict[str, dict], victim_id: str) -> set[str]:
    """The primaries serving slots, other than the victim and the node asked, that the node flags as failing."""
    return {i for i, n in nodes.items() if i != victim_id and not n["myself"] and n["role"] == "primary"
            and n["slots"] and n["flags"] & {"fail", "fail?"}}


def rejoin_delay_s(node_timeout_ms: int) -> float:
    """How long a Redis primary that counted itself in a minority keeps its cluster state ``fail`` once it no
    longer does: its node timeout, held to 0.5-5 s (``clusterUpdateState`` in Redis 7.0's ``cluster.c``)."""
    return min(max(node_timeout_ms, 500), 5000) / 1000


def probe_during_failover(client, victim_id: str, key: str, *, flagged_at: dict[str, float] | None = None,
                          rejoin_s: float = 5.0) -> dict | None:
    """One read of ``key`` on the node of ``client`` (a plain client of one primary, ``key`` in its slots), made
    while that node agrees the victim has failed (``fail``, not the suspicion ``fail?``) and the victim still owns
    its slots (no replica has taken them over): ``None`` outside that window, else ``{'served', 'reply',
    'others_failing'}``.

    ``others_failing`` counts the other primaries this node flagged as failing (a machine so busy that a healthy
    node missed its pings) after the read or less than ``rejoin_s`` before it: a primary that saw too few primaries
    reachable counted itself in a minority, and refuses queries for a rejoin delay after that
    (:func:`rejoin_delay_s`), whatever its coverage setting. ``flagged_at``, a dict the caller keeps for one client
    from the fault on, remembers when this node last flagged each one: every call updates it, also one that
    returns ``None``.

    The node's view is read before the read and again after it: the victim still owning its slots after the
    read means it owned them during the read."""
    from redis.exceptions import ResponseError

    flagged_at = {} if flagged_at is None else flagged_at
    before = _nodes_by_id(client)
    flagged_at.update(dict.fromkeys(_flagged_primaries(before, victim_id), time.monotonic()))
    victim = before.get(victim_id)
    if victim is None or "fail" not in victim["flags"] or not victim["slots"]:
        return None
    read_at = time.monotonic()
    try:
        client.get(key)
        served, reply = True, "served"
    except ResponseError as exc:
        served, reply = False, f"{type(exc).__name__}: {exc}"
    after = _nodes_by_id(client)
    flagged_at.update(dict.fromkeys(_flagged_primaries(after, victim_id), time.monotonic()))
    if not after.get(victim_id, {}).get("slots"):
        return None  # the replica took the slots over meanwhile: too late to tell
    failing = sum(1 for seen in flagged_at.values() if seen > read_at - rejoin_s)
    return {"served": served, "reply": reply, "others_failing": failing}


def failover_stream(cluster, prefix: str, *, victim=None, fault: str = "kill", cut_replica: bool = False,
                    full_coverage: bool | str = True, lead_s: float = 0.3, cut_s: float = 0.3, cut_writes: int = 10,
                    tail_s: float = 0.5, read_keys: int = 300, victim_readers: int = 1, retries: int = 2,
                    socket_timeout: float = 0.5, wait_timeout_ms: int = 100, timeout: float = 30.0) -> FailoverRun:
    """Kill or hang a primary of ``cluster`` (a ManagedCluster) while readers and two writers run, then bring
    it back.

    ``fault="kill"``: ``SIGKILL``, a crash (connections are refused at once); the node is restarted afterwards.
    ``fault="hang"``: ``SIGSTOP``, a node that stalls (its port still accepts connections, nothing answers, so
    every request waits for the client's ``socket_timeout``); it is resumed (``SIGCONT``) once its replica has
    taken over, and rejoins as a replica. A reader per primary (``victim_readers`` on the victim's shard, so
    that a hung victim, whose reads each wait a socket timeout or more, still sees several) reads keys of that
    primary's slots; writer
    *plain* writes new keys on the victim's shard with ``SET``, writer *waited* the same with
    :func:`write_and_wait`. ``full_coverage``: the ``cluster-require-full-coverage`` of every node (``True``,
    the default, or ``False``), or ``"mixed"``: of the other primaries, the first keeps the default and the
    others say ``no``, so that one run shows both. With ``cut_replica`` the victim's replica is first cut off
    its primary's replication stream (:meth:`ManagedCluster.cut_replication`; the cluster bus stays up) for at
    least ``cut_s`` seconds and until the victim has acknowledged ``cut_writes`` plain writes meanwhile (within
    ``timeout``), so that those writes exist on the victim alone when it fails.

    While the replica waits to take over, each other primary is probed once (:func:`probe_during_failover`): a
    read of a key it serves, made once it agrees the victim has failed, while the victim still owns its slots.
    A primary that requires full coverage refuses it (``CLUSTERDOWN``); one that does not serves it. The
    probes are in ``FailoverRun.probes``, and left out of :meth:`FailoverRun.refused`.
    """
    check_prefix(prefix)
    if not getattr(cluster, "owned", False) or not hasattr(cluster, "kill"):
        raise PermissionError("failover_stream kills a node: only a cluster this process started (ManagedCluster)")
    if fault not in FAULTS:
        raise ValueError(f"fault is one of {', '.join(FAULTS)}, not {fault!r}")
    if full_coverage not in (True, False, "mixed"):
        raise ValueError(f"full_coverage is True, False or 'mixed', not {full_coverage!r}")
    client = cluster.client(retries=retries, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout)
    victim = victim or cluster.primary_nodes()[0]
    replica = cluster.replica_of(victim)
    others = [n for n in cluster.primary_nodes() if n is not victim]
    if full_coverage == "mixed":
        coverage = {n.name: "yes" if i == 0 else "no" for i, n in enumerate(others)}
    else:
        coverage = {n.name: "yes" if full_coverage else "no" for n in others}
    group_of = {victim.name: VICTIM, **{name: COVERED if c == "yes" else UNCOVERED for name, c in coverage.items()}}
    tags: dict[str, str] = {}
    for node in [victim, *others]:
        tags[node.name] = tag_for(client, node.name, avoid=list(tags.values()))
    tag = tags[victim.name]
    per_node = max(1, read_keys // len(tags))
    readable = {name: [f"{prefix}{{{t}}}:r{i}" for i in range(per_node)] for name, t in tags.items()}
    with client.pipeline() as pipe:
        for keys in readable.values():
            for key in keys:
                pipe.set(key, "x", ex=600)
        pipe.execute()

    stop = threading.Event()
    reads: list[tuple[float, int, int, float]] = []
    plain_acked: list[str] = []
    plain_failed: list[str] = []
    plain_times: list[tuple[float, float, int]] = []  # (sent, answered, ok)
    waited: list[tuple[str, int | None]] = []

    def new_client():
        return cluster.client(retries=retries, socket_timeout=socket_timeout, socket_connect_timeout=socket_timeout)

    def reader(name: str) -> None:
        rc = new_client()
        mine, group = readable[name], group_of[name]
        i = 0
        while not stop.is_set():
            key = mine[i % len(mine)]
            i += 1
            sent = time.monotonic()
            try:
                rc.get(key)
                ok = 1
            except Exception:  # noqa: BLE001 - counted: this is what the application would see
                ok = 0
            reads.append((sent, ok, group, time.monotonic() - sent))
            if not ok:
                time.sleep(0.005)
        rc.close()

    def plain_writer() -> None:
        rc = new_client()
        i = 0
        while not stop.is_set():
            key = f"{prefix}{{{tag}}}:plain{i}"
            i += 1
            sent = time.monotonic()
            try:
                rc.set(key, i, ex=600)
                plain_acked.append(key)
                plain_times.append((sent, time.monotonic(), 1))
            except Exception:  # noqa: BLE001 - counted
                plain_failed.append(key)
                plain_times.append((sent, time.monotonic(), 0))
                time.sleep(0.005)
        rc.close()

    def waited_writer() -> None:
        rc = new_client()
        i = 0
        while not stop.is_set():
            key = f"{prefix}{{{tag}}}:waited{i}"
            i += 1
            try:
                waited.append((key, write_and_wait(rc, key, i, timeout_ms=wait_timeout_ms)))
            except Exception:  # noqa: BLE001 - this path bypasses the cluster client's retries: rebuild it
                waited.append((key, None))
                time.sleep(0.05)
                rc.close()
                rc = new_client()
        rc.close()

    arguments.integer("victim_readers", victim_readers, minimum=1)
    threads = [threading.Thread(target=reader, args=(name,), daemon=True)
               for name in tags for _ in range(victim_readers if name == victim.name else 1)]
    threads += [threading.Thread(target=plain_writer, daemon=True), threading.Thread(target=waited_writer, daemon=True)]
    cut = hung = False
    cut_acked = 0
    victim_id = cluster.node_id(victim)
    probe_clients = {n.name: n.client(socket_timeout=1, socket_connect_timeout=1, retries=0) for n in others}
    probes: dict[str, dict] = {}
    flagged_at: dict[str, dict[str, float]] = {name: {} for name in probe_clients}  # per probed node, from the fault on
    rejoin_s = rejoin_delay_s(getattr(cluster, "node_timeout_ms", 5000))  # unknown: the longest
    for node in cluster.alive_nodes():
        with contextlib.closing(node.client()) as c:
            c.config_set("cluster-require-full-coverage", coverage.get(node.name, "yes"))
    refused_before = _errors_on(others, "CLUSTERDOWN")
    try:
        for t in threads:
            t.start()
        time.sleep(lead_s)
        flowing = time.monotonic() + 5  # on a busy machine, wait until every thread has done its part once

        def started() -> bool:
            served = {g for _, ok, g, _ in list(reads) if ok}
            return served == set(group_of.values()) and bool(plain_acked) and any(n for _, n in list(waited))

        while not started() and time.monotonic() < flowing:
            time.sleep(0.02)
        if cut_replica:
            cluster.cut_replication(replica)
            cut = True
            acked_at_cut = len(plain_acked)
            time.sleep(cut_s)
            enough = time.monotonic() + timeout
            while len(plain_acked) - acked_at_cut < cut_writes and time.monotonic() < enough:
                time.sleep(0.01)
            cut_acked = len(plain_acked) - acked_at_cut
        if fault == "kill":
            fault_at = cluster.kill(victim)
        else:
            fault_at = cluster.hang(victim)
            hung = True
        deadline = fault_at + timeout
        while True:
            for name, c in probe_clients.items():
                if name not in probes:
                    with contextlib.suppress(Exception):  # a node slow to answer: probed at the next turn
                        seen = probe_during_failover(c, victim_id, readable[name][0], flagged_at=flagged_at[name],
                                                     rejoin_s=rejoin_s)
                        if seen is not None:
                            probes[name] = {**seen, "at_s": round(time.monotonic() - fault_at, 3)}
            with contextlib.suppress(Exception):
                if cluster.role(replica) == "primary":
                    break
            if time.monotonic() > deadline:
                raise TimeoutError(f"{replica.name} was not promoted within {timeout}s")
            time.sleep(0.01)
        promoted = time.monotonic()
        time.sleep(tail_s)
    finally:
        stop.set()
        for t in threads:
            t.join(timeout=10)
        for c in probe_clients.values():
            c.close()
        if hung:
            cluster.resume(victim)
        if cut:
            with contextlib.suppress(Exception):
                cluster.heal_replication(replica)
    refused_after = _errors_on(others, "CLUSTERDOWN")
    refused = {name: refused_after[name] - refused_before[name] - (name in probes and not probes[name]["served"])
               for name in refused_after}
    survivor = replica.client()
    try:
        def exists(keys):
            with survivor.pipeline(transaction=False) as pipe:
                for k in keys:
                    pipe.exists(k)
                return pipe.execute()

        lost = [k for k, e in zip(plain_acked, exists(plain_acked), strict=True) if not e]
        applied = sum(exists(plain_failed))
        confirmed = [k for k, n in waited if n]
        unconfirmed = [k for k, n in waited if n == 0]
        confirmed_lost = sum(not e for e in exists(confirmed))
        unconfirmed_lost = sum(not e for e in exists(unconfirmed))
    finally:
        survivor.close()
    after = [answered for sent, answered, ok in plain_times if ok and sent >= fault_at]
    first_ok = (min(after) - fault_at) if after else float("nan")
    rejoin_start = time.monotonic()
    if fault == "kill":
        cluster.restart(victim)
    while cluster.role(victim) != "replica" and time.monotonic() < rejoin_start + timeout:
        time.sleep(0.02)  # it answers as the primary it was until it hears of the new epoch
    cluster.wait_ok()
    rejoined = time.monotonic() - rejoin_start
    for node in cluster.alive_nodes():  # back to the default, the restarted node included
        with contextlib.closing(node.client()) as c:
            c.config_set("cluster-require-full-coverage", "yes")
    client.close()
    rows = np.array([(t - fault_at, ok, g, d) for t, ok, g, d in reads], dtype=np.float64).reshape(-1, 4)
    return FailoverRun(
        victim=victim.name, replica=replica.name, fault=fault, cut_replica=cut_replica, coverage=coverage,
        promoted_s=promoted - fault_at, window_s=first_ok, reads=rows, plain_acked=len(plain_acked),
        plain_lost=len(lost), plain_failed=len(plain_failed), plain_failed_but_applied=int(applied),
        waited_confirmed=len(confirmed), waited_confirmed_lost=int(confirmed_lost),
        waited_unconfirmed=len(unconfirmed), waited_unconfirmed_lost=int(unconfirmed_lost),
        waited_failed=sum(n is None for _, n in waited), retries_per_call=retries, socket_timeout_s=socket_timeout,
        restarted_as=cluster.role(victim), rejoined_s=rejoined, lost_examples=lost[:3], refused_by_others=refused,
        cut_acked=cut_acked, wait_timeout_ms=wait_timeout_ms, probes=probes)



@dataclass
class ReshardRun:
    """What a reader saw while ``slots`` moved from one primary to another."""

    source: str
    target: str
    slots: int
    keys_moved: int
    seconds: float
    reads: int
    read_errors: int
    redirects: dict
    latencies_ns: np.ndarray

    def summary(self) -> dict:
        lat = self.latencies_ns
        return {"source": self.source, "target": self.target, "slots": self.slots, "keys_moved": self.keys_moved,
                "seconds": round(self.seconds, 3), "reads": self.reads, "read_errors": self.read_errors,
                "moved": self.redirects["MOVED"], "ask": self.redirects["ASK"],
                "read_median_us": float(np.median(lat) / 1e3) if len(lat) else None,
                "read_p99_us": float(np.percentile(lat, 99) / 1e3) if len(lat) else None,
                "read_max_us": float(lat.max() / 1e3) if len(lat) else None}


def reshard_under_reads(cluster, keys: Sequence[str], slots: Sequence[int], source, target, *,
                        settle_s: float = 0.05) -> ReshardRun:
    """Move ``slots`` (of ``cluster``, a ManagedCluster) from ``source`` to ``target`` while a thread reads
    ``keys`` (which should live in those slots) through its own cluster client, started before the move."""
    if not getattr(cluster, "owned", False) or not hasattr(cluster, "move_slots"):
        raise PermissionError("reshard_under_reads moves slots: only a cluster this process started")
    keys = list(keys)
    if not keys:
        raise ValueError("reshard_under_reads needs keys to read")
    reader = cluster.client()
    for key in keys[:50]:
        reader.get(key)  # connections open, slot table loaded: what an application that ran a while has
    before = redirects(cluster)
    stop = threading.Event()
    latencies: list[int] = []
    errors = [0]

    def read() -> None:
        clock = time.perf_counter_ns
        i = 0
        while not stop.is_set():
            t = clock()
            try:
                reader.get(keys[i % len(keys)])
            except Exception:  # noqa: BLE001 - counted: the application would see it
                errors[0] += 1
            latencies.append(clock() - t)
            i += 1

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    time.sleep(settle_s)
    started = time.perf_counter()
    try:
        moved = cluster.move_slots(slots, source, target)
    finally:
        seconds = time.perf_counter() - started
        time.sleep(settle_s)
        stop.set()
        thread.join(timeout=10)
        reader.close()
    after = redirects(cluster)
    return ReshardRun(source=source.name, target=target.name, slots=len(slots), keys_moved=moved, seconds=seconds,
                      reads=len(latencies), read_errors=errors[0],
                      redirects={k: after[k] - before[k] for k in after},
                      latencies_ns=np.asarray(latencies, dtype=np.float64))


def reads_after_a_move(cluster, client, keys: Sequence[str]) -> tuple[list[float], list[float], int]:
    """Two reads of each of ``keys`` in turn by ``client``, whose slot table may predate a move of their slots:
    each first read's time and each second read's (ns, taken in turn: pairs), and how many ``MOVED`` replies
    the nodes of ``cluster`` sent meanwhile (``INFO errorstats``)."""
    before = redirects(cluster)["MOVED"]
    first, second = [], []
    clock = time.perf_counter_ns
    for key in keys:
        t0 = clock()
        client.get(key)
        t1 = clock()
        client.get(key)
        first.append(float(t1 - t0))
        second.append(float(clock() - t1))
    return first, second, redirects(cluster)["MOVED"] - before


# --------------------------------------------------------------------------- replica reads

def reads_during_writes(primary, replica, key: str, *, rounds: int, timeout: float = 5.0) -> dict[str, list[bool]]:
    """Write a new value of ``key`` to ``primary`` and, at the same moment, read it on another connection, from
    ``replica`` and from ``primary`` in turn, ``rounds`` times each: ``{'replica': [...], 'primary': [...]}``,
    ``True`` for each read that returned the value before the write (stale).

    ``primary`` and ``replica`` are nodes of a :class:`~cachelab.servers.cluster.ManagedCluster` (``replica``
    copies ``primary``; ``key`` lives in its slots). Each round packs the ``SET`` and the ``GET`` first, then
    sends the ``SET`` to the primary and the ``GET`` (on a ``READONLY`` connection to the replica, or a second
    connection to the primary) back to back, before reading either reply: what a reader elsewhere gets while
    the write is on its way. The primary serves its connections in the order their commands arrive; a replica
    answers with what replication has brought it so far. Before the next round, the replica is left to catch
    up (polled until it has the new value, within ``timeout``), so that every round starts in step.
    """
    from redis.connection import Connection

    rounds = arguments.integer("rounds", rounds, minimum=1)

    def connect(node):
        c = Connection(host=node.host, port=node.port, password=node.password, decode_responses=True,
                       socket_timeout=2, socket_connect_timeout=2)
        c.connect()
        return c

    def ask(c, *command):
        c.send_command(*command)
        return c.read_response()

    conns = {"write": connect(primary), "replica": connect(replica), "primary": connect(primary)}
    stale: dict[str, list[bool]] = {"replica": [], "primary": []}
    try:
        ask(conns["replica"], "READONLY")
        n = 0
        for _ in range(rounds):
            for target in ("replica", "primary"):
                n += 1
                value = f"w{n}"
                write = conns["write"].pack_command("SET", key, value, "EX", 600)
                read = conns[target].pack_command("GET", key)
                conns["write"].send_packed_command(write, check_health=False)
                conns[target].send_packed_command(read, check_health=False)
                conns["write"].read_response()
                stale[target].append(conns[target].read_response() != value)
                deadline = time.monotonic() + timeout
                while ask(conns["replica"], "GET", key) != value:
                    if time.monotonic() > deadline:
                        raise TimeoutError(f"the replica {replica.name} did not catch up within {timeout} s")
                    time.sleep(0.0002)
        return stale
    finally:
        for c in conns.values():
            c.disconnect()


# --------------------------------------------------------------------------- throughput against shards

def cpu_count() -> int:
    """The CPUs this process may run on (its affinity where the OS tells, else the machine's count)."""
    with contextlib.suppress(AttributeError, OSError):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def process_cpu_seconds(pids: Sequence[int]) -> float | None:
    """User + system CPU seconds used so far by ``pids`` (from ``/proc``; ``None`` where there is none)."""
    ticks = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
    total = 0
    for pid in pids:
        try:
            fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()  # noqa: SIM115 - tiny read
        except OSError:
            return None
        total += int(fields[11]) + int(fields[12])
    return total / ticks


def _cluster_spec(cluster) -> dict:
    return {"startup_nodes": [list(a) for a in cluster.startup_nodes], "password": cluster.password,
            "username": cluster.username}


def read_loop(spec: dict, keys: Sequence[str], seconds: float, batch: int = 0) -> tuple[int, float, float]:
    """A worker process's part of a throughput run: read ``keys`` in a loop for ``seconds`` through its own
    ``RedisCluster`` (``GET``, or ``mget_nonatomic`` of ``batch`` keys). Returns (keys read, seconds, CPU s)."""
    from redis.cluster import ClusterNode, RedisCluster

    client = RedisCluster(startup_nodes=[ClusterNode(h, p) for h, p in spec["startup_nodes"]],
                          password=spec["password"], username=spec["username"], socket_timeout=5,
                          socket_connect_timeout=2)
    keys = list(keys)
    for key in keys[:20]:  # connections to every node open before the clock starts
        client.get(key)
    done = i = 0
    cpu0, t0 = time.process_time(), time.perf_counter()
    end = t0 + seconds
    while time.perf_counter() < end:
        if batch:
            chunk = keys[i:i + batch]
            if len(chunk) < batch:
                i, chunk = 0, keys[:batch]
            client.mget_nonatomic(chunk)
            done += len(chunk)
            i += batch
        else:
            client.get(keys[i % len(keys)])
            done += 1
            i += 1
    elapsed, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    client.close()
    return done, elapsed, cpu


@contextlib.contextmanager
def reader_pool(processes: int):
    """Worker processes (``spawn``), started before any measurement."""
    pool = ProcessPoolExecutor(max_workers=processes, mp_context=multiprocessing.get_context("spawn"))
    try:
        list(pool.map(_warm, range(processes)))
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _warm(_: int) -> bool:
    import redis.cluster  # noqa: F401 - imported once, before any timing

    return True


def python_throughput(cluster, pool, keys: Sequence[str], *, workers: int, seconds: float,
                      batch: int = 0) -> dict:
    """Keys read per second by ``workers`` processes of :func:`read_loop`, and the CPU that clients and
    servers used for them."""
    pids = [n.pid for n in getattr(cluster, "nodes", [])]
    server0 = process_cpu_seconds(pids) if pids else None
    futures = [pool.submit(read_loop, _cluster_spec(cluster), keys, seconds, batch) for _ in range(workers)]
    results = [f.result(timeout=seconds + 60) for f in futures]
    server1 = process_cpu_seconds(pids) if pids else None
    done = sum(r[0] for r in results)
    elapsed = max(r[1] for r in results)
    return {"keys_per_s": done / elapsed, "keys": done, "wall_s": elapsed,
            "client_cpu_s": sum(r[2] for r in results),
            "server_cpu_s": None if server0 is None or server1 is None else server1 - server0}


def _benchmark_args(cluster, *, test: str, requests: int, clients: int, pipeline: int, threads: int, keyspace: int,
                    value_size: int, csv: bool) -> list[str] | None:
    exe = shutil.which("redis-benchmark")
    if exe is None:
        return None
    host, port = cluster.startup_nodes[0]
    args = [exe, "-h", host, "-p", str(port), "-t", test, "-n", str(requests), "-c", str(clients),
            "-P", str(pipeline), "-r", str(keyspace), "-d", str(value_size), "--threads", str(threads)]
    if csv:
        args.append("--csv")
    if cluster.password:
        args += ["-a", cluster.password]
    if len(cluster.primaries()) > 1:
        args.insert(1, "--cluster")
    return args


def redis_benchmark(cluster, *, test: str = "get", requests: int, clients: int = 32, pipeline: int = 1,
                    threads: int = 2, keyspace: int = 100_000, value_size: int = 180,
                    timeout: float = 120.0) -> dict | None:
    """``redis-benchmark -t <test>`` (``get`` or ``set``) against ``cluster``: C clients, ``--cluster`` when it
    has several primaries, ``-r keyspace`` random keys of ``value_size`` bytes (run ``set`` first, so
    that ``get`` finds them), with the CPU the servers used. ``None`` when ``redis-benchmark`` is not on PATH.

    Its own rate (``per_s``) divides the requests by its run time in milliseconds; with threads (always, in
    ``--cluster`` mode), the threads notice the last reply only when their 250 ms progress timer fires, so a
    short run's time is rounded up to the next quarter of a second. :func:`benchmark_rate` counts the
    requests at the servers instead."""
    if test not in ("get", "set"):
        raise ValueError(f"test is 'get' or 'set', not {test!r}")
    args = _benchmark_args(cluster, test=test, requests=requests, clients=clients, pipeline=pipeline,
                           threads=threads, keyspace=keyspace, value_size=value_size, csv=True)
    if args is None:
        return None
    pids = [n.pid for n in getattr(cluster, "nodes", [])]
    before = process_cpu_seconds(pids) if pids else None
    children = _children_cpu_seconds()
    started = time.perf_counter()
    out = subprocess.run(args, capture_output=True, text=True, timeout=timeout)
    wall = time.perf_counter() - started
    after = process_cpu_seconds(pids) if pids else None
    client_cpu = None if children is None else _children_cpu_seconds() - children
    rate = None
    for line in out.stdout.splitlines():
        parts = [p.strip('"') for p in line.split(",")]
        if parts and parts[0] == test.upper():
            rate = float(parts[1])
    if rate is None:
        raise RuntimeError(f"redis-benchmark gave no {test.upper()} figure: {(out.stdout + out.stderr)[-300:]}")
    return {"per_s": rate, "requests": requests, "wall_s": wall, "pipeline": pipeline, "clients": clients,
            "client_cpu_s": client_cpu, "server_cpu_s": None if before is None or after is None else after - before}


def served_gets(cluster) -> int:
    """``GET`` commands the primaries of ``cluster`` have run so far, summed (``INFO commandstats``)."""
    return int(sum(command_calls(cluster, "get").values()))


def benchmark_rate(cluster, *, seconds: float, warmup_s: float = 0.3, clients: int = 32, pipeline: int = 1,
                   threads: int = 2, keyspace: int = 100_000, value_size: int = 180) -> dict | None:
    """The ``GET`` rate ``redis-benchmark -t get`` keeps up against ``cluster``, counted by the servers: the
    ``GET`` calls the primaries report (``INFO commandstats``) over a window of ``seconds``, timed here, that
    opens ``warmup_s`` after the benchmark starts (its connections are open) and closes before it is stopped.
    Neither the benchmark's start nor its end, which its threads notice only on a 250 ms timer, is in the
    window. Returns ``per_s``, ``requests`` (counted), ``window_s``, ``wall_s`` (the window), the CPU the
    benchmark and the servers used in the window, ``clients`` and ``pipeline``; ``None`` when
    ``redis-benchmark`` is not on PATH. Run ``redis_benchmark(test="set")`` first, so that the keys exist."""
    seconds = arguments.number("seconds", seconds, positive=True)
    args = _benchmark_args(cluster, test="get", requests=1_000_000_000, clients=clients, pipeline=pipeline,
                           threads=threads, keyspace=keyspace, value_size=value_size, csv=False)
    if args is None:
        return None
    pids = [n.pid for n in getattr(cluster, "nodes", [])]
    counters = [cluster.node_client(host, port) for host, port in cluster.primaries()]  # open before the window

    def served() -> int:  # one INFO per primary on open connections: a few milliseconds, read back to back
        return sum(int(c.info("commandstats").get("cmdstat_get", {}).get("calls", 0)) for c in counters)

    served()
    bench = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(warmup_s)
        if bench.poll() is not None:
            raise RuntimeError(f"redis-benchmark stopped at once: {bench.stderr.read()[-300:]}")
        server0, client0 = process_cpu_seconds(pids) if pids else None, process_cpu_seconds([bench.pid])
        before = time.perf_counter()
        count0 = served()
        t0 = (before + time.perf_counter()) / 2  # the counters were read between the two clock readings
        time.sleep(seconds)
        before = time.perf_counter()
        count1 = served()
        t1 = (before + time.perf_counter()) / 2
        server1, client1 = process_cpu_seconds(pids) if pids else None, process_cpu_seconds([bench.pid])
        if bench.poll() is not None:
            raise RuntimeError(f"redis-benchmark stopped before the window closed: {bench.stderr.read()[-300:]}")
    finally:
        bench.terminate()
        try:
            bench.wait(timeout=5)
        except subprocess.TimeoutExpired:
            bench.kill()
            bench.wait(timeout=5)
        bench.stderr.close()
        for c in counters:
            c.close()
    window = t1 - t0
    return {"per_s": (count1 - count0) / window, "requests": count1 - count0, "window_s": window, "wall_s": window,
            "pipeline": pipeline, "clients": clients,
            "client_cpu_s": None if client0 is None or client1 is None else client1 - client0,
            "server_cpu_s": None if server0 is None or server1 is None else server1 - server0}


def benchmark_in_turn(clusters, *, seconds: float, rounds: int, min_total_s: float = 0.0,
                      max_rounds: int | None = None, **options) -> dict | None:
    """:func:`benchmark_rate` on each of ``clusters`` (a mapping of names to clusters), windows of ``seconds``
    taken in turn, cluster after cluster, round after round (:func:`cachelab.timing.take_in_turn`), so that a
    busy moment touches every cluster alike; rounds are added (up to ``max_rounds``, twice ``rounds`` by
    default) until every cluster has been measured for ``min_total_s`` in all.

    Returns, by name: ``per_s`` (the median of the windows' rates), ``runs_per_s`` and ``run_s`` (each
    window's rate and length), ``measured_s`` (their total), ``requests``, ``wall_s``, ``client_cpu_s`` and
    ``server_cpu_s`` (totals over the windows), ``clients`` and ``pipeline``. ``None`` when
    ``redis-benchmark`` is not on PATH. ``options`` go to :func:`benchmark_rate` (``keyspace``, ``value_size``...).
    """
    from .timing import take_in_turn

    seconds = arguments.number("seconds", seconds, positive=True)
    rounds = arguments.integer("rounds", rounds, minimum=1)
    max_rounds = arguments.integer("max_rounds", max_rounds if max_rounds is not None else 2 * rounds,
                                   minimum=rounds)
    if not clusters:
        raise ValueError("benchmark_in_turn needs at least one cluster")
    if shutil.which("redis-benchmark") is None:
        return None
    runs: dict = {name: [] for name in clusters}

    def sampler(name):
        def run() -> float:
            result = benchmark_rate(clusters[name], seconds=seconds, **options)
            runs[name].append(result)
            return result["per_s"]
        return run

    samplers = {str(name): sampler(name) for name in clusters}  # take_in_turn names them by text
    take_in_turn(samplers, rounds)
    done = rounds
    while done < max_rounds and min(sum(r["window_s"] for r in rs) for rs in runs.values()) < min_total_s:
        take_in_turn(samplers, 1)
        done += 1
    out = {}
    for name, rs in runs.items():
        cpu = [r["client_cpu_s"] for r in rs], [r["server_cpu_s"] for r in rs]
        out[name] = {
            "per_s": float(np.median([r["per_s"] for r in rs])), "runs_per_s": [r["per_s"] for r in rs],
            "run_s": [r["window_s"] for r in rs], "measured_s": sum(r["window_s"] for r in rs),
            "requests": sum(r["requests"] for r in rs), "wall_s": sum(r["wall_s"] for r in rs),
            "clients": rs[0]["clients"], "pipeline": rs[0]["pipeline"], "counted_by": "servers (INFO commandstats)",
            "client_cpu_s": None if None in cpu[0] else sum(cpu[0]),
            "server_cpu_s": None if None in cpu[1] else sum(cpu[1])}
    return out


def _children_cpu_seconds() -> float | None:
    """CPU seconds used by this process's finished children (``getrusage``; ``None`` where there is none)."""
    try:
        import resource
    except ImportError:
        return None
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# --------------------------------------------------------------------------- how many shards

def shards_needed(dataset_bytes: float, requests_per_s: float, *, bytes_per_shard: float,
                  requests_per_shard: float, headroom: float = 0.5) -> dict:
    """Primaries a cache needs to hold ``dataset_bytes`` and serve ``requests_per_s``, each shard filled and
    loaded to ``headroom`` (0.5: half its memory, half its CPU) of what it can do; at least one.

    Returns ``{'for_memory', 'for_load', 'shards'}``: the larger of the two decides.
    """
    for name, value in (("dataset_bytes", dataset_bytes), ("requests_per_s", requests_per_s)):
        arguments.number(name, value)
        if value < 0:
            raise ValueError(f"{name} must be >= 0, not {value}")
    arguments.number("bytes_per_shard", bytes_per_shard, positive=True)
    arguments.number("requests_per_shard", requests_per_shard, positive=True)
    arguments.number("headroom", headroom, positive=True)
    if headroom > 1:
        raise ValueError(f"headroom is a fraction in (0, 1], not {headroom}")
    for_memory = math.ceil(dataset_bytes / (bytes_per_shard * headroom))
    for_load = math.ceil(requests_per_s / (requests_per_shard * headroom))
    return {"for_memory": for_memory, "for_load": for_load, "shards": max(1, for_memory, for_load)}
