"""ladder.current_run: results are combined only when they come from the run of the series going on now."""

import datetime as dt
import json

import pytest

from cachelab import ladder, results

SERIES = ["02_lru_cache", "03_cachetools", "04_joblib"]
NOW = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


def save(notebook, minutes_ago, *, quick=True):
    saved = results.Results(notebook)
    path = saved.save()
    payload = json.loads(path.read_text())
    payload["environment"]["date"] = (NOW - dt.timedelta(minutes=minutes_ago)).isoformat(timespec="seconds")
    payload["environment"]["quick_mode"] = quick
    path.write_text(json.dumps(payload))


def test_results_saved_in_order_by_this_run_are_returned():
    for i, notebook in enumerate(SERIES):
        save(notebook, 30 - 10 * i)
    loaded = ladder.current_run(SERIES, now=NOW)
    assert list(loaded) == SERIES and all(isinstance(v, results.SavedResults) for v in loaded.values())


def test_a_notebook_rerun_on_its_own_later_breaks_the_order():
    save("02_lru_cache", 30)
    save("03_cachetools", 5)  # re-run afterwards, alone
    save("04_joblib", 20)
    with pytest.raises(ladder.ResultsStale, match="03_cachetools"):
        ladder.current_run(SERIES, now=NOW)


def test_old_results_another_mode_and_missing_ones_are_refused():
    for i, notebook in enumerate(SERIES):
        save(notebook, 600 - 10 * i)
    with pytest.raises(ladder.ResultsStale, match="ago"):
        ladder.current_run(SERIES, now=NOW)  # ten hours old: an earlier run
    for i, notebook in enumerate(SERIES):
        save(notebook, 30 - 10 * i, quick=False)
    with pytest.raises(ladder.ResultsStale, match="mode"):
        ladder.current_run(SERIES, now=NOW)
    with pytest.raises(results.ResultsMissing, match="05_memcached"):
        ladder.current_run([*SERIES, "05_memcached"], now=NOW)


def test_results_from_after_this_run_began_are_refused():
    for i, notebook in enumerate(SERIES):
        save(notebook, 30 - 10 * i)
    with pytest.raises(ladder.ResultsStale, match="after"):
        ladder.current_run(SERIES, now=NOW - dt.timedelta(minutes=15))


def test_a_run_with_one_notebook_missing_labels_what_it_borrows_and_the_guide_says_which_inputs(tmp_path,
                                                                                                 monkeypatch):
    """A run whose 06 failed: 10 uses this run's results for all it has, and says which came from elsewhere."""
    from test_ladder import save_series

    from cachelab import guide

    save_series()
    reference_from_this_run(tmp_path, monkeypatch)
    (tmp_path / "results" / "06_redis.json").unlink()
    series = ladder.series_results()
    assert series.borrowed == ["06_redis"] and not series.all_this_run
    assert series.label("06_redis") == "the reference run (Another CPU x 64, 2026-01-02)"
    text = series.describe()
    assert "06_redis" in text and "Another CPU x 64" in text and "Every result" not in text
    measured = guide.measured_in(series.loaded, sources=series.labels())
    assert measured.sources["query"] == "this run"  # 01 ran here
    assert measured.sources["hit:Redis"] == series.label("06_redis")  # 06 did not
    assert measured.sources["hit:memcached"] == "this run"
    ranking = guide.rank(guide.Situation(request_rate=10), measured)
    assert set(ranking.sources()) == {"this run", series.label("06_redis")}, "the ranking says it mixes two sources"
    fig = ladder.ladder_figure(ladder.collect(loaded=series.loaded), sources=series.labels(), save_as=None)
    title = fig._suptitle.get_text()
    assert "Another CPU x 64" in title and "(06)" in title and "the rest from this run" in title, title
    assert any(t.get_text().endswith(" *") for t in fig.axes[0].get_yticklabels()), "06's rungs are marked"


def test_a_complete_run_is_all_this_run():
    from test_ladder import save_series

    save_series()
    series = ladder.series_results()
    assert series.all_this_run and series.describe().startswith("Every result")
    assert all(src.this_run for src in series.sources.values())


def test_an_entry_this_run_lacks_is_taken_from_the_reference_run_and_labelled(tmp_path, monkeypatch):
    """A run whose 06 skipped the Going deeper sections that record the near cache's hit and hit ratio: 10 takes
    those two entries from the reference run, says so, and keeps this run's for the rest of 06."""
    from test_ladder import COSTS, save_series

    from cachelab import guide

    save_series(ratios={"lru_cache": 0.4, "redis": 0.45, "near cache": 0.5})
    reference_from_this_run(tmp_path, monkeypatch)
    mine = tmp_path / "results" / "06_redis.json"
    payload = json.loads(mine.read_text())
    payload["timings"] = {k: v for k, v in payload["timings"].items() if v.get("ladder") != "near cache"}
    del payload["values"]["hit_ratio:near cache"]
    mine.write_text(json.dumps(payload))
    with pytest.raises(ladder.LadderIncomplete, match="near cache"):
        ladder.collect()  # without the fallback
    series = ladder.series_results()
    assert series.borrowed == [] and not series.all_this_run and series.mixed
    assert series.label("06_redis") == "this run"
    assert sorted(series.entries["06_redis"]) == ["hit_ratio:near cache", "near cache (hit)"]
    elsewhere = "the reference run (Another CPU x 64, 2026-01-02)"
    assert series.source_of("06_redis", "near cache (hit)").label == elsewhere
    assert series.source_of("06_redis", "redis (hit)").this_run
    assert "near cache (hit)" in series.describe() and "Another CPU x 64" in series.describe()
    rungs = ladder.collect(loaded=series.loaded)
    assert ladder.find(rungs, "near cache", "hit").median == COSTS["near cache", "hit"]
    assert ladder.hit_ratios(loaded=series.loaded)["near cache"] == 0.5
    labels = series.labels()
    table = ladder.ladder_table(rungs, labels)
    assert [line for line in table.splitlines() if line.startswith("near cache")][0].endswith(elsewhere)
    assert [line for line in table.splitlines() if line.startswith("redis ")][0].endswith("this run")
    measured = guide.measured_in(series.loaded, sources=labels)
    assert measured.sources["local hit:near cache"] == elsewhere and measured.sources["hit:Redis"] == "this run"
    fig = ladder.ladder_figure(rungs, ladder.hit_ratios(loaded=series.loaded), sources=labels, save_as=None)
    title = fig._suptitle.get_text()
    assert "Another CPU x 64" in title and "06's near cache (hit)" in title, title
    starred = [t.get_text() for t in fig.axes[0].get_yticklabels() if t.get_text().endswith(" *")]
    assert starred == ["near cache (hit) *"], starred


def reference_from_this_run(tmp_path, monkeypatch):
    """A reference run made of this run's results, as if from another machine on another day."""
    reference = tmp_path / "reference"
    reference.mkdir()
    for path in (tmp_path / "results").glob("*.json"):
        payload = json.loads(path.read_text())
        payload["environment"].update(cpu="Another CPU", cpus=64, date="2026-01-02T03:04:05+00:00")
        (reference / path.name).write_text(json.dumps(payload))
    monkeypatch.setattr(results.paths, "reference_results_dir", lambda: reference)
    return reference
