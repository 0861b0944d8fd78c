"""Which cache should I use? A cost model fed with this run's own measurements (notebook 10).

The reader describes their situation (:class:`Situation`: worker processes, machines, request rate, key
space and popularity, memory budget, how stale an answer may be, value size, must the cache survive a
restart of the application). The run's notebooks measured what each cache costs on this machine
(:class:`Measurements`: the cost of a hit, what a miss adds to the query, the bytes one entry takes, the
invalidation latency of the caches that invalidate, the throughput one Redis served). :func:`evaluate`
puts every :data:`CANDIDATES` through the situation:

* **hit ratio** at that memory budget: the situation's Zipf stream dealt round-robin over the copies of the
  cache (one per process for an in-process cache, one per machine for a disk cache, one in all for a shared
  server), each copy an LRU of the entries its share of the budget holds, expiring after the TTL the
  staleness bound allows. A copy in the application's memory (an in-process cache, the local tier of a
  two-tier one) starts empty after every restart and warms up again; a disk cache or a server keeps its
  entries, so it is taken at its steady state. A service's traffic
  between two restarts is millions of requests, too many to replay for every slider move, so the hit
  ratio comes from Che's approximation of an LRU (Che, Tung and Wang, 2002; Fricker, Robert and Roberts,
  2012) with the TTL and the warm-up added; :func:`replay` replays a stream request by request, and the
  tests and notebook 10 check the model against it;
* **expected latency** per request, ``h * hit + (1 - h) * (query + miss overhead)``, both measured
  (a two-tier cache: the local tier first, the shared one for what the local tier misses);
* **backend load**: queries per second that still reach the database;
* **memory** in total (one copy per process for the local tiers);
* **staleness bound**: the TTL for a TTL-only cache, the measured invalidation latency for one that is
  told about writes, unbounded for a cache that never expires;
* **moving parts**: what you now run and watch.

Writes (``Situation.write_rate``) cost every cache that is told about them its refills: a shared cache
deletes the key on a write (delete-on-write, as notebook 07 ran them) and the next requests miss; until
the first refill lands, every worker that asks for the key runs the query too (a stampede:
:func:`stampede_queries`), unless a lock lets one worker query while the others wait (``Redis + lock``).
The model then checks **capacity**: the queries a second the misses send must fit the database
(``database_cpus`` over the measured query time), the requests a shared server gets must fit its measured
rate (Redis and memcached counted on the server over timed windows, a cluster at the rate 08 measured with
its shards, never assumed to scale linearly), and each worker, a server of one request at a time, must
keep up: its **latency** is an M/G/1 queue's (Pollaczek-Khinchine mean, and a p99 from the waiting time's
exponential tail), from the measured hit and miss costs.

Every figure carries its **source** (``Measurements.sources``: this run, or the reference run with its
machine and date), and each candidate's latency an **interval** from the measured spread (p10 and p90 of
every timing it uses): candidates whose intervals overlap the best one's are **tied**
(:attr:`Ranking.tied`). :func:`sensitivity` says which assumption, changed by how much, flips the best.
:func:`predict_web` is the same arithmetic for notebook 07's set-up (a closed loop on ``server_cpus`` CPUs):
the guide's validation.

:func:`rank` orders the candidates that meet the constraints by expected latency and says, for every
other one, why it was ruled out. Nothing here is a fixed table: change a measurement and the choice moves
(``tests/test_guide.py`` shows it flipping).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from . import arguments

LOCAL_SHARE = 0.1  # of the memory budget, for the local tier of a two-tier cache (the rest is the shared one)
TOLERANCE = 0.10  # latencies within 10% of the fastest count as a tie: no reader would notice the difference
ON_ONE_REDIS = ("Redis", "Redis + lock", "near cache", "client-side caching")  # shared tier: one Redis server
SERVER_OF = {name: "Redis" for name in ON_ONE_REDIS} | {"memcached": "memcached", "Redis Cluster": "Redis Cluster"}
P99_FLOOR = 0.01  # the tail the p99 leaves
TWO_TIER_SAFETY_TTL = 3600.0  # s: the local tier of an invalidated cache still expires, in case a message is lost


@dataclass(frozen=True)
class Situation:
    """The reader's service: what the choice depends on."""

    processes: int = 1  # worker processes per machine
    machines: int = 1
    request_rate: float = 100.0  # requests per second, the whole service
    keys: int = 2_000  # distinct questions
    alpha: float = 0.8  # Zipf popularity: 0 is uniform; higher, a few keys get most requests
    memory_budget_bytes: float = 64e6  # for caching, all copies together
    max_staleness_s: float | None = None  # None: the data never change; 0: no answer may ever be stale
    value_bytes: int = 1_000
    survive_restart: bool = False  # the cache must survive a restart (a deploy) of the application
    horizon_s: float = 86_400.0  # how long the application runs between restarts (a deploy a day by default):
    # the caches in its memory start empty and warm up again after each
    write_rate: float = 0.0  # writes a second, the whole service, landing on keys as often as they are read
    database_cpus: float = 1.0  # CPUs that run the queries: the database serves database_cpus / query a second

    def __post_init__(self):
        arguments.integer("processes", self.processes, minimum=1)
        arguments.integer("machines", self.machines, minimum=1)
        arguments.number("request_rate", self.request_rate, positive=True)
        arguments.integer("keys", self.keys, minimum=1)
        arguments.number("alpha", self.alpha, minimum=0)
        arguments.number("memory_budget_bytes", self.memory_budget_bytes, positive=True)
        if self.max_staleness_s is not None:
            arguments.number("max_staleness_s", self.max_staleness_s, minimum=0)
        arguments.integer("value_bytes", self.value_bytes, minimum=0)
        arguments.number("horizon_s", self.horizon_s, positive=True)
        arguments.number("write_rate", self.write_rate, minimum=0)
        arguments.number("database_cpus", self.database_cpus, positive=True)

    @property
    def workers(self) -> int:
        """Worker processes in the whole service."""
        return self.processes * self.machines


@dataclass(frozen=True)
class Candidate:
    """A cache, described by facts about the tool (not measurements)."""

    name: str
    scope: str  # "none", "process", "machine" (a disk every process of one machine shares), "shared"
    expiry: str  # "none" (never expires), "ttl", "invalidation" (told about writes, with a safety TTL)
    survives_restart: bool  # an application restart keeps its entries
    max_value_bytes: float  # the largest value it holds
    moving_parts: str
    parts: int = 0  # how much it adds to run, for ties: 0 nothing, higher more servers and code paths
    two_tier: bool = False  # a local tier per process in front of a shared cache
    shards: bool = False  # spreads over several servers (Redis Cluster)
    lock: bool = False  # one worker queries a missing key while the others wait (no stampede)
    notes: str = ""

    @property
    def deletes_on_write(self) -> bool:
        """A shared cache: a write deletes the key (or invalidates the local copies), which then refill."""
        return self.scope == "shared"


CANDIDATES: tuple[Candidate, ...] = (
    Candidate("no cache", "none", "none", True, math.inf, "nothing", parts=0),
    Candidate("lru_cache", "process", "none", False, math.inf, "nothing: the standard library", parts=1),
    Candidate("cachetools TTL", "process", "ttl", False, math.inf, "a TTL to choose, a lock for threads", parts=2),
    Candidate("joblib", "machine", "ttl", True, math.inf,
              "a cache folder to size and clean; pickle files; expiry through cache_validation_callback",
              parts=3, notes="expires with cache_validation_callback=expires_after(...); also recomputes when "
                             "the function's code changes"),
    Candidate("diskcache", "machine", "ttl", True, math.inf, "a SQLite file per machine; pickle unless JSONDisk",
              parts=3),
    Candidate("memcached", "shared", "ttl", True, 1024 * 1024, "servers, a client with timeouts, serialisation",
              parts=4),
    Candidate("Redis", "shared", "ttl", True, 512 * 1024 * 1024, "a server, a client with timeouts, serialisation",
              parts=4),
    Candidate("Redis + lock", "shared", "ttl", True, 512 * 1024 * 1024,
              "Redis, and a lock around each miss (SET NX PX, the others poll)", parts=5, lock=True),
    Candidate("near cache", "shared", "invalidation", True, 512 * 1024 * 1024,
              "Redis, a local tier per process, a pub/sub listener", parts=6, two_tier=True),
    Candidate("client-side caching", "shared", "invalidation", True, 512 * 1024 * 1024,
              "Redis with CLIENT TRACKING, a local tier per process, an invalidation connection", parts=6,
              two_tier=True),
    Candidate("Redis Cluster", "shared", "ttl", True, 512 * 1024 * 1024,
              "six servers (primaries and replicas), a cluster-aware client, slot-aware keys", parts=8, shards=True),
)


@dataclass(frozen=True)
class Measurements:
    """What this run measured, in nanoseconds, bytes, seconds and requests per second.

    ``hit_ns`` maps a candidate's name to the cost of one hit; ``miss_overhead_ns`` to what a miss adds to
    the query (the lookup that failed and the store); ``entry_bytes`` to what one cached answer occupies;
    ``invalidation_s`` to the time from a write to the local copies' drop, for the invalidated caches.
    ``local_hit_ns`` is a hit in the local tier of a two-tier cache (the shared tier's is its ``hit_ns``),
    and ``local_entry_bytes`` what an answer occupies there (Python objects; ``entry_bytes`` is the shared
    tier's). ``server_rps`` is the GET rate a shared server served, counted on the server over timed windows
    (``"Redis"`` and ``"memcached"`` one server, ``"Redis Cluster"`` the cluster with ``cluster_shards``
    shards, as measured: never one shard's rate multiplied); ``shared_server_rps`` is Redis's, for callers
    that give only it. ``query_range_ns``, ``hit_range_ns`` and ``local_hit_range_ns`` are the p10 and p90
    of those timings: the spread from which :func:`rank` finds ties. ``sources`` says where each figure
    comes from (``"query"``, ``"hit:Redis"``, ``"rate:memcached"``... to a label such as ``"this run"``).
    """

    query_ns: float
    hit_ns: Mapping[str, float]
    miss_overhead_ns: Mapping[str, float] = field(default_factory=dict)
    entry_bytes: Mapping[str, float] = field(default_factory=dict)
    invalidation_s: Mapping[str, float] = field(default_factory=dict)
    local_hit_ns: Mapping[str, float] = field(default_factory=dict)
    local_entry_bytes: Mapping[str, float] = field(default_factory=dict)
    shared_server_rps: float = math.inf
    shard_rps: float = math.inf
    cluster_shards: int = 3
    server_rps: Mapping[str, float] = field(default_factory=dict)
    query_range_ns: tuple[float, float] | None = None
    hit_range_ns: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    local_hit_range_ns: Mapping[str, tuple[float, float]] = field(default_factory=dict)
    sources: Mapping[str, str] = field(default_factory=dict)  # figure -> where it comes from, for the reader
    source: Mapping[str, str] = field(default_factory=dict)  # kept for older callers: a summary

    def with_changes(self, **changes) -> Measurements:
        """A copy with some figures changed: ``m.with_changes(hit_ns={**m.hit_ns, "Redis": 5e5})``."""
        return replace(self, **changes)

    def rate_of(self, server: str) -> float:
        """The measured GET rate of ``server`` (``"Redis"``, ``"memcached"``, ``"Redis Cluster"``); inf when
        it was not measured (the model then sets it no cap, and says so)."""
        if server in self.server_rps:
            return float(self.server_rps[server])
        if server == "Redis":
            return self.shared_server_rps
        return math.inf

    def at(self, end: str) -> Measurements:
        """These measurements with every timing that has a spread at its p10 (``"low"``) or p90 (``"high"``),
        the query included."""
        i = {"low": 0, "high": 1}[end]
        return replace(
            self, query_ns=self.query_range_ns[i] if self.query_range_ns else self.query_ns,
            hit_ns={k: (self.hit_range_ns[k][i] if k in self.hit_range_ns else v) for k, v in self.hit_ns.items()},
            local_hit_ns={k: (self.local_hit_range_ns[k][i] if k in self.local_hit_range_ns else v)
                          for k, v in self.local_hit_ns.items()})

    @property
    def has_spread(self) -> bool:
        return bool(self.query_range_ns or self.hit_range_ns)

    def inputs_of(self, candidate: Candidate) -> list[str]:
        """The figures a candidate's evaluation uses, as keys of :attr:`sources`."""
        name = candidate.name
        keys = ["query"]
        if candidate.scope != "none":
            keys += [f"hit:{name}", f"miss:{name}", f"bytes:{name}"]
        if candidate.two_tier:
            keys += [f"local hit:{name}", f"invalidation:{name}"]
        if name in SERVER_OF:
            keys.append(f"rate:{SERVER_OF[name]}")
        return keys

    def sources_of(self, candidate: Candidate) -> dict[str, str]:
        """``{figure: source}`` for the figures of ``candidate`` whose source is known."""
        return {k: self.sources[k] for k in self.inputs_of(candidate) if k in self.sources}


@dataclass
class Evaluation:
    """One candidate in one situation: the model's figures, and why it is ruled out (empty if it is not)."""

    candidate: Candidate
    hit_ratio: float
    local_hit_ratio: float
    latency_ns: float
    backend_qps: float
    memory_bytes: float
    staleness_s: float  # math.inf: unbounded
    ttl_s: float | None
    copies: int
    ruled_out: list[str] = field(default_factory=list)
    p99_ns: float = math.nan  # the 99th percentile of a request's latency, queueing included
    service_ns: float = math.nan  # a request's mean cost without queueing
    utilisation: float = 0.0  # of each worker, a server of one request at a time
    latency_range_ns: tuple[float, float] | None = None  # from the measured spread (p10 and p90 of the inputs)
    queries_per_refill: float = 1.0  # after a write or an expiry: 1, or more in a stampede
    server_load: float = 0.0  # requests a second the shared server gets (GETs, and a SET per miss)
    sources: dict[str, str] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.candidate.name

    @property
    def eligible(self) -> bool:
        return not self.ruled_out


# --------------------------------------------------------------------------- the replay

def popularity(situation: Situation) -> np.ndarray:
    """The share of requests that asks for each key, most popular first (Zipf with ``alpha``)."""
    weights = np.arange(1, situation.keys + 1, dtype=float) ** -situation.alpha
    return weights / weights.sum()


def stream(situation: Situation, n_requests: int, seed: int = 2013) -> np.ndarray:
    """``n_requests`` key ranks drawn from the situation's popularity (for :func:`replay`)."""
    return np.random.default_rng(seed).choice(situation.keys, size=n_requests, p=popularity(situation))


def lru_characteristic_time(rates: np.ndarray, capacity: float) -> float:
    """Che's characteristic time of an LRU of ``capacity`` entries fed Poisson requests at ``rates`` per key.

    The time ``T`` such that the keys asked for within the last ``T`` seconds fill the cache:
    ``sum(1 - exp(-rate * T)) = capacity``. Infinite when every key fits.
    """
    if capacity >= len(rates):
        return math.inf
    if capacity <= 0:
        return 0.0
    low, high = 0.0, 1.0
    while np.sum(-np.expm1(-rates * high)) < capacity:
        low, high = high, high * 2
    for _ in range(45):  # a relative precision of 1e-13 of the bracket: far below any measured spread
        mid = (low + high) / 2
        if np.sum(-np.expm1(-rates * mid)) < capacity:
            low = mid
        else:
            high = mid
    return high


def key_hit_ratios(rates: np.ndarray, capacity: float, ttl: float | None) -> np.ndarray:
    """Each key's steady-state hit ratio in one LRU copy of ``capacity`` entries with an optional ``ttl``.

    LRU alone: ``1 - exp(-rate * T)`` (Che). A TTL alone, counted from the miss that stored the value: of the
    requests in a cycle of ``ttl`` plus the wait for the next miss, all but the first hit,
    ``rate * ttl / (1 + rate * ttl)``. With both, the lower of the two.
    """
    t = lru_characteristic_time(rates, capacity)
    lru = np.ones_like(rates) if math.isinf(t) else -np.expm1(-rates * t)
    if ttl is None:
        return lru
    return np.minimum(lru, rates * ttl / (1 + rates * ttl))


def model_hit_ratios(situation: Situation, copies: int, capacity: float, ttl: float | None,
                     rate: float | None = None, shares: np.ndarray | None = None, *,
                     warm_up: bool = True) -> np.ndarray:
    """Each key's hit ratio over the situation's horizon in ``copies`` copies, warm-up included.

    ``rate`` is the request rate reaching the copies (default the situation's) and ``shares`` the share
    of it each key gets (default :func:`popularity`). The first request of a key in a copy is a miss
    whatever the steady state: over the horizon a copy sees ``1 - exp(-rate_i * horizon)`` first requests
    of key ``i``, out of ``rate_i * horizon`` requests. Without ``warm_up`` (a copy that outlives the
    application's restarts, on disk or on a server), the steady state alone.
    """
    rate = situation.request_rate if rate is None else rate
    shares = popularity(situation) if shares is None else shares
    per_copy = rate * shares / copies
    steady = key_hit_ratios(per_copy, capacity, ttl)
    if not warm_up:
        return np.clip(steady, 0.0, 1.0)
    requests = per_copy * situation.horizon_s
    with np.errstate(divide="ignore", invalid="ignore"):
        first = np.where(requests > 0, -np.expm1(-requests) / requests, 0.0)
    return np.clip(steady - first * steady, 0.0, 1.0)


def replay(ranks: np.ndarray, gap_s: float, copies: int, capacity: int, ttl: float | None,
            ) -> tuple[np.ndarray, int]:
    """Replay ``ranks``, one request every ``gap_s`` seconds, dealt round-robin over ``copies`` LRU caches
    of ``capacity`` entries whose values expire ``ttl`` seconds after they were stored.

    Returns a boolean array (True: that request hit) and the most entries any copy held.
    """
    hits = np.zeros(len(ranks), dtype=bool)
    if capacity < 1:
        return hits, 0
    caches = [OrderedDict() for _ in range(copies)]
    peak = 0
    for i, key in enumerate(ranks.tolist()):
        cache = caches[i % copies]
        now = i * gap_s
        stored = cache.get(key)
        if stored is not None and (ttl is None or now - stored < ttl):
            cache.move_to_end(key)
            hits[i] = True
            continue
        cache[key] = now  # a miss: the answer is stored now, and its TTL starts now
        cache.move_to_end(key)
        if len(cache) > capacity:
            cache.popitem(last=False)
        peak = max(peak, len(cache))
    return hits, peak


def stampede_queries(rates: np.ndarray, query_s: float, workers: int, *, lock: bool = False) -> np.ndarray:
    """The queries one refill of each key costs: the request that missed, and every other request for the key
    that arrives while its query runs (Poisson at ``rates``), as long as a worker is free to run it:
    ``E[min(workers, 1 + N)]`` with ``N`` Poisson of mean ``rate * query_s``. Behind a lock: 1."""
    rates = np.asarray(rates, dtype=float)
    if lock or workers <= 1:
        return np.ones_like(rates)
    mu = rates * query_s
    out, below, term = np.zeros_like(mu), np.zeros_like(mu), np.exp(-mu)
    for j in range(int(workers)):
        out += 1.0 - below  # P(N >= j)
        below = below + term
        term = term * mu / (j + 1)
    return out


def refills(rates: np.ndarray, write_rates: np.ndarray, ttl: float | None) -> np.ndarray:
    """Refills a second of each key in a cache that holds it until a write (Poisson at ``write_rates``)
    deletes it or ``ttl`` expires it, whichever comes first; the next request (Poisson at ``rates``) misses
    and stores it again. One refill per cycle of ``E[min(ttl, write)] + 1 / rate`` seconds."""
    rates = np.asarray(rates, dtype=float)
    w = np.asarray(write_rates, dtype=float) * np.ones_like(rates)
    t = math.inf if ttl is None else ttl
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        held = np.where(w > 0, -np.expm1(-w * t) / np.where(w > 0, w, 1.0), t)
        return np.where(rates > 0, 1.0 / (held + 1.0 / np.where(rates > 0, rates, 1.0)), 0.0)


def queueing(rate: float, costs: Sequence[float], probabilities: Sequence[float]) -> tuple[float, float, float]:
    """A server of one request at a time (a sync worker) fed Poisson requests at ``rate`` a second, each
    costing ``costs[i]`` seconds with ``probabilities[i]``: an M/G/1 queue. Returns the utilisation, the mean
    response time (Pollaczek-Khinchine: ``E[S] + rate E[S^2] / (2 (1 - rho))``) and its 99th percentile, with
    the wait taken as 0 with probability ``1 - rho`` and else exponential (exact for exponential costs, an
    estimate otherwise). ``inf`` for both when the server cannot keep up."""
    c, q = [float(x) for x in costs], [float(x) for x in probabilities]
    mean, second = sum(a * b for a, b in zip(q, c, strict=True)), sum(b * a * a for a, b in zip(c, q, strict=True))
    rho = rate * mean
    if rho >= 1:
        return rho, math.inf, math.inf
    wait = rate * second / (2 * (1 - rho))
    tail = wait / rho if rho > 0 else 0.0  # the mean wait of a request that waits at all

    def below(t: float) -> float:  # P(response <= t)
        total = 0.0
        for cost, p in zip(c, q, strict=True):
            if t >= cost:
                total += p * (1.0 - (rho * math.exp(-(t - cost) / tail) if tail > 0 else 0.0))
        return total

    low, high = 0.0, max(c) + 50 * tail + 1e-12
    for _ in range(60):
        mid = (low + high) / 2
        low, high = (mid, high) if below(mid) < 1 - P99_FLOOR else (low, mid)
    return rho, mean + wait, high


def _copies(candidate: Candidate, situation: Situation) -> int:
    return {"none": 0, "process": situation.workers, "machine": situation.machines, "shared": 1}[candidate.scope]


def _ttl(candidate: Candidate, situation: Situation, query_s: float) -> float | None:
    """The TTL the staleness bound allows (``None``: never expires).

    A TTL's clock starts when the value is stored, after the query that computed it: a write that lands
    just after the query began is missed, so an answer can be stale for the query's duration plus the TTL.
    The TTL is what the bound leaves once the query's duration is taken off (0 when nothing is left).
    """
    if candidate.expiry == "invalidation":
        return TWO_TIER_SAFETY_TTL
    if candidate.expiry == "none" or situation.max_staleness_s is None:
        return None
    return max(0.0, situation.max_staleness_s - query_s)


def _shared_hits(rates: np.ndarray, writes: np.ndarray, capacity: float, ttl: float | None, query_s: float,
                 workers: int, lock: bool) -> tuple[np.ndarray, np.ndarray]:
    """Each key's hit ratio in one shared copy with delete-on-write, and the queries one refill costs."""
    per_refill = stampede_queries(rates, query_s, workers, lock=lock)
    with np.errstate(divide="ignore", invalid="ignore"):
        by_refills = np.where(rates > 0, 1.0 - refills(rates, writes, ttl) * per_refill / np.where(rates > 0, rates, 1),
                              0.0)
    t = lru_characteristic_time(rates, capacity)
    lru = np.ones_like(rates) if math.isinf(t) else -np.expm1(-rates * t)
    return np.clip(np.minimum(lru, by_refills), 0.0, 1.0), per_refill


def evaluate(candidate: Candidate, situation: Situation, measured: Measurements, *, spread: bool = True
             ) -> Evaluation:
    """The model's figures for one candidate in one situation (see the module docstring).

    With ``spread`` and measured spreads, ``latency_range_ns`` is the mean latency with the candidate's own
    timings (its hit, its local tier's) at their p10 and at their p90: the query every candidate pays moves
    them all together, so it is left at its median."""
    out, parts = _evaluate(candidate, situation, measured)
    if spread and parts and (measured.hit_range_ns or measured.local_hit_range_ns):
        ends = []
        for i in (0, 1):
            costs = [(p, _end_cost(measured, candidate.name, kind, ns, i)) for p, ns, kind in parts]
            ends.append(queueing(situation.request_rate / situation.workers, [ns / 1e9 for _, ns in costs],
                                 _normalised([p for p, _ in costs]))[1] * 1e9)
        out.latency_range_ns = (min(ends + [out.latency_ns]), max(ends + [out.latency_ns]))
    return out


def _end_cost(measured: Measurements, name: str, kind: str, ns: float, i: int) -> float:
    ranges = {"hit": measured.hit_range_ns, "local": measured.local_hit_range_ns}.get(kind, {})
    return ranges[name][i] if name in ranges else ns


def _normalised(probabilities: Sequence[float]) -> list[float]:
    clipped = [max(p, 0.0) for p in probabilities]
    total = sum(clipped) or 1.0
    return [p / total for p in clipped]


def _evaluate(candidate: Candidate, situation: Situation, measured: Measurements) -> Evaluation:
    query = measured.query_ns
    copies = _copies(candidate, situation)
    ttl = _ttl(candidate, situation, query / 1e9)
    out = Evaluation(candidate, 0.0, 0.0, query, situation.request_rate, 0.0, 0.0, ttl, copies,
                     sources=measured.sources_of(candidate))
    name = candidate.name
    if candidate.scope == "none":
        _latency(out, situation, [(1.0, query)])
        _constraints(out, situation, measured, query)
        return out, []
    if name not in measured.hit_ns:
        out.ruled_out.append("not measured in this run (run the notebook that measures it)")
        return out, []
    entry = max(measured.entry_bytes.get(name, situation.value_bytes), 1)
    miss_ns = query + measured.miss_overhead_ns.get(name, 0.0)
    budget = situation.memory_budget_bytes
    shares = popularity(situation)
    rates = situation.request_rate * shares
    writes = situation.write_rate * shares  # writes land on keys as often as reads do (an assumption)
    if candidate.two_tier:
        local_copies = situation.workers
        local_entry = max(measured.local_entry_bytes.get(name, entry), 1)
        local_capacity = budget * LOCAL_SHARE / local_copies // local_entry
        shared_capacity = budget * (1 - LOCAL_SHARE) // entry
        local = model_hit_ratios(situation, local_copies, local_capacity, ttl)  # warms up after each restart
        if situation.write_rate > 0:  # every write drops the key from every local copy, which refills
            per_copy = rates / local_copies
            with np.errstate(divide="ignore", invalid="ignore"):
                kept = np.where(per_copy > 0,
                                1 - refills(per_copy, writes, ttl) / np.where(per_copy > 0, per_copy, 1), 0)
            local = np.minimum(local, np.clip(kept, 0.0, 1.0))
        # The shared tier is filled on every miss, with the same TTL, and keeps its entries across restarts:
        # it holds what any local tier holds, so a key is answered without the query as often as one shared
        # copy that sees every request would answer it, or as its local tier does if that is more.
        shared, per_refill = _shared_hits(rates, writes, shared_capacity, ttl, query / 1e9, situation.workers,
                                          candidate.lock)
        h_local = float(shares @ local)
        h = float(shares @ np.maximum(shared, local))
        local_ns = measured.local_hit_ns.get(name, measured.hit_ns[name])
        out.local_hit_ratio, out.hit_ratio = h_local, h
        parts = [(h_local, local_ns, "local"), (h - h_local, measured.hit_ns[name], "hit"), (1 - h, miss_ns, "miss")]
        out.memory_bytes = (local_copies * min(local_capacity, situation.keys) * local_entry
                            + min(shared_capacity, situation.keys) * entry)
        out.staleness_s = measured.invalidation_s.get(name, math.inf)
        if name not in measured.invalidation_s:
            out.ruled_out.append("its invalidation latency was not measured in this run")
    else:
        capacity = budget / copies // entry
        if candidate.deletes_on_write:
            ratios, per_refill = _shared_hits(rates, writes, capacity, ttl, query / 1e9, situation.workers,
                                              candidate.lock)
            out.hit_ratio = float(shares @ ratios)
        else:  # not told about writes: it serves the old answer until its TTL, and pays no refill for them
            per_refill = np.ones_like(shares)
            out.hit_ratio = float(shares @ model_hit_ratios(situation, copies, capacity, ttl,
                                                            warm_up=not candidate.survives_restart))
        out.local_hit_ratio = 0.0 if candidate.scope == "shared" else out.hit_ratio  # answered without the network
        parts = [(out.hit_ratio, measured.hit_ns[name], "hit"), (1 - out.hit_ratio, miss_ns, "miss")]
        out.memory_bytes = copies * min(capacity, situation.keys) * entry
        out.staleness_s = math.inf if ttl is None else ttl + query / 1e9
        if capacity < 1:
            out.ruled_out.append(f"the memory budget split over {copies} copies holds no entry of "
                                 f"{entry:,.0f} bytes")
    misses = 1 - out.hit_ratio
    out.queries_per_refill = float(np.sum(shares * rates * per_refill) / max(np.sum(shares * rates), 1e-300))
    out.backend_qps = situation.request_rate * misses
    # the shared server gets a GET for each request past the local tier, and a SET per miss
    shared = candidate.scope == "shared"
    out.server_load = situation.request_rate * (1 - out.local_hit_ratio + misses) if shared else 0.0
    _latency(out, situation, [(p, ns) for p, ns, _ in parts])
    _constraints(out, situation, measured, miss_ns)
    return out, parts


def _latency(out: Evaluation, situation: Situation, parts: Sequence[tuple[float, float]]) -> None:
    """Mean and p99 latency of a request at each worker, an M/G/1 queue of the request's costs."""
    probabilities = _normalised([p for p, _ in parts])
    costs_s = [ns / 1e9 for _, ns in parts]
    out.service_ns = 1e9 * sum(p * c for p, c in zip(probabilities, costs_s, strict=True))
    rho, mean_s, p99_s = queueing(situation.request_rate / situation.workers, costs_s, probabilities)
    out.utilisation, out.latency_ns, out.p99_ns = rho, mean_s * 1e9, p99_s * 1e9


def _constraints(out: Evaluation, situation: Situation, measured: Measurements, miss_ns: float) -> None:
    """Append to ``out.ruled_out`` every constraint of ``situation`` the candidate fails."""
    c = out.candidate
    bound = situation.max_staleness_s
    unmeasured = c.expiry == "invalidation" and c.name not in measured.invalidation_s  # said already
    if c.scope != "none" and bound is not None and out.staleness_s > bound and not unmeasured:
        if math.isinf(out.staleness_s):
            what = "it never expires: an answer stays stale until the process restarts or its cache is cleared"
        elif c.expiry == "ttl":
            what = (f"an answer can be stale for the query's own duration ({measured.query_ns / 1e9:.3g} s) before "
                    f"its TTL even starts, longer than the bound ({bound:g} s)")
        else:
            what = f"its measured invalidation latency ({out.staleness_s:.3g} s) exceeds the bound ({bound:g} s)"
        out.ruled_out.append(what)
    if situation.value_bytes > c.max_value_bytes:
        out.ruled_out.append(f"values of {situation.value_bytes:,} bytes exceed its limit of {c.max_value_bytes:,.0f}")
    if situation.survive_restart and not c.survives_restart:
        out.ruled_out.append("it lives in the application's memory, so a restart empties it")
    if c.scope != "none" and c.name in measured.hit_ns:
        pays_from = break_even_hit_ratio(measured.hit_ns[c.name], miss_ns, measured.query_ns)
        if out.hit_ratio < pays_from:
            out.ruled_out.append(f"it hits only {out.hit_ratio:.1%} of requests here, below the {pays_from:.1%} "
                                 "from which it starts to pay")
    database = situation.database_cpus / (measured.query_ns / 1e9)
    if out.backend_qps > database:
        out.ruled_out.append(f"its misses send the database {out.backend_qps:,.0f} queries/s, and "
                             f"{situation.database_cpus:g} database CPU(s) at the measured query time serve "
                             f"{database:,.0f}")
    if out.utilisation >= 1:
        out.ruled_out.append(f"each of the {situation.workers} worker(s) would need {out.utilisation:.1f}x the time "
                             "it has: requests queue without end")
    server = SERVER_OF.get(c.name)
    if server is not None and c.name in measured.hit_ns:
        rate = measured.rate_of(server)
        if out.server_load > rate:
            what = ("the cluster" if c.shards else "one server")
            out.ruled_out.append(f"it would need {out.server_load:,.0f} requests/s from {what}, which served "
                                 f"{rate:,.0f} here")
        if c.shards and math.isinf(rate):
            out.ruled_out.append("the cluster's rate was not measured in this run")
        if c.shards and out.server_load <= measured.rate_of("Redis"):
            out.ruled_out.append(f"one Redis serves the {out.server_load:,.0f} requests/s it would get: a cluster "
                                 "only adds moving parts")


def break_even_hit_ratio(hit_ns: float, miss_ns: float, query_ns: float) -> float:
    """The hit ratio above which ``h * hit + (1 - h) * miss`` is cheaper than the query alone."""
    if miss_ns <= query_ns:
        return 0.0
    return (miss_ns - query_ns) / (miss_ns - hit_ns)


@dataclass
class Ranking:
    """The candidates that meet the constraints, best first, and the others with their reasons."""

    situation: Situation
    ranked: list[Evaluation]
    ruled_out: list[Evaluation]
    tied: list[str] = field(default_factory=list)  # tied for best within the measured spread, best first

    @property
    def best(self) -> Evaluation | None:
        """The first of those tied for best (fewest moving parts); ``None`` when nothing meets the constraints."""
        return self.ranked[0] if self.ranked else None

    def sources(self) -> dict[str, list[str]]:
        """``{source: [figures]}`` over every candidate evaluated: where the ranking's inputs come from."""
        out: dict[str, list[str]] = {}
        for e in [*self.ranked, *self.ruled_out]:
            for key, label in e.sources.items():
                if key not in out.setdefault(label, []):
                    out[label].append(key)
        return out

    def names(self) -> list[str]:
        return [e.name for e in self.ranked]

    def table(self) -> str:
        """The ranking as plain text: one line per candidate, then one per ruled-out candidate and why."""
        from .timing import format_ns

        head = (f"{'':>2} {'cache':<20} {'hit ratio':>9} {'mean':>9} {'p99':>9} {'backend q/s':>11} "
                f"{'memory':>9} {'stale up to':>11}")
        lines = [head, "-" * len(head)]
        for i, e in enumerate(self.ranked, start=1):
            stale = _duration(e.staleness_s)
            mark = "  tied" if e.name in self.tied and len(self.tied) > 1 else ""
            lines.append(f"{i:>2} {e.name:<20} {e.hit_ratio:>9.1%} {format_ns(e.latency_ns):>9} "
                         f"{format_ns(e.p99_ns):>9} {e.backend_qps:>11,.1f} {_bytes(e.memory_bytes):>9} "
                         f"{stale:>11}{mark}")
        if len(self.tied) > 1:
            lines.append(f"   tied: {', '.join(self.tied)}: within 10% of the fastest, or overlapping it within the "
                         "measured spread (fewest moving parts first)")
        if not self.ranked:
            lines.append("   no candidate meets this situation's constraints")
        if self.ruled_out:
            lines.append("")
            lines += [f"   ruled out: {e.name}: {'; '.join(e.ruled_out)}" for e in self.ruled_out]
        return "\n".join(lines)


def _duration(seconds: float) -> str:
    if seconds == 0:
        return "never"
    if math.isinf(seconds):
        return "unbounded"
    for unit, size in (("h", 3600), ("min", 60), ("s", 1), ("ms", 1e-3)):
        if seconds >= size or unit == "ms":
            return f"{seconds / size:.3g} {unit}"
    return f"{seconds:.3g} s"


def _bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if n < 1000 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:.3g} {unit}"
        n /= 1000
    return f"{n:.3g} GB"


def rank(situation: Situation, measured: Measurements, candidates: Sequence[Candidate] = CANDIDATES,
         *, tolerance: float = TOLERANCE) -> Ranking:
    """Every candidate evaluated; the eligible ones ranked by expected latency per request.

    Candidates tied with the fastest come first, the one with fewer moving parts first among them: tied
    means a latency within ``tolerance`` (10%) of the fastest's, a difference no reader would notice, or a
    latency interval (from the measured spread: the p10 and p90 of the candidate's own timings) that overlaps
    the fastest one's. The others follow, fastest first.
    """
    evaluations = [evaluate(c, situation, measured) for c in candidates]
    eligible = sorted((e for e in evaluations if e.eligible), key=lambda e: e.latency_ns)
    tied: list[Evaluation] = []
    if eligible:
        fastest = eligible[0]
        tied = [e for e in eligible if _tied(e, fastest, tolerance)]
        rest = [e for e in eligible if e not in tied]
        tied = sorted(tied, key=lambda e: (e.candidate.parts, e.latency_ns))
        eligible = tied + rest
    return Ranking(situation, eligible, [e for e in evaluations if not e.eligible], tied=[e.name for e in tied])


def _tied(e: Evaluation, fastest: Evaluation, tolerance: float) -> bool:
    if e is fastest or e.latency_ns <= fastest.latency_ns * (1 + tolerance):
        return True
    return bool(e.latency_range_ns and fastest.latency_range_ns
                and e.latency_range_ns[0] <= fastest.latency_range_ns[1])


ASSUMPTIONS = ("request_rate", "write_rate", "keys", "alpha", "memory_budget_bytes", "processes", "network")
FACTORS = (0.5, 2.0, 0.25, 4.0, 0.1, 10.0)  # tried in this order: the smallest change first


def _changed(situation: Situation, measured: Measurements, assumption: str, factor: float):
    if assumption == "network":  # your network, if not this machine's loopback: every shared hit and miss
        shared = [c.name for c in CANDIDATES if c.scope == "shared"]
        hit = {k: (v * factor if k in shared else v) for k, v in measured.hit_ns.items()}
        over = {k: (v * factor if k in shared else v) for k, v in measured.miss_overhead_ns.items()}
        ranges = {k: ((lo * factor, hi * factor) if k in shared else (lo, hi))
                  for k, (lo, hi) in measured.hit_range_ns.items()}
        return situation, measured.with_changes(hit_ns=hit, miss_overhead_ns=over, hit_range_ns=ranges)
    value = getattr(situation, assumption)
    if assumption == "write_rate" and value == 0:
        value = situation.request_rate / 100  # no writes: try 1% of the reads, then more
    new = value * factor
    if assumption in ("keys", "processes"):
        new = max(1, round(new))
    return replace(situation, **{assumption: new}), measured


def sensitivity(situation: Situation, measured: Measurements, assumptions: Sequence[str] = ASSUMPTIONS,
                factors: Sequence[float] = FACTORS) -> list[dict]:
    """For each assumption, the smallest change (of ``factors``, tried smallest first) after which the best
    candidate is no longer one of those tied for best now, and what wins then; ``factor`` is ``None`` when
    none of ``factors`` flips it. ``"network"`` multiplies every shared cache's hit and miss cost (a network
    slower or faster than this machine's loopback)."""
    now = rank(situation, measured)
    tied_now = set(now.tied)
    rows = []
    for assumption in assumptions:
        row = {"assumption": assumption, "factor": None, "value": None, "best": None}
        for factor in factors:
            s, m = _changed(situation, measured, assumption, factor)
            other = rank(s, m)
            winner = other.ranked[0].name if other.ranked else "nothing"
            if winner not in tied_now:
                value = getattr(s, assumption) if assumption != "network" else None
                row.update(factor=factor, value=value, best=winner)
                break
        rows.append(row)
    return rows


# --------------------------------------------------------------------------- this run's measurements

INVALIDATION_TIMINGS = {  # (notebook, timing name): the time from a write elsewhere to the local copy's drop
    "client-side caching": ("08_scale_out", "write in another process, until the local copy drops"),
}


def _percentile(timing, q: float) -> float:
    return float(np.percentile(np.asarray(timing.samples_ns, dtype=float), q))  # samples are per call already


def measured_in(loaded: Mapping, *, entry_bytes: Mapping[str, float] | None = None,
                extra_hits: Mapping[str, float] | None = None,
                extra_overheads: Mapping[str, float] | None = None,
                extra_invalidation_s: Mapping[str, float] | None = None,
                local_entry_bytes: Mapping[str, float] | None = None,
                extra_ranges: Mapping[str, tuple[float, float]] | None = None,
                server_rps: Mapping[str, float] | None = None,
                query_ns: float | None = None, query_range_ns: tuple[float, float] | None = None,
                sources: Mapping[str, str] | None = None, here: str = "this run") -> Measurements:
    """The :class:`Measurements` of one run of the series, from the results of 01-08 (``loaded``: notebook ->
    saved results, as :func:`cachelab.ladder.series_results` gives them).

    Hits and misses are the ladder entries (:mod:`cachelab.ladder`), with their p10 and p90 as the spread.
    What a miss adds to the query is two round trips for a network cache (the GET that missed and the SET;
    05 and 06 time a bare round trip together with the hit) and the measured miss minus the query for
    joblib. The staleness bound of an invalidated cache is the 99th percentile of its measured invalidation
    latency. One Redis's rate is ``server_rps["Redis"]`` when the caller measured it (as it measured memcached's),
    else 08's ``redis-benchmark`` GETs counted on one shard; the cluster's is Redis's times the scaling 08
    measured from one shard to its largest cluster (its rate there over its rate on one shard).
    ``entry_bytes``, ``local_entry_bytes``, ``extra_hits`` (with ``extra_ranges``), ``extra_overheads``,
    ``server_rps`` (memcached's, and Redis's) and, when 01 is not in ``loaded``,
    ``query_ns`` come from the notebook that calls this: labelled ``here``. ``sources`` maps a notebook to
    the label of where its results come from (default ``"this run"``).
    """
    from .ladder import entries, entry_label

    label = dict(sources or {})
    ladder, origin = {}, {}
    for notebook, saved in loaded.items():
        for (step, kind), timing in entries(saved).items():
            if (step, kind) not in ladder:
                ladder[step, kind], origin[step, kind] = timing, entry_label(label, notebook, f"{step} ({kind})")

    def timing(step, kind="hit"):
        return ladder.get((step, kind))

    def median(step, kind="hit"):
        t = timing(step, kind)
        return None if t is None else t.median

    def value(notebook, key, default=None):
        saved = loaded.get(notebook)
        return default if saved is None else saved.values.get(key, default)

    figures: dict[str, str] = {}
    steps = {"lru_cache": "lru_cache", "cachetools TTL": "cachetools", "joblib": "joblib", "memcached": "memcached",
             "Redis": "redis", "Redis + lock": "redis", "near cache": "redis", "client-side caching": "redis",
             "Redis Cluster": "redis cluster"}
    hits, ranges = {}, {}
    for name, step in steps.items():
        t = timing(step)
        if t is not None:
            hits[name], ranges[name] = t.median, (t.p10, t.p90)
            figures[f"hit:{name}"] = figures[f"miss:{name}"] = origin[step, "hit"]
    for name, ns in (extra_hits or {}).items():
        hits[name] = ns
        figures[f"hit:{name}"] = figures[f"miss:{name}"] = here
    ranges.update(extra_ranges or {})
    query_timing = timing("recompute", "miss")
    if query_timing is not None:
        query, q_range, figures["query"] = query_timing.median, (query_timing.p10, query_timing.p90), \
            origin["recompute", "miss"]
    elif query_ns is not None:
        query, q_range, figures["query"] = query_ns, query_range_ns, here
    else:
        raise ValueError("the results hold no recompute (miss) entry: run notebooks/01_naive_recomputation.ipynb")
    round_trip = {"memcached": value("05_memcached", "round_trip_ns:memcached"),
                  "Redis": value("06_redis", "round_trip_ns:redis")}
    overheads = {name: 2 * rtt for name, rtt in round_trip.items() if rtt}
    for name in ("Redis + lock", "near cache", "client-side caching"):
        if round_trip["Redis"]:
            overheads[name] = 2 * round_trip["Redis"]
    if round_trip["Redis"]:
        overheads["Redis + lock"] = 4 * round_trip["Redis"]  # and SET NX, a look again, the DEL of the lock
    if hits.get("Redis Cluster"):
        overheads["Redis Cluster"] = 2 * hits["Redis Cluster"]
    if median("joblib", "miss") and query:
        overheads["joblib"] = max(0.0, median("joblib", "miss") - query)
    overheads.update(extra_overheads or {})
    invalidation = {}
    for name, (notebook, timing_name) in INVALIDATION_TIMINGS.items():
        saved = loaded.get(notebook)
        if saved is not None and timing_name in saved.timings:
            invalidation[name] = _percentile(saved.timings[timing_name], 99) / 1e9
            figures[f"invalidation:{name}"] = label.get(notebook, "this run")
    for name, v in (extra_invalidation_s or {}).items():
        invalidation[name] = v
        figures[f"invalidation:{name}"] = here
    local, local_ranges = {}, {}
    for name, step in (("near cache", "near cache"), ("client-side caching", "tracking")):
        t = timing(step)
        if t is not None:
            local[name], local_ranges[name] = t.median, (t.p10, t.p90)
            figures[f"local hit:{name}"] = origin[step, "hit"]
    throughput = value("08_scale_out", "throughput", {}) or {}
    by_shards = {int(n): r.get("benchmark", {}).get("per_s") for n, r in throughput.get("by_shards", {}).items()}
    by_shards = {n: r for n, r in by_shards.items() if r}
    rates = {}
    if 1 in by_shards:
        rates["Redis"] = by_shards[1]
        figures["rate:Redis"] = label.get("08_scale_out", "this run")
    for name, rate in (server_rps or {}).items():  # measured by the caller, every server the same way
        rates[name] = rate
        figures[f"rate:{name}"] = here
    shards = max(by_shards) if by_shards else 3
    if by_shards and 1 in by_shards and "Redis" in rates:  # the scaling 08 measured, never shards x one
        rates["Redis Cluster"] = rates["Redis"] * by_shards[shards] / by_shards[1]
        figures["rate:Redis Cluster"] = label.get("08_scale_out", "this run")
    for name in set(entry_bytes or {}) | set(local_entry_bytes or {}):
        figures[f"bytes:{name}"] = here
    return Measurements(
        query_ns=query, hit_ns={k: v for k, v in hits.items() if v},
        miss_overhead_ns=overheads, entry_bytes=dict(entry_bytes or {}), invalidation_s=invalidation,
        local_hit_ns={k: v for k, v in local.items() if v}, local_entry_bytes=dict(local_entry_bytes or {}),
        shared_server_rps=rates.get("Redis", math.inf), shard_rps=rates.get("Redis", math.inf),
        cluster_shards=shards, server_rps=rates, query_range_ns=q_range, hit_range_ns=ranges,
        local_hit_range_ns=local_ranges, sources=figures,
        source={"notebooks": ", ".join(sorted(loaded))})


# --------------------------------------------------------------------------- the validation against 07

WEB_MODES = {  # 07's cache mode -> (the candidate whose measured hit it pays, its scope)
    "none": (None, "none"), "lru": ("lru_cache", "process"), "ttl": ("cachetools TTL", "process"),
    "memcached": ("memcached", "shared"), "redis": ("Redis", "shared"), "near": ("near cache", "shared"),
    "redis-lock": ("Redis + lock", "shared"),
}


@dataclass(frozen=True)
class WebSetup:
    """Notebook 07's situation, as its results record it (``web_validation``): what the model may know."""

    workers: int  # K sync gunicorn workers
    server_cpus: float  # the CPUs the workers, Redis and memcached share
    shares: np.ndarray  # each hot key's share of the load generator's requests (its stream, replayed)
    written: np.ndarray  # True for the keys the writer changes
    write_rate: float  # writes a second, spread evenly over the written keys
    check_rate: float  # reads a second of the written keys by the checker, counted in the throughput
    ttl_s: float
    local_ttl_s: float

    @classmethod
    def from_record(cls, record: Mapping) -> WebSetup:
        from . import workload

        stream = record["stream"]
        routes = list(stream["routes"])
        ranks = workload.zipf_stream(list(range(len(routes))), int(stream["length"]), alpha=float(stream["alpha"]),
                                     seed=int(stream["seed"]))
        shares = np.bincount(ranks, minlength=len(routes)) / len(ranks)
        written = np.array([r in set(record["written_routes"]) for r in routes])
        return cls(int(record["workers"]), float(record["server_cpus"]), shares, written,
                   float(record["write_rate_offered"]), float(record["check_rate_offered"]),
                   float(record["ttl_s"]), float(record["local_ttl_s"]))


@dataclass(frozen=True)
class WebPrediction:
    mode: str
    requests_per_second: float
    backend_qps: float
    hit_ratio: float
    queries_per_write: float
    cpu_share_in_queries: float  # of the server CPUs, spent running queries


def _web_load(setup: WebSetup, measured: Measurements, http_ns: float, mode: str, rate: float):
    """The server CPU-seconds a second that ``rate`` requests a second cost in ``mode``, and the queries."""
    name, scope = WEB_MODES[mode]
    k, query_s = setup.workers, measured.query_ns / 1e9
    writes = np.where(setup.written, setup.write_rate / max(setup.written.sum(), 1), 0.0)
    checks = np.where(setup.written, setup.check_rate / max(setup.written.sum(), 1), 0.0)
    lam = max(rate - setup.check_rate, 0.0) * setup.shares + checks
    hit_s = 0.0 if name is None else measured.hit_ns[name] / 1e9
    if mode == "none":
        queries, per_write, hits_cpu = rate, 0.0, 0.0
    elif mode == "lru":  # never expires, never told about a write: no query once warm
        queries, per_write, hits_cpu = 0.0, 0.0, rate * hit_s
    elif mode == "ttl":  # a copy per worker; the worker that takes a write drops its own copy
        per_key = k * refills(lam / k, writes / k, setup.ttl_s)
        queries = float(per_key.sum())
        per_write = float(np.sum(k * refills(lam / k, writes / k, math.inf))) / max(setup.write_rate, 1e-300)
        hits_cpu = (rate - queries) * hit_s
    else:  # shared, delete-on-write: a refill after each write or expiry, K queries at most in a stampede
        wall = query_s * k / setup.server_cpus  # every worker busy: K of them share the CPUs
        per_refill = stampede_queries(lam, wall, k, lock=(mode == "redis-lock"))
        per_key = refills(lam, writes, setup.ttl_s) * per_refill
        queries = float(per_key.sum())
        per_write = float(np.sum(refills(lam, writes, math.inf) * per_refill)) / max(setup.write_rate, 1e-300)
        if mode == "near":  # each worker's local tier drops the key on every write, then asks Redis
            local_misses = float(np.sum(k * refills(lam / k, writes, setup.local_ttl_s)))
            hits_cpu = (rate - local_misses) * measured.local_hit_ns[name] / 1e9 \
                + max(local_misses - queries, 0.0) * measured.hit_ns[name] / 1e9
        else:
            hits_cpu = (rate - queries) * hit_s
    overhead_s = measured.miss_overhead_ns.get(name, 0.0) / 1e9 if name else 0.0
    cpu = (rate + setup.write_rate) * http_ns / 1e9 + hits_cpu + queries * (query_s + overhead_s)
    return cpu, queries, per_write


def predict_web(setup: WebSetup, measured: Measurements, http_ns: float, mode: str) -> WebPrediction:
    """07's throughput and database load in ``mode``, predicted from microbenchmarks alone.

    wrk's closed loop keeps every worker busy, so the server CPUs are the bottleneck: the rate is the one
    whose cost fills them, ``(rate + writes) * http + hits * hit + queries * (query + miss overhead) =
    server_cpus``, where the queries come from the refills (:func:`refills`) each write and each expiry
    cause, a stampede of up to K queries each unless locked (:func:`stampede_queries`, with the query's
    wall time stretched K / server_cpus times by the workers sharing the CPUs). Nothing here is fitted to
    07: ``measured`` holds 01-06's hits and query, ``http_ns`` the HTTP stack's cost of one request.
    """
    if mode not in WEB_MODES:
        raise ValueError(f"unknown mode {mode!r}: one of {', '.join(WEB_MODES)}")
    low, high = 0.0, setup.server_cpus / (http_ns / 1e9)
    for _ in range(80):
        mid = (low + high) / 2
        low, high = (mid, high) if _web_load(setup, measured, http_ns, mode, mid)[0] < setup.server_cpus else (low, mid)
    rate = low
    cpu, queries, per_write = _web_load(setup, measured, http_ns, mode, rate)
    return WebPrediction(mode, rate, queries, 1 - queries / rate if rate else 0.0, per_write,
                         queries * measured.query_ns / 1e9 / setup.server_cpus)
