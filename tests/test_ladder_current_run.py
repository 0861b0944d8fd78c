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
