"""The environment check (``make check``), the offline preparation (``make prefetch``, ``make setup OFFLINE=1``)
and the devcontainer."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Sequence
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
    opened = config["customizations"]["codespaces"]["openFiles"]
    assert all(not f.startswith("notebooks/") for f in opened) and "exercises/00_setup.ipynb" in opened, \
        "a participant's cloud editor opens their own copy, not the worked solutions"


def test_make_lab_serves_the_repository_root_so_that_the_solutions_are_reachable_from_exercises():
    text = (ROOT / "Makefile").read_text()
    lab = text.split("\nlab:", 1)[1].split("\n\n", 1)[0]
    assert "--ServerApp.root_dir=." in lab and "127.0.0.1" in lab


# --------------------------------------------------------------------------- an old Python, first

def python_310(tmp_path) -> tuple[str, str]:
    """A Python 3.10: the real one when installed, else this Python made to report 3.10.12 (sitecustomize)."""
    found = shutil.which("python3.10")
    if found:
        done = subprocess.run([found, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True,
                              text=True, timeout=30)
        if done.returncode == 0 and done.stdout.strip() == "(3, 10)":
            return found, "3.10."
    fake = tmp_path / "fake-python"
    (fake / "site").mkdir(parents=True)
    (fake / "site" / "sitecustomize.py").write_text("import sys\nsys.version_info = (3, 10, 12, 'final', 0)\n")
    script = fake / "python3.10"
    script.write_text(f'#!/bin/sh\nPYTHONPATH="{fake / "site"}" exec "{sys.executable}" "$@"\n')
    script.chmod(0o755)
    return str(script), "3.10.12"


def test_make_check_names_an_old_python_on_its_first_line_before_any_install(tmp_path):
    python, version = python_310(tmp_path)
    venv = tmp_path / "venv"
    for target in ("check", "setup"):
        done = subprocess.run(["make", "--no-print-directory", target, f"PYTHON={python}", f"VENV={venv}"], cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
        first = (done.stdout + done.stderr).splitlines()[0]
        assert first.startswith(f"FAIL  Python: {version}") and "older than 3.11" in first, done.stdout + done.stderr
        assert "-> fix:" in first and done.returncode == 2
        assert not venv.exists() and "pip" not in done.stdout, "nothing was installed"


def test_the_python_check_runs_as_a_plain_script_on_this_python():
    done = subprocess.run([sys.executable, "-I", str(ROOT / "cachelab" / "kit" / "check.py"), "--python-only"],
                          capture_output=True, text=True, timeout=30, cwd="/")
    assert done.returncode == 0 and done.stdout == "", done.stderr  # isolated: no package importable, none needed


# --------------------------------------------------------------------------- make setup OFFLINE=1

def make_wheel(folder: Path, name: str, version: str, files: dict[str, str], requires: Sequence[str] = ()) -> Path:
    """A pure-Python wheel, written by hand: enough for pip to install offline."""
    import base64
    import hashlib
    import zipfile

    dist = f"{name}-{version}.dist-info"
    meta = "".join([f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
                    *(f"Requires-Dist: {r}\n" for r in requires)])
    entries = {**files, f"{dist}/METADATA": meta,
               f"{dist}/WHEEL": "Wheel-Version: 1.0\nGenerator: tests\nRoot-Is-Purelib: true\nTag: py3-none-any\n"}
    record = []
    path = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as wheel:
        for arcname, text in entries.items():
            data = text.encode()
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{arcname},sha256={digest},{len(data)}")
            wheel.writestr(arcname, data)
        wheel.writestr(f"{dist}/RECORD", "\n".join([*record, f"{dist}/RECORD,,"]) + "\n")
    return path


IN_TREE_BACKEND = '''\
"""A build backend with no requirements, so that `pip install -e .` needs nothing from an index."""
import base64, hashlib, os, zipfile

NAME, VERSION = "roomlab", "0.1"


def _wheel(directory, files):
    dist = f"{NAME}-{VERSION}.dist-info"
    files = {**files, f"{dist}/METADATA": f"Metadata-Version: 2.1\\nName: {NAME}\\nVersion: {VERSION}\\n"
                                          "Requires-Dist: roomdep==1.0\\n",
             f"{dist}/WHEEL": "Wheel-Version: 1.0\\nGenerator: t\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"}
    name = f"{NAME}-{VERSION}-py3-none-any.whl"
    record = []
    with zipfile.ZipFile(os.path.join(directory, name), "w") as wheel:
        for arcname, text in files.items():
            data = text.encode()
            digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            record.append(f"{arcname},sha256={digest},{len(data)}")
            wheel.writestr(arcname, data)
        wheel.writestr(f"{dist}/RECORD", "\\n".join(record + [f"{dist}/RECORD,,"]) + "\\n")
    return name


def build_editable(wheel_directory, config_settings=None, metadata_directory=None):
    return _wheel(wheel_directory, {f"{NAME}.pth": os.path.abspath(os.path.dirname(__file__)) + "\\n"})


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    return _wheel(wheel_directory, {f"{NAME}/__init__.py": ""})
'''


def pip_line(make_output: str) -> str:
    lines = [ln for ln in make_output.splitlines() if " -m pip install " in ln]
    assert len(lines) == 1, make_output
    return lines[0]


@pytest.mark.servers  # slow rather than server-bound: a fresh venv and two pip installs
def test_make_setup_offline_installs_from_the_wheelhouse_alone_and_the_other_targets_accept_it(tmp_path):
    venv = tmp_path / "venv"
    dry = subprocess.run(["make", "-n", "-B", "--no-print-directory", "setup", "OFFLINE=1", f"VENV={venv}"], cwd=ROOT,
                         capture_output=True, text=True, timeout=60)
    offline = pip_line(dry.stdout)
    assert "--no-index --find-links wheelhouse -r requirements.txt -e ." in offline, offline
    assert f"CACHELAB_OFFLINE=1 {venv}/bin/python -m cachelab setup-system" in dry.stdout, "the tools from the stick"
    online = pip_line(subprocess.run(["make", "-n", "-B", "--no-print-directory", "setup", f"VENV={venv}"], cwd=ROOT,
                                     capture_output=True, text=True, timeout=60).stdout)
    assert "--no-index" not in online

    # that very command, in a project of its own, with a wheelhouse built here and the network cut
    project = tmp_path / "project"
    (project / "wheelhouse").mkdir(parents=True)
    make_wheel(project / "wheelhouse", "roomdep", "1.0", {"roomdep/__init__.py": "ANSWER = 42\n"})
    (project / "requirements.txt").write_text("roomdep==1.0\n")
    (project / "pyproject.toml").write_text('[build-system]\nrequires = []\nbuild-backend = "backend"\n'
                                            'backend-path = ["."]\n')
    (project / "backend.py").write_text(IN_TREE_BACKEND)
    (project / "roomlab.py").write_text("from roomdep import ANSWER\n")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=180)
    command = offline.replace(f"{venv}/bin/python", str(venv / "bin" / "python")).split()
    cut = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "HTTP_PROXY": "http://127.0.0.1:9",
           "HTTPS_PROXY": "http://127.0.0.1:9", "ALL_PROXY": "http://127.0.0.1:9", "PIP_DEFAULT_TIMEOUT": "3"}
    done = subprocess.run(command, cwd=project, env=cut, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    imported = subprocess.run([str(venv / "bin" / "python"), "-c", "import roomlab; print(roomlab.ANSWER)"],
                              cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert imported.stdout.strip() == "42", imported.stderr
    (project / "requirements.txt").write_text("roomdep==1.0\nnot-in-the-wheelhouse==1.0\n")
    missing = subprocess.run(command, cwd=project, env=cut, capture_output=True, text=True, timeout=300)
    assert missing.returncode != 0 and "not-in-the-wheelhouse" in missing.stderr, "nothing came from an index"

    # the install stamp that `make setup OFFLINE=1` leaves: make check, servers and run install nothing again
    (venv / ".installed").touch()
    for target in ("check", "servers", "run"):
        later = subprocess.run(["make", "-n", "--no-print-directory", target, f"VENV={venv}"], cwd=ROOT,
                               capture_output=True, text=True, timeout=60)
        assert " -m pip install " not in later.stdout, f"make {target} would install again:\n{later.stdout}"
    os.utime(venv / ".installed", (0, 0))  # older than requirements.txt: the next target reinstalls
    stale = subprocess.run(["make", "-n", "--no-print-directory", "check", f"VENV={venv}"], cwd=ROOT,
                           capture_output=True, text=True, timeout=60)
    assert " -m pip install " in stale.stdout


def test_offline_setup_without_a_wheelhouse_says_what_to_do(tmp_path):
    done = subprocess.run(["make", "--no-print-directory", "setup", "OFFLINE=1", f"VENV={tmp_path / 'venv'}",
                           f"WHEELHOUSE={tmp_path / 'nowhere'}"], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and "run make prefetch" in done.stderr and not (tmp_path / "venv").exists()


# --------------------------------------------------------------------------- make prefetch for the room

def test_prefetch_fetches_for_the_machines_participants_bring(tmp_path, monkeypatch):
    calls, said = [], []
    monkeypatch.setattr(prefetch, "docker_compose_available", lambda: (False, "`docker` is not installed"))

    def fake_run(cmd, **_):
        calls.append(cmd)
        return SimpleNamespace(returncode=0)

    assert prefetch.prefetch(tmp_path, run=fake_run, echo=lambda *a, **_: said.append(" ".join(map(str, a)))) == 0
    downloads = [c for c in calls if c[3] == "download"]
    assert len(downloads) == 1 + len(prefetch.MACHINES) * len(prefetch.SUPPORTED_PYTHONS)
    assert "--platform" not in downloads[0], "this machine first, as it is"
    seen = set()
    for cmd in downloads[1:]:
        assert "--only-binary=:all:" in cmd
        tags = [cmd[i + 1] for i, arg in enumerate(cmd) if arg == "--platform"]
        seen.add((tags[0], cmd[cmd.index("--python-version") + 1]))
        assert not any(t.startswith("win") for t in tags), "WSL runs Linux wheels"
        if tags[0].startswith("manylinux"):
            assert {"manylinux_2_35_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64"} <= set(tags)
    assert seen == {(tag, version) for tag in ("manylinux_2_35_x86_64", "macosx_12_0_x86_64", "macosx_12_0_arm64")
                    for version in prefetch.SUPPORTED_PYTHONS}
    assert calls[len(downloads)][3] == "install" and "--no-index" in calls[len(downloads)]
    assert "make setup OFFLINE=1" in (tmp_path / "README.txt").read_text() and "make setup OFFLINE=1" in "\n".join(said)


def test_prefetch_can_be_narrowed_to_a_few_machines(tmp_path):
    passes = prefetch.download_passes(machines=["macos-arm64", "linux-aarch64"], pythons=["3.12"])
    assert [(tags[0] if tags else None, v) for _, tags, v in passes] == [
        (None, None), ("macosx_12_0_arm64", "3.12"), ("manylinux_2_35_aarch64", "3.12")]
    with pytest.raises(ValueError, match="unknown machine"):
        prefetch.download_passes(machines=["windows"])


def test_supported_pythons_start_at_the_minimum():
    minimum = ".".join(map(str, check.MINIMUM_PYTHON))
    assert prefetch.SUPPORTED_PYTHONS[0] == minimum
    assert f'requires-python = ">={minimum}"' in (ROOT / "pyproject.toml").read_text()


APT_DEPENDS = """\
redis-server
  PreDepends: init-system-helpers
  Depends: lsb-base
    sysvinit-utils
  Depends: redis-tools
memcached
  Depends: adduser
  Depends: <perl:any>
    perl
  Depends: libevent-2.1-7
  Recommends: libcache-memcached-perl
wrk
  Depends: libc6
 |Depends: libluajit-5.1-2
  Depends: libluajit2-5.1-2
  Depends: libssl3
"""


def test_apt_depends_is_read_as_apt_reads_it():
    assert prefetch.parse_apt_depends(APT_DEPENDS) == {
        "redis-server": [["init-system-helpers"], ["lsb-base"], ["redis-tools"]],
        "memcached": [["adduser"], ["perl"], ["libevent-2.1-7"]],
        "wrk": [["libc6"], ["libluajit-5.1-2", "libluajit2-5.1-2"], ["libssl3"]],
    }
    deps = {"a": [["b"], ["c", "d"]], "b": [["e"]], "c": [], "e": [["a"]]}
    assert prefetch.resolve_debs(["a"], lambda batch: {p: deps.get(p, []) for p in batch}) == ["a", "b", "c", "e"]
    shown = "Package: libc6\nPriority: optional\n\nPackage: dpkg\nEssential: yes\nPriority: required\n"
    assert prefetch.parse_priorities(shown) == {"libc6": "optional", "dpkg": "required"}


def test_prefetch_debs_downloads_what_a_desktop_may_lack(tmp_path, monkeypatch):
    os_release = tmp_path / "os-release"
    os_release.write_text('PRETTY_NAME="Ubuntu 24.04.1 LTS"\nID=ubuntu\nVERSION_ID="24.04"\n')
    monkeypatch.setattr(prefetch.shutil, "which", lambda name: f"/usr/bin/{name}")
    graph = {"memcached": [["libevent-2.1-7"], ["libc6"]], "redis-server": [["redis-tools"]],
             "redis-tools": [["libc6"], ["libjemalloc2"]], "wrk": [["libc6"]], "libc6": [], "libevent-2.1-7": [],
             "libjemalloc2": [], "dpkg": [["libc6"]], "nginx": [["nginx-common"], ["libc6"]], "nginx-common": []}
    priorities = {"dpkg": "required", "libc6": "optional"}
    calls = []

    def fake_run(cmd, **kwargs):
        calls.append((cmd, kwargs))
        if cmd[:2] == ["apt-cache", "depends"]:
            names = [c for c in cmd[2:] if not c.startswith("--")]
            text = "".join(f"{n}\n" + "".join(f"  Depends: {g[0]}\n" for g in graph.get(n, [])) for n in names)
            return SimpleNamespace(returncode=0, stdout=text)
        if cmd[:2] == ["apt-cache", "show"]:
            names = [c for c in cmd[2:] if not c.startswith("--")] + ["dpkg"]
            return SimpleNamespace(returncode=0, stdout="".join(
                f"Package: {n}\nPriority: {priorities.get(n, 'optional')}\n\n" for n in names))
        return SimpleNamespace(returncode=0, stdout="")

    said = []
    assert prefetch.prefetch_debs(tmp_path, run=fake_run, echo=lambda *a, **_: said.append(a[0]), os_release=os_release,
                                  arch="amd64") == 0
    download = next((cmd, kw) for cmd, kw in calls if cmd[:2] == ["apt-get", "download"])
    folder = tmp_path / "debs" / "ubuntu-24.04-amd64"
    assert download[1]["cwd"] == folder
    assert sorted(download[0][2:]) == ["libevent-2.1-7", "libjemalloc2", "memcached", "nginx", "nginx-common",
                                       "redis-server", "redis-tools", "wrk"], \
        "libc6 is what dpkg (required) needs: every install has it"
    script = (folder / "install.sh").read_text()
    assert "Ubuntu 24.04.1 LTS" in script and "dpkg -i" in script
    assert "sudo sh wheelhouse/debs/ubuntu-24.04-amd64/install.sh" in said[-1]


def test_the_stick_installs_only_the_packages_a_machine_lacks(tmp_path):
    """install.sh with dpkg stand-ins on PATH: which packages it hands to dpkg -i."""
    folder = tmp_path / "debs"
    folder.mkdir()
    (folder / "install.sh").write_text(prefetch.INSTALL_SH.format(release="r", pretty="R", date="d"))
    for name in ("memcached", "libc6", "wrk"):
        (folder / f"{name}_1.0_amd64.deb").write_text(name)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "dpkg-deb").write_text('#!/bin/sh\ncat "$2"\n')  # --field FILE Package: the name is the content
    (bin_dir / "dpkg-query").write_text('#!/bin/sh\n[ "$3" = libc6 ] && printf "install ok installed"; exit 0\n')
    (bin_dir / "dpkg").write_text(f'#!/bin/sh\necho "$@" > {tmp_path / "dpkg-args"}\n')
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    done = subprocess.run(["sh", str(folder / "install.sh")], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "dpkg-args").read_text().split() == ["-i", "memcached_1.0_amd64.deb", "wrk_1.0_amd64.deb"]


def test_offline_setup_installs_the_tools_from_the_stick_only(tmp_path, monkeypatch):
    from cachelab.kit import system

    tools = [system.TOOLS[0]]
    release = prefetch.release_name(arch=None) if Path("/etc/os-release").exists() and shutil.which("dpkg") else None
    if release is None:
        pytest.skip("no dpkg here: the stick's packages are for Debian and Ubuntu")
    monkeypatch.setattr(system.os, "geteuid", lambda: 0)
    assert system.install_commands(tools, from_stick=True, debs_root=tmp_path) is None, "nothing on the stick"
    (tmp_path / release).mkdir()
    (tmp_path / release / "install.sh").write_text("#!/bin/sh\n")
    assert system.install_commands(tools, from_stick=True, debs_root=tmp_path) == [
        ["sh", str(tmp_path / release / "install.sh")]]
    monkeypatch.setenv("CACHELAB_OFFLINE", "1")
    assert system.install_commands(tools, debs_root=tmp_path) == [["sh", str(tmp_path / release / "install.sh")]]
    monkeypatch.setenv("CACHELAB_OFFLINE", "0")
    assert all("apt-get" in " ".join(c) for c in system.install_commands(tools, debs_root=tmp_path))


def test_setup_installs_chromium_for_the_tests_in_a_command_of_its_own_and_never_fails_on_it(monkeypatch):
    """The browser tests run on a new machine instead of skipping; a system without the package still sets up."""
    from cachelab.kit import system

    monkeypatch.setattr(system, "missing", lambda tools=system.TOOLS: list(tools) if tools is system.TEST_TOOLS else [])
    monkeypatch.setattr(system.os, "geteuid", lambda: 0)
    monkeypatch.setattr(system.shutil, "which", lambda cmd: "/usr/bin/apt-get" if cmd == "apt-get" else None)
    monkeypatch.delenv("CACHELAB_OFFLINE", raising=False)
    monkeypatch.delenv("CACHELAB_NO_INSTALL", raising=False)
    ran, said = [], []

    def run(command, timeout):
        ran.append(command)
        return subprocess.CompletedProcess(command, 100 if "install" in command else 0)  # no such package

    still = system.ensure_test_tools(run=run, say=said.append)
    assert ran[-1][-1] == "chromium" and "apt-get" in ran[-1], ran
    assert [t.command for t in still] == ["chromium"]
    assert any("skipped" in line for line in said), said
    ran.clear()
    monkeypatch.setenv("CACHELAB_OFFLINE", "1")
    system.ensure_test_tools(run=run, say=said.append)
    assert not ran, "offline, nothing is downloaded for the tests"
