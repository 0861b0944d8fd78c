"""HTTP caching for the flight service: ``Cache-Control`` and an ``ETag`` on every answer, 304 for a conditional GET.

Open this file next to notebook 09. :func:`create_app` is :func:`cachelab.webapp.create_app` (the same
service, every cache mode) with two hooks added to its ``GET /delay/...`` answers:

* ``Cache-Control: public, max-age=N[, stale-while-revalidate=M]`` (RFC 9111, RFC 5861): any cache on the
  way (the client's, a reverse proxy such as nginx) may reuse the answer for ``N`` seconds without asking,
  and for ``M`` seconds more while it refreshes it in the background;
* an ``ETag``, and a ``304 Not Modified`` with no body when the request's ``If-None-Match`` names it
  (RFC 9110, 13.1.2: a weak comparison; ``*`` matches any current answer). Two ways to know the tag:

  - ``etag="body"``: a hash of the answer's bytes. The answer must exist first, so a 304 saves the bytes on
    the wire and nothing else: the request still goes through the cache, or the database on a miss;
  - ``etag="version"``: a version token of the route kept in Redis (``<prefix>version:<route>``), replaced by
    every write to that route. The check costs one Redis GET, and a 304 costs no query and no answer at
    all. The token is read *before* the answer is built, so a write in between pairs the old token with the
    new answer (the next request revalidates), never the new token with the old answer.

Configured like the service, by arguments or the environment: ``CACHELAB_HTTP_MAX_AGE`` (seconds, 0: no
``Cache-Control``), ``CACHELAB_HTTP_STALE`` (seconds of ``stale-while-revalidate``), ``CACHELAB_HTTP_ETAG``
(``body`` or ``version``; the version needs ``CACHELAB_WEB_REDIS``). Run it by hand like the service::

    CACHELAB_HTTP_MAX_AGE=2 gunicorn --workers 2 --bind 127.0.0.1:8000 'cachelab.http_caching:create_app()'
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
from dataclasses import dataclass

from flask import Flask, Response, g, request

from . import webapp
from .data import Route

ETAG_KINDS = ("body", "version")


def etag_of(body: bytes) -> str:
    """A strong entity tag for ``body``: a quoted hash of its bytes (same bytes, same tag)."""
    return '"' + hashlib.sha256(body).hexdigest()[:32] + '"'


ENTITY_TAG = re.compile(r'(?:W/)?"[^"]*"')
"""An entity-tag of RFC 9110 (8.8.3): an optional ``W/``, then a quoted string, which may hold a comma."""


def matches(if_none_match: str | None, etag: str) -> bool:
    """Whether an ``If-None-Match`` header names ``etag``: RFC 9110's weak comparison (``W/"x"`` matches
    ``"x"``), over a list of entity-tags (read whole, so a comma inside a tag does not split it), where ``*``
    matches any current answer."""
    if not if_none_match:
        return False
    if if_none_match.strip() == "*":
        return True
    ours = etag.removeprefix("W/")
    return any(tag.removeprefix("W/") == ours for tag in ENTITY_TAG.findall(if_none_match))


def cache_control(max_age: int, stale_while_revalidate: int = 0) -> str:
    """The ``Cache-Control`` value: ``public, max-age=N`` and, when positive, ``stale-while-revalidate=M``."""
    value = f"public, max-age={int(max_age)}"
    return value + (f", stale-while-revalidate={int(stale_while_revalidate)}" if stale_while_revalidate > 0 else "")


@dataclass(frozen=True)
class HttpSettings:
    """``max_age`` and ``stale`` in whole seconds (HTTP's unit); ``etag``: ``"body"`` or ``"version"``."""

    max_age: int = 0
    stale: int = 0
    etag: str = "body"

    def __post_init__(self):
        if self.etag not in ETAG_KINDS:
            raise ValueError(f"etag must be one of {', '.join(ETAG_KINDS)}, not {self.etag!r}")
        if self.max_age < 0 or self.stale < 0:
            raise ValueError("max_age and stale are seconds, 0 or more")

    @classmethod
    def from_environment(cls, env=os.environ, **overrides) -> HttpSettings:
        values = dict(max_age=int(env.get("CACHELAB_HTTP_MAX_AGE", 0)), stale=int(env.get("CACHELAB_HTTP_STALE", 0)),
                      etag=env.get("CACHELAB_HTTP_ETAG", "body"))
        values.update(overrides)
        return cls(**values)

    def environment(self) -> dict[str, str]:
        """The variables that configure a server started in another process."""
        return {"CACHELAB_HTTP_MAX_AGE": str(self.max_age), "CACHELAB_HTTP_STALE": str(self.stale),
                "CACHELAB_HTTP_ETAG": self.etag}


class Versions:
    """Each route's version token in Redis: read by a conditional GET, replaced by a write. One client per
    process, opened on first use (after gunicorn's fork)."""

    def __init__(self, redis_url: str, prefix: str):
        self.redis_url, self.prefix = redis_url, prefix
        self._client, self._pid = None, None

    @property
    def client(self):
        if self._client is None or self._pid != os.getpid():
            from .servers import redis_client_for

            self._client, self._pid = redis_client_for(self.redis_url), os.getpid()
        return self._client

    def key(self, route: Route) -> str:
        return f"{self.prefix}version:{route.key()}"

    def etag(self, route: Route) -> str:
        """The route's tag, ``"<route>-<token>"``; a route never written gets a token on first use (SET NX)."""
        token = self.client.get(self.key(route))
        if token is None:
            self.client.set(self.key(route), secrets.token_hex(6), nx=True)
            token = self.client.get(self.key(route))
        token = token.decode() if isinstance(token, bytes) else token
        return f'"{route.key()}-{token}"'

    def bump(self, route: Route) -> None:
        """A write: a new random token (never a counter, which a lost key would restart at a value a client
        may still hold)."""
        self.client.set(self.key(route), secrets.token_hex(6))


def create_app(mode: str | None = None, *, http: HttpSettings | None = None, **settings) -> Flask:
    """The flight service of :func:`cachelab.webapp.create_app` with HTTP caching on ``GET /delay/...``."""
    app = webapp.create_app(mode, **settings)
    http = http or HttpSettings.from_environment()
    service = app.extensions["cachelab"]
    versions = None
    if http.etag == "version":
        if not service.settings.redis_url:
            raise ValueError("etag='version' keeps its tokens in Redis: give a Redis URL (CACHELAB_WEB_REDIS)")
        versions = Versions(service.settings.redis_url, service.settings.prefix)
    app.extensions["cachelab_http"] = {"settings": http, "versions": versions}
    headers = {"Cache-Control": cache_control(http.max_age, http.stale)} if http.max_age > 0 else {}

    def not_modified(etag: str) -> Response:
        return Response(status=304, headers={"ETag": etag, **headers})

    @app.before_request
    def answer_from_the_version():  # etag="version": a 304 before any cache or query is asked
        if versions is None or request.method != "GET" or request.endpoint != "delay":
            return None
        g.etag = versions.etag(service.route(**request.view_args))  # a bad route is a 400, as without the hook
        if matches(request.headers.get("If-None-Match"), g.etag):
            return not_modified(g.etag)
        return None

    @app.after_request
    def add_headers(response: Response) -> Response:
        if request.endpoint == "delay" and request.method == "GET" and response.status_code == 200:
            etag = g.get("etag") or etag_of(response.get_data())
            if matches(request.headers.get("If-None-Match"), etag):
                return not_modified(etag)  # etag="body": the answer was built, only its bytes are saved
            response.headers["ETag"] = etag
            response.headers.update(headers)
        elif request.endpoint == "flights" and response.status_code == 201 and versions is not None:
            body = request.get_json(silent=True) or {}
            versions.bump(Route(body["origin"], body["dest"], int(body["month"])))
        return response

    return app
