"""The ladder of notebook 10, read from synthetic results saved the way notebooks 01-08 save theirs."""

import pytest

from cachelab import ladder, results
from cachelab.timing import Timing

# Median cost of one answer (ns) per (step, kind), as a notebook would record it.
COSTS = {
    ("recompute", "miss"): 30e6, ("dict memo", "hit"): 60.0, ("lru_cache", "hit"): 90.0,
    ("cachetools", "hit"): 600.0, ("joblib", "hit"): 300e3, ("joblib", "miss"): 32e6,
    ("memcached", "hit"): 60e3, ("memcached", "miss"): 30.2e6, ("redis", "hit"): 50e3,
    ("redis", "miss"): 30.1e6, ("near cache", "hit"): 400.0, ("tracking", "hit"): 900.0,
    ("redis cluster", "hit"): 200e3,
}


def _timing(name, median):
    return Timing(name, (median * 0.9, median, median * 1.2))


def save_series(skip=(), drop_notebook=None, ratios=None):
    """Write results for 01-08 into the test's results folder, with odd timing names on purpose."""
    ratios = ratios if ratios is not None else {"lru_cache": 0.4, "memcached": 0.45, "redis": 0.45, "near cache": 0.5}
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
    for other in ("07_web_service_under_load", "09_http_and_frameworks"):  # 10 combines their results too
        if drop_notebook != other:
            results.Results(other).save()


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
    fig = ladder.ladder_figure(ladder.collect(), ladder.hit_ratios())
    assert len(fig.axes) == 2
    path = tmp_path / "figures" / "10_ladder.png"
    assert path.read_bytes()[:4] == b"\x89PNG"


def test_expected_cost_weighs_hit_and_miss_by_the_measured_hit_ratio():
    save_series(ratios={"lru_cache": 0.4, "redis": 0.75})
    costs = ladder.expected_costs(ladder.collect(), ladder.hit_ratios())
    assert costs["redis"] == pytest.approx(0.75 * COSTS["redis", "hit"] + 0.25 * COSTS["redis", "miss"])
    assert costs["lru_cache"] == pytest.approx(0.4 * COSTS["lru_cache", "hit"] + 0.6 * COSTS["recompute", "miss"])
    assert set(costs) == {"lru_cache", "redis"}, "a step without a measured hit ratio is left out"


def test_series_results_fall_back_to_the_reference_run_and_say_so(tmp_path, monkeypatch):
    save_series()
    here = ladder.series_results()
    assert not here.reference and here.source == "this run"
    reference = tmp_path / "project" / "reference" / "results"
    reference.mkdir(parents=True)
    for path in (tmp_path / "results").glob("*.json"):
        (reference / path.name).write_text(path.read_text())
    monkeypatch.setattr(results.paths, "reference_results_dir", lambda: reference)
    (tmp_path / "results" / "05_memcached.json").unlink()
    fallen = ladder.series_results()
    assert fallen.mixed and fallen.borrowed == ["05_memcached"] and "reference run" in fallen.describe()
    assert fallen.loaded["05_memcached"].reference, "the missing notebook's results come from the reference run"
    assert not any(saved.reference for nb, saved in fallen.loaded.items() if nb != "05_memcached"), \
        "this run's results for every other notebook"
    assert fallen.label("05_memcached").startswith("the reference run (") and fallen.label("06_redis") == "this run"
    with pytest.raises(results.ResultsMissing, match="05_memcached"):
        ladder.series_results(fallback=False)
