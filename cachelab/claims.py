"""Measured claims: a comparison judged from its samples, printed as a verdict, never raised in a reader's run.

A notebook makes two kinds of statement.

* An **invariant** (the second read is a hit; one recomputation behind the lock; a foreign key survives
  cleanup) does not depend on the machine. It is an ``assert``, and it must fail when the effect is absent.
* A **measured claim** (a hit costs more than a bare round trip; the p99 drops; more workers lift
  throughput) depends on the machine and the moment. It goes through :func:`judge` (in a notebook,
  :meth:`cachelab.Lab.claim`), which returns a :class:`Verdict`: *shown*, *not shown on this run* (the
  interval includes the claim's bound), *reversed* (the interval lies wholly on the wrong side of it), or
  *not applicable here* (the claim's :class:`Condition`, such as a server on this machine, does not hold).

How the interval is found. A claim compares two sets of samples ``a`` and ``b`` on a ratio scale (``a / b``,
the default) or a difference scale (``a - b``), against a bound: ``at_least`` (the claim is that the
ratio exceeds it), ``at_most``, or both. The interval is rank-based, which makes it exact and free of any
assumption about the shape of the noise, deterministic (a rerun of the same samples gives the same
verdict), and valid for the handful of samples a notebook can afford, where a bootstrap is not:

* **Paired samples** (two timings taken in turn by :func:`cachelab.timing.measure_together`, the same
  count): the ratio of each pair, taken moments apart, cancels what the machine did in between. The
  interval is the sign test's interval for the median of those ratios: order statistics of the pairs,
  with a coverage computed exactly from the binomial distribution.
* **Independent samples**: the Hodges-Lehmann estimate of the shift between the two (on the log scale
  for a ratio) and the Mann-Whitney interval around it, its coverage computed exactly from the
  distribution of the rank statistic (a normal approximation above 40 samples a side).
* A statistic other than the median (a p99 of thousands of latencies): a percentile bootstrap of the
  ratio of the statistics, with a fixed seed, which needs many samples (at least 100 a side).

The interval aims at 95% (two-sided). Few samples cannot reach it: the achieved coverage is printed
("94% interval" for 5 pairs), and a claim whose samples cannot reach 90% even in principle is a mistake in
the notebook, raised as ``ValueError`` at once, whatever the run measured.

Where verdicts go. Each is printed as one sentence made from the numbers, and kept in
``<results>/claims/<notebook>.json``. ``make run`` lists the claims not shown; ``make soak`` tallies them over
several runs. In a reader's run nothing is raised. Under ``CACHELAB_CLAIMS=strict`` (the test suite), a
claim not shown raises :class:`ClaimNotShown`, which the notebook runner answers by executing the cell
again (three attempts in all), and a reversed claim raises :class:`ClaimReversed` at once.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np

from . import arguments
from .timing import NOISY_SPREAD, Timing, format_factor, format_ns

SHOWN = "shown"
NOT_SHOWN = "not shown on this run"
REVERSED = "reversed"
NOT_APPLICABLE = "not applicable here"
VERDICTS = (SHOWN, NOT_SHOWN, REVERSED, NOT_APPLICABLE)

TARGET_CONFIDENCE = 0.95
"""The coverage an interval aims at (two-sided); fewer samples get less, and say so."""
MIN_CONFIDENCE = 0.90
"""A claim whose samples cannot reach this coverage even in principle is refused (a notebook's mistake)."""
ATTEMPTS = 3
"""Under ``CACHELAB_CLAIMS=strict`` a cell whose claim is not shown is executed again, up to this many times in all."""
BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_MIN_SAMPLES = 100


class ClaimNotShown(Exception):
    """Raised under ``CACHELAB_CLAIMS=strict`` for a claim the run could not show: the cell is measured again."""


class ClaimReversed(Exception):
    """Raised under ``CACHELAB_CLAIMS=strict`` for a claim the run showed the opposite of, with confidence."""


def strict() -> bool:
    """True under ``CACHELAB_CLAIMS=strict`` (the test suite): a claim not shown or reversed raises."""
    return os.environ.get("CACHELAB_CLAIMS", "").strip().lower() == "strict"


@dataclass(frozen=True)
class Condition:
    """Where a claim holds, and whether this run is such a place.

    ``requires`` says what the claim needs ("the server on this machine: a round trip under 1 ms"),
    ``found`` what this run found ("a Redis round trip costs 2.3 ms here").
    """

    holds: bool
    requires: str
    found: str = ""

    def __post_init__(self):
        if not isinstance(self.holds, bool | np.bool_):
            raise TypeError(f"holds must be a bool, not {type(self.holds).__name__}")
        object.__setattr__(self, "holds", bool(self.holds))
        arguments.text("requires", self.requires)
        arguments.text("found", self.found, empty=True)


@dataclass(frozen=True)
class Verdict:
    """What the run showed of one claim, with the numbers behind it; ``str()`` is the sentence to print."""

    statement: str
    verdict: str
    estimate: float
    low: float
    high: float
    confidence: float
    at_least: float | None
    at_most: float | None
    scale: str
    method: str
    n_a: int
    n_b: int
    spread: float
    a_name: str = "a"
    b_name: str = "b"
    unit: str = ""
    condition: Condition | None = None
    attempt: int = 1
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def shown(self) -> bool:
        return self.verdict == SHOWN

    @property
    def applicable(self) -> bool:
        return self.verdict != NOT_APPLICABLE

    def value(self, x: float) -> str:
        """A value on the claim's scale as text: ``1.2x`` for a ratio, a number with its unit for a difference."""
        if self.scale == "ratio":
            return _factor(x)
        if self.unit == "ns":
            return format_ns(x)
        return f"{x:,.3g}{(' ' + self.unit) if self.unit else ''}"

    def bound(self) -> str:
        parts = []
        if self.at_least is not None:
            parts.append(f"above {self.value(self.at_least)}")
        if self.at_most is not None:
            parts.append(f"below {self.value(self.at_most)}")
        return " and ".join(parts)

    def measured(self) -> str:
        """``'Redis hit / PING = 1.16x, 99% interval 1.05x to 1.28x, 11 pairs taken in turn'``."""
        op = "/" if self.scale == "ratio" else "-"
        return (f"{self.a_name} {op} {self.b_name} = {self.value(self.estimate)}, {self.confidence:.0%} interval "
                f"{self.value(self.low)} to {self.value(self.high)}, {self.method}")

    def sentence(self) -> str:
        if self.verdict == NOT_APPLICABLE:
            cond = self.condition
            return (f"Not applicable here: {self.statement}. The claim is for {cond.requires}"
                    f"{'; ' + cond.found if cond.found else ''}, so this run does not judge it.")
        if self.verdict == SHOWN:
            return f"Shown: {self.statement} ({self.measured()})."
        if self.verdict == REVERSED:
            return (f"Reversed on this run: {self.statement}, yet {self.measured()}: the interval lies wholly on "
                    f"the wrong side of the claim ({self.bound()}). Rerun the cell; if it persists on a quiet "
                    "machine, this machine differs from the one the lesson describes, and the lesson needs a "
                    "second look.")
        why = (f"the machine was busy while it measured (the samples spread by {self.spread:.2f} of their "
               "median): rerun the cell, or close other programs first"
               if self.spread > NOISY_SPREAD else
               "the difference is smaller than this run could resolve: rerun the cell for more samples")
        return (f"Not shown on this run: {self.statement}. Measured: {self.measured()}, an interval that reaches "
                f"past the claim ({self.bound()}); {why}.")

    def __str__(self) -> str:
        return self.sentence()

    def _repr_html_(self) -> str:
        colour = {SHOWN: "#1b7a1b", NOT_SHOWN: "#9a6700", REVERSED: "#b42318", NOT_APPLICABLE: "#555"}[self.verdict]
        import html

        return f'<p style="border-left:4px solid {colour};padding-left:8px">{html.escape(self.sentence())}</p>'

    def to_dict(self) -> dict:
        out = asdict(self)
        out["sentence"] = self.sentence()
        return out


def _factor(x: float) -> str:
    """A ratio to three significant figures below 10 (an interval of 1.05x to 1.28x must not read 1.1x to 1.3x),
    two above."""
    if not math.isfinite(x):
        return "inf" if x > 0 else "n/a"
    return f"{x:.3g}x" if abs(x) < 10 else format_factor(x)


# --------------------------------------------------------------------------- intervals

@lru_cache(maxsize=256)
def _binomial_cdf_half(n: int) -> tuple[float, ...]:
    """P(B <= k) for B ~ Binomial(n, 1/2), k = 0..n."""
    probs = [math.comb(n, k) / 2 ** n for k in range(n + 1)]
    return tuple(np.cumsum(probs).tolist())


def sign_interval(values: Sequence[float], confidence: float = TARGET_CONFIDENCE) -> tuple[float, float, float, float]:
    """The median of ``values`` and the sign test's interval for it: ``(median, low, high, coverage)``.

    Order statistics ``x_(k)`` and ``x_(n+1-k)``, with the largest ``k`` whose exact coverage,
    ``1 - 2 P(B <= k - 1)`` for ``B ~ Binomial(n, 1/2)``, is at least ``confidence``; with too few values
    for that, the widest interval (``k = 1``) and its coverage.
    """
    x = np.sort(np.asarray(values, dtype=np.float64))
    n = x.size
    if n < 2:
        raise ValueError("an interval needs at least two values")
    cdf = _binomial_cdf_half(n)
    k = 1
    for cand in range(1, n // 2 + 1):
        if 1 - 2 * cdf[cand - 1] >= confidence:
            k = cand
        else:
            break
    coverage = 1 - 2 * cdf[k - 1]
    return float(np.median(x)), float(x[k - 1]), float(x[n - k]), float(coverage)


@lru_cache(maxsize=256)
def _mann_whitney_cdf(m: int, n: int) -> tuple[float, ...]:
    """P(U <= u) under the null for the Mann-Whitney statistic of samples of sizes m and n, u = 0..mn.

    U counts the pairs in which the first sample's value is the larger. Of m + n values in random order,
    the largest comes from the first sample (it beats all n of the second) or from the second, hence
    ``f(i, j) = f(i - 1, j) shifted by j + f(i, j - 1)``.
    """
    table: dict[tuple[int, int], np.ndarray] = {}
    for i in range(m + 1):
        for j in range(n + 1):
            if i == 0 or j == 0:
                table[i, j] = np.ones(1)
                continue
            arr = np.zeros(i * j + 1)
            from_a, from_b = table[i - 1, j], table[i, j - 1]
            arr[j:j + from_a.size] += from_a
            arr[:from_b.size] += from_b
            table[i, j] = arr
    counts = table[m, n]
    return tuple(np.cumsum(counts / counts.sum()).tolist())


def shift_interval(a: Sequence[float], b: Sequence[float],
                   confidence: float = TARGET_CONFIDENCE) -> tuple[float, float, float, float]:
    """The Hodges-Lehmann shift ``a - b`` and the Mann-Whitney interval for it: ``(shift, low, high, coverage)``.

    The shift is the median of all differences ``a_i - b_j``; the interval runs from the k-th smallest to the
    k-th largest of them, with the largest ``k`` whose exact coverage reaches ``confidence`` (a normal
    approximation of the rank statistic above 40 values a side).
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    m, n = a.size, b.size
    if m < 2 or n < 2:
        raise ValueError("each side needs at least two values")
    diffs = np.sort((a[:, None] - b[None, :]).ravel())
    mn = m * n
    if m <= 40 and n <= 40:
        cdf = _mann_whitney_cdf(m, n)
        k = 1
        for cand in range(1, mn // 2 + 1):
            if 1 - 2 * cdf[cand - 1] >= confidence:
                k = cand
            else:
                break
        coverage = 1 - 2 * cdf[k - 1]
    else:
        from statistics import NormalDist

        z = NormalDist().inv_cdf(1 - (1 - confidence) / 2)
        k = max(1, int(math.floor(mn / 2 - z * math.sqrt(mn * (m + n + 1) / 12))))
        sd = math.sqrt(mn * (m + n + 1) / 12)
        coverage = 1 - 2 * NormalDist().cdf((k - 0.5 - mn / 2) / sd)
    return float(np.median(diffs)), float(diffs[k - 1]), float(diffs[mn - k]), float(coverage)


def bootstrap_interval(a: Sequence[float], b: Sequence[float], statistic: Callable[[np.ndarray], np.ndarray],
                       *, ratio: bool = True, confidence: float = TARGET_CONFIDENCE, seed: int = 2013,
                       resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[float, float, float, float]:
    """``statistic(a) / statistic(b)`` (or ``-``) and its percentile-bootstrap interval, with a fixed seed.

    ``statistic`` takes a 2-D array (one resample a row) and returns one value a row, such as
    ``lambda x: np.percentile(x, 99, axis=1)``.
    """
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    rng = np.random.default_rng(seed)
    out = np.empty(resamples)
    chunk = max(1, int(2e6 // max(a.size, b.size)))
    for start in range(0, resamples, chunk):
        rows = min(chunk, resamples - start)
        sa = statistic(a[rng.integers(0, a.size, size=(rows, a.size))])
        sb = statistic(b[rng.integers(0, b.size, size=(rows, b.size))])
        out[start:start + rows] = sa / sb if ratio else sa - sb
    point_a = float(statistic(a[None, :])[0])
    point_b = float(statistic(b[None, :])[0])
    point = point_a / point_b if ratio else point_a - point_b
    tail = (1 - confidence) / 2 * 100
    low, high = np.percentile(out, [tail, 100 - tail])
    return point, float(low), float(high), confidence


# --------------------------------------------------------------------------- judging

def _samples(x, name: str) -> tuple[np.ndarray, str, str | None]:
    """The samples of a Timing or a sequence of numbers, a name for them, and their in-turn group if any."""
    if isinstance(x, Timing):
        return np.asarray(x.samples_ns, dtype=np.float64), x.name, x.meta.get("in_turn")
    if isinstance(x, str | bytes) or not hasattr(x, "__len__"):
        raise TypeError(f"{name} must be a Timing or a sequence of numbers, not {type(x).__name__}")
    values = np.asarray(x, dtype=np.float64).ravel()
    if np.isnan(values).any():
        raise ValueError(f"{name} has NaN among its samples")
    return values, name, None


def _spread(values: np.ndarray) -> float:
    med = float(np.median(values))
    if med == 0:
        return 0.0
    return float((np.percentile(values, 90) - np.percentile(values, 10)) / abs(med))


_STATISTICS = {
    "median": lambda x: np.median(x, axis=1),
    "mean": lambda x: np.mean(x, axis=1),
    "p90": lambda x: np.percentile(x, 90, axis=1),
    "p99": lambda x: np.percentile(x, 99, axis=1),
}


def judge(statement: str, a, b, *, at_least: float | None = None, at_most: float | None = None,
          scale: str = "ratio", paired: bool | None = None, statistic: str = "median",
          condition: Condition | None = None, a_name: str | None = None, b_name: str | None = None,
          unit: str = "", attempt: int = 1) -> Verdict:
    """Judge the claim that ``a / b`` (or ``a - b`` with ``scale="difference"``) lies above ``at_least``
    and/or below ``at_most``, from the samples of ``a`` and ``b``.

    ``a`` and ``b`` are :class:`~cachelab.timing.Timing` objects or sequences of numbers (throughputs of
    repeated runs, counts). They are paired when ``paired=True``, or by default when both are timings
    taken in turn by one :func:`~cachelab.timing.measure_together` call. ``b`` may also be a number, a
    value known without measuring it (what a mechanism guarantees): each sample of ``a`` is then compared
    with it, by the sign test's interval for the median of ``a - b`` (or ``a / b``). ``statistic`` is ``"median"``
    (rank-based intervals) or ``"mean"``, ``"p90"``, ``"p99"`` (bootstrap; at least 100 samples a side,
    unpaired). ``condition``: where the claim holds; when it does not hold here, the verdict is
    :data:`NOT_APPLICABLE` and nothing is judged.
    """
    arguments.text("statement", statement)
    if scale not in ("ratio", "difference"):
        raise ValueError(f"scale must be 'ratio' or 'difference', not {scale!r}")
    if at_least is None and at_most is None:
        raise ValueError("a claim needs a bound: at_least=..., at_most=..., or both")
    if at_least is not None:
        at_least = arguments.number("at_least", at_least)
    if at_most is not None:
        at_most = arguments.number("at_most", at_most)
    if at_least is not None and at_most is not None and not at_least < at_most:
        raise ValueError(f"at_least ({at_least:g}) must be below at_most ({at_most:g})")
    if scale == "ratio" and any(v is not None and v <= 0 for v in (at_least, at_most)):
        raise ValueError("a bound on a ratio must be positive")
    if statistic not in _STATISTICS:
        raise ValueError(f"statistic must be one of {', '.join(_STATISTICS)}, not {statistic!r}")
    if condition is not None:
        arguments.instance("condition", condition, Condition)
    xa, name_a, group_a = _samples(a, "a")
    one_sample = isinstance(b, int | float | np.integer | np.floating) and not isinstance(b, bool | np.bool_)
    if one_sample:  # a value known without measuring it: every sample of a against it
        if paired is False:
            raise ValueError("a number as b is compared with each sample of a: that comparison is paired")
        b_name, b, paired = b_name or f"{float(b):g}", np.full(xa.size, float(b)), True
    xb, name_b, group_b = _samples(b, "b")
    a_name, b_name = a_name or name_a, b_name or name_b
    if paired is None:
        paired = group_a is not None and group_a == group_b and xa.size == xb.size
    if paired and xa.size != xb.size:
        raise ValueError(f"paired samples come in pairs: a has {xa.size}, b has {xb.size}")
    if paired and statistic != "median":
        raise ValueError("paired samples are judged by the median of their ratios: use statistic='median'")
    if scale == "ratio" and ((xa <= 0).any() or (xb <= 0).any()):
        raise ValueError("a ratio needs positive samples; compare counts that can be 0 with scale='difference'")
    spread = max(_spread(xa), _spread(xb))
    common = dict(statement=statement, at_least=at_least, at_most=at_most, scale=scale, n_a=int(xa.size),
                  n_b=int(xb.size), spread=spread, a_name=a_name, b_name=b_name, unit=unit, condition=condition,
                  attempt=attempt)
    if statistic != "median":
        if min(xa.size, xb.size) < BOOTSTRAP_MIN_SAMPLES:
            raise ValueError(f"a {statistic} is judged by bootstrap, which needs at least {BOOTSTRAP_MIN_SAMPLES} "
                             f"samples a side; this claim has {xa.size} and {xb.size}")
        est, low, high, cov = bootstrap_interval(xa, xb, _STATISTICS[statistic], ratio=scale == "ratio")
        method = f"the {statistic}s, bootstrap of {xa.size:,} and {xb.size:,} samples"
    elif paired:
        d = np.log(xa / xb) if scale == "ratio" else xa - xb
        if d.size < 2:
            raise ValueError("a paired claim needs at least two pairs")
        est, low, high, cov = sign_interval(d)
        method = f"{d.size} samples against {b_name}" if one_sample else f"{d.size} pairs taken in turn"
    else:
        la, lb = (np.log(xa), np.log(xb)) if scale == "ratio" else (xa, xb)
        est, low, high, cov = shift_interval(la, lb)
        method = f"{xa.size} and {xb.size} independent samples"
    if cov < MIN_CONFIDENCE - 1e-9:
        raise ValueError(f"{statement!r}: {xa.size} and {xb.size} samples give at best a {cov:.0%} interval; a claim "
                         f"needs {MIN_CONFIDENCE:.0%} (about 5 pairs, or 3 samples a side): take more samples")
    if scale == "ratio" and statistic == "median":
        est, low, high = math.exp(est), math.exp(low), math.exp(high)
    if condition is not None and not condition.holds:
        return Verdict(verdict=NOT_APPLICABLE, estimate=est, low=low, high=high, confidence=cov, method=method,
                       **common)
    wrong_side = (at_least is not None and high < at_least) or (at_most is not None and low > at_most)
    right_side = (at_least is None or low > at_least) and (at_most is None or high < at_most)
    verdict = REVERSED if wrong_side else SHOWN if right_side else NOT_SHOWN
    return Verdict(verdict=verdict, estimate=est, low=low, high=high, confidence=cov, method=method, **common)


# --------------------------------------------------------------------------- where verdicts are kept

class ClaimLog:
    """The verdicts of one notebook's run, kept in ``<results>/claims/<notebook>.json`` as they come.

    A claim judged again (its cell executed again) replaces its earlier verdict and counts the attempt.
    """

    def __init__(self, notebook: str, folder: Path | None = None):
        from . import paths

        self.notebook = notebook
        self.folder = Path(folder) if folder is not None else paths.results_dir() / "claims"
        self.verdicts: dict[str, Verdict] = {}
        self.path.unlink(missing_ok=True)  # an earlier run's verdicts are not this run's

    @property
    def path(self) -> Path:
        return self.folder / f"{self.notebook}.json"

    def attempt_of(self, statement: str) -> int:
        old = self.verdicts.get(statement)
        return 1 if old is None else old.attempt + 1

    def add(self, verdict: Verdict) -> Verdict:
        self.verdicts[verdict.statement] = verdict
        self.folder.mkdir(parents=True, exist_ok=True)
        payload = {"notebook": self.notebook, "claims": [v.to_dict() for v in self.verdicts.values()]}
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload, indent=1, ensure_ascii=False), encoding="utf-8")
        tmp.replace(self.path)
        return verdict


def raise_if_strict(verdict: Verdict) -> None:
    """Under ``CACHELAB_CLAIMS=strict``: :class:`ClaimReversed` for a reversed claim, :class:`ClaimNotShown` for
    one not shown (the runner executes its cell again)."""
    if not strict():
        return
    if verdict.verdict == REVERSED:
        raise ClaimReversed(verdict.sentence())
    if verdict.verdict == NOT_SHOWN:
        raise ClaimNotShown(f"(judged {verdict.attempt} time(s) in this kernel) {verdict.sentence()}")


def load_log(path: Path) -> list[dict]:
    """The verdicts saved in one claims file, as dictionaries (``verdict``, ``statement``, ``sentence``, ...)."""
    try:
        return list(json.loads(Path(path).read_text(encoding="utf-8")).get("claims", []))
    except (OSError, ValueError):
        return []


def not_shown(folder: Path) -> dict[str, list[dict]]:
    """Per notebook, the claims of a run's results folder that were not shown (not shown, or reversed)."""
    out = {}
    for path in sorted(Path(folder).glob("[0-9][0-9]_*.json")):
        bad = [c for c in load_log(path) if c.get("verdict") in (NOT_SHOWN, REVERSED)]
        if bad:
            out[path.stem] = bad
    return out
