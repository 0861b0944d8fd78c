"""HTTP caching in the app, the framework versions of the service, and the measurements of notebook 09."""

from __future__ import annotations

import asyncio
import json
import os
import time
from pathlib import Path

import pytest

from cachelab import http_caching
from cachelab.async_app import SingleFlight
from cachelab.data import copy_database
from cachelab.flask_caching_app import RedisJSONSerializer
from cachelab.load import layers
from cachelab.servers import apps, gunicorn

# --------------------------------------------------------------------------- HTTP caching, no server

def test_if_none_match_is_a_weak_comparison_over_a_list():
    tag = http_caching.etag_of(b'{"flights": 985}')
    assert tag == http_caching.etag_of(b'{"flights": 985}') != http_caching.etag_of(b'{"flights": 986}')
    assert tag.startswith('"') and tag.endswith('"')
    for header, expected in ((None, False), ("", False), (tag, True), (f"W/{tag}", True), (f'"a", {tag}', True),
                             ('"a"', False), ("*", True)):
        assert http_caching.matches(header, tag) is expected, header
    assert http_caching.cache_control(60) == "public, max-age=60"
    assert http_caching.cache_control(60, 30) == "public, max-age=60, stale-while-revalidate=30"
    with pytest.raises(ValueError):
        http_caching.HttpSettings(etag="hash")


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    return copy_database(tmp_path_factory.mktemp("http") / "flights.sqlite")


def test_a_body_tag_answers_304_after_building_the_answer(db):
    app = http_caching.create_app("none", http=http_caching.HttpSettings(60, 30, "body"), db_path=str(db))
    client = app.test_client()
    first = client.get("/delay/JFK/LAX/7")
    assert first.status_code == 200
    assert first.headers["Cache-Control"] == "public, max-age=60, stale-while-revalidate=30"
    again = client.get("/delay/JFK/LAX/7", headers={"If-None-Match": first.headers["ETag"]})
    assert again.status_code == 304 and again.data == b"" and again.headers["ETag"] == first.headers["ETag"]
    assert client.get("/stats").get_json()["backend_queries"] == 2, "a body tag needs the answer, so the query"
    assert client.get("/delay/JFK/XXX/7").status_code == 400
    assert "Cache-Control" not in client.get("/health").headers


def test_no_max_age_no_cache_control(db):
    app = http_caching.create_app("none", http=http_caching.HttpSettings(0, 0, "body"), db_path=str(db))
    client = app.test_client()
    answer = client.get("/delay/JFK/LAX/7")
    assert "Cache-Control" not in answer.headers and "ETag" in answer.headers


@pytest.mark.servers
def test_a_version_tag_answers_304_without_the_query_and_changes_on_write(db):
    from cachelab.servers import start_redis

    with start_redis() as redis_server:
        with pytest.raises(ValueError, match="Redis"):
            http_caching.create_app("none", http=http_caching.HttpSettings(60, 0, "version"), db_path=str(db))
        app = http_caching.create_app("none", http=http_caching.HttpSettings(60, 0, "version"), db_path=str(db),
                                      redis_url=redis_server.url, prefix="cachelab:test_http:")
        client = app.test_client()
        first = client.get("/delay/EWR/ORD/1")
        again = client.get("/delay/EWR/ORD/1", headers={"If-None-Match": first.headers["ETag"]})
        assert again.status_code == 304
        assert client.get("/stats").get_json()["backend_queries"] == 1, "the 304 ran no query"
        written = client.post("/flights", json={"origin": "EWR", "dest": "ORD", "month": 1, "arr_delay": 3})
        assert written.status_code == 201
        after = client.get("/delay/EWR/ORD/1", headers={"If-None-Match": first.headers["ETag"]})
        assert after.status_code == 200 and after.get_json()["flights"] == first.get_json()["flights"] + 1
        assert after.headers["ETag"] != first.headers["ETag"]


# --------------------------------------------------------------------------- serializers, single-flight

def test_flask_caching_json_serializer_round_trips_and_answers_none_for_a_missing_key():
    s = RedisJSONSerializer()
    assert s.loads(None) is None
    assert s.loads(s.dumps({"flights": 985, "origin": "JFK"})) == {"flights": 985, "origin": "JFK"}
    assert s.dumps(7) == b"7", "an integer is its digits: INCRBY still works"
    assert not s.dumps({"a": 1}).startswith(b"\x80"), "not a pickle"


def test_django_json_serializer_stores_responses_and_integers():
    from django.http import HttpResponse, JsonResponse

    from cachelab.django_app import JSONSerializer

    s = JSONSerializer()
    assert s.dumps(5) == 5 and s.loads(b"5") == 5, "integers as Django's RedisSerializer stores them"
    assert s.loads(s.dumps({"a": [1, 2]})) == {"a": [1, 2]}
    response = JsonResponse({"flights": 985})
    response["Cache-Control"] = "max-age=60"
    stored = s.dumps(response)
    assert json.loads(stored), "JSON, not a pickle"
    back = s.loads(stored)
    assert isinstance(back, HttpResponse) and back.status_code == 200
    assert json.loads(back.content) == {"flights": 985} and back["Cache-Control"] == "max-age=60"
    binary = HttpResponse(bytes(range(256)), status=203)
    assert s.loads(s.dumps(binary)).content == bytes(range(256))


def test_single_flight_runs_the_work_once_for_every_concurrent_caller():
    async def scenario():
        flights, calls = SingleFlight(), []

        async def work():
            calls.append(1)
            await asyncio.sleep(0.02)
            return len(calls)

        first = await asyncio.gather(*(flights.do("k", work) for _ in range(50)))
        later = await flights.do("k", work)  # the first flight is over: a new one starts
        return first, later, flights.started, flights.merged, len(flights)

    first, later, started, merged, open_flights = asyncio.run(scenario())
    assert first == [1] * 50 and later == 2 and started == 2 and merged == 49 and open_flights == 0


def test_single_flight_gives_every_caller_the_error():
    async def scenario():
        flights = SingleFlight()

        async def fails():
            await asyncio.sleep(0.01)
            raise LookupError("no such route")

        return await asyncio.gather(*(flights.do("k", fails) for _ in range(5)), return_exceptions=True)

    assert all(isinstance(e, LookupError) for e in asyncio.run(scenario()))


# --------------------------------------------------------------------------- load helpers

def test_runs_in_turn_rotates_the_order_and_keeps_every_result():
    order = []

    def run(name):
        def once():
            order.append(name)
            return {"requests_per_second": 100.0, "name": name}
        return once

    taken = layers.runs_in_turn({"a": run("a"), "b": run("b")}, 3)
    assert [r["name"] for r in taken["a"]] == ["a"] * 3 and len(taken["b"]) == 3
    assert order == ["a", "b", "b", "a", "a", "b"]


def test_cpu_seconds_reads_proc():
    if not Path("/proc/self/stat").exists():
        pytest.skip("no /proc")
    before = layers.cpu_seconds([os.getpid()])
    deadline = time.process_time() + 0.1
    while time.process_time() < deadline:
        pass
    assert layers.cpu_seconds([os.getpid()]) > before
    assert layers.cpu_seconds([2 ** 22 + 12345]) == 0


# --------------------------------------------------------------------------- the framework apps, served for real

@pytest.fixture(scope="module")
def redis_server():
    from cachelab.servers import start_redis

    with start_redis() as server:
        yield server


@pytest.mark.servers
@pytest.mark.parametrize("kind", ["flask-caching", "django", "fastapi"])
def test_each_framework_app_caches_in_redis_as_json_and_stops_clean(kind, db, redis_server):
    import urllib.request

    from cachelab.servers import redis_client_for

    prefix = f"cachelab:test_fw_{kind.replace('-', '_')}:"
    start = apps.start_asgi if kind == "fastapi" else apps.start_wsgi
    settings = {"db_path": str(db), "redis_url": redis_server.url, "prefix": prefix, "ttl": 60}
    with start(kind, 2, settings=settings) as app:
        assert len(app.worker_pids()) == 2
        answers = [app.get_json("/delay/LGA/ATL/12") for _ in range(3)]
        assert answers[0] == answers[1] == answers[2] and answers[0]["flights"] > 0
        totals = app.totals()
        assert totals["requests"] == 3 and totals["backend_queries"] == 1, totals
        r = redis_client_for(redis_server.url, decode_responses=False)
        keys = list(r.scan_iter(match=prefix.rstrip(":") + "*"))
        assert keys, "the answer is in Redis under the app's prefix"
        for key in keys:
            value = r.get(key)
            assert not value.startswith(b"\x80"), f"{key!r} holds a pickle"
            json.loads(value)
        with pytest.raises(urllib.error.HTTPError) as bad:
            app.get_json("/delay/LGA/XXX/12")
        assert bad.value.code == 400
        status, _ = app.post_json("/flights", {"origin": "LGA", "dest": "ATL", "month": 12, "arr_delay": 1.0})
        assert status == 201
        assert app.get_json("/delay/LGA/ATL/12")["flights"] == answers[0]["flights"] + 1, "a write deletes the key"
        pid = app.pid
    assert gunicorn.group_pids(pid) == []


@pytest.mark.servers
def test_django_per_view_cache_serves_the_page_without_the_view(db, redis_server):
    with apps.start_wsgi("django", 1, settings={"db_path": str(db), "redis_url": redis_server.url,
                                                "prefix": "cachelab:test_fw_page:", "ttl": 60}) as app:
        first = app.get_json("/page/delay/SFO/LAX/3")
        assert app.get_json("/page/delay/SFO/LAX/3") == first
        assert app.totals()["backend_queries"] == 1


@pytest.mark.servers
def test_the_async_app_merges_a_burst_per_worker(db, redis_server):
    with apps.start_asgi("fastapi", 1, settings={"db_path": str(db), "redis_url": redis_server.url,
                                                 "prefix": "cachelab:test_fw_burst:", "ttl": 60}) as app:
        merged = layers.burst(app.url("/delay/ORD/LAX/5"), 8)
        assert [a["status"] for a in merged] == [200] * 8
        assert app.totals()["backend_queries"] == 1, "one worker, one query for the whole burst"
        before = app.totals()["backend_queries"]
        layers.burst(app.url("/unmerged/delay/ORD/LAX/6"), 8)
        assert app.totals()["backend_queries"] - before > 1, "without the single-flight every request queries"


# --------------------------------------------------------------------------- additions for notebook 09's review

def test_if_none_match_reads_whole_tags_so_a_comma_inside_one_does_not_split_it():
    assert http_caching.matches('"a,b"', '"a,b"')
    assert http_caching.matches('"x", W/"a,b"', '"a,b"')
    assert not http_caching.matches('"a,b"', '"b"') and not http_caching.matches('"a,b"', '"a"')


def test_cpu_busy_is_the_share_of_the_cpus_time_spent_busy():
    before = {0: {"busy": 100, "softirq": 10, "total": 1000}, 1: {"busy": 0, "softirq": 0, "total": 1000}}
    after = {0: {"busy": 300, "softirq": 30, "total": 1200}, 1: {"busy": 0, "softirq": 0, "total": 1200}}
    assert layers.cpu_busy(before, after) == {"busy": 0.5, "softirq": 0.05}
    assert all(v != v for v in layers.cpu_busy({}, {}).values()), "no readings: NaN"
    if Path("/proc/stat").exists():
        cpus = sorted(os.sched_getaffinity(0))[:1]
        reading = layers.cpu_times(cpus)
        assert set(reading) == set(cpus) and 0 <= reading[cpus[0]]["busy"] <= reading[cpus[0]]["total"]


def test_the_tables_show_a_median_per_server():
    run = {"requests_per_second": 100.0, "p99_ms": 2.0, "cpu_us_per_request": 50.0, "server_busy": 1.0,
           "charged": 0.5}
    table = layers.throughput_table({"nginx hit": [run, {**run, "requests_per_second": 300.0}, run]})
    assert "nginx hit" in table and " 100 " in table and "100%" in table and "50%" in table
    bursts = {"lock on": [{"queries": 1, "statuses": [200], "seconds": [0.5]},
                          {"queries": 1, "statuses": [200], "seconds": [0.7]}]}
    assert "1 1" in layers.burst_table(bursts) and " 500" in layers.burst_table(bursts)


def test_redis_commands_counts_what_ran_between_two_readings_without_the_handshake():
    class FakeRedis:
        def __init__(self):
            self.calls = [{"cmdstat_get": {"calls": 5}, "cmdstat_info": {"calls": 1}},
                          {"cmdstat_get": {"calls": 6}, "cmdstat_mget": {"calls": 1}, "cmdstat_hello": {"calls": 1},
                           "cmdstat_info": {"calls": 2}}]

        def info(self, section):
            assert section == "commandstats"
            return self.calls.pop(0)

    assert layers.redis_commands(FakeRedis(), lambda: None) == {"get": 1, "mget": 1}


class _FakeServer:
    def __init__(self, pid, fail_ready=False, fail_stop=False, log=None):
        self.pid, self.fail_ready, self.fail_stop, self.log = pid, fail_ready, fail_stop, log if log is not None else []
        self.process = self

    def poll(self):
        return None

    def send_signal(self, sig):
        self.log.append(("signal", self.pid, sig))

    def wait_ready(self):
        if self.fail_ready:
            raise RuntimeError("did not start")
        return self

    def stop(self):
        self.log.append(("stop", self.pid))
        if self.fail_stop:
            raise RuntimeError("did not stop")


def test_stop_servers_signals_every_master_first_then_stops_each_even_after_a_failure():
    import signal

    log = []
    servers = [_FakeServer(1, log=log, fail_stop=True), _FakeServer(2, log=log)]
    with pytest.raises(RuntimeError, match="did not stop"):
        layers.stop_servers(servers)
    assert log == [("signal", 1, signal.SIGTERM), ("signal", 2, signal.SIGTERM), ("stop", 1), ("stop", 2)]
    assert layers.stop_servers([_FakeServer(3), _FakeServer(4)]) == [3, 4]


def test_ready_stops_every_server_when_one_fails(monkeypatch):
    log = []
    monkeypatch.setattr(layers, "pin_group", lambda pid, cpus: [pid])
    launching = {"a": _FakeServer(1, log=log), "b": _FakeServer(2, log=log, fail_ready=True)}
    with pytest.raises(RuntimeError, match="did not start"):
        layers.ready(launching, None)
    assert ("stop", 1) in log and ("stop", 2) in log
    assert list(layers.ready({"c": _FakeServer(3)}, None)) == ["c"]


def test_pin_this_thread_pins_the_calling_thread_only_and_says_where_it_ran():
    import threading

    if not hasattr(os, "sched_setaffinity"):
        pytest.skip("no CPU affinity here")
    everywhere = tuple(sorted(os.sched_getaffinity(0)))
    seen = {}

    def worker():
        seen["before"] = layers.pin_this_thread(everywhere[:1])
        seen["pinned"] = tuple(sorted(os.sched_getaffinity(0)))
        layers.pin_this_thread(seen["before"])
        seen["after"] = tuple(sorted(os.sched_getaffinity(0)))

    thread = threading.Thread(target=worker)
    thread.start()
    thread.join()
    assert seen == {"before": everywhere, "pinned": everywhere[:1], "after": everywhere}
    assert tuple(sorted(os.sched_getaffinity(0))) == everywhere, "the main thread never moved"
    assert layers.pin_this_thread(None) is None


def test_placement_text_says_what_runs_where():
    from cachelab.load.placement import Placement

    assert "server CPU 0" in layers.placement_text(Placement((0, 1), (1,), (0,)))
    assert "share it" in layers.placement_text(Placement((0,), (0,), (0,)))
    assert "not pinned" in layers.placement_text(Placement((0, 1), None, None))


@pytest.mark.servers
def test_the_async_apps_def_twin_answers_like_the_async_route(db, redis_server):
    with apps.start_asgi("fastapi", 1, settings={"db_path": str(db), "redis_url": redis_server.url,
                                                 "prefix": "cachelab:test_fw_sync:", "ttl": 60}) as app:
        first = app.get_json("/sync/delay/BOS/MIA/2")
        assert app.get_json("/sync/delay/BOS/MIA/2") == first == app.get_json("/delay/BOS/MIA/2")
        totals = app.totals()
        assert totals["requests"] == 3 and totals["backend_queries"] == 1 and totals["hits"] == 2, totals
