"""The gunicorn configuration file of the flight-service app: hooks only (every setting is on the command line).

:func:`cachelab.servers.gunicorn.start_gunicorn` passes it as ``--config python:cachelab.servers.gunicorn_conf``.
gunicorn reads every module-level name of this file that is one of its settings, so it defines nothing else.
"""

import contextlib
import ctypes
import signal
import sys


def post_fork(server, worker):
    """In each new worker: on Linux, SIGTERM when the master dies, however it dies."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def post_worker_init(worker):
    """Open the worker's database connection and cache clients before it accepts its first request."""
    from cachelab.webapp import open_worker

    open_worker(worker.wsgi)


def worker_exit(server, worker):
    """Close them when the worker exits."""
    from cachelab.webapp import close_worker

    if getattr(worker, "wsgi", None) is not None:
        close_worker(worker.wsgi)
