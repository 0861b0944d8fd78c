"""The numbered notebooks, and the one way this project runs them: listed, titled, and given a kernel.

:func:`list_notebooks` finds the series in reading order; :func:`title_of` reads a notebook's title;
:func:`kernel_environment` is what every kernel the project starts sees (quick or full mode, where
results and figures go, a fixed hash seed); :func:`notebook_client` starts that kernel behind a
``NotebookClient`` whose sockets are IPC files in a private folder, not TCP ports, so nothing else on
the machine can talk to it. The runner, the site and the exercise checks all use these.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import signal
import tempfile
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from .. import paths

CELL_TIMEOUT = {"quick": 300, "full": 600}


def list_notebooks(only: Sequence[str] | None = None, folder: Path | None = None) -> list[Path]:
    """The numbered notebooks in reading order, optionally only those whose name starts with one of ``only``."""
    found = sorted(Path(folder or paths.notebooks_dir()).glob("[0-9][0-9]_*.ipynb"))
    if only:
        found = [p for p in found if any(p.stem.startswith(o) for o in only)]
        if not found:
            raise ValueError(f"no notebook matches {' '.join(only)}: give numbers or names such as 00 01, "
                             f"from `ls {paths.notebooks_dir()}`")
    return found


def title_of(nb) -> str:
    """The notebook's first Markdown heading."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return ""


def kernel_environment(*, quick: bool, results_dir: Path | None = None,
                       figures_dir: Path | None = None) -> dict[str, str]:
    """The environment variables of a notebook's kernel."""
    env = {"CACHELAB_QUICK": "1" if quick else "0", "PYTHONHASHSEED": "0",
           "MPLBACKEND": "module://matplotlib_inline.backend_inline"}
    if results_dir:
        env["CACHELAB_RESULTS_DIR"] = str(results_dir)
    if figures_dir:
        env["CACHELAB_FIGURES_DIR"] = str(figures_dir)
    return env


@contextlib.contextmanager
def environ(values: dict[str, str]) -> Iterator[None]:
    """``os.environ`` with ``values`` set inside the block, restored after it."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@functools.cache
def _client_class():
    """``NotebookClient``, executing a cell again when a claim in it was not shown (``CACHELAB_CLAIMS=strict``).

    A measured claim that the run could not show (:class:`cachelab.claims.ClaimNotShown`) is measured again by
    executing its cell again, as a reader would, up to :data:`cachelab.claims.ATTEMPTS` times in all; then its
    error stands. Any other error, a reversed claim included, stands at once. ``client.claim_retries`` lists the
    retries: ``(cell index, attempt, message)``.
    """
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError
    from nbclient.util import run_sync

    from ..claims import ATTEMPTS

    class ClaimsClient(NotebookClient):
        async def async_execute_cell(self, cell, cell_index, execution_count=None, store_history=True):
            if not hasattr(self, "claim_retries"):
                self.claim_retries = []
            for attempt in range(1, ATTEMPTS + 1):
                try:
                    return await super().async_execute_cell(cell, cell_index, execution_count, store_history)
                except CellExecutionError as exc:
                    if exc.ename != "ClaimNotShown" or attempt == ATTEMPTS:
                        raise
                    self.claim_retries.append((cell_index, attempt, str(exc.evalue)))
            raise AssertionError("unreachable")

        # nbclient binds ``execute_cell`` to its own coroutine: one cell executed on its own (the exercises'
        # verification) is measured again too
        execute_cell = run_sync(async_execute_cell)

        async def async_start_new_kernel(self, **kwargs):
            # the kernel process's own stderr (its logging, not a cell's output, which comes over the kernel's
            # sockets) goes to a file: a kernel that logs a ZMQError while it shuts down must not print a
            # traceback into a finished run's report
            if getattr(self, "kernel_stderr", None) is not None:
                kwargs.setdefault("stderr", self.kernel_stderr)
            return await super().async_start_new_kernel(**kwargs)

        start_new_kernel = run_sync(async_start_new_kernel)

        async def async_start_new_kernel_client(self):
            # Called inside nbclient's setup_kernel, right after it set its SIGINT and SIGTERM handlers on the event
            # loop. Those only schedule the kernel's shutdown, which runs once the loop is free, that is after the
            # cell (the client waits for its reply in a blocking call); then the cell fails with a bare
            # AssertionError and a run goes on to the next notebook: Ctrl-C never stopped `make run`. Python's own
            # handling instead: the signal raises KeyboardInterrupt where the client waits, nbclient shuts the
            # kernel down on the way out, and :func:`notebook_client` restores the handlers it found. A signal
            # that was ignored when the notebook began (SIGINT in a shell's background job) stays ignored.
            loop = asyncio.get_running_loop()
            found = getattr(self, "found_handlers", {})
            for signum in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # Windows; another thread
                    loop.remove_signal_handler(signum)
                    signal.signal(signum, signal.SIG_IGN if found.get(signum) == signal.SIG_IGN else _interrupt)
            return await super().async_start_new_kernel_client()

        start_new_kernel_client = run_sync(async_start_new_kernel_client)

    return ClaimsClient


def _interrupt(signum, _frame):
    """Ctrl-C, or a SIGTERM, while a notebook executes: stop the run where it waits, not only the kernel."""
    raise KeyboardInterrupt(f"signal {signum}")


def _signal_handlers() -> dict:
    """SIGINT's and SIGTERM's handlers as they are (empty outside the main thread, where none can be set)."""
    if threading.current_thread() is not threading.main_thread():
        return {}
    return {signum: signal.getsignal(signum) for signum in (signal.SIGINT, signal.SIGTERM)}


def _restore(handlers: dict) -> None:
    for signum, handler in handlers.items():
        with contextlib.suppress(TypeError, ValueError):  # a handler not set from Python (None) stays as it is
            signal.signal(signum, handler)


@contextlib.contextmanager
def notebook_client(nb, path: Path, *, quick: bool, results_dir: Path | None = None,
                    figures_dir: Path | None = None, timeout: int | None = None) -> Iterator:
    """A ``NotebookClient`` for ``nb`` (read from ``path``), its kernel environment set, its sockets private.

    Inside the block, call ``client.execute()`` (the whole notebook) or ``client.setup_kernel()`` and
    ``client.execute_cell(...)``. The kernel is shut down when the block ends, whatever happened in it.
    """
    from jupyter_client.manager import KernelManager

    env = kernel_environment(quick=quick, results_dir=results_dir, figures_dir=figures_dir)
    handlers = _signal_handlers()
    with tempfile.TemporaryDirectory(prefix="cachelab-kernel-") as sockets, environ(env):
        km = KernelManager(kernel_name="python3", transport="ipc", ip=str(Path(sockets) / "kernel"))
        client = _client_class()(
            nb, km=km, timeout=timeout or CELL_TIMEOUT["quick" if quick else "full"], kernel_name="python3",
            resources={"metadata": {"path": str(Path(path).parent)}}, record_timing=False,
        )
        client.found_handlers = handlers
        log = client.kernel_stderr = open(Path(sockets) / "kernel-stderr.log", "wb")  # noqa: SIM115 - closed below
        try:
            yield client
        finally:
            # nbclient leaves a kernel manager it was given running, and its client's channels open. Close the
            # channels first, so that no socket of theirs is polled while the kernel goes away (a ZMQError
            # "Socket operation on non-socket" from a closed socket would otherwise end a finished run); a
            # shutdown request that fails all the same is followed by a kill.
            with contextlib.suppress(Exception):
                if getattr(client, "kc", None) is not None:
                    client.kc.stop_channels()
            if km.has_kernel:
                try:
                    km.shutdown_kernel(now=False)
                except Exception:  # noqa: BLE001 - the kernel must go, whatever its sockets did
                    with contextlib.suppress(Exception):
                        km.shutdown_kernel(now=True)
            log.close()
            _restore(handlers)
