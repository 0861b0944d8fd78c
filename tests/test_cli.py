"""Every expected failure of the command line says what went wrong and what to do: no traceback, exit 1 or 2.

Each case runs ``python -m cachelab`` as a reader would, in a subprocess, with its own scratch folders, and
checks the exit code (2 for bad usage or a machine that is not ready, 1 for a notebook that failed), the
sentence that names the fix, and that no Python traceback was printed.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
import time

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from cachelab import paths
from cachelab.servers import free_port, start_redis


def cachelab(*args: str, env: dict | None = None, timeout: float = 120,
             from_a_terminal: bool = False) -> tuple[int, str, float]:
    """Run ``python -m cachelab ARGS``; its exit code, its output (stdout and stderr), and its duration.

    ``from_a_terminal``: with SIGINT's default action, as a command typed at a terminal has it, whatever the tests
    run under (a shell's background job, as CI may start them, ignores SIGINT, and so would the run)."""
    start = time.monotonic()
    default_sigint = functools.partial(signal.signal, signal.SIGINT, signal.SIG_DFL)
    done = subprocess.run([sys.executable, "-m", "cachelab", *args], capture_output=True, text=True,
                          timeout=timeout, env=env, cwd=paths.project_root(),
                          preexec_fn=default_sigint if from_a_terminal else None)
    return done.returncode, done.stdout + done.stderr, time.monotonic() - start


@pytest.fixture
def bare_env(tmp_path):
    """An environment with no servers anywhere: no binaries on PATH, no variables, no state file, no installs."""
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "MEMCACHED_SERVERS")}
    empty_bin = tmp_path / "bin"
    empty_bin.mkdir()
    env.update(PATH=str(empty_bin), CACHELAB_NO_INSTALL="1", CACHELAB_CACHE_DIR=str(tmp_path / "cache"),
               CACHELAB_RESULTS_DIR=str(tmp_path / "results"), CACHELAB_REDIS_PASSWORD="not-the-compose-one")
    return env


def test_no_servers_and_no_install_fails_within_seconds_naming_the_three_ways(bare_env):
    for args in (["setup-system"], ["servers", "up"], ["run", "--only", "00"]):
        code, out, seconds = cachelab(*args, env=bare_env)
        assert code == 2, out
        assert "Traceback" not in out, out
        assert "docker compose up -d" in out and "REDIS_URL" in out and "apt" in out, out
        assert seconds < 10, f"`cachelab {' '.join(args)}` took {seconds:.1f} s to say no servers"


def test_installing_turned_off_is_said_and_the_missing_tools_are_named(bare_env):
    code, out, _ = cachelab("setup-system", env=bare_env)
    assert code == 2 and "CACHELAB_NO_INSTALL=1" in out
    for tool in ("redis-server", "memcached", "wrk"):
        assert tool in out


def test_an_unreachable_redis_url_is_named_with_its_fix(bare_env):
    env = {**bare_env, "REDIS_URL": f"redis://:secret@127.0.0.1:{free_port()}/0", "MEMCACHED_SERVERS": "127.0.0.1:1"}
    code, out, seconds = cachelab("servers", "up", env=env)
    assert code == 2 and "Traceback" not in out, out
    assert "did not answer" in out and "unset REDIS_URL" in out and "secret" not in out, out
    assert seconds < 10


def test_a_bad_option_is_a_usage_error():
    for args in (["run", "--only", "99"], ["frobnicate"], ["with-servers"], ["bench", "--pin", "4096"]):
        code, out, _ = cachelab(*args)
        assert code == 2, (args, out)
        assert "Traceback" not in out, out
    assert "no notebook matches 99" in cachelab("run", "--only", "99")[1]


@pytest.mark.servers
def test_a_wrong_password_is_named_with_its_fix(bare_env):
    with start_redis(password="the-right-one") as server:
        env = {**bare_env, "REDIS_URL": f"redis://:wrong@127.0.0.1:{server.port}/0", "MEMCACHED_SERVERS": "127.0.0.1:1"}
        code, out, _ = cachelab("servers", "up", env=env)
    assert code == 2 and "Traceback" not in out, out
    assert "password" in out and "unset REDIS_URL" in out, out


@pytest.mark.servers
def test_a_failing_notebook_and_a_missing_results_file_are_one_paragraph_each(tmp_path, servers):
    """A project with two notebooks: one reads results nobody saved, one raises. The run says so, exit 1."""
    project = tiny_project(tmp_path, {"00_reads_results": "from cachelab import results\nresults.load('99_never_ran')",
                                      "01_raises": "x = 1\nraise RuntimeError('a cell that fails')"})
    env = {**os.environ, "CACHELAB_HOME": str(project), "CACHELAB_CACHE_DIR": str(paths.cache_dir()),
           "REDIS_URL": servers.redis.url,
           "MEMCACHED_SERVERS": ",".join(f"{h}:{p}" for h, p in servers.memcached.nodes)}
    code, out, _ = cachelab("run", "--quick", env=env, timeout=300)
    assert code == 1, out
    assert "Traceback" not in out, out
    assert "ResultsMissing" in out and "99_never_ran" in out, out
    assert "RuntimeError: a cell that fails" in out and "2 notebook(s) failed: 00_reads_results, 01_raises" in out, out
    assert (project / "build" / "notebooks" / "01_raises.ipynb").exists(), "the executed copy shows the error in place"


def tiny_project(tmp_path, notebooks: dict[str, str]):
    """A project beside the real data whose notebooks are ``{name: one cell's code}``."""
    project = tmp_path / "project"
    (project / "notebooks").mkdir(parents=True)
    (project / "data").symlink_to(paths.data_dir())
    (project / "pyproject.toml").write_text("")
    for name, code in notebooks.items():
        nb = new_notebook(cells=[new_markdown_cell(f"# {name}"), new_code_cell(code)])
        nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
        nbformat.write(nb, project / "notebooks" / f"{name}.ipynb")
    return project


def started_ports(out: str) -> list[int]:
    """The ports of the servers a run said it started."""
    import re

    started = re.search(r"Started redis-server on 127\.0\.0\.1:(\d+) and memcached on 127\.0\.0\.1:([\d, ]+)", out)
    assert started, out
    return [int(started.group(1))] + [int(p) for p in started.group(2).split(",")]


@pytest.mark.servers
def test_run_stops_the_servers_it_started_itself(tmp_path):
    """`make run` with no servers anywhere starts its own, and none of them is left running afterwards."""
    from cachelab.servers import port_in_use

    project = tiny_project(tmp_path, {"00_tiny": "x = 1"})
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "MEMCACHED_SERVERS")}
    env.update(CACHELAB_HOME=str(project), CACHELAB_REDIS_PASSWORD="not-the-compose-one")
    code, out, _ = cachelab("run", "--quick", env=env, timeout=300)
    assert code == 0, out
    ports = started_ports(out)
    assert "Stopped 4 cachelab server(s)" in out, out
    assert not any(port_in_use(port) for port in ports), f"a server the run started is still up: {ports}"
    assert not (project / ".cachelab" / "servers.json").exists()


@pytest.mark.servers
def test_ctrl_c_stops_the_run_and_the_servers_it_started(tmp_path):
    """Ctrl-C during `make run` stops the whole run: not only the notebook executing, with the next one started.

    The terminal sends SIGINT to the run (the kernels live in sessions of their own); here the first notebook's
    cell sends it to the run, its parent, then waits a minute that the test must not wait for.
    """
    from cachelab.servers import port_in_use

    marker = tmp_path / "second-notebook-ran"
    project = tiny_project(tmp_path, {
        "00_interrupted": "import os, signal, time\nos.kill(os.getppid(), signal.SIGINT)\ntime.sleep(60)",
        "01_never_started": f"open({str(marker)!r}, 'w').close()"})
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "MEMCACHED_SERVERS")}
    env.update(CACHELAB_HOME=str(project), CACHELAB_REDIS_PASSWORD="not-the-compose-one")
    code, out, seconds = cachelab("run", "--quick", env=env, timeout=120, from_a_terminal=True)
    assert code == 130 and "interrupted" in out, out
    assert seconds < 45, f"the run waited for the interrupted cell ({seconds:.0f} s)"
    assert not marker.exists(), "the run went on to the next notebook after Ctrl-C"
    ports = started_ports(out)
    assert not any(port_in_use(port) for port in ports), f"a server the run started is still up: {ports}"
