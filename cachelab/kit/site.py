"""The HTML site of a run: an index page and a page per notebook, readable offline.

``make run`` writes it into ``build/site/`` from the notebooks it executed; ``python -m cachelab site``
writes it from the committed notebooks (which carry the outputs of the reference run) without running
anything. The index shows the series in reading order (title, time, what each notebook teaches, how its
run went), the ladder figure and the environment banner of the run. Every notebook page has previous/next
navigation at the top and the bottom and the banner at the foot.

The pages load nothing from the network: nbconvert's links to require.js, MathJax and mermaid on a CDN are
left out (a workshop room's Wi-Fi is not to be trusted, nor is a reader's privacy to be traded), plots are
embedded in the page, and the ladder figure is copied next to the index.
"""

from __future__ import annotations

import html
import os
import re
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

SITE_TITLE = "cachelab: caching in Python, measured"

TEMPLATES = Path(__file__).resolve().parent / "templates"  # page.html.j2, index.html.j2 and their CSS


@dataclass
class PageInfo:
    """What the index says about one notebook."""

    href: str
    number: str
    title: str
    time: str = ""
    learn: list[str] = field(default_factory=list)  # HTML of each "What you'll learn" bullet
    ok: bool = True
    seconds: float | None = None
    status: str = ""  # overrides "ran clean" / "FAILED in this run"

    @property
    def label(self) -> str:
        return f"{self.number} {self.title}"


def notebook_summary(nb) -> tuple[str, str, list[str]]:
    """The title, the **Time** line and the **What you'll learn** bullets (as Markdown) of a notebook."""
    title, time_text, learn = "", "", []
    for cell in nb.cells:
        if cell.cell_type != "markdown":
            continue
        lines = cell.source.splitlines()
        for i, line in enumerate(lines):
            if not title and line.startswith("# "):
                title = line[2:].strip()
            match = re.match(r"\s*\*\*Time\*\*\s*:?\s*(.+)", line)
            if match and not time_text:
                time_text = match.group(1).strip().rstrip(".")
            if re.match(r"\s*(\*\*|#+\s*)What you.ll learn", line, re.IGNORECASE) and not learn:
                for item in lines[i + 1:]:
                    bullet = re.match(r"\s*[-*]\s+(.+)", item)
                    if bullet:
                        learn.append(bullet.group(1).strip())
                    elif learn and item.startswith("  ") and item.strip():
                        learn[-1] += " " + item.strip()
                    elif learn or item.strip():
                        break
        if title and time_text and learn:
            break
    return title, time_text, learn


def _inline_markdown(text: str) -> str:
    import mistune

    rendered = mistune.html(text).strip()
    return re.sub(r"^<p>(.*)</p>$", r"\1", rendered, flags=re.DOTALL)


_NOTEBOOK = re.compile(r"(?:\.\./)?(?:notebooks/)?(\d\d_[\w-]+)\.ipynb")
_RELATIVE_HREF = re.compile(r'href="([^"#?:]+)((?:[?#][^"]*)?)"')


def _link_pages(body: str, hrefs: set[str], source_dir: Path, site_dir: Path) -> str:
    """Relative links of a notebook, made to work from the site.

    A link to another notebook (``02_lru_cache.ipynb``) goes to its page; a link to a file of the
    repository (``../README.md``), or to a notebook without a page in this site, goes to where it lives.
    """
    def repl(match):
        target, rest = html.unescape(match.group(1)), match.group(2)
        notebook = _NOTEBOOK.fullmatch(target)
        if notebook and f"{notebook.group(1)}.html" in hrefs:
            return f'href="{notebook.group(1)}.html{rest}"'
        if (site_dir / target).exists():
            return match.group(0)
        source = Path(source_dir) / target
        if source.exists():
            return f'href="{html.escape(Path(os.path.relpath(source, site_dir)).as_posix())}{rest}"'
        return match.group(0)

    return _RELATIVE_HREF.sub(repl, body)


DEEPER_TAG, DEEPER_HEAD_TAG = "cachelab-deeper", "cachelab-deeper-head"


def mark_going_deeper(nb):
    """A copy of ``nb`` whose Going deeper sections carry cell tags, which the page folds into ``<details>``.

    nbconvert turns a cell's tags into CSS classes (``celltag_<tag>``); a few lines of script at the foot of
    the page (``page.html.j2``) move each section into a closed ``<details>`` whose summary is its heading.
    Without script, the sections stay open: nothing is hidden from a reader who cannot unfold it.
    """
    import copy

    from .words import deeper_cells, is_deeper_heading

    nb = copy.deepcopy(nb)
    for i in deeper_cells(nb):
        cell = nb.cells[i]
        tags = list(cell.metadata.get("tags", []))
        tags.append(DEEPER_HEAD_TAG if is_deeper_heading(cell) else DEEPER_TAG)
        cell.metadata["tags"] = tags
    return nb


def _exporter():
    import jinja2
    from nbconvert import HTMLExporter

    return HTMLExporter(template_name="lab", extra_loaders=[jinja2.FileSystemLoader(str(TEMPLATES))],
                        template_file="page.html.j2", embed_images=True)


def _index_template():
    import jinja2

    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                             undefined=jinja2.StrictUndefined)
    return env.get_template("index.html.j2")


def _figure_from_outputs(nb, word: str) -> bytes | None:
    """The PNG of the first cell that saves a figure named with ``word`` (``save_as="..ladder.."`` or
    ``plots.save(fig, "..guide..")``), from the notebook's saved outputs."""
    import base64

    pattern = re.compile(r"(?:save_as\s*=\s*|plots\.save\(\s*\w+\s*,\s*)[\"'][^\"']*" + re.escape(word))
    for cell in nb.cells:
        if cell.cell_type == "code" and pattern.search(cell.source):
            for output in cell.get("outputs", []):
                data = output.get("data", {})
                if "image/png" in data:
                    return base64.b64decode(data["image/png"])
    return None


def write_site(executed: Sequence[Path], outcomes: Sequence, site_dir: Path, figures_dir: Path | None,
               banner_text: str) -> Path:
    """Write the site: a page per notebook in ``executed`` (its ``outcomes`` give status and run time), an index.

    ``outcomes`` are :class:`cachelab.kit.runner.Outcome` (anything with ``ok``, ``seconds``, ``title``).
    Returns the index page's path.
    """
    import nbformat

    site_dir = Path(site_dir)
    site_dir.mkdir(parents=True, exist_ok=True)
    notebooks = [nbformat.read(p, as_version=4) for p in executed]
    pages = []
    for path, outcome, nb in zip(executed, outcomes, notebooks, strict=True):
        title, time_text, learn = notebook_summary(nb)
        pages.append(PageInfo(href=f"{Path(path).stem}.html", number=Path(path).stem[:2],
                              title=getattr(outcome, "title", "") or title or Path(path).stem, time=time_text,
                              learn=[_inline_markdown(b) for b in learn], ok=outcome.ok,
                              seconds=getattr(outcome, "seconds", None), status=getattr(outcome, "status", "")))
    exporter = _exporter()
    for i, (path, nb) in enumerate(zip(executed, notebooks, strict=True)):
        resources = {"metadata": {"name": pages[i].label, "path": str(Path(path).parent)},
                     "cachelab": {"pages": pages, "index": i, "banner": banner_text}}
        body, _ = exporter.from_notebook_node(mark_going_deeper(nb), resources=resources)
        body = _link_pages(body, {p.href for p in pages}, Path(path).parent, site_dir)
        (site_dir / pages[i].href).write_text(body, encoding="utf-8")
    figure = _copy_figure("ladder", figures_dir, notebooks, site_dir)
    guide = _copy_figure("guide", figures_dir, notebooks, site_dir)
    path = site_dir / "index.html"
    path.write_text(_index_html(pages, figure, banner_text, guide), encoding="utf-8")
    return path


def _copy_figure(word: str, figures_dir: Path | None, notebooks, site_dir: Path) -> str:
    """Put the figure named with ``word`` next to the index; its relative address, or '' when there is none."""
    target = site_dir / "figures" / f"{word}.png"
    found = sorted(Path(figures_dir).glob(f"*{word}*.png")) if figures_dir and Path(figures_dir).is_dir() else []
    if found:
        target.parent.mkdir(exist_ok=True)
        shutil.copyfile(found[0], target)
        return f"figures/{target.name}"
    for nb in reversed(notebooks):  # the closing notebook draws it
        png = _figure_from_outputs(nb, word)
        if png:
            target.parent.mkdir(exist_ok=True)
            target.write_bytes(png)
            return f"figures/{target.name}"
    target.unlink(missing_ok=True)
    return ""


def _index_html(pages: list[PageInfo], figure: str, banner_text: str, guide: str = "") -> str:
    return _index_template().render(title=SITE_TITLE, pages=pages, figure=figure, guide=guide, banner=banner_text)


@dataclass
class CommittedOutcome:
    """The status of a committed notebook, read from its saved outputs (no run time: it was not run here)."""

    path: Path
    ok: bool
    title: str = ""
    seconds: float | None = None
    status: str = ""


def banner_from_outputs(nb) -> str:
    """The environment banner a notebook printed in its set-up cell (``cachelab.start``), or ''."""
    for cell in nb.cells:
        if cell.cell_type == "code" and "cachelab.start(" in cell.source:
            text = "".join(o.get("text", "") for o in cell.get("outputs", []) if o.get("output_type") == "stream")
            lines = [ln for ln in text.strip().splitlines() if not ln.startswith(("Notebook ", "Key prefix:"))]
            return "\n".join(lines)
    return ""


def write_site_from_notebooks(notebooks: Sequence[Path], site_dir: Path, figures_dir: Path | None = None) -> Path:
    """The site of the reference run that the committed notebooks carry, without executing them."""
    import nbformat

    outcomes, banner_text = [], ""
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        errors = any(o.get("output_type") == "error" for c in nb.cells if c.cell_type == "code"
                     for o in c.get("outputs", []))
        ran = any(c.get("execution_count") for c in nb.cells if c.cell_type == "code")
        status = "ran clean" if ran and not errors else "has an error output" if errors else "not executed yet"
        outcomes.append(CommittedOutcome(Path(path), ok=ran and not errors, status=status))
        banner_text = banner_text or banner_from_outputs(nb)
    banner_text = banner_text or "The committed notebooks carry no environment banner."
    return write_site(list(notebooks), outcomes, site_dir, figures_dir, "Reference run of the committed notebooks\n"
                      + banner_text)


def main(args) -> int:
    from .. import paths
    from .notebooks import list_notebooks

    notebooks = list_notebooks(args.only)
    site = write_site_from_notebooks(notebooks, args.out or paths.project_root() / "build" / "site",
                                     paths.figures_dir())
    print(f"Site of the committed notebooks: {site}")
    return 0


def add_parser(sub) -> None:
    """``python -m cachelab site``."""
    parser = sub.add_parser("site", help="write the HTML site from the committed notebooks, without running them")
    parser.add_argument("--only", nargs="*", help="notebook numbers or names, e.g. 00 01")
    parser.add_argument("--out", type=Path, default=None, help="folder for the site (default build/site/)")
    parser.set_defaults(func=main)
