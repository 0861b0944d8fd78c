"""nginx as a private reverse-proxy cache (cachelab.servers.nginx): starts, serves a cached hit, stops clean."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from cachelab.data import copy_database
from cachelab.servers import gunicorn, nginx

pytestmark = pytest.mark.servers

def _installed() -> bool:
    try:
        nginx.binary()
    except nginx.NginxError:
        return False
    return True


needs_nginx = pytest.mark.skipif(not _installed(), reason="nginx is not installed (`make setup` installs it)")


def test_a_location_refuses_an_upstream_off_loopback():
    for upstream in ("10.0.0.5:8000", "192.168.1.2:80", "example.com:80", "0.0.0.0:80"):
        with pytest.raises(ValueError, match="loopback"):
            nginx.Location("/", upstream)
    assert nginx.Location("/", "127.0.0.2:8000").address == ("127.0.0.2", 8000)
    assert nginx.Location("/", 8000).address == ("127.0.0.1", 8000)
    with pytest.raises(ValueError, match="prefix"):
        nginx.Location("lock", 8000)


def test_the_config_listens_on_loopback_and_keeps_every_file_private(tmp_path):
    config = nginx.render_config([nginx.Location("/", 8000), nginx.Location("/nolock/", 8001, lock=False, stale=False)],
                                 port=9000, workdir=tmp_path, workers=2)
    assert "listen 127.0.0.1:9000;" in config and "daemon off;" in config
    for directive in ("pid", "error_log", "client_body_temp_path", "proxy_temp_path", "fastcgi_temp_path",
                      "uwsgi_temp_path", "scgi_temp_path", "proxy_cache_path", "lock_file"):
        line = next(line for line in config.splitlines() if line.strip().startswith(directive + " "))
        assert str(tmp_path) in line, f"{directive} must point into the instance's own folder: {line}"
    assert "proxy_cache_lock on;" in config and "proxy_cache_lock off;" in config
    assert config.count("proxy_cache_use_stale updating") == 1
    with pytest.raises(ValueError, match="loopback"):
        nginx.render_config([nginx.Location("/", 8000)], port=9000, workdir=tmp_path, listen_host="0.0.0.0")


@needs_nginx
def test_start_refuses_a_listen_address_off_loopback():
    with pytest.raises(ValueError, match="loopback"):
        nginx.start_nginx([nginx.Location("/", 8000)], listen_host="0.0.0.0")


@pytest.fixture(scope="module")
def upstream(tmp_path_factory):
    db = copy_database(tmp_path_factory.mktemp("nginx") / "flights.sqlite")
    env = {"CACHELAB_HTTP_MAX_AGE": "30"}
    from cachelab.servers import apps

    with apps.start_wsgi("http", 1, settings={"mode": "none", "db_path": str(db)}, environment=env) as server:
        yield server


@needs_nginx
def test_nginx_serves_a_cached_hit_and_stops_with_nothing_left(upstream):
    with nginx.start_nginx([nginx.Location("/", upstream.port)], workers=2) as proxy:
        assert proxy.base_url.startswith("http://127.0.0.1:")
        assert proxy.worker_pids(), "nginx's workers run"
        before = upstream.totals()["backend_queries"]
        statuses = [proxy.get("/delay/JFK/LAX/7") for _ in range(3)]
        assert [h["x-cache-status"] for _, h, _ in statuses] == ["MISS", "HIT", "HIT"]
        assert all(s == 200 and json.loads(b)["flights"] > 0 for s, _, b in statuses)
        assert upstream.totals()["backend_queries"] - before == 1, "the hits never reached the app"
        assert proxy.cached_files() >= 1
        pid, folder = proxy.pid, proxy.workdir
    assert gunicorn.group_pids(pid) == [], "nothing of nginx's process group is left"
    assert not Path(folder).exists(), "its folder (config, cache, logs) is removed"


@needs_nginx
def test_the_lock_lets_one_request_fill_a_missing_entry(upstream):
    from cachelab.load import layers

    with nginx.start_nginx([nginx.Location("/lock/", upstream.port, lock=True, stale=False)], workers=2) as proxy:
        before = upstream.totals()["backend_queries"]
        answers = layers.burst(proxy.url("/lock/delay/EWR/ORD/1"), 6)
        assert [a["status"] for a in answers] == [200] * 6
        assert upstream.totals()["backend_queries"] - before == 1


@needs_nginx
def test_a_failed_start_says_why_and_leaves_nothing(monkeypatch):
    monkeypatch.setattr(nginx, "render_config", lambda *a, **k: "this is not a config;\n")
    with pytest.raises(nginx.NginxError, match="exited at start"):
        nginx.start_nginx([nginx.Location("/", 8000)], timeout=10)


def test_a_refresh_header_becomes_proxy_cache_bypass(tmp_path):
    config = nginx.render_config([nginx.Location("/lock/", 8000, refresh_header="X-Refresh")], port=9000,
                                 workdir=tmp_path)
    assert "proxy_cache_bypass $http_x_refresh;" in config
    for bad in ("X Refresh", "X-Refresh;", "$x", ""):
        with pytest.raises(ValueError, match="header name"):
            nginx.Location("/", 8000, refresh_header=bad)


@needs_nginx
def test_nginx_answers_a_conditional_request_itself_and_a_refresh_request_replaces_the_entry(upstream):
    with nginx.start_nginx([nginx.Location("/r/", upstream.port, stale=False, refresh_header="X-Refresh")]) as proxy:
        path = "/r/delay/SFO/SEA/4"
        _, first, body = proxy.get(path)
        before = upstream.totals()["requests"]
        status, headers, answer = proxy.get(path, headers={"If-None-Match": first["etag"]})
        assert (status, headers["x-cache-status"], answer) == (304, "HIT", b"")
        assert upstream.totals()["requests"] == before, "the 304 came from nginx's copy"
        written, _ = upstream.post_json("/flights", {"origin": "SFO", "dest": "SEA", "month": 4, "arr_delay": 1.0})
        assert written == 201
        assert proxy.get(path)[2] == body, "nginx keeps its copy until it is told"
        status, headers, refreshed = proxy.get(path, headers={"X-Refresh": "1"})
        assert headers["x-cache-status"] == "BYPASS"
        assert json.loads(refreshed)["flights"] == json.loads(body)["flights"] + 1
        _, headers, again = proxy.get(path)
        assert headers["x-cache-status"] == "HIT" and again == refreshed, "the refresh replaced the entry"


@needs_nginx
def test_wrk_sends_the_headers_it_is_given(tmp_path, upstream):
    import shutil

    from cachelab.load import wrk

    if shutil.which("wrk") is None:
        pytest.skip("wrk is not installed")
    paths = wrk.write_paths(tmp_path / "health.paths", [nginx.HEALTH_PATH])
    with nginx.start_nginx([nginx.Location("/", upstream.port)]) as proxy:
        kept = wrk.run_wrk(proxy.base_url, paths, seconds=1, connections=2)
        closed = wrk.run_wrk(proxy.base_url, paths, seconds=1, connections=2, headers={"Connection": "close"})
    assert kept.requests > 0 and closed.requests > 0 and kept.non_2xx == closed.non_2xx == 0
    assert closed.socket_errors == 0
