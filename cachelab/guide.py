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
TOLERANCE = 0.10  # latencies within 10% of the fastest count as a tie, broken by fewer moving parts
ON_ONE_REDIS = ("Redis", "near cache", "client-side caching")  # candidates whose shared tier is one Redis server
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
    notes: str = ""


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
    tier's).
    ``shared_server_rps`` is the GET rate one Redis served here, and ``shard_rps`` one cluster shard's.
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
    source: Mapping[str, str] = field(default_factory=dict)  # where each figure comes from, for the reader

    def with_changes(self, **changes) -> Measurements:
        """A copy with some figures changed: ``m.with_changes(hit_ns={**m.hit_ns, "Redis": 5e5})``."""
        return replace(self, **changes)


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
    for _ in range(60):
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


def evaluate(candidate: Candidate, situation: Situation, measured: Measurements) -> Evaluation:
    """The model's figures for one candidate in one situation (see the module docstring)."""
    query = measured.query_ns
    copies = _copies(candidate, situation)
    ttl = _ttl(candidate, situation, query / 1e9)
    out = Evaluation(candidate, 0.0, 0.0, query, situation.request_rate, 0.0, 0.0, ttl, copies)
    if candidate.scope == "none":
        return out
    name = candidate.name
    if name not in measured.hit_ns:
        out.ruled_out.append("not measured in this run (run the notebook that measures it)")
        return out
    entry = max(measured.entry_bytes.get(name, situation.value_bytes), 1)
    miss_ns = query + measured.miss_overhead_ns.get(name, 0.0)
    budget = situation.memory_budget_bytes
    shares = popularity(situation)
    if candidate.two_tier:
        local_copies = situation.workers
        local_entry = max(measured.local_entry_bytes.get(name, entry), 1)
        local_capacity = budget * LOCAL_SHARE / local_copies // local_entry
        shared_capacity = budget * (1 - LOCAL_SHARE) // entry
        local = model_hit_ratios(situation, local_copies, local_capacity, ttl)  # warms up after each restart
        # The shared tier is filled on every miss, with the same TTL, and keeps its entries across restarts:
        # it holds what any local tier holds, so a key is answered without the query as often as one shared
        # copy that sees every request would answer it, or as its local tier does if that is more.
        shared = key_hit_ratios(situation.request_rate * shares, shared_capacity, ttl)
        h_local = float(shares @ local)
        h = float(shares @ np.maximum(shared, local))
        local_ns = measured.local_hit_ns.get(name, measured.hit_ns[name])
        out.local_hit_ratio = h_local
        out.hit_ratio = h
        out.latency_ns = h_local * local_ns + (h - h_local) * measured.hit_ns[name] + (1 - h) * miss_ns
        out.memory_bytes = (local_copies * min(local_capacity, situation.keys) * local_entry
                            + min(shared_capacity, situation.keys) * entry)
        out.staleness_s = measured.invalidation_s.get(name, math.inf)
        if name not in measured.invalidation_s:
            out.ruled_out.append("its invalidation latency was not measured in this run")
    else:
        capacity = budget / copies // entry
        out.hit_ratio = float(shares @ model_hit_ratios(situation, copies, capacity, ttl,
                                                        warm_up=not candidate.survives_restart))
        out.local_hit_ratio = 0.0 if candidate.scope == "shared" else out.hit_ratio  # answered without the network
        out.latency_ns = out.hit_ratio * measured.hit_ns[name] + (1 - out.hit_ratio) * miss_ns
        out.memory_bytes = copies * min(capacity, situation.keys) * entry
        out.staleness_s = math.inf if ttl is None else ttl + query / 1e9
        if capacity < 1:
            out.ruled_out.append(f"the memory budget split over {copies} copies holds no entry of "
                                 f"{entry:,.0f} bytes")
    out.backend_qps = situation.request_rate * (1 - out.hit_ratio)
    _constraints(out, situation, measured, miss_ns)
    return out


def _constraints(out: Evaluation, situation: Situation, measured: Measurements, miss_ns: float) -> None:
    """Append to ``out.ruled_out`` every constraint of ``situation`` the candidate fails."""
    c = out.candidate
    bound = situation.max_staleness_s
    unmeasured = c.expiry == "invalidation" and c.name not in measured.invalidation_s  # said already
    if bound is not None and out.staleness_s > bound and not unmeasured:
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
    pays_from = break_even_hit_ratio(measured.hit_ns[c.name], miss_ns, measured.query_ns)
    if c.scope != "none" and out.hit_ratio < pays_from:
        out.ruled_out.append(f"it hits only {out.hit_ratio:.1%} of requests here, below the {pays_from:.1%} "
                             "from which it starts to pay")
    shared_load = situation.request_rate * (1 - out.local_hit_ratio) if c.scope == "shared" else 0.0
    # one Redis's rate was measured (08); memcached is multi-threaded and sharded by its client over several
    # nodes, and its rate was not measured, so the model sets it no cap
    if c.name in ON_ONE_REDIS and shared_load > measured.shared_server_rps:
        out.ruled_out.append(f"it would need {shared_load:,.0f} requests/s from one server, which served "
                             f"{measured.shared_server_rps:,.0f} here")
    if c.shards and shared_load > measured.shard_rps * measured.cluster_shards:
        out.ruled_out.append(f"it would need {shared_load:,.0f} requests/s from {measured.cluster_shards} shards, "
                             f"which served {measured.shard_rps * measured.cluster_shards:,.0f} here")
    if c.shards and shared_load <= measured.shared_server_rps:
        out.ruled_out.append(f"one Redis serves the {shared_load:,.0f} requests/s it would get: a cluster only "
                             "adds moving parts")


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

    @property
    def best(self) -> Evaluation:
        return self.ranked[0]

    def names(self) -> list[str]:
        return [e.name for e in self.ranked]

    def table(self) -> str:
        """The ranking as plain text: one line per candidate, then one per ruled-out candidate and why."""
        from .timing import format_ns

        head = (f"{'':>2} {'cache':<20} {'hit ratio':>9} {'latency':>9} {'backend q/s':>11} "
                f"{'memory':>9} {'stale up to':>11}")
        lines = [head, "-" * len(head)]
        for i, e in enumerate(self.ranked, start=1):
            stale = _duration(e.staleness_s)
            lines.append(f"{i:>2} {e.name:<20} {e.hit_ratio:>9.1%} {format_ns(e.latency_ns):>9} "
                         f"{e.backend_qps:>11,.1f} {_bytes(e.memory_bytes):>9} {stale:>11}")
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

    Candidates within ``tolerance`` (10%) of the fastest are as good as it for a reader: among them, the
    one with fewer moving parts comes first. The others follow, fastest first.
    """
    evaluations = [evaluate(c, situation, measured) for c in candidates]
    eligible = sorted((e for e in evaluations if e.eligible), key=lambda e: e.latency_ns)
    if eligible:
        fastest = eligible[0].latency_ns
        close = [e for e in eligible if e.latency_ns <= fastest * (1 + tolerance)]
        rest = [e for e in eligible if e not in close]
        eligible = sorted(close, key=lambda e: (e.candidate.parts, e.latency_ns)) + rest
    return Ranking(situation, eligible, [e for e in evaluations if not e.eligible])


# --------------------------------------------------------------------------- this run's measurements

INVALIDATION_TIMINGS = {  # (notebook, timing name): the time from a write elsewhere to the local copy's drop
    "client-side caching": ("08_scale_out", "write in another process, until the local copy drops"),
}


def _percentile(timing, q: float) -> float:
    return float(np.percentile(np.asarray(timing.samples_ns, dtype=float) / timing.loops, q))


def measured_in(loaded: Mapping, *, entry_bytes: Mapping[str, float] | None = None,
                extra_hits: Mapping[str, float] | None = None,
                extra_overheads: Mapping[str, float] | None = None,
                extra_invalidation_s: Mapping[str, float] | None = None,
                local_entry_bytes: Mapping[str, float] | None = None) -> Measurements:
    """The :class:`Measurements` of one run of the series, from the results of 01-08 (``loaded``: notebook ->
    saved results, as :func:`cachelab.ladder.series_results` gives them).

    Hits and misses are the ladder entries (:mod:`cachelab.ladder`). What a miss adds to the query is two
    round trips for a network cache (the GET that missed and the SET; 05 and 06 time a bare round trip
    together with the hit) and the measured miss minus the query for joblib. The staleness bound of an
    invalidated cache is the 99th percentile of its measured invalidation latency. ``entry_bytes``,
    ``local_entry_bytes``, ``extra_hits`` and ``extra_overheads`` come from the notebook that calls this (10
    measures diskcache and the bytes one answer takes in each layer).
    """
    from .ladder import entries

    ladder = {}
    for saved in loaded.values():
        for (step, kind), timing in entries(saved).items():
            ladder.setdefault((step, kind), timing)

    def median(step, kind="hit"):
        timing = ladder.get((step, kind))
        return None if timing is None else timing.median

    def value(notebook, key, default=None):
        saved = loaded.get(notebook)
        return default if saved is None else saved.values.get(key, default)

    query = median("recompute", "miss")
    hits = {"lru_cache": median("lru_cache"), "cachetools TTL": median("cachetools"), "joblib": median("joblib"),
            "memcached": median("memcached"), "Redis": median("redis"), "near cache": median("redis"),
            "client-side caching": median("redis"), "Redis Cluster": median("redis cluster"),
            **dict(extra_hits or {})}
    round_trip = {"memcached": value("05_memcached", "round_trip_ns:memcached"),
                  "Redis": value("06_redis", "round_trip_ns:redis")}
    overheads = {name: 2 * rtt for name, rtt in round_trip.items() if rtt}
    for name in ("near cache", "client-side caching"):
        if round_trip["Redis"]:
            overheads[name] = 2 * round_trip["Redis"]
    if hits["Redis Cluster"]:
        overheads["Redis Cluster"] = 2 * hits["Redis Cluster"]
    if median("joblib", "miss") and query:
        overheads["joblib"] = max(0.0, median("joblib", "miss") - query)
    overheads.update(extra_overheads or {})
    invalidation = {}
    for name, (notebook, timing_name) in INVALIDATION_TIMINGS.items():
        saved = loaded.get(notebook)
        if saved is not None and timing_name in saved.timings:
            invalidation[name] = _percentile(saved.timings[timing_name], 99) / 1e9
    invalidation.update(extra_invalidation_s or {})
    local = {"near cache": median("near cache"), "client-side caching": median("tracking")}
    throughput = value("08_scale_out", "throughput", {}) or {}
    one_shard = throughput.get("by_shards", {}).get("1", {}).get("benchmark", {}).get("per_s")
    if query is None:
        raise ValueError("the results hold no recompute (miss) entry: run notebooks/01_naive_recomputation.ipynb")
    return Measurements(
        query_ns=query, hit_ns={k: v for k, v in hits.items() if v},
        miss_overhead_ns=overheads, entry_bytes=dict(entry_bytes or {}), invalidation_s=invalidation,
        local_hit_ns={k: v for k, v in local.items() if v}, local_entry_bytes=dict(local_entry_bytes or {}),
        shared_server_rps=one_shard or math.inf, shard_rps=one_shard or math.inf,
        source={"notebooks": ", ".join(sorted(loaded))})
