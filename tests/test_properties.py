"""Properties that hold for every input, checked by hypothesis on hundreds of generated ones.

The workload generator: streams only hold the keys given, as many as asked, the same for a seed.
The cache helpers: a cache never holds more than its ``maxsize``, no cache beats the compulsory misses,
an entry is never served once its TTL has passed (under an injected clock, as cachetools' own tests do),
and a TTL bounds how stale a served answer can be.
"""

from __future__ import annotations

import math
from collections import Counter

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from cachelab import memo, policies, workload
from cachelab.cache_aside import CacheAside, RedisStore, jittered_ttl
from cachelab.expiry import Event, ManualClock, replay_with_updates
from cachelab.near_cache import NearCache
from cachelab.servers import RedisEndpoint, Servers, start_redis

PREFIX = "cachelab:test_properties:"
FAST = settings(deadline=None, max_examples=200)
SERVER = settings(deadline=None, max_examples=40, suppress_health_check=[HealthCheck.function_scoped_fixture])

keys_lists = st.lists(st.integers(0, 1000), min_size=1, max_size=30, unique=True)
streams = st.lists(st.integers(0, 15), max_size=200)
alphas = st.floats(0, 3, allow_nan=False)
seeds = st.integers(0, 2**32 - 1)
sizes = st.integers(0, 20)
# Operations on one TTL cache: store a key, read a key, or let time pass (in seconds).
operations = st.lists(st.one_of(st.tuples(st.just("set"), st.integers(0, 5)),
                                st.tuples(st.just("get"), st.integers(0, 5)),
                                st.tuples(st.just("advance"), st.floats(0, 20, allow_nan=False))), max_size=60)


# --------------------------------------------------------------------------- the workload generator

@FAST
@given(n=st.integers(1, 500), alpha=alphas)
def test_zipf_weights_are_a_distribution_falling_with_rank(n, alpha):
    w = workload.zipf_weights(n, alpha)
    assert len(w) == n and (w > 0).all()
    assert math.isclose(w.sum(), 1.0, rel_tol=1e-9)
    assert all(a >= b * (1 - 1e-12) for a, b in zip(w, w[1:], strict=False))


@FAST
@given(keys=keys_lists, n=st.integers(0, 300), alpha=alphas, seed=seeds)
def test_zipf_streams_hold_only_the_keys_given_as_many_as_asked_the_same_for_a_seed(keys, n, alpha, seed):
    stream = workload.zipf_stream(keys, n, alpha=alpha, seed=seed)
    assert len(stream) == n
    assert set(stream) <= set(keys)
    assert stream == workload.zipf_stream(keys, n, alpha=alpha, seed=seed)


@FAST
@given(keys=keys_lists, n=st.integers(0, 300), seed=seeds)
def test_uniform_streams_hold_only_the_keys_given(keys, n, seed):
    stream = workload.uniform_stream(keys, n, seed=seed)
    assert len(stream) == n and set(stream) <= set(keys)
    assert stream == workload.uniform_stream(keys, n, seed=seed)


@FAST
@given(stream=streams, scan=st.lists(st.integers(100, 200), max_size=50), at=st.floats(0, 1))
def test_a_scan_is_spliced_in_whole_and_nothing_is_lost(stream, scan, at):
    out = workload.with_scan(stream, scan, at=at)
    cut = int(len(stream) * at)
    assert out[:cut] == stream[:cut] and out[cut:cut + len(scan)] == scan and out[cut + len(scan):] == stream[cut:]
    assert Counter(out) == Counter(stream) + Counter(scan)


@FAST
@given(stream=streams)
def test_the_repeat_fraction_is_the_share_of_requests_that_are_not_first_seen(stream):
    fraction = workload.repeat_fraction(stream)
    assert 0 <= fraction < 1
    if stream:
        assert math.isclose(fraction, (len(stream) - len(set(stream))) / len(stream))
    curve = workload.repeat_fraction_curve(stream, range(len(stream) + 1))
    assert all(0 <= v < 1 for v in curve)
    assert math.isclose(curve[-1], fraction)


@FAST
@given(hits=st.integers(0, 10**6), misses=st.integers(0, 10**6))
def test_a_hit_ratio_is_a_fraction(hits, misses):
    assert 0 <= workload.hit_ratio(hits, misses) <= 1


# --------------------------------------------------------------------------- caches by policy

@FAST
@given(policy=st.sampled_from(policies.ALL_POLICIES), maxsize=sizes, stream=streams, seed=seeds)
def test_a_cache_never_holds_more_than_its_maxsize_and_never_beats_the_compulsory_misses(
        policy, maxsize, stream, seed):
    cache = policies.make_cache(policy, maxsize, seed=seed)
    peak = 0
    for key in stream:  # one request at a time, to see the size after each
        policies.replay(cache, [key])
        peak = max(peak, len(cache), cache.currsize)
    assert peak <= maxsize
    result = policies.replay(policies.make_cache(policy, maxsize, seed=seed), stream)
    assert result.hits + result.misses == len(stream)
    assert result.hits <= len(stream) - len(set(stream)), "a hit on a key never seen before"
    if maxsize >= len(set(stream)):  # room for every key: only the first request of each misses
        assert result.hits == len(stream) - len(set(stream))


@FAST
@given(maxsize=st.integers(1, 20), stream=streams)
def test_cachetools_lru_and_functools_lru_cache_agree_on_every_stream(maxsize, stream):
    ours = policies.replay(policies.make_cache("LRU", maxsize), stream)
    theirs = memo.replay_lru(stream, maxsize)
    assert (ours.hits, ours.misses) == (theirs.hits, theirs.misses)
    assert theirs.currsize <= maxsize


@FAST
@given(stream=st.lists(st.tuples(st.integers(0, 5), st.integers(0, 5)), max_size=100))
def test_a_memo_computes_each_distinct_argument_tuple_once(stream):
    calls = []
    memoized = memo.Memo(lambda a, b: calls.append((a, b)) or a * 10 + b)
    assert [memoized(a, b) for a, b in stream] == [a * 10 + b for a, b in stream]
    assert sorted(calls) == sorted(set(stream)) and len(memoized) == len(set(stream))
    assert memoized.hits == len(stream) - len(set(stream))


# --------------------------------------------------------------------------- time: TTLs under an injected clock

@FAST
@given(policy=st.sampled_from(policies.TIMED_POLICIES), ttl=st.floats(0.5, 30), ops=operations)
def test_a_ttl_entry_is_never_served_after_expiry(policy, ttl, ops):
    clock = ManualClock()
    cache = policies.make_cache(policy, 100, ttl=ttl, timer=clock)
    stored_at: dict[int, float] = {}
    for op, arg in ops:
        if op == "advance":
            clock.advance(arg)
        elif op == "set":
            cache[arg] = clock.now
            stored_at[arg] = clock.now
        else:
            value = cache.get(arg)
            if value is not None:
                assert value == stored_at[arg]
                assert clock.now < stored_at[arg] + ttl, f"served {clock.now - value:g} s after a {ttl:g} s TTL"
            elif arg in stored_at:
                assert clock.now >= stored_at[arg] + ttl, "a live entry was lost (the cache is far from full)"


timelines = st.lists(st.tuples(st.floats(0, 100, allow_nan=False), st.sampled_from(["read", "write"]),
                               st.integers(0, 4)), max_size=80)


@FAST
@given(raw=timelines, ttl=st.floats(0.1, 50))
@example(raw=[(1.2104990726736613, "read", 0), (17.402407768376133, "read", 0), (17.402407768376133, "read", 0)],
         ttl=1.0)  # found by hypothesis: a clock advanced by differences drifted past an event's time
def test_a_ttl_bounds_how_stale_a_served_answer_can_be(raw, ttl):
    events = sorted((Event(t, kind, key) for t, kind, key in raw), key=lambda e: (e.time, e.kind != "write"))
    report = replay_with_updates(events, ttl)
    assert report.reads == sum(e.kind == "read" for e in events)
    assert report.hits + report.loads == report.reads
    assert report.stale_reads <= report.hits
    assert report.max_stale_age < ttl, "an answer was served stale for longer than the TTL"


@given(raw=timelines, ttl=st.floats(0.1, 50), load=st.floats(0, 20))
def test_with_slow_loads_staleness_is_bounded_by_the_ttl_plus_the_load(raw, ttl, load):
    events = sorted((Event(t, kind, key) for t, kind, key in raw), key=lambda e: (e.time, e.kind != "write"))
    report = replay_with_updates(events, ttl, load_seconds=load)
    assert report.hits + report.loads == report.reads
    assert report.max_stale_age <= ttl + load + 1e-9, "an answer was served stale past the TTL plus the load"


@FAST
@given(ttl=st.floats(0.001, 1e6), jitter=st.floats(0, 0.99), seed=seeds)
def test_a_jittered_ttl_stays_in_its_window(ttl, jitter, seed):
    import random

    value = jittered_ttl(ttl, jitter, rng=random.Random(seed))
    assert ttl * (1 - jitter) * (1 - 1e-12) <= value <= ttl * (1 + jitter) * (1 + 1e-12)


# --------------------------------------------------------------------------- the same, through a real Redis

@pytest.fixture(scope="module")
def redis_client():
    with start_redis() as server:
        client = Servers(RedisEndpoint("private", True, url=server.url), None).redis_client()
        yield client
        client.close()


@SERVER
@given(local_ttl=st.floats(0.5, 30), ops=operations)
def test_a_near_cache_never_serves_a_local_copy_after_its_local_ttl(redis_client, local_ttl, ops):
    clock = ManualClock()
    near = NearCache(redis_client, PREFIX, ttl=3600, local_ttl=local_ttl, invalidation=False, timer=clock)
    kept_at: dict[str, float] = {}  # when the local tier last stored each key
    written: dict[str, float] = {}
    try:
        for op, arg in ops:
            key = f"k{arg}"
            if op == "advance":
                clock.advance(arg)
            elif op == "set":
                near.set(key, clock.now)
                kept_at[key] = written[key] = clock.now
            else:
                local_before = near.local_hits
                value = near.get(key)
                assert value == written.get(key)
                if near.local_hits > local_before:
                    assert clock.now < kept_at[key] + local_ttl, "a local copy outlived its local TTL"
                elif value is not None:
                    kept_at[key] = clock.now  # a remote hit refills the local tier
    finally:
        near.close()
        redis_client.delete(*[f"{PREFIX}k{i}" for i in range(6)])


@SERVER
@given(stream=st.lists(st.integers(0, 9), max_size=60))
def test_cache_aside_computes_each_key_once_and_answers_like_the_backend(redis_client, stream):
    computed = []

    def backend(key):
        computed.append(key)
        return {"key": key, "square": key * key}

    cache = CacheAside(RedisStore(redis_client, PREFIX), backend, ttl=3600)
    try:
        assert [cache.get(k) for k in stream] == [{"key": k, "square": k * k} for k in stream]
        assert sorted(computed) == sorted(set(stream))
        assert (cache.hits, cache.misses) == (len(stream) - len(set(stream)), len(set(stream)))
    finally:
        redis_client.delete(*[f"{PREFIX}{i}" for i in range(10)])
