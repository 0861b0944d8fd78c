"""The few chart types the series needs, in one consistent style, each saved to ``figures/`` as PNG.

* :func:`latency_chart`: cost per operation at each step, log axis, p10-p90 bars.
* :func:`speedup_chart`: how many times faster than a baseline.
* :func:`curve_chart`: any family of curves (hit ratio against cache size, keys moved against nodes...).
* :func:`hit_ratio_chart`: hit ratio against cache size, for one or more policies.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import matplotlib

if "ipykernel" not in sys.modules and "MPLBACKEND" not in __import__("os").environ:
    matplotlib.use("Agg")  # scripts and tests draw to files; notebooks keep their inline backend
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, PercentFormatter  # noqa: E402

from . import arguments, paths  # noqa: E402
from .timing import Timing, format_ns  # noqa: E402

PALETTE = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C",
           "#CCB974", "#64B5CD")
STYLE = {
    "figure.figsize": (8, 4.2), "figure.dpi": 100, "savefig.dpi": 120, "axes.grid": True,
    "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False, "font.size": 10,
    "axes.titlesize": 12, "axes.titleweight": "bold", "legend.frameon": False,
    "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
}
plt.rcParams.update(STYLE)

_ns_formatter = FuncFormatter(lambda v, _pos: format_ns(v, digits=2))


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_") or "figure"


def save(fig, name: str) -> Path:
    """Save ``fig`` as ``figures/<name>.png`` (``$CACHELAB_FIGURES_DIR``) and return the path."""
    if not hasattr(fig, "savefig"):
        raise TypeError(f"fig must be a matplotlib Figure, not {type(fig).__name__}")
    arguments.text("name", name)
    path = paths.figures_dir() / f"{_slug(name)}.png"
    fig.savefig(path, bbox_inches="tight")
    return path


def _finish(fig, ax, title, save_as):
    if title:
        ax.set_title(title)
    fig.tight_layout()
    if save_as:
        save(fig, save_as)
    return fig


def latency_chart(timings: Sequence[Timing], *, title: str = "Cost per operation",
                  colors: Mapping[str, str] | None = None, ax=None, save_as: str | None = None,
                  annotate: bool = True):
    """Horizontal bars of the median cost of each timing on a log axis, with p10-p90 error bars."""
    timings = [arguments.instance("each timing", t, Timing) for t in timings]
    if not timings:
        raise ValueError("latency_chart needs at least one Timing")
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(8, 0.5 * len(timings) + 1.4))
    names = [t.name for t in timings]
    med = [t.median for t in timings]
    low = [t.median - t.p10 for t in timings]
    high = [t.p90 - t.median for t in timings]
    y = range(len(timings))
    color = [(colors or {}).get(n, PALETTE[i % len(PALETTE)]) for i, n in enumerate(names)]
    ax.barh(y, med, xerr=[low, high], color=color, capsize=3, error_kw={"elinewidth": 1})
    ax.set_yticks(list(y), names)
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(_ns_formatter)
    ax.set_xlabel("time per operation (median, bars: p10-p90; log scale)")
    ax.grid(axis="y", visible=False)
    if annotate:
        for i, t in enumerate(timings):
            ax.text(t.p90 * 1.15, i, format_ns(t.median), va="center", fontsize=9)
        ax.set_xlim(right=max(t.p90 for t in timings) * 8)
    return _finish(fig, ax, title, save_as)


def speedup_chart(timings: Sequence[Timing], baseline: Timing, *, title: str | None = None,
                  ax=None, save_as: str | None = None):
    """How many times faster than ``baseline`` each timing is (log axis), labelled with the factor."""
    timings = [arguments.instance("each timing", t, Timing) for t in timings]
    arguments.instance("baseline", baseline, Timing)
    if not timings:
        raise ValueError("speedup_chart needs at least one Timing")
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(8, 0.5 * len(timings) + 1.4))
    factors = [t.speedup_over(baseline) for t in timings]
    y = range(len(timings))
    ax.barh(y, factors, color=[PALETTE[i % len(PALETTE)] for i in y])
    ax.set_yticks(list(y), [t.name for t in timings])
    ax.invert_yaxis()
    ax.set_xscale("log")
    ax.axvline(1, color="black", lw=0.8)
    ax.set_xlabel(f"speedup over '{baseline.name}' (x, log scale)")
    ax.grid(axis="y", visible=False)
    for i, f in enumerate(factors):
        ax.text(f * 1.1, i, f"{f:,.3g}x", va="center", fontsize=9)
    ax.set_xlim(right=max(factors + [1]) * 8)
    return _finish(fig, ax, title or f"Speedup over {baseline.name}", save_as)


def curve_chart(x: Sequence[float], curves: Mapping[str, Sequence[float]], *, xlabel: str, ylabel: str,
                title: str | None = None, logx: bool = False, logy: bool = False, percent: bool = False,
                ns_axis: bool = False, markers: bool = True, ax=None, save_as: str | None = None,
                styles: Mapping[str, Mapping] | None = None):
    """One line per entry of ``curves`` over the shared ``x``.

    ``percent=True`` reads y as a fraction and shows percent; ``ns_axis=True`` formats y as durations.
    """
    arguments.instance("curves", curves, Mapping)
    if not curves:
        raise ValueError("curve_chart needs at least one curve")
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots()
    for label, ys in curves.items():
        if len(ys) != len(x):
            raise ValueError(f"curve {label!r} has {len(ys)} points for {len(x)} x values")
        kw = {"marker": "o", "ms": 4} if markers else {}
        kw.update((styles or {}).get(label, {}))
        ax.plot(x, ys, label=label, **kw)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    if percent:
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    if ns_axis:
        ax.yaxis.set_major_formatter(_ns_formatter)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if len(curves) > 1:
        ax.legend()
    return _finish(fig, ax, title, save_as)


def hit_ratio_chart(sizes: Sequence[int], ratios: Mapping[str, Sequence[float]], *,
                    title: str = "Hit ratio against cache size", ceiling: float | None = None,
                    ax=None, save_as: str | None = None):
    """Hit ratio (y, percent) against cache size (x, log), one line per policy; ``ceiling`` as a dashed line."""
    if len(sizes) == 0:
        raise ValueError("hit_ratio_chart needs at least one cache size")
    arguments.instance("ratios", ratios, Mapping)
    if any(not 0 <= r <= 1 for ys in ratios.values() for r in ys):
        raise ValueError("hit ratios are fractions between 0 and 1")
    fig = curve_chart(sizes, ratios, xlabel="cache size (entries, log scale)", ylabel="hit ratio",
                      title=title, logx=True, percent=True, ax=ax)
    ax = fig.axes[0] if ax is None else ax
    if ceiling is not None:
        ax.axhline(ceiling, ls="--", color="gray", lw=1)
        ax.text(sizes[0], ceiling, " ceiling: repeated requests", va="bottom", color="gray", fontsize=9)
    ax.set_ylim(0, 1.02)
    if save_as:
        save(fig, save_as)
    return fig


def distribution_chart(samples: Mapping[str, Iterable[float]], *, title: str = "Latency distribution",
                       ax=None, save_as: str | None = None):
    """Empirical CDFs of latencies (ns) on a log axis: hits and misses of one stream show as two steps."""
    import numpy as np

    arguments.instance("samples", samples, Mapping)
    if not samples:
        raise ValueError("distribution_chart needs at least one set of samples")

    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots()
    for label, values in samples.items():
        v = np.sort(np.asarray(list(values), dtype=float))
        if v.size:
            ax.step(v, np.arange(1, v.size + 1) / v.size, where="post", label=label)
    ax.set_xscale("log")
    ax.xaxis.set_major_formatter(_ns_formatter)
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel("latency per request (log scale)")
    ax.set_ylabel("requests at or below")
    if len(samples) > 1:
        ax.legend()
    return _finish(fig, ax, title, save_as)


def bar_chart(values: Mapping[str, float] | Mapping[str, Mapping[str, float]], *, ylabel: str,
              title: str | None = None, logy: bool = False, percent: bool = False, annotate: bool = True,
              ax=None, save_as: str | None = None):
    """Bars for categories: ``{category: value}``, or grouped ``{series: {category: value}}``.

    For counts by category (keys per node, backend queries per strategy), where a line would suggest an
    order that is not there. Each bar is labelled with its value unless ``annotate`` is false.
    """
    arguments.instance("values", values, Mapping)
    if not values:
        raise ValueError("bar_chart needs at least one value")
    first = next(iter(values.values()))
    series = values if isinstance(first, Mapping) else {"": values}
    categories = list(dict.fromkeys(c for s in series.values() for c in s))
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(8, 4))
    width = 0.8 / len(series)
    for i, (label, data) in enumerate(series.items()):
        xs = [j + (i - (len(series) - 1) / 2) * width for j in range(len(categories))]
        ys = [data.get(c, 0) for c in categories]
        bars = ax.bar(xs, ys, width=width * 0.95, label=label or None, color=PALETTE[i % len(PALETTE)])
        if annotate:
            ax.bar_label(bars, labels=[f"{y:.0%}" if percent else f"{y:,.3g}" for y in ys], fontsize=8, padding=2)
    ax.set_xticks(range(len(categories)), categories)
    ax.set_ylabel(ylabel)
    ax.grid(axis="x", visible=False)
    if logy:
        ax.set_yscale("log")
    if percent:
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    if len(series) > 1:
        ax.legend()
    return _finish(fig, ax, title, save_as)
