"""A room that shares one server: every run has its own namespace, and its cleanup deletes only that.

In a workshop the fallback is one Redis and memcached on the instructor's laptop, given to everyone through
``REDIS_URL``/``MEMCACHED_SERVERS``. Checked here: the rules of :mod:`cachelab.keys` and
:mod:`cachelab.paths` (participant ids, prefixes, results kept apart per copy), and two kernels run at once
against the same private servers, each writing keys and finding them intact after the other's start-up
cleanup ran, with a control where the two share one namespace and lose each other's keys.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
import threading

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

import cachelab
from cachelab import keys, paths, results
from cachelab.servers import start_memcached, start_redis


@pytest.fixture
def checkout(tmp_path, monkeypatch):
    """A scratch ``.cachelab/`` and no participant from the environment."""
    monkeypatch.setenv("CACHELAB_CACHE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv(keys.PARTICIPANT_ENV, raising=False)
    return tmp_path


# --------------------------------------------------------------------------- participants and prefixes

def test_a_participant_id_is_generated_once_and_kept(checkout):
    first = keys.participant()
    assert first == keys.participant() == (checkout / "state" / "participant").read_text().strip()
    assert keys.participant_name(first) == first and first.startswith("p")
    (checkout / "state" / "participant").unlink()
    assert keys.participant() != first, "a new checkout (no file) gets a new id"


def test_kernels_starting_together_agree_on_the_participant(checkout):
    found, start = [], threading.Barrier(8)

    def ask():
        start.wait()
        found.append(keys.participant())

    threads = [threading.Thread(target=ask) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(found) == 8 and len(set(found)) == 1


def test_the_environment_names_the_participant(checkout, monkeypatch):
    monkeypatch.setenv(keys.PARTICIPANT_ENV, "table3-ana")
    assert keys.participant() == "table3-ana"
    assert not (checkout / "state" / "participant").exists()
    for bad in ["ana maria", "3ana", "a:b", "a*", "x" * 33, "ana/b"]:
        monkeypatch.setenv(keys.PARTICIPANT_ENV, bad)
        with pytest.raises(ValueError, match="CACHELAB_PARTICIPANT must be a name like 'alice'"):
            keys.participant()


def test_a_damaged_participant_file_says_how_to_mend_it(checkout):
    state = checkout / "state"
    state.mkdir()
    (state / "participant").write_text("not a name\n")
    with pytest.raises(ValueError, match="delete the file"):
        keys.participant()


def test_prefixes_keep_participants_and_copies_apart():
    alice = keys.prefix_for("05_memcached", "alice")
    assert alice == "cachelab:alice:05_memcached:"
    assert keys.prefix_for("05_memcached", "alice", copy="exercises") == "cachelab:alice:exercises-05_memcached:"
    assert keys.prefix_for("05_memcached") == "cachelab:05_memcached:"  # no participant: tests, the benchmark
    runs = [keys.prefix_for(nb, who, copy=copy) for nb in ("05_memcached", "05_memcached_2", "06_redis")
            for who in ("alice", "alice2", "bob", None) for copy in ("notebooks", "exercises")]
    assert len(set(runs)) == len(runs)
    for a in runs:  # a cleanup of one prefix (prefix*) can never match another run's keys
        assert not any(b != a and b.startswith(a) for b in runs), a
    assert all(keys.check_prefix(p) == p for p in runs)
    with pytest.raises(ValueError, match="copy must be"):
        keys.prefix_for("05_memcached", "alice", copy="build")
    with pytest.raises(ValueError, match="starting with a letter"):
        keys.prefix_for("05_memcached", "05_memcached")


@pytest.mark.parametrize("bad", ["", "cachelab:", "user:", "*", None])
def test_check_prefix_still_refuses_anything_outside_the_project(bad):
    with pytest.raises(ValueError, match="project prefix"):
        keys.check_prefix(bad)


def test_the_lab_names_its_namespace_and_keeps_results_apart(checkout, monkeypatch):
    monkeypatch.setenv(keys.PARTICIPANT_ENV, "alice")
    monkeypatch.setenv("CACHELAB_RESULTS_DIR", str(checkout / "results"))
    monkeypatch.setenv("CACHELAB_FIGURES_DIR", str(checkout / "figures"))
    for copy in ("notebooks", "exercises"):
        (checkout / copy).mkdir()
        monkeypatch.chdir(checkout / copy)
        assert paths.notebook_copy() == copy
        lab = cachelab.start("98_room", quiet=True)
        assert (lab.participant, lab.copy) == ("alice", copy)
        assert lab.prefix == keys.prefix_for("98_room", "alice", copy=copy)
        lab.results.put("copy", copy)
        lab.save()
    monkeypatch.chdir(checkout / "notebooks")
    assert paths.results_dir() == checkout / "results" and paths.figures_dir() == checkout / "figures"
    assert results.load("98_room").values["copy"] == "notebooks"
    monkeypatch.chdir(checkout / "exercises")
    assert paths.results_dir() == checkout / "results" / "exercises"
    assert paths.figures_dir() == checkout / "figures" / "exercises"
    assert results.load("98_room").values["copy"] == "exercises"
    assert cachelab.start("98_room", quiet=True, participant="bob").prefix == "cachelab:bob:exercises-98_room:"


# --------------------------------------------------------------------------- two kernels, one server

N_KEYS = 40

PREAMBLE = '''\
import os, time
from pathlib import Path
import cachelab

SYNC = Path(os.environ["ROOM_SYNC"])
N = {n}
TOKEN = os.urandom(8).hex()  # this kernel's values: another kernel writing the same keys cannot pass for it

def signal(name):
    (SYNC / name).touch()

def wait(name, timeout=90):
    deadline = time.monotonic() + timeout
    while not (SYNC / name).exists():
        assert time.monotonic() < deadline, f"waited {{timeout}} s for {{name}}"
        time.sleep(0.05)

def write_mine(lab):
    r = lab.servers.redis_client()
    mc = lab.servers.memcached_client(lab.prefix)
    for i in range(N):
        r.set(f"{{lab.prefix}}k{{i}}", TOKEN, ex=300)
    mc.set_many({{f"k{{i}}": TOKEN for i in range(N)}}, expire=300)

def count_mine(lab):
    r = lab.servers.redis_client()
    mc = lab.servers.memcached_client(lab.prefix)
    in_redis = sum(r.get(f"{{lab.prefix}}k{{i}}") == TOKEN for i in range(N))
    in_memcached = sum(v == TOKEN for v in mc.get_many([f"k{{i}}" for i in range(N)]).values())
    return in_redis, in_memcached
'''

FIRST = [
    'lab = cachelab.start("98_room", servers=True)\nwrite_mine(lab)\nassert count_mine(lab) == (N, N)\n'
    'lab.results.put("who", [lab.participant, lab.copy])\nlab.save()\nsignal("first-wrote")',
    'wait("second-wrote")  # the second kernel ran its start-up cleanup after this one wrote\n'
    'survivors = count_mine(lab)\n'
    'lab = cachelab.start("98_room", servers=True)  # a rerun from the top: its own start-up cleanup\n'
    'emptied = count_mine(lab)\nsignal("first-restarted")\n'
    'assert survivors == (N, N), f"keys of {lab.prefix} lost to the other kernel: {survivors} of {N} left"\n'
    'assert emptied == (0, 0), f"the start-up cleanup left {emptied} of its own keys"',
]
SECOND = [
    'wait("first-wrote")\nlab = cachelab.start("98_room", servers=True)\nwrite_mine(lab)\n'
    'lab.results.put("who", [lab.participant, lab.copy])\nlab.save()\nsignal("second-wrote")',
    'wait("first-restarted")  # the first kernel, rerun, cleaned up after this one wrote\n'
    'survivors = count_mine(lab)\n'
    'assert survivors == (N, N), f"keys of {lab.prefix} lost to the other kernel: {survivors} of {N} left"',
]

RUN_ONE = '''\
import json, sys
from pathlib import Path
from cachelab.kit import runner
outcome = runner.execute(Path(sys.argv[1]), quick=True, timeout=150)
print(json.dumps({"ok": outcome.ok, "error": outcome.error}))
'''


def room_notebook(cells: list[str]):
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nb.cells = [new_markdown_cell("# A participant in a shared room"), new_code_cell(PREAMBLE.format(n=N_KEYS)),
                *(new_code_cell(source) for source in cells)]
    return nb


@pytest.fixture(scope="module")
def room_servers():
    """One private Redis and three memcached nodes: the instructor's servers, shared by the room."""
    with contextlib.ExitStack() as stack:
        redis = stack.enter_context(start_redis())
        nodes = [stack.enter_context(start_memcached()) for _ in range(3)]
        yield {"REDIS_URL": redis.url, "MEMCACHED_SERVERS": ",".join(f"{h}:{p}" for h, p in (n.address for n in nodes))}


def run_pair(tmp_path, servers_env, first: tuple[str, str], second: tuple[str, str]) -> dict[str, dict]:
    """Run the two notebooks at once, as (participant, copy) each; their outcomes and saved results."""
    sync = tmp_path / "sync"
    sync.mkdir()
    procs, where = {}, {}
    for role, (who, copy), cells in (("first", first, FIRST), ("second", second, SECOND)):
        folder = tmp_path / role / copy  # the kernel starts in the notebook's folder: it tells the copy
        folder.mkdir(parents=True)
        path = folder / "98_room.ipynb"
        nbformat.write(room_notebook(cells), path)
        results_dir = tmp_path / (f"results-{who}")  # one checkout per participant
        env = {**os.environ, **servers_env, "ROOM_SYNC": str(sync), keys.PARTICIPANT_ENV: who,
               "CACHELAB_RESULTS_DIR": str(results_dir), "CACHELAB_CACHE_DIR": str(tmp_path / f"state-{who}")}
        procs[role] = subprocess.Popen([sys.executable, "-c", RUN_ONE, str(path)], env=env, stdout=subprocess.PIPE,
                                       stderr=subprocess.PIPE, text=True)
        where[role] = results_dir / ("exercises" if copy == "exercises" else "") / "98_room.json"
    out = {}
    for role, proc in procs.items():
        stdout, stderr = proc.communicate(timeout=300)
        assert proc.returncode == 0, stderr[-2000:]
        out[role] = json.loads(stdout.strip().splitlines()[-1])
        out[role]["saved"] = json.loads(where[role].read_text())["values"]["who"] if where[role].exists() else None
    return out


@pytest.mark.servers
@pytest.mark.notebook
@pytest.mark.parametrize("first, second", [
    (("alice", "notebooks"), ("bob", "notebooks")),  # two participants on the instructor's servers
    (("alice", "notebooks"), ("alice", "exercises")),  # one participant, notebooks/05 beside exercises/05
], ids=["two-participants", "notebooks-and-exercises"])
def test_two_kernels_on_one_server_keep_their_keys(tmp_path, room_servers, first, second):
    out = run_pair(tmp_path, room_servers, first, second)
    for role, run in out.items():
        assert run["ok"], f"{role}: {run['error']}"
    assert out["first"]["saved"] == list(first) and out["second"]["saved"] == list(second), \
        "each run's results file holds its own results"


@pytest.mark.servers
@pytest.mark.notebook
def test_the_room_test_fails_when_two_kernels_share_a_namespace(tmp_path, room_servers):
    """The control: the same pair in one namespace loses each other's keys, so the test above can fail."""
    out = run_pair(tmp_path, room_servers, ("alice", "notebooks"), ("alice", "notebooks"))
    assert not out["first"]["ok"] and "lost to the other kernel: (0, 0)" in out["first"]["error"], out["first"]
    assert not out["second"]["ok"] and "lost to the other kernel: (0, 0)" in out["second"]["error"], out["second"]


def test_notebook_cells_of_the_room_parse():
    for source in [PREAMBLE.format(n=N_KEYS), *FIRST, *SECOND]:
        compile(textwrap.dedent(source), "cell", "exec")


@pytest.mark.servers
def test_start_up_cleanups_of_a_whole_room_at_once_wait_for_each_other(memcached_server):
    """memcached runs one crawler at a time: the other cleanups get BUSY, wait, and still delete their keys."""
    from pymemcache.client.base import Client

    from cachelab.servers import cleanup_memcached

    people = [f"p{i}" for i in range(8)]
    client = Client(memcached_server.address, connect_timeout=1, timeout=2)
    client.set("user:precious", "keep me", noreply=False)
    for who in people:
        client.set_many({f"cachelab:{who}:05_memcached:k{i}": "x" for i in range(200)}, noreply=False)
    deleted, errors, start = {}, [], threading.Barrier(len(people))

    def clean(who):
        start.wait()
        try:
            deleted[who] = cleanup_memcached(memcached_server.address, f"cachelab:{who}:05_memcached:")
        except Exception as exc:  # noqa: BLE001 - collected for the assertion
            errors.append(repr(exc))

    threads = [threading.Thread(target=clean, args=(who,)) for who in people]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors, errors
    assert deleted == {who: 200 for who in people}
    assert client.get("user:precious") == b"keep me"


# --------------------------------------------------------------------------- an ACL user per participant

#: The Redis user an instructor gives each participant of a room that shares one server: their own keys and
#: channels (``cachelab:<name>:*``), every command but the dangerous ones (FLUSHALL, KEYS, CONFIG, CLIENT
#: KILL, INFO...). ``resetkeys resetchannels`` make the line the same whether the user exists or not.
ACL_LINE = "ACL SETUSER {name} on >{password} resetkeys resetchannels ~cachelab:{name}:* &cachelab:{name}:* " \
           "+@all -@dangerous"

#: The cells of notebooks/06_redis.ipynb run with that user, in the notebook's order: its core path (cache-aside,
#: batching and jitter, whose bulk writes go to a private Redis since the user may not read INFO for room_for, the
#: three protections written out and the stampede runs from worker processes, the closing checklist), delete on
#: write and its race, pub/sub invalidation on the notebook's channel (the tiny near cache and NearCache), the
#: lost-message demo (which needs CLIENT LIST and says so), the security checks and the results file.
CORE_06 = ["53a39f50", "2e6ff203", "337fba50", "r06reads", "9ba7373d", "87650082", "a143f402", "a3928290", "r06race",
           "r06fence", "70d0685b", "d7c1b88e", "r06lostplot", "b594e138", "61e6e032", "r06swr", "r06pool", "07f4d12e",
           "6c6e1eab", "c724bda3", "62de5141", "d3675270", "87092a30"]


def acl_user(admin, name: str, password: str, line: str = ACL_LINE) -> str:
    """Create (or reset) the participant's user on the server ``admin`` administers; its ``REDIS_URL``."""
    admin.execute_command(*line.format(name=name, password=password).split())
    kwargs = admin.connection_pool.connection_kwargs
    return f"redis://{name}:{password}@{kwargs['host']}:{kwargs['port']}/0"


def core_of_06(tmp_path):
    """A notebook of the cells of 06 in :data:`CORE_06`, in a ``notebooks/`` folder of its own."""
    from cachelab.kit import notebooks

    source = nbformat.read(notebooks.list_notebooks(["06"])[0], as_version=4)
    by_id = {c.get("id"): c for c in source.cells}
    nb = new_notebook(metadata=source.metadata)
    assert [c.get("id") for c in source.cells if c.get("id") in CORE_06] == CORE_06, "CORE_06 in the notebook's order"
    nb.cells = [by_id[c] for c in CORE_06]
    folder = tmp_path / "notebooks"
    folder.mkdir()
    nbformat.write(nb, folder / "06_redis.ipynb")
    return folder / "06_redis.ipynb"


@pytest.mark.servers
@pytest.mark.notebook
def test_06s_core_runs_as_a_participant_whose_acl_user_is_limited_to_their_prefix(tmp_path, room_servers):
    import redis

    admin = redis.Redis.from_url(room_servers["REDIS_URL"], decode_responses=True, socket_timeout=5)
    admin.set("user:precious", "do not touch")
    admin.set("cachelab:dave:06_redis:k", "dave's")
    url = acl_user(admin, "carol", "carol-secret")
    carol = redis.Redis.from_url(url, decode_responses=True, socket_timeout=5)
    carol.set("cachelab:carol:06_redis:k", "mine", ex=60)
    refused = {"another's key": lambda: carol.get("cachelab:dave:06_redis:k"),
               "a key outside the project": lambda: carol.set("user:precious", "gone"),
               "another's channel": lambda: carol.publish("cachelab:dave:06_redis:near:invalidate", "x k"),
               "KEYS": lambda: carol.keys("*"), "FLUSHALL": carol.flushall, "CONFIG": lambda: carol.config_get("dir"),
               "CLIENT KILL": lambda: carol.client_kill_filter(_id=1), "INFO": carol.info}
    for what, call in refused.items():
        with pytest.raises(redis.exceptions.NoPermissionError):
            call()
        print(f"refused: {what}")
    carol.close()

    path = core_of_06(tmp_path)
    env = {**os.environ, "REDIS_URL": url, "MEMCACHED_SERVERS": room_servers["MEMCACHED_SERVERS"],
           keys.PARTICIPANT_ENV: "carol", "CACHELAB_RESULTS_DIR": str(tmp_path / "results"),
           "CACHELAB_FIGURES_DIR": str(tmp_path / "figures"), "CACHELAB_CACHE_DIR": str(tmp_path / "state"),
           "CACHELAB_CLAIMS": ""}  # a participant's run: what is checked here is what the user may do
    proc = subprocess.run([sys.executable, "-c", RUN_ONE, str(path)], env=env, capture_output=True, text=True,
                          timeout=600, cwd=path.parent)
    assert proc.returncode == 0, proc.stderr[-2000:]
    outcome = json.loads(proc.stdout.strip().splitlines()[-1])
    assert outcome["ok"], outcome["error"]
    assert admin.get("user:precious") == "do not touch" and admin.get("cachelab:dave:06_redis:k") == "dave's"
    ran = nbformat.read(path, as_version=4)
    printed = "".join(o.get("text", "") for c in ran.cells if c.cell_type == "code" for o in c.get("outputs", []))
    for demo in ("the batches", "the burst"):  # this user may not read INFO, so room_for says no: a private Redis
        assert f"Writing {demo} to a private Redis started here instead" in printed, demo
    saved = json.loads((tmp_path / "results" / "06_redis.json").read_text())
    assert not saved["environment"]["servers"]["redis"].startswith("unavailable"), saved["environment"]["servers"]
    admin.close()


@pytest.mark.servers
def test_without_its_channel_pattern_the_participant_cannot_hear_its_own_invalidations(room_servers):
    """The control: ``&cachelab:<name>:*`` is what lets 06's near cache subscribe; without it, NOPERM."""
    import redis

    admin = redis.Redis.from_url(room_servers["REDIS_URL"], decode_responses=True, socket_timeout=5)
    url = acl_user(admin, "erin", "erin-secret", ACL_LINE.replace(" &cachelab:{name}:*", ""))
    erin = redis.Redis.from_url(url, decode_responses=True, socket_timeout=5)
    with pytest.raises(redis.exceptions.NoPermissionError):
        erin.publish("cachelab:erin:06_redis:near:invalidate", "x k")
    pubsub = erin.pubsub()
    with pytest.raises(redis.exceptions.NoPermissionError):
        pubsub.subscribe("cachelab:erin:06_redis:near:invalidate")
        pubsub.get_message(timeout=2)
    pubsub.close()
    erin.close()
    admin.close()
