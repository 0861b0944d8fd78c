"""One harness for every timing in the series.

``measure`` works like ``python -m timeit``, and is built on :class:`timeit.Timer`, so that a statement
given as a string is compiled into the timing loop with no function call per iteration:

1. **Warm-up**: the operation runs before any timing, so first-call costs (imports, connection set-up,
   CPU caches, a cold cache we did not mean to measure) stay out of the numbers.
2. **Automatic loop count**: the operation is repeated ``loops`` times per sample, with ``loops`` chosen
   so that one sample lasts at least ``min_time`` seconds, far above the clock's resolution.
3. **Repeats**: several samples, each turned into a time per operation. We report the **median**
   (robust to the odd slow sample caused by another process) and the **p10-p90 spread**, which says how
   noisy the machine was. The minimum, which ``timeit`` recommends for micro-benchmarks, hides that noise,
   and the mean is dragged by outliers.

Set ``CACHELAB_QUICK=1`` to shrink the repeats and sample length: for tests only, never for numbers
you mean to read.
"""

from __future__ import annotations

import gc
import itertools
import math
import numbers
import os
import time
import timeit
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

import numpy as np

from . import arguments

_UNITS = (("s", 1e9), ("ms", 1e6), ("µs", 1e3), ("ns", 1.0))

_IN_TURN = (f"{os.getpid()}-{i}" for i in itertools.count(1))

NOISY_SPREAD = 0.3
"""A timing whose spread, (p90 - p10) / median, exceeds this is noisy: say so when you report it."""


def quick_mode() -> bool:
    """True when ``CACHELAB_QUICK`` is set to a true value (1, yes, true)."""
    return os.environ.get("CACHELAB_QUICK", "").strip().lower() in {"1", "yes", "true", "on"}


def pick(full, quick):
    """``quick`` in quick mode, else ``full``: how notebooks size their work."""
    return quick if quick_mode() else full


def format_ns(ns: float, digits: int = 3) -> str:
    """A duration in nanoseconds as text, in the unit its magnitude calls for: ``'31.4 ms'``."""
    if ns is None or (isinstance(ns, numbers.Real) and math.isnan(ns)):
        return "n/a"
    ns = arguments.number("ns", ns, finite=False)
    digits = arguments.integer("digits", digits, minimum=1)
    for unit, scale in _UNITS:
        if abs(ns) >= scale or unit == "ns":
            value = ns / scale
            return f"{value:.{digits}g} {unit}" if abs(value) < 10 ** digits else f"{value:.0f} {unit}"
    raise AssertionError("unreachable")


def format_factor(factor: float) -> str:
    """A ratio rounded to two significant figures, as a measured ratio should be quoted: ``'330,000x'``, ``'4.2x'``."""
    factor = arguments.number("factor", factor)
    rounded = float(f"{factor:.2g}")
    return f"{rounded:,.0f}x" if abs(rounded) >= 10 else f"{rounded:.2g}x"


@dataclass(frozen=True)
class Timing:
    """The samples of one measurement, each a time per operation in nanoseconds."""

    name: str
    samples_ns: tuple[float, ...]
    loops: int = 1
    meta: dict = field(default_factory=dict, compare=False)

    def __post_init__(self):
        arguments.text("name", self.name)
        if isinstance(self.samples_ns, str | bytes):
            raise TypeError("samples_ns must be a sequence of numbers (nanoseconds per operation), not a str")
        try:
            samples = np.asarray(self.samples_ns, dtype=np.float64)
        except (TypeError, ValueError):
            raise TypeError("samples_ns must be a sequence of numbers (nanoseconds per operation), "
                            f"not {str(self.samples_ns)[:60]}") from None
        if samples.ndim != 1 or not samples.size:
            raise ValueError("a Timing needs at least one sample, in a flat sequence")
        if np.isnan(samples).any() or (samples < 0).any():
            raise ValueError("samples_ns must be durations: numbers >= 0, no NaN")
        object.__setattr__(self, "samples_ns", tuple(samples.tolist()))
        arguments.integer("loops", self.loops, minimum=1)

    @property
    def n(self) -> int:
        """The number of samples (repeats)."""
        return len(self.samples_ns)

    @property
    def median(self) -> float:
        return float(np.median(self.samples_ns))

    @property
    def p10(self) -> float:
        return float(np.percentile(self.samples_ns, 10))

    @property
    def p90(self) -> float:
        return float(np.percentile(self.samples_ns, 90))

    @property
    def spread(self) -> float:
        """(p90 - p10) / median: 0.05 is a quiet machine, above 0.3 a noisy one."""
        return (self.p90 - self.p10) / self.median if self.median else float("nan")

    @property
    def noisy(self) -> bool:
        """True when the spread exceeds :data:`NOISY_SPREAD`: the machine was busy while it was measured."""
        return self.spread > NOISY_SPREAD

    def per_second(self) -> float:
        """Operations per second at the median."""
        return 1e9 / self.median

    def speedup_over(self, other: Timing) -> float:
        """How many times faster this is than ``other``, at the medians."""
        arguments.instance("other", other, Timing)
        return other.median / self.median

    def __str__(self) -> str:
        noisy = f"; noisy: spread {self.spread:.2f}" if self.noisy else ""
        return (f"{self.name}: {format_ns(self.median)} per op "
                f"(p10-p90 {format_ns(self.p10)} to {format_ns(self.p90)}, n={self.n} x {self.loops} loops{noisy})")

    def _repr_html_(self) -> str:
        return f"<code>{self}</code>"

    def to_dict(self) -> dict:
        return {
            "name": self.name, "median_ns": self.median, "p10_ns": self.p10, "p90_ns": self.p90,
            "n": self.n, "loops": self.loops, "samples_ns": list(self.samples_ns), **self.meta,
        }

    @classmethod
    def from_dict(cls, data: dict) -> Timing:
        arguments.instance("data", data, dict)
        if not {"name", "samples_ns"} <= data.keys():
            raise ValueError(f"a saved Timing has a name and samples_ns; this one has {sorted(data)}")
        known = {"name", "median_ns", "p10_ns", "p90_ns", "n", "loops", "samples_ns"}
        return cls(name=data["name"], samples_ns=tuple(data["samples_ns"]), loops=data.get("loops", 1),
                   meta={k: v for k, v in data.items() if k not in known})


def measure(
    stmt: str | Callable[[], object],
    *,
    name: str | None = None,
    setup: str | Callable[[], object] = "pass",
    globals: dict | None = None,  # noqa: A002 - the same name as timeit's argument
    repeat: int | None = None,
    min_time: float | None = None,
    loops: int | None = None,
    warmup: int = 1,
    **meta,
) -> Timing:
    """Time an operation: warm-up, automatic loop count, repeated samples, median and spread.

    ``stmt`` is a statement string (compiled into the loop like ``timeit``; pass the names it uses in
    ``globals``) or a zero-argument callable (one call per operation; its own call overhead, tens of
    nanoseconds, is part of what is measured). ``loops=1`` times single operations, for work that
    changes state (a request stream replayed on a fresh cache, say). Extra keyword arguments are kept
    in ``meta`` and saved with the result.
    """
    if repeat is None:
        repeat = 5 if quick_mode() else 15
    if min_time is None:
        min_time = 0.005 if quick_mode() else 0.05
    if not (isinstance(stmt, str) or callable(stmt)):
        raise TypeError(f"stmt must be a statement string or a callable, not {type(stmt).__name__}")
    repeat = arguments.integer("repeat", repeat, minimum=1)
    min_time = arguments.number("min_time", min_time, positive=True)  # NaN or inf would never be reached
    if loops is not None:
        loops = arguments.integer("loops", loops, minimum=1)
    warmup = arguments.integer("warmup", warmup, minimum=0)
    if name is None:
        name = stmt if isinstance(stmt, str) else getattr(stmt, "__name__", "operation")
    timer = timeit.Timer(stmt, setup, timer=time.perf_counter_ns, globals=globals)
    if warmup:
        timer.timeit(number=warmup)
    if loops is None:
        loops = 1
        while True:
            elapsed_ns = timer.timeit(number=loops)
            if elapsed_ns >= min_time * 1e9:
                break
            # Aim a little past the target in one step rather than doubling many times.
            grow = 2 if elapsed_ns <= 0 else min(10.0, max(2.0, 1.2 * min_time * 1e9 / elapsed_ns))
            loops = int(math.ceil(loops * grow))
    samples = tuple(timer.timeit(number=loops) / loops for _ in range(repeat))
    return Timing(name=str(name), samples_ns=samples, loops=loops, meta=meta)


class StatementSampler:
    """One sample of a statement per call (time per operation, ns), for :func:`take_in_turn`.

    The first call warms up and chooses the loop count, as :func:`measure` does; later calls reuse it,
    so every sample averages the same number of operations.
    """

    def __init__(self, stmt: str | Callable[[], object], *, globals: dict | None = None,  # noqa: A002
                 min_time: float | None = None, warmup: int = 1):
        if not (isinstance(stmt, str) or callable(stmt)):
            raise TypeError(f"stmt must be a statement string or a callable, not {type(stmt).__name__}")
        self.stmt, self.globals, self.min_time = stmt, globals, min_time
        self.warmup = arguments.integer("warmup", warmup, minimum=0)
        self.loops: int | None = None

    def __call__(self) -> float:
        if self.loops is None:
            timing = measure(self.stmt, globals=self.globals, repeat=1, min_time=self.min_time, warmup=self.warmup)
            self.loops = timing.loops
        else:
            timing = measure(self.stmt, globals=self.globals, repeat=1, loops=self.loops, warmup=0)
        return timing.samples_ns[0]


def take_in_turn(samplers: Mapping[str, Callable[[], float]], repeat: int) -> dict[str, list[float]]:
    """``repeat`` samples of each sampler, one of each in turn, rotating which goes first.

    A sampler is a zero-argument callable returning one sample (a :class:`StatementSampler`, or a run of an
    outside tool). Taken in turn, a busy neighbour, a CPU frequency change or a server moved to another
    core touches every sampler alike, where samples taken one sampler after the other can each catch a
    different machine (on a loopback round trip, up to a few times apart).
    """
    if not isinstance(samplers, Mapping):
        raise TypeError(f"samplers must be a mapping of names to samplers, not {type(samplers).__name__}")
    if not samplers:
        raise ValueError("samplers must name at least one operation")
    for name, sampler in samplers.items():
        arguments.instance("a name in samplers", name, str)
        if not callable(sampler):
            raise TypeError(f"the sampler of {name!r} must be callable, not {type(sampler).__name__}")
    repeat = arguments.integer("repeat", repeat, minimum=1)
    names = list(samplers)
    samples: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(repeat):
        for i in range(len(names)):
            name = names[(i + round_) % len(names)]
            samples[name].append(float(samplers[name]()))
    return samples


def measure_together(
    stmts: Mapping[str, str | Callable[[], object]],
    *,
    globals: dict | None = None,  # noqa: A002 - the same name as timeit's argument
    repeat: int | None = None,
    min_time: float | None = None,
    warmup: int = 1,
    **meta,
) -> dict[str, Timing]:
    """Time several operations **interleaved**, for a ratio between them that noise cannot flip.

    ``stmts`` maps a name to what :func:`measure` takes. Each operation gets its warm-up and its loop
    count on its first sample; then samples are taken one of each in turn (:func:`take_in_turn`).
    Returns one :class:`Timing` per name, in order; their ``meta["in_turn"]`` names the call, so that
    :func:`cachelab.claims.judge` compares them sample by sample (the i-th sample of each, taken moments apart).
    """
    if not isinstance(stmts, Mapping):
        raise TypeError(f"stmts must be a mapping of names to statements, not {type(stmts).__name__}")
    if not stmts:
        raise ValueError("stmts must name at least one operation")
    samplers = {}
    for name, stmt in stmts.items():
        arguments.instance("a name in stmts", name, str)
        if not (isinstance(stmt, str) or callable(stmt)):
            raise TypeError(f"stmts[{name!r}] must be a statement string or a callable, not {type(stmt).__name__}")
        samplers[name] = StatementSampler(stmt, globals=globals, min_time=min_time, warmup=warmup)
    if repeat is None:
        repeat = 5 if quick_mode() else 15
    samples = take_in_turn(samplers, repeat)
    group = next(_IN_TURN)  # marks the timings as paired samples for a claim (cachelab.claims)
    return {name: Timing(name, tuple(samples[name]), samplers[name].loops, {**meta, "in_turn": group})
            for name in samplers}


def time_calls(func: Callable, args: Iterable, *, star: bool = False) -> np.ndarray:
    """The latency of each call ``func(arg)`` (or ``func(*arg)``) in nanoseconds, in order.

    For latency distributions over a request stream, where every request is its own sample and
    hits and misses are mixed. The garbage collector is paused as in ``timeit``.
    """
    if not callable(func):
        raise TypeError(f"func must be callable, not {type(func).__name__}")
    out = []
    clock = time.perf_counter_ns
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for arg in args:
            t0 = clock()
            func(*arg) if star else func(arg)
            out.append(clock() - t0)
    finally:
        if gc_was_enabled:
            gc.enable()
    return np.asarray(out, dtype=np.float64)


def from_samples(name: str, samples_ns: Iterable[float], **meta) -> Timing:
    """A :class:`Timing` from latencies gathered elsewhere (``time_calls``, a worker process)."""
    return Timing(name=name, samples_ns=tuple(float(s) for s in samples_ns), loops=1, meta=meta)


def noise_note(timings: Iterable[Timing]) -> str:
    """A sentence to append to prose that quotes ``timings``: empty when none of them is noisy.

    Names the noisy ones when they are few; says the run was noisy when most of them are.
    """
    timings = [arguments.instance("each timing", t, Timing) for t in timings]
    noisy = [t.name for t in timings if t.noisy]
    if not noisy:
        return ""
    if len(noisy) > 2 and len(noisy) * 2 > len(timings):
        return (f" (A noisy run: {len(noisy)} of these {len(timings)} timings spread by more than "
                f"{NOISY_SPREAD:.0%} of their median; the ratios are rough.)")
    return f" (Noisy: {', '.join(noisy)}; the ratios involving {'it' if len(noisy) == 1 else 'them'} are rough.)"


def table(timings: Iterable[Timing], baseline: Timing | None = None) -> str:
    """A plain-text table of timings, with the speedup over ``baseline`` when given (two significant figures).

    A noisy timing (:attr:`Timing.noisy`) says so at the end of its line.
    """
    timings = [arguments.instance("each timing", t, Timing) for t in timings]
    if baseline is not None:
        arguments.instance("baseline", baseline, Timing)
    width = max([len(t.name) for t in timings] + [9])
    head = f"{'operation':<{width}}  {'median':>10}  {'p10':>10}  {'p90':>10}"
    head += "     speedup" if baseline else ""
    lines = [head, "-" * len(head)]
    for t in timings:
        line = f"{t.name:<{width}}  {format_ns(t.median):>10}  {format_ns(t.p10):>10}  {format_ns(t.p90):>10}"
        if baseline:
            line += f"  {format_factor(t.speedup_over(baseline)):>10}"
        if t.noisy:
            line += f"  noisy (spread {t.spread:.2f})"
        lines.append(line)
    return "\n".join(lines)
