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


def test_two_processes_missing_one_call_both_compute_unless_call_once_locks(cache_home):
    from cachelab.workers import worker_pool

    values = np.random.default_rng(0).normal(size=50_000)
    with worker_pool(2, preload=("cachelab.diskmemo", "joblib")) as pool:
        unlocked = diskmemo.race(pool, diskmemo.memory_location("race"), values, n_boot=200)
        locked = diskmemo.race(pool, diskmemo.memory_location("race"), values, n_boot=200, locked=True)
        hit = diskmemo.race(pool, diskmemo.memory_location("race", clear=False), values, n_boot=200, locked=True)
    assert unlocked.computations == 2 and len(set(unlocked.computed_by)) == 2, unlocked
    assert locked.computations == 1, locked
    assert hit.computations == 0, "the result is on disk: nobody computes"
    assert unlocked.results[0] == unlocked.results[1] == locked.results[0] == locked.results[1]


def test_call_once_is_a_plain_call_in_one_process(tmp_path):
    memorized = Memory(tmp_path / "m", verbose=0).cache(diskmemo.logged_bootstrap, ignore=["log_path"])
    log = tmp_path / "log"
    values = np.arange(100.0)
    first = diskmemo.call_once(memorized, values, n_boot=20, log_path=str(log))
    second = diskmemo.call_once(memorized, values, n_boot=20, log_path=str(tmp_path / "other-log"))
    assert first == second and diskmemo.computations(log) == [__import__("os").getpid()]
    assert list((tmp_path / "m" / ".locks").iterdir()), "the lock file lives in the cache folder"


def test_profile_hit_accounts_for_the_whole_hit_and_restores_joblib(tmp_path):
    import joblib.hashing

    memorized = Memory(tmp_path / "m", verbose=0).cache(bootstrap_ci)
    values = np.arange(1000.0)
    with pytest.raises(ValueError, match="hits"):
        diskmemo.profile_hit(memorized, values, n_boot=5)
    memorized(values, n_boot=5)
    original = joblib.hashing.hash
    parts = diskmemo.profile_hit(memorized, values, n_boot=5, calls=50)
    assert joblib.hashing.hash is original, "the timers are removed after the measurement"
    assert list(parts) == ["the whole hit", *diskmemo.HIT_STEPS, "everything else"]
    steps = sum(parts[label] for label in diskmemo.HIT_STEPS)
    assert steps + parts["everything else"] == pytest.approx(parts["the whole hit"])
    assert steps > 0.5 * parts["the whole hit"], "the named steps are most of a hit"
    assert all(parts[label] > 0 for label in diskmemo.HIT_STEPS), "every step runs in a hit of joblib 1.6"
