"""The ladder of notebook 07, read from synthetic results saved the way notebooks 01-06 save theirs."""

import pytest

from cachelab import ladder, results
from cachelab.timing import Timing

# Median cost of one answer (ns) per (step, kind), as a notebook would record it.
COSTS = {
    ("recompute", "miss"): 30e6, ("dict memo", "hit"): 60.0, ("lru_cache", "hit"): 90.0,
    ("cachetools", "hit"): 600.0, ("joblib", "hit"): 300e3, ("joblib", "miss"): 32e6,
    ("memcached", "hit"): 60e3, ("memcached", "miss"): 30.2e6, ("redis", "hit"): 50e3,
    ("redis", "miss"): 30.1e6, ("near cache", "hit"): 400.0,
}


def _timing(name, median):
    return Timing(name, (median * 0.9, median, median * 1.2))


def save_series(skip=(), drop_notebook=None, ratios=None):
    """Write results for 01-06 into the test's results folder, with odd timing names on purpose."""
    ratios = ratios if ratios is not None else {"lru_cache": 0.4, "redis": 0.45}
    by_notebook = {}
    for step, kind, notebook in ladder.EXPECTED:
        by_notebook.setdefault(notebook, []).append((step, kind))
    for notebook, wanted in by_notebook.items():
        if notebook == drop_notebook:
            continue
        r = results.Results(notebook)
        r.add(_timing("not a ladder entry", 1.0))
        for i, (step, kind) in enumerate(wanted):
            if (step, kind) not in skip:
                r.add(_timing(f"t{i}", COSTS[step, kind]), ladder=step, kind=kind)
        for step, value in ratios.items():
            if any(s == step for s, _ in wanted):
                r.put(f"hit_ratio:{step}", value)
        r.save()


def test_collect_reads_every_rung_in_order_by_metadata():
    save_series()
    rungs = ladder.collect()
    assert [(r.step, r.kind) for r in rungs] == [(s, k) for s, k, _ in ladder.EXPECTED]
    assert ladder.find(rungs, "redis", "hit").median == COSTS["redis", "hit"]
    assert ladder.baseline(rungs).label == "recompute (miss)"
    assert ladder.find(rungs, "near cache", "hit").notebook == "06_redis"


def test_extra_entries_follow_their_notebook():
    save_series()
    r = results.Results("02_lru_cache")
    r.add(_timing("hit", 90.0), ladder="lru_cache", kind="hit")
    r.add(_timing("miss", 30.1e6), ladder="lru_cache", kind="miss")
    r.save()
    labels = [x.label for x in ladder.collect()]
    assert labels.index("lru_cache (miss)") == labels.index("lru_cache (hit)") + 1
    assert "lru_cache (miss)" not in [x.label for x in ladder.collect(extras=False)]


def test_a_missing_notebook_is_named():
    save_series(drop_notebook="04_joblib")
    with pytest.raises(results.ResultsMissing, match="Run notebooks/04_joblib.ipynb first"):
        ladder.collect()


def test_a_missing_entry_names_the_notebook_and_the_step():
    save_series(skip={("memcached", "miss")})
    with pytest.raises(ladder.LadderIncomplete, match=r"05_memcached saved no ladder entry for 'memcached' \(miss\)"):
        ladder.collect()


def test_table_has_every_step_and_the_speedup_over_recomputing():
    save_series()
    rungs = ladder.collect()
    rows = ladder.ladder_rows(rungs)
    assert rows[0]["speedup"] == 1
    assert ladder.find(rungs, "dict memo", "hit").speedup_over(ladder.baseline(rungs)) == pytest.approx(5e5)
    text = ladder.ladder_table(rungs)
    lines = text.splitlines()
    assert len(lines) == 2 + len(rungs)
    assert "500,000x" in text and "30 ms" in text
    for rung in rungs:
        assert any(line.startswith(rung.step) and rung.kind in line for line in lines)


def test_figure_is_saved_with_ladder_in_its_name(tmp_path):
    save_series()
    fig = ladder.ladder_figure(ladder.collect())
    assert len(fig.axes) == 2
    path = tmp_path / "figures" / "07_ladder.png"
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_hit_ratios_and_the_decision_guide_come_from_the_results():
    save_series(ratios={"lru_cache": 0.41, "redis": 0.47})
    ratios = ladder.hit_ratios()
    assert ratios == {"lru_cache": 0.41, "redis": 0.47}
    rows = {row["step"]: row for row in ladder.decision_guide(ladder.collect(), ratios)}
    assert rows["redis"]["hit_ns"] == COSTS["redis", "hit"]
    assert rows["redis"]["miss_ns"] == COSTS["redis", "miss"]
    assert rows["lru_cache"]["miss_ns"] == COSTS["recompute", "miss"]  # no miss recorded: recompute
    assert rows["redis"]["hit_ratio"] == 0.47 and rows["cachetools"]["hit_ratio"] is None
    text = ladder.format_guide(list(rows.values()))
    assert "47%" in text and "n/a" in text and "50 µs" in text


def test_a_step_without_a_hit_ratio_by_design_says_why():
    save_series(ratios={"lru_cache": 0.41, "memcached": 0.8, "redis": 0.8})
    rows = {row["step"]: row for row in ladder.decision_guide(ladder.collect(), ladder.hit_ratios())}
    assert rows["joblib"]["hit_ratio"] is None and "reduce_size" in rows["joblib"]["hit_ratio_note"]
    assert rows["memcached"]["hit_ratio"] == 0.8 and rows["memcached"]["hit_ratio_note"] == ""
    lines = ladder.format_guide(list(rows.values())).splitlines()
    joblib_line = next(line for line in lines if line.startswith("joblib"))
    assert "n/a (1)" in joblib_line
    assert any(line.startswith("(1) joblib: ") and "never evicts" in line for line in lines)
    assert not any(line.startswith("(2)") for line in lines), "only joblib has a note"
    cachetools_line = next(line for line in lines if line.startswith("cachetools"))
    assert "n/a " in cachetools_line and "n/a (" not in cachetools_line, "no note: a plain n/a"


@pytest.mark.parametrize(("question", "answer"), [
    ({}, "lru_cache"),
    ({"max_staleness_s": 60}, "cachetools"),
    ({"max_staleness_s": 0}, "recompute"),
    ({"survive_restart": True}, "joblib"),
    ({"value_bytes": 50_000_000}, "joblib"),
    ({"processes": 4}, "memcached"),
    ({"processes": 4, "survive_restart": True}, "diskcache"),
    ({"machines": 3}, "near cache"),
    ({"machines": 3, "max_staleness_s": 0.1}, "redis"),
    ({"machines": 3, "value_bytes": 5_000_000}, "redis"),
])
def test_recommend_follows_the_flow(question, answer):
    rec = ladder.recommend(**question)
    assert rec.step == answer and rec.reason


def test_recommend_rejects_nonsense():
    with pytest.raises(ValueError):
        ladder.recommend(processes=0)
    with pytest.raises(ValueError):
        ladder.recommend(value_bytes=-1)
