"""Everything a room with bad Wi-Fi needs, fetched ahead: ``make prefetch`` / ``python -m cachelab prefetch``.

1. Wheels into ``wheelhouse/`` (ignored by git), for this machine and for the machines participants bring
   (:data:`MACHINES`: Linux on x86-64, which is also what WSL 2 on Windows runs; macOS on Intel and on
   Apple silicon), each for every supported Python (:data:`SUPPORTED_PYTHONS`), and the build backend
   of ``pip install -e .``. Copy the repository with that folder to each machine (a USB stick will do),
   then ``make setup OFFLINE=1``: the same install as ``make setup``, with ``pip --no-index --find-links
   wheelhouse``, so that ``make check``, ``make servers`` and ``make run`` then find it done.
2. The Debian or Ubuntu packages of the servers and tools (``redis-server``, ``redis-tools``,
   ``memcached``, ``wrk`` and the dependencies a desktop install may lack), downloaded with ``apt-get
   download`` into ``wheelhouse/debs/<release>-<arch>/``, for participants without Docker. They fit only
   the release they were downloaded on (the instructor's); ``make setup OFFLINE=1`` installs the missing
   ones with ``dpkg -i``, and the folder's ``install.sh`` does the same by hand.
3. ``docker compose pull``: the Redis and memcached images of ``docker-compose.yml``, when Docker Compose
   works here; otherwise a message says so and what to do instead.

The data need no network: the CSV sources are committed and the database is built from them.
"""

from __future__ import annotations

import datetime
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from .. import paths

BUILD_REQUIREMENTS = ("setuptools>=68",)  # pyproject.toml's build backend, for `pip install -e .` offline
SUPPORTED_PYTHONS = ("3.11", "3.12", "3.13", "3.14")  # requires-python >=3.11, up to the newest release
DEBS_FOLDER = "debs"


def linux_platforms(arch: str, glibc: tuple[int, int] = (2, 35)) -> tuple[str, ...]:
    """The manylinux tags a Linux with this ``glibc`` runs, newest first (pip expands only the legacy ones).

    glibc 2.35 is Ubuntu 22.04's, the oldest release WSL 2 still installs by default; newer ones run
    these wheels too.
    """
    major, minor = glibc
    tags = [f"manylinux_{major}_{m}_{arch}" for m in range(minor, 4, -1)]
    return (*tags, f"manylinux2014_{arch}", f"manylinux2010_{arch}", f"manylinux1_{arch}")


@dataclass(frozen=True)
class Machine:
    """A kind of machine a participant brings: what it is, and the wheel platform tags it runs."""

    description: str
    platforms: tuple[str, ...]


MACHINES = {
    "linux-x86_64": Machine("Linux on x86-64, and WSL 2 on Windows", linux_platforms("x86_64")),
    "macos-x86_64": Machine("macOS 12 or newer on Intel", ("macosx_12_0_x86_64",)),
    "macos-arm64": Machine("macOS 12 or newer on Apple silicon", ("macosx_12_0_arm64",)),
}
OTHER_MACHINES = {  # on request (--machine): rarer in a room
    "linux-aarch64": Machine("Linux on 64-bit ARM, and WSL 2 on Windows on ARM", linux_platforms("aarch64")),
}


def wheelhouse_dir() -> Path:
    return paths.project_root() / "wheelhouse"


def download_command(dest: Path, requirements: Path, *, platform: str | Sequence[str] | None = None,
                     python_version: str | None = None, python: str = sys.executable) -> list[str]:
    """The ``pip download`` command for one platform (this machine's when ``platform`` is None).

    ``platform`` is one wheel platform tag or several (a machine that runs any of them).
    """
    cmd = [python, "-m", "pip", "download", "--disable-pip-version-check", "--dest", str(dest),
           "-r", str(requirements), *BUILD_REQUIREMENTS]
    platforms = [platform] if isinstance(platform, str) else list(platform or [])
    if platforms or python_version:
        # another machine's wheels: pip cannot build an sdist for a platform it does not run on
        cmd += ["--only-binary=:all:"]
        for tag in platforms:
            cmd += ["--platform", tag]
        if python_version:
            cmd += ["--python-version", python_version]
    return cmd


def offline_install_command(dest: Path, requirements: Path, python: str = sys.executable) -> list[str]:
    """A dry run of the offline install, from the wheelhouse only: proves that nothing is missing."""
    return [python, "-m", "pip", "install", "--disable-pip-version-check", "--dry-run", "--ignore-installed",
            "--no-index", "--find-links", str(dest), "-r", str(requirements), *BUILD_REQUIREMENTS]


def docker_compose_available() -> tuple[bool, str]:
    """Whether ``docker compose`` works here (the client and a running engine), and what it said."""
    docker = shutil.which("docker")
    if not docker:
        return False, "`docker` is not installed"
    try:
        version = subprocess.run([docker, "compose", "version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"`docker compose version` failed: {type(exc).__name__}"
    if version.returncode != 0:
        said = (version.stderr or version.stdout).strip().splitlines()
        return False, f"`docker compose` is not available ({said[0] if said else 'no compose plugin'})"
    try:
        engine = subprocess.run([docker, "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True,
                                timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, f"the Docker engine did not answer: {type(exc).__name__}"
    if engine.returncode != 0 or not engine.stdout.strip():
        return False, "the Docker engine is not running (start Docker Desktop, or `sudo systemctl start docker`)"
    return True, version.stdout.strip()


NO_DOCKER = """\
Docker images not pulled: {reason}.
  That is fine without Docker: cachelab starts redis-server and memcached from PATH. Install them while
  you still have a network: `sudo apt install redis-server memcached redis-tools` (Debian, Ubuntu) or
  `brew install redis memcached` (macOS). With Docker, run `make prefetch` again to pull the images."""


# --------------------------------------------------------------------------- Debian and Ubuntu packages

def deb_packages() -> list[str]:
    """The apt packages of the tools a run needs (:data:`cachelab.kit.system.TOOLS`)."""
    from .system import TOOLS

    return sorted({tool.apt for tool in TOOLS})


_DEPENDENCY = re.compile(r"^ ([ |])(PreDepends|Depends): (\S+)")


def parse_apt_depends(text: str) -> dict[str, list[list[str]]]:
    """``apt-cache depends`` output as ``{package: [[alternative, ...], ...]}``, one list per dependency.

    An ``|`` before a dependency joins it to the next one (either will do). A virtual package
    (``<perl:any>``) stands for the providers listed under it; a real one's providers are ignored.
    Architecture qualifiers (``:any``) are dropped.
    """
    out: dict[str, list[list[tuple[str, list[str]]]]] = {}
    current, joined = None, False
    for line in text.splitlines():
        if not line.strip():
            continue
        if not line.startswith(" "):
            current, joined = line.strip().split(":")[0], False
            out.setdefault(current, [])
            continue
        if current is None:
            continue
        if line.startswith("    "):  # a provider of the dependency just named
            if out[current] and out[current][-1]:
                out[current][-1][-1][1].append(line.strip().split(":")[0])
            continue
        match = _DEPENDENCY.match(line)
        if not match:  # Recommends, Suggests, ... (asked away), or a line this parser does not know
            joined = False
            continue
        if not joined:
            out[current].append([])
        out[current][-1].append((match.group(3).split(":")[0], []))
        joined = match.group(1) == "|"
    resolved: dict[str, list[list[str]]] = {}
    for package, groups in out.items():
        resolved[package] = []
        for group in groups:
            names = []
            for name, providers in group:
                names += providers if name.startswith("<") else [name]
            resolved[package].append([n.strip("<>") for n in names])
    return resolved


def resolve_debs(wanted: Sequence[str], depends: Callable[[list[str]], dict[str, list[list[str]]]]) -> list[str]:
    """``wanted`` and what they depend on, taking the first alternative of each choice, as apt does."""
    seen: dict[str, None] = {}
    todo = list(wanted)
    while todo:
        batch = [p for p in dict.fromkeys(todo) if p not in seen]
        todo = []
        if not batch:
            break
        found = depends(batch)
        for pkg in batch:
            seen[pkg] = None
            for alternatives in found.get(pkg, []):
                if alternatives and alternatives[0] not in seen:
                    todo.append(alternatives[0])
    return sorted(seen)


def parse_priorities(text: str) -> dict[str, str]:
    """``apt-cache show`` output as ``{package: priority}`` (``Essential: yes`` counts as required)."""
    out, package = {}, None
    for line in text.splitlines():
        if line.startswith("Package: "):
            package = line.split(": ", 1)[1].strip()
        elif package and line.startswith("Priority: "):
            out.setdefault(package, line.split(": ", 1)[1].strip())
        elif package and line.startswith("Essential: yes"):
            out[package] = "required"
    return out


def release_name(os_release: Path = Path("/etc/os-release"), arch: str | None = None) -> str:
    """``debian-12-amd64``, ``ubuntu-24.04-amd64``: the release the packages fit, and the architecture."""
    fields = {}
    for line in os_release.read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition("=")
        fields[key.strip()] = value.strip().strip('"')
    if arch is None:
        arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                              timeout=30).stdout.strip() or "unknown"
    return f"{fields.get('ID', 'linux')}-{fields.get('VERSION_ID', 'unknown')}-{arch}"


INSTALL_SH = """\
#!/bin/sh
# Redis, memcached, wrk and their dependencies for {release}, downloaded by `make prefetch` on {date}.
# Only for {pretty}: on another release, download them there. Installs the packages this machine lacks
# (never downgrades one it has), with dpkg -i. Run it as root: sudo sh install.sh
set -e
cd "$(dirname "$0")"
missing=""
for deb in *.deb; do
    package=$(dpkg-deb --field "$deb" Package)
    dpkg-query --show --showformat='${{Status}}' "$package" 2>/dev/null | grep -q 'install ok installed' \\
        || missing="$missing $deb"
done
if [ -z "$missing" ]; then echo "Everything here is installed already."; exit 0; fi
dpkg -i $missing
"""


def prefetch_debs(dest: Path, *, run=subprocess.run, echo=print, os_release: Path = Path("/etc/os-release"),
                  arch: str | None = None) -> int:
    """``apt-get download`` the server packages and their dependencies into ``dest/debs/<release>/``.

    The packages every install has (priority required or important, and what they depend on) are left
    out. Returns an exit code;
    a machine without apt says so and returns 0 (it is not needed for the wheels).
    """
    if not (shutil.which("apt-get") and shutil.which("apt-cache") and os_release.exists()):
        echo("Debian packages not downloaded: this machine has no apt. Run `make prefetch` on a Debian or "
             "Ubuntu machine of the participants' release to put them on the stick.")
        return 0
    release = release_name(os_release, arch)
    folder = Path(dest) / DEBS_FOLDER / release
    folder.mkdir(parents=True, exist_ok=True)
    flags = ["--no-recommends", "--no-suggests", "--no-conflicts", "--no-breaks", "--no-replaces", "--no-enhances"]

    def depends(batch: list[str]) -> dict[str, list[list[str]]]:
        done = run(["apt-cache", "depends", *flags, *batch], capture_output=True, text=True, timeout=120)
        return parse_apt_depends(done.stdout)

    closure = resolve_debs(deb_packages(), depends)
    shown = run(["apt-cache", "show", "--no-all-versions", *closure], capture_output=True, text=True, timeout=120)
    priorities = parse_priorities(shown.stdout)
    # what a required or important package needs is on every install, libc6 among them
    base = set(resolve_debs([p for p, prio in priorities.items() if prio in ("required", "important")], depends))
    wanted = [p for p in closure if p in priorities and p not in base]
    echo(f"Debian packages for {release} -> {folder}: {' '.join(wanted)}", flush=True)
    done = run(["apt-get", "download", *wanted], cwd=folder)
    if done.returncode != 0:
        echo(f"FAIL: apt-get download failed (exit {done.returncode}); `sudo apt-get update` may be needed first.")
        return done.returncode
    pretty = release
    for line in os_release.read_text(encoding="utf-8").splitlines():
        if line.startswith("PRETTY_NAME="):
            pretty = line.split("=", 1)[1].strip().strip('"')
    script = folder / "install.sh"
    script.write_text(INSTALL_SH.format(release=release, pretty=pretty, date=datetime.date.today().isoformat()),
                      encoding="utf-8")
    script.chmod(0o755)
    echo(f"OK: {len(wanted)} packages. On a {pretty} machine without Docker: `make setup OFFLINE=1` installs "
         f"the missing ones, or by hand `sudo sh wheelhouse/{DEBS_FOLDER}/{release}/install.sh` (dpkg -i).")
    return 0


# --------------------------------------------------------------------------- the whole prefetch

def download_passes(platforms: Sequence[str] = (), python_version: str | None = None,
                    machines: Sequence[str] | None = None,
                    pythons: Sequence[str] | None = None) -> list[tuple[str, tuple[str, ...], str | None]]:
    """``(label, platform tags, python version)`` of every ``pip download``, this machine first.

    Explicit ``platforms`` (with one ``python_version``) replace the default: every machine of
    :data:`MACHINES` for every Python of :data:`SUPPORTED_PYTHONS`.
    """
    passes: list[tuple[str, tuple[str, ...], str | None]] = [("this machine", (), None)]
    if platforms:
        return passes + [(p, (p,), python_version) for p in platforms]
    if python_version and machines is None:
        return passes + [(f"this machine, Python {python_version}", (), python_version)]
    everything = {**MACHINES, **OTHER_MACHINES}
    unknown = sorted(set(machines or ()) - set(everything))
    if unknown:
        raise ValueError(f"unknown machine {', '.join(unknown)}: choose among {', '.join(everything)}")
    for name in machines or MACHINES:
        for version in pythons or ([python_version] if python_version else SUPPORTED_PYTHONS):
            passes.append((f"{everything[name].description}, Python {version}", everything[name].platforms, version))
    return passes


README = """\
Offline install kit of cachelab, made by `make prefetch` on {date}.

Wheels (this folder): for {machines}.
On each machine, in the repository (with this wheelhouse/ folder in it):
    make setup OFFLINE=1          # pip --no-index --find-links wheelhouse: the network is never asked
then `make check`. On Windows, in WSL 2 (Ubuntu): the Linux wheels are the ones it uses.
{debs}"""


def prefetch(dest: Path | None = None, *, platforms: Sequence[str] = (), python_version: str | None = None,
             docker: bool = True, requirements: Path | None = None, run=subprocess.run, echo=print,
             machines: Sequence[str] | None = None, pythons: Sequence[str] | None = None, debs: bool = False) -> int:
    """Fetch the wheels (and verify an offline install would work), the packages, the images. An exit code."""
    dest = Path(dest or wheelhouse_dir())
    requirements = Path(requirements or paths.project_root() / "requirements.txt")
    dest.mkdir(parents=True, exist_ok=True)
    passes = download_passes(platforms, python_version, machines, pythons)
    for label, tags, version in passes:
        echo(f"Wheels for {label} -> {dest}", flush=True)
        done = run(download_command(dest, requirements, platform=tags, python_version=version))
        if done.returncode != 0:
            echo(f"FAIL: pip download for {label} failed (exit {done.returncode}); see pip's message above.")
            return done.returncode
    echo("Checking that an offline install finds everything in the wheelhouse...", flush=True)
    done = run(offline_install_command(dest, requirements), stdout=subprocess.DEVNULL)
    if done.returncode != 0:
        echo(f"FAIL: an offline install from {dest} would not resolve; see pip's message above.")
        return done.returncode
    files = [f for f in dest.iterdir() if f.is_file()]
    size = sum(f.stat().st_size for f in files) / 1e6
    echo(f"OK: {len(files)} files, {size:,.0f} MB in {dest}, for {len(passes)} machine and Python "
         f"combination{'s' if len(passes) != 1 else ''}. On each machine, in the repository with this folder:\n"
         f"  make setup OFFLINE=1    # runs .venv/bin/pip install --no-index --find-links {dest.name} "
         f"-r requirements.txt -e .")
    debs_line = ""
    if debs:
        code = prefetch_debs(dest, run=run, echo=echo)
        if code != 0:
            return code
        found = sorted(p.name for p in (dest / DEBS_FOLDER).glob("*") if p.is_dir())
        if found:
            debs_line = (f"Debian/Ubuntu packages of the servers, for {', '.join(found)} only: "
                         f"{DEBS_FOLDER}/<release>/; `make setup OFFLINE=1` installs the missing ones (dpkg -i), "
                         "or `sudo sh install.sh` there.\n")
    labels = sorted({label.split(", Python")[0] for label, _, _ in passes})
    (dest / "README.txt").write_text(README.format(date=datetime.date.today().isoformat(),
                                                   machines="; ".join(labels), debs=debs_line), encoding="utf-8")
    if docker:
        works, said = docker_compose_available()
        if works:
            echo("Pulling the images of docker-compose.yml...", flush=True)
            pulled = run(["docker", "compose", "pull"], cwd=paths.project_root())
            if pulled.returncode != 0:
                echo(NO_DOCKER.format(reason=f"`docker compose pull` failed (exit {pulled.returncode})"))
            else:
                echo("OK: images pulled; `docker compose up -d` now works offline.")
        else:
            echo(NO_DOCKER.format(reason=said))
    return 0


def main(args) -> int:
    return prefetch(args.dest, platforms=args.platform or (), python_version=args.python_version,
                    docker=not args.no_docker, machines=args.machine, pythons=args.python, debs=not args.no_debs)


def add_parser(sub) -> None:
    """``python -m cachelab prefetch``."""
    parser = sub.add_parser("prefetch", help="wheels for the room's machines, the server packages and the Docker "
                                             "images, for bad Wi-Fi")
    parser.add_argument("--dest", type=Path, default=None, help="folder for the wheels (default wheelhouse/)")
    parser.add_argument("--machine", action="append", choices=[*MACHINES, *OTHER_MACHINES],
                        help=f"only these kinds of machine (repeatable; default: {', '.join(MACHINES)})")
    parser.add_argument("--python", action="append", help=f"only these Pythons (repeatable; default: "
                                                          f"{', '.join(SUPPORTED_PYTHONS)})")
    parser.add_argument("--platform", action="append",
                        help="instead of --machine: wheels for this platform tag, e.g. macosx_14_0_arm64 (repeatable)")
    parser.add_argument("--python-version", help="with --platform: the Python of those machines, e.g. 3.12")
    parser.add_argument("--no-debs", action="store_true", help="skip the Debian/Ubuntu packages of the servers")
    parser.add_argument("--no-docker", action="store_true", help="skip `docker compose pull`")
    parser.set_defaults(func=main)
