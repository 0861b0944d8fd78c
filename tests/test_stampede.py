"""Stampede protection proven on a real Redis, with real backend queries, under threads and processes."""

import json
import math
import random
import threading
import time

import pytest

from cachelab.data import FlightService, Route
from cachelab.stampede import (
    RELEASE_SCRIPT,
    LockedRecompute,
    LockTimeout,
    MemcachedLease,
    MetaClient,
    MetaError,
    StaleWhileRevalidate,
    Unprotected,
    XFetch,
    hammer,
    xfetch_early_probability,
    xfetch_should_recompute,
    xfetch_window,
)
from cachelab.threads import call_together

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
    # Each read draws on its own, so a second early recomputation while the first runs is XFetch's behaviour:
    # the bound is notebook 06's claim, that it spares at least half the workers (a stampede is all 32)
    assert 1 <= strategy.computes <= workers // 2, strategy.counters()
    assert strategy.early >= 1 and strategy.misses == 0  # refreshed before expiry: nobody missed
    record = json.loads(redis_client.get(PREFIX + "x:hot"))
    assert record["expiry"] > time.time() + 30 and record["delta"] > 0  # refreshed with the new TTL


def test_xfetch_probability_follows_the_formula():
    # remaining 0.1 s, delta 0.1 s: recompute iff -ln(u) >= 1, i.e. u <= 1/e
    assert xfetch_should_recompute(0.0, 0.1, 0.1, u=0.36)
    assert not xfetch_should_recompute(0.0, 0.1, 0.1, u=0.37)
    assert xfetch_should_recompute(5.0, 5.0, 0.1, u=1.0)  # at expiry, always
    assert xfetch_should_recompute(0.0, 1.0, 0.1, u=0.0)  # u = 0 does not crash


def test_xfetch_draws_u_in_the_open_interval_that_ln_takes():
    """random() can return 0.0, whose log is -inf: XFetch tests u = 1 - rng(), in (0, 1], never ln(0)."""
    class Store:  # the two commands XFetch sends, in memory
        values: dict = {}

        def get(self, key):
            return self.values.get(key)

        def set(self, key, value, px=None):
            self.values[key] = value

    strategy = XFetch(Store(), PREFIX + "u:", lambda k: "new", ttl=60, clock=lambda: 1000.0, rng=lambda: 0.0)
    strategy.client.values[PREFIX + "u:k"] = json.dumps({"value": "old", "delta": 0.5, "expiry": 1010.0})
    assert strategy.get("k") == "old" and strategy.computes == 0  # u = 1: -ln(u) = 0, no early recomputation


def test_xfetch_early_probability_is_the_share_of_draws_that_recompute():
    rng = random.Random(3)
    draws = [rng.random() for _ in range(20_000)]
    for remaining, delta, beta in ((0.0, 0.03, 1.0), (0.03, 0.03, 1.0), (0.06, 0.03, 2.0), (0.2, 0.05, 1.0)):
        share = sum(xfetch_should_recompute(0.0, remaining, delta, beta, u=u) for u in draws) / len(draws)
        assert abs(xfetch_early_probability(remaining, delta, beta) - share) < 0.01, (remaining, delta, beta)
    assert xfetch_early_probability(-1.0, 0.03) == 1.0  # past expiry: certain
    assert xfetch_early_probability(0.3, 0.03, 2.0) == pytest.approx(math.exp(-5))
    with pytest.raises(ValueError):
        xfetch_early_probability(0.1, 0.0)


def test_xfetch_window_is_where_the_first_early_recomputation_comes_63_times_in_100():
    """Reads at a steady rate from long before expiry: the first that draws an early recomputation comes before
    xfetch_window in 1 - exp(-1) of the runs (the expected count of draws reaches 1 there)."""
    delta, beta, rate = 0.05, 3.0, 200.0
    window = xfetch_window(delta, beta, rate)
    assert window == pytest.approx(beta * delta * math.log(rate * beta * delta))
    rng, earlier = random.Random(7), 0
    for _ in range(2000):
        remaining = 10 * window
        while not xfetch_should_recompute(0.0, remaining, delta, beta, u=1.0 - rng.random()):
            remaining -= 1 / rate
        earlier += remaining > window
    assert abs(earlier / 2000 - (1 - math.exp(-1))) < 0.03, earlier
    assert xfetch_window(0.001, 1.0, 10.0) == 0.0, "fewer than one read in a beta * delta: no window"
    with pytest.raises(ValueError):
        xfetch_window(0.05, 3.0, 0.0)


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


def test_the_release_script_deletes_only_the_owners_lock(redis_client):
    release = redis_client.register_script(RELEASE_SCRIPT)
    redis_client.set(PREFIX + "lock", "someone-else", px=5000)
    assert release(keys=[PREFIX + "lock"], args=["my-token"]) == 0  # our lock expired and was taken
    assert redis_client.get(PREFIX + "lock") == "someone-else"
    assert release(keys=[PREFIX + "lock"], args=["someone-else"]) == 1
    assert not redis_client.exists(PREFIX + "lock")


def test_stale_while_revalidate_serves_the_stale_value_and_refreshes_once(redis_client):
    calls = []

    def compute(key):
        time.sleep(0.05)  # a slow backend stand-in, so that the readers overlap the refresh
        calls.append(key)
        return {"v": len(calls)}

    swr = StaleWhileRevalidate(redis_client, PREFIX + "swr:", compute, ttl=30, stale_ttl=30)
    swr.put("k", {"v": 0}, ttl=0.05)
    time.sleep(0.1)  # past the soft TTL, within the hard one
    seen = call_together(swr.get, "k", threads=16)
    assert seen == [{"v": 0}] * 16, "every reader gets the stale value at once"
    swr.close()
    assert calls == ["k"] and swr.counters()["refreshes"] == 1 and swr.stale_hits == 16
    assert swr.get("k") == {"v": 1} and swr.hits == 1
    assert redis_client.pttl(PREFIX + "swr:k") > 50_000  # the refreshed record lives ttl + stale_ttl
    assert not redis_client.exists(swr.refresh_key("k"))


def test_stale_while_revalidate_does_not_refresh_again_after_a_refresh_it_raced(redis_client):
    # A reader reads the stale record; before it asks for the refresh lock, another reader refreshes the
    # value and releases the lock. Without a second look under the lock, the first reader refreshes again.
    calls = []

    def compute(key):
        calls.append(key)
        return {"v": len(calls)}

    swr = StaleWhileRevalidate(redis_client, PREFIX + "swr3:", compute, ttl=30, stale_ttl=30, background=False)
    other = StaleWhileRevalidate(redis_client, PREFIX + "swr3:", compute, ttl=30, stale_ttl=30,
                                 background=False)
    swr.put("k", {"v": 0}, ttl=0.01)
    time.sleep(0.05)  # past the soft TTL
    real_record = swr._record

    def record_then_race(key):
        record = real_record(key)
        if swr._record is record_then_race:  # only the first read: the other reader refreshes in between
            swr._record = real_record
            assert other.get(key) == {"v": 0} and calls == ["k"]  # its refresh ran (inline) and released the lock
        return record

    swr._record = record_then_race
    assert swr.get("k") == {"v": 0}, "the stale value, served at once"
    assert calls == ["k"], "one refresh: the second reader found the value fresh once it held the lock"
    assert swr.counters()["refreshes"] == 0 and other.counters()["refreshes"] == 1
    assert not redis_client.exists(swr.refresh_key("k"))
    assert swr.get("k") == {"v": 1}


def test_stale_while_revalidate_falls_back_to_the_lock_after_the_hard_ttl(redis_client):
    calls = []

    def compute(key):
        time.sleep(0.05)  # a slow backend stand-in, so that the threads overlap
        calls.append(key)
        return "fresh"

    swr = StaleWhileRevalidate(redis_client, PREFIX + "swr2:", compute, ttl=30, stale_ttl=1)
    results = call_together(swr.get, "k", threads=8)  # nothing stored: a hard miss
    assert results == ["fresh"] * 8 and calls == ["k"], "one computation, under the lock"
    assert swr.waits >= 1, swr.counters()  # the others waited for the one that computed


def test_meta_commands_hand_the_win_flag_to_one_client(memcached_server):
    first, second = MetaClient(memcached_server.address), MetaClient(memcached_server.address)
    key = PREFIX + "meta"
    try:
        won = first.get(key, "v N5")
        lost = second.get(key, "v N5")
        assert won.won and not won.value and lost.lost and not lost.won and not lost.value
        assert first.set(key, b'{"v":1}', 30).code == "HD"
        hit = second.get(key, "v t")
        assert hit.value == b'{"v":1}' and not hit.won and 28 <= int(hit.flags["t"]) <= 30
        assert first.delete(key, "I T30").code == "HD"  # marked stale, not deleted
        stale_winner, stale_other = first.get(key, "v N5"), second.get(key, "v N5")
        assert stale_winner.stale and stale_winner.won and stale_winner.value == b'{"v":1}'
        assert stale_other.stale and stale_other.lost and stale_other.value == b'{"v":1}'
        assert first.get(PREFIX + "absent").code == "EN"
        with pytest.raises(MetaError):
            first.command("mg")  # no key: the server's own error, raised
        assert first.get(key).value == b'{"v":1}', "the connection works after an error"
    finally:
        first.close()
        second.close()


def test_a_meta_client_writes_down_the_keys_it_stores_or_creates_under_its_prefix(memcached_server, tmp_path,
                                                                                   monkeypatch):
    from cachelab.servers import written

    monkeypatch.setenv("CACHELAB_CACHE_DIR", str(tmp_path))
    prefix = "cachelab:test_meta_ledger:"
    client = MetaClient(memcached_server.address, written_prefix=prefix)
    try:
        client.set(prefix + "stored", b"1", 30)
        client.get(prefix + "placeholder", "v c N30")  # a miss with N creates the item
        client.get(prefix + "read-only", "v")
        client.set("cachelab:elsewhere:k", b"1", 30)  # outside the prefix: not this ledger's
        assert list(written.written_under(prefix).values()) == [[prefix + "placeholder", prefix + "stored"]]
    finally:
        client.close()


def test_memcached_lease_computes_once_for_many_threads(memcached_server):
    calls = []

    def compute(key):
        time.sleep(0.05)  # a slow backend stand-in, so that the threads overlap
        calls.append(key)
        return {"v": 1}

    local = threading.local()

    def get(key):
        if not hasattr(local, "lease"):  # one connection per thread
            local.lease = MemcachedLease(MetaClient(memcached_server.address), PREFIX + "lease:", compute, ttl=30)
        return local.lease.get(key), local.lease.counters()

    results = call_together(get, "k", threads=8)
    assert [r[0] for r in results] == [{"v": 1}] * 8 and calls == ["k"]
    assert sum(r[1]["waits"] for r in results) >= 1, "the others waited on the lease holder"


def test_memcached_lease_serves_a_stale_item_while_one_recomputes(memcached_server):
    lease = MemcachedLease(MetaClient(memcached_server.address), PREFIX + "stale:", lambda k: {"v": 2}, ttl=30)
    other = MemcachedLease(MetaClient(memcached_server.address), PREFIX + "stale:", lambda k: {"v": 3}, ttl=30)
    lease.put("k", {"v": 1})
    assert lease.mark_stale("k").code == "HD"
    assert lease.get("k") == {"v": 2} and lease.computes == 1  # the winner recomputes (inline)
    assert other.get("k") == {"v": 2} and other.hits == 1  # already replaced
    lease.mark_stale("k")
    winner_first = lease.client.get(PREFIX + "stale:k", "v N5")
    assert winner_first.won
    assert other.get("k") == {"v": 2} and other.stale_hits == 1 and other.computes == 0  # served stale at once


def test_memcached_without_a_lease_lets_every_thread_compute(memcached_server):
    calls = []

    def compute(key):
        time.sleep(0.05)  # a slow backend stand-in, so that the threads overlap
        calls.append(key)
        return 1

    local = threading.local()

    def get(key):
        if not hasattr(local, "plain"):
            local.plain = MemcachedLease(MetaClient(memcached_server.address), PREFIX + "plain:", compute, ttl=30,
                                         lease=False)
        return local.plain.get(key)

    call_together(get, "k", threads=8)
    assert len(calls) >= 4, calls


# --------------------------------------------------------------------------- across processes

def _spec(strategy, redis_server, prefix, **options):
    return {"strategy": strategy, "prefix": PREFIX + prefix, "options": {"ttl": 60.0, **options},
            "redis_url": redis_server.url}


def _four_processes_ask_at_once(strategy, redis_server, prefix):
    from cachelab.data import database_path
    from cachelab.workers import ask_once, run_together, worker_pool

    spec = _spec(strategy, redis_server, prefix)
    route = (HOT.origin, HOT.dest, HOT.month)
    with worker_pool(4) as pool:
        at = time.time() + 0.6  # each process connects first, then all ask at this instant
        return run_together(pool, ask_once, [(spec, HOT.key(), route, str(database_path()), at)] * 4,
                            start_in=0.1)


def test_lock_allows_exactly_one_computation_under_4_processes(redis_server):
    outcomes = _four_processes_ask_at_once("lock", redis_server, "p-lock:")
    assert sum(o["calls"] for o in outcomes) == 1
    outcomes = sorted(o["outcome"] for o in outcomes)
    assert outcomes.count("computed") == 1 and "waited" in outcomes and set(outcomes) <= {"computed", "waited", "hit"}


def test_unprotected_processes_stampede(redis_server):
    outcomes = _four_processes_ask_at_once("unprotected", redis_server, "p-none:")
    assert sum(o["calls"] for o in outcomes) >= 2  # a query takes tens of ms: the processes overlap


def test_a_hot_key_run_counts_one_recomputation_per_expiry_with_the_lock(redis_server, service):
    from cachelab.workers import run_hot_key, worker_pool

    spec = _spec("lock", redis_server, "run:", ttl=0.5)
    LockedRecompute(_client(redis_server), spec["prefix"], lambda k: None, ttl=60).put(
        HOT.key(), service.ask(HOT), ttl=0.6)
    with worker_pool(3) as pool:
        run = run_hot_key(pool, spec, workers=3, key=HOT.key(), route=HOT, db_path=service.db_path,
                          duration=1.6, interval=0.02)
    assert run.computes_per_expiry() and set(run.computes_per_expiry()) == {1}, run.compute_spans
    assert run.backend_calls == len(run.compute_spans) == run.count("computed")
    assert run.count("waited") >= 1 and run.count("hit") > 10
    assert len(run.starts) == len(run.latencies_ns) == len(run.outcomes) == len(run.worker_of)
    assert 0 <= run.starts.min() and run.starts.max() < 1.6


def test_a_primed_hot_key_run_starts_when_every_process_is_ready(redis_server, service):
    """With prime, the key is stored once every process has warmed up: however slow the start, each process asks
    before the expiry, and the expiry falls where prime put it."""
    from cachelab.workers import run_hot_key, worker_pool

    spec = _spec("lock", redis_server, "primed:")
    primer = LockedRecompute(_client(redis_server), spec["prefix"], lambda k: None, ttl=60)
    answer, primed = service.ask(HOT), []

    def prime(start_at):
        primed.append(time.time() - start_at)
        primer.put(HOT.key(), answer, ttl=start_at + 0.4 - time.time())

    with worker_pool(3) as pool:
        run = run_hot_key(pool, spec, workers=3, key=HOT.key(), route=HOT, db_path=service.db_path,
                          duration=1.0, interval=0.02, prime=prime)
    assert len(primed) == 1 and primed[0] < 0, "primed once, before the start it was given"
    assert set(run.worker_of) == {0, 1, 2} and all(run.starts[run.worker_of == w].min() < 0.4 for w in range(3))
    assert len(run.compute_spans) == 1 and 0.35 < run.compute_spans[0][0] < 1.0, run.compute_spans
    assert _client(redis_server).keys(spec["prefix"] + "barrier*") == [], "the barrier's lists are emptied"


def _client(redis_server):
    from redis import Redis

    return Redis.from_url(redis_server.url, decode_responses=True, socket_timeout=5, socket_connect_timeout=1)


def test_a_lease_refuses_the_set_of_a_value_computed_before_a_write(memcached_server):
    """A lease against stale sets: the winner stores with the placeholder's CAS, so a write that deletes or
    invalidates the key while it computes makes memcached refuse the winner's (now stale) value."""
    writer = MetaClient(memcached_server.address)
    versions = iter([{"v": "read before the write"}, {"v": "read after the write"}])

    def compute(key):
        writer.delete(PREFIX + "fence:k")  # the database changes, and the writer deletes the key, meanwhile
        return next(versions)

    lease = MemcachedLease(MetaClient(memcached_server.address), PREFIX + "fence:", compute, ttl=30)
    try:
        assert lease.get("k") == {"v": "read before the write"}  # its caller still gets what it computed
        assert lease.refused_sets == 1 and lease.client.get(PREFIX + "fence:k").code == "EN", "nothing stored"
        assert lease.get("k") == {"v": "read after the write"} and lease.refused_sets == 2  # deleted again
        lease.compute = lambda key: {"v": "no write meanwhile"}
        assert lease.get("k") == {"v": "no write meanwhile"} and lease.refused_sets == 2
        assert lease.client.get(PREFIX + "fence:k").value == b'{"v":"no write meanwhile"}'

        def invalidate_meanwhile(key):  # a writer marks the key stale while the winner recomputes
            writer.delete(PREFIX + "fence:k", "I T30")
            return {"v": "stale by now"}

        lease.mark_stale("k")
        lease.compute = invalidate_meanwhile
        assert lease.get("k") == {"v": "stale by now"} and lease.refused_sets == 3  # EX: the CAS moved on
        assert lease.client.get(PREFIX + "fence:k").value == b'{"v":"no write meanwhile"}'
    finally:
        writer.close()
        lease.client.close()
