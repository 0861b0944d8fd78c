"""Key names: every key the project writes starts with ``cachelab:<notebook>:``, and nothing else is deleted.

A notebook may be pointed at someone's real Redis or memcached. So every key it writes carries a prefix
(:func:`prefix_for`), every cleanup takes such a prefix and checks it first (:func:`check_prefix`), and a
cleanup never matches more than that prefix: notebook ``a``'s ``cachelab:a:*`` cannot reach ``cachelab:ab:``.
"""

from __future__ import annotations

PROJECT = "cachelab:"


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


def prefix_for(notebook: str) -> str:
    """The key prefix of one notebook: ``cachelab:<notebook>:``.

    No ``:`` in the name: notebook ``a``'s cleanup (``cachelab:a:*``) would delete notebook ``a:b``'s keys.
    """
    return f"{PROJECT}{notebook_name(notebook)}:"


def check_prefix(prefix) -> str:
    """``prefix`` if it is a project prefix (``cachelab:<something>:``), else ``ValueError``."""
    if not isinstance(prefix, str) or not prefix.startswith(PROJECT) or len(prefix) <= len(PROJECT):
        raise ValueError(f"a project prefix like 'cachelab:01_x:', not {prefix!r}")
    return prefix
