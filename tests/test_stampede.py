"""Stampede protection proven on a real Redis, with real backend queries, under threads and processes."""

import json
import math
import time

import pytest

from cachelab.data import FlightService, Route
from cachelab.stampede import (
    LockedRecompute,
    LockTimeout,
    Unprotected,
    XFetch,
    hammer,
    xfetch_should_recompute,
)

PREFIX = "cachelab:test_stampede:"
HOT = Route("JFK", "LAX", 7)


@pytest.fixture
def redis_client(redis_server):
    from redis import Redis

    client = Redis.from_url(redis_server.url, decode_responses=True, socket_timeout=5, socket_connect_timeout=1)
    yield client
    client.close()


@pytest.fixture(scope="module")
def service():
    with FlightService() as svc:
        yield svc


def compute_for(service):
    return lambda key: service.ask(HOT)


def storm(strategy, workers=32, ttl_left=0.6, duration=0.9):
    """Prime the hot key so that it expires ``ttl_left`` seconds from now, then 32 workers ask for it
    100 times a second each."""
    if isinstance(strategy, XFetch):
        strategy.put("hot", {"v": 1}, delta=0.03, ttl=ttl_left)
    else:
        strategy.put("hot", {"v": 1}, ttl=ttl_left)
    return hammer(strategy.get, "hot", workers=workers, duration=duration, interval=0.01)


def test_unprotected_recomputes_in_every_worker(redis_client, service):
    strategy = Unprotected(redis_client, PREFIX + "u:", compute_for(service), ttl=60)
    run = storm(strategy)
    assert run.errors == 0 and strategy.hits > 0
    assert strategy.computes >= 8, strategy.counters()  # about one per worker


def test_lock_allows_exactly_one_computation_under_32_threads(redis_client, service):
    before = service.calls
    strategy = LockedRecompute(redis_client, PREFIX + "l:", compute_for(service), ttl=60)
    run = storm(strategy)
    assert run.errors == 0
    assert strategy.computes == 1 and service.calls - before == 1, strategy.counters()
    assert strategy.waits >= 1
    assert not redis_client.exists(strategy.lock_key("hot"))  # released


def test_xfetch_recomputes_early_a_bounded_number_of_times(redis_client, service):
    # XFetch needs delta, the time a recomputation takes under the load it will see: take it from a lock
    # storm just before (on a busy machine the query runs far slower than alone).
    lock = LockedRecompute(redis_client, PREFIX + "xl:", compute_for(service), ttl=60)
    storm(lock)
    delta = lock.last_compute_seconds
    beta, workers, rate = 2.0, 32, 32 / 0.01
    strategy = XFetch(redis_client, PREFIX + "x:", compute_for(service), ttl=60, beta=beta)
    # Start before the early window, which opens about beta * delta * ln(rate * beta * delta) before expiry.
    left = max(0.6, beta * delta * (math.log(rate * beta * delta) + 2))
    strategy.put("hot", {"v": 1}, delta=delta, ttl=left)
    run = hammer(strategy.get, "hot", workers=workers, duration=left + 0.3, interval=0.01)
    assert run.errors == 0
    assert 1 <= strategy.computes <= 8, strategy.counters()
    assert strategy.early >= 1 and strategy.misses == 0  # refreshed before expiry: nobody missed
    record = json.loads(redis_client.get(PREFIX + "x:hot"))
    assert record["expiry"] > time.time() + 30 and record["delta"] > 0  # refreshed with the new TTL


def test_xfetch_probability_follows_the_formula():
    # remaining 0.1 s, delta 0.1 s: recompute iff -ln(u) >= 1, i.e. u <= 1/e
    assert xfetch_should_recompute(0.0, 0.1, 0.1, u=0.36)
    assert not xfetch_should_recompute(0.0, 0.1, 0.1, u=0.37)
    assert xfetch_should_recompute(5.0, 5.0, 0.1, u=1.0)  # at expiry, always
    assert xfetch_should_recompute(0.0, 1.0, 0.1, u=0.0)  # u = 0 does not crash


def test_xfetch_with_injected_clock_hits_far_from_expiry(redis_client):
    now = [1000.0]
    calls = []
    strategy = XFetch(redis_client, PREFIX + "c:", lambda k: calls.append(k) or len(calls), ttl=10,
                      clock=lambda: now[0], rng=lambda: 0.5)
    assert strategy.get("k") == 1  # miss
    now[0] += 5  # 5 s left, delta ~0: -0 * ln(0.5) never reaches it
    assert strategy.get("k") == 1 and strategy.hits == 1
    now[0] += 5  # at expiry
    assert strategy.get("k") == 2 and strategy.early == 1


def test_lock_waiter_times_out_when_the_holder_never_finishes(redis_client):
    strategy = LockedRecompute(redis_client, PREFIX + "t:", lambda k: 1, ttl=60, wait_timeout=0.1, poll=0.01)
    redis_client.set(strategy.lock_key("k"), "someone-else", px=5000)
    with pytest.raises(LockTimeout):
        strategy.get("k")
    fallback = LockedRecompute(redis_client, PREFIX + "t:", lambda k: 2, ttl=60, wait_timeout=0.1, poll=0.01,
                               fallback_compute=True)
    assert fallback.get("k") == 2 and fallback.computes == 1
    assert redis_client.get(strategy.lock_key("k")) == "someone-else"  # not ours: never released by us


def storm_once(strategy: str, redis_url: str, prefix: str, key: str, db_path: str, start_at: float) -> dict:
    """In a worker process: ask for ``key`` once through a stampede strategy, at the instant ``start_at``."""
    from cachelab.servers import redis_client_for
    from cachelab.stampede import LockedRecompute, Unprotected, XFetch

    classes = {"unprotected": Unprotected, "lock": LockedRecompute, "xfetch": XFetch}
    client = redis_client_for(redis_url)
    service = FlightService(db_path)
    try:
        cache = classes[strategy](client, prefix, lambda k: service.ask(Route(*k.split("-")[:2], int(k.split("-")[2]))),
                                  ttl=60.0)
        while time.time() < start_at:  # line the processes up on one instant
            time.sleep(min(0.001, max(0.0, start_at - time.time())))
        cache.get(key)
        return {"calls": service.calls}
    finally:
        service.close()
        client.close()


def _process_storm(redis_server, strategy, processes=4):
    from cachelab.data import database_path
    from cachelab.workers import worker_pool

    with worker_pool(processes) as pool:
        start_at = time.time() + 0.5
        futures = [pool.submit(storm_once, strategy, redis_server.url, PREFIX + strategy + ":", HOT.key(),
                               str(database_path()), start_at) for _ in range(processes)]
        return sum(f.result()["calls"] for f in futures)


def test_lock_allows_exactly_one_computation_under_4_processes(redis_server):
    assert _process_storm(redis_server, "lock") == 1


def test_unprotected_processes_stampede(redis_server):
    assert _process_storm(redis_server, "unprotected") >= 2
