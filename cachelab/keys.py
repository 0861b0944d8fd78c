"""Key names: every key the project writes starts with ``cachelab:``, and nothing else is deleted.

A notebook may be pointed at someone's real Redis or memcached, and in a workshop a whole room may share
one server (the instructor's, given to everyone through ``REDIS_URL``/``MEMCACHED_SERVERS``). So every key
a notebook writes carries a prefix of its own run, ``cachelab:<participant>:<notebook>:``
(:func:`prefix_for`); every cleanup takes such a prefix and checks it first (:func:`check_prefix`); and a
cleanup never matches more than that prefix:

* participant ``alice``'s start-up cleanup of ``cachelab:alice:05_memcached:*`` cannot reach
  ``cachelab:bob:05_memcached:``, nor ``cachelab:alice:06_redis:``;
* a notebook run from the participant copies in ``exercises/`` has its own prefix,
  ``cachelab:alice:exercises-05_memcached:``, so it never deletes the keys of ``notebooks/05`` running
  beside it;
* notebook ``a``'s ``cachelab:<participant>:a:*`` cannot reach ``cachelab:<participant>:ab:``.

The participant comes from ``$CACHELAB_PARTICIPANT`` (say ``alice``, or ``table3-ana``), or else is
generated once and kept in ``.cachelab/participant`` (:func:`participant`).
"""

from __future__ import annotations

import os
import re
import secrets
import time

from . import paths

PROJECT = "cachelab:"
PARTICIPANT_ENV = "CACHELAB_PARTICIPANT"
PARTICIPANT_FILE = "participant"
EXERCISES = paths.EXERCISES
_PARTICIPANT = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,31}")


def notebook_name(notebook) -> str:
    """``notebook`` if it can name a results file and a key prefix: no spaces, ``/``, ``\\``, ``*``, ``:``,
    no leading dot. The one rule for notebook names, used by :mod:`cachelab.results` and the prefixes."""
    if not isinstance(notebook, str):
        raise TypeError(f"notebook must be a str like '01_naive_recomputation', not {type(notebook).__name__}")
    bad = not notebook or notebook.startswith(".") or any(c.isspace() or c in "/\\*:" for c in notebook)
    if bad:
        raise ValueError(f"a notebook name like '01_naive_recomputation' (without spaces, '/', '*' or ':'), "
                         f"not {notebook!r}")
    return notebook


def participant_name(name, *, source: str = "a participant") -> str:
    """``name`` if it can name a participant: 1 to 32 letters, digits, ``-`` or ``_``, starting with a letter.

    A letter first, so that ``cachelab:<participant>:`` is never the prefix of a notebook of the series
    (``cachelab:05_memcached:``, which the tests and the benchmark use without a participant).
    """
    if not isinstance(name, str):
        raise TypeError(f"{source} must be a str like 'alice', not {type(name).__name__}")
    if not _PARTICIPANT.fullmatch(name):
        raise ValueError(f"{source} must be a name like 'alice' or 'table3-ana' (1 to 32 letters, digits, '-' "
                         f"or '_', starting with a letter; it becomes part of every key prefix), not {name!r}")
    return name


def participant() -> str:
    """Who this run belongs to: ``$CACHELAB_PARTICIPANT``, else the id kept in ``.cachelab/participant``.

    The first run of a checkout that has neither generates an id (``p`` and eight hex digits) and keeps it,
    so every notebook and every rerun of that checkout shares one namespace. Two kernels that start at
    the same moment agree on it: the file is created exclusively, and the loser reads the winner's id.
    """
    given = os.environ.get(PARTICIPANT_ENV, "").strip()
    if given:
        return participant_name(given, source=f"${PARTICIPANT_ENV}")
    path = paths.cache_dir() / PARTICIPANT_FILE
    if not path.exists():
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            pass
        else:
            with os.fdopen(fd, "w") as handle:
                handle.write(f"p{secrets.token_hex(4)}\n")
    deadline = time.monotonic() + 2.0
    kept = path.read_text(encoding="utf-8").strip()
    while not kept and time.monotonic() < deadline:  # created by another kernel, not written yet
        time.sleep(0.01)
        kept = path.read_text(encoding="utf-8").strip()
    return participant_name(kept, source=f"the participant id in {path} (delete the file to get a new one)")


def prefix_for(notebook: str, participant: str | None = None, *, copy: str = paths.NOTEBOOKS) -> str:
    """The key prefix of one notebook's run: ``cachelab:<participant>:<notebook>:``.

    ``copy`` is which copy of the notebook runs (:func:`cachelab.paths.notebook_copy`): the participant
    copies in ``exercises/`` get ``cachelab:<participant>:exercises-<notebook>:``. Without a participant
    (tests, the benchmark, a library caller), the prefix is ``cachelab:<notebook>:``.

    No ``:`` in the names: notebook ``a``'s cleanup (``cachelab:p:a:*``) would delete notebook ``a:b``'s keys.
    """
    name = notebook_name(notebook)
    if copy not in (paths.NOTEBOOKS, EXERCISES):
        raise ValueError(f"copy must be {paths.NOTEBOOKS!r} or {EXERCISES!r}, not {copy!r}")
    if copy == EXERCISES:
        name = f"{EXERCISES}-{name}"
    if participant is None:
        return f"{PROJECT}{name}:"
    return f"{PROJECT}{participant_name(participant)}:{name}:"


def check_prefix(prefix) -> str:
    """``prefix`` if it is a project prefix (``cachelab:<something>:``), else ``ValueError``."""
    if not isinstance(prefix, str) or not prefix.startswith(PROJECT) or len(prefix) <= len(PROJECT):
        raise ValueError(f"a project prefix like 'cachelab:01_x:', not {prefix!r}")
    return prefix
