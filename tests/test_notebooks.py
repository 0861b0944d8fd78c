"""Every notebook of the series, executed top to bottom against real servers, twice, without harm.

The servers are private instances started for this module but handed to the notebooks the way a user's
own servers would be (``REDIS_URL`` / ``MEMCACHED_SERVERS``), with foreign keys written beforehand. So
these tests prove, besides a clean run of each notebook:

* **reruns**: each notebook runs twice in a row with the same outcome (its assertions pass both times,
  its keys cleared by prefix only between runs); the second run of a notebook with exercises also verifies
  them (each check passes on the solution and fails on the placeholder and on every known-wrong answer);
* **no data lost**: every foreign key is still there, unchanged, after the whole series.
"""

from __future__ import annotations

import json

import nbformat
import pytest
from pymemcache.client.base import Client

from cachelab import paths
from cachelab.kit import exercises_build as eb
from cachelab.kit import notebooks, runner
from cachelab.servers import start_memcached, start_redis

NOTEBOOKS = notebooks.list_notebooks()
WITH_EXERCISES = [p for p in NOTEBOOKS if eb.exercise_groups(nbformat.read(p, as_version=4))]
FOREIGN_REDIS = {"user:precious": "do not touch", "session:42": "still logged in", "cachelab": "no colon"}
FOREIGN_MEMCACHED = {"user:precious": b"do not touch", "cachelab-ish": b"prefix lookalike"}


def test_the_series_exists():
    assert NOTEBOOKS, "no notebooks found"
    assert NOTEBOOKS[0].name == "00_setup.ipynb"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebook_is_a_clean_top_to_bottom_run(path):
    nb = nbformat.read(path, as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code" and c.source.strip()]
    counts = [c.get("execution_count") for c in code]
    assert counts == list(range(1, len(code) + 1)), f"{path.name}: re-execute it with `make refresh`"
    errors = [o for c in code for o in c.outputs if o.output_type == "error"]
    assert not errors, f"{path.name} was committed with an error output: {errors[0].get('ename')}"
    assert any(o.output_type == "display_data" for c in code for o in c.outputs), f"{path.name} shows no plot"
    assert nb.metadata.get("kernelspec", {}).get("name") == "python3"


@pytest.fixture(scope="module")
def users_servers(tmp_path_factory, monkeypatch_module):
    """A Redis and three memcached nodes holding someone else's data, given through the environment."""
    redis_server = start_redis()
    nodes = [start_memcached() for _ in range(3)]
    r = redis_server_client(redis_server)
    for key, value in FOREIGN_REDIS.items():
        r.set(key, value)
    r.hset("user:profile", mapping={"name": "Ada", "plan": "pro"})
    for node in nodes:
        raw = Client(node.address, connect_timeout=1, timeout=1)
        for key, value in FOREIGN_MEMCACHED.items():
            raw.set(key, value, noreply=False)
    monkeypatch_module.setenv("REDIS_URL", redis_server.url)
    monkeypatch_module.setenv("MEMCACHED_SERVERS", ",".join(f"{h}:{p}" for h, p in (n.address for n in nodes)))
    yield redis_server, nodes
    for server in [redis_server, *nodes]:
        server.stop()


def redis_server_client(server):
    import redis

    return redis.Redis.from_url(server.url, decode_responses=True, socket_timeout=2, socket_connect_timeout=2)


@pytest.fixture(scope="module")
def monkeypatch_module():
    with pytest.MonkeyPatch.context() as mp:
        yield mp


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """One results folder for the whole series, as in `make run`: 07 reads what 01-06 saved."""
    return tmp_path_factory.mktemp("series")


CHECKED: dict[str, list[eb.CheckResult]] = {}  # the exercises' verification, done by each notebook's second run


@pytest.mark.notebook
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_clean_twice(path, users_servers, run_dir):
    """The second run of a notebook with exercises is their verification, run to the notebook's end: the
    solutions, then at each check cell the placeholder and the known-wrong answers, then the solutions again."""
    paths_of = {"results_dir": run_dir / "results", "figures_dir": run_dir / "figures"}
    outcome = runner.execute(path, quick=True, out_path=run_dir / "run1" / path.name, **paths_of)
    assert outcome.ok, f"{path.name} failed on run 1:\n{outcome.error}"
    if path in WITH_EXERCISES:
        try:
            CHECKED[path.stem] = eb.verify_exercises(path, quick=True, whole=True, **paths_of)
        except eb.NotebookBroken as exc:
            pytest.fail(f"{path.name} failed on run 2 (with its exercises verified):\n{exc}")
    else:
        outcome = runner.execute(path, quick=True, out_path=run_dir / "run2" / path.name, **paths_of)
        assert outcome.ok, f"{path.name} failed on run 2:\n{outcome.error}"
    saved = run_dir / "results" / f"{path.stem}.json"
    if saved.exists():
        assert json.loads(saved.read_text())["environment"]["quick_mode"] is True


@pytest.mark.notebook
@pytest.mark.parametrize("path", WITH_EXERCISES, ids=lambda p: p.stem)
def test_check_cells_fail_on_the_placeholder_and_pass_on_the_solution(path):
    assert path.stem in CHECKED, f"{path.name}: not verified, because its runs above failed first"
    results = CHECKED[path.stem]
    assert results, f"{path.name}: no check cell ran"
    report = paths.project_root() / "build" / "exercises-verified" / f"{path.stem}.txt"  # for the rehearsal
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text("".join(r.describe() + "\n" for r in results), encoding="utf-8")
    bad = [r.describe() for r in results if not r.ok]
    assert not bad, "\n".join(bad)


@pytest.mark.notebook
def test_no_foreign_data_was_lost(users_servers):
    redis_server, nodes = users_servers
    r = redis_server_client(redis_server)
    for key, value in FOREIGN_REDIS.items():
        assert r.get(key) == value, f"Redis key {key!r} was changed or deleted"
    assert r.hgetall("user:profile") == {"name": "Ada", "plan": "pro"}
    for node in nodes:
        assert node.alive(), "a node given by the user was stopped"
        raw = Client(node.address, connect_timeout=1, timeout=1)
        for key, value in FOREIGN_MEMCACHED.items():
            assert raw.get(key) == value, f"memcached key {key!r} on {node.address} was changed or deleted"
