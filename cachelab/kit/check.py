"""Is this machine ready for the workshop? ``make check`` / ``python -m cachelab check``.

One line per item, ``OK`` or ``FAIL`` with the fix: the Python version, each package at its pinned
version, the Jupyter kernel, the flight database, Redis and every memcached node with their versions, the
ports the compose file publishes, and free disk space. The exit code is non-zero when anything fails,
so an instructor can run it in a loop over the room's machines, or a participant the evening before.

The Python line comes first, and it can come alone, before anything is installed: ``make check`` and
``make setup`` first run this file as a plain script (``python cachelab/kit/check.py --python-only``),
which needs nothing but the standard library, so that a Python 3.10 is named as the problem on the first
line instead of in a failed install. That is why the package's modules are imported inside the functions
that need them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

try:
    from .. import paths
except ImportError:  # run as a plain script, before any install: only --python-only works then
    paths = None

MINIMUM_PYTHON = (3, 11)
KERNEL_NAME = "python3"
MINIMUM_FREE_GB = 1.0
JUPYTER_PORT = 8888
SETUP_FIX = "make setup (it installs requirements.txt into .venv)"


@dataclass
class Item:
    """One line of the check: what was checked, whether it is fine, what was found, and the fix."""

    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        text = f"{'OK' if self.ok else 'FAIL':<5} {self.name}: {self.detail}"
        return text if self.ok or not self.fix else f"{text} -> fix: {self.fix}"


def check_python(minimum: tuple[int, int] = MINIMUM_PYTHON, version: tuple[int, ...] | None = None) -> Item:
    """The running Python is at least ``minimum`` (the ``requires-python`` of pyproject.toml)."""
    version = tuple(version or sys.version_info[:3])
    found = ".".join(map(str, version))
    need = ".".join(map(str, minimum))
    if version[:2] >= tuple(minimum):
        return Item("Python", True, f"{found} (needs {need} or newer)")
    return Item("Python", False, f"{found} is older than {need}",
                f"install Python {need} or newer (python.org, pyenv, `brew install python@3.12`, "
                "`sudo apt install python3.11-venv`), then `rm -rf .venv && make setup PYTHON=python3.12`")


_PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[[^\]]*\])?\s*==\s*([^\s;#]+)")


def read_pins(requirements: Path) -> list[tuple[str, str]]:
    """``(name, version)`` for every ``name==version`` line of a requirements file (comments skipped)."""
    pins = []
    for line in Path(requirements).read_text(encoding="utf-8").splitlines():
        match = _PIN.match(line.split("#", 1)[0])
        if match:
            pins.append((match.group(1), match.group(2)))
    return pins


def check_packages(requirements: Path | None = None) -> list[Item]:
    """Each pinned package installed at exactly its pinned version."""
    from importlib import metadata

    requirements = Path(requirements or paths.project_root() / "requirements.txt")
    if not requirements.exists():
        return [Item("packages", False, f"{requirements} not found", "run this from a clone of the repository")]
    items = []
    for name, pinned in read_pins(requirements):
        try:
            installed = metadata.version(name)
        except metadata.PackageNotFoundError:
            items.append(Item(f"package {name}", False, f"not installed ({pinned} pinned)", SETUP_FIX))
            continue
        if installed == pinned:
            items.append(Item(f"package {name}", True, installed))
        else:
            items.append(Item(f"package {name}", False, f"{installed} installed, {pinned} pinned", SETUP_FIX))
    return items


def check_cachelab() -> Item:
    """The cachelab package imported here is this checkout's (an editable install)."""
    import cachelab

    where = Path(cachelab.__file__).resolve().parent
    version = getattr(cachelab, "__version__", "?")
    if where.parent == paths.project_root().resolve():
        return Item("package cachelab", True, f"{version} from this checkout")
    return Item("package cachelab", False, f"{version} imported from {where}, not from this checkout",
                "make setup (installs this checkout with `pip install -e .`)")


def check_kernel(name: str = KERNEL_NAME, timeout: float = 60.0) -> Item:
    """A Jupyter kernel called ``name`` exists, and its Python imports ipykernel and cachelab."""
    fix = f"{Path(sys.executable).name} -m ipykernel install --sys-prefix --name {name} (make setup does it)"
    try:
        from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel
    except ImportError:
        return Item("Jupyter kernel", False, "jupyter_client is not installed", SETUP_FIX)
    try:
        spec = KernelSpecManager().get_kernel_spec(name)
    except NoSuchKernel:
        return Item("Jupyter kernel", False, f"no kernel named {name!r}", fix)
    python = spec.argv[0] if spec.argv else ""
    try:
        done = subprocess.run([python, "-c", "import ipykernel, cachelab, sys; print(sys.version.split()[0])"],
                              capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Item("Jupyter kernel", False, f"{name!r} runs {python}, which failed: {type(exc).__name__}", fix)
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or ["?"])[-1]
        where = Path(spec.resource_dir).resolve()
        if not where.is_relative_to(Path(sys.prefix).resolve()):
            fix = (f"the kernel {name!r} at {where} (found before the one in .venv) runs another Python: "
                   f"remove that folder, then {fix}")
        return Item("Jupyter kernel", False, f"{name!r} runs {python}, which cannot import cachelab: {last}", fix)
    return Item("Jupyter kernel", True, f"{name!r}: Python {done.stdout.strip()} at {python}")


def check_data() -> Item:
    """The SQLite flight database, built from ``data/`` (it builds now if missing or stale: seconds, offline)."""
    from ..data import database_path

    try:
        database = database_path()
    except Exception as exc:  # noqa: BLE001 - reported with its fix
        return Item("flight database", False, f"cannot be built: {type(exc).__name__}: {exc}",
                    "check that data/flights.csv.xz is the committed file (git status data/), then make data")
    return Item("flight database", True, f"{database} ({database.stat().st_size / 1e6:.0f} MB, up to date)")


def _servers_and_ports() -> tuple[list[Item], set[int]]:
    from .. import servers as srv

    try:
        found = srv.connect(fresh=True)
    except (srv.ServersUnavailable, ValueError) as exc:
        first = str(exc).splitlines()[0]
        if os.environ.get("REDIS_URL") or os.environ.get("MEMCACHED_SERVERS"):
            fix = "correct REDIS_URL / MEMCACHED_SERVERS (host, port, password), or unset them"
        else:
            fix = ("docker compose up -d; or install the binaries (sudo apt install redis-server memcached, "
                   "brew install redis memcached); or set REDIS_URL and MEMCACHED_SERVERS")
        return [Item("servers", False, first, fix)], set()
    try:
        versions = found.versions()
        items = []
        private = "started from PATH for this check, as each notebook will"
        redis_version = versions.get("redis", "")
        source = private if found.redis.source == "private" else found.redis.source
        if redis_version and not redis_version.startswith("unavailable"):
            items.append(Item("Redis", True, f"{redis_version} at {found.redis.describe()[len('Redis at '):]}"
                              .replace(f"({found.redis.source})", f"({source})")))
        else:
            items.append(Item("Redis", False, f"{found.redis.describe()}: {redis_version}",
                              "check the server and its password (CACHELAB_REDIS_PASSWORD or REDIS_URL)"))
        for i, (host, port) in enumerate(found.memcached.nodes):
            version = versions.get(f"memcached[{i}]", "unavailable")
            where = f"{host}:{port} ({private if found.memcached.source == 'private' else found.memcached.source})"
            if version != "unavailable":
                items.append(Item(f"memcached node {i + 1}", True, f"{version} at {where}"))
            else:
                items.append(Item(f"memcached node {i + 1}", False, f"no answer at {where}",
                                  "start it again (docker compose up -d, or make stop && make servers)"))
        ports = {p for _, p in found.memcached.nodes}
        if found.redis.url.startswith("redis://"):
            ports.add(srv.parse_redis_url(found.redis.url)["port"])
        return items, ports
    finally:
        found.stop()  # only the servers this check started itself


def check_ports(ports: dict[int, str] | None = None, ours: set[int] | frozenset[int] = frozenset()) -> list[Item]:
    """Each port free, or held by the servers cachelab uses (``ours``).

    ``ports`` maps a port to what needs it; the default is the compose file's ports.
    """
    from ..servers import COMPOSE_MEMCACHED_PORTS, COMPOSE_REDIS_PORT, probes

    if ports is None:
        ports = {COMPOSE_REDIS_PORT: "docker compose Redis"}
        ports |= {p: f"docker compose memcached-{i + 1}" for i, p in enumerate(COMPOSE_MEMCACHED_PORTS)}
    items = []
    for port, use in ports.items():
        name = f"port {port}"
        if not probes.port_in_use(port):
            items.append(Item(name, True, f"free (for {use})"))
        elif port in ours:
            items.append(Item(name, True, f"in use by the servers found above ({use})"))
        else:
            items.append(Item(name, False, f"taken by another program, so `docker compose up` cannot publish {use}",
                              f"find it with `sudo lsof -iTCP:{port} -sTCP:LISTEN` (or `ss -ltnp`, or "
                              f"`netstat -ano | findstr {port}` on Windows) and stop it"))
    return items


def check_jupyter_port(port: int = JUPYTER_PORT) -> Item:
    """Jupyter's usual port: taken is fine (Jupyter picks the next one), but worth knowing."""
    from ..servers.probes import port_in_use

    if port_in_use(port):
        return Item(f"port {port}", True, "in use: JupyterLab will pick the next free port and print its URL")
    return Item(f"port {port}", True, "free (for JupyterLab)")


def check_disk(path: Path | None = None, minimum_gb: float = MINIMUM_FREE_GB) -> Item:
    """At least ``minimum_gb`` free where the checkout lives."""
    path = Path(path or paths.project_root())
    free_gb = shutil.disk_usage(path).free / 1e9
    if free_gb >= minimum_gb:
        return Item("disk", True, f"{free_gb:,.1f} GB free at {path} (needs {minimum_gb:g} GB)")
    return Item("disk", False, f"{free_gb:,.2f} GB free at {path}, needs {minimum_gb:g} GB",
                "free some space (`make clean` removes build/, results/, figures/ and .cachelab/)")


def run_checks(*, servers: bool = True) -> list[Item]:
    """Every item, in the order ``make check`` prints them."""
    items = [check_python(), *check_packages(), check_cachelab(), check_kernel(), check_data()]
    ours: set[int] = set()
    if servers:
        server_items, ours = _servers_and_ports()
        items += server_items
    items += [*check_ports(ours=ours), check_jupyter_port(), check_disk()]
    return items


def report(items: list[Item]) -> str:
    """The lines ``make check`` prints, with a closing count."""
    failed = sum(not i.ok for i in items)
    closing = (f"\n{len(items) - failed} OK, {failed} FAIL: " +
               ("ready for the workshop." if not failed else "fix the FAIL lines above, then run `make check` again."))
    return "\n".join(i.line() for i in items) + closing


def main(args=None) -> int:
    print("cachelab check: is this machine ready for the workshop?\n", flush=True)
    items = run_checks(servers=not getattr(args, "no_servers", False))
    print(report(items))
    return 1 if any(not i.ok for i in items) else 0


def add_parser(sub) -> None:
    """``python -m cachelab check``."""
    parser = sub.add_parser("check", help="is this machine ready? one line per item, OK or FAIL with the fix")
    parser.add_argument("--no-servers", action="store_true", help="skip the Redis and memcached items")
    parser.set_defaults(func=main)


def python_only(argv: list[str]) -> int:
    """``python cachelab/kit/check.py --python-only``: the Python line alone, printed only when it fails.

    Exit code 2 (a machine that is not ready) for a Python older than :data:`MINIMUM_PYTHON`, 0 otherwise.
    """
    if argv != ["--python-only"]:
        print("usage: python cachelab/kit/check.py --python-only (the whole check: make check)", file=sys.stderr)
        return 2
    item = check_python()
    if item.ok:
        return 0
    print(item.line(), flush=True)
    return 2


if __name__ == "__main__":
    sys.exit(python_only(sys.argv[1:]))
