"""The system tools a run needs, and installing the missing ones: the first step of ``make setup``.

The notebooks need real servers and real tools: ``redis-server`` and ``redis-cli`` (Redis, and the
cluster of notebook 08), ``memcached``, the load generator ``wrk`` (notebook 07), and ``nginx`` (notebook
09, which runs a private instance: the system service its package may start is stopped,
:func:`stop_services`). Notebooks 05, 06
and 08 always start small private servers for the demos that stop, freeze or fill one, so the binaries
are needed even when ``REDIS_URL``/``MEMCACHED_SERVERS`` or docker compose provide the main servers.

:func:`ensure` installs what is missing with the system's package manager, **only where it can do so
without asking for a password**: ``apt-get`` as root or through ``sudo -n``, ``dnf`` likewise, or
``brew`` (never as root). It prints the exact command before it runs it. ``CACHELAB_NO_INSTALL=1`` turns
installing off. Where nothing can be installed it says what is missing and the ways to get it, and fails
(exit code 2) only when no servers can be had at all.

Offline (``make setup OFFLINE=1``, which sets ``CACHELAB_OFFLINE=1``), nothing is downloaded: on Debian
and Ubuntu the packages come from the stick, ``wheelhouse/debs/<release>-<arch>/`` as ``make prefetch``
left them, and only the missing ones are installed, with ``dpkg -i`` (that folder's ``install.sh``).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from ..servers import config as server_config


@dataclass(frozen=True)
class Tool:
    """A command the run needs, the package that brings it on each system, and what needs it."""

    command: str
    apt: str
    dnf: str
    brew: str
    needed_for: str
    server: bool = False  # one of the servers: without it, and without servers found elsewhere, no run
    service: str = ""  # a system service its package may start on install: stopped there (see stop_services)


TOOLS = (
    Tool("redis-server", "redis-server", "redis", "redis", "Redis (notebooks 05-10 and the tests)", server=True),
    Tool("redis-cli", "redis-tools", "redis", "redis", "the Redis Cluster of notebook 08, and make bench"),
    Tool("redis-benchmark", "redis-tools", "redis", "redis", "make bench (the redis-benchmark floor)"),
    Tool("memcached", "memcached", "memcached", "memcached", "memcached (notebooks 05-10 and the tests)",
         server=True),
    Tool("wrk", "wrk", "wrk", "wrk", "the load generator of notebook 07"),
    Tool("nginx", "nginx", "nginx", "nginx", "the reverse-proxy cache of notebook 09 (a private instance)",
         service="nginx"),
)


TEST_TOOLS = (
    Tool("chromium", "chromium", "chromium", "", "the browser tests of `make test` (the site, and notebook 10's "
         "sliders in JupyterLab); without it they are skipped"),
)
"""Tools only the test suite uses: installed like the others where possible, in a command of their own, so
that a system whose package manager lacks them (Ubuntu ships Chromium as a snap) still gets the servers."""


class SetupFailed(RuntimeError):
    """The machine cannot be set up: the message says what is missing and how to get it."""


SBIN = ("/usr/sbin", "/usr/local/sbin")
"""Where system packages put daemons (nginx): not on every user's ``PATH``, so looked at too."""


def found(command: str) -> bool:
    """Whether ``command`` is on ``PATH``, or an executable in :data:`SBIN`."""
    return shutil.which(command) is not None or any(os.access(Path(d) / command, os.X_OK) for d in SBIN)


def missing(tools=TOOLS) -> list[Tool]:
    """The tools whose command is neither on ``PATH`` nor in :data:`SBIN`."""
    return [tool for tool in tools if not found(tool.command)]


def _no_password_sudo() -> bool:
    if shutil.which("sudo") is None:
        return False
    try:
        return subprocess.run(["sudo", "-n", "true"], capture_output=True, timeout=5).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def offline() -> bool:
    """``CACHELAB_OFFLINE=1`` (``make setup OFFLINE=1``): install from the stick, never from the network."""
    return os.environ.get("CACHELAB_OFFLINE", "") not in ("", "0")


def stick_folder(debs_root: Path | None = None, os_release: Path = Path("/etc/os-release")) -> Path | None:
    """The folder of Debian/Ubuntu packages for this release on the stick (``make prefetch``), if it is there."""
    from .prefetch import DEBS_FOLDER, release_name, wheelhouse_dir

    if not (shutil.which("dpkg") and os_release.exists()):
        return None
    folder = Path(debs_root or wheelhouse_dir() / DEBS_FOLDER) / release_name(os_release)
    return folder if (folder / "install.sh").exists() else None


def install_commands(tools: list[Tool], *, from_stick: bool | None = None,
                     debs_root: Path | None = None) -> list[list[str]] | None:
    """The commands that install ``tools`` without a password prompt on this machine, or ``None``.

    ``from_stick`` (default: :func:`offline`): only from the packages ``make prefetch`` put in
    ``wheelhouse/debs/`` for this release, never from the network.
    """
    if not tools:
        return []
    root = hasattr(os, "geteuid") and os.geteuid() == 0
    if offline() if from_stick is None else from_stick:
        folder = stick_folder(debs_root)
        prefix = [] if root else ["sudo", "-n"] if _no_password_sudo() else None
        if folder is None or prefix is None:
            return None
        return [[*prefix, "sh", str(folder / "install.sh")]]
    if sys.platform == "darwin":
        if shutil.which("brew") and not root and all(t.brew for t in tools):
            return [["brew", "install", *sorted({t.brew for t in tools})]]
        return None
    prefix = [] if root else ["sudo", "-n"] if _no_password_sudo() else None
    if prefix is None:
        return None
    if shutil.which("apt-get"):
        packages = sorted({t.apt for t in tools})
        return [[*prefix, "apt-get", "update", "-qq"],
                [*prefix, "env", "DEBIAN_FRONTEND=noninteractive", "apt-get", "install", "-y", "-qq",
                 "--no-install-recommends", *packages]]
    if shutil.which("dnf"):
        return [[*prefix, "dnf", "install", "-y", "-q", *sorted({t.dnf for t in tools})]]
    return None


def stop_services(installed: list[Tool], *, run=subprocess.run, say=print) -> list[str]:
    """Stop and disable the system services that installing ``installed`` started (Debian and Ubuntu start
    nginx on port 80 when its package is installed): cachelab runs its own private instances and needs none.

    Only for tools this setup has just installed, only on Linux, as root or with passwordless sudo; with
    systemd ``systemctl disable --now``, otherwise ``service NAME stop``. Returns the services stopped.
    """
    services = sorted({t.service for t in installed if t.service})
    if not services or not sys.platform.startswith("linux"):
        return []
    root = hasattr(os, "geteuid") and os.geteuid() == 0
    prefix = [] if root else ["sudo", "-n"] if _no_password_sudo() else None
    if prefix is None:
        say(f"cachelab setup: the package may have started the system service(s) {', '.join(services)}; cachelab "
            "does not need them (it runs its own instances): stop them with `sudo systemctl disable --now NAME`.")
        return []
    stopped = []
    for name in services:
        if Path("/run/systemd/system").is_dir() and shutil.which("systemctl"):
            command = [*prefix, "systemctl", "disable", "--now", name]
        elif shutil.which("service"):
            command = [*prefix, "service", name, "stop"]
        else:
            continue
        say(f"cachelab setup: stopping the {name} service its package started (cachelab runs its own instance)")
        say("  $ " + " ".join(command))
        try:
            done = run(command, timeout=60)
        except (OSError, subprocess.TimeoutExpired) as exc:
            say(f"  that command failed: {exc}")
            continue
        if done.returncode == 0:
            stopped.append(name)
    return stopped


def servers_elsewhere() -> str:
    """Where the main servers come from when not from binaries here: the environment or compose, or ''."""
    from ..servers import probes

    if os.environ.get("REDIS_URL") and os.environ.get("MEMCACHED_SERVERS"):
        return "REDIS_URL and MEMCACHED_SERVERS"
    redis_up = probes.redis_ping("127.0.0.1", server_config.COMPOSE_REDIS_PORT, server_config.redis_password())
    memcached_up = all(probes.memcached_version("127.0.0.1", p, timeout=0.5)
                       for p in server_config.COMPOSE_MEMCACHED_PORTS)
    return "docker compose" if redis_up and memcached_up else ""


def how_to_get(tools: list[Tool]) -> str:
    """A paragraph naming the missing tools and the ways to get them."""
    lines = [f"  - {t.command}: {t.needed_for}" for t in tools]
    apt = " ".join(sorted({t.apt for t in tools}))
    brew = " ".join(sorted({t.brew for t in tools}))
    return ("Missing on this machine:\n" + "\n".join(lines) +
            f"\nInstall them with `sudo apt-get install {apt}` (Debian, Ubuntu), `brew install {brew}` (macOS) "
            f"or your system's package manager, then run the command again.")


def ensure(*, allow_install: bool | None = None, run=subprocess.run, say=print) -> list[Tool]:
    """Install the missing tools where possible; return those still missing.

    Raises :class:`SetupFailed` when a server binary is missing, cannot be installed, and no servers are
    provided elsewhere (the environment, docker compose): the run could not start.
    """
    if allow_install is None:
        allow_install = os.environ.get("CACHELAB_NO_INSTALL", "") in ("", "0")
    absent = missing()
    if not absent:
        return []
    commands = install_commands(absent) if allow_install else None
    if commands:
        say(f"cachelab setup: installing {', '.join(t.command for t in absent)}")
        for command in commands:
            say("  $ " + " ".join(command))
            try:
                done = run(command, timeout=900)
            except (OSError, subprocess.TimeoutExpired) as exc:
                say(f"  that command failed: {exc}")
                break
            if done.returncode != 0:
                say(f"  that command failed (exit {done.returncode})")
                break
        installed = [t for t in absent if t not in missing()]
        stop_services(installed, run=run, say=say)
        absent = missing()
    if not absent:
        return []
    from .prefetch import DEBS_FOLDER

    why = ("installing is turned off (CACHELAB_NO_INSTALL=1)" if not allow_install else
           f"offline (OFFLINE=1) nothing is downloaded, and wheelhouse/{DEBS_FOLDER}/ holds no packages for this "
           "machine that can be installed without a password (Debian, Ubuntu: `make prefetch` on a machine of "
           "this release puts them there, and dpkg installs them as root or with passwordless sudo; elsewhere, "
           "install the tools before the day)" if commands is None and offline() else
           "this machine has no package manager cachelab can use without a password "
           "(apt-get or dnf as root or with passwordless sudo, or brew)" if commands is None else
           "the install did not bring them")
    servers_missing = [t for t in absent if t.server]
    elsewhere = servers_elsewhere() if servers_missing else ""
    if servers_missing and not elsewhere:
        raise SetupFailed(f"cachelab cannot set this machine up: {why}.\n{how_to_get(absent)}\n\n"
                          f"{server_config.HOW_TO_GET_SERVERS}")
    note = f" The main servers come from {elsewhere}." if elsewhere else ""
    say(f"cachelab setup: {why}.{note}\n{how_to_get(absent)}\nThe notebooks that need them will say so.")
    return absent


def ensure_test_tools(*, allow_install: bool | None = None, run=subprocess.run, say=print) -> list[Tool]:
    """Install the missing :data:`TEST_TOOLS` where possible (never offline); return those still missing.

    Never fails: a test tool that cannot be had only makes its tests skip, and says so.
    """
    if allow_install is None:
        allow_install = os.environ.get("CACHELAB_NO_INSTALL", "") in ("", "0")
    absent = missing(TEST_TOOLS)
    commands = install_commands(absent, from_stick=False) if absent and allow_install and not offline() else None
    if commands:
        say(f"cachelab setup: installing {', '.join(t.command for t in absent)} (for the tests)")
        for command in commands:
            say("  $ " + " ".join(command))
            try:
                if run(command, timeout=900).returncode != 0:
                    break
            except (OSError, subprocess.TimeoutExpired):
                break
        absent = missing(TEST_TOOLS)
    for tool in absent:
        say(f"cachelab setup: {tool.command} not installed: {tool.needed_for}.")
    return absent


def main(args=None) -> int:
    """``python -m cachelab setup-system``: the system half of ``make setup``."""
    try:
        still = ensure()
    except SetupFailed as exc:
        print(exc, file=sys.stderr)
        return 2
    if not still:
        print("System tools: " + ", ".join(t.command for t in TOOLS) + " found.")
    if not ensure_test_tools():
        print("Test tools: " + ", ".join(t.command for t in TEST_TOOLS) + " found.")
    return 0


def add_parser(sub) -> None:
    parser = sub.add_parser("setup-system", help="install the missing system tools (servers, wrk) where possible")
    parser.set_defaults(func=main)
