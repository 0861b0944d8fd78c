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

from . import claims as _claims
from . import keys, paths
from . import servers as _servers
from .environment import banner, environment
from .results import Results
from .timing import Timing, format_ns, quick_mode

NEAR_ROUND_TRIP_NS = 1_000_000
"""A server whose bare round trip costs less than this (1 ms) is near: on this machine, or as good as.

On loopback a round trip from Python costs tens to a few hundred microseconds, busy machine included;
across a room's Wi-Fi, one to several milliseconds. Claims calibrated on loopback (a hit far cheaper than
the query, the hiredis parser's gain) hold only for a near server: see :meth:`Lab.near`.
"""


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
        self.claims = _claims.ClaimLog(self.notebook)  # this run's verdicts: a rerun of the notebook starts anew
        self._near: dict[str, _claims.Condition] = {}

    @property
    def servers(self) -> _servers.Servers:
        """The Redis and memcached servers, found or started on first use."""
        if self._servers is None:
            self._servers = _servers.connect()
        return self._servers

    @property
    def quick(self) -> bool:
        return quick_mode()

    def claim(self, statement: str, a, b, **how) -> _claims.Verdict:
        """Judge a measured claim from its samples, print the verdict, keep it; never raise in a reader's run.

        ``a`` and ``b`` are timings or sequences of numbers; ``how`` is what :func:`cachelab.claims.judge`
        takes (``at_least=``, ``at_most=``, ``scale=``, ``paired=``, ``statistic=``, ``condition=``, names).
        Example: ``lab.claim("a hit costs more than a bare round trip", hit, ping, at_least=1)``.
        Under ``CACHELAB_CLAIMS=strict`` (the tests) a claim not shown or reversed raises after it is printed.
        """
        verdict = _claims.judge(statement, a, b, attempt=self.claims.attempt_of(statement), **how)
        self.claims.add(verdict)
        print(verdict.sentence())
        _claims.raise_if_strict(verdict)
        return verdict

    def near(self, service: str = "redis") -> _claims.Condition:
        """The condition of a claim calibrated on loopback: the server's bare round trip under 1 ms.

        Measured once per notebook (21 requests that do nothing, their median); the condition says what
        it found, so that a claim judged not applicable names the round trip that made it so.
        """
        if service not in self._near:
            rtt = self.servers.round_trip_ns(service)
            name = "Redis (PING)" if service == "redis" else "memcached (version)"
            self._near[service] = _claims.Condition(
                holds=rtt < NEAR_ROUND_TRIP_NS,
                requires=f"a server on this machine (a bare round trip under {format_ns(NEAR_ROUND_TRIP_NS)})",
                found=f"here a round trip to {name} costs {format_ns(rtt)}")
        return self._near[service]

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
