"""Request streams with realistic popularity, so hit ratios mean something.

Web requests follow a Zipf-like law: the i-th most popular item is asked for with probability
proportional to ``1 / i**alpha``, with ``alpha`` between about 0.64 and 0.83 in the traces studied by
Breslau, Cao, Fan, Phillips and Shenker, "Web Caching and Zipf-like Distributions: Evidence and
Implications" (INFOCOM 1999). A few keys get most requests and a long tail is asked for once: which is
why a small cache catches much of the traffic, and why no cache catches all of it.

Every stream is seeded, so a notebook rerun replays exactly the same requests.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from typing import TypeVar

import numpy as np

from . import arguments

K = TypeVar("K", bound=Hashable)

DEFAULT_ALPHA = 0.8


def zipf_weights(n_keys: int, alpha: float = DEFAULT_ALPHA) -> np.ndarray:
    """Probabilities ``p_i`` proportional to ``1 / i**alpha`` for ranks ``i = 1..n_keys`` (summing to 1)."""
    if isinstance(n_keys, bool) or not isinstance(n_keys, int | np.integer) or n_keys < 1:
        raise ValueError(f"n_keys must be a positive integer, not {n_keys!r}")
    alpha = arguments.number("alpha", alpha, minimum=0)
    weights = 1.0 / np.arange(1, n_keys + 1, dtype=np.float64) ** alpha
    return weights / weights.sum()


def zipf_ranks(n_requests: int, n_keys: int, *, alpha: float = DEFAULT_ALPHA, seed: int = 0) -> np.ndarray:
    """``n_requests`` popularity ranks (0 = most popular) drawn from a Zipf-like law over ``n_keys``."""
    if isinstance(n_requests, bool) or not isinstance(n_requests, int | np.integer) or n_requests < 0:
        raise ValueError(f"n_requests must be a non-negative integer, not {n_requests!r}")
    rng = np.random.default_rng(seed)
    return rng.choice(n_keys, size=n_requests, p=zipf_weights(n_keys, alpha))


def zipf_stream(keys: Sequence[K], n_requests: int, *, alpha: float = DEFAULT_ALPHA, seed: int = 0) -> list[K]:
    """A request stream over ``keys``, which are listed most popular first (e.g. ``FlightService.routes()``)."""
    keys = list(keys)
    if not keys:
        raise ValueError("keys must not be empty")
    return [keys[i] for i in zipf_ranks(n_requests, len(keys), alpha=alpha, seed=seed)]


def uniform_stream(keys: Sequence[K], n_requests: int, *, seed: int = 0) -> list[K]:
    """Every key equally likely: the worst case for a cache, for contrast."""
    keys = list(keys)
    if not keys:
        raise ValueError("keys must not be empty")
    n_requests = arguments.integer("n_requests", n_requests, minimum=0)
    rng = np.random.default_rng(seed)
    return [keys[i] for i in rng.integers(0, len(keys), size=n_requests)]


def with_scan(stream: Sequence[K], scan: Sequence[K], *, at: float = 0.5) -> list[K]:
    """``stream`` with a one-off sequential ``scan`` spliced in at fraction ``at`` of its length.

    A scan (a batch report, a crawler) touches many keys once each. It pushes the popular keys out of
    an LRU cache, while a frequency-based policy (LFU) keeps them.
    """
    if not 0 <= arguments.number("at", at) <= 1:
        raise ValueError("at must be between 0 and 1")
    stream = list(stream)
    cut = int(len(stream) * at)
    return list(stream[:cut]) + list(scan) + list(stream[cut:])


def repeat_fraction(stream: Sequence[Hashable]) -> float:
    """Fraction of requests that repeat an earlier one: the best hit ratio of a cache that starts empty.

    A cache that starts empty and fills on demand must miss the first request for each key (a
    *compulsory* miss); an unbounded one hits the rest. A cache warmed beforehand can do better, since
    its first requests can hit.
    """
    if len(stream) == 0:
        return 0.0
    return 1.0 - len(set(stream)) / len(stream)


def repeat_flags(stream: Sequence[Hashable]) -> np.ndarray:
    """For each request of ``stream``, whether it repeats an earlier one: the requests an unbounded cache that
    starts empty hits (a ``bool`` array, as long as the stream)."""
    seen: set = set()
    flags = np.zeros(len(stream), dtype=bool)
    for i, key in enumerate(stream):
        flags[i] = key in seen
        seen.add(key)
    return flags


def longest_reuse_distance(stream: Sequence[Hashable]) -> int:
    """The most distinct other keys requested between two consecutive requests of one key (0 if none repeats).

    An LRU cache of ``maxsize`` entries hits a repeated request exactly when fewer than ``maxsize`` distinct
    other keys were requested since the previous request of its key (its *stack distance*, Mattson et al.,
    1970). So ``longest_reuse_distance(stream) + 1`` is the smallest ``maxsize`` at which an LRU cache that
    starts empty reaches the stream's ceiling, :func:`repeat_fraction`. One pass, with a Fenwick tree over
    the positions of each key's latest request.
    """
    n = len(stream)
    tree = [0] * (n + 1)

    def add(i: int, delta: int) -> None:  # position i (0-based) gains delta
        i += 1
        while i <= n:
            tree[i] += delta
            i += i & -i

    def before(i: int) -> int:  # markers at positions 0 .. i - 1
        total = 0
        while i > 0:
            total += tree[i]
            i -= i & -i
        return total

    last: dict = {}
    longest = 0
    for t, key in enumerate(stream):
        previous = last.get(key)
        if previous is not None:
            longest = max(longest, before(t) - before(previous + 1))  # latest requests of other keys in between
            add(previous, -1)
        add(t, 1)
        last[key] = t
    return longest


def repeat_fraction_curve(stream: Sequence[Hashable], points: Sequence[int]) -> list[float]:
    """``repeat_fraction`` of each prefix ``stream[:n]`` for ``n`` in ``points`` (one pass)."""
    seen: set = set()
    out, wanted = [], sorted(set(int(p) for p in points))
    if any(p < 0 or p > len(stream) for p in wanted):
        raise ValueError("points must lie between 0 and len(stream)")
    i = 0
    for n in wanted:
        while i < n:
            seen.add(stream[i])
            i += 1
        out.append(0.0 if n == 0 else 1.0 - len(seen) / n)
    return out


def keys_carrying(stream: Sequence[Hashable], share: float = 0.5) -> int:
    """How few distinct keys carry ``share`` of the requests of ``stream`` (the most requested first)."""
    share = arguments.number("share", share)
    if not 0 < share <= 1:
        raise ValueError("share must be in (0, 1]")
    if len(stream) == 0:
        raise ValueError("stream must not be empty")
    counts = np.asarray(sorted(Counter(stream).values(), reverse=True))
    return int(np.searchsorted(np.cumsum(counts), share * len(stream)) + 1)


def diminishing_returns(sizes: Sequence[int], ratios: Sequence[float]) -> int:
    """The cache size from which one more entry buys less hit ratio than the average entry does.

    ``ratios[i]`` is the hit ratio at ``sizes[i]`` (increasing sizes). The average entry is worth the
    final hit ratio divided by the first size that reaches it (a curve through the origin); the answer
    is the first size after which the curve's slope falls below that average: past it, each extra entry
    is worth less than the entries before it. Returns the last size if the slope never falls below.
    """
    sizes = [arguments.integer("each size", size, minimum=1) for size in sizes]
    ratios = [arguments.number("each ratio", r) for r in ratios]
    if len(sizes) != len(ratios) or not sizes:
        raise ValueError("sizes and ratios must be non-empty and of the same length")
    if sizes != sorted(set(sizes)):
        raise ValueError("sizes must be increasing")
    best = max(ratios)
    full = sizes[ratios.index(best)]
    average = best / full
    points = [(0, 0.0), *zip(sizes, ratios, strict=True)]
    for (s0, r0), (s1, r1) in zip(points, points[1:], strict=False):
        if s0 > 0 and (r1 - r0) / (s1 - s0) < average * (1 - 1e-9):  # a margin for rounding
            return s0
    return sizes[-1]


def hit_ratio(hits: int, misses: int) -> float:
    """``hits / (hits + misses)``, and 0 when there were no requests."""
    hits = arguments.integer("hits", hits, minimum=0)
    misses = arguments.integer("misses", misses, minimum=0)
    total = hits + misses
    return hits / total if total else 0.0


STANDARD_SEED = 2013
STANDARD_ALPHA = DEFAULT_ALPHA
#: How many requests of the standard stream a notebook replays for the ``hit_ratio:<step>`` it saves,
#: so that the hit ratios of every step are measured on the same requests.
STANDARD_LENGTH = 10_000


def standard_stream(keys: Sequence[K], n_requests: int) -> list[K]:
    """The request stream every notebook replays (seed 2013, alpha 0.8), so hit ratios compare across steps."""
    return zipf_stream(keys, n_requests, alpha=STANDARD_ALPHA, seed=STANDARD_SEED)
