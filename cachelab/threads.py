"""Many threads asking for the same thing at the same moment: the cache stampede, made repeatable.

When a popular entry is missing (a cold start, an expiry, an invalidation), every request that arrives
before the first one has refilled it also misses, and each of them runs the expensive work. To show it
on purpose, :func:`call_together` starts ``threads`` threads, holds them at a barrier and releases them at once.
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class ThreadsTimeout(TimeoutError):
    """A thread did not finish within the time limit (a deadlock, or a backend that hangs)."""


def call_together(func: Callable, *args, threads: int = 4, timeout: float = 60.0, **kwargs) -> list:
    """Call ``func(*args, **kwargs)`` from ``threads`` threads released together; return their results.

    Results are in thread order. The first exception raised by any thread is re-raised here. Raises
    :class:`ThreadsTimeout` if the threads have not all finished within ``timeout`` seconds, so a
    notebook cell never hangs.
    """
    if isinstance(threads, bool) or not isinstance(threads, int):
        raise TypeError(f"threads must be an integer, not {type(threads).__name__} {threads!r}")
    if threads < 1:
        raise ValueError(f"threads must be at least 1, not {threads}")
    n_threads = threads
    barrier = threading.Barrier(n_threads)
    results: list = [None] * n_threads
    errors: list[BaseException] = []

    def worker(i: int) -> None:
        try:
            barrier.wait(timeout)
            results[i] = func(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed back to the caller below
            errors.append(exc)

    started = [threading.Thread(target=worker, args=(i,), name=f"together-{i}", daemon=True)
               for i in range(n_threads)]
    for thread in started:
        thread.start()
    for thread in started:
        thread.join(timeout)
    if any(thread.is_alive() for thread in started):
        raise ThreadsTimeout(f"{sum(t.is_alive() for t in started)} of {n_threads} threads still running "
                              f"after {timeout} s")
    if errors:
        raise errors[0]
    return results
