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
LADDER_FILE = "ladder.png"

_PAGE_TEMPLATE = r"""{%- extends 'lab/index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{% block jupyter_widgets %}{% endblock jupyter_widgets %}
{% block extra_css %}<style>{{ resources.cachelab.css }}</style>{% endblock extra_css %}
{%- block body_header -%}{{ super() }}{{ resources.cachelab.top }}{%- endblock body_header -%}
{% block body_footer %}{{ resources.cachelab.bottom }}{{ super() }}{% endblock body_footer %}
"""

_PAGE_CSS = """
.cachelab-nav{position:sticky;top:0;z-index:10;background:#1f2937;color:#fff;padding:.5em 1em;
 font:14px system-ui,sans-serif;display:flex;gap:1.5em;align-items:center;flex-wrap:wrap}
.cachelab-nav a{color:#93c5fd;text-decoration:none}.cachelab-nav a:hover{text-decoration:underline}
.cachelab-nav .spacer{flex:1}.cachelab-nav .where{color:#d1d5db}
.cachelab-pager{display:flex;justify-content:space-between;gap:1em;margin:3em 0 1em;
 font:16px system-ui,sans-serif}
.cachelab-pager a{display:block;padding:.8em 1.2em;border:1px solid #d1d5db;border-radius:.4em;
 text-decoration:none;color:#1d4ed8;max-width:45%}
.cachelab-pager a:hover{background:#eff6ff}.cachelab-pager small{display:block;color:#6b7280}
.cachelab-pager .next{margin-left:auto;text-align:right}
.cachelab-footer{font:13px system-ui,sans-serif;color:#4b5563;border-top:1px solid #e5e7eb;margin-top:1em;
 padding:1em 0 2em}.cachelab-footer pre{background:#f3f4f6;padding:.8em;overflow:auto;white-space:pre-wrap}
"""

_INDEX_CSS = """
body{font:16px/1.55 system-ui,-apple-system,"Segoe UI",sans-serif;max-width:62em;margin:0 auto;padding:0 1.2em 3em;
 color:#111827}
header{padding:2.2em 0 1em;border-bottom:1px solid #e5e7eb;margin-bottom:1.5em}
header h1{margin:0 0 .3em;font-size:2em}header p{margin:.3em 0;color:#374151}
ol.series{list-style:none;padding:0;counter-reset:none}
ol.series li{border:1px solid #e5e7eb;border-radius:.5em;padding:1em 1.2em;margin:0 0 1em}
ol.series h3{margin:0 0 .3em;font-size:1.15em}ol.series h3 a{color:#1d4ed8;text-decoration:none}
ol.series h3 a:hover{text-decoration:underline}.num{color:#6b7280;font-variant-numeric:tabular-nums;margin-right:.4em}
.meta{font-size:.9em;color:#4b5563;margin:.2em 0 .4em}.meta span{margin-right:1.2em}
.ok{color:#15803d}.fail{color:#b91c1c;font-weight:bold}
ol.series ul{margin:.3em 0 0;padding-left:1.3em}ol.series ul li{border:0;padding:0;margin:.15em 0}
figure{margin:1em 0 2em}figure img{max-width:100%;border:1px solid #e5e7eb;border-radius:.4em}
figcaption{font-size:.9em;color:#4b5563}
pre{background:#f3f4f6;padding:1em;overflow:auto;border-radius:.4em;font-size:.85em;white-space:pre-wrap}
code{background:#f3f4f6;padding:0 .25em;border-radius:.2em}
"""


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


def _nav(pages: list[PageInfo], index: int) -> str:
    prev_link = (f'<a href="{pages[index - 1].href}" rel="prev">&larr; {html.escape(pages[index - 1].label)}</a>'
                 if index else "")
    next_link = (f'<a href="{pages[index + 1].href}" rel="next">{html.escape(pages[index + 1].label)} &rarr;</a>'
                 if index + 1 < len(pages) else "")
    return (f'<nav class="cachelab-nav" aria-label="series"><a href="index.html">cachelab: all notebooks</a>'
            f'<span class="where">{index + 1} of {len(pages)}</span><span class="spacer"></span>'
            f'{prev_link}{next_link}</nav>')


def _pager(pages: list[PageInfo], index: int, banner_text: str) -> str:
    parts = ['<nav class="cachelab-pager" aria-label="previous and next">']
    if index:
        page = pages[index - 1]
        parts.append(f'<a class="prev" href="{page.href}" rel="prev"><small>&larr; Previous</small>'
                     f'{html.escape(page.label)}</a>')
    if index + 1 < len(pages):
        page = pages[index + 1]
        parts.append(f'<a class="next" href="{page.href}" rel="next"><small>Next &rarr;</small>'
                     f'{html.escape(page.label)}</a>')
    else:
        parts.append('<a class="next" href="index.html"><small>The end of the series</small>Back to the index</a>')
    parts.append("</nav>")
    footer = (f'<footer class="cachelab-footer"><details><summary>Where these numbers come from: the environment '
              f'of this run</summary><pre>{html.escape(banner_text)}</pre></details></footer>')
    return '<div class="jp-Cell" style="padding:0 1em">' + "".join(parts) + footer + "</div>"


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


def _exporter():
    import jinja2
    from nbconvert import HTMLExporter

    loader = jinja2.DictLoader({"cachelab_page.html.j2": _PAGE_TEMPLATE})
    return HTMLExporter(template_name="lab", extra_loaders=[loader], template_file="cachelab_page.html.j2",
                        embed_images=True)


def _ladder_from_outputs(nb) -> bytes | None:
    """The PNG of the first cell that saves a ladder figure (``save_as="..ladder.."``), from saved outputs."""
    import base64

    for cell in nb.cells:
        if cell.cell_type == "code" and re.search(r"save_as\s*=\s*[\"'][^\"']*ladder", cell.source):
            for output in cell.get("outputs", []):
                data = output.get("data", {})
                if "image/png" in data:
                    return base64.b64decode(data["image/png"])
    return None


def write_site(executed: Sequence[Path], outcomes: Sequence, site_dir: Path, figures_dir: Path | None,
               banner_text: str) -> Path:
    """Write the site: a page per notebook in ``executed`` (its ``outcomes`` give status and run time), an index.

    ``outcomes`` are :class:`cachelab.runner.Outcome` (anything with ``ok``, ``seconds``, ``title``).
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
                     "cachelab": {"css": _PAGE_CSS, "top": _nav(pages, i), "bottom": _pager(pages, i, banner_text)}}
        body, _ = exporter.from_notebook_node(nb, resources=resources)
        body = _link_pages(body, {p.href for p in pages}, Path(path).parent, site_dir)
        (site_dir / pages[i].href).write_text(body, encoding="utf-8")
    figure = _copy_ladder(figures_dir, notebooks, site_dir)
    path = site_dir / "index.html"
    path.write_text(_index_html(pages, figure, banner_text), encoding="utf-8")
    return path


def _copy_ladder(figures_dir: Path | None, notebooks, site_dir: Path) -> str:
    """Put the ladder figure next to the index; its relative address, or '' when there is none."""
    target = site_dir / "figures" / LADDER_FILE
    found = sorted(Path(figures_dir).glob("*ladder*.png")) if figures_dir and Path(figures_dir).is_dir() else []
    if found:
        target.parent.mkdir(exist_ok=True)
        shutil.copyfile(found[0], target)
        return f"figures/{LADDER_FILE}"
    for nb in reversed(notebooks):  # the closing notebook draws it
        png = _ladder_from_outputs(nb)
        if png:
            target.parent.mkdir(exist_ok=True)
            target.write_bytes(png)
            return f"figures/{LADDER_FILE}"
    target.unlink(missing_ok=True)
    return ""


def _index_html(pages: list[PageInfo], figure: str, banner_text: str) -> str:
    items = []
    for page in pages:
        status = '<span class="ok">ran clean</span>' if page.ok else '<span class="fail">FAILED in this run</span>'
        if page.status:
            status = f'<span class="{"ok" if page.ok else "fail"}">{html.escape(page.status)}</span>'
        meta = [f"<span>{html.escape(page.time)}</span>" if page.time else "", status]
        if page.seconds is not None:
            meta.append(f"<span>executed in {page.seconds:.1f} s</span>")
        learn = "".join(f"<li>{b}</li>" for b in page.learn)
        items.append(
            f'<li><h3><span class="num">{html.escape(page.number)}</span><a href="{page.href}">'
            f'{html.escape(page.title)}</a></h3><div class="meta">{" ".join(m for m in meta if m)}</div>'
            + (f"<ul>{learn}</ul>" if learn else "") + "</li>")
    ladder = ""
    if figure:
        ladder = (f'<h2 id="ladder">The ladder</h2><figure><img src="{figure}" alt="The cost of one answer at every '
                  f'step of the series, hit and miss, on a log scale"><figcaption>The cost of one answer at every '
                  f'step of the ladder, from the closing notebook of this run: median with the p10-p90 spread, on a '
                  f'log scale.</figcaption></figure>')
    first = f'<a href="{pages[0].href}">{html.escape(pages[0].label)}</a>' if pages else "the first notebook"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(SITE_TITLE)}</title><style>{_INDEX_CSS}</style></head><body>
<header><h1>{html.escape(SITE_TITLE)}</h1>
<p>An executable workshop. Each notebook takes one step up the ladder, from recomputing every answer to
<code>functools.lru_cache</code>, <code>cachetools</code>, <code>joblib.Memory</code>, memcached and Redis, and measures
what the step buys on real data, against real servers.</p>
<p>Read the notebooks in order: each builds on the one before. Start with {first}.</p></header>
<main>
<h2 id="series">The series, in reading order</h2>
<ol class="series">
{chr(10).join(items)}
</ol>
{ladder}
<h2 id="environment">Where these numbers come from</h2>
<p>Every figure on these pages was measured in this run, on this machine. Yours will differ: compare ratios
within one run, not absolute times across machines.</p>
<pre>{html.escape(banner_text)}</pre>
<h2 id="yourself">Run it yourself</h2>
<pre>make check   # is this machine ready?
make run     # execute every notebook and write this site into build/site/</pre>
</main></body></html>
"""


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
    from . import paths
    from .runner import list_notebooks

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
