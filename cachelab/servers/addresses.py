"""The addresses users give: ``REDIS_URL`` and ``MEMCACHED_SERVERS``, checked with a clear error."""

from __future__ import annotations

import urllib.parse


def parse_memcached_servers(text: str) -> list[tuple[str, int]]:
    """``'h1:11211,h2:11212'`` as ``[('h1', 11211), ('h2', 11212)]``, with a clear error when malformed."""
    if not isinstance(text, str):
        raise TypeError(f"MEMCACHED_SERVERS must be a str like 'h1:11211,h2:11212', not {type(text).__name__}")
    nodes = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        host, sep, port = part.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"MEMCACHED_SERVERS entry {part!r} is not host:port")
        nodes.append((host.strip("[]"), int(port)))
    if not nodes:
        raise ValueError("MEMCACHED_SERVERS is empty; expected host:port[,host:port...]")
    return nodes


def parse_redis_url(url: str) -> dict:
    """Check a ``redis://`` URL and return its parts; raise ``ValueError`` with the reason otherwise."""
    if not isinstance(url, str):
        raise TypeError(f"REDIS_URL must be a str like 'redis://:PASSWORD@HOST:6379/0', not {type(url).__name__}")
    parsed = urllib.parse.urlsplit(url)
    if parsed.scheme not in {"redis", "rediss", "unix"}:
        raise ValueError(f"REDIS_URL must start with redis://, rediss:// or unix://, got {redacted(url)!r}")
    if parsed.scheme != "unix" and not parsed.hostname:
        raise ValueError(f"REDIS_URL has no host: {redacted(url)!r}")
    try:
        port = parsed.port if parsed.port is not None else 6379
    except ValueError:
        raise ValueError(f"REDIS_URL has a bad port: {redacted(url)!r}") from None
    if parsed.scheme != "unix" and not 0 < port < 65536:
        raise ValueError(f"REDIS_URL has a bad port: {redacted(url)!r}")
    if parsed.scheme != "unix" and not (parsed.path.strip("/") or "0").isdigit():
        raise ValueError(f"REDIS_URL's database must be a number, as in redis://host:6379/0: {redacted(url)!r}")
    return {"scheme": parsed.scheme, "host": parsed.hostname, "port": port,
            "password": urllib.parse.unquote(parsed.password) if parsed.password else None}


def redacted(url: str) -> str:
    """``url`` with its password replaced by ``***``, fit to print."""
    parsed = urllib.parse.urlsplit(url)
    if parsed.password:
        netloc = parsed.netloc.replace(f":{parsed.password}@", ":***@")
        return urllib.parse.urlunsplit(parsed._replace(netloc=netloc))
    return url


