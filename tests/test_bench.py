"""The benchmark, run in quick mode: it writes its JSON and figure and prints a row for every layer.

No speed ratio is asserted here (a test on a shared machine would be flaky, and the numbers belong to
the benchmark's own output); only that every row is measured, compared with its floor, and saved.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from cachelab import bench
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
        assert all(r > 0 for r in row["ratios"].values())
    assert {t["row"] for t in report["targets"]} == {bench.REDIS_PY, bench.PYMEMCACHE, bench.LRU}
    assert all(isinstance(t["met"], bool) for t in report["targets"] if t["floor"] in ROWS)
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
        assert "floor" in line or "x " in line
    assert stdout.count("Target ") == 3
    assert "Noisy run" in stdout or "Quiet run" in stdout
    assert "QUICK MODE" in stdout and "results.json" in stdout


@pytest.mark.servers
def test_pinning_puts_the_client_and_private_servers_on_one_cpu(tmp_path):
    cpu = min(os.sched_getaffinity(0))
    proc = subprocess.run([sys.executable, "-m", "cachelab", "bench", "--quick", "--no-progress", "--private",
                           "--pin", str(cpu), "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=300, env={**os.environ, "CACHELAB_QUICK": "1"})
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "results.json").read_text())
    assert report["pinned_cpu"] == cpu
    for name in ("client", "redis-server", "memcached"):
        placement = report["placement"][name]
        assert placement["allowed_cpus"] == [cpu], name
        assert placement["busy_threads_ran_on"] == [cpu], name
    assert f"Pinned to CPU {cpu}." in proc.stdout


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


def synthetic_report(**spreads) -> bench.Report:
    """A report built from made-up timings: the verdicts are arithmetic on them, no machine involved."""
    def t(name, median, spread=0.0):
        return Timing(name, (median * (1 - spread / 2), median, median * (1 + spread / 2)))

    rows = [
        bench.Row("in-process", t(bench.DICT, 20.0)),
        bench.Row("in-process", t(bench.LRU, 60.0, spreads.get("lru", 0.0)), (bench.DICT,)),
        bench.Row("network", t(bench.RAW_REDIS, 30_000.0)),
        bench.Row("network", t(bench.REDIS_BENCHMARK, 33_000.0), (bench.RAW_REDIS,)),
        bench.Row("network", t(bench.REDIS_PY, 90_000.0), (bench.REDIS_BENCHMARK, bench.RAW_REDIS)),
        bench.Row("network", t(bench.REDIS_PY_SINGLE, 60_000.0), (bench.REDIS_BENCHMARK, bench.RAW_REDIS)),
    ]
    return bench.Report(rows, {}, None, bench.Settings(quick=True), {"cpus": 2, "loadavg_before": [0.1, 0, 0]})


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
