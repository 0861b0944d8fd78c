"""The few chart types the series needs, in one consistent style, each saved to ``figures/`` as PNG.

* :func:`dot_chart`: the cost of each operation as a dot (the median) with a whisker (p10-p90, or min-max
  when there are too few samples for percentiles), on a log axis whose ticks read in ns, µs, ms or s.
  A bar's length means nothing on a log axis, so timings that span orders of magnitude are dots.
* :func:`latency_chart`: the same dot chart under its older name.
* :func:`speedup_chart`: how many times faster than a baseline, as dots on a log axis.
* :func:`curve_chart`: any family of curves (hit ratio against cache size, keys moved against nodes...),
  each curve with its own line style and marker so that none hides another.
* :func:`hit_ratio_chart`: hit ratio against cache size, for one or more policies, with the ceiling of a
  cache that starts empty and, given one, Belady's optimal (OPT) curve.
* :func:`marked_panels`: curve charts side by side, each with its own x and vertical marks (an event, a
  crossover).
* :func:`hit_ratio_panels`: hit ratio against cache size in panels side by side, with reference curves
  (OPT, A0...) per panel, for policies that may be undefined at some sizes.
* :func:`share_chart`: how a whole splits into steps (shares of one operation's time), one bar per step and
  series, on a linear axis in percent.
* :func:`distribution_chart`: empirical CDFs of latencies.
* :func:`bar_chart`: counts by category, on a linear axis (with ``logy=True`` it draws dots instead).
* :func:`percentile_timeline`: latency percentiles (p50, p99) per time step, in stacked panels that share
  their axes, with moments (a fault, a recovery) marked.
* :func:`time_axis`: tick labels in the unit of a time axis (``30 ms``, not ``3x10^7``), for any axis.
* :func:`timeline_chart`: values over time as steps, with events marked and a stretch shaded.
* :func:`requests_chart`: every request of a run as a dot (start, latency), coloured by its outcome, a
  panel per run.
* A server under load (notebook 07): :func:`interval_chart` (repeated measurements with the interval of their
  median), :func:`cold_start_chart`, :func:`open_loop_chart` (latency against offered rate), :func:`strip_chart`,
  :func:`scatter_chart` and :func:`settling_chart`.
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
from matplotlib.ticker import Formatter, FuncFormatter, LogLocator, NullFormatter, PercentFormatter  # noqa: E402

from . import arguments, paths  # noqa: E402
from .timing import Timing, format_factor, format_ns  # noqa: E402

PALETTE = ("#4C72B0", "#DD8452", "#55A868", "#C44E52", "#8172B3", "#937860", "#DA8BC3", "#8C8C8C",
           "#CCB974", "#64B5CD")
STYLE = {
    "figure.figsize": (8, 4.2), "figure.dpi": 100, "savefig.dpi": 120, "axes.grid": True,
    "grid.alpha": 0.3, "axes.spines.top": False, "axes.spines.right": False, "font.size": 10,
    "axes.titlesize": 12, "axes.titleweight": "bold", "legend.frameon": False,
    "axes.prop_cycle": matplotlib.cycler(color=PALETTE),
}
plt.rcParams.update(STYLE)

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "<", ">", "*")
LINESTYLES = ("-", "--", "-.", ":")
MIN_SAMPLES_FOR_PERCENTILES = 10
"""Below this many samples a whisker shows the min-max range: p10-p90 of three samples means little."""


class TimeFormatter(Formatter):
    """Tick labels for an axis in nanoseconds, written in the unit their magnitude calls for: ``30 ms``.

    As a minor-tick formatter (``minor=True``) it labels only when the axis spans less than a factor of
    ``minor_span``, where a log axis has too few major ticks to read; otherwise minor ticks stay unlabelled.
    """

    def __init__(self, *, digits: int = 2, minor: bool = False, minor_span: float = 30.0):
        self.digits, self.minor, self.minor_span = digits, minor, minor_span

    def __call__(self, x, pos=None):
        if self.minor:
            low, high = sorted(abs(v) for v in self.axis.get_view_interval())
            if low <= 0 or high / low > self.minor_span:
                return ""
        if x == 0:
            return "0"
        return format_ns(x, digits=self.digits)


def time_axis(ax, which: str = "x"):
    """Label the ``which`` axis (``"x"`` or ``"y"``) of ``ax`` in time units; the values are nanoseconds.

    Works on linear and log axes; on a log axis spanning less than a decade or so the minor ticks are
    labelled too, so that the reader never has to decode ``3x10^7``. Returns ``ax``.
    """
    if which not in ("x", "y"):
        raise ValueError(f"which must be 'x' or 'y', not {which!r}")
    axis = ax.xaxis if which == "x" else ax.yaxis
    axis.set_major_formatter(TimeFormatter())
    if axis.get_scale() == "log":
        axis.set_minor_formatter(TimeFormatter(minor=True))
    else:
        axis.set_minor_formatter(NullFormatter())
    return ax


_ns_formatter = FuncFormatter(lambda v, _pos: format_ns(v, digits=2))  # kept for callers that used it


factor_text = format_factor  # a ratio to two significant figures: ``330,000x``, ``4.2x``


def _plain_number(v, _pos=None) -> str:
    return f"{v:,.0f}" if v >= 1 else f"{v:g}"


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


def _finish_figure(fig, title, save_as):
    """:func:`_finish` for a figure of several panels: ``title`` over all of them."""
    if title:
        fig.suptitle(title, fontweight="bold")
    fig.tight_layout()
    if save_as:
        save(fig, save_as)
    return fig


def _whisker(t: Timing) -> tuple[float, float, str]:
    """The low and high ends of a timing's whisker, and what they are."""
    if t.n >= MIN_SAMPLES_FOR_PERCENTILES:
        return t.p10, t.p90, "p10-p90"
    return min(t.samples_ns), max(t.samples_ns), "min-max"


def dot_chart(timings: Sequence[Timing], *, title: str | None = "Cost per operation",
              colors: Mapping[str, str] | None = None, ax=None, save_as: str | None = None,
              annotate: bool = True, logx: bool = True, xlabel: str | None = None):
    """One row per timing: a dot at the median and a whisker over the spread, on a log axis by default.

    The whisker is p10-p90 when a timing has at least :data:`MIN_SAMPLES_FOR_PERCENTILES` samples and
    min-max otherwise (the axis label says which). A timing whose spread marks it noisy
    (``Timing.noisy``) is drawn hollow and labelled "noisy". Tick labels read in ns, µs, ms or s.
    ``colors`` maps a timing's name to a colour. ``logx=False`` draws a linear axis from zero.
    """
    timings = [arguments.instance("each timing", t, Timing) for t in timings]
    if not timings:
        raise ValueError("dot_chart needs at least one Timing")
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(8, 0.5 * len(timings) + 1.4))
    kinds = set()
    for i, t in enumerate(timings):
        color = (colors or {}).get(t.name, PALETTE[i % len(PALETTE)])
        low, high, kind = _whisker(t)
        kinds.add(kind)
        ax.plot([low, high], [i, i], color=color, lw=2, solid_capstyle="butt", zorder=2)
        ax.plot([low, low], [i - 0.15, i + 0.15], color=color, lw=1, zorder=2)
        ax.plot([high, high], [i - 0.15, i + 0.15], color=color, lw=1, zorder=2)
        ax.plot([t.median], [i], marker="o", ms=7, color=color, zorder=3, ls="none",
                markerfacecolor="white" if t.noisy else color, markeredgewidth=1.5)
    ax.set_yticks(range(len(timings)), [t.name for t in timings])
    ax.set_ylim(len(timings) - 0.5, -0.5)
    if logx:
        ax.set_xscale("log")
    else:
        ax.set_xlim(left=0)
    time_axis(ax, "x")
    spread = " or ".join(sorted(kinds, reverse=True))
    ax.set_xlabel(xlabel or f"time per operation (dot: median, whisker: {spread}{'; log scale' if logx else ''})")
    ax.grid(axis="y", visible=False)
    if annotate:
        highest = max(_whisker(t)[1] for t in timings)
        for i, t in enumerate(timings):
            label = format_ns(t.median, digits=2) + ("  (noisy)" if t.noisy else "")
            ax.text(_whisker(t)[1] * 1.15 if logx else _whisker(t)[1] + 0.02 * highest, i, "  " + label,
                    va="center", fontsize=9)
        if logx:
            lowest = min(_whisker(t)[0] for t in timings)
            ax.set_xlim(lowest / 2, highest * 12)
        else:
            ax.set_xlim(0, highest * 1.35)
    return _finish(fig, ax, title, save_as)


def latency_chart(timings: Sequence[Timing], *, title: str = "Cost per operation",
                  colors: Mapping[str, str] | None = None, ax=None, save_as: str | None = None,
                  annotate: bool = True):
    """The cost of each timing as a dot and a whisker on a log axis: :func:`dot_chart` under its older name."""
    timings = [arguments.instance("each timing", t, Timing) for t in timings]
    if not timings:
        raise ValueError("latency_chart needs at least one Timing")
    return dot_chart(timings, title=title, colors=colors, ax=ax, save_as=save_as, annotate=annotate)


def speedup_chart(timings: Sequence[Timing], baseline: Timing, *, title: str | None = None,
                  ax=None, save_as: str | None = None, colors: Mapping[str, str] | None = None):
    """How many times faster than ``baseline`` each timing is: a dot per timing on a log axis, labelled.

    The speedup is a ratio of medians; a line at 1 marks the baseline. One label per timing, in order.
    """
    timings = [arguments.instance("each timing", t, Timing) for t in timings]
    arguments.instance("baseline", baseline, Timing)
    if not timings:
        raise ValueError("speedup_chart needs at least one Timing")
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(8, 0.5 * len(timings) + 1.4))
    factors = [t.speedup_over(baseline) for t in timings]
    for i, (t, f) in enumerate(zip(timings, factors, strict=True)):
        color = (colors or {}).get(t.name, PALETTE[i % len(PALETTE)])
        ax.plot([1, f], [i, i], color=color, lw=0.8, alpha=0.5, zorder=1)
        ax.plot([f], [i], marker="o", ms=7, color=color, ls="none", zorder=3)
    ax.set_yticks(range(len(timings)), [t.name for t in timings])
    ax.set_ylim(len(timings) - 0.5, -0.5)
    ax.set_xscale("log")
    ax.axvline(1, color="black", lw=0.8)
    ax.xaxis.set_major_locator(LogLocator(base=10, numticks=6))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _pos: _plain_number(v) + "x"))
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xlabel(f"speedup over '{baseline.name}' (x, log scale)")
    ax.grid(axis="y", visible=False)
    for i, f in enumerate(factors):
        ax.text(f * 1.3, i, factor_text(f), va="center", fontsize=9)
    ax.set_xlim(min(factors + [1]) / 3, max(factors + [1]) * 20)
    return _finish(fig, ax, title or f"Speedup over {baseline.name}", save_as)


def curve_chart(x: Sequence[float], curves: Mapping[str, Sequence[float]], *, xlabel: str, ylabel: str,
                title: str | None = None, logx: bool = False, logy: bool = False, percent: bool = False,
                ns_axis: bool = False, markers: bool = True, ax=None, save_as: str | None = None,
                styles: Mapping[str, Mapping] | None = None, ns_xaxis: bool = False):
    """One line per entry of ``curves`` over the shared ``x``.

    Each curve gets its own line style and (with ``markers``) its own marker, so that two curves which
    coincide both stay visible; ``styles`` maps a label to matplotlib keywords that override them.
    ``percent=True`` reads y as a fraction and shows percent; ``ns_axis=True`` labels y as durations
    (nanoseconds) and ``ns_xaxis=True`` does the same for x.
    """
    arguments.instance("curves", curves, Mapping)
    if not curves:
        raise ValueError("curve_chart needs at least one curve")
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots()
    for i, (label, ys) in enumerate(curves.items()):
        if len(ys) != len(x):
            raise ValueError(f"curve {label!r} has {len(ys)} points for {len(x)} x values")
        kw = {"ls": LINESTYLES[i % len(LINESTYLES)], "color": PALETTE[i % len(PALETTE)]}
        if markers:
            kw.update(marker=MARKERS[i % len(MARKERS)], ms=max(3.0, 6.5 - 0.8 * i))
        kw.update((styles or {}).get(label, {}))
        ax.plot(x, ys, label=label, **kw)
    if logx:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(_plain_number))
    if logy:
        ax.set_yscale("log")
        ax.yaxis.set_major_formatter(FuncFormatter(_plain_number))
    if percent:
        ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    if ns_axis:
        time_axis(ax, "y")
    if ns_xaxis:
        time_axis(ax, "x")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if len(curves) > 1:
        ax.legend()
    return _finish(fig, ax, title, save_as)


CEILING_LABEL = "ceiling of a cache that starts empty"
OPT_LABEL = "OPT (Belady): the best eviction can do"


def hit_ratio_chart(sizes: Sequence[int], ratios: Mapping[str, Sequence[float]], *,
                    title: str = "Hit ratio against cache size", ceiling: float | None = None,
                    ax=None, save_as: str | None = None, opt: Sequence[float] | None = None,
                    ceiling_label: str = CEILING_LABEL, logx: bool = True):
    """Hit ratio (y, percent) against cache size (x, log unless ``logx=False``), one line per policy.

    ``ceiling`` is drawn as a dashed line: the share of requests that repeat an earlier one, which bounds
    a cache that starts empty and fills on demand (a warmed cache can beat it; say so in
    ``ceiling_label`` if yours is another bound). ``opt`` is Belady's optimal hit ratio at each size
    (:func:`cachelab.policies.belady_curve`), drawn in black: no eviction policy does better on the stream.
    """
    if len(sizes) == 0:
        raise ValueError("hit_ratio_chart needs at least one cache size")
    arguments.instance("ratios", ratios, Mapping)
    all_ratios = [r for ys in ratios.values() for r in ys] + list(opt or [])
    if any(not 0 <= r <= 1 for r in all_ratios):
        raise ValueError("hit ratios are fractions between 0 and 1")
    if opt is not None and len(opt) != len(sizes):
        raise ValueError(f"opt has {len(opt)} points for {len(sizes)} sizes")
    fig = curve_chart(sizes, ratios, xlabel=f"cache size (entries{', log scale' if logx else ''})",
                      ylabel="hit ratio", title=title, logx=logx, percent=True, ax=ax)
    ax = fig.axes[0] if ax is None else ax
    if opt is not None:
        ax.plot(sizes, opt, color="black", lw=1.6, ls="-", marker="*", ms=7, label=OPT_LABEL, zorder=1)
    if ceiling is not None:
        ax.axhline(ceiling, ls="--", color="gray", lw=1, label=ceiling_label, zorder=0)
    if logx:
        step = -(-len(sizes) // 8)  # at most about eight labels, so that they never run into each other
        ax.set_xticks(list(sizes), [_plain_number(v) if i % step == 0 else "" for i, v in enumerate(sizes)])
        ax.xaxis.set_minor_formatter(NullFormatter())
    if opt is not None or ceiling is not None or len(ratios) > 1:
        ax.legend(fontsize=8, loc="lower right")
    ax.set_ylim(0, 1.02)
    if save_as:
        save(fig, save_as)
    return fig


_PANEL_KEYS = {"x", "curves", "xlabel", "ylabel", "title", "logx", "logy", "percent", "ns_axis", "markers", "styles",
               "marks", "yformat"}


def marked_panels(panels: Sequence[Mapping], *, sharey: bool = False, save_as: str | None = None,
                  width: float = 6.0, height: float = 4.3):
    """Curve charts side by side, one per entry of ``panels``; returns the figure.

    Each panel is a mapping of :func:`curve_chart`'s arguments (``x``, ``curves``, ``xlabel``, ``ylabel``, and
    optionally ``title``, ``logx``, ``logy``, ``percent``, ``ns_axis``, ``markers``, ``styles``), plus ``marks``,
    ``{label: x}`` drawn as grey dashed vertical lines (an empty label draws the line alone), and ``yformat``, a
    function ``value -> text`` for the y tick labels.
    """
    panels = list(panels)
    if not panels:
        raise ValueError("marked_panels needs at least one panel")
    for i, panel in enumerate(panels):
        arguments.instance(f"panel {i}", panel, Mapping)
        unknown = set(panel) - _PANEL_KEYS
        missing = {"x", "curves", "xlabel", "ylabel"} - set(panel)
        if unknown or missing:
            raise ValueError(f"panel {i}: unknown keys {sorted(unknown)}, missing keys {sorted(missing)}")
    fig, axes = plt.subplots(1, len(panels), figsize=(width * len(panels), height), sharey=sharey, squeeze=False)
    for ax, panel in zip(axes[0], panels, strict=True):
        options = {k: v for k, v in panel.items() if k not in {"x", "curves", "xlabel", "ylabel", "marks", "yformat"}}
        curve_chart(panel["x"], panel["curves"], xlabel=panel["xlabel"], ylabel=panel["ylabel"], ax=ax, **options)
        if panel.get("yformat") is not None:
            ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _pos, f=panel["yformat"]: f(v)))
        for label, x in (panel.get("marks") or {}).items():
            ax.axvline(x, color="gray", ls="--", lw=1, label=label or None)
        if panel.get("marks") and any(panel["marks"]):
            ax.legend(fontsize=8)
    fig.tight_layout()
    if save_as:
        save(fig, save_as)
    return fig


BOUND_STYLES = ({"color": "black", "ls": "-", "marker": "*", "ms": 7, "lw": 1.6},
                {"color": "black", "ls": "--", "marker": "x", "ms": 6, "lw": 1.4},
                {"color": "dimgray", "ls": ":", "marker": "+", "ms": 7, "lw": 1.4})


def hit_ratio_panels(sizes: Sequence[int], panels: Mapping[str, Mapping[str, Sequence[float]]], *,
                     bounds: Mapping[str, Mapping[str, Sequence[float]]] | None = None,
                     ceiling: float | None = None, ceiling_label: str = CEILING_LABEL,
                     save_as: str | None = None, width: float = 6.0, height: float = 4.6):
    """Hit ratio (percent) against cache size (log scale), one panel per entry of ``panels``, side by side.

    ``panels`` maps a panel's title to ``{policy: hit ratio at each size}``; a ratio may be NaN where a policy
    is not defined at that size (it is left out of the line). ``bounds`` maps a panel's title to reference
    curves, ``{label: hit ratio at each size}`` (Belady's OPT, the A0 bound...), drawn in black with a style
    each. ``ceiling`` (dashed) is the share of requests that repeat an earlier one. The panels share the y axis.
    """
    import math

    arguments.instance("panels", panels, Mapping)
    if not panels or len(sizes) == 0:
        raise ValueError("hit_ratio_panels needs at least one panel and one cache size")
    bounds = dict(bounds or {})
    unknown = set(bounds) - set(panels)
    if unknown:
        raise ValueError(f"bounds name panels that do not exist: {sorted(unknown)}")
    for title, curves in [*panels.items(), *bounds.items()]:
        for label, ys in curves.items():
            if len(ys) != len(sizes):
                raise ValueError(f"{title}: {label!r} has {len(ys)} points for {len(sizes)} sizes")
            if any(not (math.isnan(y) or 0 <= y <= 1) for y in ys):
                raise ValueError(f"{title}: {label!r}: hit ratios are fractions between 0 and 1 (or NaN)")
    fig, axes = plt.subplots(1, len(panels), figsize=(width * len(panels), height), sharey=True, squeeze=False)
    for ax, (title, curves) in zip(axes[0], panels.items(), strict=True):
        curve_chart(sizes, curves, xlabel="cache size (entries, log scale)", ylabel="hit ratio", logx=True,
                    percent=True, ax=ax)
        for i, (label, ys) in enumerate(bounds.get(title, {}).items()):
            ax.plot(sizes, ys, label=label, zorder=1, **BOUND_STYLES[i % len(BOUND_STYLES)])
        if ceiling is not None:
            ax.axhline(ceiling, ls="--", color="gray", lw=1, label=ceiling_label, zorder=0)
        step = -(-len(sizes) // 8)
        ax.set_xticks(list(sizes), [_plain_number(v) if i % step == 0 else "" for i, v in enumerate(sizes)])
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_ylim(0, 1.02)
        ax.set_title(title)
        ax.legend(fontsize=8, loc="lower right")
    for ax in axes[0][1:]:
        ax.set_ylabel("")
    fig.tight_layout()
    if save_as:
        save(fig, save_as)
    return fig


def share_chart(shares: Mapping[str, Mapping[str, float]], *, title: str | None = None,
                xlabel: str = "share of the whole", ax=None, save_as: str | None = None):
    """Horizontal bars: ``{series: {step: share}}``, a group of bars per step (the same steps in every series),
    shares as fractions read in percent. For where one operation's time goes, step by step."""
    arguments.instance("shares", shares, Mapping)
    if not shares:
        raise ValueError("share_chart needs at least one series")
    steps = list(next(iter(shares.values())))
    if any(list(s) != steps for s in shares.values()):
        raise ValueError("every series needs the same steps, in the same order")
    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots(figsize=(8, 0.28 * len(steps) * len(shares) + 1.6))
    height = 0.8 / len(shares)
    for i, (label, share) in enumerate(shares.items()):
        ys = [j + (i - (len(shares) - 1) / 2) * height for j in range(len(steps))]
        ax.barh(ys, [share[s] for s in steps], height=height * 0.95, label=label, color=PALETTE[i % len(PALETTE)])
    ax.set_yticks(range(len(steps)), steps)
    ax.invert_yaxis()
    ax.xaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel(xlabel)
    ax.grid(axis="y", visible=False)
    if len(shares) > 1:
        ax.legend(loc="lower right")
    return _finish(fig, ax, title, save_as)


def distribution_chart(samples: Mapping[str, Iterable[float]], *, title: str = "Latency distribution",
                       ax=None, save_as: str | None = None):
    """Empirical CDFs of latencies (ns) on a log axis: hits and misses of one stream show as two steps."""
    import numpy as np

    arguments.instance("samples", samples, Mapping)
    if not samples:
        raise ValueError("distribution_chart needs at least one set of samples")

    fig, ax = (ax.figure, ax) if ax is not None else plt.subplots()
    for i, (label, values) in enumerate(samples.items()):
        v = np.sort(np.asarray(list(values), dtype=float))
        if v.size:
            ax.step(v, np.arange(1, v.size + 1) / v.size, where="post", label=label,
                    ls=LINESTYLES[i % len(LINESTYLES)], color=PALETTE[i % len(PALETTE)])
    ax.set_xscale("log")
    time_axis(ax, "x")
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
    order that is not there. Each bar is labelled with its value unless ``annotate`` is false. Bars stand
    on a linear axis from zero; with ``logy=True`` each value is drawn as a dot instead of a bar.
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
        color = PALETTE[i % len(PALETTE)]
        labels = [f"{y:.0%}" if percent else f"{y:,.3g}" for y in ys]
        if logy:  # a bar's length means nothing on a log axis: a dot marks the value instead
            ax.plot(xs, ys, ls="none", marker=MARKERS[i % len(MARKERS)], ms=8, color=color, label=label or None)
            if annotate:
                for x_, y_, text_ in zip(xs, ys, labels, strict=True):
                    ax.annotate(text_, (x_, y_), textcoords="offset points", xytext=(0, 6), ha="center", fontsize=8)
            continue
        bars = ax.bar(xs, ys, width=width * 0.95, label=label or None, color=color)
        if annotate:
            ax.bar_label(bars, labels=labels, fontsize=8, padding=2)
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


def bar_panels(panels: Mapping[str, tuple[Mapping, str]], *, save_as: str | None = None,
               figsize: tuple[float, float] | None = None):
    """Bar charts side by side, one per entry of ``panels``: ``{title: (values, ylabel)}``, each as
    :func:`bar_chart` draws it (the same categories and series in every panel, to be read across)."""
    arguments.instance("panels", panels, Mapping)
    if not panels:
        raise ValueError("bar_panels needs at least one panel")
    fig, axes = plt.subplots(1, len(panels), figsize=figsize or (6 * len(panels), 4.2), squeeze=False)
    for ax, (title, (values, ylabel)) in zip(axes[0], panels.items(), strict=True):
        bar_chart(values, ylabel=ylabel, title=title, ax=ax)
    fig.tight_layout()
    if save_as:
        save(fig, save_as)
    return fig


def even_split_chart(counts: Mapping[str, float], *, ylabel: str, title: str | None = None,
                even_label: str = "an even split", save_as: str | None = None):
    """Bars of counts by category with a dashed line at the even split (their total over their number): how
    evenly keys spread over nodes."""
    arguments.instance("counts", counts, Mapping)
    if not counts:
        raise ValueError("even_split_chart needs at least one count")
    fig = bar_chart(dict(counts), ylabel=ylabel, title=title)
    ax = fig.axes[0]
    ax.axhline(sum(counts.values()) / len(counts), color="gray", ls="--", lw=1, label=even_label)
    ax.legend(loc="lower right")
    return _finish(fig, ax, None, save_as)


def rolling_ratio_chart(outcomes: Sequence[float], window: int, *, ylabel: str, title: str | None = None,
                        shade: tuple[float, float, str] | None = None, save_as: str | None = None):
    """The mean of ``outcomes`` (1 for a hit, 0 for a miss) over the last ``window`` of them, request by request,
    with ``shade = (start, end, label)`` marking a span of requests (a node down, say)."""
    import numpy as np

    values = np.asarray(outcomes, dtype=float)
    window = arguments.integer("window", window, minimum=1)
    if values.size < window:
        raise ValueError(f"{values.size} outcomes are fewer than a window of {window}")
    rolling = np.convolve(values, np.ones(window) / window, mode="valid")
    fig = curve_chart(np.arange(window, values.size + 1), {f"{ylabel} over the last {window} requests": rolling},
                      xlabel="request", ylabel=ylabel, percent=True, markers=False)
    ax = fig.axes[0]
    if shade is not None:
        start, end, label = shade
        ax.axvspan(start, end, color="gray", alpha=0.15, label=label)
    ax.set_ylim(0, 1.05)
    ax.legend(loc="lower right")
    return _finish(fig, ax, title, save_as)


def percentile_timeline(panels: Mapping[str, Mapping[str, Mapping[str, Sequence[float]]]], *, xlabel: str,
                        events: Mapping[str, Mapping[str, float]] | None = None, title: str | None = None,
                        ylabel: str = "latency", save_as: str | None = None, width: float = 9.0,
                        panel_height: float = 2.7):
    """Latency percentiles over time, one panel per entry of ``panels``, stacked and sharing both axes.

    A panel maps a series label to ``{'start', 'p50', 'p99'}``: the start of each time step (x) and the median
    and 99th percentile of the latencies in it, in nanoseconds (NaN where a step had none). Each series keeps
    one colour in every panel; its p50 is a solid line and its p99 a dashed one, with dots, on a log axis whose
    ticks read in time units. ``events`` maps a panel to moments to mark (a label and its x): a vertical line.
    """
    import numpy as np

    arguments.instance("panels", panels, Mapping)
    if not panels:
        raise ValueError("percentile_timeline needs at least one panel")
    labels = list(dict.fromkeys(label for series in panels.values() for label in series))
    colour = {label: PALETTE[i % len(PALETTE)] for i, label in enumerate(labels)}
    fig, axes = plt.subplots(len(panels), 1, figsize=(width, panel_height * len(panels) + 0.6), sharex=True,
                             sharey=True, squeeze=False)
    for ax, (name, series) in zip(axes[:, 0], panels.items(), strict=True):
        for label, data in series.items():
            x = np.asarray(data["start"], dtype=float)
            for key, ls, marker in (("p50", "-", "o"), ("p99", "--", "^")):
                y = np.asarray(data[key], dtype=float)
                if y.size != x.size:
                    raise ValueError(f"{name}/{label}: {y.size} {key} values for {x.size} steps")
                ax.plot(x, y, ls=ls, marker=marker, ms=3, lw=1.2, color=colour[label], label=f"{label}, {key}")
        for i, (what, at) in enumerate((events or {}).get(name, {}).items()):
            ax.axvline(at, color="black" if i == 0 else "gray", ls="-" if i == 0 else "--", lw=1)
            ax.annotate(f" {what}", (at, 1), xycoords=("data", "axes fraction"), va="top", fontsize=8,
                        color="black" if i == 0 else "dimgray")
        ax.set_yscale("log")
        time_axis(ax, "y")
        ax.set_ylabel(ylabel)
        ax.set_title(name, fontsize=10)
    axes[-1, 0].set_xlabel(xlabel)
    handles, names = axes[0, 0].get_legend_handles_labels()
    if title:
        fig.suptitle(title, fontweight="bold")
    fig.tight_layout()
    fig.legend(handles, names, loc="upper center", ncol=2, fontsize=8, bbox_to_anchor=(0.5, 0.0))
    if save_as:
        save(fig, save_as)
    return fig


# --------------------------------------------------------------------------- notebooks 00-02


def rank_frequency_chart(counts: Sequence[int], *, half: int | None = None, title: str | None = None,
                         save_as: str | None = None):
    """Requests per key against the key's popularity rank, both axes logarithmic, where a power law (a Zipf-like
    stream) is a straight line. ``counts`` are sorted from the most requested key down; ``half``, the number of
    most requested keys that carry half of the requests, is marked by a dashed line."""
    import numpy as np

    counts = np.asarray(counts, dtype=float)
    if counts.ndim != 1 or not counts.size:
        raise ValueError("rank_frequency_chart needs the request count of at least one key")
    if (np.diff(counts) > 0).any():
        raise ValueError("counts must be sorted from the most requested key down")
    if half is not None:
        half = arguments.integer("half", half, minimum=1)
    ranks = np.arange(1, counts.size + 1)
    fig = curve_chart(ranks, {"requests per key": counts}, xlabel="popularity rank (log scale)",
                      ylabel="requests (log scale)", logx=True, logy=True, markers=False)
    ax = fig.axes[0]
    if half is not None:
        ax.axvline(half, color="gray", ls="--", lw=1)
        ax.text(half * 1.1, counts.max() / 2, f"ranks 1-{half}:\nhalf of the requests", color="gray", fontsize=9)
    return _finish(fig, ax, title, save_as)


def curve_panels(x: Sequence[float], panels: Mapping[str, Mapping], *, xlabel: str, save_as: str | None = None,
                 width: float = 5.5, height: float = 4.0):
    """Curves against the same ``x``, in panels side by side: ``panels`` maps a panel's title to the keyword
    arguments of :func:`curve_chart` for that panel (``curves`` and ``ylabel`` at least; ``logy``,
    ``ns_axis``...). For two views of one experiment, such as calls and time against the same budget."""
    arguments.instance("panels", panels, Mapping)
    if not panels:
        raise ValueError("curve_panels needs at least one panel")
    fig, axes = plt.subplots(1, len(panels), figsize=(width * len(panels), height), squeeze=False)
    for ax, (title, kwargs) in zip(axes[0], panels.items(), strict=True):
        arguments.instance(f"panel {title!r}", kwargs, Mapping)
        curve_chart(x, xlabel=xlabel, title=title, ax=ax, **kwargs)
    fig.tight_layout()
    if save_as:
        save(fig, save_as)
    return fig


def knee_chart(grid: Sequence[int], grid_ratios: Sequence[float], sizes: Sequence[int], ratios: Sequence[float],
               *, knee: int, ceiling: float | None = None, label: str = "hit ratio", title: str | None = None,
               save_as: str | None = None):
    """A hit-ratio curve seen twice, side by side: on a linear axis over ``grid``, where the curve bends, with
    ``knee`` marked (the size from which each entry buys less than the average one,
    :func:`cachelab.workload.diminishing_returns`); and on a log axis over ``sizes``, the whole range."""
    if knee not in grid:
        raise ValueError(f"knee ({knee}) must be one of the sizes of grid")
    knee_ratio = grid_ratios[list(grid).index(knee)]
    fig, (linear, logarithmic) = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
    hit_ratio_chart(grid, {label: grid_ratios}, ceiling=ceiling, logx=False, ax=linear,
                    title="Linear sizes: the curve bends")
    linear.axvline(knee, color="gray", ls=":", lw=1)
    linear.annotate(f"from {knee} entries on, each entry\nbuys less than the average one", (knee, knee_ratio),
                    xytext=(knee + 0.07 * (max(grid) - min(grid)), knee_ratio - 0.25), fontsize=9,
                    arrowprops={"arrowstyle": "->", "color": "gray"})
    hit_ratio_chart(sizes, {label: ratios}, ceiling=ceiling, ax=logarithmic, title="Powers of two, log axis: the "
                    "whole range")
    return _finish_figure(fig, title, save_as)


def timeline_chart(series: Mapping[str, tuple[Sequence[float], Sequence[float]]], *, xlabel: str, ylabel: str,
                   marks: Sequence[float] = (), span: tuple[float, float, str] | None = None,
                   title: str | None = None, save_as: str | None = None, width: float = 8, height: float = 3.8):
    """Values over time as steps, one line per series: ``series`` maps a label to ``(times, values)`` (a
    ``None`` value leaves a gap), with a dotted vertical line at each of ``marks`` (an event: a write) and,
    given ``span = (start, end, label)``, that stretch shaded (readers paused, a node down...)."""
    arguments.instance("series", series, Mapping)
    if not series:
        raise ValueError("timeline_chart needs at least one series")
    fig, ax = plt.subplots(figsize=(width, height))
    for label, (times, values) in series.items():
        if len(times) != len(values):
            raise ValueError(f"series {label!r}: {len(times)} times for {len(values)} values")
        ys = [float("nan") if v is None else v for v in values]
        ax.step(list(times), ys, where="post", label=label)
    for at in marks:
        ax.axvline(at, color="gray", lw=0.6, ls=":")
    if span is not None:
        start, end, label = span
        ax.axvspan(start, end, color="gray", alpha=0.15, label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(loc="lower right")
    return _finish(fig, ax, title, save_as)


#: The colour of each outcome of a request in :func:`requests_chart`.
OUTCOME_COLORS = {"hit": "#8C8C8C", "stale": "#55A868", "waited": "#DD8452", "computed": "#C44E52",
                  "missed": "#4C72B0"}


def requests_chart(panels: Mapping[str, Mapping], *, xlabel: str, ylabel: str, save_as: str | None = None,
                   width: float = 9, panel_height: float = 2.1, jitter: float = 0.008):
    """Every request of a run as a dot (when it started, how long it took, on a log time axis), coloured by its
    outcome, one panel per run, sharing both axes; shaded, the stretches where work behind them was running.

    ``panels`` maps a panel's title to ``starts`` (s), ``latencies_ns``, ``outcomes`` (keys of
    :data:`OUTCOME_COLORS`) and optionally ``shaded``, a list of ``(start, end)``. Requests other than hits
    are spread by up to ``jitter`` seconds, so that requests that arrived at one instant stay apart.
    """
    import numpy as np

    arguments.instance("panels", panels, Mapping)
    if not panels:
        raise ValueError("requests_chart needs at least one panel")
    fig, axes = plt.subplots(len(panels), 1, figsize=(width, panel_height * len(panels)), sharex=True,
                             sharey=True, squeeze=False)
    for ax, (title, panel) in zip(axes[:, 0], panels.items(), strict=True):
        starts, latencies = np.asarray(panel["starts"], float), np.asarray(panel["latencies_ns"], float)
        outcomes = np.asarray(panel["outcomes"]).astype(str)
        if not len(starts) == len(latencies) == len(outcomes):
            raise ValueError(f"panel {title!r}: starts, latencies_ns and outcomes differ in length")
        unknown = set(outcomes) - set(OUTCOME_COLORS)
        if unknown:
            raise ValueError(f"panel {title!r}: unknown outcomes {sorted(unknown)}")
        for start, end in panel.get("shaded", ()):
            ax.axvspan(start, end, color="#C44E52", alpha=0.12, lw=0)
        spread = np.random.default_rng(0).uniform(-jitter, jitter, len(starts))
        for outcome, color in OUTCOME_COLORS.items():
            mask = outcomes == outcome
            x = starts[mask] + (0 if outcome == "hit" else spread[mask])
            ax.scatter(x, latencies[mask], s=6 if outcome == "hit" else 14, color=color, label=outcome,
                       alpha=0.6 if outcome == "hit" else 0.8)
        ax.set_yscale("log")
        time_axis(ax, "y")
        ax.set_title(title, fontsize=10, loc="left")
    axes[0, 0].legend(loc="upper right", ncol=len(OUTCOME_COLORS), fontsize=8, markerscale=1.5)
    axes[-1, 0].set_xlabel(xlabel)
    fig.supylabel(ylabel)
    fig.tight_layout()
    if save_as:
        save(fig, save_as)
    return fig


# --------------------------------------------------------------------------- charts of a server under load (07)

def _color(colors: Mapping[str, str] | None, name: str, i: int) -> str:
    return (colors or {}).get(name) or PALETTE[i % len(PALETTE)]


def interval_chart(groups: Mapping[str, Sequence[float]], intervals: Mapping[str, Mapping], *, xlabel: str,
                   title: str | None = None, colors: Mapping[str, str] | None = None, logx: bool = True,
                   save_as: str | None = None, width: float = 10, ax=None):
    """Repeated measurements of several things, one row each: every value as a small dot, the median as a large
    one, and a bar for the interval given for it (``intervals[name]``: ``median``, ``low``, ``high``, and
    ``coverage``, printed at the row's end), on a log axis by default."""
    arguments.instance("groups", groups, Mapping)
    if not groups:
        raise ValueError("interval_chart needs at least one group")
    if ax is None:
        fig, ax = plt.subplots(figsize=(width, 0.45 * len(groups) + 1.6))
    else:
        fig = ax.figure
    for y, (name, values) in enumerate(groups.items()):
        color, iv = _color(colors, name, y), intervals[name]
        ax.scatter(list(values), [y] * len(values), s=12, color=color, alpha=0.45, zorder=3)
        ax.errorbar([iv["median"]], [y], xerr=[[iv["median"] - iv["low"]], [iv["high"] - iv["median"]]], fmt="o",
                    capsize=3, color=color, zorder=4)
        if iv.get("coverage"):
            ax.annotate(f"{iv['coverage']:.0%}", (iv["high"], y), xytext=(4, -3), textcoords="offset points",
                        fontsize=7, color="gray")
    ax.set_yticks(range(len(groups)), list(groups))
    ax.invert_yaxis()
    if logx:
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(_plain_number))
    ax.set_xlabel(xlabel)
    ax.grid(axis="x", which="both", alpha=0.3)
    return _finish(fig, ax, title, save_as)


def cold_start_chart(per_key: Mapping[str, Sequence[int]], workers: int, load: Mapping[str, Sequence[float]],
                     load_intervals: Mapping[str, Mapping], *, write_rate: float,
                     colors: Mapping[str, str] | None = None, save_as: str | None = None):
    """Two panels: how many times each key was queried while each cache filled (``per_key``: a dot a key, with
    one and ``workers`` marked), and the database's queries a second in each server's steady windows (``load``,
    with :func:`interval_chart`'s intervals), next to the write rate."""
    fig, (left, right) = plt.subplots(1, 2, figsize=(12.5, 4.3))
    for i, (name, counts) in enumerate(per_key.items()):
        counts = sorted(counts)
        left.scatter([i + (j % 7 - 3) * 0.05 for j in range(len(counts))], counts, s=14, alpha=0.6,
                     color=_color(colors, name, i))
    left.axhline(1, color="gray", lw=1, ls="--")
    left.axhline(workers, color="gray", lw=1, ls=":")
    left.text(len(per_key) - 0.5, workers, f" K = {workers} workers", color="gray", fontsize=8, va="bottom",
              ha="right")
    left.set_xticks(range(len(per_key)), [n.replace(", ", "\n") for n in per_key], fontsize=8)
    left.set_yticks(range(1, max([workers, *(max(c, default=1) for c in per_key.values())]) + 1))
    left.set(ylabel="queries of each key while filling", title="Cold start: each dot is one key")
    for i, name in enumerate(load):
        iv = load_intervals[name]
        right.errorbar([i], [iv["median"]], yerr=[[iv["median"] - iv["low"]], [iv["high"] - iv["median"]]], fmt="o",
                       capsize=3, color=_color(colors, name, i))
        right.scatter([i] * len(load[name]), load[name], s=10, alpha=0.4, color=_color(colors, name, i))
    right.axhline(write_rate, color="gray", lw=1, ls="--")
    right.text(len(load) - 0.5, write_rate, " one query per write", color="gray", fontsize=8, va="bottom", ha="right")
    right.set_xticks(range(len(load)), [n.replace(", ", "\n") for n in load], fontsize=8)
    right.set(ylabel="database queries a second (median, interval)", title="Steady windows, with writes")
    fig.tight_layout()
    if save_as:
        save(fig, save_as)
    return fig


def open_loop_chart(servers: Mapping[str, Sequence[Mapping]], *, capacity: float, title: str,
                    colors: Mapping[str, str] | None = None, save_as: str | None = None):
    """Latency against offered rate from an open loop, three panels: the wait from the due time (p50, p90 and
    the maximum, each point's request count beside it; a hollow marker where the server fell behind), the
    answers a second against the offered rate, and the generator's own lateness (p99) and CPU. ``servers`` maps a
    label to its stages (dicts of :meth:`cachelab.load.paced.Stage.to_dict`); ``capacity`` is marked."""
    fig, (ax, ax_rate, ax_gen) = plt.subplots(1, 3, figsize=(15, 4.6), gridspec_kw={"width_ratios": [3, 2, 2]})
    for i, (label, stages) in enumerate(servers.items()):
        stages = sorted(stages, key=lambda st: st["rate"])
        color = _color(colors, label, i)
        rates = [st["rate"] for st in stages]
        for p, ls, marker in (("p50", "-", "o"), ("p90", "--", "s"), ("max", ":", "^")):
            values = [st["from_due_ms"][p] for st in stages]
            ax.plot(rates, values, ls=ls, color=color, lw=1, label=f"{label}, {p}")
            ax.scatter(rates, values, marker=marker, edgecolors=color, zorder=3,
                       facecolors=["none" if st["behind"] else color for st in stages])
        for st in stages:
            ax.annotate(str(st["requests"]), (st["rate"], st["from_due_ms"]["p50"]), xytext=(0, -11),
                        textcoords="offset points", fontsize=7, color=color, ha="center")
        ax_rate.plot(rates, [st["achieved"] for st in stages], "o-", color=color, label=label)
        ax_gen.plot(rates, [st["late_ms"]["p99"] for st in stages], "x-", color=color, label=f"{label}: p99 late")
        cpu = [100 * (st["generator_cpu"] or 0) for st in stages]
        ax_gen.plot(rates, cpu, ":", color=color, label=f"{label}: generator CPU, %")
    ax.scatter([], [], marker="o", edgecolors="gray", facecolors="none", label="hollow: the server fell behind")
    for a in (ax, ax_rate):
        a.axvline(capacity, color="gray", lw=1, ls="--")
        a.text(capacity, 0.02, " uncached capacity", color="gray", fontsize=8, transform=a.get_xaxis_transform())
    every = sorted({st["rate"] for stages in servers.values() for st in stages})
    ax.set(xscale="log", yscale="log", xlabel="offered rate, requests a second (log)",
           ylabel="wait from the due time, ms (log)", title=title)
    ax.set_xticks(every, [f"{r:.0f}" for r in every])
    ax.minorticks_off()
    ax.legend(fontsize=7)
    ax_rate.plot(every, every, color="gray", ls="--", lw=1, label="= offered")
    ax_rate.set(xlabel="offered rate, requests a second", ylabel="answers a second during the stage",
                title="What the server answered")
    ax_rate.legend(fontsize=8)
    ax_gen.axhline(70, color="gray", lw=1, ls="--")
    ax_gen.set(yscale="symlog", xlabel="offered rate, requests a second", ylabel="ms after the due time; % of a CPU",
               title="The generator: its own lateness, its CPU")
    ax_gen.legend(fontsize=7)
    fig.tight_layout()
    if save_as:
        save(fig, save_as)
    return fig


def strip_chart(values: Mapping[str, Sequence[float]], *, ylabel: str, labels: Mapping[str, str] | None = None,
                line: tuple[float, str] | None = None, title: str | None = None,
                colors: Mapping[str, str] | None = None, save_as: str | None = None, width: float = 9):
    """Every value of each group as a dot in its own column (spread a little sideways), with an optional
    horizontal ``line = (value, label)``; ``labels`` replaces a column's name under it."""
    fig, ax = plt.subplots(figsize=(width, 3.8))
    for i, (name, vals) in enumerate(values.items()):
        vals = list(vals)
        ax.scatter([i + (j % 9 - 4) * 0.03 for j in range(len(vals))], vals, s=10, alpha=0.4,
                   color=_color(colors, name, i))
    if line is not None:
        ax.axhline(line[0], color="gray", ls="--", lw=1)
        ax.text(len(values) - 0.5, line[0], line[1], color="gray", fontsize=9, va="bottom", ha="right")
    ax.set_xticks(range(len(values)), [(labels or {}).get(n, n) for n in values], fontsize=8)
    ax.set_ylabel(ylabel)
    return _finish(fig, ax, title, save_as)


def scatter_chart(points: Mapping[str, tuple[Sequence[float], Sequence[float]]], *, xlabel: str, ylabel: str,
                  curves: Mapping[str, tuple[Sequence[float], Sequence[float]]] | None = None,
                  hlines: Sequence[tuple[float, str]] = (), vlines: Sequence[tuple[float, str]] = (),
                  logx: bool = True, logy: bool = True, title: str | None = None,
                  colors: Mapping[str, str] | None = None, save_as: str | None = None, ax=None):
    """Points of several series (``points``: label to ``(x, y)``), with reference ``curves`` drawn in gray
    (each its own line style) and labelled horizontal and vertical lines, on log axes by default."""
    if ax is None:
        fig, ax = plt.subplots(figsize=(8, 4.3))
    else:
        fig = ax.figure
    for i, (label, (x, y)) in enumerate((curves or {}).items()):
        ax.plot(list(x), list(y), color="gray", ls=LINESTYLES[i % len(LINESTYLES)], label=label)
    for i, (label, (x, y)) in enumerate(points.items()):
        ax.scatter(list(x), list(y), s=14, color=_color(colors, label, i), label=label, zorder=3)
    for value, label in hlines:
        ax.axhline(value, color="gray", ls="--", lw=1)
        ax.text(ax.get_xlim()[0], value, f" {label}", color="gray", fontsize=8, va="bottom")
    for value, label in vlines:
        ax.axvline(value, color="gray", lw=1)
        ax.text(value, ax.get_ylim()[1], f" {label}", color="gray", fontsize=8, va="top")
    ax.set(xscale="log" if logx else "linear", yscale="log" if logy else "linear", xlabel=xlabel, ylabel=ylabel)
    ax.legend(fontsize=7)
    return _finish(fig, ax, title, save_as)


def settling_chart(profile: Sequence[tuple[float, float]], *, settle_s: float, tolerance: float,
                   halves: Mapping[str, Sequence[float]], title: str | None = None,
                   colors: Mapping[str, str] | None = None, save_as: str | None = None):
    """Two panels: what counting a window from ``t`` reports as a share of its server's level (``profile``), with
    the band of ``tolerance`` and the settle time; and, for each server, the ratio of the first half of each
    window's counted span to its second (``halves``), around 1."""
    fig, (ax, ax_half) = plt.subplots(1, 2, figsize=(12, 3.8))
    t, ratio = zip(*profile, strict=True) if profile else ((), ())
    ax.plot(t, ratio, "o-", color=PALETTE[0])
    ax.axhspan(1 - tolerance, 1 + tolerance, color="gray", alpha=0.15)
    ax.axvline(settle_s, color="gray", ls="--", lw=1)
    ax.set(xlabel="counted from t seconds into the run", ylabel="rate counted from t / the level",
           title="Where counting may start: the median of every window")
    for i, (name, ratios) in enumerate(halves.items()):
        ax_half.scatter([i] * len(ratios), ratios, color=_color(colors, name, i), s=16)
    ax_half.axhline(1, color="gray", lw=1)
    ax_half.set_xticks(range(len(halves)), [n.replace(", ", "\n") for n in halves], fontsize=8)
    ax_half.set(yscale="log", ylabel="first half / second half (log)", title="Each window's two halves")
    return _finish_figure(fig, title, save_as)
