"""The environment banner that accompanies every set of results: where the numbers came from."""

from __future__ import annotations

import datetime as _dt
import os
import platform
import sys
from importlib import metadata

from .timing import quick_mode

PACKAGES = ("cachelab", "cachetools", "joblib", "redis", "hiredis", "pymemcache", "numpy", "matplotlib")


def cpu_model() -> str:
    """The CPU's model name (from /proc/cpuinfo on Linux, ``platform`` elsewhere)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def package_versions(names=PACKAGES) -> dict[str, str | None]:
    """Installed version of each package, ``None`` where it is missing."""
    out = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def environment(server_versions: dict | None = None) -> dict:
    """A JSON-ready description of this machine and software: saved next to every result."""
    return {
        "date": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpus": os.cpu_count(),
        "packages": package_versions(),
        "servers": server_versions or {},
        "quick_mode": quick_mode(),
        "executable": sys.executable,
    }


def banner(env: dict | None = None) -> str:
    """The environment as a few readable lines."""
    env = env or environment()
    pkgs = ", ".join(f"{k} {v}" for k, v in env["packages"].items() if v)
    lines = [
        f"Python {env['python']} ({env['implementation']}) on {env['platform']}",
        f"CPU: {env['cpu']} x {env['cpus']}",
        f"Packages: {pkgs}",
    ]
    if env.get("servers"):
        lines.append("Servers: " + ", ".join(f"{k} {v}" for k, v in env["servers"].items()))
    lines.append(f"Run at {env['date']}" + ("  [QUICK MODE: numbers not meant for reading]"
                                            if env.get("quick_mode") else ""))
    return "\n".join(lines)
