"""The dataset and the slow service the notebooks cache.

The data are the nycflights13 tables (every flight that departed New York City in 2013: 336,776
rows, CC0), committed as compressed CSV in ``data/`` and loaded on first use into a SQLite database
in ``.cachelab/flights.sqlite``. The ``flights`` table has no index on purpose: each question the
service answers is an aggregate over the whole table, the kind of analytic query that stays expensive
even when it is well written, and that a cache exists to avoid repeating.
"""

from __future__ import annotations

import csv
import hashlib
import lzma
import os
import shutil
import sqlite3
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import arguments, paths

FLIGHT_COLUMNS = (
    "month", "day", "sched_dep_time", "dep_delay", "arr_delay", "carrier", "flight",
    "tailnum", "origin", "dest", "air_time", "distance",
)
_INT_COLUMNS = {"month", "day", "sched_dep_time", "flight"}
_REAL_COLUMNS = {"dep_delay", "arr_delay", "air_time", "distance"}
SOURCES = ("flights.csv.xz", "airports.csv", "airlines.csv")
_build_lock = threading.Lock()


def _source_digest() -> str:
    digest = hashlib.sha256()
    for name in SOURCES:
        digest.update((paths.data_dir() / name).read_bytes())
    return digest.hexdigest()


def _convert(column: str, value: str):
    if value in ("", "NA"):
        return None
    if column in _INT_COLUMNS:
        return int(value)
    if column in _REAL_COLUMNS:
        return float(value)
    return value


def _read_csv(path: Path) -> Iterable[dict[str, str]]:
    if path.suffix == ".xz":
        with lzma.open(path, "rt", encoding="utf-8", newline="") as handle:
            yield from csv.DictReader(handle)
    else:
        with path.open(encoding="utf-8", newline="") as handle:
            yield from csv.DictReader(handle)


def build_database(target: Path) -> Path:
    """Load the CSV sources into a fresh SQLite file at ``target`` (atomically replaced)."""
    target = Path(arguments.instance("target", target, str | os.PathLike))
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_suffix(".tmp")
    tmp.unlink(missing_ok=True)
    conn = sqlite3.connect(tmp)
    try:
        cols = ", ".join(f"{c} {'INTEGER' if c in _INT_COLUMNS else 'REAL' if c in _REAL_COLUMNS else 'TEXT'}"
                         for c in FLIGHT_COLUMNS)
        conn.execute(f"CREATE TABLE flights ({cols})")
        rows = ([_convert(c, row[c]) for c in FLIGHT_COLUMNS]
                for row in _read_csv(paths.data_dir() / "flights.csv.xz"))
        conn.executemany(f"INSERT INTO flights VALUES ({', '.join('?' * len(FLIGHT_COLUMNS))})", rows)
        conn.execute("CREATE TABLE airports (faa TEXT PRIMARY KEY, name TEXT, lat REAL, lon REAL, "
                     "alt INTEGER, tz REAL, dst TEXT, tzone TEXT)")
        conn.executemany(
            "INSERT INTO airports VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            ([r["faa"], r["name"], float(r["lat"]), float(r["lon"]), int(r["alt"]),
              float(r["tz"]), r["dst"], r["tzone"]] for r in _read_csv(paths.data_dir() / "airports.csv")),
        )
        conn.execute("CREATE TABLE airlines (carrier TEXT PRIMARY KEY, name TEXT)")
        conn.executemany("INSERT INTO airlines VALUES (?, ?)",
                         ([r["carrier"], r["name"]] for r in _read_csv(paths.data_dir() / "airlines.csv")))
        conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT)")
        conn.execute("INSERT INTO meta VALUES ('source_sha256', ?)", (_source_digest(),))
        conn.commit()
    finally:
        conn.close()
    tmp.replace(target)
    return target


def database_path() -> Path:
    """The SQLite database, built from ``data/`` on first use and rebuilt if the sources change."""
    target = paths.cache_dir() / "flights.sqlite"
    with _build_lock:
        if target.exists():
            try:
                with sqlite3.connect(f"file:{target}?mode=ro", uri=True) as conn:
                    (digest,) = conn.execute("SELECT value FROM meta WHERE key='source_sha256'").fetchone()
                if digest == _source_digest():
                    return target
            except sqlite3.Error:
                pass
        return build_database(target)


def copy_database(destination: str | Path) -> Path:
    """A private, writable copy of the database, for notebooks that change rows (staleness demos)."""
    arguments.instance("destination", destination, str | os.PathLike)
    destination = Path(destination)
    if destination.exists() and destination.resolve() == database_path().resolve():
        raise ValueError("copy_database needs a destination other than the shared database itself")
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(database_path(), destination)
    return destination


@dataclass(frozen=True)
class Route:
    """A question's key: one route in one month."""

    origin: str
    dest: str
    month: int

    def __post_init__(self):
        _check_route(self.origin, self.dest, self.month)

    def key(self) -> str:
        """A string form for external caches, such as ``JFK-LAX-07``."""
        return f"{self.origin}-{self.dest}-{self.month:02d}"


def _check_route(origin, dest, month) -> int:
    """Airport codes are non-empty strings, a month is an integer from 1 to 12: returns the month."""
    arguments.text("origin", origin)
    arguments.text("dest", dest)
    return arguments.integer("month", month, minimum=1, maximum=12)


class FlightService:
    """The small flight-delay service that the series caches.

    Every answer is real work against SQLite; ``calls`` counts how many times the backend was asked,
    which is how a notebook proves what a cache saved. Answers are plain dicts of JSON types, so they
    can be stored in any cache without pickle.
    """

    def __init__(self, db_path: str | Path | None = None, *, writable: bool = False):
        if db_path is not None:
            arguments.instance("db_path", db_path, str | os.PathLike)
        self.db_path = Path(db_path) if db_path is not None else database_path()
        if not self.db_path.exists():
            raise FileNotFoundError(f"no database at {self.db_path}")
        if writable and self.db_path.resolve() == database_path().resolve():
            raise ValueError("the shared database is read-only for every notebook: open a private copy, "
                             "FlightService(copy_database(folder / 'flights.sqlite'), writable=True)")
        self.writable = bool(writable)
        uri = f"file:{self.db_path}?mode={'rw' if writable else 'ro'}"
        self._conn = sqlite3.connect(uri, uri=True, check_same_thread=False)
        self._lock = threading.Lock()
        self.calls = 0

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> FlightService:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def _query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with self._lock:
            self.calls += 1
            return self._conn.execute(sql, params).fetchall()

    # The aggregates of one answer, shared by route_delay and all_route_delays so both answer alike.
    _DELAY_AGGREGATES = ("COUNT(*), AVG(arr_delay), AVG(dep_delay), "
                         "SUM(arr_delay <= 15), SUM(arr_delay IS NULL), MAX(arr_delay)")

    @staticmethod
    def _delay_answer(origin: str, dest: str, month: int, row: tuple) -> dict:
        count, mean_arr, mean_dep, on_time, cancelled, worst = row
        flown = count - (cancelled or 0)
        return {
            "origin": origin, "dest": dest, "month": int(month), "flights": count,
            "mean_arr_delay": None if mean_arr is None else round(mean_arr, 3),
            "mean_dep_delay": None if mean_dep is None else round(mean_dep, 3),
            "on_time_rate": None if not flown else round((on_time or 0) / flown, 4),
            "cancelled": cancelled or 0,
            "worst_arr_delay": worst,
        }

    def route_delay(self, origin: str, dest: str, month: int) -> dict:
        """Delay statistics of one route in one month: a full scan of the flights table."""
        month = _check_route(origin, dest, month)
        (row,) = self._query(
            f"SELECT {self._DELAY_AGGREGATES} FROM flights WHERE origin = ? AND dest = ? AND month = ?",
            (origin, dest, int(month)),
        )
        return self._delay_answer(origin, dest, month, row)

    def all_route_delays(self) -> dict[Route, dict]:
        """Every answer at once, ``{Route: answer}``: one query (one scan, ``GROUP BY``), one backend call.

        Each answer equals what :meth:`route_delay` returns for that route; the keys are the routes of
        :meth:`routes`. For replays that need the real answers of thousands of requests without paying
        a full scan per miss: the hit ratio of a cache depends on the keys, not on what a miss costs.
        """
        rows = self._query(f"SELECT origin, dest, month, {self._DELAY_AGGREGATES} FROM flights "
                           "GROUP BY origin, dest, month")
        return {Route(o, d, m): self._delay_answer(o, d, m, rest) for o, d, m, *rest in rows}

    def ask(self, route: Route) -> dict:
        """``route_delay`` for a :class:`Route`."""
        arguments.instance("route", route, Route)
        return self.route_delay(route.origin, route.dest, route.month)

    def arrival_delays(self, origin: str, dest: str | None = None) -> np.ndarray:
        """Arrival delays (minutes) of every flown flight from ``origin`` (to ``dest``), as float64."""
        arguments.text("origin", origin)
        if dest is not None:
            arguments.text("dest", dest)
        if dest is None:
            rows = self._query("SELECT arr_delay FROM flights WHERE origin = ? AND arr_delay IS NOT NULL",
                               (origin,))
        else:
            rows = self._query("SELECT arr_delay FROM flights WHERE origin = ? AND dest = ? "
                               "AND arr_delay IS NOT NULL", (origin, dest))
        return np.fromiter((r[0] for r in rows), dtype=np.float64, count=len(rows))

    def flight_count(self) -> int:
        """How many flights the table holds."""
        ((count,),) = self._query("SELECT COUNT(*) FROM flights")
        return count

    def routes(self) -> list[Route]:
        """Every (origin, dest, month) with flights, busiest first (ties broken by name)."""
        rows = self._query(
            "SELECT origin, dest, month, COUNT(*) AS n FROM flights GROUP BY origin, dest, month "
            "ORDER BY n DESC, origin, dest, month"
        )
        return [Route(o, d, m) for o, d, m, _ in rows]

    def record_flight(self, origin: str, dest: str, month: int, arr_delay: float) -> None:
        """Insert one flight (a writable service only): the row change that makes cached answers stale."""
        if not self.writable:
            raise ValueError("this service is readonly; record_flight needs a writable copy: "
                             "FlightService(copy_database(folder / 'flights.sqlite'), writable=True)")
        month = _check_route(origin, dest, month)
        arr_delay = arguments.number("arr_delay", arr_delay)
        with self._lock:
            self._conn.execute(
                "INSERT INTO flights (month, day, origin, dest, arr_delay, dep_delay, carrier) "
                "VALUES (?, 1, ?, ?, ?, ?, 'XX')",
                (int(month), origin, dest, float(arr_delay), float(arr_delay)),
            )
            self._conn.commit()


def bootstrap_ci(values: np.ndarray, *, n_boot: int = 2000, confidence: float = 0.95,
                 seed: int = 0) -> tuple[float, float, float]:
    """Bootstrap confidence interval of the mean: ``(low, mean, high)``.

    Real numpy work: ``n_boot`` resamples of ``len(values)`` draws each. Deterministic for a seed.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 1 or values.size == 0:
        raise ValueError("bootstrap_ci needs a non-empty 1-D array")
    if not np.isfinite(values).all():
        raise ValueError("bootstrap_ci needs finite values: drop the NaNs (cancelled flights) first")
    n_boot = arguments.integer("n_boot", n_boot, minimum=1)
    confidence = arguments.number("confidence", confidence)
    if not 0 < confidence < 1:
        raise ValueError("confidence must be between 0 and 1")
    rng = np.random.default_rng(seed)
    means = np.empty(n_boot)
    chunk = max(1, 2_000_000 // values.size)
    for start in range(0, n_boot, chunk):
        stop = min(n_boot, start + chunk)
        idx = rng.integers(0, values.size, size=(stop - start, values.size))
        means[start:stop] = values[idx].mean(axis=1)
    alpha = (1 - confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(low), float(values.mean()), float(high)
