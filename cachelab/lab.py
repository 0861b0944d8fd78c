"""The one-line set-up cell of every notebook: ``lab = cachelab.start("01_naive_recomputation")``.

It prints the environment banner, names the notebook's key prefix and results file, and (with
``servers=True``) finds or starts Redis and memcached and deletes this notebook's own keys from an
earlier run, so that every rerun starts from the same state.

"Its own keys" are those of this run's namespace only, ``cachelab:<participant>:<notebook>:``
(:mod:`cachelab.keys`): in a room where everyone shares the instructor's servers, one participant's
start-up cleanup never touches another's keys, nor those of the other copy (``exercises/`` or
``notebooks/``) of the same notebook running beside it.
"""

from __future__ import annotations

from pathlib import Path

from . import keys, paths
from . import servers as _servers
from .environment import banner, environment
from .results import Results
from .timing import Timing, quick_mode


class Lab:
    """What a notebook needs: its results, its key prefix and, on demand, the servers.

    ``participant`` defaults to :func:`cachelab.keys.participant` (``$CACHELAB_PARTICIPANT``, or the id
    kept in ``.cachelab/``); ``copy`` (``"notebooks"`` or ``"exercises"``) is told by the working directory.
    """

    def __init__(self, notebook: str, *, servers: bool = False, participant: str | None = None):
        self.notebook = keys.notebook_name(notebook)
        self.participant = keys.participant() if participant is None else keys.participant_name(participant)
        self.copy = paths.notebook_copy()
        self.prefix = keys.prefix_for(notebook, self.participant, copy=self.copy)
        self._servers: _servers.Servers | None = None
        if servers:
            self.servers.cleanup(self.prefix)
        self.results = Results(notebook, self._servers.versions() if self._servers else None)

    @property
    def servers(self) -> _servers.Servers:
        """The Redis and memcached servers, found or started on first use."""
        if self._servers is None:
            self._servers = _servers.connect()
        return self._servers

    @property
    def quick(self) -> bool:
        return quick_mode()

    def record(self, timing: Timing, **meta) -> Timing:
        """Keep a timing for the results file (and return it, to print or plot).

        A step of the ladder that ``07`` compares is recorded with ``ladder="<step>"`` and
        ``kind="hit"`` or ``"miss"``: the cost of one answer of the flight service at that step.
        """
        return self.results.add(timing, **meta)

    def save(self) -> Path:
        """Write ``results/<notebook>.json`` and print where."""
        if self._servers is not None:
            self.results.server_versions = self._servers.versions()
        path = self.results.save()
        print(f"Saved {len(self.results.timings)} timings and {len(self.results.values)} values to {path}")
        return path

    def cleanup(self) -> dict[str, int]:
        """Delete this notebook's keys (its prefix only) from Redis and memcached."""
        return self.servers.cleanup(self.prefix)

    def report(self) -> str:
        lines = [f"Notebook {self.notebook}", banner(environment(self._servers.versions() if self._servers
                                                                   else None))]
        if self._servers is not None:
            lines.append(self._servers.describe())
            lines.append(f"Key prefix: {self.prefix} (participant {self.participant}, copy in {self.copy}/)")
        return "\n".join(lines)


def start(notebook: str, *, servers: bool = False, quiet: bool = False, participant: str | None = None) -> Lab:
    """Set a notebook up and print where its numbers come from."""
    lab = Lab(notebook, servers=servers, participant=participant)
    if not quiet:
        print(lab.report())
    return lab
