"""The claims mechanism: its intervals are exact, its verdicts can fail, and it never raises in a reader's run.

Each verdict is proven reachable with injected samples: a real effect is *shown*, no effect is *not shown*,
a reversal is *reversed*, a condition that does not hold is *not applicable*. Under ``CACHELAB_CLAIMS=strict``
the runner executes a cell again when its claim is not shown (three attempts in all) and fails the notebook
when it never is, or when it is reversed. A server reached through a delaying proxy makes a loopback claim
*not applicable*, where the same server reached directly judges it.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter

import nbformat
import numpy as np
import pytest

from cachelab import claims
from cachelab.claims import NOT_APPLICABLE, NOT_SHOWN, REVERSED, SHOWN, Condition, judge
from cachelab.timing import Timing, measure_together

RNG = np.random.default_rng(2013)


def noisy(median, n, spread=0.05, rng=RNG):
    return median * rng.lognormal(0, spread, n)


# --------------------------------------------------------------------------- the intervals, exact

def brute_mann_whitney(m, n):
    counts = Counter()
    for first in itertools.combinations(range(m + n), m):
        chosen = set(first)
        counts[sum(sum(1 for j in range(i) if j not in chosen) for i in chosen)] += 1
    total = math.comb(m + n, m)
    return np.cumsum([counts[u] / total for u in range(m * n + 1)])


@pytest.mark.parametrize("m,n", [(2, 2), (3, 3), (3, 5), (5, 4), (6, 6)])
def test_the_rank_distribution_is_exact(m, n):
    assert np.allclose(claims._mann_whitney_cdf(m, n), brute_mann_whitney(m, n))


def test_the_sign_interval_takes_the_order_statistics_its_coverage_allows():
    median, low, high, coverage = claims.sign_interval(range(1, 12))  # 11 values: x(2) and x(10), 98.8%
    assert (median, low, high) == (6, 2, 10)
    assert coverage == pytest.approx(1 - 2 * 12 / 2 ** 11)
    assert claims.sign_interval([5, 1, 4, 2, 3])[1:] == (1, 5, 1 - 2 / 32)  # 5 values: the widest, 93.75%


def test_intervals_cover_as_often_as_they_say():
    """Under no effect, a 95% claim is shown in at most about 2.5% of runs (one side), paired or not."""
    rng = np.random.default_rng(7)
    shown = {"paired": 0, "independent": 0}
    trials = 400
    for _ in range(trials):
        a, b = noisy(100, 11, 0.2, rng), noisy(100, 11, 0.2, rng)
        shown["paired"] += judge("no effect", a, b, at_least=1, paired=True).shown
        shown["independent"] += judge("no effect", a, b, at_least=1).shown
    assert shown["paired"] / trials < 0.03 and shown["independent"] / trials < 0.04, shown


# --------------------------------------------------------------------------- each verdict, reachable

def test_a_real_effect_is_shown_and_its_sentence_carries_the_interval():
    v = judge("a hit costs more than a bare round trip", noisy(116, 11), noisy(100, 11), at_least=1, paired=True,
              a_name="hit", b_name="PING")
    assert v.verdict == SHOWN and v.low > 1
    assert v.sentence().startswith("Shown: a hit costs more than a bare round trip (hit / PING = 1.1")
    assert "interval" in v.sentence() and "11 pairs taken in turn" in v.sentence()


def test_an_injected_no_effect_is_not_shown_and_says_why():
    base = noisy(100, 11, 0.4)
    v = judge("a hit costs more than a bare round trip", base * noisy(1, 11, 0.4), base, at_least=1, paired=True)
    assert v.verdict == NOT_SHOWN and v.low < 1 < v.high
    assert v.sentence().startswith("Not shown on this run")
    assert "rerun the cell" in v.sentence()


def test_an_injected_reversal_is_reversed():
    v = judge("a hit costs more than a bare round trip", noisy(80, 11), noisy(100, 11), at_least=1, paired=True)
    assert v.verdict == REVERSED and v.high < 1
    assert v.sentence().startswith("Reversed on this run")


def test_a_bound_other_than_one_and_a_band_are_judged_against_that_bound():
    query, hit = noisy(30e6, 11), noisy(100e3, 11)
    assert judge("the query costs far more than a hit", query, hit, at_least=10).shown
    assert judge("the query costs far more than a hit", query, hit, at_least=1000).verdict == REVERSED
    assert judge("within 30%", noisy(100, 11), noisy(105, 11), at_least=0.7, at_most=1.3).shown
    assert judge("within 30%", noisy(200, 11), noisy(100, 11), at_least=0.7, at_most=1.3).verdict == REVERSED


def test_counts_are_compared_as_differences():
    v = judge("TTL caches query the database more", [40, 35, 52], [3, 0, 5], at_least=0, scale="difference",
              unit="queries")
    assert v.shown and "queries" in v.sentence()
    assert judge("no difference", [3, 4, 5], [4, 3, 5], at_least=0, scale="difference").verdict == NOT_SHOWN


def test_a_number_as_b_compares_each_sample_with_it():
    refills = [1.5, 2.0, 1.0, 2.5, 1.75, 2.0, 3.0, 1.5, 2.25]  # one sample at the value itself
    v = judge("a refill costs more than one query", refills, 1, at_least=0, scale="difference")
    assert v.shown and v.method == "9 samples against 1" and v.b_name == "1"
    assert v.low == 0.5, "from 9 samples the interval leaves out the most extreme one on each side"
    assert judge("x", [1.0, 1.0, 2.0] + [1.0] * 6, 1.0, at_least=0, scale="difference").verdict == NOT_SHOWN
    assert judge("x", [0.5] * 9, 1.0, at_least=1).verdict == REVERSED
    with pytest.raises(ValueError, match="paired"):
        judge("x", refills, 1.0, at_least=0, scale="difference", paired=False)


def test_a_tail_is_judged_by_bootstrap_and_needs_many_samples():
    rng = np.random.default_rng(3)
    before, after = rng.lognormal(0, 1, 2000) * 4, rng.lognormal(0, 1, 2000)
    assert judge("the p99 drops", before, after, at_least=1.5, statistic="p99").shown
    with pytest.raises(ValueError, match="at least 100"):
        judge("the p99 drops", before[:20], after[:20], at_least=1.5, statistic="p99")


def test_a_condition_that_does_not_hold_makes_the_claim_not_applicable_whatever_was_measured():
    far = Condition(False, "a server on this machine (a bare round trip under 1 ms)",
                    "here a round trip to Redis (PING) costs 2.3 ms")
    v = judge("a hit costs far less than the query", noisy(80, 11), noisy(100, 11), at_least=1, condition=far)
    assert v.verdict == NOT_APPLICABLE
    assert "2.3 ms" in v.sentence() and "does not judge" in v.sentence()


def test_too_few_samples_for_a_claim_is_the_notebooks_mistake_raised_at_once():
    with pytest.raises(ValueError, match="take more samples"):
        judge("x", [1.0, 2.0, 3.0], [1.0, 2.0, 3.0], at_least=1, paired=True)  # 3 pairs: 75% at best
    with pytest.raises(ValueError, match="bound"):
        judge("x", [1.0, 2.0], [1.0, 2.0])
    with pytest.raises(ValueError, match="positive"):
        judge("x", [0.0, 2.0, 3.0], [1.0, 2.0, 3.0], at_least=1)


def test_timings_measured_together_are_paired_and_others_are_not():
    together = measure_together({"a": "sum(range(200))", "b": "sum(range(100))"}, repeat=7, min_time=0.001)
    v = judge("a sum of 200 costs more than a sum of 100", together["a"], together["b"], at_least=1)
    assert "pairs taken in turn" in v.method
    apart = Timing("b", together["b"].samples_ns)
    assert "independent" in judge("x", together["a"], apart, at_least=1).method


# --------------------------------------------------------------------------- a reader's run and the tests' run

def test_in_a_readers_run_nothing_raises_and_every_verdict_is_kept(tmp_path, monkeypatch, capsys):
    from cachelab import Lab

    monkeypatch.delenv("CACHELAB_CLAIMS", raising=False)
    lab = Lab("06_redis")
    lab.claims = claims.ClaimLog("06_redis", tmp_path)
    lab.claim("reversed", noisy(80, 11), noisy(100, 11), at_least=1, paired=True)
    lab.claim("no effect", noisy(100, 11, 0.4), noisy(100, 11, 0.4), at_least=1, paired=True)
    assert "Reversed on this run" in capsys.readouterr().out
    saved = claims.load_log(tmp_path / "06_redis.json")
    assert [c["verdict"] for c in saved][0] == REVERSED and len(saved) == 2
    assert claims.not_shown(tmp_path)["06_redis"]


def test_under_strict_a_claim_not_shown_or_reversed_raises(tmp_path, monkeypatch):
    from cachelab import Lab

    monkeypatch.setenv("CACHELAB_CLAIMS", "strict")
    lab = Lab("06_redis")
    lab.claims = claims.ClaimLog("06_redis", tmp_path)
    lab.claim("shown", noisy(200, 11), noisy(100, 11), at_least=1, paired=True)
    with pytest.raises(claims.ClaimReversed):
        lab.claim("reversed", noisy(80, 11), noisy(100, 11), at_least=1, paired=True)
    with pytest.raises(claims.ClaimNotShown, match="judged 1 time"):
        lab.claim("no effect", noisy(100, 11, 0.4), noisy(100, 11, 0.4), at_least=1, paired=True)
    with pytest.raises(claims.ClaimNotShown, match="judged 2 time"):  # the cell again: its second attempt
        lab.claim("no effect", noisy(100, 11, 0.4), noisy(100, 11, 0.4), at_least=1, paired=True)


def claim_notebook(tmp_path, cell_source):
    nb = nbformat.v4.new_notebook()
    setup = "import cachelab, numpy as np\nlab = cachelab.start('01_naive_recomputation', quiet=True)"
    nb.cells = [nbformat.v4.new_code_cell(setup), nbformat.v4.new_code_cell(cell_source)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = tmp_path / "01_naive_recomputation.ipynb"
    nbformat.write(nb, path)
    return path


NO_EFFECT_TWICE = """
from pathlib import Path
tries = Path('tries'); tries.write_text(str(int(tries.read_text()) + 1) if tries.exists() else '1')
rng = np.random.default_rng(int(tries.read_text()))
effect = 2.0 if int(tries.read_text()) >= 3 else 1.0  # shown on the third attempt only
base = 100 * rng.lognormal(0, 0.3, 11)
lab.claim('a costs more than b', base * effect * rng.lognormal(0, 0.3, 11), base, at_least=1, paired=True)
"""


@pytest.mark.notebook
def test_the_runner_measures_a_claim_not_shown_again_up_to_three_attempts(tmp_path, monkeypatch):
    from cachelab.kit import runner

    monkeypatch.setenv("CACHELAB_CLAIMS", "strict")
    path = claim_notebook(tmp_path, NO_EFFECT_TWICE)
    outcome = runner.execute(path, quick=True, results_dir=tmp_path / "results")
    assert outcome.ok, outcome.error
    assert (tmp_path / "tries").read_text() == "3"
    assert [c["verdict"] for c in outcome.claims] == [SHOWN] and outcome.claims[0]["attempt"] == 3


@pytest.mark.notebook
def test_a_cell_executed_on_its_own_measures_a_claim_not_shown_again(tmp_path, monkeypatch):
    """The exercises' verification executes one cell at a time (``execute_cell``): a claim not shown is measured
    again there too."""
    from cachelab.kit.notebooks import notebook_client

    monkeypatch.setenv("CACHELAB_CLAIMS", "strict")
    path = claim_notebook(tmp_path, NO_EFFECT_TWICE)
    nb = nbformat.read(path, as_version=4)
    with notebook_client(nb, path, quick=True, results_dir=tmp_path / "results") as client, client.setup_kernel():
        for index, cell in enumerate(nb.cells):
            client.execute_cell(cell, index)
    assert (tmp_path / "tries").read_text() == "3"
    assert [attempt for _, attempt, _ in client.claim_retries] == [1, 2]


@pytest.mark.notebook
@pytest.mark.parametrize("effect,error,tries", [(1.0, "ClaimNotShown", "3"), (0.5, "ClaimReversed", "1")])
def test_a_claim_never_shown_or_reversed_fails_the_notebook(tmp_path, monkeypatch, effect, error, tries):
    from cachelab.kit import runner

    monkeypatch.setenv("CACHELAB_CLAIMS", "strict")
    source = NO_EFFECT_TWICE.replace("2.0 if int(tries.read_text()) >= 3 else 1.0", repr(effect))
    outcome = runner.execute(claim_notebook(tmp_path, source), quick=True, results_dir=tmp_path / "results")
    assert not outcome.ok and error in outcome.error
    assert (tmp_path / "tries").read_text() == tries


@pytest.mark.notebook
def test_in_a_readers_run_the_notebook_goes_on_and_the_summary_lists_the_claim(tmp_path, monkeypatch):
    from cachelab.kit import runner

    monkeypatch.delenv("CACHELAB_CLAIMS", raising=False)
    source = NO_EFFECT_TWICE.replace("2.0 if int(tries.read_text()) >= 3 else 1.0", "0.5") + "\nprint('went on')"
    outcome = runner.execute(claim_notebook(tmp_path, source), quick=True, results_dir=tmp_path / "results")
    assert outcome.ok, outcome.error
    assert runner.describe_claims(outcome) == ["reversed: a costs more than b"]


# --------------------------------------------------------------------------- placement

@pytest.mark.servers
def test_a_server_behind_a_delaying_proxy_makes_a_loopback_claim_not_applicable(redis_server, monkeypatch):
    from cachelab import Lab
    from cachelab.servers import Servers
    from cachelab.servers.delay import DelayProxy
    from cachelab.servers.discovery import MemcachedEndpoint, RedisEndpoint

    def lab_for(url):
        lab = Lab("06_redis")
        lab._servers = Servers(RedisEndpoint("environment", False, url), MemcachedEndpoint("environment", False))
        return lab

    near = lab_for(redis_server.url).near("redis")
    assert near.holds, near.found
    with DelayProxy(("127.0.0.1", redis_server.port), delay=0.0015) as proxy:
        far = lab_for(redis_server.url.replace(f":{redis_server.port}", f":{proxy.port}")).near("redis")
    assert not far.holds and "ms" in far.found, far
    verdict = judge("a hit costs far less than the query", noisy(30e6, 11), noisy(2e6, 11), at_least=10,
                    condition=far)
    assert verdict.verdict == NOT_APPLICABLE


@pytest.mark.notebook
@pytest.mark.parametrize("sigint", ["ignored", "default"])
def test_a_notebook_stops_on_sigint_unless_sigint_was_ignored(tmp_path, sigint):
    """While a notebook executes, SIGINT and SIGTERM raise KeyboardInterrupt in the run (not only in the kernel);
    a SIGINT ignored before (a shell's background job) stays ignored; the handlers found come back afterwards."""
    import signal

    from cachelab.kit.notebooks import _interrupt, notebook_client

    path = claim_notebook(tmp_path, "print('ready')")
    nb = nbformat.read(path, as_version=4)
    before = signal.signal(signal.SIGINT, signal.SIG_IGN if sigint == "ignored" else signal.default_int_handler)
    try:
        with notebook_client(nb, path, quick=True, results_dir=tmp_path / "results") as client, client.setup_kernel():
            during = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
        after = signal.getsignal(signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, before)
    assert during == (signal.SIG_IGN if sigint == "ignored" else _interrupt, _interrupt)
    assert after == (signal.SIG_IGN if sigint == "ignored" else signal.default_int_handler)
