"""The framework versions of the flight service, served the way production serves them: started, ready, stopped.

Notebook 09 serves the same service written with each framework's own cache, next to notebook 07's:

* WSGI apps (Flask with HTTP caching, Flask-Caching, Django) under **gunicorn** with ``K`` sync workers,
  exactly as :func:`cachelab.servers.gunicorn.start_gunicorn` serves :mod:`cachelab.webapp`: :func:`start_wsgi`;
* the ASGI app (FastAPI) under **uvicorn** with ``K`` worker processes (its ``Multiprocess`` supervisor,
  as ``uvicorn --workers K`` runs it): :func:`start_asgi`.

Both return a :class:`~cachelab.servers.gunicorn.Gunicorn` (the same probes, counters, placement and stop:
SIGTERM, then SIGKILL to the process group, nothing left) once every worker has opened its connections and
``/health`` answers. Both bind 127.0.0.1 in this process on a port the kernel picks and hand the socket to
the server (``fd://N`` to gunicorn; to uvicorn through this module's own launcher, ``python -m
cachelab.servers.apps``, which passes the socket to uvicorn's ``Server.run`` or ``Multiprocess`` as
``uvicorn.main.run`` does with the socket it binds).

Settings are :class:`cachelab.webapp.Settings` fields, passed as ``CACHELAB_WEB_*`` variables, plus any
``environment`` (``CACHELAB_HTTP_*`` of :mod:`cachelab.http_caching`, ``DJANGO_SETTINGS_MODULE``...).
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from .. import arguments
from .gunicorn import GRACEFUL_SECONDS, READY_TIMEOUT, Gunicorn, group_pids
from .managed import child_setup

VARIABLES = {"mode": "CACHELAB_WEB_MODE", "db_path": "CACHELAB_WEB_DB", "ttl": "CACHELAB_WEB_TTL",
             "local_ttl": "CACHELAB_WEB_LOCAL_TTL", "maxsize": "CACHELAB_WEB_MAXSIZE",
             "redis_url": "CACHELAB_WEB_REDIS", "prefix": "CACHELAB_WEB_PREFIX"}
#: What each framework app is, for :func:`start_wsgi` and :func:`start_asgi`.
APPS = {"http": "cachelab.http_caching:create_app()", "flask-caching": "cachelab.flask_caching_app:create_app()",
        "django": "cachelab.django_app:application", "fastapi": "cachelab.async_app:app"}


@dataclass(eq=False)
class AppServer(Gunicorn):
    """A framework app's server: gunicorn's master and sync workers, or uvicorn's supervisor and workers.

    With one uvicorn worker there is no supervisor: the one process is the worker."""

    server: str = "gunicorn"

    def worker_pids(self) -> list[int]:
        if self.server == "uvicorn" and self.workers == 1:
            return [pid for pid in group_pids(self.pid) if pid == self.pid]
        return [pid for pid in group_pids(self.pid) if pid != self.pid and self._is_worker(pid)]

    def _is_worker(self, pid: int) -> bool:
        """uvicorn's spawned workers run ``multiprocessing.spawn``; its resource tracker is not a worker."""
        if self.server != "uvicorn":
            return True
        try:
            return b"resource_tracker" not in Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return False

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join((self.workdir / "server.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def stop(self, graceful: float = GRACEFUL_SECONDS) -> None:
        if self in _RUNNING:
            _RUNNING.remove(self)
        super().stop(graceful)


_RUNNING: list[AppServer] = []


def _stop_all() -> None:
    for server in list(_RUNNING):
        with contextlib.suppress(Exception):
            server.stop(graceful=1.0)


atexit.register(_stop_all)


def _environment(settings: Mapping, environment: Mapping, counters_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CACHELAB_WEB_", "CACHELAB_HTTP_"))}
    env["CACHELAB_WEB_COUNTERS"] = str(counters_dir)
    for name, value in settings.items():
        if name not in VARIABLES:
            raise ValueError(f"unknown web app setting {name!r}: one of {', '.join(sorted(VARIABLES))}")
        if value is not None:
            env[VARIABLES[name]] = str(value)
    env.update({str(k): str(v) for k, v in environment.items()})
    return env


def _start(kind: str, app: str, workers: int, settings, environment, cpus, timeout, wait) -> AppServer:
    workers = arguments.integer("workers", workers, minimum=1, maximum=64)
    cpus = tuple(sorted({arguments.integer("each cpu", c, minimum=0) for c in cpus})) if cpus is not None else None
    workdir = Path(tempfile.mkdtemp(prefix=f"cachelab-{kind}-"))
    (workdir / "counters").mkdir()
    env = _environment(dict(settings or {}), dict(environment or {}), workdir / "counters")
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen(2048)
        port, fd = listener.getsockname()[1], listener.fileno()
        if kind == "gunicorn":
            command = [sys.executable, "-m", "gunicorn", "--workers", str(workers), "--worker-class", "sync",
                       "--bind", f"fd://{fd}", "--config", "python:cachelab.servers.gunicorn_conf",
                       "--graceful-timeout", str(int(GRACEFUL_SECONDS)), "--timeout", "30",
                       "--error-logfile", str(workdir / "server.log"), "--log-level", "warning",
                       "--no-control-socket", app]
        else:
            command = [sys.executable, "-m", "cachelab.servers.apps", "--fd", str(fd), "--workers", str(workers), app]
        with open(workdir / "server.log", "ab") as log:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                       env=env, cwd=workdir, pass_fds=(fd,), start_new_session=True,
                                       preexec_fn=child_setup(cpus, signal.SIGTERM))
    finally:
        listener.close()
    server = AppServer(mode=str((settings or {}).get("mode", "none")), workers=workers, port=port, process=process,
                       workdir=workdir, cpus=cpus, server=kind)
    _RUNNING.append(server)
    if not wait:
        return server
    try:
        return server.wait_ready(timeout)
    except BaseException:
        server.stop(graceful=1.0)
        raise


def start_wsgi(app: str, workers: int = 1, *, settings: Mapping | None = None, environment: Mapping | None = None,
               cpus: Iterable[int] | None = None, timeout: float = READY_TIMEOUT, wait: bool = True) -> AppServer:
    """gunicorn with ``workers`` sync workers serving ``app`` (a name of :data:`APPS`, or ``module:callable``).

    The app must carry the service in ``extensions["cachelab"]`` (gunicorn's hooks open each worker's
    connections through it) and answer ``/health``. ``wait=False`` returns at once (then ``wait_ready()``).
    """
    return _start("gunicorn", APPS.get(app, app), workers, settings, environment, cpus, timeout, wait)


def start_asgi(app: str = "fastapi", workers: int = 1, *, settings: Mapping | None = None,
               environment: Mapping | None = None, cpus: Iterable[int] | None = None,
               timeout: float = READY_TIMEOUT, wait: bool = True) -> AppServer:
    """uvicorn with ``workers`` worker processes serving the ASGI ``app``; the app opens each worker's
    connections (and its counters) when it starts (its lifespan)."""
    return _start("uvicorn", APPS.get(app, app), workers, settings, environment, cpus, timeout, wait)


def main(argv=None) -> int:
    """``python -m cachelab.servers.apps --fd N --workers K module:app``: uvicorn on an inherited socket."""
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("app")
    args = parser.parse_args(argv)
    sock = socket.socket(fileno=args.fd)  # the family and type are read from the socket itself
    config = uvicorn.Config(args.app, workers=args.workers, log_level="warning", access_log=False,
                            lifespan="on", timeout_graceful_shutdown=int(GRACEFUL_SECONDS))
    server = uvicorn.Server(config)
    if args.workers > 1:
        Multiprocess(config, sockets=[sock]).run()
    else:
        server.run(sockets=[sock])
    return 0


if __name__ == "__main__":
    sys.exit(main())
