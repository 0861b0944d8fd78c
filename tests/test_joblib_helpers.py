"""cachelab.diskmemo: joblib cache folders, calls from a fresh process, and the cache on disk."""

import numpy as np
import pytest
from joblib import Memory

from cachelab import diskmemo
from cachelab.data import bootstrap_ci


@pytest.fixture
def cache_home(tmp_path, monkeypatch):
    monkeypatch.setenv("CACHELAB_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def test_memory_location_is_under_the_cache_dir_and_starts_empty(cache_home):
    folder = diskmemo.memory_location("04_test")
    assert folder == cache_home / "joblib" / "04_test" and folder.is_dir()
    (folder / "leftover").write_text("from an earlier run")
    assert not any(diskmemo.memory_location("04_test").iterdir()), "clear=True empties the folder"
    (folder / "kept").write_text("x")
    assert (diskmemo.memory_location("04_test", clear=False) / "kept").exists()
    for bad in ["", "a/b", "..", "."]:
        with pytest.raises(ValueError):
            diskmemo.memory_location(bad)


def test_size_count_and_tree_of_a_cache_folder(tmp_path):
    memory = Memory(tmp_path / "m", verbose=0)
    cached = memory.cache(bootstrap_ci)
    values = np.arange(100.0)
    for seed in range(3):
        cached(values, n_boot=10, seed=seed)
    cached(values, n_boot=10, seed=0)  # a hit: no new result
    assert diskmemo.cached_results(tmp_path / "m") == 3
    assert diskmemo.folder_size(tmp_path / "m") > 0
    assert diskmemo.folder_size(tmp_path / "missing") == 0
    listing = diskmemo.tree(tmp_path / "m")
    assert "bootstrap_ci/" in listing and "output.pkl" in listing and "func_code.py" in listing
    assert len(diskmemo.tree(tmp_path / "m", max_lines=3).splitlines()) == 4


def test_reduce_size_keeps_the_item_limit(tmp_path):
    memory = Memory(tmp_path / "m", verbose=0)
    cached = memory.cache(bootstrap_ci)
    for seed in range(6):
        cached(np.arange(50.0), n_boot=5, seed=seed)
    memory.reduce_size(items_limit=2)
    assert diskmemo.cached_results(tmp_path / "m") == 2


def test_a_fresh_process_finds_what_another_one_cached(tmp_path):
    location = tmp_path / "m"
    values = np.linspace(-10, 50, 500)
    first = diskmemo.call_in_fresh_process(location, bootstrap_ci, (values,), {"n_boot": 50, "seed": 1})
    second = diskmemo.call_in_fresh_process(location, bootstrap_ci, (values,), {"n_boot": 50, "seed": 1})
    assert not first.was_cached and second.was_cached
    assert second.result == first.result == bootstrap_ci(values, n_boot=50, seed=1)
    assert second.call_ns > 0


def test_this_process_finds_what_a_fresh_one_cached(tmp_path):
    location = tmp_path / "m"
    values = np.arange(300.0)
    diskmemo.call_in_fresh_process(location, bootstrap_ci, (values,), {"n_boot": 20})
    assert Memory(location, verbose=0).cache(bootstrap_ci).check_call_in_cache(values, n_boot=20)


def test_str_and_path_locations_are_different_caches(tmp_path):
    """joblib issue #1684: a str location gets a joblib/ subfolder, a Path does not; the helper keeps the type."""
    values = np.arange(30.0)
    diskmemo.call_in_fresh_process(str(tmp_path / "m"), bootstrap_ci, (values,), {"n_boot": 5})
    assert (tmp_path / "m" / "joblib").is_dir()
    again = diskmemo.call_in_fresh_process(tmp_path / "m", bootstrap_ci, (values,), {"n_boot": 5})
    assert not again.was_cached


def test_functions_another_process_cannot_import_are_refused(tmp_path):
    def local(x):
        return x

    with pytest.raises(ValueError, match="cannot be imported"):
        diskmemo.call_in_fresh_process(tmp_path, local, (1,))


def test_a_failing_call_reports_the_childs_error(tmp_path):
    with pytest.raises(ValueError, match="bootstrap_ci needs a non-empty"):
        diskmemo.call_in_fresh_process(tmp_path, bootstrap_ci, (np.array([]),))
