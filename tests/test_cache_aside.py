"""Cache-aside over real Redis and memcached: counters, TTLs, jitter, negative caching, versioned keys."""

import random
import time

import pytest

from cachelab.cache_aside import (
    MISSING_MARKER,
    CacheAside,
    MemcachedStore,
    Namespace,
    RedisStore,
    busiest_second,
    jittered_ttl,
)
from cachelab.servers import JsonSerde

PREFIX = "cachelab:test_cache_aside:"



class Backend:
    """A counting stand-in for the service: the value of key 'absent' does not exist."""

    def __init__(self):
        self.calls = 0

    def __call__(self, key):
        self.calls += 1
        return None if key == "absent" else {"key": key, "n": self.calls}


def test_jittered_ttl_stays_in_its_window_and_spreads():
    rng = random.Random(1)
    values = [jittered_ttl(100, 0.1, rng=rng) for _ in range(2000)]
    assert 90 <= min(values) and max(values) <= 110
    assert len({round(v) for v in values}) >= 15
    assert jittered_ttl(100, 0) == 100
    for bad in ((0, 0.1), (10, 1.0), (10, -0.1)):
        with pytest.raises(ValueError):
            jittered_ttl(*bad)


def test_busiest_second_counts_one_seeded_burst():
    rng = random.Random(4)
    by_hand = {}
    for _ in range(500):
        second = int(jittered_ttl(600, 0.2, rng=rng) // 1)
        by_hand[second] = by_hand.get(second, 0) + 1
    assert busiest_second(600, 0.2, 500, seed=4) == max(by_hand.values())
    assert busiest_second(600, 0.0, 500, seed=4) == 500  # no jitter: every key in one second
    assert busiest_second(600, 0.5, 500, seed=4) < busiest_second(600, 0.05, 500, seed=4)
    with pytest.raises(ValueError):
        busiest_second(600, 0.1, 0, seed=1)


def test_cache_aside_computes_once_then_hits(redis_client):
    backend = Backend()
    cache = CacheAside(RedisStore(redis_client, PREFIX), backend, ttl=30)
    first = cache.get("a")
    assert cache.get("a") == first and backend.calls == 1
    assert (cache.hits, cache.misses, cache.computes) == (1, 1, 1)
    assert 29_000 < redis_client.pttl(PREFIX + "a") <= 30_000
    cache.invalidate("a")
    assert cache.get("a") != first and backend.calls == 2
    assert cache.hit_ratio == pytest.approx(1 / 3)


def test_negative_caching_remembers_not_found_briefly(redis_client):
    backend = Backend()
    plain = CacheAside(RedisStore(redis_client, PREFIX + "plain:"), backend, ttl=30)
    for _ in range(5):
        assert plain.get("absent") is None
    assert backend.calls == 5  # every lookup of a missing key reaches the backend

    backend = Backend()
    negative = CacheAside(RedisStore(redis_client, PREFIX + "neg:"), backend, ttl=30, negative_ttl=2)
    for _ in range(5):
        assert negative.get("absent") is None
    assert backend.calls == 1 and negative.negative_hits == 4
    assert 0 < redis_client.pttl(PREFIX + "neg:absent") <= 2000
    assert RedisStore(redis_client, PREFIX + "neg:").get("absent") == MISSING_MARKER


def test_jitter_spreads_the_ttls_written(redis_client):
    cache = CacheAside(RedisStore(redis_client, PREFIX), Backend(), ttl=100, jitter=0.2, rng=random.Random(3))
    for i in range(50):
        cache.get(f"j{i}")
    ttls = [redis_client.pttl(f"{PREFIX}j{i}") for i in range(50)]
    assert min(ttls) >= 79_000 and max(ttls) <= 120_000
    assert max(ttls) - min(ttls) > 10_000


def test_namespace_bump_makes_old_keys_unreachable(redis_client):
    ns = Namespace(redis_client, PREFIX, "routes")
    backend = Backend()
    cache = CacheAside(RedisStore(redis_client, PREFIX), backend, ttl=30, key_of=ns.key)
    cache.get("x")
    cache.get("x")
    assert backend.calls == 1 and ns.version() == 0
    assert ns.bump() == 1
    cache.get("x")
    assert backend.calls == 2
    assert redis_client.exists(PREFIX + "routes:v0:x") and redis_client.exists(PREFIX + "routes:v1:x")
    with pytest.raises(ValueError):
        Namespace(redis_client, PREFIX, "a:b")


def test_stores_refuse_foreign_prefixes(redis_client):
    with pytest.raises(ValueError):
        RedisStore(redis_client, "users:")


def test_memcached_store_with_expiry_and_reported_writes(memcached_server):
    from pymemcache.client.base import Client
    from pymemcache.exceptions import MemcacheServerError

    client = Client(memcached_server.address, serde=JsonSerde(), key_prefix=PREFIX.encode(),
                    connect_timeout=1, timeout=2)
    store = MemcachedStore(client)
    backend = Backend()
    cache = CacheAside(store, backend, ttl=30)
    cache.get("m")
    cache.get("m")
    assert backend.calls == 1
    assert store.get_many(["m", "nope"]) == {"m": {"key": "m", "n": 1}}
    store.delete("m")
    assert store.get("m") is None
    # A TTL under a second is rounded up to memcached's whole second (0 would mean "never expires"): the item
    # is gone at the server clock's next tick, up to a second later
    assert store.set("short", "v", 0.2) is True
    deadline = time.monotonic() + 2.5
    while store.get("short") is not None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert store.get("short") is None, "a TTL of 0.2 s should expire, not be sent as 0 (never)"
    with pytest.raises(MemcacheServerError):  # noreply=False: a refused write is an error, not silence
        store.set("huge", "x" * 2_000_000, 10)
    assert store.refused_writes == 0


def test_a_write_the_client_reports_refused_is_counted_not_silent(memcached_server):
    """A HashClient with ignore_exc=True (the series' client) answers a refused set with False: counted."""
    from cachelab.servers import memcached_client_for

    client = memcached_client_for([memcached_server.address], PREFIX)
    store = MemcachedStore(client)
    assert store.set("small", "x", 10) is True and store.refused_writes == 0
    huge = "x" * 2_000_000  # over memcached's 1 MB item limit
    cache = CacheAside(store, lambda key: huge, ttl=10)
    assert cache.get("huge") == huge, "the caller still gets its answer"
    assert store.refused_writes == 1 and cache.store_errors == 1, "the refusal counted, not dropped"
    negative = CacheAside(store, lambda key: None, ttl=10, negative_ttl=1)
    negative.get("absent")
    assert negative.store_errors == 0, "a write that was stored is no error"
    client.close()


def test_memcached_expire_sends_ttls_above_30_days_as_a_unix_time():
    from cachelab.cache_aside import MEMCACHED_MAX_RELATIVE_TTL, memcached_expire

    assert memcached_expire(None) == 0 and memcached_expire(0.2) == 1 and memcached_expire(600) == 600
    assert memcached_expire(MEMCACHED_MAX_RELATIVE_TTL) == MEMCACHED_MAX_RELATIVE_TTL
    assert memcached_expire(31 * 86400, now=1_000_000.0) == 1_000_000 + 31 * 86400
    with pytest.raises(ValueError):
        memcached_expire(0)


def test_a_ttl_above_30_days_keeps_the_value_in_memcached(memcached_server):
    from pymemcache.client.base import Client

    client = Client(memcached_server.address, serde=JsonSerde(), key_prefix=PREFIX.encode(),
                    connect_timeout=1, timeout=2)
    client.set("naive", "v", expire=31 * 86400, noreply=False)  # read by memcached as a time in 1970
    assert client.get("naive") is None, "memcached 1.6 reads 31 days in seconds as a past Unix time"
    MemcachedStore(client).set("long", "v", 31 * 86400)
    assert client.get("long") == "v"
    client.close()


def test_failover_writes_get_the_short_ttl(memcached_server):
    from cachelab import sharding
    from cachelab.servers import memcached_client_for, start_memcached

    with start_memcached(memory_mb=8) as other:
        nodes = [memcached_server.address, other.address]
        client = memcached_client_for(nodes, PREFIX, connect_timeout=0.5, timeout=1, retry_attempts=0,
                                      dead_timeout=60)
        store = MemcachedStore(client, failover_ttl=2)
        home = sharding.node_name(other.address)
        key = next(f"k{i}" for i in range(100) if sharding.node_for(f"k{i}", nodes) == home)
        store.set(key, "home", 600)
        assert not store.is_failover(key) and store.failover_writes == 0
        other.stop()
        for _ in range(2):  # the open connection fails first (closed), then the reconnection is refused
            assert client.get(key) is None  # and the node is marked dead (retry_attempts=0)
        assert store.is_failover(key)
        store.set(key, "runner-up", 600)
        assert store.failover_writes == 1
        from pymemcache.client.base import Client

        direct = Client(memcached_server.address, key_prefix=PREFIX.encode(), connect_timeout=1, timeout=2)
        assert direct.get(key) is not None  # the copy landed on the runner-up...
        ttl = int(direct.raw_command(f"mg {PREFIX}{key} t", end_tokens="\r\n").split(b"t")[-1])
        assert 0 < ttl <= 2, "...with the failover TTL, not 600 s"
        client.close()
        direct.close()


def test_memcached_ttl_window_places_what_was_seen():
    from cachelab.cache_aside import memcached_ttl_window

    assert memcached_ttl_window(3, 2.4).startswith("inside memcached's window of 2 to 3 s")
    assert memcached_ttl_window(3, 3.12).startswith("0.12 s past memcached's window of 2 to 3 s")
    assert memcached_ttl_window(1, 0.0) == "inside memcached's window of 0 to 1 s"
    assert "before" in memcached_ttl_window(3, 1.5)
    for bad in (0, 2.5, True, 31 * 86400):
        with pytest.raises(ValueError):
            memcached_ttl_window(bad, 1.0)
