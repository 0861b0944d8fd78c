"""The environment check (``make check``), the offline preparation (``make prefetch``) and the devcontainer."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

import pytest

from cachelab import paths
from cachelab.kit import check, prefetch

ROOT = paths.project_root()


# --------------------------------------------------------------------------- make check

def test_item_lines_say_ok_or_fail_with_the_fix():
    assert check.Item("Python", True, "3.12.1").line() == "OK    Python: 3.12.1"
    line = check.Item("package redis", False, "7.0 installed, 8.1.0 pinned", "make setup").line()
    assert line == "FAIL  package redis: 7.0 installed, 8.1.0 pinned -> fix: make setup"


def test_python_version():
    assert check.check_python().ok
    old = check.check_python((3, 11), version=(3, 10, 4))
    assert not old.ok and "3.10.4" in old.detail and "3.11" in old.fix


def test_pins_are_read_and_compared(tmp_path):
    requirements = tmp_path / "requirements.txt"
    pytest_version = metadata.version("pytest")
    requirements.write_text(f"# a comment\n\npytest=={pytest_version}  # trailing\nredis[hiredis]==0.0.1\n"
                            "no-such-package-for-cachelab==1.0\nnumpy>=1\n")
    assert check.read_pins(requirements) == [("pytest", pytest_version), ("redis", "0.0.1"),
                                             ("no-such-package-for-cachelab", "1.0")]
    items = {i.name: i for i in check.check_packages(requirements)}
    assert items["package pytest"].ok
    assert not items["package redis"].ok and "0.0.1 pinned" in items["package redis"].detail
    assert "make setup" in items["package redis"].fix
    missing = items["package no-such-package-for-cachelab"]
    assert not missing.ok and "not installed" in missing.detail


def test_a_missing_kernel_names_the_install_command():
    missing = check.check_kernel("no-such-kernel-for-cachelab")
    assert not missing.ok and "ipykernel install" in missing.fix


def test_a_port_taken_by_someone_else_fails_and_ours_is_fine():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        taken = check.check_ports({port: "a test service"})[0]
        assert not taken.ok and f"lsof -iTCP:{port}" in taken.fix
        assert check.check_ports({port: "a test service"}, ours={port})[0].ok
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        free = sock.getsockname()[1]
    assert check.check_ports({free: "a test service"})[0].ok


def test_disk_space():
    assert check.check_disk(ROOT, minimum_gb=0.001).ok
    full = check.check_disk(ROOT, minimum_gb=10**9)
    assert not full.ok and "make clean" in full.fix


def test_report_counts_and_the_exit_code_follow_fail_lines():
    items = [check.Item("a", True, "fine"), check.Item("b", False, "broken", "mend it")]
    text = check.report(items)
    assert text.splitlines()[-1].startswith("1 OK, 1 FAIL")


@pytest.mark.servers
def test_make_check_prints_one_line_per_item_and_its_exit_code_follows_them():
    """Whether this machine passes is for `make check` to say; here, that it says it in the right form."""
    done = subprocess.run([sys.executable, "-m", "cachelab", "check"], capture_output=True, text=True, timeout=240,
                          cwd=ROOT)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith(("OK ", "FAIL "))]
    names = {ln.split(":")[0].split(None, 1)[1] for ln in lines}
    assert {"Python", "Jupyter kernel", "Redis", "memcached node 1", "memcached node 2", "memcached node 3",
            "disk", "port 16379", "flight database", "package redis"} <= names
    failed = sum(ln.startswith("FAIL ") for ln in lines)
    assert f"{failed} FAIL" in done.stdout and done.returncode == (1 if failed else 0), done.stdout + done.stderr


@pytest.mark.servers
def test_make_check_fails_with_the_fix_when_the_given_servers_are_down():
    with socket.socket() as sock:  # a port with nothing behind it
        sock.bind(("127.0.0.1", 0))
        dead = sock.getsockname()[1]
    env = {**os.environ, "REDIS_URL": f"redis://127.0.0.1:{dead}/0"}
    done = subprocess.run([sys.executable, "-m", "cachelab", "check"], capture_output=True, text=True, timeout=240,
                          cwd=ROOT, env=env)
    assert done.returncode == 1
    fail = [ln for ln in done.stdout.splitlines() if ln.startswith("FAIL")]
    assert fail and "REDIS_URL" in fail[0] and "-> fix:" in fail[0]


# --------------------------------------------------------------------------- make prefetch

def test_prefetch_commands(tmp_path):
    here = prefetch.download_command(tmp_path, ROOT / "requirements.txt", python="py")
    assert here[:4] == ["py", "-m", "pip", "download"] and "setuptools>=68" in here
    assert "--only-binary=:all:" not in here
    other = prefetch.download_command(tmp_path, ROOT / "requirements.txt", platform="macosx_11_0_arm64",
                                      python_version="3.12", python="py")
    assert "--only-binary=:all:" in other and other[other.index("--platform") + 1] == "macosx_11_0_arm64"
    offline = prefetch.offline_install_command(tmp_path, ROOT / "requirements.txt", python="py")
    assert {"--no-index", "--dry-run", "--find-links"} <= set(offline)


def test_prefetch_runs_the_steps_and_explains_missing_docker(tmp_path, monkeypatch):
    calls, said = [], []
    monkeypatch.setattr(prefetch, "docker_compose_available", lambda: (False, "`docker` is not installed"))

    def fake_run(cmd, **_):
        calls.append(cmd)
        return SimpleNamespace(returncode=0)

    code = prefetch.prefetch(tmp_path, platforms=["win_amd64"], python_version="3.12", run=fake_run,
                             echo=lambda *a, **_: said.append(" ".join(map(str, a))))
    assert code == 0
    assert [c[3] for c in calls] == ["download", "download", "install"]
    assert "--platform" in calls[1] and "--dry-run" in calls[2]
    text = "\n".join(said)
    assert "pip install --no-index --find-links" in text
    assert "Docker images not pulled: `docker` is not installed" in text and "apt install redis-server" in text


def test_prefetch_stops_on_a_failed_download(tmp_path):
    code = prefetch.prefetch(tmp_path, docker=False, run=lambda cmd, **_: SimpleNamespace(returncode=2),
                             echo=lambda *a, **_: None)
    assert code == 2


def test_wheelhouse_is_ignored():
    assert "wheelhouse/" in (ROOT / ".gitignore").read_text().splitlines()


# --------------------------------------------------------------------------- the devcontainer

def test_devcontainer_reuses_the_compose_file():
    config = json.loads((ROOT / ".devcontainer" / "devcontainer.json").read_text())
    files = config["dockerComposeFile"]
    assert "../docker-compose.yml" in files
    extra = [f for f in files if f != "../docker-compose.yml"]
    assert extra and all((ROOT / ".devcontainer" / f).exists() for f in extra)
    overlay = "".join((ROOT / ".devcontainer" / f).read_text() for f in extra)
    assert f"  {config['service']}:" in overlay, "the workspace service is defined in the devcontainer overlay"
    main_compose = (ROOT / "docker-compose.yml").read_text()
    assert f"  {config['service']}:" not in main_compose, "the main compose file stays as it is"
    for service in ("redis", "memcached-1", "memcached-2", "memcached-3"):
        assert f"  {service}:" in main_compose and service in overlay, f"the workspace reaches {service}"
    assert "make setup" in json.dumps(config)
    assert Path(config["workspaceFolder"]).is_absolute()
