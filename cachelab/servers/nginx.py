"""nginx as a reverse-proxy cache in front of the flight service: a private instance, started, probed, stopped.

:func:`start_nginx` runs the system's ``nginx`` binary (``make setup`` installs it) with a configuration this
module writes, in a folder of its own, and returns an :class:`Nginx` once it answers::

    with start_nginx([Location("/", upstream=server.port)], workers=2) as proxy:
        proxy.url("/delay/JFK/LAX/7")        # the first GET is a MISS, the next ones a HIT

* **Its own files**: the configuration, the pid file, the error log, the cache and every temporary folder
  (``client_body_temp_path``, ``proxy_temp_path``...) live in a temporary folder, removed at the stop;
  ``-p`` and ``-c`` point nginx there, and ``-e`` sends its start-up log there too (nginx 1.19.5 and later),
  so the system's ``/etc/nginx``, ``/var/lib/nginx`` and ``/var/log/nginx`` are never read or written.
  No system service is started or needed.
* **Loopback only**: it listens on 127.0.0.1, on a port the kernel picks. This process binds the socket
  and hands it to nginx, as nginx hands its sockets to a new binary on an upgrade (the ``NGINX``
  environment variable, ``ngx_add_inherited_sockets`` in ``src/core/nginx.c``), so no other program can
  take the port in between. Upstreams must be on loopback too: anything else is refused.
* **Readiness**: ``/nginx-health``, answered by nginx itself, returns 200 within ``timeout`` seconds;
  otherwise the instance is stopped and the error shows the end of its log.
* **Nothing left running**: ``daemon off``, so the master is this process's child, in a process group of
  its own; :meth:`Nginx.stop` sends SIGTERM (nginx's fast shutdown), then SIGKILL to the whole group if
  anything is still there after ``graceful`` seconds, and checks that the group is gone. The context
  manager, an ``atexit`` hook and, on Linux, ``PR_SET_PDEATHSIG`` on the master stop it otherwise.
* **As root** (a container, CI) the workers run as ``nobody``, nginx's own default, and the folder is
  handed to that user so that they can write the cache.

Each :class:`Location` proxies a path prefix to one upstream with the cache settings that matter here:
``proxy_cache`` (the cache honours the upstream's ``Cache-Control: max-age`` and ``stale-while-revalidate``),
``proxy_cache_lock`` (one request fills a missing entry, the others wait for it), ``proxy_cache_use_stale
updating`` with ``proxy_cache_background_update`` (an expired entry is served stale while one background
request refreshes it), and optionally ``proxy_cache_bypass`` on a header (a request that refreshes one entry).
Every answer carries ``X-Cache-Status`` (``$upstream_cache_status``: MISS, HIT, EXPIRED, STALE, UPDATING,
REVALIDATED, BYPASS). A cached answer also answers a conditional request: a matching ``If-None-Match`` gets
a 304 from nginx itself (its not-modified filter runs for a cacheable response).
"""

from __future__ import annotations

import atexit
import contextlib
import ipaddress
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .. import arguments
from .gunicorn import group_pids
from .managed import child_setup

GRACEFUL_SECONDS = 3.0
READY_TIMEOUT = 15.0
HEALTH_PATH = "/nginx-health"
ZONE = "cachelab"
_PLACES = ("/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/local/bin/nginx", "/opt/homebrew/bin/nginx")


class NginxError(RuntimeError):
    """nginx is missing, did not start, or did not stop: the message says which, with the end of its log."""


def binary() -> str:
    """The nginx executable: on ``PATH``, or where the system's packages put it (``/usr/sbin`` is not on a
    user's ``PATH`` everywhere)."""
    found = shutil.which("nginx") or next((p for p in _PLACES if os.access(p, os.X_OK)), None)
    if found is None:
        raise NginxError("nginx is not installed: `make setup` installs it (apt/dnf/brew package 'nginx')")
    return found


def version() -> str:
    """nginx's version line, as ``nginx -v`` prints it: ``nginx version: nginx/1.22.1``."""
    out = subprocess.run([binary(), "-v"], capture_output=True, text=True, timeout=30)
    return (out.stderr or out.stdout).strip().splitlines()[0]


def version_tuple() -> tuple[int, ...]:
    found = re.search(r"nginx/(\d+)\.(\d+)\.(\d+)", version())
    return tuple(int(x) for x in found.groups()) if found else (0, 0, 0)


def is_loopback(host: str) -> bool:
    """Whether ``host`` is an address of this machine's loopback (127.0.0.0/8, ::1) or ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True)
class Location:
    """A path prefix proxied to ``upstream`` (a port on 127.0.0.1, or ``host:port`` on loopback), cached.

    ``prefix`` other than ``/`` is removed before the request goes upstream (``/lock/delay/...`` asks the
    upstream for ``/delay/...``); the cache key keeps the whole URI, so each prefix has entries of its own.
    ``lock``: ``proxy_cache_lock``; ``stale``: ``proxy_cache_use_stale updating`` with
    ``proxy_cache_background_update``; ``cache=False`` proxies without caching.

    ``stale=False`` leaves out the directive, not the behaviour the upstream asks for: an answer carrying
    ``stale-while-revalidate=M`` is still served stale (``UPDATING``) for up to ``M`` seconds while one request
    refreshes it (``c->stale_updating`` in ``ngx_http_upstream_cache``), only without a background refresh.

    ``refresh_header`` (``"X-Refresh"``): ``proxy_cache_bypass $http_x_refresh``: a request carrying that
    header, with any value but empty or ``0``, goes to the upstream whatever the cache holds (``BYPASS``), and
    its answer is stored in place of the entry: a writer refreshes one answer on demand. Whoever can send the
    header can make every request miss; this nginx listens on loopback only (in production, honour the header
    only from the writers' addresses, with a ``geo`` or ``map`` block)."""

    prefix: str
    upstream: int | str
    cache: bool = True
    lock: bool = True
    stale: bool = True
    lock_timeout: float = 10.0
    refresh_header: str | None = None

    def __post_init__(self):
        if not (self.prefix.startswith("/") and self.prefix.endswith("/")) or not re.fullmatch(r"[/A-Za-z0-9_-]+",
                                                                                            self.prefix):
            raise ValueError(f"a location prefix is a path like / or /lock/, not {self.prefix!r}")
        host, port = self.address
        if not is_loopback(host):
            raise ValueError(f"upstream {host}:{port} is not on loopback: this nginx only proxies to this machine")
        arguments.integer("upstream port", port, minimum=1, maximum=65535)
        arguments.number("lock_timeout", self.lock_timeout, positive=True)
        if self.refresh_header is not None and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9-]*", self.refresh_header):
            raise ValueError(f"a refresh header is a header name like X-Refresh, not {self.refresh_header!r}")

    @property
    def address(self) -> tuple[str, int]:
        if isinstance(self.upstream, int):
            return "127.0.0.1", self.upstream
        host, _, port = str(self.upstream).rpartition(":")
        if not port.isdigit():
            raise ValueError(f"upstream must be a port or host:port, not {self.upstream!r}")
        return host or "127.0.0.1", int(port)


def render_config(locations: Sequence[Location], *, port: int, workdir: Path, workers: int = 1,
                  cache_mb: int = 32, user: str | None = None, listen_host: str = "127.0.0.1") -> str:
    """The whole ``nginx.conf`` of a private instance (see the module docstring)."""
    if not locations:
        raise ValueError("nginx needs at least one location")
    if not is_loopback(listen_host):
        raise ValueError(f"nginx listens on loopback only, not on {listen_host!r}")
    w = str(workdir)
    upstreams, blocks = [], []
    for i, loc in enumerate(locations):
        host, up_port = loc.address
        upstreams.append(f"    upstream up{i} {{ server {host}:{up_port}; }}")
        target = f"http://up{i}" if loc.prefix == "/" else f"http://up{i}/"
        lines = [f"        location {loc.prefix} {{", f"            proxy_pass {target};"]
        if loc.cache:
            seconds = max(1, round(loc.lock_timeout))
            lines += [f"            proxy_cache {ZONE};",
                      f"            proxy_cache_lock {'on' if loc.lock else 'off'};",
                      f"            proxy_cache_lock_timeout {seconds}s;",
                      f"            proxy_cache_lock_age {seconds}s;"]
            if loc.stale:
                lines += ["            proxy_cache_use_stale updating error timeout;",
                          "            proxy_cache_background_update on;"]
            if loc.refresh_header:
                lines.append(f"            proxy_cache_bypass $http_{loc.refresh_header.lower().replace('-', '_')};")
        lines.append("        }")
        blocks.append("\n".join(lines))
    user_line = f"user {user};\n" if user else ""
    return f"""# written by cachelab.servers.nginx: a private instance, loopback only
{user_line}worker_processes {int(workers)};
daemon off;
master_process on;
pid {w}/nginx.pid;
lock_file {w}/nginx.lock;
error_log {w}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    client_body_temp_path {w}/temp/body;
    proxy_temp_path {w}/temp/proxy;
    fastcgi_temp_path {w}/temp/fastcgi;
    uwsgi_temp_path {w}/temp/uwsgi;
    scgi_temp_path {w}/temp/scgi;
    proxy_cache_path {w}/cache levels=1:2 keys_zone={ZONE}:4m max_size={int(cache_mb)}m inactive=10m use_temp_path=off;
{chr(10).join(upstreams)}
    server {{
        listen {listen_host}:{port};
        add_header X-Cache-Status $upstream_cache_status always;
        location = {HEALTH_PATH} {{ return 200 "ok\\n"; }}
{chr(10).join(blocks)}
    }}
}}
"""


@dataclass
class Nginx:
    """A private nginx: its master process, port, folder and configuration."""

    port: int
    process: subprocess.Popen = field(repr=False)
    workdir: Path = field(repr=False)
    config: str = field(repr=False)
    workers: int = 1
    cpus: tuple[int, ...] | None = None

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def url(self, path: str = "/") -> str:
        return self.base_url + path

    @property
    def cache_dir(self) -> Path:
        return self.workdir / "cache"

    def alive(self) -> bool:
        return self.process.poll() is None

    def worker_pids(self) -> list[int]:
        """The worker processes alive now: the master's process group, less the master."""
        return [pid for pid in group_pids(self.pid) if pid != self.pid]

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join((self.workdir / "error.log").read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def get(self, path: str, headers: dict | None = None, timeout: float = 10.0) -> tuple[int, dict, bytes]:
        """``GET path``: the status, the headers (lower-case names) and the body, whatever the status."""
        request = urllib.request.Request(self.url(path), headers=headers or {})
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 - our own server
                return response.status, {k.lower(): v for k, v in response.headers.items()}, response.read()
        except urllib.error.HTTPError as error:
            return error.code, {k.lower(): v for k, v in error.headers.items()}, error.read()

    def cached_files(self) -> int:
        """How many entries the cache holds on disk now."""
        return sum(1 for p in self.cache_dir.rglob("*") if p.is_file()) if self.cache_dir.exists() else 0

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> Nginx:
        timeout = arguments.number("timeout", timeout, positive=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise NginxError(f"nginx exited at start (code {self.process.returncode}):\n{self.log_tail()}")
            try:
                if self.get(HEALTH_PATH, timeout=1.0)[0] == 200:
                    return self
            except OSError:
                pass
            time.sleep(0.02)
        raise NginxError(f"nginx did not answer within {timeout:g} s:\n{self.log_tail()}")

    def stop(self, graceful: float = GRACEFUL_SECONDS) -> None:
        """SIGTERM to the master, SIGKILL to the group after ``graceful`` seconds; then nothing is left."""
        if self in _RUNNING:
            _RUNNING.remove(self)
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.process.wait(graceful)
        deadline = time.monotonic() + graceful
        while group_pids(self.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        if group_pids(self.pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        deadline = time.monotonic() + 5
        while group_pids(self.pid) and time.monotonic() < deadline:
            time.sleep(0.02)
        left = group_pids(self.pid)
        if left:
            raise NginxError(f"processes {left} of nginx's group are still running after SIGKILL")
        shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Nginx:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


_RUNNING: list[Nginx] = []


def _stop_all() -> None:
    for server in list(_RUNNING):
        with contextlib.suppress(Exception):
            server.stop(graceful=1.0)


atexit.register(_stop_all)


def _worker_user(workdir: Path) -> str | None:
    """As root: ``nobody`` and its group, owning the folder so that the workers can write the cache."""
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        return None
    import grp
    import pwd

    nobody = pwd.getpwnam("nobody")
    group = grp.getgrgid(nobody.pw_gid).gr_name
    for path in [workdir, *workdir.rglob("*")]:
        os.chown(path, nobody.pw_uid, nobody.pw_gid)
    return f"nobody {group}"


def start_nginx(locations: Iterable[Location], *, workers: int = 1, cpus: Iterable[int] | None = None,
                cache_mb: int = 32, listen_host: str = "127.0.0.1", timeout: float = READY_TIMEOUT,
                wait: bool = True) -> Nginx:
    """Start a private nginx proxying and caching ``locations``; return it ready (module docstring).

    ``workers``: nginx's ``worker_processes``; ``cpus``: the CPUs the master and its workers may run on.
    ``wait=False`` returns at once: call :meth:`Nginx.wait_ready` (and :meth:`Nginx.stop` if it fails).
    """
    locations = list(locations)
    if not is_loopback(listen_host):
        raise ValueError(f"nginx listens on loopback only, not on {listen_host!r}")
    workers = arguments.integer("workers", workers, minimum=1, maximum=64)
    cache_mb = arguments.integer("cache_mb", cache_mb, minimum=1)
    cpus = tuple(sorted({arguments.integer("each cpu", c, minimum=0) for c in cpus})) if cpus is not None else None
    exe = binary()
    workdir = Path(tempfile.mkdtemp(prefix="cachelab-nginx-"))
    for sub in ("cache", "temp"):
        (workdir / sub).mkdir()
    family = socket.AF_INET6 if ":" in listen_host.strip("[]") else socket.AF_INET
    listener = socket.socket(family, socket.SOCK_STREAM)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((listen_host.strip("[]"), 0))
        listener.listen(511)
        listener.setblocking(False)  # as nginx's own listening sockets are: it does not change an inherited one
        port = listener.getsockname()[1]
        host = f"[{listen_host.strip('[]')}]" if family == socket.AF_INET6 else listen_host
        config = render_config(locations, port=port, workdir=workdir, workers=workers, cache_mb=cache_mb,
                               user=_worker_user(workdir), listen_host=host)
        (workdir / "nginx.conf").write_text(config)
        command = [exe, "-p", f"{workdir}/", "-c", str(workdir / "nginx.conf")]
        if version_tuple() >= (1, 19, 5):
            command += ["-e", str(workdir / "error.log")]
        env = {**os.environ, "NGINX": f"{listener.fileno()};"}
        with open(workdir / "error.log", "ab") as log:
            process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                       env=env, cwd=workdir, pass_fds=(listener.fileno(),), start_new_session=True,
                                       preexec_fn=child_setup(cpus, signal.SIGTERM))
    except BaseException:
        listener.close()
        shutil.rmtree(workdir, ignore_errors=True)
        raise
    listener.close()  # nginx has its own copy of the socket now
    server = Nginx(port, process, workdir, config, workers, cpus)
    _RUNNING.append(server)
    if not wait:
        return server
    try:
        return server.wait_ready(timeout)
    except BaseException:
        server.stop(graceful=1.0)
        raise
