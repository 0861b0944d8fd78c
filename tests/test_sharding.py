"""Key placement: rendezvous hashing as pymemcache's HashClient does it, against modulo, on real nodes."""

import pytest

from cachelab import sharding
from cachelab.servers import JsonSerde, start_memcached
from cachelab.servers.faults import paused

KEYS = [f"route-{i}" for i in range(3000)]
NODES = [("127.0.0.1", 21211), ("127.0.0.1", 21212), ("127.0.0.1", 21213)]


def test_node_names_match_hashclient():
    assert sharding.node_name(("127.0.0.1", 21211)) == "127.0.0.1:21211"
    assert sharding.node_name("10.0.0.1:1") == "10.0.0.1:1"


def test_distribution_counts_every_key_once_and_is_balanced():
    for method in sharding.METHODS:
        dist = sharding.distribution(KEYS, NODES, method)
        assert list(dist) == [sharding.node_name(n) for n in NODES]
        assert sum(dist.values()) == len(KEYS)
        assert min(dist.values()) > len(KEYS) / 3 * 0.85, (method, dist)


def test_removing_a_node_moves_only_its_keys_with_rendezvous():
    before = sharding.assign(KEYS, NODES)
    after = sharding.assign(KEYS, NODES[:2])
    moved = [k for k in KEYS if before[k] != after[k]]
    assert all(before[k] == "127.0.0.1:21213" for k in moved)
    assert sharding.moved_fraction(KEYS, NODES, NODES[:2]) == pytest.approx(1 / 3, abs=0.05)


def test_modulo_moves_most_keys_and_rendezvous_about_one_in_n():
    four = NODES + [("127.0.0.1", 21214)]
    assert sharding.moved_fraction(KEYS, NODES, four) == pytest.approx(1 / 4, abs=0.05)
    assert sharding.moved_fraction(KEYS, NODES, four, "modulo") > 0.6


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        sharding.assign(KEYS, [], "rendezvous")
    with pytest.raises(ValueError):
        sharding.assign(KEYS, NODES, "consistent")
    with pytest.raises(ValueError):
        sharding.assign(KEYS, [NODES[0], NODES[0]])
    with pytest.raises(ValueError):
        sharding.moved_fraction([], NODES, NODES)


@pytest.mark.servers
def test_node_for_predicts_where_hashclient_stores_keys():
    from pymemcache.client.base import Client
    from pymemcache.client.hash import HashClient

    nodes = [start_memcached(memory_mb=8) for _ in range(3)]
    try:
        addresses = [n.address for n in nodes]
        client = HashClient(addresses, serde=JsonSerde(), key_prefix=b"cachelab:test_sharding:",
                            connect_timeout=1, timeout=1)
        keys = [f"k{i}" for i in range(60)]
        for k in keys:
            client.set(k, k, noreply=False)
        singles = {sharding.node_name(a): Client(a, serde=JsonSerde(), key_prefix=b"cachelab:test_sharding:",
                                                 connect_timeout=1, timeout=1) for a in addresses}
        for k in keys:
            assert singles[sharding.node_for(k, addresses)].get(k) == k
    finally:
        for n in nodes:
            n.stop()


@pytest.mark.servers
def test_paused_node_keeps_its_data_and_times_out_meanwhile():
    from pymemcache.client.base import Client

    with start_memcached(memory_mb=8) as node:
        client = Client(node.address, connect_timeout=0.5, timeout=0.2, key_prefix=b"cachelab:test_sharding:")
        client.set("k", b"v", noreply=False)
        with paused(node):
            with pytest.raises(OSError):  # socket.timeout is an OSError
                client.get("k")
        client.close()
        assert Client(node.address, connect_timeout=1, timeout=1, key_prefix=b"cachelab:test_sharding:"
                      ).get("k") == b"v"


def test_faults_refuse_servers_this_process_did_not_start():
    from cachelab.servers import ManagedServer
    from cachelab.servers.faults import pause

    with pytest.raises(ValueError):
        pause(ManagedServer("memcached", 21211, pid=1))


def test_expected_moved_fractions_match_the_keys_that_move():
    names = [f"node{i}" for i in range(7)]
    for a, b in ((3, 4), (5, 6), (3, 2), (4, 6)):
        for method in sharding.METHODS:
            measured = sharding.moved_fraction(KEYS, names[:a], names[:b], method)
            assert abs(measured - sharding.expected_moved_fraction(a, b, method)) < 0.03, (a, b, method)
    assert sharding.expected_moved_fraction(5, 6) == pytest.approx(1 / 6)
    assert sharding.expected_moved_fraction(5, 6, "modulo") == pytest.approx(5 / 6)
    with pytest.raises(ValueError):
        sharding.expected_moved_fraction(0, 3)
