"""Bad arguments to the functions notebooks and readers call fail at once, with a clear error.

A wrong type raises ``TypeError``, a value that makes no sense raises ``ValueError`` (see
:mod:`cachelab.arguments`), and the message names the argument. Internal functions are not checked
argument by argument: the checks sit where a reader or a notebook passes values in. The helpers of the
later notebooks get cases for the errors users meet most: unknown policy or method names, impossible sizes.
"""

from __future__ import annotations

import socket
import time

import matplotlib.pyplot as plt
import pytest

from cachelab import (
    cache_aside,
    data,
    exercises,
    expiry,
    lab,
    paths,
    plots,
    policies,
    results,
    servers,
    sharding,
    timing,
    workload,
)
from cachelab.timing import Timing

T = Timing("t", (1.0, 2.0, 3.0))
NOTEBOOK = "99_test_bad_input"
PREFIX = "cachelab:99_test_bad_input:"


def no_servers() -> servers.Servers:
    return servers.Servers(servers.RedisEndpoint("test", False, url=f"redis://127.0.0.1:{servers.free_port()}/0"),
                           servers.MemcachedEndpoint("test", False, nodes=[("127.0.0.1", 1)]))


def read_only_service() -> data.FlightService:
    return data.FlightService()


# Each case: (the function it exercises, the call, the error, a regex the message must match).
CASES = [
    # timing
    ("timing.format_ns", lambda: timing.format_ns("12"), TypeError, "ns must be a number"),
    ("timing.format_ns", lambda: timing.format_ns(12, digits=0), ValueError, "digits"),
    ("timing.Timing", lambda: Timing("x", ()), ValueError, "at least one sample"),
    ("timing.Timing", lambda: Timing("x", (-1.0,)), ValueError, "durations"),
    ("timing.Timing", lambda: Timing("x", (float("nan"),)), ValueError, "NaN"),
    ("timing.Timing", lambda: Timing("x", ("fast",)), TypeError, "samples_ns must be a sequence of numbers"),
    ("timing.Timing", lambda: Timing("x", "123"), TypeError, "not a str"),
    ("timing.Timing", lambda: Timing("x", (1.0,), loops=0), ValueError, "loops"),
    ("timing.Timing", lambda: Timing(3, (1.0,)), TypeError, "name must be a str"),
    ("timing.Timing.speedup_over", lambda: T.speedup_over(3.0), TypeError, "other must be a Timing"),
    ("timing.Timing.from_dict", lambda: Timing.from_dict([1]), TypeError, "data must be a dict"),
    ("timing.Timing.from_dict", lambda: Timing.from_dict({"name": "x"}), ValueError, "samples_ns"),
    ("timing.measure", lambda: timing.measure(3), TypeError, "stmt"),
    ("timing.measure", lambda: timing.measure("pass", repeat=0), ValueError, "repeat"),
    ("timing.measure", lambda: timing.measure("pass", repeat=2.5), TypeError, "repeat must be an integer"),
    ("timing.measure", lambda: timing.measure("pass", min_time=0), ValueError, "min_time"),
    ("timing.measure", lambda: timing.measure("pass", min_time=float("nan")), ValueError, "min_time"),
    ("timing.measure", lambda: timing.measure("pass", min_time=float("inf")), ValueError, "min_time"),
    ("timing.measure", lambda: timing.measure("pass", min_time="1"), TypeError, "min_time must be a number"),
    ("timing.measure", lambda: timing.measure("pass", loops=0), ValueError, "loops"),
    ("timing.measure", lambda: timing.measure("pass", warmup=-1), ValueError, "warmup"),
    ("timing.measure_together", lambda: timing.measure_together(["pass"]), TypeError, "stmts must be a mapping"),
    ("timing.measure_together", lambda: timing.measure_together({}), ValueError, "at least one operation"),
    ("timing.measure_together", lambda: timing.measure_together({1: "pass"}), TypeError, "a name in stmts"),
    ("timing.measure_together", lambda: timing.measure_together({"x": 3}), TypeError, "must be a statement string"),
    ("timing.measure_together", lambda: timing.measure_together({"x": "pass"}, repeat=0), ValueError, "repeat"),
    ("timing.StatementSampler", lambda: timing.StatementSampler(3), TypeError, "stmt must be a statement"),
    ("timing.StatementSampler", lambda: timing.StatementSampler("pass", warmup=-1), ValueError, "warmup"),
    ("timing.take_in_turn", lambda: timing.take_in_turn([print], 3), TypeError, "samplers must be a mapping"),
    ("timing.take_in_turn", lambda: timing.take_in_turn({}, 3), ValueError, "at least one operation"),
    ("timing.take_in_turn", lambda: timing.take_in_turn({"x": 3}, 3), TypeError, "must be callable"),
    ("timing.take_in_turn", lambda: timing.take_in_turn({"x": time.perf_counter}, 0), ValueError, "repeat"),
    ("timing.time_calls", lambda: timing.time_calls(3, []), TypeError, "func must be callable"),
    ("timing.time_calls", lambda: timing.time_calls(print, 3), TypeError, "not iterable"),
    ("timing.from_samples", lambda: timing.from_samples("x", []), ValueError, "at least one sample"),
    ("timing.from_samples", lambda: timing.from_samples("x", ["a"]), ValueError, "could not convert"),
    ("timing.table", lambda: timing.table([1, 2]), TypeError, "each timing must be a Timing"),
    ("timing.table", lambda: timing.table([T], baseline=3), TypeError, "baseline must be a Timing"),
    # results
    ("results.Results", lambda: results.Results(5), TypeError, "notebook must be a str"),
    ("results.Results", lambda: results.Results(""), ValueError, "notebook name"),
    ("results.Results", lambda: results.Results("../elsewhere"), ValueError, "notebook name"),
    ("results.Results", lambda: results.Results(".hidden"), ValueError, "notebook name"),
    ("results.Results.add", lambda: results.Results(NOTEBOOK).add(3), TypeError, "expected a Timing"),
    ("results.Results.add", lambda: results.Results(NOTEBOOK).add(T, key=3), TypeError, "key must be a str"),
    ("results.Results.put", lambda: results.Results(NOTEBOOK).put(3, 1), TypeError, "key must be a str"),
    ("results.Results.put", lambda: results.Results(NOTEBOOK).put("k", {1, 2}), TypeError, "not JSON serializable"),
    ("results.SavedResults", lambda: results.SavedResults({}), ValueError, "not a results file"),
    ("results.SavedResults", lambda: results.SavedResults([]), TypeError, "payload must be a dict"),
    ("results.load", lambda: results.load("../../etc/passwd"), ValueError, "notebook name"),
    ("results.load", lambda: results.load(5), TypeError, "notebook must be a str"),
    ("results.load", lambda: results.load("99_never_ran"), results.ResultsMissing, "Run notebooks/99_never_ran"),
    # plots
    ("plots.save", lambda: plots.save(3, "x"), TypeError, "fig must be a matplotlib Figure"),
    ("plots.save", lambda: plots.save(plt.figure(), 3), TypeError, "name must be a str"),
    ("plots.latency_chart", lambda: plots.latency_chart([]), ValueError, "at least one Timing"),
    ("plots.latency_chart", lambda: plots.latency_chart([1.0]), TypeError, "each timing must be a Timing"),
    ("plots.speedup_chart", lambda: plots.speedup_chart([], T), ValueError, "at least one Timing"),
    ("plots.speedup_chart", lambda: plots.speedup_chart([T], 3), TypeError, "baseline must be a Timing"),
    ("plots.curve_chart", lambda: plots.curve_chart([1], {}, xlabel="x", ylabel="y"), ValueError, "at least one"),
    ("plots.curve_chart", lambda: plots.curve_chart([1, 2], {"a": [1]}, xlabel="x", ylabel="y"), ValueError,
     "1 points for 2 x values"),
    ("plots.curve_chart", lambda: plots.curve_chart([1], [1], xlabel="x", ylabel="y"), TypeError,
     "curves must be a Mapping"),
    ("plots.hit_ratio_chart", lambda: plots.hit_ratio_chart([], {"LRU": []}), ValueError, "at least one cache size"),
    ("plots.hit_ratio_chart", lambda: plots.hit_ratio_chart([10], {"LRU": [1.5]}), ValueError, "between 0 and 1"),
    ("plots.distribution_chart", lambda: plots.distribution_chart([1, 2]), TypeError, "samples must be a Mapping"),
    ("plots.distribution_chart", lambda: plots.distribution_chart({}), ValueError, "at least one"),
    ("plots.bar_chart", lambda: plots.bar_chart([1, 2], ylabel="y"), TypeError, "values must be a Mapping"),
    ("plots.bar_chart", lambda: plots.bar_chart({}, ylabel="y"), ValueError, "at least one value"),
    # data
    ("data.build_database", lambda: data.build_database(3), TypeError, "target must be a str or PathLike"),
    ("data.copy_database", lambda: data.copy_database(3), TypeError, "destination must be a str or PathLike"),
    ("data.copy_database", lambda: data.copy_database(data.database_path()), ValueError, "other than the shared"),
    ("data.Route", lambda: data.Route("JFK", "LAX", 13), ValueError, "month must be at most 12"),
    ("data.Route", lambda: data.Route("JFK", "LAX", 0), ValueError, "month must be at least 1"),
    ("data.Route", lambda: data.Route("JFK", "LAX", "07"), TypeError, "month must be an integer"),
    ("data.Route", lambda: data.Route(1, "LAX", 7), TypeError, "origin must be a str"),
    ("data.Route", lambda: data.Route("JFK", "", 7), ValueError, "dest must not be empty"),
    ("data.FlightService", lambda: data.FlightService("/no/such/flights.sqlite"), FileNotFoundError, "no database"),
    ("data.FlightService", lambda: data.FlightService(3), TypeError, "db_path must be a str or PathLike"),
    ("data.FlightService", lambda: data.FlightService(writable=True), ValueError, "copy_database"),
    ("data.FlightService.route_delay", lambda: read_only_service().route_delay("JFK", "LAX", 1.5), TypeError,
     "month must be an integer"),
    ("data.FlightService.route_delay", lambda: read_only_service().route_delay("JFK", "LAX", 13), ValueError,
     "month"),
    ("data.FlightService.route_delay", lambda: read_only_service().route_delay(None, "LAX", 7), TypeError,
     "origin must be a str"),
    ("data.FlightService.ask", lambda: read_only_service().ask(("JFK", "LAX", 7)), TypeError,
     "route must be a Route"),
    ("data.FlightService.arrival_delays", lambda: read_only_service().arrival_delays(3), TypeError,
     "origin must be a str"),
    ("data.FlightService.arrival_delays", lambda: read_only_service().arrival_delays("JFK", 3), TypeError,
     "dest must be a str"),
    ("data.FlightService.record_flight", lambda: read_only_service().record_flight("JFK", "LAX", 7, 10.0),
     ValueError, "readonly"),
    ("data.bootstrap_ci", lambda: data.bootstrap_ci([]), ValueError, "non-empty"),
    ("data.bootstrap_ci", lambda: data.bootstrap_ci([1.0, float("nan")]), ValueError, "finite"),
    ("data.bootstrap_ci", lambda: data.bootstrap_ci([1.0], n_boot=2.5), TypeError, "n_boot must be an integer"),
    ("data.bootstrap_ci", lambda: data.bootstrap_ci([1.0], n_boot=0), ValueError, "n_boot"),
    ("data.bootstrap_ci", lambda: data.bootstrap_ci([1.0], confidence=1.5), ValueError, "confidence"),
    # workload
    ("workload.zipf_weights", lambda: workload.zipf_weights(0), ValueError, "n_keys"),
    ("workload.zipf_weights", lambda: workload.zipf_weights(True), ValueError, "n_keys"),
    ("workload.zipf_weights", lambda: workload.zipf_weights(3, -0.5), ValueError, "alpha"),
    ("workload.zipf_weights", lambda: workload.zipf_weights(3, "steep"), TypeError, "alpha must be a number"),
    ("workload.zipf_ranks", lambda: workload.zipf_ranks(-1, 3), ValueError, "n_requests"),
    ("workload.zipf_ranks", lambda: workload.zipf_ranks(10, 0), ValueError, "n_keys"),
    ("workload.zipf_stream", lambda: workload.zipf_stream([], 10), ValueError, "keys must not be empty"),
    ("workload.zipf_stream", lambda: workload.zipf_stream(["a"], 2.5), ValueError, "n_requests"),
    ("workload.zipf_stream", lambda: workload.zipf_stream(3, 10), TypeError, "not iterable"),
    ("workload.uniform_stream", lambda: workload.uniform_stream(["a"], -1), ValueError, "n_requests"),
    ("workload.uniform_stream", lambda: workload.uniform_stream(["a"], "3"), TypeError, "n_requests must be"),
    ("workload.uniform_stream", lambda: workload.uniform_stream([], 3), ValueError, "keys must not be empty"),
    ("workload.with_scan", lambda: workload.with_scan([1], [2], at=1.5), ValueError, "between 0 and 1"),
    ("workload.with_scan", lambda: workload.with_scan([1], [2], at="middle"), TypeError, "at must be a number"),
    ("workload.repeat_fraction", lambda: workload.repeat_fraction(3), TypeError, "len"),
    ("workload.repeat_fraction", lambda: workload.repeat_fraction([[1], [1]]), TypeError, "unhashable"),
    ("workload.repeat_fraction_curve", lambda: workload.repeat_fraction_curve([1, 2], [3]), ValueError,
     "between 0 and len"),
    ("workload.hit_ratio", lambda: workload.hit_ratio(-1, 2), ValueError, "hits must be at least 0"),
    ("workload.hit_ratio", lambda: workload.hit_ratio(1.5, 2), TypeError, "hits must be an integer"),
    ("workload.standard_stream", lambda: workload.standard_stream([], 3), ValueError, "keys must not be empty"),
    ("workload.standard_stream", lambda: workload.standard_stream(["a"], -3), ValueError, "n_requests"),
    # servers
    ("servers.prefix_for", lambda: servers.prefix_for(5), TypeError, "notebook must be a str"),
    ("servers.prefix_for", lambda: servers.prefix_for("a b"), ValueError, "without spaces"),
    ("servers.prefix_for", lambda: servers.prefix_for("01:x"), ValueError, "':'"),
    ("servers.prefix_for", lambda: servers.prefix_for("*"), ValueError, "'\\*'"),
    ("servers.parse_memcached_servers", lambda: servers.parse_memcached_servers(5), TypeError, "must be a str"),
    ("servers.parse_memcached_servers", lambda: servers.parse_memcached_servers("h:0"), ValueError, "host:port"),
    ("servers.parse_memcached_servers", lambda: servers.parse_memcached_servers("h:65536"), ValueError, "host:port"),
    ("servers.parse_redis_url", lambda: servers.parse_redis_url(5), TypeError, "REDIS_URL must be a str"),
    ("servers.parse_redis_url", lambda: servers.parse_redis_url("http://:secret@h"), ValueError, "redis://"),
    ("servers.parse_redis_url", lambda: servers.parse_redis_url("redis://h:0/0"), ValueError, "bad port"),
    ("servers.parse_redis_url", lambda: servers.parse_redis_url("redis://h:6379/cache"), ValueError, "database"),
    ("servers.ManagedServer", lambda: servers.ManagedServer("mysql", 3306), ValueError, "unknown server kind"),
    ("servers.ManagedServer.url", lambda: servers.ManagedServer("memcached", 11211).url, AttributeError,
     "only a Redis server"),
    ("servers.start_redis", lambda: servers.start_redis(-1), ValueError, "port"),
    ("servers.start_redis", lambda: servers.start_redis("6379"), TypeError, "port must be an integer"),
    ("servers.start_redis", lambda: servers.start_redis(password=5), TypeError, "password must be a str"),
    ("servers.start_redis", lambda: servers.start_redis(memory_mb="64"), TypeError, "memory_mb"),
    ("servers.start_redis", lambda: servers.start_redis(memory_mb=0), ValueError, "memory_mb"),
    ("servers.start_redis", lambda: servers.start_redis(attempts=0), ValueError, "attempts"),
    ("servers.start_memcached", lambda: servers.start_memcached(99999), ValueError, "port must be at most 65535"),
    ("servers.start_memcached", lambda: servers.start_memcached(memory_mb=-8), ValueError, "memory_mb"),
    ("servers.JsonSerde.serialize", lambda: servers.JsonSerde().serialize("k", {1}), TypeError,
     "not JSON serializable"),
    ("servers.JsonSerde.deserialize", lambda: servers.JsonSerde().deserialize("k", b"x", 8), ValueError,
     "not written by JsonSerde"),
    ("servers.Servers", lambda: servers.Servers("redis://h", None), TypeError, "redis must be a RedisEndpoint"),
    ("servers.Servers.redis_client",
     lambda: servers.Servers(servers.RedisEndpoint("x", False, url="http://h"), None).redis_client(),
     ValueError, "redis://"),
    ("servers.Servers.memcached_client", lambda: no_servers().memcached_client("user:"), ValueError,
     "project prefix"),
    ("servers.Servers.memcached_client", lambda: no_servers().memcached_client(PREFIX, nodes=["h:1"]), TypeError,
     "host, port"),
    ("servers.Servers.memcached_node", lambda: no_servers().memcached_node(5, PREFIX), ValueError,
     "index must be at most 0"),
    ("servers.Servers.memcached_node", lambda: no_servers().memcached_node(0, "cachelab:"), ValueError,
     "project prefix"),
    ("servers.Servers.cleanup", lambda: no_servers().cleanup("*"), ValueError, "project prefix"),
    ("servers.cleanup_redis", lambda: servers.cleanup_redis(None, "user:"), ValueError, "project prefix"),
    ("servers.cleanup_redis", lambda: servers.cleanup_redis(None, PREFIX), TypeError, "redis.Redis client"),
    ("servers.pid_alive", lambda: servers.pid_alive(0), ValueError, "pid must be at least 1"),
    ("servers.pid_alive", lambda: servers.pid_alive("1"), TypeError, "pid must be an integer"),
    ("servers.redis_client_for", lambda: servers.redis_client_for("http://h"), ValueError, "redis://"),
    ("servers.redis_client_for", lambda: servers.redis_client_for("redis://h", retries=-1), ValueError,
     "retries"),
    ("servers.cleanup_memcached", lambda: servers.cleanup_memcached(("127.0.0.1", 1), ""), ValueError,
     "project prefix"),
    # lab
    ("lab.Lab", lambda: lab.Lab(5), TypeError, "notebook must be a str"),
    ("lab.Lab", lambda: lab.Lab("two words"), ValueError, "without spaces"),
    ("lab.start", lambda: lab.start("", quiet=True), ValueError, "notebook name"),
    ("lab.start", lambda: lab.start("a/b", quiet=True), ValueError, "notebook name"),
    ("lab.Lab.record", lambda: lab.Lab(NOTEBOOK).record("fast"), TypeError, "expected a Timing"),
    # exercises
    ("exercises.check_close", lambda: exercises.check_close(1.0, 1.0, rel=-1), ValueError, "tolerances"),
    # the helpers of the later notebooks: unknown names and impossible sizes
    ("policies.make_cache", lambda: policies.make_cache("LRV", 10), ValueError, "unknown policy 'LRV'"),
    ("policies.make_cache", lambda: policies.make_cache("lru", 10), ValueError, "expected one of LRU"),
    ("policies.make_cache", lambda: policies.make_cache("LRU", -1), ValueError, "maxsize"),
    ("policies.hit_ratio_curves", lambda: policies.hit_ratio_curves([1], [10], ["MRU"]), ValueError,
     "unknown policy"),
    ("policies.rolling_hit_ratio", lambda: policies.rolling_hit_ratio([True], 0), ValueError, "window"),
    ("sharding.assign", lambda: sharding.assign(["k"], [("h", 1)], "consistent"), ValueError, "method"),
    ("sharding.assign", lambda: sharding.assign(["k"], []), ValueError, "at least one node"),
    ("cache_aside.jittered_ttl", lambda: cache_aside.jittered_ttl(0), ValueError, "ttl must be positive"),
    ("cache_aside.jittered_ttl", lambda: cache_aside.jittered_ttl(10, 1.0), ValueError, "jitter"),
    ("expiry.ManualClock.advance", lambda: expiry.ManualClock().advance(-1), ValueError, "backwards"),
    ("expiry.replay_with_updates", lambda: expiry.replay_with_updates([], 0), ValueError, "ttl"),
]

@pytest.mark.parametrize(("function", "call", "error", "message"), CASES,
                         ids=[f"{c[0]}-{i}" for i, c in enumerate(CASES)])
def test_bad_arguments_are_rejected_with_a_clear_error(function, call, error, message):
    with pytest.raises(error, match=message):
        call()
    plt.close("all")


def test_a_results_folder_that_is_a_file_is_named_in_the_error(tmp_path, monkeypatch):
    taken = tmp_path / "not-a-folder"
    taken.write_text("a file")
    monkeypatch.setenv("CACHELAB_RESULTS_DIR", str(taken))
    with pytest.raises(ValueError, match="CACHELAB_RESULTS_DIR"):
        paths.results_dir()


def test_good_arguments_still_pass():
    """The checks refuse only what is wrong: NumPy integers, paths and edge values are accepted."""
    import numpy as np

    assert timing.format_ns(np.float64(1500)) == "1.5 µs" and timing.format_ns(float("nan")) == "n/a"
    assert Timing("x", [1, 2, 3], loops=np.int64(2)).samples_ns == (1.0, 2.0, 3.0)
    assert data.Route("JFK", "LAX", np.int64(7)).month == 7
    assert workload.hit_ratio(0, 0) == 0.0
    assert workload.with_scan(iter([1, 2]), ["s"], at=1) == [1, 2, "s"]
    assert servers.parse_redis_url("redis://:p%40ss@h:6380/2")["password"] == "p@ss"
    assert servers.parse_memcached_servers("h:1,[::1]:2") == [("h", 1), ("::1", 2)]
    assert servers.prefix_for("07_choosing_a_cache") == "cachelab:07_choosing_a_cache:"
    assert not servers.port_in_use(servers.free_port())
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(1)
        assert servers.port_in_use(listener.getsockname()[1])
