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
from dataclasses import dataclass
from pathlib import Path

from .. import paths
from .notebooks import list_notebooks, notebook_client, title_of


@dataclass
class Outcome:
    path: Path
    ok: bool
    seconds: float
    error: str = ""
    title: str = ""


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
    return Outcome(path, not error, seconds, error, title_of(nb))


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
               in_place: bool = False, progress: bool = True) -> list[Outcome]:
    """Execute the notebooks in order. ``in_place`` rewrites the sources (``make refresh``)."""
    from tqdm import tqdm

    from ..environment import banner, environment
    from .site import write_site

    out_dir = Path(out_dir or paths.project_root() / "build")
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
        bar.write(f"  {path.stem:<32} {status:<7} {outcome.seconds:6.1f} s")
        if outcome.error:
            bar.write("    " + outcome.error.replace("\n", "\n    "))
        outcomes.append(outcome)
        executed.append(target)
    bar.close()
    if not in_place:
        site = write_site(executed, outcomes, out_dir / "site", figures_dir or paths.figures_dir(),
                          banner(environment()))
        summary = {"quick": quick, "notebooks": [
            {"notebook": o.path.stem, "ok": o.ok, "seconds": round(o.seconds, 2), "error": o.error}
            for o in outcomes]}
        (out_dir / "summary.json").write_text(json.dumps(summary, indent=1), encoding="utf-8")
        print(f"\nReport: {site}")
    return outcomes
