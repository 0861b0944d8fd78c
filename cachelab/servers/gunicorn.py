"""gunicorn serving the flight-service web app (:mod:`cachelab.webapp`): started, probed, measured, stopped.

:func:`start_gunicorn` runs ``python -m gunicorn`` with ``K`` pre-forked sync workers, the way production
runs a WSGI app, and returns a :class:`Gunicorn` once every worker is ready::

    with start_gunicorn("redis", workers=4, settings={"redis_url": url, "ttl": 2}) as server:
        server.url("/delay/JFK/LAX/7")

* **The port**: this process binds a socket on 127.0.0.1 to port 0 (the kernel picks a free port) and
  hands it to gunicorn as ``fd://N``, so no other program can take the port between choosing and binding.
* **Readiness**: every worker has opened its connections (its counters file exists) and ``/health``
  answers, within ``timeout`` seconds; otherwise the server is stopped and the error shows gunicorn's log.
* **Nothing left running**: gunicorn runs in a process group of its own; :meth:`Gunicorn.stop` sends
  SIGTERM to the master (a graceful stop: each worker finishes its request), then SIGKILL to the whole
  group if anything is still there after ``graceful`` seconds, and checks that the group is gone. The
  context manager stops it when the body raises, an ``atexit`` hook stops whatever is still running
  when the interpreter exits, and on Linux the master and every worker get SIGTERM when the process
  that started them dies, even by SIGKILL (``PR_SET_PDEATHSIG``).
* **Placement**: ``cpus`` restricts the master and its workers to those CPUs (what ``taskset`` does,
  through ``os.sched_setaffinity`` before ``exec``; the workers inherit it); :meth:`Gunicorn.pin` does it
  to a server already running (started unpinned, so that several start side by side on every CPU).
* **gc.freeze**: with ``gc_freeze=True`` the master follows the recipe of Python's ``gc.freeze`` docs:
  the collector disabled early in the master, ``gc.freeze()`` right before each fork, the collector enabled
  again early in each worker (the hooks of :mod:`cachelab.servers.gunicorn_conf`).
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from .. import arguments
from .managed import child_setup

GRACEFUL_SECONDS = 3.0
READY_TIMEOUT = 30.0
_SETTING_VARIABLES = {"mode": "CACHELAB_WEB_MODE", "db_path": "CACHELAB_WEB_DB", "ttl": "CACHELAB_WEB_TTL",
                      "local_ttl": "CACHELAB_WEB_LOCAL_TTL", "maxsize": "CACHELAB_WEB_MAXSIZE",
                      "redis_url": "CACHELAB_WEB_REDIS", "memcached": "CACHELAB_WEB_MEMCACHED",
                      "prefix": "CACHELAB_WEB_PREFIX", "warm": "CACHELAB_WEB_WARM",
                      "warm_in_worker": "CACHELAB_WEB_WARM_IN_WORKER"}
GC_FREEZE_VARIABLE = "CACHELAB_WEB_GC_FREEZE"  # read by the hooks of gunicorn_conf


class GunicornError(RuntimeError):
    """gunicorn did not start, or did not stop: the message carries the end of its log."""


def _environment(mode: str, settings: Mapping, counters_dir: Path, gc_freeze: bool = False) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CACHELAB_WEB_")}
    if gc_freeze:
        env[GC_FREEZE_VARIABLE] = "1"
    env["CACHELAB_WEB_MODE"] = mode
    env["CACHELAB_WEB_COUNTERS"] = str(counters_dir)
    for name, value in settings.items():
        if name not in _SETTING_VARIABLES or name == "mode":
            raise ValueError(f"unknown web app setting {name!r}: one of {', '.join(sorted(_SETTING_VARIABLES))}")
        if value is None:
            continue
        if name == "memcached":
            value = ",".join(f"{host}:{port}" for host, port in value)
        elif name in ("warm", "warm_in_worker"):
            value = "1" if value else ""
        env[_SETTING_VARIABLES[name]] = str(value)
    return env


def group_pids(pgid: int) -> list[int]:
    """The processes of process group ``pgid`` still alive (zombies excluded), from ``/proc``."""
    out = []
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else ():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[2]) == pgid and fields[0] != "Z":  # fields: state, ppid, pgrp...
            out.append(int(entry.name))
    return sorted(out)


def memory(pid: int) -> dict[str, int] | None:
    """A process's memory in bytes from ``/proc/<pid>/smaps_rollup``: ``rss``, ``pss`` and ``uss`` (its
    private pages, what exiting would free), or ``None`` where the kernel does not say."""
    try:
        text = Path(f"/proc/{pid}/smaps_rollup").read_text()
    except OSError:
        return None
    kb = {}
    for line in text.splitlines()[1:]:
        name, _, rest = line.partition(":")
        parts = rest.split()
        if parts and parts[-1] == "kB":
            kb[name.strip()] = int(parts[0])
    return {"rss": kb.get("Rss", 0) * 1024, "pss": kb.get("Pss", 0) * 1024,
            "uss": (kb.get("Private_Clean", 0) + kb.get("Private_Dirty", 0)) * 1024}


@dataclass
class Gunicorn:
    """A gunicorn master and its ``workers`` sync workers serving :mod:`cachelab.webapp` in ``mode``."""

    mode: str
    workers: int
    port: int
    process: subprocess.Popen = field(repr=False)
    workdir: Path = field(repr=False)
    cpus: tuple[int, ...] | None = None
    preload: bool = False

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.base_url + path

    @property
    def counters_dir(self) -> Path:
        return self.workdir / "counters"

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join((self.workdir / "gunicorn.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    # -- what runs
    def worker_pids(self) -> list[int]:
        """The workers alive now: the master's process group, less the master."""
        return [pid for pid in group_pids(self.pid) if pid != self.pid]

    def alive(self) -> bool:
        return self.process.poll() is None

    def counters(self, *, current: bool = True) -> dict[int, dict[str, int]]:
        """Each worker's counters by pid (:func:`cachelab.webapp.read_counters`); only live workers by default."""
        from ..webapp import read_counters

        found = read_counters(self.counters_dir)
        if current:
            alive = set(self.worker_pids())
            found = {pid: c for pid, c in found.items() if pid in alive}
        return found

    def totals(self) -> dict[str, int]:
        """The counters summed over the live workers."""
        from ..webapp import COUNTERS

        per_worker = self.counters().values()
        return {name: sum(c[name] for c in per_worker) for name in COUNTERS}

    def memory(self) -> dict[int, dict[str, int] | None]:
        """RSS, PSS and USS of every worker (:func:`memory`)."""
        return {pid: memory(pid) for pid in self.worker_pids()}

    def pin(self, cpus: Iterable[int]) -> dict:
        """Restrict the master and every worker to ``cpus`` (workers forked later inherit the master's);
        returns :meth:`placement`."""
        self.cpus = tuple(sorted({arguments.integer("each cpu", c, minimum=0) for c in cpus}))
        for pid in [self.pid, *self.worker_pids()]:
            with contextlib.suppress(ProcessLookupError):
                os.sched_setaffinity(pid, set(self.cpus))
        return self.placement()

    def placement(self) -> dict:
        """The CPUs the master and each worker may run on (what ``taskset -p`` shows)."""
        def allowed(pid):
            try:
                return sorted(os.sched_getaffinity(pid))
            except (OSError, AttributeError):
                return None
        return {"master": allowed(self.pid), "workers": {pid: allowed(pid) for pid in self.worker_pids()}}

    def get_json(self, path: str, timeout: float = 5.0):
        """``GET path`` and the decoded JSON body (``HTTPError`` for a status of 400 or more)."""
        with urllib.request.urlopen(self.url(path), timeout=timeout) as response:  # noqa: S310 - our own server
            return json.loads(response.read())

    def post_json(self, path: str, body, timeout: float = 5.0) -> tuple[int, dict]:
        """``POST`` a JSON body; returns the status and the decoded JSON answer, whatever the status."""
        data = json.dumps(body).encode() if not isinstance(body, bytes) else body
        req = urllib.request.Request(self.url(path), data=data, method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=timeout) as response:  # noqa: S310 - our own server
                return response.status, json.loads(response.read())
        except urllib.error.HTTPError as error:
            return error.code, json.loads(error.read() or b"{}")

    # -- life cycle
    def wait_ready(self, timeout: float = READY_TIMEOUT) -> Gunicorn:
        """Return once every worker has opened its connections and ``/health`` answers."""
        timeout = arguments.number("timeout", timeout, positive=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise GunicornError(f"gunicorn exited at start (code {self.process.returncode}):\n{self.log_tail()}")
            if len(self.counters()) >= self.workers:
                try:
                    if self.get_json("/health", timeout=1.0).get("ok"):
                        return self
                except (OSError, ValueError):
                    pass
            time.sleep(0.02)
        raise GunicornError(f"gunicorn did not get {self.workers} worker(s) ready within {timeout:g} s:\n"
                            f"{self.log_tail()}")

    def scale(self, workers: int, timeout: float = READY_TIMEOUT) -> Gunicorn:
        """Change the number of workers with gunicorn's own signals, one at a time (two identical pending
        signals would merge into one): TTIN starts a worker, TTOU stops the oldest. Returns when
        ``workers`` are running and ready."""
        workers = arguments.integer("workers", workers, minimum=1, maximum=64)
        deadline = time.monotonic() + arguments.number("timeout", timeout, positive=True)
        while True:
            count = len(self.worker_pids())
            ready = len(self.counters()) >= count
            if count == workers and ready:
                self.workers = workers
                return self
            if time.monotonic() > deadline:
                raise GunicornError(f"gunicorn did not reach {workers} ready worker(s) within {timeout:g} s "
                                    f"({count} running):\n{self.log_tail()}")
            if ready and count != workers:
                self.process.send_signal(signal.SIGTTIN if count < workers else signal.SIGTTOU)
                while len(self.worker_pids()) == count and time.monotonic() < deadline:
                    time.sleep(0.01)
            time.sleep(0.01)

    def replace_workers(self, timeout: float = READY_TIMEOUT) -> Gunicorn:
        """Replace every worker by a new one: SIGTERM to each (a graceful exit), which the master answers by
        forking a new worker in its place, as it does for any worker that exits. A new worker starts from the
        master's memory: with ``--preload``, whatever the master built, its caches as they were before any
        request. Returns when ``workers`` new workers are ready."""
        old = set(self.worker_pids())
        for pid in old:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + arguments.number("timeout", timeout, positive=True)
        while time.monotonic() < deadline:
            live = set(self.worker_pids())
            if not live & old and len(live) >= self.workers and len(self.counters()) >= self.workers:
                return self
            time.sleep(0.02)
        raise GunicornError(f"gunicorn did not replace its {len(old)} worker(s) within {timeout:g} s:\n"
                            f"{self.log_tail()}")

    def stop(self, graceful: float = GRACEFUL_SECONDS) -> None:
        """SIGTERM to the master, SIGKILL to the group after ``graceful`` seconds; then nothing is left."""
        if self in _RUNNING:
            _RUNNING.remove(self)
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(graceful)
            except subprocess.TimeoutExpired:
                pass
        deadline = time.monotonic() + graceful
        while group_pids(self.pid) and time.monotonic() < deadline:  # workers finishing their request
            time.sleep(0.02)
        if group_pids(self.pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        deadline = time.monotonic() + 5
        while group_pids(self.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        left = group_pids(self.pid)
        if left:
            raise GunicornError(f"processes {left} of gunicorn's group are still running after SIGKILL")
        shutil.rmtree(self.workdir, ignore_errors=True)  # the log and the counters files

    def __enter__(self) -> Gunicorn:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def stop_all(servers: Iterable[Gunicorn], graceful: float = GRACEFUL_SECONDS) -> None:
    """Stop several servers side by side: SIGTERM to every master first, then :meth:`Gunicorn.stop` each (whose
    graceful waits then overlap). Every server is stopped even if one fails; the first failure is raised."""
    servers = list(servers)
    for server in servers:
        if server.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                server.process.send_signal(signal.SIGTERM)
    errors = []
    for server in servers:
        try:
            server.stop(graceful)
        except GunicornError as exc:
            errors.append(exc)
    if errors:
        raise errors[0]


_RUNNING: list[Gunicorn] = []


def _stop_all() -> None:
    for server in list(_RUNNING):
        with contextlib.suppress(Exception):
            server.stop(graceful=1.0)


atexit.register(_stop_all)


def start_gunicorn(mode: str = "none", workers: int = 1, *, settings: Mapping | None = None,
                   cpus: Iterable[int] | None = None, preload: bool = False, timeout: float = READY_TIMEOUT,
                   extra_args: Iterable[str] = (), gc_freeze: bool = False, wait: bool = True) -> Gunicorn:
    """Start gunicorn with ``workers`` sync workers serving the web app in cache ``mode``; return it ready.

    ``settings`` are :class:`cachelab.webapp.Settings` fields (``db_path``, ``ttl``, ``redis_url``,
    ``memcached``, ``prefix``, ...), passed as ``CACHELAB_WEB_*`` variables. ``preload=True`` loads the
    app in the master before the fork (gunicorn's ``--preload``); ``gc_freeze=True`` adds the ``gc.freeze``
    recipe (module docstring). ``wait=False`` returns at once: call :meth:`Gunicorn.wait_ready` (and
    :meth:`Gunicorn.stop` if it fails), so that several servers start side by side.
    """
    from ..webapp import MODES

    if mode not in MODES:
        raise ValueError(f"unknown cache mode {mode!r}: one of {', '.join(MODES)}")
    workers = arguments.integer("workers", workers, minimum=1, maximum=64)
    cpus = tuple(sorted({arguments.integer("each cpu", c, minimum=0) for c in cpus})) if cpus is not None else None
    workdir = Path(tempfile.mkdtemp(prefix="cachelab-gunicorn-"))
    (workdir / "counters").mkdir()
    env = _environment(mode, dict(settings or {}), workdir / "counters", gc_freeze)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(2048)
        port = listener.getsockname()[1]
        fd = listener.fileno()
        command = [sys.executable, "-m", "gunicorn", "--workers", str(workers), "--worker-class", "sync",
                   "--bind", f"fd://{fd}", "--config", "python:cachelab.servers.gunicorn_conf",
                   "--graceful-timeout", str(int(GRACEFUL_SECONDS)), "--timeout", "30",
                   "--error-logfile", str(workdir / "gunicorn.log"), "--log-level", "warning",
                   "--no-control-socket", *(["--preload"] if preload else []), *extra_args,
                   "cachelab.webapp:create_app()"]
        with open(workdir / "gunicorn.log", "ab") as log:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                       env=env, cwd=workdir, pass_fds=(fd,), start_new_session=True,
                                       preexec_fn=child_setup(cpus, signal.SIGTERM))
    finally:
        listener.close()  # gunicorn has its own copy of the socket now
    server = Gunicorn(mode, workers, port, process, workdir, cpus, preload)
    _RUNNING.append(server)
    if not wait:
        return server
    try:
        return server.wait_ready(timeout)
    except BaseException:
        server.stop(graceful=1.0)
        raise
