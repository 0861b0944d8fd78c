"""A real Redis Cluster started by cachelab: slots, cross-slot commands, a failover, moved slots, cleanup
on a user's cluster, and nothing left running afterwards."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

from cachelab import scale_out
from cachelab.servers import ServersUnavailable, pid_alive, probes
from cachelab.servers import cluster as cl

PREFIX = "cachelab:test_cluster:"


@pytest.fixture(scope="module")
def cluster():
    with cl.start_cluster() as started:
        yield started


@pytest.fixture
def client(cluster):
    c = cluster.client()
    yield c
    c.close()


# --------------------------------------------------------------------------- no server needed

NODES_TEXT = (  # the example of the CLUSTER NODES documentation, with a migrating slot and a failed node
    """\
07c37dfeb235213a872192d90877d0cd55635b91 127.0.0.1:30004@31004 slave e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 0 1426238317239 4 connected
67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1 127.0.0.1:30002@31002 master - 0 1426238316232 2 connected 5461-10922
292f8b365bb7edb5e285caf0b7e6ddc7265d2f4f 127.0.0.1:30003@31003 master - 0 1426238318243 3 connected 10923-16383 [42->-67ed2db8d677e59ec4a4cefb06858cf2a1a89fa1]
e7d1eecce10fd6bb5eb35b9f99a514335d9ba9ca 127.0.0.1:30001@31001 myself,master - 0 0 1 connected 0-5460
6ec23923021cf3ffec47632106199cb7f496ce01 127.0.0.1:30005@31005 master,fail - 1426238316232 1426238315729 5 disconnected
"""  # noqa: E501
)


def test_cluster_nodes_are_parsed():
    nodes = {n["address"][1]: n for n in cl.parse_cluster_nodes(NODES_TEXT)}
    assert nodes[30004]["role"] == "replica" and nodes[30004]["primary_id"].startswith("e7d1")
    assert nodes[30003]["slots"] == [(10923, 16383)], "a migrating slot is not a served range"
    assert nodes[30001]["myself"] and nodes[30001]["slots"] == [(0, 5460)]
    assert not nodes[30005]["connected"], "a failed node is not connected"
    assert nodes[30005]["flags"] == {"master", "fail"} and "myself" in nodes[30001]["flags"]


class FakeNode:
    """A plain client of one primary: CLUSTER NODES answers from ``views`` in turn, GET as ``refuse`` says."""

    def __init__(self, views, refuse):
        self.views, self.refuse = list(views), refuse

    def execute_command(self, *args):
        return self.views.pop(0) if len(self.views) > 1 else self.views[0]

    def get(self, key):
        from redis.exceptions import ResponseError

        if self.refuse:
            raise ResponseError("CLUSTERDOWN The cluster is down")
        return None


def nodes_view(victim="master,fail", other="master"):
    return (f"aaaa 127.0.0.1:7001@17001 myself,master - 0 0 1 connected 0-5460\n"
            f"bbbb 127.0.0.1:7002@17002 {other} - 0 0 2 connected 5461-10922\n"
            f"cccc 127.0.0.1:7003@17003 {victim} - 0 0 3 connected 10923-16383\n")


def test_a_refusal_soon_after_a_healthy_primary_was_flagged_is_not_laid_on_the_coverage_setting(monkeypatch):
    """Redis keeps a primary that counted itself in a minority refusing for a rejoin delay after: a probe within it
    counts the flag seen before, even though the node no longer shows it; one after it does not."""
    clock = [100.0]
    monkeypatch.setattr(scale_out.time, "monotonic", lambda: clock[0])
    assert scale_out.rejoin_delay_s(1000) == 1.0 and scale_out.rejoin_delay_s(100) == 0.5
    assert scale_out.rejoin_delay_s(15000) == 5.0
    flagged: dict[str, float] = {}
    early = FakeNode([nodes_view(victim="master,fail?", other="master,fail?")], refuse=True)
    assert scale_out.probe_during_failover(early, "cccc", "k", flagged_at=flagged, rejoin_s=1.0) is None
    assert set(flagged) == {"bbbb"}, "a poll outside the window still records the flag"
    clock[0] += 0.6
    refused = scale_out.probe_during_failover(FakeNode([nodes_view()], refuse=True), "cccc", "k",
                                              flagged_at=flagged, rejoin_s=1.0)
    assert refused == {"served": False, "reply": "ResponseError: CLUSTERDOWN The cluster is down", "others_failing": 1}
    clock[0] += 1.0
    later = scale_out.probe_during_failover(FakeNode([nodes_view()], refuse=False), "cccc", "k",
                                            flagged_at=flagged, rejoin_s=1.0)
    assert later == {"served": True, "reply": "served", "others_failing": 0}
    gone = FakeNode([nodes_view(), nodes_view(victim="master,fail").replace(" 10923-16383", "")], refuse=False)
    assert scale_out.probe_during_failover(gone, "cccc", "k") is None, "slots taken over during the read: too late"


def test_shards_needed_takes_the_larger_need():
    need = scale_out.shards_needed(100e9, 50_000, bytes_per_shard=10e9, requests_per_shard=100_000, headroom=0.5)
    assert need == {"for_memory": 20, "for_load": 1, "shards": 20}
    need = scale_out.shards_needed(1e9, 2_000_000, bytes_per_shard=10e9, requests_per_shard=100_000)
    assert need["for_load"] == 40 and need["shards"] == 40
    assert scale_out.shards_needed(0, 0, bytes_per_shard=1, requests_per_shard=1)["shards"] == 1
    with pytest.raises(ValueError):
        scale_out.shards_needed(1, 1, bytes_per_shard=1, requests_per_shard=1, headroom=1.5)


def test_a_redis_server_without_cluster_support_fails_at_once_with_the_ways_out(tmp_path, monkeypatch):
    fake = tmp_path / "redis-server"
    fake.write_text("#!/bin/sh\necho 'Redis server v=2.8.24 sha=00000000:0 malloc=libc bits=64'\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.delenv(cl.CLUSTER_URL_VAR, raising=False)
    monkeypatch.setattr(cl, "COMPOSE_CLUSTER_PORTS", (probes.free_port(),) * 6)  # no compose cluster either
    started = time.monotonic()
    with pytest.raises(ServersUnavailable) as info:
        cl.connect_cluster()
    assert time.monotonic() - started < 5
    message = str(info.value)
    assert "2.8.24" in message and "too old" in message and cl.CLUSTER_URL_VAR in message


def test_a_cluster_url_that_does_not_answer_is_a_clear_error(monkeypatch):
    monkeypatch.setenv(cl.CLUSTER_URL_VAR, f"redis://:secret@127.0.0.1:{probes.free_port()}")
    started = time.monotonic()
    with pytest.raises(ServersUnavailable, match="REDIS_CLUSTER_URL"):
        cl.connect_cluster()
    assert time.monotonic() - started < 5


# --------------------------------------------------------------------------- a started cluster

@pytest.mark.servers
def test_a_private_cluster_is_three_primaries_with_a_replica_each(cluster):
    topology = cluster.topology()
    primaries = [n for n in topology if n["role"] == "primary"]
    assert len(topology) == 6 and len(primaries) == 3
    assert sum(hi - lo + 1 for n in primaries for lo, hi in n["slots"]) == cl.SLOTS
    steps = cluster.creation_steps
    epochs = [s.rsplit(" ", 1)[1] for s in steps if "SET-CONFIG-EPOCH" in s]
    assert len(set(epochs)) == 6 and all("SET-CONFIG-EPOCH" in s for s in steps[:6]), \
        "first a distinct epoch for each node, as redis-cli --cluster create gives"
    ids = {n["id"] for n in primaries}
    assert sorted(n["primary_id"] in ids for n in topology if n["role"] == "replica") == [True] * 3
    for node in cluster.nodes:
        info = node.client().info()
        assert info["cluster_enabled"] == 1
        assert node.host == "127.0.0.1"
    with pytest.raises(Exception, match="(?i)auth|NOAUTH"):  # a password on every node
        cl._node_client(cluster.nodes[0].host, cluster.nodes[0].port, None).ping()


@pytest.mark.servers
@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="only root drops to 'nobody'")
def test_nodes_started_by_root_run_as_nobody(cluster):
    import pwd

    nobody = pwd.getpwnam("nobody").pw_uid
    for node in cluster.nodes:
        status = open(f"/proc/{node.pid}/status").read()
        uid = int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])
        assert uid == nobody


@pytest.mark.servers
def test_the_clients_slot_agrees_with_cluster_keyslot(cluster, client):
    keys = [f"{PREFIX}k{i}" for i in range(300)] + ["{user1}:a", "{user1}:b", "a{}b", "{}x", "{{a}}", "x{a}{b}"]
    node = cluster.nodes[0].client()
    for key in keys:
        assert scale_out.key_slot(key) == node.execute_command("CLUSTER", "KEYSLOT", key) == client.keyslot(key)
    assert scale_out.key_slot("{user1}:a") == scale_out.key_slot("{user1}:b")
    name = cluster.primary_nodes()[1].name
    tag = scale_out.tag_for(client, name)
    assert scale_out.shard_of(client, f"{PREFIX}{{{tag}}}:anything") == name


@pytest.mark.servers
def test_mget_across_slots_fails_and_a_hash_tag_fixes_it(cluster, client):
    spread = [f"{PREFIX}page:{i}" for i in range(20)]
    tagged = [f"{PREFIX}{{page}}:{i}" for i in range(20)]
    for key in spread + tagged:
        client.set(key, key)
    from redis.exceptions import ClusterCrossSlotError, RedisClusterException

    with pytest.raises(RedisClusterException, match="same key slot"):
        client.mget(spread)  # refused by the client, before anything is sent
    first = cluster.primary_nodes()[0]
    own = [k for k in (f"{PREFIX}own:{i}" for i in range(200)) if scale_out.shard_of(client, k) == first.name]
    pair = [own[0], next(k for k in own if scale_out.key_slot(k) != scale_out.key_slot(own[0]))]
    with pytest.raises(ClusterCrossSlotError):  # the server's CROSSSLOT reply, even for keys on one node
        first.client().mget(pair)
    assert client.mget(tagged) == tagged
    assert client.mget_nonatomic(spread) == spread
    assert len({scale_out.shard_of(client, k) for k in tagged}) == 1


@pytest.mark.servers
def test_cleanup_deletes_the_prefix_only(cluster, client):
    mine = [f"{PREFIX}c{i}" for i in range(100)]
    others = ["user:precious", "cachelab", "cachelab:test_clusterX:k", "cachelab:other:k"]
    for key in mine + others:
        client.set(key, "v")
    assert cluster.cleanup(PREFIX) >= len(mine)
    assert not any(client.exists(k) for k in mine)
    assert all(client.get(k) == "v" for k in others)
    for key in others:
        client.delete(key)


@pytest.mark.servers
def test_a_users_cluster_is_used_but_never_hurt(cluster, monkeypatch):
    """REDIS_CLUSTER_URL: found, cleaned by prefix only, and refused to every demo that kills or moves."""
    from urllib.parse import quote

    host, port = cluster.startup_nodes[0]
    monkeypatch.setenv(cl.CLUSTER_URL_VAR, f"redis://:{quote(cluster.password, safe='')}@{host}:{port}")
    theirs = cl.connect_cluster()
    assert not theirs.owned and theirs.source == "environment"
    assert not hasattr(theirs, "kill") and not hasattr(theirs, "move_slots")
    client = theirs.client()
    client.set("their:data", "keep")
    client.set(PREFIX + "ours", "go")
    assert theirs.cleanup(PREFIX) == 1
    assert client.get("their:data") == "keep"
    with pytest.raises(PermissionError):
        scale_out.failover_stream(theirs, PREFIX)
    with pytest.raises(PermissionError):
        scale_out.reshard_under_reads(theirs, ["k"], [0], None, None)
    theirs.stop()  # a no-op: the nodes are still there
    assert all(n.alive() for n in cluster.nodes)
    client.delete("their:data")


@pytest.mark.servers
def test_moving_slots_live_redirects_the_reader_without_errors(cluster, client):
    source, target = cluster.primary_nodes()[0], cluster.primary_nodes()[1]
    lo = next(n for n in cluster.topology() if n["address"] == source.address)["slots"][0][0]
    slots = list(range(lo, lo + 40))
    keys = [k for k in (f"{PREFIX}m{i}" for i in range(4000)) if lo <= scale_out.key_slot(k) < lo + 40]
    for key in keys:
        client.set(key, "v")
    one_per_slot = list({scale_out.key_slot(k): k for k in keys}.values())
    stale = cluster.client(reinitialize_steps=0)
    for key in one_per_slot:
        stale.get(key)  # its table: the one before the move
    run = scale_out.reshard_under_reads(cluster, keys, slots, source, target)
    assert run.read_errors == 0 and run.keys_moved == len(keys)
    assert run.redirects["MOVED"] >= 1, "a reader with the old slot table must have been redirected"
    assert all(scale_out.shard_of(cluster.client(), k) == target.name for k in keys)
    first, second, moved = scale_out.reads_after_a_move(cluster, stale, one_per_slot)
    stale.close()
    assert len(first) == len(second) == len(one_per_slot) and moved == len(one_per_slot), "one MOVED per slot"
    cluster.move_slots(slots, target, source)  # put them back for the other tests


@pytest.mark.servers
def test_ask_during_a_migration_is_followed():
    with cl.start_cluster(replicas=0) as small:
        client = small.client()
        slot = scale_out.key_slot("{mig}")
        source = next(n for n in small.nodes if n.name == scale_out.shard_of(client, "{mig}"))
        target = next(n for n in small.primary_nodes() if n is not source)
        moved, stays = f"{PREFIX}{{mig}}:moved", f"{PREFIX}{{mig}}:stays"
        client.set(moved, "m")
        client.set(stays, "s")
        before = scale_out.redirects(small)
        small.begin_migration(slot, source, target, keys=[moved])
        assert client.get(moved) == "m" and client.get(stays) == "s"
        assert scale_out.redirects(small)["ASK"] - before["ASK"] == 1
        small.move_slots([slot], source, target)
        assert client.get(stays) == "s"


@pytest.mark.servers
def test_a_read_of_the_replica_sent_with_a_write_answers_what_the_replica_has(cluster, client):
    key = f"{PREFIX}{{{scale_out.tag_for(client, cluster.primary_nodes()[0].name)}}}:in-flight"
    primary = cluster.primary_nodes()[0]
    stale = scale_out.reads_during_writes(primary, cluster.replica_of(primary), key, rounds=20)
    assert len(stale["replica"]) == len(stale["primary"]) == 20
    assert sum(stale["replica"]) > sum(stale["primary"]), "asynchronous replication: a replica answers what it has"
    assert client.get(key) == "w40", "the last write stands"


@pytest.mark.servers
def test_failover_the_client_recovers_and_wait_tells_which_writes_are_safe():
    """A primary killed after its replica was cut off: the writes of that time are lost, WAIT said so."""
    with cl.start_cluster() as doomed:
        run = scale_out.failover_stream(doomed, PREFIX, cut_replica=True, cut_s=0.1, cut_writes=10, tail_s=0.3)
        assert run.promoted_s >= doomed.node_timeout_ms / 1000, "no failover before the node timeout"
        assert run.first_read_after_kill(scale_out.VICTIM) >= doomed.node_timeout_ms / 1000
        assert len(run.probes) == 2 and not any(p["served"] for p in run.probes.values()), \
            "full coverage (the default): both other primaries refused the probe"
        assert all("ClusterDown" in p["reply"] for p in run.probes.values()), run.probes
        assert run.window_s == pytest.approx(run.promoted_s, abs=1.5)
        assert run.read_errors(scale_out.VICTIM) > 0
        assert run.cut_acked >= 10, "the cut lasts until the primary alone has acknowledged cut_writes writes"
        assert run.plain_lost >= run.cut_acked - 1, "writes made while the replica was cut off die with the primary"
        assert run.waited_confirmed > 0 and run.waited_confirmed_lost == 0
        assert run.restarted_as == "replica"
        client = doomed.client()
        assert client.set(PREFIX + "after", "1") and client.get(PREFIX + "after") == "1"
        assert len(doomed.primaries()) == 3
        doomed.wait_ok()


@pytest.mark.servers
def test_a_hung_primary_is_replaced_and_only_the_shard_requiring_full_coverage_stalls():
    """SIGSTOP: reads to the victim wait for the socket timeout; of the other primaries, the one that requires full
    coverage refuses commands until the replica takes over, the other serves; the victim rejoins as a replica."""
    with cl.start_cluster() as stalled:
        run = scale_out.failover_stream(stalled, PREFIX, fault="hang", full_coverage="mixed", tail_s=0.3,
                                        victim_readers=3)
        assert run.fault == "hang" and run.promoted_s >= stalled.node_timeout_ms / 1000
        waited = run.window_latencies(scale_out.VICTIM)
        assert len(waited) == run.window_latency(scale_out.VICTIM)["reads"] >= 3, "three readers on the victim"
        sent_after = run.window_latencies(scale_out.VICTIM, sent_after_fault=True)
        assert len(sent_after) and np.median(sent_after) >= run.socket_timeout_s, "a read sent to a hung primary waits"
        assert run.first_read_after_kill(scale_out.VICTIM) >= stalled.node_timeout_ms / 1000
        assert run.window_latency(scale_out.VICTIM)["max_s"] >= run.socket_timeout_s
        covered, uncovered = run.probe(scale_out.COVERED), run.probe(scale_out.UNCOVERED)
        assert covered is not None and not covered["served"], "the primary requiring full coverage refuses"
        assert uncovered is not None and (uncovered["served"] or uncovered["others_failing"]), \
            "the one that does not serves (unless this machine was so busy that it lost sight of a second primary)"
        assert sorted(run.coverage.values()) == ["no", "yes"]
        assert run.waited_confirmed_lost == 0 and run.restarted_as == "replica"
        assert all(n.alive() for n in stalled.nodes), "a hung node is resumed, not replaced"
        timeline = run.latency_timeline()
        assert set(timeline) == set(scale_out.GROUP_NAMES.values())
        assert all(len(t["start"]) == len(t["p50"]) == len(t["p99"]) > 0 for t in timeline.values())
        summary = run.summary()
        assert summary["fault"] == "hang" and set(summary["by_shard"]) == set(scale_out.GROUP_NAMES.values())
        client = stalled.client()
        assert client.set(PREFIX + "after", "1") and client.get(PREFIX + "after") == "1"
        with pytest.raises(ValueError, match="fault"):
            scale_out.failover_stream(stalled, PREFIX, fault="reboot")


@pytest.mark.servers
@pytest.mark.skipif(shutil.which("redis-benchmark") is None, reason="redis-benchmark is not on PATH")
def test_the_benchmark_rate_is_counted_by_the_servers_in_windows_taken_in_turn(cluster):
    options = dict(keyspace=100, value_size=10, clients=4, threads=1)
    assert scale_out.redis_benchmark(cluster, test="set", requests=500, **options)["per_s"] > 0
    before = scale_out.served_gets(cluster)
    one = scale_out.benchmark_rate(cluster, seconds=0.2, warmup_s=0.2, **options)
    assert one["requests"] > 0 and one["per_s"] == pytest.approx(one["requests"] / one["window_s"])
    assert one["window_s"] == pytest.approx(0.2, abs=0.15)
    assert scale_out.served_gets(cluster) - before > one["requests"], "the window leaves out the start and the end"
    out = scale_out.benchmark_in_turn({"a": cluster, "b": cluster}, seconds=0.1, rounds=2, min_total_s=0.35,
                                      max_rounds=10, **options)
    for r in out.values():
        assert len(r["runs_per_s"]) == len(r["run_s"]) >= 3, "a round is added until 0.35 s are measured"
        assert r["measured_s"] == pytest.approx(sum(r["run_s"])) and r["measured_s"] >= 0.35
        assert r["per_s"] == pytest.approx(float(np.median(r["runs_per_s"])))
    assert len(out["a"]["runs_per_s"]) == len(out["b"]["runs_per_s"]), "every cluster runs in every round"


@pytest.mark.servers
def test_cpu_per_request_counts_the_client_and_the_server_in_pairs(cluster, client):
    tag = scale_out.tag_for(client, cluster.primary_nodes()[0].name)
    keys = [f"{PREFIX}{{{tag}}}:cpu{i}" for i in range(10)]
    for key in keys:
        client.set(key, "v")
    cpu = scale_out.cpu_per_request(cluster, keys, requests=200, repeat=3)
    assert len(cpu["client_us"]) == len(cpu["server_us"]) == 3
    assert all(x > 0 for x in cpu["client_us"] + cpu["server_us"]), cpu
    with pytest.raises(ValueError, match="one hash tag"):
        scale_out.cpu_per_request(cluster, [f"{PREFIX}spread{i}" for i in range(50)], requests=1, repeat=1)


@pytest.mark.servers
def test_a_cluster_on_loopback_is_near_and_says_what_it_measured(cluster):
    condition = scale_out.near(cluster)
    assert condition.holds and "round trip to the cluster" in condition.found


@pytest.mark.servers
def test_error_replies_are_counted_per_node(cluster, client):
    from redis.exceptions import ResponseError

    node = cluster.primary_nodes()[0]
    before = scale_out.error_replies(cluster, "WRONGTYPE")
    client.set(f"{PREFIX}{{{scale_out.tag_for(client, node.name)}}}:s", "v")
    with pytest.raises(ResponseError):
        client.lpush(f"{PREFIX}{{{scale_out.tag_for(client, node.name)}}}:s", "x")
    after = scale_out.error_replies(cluster, "WRONGTYPE")
    assert after[node.name] - before.get(node.name, 0) == 1
    assert sum(after.values()) - sum(before.values()) == 1


@pytest.mark.servers
def test_a_port_clash_at_start_is_retried(monkeypatch):
    import socket

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    busy = taken.getsockname()[1]
    real = probes.free_port
    calls = iter([busy])
    monkeypatch.setattr(probes, "free_port", lambda: next(calls, None) or real())
    try:
        with cl.start_cluster(primaries=1, replicas=0) as one:
            assert one.nodes[0].port != busy and one.nodes[0].alive()
    finally:
        taken.close()


@pytest.mark.servers
def test_a_cluster_of_one_primary_has_an_address_and_counts_its_commands():
    """A node that has met no other says ':port' for itself in CLUSTER NODES: the address asked stands in."""
    with cl.start_cluster(primaries=1, replicas=0) as one:
        (host, port), = one.primaries()
        assert host == one.nodes[0].host and port == one.nodes[0].port
        client = one.client()
        client.set(PREFIX + "x", "1")
        before = scale_out.served_gets(one)
        client.get(PREFIX + "x")
        assert scale_out.served_gets(one) - before == 1


@pytest.mark.servers
def test_a_cluster_that_cannot_form_leaves_no_node_running():
    half = cl.ManagedCluster(startup_nodes=[], primaries_count=1, replicas_per_primary=1).launch()
    pids = [n.pid for n in half.nodes]
    assert all(n.alive() for n in half.nodes)
    with pytest.raises(ServersUnavailable):
        half.form(timeout=0.001)
    time.sleep(0.2)
    assert not any(_alive(pid) for pid in pids)


@pytest.mark.servers
def test_nodes_stop_when_the_process_that_started_them_fails(tmp_path):
    """A notebook whose cell fails, then whose kernel ends: every node goes with it."""
    pid_file = tmp_path / "pids.json"
    script = textwrap.dedent(f"""
        import json
        from cachelab.servers.cluster import start_cluster
        c = start_cluster()
        json.dump([n.pid for n in c.nodes], open({str(pid_file)!r}, "w"))
        raise RuntimeError("a cell failed")
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert "a cell failed" in done.stderr
    pids = json.loads(pid_file.read_text())
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(_alive(p) for p in pids)


@pytest.mark.servers
def test_nodes_stop_even_when_the_process_is_killed(tmp_path):
    pid_file = tmp_path / "pids.json"
    script = textwrap.dedent(f"""
        import json, os, signal
        from cachelab.servers.cluster import start_cluster
        c = start_cluster(primaries=1, replicas=1)
        json.dump([n.pid for n in c.nodes], open({str(pid_file)!r}, "w"))
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    subprocess.run([sys.executable, "-c", script], capture_output=True, timeout=60)
    pids = json.loads(pid_file.read_text())
    deadline = time.monotonic() + 5
    while any(_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    if sys.platform.startswith("linux"):
        assert not any(_alive(p) for p in pids)


def _alive(pid: int) -> bool:
    if not pid_alive(pid):
        return False
    try:  # a zombie of ours is dead
        return "zombie" not in open(f"/proc/{pid}/status").read().lower()
    except OSError:
        return True
