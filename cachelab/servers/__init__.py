"""Real Redis and memcached servers for the notebooks: found, or started, never faked.

:func:`connect` resolves each service (Redis, and three memcached nodes) in this order:

1. ``REDIS_URL`` / ``MEMCACHED_SERVERS`` (comma-separated ``host:port``): exactly those, or a clear error.
2. Servers started by ``make servers`` (``python -m cachelab servers up``), recorded in
   ``.cachelab/servers.json``.
3. The ``docker compose up -d`` services of this repository, on their loopback ports
   (Redis 127.0.0.1:16379 with the compose password; memcached 127.0.0.1:21211-21213). The ports are
   not the standard ones, so that a Redis or memcached of your own on 6379/11211 is never mistaken for
   the project's.
4. ``redis-server`` / ``memcached`` on ``PATH``: private instances on free loopback ports, with the
   same flags as the compose file, stopped when this process exits.
5. Otherwise :class:`ServersUnavailable`, within seconds, naming the three ways to get servers.

Safety rules, each covered by a test:

* Every client has connect and socket timeouts: nothing hangs on a dead or missing server.
* Keys carry a prefix (``cachelab:<participant>:<notebook>:``, :mod:`cachelab.keys`); :meth:`Servers.cleanup` deletes
  that prefix only (``SCAN`` + ``UNLINK`` on Redis; on memcached, ``lru_crawler metadump`` + ``delete`` on the
  project's own servers, and on a server of the user's own only the keys the project wrote down as it stored
  them, deleted by name, with no walk of the node: :mod:`.written`).
* The project never calls ``FLUSHALL``/``FLUSHDB``; memcached ``flush_all`` exists only on
  :class:`ManagedServer`, a server this process started itself.

The modules: :mod:`.config` (timeouts, ports, flags), :mod:`.addresses` (``REDIS_URL``,
``MEMCACHED_SERVERS``), :mod:`.probes` (wire-level checks), :mod:`.managed` (servers started here),
:mod:`.clients`, :mod:`.cleanup`, :mod:`.discovery` (:func:`connect`, ``make servers``) and
:mod:`.faults` (a node that dies or freezes, for the demos).
"""

from __future__ import annotations

from ..keys import prefix_for
from . import config
from .addresses import parse_memcached_servers, parse_redis_url, redacted
from .cleanup import cleanup_memcached, cleanup_redis, cleanup_written, memcached_keys
from .clients import JsonSerde, memcached_client_for, memcached_node_client, redis_client_for
from .config import (
    COMPOSE_MEMCACHED_PORTS,
    COMPOSE_REDIS_PORT,
    CONNECT_TIMEOUT,
    HOW_TO_GET_SERVERS,
    MEMCACHED_NODES,
    SOCKET_TIMEOUT,
    ServersUnavailable,
    redis_password,
)
from .discovery import (
    Endpoint,
    MemcachedEndpoint,
    RedisEndpoint,
    Servers,
    connect,
    forget,
    servers_down,
    servers_up,
    state_file,
)
from .managed import ManagedServer, pid_alive, start_memcached, start_redis
from .probes import free_port, memcached_version, port_in_use, redis_ping

__all__ = [
    "COMPOSE_MEMCACHED_PORTS", "COMPOSE_REDIS_PORT", "CONNECT_TIMEOUT", "HOW_TO_GET_SERVERS", "MEMCACHED_NODES",
    "SOCKET_TIMEOUT", "Endpoint", "JsonSerde", "ManagedServer", "MemcachedEndpoint", "RedisEndpoint", "Servers",
    "ServersUnavailable", "cleanup_memcached", "cleanup_redis", "cleanup_written", "config", "connect", "forget",
    "free_port",
    "memcached_client_for", "memcached_keys", "memcached_node_client", "memcached_version", "parse_memcached_servers",
    "parse_redis_url", "pid_alive", "port_in_use", "prefix_for", "redacted", "redis_client_for", "redis_password",
    "redis_ping", "servers_down", "servers_up", "start_memcached", "start_redis", "state_file",
]
