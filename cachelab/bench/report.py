"""The rows of one benchmark run, the verdict against each target, the table and the saved results."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..timing import Timing, format_ns
from .placement import Pinning, describe_placement, off_pinning

PREFIX = f"cachelab:bench-{os.getpid()}:"  # one per run: two runs on the same servers never meet
KEY_TTL = 600  # seconds: a run that dies before its cleanup leaves nothing behind for long
BATCH = 100
NOISY_SPREAD = 0.3  # (p90 - p10) / median above which a row counts as noisy (see Timing.spread)
GROUPS = ("in-process", "disk", "network")
GROUP_COLORS = {"in-process": "#4C72B0", "disk": "#DD8452", "network": "#55A868"}
FLOOR_COLOR = "#8C8C8C"

# Row names, used as keys in results.json (readers of the file look rows up by them): rename with care.
DICT = "dict lookup"
LRU = "functools.lru_cache hit"
CT_MAPPING = "cachetools LRUCache[key]"
CT_CACHED = "cachetools @cached hit"
NEAR = "near cache hit"
READ_BYTES = "read the same bytes (open+read)"
JOBLIB = "joblib.Memory hit"
RAW_REDIS = "raw socket GET (Redis)"
REDIS_BENCHMARK = "redis-benchmark -c 1 GET"
REDIS_PY = "redis-py GET"
REDIS_PY_SINGLE = "redis-py GET, one connection"
REDIS_MGET = f"redis-py MGET {BATCH} keys, per key"
RAW_MEMCACHED = "raw socket get (memcached)"
PYMEMCACHE = "pymemcache GET"
PYMEMCACHE_HASH = "pymemcache HashClient GET"
PYMEMCACHE_MANY = f"pymemcache get_many {BATCH} keys, per key"

TARGETS = (  # (row, floor, the ratio to the floor the row should stay within)
    (REDIS_PY, REDIS_BENCHMARK, 2.0),
    (PYMEMCACHE, RAW_MEMCACHED, 2.0),
    (LRU, DICT, 4.0),
)


@dataclass(frozen=True)
class Settings:
    """How long to measure: ``quick`` for the smoke test, the default for numbers you read."""

    quick: bool = False

    @property
    def repeat(self) -> int:
        return 5 if self.quick else 15

    @property
    def min_time(self) -> float:
        return 0.005 if self.quick else 0.05

    @property
    def benchmark_requests(self) -> int:
        """Requests per ``redis-benchmark`` run; each run is one sample, ``repeat`` runs in all."""
        return 1_000 if self.quick else 10_000


@dataclass
class Row:
    """One measured layer: its timing and the floors it is compared with (none for a floor itself).

    ``bound=False`` says the row may legitimately come out below its floors: a second floor compared with
    the first (``redis-benchmark``, a C client, against the raw socket driven from Python).
    """

    group: str
    timing: Timing
    floors: tuple[str, ...] = ()
    note: str = ""
    bound: bool = True

    @property
    def name(self) -> str:
        return self.timing.name

    @property
    def is_floor(self) -> bool:
        return not self.floors

    @property
    def batch(self) -> int:
        """Keys per operation: a batch row's time is per key, and is meant to come out below its floor."""
        return int(self.timing.meta.get("batch", 1))

    @property
    def bounded_by(self) -> tuple[str, ...]:
        """The floors this row cannot beat: all of them for one operation, none for a batch (per key) or
        for a row that is not ``bound``."""
        return self.floors if self.bound and self.batch == 1 else ()


@dataclass
class Report:
    """Everything one run measured, with the placement of the processes and the verdicts.

    A floor that comes out above a layer it bounds is a fault of the measurement, not a result: measured
    over the same connection, server thread and CPUs, no layer can beat it, so the two were measured under
    different conditions. Such a pair gets no ratio (:meth:`faults` lists them), and its target no verdict.
    """

    rows: list[Row]
    placement: dict
    pinning: Pinning | None
    settings: Settings
    environment: dict = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def row(self, name: str) -> Row:
        for row in self.rows:
            if row.name == name:
                return row
        raise KeyError(f"no row {name!r}; the run measured {[r.name for r in self.rows]}")

    def ratio(self, name: str, floor: str) -> float | None:
        """How many times the floor's median the row's median is (``None`` if either was not measured)."""
        try:
            return self.row(name).timing.median / self.row(floor).timing.median
        except KeyError:
            return None

    def is_fault(self, name: str, floor: str) -> bool:
        """Whether ``floor``, which bounds row ``name``, came out above it."""
        try:
            row = self.row(name)
        except KeyError:
            return False
        ratio = self.ratio(name, floor)
        return floor in row.bounded_by and ratio is not None and ratio < 1

    def faults(self) -> list[dict]:
        """Every floor that came out above a layer it bounds, with both medians."""
        return [{"row": r.name, "floor": f, "row_median_ns": r.timing.median,
                 "floor_median_ns": self.row(f).timing.median}
                for r in self.rows for f in r.bounded_by if self.is_fault(r.name, f)]

    def targets(self) -> list[dict]:
        out = []
        for name, floor, limit in TARGETS:
            ratio = self.ratio(name, floor)
            fault = self.is_fault(name, floor)
            out.append({"row": name, "floor": floor, "within": limit, "ratio": None if fault else ratio,
                        "fault": fault, "met": None if ratio is None or fault else ratio <= limit})
        return out

    def noisy_rows(self) -> list[str]:
        return [r.name for r in self.rows if r.timing.spread > NOISY_SPREAD]

    @property
    def noisy(self) -> bool:
        """Whether any row's repeats spread by more than ``NOISY_SPREAD`` of its median."""
        return bool(self.noisy_rows())

    def table(self) -> str:
        """The rows as a plain-text table: median, p10-p90 and the ratio to each floor."""
        width = max(len(r.name) for r in self.rows)
        head = f"{'layer':<{width}}  {'median':>9}  {'p10-p90':>21}  ratio to floor"
        lines = [head, "-" * (len(head) + 30)]
        for group in GROUPS:
            members = [r for r in self.rows if r.group == group]
            if not members:
                continue
            lines.append(f"[{group}]")
            for r in members:
                t = r.timing
                spread = f"{format_ns(t.p10)} to {format_ns(t.p90)}"
                if r.is_floor:
                    ratios = "floor"
                else:
                    ratios = ", ".join(f"FAULT: {f} came out above it" if self.is_fault(r.name, f)
                                       else f"{self.ratio(r.name, f):,.3g}x {f}" for f in r.floors
                                       if self.ratio(r.name, f) is not None)
                lines.append(f"{r.name:<{width}}  {format_ns(t.median):>9}  {spread:>21}  {ratios}")
        return "\n".join(lines)

    def summary(self) -> str:
        """The targets met or missed, the placement and the noise verdict, in sentences."""
        lines = []
        for t in self.targets():
            if t["fault"]:
                lines.append(f"Target {t['row']} within {t['within']:g}x of {t['floor']}: no verdict, "
                             "the floor came out above the layer (see the measurement fault below).")
            elif t["ratio"] is None:
                lines.append(f"Target {t['row']} within {t['within']:g}x of {t['floor']}: not measured.")
            else:
                verdict = "met" if t["met"] else "MISSED"
                lines.append(f"Target {t['row']} within {t['within']:g}x of {t['floor']}: "
                             f"{t['ratio']:.2f}x, {verdict}.")
                single = self.ratio(REDIS_PY_SINGLE, t["floor"])
                if t["row"] == REDIS_PY and not t["met"] and single is not None:
                    lines.append(f"  With one connection instead of the pool, redis-py is {single:.2f}x: borrowing a "
                                 "connection and returning it (a lock, a poll of the socket, counters) costs the rest.")
        for f in self.faults():
            lines.append(f"MEASUREMENT FAULT: {f['floor']} ({format_ns(f['floor_median_ns'])}) came out above "
                         f"{f['row']} ({format_ns(f['row_median_ns'])}), a layer it bounds. Over the same "
                         "connection, server thread and CPUs no layer beats its floor, so the two caught different "
                         "conditions (a busy neighbour, a process moved between CPUs) and this run gives no ratio "
                         "for them. Rerun pinned (the default, without --no-pin) on a quieter machine.")
        lines.append(describe_placement(self.placement, self.pinning))
        lines.extend(off_pinning(self.placement, self.pinning))
        worst = max(self.rows, key=lambda r: r.timing.spread)
        load = self.environment.get("loadavg_before")
        cpus = self.environment.get("cpus") or 1
        busy = f" The load average was {load[0]:.1f} on {cpus} CPUs at the start" if load else ""
        busy += ": other processes competed for them." if load and load[0] >= cpus / 2 else "." if load else ""
        if self.noisy:
            lines.append(f"Noisy run: {len(self.noisy_rows())} of {len(self.rows)} rows spread by more than "
                         f"{NOISY_SPREAD:.0%} of their median over the repeats (widest: {worst.name}, "
                         f"{worst.timing.spread:.0%}).{busy} Rerun on a quieter machine"
                         + (", pinned (without --no-pin)." if self.pinning is None else "."))
        else:
            lines.append(f"Quiet run: every row's repeats spread by at most {worst.timing.spread:.0%} of its "
                         f"median (widest: {worst.name}).{busy}")
        lines.extend(self.notes)
        return "\n".join(lines)

    def to_dict(self) -> dict:
        rows = []
        for r in self.rows:
            faults = [f for f in r.floors if self.is_fault(r.name, f)]
            rows.append({"group": r.group, "floors": list(r.floors), "note": r.note,
                         "ratios": {f: None if f in faults else self.ratio(r.name, f) for f in r.floors},
                         "faults": faults, "spread": r.timing.spread, **r.timing.to_dict()})
        return {"quick": self.settings.quick,
                "pinning": self.pinning.to_dict() if self.pinning is not None else None,
                "faults": self.faults(), "noisy": self.noisy, "noisy_rows": self.noisy_rows(),
                "noisy_spread": NOISY_SPREAD, "targets": self.targets(), "placement": self.placement,
                "notes": self.notes, "environment": self.environment, "rows": rows}


def save(report: Report, out_dir: Path) -> tuple[Path, Path]:
    """Write ``results.json`` and ``bench.png`` into ``out_dir``; return both paths."""
    import matplotlib.pyplot as plt

    from ..plots import latency_chart

    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "results.json"
    tmp = json_path.with_suffix(".tmp")
    tmp.write_text(json.dumps(report.to_dict(), indent=1, ensure_ascii=False), encoding="utf-8")
    tmp.replace(json_path)
    floors = {f for r in report.rows for f in r.floors}
    colors = {r.name: FLOOR_COLOR if r.is_floor or r.name in floors else GROUP_COLORS[r.group]
              for r in report.rows}
    title = "Cost of one cache hit at each layer, next to its floor (grey)"
    if report.settings.quick:
        title += " [QUICK MODE]"
    fig = latency_chart([r.timing for r in report.rows], title=title, colors=colors)
    figure_path = out_dir / "bench.png"
    fig.savefig(figure_path, bbox_inches="tight")
    plt.close(fig)
    return json_path, figure_path


__all__ = [
    "BATCH", "CT_CACHED", "CT_MAPPING", "DICT", "FLOOR_COLOR", "GROUPS", "GROUP_COLORS", "JOBLIB", "KEY_TTL",
    "LRU", "NEAR", "NOISY_SPREAD", "PREFIX", "PYMEMCACHE", "PYMEMCACHE_HASH", "PYMEMCACHE_MANY", "RAW_MEMCACHED",
    "RAW_REDIS", "READ_BYTES", "REDIS_BENCHMARK", "REDIS_MGET", "REDIS_PY", "REDIS_PY_SINGLE", "Report", "Row",
    "Settings", "TARGETS", "save",
]
