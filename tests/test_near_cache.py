"""The two-tier near cache on a real Redis: local hits, pub/sub invalidation across instances, local TTL."""

import threading

import pytest

from cachelab.expiry import ManualClock
from cachelab.near_cache import NearCache

PREFIX = "cachelab:test_near_cache:"



def test_reads_go_local_then_remote_then_compute(redis_client):
    calls = []
    with NearCache(redis_client, PREFIX, compute=lambda k: calls.append(k) or {"k": k}) as cache:
        assert cache.get("a") == {"k": "a"}  # computed, stored in both tiers
        assert cache.get("a") == {"k": "a"}  # local
        assert calls == ["a"]
        assert cache.counters()["local_hits"] == 1 and cache.computes == 1
        assert redis_client.get(PREFIX + "a") == '{"k":"a"}'
    with NearCache(redis_client, PREFIX) as other:
        assert other.get("a") == {"k": "a"} and other.remote_hits == 1  # from Redis, then local
        assert other.cached_locally("a")
        assert other.get("missing") is None and other.misses == 1


def test_a_write_in_one_instance_invalidates_the_other(redis_client):
    dropped = threading.Event()
    with NearCache(redis_client, PREFIX) as writer, \
            NearCache(redis_client, PREFIX, on_invalidate=lambda key: dropped.set()) as reader:
        writer.set("k", 1)
        assert dropped.wait(2)  # the message of this first write (nothing to drop yet)
        dropped.clear()
        assert reader.get("k") == 1 and reader.cached_locally("k")
        writer.set("k", 2)
        assert dropped.wait(2), "the invalidation message did not arrive within 2 s"
        assert not reader.cached_locally("k")
        assert reader.get("k") == 2
        assert reader.invalidations == 2 and writer.invalidations == 0  # one per write; none for its own
        dropped.clear()
        writer.invalidate("k")
        assert dropped.wait(2)
        assert reader.get("k") is None


def test_without_invalidation_staleness_is_bounded_by_the_local_ttl(redis_client):
    clock = ManualClock()
    with NearCache(redis_client, PREFIX, invalidation=False) as writer, \
            NearCache(redis_client, PREFIX, invalidation=False, local_ttl=5, timer=clock) as reader:
        writer.set("k", "old")
        assert reader.get("k") == "old"
        writer.set("k", "new")
        assert reader.get("k") == "old"  # stale: nothing told the reader
        clock.advance(4.9)
        assert reader.get("k") == "old"
        clock.advance(0.2)
        assert reader.get("k") == "new"  # the local TTL ran out


def test_close_is_idempotent_and_stops_the_listener(redis_client):
    cache = NearCache(redis_client, PREFIX)
    cache.close()
    cache.close()
    assert redis_client.pubsub_numsub(cache.channel)[0][1] == 0


def test_bad_arguments_are_refused(redis_client):
    with pytest.raises(ValueError):
        NearCache(redis_client, "other:")
    with pytest.raises(ValueError):
        NearCache(redis_client, PREFIX, local_ttl=0, invalidation=False)


class _OvertakenClient:
    """The real client, whose first GET is overtaken by another process's write and its message."""

    def __init__(self, client, writer, delivered):
        self.client, self.writer, self.delivered, self.raced = client, writer, delivered, False

    def get(self, key):
        value = self.client.get(key)  # the old value
        if not self.raced:
            self.raced = True
            self.writer.set("k", "new")  # meanwhile another process writes...
            assert self.delivered.wait(2)  # ...and its message arrives before this reply is used
        return value

    def __getattr__(self, name):
        return getattr(self.client, name)


def test_a_read_overtaken_by_a_write_never_keeps_the_old_value(redis_client):
    delivered = threading.Event()
    with NearCache(redis_client, PREFIX) as writer:
        writer.set("k", "old")
        racing = _OvertakenClient(redis_client, writer, delivered)
        with NearCache(racing, PREFIX, local_ttl=300, on_invalidate=lambda key: delivered.set()) as reader:
            assert reader.get("k") == "new"  # read again after the message, not the value read before it
            assert reader.cached_locally("k") and reader.get("k") == "new"


def _kill_listener(redis_client, name):
    """Close the pub/sub connection of the near cache whose client is named ``name`` (CLIENT KILL ID)."""
    ids = [c["id"] for c in redis_client.client_list() if c.get("name") == name and "subscribe" in c.get("cmd", "")]
    assert ids, "the near cache's pub/sub connection was not found"
    for client_id in ids:
        redis_client.client_kill_filter(_id=client_id)


@pytest.mark.parametrize("clear_on_reconnect", [True, False])
def test_a_lost_connection_clears_the_local_tier_unless_told_not_to(redis_server, redis_client, clear_on_reconnect):
    import time

    from cachelab.servers import redis_client_for

    name = f"near-reader-{clear_on_reconnect}"
    reader_client = redis_client_for(redis_server.url, client_name=name)
    with NearCache(reader_client, PREFIX, local_ttl=300, clear_on_reconnect=clear_on_reconnect) as reader:
        redis_client.set(PREFIX + "k", '"v1"')
        assert reader.get("k") == "v1" and reader.cached_locally("k")
        _kill_listener(redis_client, name)
        redis_client.set(PREFIX + "k", '"v2"')  # a write whose message the reader cannot receive
        deadline = time.monotonic() + 5
        while reader.cached_locally("k") and time.monotonic() < deadline and clear_on_reconnect:
            time.sleep(0.02)
        time.sleep(0.5)  # long enough for the listener to notice and reconnect
        if clear_on_reconnect:
            assert not reader.cached_locally("k") and reader.get("k") == "v2"
        else:
            assert reader.cached_locally("k") and reader.get("k") == "v1", "kept: stale until the local TTL"
        assert reader.reconnects >= 1, "the listener's connection was made again"
        assert (reader.local_clears >= 1) == clear_on_reconnect, "the local tier is emptied for it, unless told not to"
    reader_client.close()
