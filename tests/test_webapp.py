"""The web app of notebook 07 through Flask's test client, and the parsing of what its load generators print."""

from __future__ import annotations

import json
import math

import pytest

from cachelab import webapp
from cachelab.data import FlightService, copy_database
from cachelab.load import freshness, paced, placement, wrk

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def client():
    return webapp.create_app("none").test_client()


@pytest.fixture(scope="module")
def truth():
    with FlightService() as service:
        return service.route_delay("JFK", "LAX", 7)


def test_delay_answers_what_the_database_answers(client, truth):
    response = client.get("/delay/JFK/LAX/7")
    assert response.status_code == 200
    assert response.get_json() == truth


@pytest.mark.parametrize("path, words", [
    ("/delay/JFK/XXX/7", "unknown airport 'XXX'"), ("/delay/xyz/LAX/7", "unknown airport 'xyz'"),
    ("/delay/JFK/LAX/13", "month must be 1 to 12"), ("/delay/JFK/LAX/0", "month must be 1 to 12"),
    ("/delay/JFK/LAX/july", "month must be 1 to 12"), ("/delay/JFK/LAX/-1", "month must be 1 to 12"),
])
def test_bad_routes_are_a_400_with_a_json_error(client, path, words):
    response = client.get(path)
    assert response.status_code == 400
    assert words in response.get_json()["error"]


@pytest.mark.parametrize("body", [
    b"{not json", b"[1, 2]", b'"a string"', json.dumps({"origin": "JFK"}).encode(),
    json.dumps({"origin": "JFK", "dest": "LAX", "month": 13, "arr_delay": 5}).encode(),
    json.dumps({"origin": "JFK", "dest": "LAX", "month": "7", "arr_delay": 5}).encode(),
    json.dumps({"origin": "JFK", "dest": "LAX", "month": True, "arr_delay": 5}).encode(),
    json.dumps({"origin": "JFK", "dest": "LAX", "month": 7, "arr_delay": "late"}).encode(),
    b'{"origin": "JFK", "dest": "LAX", "month": 7, "arr_delay": NaN}',
    json.dumps({"origin": "JFK", "dest": "LAX", "month": 7, "arr_delay": 1e9}).encode(),
    json.dumps({"origin": 1, "dest": "LAX", "month": 7, "arr_delay": 5}).encode(),
])
def test_bad_writes_are_a_400_with_a_json_error(client, body):
    response = client.post("/flights", data=body, content_type="application/json")
    assert response.status_code == 400
    assert response.get_json()["error"]


def test_a_write_to_a_read_only_server_is_refused_with_a_400(client):
    body = {"origin": "JFK", "dest": "LAX", "month": 7, "arr_delay": 5}
    response = client.post("/flights", json=body)
    assert response.status_code == 400 and "read-only" in response.get_json()["error"]


def test_unknown_paths_and_methods_answer_json(client):
    assert client.get("/nope").status_code == 404 and client.get("/nope").get_json()["error"]
    assert client.delete("/delay/JFK/LAX/7").status_code == 405


def test_floor_health_and_stats(client):
    assert client.get("/floor").status_code == 200
    health = client.get("/health").get_json()
    assert health["ok"] and health["mode"] == "none"
    before = client.get("/stats").get_json()
    client.get("/delay/JFK/LAX/7")
    after = client.get("/stats").get_json()
    assert after["requests"] == before["requests"] + 1
    assert after["misses"] == before["misses"] + 1 and after["backend_queries"] == before["backend_queries"] + 1


@pytest.mark.parametrize("mode", ["lru", "ttl"])
def test_local_caches_hit_on_the_second_read(mode, truth):
    client = webapp.create_app(mode).test_client()
    first, second = client.get("/delay/JFK/LAX/7").get_json(), client.get("/delay/JFK/LAX/7").get_json()
    assert first == second == truth
    stats = client.get("/stats").get_json()
    assert (stats["hits"], stats["misses"], stats["backend_queries"]) == (1, 1, 1)


def test_a_write_changes_the_answer_and_what_each_local_mode_does_about_it(tmp_path):
    db = copy_database(tmp_path / "flights.sqlite")
    body = {"origin": "JFK", "dest": "LAX", "month": 7, "arr_delay": 30}
    seen = {}
    for mode in ("none", "lru", "ttl"):
        client = webapp.create_app(mode, db_path=str(db)).test_client()
        before = client.get("/delay/JFK/LAX/7").get_json()["flights"]
        response = client.post("/flights", json=body)
        assert response.status_code == 201 and response.get_json()["recorded"]["arr_delay"] == 30
        seen[mode] = client.get("/delay/JFK/LAX/7").get_json()["flights"] - before
    # none reads the database; ttl drops this worker's copy; lru_cache cannot drop one key: stale
    assert seen == {"none": 1, "lru": 0, "ttl": 1}


def test_warm_fills_the_local_cache_from_one_query():
    app = webapp.create_app("lru", warm=True)
    client = app.test_client()
    client.get("/delay/JFK/LAX/7")
    stats = client.get("/stats").get_json()
    assert stats["hits"] == 1 and stats["backend_queries"] == 0
    assert stats["cache"]["currsize"] > 1000


def test_settings_refuse_what_cannot_work():
    with pytest.raises(ValueError, match="unknown cache mode"):
        webapp.Settings(mode="fast")
    with pytest.raises(ValueError, match="Redis URL"):
        webapp.Settings(mode="redis")
    with pytest.raises(ValueError, match="memcached nodes"):
        webapp.Settings(mode="memcached")
    env = {"CACHELAB_WEB_MODE": "memcached", "CACHELAB_WEB_MEMCACHED": "127.0.0.1:1, 127.0.0.1:2",
           "CACHELAB_WEB_TTL": "2.5"}
    settings = webapp.Settings.from_environment(env)
    assert settings.memcached == (("127.0.0.1", 1), ("127.0.0.1", 2)) and settings.ttl == 2.5


def test_counters_files_are_read_back_by_pid(tmp_path):
    counters = webapp.Counters(str(tmp_path))
    counters.add("requests", 3)
    counters.add("hits")
    found = webapp.read_counters(tmp_path)
    assert list(found.values()) == [{**dict.fromkeys(webapp.COUNTERS, 0), "requests": 3, "hits": 1}]


def test_wrk_result_line_is_parsed():
    line = ('cachelab-wrk {"requests":1200,"duration_us":2000000,"bytes":99,"errors":{"connect":0,"read":0,'
            '"write":0,"status":2,"timeout":1},"latency_us":{"min":100,"max":9000,"mean":500,"stdev":50,'
            '"p50":450,"p75":600,"p90":800,"p99":2000,"p99.9":8000}}')
    result = wrk.parse_output("Running 2s test\n" + line + "\n", connections=8)
    assert result.requests_per_second == 600 and result.non_2xx == 2 and result.socket_errors == 1
    assert result.percentile_ms(99) == 2.0
    with pytest.raises(wrk.WrkError, match="no result line"):
        wrk.parse_output("Running 2s test\n", connections=8)


def test_write_paths_writes_one_path_a_line(tmp_path):
    with FlightService() as service:
        routes = service.routes()[:2]
    path = wrk.write_paths(tmp_path / "p.txt", [*routes, "/floor"])
    assert path.read_text().splitlines() == [wrk.route_path(routes[0]), wrk.route_path(routes[1]), "/floor"]
    with pytest.raises(ValueError):
        wrk.write_paths(tmp_path / "empty.txt", [])


def test_paced_stages_offer_one_user_a_request():
    stages = paced.plan_stages([14, 660.5], seconds=1.5)
    assert [s["users"] for s in stages] == [21, 991]  # round(rate x seconds): one request, one user
    assert all(s["seconds"] == 1.5 and s["host"] == "" for s in stages)
    assert paced.plan_stages([0.5], 1)[0]["users"] == 1
    assert [s["host"] for s in paced.plan_stages([1, 2], 1, ["http://a/", "http://b"])] == ["http://a", "http://b"]
    with pytest.raises(ValueError):
        paced.plan_stages([0], 1)
    with pytest.raises(ValueError):
        paced.plan_stages([1, 2], 1, ["http://a"])


def paced_records(stage, rate, seconds, start, late_s=(), slow_ms=(), failed=0, skip=0, growing_ms=0.0):
    """The records of a stage whose requests all left on schedule and took 2 ms, but for ``late_s`` (how late
    each of the first requests left), ``slow_ms`` (the times of the last ones), ``failed`` non-2xx answers,
    ``skip`` requests never sent and ``growing_ms`` added to the n-th answer n times (a queue that grows)."""
    count = round(rate * seconds) - skip
    rows = []
    for n in range(count):
        due = start + n / rate
        late = late_s[n] if n < len(late_s) else 0.0002
        ms = slow_ms[n - count + len(slow_ms)] if n >= count - len(slow_ms) else 2.0 + n * growing_ms
        rows.append([stage, due, due + late, ms, n >= failed, n])
    return rows


def test_paced_records_tell_a_late_generator_from_a_server_that_fell_behind():
    stages = paced.plan_stages([20, 40, 40, 40, 40, 40], seconds=2)  # 40, then 80 requests, one user each
    rows = (paced_records(0, 20, 2, 0.2, failed=1)
            + paced_records(1, 40, 2, 2.2, late_s=[0.005] * 10)  # 5 ms late: under half the 25 ms interval
            + paced_records(2, 40, 2, 4.2, late_s=[0.3, 0.2])  # 2 of 80 (2.5%) left 200 ms late or more
            + paced_records(3, 40, 2, 6.2, slow_ms=[200] * 4)  # a slow tail, on time: the server's
            + paced_records(4, 40, 2, 8.2, skip=10)  # 70 of the 80 offered were sent
            + paced_records(5, 40, 2, 10.2, growing_ms=2.0))  # each answer waits 2 ms more than the last
    data = {"starts": [0.2, 2.2, 4.2, 6.2, 8.2, 10.2], "unanswered": 0, "requests": rows,
            "cpu": [[[0.2, 1.0], [2.2, 1.1]], [[2.2, 1.1], [4.2, 1.3]], [[4.2, 1.3], [6.2, 1.5]],
                    [[6.2, 1.5], [8.2, 1.7]], [[8.2, 1.7], [10.2, 1.9]], [[10.2, 1.9], [12.2, 2.1]]]}
    on_time, late_a_little, late, slow_tail, short, queue = paced.parse_records(data, stages)
    assert (on_time.requests, on_time.failed, on_time.late) == (40, 1, 0)
    assert on_time.interval == 0.05 and on_time.behind, "a failed request: the server did not keep up"
    assert on_time.generator_cpu == pytest.approx(0.05)
    assert late_a_little.late == 0 and not late_a_little.behind and not late_a_little.generator_behind
    assert late.late == 2 and late.late_share == pytest.approx(0.025) and late.generator_behind
    assert not late.behind, "the server answered every request in 2 ms: the lateness is the generator's"
    assert late.late_ms["max"] == pytest.approx(300) and late.from_due_ms["max"] == pytest.approx(302)
    assert late.latency_ms["max"] == pytest.approx(2.0)  # what locust records starts at the send
    assert slow_tail.late == 0 and not slow_tail.generator_behind and slow_tail.latency_ms["max"] == 200
    assert short.behind and short.requests == 70 and short.offered == 40
    assert queue.behind and not queue.generator_behind and queue.in_system is None
    assert late_a_little.in_system == pytest.approx(40 * 0.002)  # Little's law: 40 a second x 2 ms
    assert slow_tail.to_dict()["behind"] is False and short.to_dict()["requests"] == 70
    points = [s.to_dict() for s in (late_a_little, late, queue)]
    assert paced.knee(points) == 40, "the queue's stage is the knee; the late generator's stage is left out"
    assert paced.knee(points[:2]) is None


def test_placement_gives_the_generator_a_cpu_of_its_own():
    two = placement.plan((0, 1))
    assert two.generator == (1,) and two.servers == (0,) and two.separate
    one = placement.plan((3,))
    assert one.generator == one.servers == (3,) and not one.separate
    assert placement.plan().cpus == placement.available_cpus()


def test_staleness_judges_each_read_against_the_writes_committed_before_it():
    route = "r"
    writes = [(route, 0.9, 1.0), (route, 1.9, 2.0)]  # committed at t = 1 and t = 2
    checks = [(route, 0.5, 10),  # before any write: fresh
              (route, 1.5, 10),  # misses the first write: stale, age 0.5
              (route, 1.5, 11),  # has it: fresh
              (route, 1.95, 11),  # the second write is not committed yet when sent: fresh
              (route, 3.0, 10)]  # misses both: stale since the first, age 2.0
    found = freshness.staleness({route: 10}, writes, checks)
    assert (found.checks, found.stale, found.writes) == (5, 2, 2)
    assert [round(a, 6) for a in found.ages] == [0.5, 2.0] and math.isclose(found.fraction, 0.4)
    assert found.by_route == {"r": [5, 2]} and found.to_dict()["by_route"] == {"r": [5, 2]}


def test_query_logs_are_read_piece_by_piece(tmp_path):
    counters = webapp.Counters(str(tmp_path))
    counters.query("JFK-LAX-07")
    log = webapp.QueryLog(tmp_path)
    first = log.read_new()
    counters.query("EWR-ORD-01")
    with open(next(tmp_path.glob("*.queries")), "ab") as handle:
        handle.write(b"123.5 half-writ")  # a line still being written waits for its end
    second = log.read_new()
    assert [k for _, k, _ in first] == ["JFK-LAX-07"] and [k for _, k, _ in second] == ["EWR-ORD-01"]
    assert first[0][2] == second[0][2] and first[0][0] <= second[0][0]
    assert webapp.route_of("JFK-LAX-07") == webapp.Route("JFK", "LAX", 7)


def test_each_write_is_charged_the_queries_of_its_route_until_the_next_write_to_it():
    from cachelab.data import Route
    from cachelab.load import experiment

    a, b = Route("JFK", "LAX", 7), Route("EWR", "ORD", 1)
    writes = [(a, 1.0, 1.01), (b, 1.25, 1.26), (a, 2.0, 2.01)]
    queries = [(0.9, a.key(), 1), (1.02, a.key(), 1), (1.03, a.key(), 2), (1.3, b.key(), 1), (2.1, a.key(), 2),
               (2.2, b.key(), 2)]
    found = experiment.queries_per_write(writes, queries, end=3.0)
    assert [w["queries"] for w in found] == [2, 2, 1]  # the query before the first write is no write's


def test_a_rotation_puts_every_unit_in_every_round_each_round_in_its_own_order():
    from cachelab.load import experiment

    units = [f"u{i}" for i in range(8)]
    plan = experiment.rotation_plan(units, rounds=5, seed=1)
    assert len(plan) == 5 and all(sorted(r) == units for r in plan)
    assert plan == experiment.rotation_plan(units, rounds=5, seed=1)  # seeded
    assert any(r != units for r in plan), "each round is shuffled"
    positions = {u: {r.index(u) for r in plan} for u in units}
    assert all(len(p) > 1 for p in positions.values()), "no unit holds one place in every round"
    pair = (("a", 1), ("b", 2))
    firsts = [next(u for u in r if isinstance(u, tuple))[0] for r in experiment.rotation_plan(units + [pair], rounds=4)]
    assert firsts == [("a", 1), ("b", 2), ("a", 1), ("b", 2)], "a pair is taken in the other order at each turn"
    twice = experiment.rotation_plan(["a", "b", pair], rounds=3, repeats={pair: 2})
    assert all(r.count("a") == 1 and r.count(pair) + r.count(pair[::-1]) == 2 for r in twice)
    with pytest.raises(ValueError):
        experiment.rotation_plan(units, rounds=0)


def test_a_rotation_probes_after_each_window_and_the_validation_keeps_the_probes(monkeypatch):
    from types import SimpleNamespace

    from cachelab.load import experiment

    events, clock = [], iter(range(100))

    def fake_window(bench, cell, stream, *, seconds, writes):
        events.append(("window", cell, stream))
        return {"start": float(next(clock)), "cell": cell, "stream": stream}

    def probe():
        events.append(("probe",))
        return 0.031 + 0.001 * len(events)

    monkeypatch.setattr(experiment, "window", fake_window)
    grid = {"a": "cell a", "b": "cell b"}
    plan = [[("a", "hot", True, 1), (("b", "floor", False, 1), ("b", "hit", False, 1))]]
    taken = experiment.run_rotation(None, grid, plan, probe=probe)
    assert [e[0] for e in events] == ["window", "probe"] * 3, "one probe right after each window, the pair's too"
    assert [w["probe_s"] for w in taken] == pytest.approx([0.033, 0.035, 0.037])
    assert [w["order"] for w in taken] == [0, 1, 2] and {w["round"] for w in taken} == {0}
    assert all("probe_s" not in w for w in experiment.run_rotation(None, grid, plan)), "no probe, no probe_s"

    bench = SimpleNamespace(placement=SimpleNamespace(servers=[1], cpus=[0, 1]), connections=8, hot_routes=[],
                            written_routes=[], write_rate=4.0, check_rate=20.0, ttl=60.0, local_ttl=60.0)
    record = experiment.validation_record(bench, {}, {}, workers=3, window_s=1.0, settle_s=0.2,
                                          probe_s=[w["probe_s"] for w in taken])
    assert record["probe_s"] == pytest.approx([0.033, 0.035, 0.037]) and record["server_cpus"] == 1
    assert experiment.validation_record(bench, {}, {}, workers=3, window_s=1.0, settle_s=0.2)["probe_s"] == []


def window_with(rates, floor=False, slot=0.1):
    """A window whose counters grew at ``rates[i]`` answers a second in its i-th 100 ms slot."""
    t, served, slots = 0.0, 0, [[0.0, 0, 0, 0, 0]]
    for rate in rates:
        t, served = t + slot, served + rate * slot
        slots.append([t, 0 if floor else served, served if floor else 0, served, 0])
    return {"cell": "floor" if floor else "hot", "stream": "floor" if floor else "hot", "slots": slots}


def test_settled_figures_start_after_the_settle_time_and_the_settle_time_is_read_from_the_windows():
    from cachelab.load import experiment

    ramp = [20, 60, 90] + [100] * 17  # two seconds: a ramp of 300 ms, then 100 answers a second
    win = window_with(ramp)
    assert experiment.settled(win, 0.3)["requests_per_second"] == pytest.approx(100)
    assert experiment.settled(win, 0.0)["requests_per_second"] < 95
    slow = [10] * 5 + [100] * 15  # counted from t to the end: 0.78, 0.81, 0.85, 0.89, then 0.94 of the level
    found = experiment.settle_time([window_with(slow), window_with([r * 2 for r in slow], floor=True)])
    assert found["settle_s"] == pytest.approx(0.4) and found["settled"]
    assert found["profile"][0][1] == pytest.approx(155 / 2 / 100)
    assert experiment.settle_time([window_with([100] * 20)])["settle_s"] == 0.0


def test_compact_leaves_the_samples_out_of_a_results_file():
    from cachelab.load import experiment

    win = {"requests_per_second": 10.0, "slots": [[0, 1, 0, 1, 0]],
           "writes": [{"route": "r", "sent": 1.0, "queries": 2}]}
    cold = {"series": [{"t": 0}], "queries_per_key": {"k": 3}, "queries_per_worker_and_key": [[1, "k", 1]],
            "staleness": {"writes": 4}}
    assert experiment.compact({"steady": {"3": {**win, "repeats": [win]}}, "cold": cold}) == {
        "steady": {"3": {"requests_per_second": 10.0, "writes": [2],
                         "repeats": [{"requests_per_second": 10.0, "writes": [2]}]}},
        "cold": {"queries_per_key": {"k": 3}, "staleness": {"writes": 4}}}


def test_a_window_lasts_its_cycles_to_a_tenth_of_a_second():
    from cachelab.load import experiment

    fast = experiment.window_seconds({"requests_per_second": 25.0, "connections": 4})  # c / X = 0.16 s
    assert fast["seconds"] == 1.1 and fast["fits"]  # 0.1 + 6 x 0.16 = 1.06 s, rounded up to a tenth
    slow = experiment.window_seconds({"requests_per_second": 2.0, "connections": 4})  # 2 s a cycle: 12.1 s needed
    assert slow["seconds"] == experiment.MAX_WINDOW_S and not slow["fits"]
    assert experiment.window_seconds({"requests_per_second": 1000.0, "connections": 4})["seconds"] == 1.0
