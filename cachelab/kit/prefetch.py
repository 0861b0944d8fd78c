"""Everything a room with bad Wi-Fi needs, fetched ahead: ``make prefetch`` / ``python -m cachelab prefetch``.

1. Wheels for every pinned requirement, and for the build backend of ``pip install -e .``, into
   ``wheelhouse/`` (ignored by git). Copy that folder to each machine (a USB stick will do), then::

       python3 -m venv .venv
       .venv/bin/pip install --no-index --find-links wheelhouse -r requirements.txt -e .

   ``--platform``/``--python-version`` fetch wheels for participants' other machines too (for example
   ``--platform macosx_11_0_arm64 --platform win_amd64 --python-version 3.12``).
2. ``docker compose pull``: the Redis and memcached images of ``docker-compose.yml``, when Docker Compose
   works here; otherwise a message says so and what to do instead.

The data need no network: the CSV sources are committed and the database is built from them.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

from .. import paths

BUILD_REQUIREMENTS = ("setuptools>=68",)  # pyproject.toml's build backend, for `pip install -e .` offline


def wheelhouse_dir() -> Path:
    return paths.project_root() / "wheelhouse"


def download_command(dest: Path, requirements: Path, *, platform: str | None = None,
                     python_version: str | None = None, python: str = sys.executable) -> list[str]:
    """The ``pip download`` command for one platform (this machine's when ``platform`` is None)."""
    cmd = [python, "-m", "pip", "download", "--disable-pip-version-check", "--dest", str(dest),
           "-r", str(requirements), *BUILD_REQUIREMENTS]
    if platform or python_version:
        # another machine's wheels: pip cannot build an sdist for a platform it does not run on
        cmd += ["--only-binary=:all:"]
        if platform:
            cmd += ["--platform", platform]
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


def prefetch(dest: Path | None = None, *, platforms: Sequence[str] = (), python_version: str | None = None,
             docker: bool = True, requirements: Path | None = None, run=subprocess.run, echo=print) -> int:
    """Fetch the wheels (and verify an offline install would work), then pull the images. Returns an exit code."""
    dest = Path(dest or wheelhouse_dir())
    requirements = Path(requirements or paths.project_root() / "requirements.txt")
    dest.mkdir(parents=True, exist_ok=True)
    passes = [(None, None)] + [(p, python_version) for p in platforms]
    if python_version and not platforms:
        passes.append((None, python_version))
    for platform, version in passes:
        label = platform or "this machine"
        if version:
            label += f", Python {version}"
        echo(f"Wheels for {label} -> {dest}", flush=True)
        done = run(download_command(dest, requirements, platform=platform, python_version=version))
        if done.returncode != 0:
            echo(f"FAIL: pip download for {label} failed (exit {done.returncode}); see pip's message above.")
            return done.returncode
    echo("Checking that an offline install finds everything in the wheelhouse...", flush=True)
    done = run(offline_install_command(dest, requirements), stdout=subprocess.DEVNULL)
    if done.returncode != 0:
        echo(f"FAIL: an offline install from {dest} would not resolve; see pip's message above.")
        return done.returncode
    size = sum(f.stat().st_size for f in dest.iterdir() if f.is_file()) / 1e6
    count = sum(1 for f in dest.iterdir() if f.is_file())
    echo(f"OK: {count} files, {size:,.0f} MB in {dest}. Offline install on any machine with this folder:\n"
         f"  python3 -m venv .venv && .venv/bin/pip install --no-index --find-links {dest.name} "
         f"-r requirements.txt -e .")
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
                    docker=not args.no_docker)


def add_parser(sub) -> None:
    """``python -m cachelab prefetch``."""
    parser = sub.add_parser("prefetch", help="wheels into wheelhouse/ and `docker compose pull`, for bad Wi-Fi")
    parser.add_argument("--dest", type=Path, default=None, help="folder for the wheels (default wheelhouse/)")
    parser.add_argument("--platform", action="append",
                        help="also fetch wheels for this platform tag, e.g. macosx_11_0_arm64, win_amd64 "
                             "(repeatable)")
    parser.add_argument("--python-version", help="Python version of those machines, e.g. 3.12")
    parser.add_argument("--no-docker", action="store_true", help="skip `docker compose pull`")
    parser.set_defaults(func=main)
