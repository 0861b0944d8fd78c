"""Shared fixtures: real servers (found or started by cachelab), isolated output folders."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("CACHELAB_QUICK", "1")


@pytest.fixture(autouse=True)
def _isolated_outputs(tmp_path, monkeypatch):
    """Results and figures written by a test go to its own temporary folder."""
    monkeypatch.setenv("CACHELAB_RESULTS_DIR", str(tmp_path / "results"))
    monkeypatch.setenv("CACHELAB_FIGURES_DIR", str(tmp_path / "figures"))


@pytest.fixture(scope="session")
def servers():
    """The servers the notebooks would use: found (make servers, compose, env) or started privately."""
    from cachelab import servers as srv

    return srv.connect()


@pytest.fixture
def redis_server():
    """A private Redis started for one test and stopped after it."""
    from cachelab.servers import start_redis

    with start_redis() as server:
        yield server


@pytest.fixture
def redis_client(redis_server):
    """A client of the private Redis, with string replies and short timeouts."""
    from redis import Redis

    client = Redis.from_url(redis_server.url, decode_responses=True, socket_timeout=2, socket_connect_timeout=1)
    yield client
    client.close()


@pytest.fixture
def memcached_server():
    """A private memcached started for one test and stopped after it."""
    from cachelab.servers import start_memcached

    with start_memcached() as server:
        yield server
