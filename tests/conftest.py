"""Shared fixtures: real servers (found or started by cachelab), isolated output folders."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("CACHELAB_QUICK", "1")
# Measured claims: one not shown is measured again (its cell executed again, three attempts in all), then fails
# the test; a reversed one fails at once (cachelab.claims). A reader's run never raises them.
os.environ.setdefault("CACHELAB_CLAIMS", "strict")


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


SERVER_FIXTURES = {"servers", "redis_server", "redis_client", "memcached_server", "users_servers"}
KINDS = ("servers", "notebook", "browser")


def pytest_collection_modifyitems(config, items):
    """Every test gets one kind: ``servers`` (it uses real servers), ``notebook``, ``browser``, or ``unit``.

    A test that takes a server fixture is a ``servers`` test; one marked with no kind is a ``unit`` test,
    and :func:`_unit_tests_start_no_server` holds it to that.
    """
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())) and not item.get_closest_marker("servers"):
            item.add_marker(pytest.mark.servers)
        if not any(item.get_closest_marker(kind) for kind in KINDS):
            item.add_marker(pytest.mark.unit)


@pytest.fixture(autouse=True)
def _unit_tests_start_no_server(request, monkeypatch):
    """A ``unit`` test that starts a server fails, naming the marker it needs (``make test-fast`` has none)."""
    if request.node.get_closest_marker("unit") is None:
        return
    from cachelab.servers import managed

    def refuse(self, *args, **kwargs):
        raise AssertionError(f"a unit test started {self.kind}: mark the test @pytest.mark.servers")

    monkeypatch.setattr(managed.ManagedServer, "start", refuse)
