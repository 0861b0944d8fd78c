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

A floor bounds its layer only when both reach the server the same way, so each floor is measured over
the placement of its layer:

* the same server thread: the raw memcached ``get`` goes down the very socket of the pymemcache client
  it bounds (memcached serves each connection from one of its worker threads for the connection's whole
  life, and another connection may land on a thread on another CPU); the pymemcache rows all use that
  one connection, the ``HashClient``'s own connection to the node that holds the key. Redis runs every
  connection's commands on its one main thread, so the raw Redis floor has a connection of its own;
* the same CPUs: where this process may use two CPUs or more, the client (and ``redis-benchmark``, which
  inherits its CPU affinity) is pinned to the first and the servers to the second, every thread, as
  ``taskset -a -p -c CPU PID`` does. ``--pin CPU`` puts the client and the servers on one CPU instead,
  ``--no-pin`` leaves the placement to the scheduler. It pins only servers the project started; with servers
  of your own (``REDIS_URL``/``MEMCACHED_SERVERS`` or compose) it starts private ones for the run instead;
* the same moments: the samples of a layer and its floors are taken in turn (:func:`~cachelab.timing.take_in_turn`).

A floor that still comes out above a layer it bounds is reported as a fault of the measurement, with no
ratio (``--strict`` fails on it). Two rows are compared with a floor without being bounded by it: a batch
per key, which is how a batch beats the round trip, and ``redis-benchmark``, a round trip driven from C,
which may beat the same round trip driven from Python. The run records the pinning and where each
process ran, and reports whether it was noisy: the spread of the repeats (p10-p90 over the median) of each
row.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import paths, sharding
from ..near_cache import NearCache
from ..timing import StatementSampler, Timing, quick_mode, take_in_turn
from .floors import raw_memcached_get, raw_redis_get, redis_benchmark_get, redis_benchmark_version
from .placement import (
    Pinning,
    choose_pinning,
    local_pid,
    memcached_server_pid,
    process_placement,
    redis_server_pid,
    restore_affinity,
    set_affinity,
    thread_stats,
)
from .report import (
    BATCH,
    CT_CACHED,
    CT_MAPPING,
    DICT,
    JOBLIB,
    KEY_TTL,
    LRU,
    NEAR,
    PREFIX,
    PYMEMCACHE,
    PYMEMCACHE_HASH,
    PYMEMCACHE_MANY,
    RAW_MEMCACHED,
    RAW_REDIS,
    READ_BYTES,
    REDIS_BENCHMARK,
    REDIS_MGET,
    REDIS_PY,
    REDIS_PY_SINGLE,
    Report,
    Row,
    Settings,
    save,
)

MEMCACHED_KEY = "answer"  # the key of the single-key memcached rows (under PREFIX)


def _memcached_home(nodes: Sequence[tuple[str, int]]) -> tuple[str, int]:
    """The memcached node that holds ``MEMCACHED_KEY``: the one the ``HashClient`` sends its GET to."""
    nodes = [tuple(node) for node in nodes]
    name = sharding.node_for(MEMCACHED_KEY, nodes)
    return next(node for node in nodes if sharding.node_name(node) == name)


def _route_answer(origin: str, dest: str, month: int) -> dict:
    """The real answer of the flight service: what every cache in the series stores."""
    from ..data import FlightService

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
    bound: bool = True


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
        from ..data import FlightService

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
            self.rows.append(Row(group, timing, spec.floors, spec.note, spec.bound))

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

                    specs.append(_Spec(REDIS_BENCHMARK, floors=(RAW_REDIS,), sampler=one_run, bound=False,
                                       note="1 / requests per second on one connection: Redis's own C client, a "
                                            "second floor (a round trip without Python: it may come out below "
                                            "the raw socket)"))
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
        """The pymemcache rows and their raw floor, all over one connection: the ``HashClient``'s own
        ``Client`` for the node that holds the key, so one memcached worker thread serves every row."""
        hash_client = self.servers.memcached_client(PREFIX)
        home = hash_client.clients[sharding.node_name(_memcached_home(self.servers.memcached.nodes))]
        raw = None
        try:
            home.set(MEMCACHED_KEY, self.payload, expire=KEY_TTL, noreply=False)
            many = [f"many:{i}" for i in range(BATCH)]
            home.set_many({k: self.payload for k in many}, expire=KEY_TTL, noreply=False)
            if hash_client.get(MEMCACHED_KEY) != self.payload:
                raise RuntimeError("the HashClient did not read the key back from its node")
            sock = home.sock
            raw = raw_memcached_get(home.server, f"{PREFIX}{MEMCACHED_KEY}", over=sock)
            self._measure("network", [
                _Spec(RAW_MEMCACHED, raw, note="hand-written get on the pymemcache client's own socket"),
                _Spec(PYMEMCACHE, lambda: home.get(MEMCACHED_KEY), floors=(RAW_MEMCACHED,),
                      note=f"one node's Client, {len(self.payload)}-byte value"),
                _Spec(PYMEMCACHE_HASH, lambda: hash_client.get(MEMCACHED_KEY), floors=(RAW_MEMCACHED,),
                      note="rendezvous hashing over every node first, then the same Client"),
                _Spec(PYMEMCACHE_MANY, lambda: home.get_many(many), floors=(RAW_MEMCACHED,), per=BATCH,
                      note="one round trip for the whole batch"),
            ])
            if home.sock is not sock:  # pymemcache closes its socket on an error and reconnects later
                raise RuntimeError("the pymemcache connection was reopened during the run: its rows and their "
                                   "floor may have been served by different memcached threads")
        finally:
            if raw is not None:
                raw.close()
            hash_client.close()


def _server_pids(servers) -> dict[str, int | None]:
    """The pids of the Redis server and of the memcached node the rows use, as seen from here (``None``
    when not local)."""
    client = servers.redis_client()
    try:
        redis_pid = redis_server_pid(client)
    finally:
        client.close()
    port = urllib.parse.urlsplit(servers.redis.url).port or 6379
    node = _memcached_home(servers.memcached.nodes)
    return {"redis-server": local_pid(redis_pid, "redis-server", port),
            "memcached": local_pid(memcached_server_pid(node), "memcached", node[1])}


@contextlib.contextmanager
def _bench_servers(private: bool) -> Iterator:
    """The servers to measure: those of :func:`cachelab.servers.connect`, or private ones for the run."""
    from .. import servers as srv

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


def _cpus_allowed() -> set[int]:
    """The CPUs this process may use (``os.sched_getaffinity``; every CPU where it does not exist)."""
    try:
        return os.sched_getaffinity(0)
    except AttributeError:  # not Linux: no affinity to read or set
        return set(range(os.cpu_count() or 1))


def run(*, settings: Settings | None = None, pin: int | None = None, no_pin: bool = False,
        private: bool = False, progress: bool = True) -> Report:
    """Measure every layer and its floor; return the :class:`Report` (``main`` prints and saves it).

    By default the client and the servers are pinned as :func:`.placement.default_pinning` says; ``pin``
    puts them all on that one CPU, ``no_pin`` leaves them to the scheduler.
    """
    from tqdm.auto import tqdm

    from .. import servers as srv
    from ..environment import environment

    settings = settings or Settings(quick=quick_mode())
    notes = []
    if not hasattr(os, "sched_setaffinity"):
        if pin is not None:
            raise ValueError("--pin needs CPU affinity, which this system does not offer (Linux has it)")
        no_pin = True
        notes.append("This system offers no CPU affinity: the run was not pinned.")
    pinning: Pinning | None = choose_pinning(pin, no_pin, _cpus_allowed())
    if pinning is not None and not private:
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
            if pinning is not None:
                for name, pid in pids.items():
                    if pid is None:
                        notes.append(f"{name} is not visible from here: it could not be pinned.")
                        continue
                    cpu = pinning.client_cpu if name == "client" else pinning.server_cpu
                    try:
                        restore.update(set_affinity(pid, {cpu}))
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
    return Report(bench.rows, placement, pinning, settings, env, notes + bench.notes)


def add_parser(subparsers) -> argparse.ArgumentParser:
    """The ``bench`` subcommand of ``python -m cachelab``."""
    parser = subparsers.add_parser("bench", help="measure every caching layer next to its physical floor",
                                   description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="short measurements (for tests), not for reading")
    placement = parser.add_mutually_exclusive_group()
    placement.add_argument("--pin", type=int, metavar="CPU",
                           help="run the client and the servers on this one CPU (by default, with two CPUs or more, "
                                "the client gets one and the servers another; servers of your own are left alone: "
                                "private ones are started for the run)")
    placement.add_argument("--no-pin", action="store_true",
                           help="pin nothing: the scheduler places the client and the servers")
    parser.add_argument("--private", action="store_true", help="measure private servers started for the run")
    parser.add_argument("--out", type=Path, help="output folder (default build/bench)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--strict", action="store_true",
                        help="exit with 1 when a target is missed or a floor comes out above its layer")
    parser.set_defaults(func=main_from_args)
    return parser


def main_from_args(args) -> int:
    """Run, save and print; the exit code is 2 for a bad argument or missing servers, 1 for a missed
    target or a measurement fault (a floor above its layer) with ``--strict``, else 0."""
    from ..servers import ServersUnavailable

    settings = Settings(quick=args.quick or quick_mode())
    started = time.monotonic()
    try:
        report = run(settings=settings, pin=args.pin, no_pin=args.no_pin, private=args.private,
                     progress=not args.no_progress)
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
    return 1 if args.strict and (missed or report.faults()) else 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m cachelab bench ...`` as a function (the tests call it)."""
    parser = argparse.ArgumentParser(prog="cachelab")
    add_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(["bench", *(argv or [])])
    return args.func(args)
