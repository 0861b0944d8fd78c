"""A TCP proxy that delays every byte it forwards: a server a few milliseconds away, on one machine.

A workshop room's shared server sits a millisecond or more away across Wi-Fi; a loopback server, tens of
microseconds. :class:`DelayProxy` listens on a free loopback port and forwards each connection to a
real server, holding every chunk ``delay`` seconds in each direction, so that a round trip costs about
``2 * delay`` more, while pipelined requests still overlap (each chunk keeps its own deadline). The tests
use it to prove that claims calibrated on loopback say *not applicable here* rather than failing; a
rehearsal of the room's latency runs the series through it::

    python -m cachelab.servers.delay --ms 1     # prints the REDIS_URL and MEMCACHED_SERVERS to export

It never changes what it forwards.
"""

from __future__ import annotations

import argparse
import contextlib
import queue
import socket
import threading
import time

from .. import arguments


class DelayProxy:
    """Forward ``127.0.0.1:<port>`` to ``target``, each chunk held ``delay`` seconds, both ways."""

    def __init__(self, target: tuple[str, int], delay: float = 0.001):
        host, port = target
        self.target = (arguments.text("host", host), arguments.port("port", port))
        self.delay = arguments.number("delay", delay, minimum=0)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.address = self._listener.getsockname()[:2]
        self._stop = threading.Event()
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, name="delay-proxy", daemon=True)
        self._thread.start()

    @property
    def port(self) -> int:
        return self.address[1]

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=2)
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            for s in (client, upstream):
                s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                self._pipe(src, dst)

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        held: queue.Queue = queue.Queue()

        def read():
            try:
                while chunk := src.recv(65536):
                    held.put((time.monotonic() + self.delay, chunk))
            except OSError:
                pass
            held.put((0.0, b""))

        def write():
            while True:
                due, chunk = held.get()
                if not chunk:
                    break
                wait = due - time.monotonic()
                if wait > 0:
                    time.sleep(wait)
                try:
                    dst.sendall(chunk)
                except OSError:
                    break
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

        for fn in (read, write):
            threading.Thread(target=fn, name="delay-proxy-pipe", daemon=True).start()

    def close(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            for s in self._sockets:
                with contextlib.suppress(OSError):
                    s.close()
        self._thread.join(timeout=1)

    def __enter__(self) -> DelayProxy:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def main(argv=None) -> int:
    """Proxies in front of the servers ``cachelab`` finds, until interrupted; prints what to export."""
    from urllib.parse import urlsplit, urlunsplit

    from .discovery import connect

    parser = argparse.ArgumentParser(prog="python -m cachelab.servers.delay", description=main.__doc__)
    parser.add_argument("--ms", type=float, default=1.0, help="delay each way, in milliseconds (default 1)")
    args = parser.parse_args(argv)
    found = connect(start=False)
    url = urlsplit(found.redis.url)
    redis_proxy = DelayProxy((url.hostname, url.port or 6379), args.ms / 1000)
    netloc = (url.netloc.rsplit("@", 1)[0] + "@" if "@" in url.netloc else "") + f"127.0.0.1:{redis_proxy.port}"
    mc = [DelayProxy(node, args.ms / 1000) for node in found.memcached.nodes]
    print(f"export REDIS_URL='{urlunsplit(url._replace(netloc=netloc))}'")
    print("export MEMCACHED_SERVERS=" + ",".join(f"127.0.0.1:{p.port}" for p in mc), flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    for p in [redis_proxy, *mc]:
        p.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
