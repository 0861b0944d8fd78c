"""Server-assisted client-side caching (cachelab.tracking) against real servers: invalidations from another
process, BCAST, the read/invalidate race, and a lost invalidation connection."""

from __future__ import annotations

import json
import threading
import time

import pytest

from cachelab import tracking
from cachelab.servers import cluster as cl
from cachelab.servers import start_redis

PREFIX = "cachelab:test_tracking:"


@pytest.fixture(scope="module")
def cluster():
    with cl.start_cluster() as started:
        yield started


@pytest.fixture(scope="module")
def server():
    with start_redis() as started:
        yield started


def wait_until(condition, timeout=2.0):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True


def test_a_bad_prefix_is_refused_before_connecting():
    with pytest.raises(ValueError):
        tracking.TrackedCache("redis://127.0.0.1:1/0", "user:")


@pytest.mark.servers
def test_a_write_by_anyone_drops_the_local_copy_on_every_node(cluster):
    writer = cluster.client()
    keys = [f"k{i}" for i in range(30)]
    for key in keys:
        writer.set(PREFIX + key, json.dumps(key))
    with tracking.TrackedCache(cluster, PREFIX) as cache:
        assert [cache.get(k) for k in keys] == keys
        assert all(cache.cached_locally(k) for k in keys)
        assert [cache.get(k) for k in keys] == keys and cache.local_hits == len(keys)
        nodes = {writer.get_node_from_key(PREFIX + k).name for k in keys}
        assert len(nodes) == 3, "the keys should span every primary"
        for key in keys:
            writer.set(PREFIX + key, json.dumps("new"))  # a plain client: nobody publishes anything
        assert wait_until(lambda: not any(cache.cached_locally(k) for k in keys))
        assert [cache.get(k) for k in keys] == ["new"] * len(keys)
        assert cache.dropped == len(keys)


@pytest.mark.servers
def test_invalidations_arrive_from_another_process(cluster):
    writer = cluster.client()
    writer.set(PREFIX + "remote", json.dumps(0))
    with tracking.TrackedCache(cluster, PREFIX) as cache, tracking.RemoteWriter(cluster) as other:
        latencies = tracking.invalidation_latencies(cache, other, ["remote"], rounds=20)
        assert len(latencies) == 20 and (latencies > 0).all()
        assert (latencies < 1e9).all(), "an invalidation took a second or more"
        assert cache.get("remote") == {"round": 19}


@pytest.mark.servers
def test_a_single_server_by_url_works_the_same(server):
    import redis

    plain = redis.Redis.from_url(server.url, decode_responses=True)
    plain.set(PREFIX + "one", json.dumps(1))
    with tracking.TrackedCache(server.url, PREFIX) as cache:
        assert cache.get("one") == 1 and cache.get("one") == 1
        assert tracking.tracking_info(server.url)["tracking_total_keys"] >= 1
        plain.set(PREFIX + "one", json.dumps(2))
        assert wait_until(lambda: not cache.cached_locally("one"))
        assert cache.get("one") == 2
        assert cache.get("missing") is None and not cache.cached_locally("missing")


@pytest.mark.servers
def test_bcast_is_told_of_every_key_under_its_prefix_and_keeps_no_table(server):
    import redis

    plain = redis.Redis.from_url(server.url, decode_responses=True)
    with tracking.TrackedCache(server.url, PREFIX, bcast=True) as bcast, \
            tracking.TrackedCache(server.url, PREFIX) as default:
        before = tracking.tracking_info(server.url)
        plain.set(PREFIX + "read", json.dumps(1))
        bcast.get("read")
        default.get("read")
        after_reads = tracking.tracking_info(server.url)
        assert after_reads["tracking_total_prefixes"] == before["tracking_total_prefixes"] == 1
        assert after_reads["tracking_total_keys"] == before["tracking_total_keys"] + 1, "only default mode tracks"
        plain.set(PREFIX + "never-read", json.dumps(1))
        plain.set("cachelab:someone_else:x", json.dumps(1))
        assert wait_until(lambda: bcast.invalidations >= 1)
        time.sleep(0.05)
        assert bcast.invalidations == 2, "both writes under the prefix, the key never read included"
        assert default.invalidations == 0, "default mode: only keys read, and 'read' was read after its write"


@pytest.mark.servers
def test_an_invalidation_during_a_read_keeps_the_read_out_of_the_local_tier(server):
    """The reply and the invalidation travel on two connections: a value read before a write must not stay."""
    import redis

    plain = redis.Redis.from_url(server.url, decode_responses=True)
    plain.set(PREFIX + "race", json.dumps("old"))
    with tracking.TrackedCache(server.url, PREFIX) as cache:
        real = cache.client
        seen = threading.Event()
        cache.on_invalidate = lambda key, t: seen.set()

        class WriteDuringRead:
            def get(self, key):
                value = real.get(key)  # the server has now tracked the key for this connection
                plain.set(key, json.dumps("new"))  # another client writes before the reply is handled
                assert seen.wait(2), "the invalidation should arrive"
                return value

        cache.client = WriteDuringRead()
        assert cache.get("race") == "old"  # served, since it was read first
        assert not cache.cached_locally("race") and cache.not_kept == 1
        cache.client = real
        assert cache.get("race") == "new"


@pytest.mark.servers
def test_a_lost_invalidation_connection_empties_the_local_tier_and_tracking_resumes(cluster):
    writer = cluster.client()
    writer.set(PREFIX + "lost", json.dumps("v1"))
    with tracking.TrackedCache(cluster, PREFIX) as cache:
        cache.get("lost")
        node = writer.get_node_from_key(PREFIX + "lost")
        old_id = cache.subscriber_ids()[node.name]
        cluster.node_client(node.host, node.port).execute_command("CLIENT", "KILL", "ID", old_id)
        assert wait_until(lambda: cache.subscribers_lost == 1 and cache.healthy)
        assert not cache.cached_locally("lost") and cache.flushes >= 1
        writer.set(PREFIX + "lost", json.dumps("v2"))  # sent while nobody was subscribed on that node
        assert cache.get("lost") == "v2"
        cache.get("lost")  # the first read re-opened the connection (which empties the tier): read again
        assert cache.subscriber_ids()[node.name] != old_id, "a new subscriber, and tracking pointed at it"
        assert cache.cached_locally("lost")
        writer.set(PREFIX + "lost", json.dumps("v3"))
        assert wait_until(lambda: not cache.cached_locally("lost")), "invalidations arrive again"
        assert cache.get("lost") == "v3"


@pytest.mark.servers
def test_a_reopened_data_connection_empties_the_local_tier(server):
    import redis

    admin = redis.Redis.from_url(server.url, decode_responses=True)
    admin.set(PREFIX + "conn", json.dumps(1))
    with tracking.TrackedCache(server.url, PREFIX, check_interval=0.1) as cache:
        cache.get("conn")
        assert cache.cached_locally("conn")
        flushes = cache.flushes
        admin.client_kill_filter(_type="normal", skipme=True)  # the data connection, not the subscriber
        admin.set(PREFIX + "conn", json.dumps(2))  # nobody tracks it for us any more: no invalidation
        assert wait_until(lambda: cache.flushes > flushes), "the check should notice the closed connection"
        assert not cache.cached_locally("conn") and cache.get("conn") == 2


@pytest.mark.servers
def test_a_resp3_redirect_target_gets_nothing_redis_py_can_read(server):
    """Why the subscriber speaks RESP2: on RESP3 the server pushes 'invalidate', which redis-py drops."""
    import redis
    from redis.connection import Connection

    sub = Connection(host=server.host, port=server.port, password=server.password, protocol=3,
                     socket_timeout=2, decode_responses=True)
    sub.connect()
    sub.send_command("CLIENT", "ID")
    sub_id = sub.read_response()
    sub.send_command("SUBSCRIBE", tracking.INVALIDATE_CHANNEL)
    sub.read_response(push_request=True)
    data = redis.Redis.from_url(server.url, protocol=2, single_connection_client=True, decode_responses=True)
    data.execute_command("CLIENT", "TRACKING", "ON", "REDIRECT", sub_id)
    data.get(PREFIX + "resp3")
    redis.Redis.from_url(server.url).set(PREFIX + "resp3", "x")
    assert sub.can_read(timeout=1), "the server did send something"
    assert sub.read_response(push_request=True) is None, "redis-py's parser swallowed the invalidate push"
    sub.disconnect()
    data.close()
