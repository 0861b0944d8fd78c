"""``make bench``: every caching layer next to the physical floor it cannot beat, measured in one run.

:mod:`.run` measures (its docstring says how), :mod:`.floors` holds the floors (a raw socket request,
``redis-benchmark``), :mod:`.placement` chooses, sets and records which CPUs the client and the servers use, and
:mod:`.report` turns the rows into verdicts, a table, ``results.json`` and ``bench.png``.
"""

from .floors import RawRoundTrip, raw_memcached_get, raw_redis_get, redis_benchmark_get, resp_command
from .placement import Pinning, choose_pinning, default_pinning, describe_placement, process_placement
from .report import *  # noqa: F403 - the row names, Settings, Row, Report, save
from .report import __all__ as _report_names
from .run import add_parser, main, main_from_args, run

__all__ = ["Pinning", "RawRoundTrip", "add_parser", "choose_pinning", "default_pinning", "describe_placement", "main",
           "main_from_args", "process_placement", "raw_memcached_get", "raw_redis_get", "redis_benchmark_get",
           "resp_command", "run", *_report_names]
