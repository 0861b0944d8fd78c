"""Execute the numbered notebooks, in order, and build the report: ``make run``, ``make refresh``, the tests.

Sources in ``notebooks/`` stay untouched by ``make run``: executed copies, HTML pages, figures and results
go to ``build/``. ``make refresh`` executes the sources in place, so the committed notebooks carry the
outputs of a clean reference run.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import paths

CELL_TIMEOUT = {"quick": 300, "full": 600}


def list_notebooks(only: Sequence[str] | None = None) -> list[Path]:
    """The numbered notebooks in reading order, optionally only those whose name starts with ``only``."""
    found = sorted(paths.notebooks_dir().glob("[0-9][0-9]_*.ipynb"))
    if only:
        found = [p for p in found if any(p.stem.startswith(o) for o in only)]
        if not found:
            raise ValueError(f"no notebook matches {list(only)}")
    return found


def title_of(nb) -> str:
    """The notebook's first Markdown heading."""
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return ""


@contextlib.contextmanager
def _environ(values: dict[str, str]) -> Iterator[None]:
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


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
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    nb = nbformat.read(path, as_version=4)
    env = {"CACHELAB_QUICK": "1" if quick else "0", "PYTHONHASHSEED": "0", "MPLBACKEND":
           "module://matplotlib_inline.backend_inline"}
    if results_dir:
        env["CACHELAB_RESULTS_DIR"] = str(results_dir)
    if figures_dir:
        env["CACHELAB_FIGURES_DIR"] = str(figures_dir)
    from jupyter_client.manager import KernelManager

    # IPC sockets in a private folder rather than TCP ports: nothing else on the machine can talk to the kernel.
    sockets = tempfile.TemporaryDirectory(prefix="cachelab-kernel-")
    km = KernelManager(kernel_name="python3", transport="ipc", ip=str(Path(sockets.name) / "kernel"))
    client = NotebookClient(
        nb, km=km, timeout=timeout or CELL_TIMEOUT["quick" if quick else "full"], kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}}, record_timing=False,
    )
    start = time.perf_counter()
    error = ""
    with sockets, _environ(env):
        try:
            client.execute()
        except CellExecutionError as exc:
            error = _short_error(str(exc))
        except Exception as exc:  # noqa: BLE001 - a dead kernel or a timeout: report, don't crash the run
            error = f"{type(exc).__name__}: {exc}"
        finally:
            if km.has_kernel:  # nbclient leaves a kernel manager it was given running
                km.shutdown_kernel(now=False)
    seconds = time.perf_counter() - start
    out_path = out_path or path
    out_path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, out_path)
    return Outcome(path, not error, seconds, error, title_of(nb))


def _short_error(text: str) -> str:
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    lines = [ln for ln in text.strip().splitlines() if ln.strip()]
    return "\n".join(lines[-6:])


# --------------------------------------------------------------------------- the site

def write_site(executed: list[Path], outcomes: list[Outcome], site_dir: Path, figures_dir: Path,
               banner_text: str) -> Path:
    """An HTML page per executed notebook and an index page: see :mod:`cachelab.site`."""
    from .site import write_site as _write_site

    return _write_site(executed, outcomes, site_dir, figures_dir, banner_text)


# --------------------------------------------------------------------------- the whole series

def run_series(*, quick: bool = False, out_dir: Path | None = None, only: Sequence[str] | None = None,
               in_place: bool = False, progress: bool = True) -> list[Outcome]:
    """Execute the notebooks in order. ``in_place`` rewrites the sources (``make refresh``)."""
    from tqdm import tqdm

    from .environment import banner, environment

    out_dir = Path(out_dir or paths.project_root() / "build")
    results_dir = None if in_place else out_dir / "results"
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
