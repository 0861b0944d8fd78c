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

A joblib cache folder holds pickles, and loading a pickle runs code chosen by whoever wrote it. Keep
cache folders private (this project's live in your checkout) and never point ``Memory`` at a folder
that someone else can write.
"""

from __future__ import annotations

import importlib
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from . import paths

RESULT_FILE = "output.pkl"


def memory_location(name: str, *, clear: bool = True) -> Path:
    """The folder ``.cachelab/joblib/<name>`` (``$CACHELAB_CACHE_DIR``) for a ``joblib.Memory``.

    With ``clear=True`` (the default) anything cached there before is deleted first, so a notebook
    that starts with it behaves the same on every run.
    """
    if not name or "/" in name or "\\" in name or name in {".", ".."}:
        raise ValueError(f"a plain folder name like '04_joblib', not {name!r}")
    folder = paths.cache_dir() / "joblib" / name
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
            f"or inside a function. Move it to a module (a .py file) to share its cache across processes.")
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
