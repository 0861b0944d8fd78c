"""Settings shared by the server modules: timeouts, the compose ports, the flags of every server started.

Code reads these as ``config.NAME`` at call time, so a test (or a reader) can shorten a timeout for one
experiment with ``monkeypatch.setattr(cachelab.servers.config, "SOCKET_TIMEOUT", 0.3)``.
"""

from __future__ import annotations

import os

CONNECT_TIMEOUT = float(os.environ.get("CACHELAB_CONNECT_TIMEOUT", "1.0"))
SOCKET_TIMEOUT = float(os.environ.get("CACHELAB_SOCKET_TIMEOUT", "2.0"))
COMPOSE_REDIS_PORT = 16379
COMPOSE_MEMCACHED_PORTS = (21211, 21212, 21213)
DEFAULT_REDIS_PASSWORD = "cachelab-local-only"  # the compose default; override with CACHELAB_REDIS_PASSWORD
MEMCACHED_NODES = 3
REDIS_FLAGS = ("--maxmemory", "64mb", "--maxmemory-policy", "allkeys-lru", "--save", "", "--appendonly", "no")
MEMCACHED_FLAGS = ("-U", "0", "-m", "64")
STATE_FILE_NAME = "servers.json"

HOW_TO_GET_SERVERS = """\
Get Redis and memcached in one of three ways, then rerun:
  1. Docker:   docker compose up -d          (from the repository root; see docker-compose.yml)
  2. Binaries: make setup installs them where it can without a password (root, sudo -n, brew), or
               sudo apt install redis-server memcached   or   brew install redis memcached
               (cachelab then starts private instances itself; `make servers` keeps them running)
  3. Your own: export REDIS_URL=redis://:PASSWORD@HOST:6379/0 MEMCACHED_SERVERS=HOST:11211,HOST:11212
               (cachelab writes only keys starting with 'cachelab:' there and deletes only those)"""


NO_SERVER_TRACK = """\
No servers to be had today? Notebooks 01-04 need none. For 00 and 05-10, follow the no-server track
(instructors/README.md, "The no-server track"): read their committed outputs in notebooks/ (or `make site`),
and run the exercises it names with cachelab.start(..., servers=False)."""


class ServersUnavailable(RuntimeError):
    """No usable server: the message says what was tried and how to get one.

    In a notebook it shows as its message and the way to go on without servers, not as a traceback
    (IPython asks the exception for the lines to show): the cell that asked for servers still fails.
    """

    def _render_traceback_(self) -> list[str]:
        return ["\u274c cachelab: no Redis or memcached could be found or started.", *str(self).splitlines(), "",
                *NO_SERVER_TRACK.splitlines()]


def redis_password() -> str:
    """The password of the compose Redis (``$CACHELAB_REDIS_PASSWORD``, default the compose file's)."""
    return os.environ.get("CACHELAB_REDIS_PASSWORD", DEFAULT_REDIS_PASSWORD)
