"""Worker processes: per-process caches against one shared memcached, counted on real servers."""

import pytest

from cachelab.data import FlightService, Route, database_path
from cachelab.servers import start_memcached
from cachelab.workers import run_workers, worker_pool

pytestmark = pytest.mark.servers  # every test here runs against real servers


@pytest.fixture(scope="module")
def stream():
    with FlightService() as svc:
        routes = svc.routes()[:6]
    first, second = [0, 1, 2, 3, 4, 5] * 2, [3, 4, 5, 0, 1, 2] * 2  # each worker's share, in another order
    return [routes[i] for pair in zip(first, second, strict=True) for i in pair]  # round-robin interleaved


def test_local_caches_repeat_work_that_a_shared_cache_does_once(stream):
    with start_memcached(memory_mb=8) as node, worker_pool(2) as pool:
        local = run_workers(pool, stream, 2, "local", db_path=database_path())
        shared = run_workers(pool, stream, 2, "memcached", db_path=database_path(), nodes=[node.address],
                             prefix="cachelab:test_workers:run1:")
    assert local.backend_calls == 12  # each of the 2 processes computes each of the 6 routes once
    assert 6 <= shared.backend_calls < 12  # once per route, plus any race between the two processes
    assert len(local.latencies_ns) == len(shared.latencies_ns) == len(stream) == 24
    assert local.busy_seconds > 0


def test_memcached_mode_needs_nodes_and_a_prefix(stream):
    with pytest.raises(ValueError):
        run_workers(None, stream, 2, "memcached", db_path=database_path())
    assert isinstance(stream[0], Route)


@pytest.mark.skipif(not hasattr(__import__("os"), "sched_setaffinity"), reason="CPU affinity is Linux's")
def test_run_together_releases_each_call_in_its_own_process_at_one_instant():
    import os
    import time

    from cachelab.workers import run_together, usable_cpus

    with worker_pool(3) as pool:
        assert len(pool.pids) == 3
        stamps = run_together(pool, time.time, [()] * 3, start_in=0.3)
        pids = run_together(pool, os.getpid, [()] * 3)
        first = usable_cpus()[:1]
        pinned = run_together(pool, os.sched_getaffinity, [(0,)] * 3, cpus=first)
        after = run_together(pool, os.sched_getaffinity, [(0,)] * 3)
    assert max(stamps) - min(stamps) < 0.2, "the processes should start together (within milliseconds when idle)"
    assert len(set(pids)) == 3 and set(pids) == set(pool.pids)
    assert all(p == set(first) for p in pinned), "each call runs on the CPUs it was given"
    assert all(a == set(usable_cpus()) for a in after), "and the process gets its CPUs back after the call"


def test_run_together_refuses_more_calls_than_processes():
    import os

    from cachelab.workers import run_together

    with worker_pool(2) as pool, pytest.raises(RuntimeError, match="processes"):
        run_together(pool, os.getpid, [()] * 3)
