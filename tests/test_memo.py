import functools
import os
import threading
import time

import pytest

from cachelab import memo, workload
from cachelab.data import FlightService
from cachelab.threads import call_together
from cachelab.workers import in_fresh_process


@pytest.fixture(scope="module")
def service():
    with FlightService() as svc:
        yield svc


def test_call_counter_counts_recursive_calls():
    @memo.CallCounter
    def fib(n):
        return n if n < 2 else fib(n - 1) + fib(n - 2)

    assert fib(10) == 55
    assert fib.calls == 177  # the naive recursion makes 2 * fib(11) - 1 calls
    assert fib.__name__ == "fib"
    fib.reset()
    assert fib.calls == 0


def test_memo_computes_each_argument_once():
    body = memo.CallCounter(lambda x, y: x + y)
    add = memo.Memo(body)
    assert [add(1, 2), add(1, 2), add(2, 1), add(1, 2)] == [3, 3, 3, 3]
    assert body.calls == 2
    assert (add.hits, add.misses, add.calls, len(add)) == (2, 2, 4, 2)
    assert add.hit_ratio == 0.5
    assert add.cache == {(1, 2): 3, (2, 1): 3}
    nothing = memo.Memo(memo.CallCounter(lambda x: None))
    assert [nothing(1), nothing(1)] == [None, None] and nothing.func.calls == 1, "None is a result like any other"


def test_memo_turns_the_exponential_recursion_linear():
    @memo.Memo
    def fib(n):
        return n if n < 2 else fib(n - 1) + fib(n - 2)

    assert fib(90) == 2880067194370816120
    assert fib.misses == 91  # one computation per n in 0..90
    assert fib.hits == 88  # fib(n - 2) is a hit for every n from 3 to 90


def test_memo_clear_and_unhashable_arguments():
    m = memo.Memo(len)
    assert m.hit_ratio == 0.0
    m("abc")
    m.clear()
    assert (len(m), m.hits, m.misses) == (0, 0, 0)
    with pytest.raises(TypeError, match="unhashable"):
        m([1, 2])


def _naive_ways(t, legs):
    return 1 + sum(_naive_ways(t - leg, legs) for leg in legs if leg <= t)


@pytest.mark.parametrize("legs", [(1, 2), (90, 105, 105, 120), (3,)])
def test_count_schedules_matches_the_recursion(legs):
    for t in range(0, 8 * max(legs), max(1, max(legs) // 7)):
        assert memo.count_schedules(t, legs) == _naive_ways(t, legs)
    assert memo.count_schedules(2, (1, 2)) == 4  # (), (1), (1, 1), (2)


def test_count_schedules_rejects_bad_input():
    with pytest.raises(ValueError):
        memo.count_schedules(-1, (1,))
    with pytest.raises(ValueError):
        memo.count_schedules(10, (0, 1))


@pytest.mark.parametrize("legs", [(1, 2), (90, 105, 105, 120, 150, 150), (3,)])
def test_sub_budgets_are_what_a_memo_of_the_recursion_holds(legs):
    @memo.Memo
    def ways(t):
        return 1 + sum(ways(t - leg) for leg in legs if leg <= t)

    for t in (0, 7, 5 * max(legs), 8 * max(legs) + 1):
        ways.clear()
        ways(t)
        assert memo.sub_budgets(t, legs) == {key for (key,) in ways.cache}
    assert memo.sub_budgets(4, (3,)) == {4, 1}
    with pytest.raises(ValueError):
        memo.sub_budgets(-1, legs)
    with pytest.raises(ValueError):
        memo.sub_budgets(10, (0, 1))


def test_round_trip_minutes_reads_the_data(service):
    legs = memo.round_trip_minutes(service, "LGA", count=4)
    assert len(legs) == 4
    minutes = list(legs.values())
    assert minutes == sorted(minutes)
    assert all(m % 15 == 0 and m > 0 for m in minutes)
    assert "BOS" in legs  # the LaGuardia-Boston shuttle is the shortest busy route
    with pytest.raises(ValueError):
        memo.round_trip_minutes(service, "XXX")


def test_replay_lru_follows_least_recently_used_order():
    # a, b, a: hit on a; c evicts b (least recently used); b misses again.
    out = memo.replay_lru(list("abacb"), 2)
    assert (out.hits, out.misses, out.currsize) == (1, 4, 2)
    assert out.hit_ratio == pytest.approx(0.2)
    assert memo.replay_lru([], 4).hit_ratio == 0.0


def test_unbounded_replay_reaches_the_repeat_fraction():
    stream = workload.zipf_stream(range(500), 3000, seed=1)
    out = memo.replay_lru(stream, None)
    assert out.hit_ratio == pytest.approx(workload.repeat_fraction(stream))
    assert out.currsize == len(set(stream))
    ratios = [memo.replay_lru(stream, size).hit_ratio for size in (1, 8, 64, 512)]
    assert ratios == sorted(ratios)


def test_replay_memo_counts_the_backend_calls_a_memo_would_make():
    stream = workload.zipf_stream(range(500), 3000, seed=1)
    replayed = memo.replay_memo(stream)
    assert replayed.misses == len(set(stream)) == len(replayed)
    assert replayed.hits == len(stream) - len(set(stream))
    assert replayed.misses == memo.replay_lru(stream, None).misses
    assert memo.replay_memo([]).calls == 0


def test_replay_lru_traces_memory_that_grows_with_maxsize():
    stream = list(range(2000))
    small = memo.replay_lru(stream, 10, make_value=lambda k: [k] * 20, trace_memory=True)
    large = memo.replay_lru(stream, 1000, make_value=lambda k: [k] * 20, trace_memory=True)
    assert small.traced_bytes > 0
    assert large.traced_bytes > 20 * small.traced_bytes
    assert memo.replay_lru(stream, 10).traced_bytes is None


def test_threads_that_miss_together_all_compute():
    threads = 4
    inside = threading.Barrier(threads)  # passes only if every thread is computing at the same time
    body = memo.CallCounter(lambda key: inside.wait(10) is not None and key)
    cached = functools.lru_cache(maxsize=None)(body)
    assert call_together(cached, "k", threads=threads) == ["k"] * threads
    assert body.calls == threads


def test_single_flight_computes_once_per_key():
    def slow(key):
        time.sleep(0.05)  # long enough for every thread to arrive while the first computes
        return key.upper()

    body = memo.CallCounter(slow)
    once = memo.SingleFlight(functools.lru_cache(maxsize=None)(body))
    assert call_together(once, "k", threads=6) == ["K"] * 6
    assert body.calls == 1
    assert once("j") == "J" and body.calls == 2


def test_single_flight_shares_the_result_in_flight_and_keeps_nothing_afterwards():
    release = threading.Event()
    body = memo.CallCounter(lambda key: release.wait(10) and object())  # a new object per computation
    once = memo.SingleFlight(body)  # no cache behind it: only the flight is shared
    results = []
    leader = threading.Thread(target=lambda: results.append(once("k")))
    leader.start()
    deadline = time.monotonic() + 10
    while once.in_flight == 0 and time.monotonic() < deadline:
        time.sleep(0.001)
    followers = [threading.Thread(target=lambda: results.append(once("k"))) for _ in range(3)]
    for t in followers:
        t.start()
    while once.shared < 3 and time.monotonic() < deadline:
        time.sleep(0.001)
    release.set()
    for t in [leader, *followers]:
        t.join(10)
    assert body.calls == 1 and len(results) == 4 and all(r is results[0] for r in results)
    assert once.in_flight == 0, "the key is dropped when its computation ends"
    assert once("k") is not results[0] and body.calls == 2, "a later call computes afresh"


def test_single_flight_hands_the_leaders_exception_to_the_waiters():
    def fail(key):
        time.sleep(0.05)
        raise LookupError(key)

    once = memo.SingleFlight(fail)
    with pytest.raises(LookupError):
        call_together(once, "k", threads=4)
    assert once.in_flight == 0


def test_call_together_reports_errors():
    with pytest.raises(ZeroDivisionError):
        call_together(lambda: 1 / 0, threads=2)
    with pytest.raises(ValueError):
        call_together(print, threads=0)


def test_each_process_has_its_own_cache(service, tmp_path):
    routes = [(r.origin, r.dest, r.month) for r in service.routes()[:2]]
    memo.cached_route_delay.cache_clear()
    here = memo.answer_in_process(routes)
    assert (here["backend_calls"], here["misses"], here["hits"]) == (2, 2, 0)
    assert memo.answer_in_process(routes)["backend_calls"] == 0
    fresh = in_fresh_process(memo.answer_in_process, routes)
    assert fresh["pid"] != os.getpid()
    assert (fresh["backend_calls"], fresh["misses"]) == (2, 2)  # it could not see this process's cache


def test_a_store_outside_the_processes_is_shared_and_holds_json(service, tmp_path):
    import json
    import sqlite3

    routes = [(r.origin, r.dest, r.month) for r in service.routes()[:2]]
    store = str(tmp_path / "answers.sqlite")
    first = memo.answer_in_process(routes, store)
    second = in_fresh_process(memo.answer_in_process, routes, store)
    assert first["backend_calls"] == 2
    assert (second["backend_calls"], second["hits"]) == (0, 2)
    with sqlite3.connect(store) as conn:
        stored = dict(conn.execute("SELECT key, answer FROM answers").fetchall())
    conn.close()
    origin, dest, month = routes[0]
    assert json.loads(stored[f"{origin}-{dest}-{month:02d}"]) == service.route_delay(origin, dest, month)


def test_traced_bytes_counts_what_stays_allocated():
    kept, held = memo.traced_bytes(lambda: bytearray(200_000))
    assert len(kept) == 200_000 and held >= 200_000
    _, freed = memo.traced_bytes(lambda: len(bytearray(200_000)))  # allocated, then freed again
    assert freed < 10_000
