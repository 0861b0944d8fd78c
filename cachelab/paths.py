"""Where the project keeps its files: sources, data, and the generated folders.

Generated things (results, figures, executed notebooks, the SQLite database, joblib caches) live in
ignored folders. Each location can be moved with an environment variable, which is how ``make run``
sends a whole run's output into ``build/``.

The participant copies in ``exercises/`` keep their results and figures apart from those of
``notebooks/`` (in an ``exercises/`` subfolder of each), so a participant's run never overwrites the
instructor's, and a later notebook of the exercises reads the results of the participant's own runs.
Which copy runs is told by the kernel's working directory (:func:`notebook_copy`).
"""

from __future__ import annotations

import os
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent
NOTEBOOKS = "notebooks"
EXERCISES = "exercises"


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


def notebook_copy() -> str:
    """Which copy of the notebooks this process runs: ``"exercises"`` or ``"notebooks"``.

    ``"exercises"`` when the working directory is a folder named ``exercises`` (Jupyter, nbclient and the
    runner start each kernel in its notebook's folder), ``"notebooks"`` otherwise.
    """
    return EXERCISES if Path.cwd().name == EXERCISES else NOTEBOOKS


def copy_folder(path: Path) -> Path:
    """``path``, or its ``exercises/`` subfolder when the participant copies run (created if missing)."""
    if notebook_copy() != EXERCISES:
        return path
    path = path / EXERCISES
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"cachelab cannot use {path} as a folder: {exc.strerror or exc}") from None
    return path


def reference_results_dir() -> Path:
    """The results of the reference run the committed notebooks carry (``reference/results/``, committed).

    ``make refresh`` writes them; a notebook that combines earlier results falls back to these, saying so,
    when the reader's own run has not produced them.
    """
    return project_root() / "reference" / "results"


def results_dir() -> Path:
    """Where notebooks save their measurements as JSON (``$CACHELAB_RESULTS_DIR``, default ``results/``).

    The participant copies in ``exercises/`` use its ``exercises/`` subfolder.
    """
    return copy_folder(_dir_from_env("CACHELAB_RESULTS_DIR", "results"))


def figures_dir() -> Path:
    """Where plots are saved as PNG (``$CACHELAB_FIGURES_DIR``, default ``figures/``).

    The participant copies in ``exercises/`` use its ``exercises/`` subfolder.
    """
    return copy_folder(_dir_from_env("CACHELAB_FIGURES_DIR", "figures"))


def cache_dir() -> Path:
    """Scratch space for generated state: the SQLite database, joblib caches, server state.

    ``$CACHELAB_CACHE_DIR``, default ``.cachelab/`` in the checkout.
    """
    return _dir_from_env("CACHELAB_CACHE_DIR", ".cachelab")
