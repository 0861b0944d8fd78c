import json

import pytest

from cachelab import plots, results
from cachelab.timing import Timing


def _timings():
    return [Timing("recompute", (3e7, 3.1e7, 2.9e7)), Timing("lru_cache", (50.0, 55.0, 60.0))]


def test_latency_and_speedup_charts_write_png_files(tmp_path):
    plots.latency_chart(_timings(), save_as="latency test")
    plots.speedup_chart(_timings(), _timings()[0], save_as="speedup")
    plots.hit_ratio_chart([1, 10, 100], {"LRU": [0.1, 0.4, 0.7]}, ceiling=0.8, save_as="hits")
    plots.distribution_chart({"a": [1.0, 2.0, 3.0]}, save_as="dist")
    written = sorted(p.name for p in (tmp_path / "figures").iterdir())
    assert written == ["dist.png", "hits.png", "latency_test.png", "speedup.png"]
    assert all((tmp_path / "figures" / n).read_bytes()[:4] == b"\x89PNG" for n in written)


def test_curve_chart_rejects_mismatched_lengths():
    with pytest.raises(ValueError):
        plots.curve_chart([1, 2], {"a": [1]}, xlabel="x", ylabel="y")
    with pytest.raises(ValueError):
        plots.latency_chart([])


def test_results_round_trip_with_environment(tmp_path):
    r = results.Results("99_test")
    r.add(_timings()[1], step="lru_cache", kind="hit")
    r.put("hit_ratio", 0.75)
    path = r.save()
    assert path == tmp_path / "results" / "99_test.json"
    payload = json.loads(path.read_text())
    assert payload["environment"]["python"]
    loaded = results.load("99_test")
    assert loaded["lru_cache"].median == 55.0
    assert loaded["lru_cache"].meta == {"step": "lru_cache", "kind": "hit"}
    assert loaded.values["hit_ratio"] == 0.75
    assert "99_test" in results.available()


def test_missing_results_name_the_notebook_to_run():
    with pytest.raises(results.ResultsMissing, match="Run notebooks/03_cachetools.ipynb first"):
        results.load("03_cachetools")


def test_results_reject_bad_input():
    r = results.Results("99_test")
    with pytest.raises(TypeError):
        r.add("not a timing")
    with pytest.raises(TypeError):
        r.put("x", object())
    with pytest.raises(ValueError):
        results.Results("a/b")
