"""server_rate.get_rate: GETs counted on the server over a timed window, the generator gone afterwards."""

import shutil

import pytest
from pymemcache.client.base import Client

from cachelab import server_rate
from cachelab.servers import start_memcached, start_redis

pytestmark = pytest.mark.skipif(shutil.which("memcached") is None or shutil.which("redis-server") is None,
                                reason="needs memcached and redis-server")


@pytest.mark.servers
def test_memcached_and_redis_are_counted_the_same_way():
    with start_memcached(memory_mb=8) as mc_server, start_redis() as redis_server:
        mc = Client(mc_server.address, connect_timeout=2, timeout=2)
        mc.set("rate-key", b"x" * 160)
        import redis

        r = redis.Redis.from_url(redis_server.url, socket_timeout=2, socket_connect_timeout=2)
        r.set("rate-key", b"x" * 160)
        kwargs = r.connection_pool.connection_kwargs
        for kind, address, client, password in (("memcached", mc_server.address, mc, None),
                                                ("redis", (kwargs["host"], kwargs["port"]), r, kwargs.get("password"))):
            got = server_rate.get_rate(kind, address, client, "rate-key", seconds=0.3, clients=4, processes=1,
                                       password=password)
            assert got["requests"] > 0 and got["per_s"] == pytest.approx(got["requests"] / got["window_s"])
        mc.close()
        r.close()


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        server_rate.get_rate("varnish", ("127.0.0.1", 1), None, "k")
