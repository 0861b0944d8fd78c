"""The whole ladder side by side: what notebooks 01-06 measured, read back from their saved results.

Each notebook of the series records the cost of ONE answer of the flight service at its step with
``lab.record(timing, ladder="<step>", kind="hit"|"miss")`` and the hit ratio it reaches on the standard
stream as ``lab.results.put("hit_ratio:<step>", value)``. This module reads those entries by their
metadata (never by timing names), checks that every step is there, and turns them into:

* :func:`collect`: the rungs of the ladder, in order, each a :class:`Rung` holding its :class:`Timing`;
* :func:`ladder_table`: a plain-text table (step, hit/miss, median, p10-p90, speedup over recomputing);
* :func:`ladder_figure`: the cost of one answer on a log axis with p10-p90 bars, and the speedup;
* :func:`decision_guide`: a table of what each step offers, whose latency and hit-ratio columns come
  from the measured results;
* :func:`recommend`: the short decision flow (how fresh? how many machines? processes? restarts?
  value size?) as a function.

Missing results raise :class:`cachelab.results.ResultsMissing`, naming the notebook to run first.
:func:`current_run` loads results and checks that they come from one run of the series (same folder, same
mode, saved in the series' order, close together), raising :class:`ResultsStale` otherwise.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from . import results as _results
from .timing import Timing, format_ns

# (step, kind, notebook that records it), in the order of the series.
EXPECTED: tuple[tuple[str, str, str], ...] = (
    ("recompute", "miss", "01_naive_recomputation"),
    ("dict memo", "hit", "01_naive_recomputation"),
    ("lru_cache", "hit", "02_lru_cache"),
    ("cachetools", "hit", "03_cachetools"),
    ("joblib", "hit", "04_joblib"),
    ("joblib", "miss", "04_joblib"),
    ("memcached", "hit", "05_memcached"),
    ("memcached", "miss", "05_memcached"),
    ("redis", "hit", "06_redis"),
    ("redis", "miss", "06_redis"),
    ("near cache", "hit", "06_redis"),
)
SERIES: tuple[str, ...] = tuple(dict.fromkeys(nb for _, _, nb in EXPECTED))
BASELINE = ("recompute", "miss")
KIND_COLORS = {"hit": "#4C72B0", "miss": "#DD8452"}


class LadderIncomplete(LookupError):
    """A notebook saved results but not a ladder entry it should have: the message says which."""


@dataclass(frozen=True)
class Rung:
    """One measured step of the ladder: the cost of one answer, on a hit or on a miss."""

    step: str
    kind: str
    notebook: str
    timing: Timing

    @property
    def label(self) -> str:
        """``'redis (hit)'``: how the step is named in tables and figures."""
        return f"{self.step} ({self.kind})"

    @property
    def median(self) -> float:
        return self.timing.median

    def speedup_over(self, baseline: Rung) -> float:
        """How many times faster than ``baseline`` (below 1: slower)."""
        return self.timing.speedup_over(baseline.timing)

    def labelled_timing(self) -> Timing:
        """The timing renamed to :attr:`label`, ready for :mod:`cachelab.plots`."""
        t = self.timing
        return Timing(self.label, t.samples_ns, t.loops, dict(t.meta))


def entries(saved: _results.SavedResults) -> dict[tuple[str, str], Timing]:
    """The ladder entries of one notebook's results, keyed by ``(step, kind)`` (the first of each)."""
    found: dict[tuple[str, str], Timing] = {}
    for timing in saved.timings.values():
        step, kind = timing.meta.get("ladder"), timing.meta.get("kind")
        if step is not None and kind in ("hit", "miss"):
            found.setdefault((str(step), kind), timing)
    return found


def collect(expected: Sequence[tuple[str, str, str]] = EXPECTED, *, extras: bool = True) -> list[Rung]:
    """Every rung of the ladder, in the order of ``expected``, read from the saved results.

    Raises :class:`~cachelab.results.ResultsMissing` when a notebook has saved nothing (the message
    names it), and :class:`LadderIncomplete` when it saved results without an expected entry.
    With ``extras``, further ladder entries a notebook recorded (a miss nobody asked for, say) are
    kept too, right after that notebook's expected ones.
    """
    loaded: dict[str, dict[tuple[str, str], Timing]] = {}
    for _step, _kind, notebook in expected:
        if notebook not in loaded:
            loaded[notebook] = entries(_results.load(notebook))
    rungs: list[Rung] = []
    used: set[tuple[str, str, str]] = set()
    for i, (step, kind, notebook) in enumerate(expected):
        timing = loaded[notebook].get((step, kind))
        if timing is None:
            have = sorted(f"{s} ({k})" for s, k in loaded[notebook]) or ["none"]
            raise LadderIncomplete(
                f"{notebook} saved no ladder entry for '{step}' ({kind}); it has: {', '.join(have)}. "
                f"Rerun notebooks/{notebook}.ipynb, which records it with "
                f"lab.record(timing, ladder={step!r}, kind={kind!r})."
            )
        rungs.append(Rung(step, kind, notebook, timing))
        used.add((step, kind, notebook))
        last_of_notebook = all(nb != notebook for _, _, nb in expected[i + 1:])
        if extras and last_of_notebook:
            for (s, k), t in loaded[notebook].items():
                if (s, k, notebook) not in used and not any((s, k) == (es, ek) for es, ek, _ in expected):
                    rungs.append(Rung(s, k, notebook, t))
                    used.add((s, k, notebook))
    return rungs


def find(rungs: Sequence[Rung], step: str, kind: str) -> Rung:
    """The rung for ``step`` and ``kind``; ``KeyError`` listing what there is otherwise."""
    for rung in rungs:
        if rung.step == step and rung.kind == kind:
            return rung
    raise KeyError(f"no rung {step!r} ({kind}); there are {[r.label for r in rungs]}")


def baseline(rungs: Sequence[Rung]) -> Rung:
    """The cost of recomputing an answer: what every speedup is measured against."""
    return find(rungs, *BASELINE)


def hit_ratios(notebooks: Sequence[str] = SERIES) -> dict[str, float]:
    """The ``hit_ratio:<step>`` values the notebooks saved, as ``{step: ratio}`` (those that exist)."""
    out: dict[str, float] = {}
    for notebook in notebooks:
        for key, value in _results.load(notebook).values.items():
            if key.startswith("hit_ratio:") and isinstance(value, int | float):
                out.setdefault(key.split(":", 1)[1], float(value))
    return out


def ladder_rows(rungs: Sequence[Rung]) -> list[dict]:
    """The ladder as rows of plain values: step, kind, median/p10/p90 (ns) and speedup over recomputing."""
    base = baseline(rungs)
    return [{"step": r.step, "kind": r.kind, "notebook": r.notebook, "median_ns": r.timing.median,
             "p10_ns": r.timing.p10, "p90_ns": r.timing.p90, "speedup": r.speedup_over(base)}
            for r in rungs]


def _speedup_text(factor: float) -> str:
    return f"{factor:,.0f}x" if factor >= 10 else f"{factor:.2g}x"


def ladder_table(rungs: Sequence[Rung]) -> str:
    """A plain-text table of the ladder, the one ``make run`` prints at the end."""
    rows = ladder_rows(rungs)
    width = max(len(r["step"]) for r in rows + [{"step": "step"}])
    head = f"{'step':<{width}}  {'kind':<4}  {'median':>9}  {'p10-p90':>21}  {'speedup':>9}"
    lines = [head, "-" * len(head)]
    for r in rows:
        spread = f"{format_ns(r['p10_ns'])} - {format_ns(r['p90_ns'])}"
        lines.append(f"{r['step']:<{width}}  {r['kind']:<4}  {format_ns(r['median_ns']):>9}  {spread:>21}  "
                     f"{_speedup_text(r['speedup']):>9}")
    return "\n".join(lines)


def ladder_figure(rungs: Sequence[Rung], *, save_as: str | None = "07_ladder",
                  title: str = "The ladder: the cost of one answer at every step"):
    """Two panels: the cost of one answer (log axis, p10-p90 bars, hits and misses coloured) and the
    speedup over recomputing. Saved as ``figures/<save_as>.png`` (keep "ladder" in the name: the
    report's index page shows ``*ladder*.png``)."""
    import matplotlib.pyplot as plt

    from . import plots

    timings = [r.labelled_timing() for r in rungs]
    colors = {r.label: KIND_COLORS.get(r.kind, plots.PALETTE[-1]) for r in rungs}
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 0.45 * len(rungs) + 1.8),
                                      gridspec_kw={"width_ratios": [3, 2]})
    plots.latency_chart(timings, title="Cost of one answer (blue: hit, orange: miss)", colors=colors, ax=left)
    base = baseline(rungs).labelled_timing()
    plots.speedup_chart(timings, base, title="Speedup over recomputing", ax=right)
    for patch, rung in zip(right.patches, rungs, strict=False):
        patch.set_color(colors[rung.label])
    for text, rung in zip(right.texts, rungs, strict=False):
        text.set_text(_speedup_text(rung.speedup_over(baseline(rungs))))
    right.set_yticklabels([])
    fig.suptitle(title, fontweight="bold")
    fig.tight_layout()
    if save_as:
        plots.save(fig, save_as)
    return fig


# --------------------------------------------------------------------------- how to choose

@dataclass(frozen=True)
class Option:
    """What one step of the ladder offers: facts about the tool, not measurements.

    ``hit_ratio_note`` says why a step has no measured hit ratio, when it has none by design: the guide
    prints it as a footnote instead of a bare "n/a".
    """

    step: str
    shared_by: str
    survives_restart: str
    freshness: str
    values: str
    moving_parts: str
    hit_ratio_note: str = ""


OPTIONS: tuple[Option, ...] = (
    Option("dict memo", "one process", "no", "never expires; you clear it", "any object",
           "none; grows without bound"),
    Option("lru_cache", "one process (thread-safe)", "no", "never expires; cache_clear()", "any object",
           "none"),
    Option("cachetools", "one process (lock it for threads)", "no", "TTL per cache", "any object",
           "a lock, a TTL to choose"),
    Option("joblib", "processes sharing a disk", "yes (disk)", "never by time; on code change",
           "large arrays (memory-mapped)", "a cache folder to clean; pickle",
           hit_ratio_note="none replayed, since joblib.Memory never evicts on its own: on the standard stream "
                          "it hits every repeated request (the repeat ceiling) unless reduce_size() removes entries"),
    Option("memcached", "many machines", "no (memory only)", "TTL, delete on write", "up to 1 MB per item",
           "servers, a client, serialisation, invalidation"),
    Option("redis", "many machines", "optional (RDB/AOF)", "TTL, delete on write", "up to 512 MB, keep small",
           "a server, a client, serialisation, invalidation"),
    Option("near cache", "many machines, local copy", "no", "local TTL on top of Redis",
           "small hot values", "all of Redis, plus a local TTL"),
)


def decision_guide(rungs: Sequence[Rung], ratios: Mapping[str, float] | None = None,
                   options: Sequence[Option] = OPTIONS) -> list[dict]:
    """One row per option: its facts, plus the measured hit and miss cost and standard-stream hit ratio.

    Latency columns come from ``rungs`` (the miss of a step without one is recomputing plus the lookup,
    shown as the recompute cost); the hit ratio from ``ratios`` (``None`` where no notebook saved one,
    with the option's ``hit_ratio_note`` saying why, when it has one).
    """
    ratios = dict(ratios or {})
    base = baseline(rungs)
    rows = []
    for option in options:
        hit = next((r for r in rungs if r.step == option.step and r.kind == "hit"), None)
        miss = next((r for r in rungs if r.step == option.step and r.kind == "miss"), None)
        rows.append({
            "step": option.step, "shared by": option.shared_by, "survives restart": option.survives_restart,
            "freshness": option.freshness, "values": option.values, "moving parts": option.moving_parts,
            "hit_ns": hit.median if hit else None,
            "miss_ns": miss.median if miss else base.median,
            "speedup": hit.speedup_over(base) if hit else None,
            "hit_ratio": ratios.get(option.step),
            "hit_ratio_note": option.hit_ratio_note if ratios.get(option.step) is None else "",
        })
    return rows


def format_guide(rows: Sequence[Mapping]) -> str:
    """The decision guide as a plain-text table (measured columns formatted, n/a where missing).

    A missing hit ratio with a ``hit_ratio_note`` reads "n/a (1)", and the note follows the table.
    """
    cols = ["step", "hit", "miss", "speedup", "hit ratio", "shared by", "survives restart", "freshness", "values"]
    notes = [(row["step"], row["hit_ratio_note"]) for row in rows
             if row["hit_ratio"] is None and row.get("hit_ratio_note")]
    marks = {step: f" ({i})" for i, (step, _) in enumerate(notes, start=1)}

    def cell(row, col):
        if col == "hit":
            return format_ns(row["hit_ns"]) if row["hit_ns"] is not None else "n/a"
        if col == "miss":
            return format_ns(row["miss_ns"]) if row["miss_ns"] is not None else "n/a"
        if col == "speedup":
            return _speedup_text(row["speedup"]) if row["speedup"] is not None else "n/a"
        if col == "hit ratio":
            return f"{row['hit_ratio']:.0%}" if row["hit_ratio"] is not None else "n/a" + marks.get(row["step"], "")
        return str(row[col])

    table = [[cell(r, c) for c in cols] for r in rows]
    widths = [max(len(c), *(len(t[i]) for t in table)) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True))]
    lines.append("-" * len(lines[0]))
    lines += ["  ".join(v.ljust(w) for v, w in zip(t, widths, strict=True)) for t in table]
    if notes:
        lines.append("")
        lines += [f"({i}) {step}: {note}." for i, (step, note) in enumerate(notes, start=1)]
    return "\n".join(lines)


@dataclass(frozen=True)
class Recommendation:
    step: str
    reason: str


MEMCACHED_ITEM_LIMIT = 1024 * 1024  # memcached's default largest item (-I 1m)


def recommend(*, processes: int = 1, machines: int = 1, survive_restart: bool = False,
              max_staleness_s: float | None = None, value_bytes: int = 1_000) -> Recommendation:
    """The short decision flow of notebook 07, as a function.

    ``max_staleness_s``: how old an answer may be (``None``: the data never change; ``0``: never stale).
    The questions are asked in this order: how fresh must it be? how many machines? how many processes?
    must it survive a restart? how large are the values? how fresh, again, for the local choices?
    """
    if processes < 1 or machines < 1:
        raise ValueError("processes and machines must be at least 1")
    if value_bytes < 0:
        raise ValueError("value_bytes must be non-negative")
    if max_staleness_s is not None and max_staleness_s <= 0:
        return Recommendation("recompute", "no answer may be stale: cache only with invalidation on every "
                                           "write, or do not cache")
    if machines > 1:
        if survive_restart or value_bytes > MEMCACHED_ITEM_LIMIT:
            return Recommendation("redis", "shared by every machine; persistence and large values are "
                                           "Redis's, not memcached's")
        if max_staleness_s is None or max_staleness_s >= 1:
            return Recommendation("near cache", "shared by every machine, with a local copy of hot keys "
                                                "for as long as staleness allows")
        return Recommendation("redis", "shared by every machine and fresh to the second: no local copy")
    if processes > 1:
        if value_bytes > MEMCACHED_ITEM_LIMIT:
            return Recommendation("joblib", "large values shared through the local disk")
        if survive_restart:
            return Recommendation("diskcache", "shared by the processes of one machine and kept on disk")
        return Recommendation("memcached", "one copy for every process, so each key is computed once")
    if value_bytes > MEMCACHED_ITEM_LIMIT or survive_restart:
        return Recommendation("joblib", "results kept on disk across restarts, large arrays memory-mapped")
    if max_staleness_s is not None:
        return Recommendation("cachetools", "one process, entries that expire after a TTL")
    return Recommendation("lru_cache", "one process, data that never change: the standard library is enough")


# --------------------------------------------------------------------------- results of this run only

class ResultsStale(LookupError):
    """Saved results that do not belong to the run now going on: the message says which, and what to rerun."""


def _saved_at(saved: _results.SavedResults):
    import datetime as _dt

    return _dt.datetime.fromisoformat(saved.environment["date"])


def current_run(notebooks: Sequence[str], *, max_gap: float = 3600.0, now=None) -> dict[str, _results.SavedResults]:
    """The results of ``notebooks`` (in series order), checked to come from the run of the series going on now.

    A run of the series (``make run``, the tests) executes the notebooks in order into one results folder
    (``$CACHELAB_RESULTS_DIR``), so the results a later notebook may combine with its own were all saved in
    that folder, in the mode of this run (quick or full), in the order of the series (a notebook re-run on its
    own afterwards breaks the order), each within ``max_gap`` seconds of the one before and the last within
    ``max_gap`` of ``now``. Raises :class:`~cachelab.results.ResultsMissing` for a notebook that saved nothing
    and :class:`ResultsStale` for any other break, naming the notebooks to rerun.
    """
    import datetime as _dt

    from .timing import quick_mode

    loaded = {notebook: _results.load(notebook) for notebook in notebooks}
    now = now or _dt.datetime.now(_dt.UTC)
    mode = quick_mode()
    from . import paths

    where = paths.results_dir()
    rerun = f"rerun {', '.join(notebooks)} in order (or `make run`, which runs the whole series)"
    wrong_mode = [nb for nb, saved in loaded.items() if bool(saved.environment.get("quick_mode")) != mode]
    if wrong_mode:
        raise ResultsStale(f"{', '.join(wrong_mode)} saved results in {'full' if mode else 'quick'} mode, and this "
                           f"run is in {'quick' if mode else 'full'} mode: {rerun}.")
    previous_name, previous = None, None
    for notebook, saved in loaded.items():
        at = _saved_at(saved)
        if at > now:
            raise ResultsStale(f"{notebook} saved its results in {where} after this run began: {rerun}.")
        if previous is not None and at < previous:
            raise ResultsStale(f"{notebook} saved its results before {previous_name} did, not after it: one of them "
                               f"comes from another run; {rerun}.")
        if previous is not None and (at - previous).total_seconds() > max_gap:
            raise ResultsStale(f"{notebook} saved its results {(at - previous).total_seconds() / 60:.0f} min after "
                               f"{previous_name}: not one run; {rerun}.")
        previous_name, previous = notebook, at
    if previous is not None and (now - previous).total_seconds() > max_gap:
        raise ResultsStale(f"{previous_name} saved its results {(now - previous).total_seconds() / 60:.0f} min ago: "
                           f"from an earlier run; {rerun}.")
    return loaded
