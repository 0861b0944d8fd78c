"""The benchmark: every step of the caching ladder next to the physical floor it cannot beat.

``python -m cachelab bench`` (``make bench``) measures, in one run on one machine, the cost of one cache
hit at each layer and, next to it, the cheapest way to do the same work with no library at all:

* **in-process**: a ``dict`` lookup (the floor) against ``functools.lru_cache``, a ``cachetools`` mapping,
  ``cachetools``' ``@cached`` decorator, and the local tier of :class:`~cachelab.near_cache.NearCache`;
* **disk**: a ``joblib.Memory`` hit against reading the same bytes from the file joblib wrote;
* **network**: redis-py and pymemcache GETs against a hand-written request on a plain TCP socket (the
  round-trip floor) and against ``redis-benchmark -c 1``, the C client that ships with Redis; and
  ``MGET``/``get_many`` of 100 keys, per key, which is how a batch beats the round-trip floor.

Every timing goes through :func:`cachelab.timing.measure` (warm-up, repeats, median and p10-p90).
The run writes ``build/bench/results.json`` and ``build/bench/bench.png`` and prints a table of each
layer with its ratio to its floor.

Where the client and the servers run matters: on a small virtual machine a round trip between two CPUs
can cost up to three times one on the same CPU. The benchmark records the CPUs each process may use
and last ran on, and ``--pin CPU`` runs the client and the servers on one CPU (what ``taskset -a -p -c
CPU PID`` does, applied to every thread). It pins only servers the project started; with servers of your
own (``REDIS_URL``/``MEMCACHED_SERVERS`` or compose) it starts private ones for the run instead. Finally
it reports whether the run was noisy: the spread of the repeats (p10-p90 over the median) of each row.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from . import paths
from .near_cache import NearCache
from .timing import StatementSampler, Timing, format_ns, from_samples, quick_mode, take_in_turn

PREFIX = f"cachelab:bench-{os.getpid()}:"  # one per run: two runs on the same servers never meet
KEY_TTL = 600  # seconds: a run that dies before its cleanup leaves nothing behind for long
BATCH = 100
NOISY_SPREAD = 0.3  # (p90 - p10) / median above which a row counts as noisy (see Timing.spread)
GROUPS = ("in-process", "disk", "network")
GROUP_COLORS = {"in-process": "#4C72B0", "disk": "#DD8452", "network": "#55A868"}
FLOOR_COLOR = "#8C8C8C"

# Row names, used as keys in results.json: change them and the README's reference table together.
DICT = "dict lookup"
LRU = "functools.lru_cache hit"
CT_MAPPING = "cachetools LRUCache[key]"
CT_CACHED = "cachetools @cached hit"
NEAR = "near cache hit"
READ_BYTES = "read the same bytes (open+read)"
JOBLIB = "joblib.Memory hit"
RAW_REDIS = "raw socket GET (Redis)"
REDIS_BENCHMARK = "redis-benchmark -c 1 GET"
REDIS_PY = "redis-py GET"
REDIS_PY_SINGLE = "redis-py GET, one connection"
REDIS_MGET = f"redis-py MGET {BATCH} keys, per key"
RAW_MEMCACHED = "raw socket get (memcached)"
PYMEMCACHE = "pymemcache GET"
PYMEMCACHE_HASH = "pymemcache HashClient GET"
PYMEMCACHE_MANY = f"pymemcache get_many {BATCH} keys, per key"

TARGETS = (  # (row, floor, the ratio to the floor the row should stay within)
    (REDIS_PY, REDIS_BENCHMARK, 2.0),
    (PYMEMCACHE, RAW_MEMCACHED, 2.0),
    (LRU, DICT, 4.0),
)


@dataclass(frozen=True)
class Settings:
    """How long to measure: ``quick`` for the smoke test, the default for numbers you read."""

    quick: bool = False

    @property
    def repeat(self) -> int:
        return 5 if self.quick else 15

    @property
    def min_time(self) -> float:
        return 0.005 if self.quick else 0.05

    @property
    def benchmark_requests(self) -> int:
        """Requests per ``redis-benchmark`` run; each run is one sample, ``repeat`` runs in all."""
        return 1_000 if self.quick else 10_000


@dataclass
class Row:
    """One measured layer: its timing and the floors it is compared with (none for a floor itself)."""

    group: str
    timing: Timing
    floors: tuple[str, ...] = ()
    note: str = ""

    @property
    def name(self) -> str:
        return self.timing.name

    @property
    def is_floor(self) -> bool:
        return not self.floors


@dataclass
class Report:
    """Everything one run measured, with the placement of the processes and the verdicts."""

    rows: list[Row]
    placement: dict
    pinned: int | None
    settings: Settings
    environment: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def row(self, name: str) -> Row:
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(f"no row {name!r}; the run measured {[r.name for r in self.rows]}")

    def ratio(self, name: str, floor: str) -> float | None:
        """How many times the floor's median the row's median is (``None`` if either was not measured)."""
        try:
            return self.row(name).timing.median / self.row(floor).timing.median
        except KeyError:
            return None

    def targets(self) -> list[dict]:
        out = []
        for name, floor, limit in TARGETS:
            ratio = self.ratio(name, floor)
            out.append({"row": name, "floor": floor, "within": limit, "ratio": ratio,
                        "met": None if ratio is None else ratio <= limit})
        return out

    def noisy_rows(self) -> list[str]:
        return [r.name for r in self.rows if r.timing.spread > NOISY_SPREAD]

    @property
    def noisy(self) -> bool:
        """Whether any row's repeats spread by more than ``NOISY_SPREAD`` of its median."""
        return bool(self.noisy_rows())

    def table(self) -> str:
        """The rows as a plain-text table: median, p10-p90 and the ratio to each floor."""
        width = max(len(r.name) for r in self.rows)
        head = f"{'layer':<{width}}  {'median':>9}  {'p10-p90':>21}  ratio to floor"
        lines = [head, "-" * (len(head) + 30)]
        for group in GROUPS:
            members = [r for r in self.rows if r.group == group]
            if not members:
                continue
            lines.append(f"[{group}]")
            for r in members:
                t = r.timing
                spread = f"{format_ns(t.p10)} to {format_ns(t.p90)}"
                if r.is_floor:
                    ratios = "floor"
                else:
                    ratios = ", ".join(f"{self.ratio(r.name, f):,.3g}x {f}" for f in r.floors
                                       if self.ratio(r.name, f) is not None)
                lines.append(f"{r.name:<{width}}  {format_ns(t.median):>9}  {spread:>21}  {ratios}")
        return "\n".join(lines)

    def summary(self) -> str:
        """The targets met or missed, the placement and the noise verdict, in sentences."""
        lines = []
        for t in self.targets():
            if t["ratio"] is None:
                lines.append(f"Target {t['row']} within {t['within']:g}x of {t['floor']}: not measured.")
            else:
                verdict = "met" if t["met"] else "MISSED"
                lines.append(f"Target {t['row']} within {t['within']:g}x of {t['floor']}: "
                             f"{t['ratio']:.2f}x, {verdict}.")
                single = self.ratio(REDIS_PY_SINGLE, t["floor"])
                if t["row"] == REDIS_PY and not t["met"] and single is not None:
                    lines.append(f"  With one connection instead of the pool, redis-py is {single:.2f}x: borrowing a "
                                 "connection and returning it (a lock, a poll of the socket, counters) costs the rest.")
        lines.append(describe_placement(self.placement, self.pinned))
        worst = max(self.rows, key=lambda r: r.timing.spread)
        load = self.environment.get("loadavg_before")
        cpus = self.environment.get("cpus") or 1
        busy = f" The load average was {load[0]:.1f} on {cpus} CPUs at the start" if load else ""
        busy += ": other processes competed for them." if load and load[0] >= cpus / 2 else "." if load else ""
        if self.noisy:
            lines.append(f"Noisy run: {len(self.noisy_rows())} of {len(self.rows)} rows spread by more than "
                         f"{NOISY_SPREAD:.0%} of their median over the repeats (widest: {worst.name}, "
                         f"{worst.timing.spread:.0%}).{busy} Rerun on a quieter machine, or with --pin.")
        else:
            lines.append(f"Quiet run: every row's repeats spread by at most {worst.timing.spread:.0%} of its "
                         f"median (widest: {worst.name}).{busy}")
        lines.extend(self.notes)
        return "\n".join(lines)

    def to_dict(self) -> dict:
        rows = []
        for r in self.rows:
            rows.append({"group": r.group, "floors": list(r.floors), "note": r.note,
                         "ratios": {f: self.ratio(r.name, f) for f in r.floors},
                         "spread": r.timing.spread, **r.timing.to_dict()})
        return {"quick": self.settings.quick, "pinned_cpu": self.pinned, "noisy": self.noisy,
                "noisy_rows": self.noisy_rows(), "noisy_spread": NOISY_SPREAD, "targets": self.targets(),
                "placement": self.placement, "notes": self.notes, "environment": self.environment,
                "rows": rows}


# --------------------------------------------------------------------------- raw-socket floors

def resp_command(*parts: str | bytes) -> bytes:
    """A Redis command in RESP, the wire format: ``resp_command("GET", "k")`` is ``*2\\r\\n$3\\r\\nGET...``."""
    if not parts:
        raise ValueError("a command needs at least its name")
    out = [b"*%d\r\n" % len(parts)]
    for part in parts:
        if isinstance(part, str):
            part = part.encode()
        if not isinstance(part, bytes):
            raise TypeError(f"command parts are str or bytes, not {type(part).__name__}")
        out.append(b"$%d\r\n%s\r\n" % (len(part), part))
    return b"".join(out)


class RawRoundTrip:
    """One TCP connection (``TCP_NODELAY``) that sends a fixed request and reads its fixed-size reply.

    The least any client can do for a GET: no parsing beyond counting bytes, no objects built. The
    first exchange learns the reply's length (``complete`` says when a reply is whole); every later one
    reads exactly that many bytes.
    """

    def __init__(self, host: str, port: int, request: bytes, complete: Callable[[bytes], bool],
                 *, timeout: float = 2.0):
        self.sock = socket.create_connection((host, port), timeout=timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.request = request
        self.reply = self._exchange_until(request, complete)
        self._buffer = bytearray(len(self.reply))
        self._view = memoryview(self._buffer)

    def _exchange_until(self, request: bytes, complete: Callable[[bytes], bool]) -> bytes:
        self.sock.sendall(request)
        data = b""
        while not complete(data):
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("the server closed the connection")
            data += chunk
        return data

    def command(self, request: bytes, complete: Callable[[bytes], bool]) -> bytes:
        """Send another request (AUTH, SELECT...) and return its whole reply."""
        return self._exchange_until(request, complete)

    def __call__(self) -> None:
        """One round trip: send the request, read the reply's bytes."""
        sock, view, size = self.sock, self._view, len(self._buffer)
        sock.sendall(self.request)
        got = 0
        while got < size:
            n = sock.recv_into(view[got:])
            if not n:
                raise ConnectionError("the server closed the connection")
            got += n

    def close(self) -> None:
        self.sock.close()


def _resp_line_complete(data: bytes) -> bool:
    return data.endswith(b"\r\n")


def _resp_bulk_complete(data: bytes) -> bool:
    head, sep, rest = data.partition(b"\r\n")
    if not sep:
        return False
    if not head.startswith(b"$"):
        return True  # an error or a simple string: one line
    size = int(head[1:])
    return size < 0 or len(rest) >= size + 2


def _memcached_get_complete(data: bytes) -> bool:
    return data.endswith(b"END\r\n") or data.startswith((b"ERROR", b"CLIENT_ERROR", b"SERVER_ERROR"))


def raw_redis_get(url: str, key: str, *, timeout: float = 2.0) -> RawRoundTrip:
    """A :class:`RawRoundTrip` doing ``GET key`` on the Redis at ``url`` (after AUTH and SELECT)."""
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "redis":
        raise ValueError(f"a raw socket speaks plain redis:// only, not {parts.scheme}://")
    probe = RawRoundTrip(parts.hostname, parts.port or 6379, resp_command("PING"), _resp_line_complete,
                         timeout=timeout)
    try:
        if parts.password:
            auth = [urllib.parse.unquote(parts.password)]
            if parts.username:
                auth.insert(0, urllib.parse.unquote(parts.username))
            reply = probe.command(resp_command("AUTH", *auth), _resp_line_complete)
            if not reply.startswith(b"+OK"):
                raise ConnectionError(f"AUTH was refused: {reply[:60]!r}")
        db = parts.path.strip("/") or "0"
        if db != "0":
            probe.command(resp_command("SELECT", db), _resp_line_complete)
        probe.request = resp_command("GET", key)
        probe.reply = probe.command(probe.request, _resp_bulk_complete)
        if not probe.reply.startswith(b"$") or probe.reply.startswith(b"$-1"):
            raise ConnectionError(f"GET {key} returned {probe.reply[:60]!r}")
        probe._buffer = bytearray(len(probe.reply))
        probe._view = memoryview(probe._buffer)
        return probe
    except BaseException:
        probe.close()
        raise


def raw_memcached_get(node: tuple[str, int], key: str, *, timeout: float = 2.0) -> RawRoundTrip:
    """A :class:`RawRoundTrip` doing ``get key`` on one memcached node."""
    trip = RawRoundTrip(node[0], node[1], f"get {key}\r\n".encode(), _memcached_get_complete, timeout=timeout)
    if not trip.reply.startswith(b"VALUE "):
        trip.close()
        raise ConnectionError(f"get {key} returned {trip.reply[:60]!r}")
    return trip


def redis_benchmark_get(url: str, key: str, *, requests: int, runs: int, timeout: float = 120.0) -> Timing:
    """Per-request time of ``redis-benchmark -c 1 -n requests GET key``, one sample per run.

    With one connection each request waits for the previous reply, so ``1 / requests-per-second`` is
    the time of one round trip as Redis's own C client sees it.
    """
    exe = shutil.which("redis-benchmark")
    if exe is None:
        raise FileNotFoundError("redis-benchmark is not on PATH (apt install redis-tools, or brew install redis)")
    parts = urllib.parse.urlsplit(url)
    if parts.scheme != "redis":
        raise ValueError(f"redis-benchmark is run here over plain redis:// only, not {parts.scheme}://")
    cmd = [exe, "-h", parts.hostname, "-p", str(parts.port or 6379), "-c", "1", "-n", str(requests), "--csv"]
    if parts.password:
        # redis-benchmark reads the password from its command line only (it ignores REDISCLI_AUTH).
        cmd += ["-a", urllib.parse.unquote(parts.password)]
        if parts.username:
            cmd += ["--user", urllib.parse.unquote(parts.username)]
    db = parts.path.strip("/") or "0"
    if db != "0":
        cmd += ["--dbnum", db]
    cmd += ["GET", key]
    samples = []
    for _ in range(runs):
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        lines = [line for line in proc.stdout.splitlines() if line.startswith('"GET')]
        if proc.returncode != 0 or not lines:
            message = (proc.stderr + proc.stdout).replace(parts.password or "\0", "***").strip()
            raise RuntimeError(f"redis-benchmark failed (exit {proc.returncode}): {message[-300:]}")
        rps = float(lines[-1].split('","')[1].strip('"'))
        samples.append(1e9 / rps)
    return from_samples(REDIS_BENCHMARK, samples, requests=requests)


def redis_benchmark_version() -> str | None:
    """``redis-benchmark --version``, or ``None`` when it is not installed."""
    exe = shutil.which("redis-benchmark")
    if exe is None:
        return None
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=10).stdout
    return out.strip() or None


# --------------------------------------------------------------------------- CPU placement

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


def _local_pid(pid: int | None, name: str, port: int) -> int | None:
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


def describe_placement(placement: dict, pinned: int | None) -> str:
    """One sentence per process: where it could run and where it ran."""
    def where(p):
        if not p or p.get("allowed_cpus") is None:
            return "not visible from here (remote, or in a container)"
        return (f"may run on CPUs {p['allowed_cpus']}, its {p['busy_threads']} busy thread(s) last ran on "
                f"{p['busy_threads_ran_on']}")

    head = f"Pinned to CPU {pinned}." if pinned is not None else "Not pinned (the scheduler placed everything)."
    parts = [f"{name} ({where(p)})" for name, p in placement.items()]
    return head + (" " + "; ".join(parts) + "." if parts else "")


# --------------------------------------------------------------------------- the measurements

def _route_answer(origin: str, dest: str, month: int) -> dict:
    """The real answer of the flight service: what every cache in the series stores."""
    from .data import FlightService

    with FlightService() as service:
        return service.route_delay(origin, dest, month)


@dataclass
class _Spec:
    """One row to measure: a statement for :func:`measure`, or a ``sampler`` (an outside tool) giving one sample."""

    name: str
    stmt: object = None
    globals: dict | None = None
    floors: tuple[str, ...] = ()
    note: str = ""
    per: int = 1
    sampler: Callable[[], float] | None = None


class _Bench:
    """The state of one run: the answer being cached, the servers, and the rows measured so far.

    The rows of one group are measured **interleaved**: one sample of each row in turn, repeated, so
    that a row and its floor see the same machine (a busy neighbour slows both, not only one of them)
    and their ratio stays meaningful on a noisy machine.
    """

    def __init__(self, servers, settings: Settings, workdir: Path):
        self.servers = servers
        self.settings = settings
        self.workdir = workdir
        self.rows: list[Row] = []
        self.notes: list[str] = []
        from .data import FlightService

        with FlightService() as service:
            self.route = service.routes()[0]
            self.answer = service.route_delay(*self._args())
        self.payload = json.dumps(self.answer, separators=(",", ":")).encode()

    def _args(self) -> tuple[str, str, int]:
        return (self.route.origin, self.route.dest, self.route.month)

    def _measure(self, group: str, specs: Sequence[_Spec]) -> None:
        """Measure ``specs`` interleaved, ``settings.repeat`` samples each, and keep them as rows."""
        samplers = {s.name: s.sampler or StatementSampler(s.stmt, globals=s.globals, min_time=self.settings.min_time)
                    for s in specs}
        samples = take_in_turn(samplers, self.settings.repeat)
        for spec in specs:
            meta = {"batch": spec.per} if spec.per != 1 else {}
            loops = getattr(samplers[spec.name], "loops", None) or 1
            timing = Timing(spec.name, tuple(x / spec.per for x in samples[spec.name]), loops, meta)
            self.rows.append(Row(group, timing, spec.floors, spec.note))

    # -- in-process
    def in_process(self) -> None:
        import functools

        import cachetools

        answer = self.answer
        o, de, m = self._args()

        def compute(origin, dest, month):
            return answer

        table = {(o, de, m): answer}
        lru = functools.lru_cache(maxsize=1024)(compute)
        mapping = cachetools.LRUCache(maxsize=1024)
        mapping[(o, de, m)] = answer
        decorated = cachetools.cached(cachetools.LRUCache(maxsize=1024))(compute)
        lru(o, de, m)
        decorated(o, de, m)
        client = self.servers.redis_client()
        near = NearCache(client, PREFIX + "near:", ttl=KEY_TTL, local_ttl=3600)  # invalidation on, as in 06
        key = self.route.key()
        near.set(key, answer)
        names = {"d": table, "f": lru, "c": mapping, "g": decorated, "n": near, "k": key,
                 "o": o, "de": de, "m": m}
        try:
            self._measure("in-process", [
                _Spec(DICT, "d[(o, de, m)]", names, note="builds and hashes the key tuple, as the caches do"),
                _Spec(LRU, "f(o, de, m)", names, (DICT,)),
                _Spec(CT_MAPPING, "c[(o, de, m)]", names, (DICT,)),
                _Spec(CT_CACHED, "g(o, de, m)", names, (DICT,)),
                _Spec(NEAR, "n.get(k)", names, (DICT,),
                      note="the local tier of cachelab's NearCache: a lock and a TTLCache lookup, no network"),
            ])
            if near.counters()["remote_hits"] or near.counters()["misses"]:
                raise RuntimeError(f"the near cache left its local tier during the run: {near.counters()}")
        finally:
            near.close()
            client.close()

    # -- disk
    def disk(self) -> None:
        import joblib

        memory = joblib.Memory(location=self.workdir / "joblib", verbose=0)
        cached = memory.cache(_route_answer)
        o, de, m = self._args()
        cached(o, de, m)  # the miss: computes and writes the output file
        outputs = sorted((self.workdir / "joblib").rglob("output.pkl"))
        if len(outputs) != 1:
            raise RuntimeError(f"expected one joblib output file, found {len(outputs)}")
        names = {"p": str(outputs[0]), "h": cached, "o": o, "de": de, "m": m}
        self._measure("disk", [
            _Spec(READ_BYTES, "with open(p, 'rb') as fh: fh.read()", names,
                  note=f"{outputs[0].stat().st_size} bytes, from the page cache as in steady state"),
            _Spec(JOBLIB, "h(o, de, m)", names, (READ_BYTES,),
                  note="hashes the arguments, checks the cache folder, unpickles the file"),
        ])

    # -- network: Redis
    def redis(self) -> None:
        client = self.servers.redis_client(decode_responses=False)
        single = self.servers.redis_client(decode_responses=False, single_connection_client=True)
        key = f"{PREFIX}answer"
        many = [f"{PREFIX}many:{i}" for i in range(BATCH)]
        with client.pipeline(transaction=False) as pipe:
            for k in [key, *many]:
                pipe.set(k, self.payload, ex=KEY_TTL)
            pipe.execute()
        url = self.servers.redis.url
        specs, floors, raw = [], [], None
        try:
            if urllib.parse.urlsplit(url).scheme == "redis":
                raw = raw_redis_get(url, key)
                specs.append(_Spec(RAW_REDIS, raw, note="hand-written RESP on a TCP_NODELAY socket"))
                floors.append(RAW_REDIS)
                if shutil.which("redis-benchmark"):
                    def one_run() -> float:
                        return redis_benchmark_get(url, key, requests=self.settings.benchmark_requests,
                                                   runs=1).samples_ns[0]

                    specs.append(_Spec(REDIS_BENCHMARK, floors=(RAW_REDIS,), sampler=one_run,
                                       note="1 / requests per second on one connection: Redis's own C client"))
                    floors.insert(0, REDIS_BENCHMARK)
                else:
                    self.notes.append("redis-benchmark is not installed (redis-tools): its row was not measured.")
            else:
                self.notes.append("REDIS_URL is not plain redis://: the raw-socket and redis-benchmark rows "
                                  "were not measured.")
            specs += [
                _Spec(REDIS_PY, lambda: client.get(key), floors=tuple(floors),
                      note=f"the project's client (a connection pool), {len(self.payload)}-byte value as bytes"),
                _Spec(REDIS_PY_SINGLE, lambda: single.get(key), floors=tuple(floors),
                      note="single_connection_client=True: no pool to borrow from and return to"),
                _Spec(REDIS_MGET, lambda: client.mget(many), floors=tuple(floors[-1:]), per=BATCH,
                      note="one round trip for the whole batch"),
            ]
            self._measure("network", specs)
        finally:
            if raw is not None:
                raw.close()
            client.close()
            single.close()

    # -- network: memcached
    def memcached(self) -> None:
        node_client = self.servers.memcached_node(0, PREFIX)
        hash_client = self.servers.memcached_client(PREFIX)
        raw = None
        try:
            node_client.set("answer", self.payload, expire=KEY_TTL, noreply=False)
            hash_client.set("answer", self.payload, expire=KEY_TTL, noreply=False)
            many = [f"many:{i}" for i in range(BATCH)]
            node_client.set_many({k: self.payload for k in many}, expire=KEY_TTL, noreply=False)
            raw = raw_memcached_get(self.servers.memcached.nodes[0], f"{PREFIX}answer")
            self._measure("network", [
                _Spec(RAW_MEMCACHED, raw, note="hand-written get on a TCP_NODELAY socket"),
                _Spec(PYMEMCACHE, lambda: node_client.get("answer"), floors=(RAW_MEMCACHED,),
                      note=f"one node, {len(self.payload)}-byte value"),
                _Spec(PYMEMCACHE_HASH, lambda: hash_client.get("answer"), floors=(RAW_MEMCACHED,),
                      note="rendezvous hashing over every node first"),
                _Spec(PYMEMCACHE_MANY, lambda: node_client.get_many(many), floors=(RAW_MEMCACHED,), per=BATCH,
                      note="one round trip for the whole batch"),
            ])
        finally:
            if raw is not None:
                raw.close()
            node_client.close()
            hash_client.close()


def _server_pids(servers) -> dict[str, int | None]:
    """The pids of the Redis and first memcached servers, as seen from here (``None`` when not local)."""
    client = servers.redis_client()
    try:
        redis_pid = redis_server_pid(client)
    finally:
        client.close()
    port = urllib.parse.urlsplit(servers.redis.url).port or 6379
    node = servers.memcached.nodes[0]
    return {"redis-server": _local_pid(redis_pid, "redis-server", port),
            "memcached": _local_pid(memcached_server_pid(node), "memcached", node[1])}


@contextlib.contextmanager
def _bench_servers(private: bool) -> Iterator:
    """The servers to measure: those of :func:`cachelab.servers.connect`, or private ones for the run."""
    from . import servers as srv

    if not private:
        yield srv.connect()
        return
    redis_server = srv.start_redis()
    node = srv.start_memcached()
    try:
        yield srv.Servers(srv.RedisEndpoint("private", True, url=redis_server.url),
                          srv.MemcachedEndpoint("private", True, nodes=[node.address]),
                          [redis_server, node])
    finally:
        redis_server.stop()
        node.stop()


def run(*, settings: Settings | None = None, pin: int | None = None, private: bool = False,
        progress: bool = True) -> Report:
    """Measure every layer and its floor; return the :class:`Report` (``main`` prints and saves it)."""
    from tqdm.auto import tqdm

    from . import servers as srv
    from .environment import environment

    settings = settings or Settings(quick=quick_mode())
    if pin is not None:
        allowed = os.sched_getaffinity(0)
        if isinstance(pin, bool) or not isinstance(pin, int) or pin not in allowed:
            raise ValueError(f"--pin takes a CPU this process may use, one of {sorted(allowed)}; got {pin!r}")
    notes = []
    if pin is not None and not private:
        found = srv.connect()
        if not (found.redis.owned and found.memcached.owned):
            private = True
            notes.append("The servers in use are not the project's own: the run used private servers, "
                         "so that it could pin them.")
    restore: dict[int, set[int]] = {}
    load_before = list(os.getloadavg())
    with _bench_servers(private) as servers, tempfile.TemporaryDirectory(
            prefix="bench-", dir=paths.cache_dir()) as tmp:
        servers.cleanup(PREFIX)
        pids = _server_pids(servers)
        pids["client"] = os.getpid()
        try:
            if pin is not None:
                for name, pid in pids.items():
                    if pid is None:
                        notes.append(f"{name} is not visible from here: it could not be pinned.")
                        continue
                    try:
                        restore.update(set_affinity(pid, {pin}))
                    except PermissionError:
                        notes.append(f"{name} (pid {pid}) belongs to another user: it could not be pinned.")
            before = {name: thread_stats(pid) for name, pid in pids.items() if pid}
            bench = _Bench(servers, settings, Path(tmp))
            steps = [("in-process", bench.in_process), ("disk", bench.disk), ("Redis", bench.redis),
                     ("memcached", bench.memcached)]
            with tqdm(total=len(steps), desc="bench", unit="step", file=sys.stderr, disable=not progress,
                      leave=False) as bar:
                for label, step in steps:
                    bar.set_postfix_str(label)
                    step()
                    bar.update()
            placement = {name: process_placement(pid, before[name]) if pid else None
                         for name, pid in sorted(pids.items(), key=lambda item: item[0] != "client")}
            env = environment(servers.versions())
            env["redis_benchmark"] = redis_benchmark_version()
            env["loadavg_before"], env["loadavg_after"] = load_before, list(os.getloadavg())
        finally:
            restore_affinity(restore)
            servers.cleanup(PREFIX)
    return Report(bench.rows, placement, pin, settings, env, notes + bench.notes)


def save(report: Report, out_dir: Path) -> tuple[Path, Path]:
    """Write ``results.json`` and ``bench.png`` into ``out_dir``; return both paths."""
    import matplotlib.pyplot as plt

    from .plots import latency_chart

    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "results.json"
    tmp = json_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(report.to_dict(), indent=1, ensure_ascii=False), encoding="utf-8")
    tmp.replace(json_path)
    floors = {f for r in report.rows for f in r.floors}
    colors = {r.name: FLOOR_COLOR if r.is_floor or r.name in floors else GROUP_COLORS[r.group]
              for r in report.rows}
    title = "Cost of one cache hit at each layer, next to its floor (grey)"
    if report.settings.quick:
        title += " [QUICK MODE]"
    fig = latency_chart([r.timing for r in report.rows], title=title, colors=colors)
    figure_path = out_dir / "bench.png"
    fig.savefig(figure_path, bbox_inches="tight")
    plt.close(fig)
    return json_path, figure_path


def add_parser(subparsers) -> argparse.ArgumentParser:
    """The ``bench`` subcommand of ``python -m cachelab``."""
    parser = subparsers.add_parser("bench", help="measure every caching layer next to its physical floor",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short measurements (for tests), not for reading")
    parser.add_argument("--pin", type=int, metavar="CPU",
                        help="run the client and the servers on this one CPU (servers of your own are left alone: "
                             "private ones are started for the run)")
    parser.add_argument("--private", action="store_true", help="measure private servers started for the run")
    parser.add_argument("--out", type=Path, help="output folder (default build/bench)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--strict", action="store_true", help="exit with 1 when a target is missed")
    parser.set_defaults(func=main_from_args)
    return parser


def main_from_args(args) -> int:
    """Run, save and print; the exit code is 2 for a bad argument or missing servers, 1 for a missed
    target with ``--strict``, else 0."""
    from .servers import ServersUnavailable

    settings = Settings(quick=args.quick or quick_mode())
    started = time.monotonic()
    try:
        report = run(settings=settings, pin=args.pin, private=args.private, progress=not args.no_progress)
    except (ValueError, ServersUnavailable, FileNotFoundError) as exc:
        print(f"cachelab bench: {exc}", file=sys.stderr)
        return 2
    json_path, figure_path = save(report, args.out or paths.project_root() / "build" / "bench")
    env = report.environment
    print(f"cachelab bench: Python {env['python']} on {env['cpu']} x {env['cpus']}, "
          f"{', '.join(f'{k} {v}' for k, v in env['servers'].items())}"
          + ("  [QUICK MODE: numbers not meant for reading]" if settings.quick else ""))
    print()
    print(report.table())
    print()
    print(report.summary())
    print(f"\nWrote {json_path} and {figure_path} in {time.monotonic() - started:.0f} s.")
    missed = [t for t in report.targets() if t["met"] is False]
    return 1 if args.strict and missed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m cachelab bench ...`` as a function (the tests call it)."""
    parser = argparse.ArgumentParser(prog="cachelab")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", *(argv or [])])
    return args.func(args)
