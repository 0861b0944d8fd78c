"""The server rules, proven against real redis-server and memcached processes."""

import os
import socket
import subprocess
import sys
import threading
import time

import pytest
from pymemcache.client.base import Client

from cachelab import servers as srv

pytestmark = pytest.mark.servers  # every test here runs against real servers


def _clean_env(monkeypatch, tmp_path):
    monkeypatch.delenv("REDIS_URL", raising=False)
    monkeypatch.delenv("MEMCACHED_SERVERS", raising=False)
    monkeypatch.setenv("CACHELAB_CACHE_DIR", str(tmp_path / "state"))  # no `make servers` state here


def test_started_servers_are_real_bound_to_loopback_and_secured(redis_server, memcached_server):
    assert redis_server.alive() and memcached_server.alive()
    cmd = redis_server.command()
    assert cmd[cmd.index("--bind") + 1] == "127.0.0.1"
    assert cmd[cmd.index("--maxmemory") + 1] == "64mb"
    assert "--requirepass" in cmd
    client = srv.redis_client_for(redis_server.url)
    assert client.config_get("maxmemory-policy") == {"maxmemory-policy": "allkeys-lru"}
    assert client.info("server")["redis_version"]
    mc = memcached_server.command()
    assert mc[mc.index("-U") + 1] == "0" and mc[mc.index("-l") + 1] == "127.0.0.1"
    assert srv.memcached_version(*memcached_server.address)


def test_redis_without_the_password_is_refused(redis_server):
    import redis

    anon = redis.Redis(host="127.0.0.1", port=redis_server.port, socket_timeout=1, socket_connect_timeout=1)
    with pytest.raises(redis.AuthenticationError):
        anon.ping()


def test_connect_starts_private_servers_and_reuses_them(monkeypatch, tmp_path):
    _clean_env(monkeypatch, tmp_path)
    monkeypatch.setattr(srv.config, "COMPOSE_REDIS_PORT", srv.free_port())  # nothing of compose's answers
    first = srv.connect(fresh=True)
    try:
        assert first.redis.source == "private" and first.redis.owned
        assert len(first.memcached.nodes) == 3
        assert srv.connect() is first  # reused, not started again
        assert first.redis_client().ping()
    finally:
        first.stop()
        srv.forget()


def test_env_override_is_used_exactly(monkeypatch, tmp_path, redis_server, memcached_server):
    _clean_env(monkeypatch, tmp_path)
    monkeypatch.setenv("REDIS_URL", redis_server.url)
    monkeypatch.setenv("MEMCACHED_SERVERS", f"127.0.0.1:{memcached_server.port}")
    found = srv.connect(fresh=True, start=False)
    try:
        assert found.redis.source == "environment" and not found.redis.owned
        assert found.memcached.nodes == [("127.0.0.1", memcached_server.port)]
        assert found.managed == []
    finally:
        srv.forget()


def test_env_pointing_at_nothing_fails_fast_with_the_fix(monkeypatch, tmp_path):
    _clean_env(monkeypatch, tmp_path)
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{srv.free_port()}/0")
    t0 = time.monotonic()
    with pytest.raises(srv.ServersUnavailable, match="unset REDIS_URL"):
        srv.connect(fresh=True)
    assert time.monotonic() - t0 < 10
    srv.forget()


def test_no_servers_anywhere_gives_the_three_ways_within_seconds(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "MEMCACHED_SERVERS"}}
    env.update(PATH=str(tmp_path), CACHELAB_CACHE_DIR=str(tmp_path / "state"))
    code = ("from cachelab import servers as s; s.config.COMPOSE_REDIS_PORT = s.free_port(); "
            "s.COMPOSE_MEMCACHED_PORTS = (s.free_port(),); s.connect()")
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=30)
    assert time.monotonic() - t0 < 10
    assert proc.returncode != 0
    for fix in ("docker compose up -d", "apt install redis-server memcached", "REDIS_URL="):
        assert fix in proc.stderr


def test_in_a_notebook_no_servers_is_one_message_that_names_the_no_server_track():
    """What IPython shows for the set-up cell of 05-10 on a machine without servers: no traceback."""
    shown = "\n".join(srv.ServersUnavailable("Tried: REDIS_URL unset, make servers, compose, PATH.")
                      ._render_traceback_())
    assert shown.startswith("\u274c cachelab: no Redis or memcached") and "Traceback" not in shown
    assert "Tried: REDIS_URL unset" in shown and "no-server track" in shown and "servers=False" in shown


def test_a_server_that_never_answers_times_out(monkeypatch):
    """A port that accepts connections but never replies: the client gives up at its socket timeout."""
    import redis

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    port = listener.getsockname()[1]
    monkeypatch.setattr(srv.config, "SOCKET_TIMEOUT", 0.5)
    try:
        client = srv.redis_client_for(f"redis://127.0.0.1:{port}/0", retries=0)
        t0 = time.monotonic()
        with pytest.raises(redis.exceptions.TimeoutError):
            client.ping()
        assert time.monotonic() - t0 < 3
        mc = Client(("127.0.0.1", port), connect_timeout=0.5, timeout=0.5)
        t0 = time.monotonic()
        with pytest.raises(socket.timeout):
            mc.get("k")
        assert time.monotonic() - t0 < 3
    finally:
        listener.close()


def test_cleanup_deletes_only_the_prefix(redis_server, memcached_server):
    servers = srv.Servers(srv.RedisEndpoint("environment", False, url=redis_server.url),
                          srv.MemcachedEndpoint("environment", False, nodes=[memcached_server.address]))
    r = servers.redis_client()
    r.set("user:precious", "keep me")
    r.set("cachelab:other_notebook:x", "keep me too")
    r.set("cachelab:99_test*:x", "glob characters in a foreign key")
    for i in range(1200):  # more than one SCAN batch and one UNLINK batch
        r.set(f"cachelab:99_test:{i}", i)
    raw = Client(memcached_server.address, connect_timeout=1, timeout=1)
    raw.set("user:precious", b"keep me", noreply=False)
    mc = servers.memcached_client("cachelab:99_test:")
    for i in range(50):
        mc.set(f"k{i}", {"i": i}, noreply=False)

    counts = servers.cleanup("cachelab:99_test:")

    assert counts == {"redis": 1200, "memcached": 50}
    assert sorted(r.keys("*")) == ["cachelab:99_test*:x", "cachelab:other_notebook:x", "user:precious"]
    assert raw.get("user:precious") == b"keep me"
    assert srv.memcached_keys(memcached_server.address) == ["user:precious"]


@pytest.mark.parametrize("bad", ["", "cachelab:", "user:", "*", None])
def test_cleanup_refuses_anything_but_a_project_prefix(bad):
    servers = srv.Servers(srv.RedisEndpoint("x", False, url="redis://127.0.0.1:1/0"),
                          srv.MemcachedEndpoint("x", False, nodes=[]))
    with pytest.raises(ValueError):
        servers.cleanup(bad)


def test_flush_exists_only_for_servers_we_started(memcached_server):
    assert not hasattr(srv.Servers, "flush")
    client = Client(memcached_server.address, connect_timeout=1, timeout=1)
    client.set("a", b"1", noreply=False)
    memcached_server.flush()
    assert client.get("a") is None


def test_flush_refuses_a_server_rebuilt_from_a_pid(memcached_server):
    """``make stop`` rebuilds a ManagedServer from a port and a pid; such a one can stop, never flush."""
    client = Client(memcached_server.address, connect_timeout=1, timeout=1)
    client.set("a", b"1", noreply=False)
    rebuilt = srv.ManagedServer("memcached", memcached_server.port, pid=memcached_server.pid)
    assert rebuilt.alive()
    with pytest.raises(PermissionError, match="not started by this process"):
        rebuilt.flush()
    assert client.get("a") == b"1"


def test_servers_up_and_down_manage_only_their_own(monkeypatch, tmp_path):
    _clean_env(monkeypatch, tmp_path)
    monkeypatch.setattr(srv.config, "COMPOSE_REDIS_PORT", srv.free_port())
    message = srv.servers_up()
    try:
        assert "Started redis-server" in message
        assert oct(srv.state_file().stat().st_mode & 0o777) == "0o600"
        assert "already running" in srv.servers_up()
        found = srv.connect(fresh=True, start=False)
        assert found.redis.source == "make servers" and found.redis.owned
        assert found.redis_client().ping()
    finally:
        srv.forget()
        assert "Stopped 4" in srv.servers_down()
    assert not srv.state_file().exists()


def test_private_servers_stop_when_their_process_dies(tmp_path):
    """Started from a process that is killed (-9), the servers do not outlive it (Linux)."""
    if not sys.platform.startswith("linux"):
        pytest.skip("PR_SET_PDEATHSIG is Linux-only")
    code = ("from cachelab import servers as s; import sys, time; m = s.start_memcached(); "
            "print(m.pid, flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    pid = int(proc.stdout.readline())
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 5
    while srv.pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not srv.pid_alive(pid) or open(f"/proc/{pid}/stat").read().split()[2] == "Z"


@pytest.mark.parametrize("spec", ["localhost", "host:port", "h:99999", ",", ""])
def test_malformed_memcached_servers_are_rejected(spec):
    with pytest.raises(ValueError):
        srv.parse_memcached_servers(spec)


@pytest.mark.parametrize("url", ["http://x", "redis://", "redis://h:notaport/0", "localhost:6379"])
def test_malformed_redis_urls_are_rejected(url):
    with pytest.raises(ValueError):
        srv.parse_redis_url(url)


def test_json_serde_refuses_foreign_flags():
    serde = srv.JsonSerde()
    assert serde.deserialize("k", *serde.serialize("k", {"a": [1]})) == {"a": [1]}
    with pytest.raises(ValueError):
        serde.deserialize("k", b"\x80\x04pickle", 1 << 3)


def test_json_serde_flags_mean_nothing_else_to_pymemcache_and_older_values_read_or_are_refused():
    """JSON under a bit pymemcache's serde leaves unused, bytes under 0: a co-tenant never unpickles nor int()s them."""
    import pickle

    from pymemcache.serde import FLAG_BYTES, FLAG_INTEGER, FLAG_PICKLE, pickle_serde

    serde = srv.JsonSerde()
    data, flags = serde.serialize("k", {"a": [1]})
    assert flags == serde.JSON == 1 << 8 and not flags & 0b11111, "no bit pymemcache's serde gives a meaning"
    assert serde.serialize("k", b"raw") == (b"raw", FLAG_BYTES)
    assert pickle_serde.deserialize("k", data, flags) == data, "a pickle_serde reader gets the JSON as bytes"
    assert pickle_serde.deserialize("k", b"raw", FLAG_BYTES) == b"raw"
    assert serde.deserialize("k", b'{"a":[1]}', FLAG_INTEGER) == {"a": [1]}, "JSON an older run stored (flag 2)"
    assert serde.deserialize("k", *pickle_serde.serialize("k", 42)) == 42, "an int's digits are its JSON too"
    with pytest.raises(ValueError, match="pickle"):
        serde.deserialize("k", pickle.dumps({"a": 1}), FLAG_PICKLE)
    with pytest.raises(ValueError):
        serde.deserialize("k", b"text", 1 << 4)


def test_values_an_older_run_stored_still_read_or_are_refused_cleanly(memcached_server):
    raw = Client(memcached_server.address, connect_timeout=1, timeout=2)
    raw.set("cachelab:99_old:json", b'{"route":"JFK-LAX-07"}', flags=2, noreply=False)  # JSON, before the change
    raw.set("cachelab:99_old:bytes", b"raw bytes", flags=1, noreply=False)  # raw bytes, before the change
    raw.close()
    lenient = srv.memcached_client_for([memcached_server.address], "cachelab:99_old:")
    assert lenient.get("json") == {"route": "JFK-LAX-07"}
    assert lenient.get("bytes") is None, "refused: with ignore_exc=True, a miss"
    lenient.set("bytes", b"new", noreply=False)
    assert lenient.get("bytes") == b"new" and lenient.get("json") == {"route": "JFK-LAX-07"}
    lenient.set("old", b"x", flags=1, noreply=False)
    strict = srv.memcached_node_client(memcached_server.address, "cachelab:99_old:")
    with pytest.raises(ValueError, match="unknown flags 1"):
        strict.get("old")
    assert strict.get("json") == {"route": "JFK-LAX-07"}, "the refusal closed the connection cleanly"
    lenient.close()
    strict.close()


def test_bulk_writes_go_to_these_servers_to_private_nodes_or_nowhere(memcached_server, monkeypatch, capsys):
    from cachelab.servers.discovery import MemcachedEndpoint, RedisEndpoint, Servers

    ours = Servers(RedisEndpoint("private", True, "redis://127.0.0.1:1/0"),
                   MemcachedEndpoint("private", True, [memcached_server.address]))
    with ours.bulk_memcached(10**9, what="the demo") as nodes:
        assert nodes == [memcached_server.address]
    assert capsys.readouterr().out == "", "nothing to say when the servers are the project's own"
    theirs = Servers(RedisEndpoint("environment", False, "redis://127.0.0.1:1/0"),
                     MemcachedEndpoint("environment", False, [memcached_server.address]))
    with theirs.bulk_memcached(1_000, what="the demo") as nodes:
        assert nodes == [memcached_server.address], "room enough on a server of someone else's"
    with theirs.bulk_memcached(10**9, what="the demo", nodes=2, memory_mb=8) as nodes:
        assert len(nodes) == 2 and memcached_server.address not in nodes
        assert all(srv.memcached_version(*node) for node in nodes)
    assert not any(srv.memcached_version(*node, timeout=0.3) for node in nodes), "stopped after the block"
    assert capsys.readouterr().out.startswith("Writing the demo to 2 private memcached nodes started here instead: ")
    monkeypatch.setattr("shutil.which", lambda name: None)
    with theirs.bulk_memcached(10**9, what="the demo") as nodes:
        assert nodes is None
    out = capsys.readouterr().out
    assert out.startswith("Skipped the demo: ") and out.count("\n") == 1, out


def test_bulk_redis_writes_go_to_this_redis_to_a_private_one_or_nowhere(redis_server, monkeypatch, capsys):
    import redis

    from cachelab.servers.discovery import MemcachedEndpoint, RedisEndpoint, Servers

    ours = Servers(RedisEndpoint("private", True, redis_server.url), MemcachedEndpoint("private", True, []))
    with ours.bulk_redis(10**9, what="the demo") as url:
        assert url == redis_server.url
    assert capsys.readouterr().out == "", "nothing to say when the server is the project's own"
    theirs = Servers(RedisEndpoint("environment", False, redis_server.url), MemcachedEndpoint("environment", False, []))
    with theirs.bulk_redis(1_000, what="the demo") as url:
        assert url == redis_server.url, "room enough on a server of someone else's"
    with theirs.bulk_redis(10**9, what="the demo", memory_mb=8) as url:
        assert url != redis_server.url
        private = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=1)
        assert private.ping() and private.config_get("maxmemory")["maxmemory"] == str(8 * 1024 * 1024)
    with pytest.raises(redis.exceptions.ConnectionError):
        private.ping()  # stopped after the block
    private.close()
    assert capsys.readouterr().out.startswith("Writing the demo to a private Redis started here instead: ")
    monkeypatch.setattr("shutil.which", lambda name: None)
    with theirs.bulk_redis(10**9, what="the demo") as url:
        assert url is None
    out = capsys.readouterr().out
    assert out.startswith("Skipped the demo on this Redis: ") and out.count("\n") == 1, out


def test_clients_are_usable_from_threads(servers):
    prefix = "cachelab:99_threads:"
    r = servers.redis_client()
    errors = []

    def work(n):
        try:
            for i in range(20):
                r.set(f"{prefix}{n}:{i}", i)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert servers.cleanup(prefix)["redis"] == 80


def _users_memcached(memcached_server):
    return srv.Servers(srv.RedisEndpoint("environment", False, url="redis://127.0.0.1:1/0"),
                       srv.MemcachedEndpoint("environment", False, nodes=[memcached_server.address]))


def test_cleanup_on_a_users_memcached_deletes_what_the_project_wrote_and_never_walks_the_node(
        monkeypatch, tmp_path, memcached_server):
    """A memcached given by MEMCACHED_SERVERS may be a production node: no lru_crawler metadump on it."""
    from cachelab.servers import cleanup, written

    _clean_env(monkeypatch, tmp_path)

    def no_walk(*args, **kwargs):
        raise AssertionError("a user's memcached must never be walked (lru_crawler metadump)")

    monkeypatch.setattr(cleanup, "_metadump", no_walk)
    monkeypatch.setattr(srv.discovery, "cleanup_memcached", no_walk)
    servers = _users_memcached(memcached_server)
    assert "never lists or walks" in servers.memcached.describe()
    prefix = "cachelab:99_written:"
    raw = Client(memcached_server.address, connect_timeout=1, timeout=1)
    raw.set("user:precious", b"keep me", noreply=False)
    raw.set(prefix + "not-written-by-cachelab", b"left alone", noreply=False)  # under the prefix, not recorded
    raw.set("cachelab:99_written2:x", b"another prefix", noreply=False)
    mc = servers.memcached_client(prefix)
    mc.set_many({f"k{i}": {"i": i} for i in range(40)}, expire=60, noreply=False)
    mc.add("added", 1, expire=60, noreply=False)
    node = srv.memcached_node_client(memcached_server.address, prefix + "sub:")
    node.set("deeper", [1, 2], expire=60, noreply=False)
    other = srv.memcached_node_client(memcached_server.address, "cachelab:99_written2:")
    other.set("y", 2, expire=60, noreply=False)
    assert len(written.written_under(prefix)) == 2  # the prefix's ledger and its sub-prefix's, not the other

    assert servers.cleanup_memcached(prefix) == 42
    assert mc.get("k0") is None and node.get("deeper") is None
    assert raw.get("user:precious") == b"keep me" and raw.get(prefix + "not-written-by-cachelab") == b"left alone"
    assert raw.get("cachelab:99_written2:x") == b"another prefix" and other.get("y") == 2
    assert written.written_under(prefix) == {} and servers.cleanup_memcached(prefix) == 0  # the ledgers are gone
    mc.set("k0", {"i": 0}, expire=60, noreply=False)  # written again after the cleanup: written down again
    assert servers.cleanup_memcached(prefix) == 1 and mc.get("k0") is None
    for client in (raw, mc, node, other):
        client.close()


def test_cleanup_on_the_projects_own_memcached_walks_it_and_drops_the_ledgers(monkeypatch, tmp_path,
                                                                              memcached_server):
    from cachelab.servers import written

    _clean_env(monkeypatch, tmp_path)
    servers = srv.Servers(srv.RedisEndpoint("private", True, url="redis://127.0.0.1:1/0"),
                          srv.MemcachedEndpoint("private", True, nodes=[memcached_server.address]))
    prefix = "cachelab:99_own:"
    raw = Client(memcached_server.address, connect_timeout=1, timeout=1)
    raw.set(prefix + "not-written-down", b"found by the walk", noreply=False)
    mc = servers.memcached_client(prefix)
    mc.set("k", 1, expire=60, noreply=False)
    assert servers.cleanup_memcached(prefix) == 2
    assert raw.get(prefix + "not-written-down") is None and written.written_under(prefix) == {}
    raw.close()
    mc.close()


def test_delete_keys_skips_what_cannot_be_a_key(memcached_server):
    from cachelab.servers.cleanup import delete_keys

    raw = Client(memcached_server.address, connect_timeout=1, timeout=1)
    raw.set("cachelab:99_del:a", b"1", noreply=False)
    assert delete_keys(memcached_server.address, ["cachelab:99_del:a", "cachelab:99_del:b", "two words", "x" * 251,
                                                  ""]) == 1
    assert raw.get("cachelab:99_del:a") is None
    raw.close()


def test_bulk_writes_ask_a_server_the_project_did_not_start_for_room_first(redis_server, memcached_server):
    """No demo pushes a user's keys out of a full cache: room_for says no on a full or evicting server."""
    from pymemcache.client.base import Client

    from cachelab.servers.discovery import MemcachedEndpoint, RedisEndpoint, Servers

    theirs = Servers(RedisEndpoint("environment", False, redis_server.url),
                     MemcachedEndpoint("environment", False, [memcached_server.address]))
    ours = Servers(RedisEndpoint("private", True, redis_server.url),
                   MemcachedEndpoint("private", True, [memcached_server.address]))
    assert ours.room_for("memcached", 10**9)[0] and ours.room_for("redis", 10**9)[0]
    ok, why = theirs.room_for("memcached", 1_000_000)
    assert ok, why
    assert not theirs.room_for("memcached", 10**9)[0], "a plan bigger than the node: no"
    client = Client(memcached_server.address, connect_timeout=1, timeout=2)
    limit = int(client.stats()[b"limit_maxbytes"])
    value = b"x" * 500_000
    for i in range(2 * limit // len(value)):  # the node fills and evicts
        client.set(f"filler:{i}", value, noreply=False)
    ok, why = theirs.room_for("memcached", 1000)
    assert not ok and "evicted" in why, why
    import redis

    r = redis.Redis.from_url(redis_server.url)
    r.config_set("maxmemory", str(int(r.info("memory")["used_memory"]) + 1_000_000))
    assert theirs.room_for("redis", 100_000)[0] and not theirs.room_for("redis", 1_000_000)[0]
    assert "bulk" in theirs.describe() and "bulk" not in ours.describe()
