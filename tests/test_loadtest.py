"""The load-test runner of notebook 07: real worker processes, real SQLite, real Redis and memcached."""

import pytest

from cachelab import loadtest
from cachelab.data import FlightService
from cachelab.servers import Servers, prefix_for


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


def test_answer_functions_count_hits_and_backend_queries(routes, redis_server):
    from cachelab.servers import RedisEndpoint

    client = Servers(RedisEndpoint("test", True, url=redis_server.url), None).redis_client()

    class Prefixed:
        def get(self, key):
            return client.get("cachelab:test:" + key)

        def set(self, key, value, ex):
            return client.set("cachelab:test:" + key, value, ex=ex)

    with FlightService() as service:
        for mode, cache in (("no cache", None), ("lru_cache", None), ("redis", Prefixed())):
            service.calls = 0
            answer, counter = loadtest.make_answer(mode, service, cache)
            first = answer(routes[0])
            assert answer(routes[0]) == first
            expected_calls = 2 if mode == "no cache" else 1
            assert (service.calls, counter.hits) == (expected_calls, 2 - expected_calls), mode
        assert client.ttl("cachelab:test:" + routes[0].key()) > 0  # shared entries expire
    with pytest.raises(ValueError):
        loadtest.make_answer("nope", None)
    client.close()


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
    low, high = result.rps_p10_p90
    assert low <= result.requests_per_second <= high


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
