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
