"""The flight service with Django's cache framework: the low-level API, and a per-view cache.

Open this file next to notebook 09, with :mod:`cachelab.django_settings`. gunicorn serves
``cachelab.django_app:application``. The endpoints answer like :mod:`cachelab.webapp`'s:

* ``GET /delay/<origin>/<dest>/<month>``: the **low-level API**, cache-aside by hand: ``cache.get(key)``,
  and on a miss the query then ``cache.set(key, answer, timeout)``; a write deletes the key;
* ``GET /page/delay/<origin>/<dest>/<month>``: the **per-view cache**, ``@cache_page(timeout)``: Django's
  ``CacheMiddleware`` stores the whole response (status, headers, body) under a key built from the URL
  (``django.utils.cache.get_cache_key``; ``cache_page`` without ``key_prefix`` gives the middleware an empty
  one, whatever ``CACHE_MIDDLEWARE_KEY_PREFIX`` says, hence ``cache_page..GET`` in the key), and sets
  ``Cache-Control: max-age=<timeout>`` and ``Expires`` on it (``patch_response_headers``), so every cache
  downstream keeps it that long too. A write cannot name that key without the request that built it: the
  page stays until its timeout;
* ``POST /flights``, ``GET /health``, ``GET /stats``.

Neither has stampede protection: each worker that misses runs the query. Values are stored as JSON by
:class:`JSONSerializer` (``CACHES["default"]["OPTIONS"]["serializer"]``), never pickled.
"""

from __future__ import annotations

import json
import os

from django.http import HttpResponse, JsonResponse
from django.urls import path
from django.views.decorators.cache import cache_page

from . import framework_service as fs

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cachelab.django_settings")

_RESPONSE = "__django_http_response__"


class JSONSerializer:
    """Django's cache serializer interface (``dumps``, ``loads``), in JSON.

    Integers are stored as they are, as Django's ``RedisSerializer`` does, so that ``incr``/``decr`` stay
    atomic in Redis. An ``HttpResponse`` (what the per-view cache stores) becomes a JSON object with its
    status, headers and body (its bytes as Latin-1 text, which maps every byte to one character and back);
    its cookies are not kept (this service sets none)."""

    def dumps(self, obj):
        if type(obj) is int:
            return obj
        if isinstance(obj, HttpResponse):
            obj = {_RESPONSE: {"status": obj.status_code, "headers": list(obj.headers.items()),
                               "content": obj.content.decode("latin-1")}}
        return json.dumps(obj, separators=(",", ":")).encode()

    def loads(self, data):
        try:
            return int(data)
        except ValueError:
            pass
        value = json.loads(data)
        if isinstance(value, dict) and _RESPONSE in value:
            saved = value[_RESPONSE]
            response = HttpResponse(saved["content"].encode("latin-1"), status=saved["status"])
            for name, header in saved["headers"]:
                response.headers[name] = header
            return response
        return value


service = fs.service()


def _cache():
    from django.core.cache import cache

    return cache


def _bad(error):
    return JsonResponse({"error": str(error)}, status=400)


def cache_key(route) -> str:
    """The low-level API's key for a route (Django adds ``KEY_PREFIX`` and the version: ``prefix:1:key``)."""
    return f"delay:{route.key()}"


def delay(request, origin, dest, month):
    try:
        route = service.route(origin, dest, month)
    except fs.BadRequest as error:
        return _bad(error)
    cache = _cache()
    answer = cache.get(cache_key(route))
    hit = answer is not None
    if not hit:
        answer = fs.ask(service, route)
        cache.set(cache_key(route), answer)  # the default timeout: CACHES["default"]["TIMEOUT"]
    fs.count(service, hit)
    return JsonResponse(answer)


def _page(request, origin, dest, month):
    try:
        route = service.route(origin, dest, month)
    except fs.BadRequest as error:
        return _bad(error)
    fs.count(service, hit=False)  # a cached page never reaches the view: only misses are counted here
    return JsonResponse(fs.ask(service, route))


def page_timeout() -> int:
    from django.conf import settings

    return settings.CACHE_TTL


def flights(request):
    if request.method != "POST":
        return JsonResponse({"error": "POST a flight"}, status=405)
    try:
        body = json.loads(request.body or b"null")
    except ValueError:
        body = None
    try:
        route = fs.record(service, body)
    except fs.BadRequest as error:
        return _bad(error)
    _cache().delete(cache_key(route))
    return JsonResponse({"recorded": route.key()}, status=201)


def health(request):
    return JsonResponse({"ok": True, "pid": service.worker().pid, "mode": "django"})


def stats(request):
    return JsonResponse({"pid": service.worker().pid, **service.worker().counters.as_dict()})


from django.core.wsgi import get_wsgi_application  # noqa: E402 - after DJANGO_SETTINGS_MODULE is set

application = get_wsgi_application()
application.extensions = {"cachelab": service}  # gunicorn's hooks open each worker's connections through it
delay_page = cache_page(page_timeout())(_page)  # decorated once the settings are configured: cache_page reads them
urlpatterns = [
    path("delay/<str:origin>/<str:dest>/<str:month>", delay),
    path("page/delay/<str:origin>/<str:dest>/<str:month>", delay_page),
    path("flights", flights),
    path("health", health),
    path("stats", stats),
]
