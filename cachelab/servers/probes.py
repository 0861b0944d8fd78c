"""Wire-level probes that need no client library: is a port taken, does a memcached or a Redis answer."""

from __future__ import annotations

import socket

from . import config


def port_in_use(port: int, host: str = "127.0.0.1") -> bool:
    """Whether something listens on ``host:port``, or the port cannot be bound there (the one port probe)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.3)
        if sock.connect_ex((host, port)) == 0:
            return True
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return True
    return False


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def memcached_version(host: str, port: int, timeout: float | None = None) -> str | None:
    """The server's version if a memcached answers ``version`` on ``host:port``, else ``None``."""
    timeout = config.CONNECT_TIMEOUT if timeout is None else timeout
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(b"version\r\n")
            reply = sock.recv(256)
    except OSError:
        return None
    if reply.startswith(b"VERSION "):
        return reply[8:].strip().decode("ascii", "replace")
    return None


def memcached_stats(host: str, port: int, timeout: float | None = None) -> dict[str, str]:
    """A memcached node's ``stats`` as a dict of strings, or ``{}`` when it does not answer."""
    timeout = config.CONNECT_TIMEOUT if timeout is None else timeout
    out, buffer = {}, b""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            sock.sendall(b"stats\r\n")
            while not buffer.endswith(b"END\r\n"):
                chunk = sock.recv(65536)
                if not chunk:
                    break
                buffer += chunk
    except OSError:
        return {}
    for line in buffer.decode("ascii", "replace").splitlines():
        parts = line.split(" ", 2)
        if len(parts) == 3 and parts[0] == "STAT":
            out[parts[1]] = parts[2]
    return out


def redis_ping(host: str, port: int, password: str | None, timeout: float = 0.5) -> bool:
    """Whether a Redis that accepts ``password`` answers PING on ``host:port`` (raw RESP, no client)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(timeout)
            if password:
                arg = password.encode()
                sock.sendall(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n" % (len(arg), arg))
                if not sock.recv(64).startswith(b"+OK"):
                    return False
            sock.sendall(b"*1\r\n$4\r\nPING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False
