"""Execute the numbered notebooks, in order, and build the report: ``make run``, ``make refresh``, the tests.

Sources in ``notebooks/`` stay untouched by ``make run``: executed copies, HTML pages, figures and results
go to ``build/``. ``make refresh`` executes the sources in place, so the committed notebooks carry the
outputs of a clean reference run.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .. import paths
from ..claims import NOT_SHOWN, REVERSED, load_log
from .notebooks import list_notebooks, notebook_client, title_of


@dataclass
class Outcome:
    path: Path
    ok: bool
    seconds: float
    error: str = ""
    title: str = ""
    claims: list[dict] = field(default_factory=list)  # the verdicts of its measured claims (cachelab.claims)

    @property
    def not_shown(self) -> list[dict]:
        """The claims this run did not show (not shown, or reversed)."""
        return [c for c in self.claims if c.get("verdict") in (NOT_SHOWN, REVERSED)]


def execute(path: Path, *, quick: bool, out_path: Path | None = None, results_dir: Path | None = None,
            figures_dir: Path | None = None, timeout: int | None = None) -> Outcome:
    """Execute one notebook top to bottom in a fresh kernel; write it to ``out_path`` (``path`` if None)."""
    import nbformat
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    start = time.perf_counter()
    error = ""
    with notebook_client(nb, path, quick=quick, results_dir=results_dir, figures_dir=figures_dir,
                         timeout=timeout) as client:
        try:
            client.execute()
        except CellExecutionError as exc:
            error = _cell_error(exc)
        except Exception as exc:  # noqa: BLE001 - a dead kernel or a timeout: report, don't crash the run
            error = f"{type(exc).__name__}: {exc}"
    seconds = time.perf_counter() - start
    out_path = out_path or path
    out_path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out_path)
    claims = load_log(claims_file(path.stem, results_dir or paths.results_dir()))
    return Outcome(path, not error, seconds, error, title_of(nb), claims)


def claims_file(notebook: str, results_dir: Path) -> Path:
    """Where a notebook run with ``results_dir`` keeps the verdicts of its claims."""
    return Path(results_dir) / "claims" / f"{notebook}.json"


def describe_claims(outcome: Outcome) -> list[str]:
    """One line per claim of a notebook's run that was not shown, for the summaries."""
    return [f"{c['verdict']}: {c['statement']}" for c in outcome.not_shown]


def _cell_error(exc) -> str:
    """What failed, in two lines: the exception and its message, then the start of the cell that raised it.

    The whole traceback stays in the executed notebook, where the reader can see it in place.
    """
    evalue = re.sub(r"\x1b\[[0-9;]*m", "", str(getattr(exc, "evalue", "") or "")).strip()
    message = f"{getattr(exc, 'ename', type(exc).__name__)}: {evalue}" if evalue else getattr(exc, "ename", "error")
    source = str(exc).split("------------------", 2)
    first = next((ln.strip() for ln in (source[1] if len(source) > 1 else "").splitlines() if ln.strip()), "")
    return message + (f"\nin the cell that starts: {first[:100]}" if first else "")


# --------------------------------------------------------------------------- the whole series

def run_series(*, quick: bool = False, out_dir: Path | None = None, only: Sequence[str] | None = None,
               in_place: bool = False, progress: bool = True, site: bool = True) -> list[Outcome]:
    """Execute the notebooks in order. ``in_place`` rewrites the sources (``make refresh``); ``site=False``
    skips the HTML pages (the soak)."""
    from tqdm import tqdm

    from ..environment import banner, environment
    from .site import write_site

    out_dir = Path(out_dir or paths.project_root() / "build").resolve()  # kernels run in notebooks/
    results_dir = paths.reference_results_dir() if in_place else out_dir / "results"  # a reference run: committed
    figures_dir = None if in_place else out_dir / "figures"
    for d in (results_dir, figures_dir):
        if d:
            d.mkdir(parents=True, exist_ok=True)
    notebooks = list_notebooks(only)
    outcomes, executed = [], []
    bar = tqdm(notebooks, desc="notebooks", unit="nb", disable=not progress, leave=True)
    for path in bar:
        bar.set_postfix_str(path.stem)
        target = path if in_place else out_dir / "notebooks" / path.name
        outcome = execute(path, quick=quick, out_path=target, results_dir=results_dir, figures_dir=figures_dir)
        status = "ok" if outcome.ok else "FAILED"
        shown = sum(c.get("verdict") == "shown" for c in outcome.claims)
        claims = f"  claims shown {shown}/{len(outcome.claims)}" if outcome.claims else ""
        bar.write(f"  {path.stem:<32} {status:<7} {outcome.seconds:6.1f} s{claims}")
        if outcome.error:
            bar.write("    " + outcome.error.replace("\n", "\n    "))
        for line in describe_claims(outcome):
            bar.write("    " + line)
        outcomes.append(outcome)
        executed.append(target)
    bar.close()
    if not in_place:
        if site:
            site_path = write_site(executed, outcomes, out_dir / "site", figures_dir or paths.figures_dir(),
                                   banner(environment()))
        summary = {"quick": quick, "notebooks": [
            {"notebook": o.path.stem, "ok": o.ok, "seconds": round(o.seconds, 2), "error": o.error,
             "claims": [{k: c.get(k) for k in ("statement", "verdict", "estimate", "low", "high", "sentence")}
                        for c in o.claims]}
            for o in outcomes]}
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
        if site:
            print(f"\nReport: {site_path}")
    return outcomes
