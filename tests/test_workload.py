from collections import Counter

import numpy as np
import pytest

from cachelab import workload


def test_streams_are_reproducible_for_a_seed():
    keys = list("abcdefghij")
    assert workload.zipf_stream(keys, 500, seed=3) == workload.zipf_stream(keys, 500, seed=3)
    assert workload.zipf_stream(keys, 500, seed=3) != workload.zipf_stream(keys, 500, seed=4)


def test_zipf_weights_follow_the_power_law():
    w = workload.zipf_weights(100, alpha=0.8)
    assert w.sum() == pytest.approx(1.0)
    assert w[0] / w[9] == pytest.approx(10 ** 0.8)
    assert (np.diff(w) < 0).all()


def test_zipf_stream_has_the_zipf_shape():
    """Empirical frequency of rank r falls like r**-alpha: the log-log slope is close to -alpha."""
    ranks = workload.zipf_ranks(200_000, 1000, alpha=0.8, seed=1)
    counts = np.bincount(ranks, minlength=1000)
    r = np.arange(1, 51)
    slope = np.polyfit(np.log(r), np.log(counts[:50]), 1)[0]
    assert slope == pytest.approx(-0.8, abs=0.08)


def test_most_popular_key_comes_first():
    stream = workload.zipf_stream(["hot", "warm", "cold"], 3000, alpha=1.0, seed=0)
    c = Counter(stream)
    assert c["hot"] > c["warm"] > c["cold"]


def test_repeat_fraction_is_the_share_of_repeated_requests():
    assert workload.repeat_fraction(["a", "b", "a", "a"]) == 0.5
    assert workload.repeat_fraction([]) == 0.0
    stream = ["a", "b", "a", "c", "a", "b"]
    assert workload.repeat_fraction_curve(stream, [0, 2, 3, 6]) == pytest.approx([0.0, 0.0, 1 / 3, 0.5])


def test_with_scan_splices_the_scan_in():
    assert workload.with_scan([1, 2, 3, 4], ["s1", "s2"], at=0.5) == [1, 2, "s1", "s2", 3, 4]


@pytest.mark.parametrize("bad", [0, -1, 2.5])
def test_bad_sizes_are_rejected(bad):
    with pytest.raises(ValueError):
        workload.zipf_weights(bad)


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError):
        workload.zipf_weights(10, alpha=-1)
    with pytest.raises(ValueError):
        workload.zipf_stream([], 10)
    with pytest.raises(ValueError):
        workload.with_scan([1], [2], at=2)
    with pytest.raises(ValueError):
        workload.repeat_fraction_curve([1, 2], [5])


def test_keys_carrying_counts_the_fewest_keys_for_a_share_of_the_requests():
    assert workload.keys_carrying(["a"] * 5 + ["b"] * 3 + ["c", "d"], 0.5) == 1
    assert workload.keys_carrying(["a"] * 4 + ["b"] * 4 + ["c", "d"], 0.5) == 2
    assert workload.keys_carrying(list("abcd"), 1.0) == 4
    stream = workload.zipf_stream(list(range(1000)), 20_000, seed=1)
    assert workload.keys_carrying(stream, 0.5) < 0.2 * len(set(stream))
    with pytest.raises(ValueError):
        workload.keys_carrying(stream, 0)


def test_diminishing_returns_is_where_the_slope_falls_below_the_average():
    sizes = [1, 2, 3, 4, 5, 6]
    # a bend at 2: slopes 0.3, 0.3, then 0.05 per entry; the average entry is worth 0.8 / 6
    ratios = [0.3, 0.6, 0.65, 0.7, 0.75, 0.8]
    assert workload.diminishing_returns(sizes, ratios) == 2
    assert workload.diminishing_returns([1, 2, 3], [0.1, 0.2, 0.3]) == 3, "a straight line never bends"
    with pytest.raises(ValueError):
        workload.diminishing_returns([2, 1], [0.1, 0.2])


def test_repeat_flags_mark_the_requests_that_repeat_an_earlier_one():
    flags = workload.repeat_flags(list("abacbbd"))
    assert flags.tolist() == [False, False, True, False, True, True, False]
    assert flags.mean() == pytest.approx(workload.repeat_fraction(list("abacbbd")))
    assert workload.repeat_flags([]).size == 0


def test_longest_reuse_distance_counts_distinct_keys_in_between():
    assert workload.longest_reuse_distance(list("abcd")) == 0  # nothing repeats
    assert workload.longest_reuse_distance(list("aa")) == 0
    assert workload.longest_reuse_distance(list("abba")) == 1  # only b between the two a's
    assert workload.longest_reuse_distance(list("abcab")) == 2


def test_longest_reuse_distance_is_the_lru_size_that_reaches_the_ceiling():
    from cachelab import memo

    stream = workload.zipf_stream(list(range(300)), 3_000, alpha=0.8, seed=5)
    d = workload.longest_reuse_distance(stream)
    ceiling = workload.repeat_fraction(stream)
    assert memo.replay_lru(stream, d + 1).hit_ratio == ceiling
    assert memo.replay_lru(stream, d).hit_ratio < ceiling
