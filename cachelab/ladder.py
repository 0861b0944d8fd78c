"""The whole ladder side by side: what notebooks 01-08 measured, read back from their saved results.

Each notebook of the series records the cost of ONE answer of the flight service at its step with
``lab.record(timing, ladder="<step>", kind="hit"|"miss")`` and the hit ratio it reaches on its stream as
``lab.results.put("hit_ratio:<step>", value)``. This module reads those entries by their metadata (never
by timing names), checks that every step is there and that they all come from the run going on
(:func:`series_results`, which falls back to the committed reference run, saying so, for a notebook this run
lacks or for an entry one lacks), and turns them into:

* :func:`collect`: the rungs of the ladder, in order, each a :class:`Rung` holding its :class:`Timing`;
* :func:`ladder_table`: a plain-text table (step, hit/miss, median, p10-p90, speedup over recomputing);
* :func:`expected_costs`: the cost of one request at each step at the hit ratio its notebook measured;
* :func:`ladder_figure`: every rung as a dot with its p10-p90 whisker on a log axis, and the expected cost
  per request next to it.

Missing results raise :class:`cachelab.results.ResultsMissing`, naming the notebook to run first; results
from another run raise :class:`ResultsStale`. The decision guide that reads the ladder is :mod:`cachelab.guide`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

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
    ("tracking", "hit", "08_scale_out"),
    ("redis cluster", "hit", "08_scale_out"),
)
LADDER_NOTEBOOKS: tuple[str, ...] = tuple(dict.fromkeys(nb for _, _, nb in EXPECTED))
# The notebooks whose results 10 combines: those with ladder entries, 07 (the web service under load) and
# 09 (HTTP caching, and the HTTP stack's cost the validation against 07 needs).
SERIES: tuple[str, ...] = tuple(sorted({*LADDER_NOTEBOOKS, "07_web_service_under_load", "09_http_and_frameworks"}))
BASELINE = ("recompute", "miss")
# The values 10 reads that a notebook may not save: computed only in a Going deeper section, which a reader may
# skip, or skipped on a server without room for the replay. A run that lacks one takes it from the reference run
# (as it does a missing rung of EXPECTED), labelled.
OPTIONAL_VALUES: tuple[tuple[str, str], ...] = (
    ("hit_ratio:memcached", "05_memcached"), ("hit_ratio:redis", "06_redis"), ("hit_ratio:near cache", "06_redis"))
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


def collect(expected: Sequence[tuple[str, str, str]] = EXPECTED, *, extras: bool = True,
            loaded: Mapping[str, _results.SavedResults] | None = None) -> list[Rung]:
    """Every rung of the ladder, in the order of ``expected``, read from the saved results.

    Raises :class:`~cachelab.results.ResultsMissing` when a notebook has saved nothing (the message
    names it), and :class:`LadderIncomplete` when it saved results without an expected entry.
    With ``extras``, further ladder entries a notebook recorded (a miss nobody asked for, say) are
    kept too, right after that notebook's expected ones. ``loaded`` gives results already read (those of
    :func:`series_results`); the others are loaded from the results folder.
    """
    saved = dict(loaded or {})
    by_notebook: dict[str, dict[tuple[str, str], Timing]] = {}
    for _step, _kind, notebook in expected:
        if notebook not in by_notebook:
            by_notebook[notebook] = entries(saved[notebook] if notebook in saved else _results.load(notebook))
    loaded = by_notebook
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


def hit_ratios(notebooks: Sequence[str] = LADDER_NOTEBOOKS,
               loaded: Mapping[str, _results.SavedResults] | None = None) -> dict[str, float]:
    """The ``hit_ratio:<step>`` values the notebooks saved, as ``{step: ratio}`` (those that exist)."""
    out: dict[str, float] = {}
    for notebook in notebooks:
        saved = loaded[notebook] if loaded and notebook in loaded else _results.load(notebook)
        for key, value in saved.values.items():
            if key.startswith("hit_ratio:") and isinstance(value, int | float):
                out.setdefault(key.split(":", 1)[1], float(value))
    return out


def ladder_rows(rungs: Sequence[Rung]) -> list[dict]:
    """The ladder as rows of plain values: step, kind, median/p10/p90 (ns) and speedup over recomputing."""
    base = baseline(rungs)
    return [{"step": r.step, "kind": r.kind, "notebook": r.notebook, "median_ns": r.timing.median,
             "p10_ns": r.timing.p10, "p90_ns": r.timing.p90, "speedup": r.speedup_over(base)}
            for r in rungs]


def entry_label(sources: Mapping[str, str], notebook: str, entry: str) -> str:
    """Where one entry of ``notebook`` comes from (``entry``: a rung's label, ``"redis (hit)"``, or a value's key,
    ``"hit_ratio:redis"``), read from ``sources`` (:meth:`SeriesResults.labels`): the entry's own label when it
    was taken from the reference run, else its notebook's."""
    return sources.get(f"{notebook}/{entry}", sources.get(notebook, "this run"))


def _speedup_text(factor: float) -> str:
    return f"{factor:,.0f}x" if factor >= 10 else f"{factor:.2g}x"


def ladder_table(rungs: Sequence[Rung], sources: Mapping[str, str] | None = None) -> str:
    """A plain-text table of the ladder, the one ``make run`` prints at the end; with ``sources`` (notebook ->
    label), a last column says where each rung comes from."""
    rows = ladder_rows(rungs)
    width = max(len(r["step"]) for r in rows + [{"step": "step"}])
    head = f"{'step':<{width}}  {'kind':<4}  {'median':>9}  {'p10-p90':>21}  {'speedup':>9}"
    if sources:
        head += "  from"
    lines = [head, "-" * len(head)]
    for r in rows:
        spread = f"{format_ns(r['p10_ns'])} - {format_ns(r['p90_ns'])}"
        line = (f"{r['step']:<{width}}  {r['kind']:<4}  {format_ns(r['median_ns']):>9}  {spread:>21}  "
                f"{_speedup_text(r['speedup']):>9}")
        if sources:
            where = entry_label(sources, r["notebook"], f"{r['step']} ({r['kind']})")
            line += f"  {r['notebook'][:2]}, {where}"
        lines.append(line)
    return "\n".join(lines)


def expected_costs(rungs: Sequence[Rung], ratios: Mapping[str, float]) -> dict[str, float]:
    """``{step: ns}``: the cost of one request at each step, ``h * hit + (1 - h) * miss``, at the hit ratio ``h``
    its notebook measured (steps without a measured hit ratio are left out).

    A step without a measured miss misses at the cost of recomputing (an in-process cache: its lookup is
    nanoseconds next to a query of milliseconds), or, for a local tier in front of Redis (the near cache,
    client-side caching), at the cost of a Redis miss, which its misses go through.
    """
    base = baseline(rungs)
    out = {}
    for step, h in ratios.items():
        hit = next((r for r in rungs if r.step == step and r.kind == "hit"), None)
        if hit is None:
            continue
        through = {"near cache": "redis", "tracking": "redis"}.get(step, step)
        miss = next((r for r in rungs if r.step == through and r.kind == "miss"), base)
        out[step] = h * hit.median + (1 - h) * miss.median
    return out


def ladder_figure(rungs: Sequence[Rung], ratios: Mapping[str, float] | None = None, *,
                  save_as: str | None = "10_ladder", title: str = "The ladder: the cost of one answer at every step",
                  sources: Mapping[str, str] | None = None):
    """Two panels. Left: every rung, hit and miss, a dot at the median with its p10-p90 whisker on a log axis.
    Right: the expected cost of one request at each step at its measured hit ratio (:func:`expected_costs`),
    next to recomputing. Saved as ``figures/<save_as>.png`` (keep "ladder" in the name: the site's index page
    shows ``*ladder*.png``). ``sources`` (notebook -> label, :meth:`SeriesResults.labels`) marks every rung
    that does not come from this run with an asterisk, and the title says where those come from."""
    import matplotlib.pyplot as plt

    from . import plots

    ratios = dict(ratios or {})
    sources = dict(sources or {})
    label_of = {id(r): entry_label(sources, r.notebook, r.label) for r in rungs}
    borrowed = [r for r in rungs if label_of[id(r)] != "this run"]
    whole = {r.notebook for r in rungs if sources.get(r.notebook, "this run") != "this run"}
    ratio_from = {r.step: (r.notebook, entry_label(sources, r.notebook, f"hit_ratio:{r.step}"))
                  for r in rungs if r.kind == "hit" and r.step in ratios}
    ratio_borrowed = {step: label for step, (_, label) in ratio_from.items() if label != "this run"}
    star = {r.step for r in borrowed} | set(ratio_borrowed)
    if star:
        where = ", ".join(sorted({label_of[id(r)] for r in borrowed} | set(ratio_borrowed.values())))
        parts = sorted({nb[:2] for nb in whole}
                       | {f"{r.notebook[:2]}'s {r.label}" for r in borrowed if r.notebook not in whole}
                       | {f"{ratio_from[step][0][:2]}'s hit ratio of {step}" for step in ratio_borrowed
                          if ratio_from[step][0] not in whole})
        if len(borrowed) == len(rungs):
            title += f"\n* every rung from {where}"
        else:
            title += f"\n* from {where} ({', '.join(parts)}); the rest from this run"
    timings = [r.labelled_timing() for r in rungs]
    timings = [Timing(t.name + (" *" if label_of[id(r)] != "this run" else ""), t.samples_ns, t.loops, dict(t.meta))
               for r, t in zip(rungs, timings, strict=True)]
    colors = {t.name: KIND_COLORS.get(r.kind, plots.PALETTE[-1]) for r, t in zip(rungs, timings, strict=True)}
    costs = expected_costs(rungs, ratios)
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 0.42 * len(rungs) + 1.9),
                                      gridspec_kw={"width_ratios": [3, 2]})
    plots.dot_chart(timings, title="Cost of one answer (blue: hit, orange: miss)", colors=colors, ax=left)
    base = baseline(rungs)
    names = [f"{step}{' *' if step in star else ''} (at {ratios[step]:.0%} hits)" for step in costs] + [
        "recompute (no cache)" + (" *" if "recompute" in star else "")]
    values = [*costs.values(), base.median]
    right.scatter(values, range(len(values)), color=[plots.PALETTE[0]] * len(costs) + [KIND_COLORS["miss"]], zorder=3)
    right.set_yticks(range(len(values)), names)
    right.invert_yaxis()
    if max(values) > 10 * min(values):  # a log axis only for a range of an order of magnitude or more
        right.set_xscale("log")
    else:
        right.set_xlim(0, max(values) * 1.35)
        right.xaxis.set_major_locator(plt.MaxNLocator(4))
    plots.time_axis(right, "x")
    right.grid(axis="x", which="both", alpha=0.3)
    right.set_title("Expected cost of one request at the measured hit ratio")
    for y, value in enumerate(values):
        right.annotate(f"{format_ns(value)}  ({base.median / value:.2g}x)", (value, y), textcoords="offset points",
                       xytext=(6, -3), fontsize=8)
    fig.suptitle(title, fontweight="bold")
    fig.tight_layout()
    if save_as:
        plots.save(fig, save_as)
    return fig


# --------------------------------------------------------------------------- one run, or the reference run

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


@dataclass(frozen=True)
class Source:
    """Where one notebook's results come from: this run, or the committed reference run; the machine and date
    are read from the results' environment banner."""

    notebook: str
    this_run: bool
    machine: str
    date: str
    why: str = ""  # why this run's results were not used

    @property
    def label(self) -> str:
        """``"this run"``, or ``"the reference run (AMD EPYC x 2, 2026-12-06)"``."""
        return "this run" if self.this_run else f"the reference run ({self.machine}, {self.date[:10]})"

    @classmethod
    def of(cls, notebook: str, saved: _results.SavedResults, this_run: bool, why: str = "") -> Source:
        env = saved.environment
        machine = f"{env.get('cpu', 'an unknown CPU')} x {env.get('cpus', '?')}"
        return cls(notebook, this_run, machine, str(env.get("date", "")), why)


@dataclass
class SeriesResults:
    """The results a notebook combines, each labelled with its :class:`Source`: this run's where it has them,
    the committed reference run's for a notebook this run lacks (missing, stale, or in another mode).

    ``reference`` is true when every one comes from the reference run, ``mixed`` when some do; ``why`` says
    what was wrong with this run's. ``entries`` lists, per notebook of this run, the entries it lacked (a ladder
    rung or a hit ratio computed only in a Going deeper section a reader skipped) and took from the reference
    run: ``{notebook: {entry: Source}}``, an entry named as in :func:`entry_label`."""

    loaded: dict[str, _results.SavedResults]
    reference: bool = False
    why: str = ""
    sources: dict[str, Source] | None = None
    entries: dict[str, dict[str, Source]] = field(default_factory=dict)

    def __post_init__(self):
        if self.sources is None:
            self.sources = {nb: Source.of(nb, saved, not self.reference, self.why if self.reference else "")
                            for nb, saved in self.loaded.items()}

    @property
    def borrowed(self) -> list[str]:
        """The notebooks whose results come from the reference run."""
        return [nb for nb, src in self.sources.items() if not src.this_run]

    @property
    def borrowed_entries(self) -> list[str]:
        """``"06_redis: near cache (hit)"``: each entry of this run's notebooks taken from the reference run."""
        return [f"{nb}: {entry}" for nb, found in self.entries.items() for entry in found]

    @property
    def mixed(self) -> bool:
        return bool(self.borrowed_entries) or (bool(self.borrowed) and len(self.borrowed) < len(self.sources))

    @property
    def all_this_run(self) -> bool:
        return not self.borrowed and not self.entries

    def label(self, notebook: str) -> str:
        return self.sources[notebook].label

    def source_of(self, notebook: str, entry: str | None = None) -> Source:
        """Where ``notebook``'s results come from, or with ``entry`` (a rung's label, a value's key) that entry."""
        return self.entries.get(notebook, {}).get(entry, self.sources[notebook])

    def labels(self) -> dict[str, str]:
        """``{notebook: label}``, for :func:`cachelab.guide.measured_in`, and ``{"notebook/entry": label}`` for each
        entry taken from the reference run (read them with :func:`entry_label`)."""
        return {nb: src.label for nb, src in self.sources.items()} | {
            f"{nb}/{entry}": src.label for nb, found in self.entries.items() for entry, src in found.items()}

    @property
    def source(self) -> str:
        if self.all_this_run:
            return "this run"
        if not self.mixed:
            return "the committed reference run"
        return "this run, and the reference run for " + ", ".join(self.borrowed + self.borrowed_entries)

    def describe(self) -> str:
        """Sentences for the reader: where the numbers come from, and why."""
        if self.all_this_run:
            return "Every result of 01-09 below comes from this run of the series."
        lines = []
        if self.mixed:
            lines.append(f"This run's results for {', '.join(nb for nb in self.sources if nb not in self.borrowed)}; "
                         "from the committed reference run, because this run lacks them:")
        elif not self.borrowed:
            lines.append("This run's results, except what this run lacks, from the committed reference run:")
        else:
            lines.append("Every result of 01-09 below comes from the committed reference run, not from this run:")
        for nb in self.borrowed:
            src = self.sources[nb]
            lines.append(f"  {nb}: {src.machine}, saved {src.date}" + (f" ({src.why})" if src.why else ""))
        for nb, found in self.entries.items():
            src = next(iter(found.values()))
            lines.append(f"  {', '.join(found)}, which this run's {nb} did not save (computed in a Going deeper "
                         f"section that was skipped, or left out by this machine): {src.machine}, saved {src.date}")
        lines.append("Each figure below says which it is. Run the series (`make run`) to see your own.")
        return "\n".join(lines)


def _this_run(notebook: str, *, max_gap: float, now) -> tuple[_results.SavedResults | None, str]:
    """This run's results of one notebook, or ``None`` and why they cannot count as this run's."""
    from . import paths
    from .timing import quick_mode

    try:
        saved = _results.load(notebook)
    except _results.ResultsMissing:
        return None, "this run has not saved its results"
    if paths.results_dir().resolve() == paths.reference_results_dir().resolve():
        return None, "the reference run's own results, re-executed notebook by notebook"
    if bool(saved.environment.get("quick_mode")) != quick_mode():
        return None, "saved in the other mode (quick or full)"
    at = _saved_at(saved)
    if at > now:
        return None, "saved after this run began"
    if (now - at).total_seconds() > max_gap:
        return None, f"saved {(now - at).total_seconds() / 60:.0f} min ago, by an earlier run"
    return saved, ""


def series_results(notebooks: Sequence[str] = SERIES, *, fallback: bool = True, max_gap: float = 3600.0,
                   now=None) -> SeriesResults:
    """The results of ``notebooks``: this run's (:func:`current_run`) when all of them are there, else each
    notebook on its own, this run's when it saved them in this mode within ``max_gap`` seconds of ``now``,
    the reference run's otherwise, labelled (:class:`Source`). Without ``fallback``, or without reference
    results for a notebook this run lacks, the error names the notebook to run.
    """
    import datetime as _dt

    try:
        series = SeriesResults(current_run(notebooks, max_gap=max_gap, now=now))
        if fallback:
            _fill_from_reference(series)
        return series
    except (_results.ResultsMissing, ResultsStale) as exc:
        if not fallback:
            raise
        first = exc
    now = now or _dt.datetime.now(_dt.UTC)
    loaded, sources = {}, {}
    for notebook in notebooks:
        saved, why = _this_run(notebook, max_gap=max_gap, now=now)
        if saved is None:
            try:
                saved = _results.load_reference(notebook)
            except _results.ResultsMissing:
                raise first from None
        loaded[notebook] = saved
        sources[notebook] = Source.of(notebook, saved, not why, why)
    everything = all(not src.this_run for src in sources.values())
    series = SeriesResults(loaded, everything, str(first) if everything else "", sources)
    _fill_from_reference(series)
    return series


def _fill_from_reference(series: SeriesResults) -> None:
    """Give each notebook of this run the ladder rungs (:data:`EXPECTED`) and hit ratios it lacks and the reference
    run has, recorded in ``series.entries``: a notebook saves some of them only from a Going deeper section, which a
    reader may skip."""
    for notebook, saved in list(series.loaded.items()):
        if not series.sources[notebook].this_run:
            continue
        have = entries(saved)
        rungs = [(step, kind) for step, kind, nb in EXPECTED if nb == notebook and (step, kind) not in have]
        values = [key for key, nb in OPTIONAL_VALUES if nb == notebook and key not in saved.values]
        if not rungs and not values:
            continue
        try:
            reference = _results.load_reference(notebook)
        except _results.ResultsMissing:
            continue
        if reference is saved or reference.environment == saved.environment:
            continue  # the reference run's own results: nothing to take
        theirs = entries(reference)
        rungs = [sk for sk in rungs if sk in theirs]
        values = [key for key in values if key in reference.values]
        if not rungs and not values:
            continue
        merged = copy.copy(saved)
        merged.timings, merged.values = dict(saved.timings), dict(saved.values)
        for step, kind in rungs:
            timing = theirs[step, kind]
            name = timing.name if timing.name not in merged.timings else f"{timing.name} (the reference run)"
            merged.timings[name] = Timing(name, timing.samples_ns, timing.loops, dict(timing.meta))
        for key in values:
            merged.values[key] = reference.values[key]
        series.loaded[notebook] = merged
        src = Source.of(notebook, reference, False, "this run did not save it")
        series.entries[notebook] = {f"{step} ({kind})": src for step, kind in rungs} | {key: src for key in values}
