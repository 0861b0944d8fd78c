"""Faults, each made real on servers these tests start themselves: a server absent or silent at start,
Redis restarted mid-use, a memcached node stopped mid-stream, a server too slow to answer.

The promise under test: nothing hangs, every error says what to do, and a cache outage costs misses and
recomputations, not wrong answers or a crashed stream.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import pytest
import redis

from cachelab import servers as srv
from cachelab import sharding
from cachelab.cache_aside import CacheAside, MemcachedStore, RedisStore
from cachelab.data import FlightService, Route
from cachelab.near_cache import NearCache
from cachelab.servers.faults import paused
from cachelab.workload import standard_stream

pytestmark = pytest.mark.servers  # every test here runs against real servers

PREFIX = "cachelab:test_faults:"
START_LAB = "import cachelab; cachelab.start('99_test_faults', servers=True)"


@pytest.fixture(scope="module")
def service():
    with FlightService() as svc:
        yield svc


@pytest.fixture(scope="module")
def routes(service):
    return service.routes()[:30]


@pytest.fixture(scope="module")
def truth(service, routes):
    """The backend's answer for each route, to compare every cached answer against."""
    return {r: service.ask(r) for r in routes}


class Backend:
    """The flight service, counting the questions that reach it."""

    def __init__(self, service):
        self.service = service
        self.calls = 0

    def __call__(self, route: Route) -> dict:
        self.calls += 1
        return self.service.ask(route)


def project_servers(redis_url: str = "redis://127.0.0.1:1/0", nodes=()) -> srv.Servers:
    """The project's clients (timeouts, retries, misses on dead nodes) pointed at the given servers."""
    return srv.Servers(srv.RedisEndpoint("private", True, url=redis_url),
                       srv.MemcachedEndpoint("private", True, nodes=list(nodes)))


@pytest.fixture
def three_nodes():
    nodes = [srv.start_memcached(memory_mb=8) for _ in range(3)]
    yield nodes
    for node in nodes:
        node.stop()


@pytest.fixture
def silent_port():
    """A port that accepts connections and never answers: a hung server."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    yield listener.getsockname()[1]
    listener.close()


def start_lab_with(tmp_path, **env_vars) -> tuple[subprocess.CompletedProcess, float]:
    """Run a notebook's set-up line in a fresh process with these variables; return it and its seconds."""
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "MEMCACHED_SERVERS"}}
    env.update(CACHELAB_CACHE_DIR=str(tmp_path / "state"), **env_vars)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", START_LAB], env=env, capture_output=True, text=True,
                          timeout=60)
    return proc, time.monotonic() - t0


# --------------------------------------------------------------------------- absent or silent at start

def test_redis_absent_at_start_says_what_to_do_within_seconds(tmp_path, memcached_server):
    proc, seconds = start_lab_with(tmp_path, REDIS_URL=f"redis://127.0.0.1:{srv.free_port()}/0",
                                   MEMCACHED_SERVERS=f"127.0.0.1:{memcached_server.port}")
    assert proc.returncode != 0
    assert seconds < 10, f"took {seconds:.1f} s to give up"
    assert "ServersUnavailable" in proc.stderr and "did not answer PING" in proc.stderr
    assert "Check the server and password, or unset REDIS_URL" in proc.stderr


def test_memcached_absent_at_start_says_what_to_do_within_seconds(tmp_path, redis_server):
    dead = srv.free_port()
    proc, seconds = start_lab_with(tmp_path, REDIS_URL=redis_server.url,
                                   MEMCACHED_SERVERS=f"127.0.0.1:{dead}")
    assert proc.returncode != 0
    assert seconds < 10, f"took {seconds:.1f} s to give up"
    assert f"127.0.0.1:{dead} did not answer 'version'" in proc.stderr
    assert "unset MEMCACHED_SERVERS" in proc.stderr


@pytest.mark.parametrize("which", ["redis", "memcached"])
def test_a_server_that_accepts_but_never_answers_at_start_fails_within_seconds(
        tmp_path, which, silent_port, redis_server, memcached_server):
    if which == "redis":
        env = {"REDIS_URL": f"redis://127.0.0.1:{silent_port}/0",
               "MEMCACHED_SERVERS": f"127.0.0.1:{memcached_server.port}"}
    else:
        env = {"REDIS_URL": redis_server.url, "MEMCACHED_SERVERS": f"127.0.0.1:{silent_port}"}
    proc, seconds = start_lab_with(tmp_path, **env)
    assert proc.returncode != 0
    assert seconds < 10, f"a silent {which} held the start for {seconds:.1f} s"
    assert "ServersUnavailable" in proc.stderr and "did not answer" in proc.stderr


# --------------------------------------------------------------------------- Redis restarted mid-use

def test_redis_restarted_mid_use_reconnects_and_recomputes_from_the_backend(redis_server, service, routes, truth):
    client = project_servers(redis_server.url).redis_client()
    backend = Backend(service)
    cache = CacheAside(RedisStore(client, PREFIX), backend, ttl=60, key_of=Route.key)
    stream = standard_stream(routes, 120)
    first, second = stream[:60], stream[60:]
    for route in first:
        assert cache.get(route) == truth[route]
    assert backend.calls == len(set(first))

    redis_server.stop()  # then again on the same port with the same password, empty, as a restarted cache is
    redis_server.start()

    before = backend.calls
    for route in second:  # the pooled connection is dead: the client reconnects on its own
        assert cache.get(route) == truth[route]
    assert backend.calls - before == len(set(second)), "each key is recomputed once after the restart, then hit"
    assert client.dbsize() == len(set(second))
    client.close()


def test_while_redis_is_down_the_cached_function_falls_back_to_the_backend(redis_server, service, routes, truth):
    client = project_servers(redis_server.url).redis_client()
    backend = Backend(service)
    cache = CacheAside(RedisStore(client, PREFIX), backend, ttl=60, key_of=Route.key)
    assert cache.get(routes[0]) == truth[routes[0]]
    redis_server.stop()
    before = backend.calls
    t0 = time.monotonic()
    for route in routes[:3]:
        assert cache.get(route) == truth[route], "a cache that is down may only fall back to the backend's answer"
    assert time.monotonic() - t0 < 10, "the client's timeouts bound the fallback"
    assert backend.calls - before == 3, "every read went to the backend while the cache was down"
    assert cache.store_errors >= 3
    redis_server.start()
    assert cache.get(routes[0]) == truth[routes[0]]  # and carries on once the server is back
    assert cache.get(routes[0]) == truth[routes[0]]
    assert cache.hits >= 1, "once the server is back, answers are cached again"
    client.close()


def test_near_caches_keep_invalidating_each_other_after_a_redis_restart(redis_server):
    servers = project_servers(redis_server.url)
    writer_client, reader_client = servers.redis_client(), servers.redis_client()
    writer = NearCache(writer_client, PREFIX, local_ttl=300)
    reader = NearCache(reader_client, PREFIX, local_ttl=300)  # only invalidation can refresh it
    try:
        writer.set("k", {"v": 1})
        assert reader.get("k") == {"v": 1} and reader.cached_locally("k")

        redis_server.stop()
        redis_server.start()

        deadline = time.monotonic() + 10
        while reader.get("k") != {"v": 2} and time.monotonic() < deadline:
            writer.set("k", {"v": 2})  # published again until the reader has resubscribed
            time.sleep(0.05)
        assert reader.get("k") == {"v": 2}, "after the restart, the reader never heard of a write again"
        writer.set("k", {"v": 3})
        deadline = time.monotonic() + 5
        while reader.get("k") != {"v": 3} and time.monotonic() < deadline:
            time.sleep(0.01)
        assert reader.get("k") == {"v": 3}, "invalidation did not resume after the restart"
    finally:
        writer.close()
        reader.close()
        writer_client.close()
        reader_client.close()


def test_a_near_cache_drops_its_local_copies_when_its_listener_reconnects(redis_server):
    """Invalidations published while the listener was away are lost: the local tier must not outlive that."""
    client = project_servers(redis_server.url).redis_client()
    reader = NearCache(client, PREFIX, local_ttl=300)  # only invalidation (or a reconnection) can refresh it
    try:
        reader.set("k", {"v": 1})
        assert reader.get("k") == {"v": 1} and reader.cached_locally("k")
        redis_server.stop()
        redis_server.start()
        deadline = time.monotonic() + 10
        while reader.cached_locally("k") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not reader.cached_locally("k"), "the local copy survived a reconnection of the listener"
    finally:
        reader.close()
        client.close()


# --------------------------------------------------------------------------- memcached node stopped mid-stream

def test_a_memcached_node_stopped_mid_stream_costs_misses_not_errors(three_nodes, service, routes, truth):
    addresses = [n.address for n in three_nodes]
    client = project_servers(nodes=addresses).memcached_client(PREFIX)
    backend = Backend(service)
    cache = CacheAside(MemcachedStore(client), backend, ttl=60, key_of=Route.key)
    stream = standard_stream(routes, 400)
    first, second = stream[:200], stream[200:]
    for route in first:
        assert cache.get(route) == truth[route]
    assert backend.calls == len(set(first))
    victim = three_nodes[1]
    lost = [r for r in set(first) if sharding.node_for(r.key(), addresses) == sharding.node_name(victim.address)]
    assert lost, "the stopped node held none of the keys: pick another node"

    victim.stop()
    assert client.get(lost[0].key()) is None  # a miss, not an exception

    before, t0 = backend.calls, time.monotonic()
    for route in second:
        assert cache.get(route) == truth[route]
    recomputed = backend.calls - before
    assert 0 < recomputed < len(second) / 2, f"{recomputed} recomputations for {len(second)} requests"
    assert time.monotonic() - t0 < 10, "refused connections must not slow the stream down"
    client.close()


# --------------------------------------------------------------------------- a slow server

@pytest.fixture
def short_timeouts(monkeypatch):
    monkeypatch.setattr(srv.config, "SOCKET_TIMEOUT", 0.3)
    monkeypatch.setattr(srv.config, "CONNECT_TIMEOUT", 0.3)


def test_a_frozen_redis_makes_the_timeout_fire_then_the_client_carries_on(redis_server, short_timeouts):
    client = project_servers(redis_server.url).redis_client()
    client.set(PREFIX + "k", "v")
    with paused(redis_server):
        t0 = time.monotonic()
        with pytest.raises(redis.exceptions.TimeoutError):
            client.get(PREFIX + "k")
        waited = time.monotonic() - t0
    assert 0.3 <= waited < 3, f"the timeout fired after {waited:.2f} s (socket timeout 0.3 s, one retry)"
    assert client.get(PREFIX + "k") == "v"  # the server kept its data; the client reconnected
    client.close()


def test_a_frozen_memcached_node_times_out_into_a_miss_and_the_answer_comes_from_the_backend(
        memcached_server, short_timeouts, service, routes, truth):
    client = project_servers(nodes=[memcached_server.address]).memcached_client(PREFIX)
    backend = Backend(service)
    cache = CacheAside(MemcachedStore(client), backend, ttl=60, key_of=Route.key)
    assert cache.get(routes[0]) == truth[routes[0]] and backend.calls == 1
    with paused(memcached_server):
        t0 = time.monotonic()
        assert cache.get(routes[0]) == truth[routes[0]]  # the read timed out: a miss, then the backend
        waited = time.monotonic() - t0
    assert backend.calls == 2
    assert waited < 3, f"a frozen node held a request for {waited:.2f} s (socket timeout 0.3 s)"
