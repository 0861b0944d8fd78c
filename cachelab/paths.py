"""Where the project keeps its files: sources, data, and the generated folders.

Generated things (results, figures, executed notebooks, the SQLite database, joblib caches) live in
ignored folders. Each location can be moved with an environment variable, which is how ``make run``
sends a whole run's output into ``build/``.
"""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


def project_root() -> Path:
    """The checkout this package was installed from (``pip install -e .``), or ``$CACHELAB_HOME``.

    Falls back to the current directory for a non-editable install.
    """
    env = os.environ.get("CACHELAB_HOME")
    if env:
        return Path(env).resolve()
    candidate = _PACKAGE_DIR.parent
    if (candidate / "pyproject.toml").exists() and (candidate / "data").is_dir():
        return candidate
    return Path.cwd()


def _dir_from_env(var: str, default: str) -> Path:
    value = os.environ.get(var)
    path = Path(value) if value else project_root() / default
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        where = f"${var}={value}" if value else f"{path} (set ${var} to use another folder)"
        raise ValueError(f"cachelab cannot use {where} as a folder: {exc.strerror or exc}") from None
    return path


def data_dir() -> Path:
    """The committed data files (``data/``): compressed CSV sources, see ``data/README.md``."""
    return project_root() / "data"


def notebooks_dir() -> Path:
    return project_root() / "notebooks"


def results_dir() -> Path:
    """Where notebooks save their measurements as JSON (``$CACHELAB_RESULTS_DIR``, default ``results/``)."""
    return _dir_from_env("CACHELAB_RESULTS_DIR", "results")


def figures_dir() -> Path:
    """Where plots are saved as PNG (``$CACHELAB_FIGURES_DIR``, default ``figures/``)."""
    return _dir_from_env("CACHELAB_FIGURES_DIR", "figures")


def cache_dir() -> Path:
    """Scratch space for generated state: the SQLite database, joblib caches, server state.

    ``$CACHELAB_CACHE_DIR``, default ``.cachelab/`` in the checkout.
    """
    return _dir_from_env("CACHELAB_CACHE_DIR", ".cachelab")
