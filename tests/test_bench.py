"""The benchmark, run in quick mode: it writes its JSON and figure and prints a row for every layer.

No speed ratio is asserted here (a test on a shared machine would be flaky, and the numbers belong to
the benchmark's own output); only that every row is measured, compared with its floor, and saved, that
the processes run where they were pinned, and, on made-up timings, what the verdicts say.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys

import pytest

from cachelab import bench
from cachelab.servers import memcached_client_for
from cachelab.timing import Timing

ROWS = [bench.DICT, bench.LRU, bench.CT_MAPPING, bench.CT_CACHED, bench.NEAR, bench.READ_BYTES, bench.JOBLIB,
        bench.RAW_REDIS, bench.REDIS_BENCHMARK, bench.REDIS_PY, bench.REDIS_PY_SINGLE, bench.REDIS_MGET,
        bench.RAW_MEMCACHED, bench.PYMEMCACHE, bench.PYMEMCACHE_HASH, bench.PYMEMCACHE_MANY]
if shutil.which("redis-benchmark") is None:  # redis-tools missing: the run says so and skips that row
    ROWS.remove(bench.REDIS_BENCHMARK)


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    """One quick run of ``python -m cachelab bench``, in a fresh process, on the servers of the suite."""
    out = tmp_path_factory.mktemp("bench")
    proc = subprocess.run([sys.executable, "-m", "cachelab", "bench", "--quick", "--no-progress", "--out", str(out)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "CACHELAB_QUICK": "1"})
    assert proc.returncode == 0, proc.stderr
    return out, proc.stdout


@pytest.mark.servers
def test_the_json_has_every_row_with_its_samples_and_floors(quick_run):
    out, _ = quick_run
    report = json.loads((out / "results.json").read_text())
    assert report["quick"] is True
    by_name = {row["name"]: row for row in report["rows"]}
    assert list(by_name) == ROWS
    for row in report["rows"]:
        assert row["group"] in bench.GROUPS
        assert row["n"] == len(row["samples_ns"]) >= 3 and row["median_ns"] > 0
        assert set(row["ratios"]) == set(row["floors"]) <= set(by_name)
        assert set(row["faults"]) <= set(row["floors"])  # a floor above its layer: no ratio, a fault
        assert all((r is None) == (f in row["faults"]) for f, r in row["ratios"].items())
        assert all(r > 0 for r in row["ratios"].values() if r is not None)
    assert {t["row"] for t in report["targets"]} == {bench.REDIS_PY, bench.PYMEMCACHE, bench.LRU}
    for t in report["targets"]:
        if t["floor"] in ROWS:
            assert t["met"] is None if t["fault"] else isinstance(t["met"], bool), t
    assert {(f["row"], f["floor"]) for f in report["faults"]} == {
        (row["name"], f) for row in report["rows"] for f in row["faults"]}
    assert isinstance(report["noisy"], bool)
    assert report["placement"]["client"]["allowed_cpus"]
    if bench.REDIS_BENCHMARK in ROWS:
        assert report["environment"]["redis_benchmark"].startswith("redis-benchmark")


@pytest.mark.servers
def test_the_figure_is_a_png(quick_run):
    out, _ = quick_run
    assert (out / "bench.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.servers
def test_the_table_prints_every_row_with_its_ratio_and_the_verdicts(quick_run):
    _, stdout = quick_run
    lines = stdout.splitlines()
    for name in ROWS:
        line = next((ln for ln in lines if ln.startswith(name + " ")), None)
        assert line is not None, f"no row for {name}"
        assert "floor" in line or "x " in line or "FAULT: " in line
    assert stdout.count("Target ") == 3
    assert "Noisy run" in stdout or "Quiet run" in stdout
    assert "QUICK MODE" in stdout and "results.json" in stdout


@pytest.mark.servers
def test_by_default_the_client_and_the_servers_are_pinned_apart_where_two_cpus_allow(quick_run):
    out, stdout = quick_run
    report = json.loads((out / "results.json").read_text())
    pinning = bench.default_pinning(os.sched_getaffinity(0))  # the CPUs the run could use: this process's
    assert report["pinning"] == pinning.to_dict()
    wanted = {"client": pinning.client_cpu, "redis-server": pinning.server_cpu, "memcached": pinning.server_cpu}
    for name, cpu in wanted.items():
        placement = report["placement"][name]
        assert placement["allowed_cpus"] == [cpu], name
        assert set(placement["busy_threads_ran_on"]) <= {cpu}, name
    assert pinning.describe() in stdout


@pytest.mark.servers
def test_the_raw_floor_shares_the_pymemcache_connection_and_leaves_it_in_step(memcached_server):
    client = memcached_client_for([memcached_server.address], bench.PREFIX)
    try:
        (home,) = client.clients.values()
        home.set("answer", b"v" * 300, noreply=False)
        sock = home.sock
        raw = bench.raw_memcached_get(memcached_server.address, bench.PREFIX + "answer", over=sock)
        for _ in range(3):
            raw()
        raw.close()  # a borrowed socket stays open for its owner
        assert raw.reply.startswith(b"VALUE " + (bench.PREFIX + "answer").encode())
        assert client.get("answer") == b"v" * 300 and home.sock is sock
    finally:
        client.close()


@pytest.mark.servers
def test_pinning_puts_the_client_and_private_servers_on_one_cpu(tmp_path):
    cpu = min(os.sched_getaffinity(0))
    proc = subprocess.run([sys.executable, "-m", "cachelab", "bench", "--quick", "--no-progress", "--private",
                           "--pin", str(cpu), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "CACHELAB_QUICK": "1"})
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "results.json").read_text())
    for name in ("client", "redis-server", "memcached"):
        placement = report["placement"][name]
        assert placement["allowed_cpus"] == [cpu], name
        assert placement["busy_threads_ran_on"] == [cpu], name
    assert report["pinning"] == {"client_cpu": cpu, "server_cpu": cpu}
    assert f"Pinned to CPU {cpu}: the client and the servers on one CPU." in proc.stdout


def test_a_cpu_that_does_not_exist_is_refused_with_the_choices():
    proc = subprocess.run([sys.executable, "-m", "cachelab", "bench", "--pin", "4096"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 2
    assert "--pin takes a CPU this process may use" in proc.stderr


def test_resp_commands_are_encoded_as_redis_reads_them():
    assert bench.resp_command("GET", "k") == b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"
    assert bench.resp_command("SET", b"\xff", "é") == b"*3\r\n$3\r\nSET\r\n$1\r\n\xff\r\n$2\r\n\xc3\xa9\r\n"
    with pytest.raises(ValueError):
        bench.resp_command()
    with pytest.raises(TypeError):
        bench.resp_command("GET", 1)


def synthetic_report(memcached: dict | None = None, pinning: bench.Pinning | None = None,
                     redis_py: float = 90_000.0, redis_benchmark: float = 33_000.0, **spreads) -> bench.Report:
    """A report built from made-up timings: the verdicts are arithmetic on them, no machine involved.

    ``memcached`` adds the memcached rows with these medians (ns), by row name.
    """
    def t(name, median, spread=0.0, **meta):
        return Timing(name, (median * (1 - spread / 2), median, median * (1 + spread / 2)), 1, meta)

    rows = [
        bench.Row("in-process", t(bench.DICT, 20.0)),
        bench.Row("in-process", t(bench.LRU, 60.0, spreads.get("lru", 0.0)), (bench.DICT,)),
        bench.Row("network", t(bench.RAW_REDIS, 30_000.0)),
        bench.Row("network", t(bench.REDIS_BENCHMARK, redis_benchmark), (bench.RAW_REDIS,), bound=False),
        bench.Row("network", t(bench.REDIS_PY, redis_py), (bench.REDIS_BENCHMARK, bench.RAW_REDIS)),
        bench.Row("network", t(bench.REDIS_PY_SINGLE, 60_000.0), (bench.REDIS_BENCHMARK, bench.RAW_REDIS)),
    ]
    if memcached:
        rows += [
            bench.Row("network", t(bench.RAW_MEMCACHED, memcached[bench.RAW_MEMCACHED])),
            bench.Row("network", t(bench.PYMEMCACHE, memcached[bench.PYMEMCACHE]), (bench.RAW_MEMCACHED,)),
            bench.Row("network", t(bench.PYMEMCACHE_MANY, memcached[bench.PYMEMCACHE_MANY], batch=bench.BATCH),
                      (bench.RAW_MEMCACHED,)),
        ]
    env = {"cpus": 2, "loadavg_before": [0.1, 0, 0], "python": "3", "cpu": "a CPU", "servers": {}}
    return bench.Report(rows, {}, pinning, bench.Settings(quick=True), env)


# The scheduler's doing in one unpinned run: the raw floor measured over a slower placement than the client.
FLOOR_ABOVE = {bench.RAW_MEMCACHED: 100_000.0, bench.PYMEMCACHE: 71_000.0, bench.PYMEMCACHE_MANY: 5_800.0}
FLOOR_BELOW = {bench.RAW_MEMCACHED: 20_000.0, bench.PYMEMCACHE: 25_000.0, bench.PYMEMCACHE_MANY: 3_300.0}


def test_targets_are_the_ratio_of_medians_to_the_floor():
    report = synthetic_report()
    targets = {t["row"]: t for t in report.targets()}
    assert targets[bench.LRU]["ratio"] == pytest.approx(3.0) and targets[bench.LRU]["met"] is True
    assert targets[bench.REDIS_PY]["ratio"] == pytest.approx(90 / 33) and targets[bench.REDIS_PY]["met"] is False
    assert targets[bench.PYMEMCACHE]["ratio"] is None and targets[bench.PYMEMCACHE]["met"] is None
    summary = report.summary()
    assert "2.73x, MISSED" in summary and "With one connection instead of the pool, redis-py is 1.82x" in summary
    assert "3.00x, met" in summary and "pymemcache GET within 2x of raw socket get (memcached): not measured" in summary


def test_the_table_shows_each_floor_and_each_ratio():
    table = synthetic_report().table()
    assert "[in-process]" in table and "[network]" in table and "[disk]" not in table
    assert "3x dict lookup" in table
    assert "2.73x redis-benchmark -c 1 GET, 3x raw socket GET (Redis)" in table
    assert sum(line.endswith("  floor") for line in table.splitlines()) == 2  # the header ends "to floor"


def test_a_row_whose_repeats_spread_widely_makes_the_run_noisy():
    assert not synthetic_report().noisy and "Quiet run" in synthetic_report().summary()
    noisy = synthetic_report(lru=0.8)
    assert noisy.noisy_rows() == [bench.LRU]
    assert "Noisy run: 1 of 6 rows spread by more than 30% of their median" in noisy.summary()


def test_a_floor_above_its_layer_is_a_fault_of_the_measurement_not_a_ratio():
    report = synthetic_report(FLOOR_ABOVE)
    assert report.faults() == [{"row": bench.PYMEMCACHE, "floor": bench.RAW_MEMCACHED,
                                "row_median_ns": 71_000.0, "floor_median_ns": 100_000.0}]
    target = next(t for t in report.targets() if t["row"] == bench.PYMEMCACHE)
    assert target["fault"] is True and target["ratio"] is None and target["met"] is None
    line = next(ln for ln in report.table().splitlines() if ln.startswith(bench.PYMEMCACHE + " "))
    assert line.endswith(f"FAULT: {bench.RAW_MEMCACHED} came out above it") and "0.71" not in line
    summary = report.summary()
    assert "pymemcache GET within 2x of raw socket get (memcached): no verdict" in summary
    assert (f"MEASUREMENT FAULT: {bench.RAW_MEMCACHED} (100 µs) came out above {bench.PYMEMCACHE} (71 µs)"
            in summary)
    assert "Rerun pinned (the default, without --no-pin) on a quieter machine." in summary
    rows = {r["name"]: r for r in report.to_dict()["rows"]}
    assert rows[bench.PYMEMCACHE]["ratios"] == {bench.RAW_MEMCACHED: None}
    assert rows[bench.PYMEMCACHE]["faults"] == [bench.RAW_MEMCACHED]
    assert report.to_dict()["faults"] == report.faults()


def test_a_batch_or_a_second_floor_below_its_floor_and_a_layer_above_it_are_no_faults():
    assert synthetic_report(FLOOR_BELOW).faults() == []
    c_client = synthetic_report(redis_benchmark=27_000.0)  # the C client beats the raw socket driven from Python
    assert c_client.faults() == [] and "0.9x raw socket GET (Redis)" in c_client.table()
    report = synthetic_report(FLOOR_ABOVE)  # get_many per key is meant to beat the round trip
    assert bench.PYMEMCACHE_MANY not in {f["row"] for f in report.faults()}
    line = next(ln for ln in report.table().splitlines() if ln.startswith(bench.PYMEMCACHE_MANY + " "))
    assert line.endswith(f"0.058x {bench.RAW_MEMCACHED}")
    target = next(t for t in synthetic_report(FLOOR_BELOW).targets() if t["row"] == bench.PYMEMCACHE)
    assert target["fault"] is False and target["ratio"] == pytest.approx(1.25) and target["met"] is True


@pytest.mark.parametrize(("memcached", "strict", "code"), [(FLOOR_ABOVE, True, 1), (FLOOR_ABOVE, False, 0),
                                                           (FLOOR_BELOW, True, 0)])
def test_strict_fails_on_a_measurement_fault(monkeypatch, tmp_path, capsys, memcached, strict, code):
    module = importlib.import_module("cachelab.bench.run")  # every target met: only the fault can fail the run
    monkeypatch.setattr(module, "run", lambda **kwargs: synthetic_report(memcached, redis_py=60_000.0))
    argv = ["--no-progress", "--out", str(tmp_path)] + (["--strict"] if strict else [])
    assert bench.main(argv) == code
    assert ("MEASUREMENT FAULT" in capsys.readouterr().out) == (memcached is FLOOR_ABOVE)


def test_the_default_pinning_gives_the_client_and_the_servers_a_cpu_each_where_there_are_two():
    apart = bench.default_pinning({7, 3, 5})
    assert (apart.client_cpu, apart.server_cpu) == (3, 5) and not apart.one_cpu
    alone = bench.default_pinning({4})
    assert alone.client_cpu == alone.server_cpu == 4 and alone.one_cpu
    allowed = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else set(range(os.cpu_count() or 1))
    here = bench.choose_pinning(None, False, allowed)
    assert {here.client_cpu, here.server_cpu} <= allowed
    assert (here.client_cpu != here.server_cpu) == (len(allowed) >= 2)
    with pytest.raises(ValueError):
        bench.default_pinning(set())


def test_pin_puts_everything_on_one_cpu_and_no_pin_pins_nothing():
    assert bench.choose_pinning(5, False, {1, 5}) == bench.Pinning(5, 5)
    assert bench.choose_pinning(None, True, {1, 5}) is None
    with pytest.raises(ValueError, match="one of \\[1, 5\\]"):
        bench.choose_pinning(2, False, {1, 5})
    with pytest.raises(ValueError, match="contradict"):
        bench.choose_pinning(1, True, {1, 5})


def test_the_summary_names_the_pinning_and_a_process_that_ran_elsewhere():
    placement = {"client": {"allowed_cpus": [0], "busy_threads": 1, "busy_threads_ran_on": [0]},
                 "memcached": {"allowed_cpus": [0, 1], "busy_threads": 2, "busy_threads_ran_on": [0, 1]}}
    report = synthetic_report(pinning=bench.Pinning(0, 1))
    report.placement = placement
    summary = report.summary()
    assert "Pinned: the client on CPU 0, the servers on CPU 1." in summary
    assert "memcached was pinned to CPU 1 but its busy threads ran on [0, 1]." in summary
    assert "client was pinned" not in summary
    assert report.to_dict()["pinning"] == {"client_cpu": 0, "server_cpu": 1}
    assert "Not pinned (--no-pin" in synthetic_report().summary()
