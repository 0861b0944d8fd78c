import itertools
import re
import subprocess
import sys

import pytest

from cachelab.timing import (
    StatementSampler,
    Timing,
    format_ns,
    from_samples,
    measure,
    measure_together,
    pick,
    table,
    take_in_turn,
    time_calls,
)


def test_format_ns_picks_unit_by_magnitude():
    assert format_ns(12.3) == "12.3 ns"
    assert format_ns(1_500) == "1.5 µs"
    assert format_ns(31_400_000) == "31.4 ms"
    assert format_ns(2.5e9) == "2.5 s"
    assert format_ns(float("nan")) == "n/a"


def test_timing_statistics_are_median_and_percentiles():
    t = Timing("x", tuple(float(v) for v in range(1, 12)))
    assert t.median == 6
    assert t.p10 == pytest.approx(2)
    assert t.p90 == pytest.approx(10)
    assert t.n == 11
    assert t.spread == pytest.approx(8 / 6)
    assert Timing("fast", (1.0,)).speedup_over(Timing("slow", (100.0,))) == 100


def test_timing_round_trips_through_dict_with_meta():
    t = Timing("op", (1.0, 2.0, 3.0), loops=10, meta={"step": "lru_cache"})
    back = Timing.from_dict(t.to_dict())
    assert back == t
    assert back.meta == {"step": "lru_cache"}


def test_empty_timing_is_rejected():
    with pytest.raises(ValueError):
        Timing("x", ())


def test_measure_warms_up_repeats_and_chooses_loops():
    calls = []
    t = measure(lambda: calls.append(1), name="append", repeat=4, min_time=0.002)
    assert t.n == 4
    assert t.loops > 1
    # warm-up (1) + calibration + 4 samples of `loops` calls each
    assert len(calls) > 1 + 4 * t.loops
    assert 0 < t.median < 1e6


def test_measure_rejects_bad_arguments():
    with pytest.raises(ValueError):
        measure("pass", repeat=0)
    with pytest.raises(ValueError):
        measure("pass", min_time=0)
    with pytest.raises(ValueError):
        measure("pass", loops=0)


def test_measure_separates_costs_that_differ():
    fast = measure("d[k]", globals={"d": {1: 2}, "k": 1}, repeat=5, min_time=0.005)
    slow = measure("sum(r)", globals={"r": range(2000)}, repeat=5, min_time=0.005)
    assert slow.median > 10 * fast.median


def test_take_in_turn_rotates_which_sampler_goes_first():
    order = []
    samples = take_in_turn({name: (lambda name=name: order.append(name) or len(order)) for name in "xyz"}, 3)
    assert order == list("xyz" "yzx" "zxy")
    assert samples == {"x": [1.0, 6.0, 8.0], "y": [2.0, 4.0, 9.0], "z": [3.0, 5.0, 7.0]}


def test_statement_sampler_chooses_its_loop_count_once():
    sampler = StatementSampler("sum(r)", globals={"r": range(100)}, min_time=0.002)
    assert sampler.loops is None
    first = sampler()
    loops = sampler.loops
    assert loops > 1 and first > 0
    assert sampler() > 0 and sampler.loops == loops


def test_measure_together_interleaves_samples_and_keeps_each_loop_count():
    log = []
    timings = measure_together({"a": lambda: log.append("a"), "b": lambda: log.append("b"),
                                "slow": "log.append('s'); sum(r)"}, globals={"r": range(2000), "log": log},
                               repeat=6, min_time=0.002, step=1)
    assert list(timings) == ["a", "b", "slow"]
    assert all(t.n == 6 and t.meta["step"] == 1 and t.name == name for name, t in timings.items())
    assert len({t.meta["in_turn"] for t in timings.values()}) == 1, "one call: one group of paired samples"
    assert timings["slow"].median > 10 * timings["a"].median
    # The samples alternate (blocks of `loops` calls each), rather than all of a, then all of b, then slow.
    blocks = [log[0]] + [x for prev, x in itertools.pairwise(log) if x != prev]
    assert all(blocks.count(name) >= 6 for name in "abs")


def test_measure_together_follows_a_machine_that_slows_down():
    """A 5x slowdown halfway through slows both operations alike, so their ratio holds.

    Measured one after the other, the first operation would see only the fast machine and the second
    only the slow one, and their ratio would come out near 50 instead of 10.
    """
    calls = [0]
    slow_after = [float("inf")]  # a number of calls: a clock would depend on how busy this machine is

    def work(n):
        calls[0] += 1
        return sum(range(n * (5 if calls[0] > slow_after[0] else 1)))

    ops = {"small": lambda: work(200), "large": lambda: work(2000)}

    def one_run():
        slow_after[0], calls[0] = float("inf"), 0
        measure_together(ops, repeat=8, min_time=0.002)  # how many calls one run makes
        slow_after[0], calls[0] = calls[0] / 3, 0
        timings = measure_together(ops, repeat=8, min_time=0.002)
        return calls[0] > 2 * slow_after[0], timings["large"].median / timings["small"].median

    # A busy moment on this machine can spoil one run; taken one after the other, every run would be near 50
    runs = [one_run() for _ in range(3)]
    assert any(slowed_during and 4 < ratio < 25 for slowed_during, ratio in runs), runs


def test_harness_overhead_is_within_2x_of_timeit():
    """A measured dict lookup comes out within 2x of `python -m timeit` for the same statement."""
    setup, stmt = "d = {i: i for i in range(1000)}; k = 500", "d[k]"
    ours = measure(stmt, setup=setup, repeat=7, min_time=0.05)
    out = subprocess.run([sys.executable, "-m", "timeit", "-r", "7", "-s", setup, stmt],
                         capture_output=True, text=True, check=True).stdout
    value, unit = re.search(r"([\d.]+) (nsec|usec|msec) per loop", out).groups()
    theirs = float(value) * {"nsec": 1, "usec": 1e3, "msec": 1e6}[unit]
    # timeit reports the best of its repeats, we report the median: compare like with like-ish, in one run.
    ratio = ours.median / theirs
    assert 0.5 < ratio < 2.0, f"harness {ours.median:.1f} ns vs timeit {theirs:.1f} ns"


def test_time_calls_returns_one_latency_per_call():
    lat = time_calls(lambda x: x * 2, range(50))
    assert lat.shape == (50,)
    assert (lat > 0).all()
    star = time_calls(lambda a, b: a + b, [(1, 2), (3, 4)], star=True)
    assert star.shape == (2,)


def test_table_and_from_samples():
    base = from_samples("slow", [100, 110, 90])
    fast = from_samples("fast", [10, 11, 9])
    text = table([base, fast], baseline=base)
    assert "fast" in text and "10x" in text


def test_pick_follows_quick_mode(monkeypatch):
    monkeypatch.setenv("CACHELAB_QUICK", "1")
    assert pick(100, 5) == 5
    monkeypatch.setenv("CACHELAB_QUICK", "0")
    assert pick(100, 5) == 100


def test_a_timing_whose_spread_is_wide_says_it_is_noisy():
    from cachelab.timing import NOISY_SPREAD

    quiet = Timing("quiet", tuple(100.0 + i for i in range(11)))
    busy = Timing("busy", tuple(100.0 * (1 + i / 5) for i in range(11)))
    assert not quiet.noisy and busy.noisy and busy.spread > NOISY_SPREAD
    assert "noisy" in str(busy) and "noisy" not in str(quiet)
    text = table([quiet, busy], baseline=quiet)
    assert "noisy" in text.splitlines()[-1] and "noisy" not in text.splitlines()[-2]


def test_factors_are_quoted_to_two_significant_figures():
    from cachelab.timing import format_factor

    assert format_factor(1_017_613) == "1,000,000x"
    assert format_factor(25_388) == "25,000x"
    assert format_factor(4.04) == "4x" and format_factor(5.43) == "5.4x" and format_factor(0.184) == "0.18x"


def test_a_noise_note_names_the_noisy_timings_or_calls_the_run_noisy():
    from cachelab.timing import noise_note

    quiet = [Timing(f"q{i}", tuple(100.0 + j for j in range(11))) for i in range(3)]
    busy = [Timing(f"b{i}", tuple(100.0 * (1 + j / 5) for j in range(11))) for i in range(3)]
    assert noise_note(quiet) == ""
    assert "b0" in noise_note(quiet + busy[:1]) and "q0" not in noise_note(quiet + busy[:1])
    assert "A noisy run: 3 of these 4" in noise_note(quiet[:1] + busy)
