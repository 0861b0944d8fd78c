"""What the framework versions of the flight service share with notebook 07's: its database, routes and counters.

Each framework app of notebook 09 (:mod:`cachelab.flask_caching_app`, :mod:`cachelab.django_app`,
:mod:`cachelab.async_app`) answers the same requests as :mod:`cachelab.webapp`, validated the same way, from
the same SQLite query, and keeps the same per-worker counters (requests, hits, misses, backend queries,
writes) in the same counters folder, so that the load protocol of 07 reads them all alike. Only the cache
differs: each app uses its framework's own.

:func:`service` builds the part that does not depend on the framework, from the ``CACHELAB_WEB_*``
variables: a :class:`cachelab.webapp.FlightApp` in mode ``none`` (its database connection and counters are
opened per worker, after the fork, by :meth:`~cachelab.webapp.FlightApp.worker`).
"""

from __future__ import annotations

import os

from .data import Route
from .webapp import BadRequest, FlightApp, Settings

__all__ = ["BadRequest", "Route", "ask", "count", "redis_url", "service", "ttl_seconds"]


def service(env=os.environ) -> FlightApp:
    """The service without a cache of its own (the framework brings the cache), configured from ``env``."""
    return FlightApp(Settings.from_environment(env, mode="none"))


def redis_url(flight_app: FlightApp) -> str:
    url = flight_app.settings.redis_url
    if not url:
        raise ValueError("a framework cache needs Redis: set CACHELAB_WEB_REDIS")
    return url


def ttl_seconds(flight_app: FlightApp) -> int:
    """The shared cache's TTL in whole seconds (what the frameworks' timeouts take), at least 1."""
    return max(1, round(flight_app.settings.ttl))


def ask(flight_app: FlightApp, route: Route) -> dict:
    """A miss: the full-table query of notebook 01, counted as one backend query of this worker."""
    worker = flight_app.worker()
    worker.counters.add("backend_queries")
    return worker.service.ask(route)


def count(flight_app: FlightApp, hit: bool) -> None:
    """Count one answered request of the delay endpoint, a hit or a miss."""
    counters = flight_app.worker().counters
    counters.add("requests")
    counters.add("hits" if hit else "misses")


def record(flight_app: FlightApp, body) -> Route:
    """``POST /flights``: validate the body as the service does, record the flight, count the write."""
    route, arr_delay = flight_app.flight(body)
    worker = flight_app.worker()
    if not worker.service.writable:
        raise BadRequest("this server is read-only: start it with a writable copy of the database")
    worker.service.record_flight(route.origin, route.dest, route.month, arr_delay)
    worker.counters.add("writes")
    return route
