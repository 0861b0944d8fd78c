"""The flight service with Flask-Caching: ``@cache.memoize`` over its Redis backend, storing JSON.

Open this file next to notebook 09: it is the code a Flask developer writes. The route's answer is a
memoized function of ``(origin, dest, month)``; a write deletes it with ``cache.delete_memoized``.

* **The backend**: ``CACHE_TYPE = "RedisCache"`` (``flask_caching.backends.rediscache.RedisCache``, built on
  ``cachelib.RedisCache``), at ``CACHELAB_WEB_REDIS``, keys under ``CACHELAB_WEB_PREFIX``.
* **JSON, not pickle**: cachelib's ``RedisSerializer`` pickles every value that is not an ``int``
  (``cachelib/serializers.py``), and unpickling what a shared server holds runs whatever code was put
  there. Flask-Caching's ``CACHE_SERIALIZER`` setting takes a ``cachelib.serializers.BaseSerializer``
  subclass (``Cache.init_app`` assigns it to the backend's ``serializer``): :class:`RedisJSONSerializer`.
  cachelib's own ``JSONSerializer`` would do too, but it logs a warning on every miss (Redis returns
  ``None`` for a missing key, and ``json.loads(None)`` raises), so this one answers ``None`` with ``None``.
* **The key** ``memoize`` builds: ``CACHE_KEY_PREFIX`` + the first 16 characters of the base64 of a hash
  (sha256 by default, ``CACHE_HASH_METHOD``) of the function's qualified name and its arguments, + the
  function's version, a random 6-character token kept in the cache under ``<name>_memver``
  (``_memoize_make_cache_key`` and ``_memoize_version`` in ``flask_caching/__init__.py``). Reading it is a
  second round trip (an MGET) before the GET of every call.
* **No stampede protection**: a miss calls the function and sets the result; every worker that misses the
  same key at the same time runs the query.
"""

from __future__ import annotations

import json
import typing as _t

from cachelib.serializers import BaseSerializer
from flask import Flask, jsonify, request
from flask_caching import Cache

from . import framework_service as fs
from .servers import config as server_config


class RedisJSONSerializer(BaseSerializer):
    """JSON for Flask-Caching's Redis backend: ``dumps`` to UTF-8 bytes, ``loads`` of ``None`` (a missing
    key) is ``None``. An integer is stored as its digits, as cachelib stores it, so that ``inc``/``dec``
    (Redis INCRBY/DECRBY) still work."""

    def dumps(self, value: _t.Any, *args: _t.Any, **kwargs: _t.Any) -> bytes:
        return json.dumps(value, separators=(",", ":")).encode()

    def loads(self, bvalue: bytes | None, *args: _t.Any, **kwargs: _t.Any) -> _t.Any:
        return None if bvalue is None else json.loads(bvalue)

    def dump(self, value: _t.Any, f: _t.IO[bytes], *args: _t.Any, **kwargs: _t.Any) -> None:
        f.write(self.dumps(value))

    def load(self, f: _t.IO[bytes], *args: _t.Any, **kwargs: _t.Any) -> _t.Any:
        return json.loads(f.read())


def cache_config(redis_url: str, prefix: str, ttl: int) -> dict:
    """Flask-Caching's settings for the shared Redis, JSON, with the project's timeouts."""
    return {"CACHE_TYPE": "RedisCache", "CACHE_REDIS_URL": redis_url, "CACHE_KEY_PREFIX": prefix,
            "CACHE_DEFAULT_TIMEOUT": ttl, "CACHE_SERIALIZER": RedisJSONSerializer,
            "CACHE_OPTIONS": {"socket_timeout": server_config.SOCKET_TIMEOUT,
                              "socket_connect_timeout": server_config.CONNECT_TIMEOUT}}


def create_app() -> Flask:
    """The app, configured from ``CACHELAB_WEB_*`` (gunicorn: ``'cachelab.flask_caching_app:create_app()'``)."""
    service = fs.service()
    app = Flask(__name__, static_folder=None)
    app.extensions["cachelab"] = service
    ttl = fs.ttl_seconds(service)
    cache = Cache(app, config=cache_config(fs.redis_url(service), service.settings.prefix, ttl))

    @cache.memoize(timeout=ttl)
    def route_delay(origin: str, dest: str, month: int) -> dict:
        return fs.ask(service, fs.Route(origin, dest, month))

    app.extensions["cachelab_memoized"] = route_delay

    @app.errorhandler(fs.BadRequest)
    def bad_request(error):
        return jsonify(error=str(error)), 400

    @app.get("/delay/<origin>/<dest>/<month>")
    def delay(origin, dest, month):
        route = service.route(origin, dest, month)
        worker = service.worker()
        before = worker.counters.as_dict()["backend_queries"]
        answer = route_delay(route.origin, route.dest, route.month)
        fs.count(service, hit=worker.counters.as_dict()["backend_queries"] == before)
        return jsonify(answer)

    @app.post("/flights")
    def flights():
        route = fs.record(service, request.get_json(silent=True))
        cache.delete_memoized(route_delay, route.origin, route.dest, route.month)
        return jsonify(recorded=route.key()), 201

    @app.get("/health")
    def health():
        return jsonify(ok=True, pid=service.worker().pid, mode="flask-caching")

    @app.get("/stats")
    def stats():
        return jsonify(pid=service.worker().pid, **service.worker().counters.as_dict())

    return app
