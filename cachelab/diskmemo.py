"""joblib.Memory in the project: cache folders in an ignored place, calls from a fresh process, the disk.

``joblib.Memory`` memoizes a function to disk: the arguments are hashed, the result is pickled into a
folder named after the function and the hash, and a later call with equal arguments (in this process or
any other, today or next week) loads it instead of recomputing. This module holds what the notebooks
need around it:

* :func:`memory_location`: a cache folder under ``.cachelab/joblib/`` (ignored by git), emptied on
  request so that a notebook rerun starts cold.
* :func:`call_in_fresh_process`: call a memoized function in a new Python process, to prove that the
  cache outlives the process that filled it.
* :func:`tree`, :func:`folder_size`, :func:`cached_results`: what the cache looks like on disk.
* :func:`profile_hit`: where the time of a hit goes, step by step (:data:`HIT_STEPS`).
* :func:`call_once`: the missing lock. Two processes that miss the same call at once both compute it
  (joblib writes each result atomically, so nothing breaks, but the work is done twice); ``call_once``
  holds an exclusive file lock per call while it computes, so the second process waits and then loads.
  :func:`race` shows both, in real processes started together; :func:`logged_bootstrap` is the memoized
  function they call, which appends a line to a log each time its body really runs.

A joblib cache folder holds pickles, and loading a pickle runs code chosen by whoever wrote it. Keep
cache folders private (this project's live in your checkout) and never point ``Memory`` at a folder
that someone else can write.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from . import paths

RESULT_FILE = "output.pkl"


def memory_location(name: str, *, clear: bool = True) -> Path:
    """The folder ``.cachelab/joblib/<name>`` (``$CACHELAB_CACHE_DIR``) for a ``joblib.Memory``.

    The participant copies in ``exercises/`` use ``.cachelab/joblib/exercises/<name>``, so that starting
    ``exercises/04`` never empties the cache of ``notebooks/04`` running beside it.

    With ``clear=True`` (the default) anything cached there before is deleted first, so a notebook
    that starts with it behaves the same on every run.
    """
    if not name or "/" in name or "\\" in name or name in {".", ".."}:
        raise ValueError(f"a plain folder name like '04_joblib', not {name!r}")
    folder = paths.copy_folder(paths.cache_dir() / "joblib") / name  # exercises/ apart from notebooks/
    if clear and folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def folder_size(folder: str | Path) -> int:
    """Total size in bytes of the files under ``folder`` (0 if it does not exist)."""
    folder = Path(folder)
    if not folder.exists():
        return 0
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def cached_results(folder: str | Path) -> int:
    """How many results (one per function and argument hash) a joblib cache folder holds."""
    return sum(1 for _ in Path(folder).rglob(RESULT_FILE))


def _human(size: int) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    raise AssertionError("unreachable")


def tree(folder: str | Path, *, max_lines: int = 40, hash_width: int = 12) -> str:
    """The folder as an indented listing with file sizes; argument hashes are shortened to ``hash_width``."""
    folder = Path(folder)
    lines = [f"{folder.name}/"]

    def short(name: str) -> str:
        is_hash = len(name) == 32 and all(c in "0123456789abcdef" for c in name)
        return f"{name[:hash_width]}..." if is_hash else name

    def walk(path: Path, depth: int) -> None:
        for child in sorted(path.iterdir(), key=lambda p: (p.is_file(), p.name)):
            if len(lines) > max_lines:
                return
            if child.is_dir():
                lines.append(f"{'  ' * depth}{short(child.name)}/")
                walk(child, depth + 1)
            else:
                lines.append(f"{'  ' * depth}{child.name}  ({_human(child.stat().st_size)})")

    if folder.exists():
        walk(folder, 1)
    if len(lines) > max_lines:
        lines = lines[:max_lines] + ["  ..."]
    return "\n".join(lines)


@dataclass(frozen=True)
class FreshCall:
    """One call of a memoized function in a new Python process."""

    was_cached: bool
    """``check_call_in_cache`` in the new process, before the call: the result was already on disk."""
    call_ns: float
    """How long the call took there (first call in that process), in nanoseconds."""
    result: object


def _import_path(func: Callable) -> tuple[str, str]:
    module, qualname = getattr(func, "__module__", None), getattr(func, "__qualname__", None)
    if not module or not qualname or module == "__main__" or "<" in qualname:
        raise ValueError(
            f"{func!r} cannot be imported by another process: it was defined in a notebook cell, a script "
            f"or inside a function, and call_in_fresh_process imports the function it calls by module and name. "
            f"Define it in a module (a .py file) to call it this way; joblib itself still shares the cache of such "
            f"a function (joblib.Parallel ships it to its workers).")
    return module, qualname


def call_in_fresh_process(location: str | Path, func: Callable, args: tuple = (), kwargs: dict | None = None, *,
                          ignore: list[str] | None = None, mmap_mode: str | None = None,
                          timeout: float = 120.0) -> FreshCall:
    """Call ``joblib.Memory(location).cache(func)(*args, **kwargs)`` in a new Python process.

    ``location`` reaches the child as given, ``str`` or ``pathlib.Path``: joblib 1.6 stores under a ``joblib/``
    subfolder of a ``str`` location but directly in a ``Path`` one (joblib issue #1684), so a change of type
    would be a different cache. ``func`` must be importable (defined at the top level of a module).
    The new process comes from :func:`cachelab.workers.in_fresh_process`; an error raised there is raised
    here, and ``TimeoutError`` after ``timeout`` seconds.
    """
    from .workers import in_fresh_process

    module, qualname = _import_path(func)
    request = {"location": location, "module": module, "qualname": qualname, "args": tuple(args),
               "kwargs": dict(kwargs or {}), "ignore": ignore, "mmap_mode": mmap_mode}
    return FreshCall(**in_fresh_process(_fresh_call, request, timeout=timeout))


def _fresh_call(request: dict) -> dict:
    """In the new process: memoize the function named in ``request`` and call it once."""
    from joblib import Memory

    from .timing import time_calls

    target = importlib.import_module(request["module"])
    for part in request["qualname"].split("."):
        target = getattr(target, part)
    memorized = Memory(request["location"], verbose=0).cache(target, ignore=request["ignore"],
                                                             mmap_mode=request["mmap_mode"])
    args, kwargs = request["args"], request["kwargs"]
    was_cached = memorized.check_call_in_cache(*args, **kwargs)
    box = []
    (call_ns,) = time_calls(lambda _: box.append(memorized(*args, **kwargs)), [None])
    return {"was_cached": bool(was_cached), "call_ns": float(call_ns), "result": box[0]}


# --------------------------------------------------------------------------- two processes, one missing key

def logged_bootstrap(values, *, n_boot: int, log_path: str):
    """:func:`cachelab.data.bootstrap_ci`, appending ``<pid>`` to ``log_path`` each time it really runs.

    Memoize it with ``ignore=["log_path"]``: the log names where the computations happened, and is not part
    of the answer. A line appended with ``O_APPEND`` is written whole, so processes can share the log.
    """
    from .data import bootstrap_ci

    with open(log_path, "a", encoding="utf-8") as log:
        log.write(f"{os.getpid()}\n")
    return bootstrap_ci(values, n_boot=n_boot)


def computations(log_path: str | Path) -> list[int]:
    """The process ids :func:`logged_bootstrap` logged, one per computation."""
    path = Path(log_path)
    return [int(line) for line in path.read_text(encoding="utf-8").split()] if path.exists() else []


def _lock_path(memorized, args: tuple, kwargs: dict) -> Path:
    from joblib import hash as joblib_hash
    from joblib.func_inspect import filter_args

    call = joblib_hash((memorized.func_id, filter_args(memorized.func, memorized.ignore, args, kwargs)))
    folder = Path(memorized.store_backend.location) / ".locks"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / f"{hashlib.sha1(call.encode()).hexdigest()[:20]}.lock"


def call_once(memorized, *args, **kwargs):
    """``memorized(*args, **kwargs)``, computed by one process at a time per call.

    ``memorized`` is a ``joblib.Memory(...).cache(func)``. On a miss, an exclusive ``flock`` on a file named
    after the call (in the cache folder's ``.locks/``) is held while joblib computes and stores; another
    process missing the same call blocks on the lock, then finds the result on disk and loads it. A hit
    takes no lock. ``flock`` works between processes of one machine (Linux and macOS; not on Windows). Over NFS,
    Linux clients since 2.6.12 emulate it with a byte-range lock on the whole file, which the server arbitrates
    between machines, unless the folder is mounted with ``local_lock=flock`` (``flock(2)``, ``nfs(5)``). The
    lock is released when the process dies, so a crash cannot block the others.
    """
    if memorized.check_call_in_cache(*args, **kwargs):
        return memorized(*args, **kwargs)
    import fcntl  # Unix only: imported here so that the rest of the module works everywhere

    with open(_lock_path(memorized, args, kwargs), "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            return memorized(*args, **kwargs)  # a hit if another process computed it while we waited
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def race_call(location: str, values, n_boot: int, log_path: str, locked: bool) -> dict:
    """In a worker process: call the memoized :func:`logged_bootstrap` once (through :func:`call_once` when
    ``locked``) and return how long it took and the answer."""
    from joblib import Memory

    memorized = Memory(Path(location), verbose=0).cache(logged_bootstrap, ignore=["log_path"])
    start = time.perf_counter()
    if locked:
        result = call_once(memorized, values, n_boot=n_boot, log_path=log_path)
    else:
        result = memorized(values, n_boot=n_boot, log_path=log_path)
    return {"seconds": time.perf_counter() - start, "result": result, "pid": os.getpid()}


@dataclass(frozen=True)
class Race:
    """What :func:`race` saw: the processes that really computed, and each caller's time and answer."""

    computed_by: list[int]
    seconds: list[float]
    results: list

    @property
    def computations(self) -> int:
        return len(self.computed_by)


def race(pool, location: str | Path, values, *, n_boot: int, processes: int = 2, locked: bool = False,
         start_in: float = 0.3) -> Race:
    """``processes`` worker processes of ``pool`` call the same memoized bootstrap at the same instant.

    The cache at ``location`` should not hold the call yet. ``locked=True`` goes through :func:`call_once`.
    The processes come from :func:`cachelab.workers.run_together`; the log of computations is a file next
    to the cache, emptied first.
    """
    from .workers import run_together

    log_path = Path(location).parent / f"{Path(location).name}.computations.log"
    with contextlib.suppress(FileNotFoundError):
        log_path.unlink()
    calls = [(str(location), values, n_boot, str(log_path), locked)] * processes
    outcomes = run_together(pool, race_call, calls, start_in=start_in)
    return Race(computations(log_path), [o["seconds"] for o in outcomes], [o["result"] for o in outcomes])


# --------------------------------------------------------------------------- where a hit's time goes

#: The steps of a hit in ``joblib.memory.MemorizedFunc._cached_call`` (joblib 1.6), each named by the
#: function that does it: ``(module or class path, attribute)``. A hit also joins a few paths and checks a
#: few flags; :func:`profile_hit` reports that as "everything else".
HIT_STEPS: dict[str, tuple[str, str]] = {
    "match the arguments to the signature (inspect)": ("joblib.memory", "filter_args"),
    "hash the arguments (pure-Python pickler, MD5)": ("joblib.hashing", "hash"),
    "name the function and find its source file": ("joblib.memory", "get_func_name"),
    "check the function's code": ("joblib.memory:MemorizedFunc", "_check_previous_func_code"),
    "stat output.pkl": ("joblib._store_backends:FileSystemStoreBackend", "contains_item"),
    "open and read metadata.json": ("joblib._store_backends:FileSystemStoreBackend", "get_metadata"),
    "open and unpickle output.pkl": ("joblib._store_backends:FileSystemStoreBackend", "load_item"),
}


def _owner(path: str):
    module, _, cls = path.partition(":")
    owner = importlib.import_module(module)
    return getattr(owner, cls) if cls else owner


@contextlib.contextmanager
def _timed_steps(totals: Counter) -> Iterator[None]:
    originals = []
    try:
        for label, (path, name) in HIT_STEPS.items():
            owner = _owner(path)
            original = getattr(owner, name)  # AttributeError: a joblib whose hit takes other steps

            def timed(*args, _original=original, _label=label, **kwargs):
                start = time.perf_counter_ns()
                try:
                    return _original(*args, **kwargs)
                finally:
                    totals[_label] += time.perf_counter_ns() - start

            originals.append((owner, name, original))
            setattr(owner, name, functools.wraps(original)(timed))
        yield
    finally:
        for owner, name, original in reversed(originals):
            setattr(owner, name, original)


def profile_hit(memorized, *args, calls: int = 1000, **kwargs) -> dict[str, float]:
    """Nanoseconds per hit spent in each step of :data:`HIT_STEPS`, over ``calls`` hits of ``memorized``.

    Each step's function is wrapped with a timer for the duration of the measurement (and restored after),
    so the steps are timed inside real hits, in their real order, with their real caches; timing them one by
    one in a loop would make each look cheaper than it is. The result also holds ``"the whole hit"`` and
    ``"everything else"`` (the whole minus the steps). The call must be a hit (it is checked first).
    """
    if not memorized.check_call_in_cache(*args, **kwargs):
        raise ValueError("profile_hit times hits: call the function once first")
    totals: Counter = Counter()
    memorized(*args, **kwargs)  # warm up outside the measurement
    with _timed_steps(totals):
        start = time.perf_counter_ns()
        for _ in range(calls):
            memorized(*args, **kwargs)
        whole = time.perf_counter_ns() - start
    steps = {label: totals[label] / calls for label in HIT_STEPS}
    return {"the whole hit": whole / calls, **steps, "everything else": (whole - sum(totals.values())) / calls}
