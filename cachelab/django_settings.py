"""The smallest Django settings module that serves the flight service with Django's cache framework.

``DJANGO_SETTINGS_MODULE=cachelab.django_settings``; the views are in :mod:`cachelab.django_app`. No database
(the flights are the service's own SQLite), no middleware, no sessions or cookies: only the cache.

``CACHES["default"]`` is Django's own Redis backend, ``django.core.cache.backends.redis.RedisCache`` (Django
4.0 and later), at ``CACHELAB_WEB_REDIS``, keys under ``CACHELAB_WEB_PREFIX``. Its ``RedisSerializer`` pickles
every value that is not an ``int`` (``django/core/cache/backends/redis.py``); ``OPTIONS["serializer"]`` is
handed to ``RedisCacheClient``, which imports a dotted path and instantiates a class, so the JSON
serializer of :mod:`cachelab.django_app` replaces it. The other options go to redis-py's connection pool.
"""

import os
import secrets

from .servers import config as _server_config

SECRET_KEY = secrets.token_urlsafe(32)  # nothing is signed: no sessions, no cookies, no CSRF tokens
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost", "testserver"]
ROOT_URLCONF = "cachelab.django_app"
INSTALLED_APPS: list[str] = []
MIDDLEWARE: list[str] = []
DATABASES: dict = {}
USE_TZ = True
TIME_ZONE = "UTC"
LOGGING_CONFIG = None

CACHE_TTL = max(1, round(float(os.environ.get("CACHELAB_WEB_TTL", 60))))
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": os.environ.get("CACHELAB_WEB_REDIS", "redis://127.0.0.1:6379/0"),
        "KEY_PREFIX": os.environ.get("CACHELAB_WEB_PREFIX", "cachelab:django:").rstrip(":"),  # Django adds ":"
        "TIMEOUT": CACHE_TTL,
        "OPTIONS": {
            "serializer": "cachelab.django_app.JSONSerializer",
            "socket_timeout": _server_config.SOCKET_TIMEOUT,
            "socket_connect_timeout": _server_config.CONNECT_TIMEOUT,
        },
    }
}
