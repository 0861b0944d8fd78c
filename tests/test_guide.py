"""The decision guide is a model, not a table: its choice follows the measurements and the situation.

Every test feeds made-up measurements, so none depends on this machine: what is tested is that the choice
flips when a figure changes the way the model says it should.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest

from cachelab import guide

SHARED = ("memcached", "Redis", "Redis + lock", "near cache", "client-side caching", "Redis Cluster")


def measured(network_ns: float = 60e3, **changes) -> guide.Measurements:
    """A plausible run: a 30 ms query, in-process hits in ns, network hits at ``network_ns``."""
    hit = {"lru_cache": 100, "cachetools TTL": 500, "joblib": 150e3, "diskcache": 30e3,
           **{name: network_ns for name in SHARED}}
    base = guide.Measurements(
        query_ns=30e6, hit_ns=hit,
        miss_overhead_ns={"joblib": 3e6, "diskcache": 1e6, **{name: network_ns for name in SHARED}},
        entry_bytes={"lru_cache": 1500, "cachetools TTL": 1500, "joblib": 4000, "diskcache": 4000,
                     **{name: 300 for name in SHARED}},
        invalidation_s={"near cache": 0.002, "client-side caching": 0.001},
        local_hit_ns={"near cache": 1e3, "client-side caching": 1e3},
        server_rps={"Redis": 20_000, "memcached": 30_000, "Redis Cluster": 45_000})
    return base.with_changes(**changes)


def test_one_process_and_data_that_never_change_need_only_the_standard_library():
    ranking = guide.rank(guide.Situation(), measured())
    assert ranking.best.name == "lru_cache"
    out = {e.name: " ".join(e.ruled_out) for e in ranking.ruled_out}
    assert "no cache" in out and "queue without end" in out["no cache"], "100 queries/s of 30 ms: one worker cannot"
    quiet = guide.rank(guide.Situation(request_rate=10), measured())
    assert quiet.names()[-1] == "no cache", "10 queries/s of 30 ms: one worker keeps up, the slowest of all"


def test_a_slower_network_makes_the_near_cache_win():
    """Data that never change, 8 processes: every shared cache hits as often; the network decides."""
    situation = guide.Situation(processes=8, request_rate=500)
    fast = guide.rank(situation, measured(network_ns=20e3)).names()
    slow = guide.rank(situation, measured(network_ns=5e6)).names()  # 5 ms a round trip: another region
    assert fast.index("Redis") < fast.index("near cache"), "a fast network: as quick, with fewer parts"
    assert slow.index("near cache") < slow.index("Redis"), "a slow network: the local tier pays"
    assert slow[0] != "Redis"


def test_a_tight_staleness_bound_rules_out_the_ttl_only_caches():
    loose = guide.rank(guide.Situation(processes=4, request_rate=100, max_staleness_s=10, database_cpus=4), measured())
    tight = guide.rank(guide.Situation(processes=4, request_rate=100, max_staleness_s=0.01), measured())
    assert {"cachetools TTL", "Redis", "memcached"} <= set(loose.names())
    out = {e.name: e.ruled_out for e in tight.ruled_out}
    for ttl_only in ("cachetools TTL", "Redis", "memcached", "diskcache"):
        assert ttl_only in out and "query's own duration" in " ".join(out[ttl_only])
    assert tight.best.name in ("near cache", "client-side caching")
    slow_invalidation = measured(invalidation_s={"near cache": 0.5, "client-side caching": 0.5})
    too_slow = guide.rank(guide.Situation(processes=4, request_rate=100, max_staleness_s=0.01), slow_invalidation)
    assert too_slow.best is None or too_slow.best.name == "no cache", "invalidations slower than the bound: no cache"


def test_many_processes_make_a_shared_cache_win_on_backend_load():
    def ranking(processes):
        return guide.rank(guide.Situation(processes=processes, request_rate=50, max_staleness_s=30,
                                          database_cpus=8), measured())

    one, many = ranking(1), ranking(32)
    load_one = {e.name: e.backend_qps for e in one.ranked}
    load_many = {e.name: e.backend_qps for e in many.ranked}
    assert load_one["Redis"] == pytest.approx(load_one["cachetools TTL"], rel=0.1)  # one copy either way
    assert load_many["Redis"] < 0.5 * load_many["cachetools TTL"], "32 copies each warm up and hold less"
    assert one.names().index("cachetools TTL") < one.names().index("Redis"), "one process: the local hit is cheaper"
    assert many.names().index("Redis") < many.names().index("cachetools TTL"), "32 processes: sharing wins"


def test_a_restart_that_must_keep_the_cache_rules_out_in_process_caches():
    ranking = guide.rank(guide.Situation(survive_restart=True), measured())
    out = {e.name for e in ranking.ruled_out}
    assert {"lru_cache", "cachetools TTL"} <= out
    assert ranking.best.name not in out


def test_a_cache_that_keeps_its_entries_across_restarts_wins_when_the_process_restarts_often():
    def ranking(horizon_s):
        return guide.rank(guide.Situation(request_rate=20, keys=2_000, max_staleness_s=3600, horizon_s=horizon_s),
                          measured())

    long_lived, script = ranking(7 * 86_400), ranking(300)
    assert long_lived.best.candidate.scope == "process", "a process that lives for days: its own memory is cheapest"
    assert script.best.candidate.survives_restart, "a script restarted every five minutes: a cache that stays warm"
    hit = {name: {e.name: e.hit_ratio for e in r.ranked} for name, r in (("long", long_lived), ("script", script))}
    assert hit["script"]["cachetools TTL"] < hit["long"]["cachetools TTL"] - 0.1, "warm-ups cost an in-process copy"
    assert hit["script"]["Redis"] == pytest.approx(hit["long"]["Redis"]), "a server keeps its entries"


def test_the_local_tier_holds_as_many_answers_as_its_own_entry_size_allows():
    situation = guide.Situation(processes=8, request_rate=500, keys=20_000, memory_budget_bytes=8e6,
                                max_staleness_s=2)
    small = guide.evaluate(next(c for c in guide.CANDIDATES if c.name == "near cache"), situation, measured())
    heavy = guide.evaluate(next(c for c in guide.CANDIDATES if c.name == "near cache"), situation,
                           measured(local_entry_bytes={"near cache": 3000}))
    assert heavy.local_hit_ratio < small.local_hit_ratio - 0.05, "Python objects weigh more: fewer fit locally"
    assert heavy.memory_bytes == pytest.approx(small.memory_bytes, rel=0.1), "the same budget either way"


def test_joblib_expires_with_a_validation_callback_and_is_not_ruled_out_for_it():
    ranking = guide.rank(guide.Situation(max_staleness_s=3600), measured())
    out = {e.name: e.ruled_out for e in ranking.ruled_out}
    assert "joblib" not in out, out.get("joblib")
    assert "lru_cache" in out and "never expires" in " ".join(out["lru_cache"])


def test_values_too_large_for_memcached_rule_it_out():
    ranking = guide.rank(guide.Situation(processes=4, value_bytes=5_000_000, max_staleness_s=60,
                                         memory_budget_bytes=4e9), measured())
    reasons = {e.name: "; ".join(e.ruled_out) for e in ranking.ruled_out}
    assert "memcached" in reasons and "exceed its limit" in reasons["memcached"]
    assert "Redis" in ranking.names()


def test_a_load_one_server_cannot_serve_needs_the_cluster():
    situation = guide.Situation(processes=16, machines=8, request_rate=40_000, keys=20_000, max_staleness_s=60,
                                database_cpus=16)
    busy = guide.rank(situation, measured())
    assert "Redis Cluster" in busy.names() and "Redis" not in busy.names()
    assert any("one server" in r for e in busy.ruled_out if e.name == "Redis" for r in e.ruled_out)
    quiet = guide.rank(guide.Situation(processes=16, machines=8, request_rate=600, max_staleness_s=60), measured())
    assert "Redis" in quiet.names() and "Redis Cluster" not in quiet.names()
    slower = guide.rank(situation, measured(server_rps={"Redis": 20_000, "Redis Cluster": 21_000}))
    assert "Redis Cluster" not in slower.names(), "the cluster's capacity is what was measured, not shards x one"


def test_the_replay_counts_the_hits_functools_lru_cache_counts():
    ranks = np.random.default_rng(1).integers(0, 50, size=3000)
    hits, _ = guide.replay(ranks, 0.001, copies=1, capacity=10, ttl=None)

    @functools.lru_cache(maxsize=10)
    def f(key):
        return key

    for key in ranks.tolist():
        f(key)
    assert int(hits.sum()) == f.cache_info().hits


def test_the_replay_deals_requests_round_robin_and_expires_by_ttl():
    ranks = np.zeros(10, dtype=int)  # the same key, every 1 s
    one_copy, _ = guide.replay(ranks, 1.0, copies=1, capacity=5, ttl=None)
    assert one_copy.sum() == 9
    two_copies, _ = guide.replay(ranks, 1.0, copies=2, capacity=5, ttl=None)
    assert two_copies.sum() == 8, "each copy misses the key once"
    expiring, _ = guide.replay(ranks, 1.0, copies=1, capacity=5, ttl=2.5)
    assert expiring.tolist() == [False, True, True, False, True, True, False, True, True, False]


def test_every_ruled_out_candidate_says_why_and_the_table_lists_all():
    ranking = guide.rank(guide.Situation(processes=8, max_staleness_s=1), measured())
    assert all(e.ruled_out for e in ranking.ruled_out)
    table = ranking.table()
    for e in [*ranking.ranked, *ranking.ruled_out]:
        assert e.name in table
    assert all(math.isfinite(e.latency_ns) for e in ranking.ranked)


def test_bad_situations_are_refused():
    with pytest.raises(ValueError):
        guide.Situation(processes=0)
    with pytest.raises(TypeError):
        guide.Situation(request_rate="fast")


@pytest.mark.parametrize(("copies", "capacity", "ttl"), [(1, 40, None), (4, 30, None), (4, 30, 20.0), (8, 500, 5.0)])
def test_the_model_agrees_with_a_replay_request_by_request(copies, capacity, ttl):
    situation = guide.Situation(keys=300, request_rate=50, horizon_s=400)
    ranks = guide.stream(situation, int(situation.request_rate * situation.horizon_s))
    hits, _ = guide.replay(ranks, 1 / situation.request_rate, copies, capacity, ttl)
    model = float(guide.popularity(situation) @ guide.model_hit_ratios(situation, copies, capacity, ttl))
    assert model == pytest.approx(hits.mean(), abs=0.04)


def test_a_stampede_costs_up_to_one_query_a_worker_and_a_lock_cures_it():
    rates = np.array([0.0, 1.0, 100.0, 1e6])
    per_refill = guide.stampede_queries(rates, 0.03, workers=8)
    assert per_refill[0] == pytest.approx(1.0) and per_refill[-1] == pytest.approx(8.0)
    assert 1.0 < per_refill[2] < 8.0 and np.all(np.diff(per_refill) >= 0)
    assert np.all(guide.stampede_queries(rates, 0.03, workers=8, lock=True) == 1.0)
    # against a count: requests of a key arriving while its query runs, capped by the workers free to run them
    rng = np.random.default_rng(7)
    counted = np.minimum(8, 1 + rng.poisson(100.0 * 0.03, size=200_000)).mean()
    assert per_refill[2] == pytest.approx(counted, rel=0.01)


def test_refills_follow_writes_and_expiries():
    assert guide.refills(np.array([10.0]), np.array([0.0]), 60.0)[0] == pytest.approx(1 / (60 + 0.1))
    assert guide.refills(np.array([10.0]), np.array([1.0]), None)[0] == pytest.approx(1 / (1 + 0.1))
    assert guide.refills(np.array([0.0]), np.array([1.0]), 60.0)[0] == 0.0, "a key nobody reads is never refilled"


def test_the_queue_of_one_worker_is_pollaczek_khinchine():
    s = 0.01
    rho, mean, p99 = guide.queueing(50.0, [s], [1.0])  # M/D/1 at rho = 0.5
    assert rho == pytest.approx(0.5) and mean == pytest.approx(s + 0.5 * s / (2 * 0.5))
    assert p99 > mean
    assert guide.queueing(150.0, [s], [1.0])[1] == math.inf, "past one request per service time: no steady state"


def test_writes_cost_a_shared_cache_refills_and_a_lock_saves_the_stampede():
    quiet = guide.Situation(processes=16, request_rate=400, keys=200, max_staleness_s=60, database_cpus=8)
    busy = guide.Situation(processes=16, request_rate=400, keys=200, max_staleness_s=60, database_cpus=8,
                           write_rate=20)
    by_name = {}
    for name, situation in (("quiet", quiet), ("busy", busy)):
        ranking = guide.rank(situation, measured(network_ns=60e3))
        by_name[name] = {e.name: e for e in [*ranking.ranked, *ranking.ruled_out]}
    assert by_name["busy"]["Redis"].backend_qps > by_name["quiet"]["Redis"].backend_qps + 10
    assert by_name["busy"]["Redis + lock"].backend_qps < by_name["busy"]["Redis"].backend_qps
    assert by_name["busy"]["Redis"].queries_per_refill > 1 and by_name["busy"]["Redis + lock"].queries_per_refill == 1
    ttl_busy, ttl_quiet = by_name["busy"]["cachetools TTL"], by_name["quiet"]["cachetools TTL"]
    assert ttl_busy.backend_qps == pytest.approx(ttl_quiet.backend_qps), \
        "a per-process cache is not told about writes: it pays no refill, and serves the old answer until its TTL"


def test_a_database_that_cannot_keep_up_rules_a_candidate_out():
    situation = guide.Situation(processes=8, request_rate=400, keys=20_000, max_staleness_s=5)
    out = {e.name: " ".join(e.ruled_out) for e in guide.rank(situation, measured()).ruled_out}
    assert "database" in out["cachetools TTL"]
    roomy = guide.rank(guide.Situation(processes=8, request_rate=400, keys=20_000, max_staleness_s=5,
                                       database_cpus=1000), measured())
    assert all("database" not in " ".join(e.ruled_out) for e in roomy.ruled_out)


def test_overlapping_spreads_are_ties_and_a_narrow_spread_separates():
    wide = measured(query_range_ns=(20e6, 40e6), hit_range_ns={"lru_cache": (50, 60e6), "cachetools TTL": (300, 700)})
    narrow = measured(query_range_ns=(29.9e6, 30.1e6),
                      hit_range_ns={"lru_cache": (99, 101), "cachetools TTL": (499, 501)})
    situation = guide.Situation(request_rate=10, keys=100, max_staleness_s=None)
    assert {"lru_cache", "cachetools TTL"} <= set(guide.rank(situation, wide).tied), "a wide spread overlaps"
    far = narrow.with_changes(hit_ns={**narrow.hit_ns, "cachetools TTL": 5e6},
                              hit_range_ns={**narrow.hit_range_ns, "cachetools TTL": (4.9e6, 5.1e6)})
    assert "cachetools TTL" not in guide.rank(situation, far).tied, "5 ms against 100 ns, narrowly measured"
    assert "cachetools TTL" in guide.rank(situation, narrow).tied, "within 10%: no reader would notice"


def test_sensitivity_names_the_change_that_flips_the_winner():
    situation = guide.Situation(processes=8, request_rate=100)  # data that never change: the network decides
    fast = measured(network_ns=20e3)
    rows = {r["assumption"]: r for r in guide.sensitivity(situation, fast)}
    assert set(rows) == set(guide.ASSUMPTIONS)
    now = guide.rank(situation, fast)
    flipped = rows["network"]
    assert flipped["factor"] is not None and flipped["factor"] > 1 and flipped["best"] not in now.tied


def test_each_figure_says_where_it_comes_from():
    m = measured(sources={"query": "this run", "hit:Redis": "reference run (X, 2026-01-01)"})
    redis = next(c for c in guide.CANDIDATES if c.name == "Redis")
    assert m.sources_of(redis) == {"query": "this run", "hit:Redis": "reference run (X, 2026-01-01)"}
    ranking = guide.rank(guide.Situation(request_rate=10), m)
    assert set(ranking.sources()) == {"this run", "reference run (X, 2026-01-01)"}


def _setup(**changes):
    base = dict(workers=3, server_cpus=1.0, shares=np.full(4, 0.25), written=np.array([True, False, False, False]),
                write_rate=0.0, check_rate=0.0, ttl_s=60.0, local_ttl_s=60.0)
    return guide.WebSetup(**{**base, **changes})


def test_the_web_prediction_fills_the_server_cpus_and_nothing_more():
    m = measured()
    http = 1e6  # 1 ms a request
    none = guide.predict_web(_setup(), m, http, "none")
    assert none.requests_per_second == pytest.approx(1 / (0.030 + 0.001), rel=1e-6)  # a check of the arithmetic
    lru = guide.predict_web(_setup(), m, http, "lru")
    assert lru.backend_qps == 0 and lru.requests_per_second == pytest.approx(1 / (0.001 + 100e-9), rel=1e-6)
    written = _setup(write_rate=2.0)
    redis, locked = (guide.predict_web(written, m, http, mode) for mode in ("redis", "redis-lock"))
    assert redis.queries_per_write > locked.queries_per_write and locked.queries_per_write <= 1.0
    assert redis.requests_per_second < locked.requests_per_second < lru.requests_per_second
    with pytest.raises(ValueError):
        guide.predict_web(written, m, http, "varnish")
