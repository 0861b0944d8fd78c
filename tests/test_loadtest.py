"""The load-test runner of notebook 07: real worker processes, real SQLite, real Redis and memcached."""

import pytest

from cachelab import loadtest
from cachelab.data import FlightService
from cachelab.keys import prefix_for
from cachelab.servers import Servers

pytestmark = pytest.mark.servers  # every test here runs against real servers


@pytest.fixture(scope="module")
def routes():
    with FlightService() as service:
        return service.routes()[:3]


def test_deal_is_round_robin_and_lru_queries_count_each_shard():
    stream = ["a", "b", "a", "c", "a", "b"]
    assert loadtest.deal(stream, 2) == [["a", "a", "a"], ["b", "c", "b"]]
    assert loadtest.deal(stream, 4)[3] == ["c"]
    assert loadtest.expected_lru_queries(stream, 1) == 3
    assert loadtest.expected_lru_queries(stream, 2) == 1 + 2
    with pytest.raises(ValueError):
        loadtest.deal(stream, 0)


def test_answer_functions_count_hits_and_backend_queries(routes, redis_server, memcached_server):
    from pymemcache.client.base import Client

    from cachelab.cache_aside import MemcachedStore, RedisStore
    from cachelab.servers import JsonSerde, RedisEndpoint

    client = Servers(RedisEndpoint("test", True, url=redis_server.url), None).redis_client()
    mc = Client(memcached_server.address, serde=JsonSerde(), key_prefix=b"cachelab:test:", connect_timeout=1,
                timeout=2, no_delay=True)
    stores = {"no cache": None, "lru_cache": None, "redis": RedisStore(client, "cachelab:test:"),
              "memcached": MemcachedStore(mc)}
    with FlightService() as service:
        for mode, store in stores.items():
            service.calls = 0
            answer, counter = loadtest.make_answer(mode, service, store)
            first = answer(routes[0])
            assert answer(routes[0]) == first == service.route_delay(routes[0].origin, routes[0].dest, routes[0].month)
            expected_calls = 2 if mode == "no cache" else 1
            assert (service.calls, counter.hits) == (expected_calls + 1, 2 - expected_calls), mode
        assert client.ttl("cachelab:test:" + routes[0].key()) > 0  # shared entries expire
        assert mc.get(routes[0].key()) == first
        with pytest.raises(ValueError, match="needs a store"):
            loadtest.make_answer("redis", service)
    with pytest.raises(ValueError):
        loadtest.make_answer("nope", None)
    client.close()
    mc.close()


def test_workers_serve_a_stream_in_every_mode(servers, routes):
    prefix = prefix_for("99_loadtest")
    stream = [routes[0], routes[1], routes[0], routes[2], routes[0], routes[1]]
    with loadtest.LoadTest(servers, prefix, max_workers=2) as test:
        none = test.run("no cache", 2, stream)
        assert none.backend_queries == len(stream) and none.hits == 0
        assert [r.served for r in none.reports] == [3, 3]
        lru = test.run("lru_cache", 2, stream)
        assert lru.backend_queries == loadtest.expected_lru_queries(stream, 2)
        for mode in ("memcached", "redis"):
            one = test.run(mode, 1, stream)
            assert one.backend_queries == len(set(stream)), mode  # one worker: each key computed once
            assert one.hits == len(stream) - len(set(stream))
            two = test.run(mode, 2, stream)  # fresh keys: the previous run's entries are not reused
            assert len(set(stream)) <= two.backend_queries <= loadtest.expected_lru_queries(stream, 2)
        assert test.last.requests_per_second > 0
        keys = servers.redis_client().keys(prefix + "load:*")
        assert keys  # the shared runs wrote under the notebook's prefix...
    assert servers.redis_client().keys(prefix + "load:*") == []  # ...and closing deleted them


def test_measure_times_every_run_and_keeps_its_counts(routes):
    stream = [routes[0], routes[0], routes[1]]
    with loadtest.LoadTest(max_workers=1) as test:
        result = test.measure("lru_cache", 1, stream, repeat=2)
    assert result.timing.n == 2 and len(result.runs) == 2
    assert result.timing.meta == {"mode": "lru_cache", "workers": 1, "requests": 3}
    assert result.backend_queries == 2


def test_bad_requests_fail_fast():
    with pytest.raises(ValueError):
        loadtest.LoadTest(max_workers=0)
    with pytest.raises(ValueError, match="prefix"):
        loadtest.LoadTest(servers=object(), prefix="mine:")
    with loadtest.LoadTest(max_workers=1) as test:
        with pytest.raises(ValueError, match="needs servers"):
            test.run("redis", 1, [("JFK", "LAX", 7)])
        with pytest.raises(ValueError, match="between 1 and 1"):
            test.run("no cache", 2, [("JFK", "LAX", 7)])
        with pytest.raises(ValueError, match="unknown mode"):
            test.run("fast", 1, [])
        with pytest.raises(RuntimeError):
            test.go()


def test_a_failing_worker_is_reported_not_waited_for(tmp_path):
    with pytest.raises(loadtest.LoadTestError, match="no database"):
        loadtest.LoadTest(max_workers=1, db_path=tmp_path / "missing.sqlite", timeout=60).start()


def test_a_shared_run_whose_server_is_gone_fails_instead_of_measuring_the_database(servers, routes):
    from cachelab.servers import RedisEndpoint, start_redis

    with start_redis() as server:
        found = Servers(RedisEndpoint("private", True, url=server.url), servers.memcached)
        test = loadtest.LoadTest(found, prefix_for("99_loadtest"), max_workers=1, timeout=60).start()
        server.stop()
        with pytest.raises(loadtest.LoadTestError, match="could not reach the redis server"):
            test.run("redis", 1, [routes[0], routes[0]])
        with pytest.warns(RuntimeWarning, match="expire within"):  # closing reports the keys it could not delete
            test.close()
