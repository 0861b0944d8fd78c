"""Authentication against a real password-protected Redis given through ``REDIS_URL``.

A right password works end to end (and is never printed), a wrong or missing one fails at once with a
message that says what to check, and a Redis user allowed only the ``cachelab:*`` keys (no FLUSH, no KEYS)
can run a notebook's set-up, writes and cleanup: proof that the project touches nothing else.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import urllib.parse

import pytest
import redis

from cachelab import bench
from cachelab.servers import start_redis

pytestmark = pytest.mark.servers  # every test here runs against real servers

PASSWORD = "p@ss:w/rd?#%&= 42"  # every character that needs quoting in a URL
LAB = """
import cachelab
lab = cachelab.start("99_test_auth", servers=True)
r = lab.servers.redis_client()
r.set(lab.prefix + "k", "v")
assert r.get(lab.prefix + "k") == "v"
print("cleaned", lab.cleanup())
"""


def url_for(port: int, password: str | None = None, user: str | None = None) -> str:
    auth = ""
    if password is not None:
        auth = f"{urllib.parse.quote(user or '', safe='')}:{urllib.parse.quote(password, safe='')}@"
    return f"redis://{auth}127.0.0.1:{port}/0"


def run_lab(redis_url: str, memcached_port: int, tmp_path) -> tuple[subprocess.CompletedProcess, float]:
    env = {k: v for k, v in os.environ.items() if k not in {"REDIS_URL", "MEMCACHED_SERVERS"}}
    env.update(REDIS_URL=redis_url, MEMCACHED_SERVERS=f"127.0.0.1:{memcached_port}",
               CACHELAB_CACHE_DIR=str(tmp_path / "state"))
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", LAB], env=env, capture_output=True, text=True, timeout=60)
    return proc, time.monotonic() - t0


@pytest.fixture
def protected():
    with start_redis(password=PASSWORD) as server:
        yield server


@pytest.fixture
def admin(protected):
    client = redis.Redis.from_url(protected.url, decode_responses=True, socket_timeout=2, socket_connect_timeout=1)
    yield client
    client.close()


def test_the_url_quotes_the_password_and_redis_py_unquotes_it(protected):
    assert PASSWORD not in protected.url
    assert urllib.parse.unquote(urllib.parse.urlsplit(protected.url).password) == PASSWORD


def test_a_password_protected_redis_through_redis_url_works_and_the_password_is_never_printed(
        protected, memcached_server, tmp_path):
    proc, _ = run_lab(protected.url, memcached_server.port, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "(environment)" in proc.stdout and ":***@" in proc.stdout
    assert "cleaned {'redis': 1, 'memcached': 0}" in proc.stdout
    for secret in (PASSWORD, urllib.parse.quote(PASSWORD, safe="")):
        assert secret not in proc.stdout + proc.stderr


@pytest.mark.parametrize("password", ["wrong-password", None], ids=["wrong", "missing"])
def test_a_wrong_or_missing_password_fails_at_once_with_a_clear_error(
        protected, memcached_server, tmp_path, password):
    proc, seconds = run_lab(url_for(protected.port, password), memcached_server.port, tmp_path)
    assert proc.returncode != 0
    assert seconds < 10
    assert "ServersUnavailable" in proc.stderr
    assert "Check the server and password, or unset REDIS_URL" in proc.stderr
    assert "AuthenticationError" in proc.stderr  # the reason, named
    assert "wrong-password" not in proc.stderr


def test_a_redis_user_limited_to_the_project_keys_can_run_a_notebook(protected, admin, memcached_server, tmp_path):
    admin.set("user:precious", "keep me")
    admin.acl_setuser("lab", enabled=True, passwords=["+lab-secret"], categories=["+@all"],
                      commands=["-flushall", "-flushdb", "-keys"], keys=["cachelab:*"], channels=["cachelab:*"])
    limited = redis.Redis.from_url(url_for(protected.port, "lab-secret", "lab"), socket_timeout=2)
    with pytest.raises(redis.exceptions.NoPermissionError):
        limited.get("user:precious")  # the limit is real
    with pytest.raises(redis.exceptions.NoPermissionError):
        limited.flushall()
    limited.close()

    proc, _ = run_lab(url_for(protected.port, "lab-secret", "lab"), memcached_server.port, tmp_path)

    assert proc.returncode == 0, proc.stderr
    assert "cleaned {'redis': 1" in proc.stdout
    assert admin.get("user:precious") == "keep me"


def test_the_benchmark_floors_authenticate_too(protected, admin):
    admin.set(bench.PREFIX + "answer", "x" * 100)
    try:
        raw = bench.raw_redis_get(protected.url, bench.PREFIX + "answer")
        raw()
        assert raw.reply.endswith(b"x" * 100 + b"\r\n")
        raw.close()
        timing = bench.redis_benchmark_get(protected.url, bench.PREFIX + "answer", requests=200, runs=1)
        assert timing.n == 1 and timing.median > 0

        wrong = url_for(protected.port, "wrong-password")
        with pytest.raises(ConnectionError, match="AUTH was refused"):
            bench.raw_redis_get(wrong, bench.PREFIX + "answer")
        with pytest.raises(RuntimeError, match="redis-benchmark failed") as failure:
            bench.redis_benchmark_get(wrong, bench.PREFIX + "answer", requests=10, runs=1)
        assert "wrong-password" not in str(failure.value)
    finally:
        admin.delete(bench.PREFIX + "answer")
