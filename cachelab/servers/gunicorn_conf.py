"""The gunicorn configuration file of the flight-service app: hooks only (every setting is on the command line).

:func:`cachelab.servers.gunicorn.start_gunicorn` passes it as ``--config python:cachelab.servers.gunicorn_conf``.
gunicorn reads every module-level name of this file that is one of its settings, so it defines nothing else
(besides the modules it imports).
"""

import contextlib
import ctypes
import gc
import os
import signal
import sys

# With CACHELAB_WEB_GC_FREEZE=1, the recipe of Python's gc.freeze docs: "call gc.disable() early in the parent
# process, gc.freeze() right before fork(), and gc.enable() early in child processes". This file is read by the
# master before it loads the app (with --preload), which is early.
if os.environ.get("CACHELAB_WEB_GC_FREEZE") == "1":
    gc.disable()


def pre_fork(server, worker):
    """In the master, right before each fork: with the recipe on, move every tracked object to the permanent
    generation, which no collection in the workers will scan (or write to)."""
    if os.environ.get("CACHELAB_WEB_GC_FREEZE") == "1":
        gc.freeze()


def post_fork(server, worker):
    """In each new worker: on Linux, SIGTERM when the master dies, however it dies; the collector back on
    when the gc.freeze recipe turned it off in the master."""
    if os.environ.get("CACHELAB_WEB_GC_FREEZE") == "1":
        gc.enable()
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
