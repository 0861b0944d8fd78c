"""cachelab.policies, cachelab.expiry and cachelab.threads: replays, a manual clock, threads released together."""

import threading

import cachetools
import pytest

from cachelab import expiry, policies, threads, workload


def test_make_cache_builds_each_policy_of_cachetools():
    expected = {"LRU": cachetools.LRUCache, "LFU": cachetools.LFUCache, "FIFO": cachetools.FIFOCache,
                "RR": cachetools.RRCache, "TTL": cachetools.TTLCache, "TLRU": cachetools.TLRUCache}
    for name, cls in expected.items():
        cache = policies.make_cache(name, 10)
        assert type(cache) is cls and cache.maxsize == 10
    with pytest.raises(ValueError, match="unknown policy"):
        policies.make_cache("MRU", 10)


def test_replay_counts_hits_like_the_decorator():
    result = policies.replay(cachetools.LRUCache(2), ["a", "b", "a", "c", "b", "a"], keep_flags=True)
    # LRU of 2: a b | a hit | c evicts b | b evicts a | a evicts c
    assert (result.hits, result.misses) == (1, 5)
    assert result.hit_flags.tolist() == [False, False, True, False, False, False]
    assert result.hit_ratio == pytest.approx(1 / 6)


def test_eviction_orders_differ_by_policy():
    stream = ["a", "a", "a", "b", "c", "a"]  # with 2 slots: c must evict a (FIFO, LRU) or b (LFU)
    assert policies.replay(policies.make_cache("FIFO", 2), stream).hits == 2
    assert policies.replay(policies.make_cache("LRU", 2), stream).hits == 2
    assert policies.replay(policies.make_cache("LFU", 2), stream).hits == 3


def test_replay_stores_values_and_skips_values_larger_than_the_cache():
    cache = cachetools.LRUCache(10, getsizeof=len)
    result = policies.replay(cache, ["ab", "abcdefghijklmnop", "ab"], value=lambda k: k)
    assert result.hits == 1 and "abcdefghijklmnop" not in cache and cache["ab"] == "ab"


def test_rr_replays_are_repeatable_for_a_seed():
    stream = workload.zipf_stream(list(range(200)), 3000, seed=5)
    runs = [policies.replay(policies.make_cache("RR", 20, seed=1), stream).hits for _ in range(2)]
    assert runs[0] == runs[1]


def test_hit_ratio_grows_with_size_and_timed_caches_without_expiry_evict_like_lru():
    stream = workload.zipf_stream(list(range(300)), 4000, seed=2)
    sizes = [5, 20, 80, 300]
    curves = policies.hit_ratio_curves(stream, sizes, policies.ALL_POLICIES)
    for name, curve in curves.items():
        assert curve == sorted(curve), f"{name} should not lose hits with more room"
        assert curve[-1] == pytest.approx(workload.repeat_fraction(stream)), "a cache of every key hits every repeat"
    assert curves["TTL"] == curves["LRU"] == curves["TLRU"]
    assert policies.best_policy(curves, 0) == "LFU"  # a stationary Zipf stream: frequency is popularity


def test_lfu_keeps_the_hot_keys_through_a_scan_and_lru_does_not():
    hot = workload.zipf_stream(list(range(100)), 4000, seed=3)
    scanned = workload.with_scan(hot, [f"scan-{i}" for i in range(500)], at=0.5)
    lru = policies.replay(policies.make_cache("LRU", 50), scanned, keep_flags=True)
    lfu = policies.replay(policies.make_cache("LFU", 50), scanned, keep_flags=True)
    after = slice(2000 + 500, 2000 + 500 + 100)  # the 100 requests right after the scan
    assert lfu.hit_flags[after].mean() > lru.hit_flags[after].mean() + 0.2


def test_curves_can_count_only_some_requests():
    stream = ["a", "scan", "a", "a"]
    counted = [key != "scan" for key in stream]
    assert policies.hit_ratio_curves(stream, [1], ["LRU"], counted=counted) == {"LRU": [1 / 3]}
    assert policies.hit_ratio_curves(stream, [2], ["LRU"], counted=counted) == {"LRU": [2 / 3]}
    with pytest.raises(ValueError):
        policies.hit_ratio_curves(stream, [1], ["LRU"], counted=[True])


def test_most_requested_and_warm():
    stream = ["b", "a", "b", "c", "b", "a"]
    assert policies.most_requested(stream, 2) == ["b", "a"]
    assert policies.most_requested(stream, 0) == []
    cache = cachetools.LRUCache(2)
    assert policies.warm(cache, ["b", "a", "c"]) == 3
    assert set(cache) == {"b", "a"}, "the hottest keys, given first, are the last evicted"
    loaded = {}
    policies.warm(loaded, ["x"], load=str.upper)
    assert loaded == {"x": "X"}


def test_cumulative_and_rolling_hit_ratio():
    flags = [False, True, True, False]
    assert policies.cumulative_hit_ratio(flags).tolist() == [0.0, 0.5, 2 / 3, 0.5]
    assert policies.rolling_hit_ratio(flags, 2).tolist() == [0.5, 1.0, 0.5]
    assert policies.rolling_hit_ratio(flags, 5).size == 0
    with pytest.raises(ValueError):
        policies.rolling_hit_ratio(flags, 0)


def test_manual_clock_drives_ttl_expiry_exactly():
    clock = expiry.ManualClock()
    cache = cachetools.TTLCache(10, ttl=60, timer=clock)
    cache["k"] = 1
    clock.advance(59.999)
    assert "k" in cache
    clock.advance(0.001)
    assert "k" not in cache, "an entry expires when the clock reaches insert time + ttl"
    with pytest.raises(ValueError):
        clock.advance(-1)


def test_timeline_is_ordered_and_seeded():
    keys = list(range(50))
    events = expiry.read_write_timeline(keys, 1000, writes_per_read=0.1, seed=4)
    assert events == expiry.read_write_timeline(keys, 1000, writes_per_read=0.1, seed=4)
    assert [e.time for e in events] == sorted(e.time for e in events)
    assert sum(e.kind == "read" for e in events) == 1000
    assert 50 < sum(e.kind == "write" for e in events) < 150


def test_replay_with_updates_counts_stale_reads_by_hand():
    E = expiry.Event
    events = [E(0, "read", "a"), E(1, "write", "a"), E(2, "read", "a"), E(11, "read", "a"), E(12, "read", "a")]
    report = expiry.replay_with_updates(events, ttl=10)
    # t=0 load v0; t=1 write; t=2 hit v0: stale (1 s after the write); t=11 expired: load v1; t=12 hit v1.
    assert (report.reads, report.hits, report.loads, report.stale_reads) == (4, 2, 2, 1)
    assert report.max_stale_age == 1
    with pytest.raises(ValueError):
        expiry.replay_with_updates([E(2, "read", "a"), E(1, "read", "a")], ttl=10)


def test_a_slow_load_stores_what_it_read_before_the_write_and_the_ttl_starts_at_the_store():
    E = expiry.Event
    events = [E(0, "read", "a"), E(1, "write", "a"), E(6, "read", "a"), E(14, "read", "a"), E(15.5, "read", "a")]
    report = expiry.replay_with_updates(events, ttl=10, load_seconds=5)
    # t=0 miss: reads v0, stores it at t=5 (valid until 15); t=1 write; t=6 and t=14 hits of v0, stale 13 s
    # after the write: more than the TTL, less than TTL + load; t=15.5 expired: a load.
    assert (report.reads, report.hits, report.loads, report.stale_reads) == (4, 2, 2, 2)
    assert report.max_stale_age == 13 and 10 < report.max_stale_age <= 10 + 5
    assert report.load_seconds == 5
    instant = expiry.replay_with_updates(events, ttl=10)
    assert instant.max_stale_age < 10


def test_reads_during_a_load_miss_too_and_per_key_ttls_come_from_a_function():
    E = expiry.Event
    during = expiry.replay_with_updates([E(0, "read", "a"), E(1, "read", "a"), E(3, "read", "a")], ttl=10,
                                        load_seconds=2)
    assert (during.loads, during.hits) == (2, 1), "t=1 misses (the load of t=0 ends at 2); t=3 hits"
    events = [E(0, "read", "a"), E(0, "read", "b"), E(50, "read", "a"), E(50, "read", "b")]
    report = expiry.replay_with_updates(events, lambda key: 10 if key == "a" else 100)
    assert (report.loads, report.hits) == (3, 1), "a expires after 10 s, b lives 100 s"
    with pytest.raises(ValueError):
        expiry.replay_with_updates(events, 10, load_seconds=-1)


def test_a_longer_ttl_trades_loads_for_stale_reads_within_the_ttl():
    events = expiry.read_write_timeline(list(range(200)), 5000, writes_per_read=0.05, seed=1)
    reports = expiry.staleness_curve(events, [2, 20, 200, 2000])
    stale = [r.stale_fraction for r in reports]
    loads = [r.load_fraction for r in reports]
    assert stale == sorted(stale) and stale[-1] > stale[0]
    assert loads == sorted(loads, reverse=True) and loads[-1] < loads[0]
    assert all(r.max_stale_age < r.ttl for r in reports), "no answer is served stale for longer than the TTL"


def test_call_together_releases_all_threads_at_once():
    inside = threading.Barrier(4)

    def work(x):
        inside.wait(timeout=10)  # passes only if all four threads are inside at the same time
        return x * 2

    assert threads.call_together(work, 21, threads=4) == [42] * 4


def test_call_together_reraises_and_never_hangs():
    def boom():
        raise KeyError("x")

    with pytest.raises(KeyError):
        threads.call_together(boom, threads=3)
    gate = threading.Event()
    with pytest.raises(threads.ThreadsTimeout):
        threads.call_together(gate.wait, threads=2, timeout=0.2)
    gate.set()


def test_cachetools_condition_prevents_a_stampede_and_a_lock_alone_does_not():
    """The behaviour 03 relies on: a real slow query, eight threads, count the backend calls."""
    from cachelab.data import FlightService

    def run(**sync):
        with FlightService() as service:
            slow = cachetools.cached(cachetools.LRUCache(10), **sync)(service.route_delay)
            answers = threads.call_together(slow, "JFK", "LAX", 7, threads=8)
            assert all(a == answers[0] for a in answers)
            return service.calls

    assert run(condition=threading.Condition()) == 1
    assert run(lock=threading.Lock()) > 1


def _brute_force_opt(stream, maxsize):
    """The most hits any cache of ``maxsize`` that stores every miss can get: every eviction choice tried."""
    def best(i, cached):
        if i == len(stream):
            return 0
        key = stream[i]
        if key in cached:
            return 1 + best(i + 1, cached)
        if maxsize == 0:
            return best(i + 1, cached)
        if len(cached) < maxsize:
            return best(i + 1, cached | {key})
        return max(best(i + 1, (cached - {victim}) | {key}) for victim in cached)
    return best(0, frozenset())


def test_belady_matches_a_brute_force_search_on_small_streams():
    import random

    rng = random.Random(14)
    for _ in range(150):
        stream = [rng.randrange(5) for _ in range(rng.randrange(1, 11))]
        for maxsize in range(0, 4):
            assert policies.belady(stream, maxsize).hits == _brute_force_opt(stream, maxsize), (stream, maxsize)


def test_belady_evicts_the_key_needed_farthest_in_the_future():
    # 2 slots, a b then c: a comes back first, so b goes; then a hits and b misses
    result = policies.belady(["a", "b", "c", "a", "b"], 2, keep_flags=True)
    assert result.hit_flags.tolist() == [False, False, False, True, False]
    assert policies.next_use(["a", "b", "a"]) == [2, 3, 3]


def test_no_policy_beats_belady_and_belady_reaches_the_ceiling_when_everything_fits():
    stream = workload.zipf_stream(list(range(300)), 3000, seed=4)
    sizes = [1, 10, 50, 300]
    opt = policies.belady_curve(stream, sizes)
    curves = policies.hit_ratio_curves(stream, sizes, policies.EVICTION_POLICIES)
    for name, curve in curves.items():
        assert all(c <= o for c, o in zip(curve, opt, strict=True)), name
    assert opt == sorted(opt) and opt[-1] == pytest.approx(workload.repeat_fraction(stream))
    assert opt[1] > curves["LRU"][1] + 0.05, "at a small size OPT should be well above LRU on a Zipf stream"
    with pytest.raises(ValueError):
        policies.belady(stream, -1)


def test_a0_evicts_the_least_popular_cached_key_and_stores_every_miss():
    popularity = {"a": 3, "b": 2, "c": 1}
    # 2 slots: a b | c evicts b (the less popular of a, b) | a hit | b evicts c | c evicts b
    result = policies.a0(["a", "b", "c", "a", "b", "c"], 2, popularity, keep_flags=True)
    assert result.hit_flags.tolist() == [False, False, False, True, False, False]
    assert policies.a0(["x", "x"], 0, popularity).hits == 0
    with pytest.raises(TypeError, match="mapping"):
        policies.a0(["a"], 1, ["a"])


def test_a0_lies_between_the_real_policies_and_opt_on_independent_requests():
    keys = list(range(400))
    stream = workload.zipf_stream(keys, 20_000, seed=11)
    popularity = dict(zip(keys, workload.zipf_weights(len(keys)), strict=True))
    for size in (10, 40, 160):
        bound = policies.a0(stream, size, popularity).hits
        assert bound <= policies.belady(stream, size).hits
        assert bound >= max(policies.replay(policies.make_cache(p, size), stream).hits for p in ("LRU", "FIFO"))
    assert policies.a0_curve(stream, [10, 40], popularity) == [
        policies.a0(stream, s, popularity).hit_ratio for s in (10, 40)]
