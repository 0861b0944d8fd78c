"""Saving measurements as data, so that later notebooks (``09`` above all) compare every step of the ladder.

Each notebook keeps a :class:`Results` named after itself and saves it to
``results/NN_slug.json`` (``$CACHELAB_RESULTS_DIR``): the timings with all their samples, any other
numbers it computed, and the environment banner of the run.
"""

from __future__ import annotations

import json
from pathlib import Path

from . import arguments, paths
from .environment import environment
from .keys import notebook_name
from .timing import Timing


class ResultsMissing(FileNotFoundError):
    """Raised when a notebook's saved results are not there yet: the message names the notebook to run."""


class Results:
    """The named results of one notebook."""

    def __init__(self, notebook: str, server_versions: dict | None = None):
        self.notebook = notebook_name(notebook)
        self.timings: dict[str, Timing] = {}
        self.values: dict[str, object] = {}
        self.server_versions = server_versions or {}

    def add(self, timing: Timing, *, key: str | None = None, **meta) -> Timing:
        """Keep a timing under ``key`` (its name by default); ``meta`` (e.g. ``step=``, ``kind=``) is saved."""
        if not isinstance(timing, Timing):
            raise TypeError(f"expected a Timing, got {type(timing).__name__}")
        if key is not None:
            arguments.text("key", key)
        if meta:
            timing = Timing(timing.name, timing.samples_ns, timing.loops, {**timing.meta, **meta})
        self.timings[key or timing.name] = timing
        return timing

    def put(self, key: str, value) -> None:
        """Keep any other JSON-serialisable value (hit ratios, counts, curves)."""
        arguments.text("key", key)
        json.dumps(value)  # fail here, not at save time
        self.values[key] = value

    @property
    def path(self) -> Path:
        return paths.results_dir() / f"{self.notebook}.json"

    def save(self) -> Path:
        payload = {
            "notebook": self.notebook,
            "environment": environment(self.server_versions),
            "timings": {k: t.to_dict() for k, t in self.timings.items()},
            "values": self.values,
        }
        path = self.path
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, indent=1, ensure_ascii=False), encoding="utf-8")
        tmp.replace(path)
        return path


class SavedResults:
    """Results as loaded from disk; ``reference`` is true for those of the committed reference run."""

    def __init__(self, payload: dict, *, reference: bool = False):
        missing = {"notebook", "environment", "timings", "values"} - set(arguments.instance("payload", payload, dict))
        if missing:
            raise ValueError(f"not a results file: it has no {', '.join(sorted(missing))}")
        self.notebook: str = payload["notebook"]
        self.environment: dict = payload["environment"]
        self.timings = {k: Timing.from_dict(v) for k, v in payload["timings"].items()}
        self.values: dict = payload["values"]
        self.reference = reference

    def __getitem__(self, key: str) -> Timing:
        try:
            return self.timings[key]
        except KeyError:
            raise KeyError(f"{self.notebook} saved no timing {key!r}; it has {sorted(self.timings)}") from None


def load(notebook: str) -> SavedResults:
    """The results a notebook saved, e.g. ``load('01_naive_recomputation')``.

    Raises :class:`ResultsMissing`, naming the notebook to run, when they are not there.
    """
    path = paths.results_dir() / f"{notebook_name(notebook)}.json"
    if not path.exists():
        raise ResultsMissing(
            f"No results from {notebook} in {path.parent}. Run notebooks/{notebook}.ipynb first "
            f"(or `make run`, which runs the whole series in order)."
        )
    return SavedResults(json.loads(path.read_text(encoding="utf-8")))


def load_reference(notebook: str) -> SavedResults:
    """The results ``notebook`` saved in the reference run of the committed notebooks (``make refresh``)."""
    path = paths.reference_results_dir() / f"{notebook_name(notebook)}.json"
    if not path.exists():
        raise ResultsMissing(f"No reference results from {notebook} in {path.parent}: run `make refresh`.")
    return SavedResults(json.loads(path.read_text(encoding="utf-8")), reference=True)


def available() -> list[str]:
    """The notebooks that have saved results, in order."""
    return sorted(p.stem for p in paths.results_dir().glob("[0-9][0-9]_*.json"))
