"""The site of a run, rendered in headless Chromium: every image loads, nothing is missing, nothing is fetched.

Chromium is Debian's ``chromium`` package (``.ci/run`` installs it when missing); no browser is downloaded.
It runs with its network cut off (every host name resolves to nothing), so a page that needed a CDN would
show up here as a failed load. A screenshot of each rendered page is kept in the test's output folder.
"""

from __future__ import annotations

import base64
import html
import io
import json
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from cachelab.kit import notebooks, site

BROWSER = shutil.which("chromium") or shutil.which("chromium-browser")
needs_browser = pytest.mark.skipif(BROWSER is None, reason="Debian's chromium is not installed "
                                   "(sudo apt-get install chromium; .ci/run does it)")

PROBE = """<script>
window.__cachelabFailed = [];
window.addEventListener("error", function (e) {
  var t = e.target;
  if (t && t !== window && (t.src || t.href)) { window.__cachelabFailed.push(t.tagName + " " + (t.src || t.href)); }
}, true);
window.addEventListener("load", function () {
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (i) { return !(i.complete && i.naturalWidth > 0); })
                     .map(function (i) { return (i.getAttribute("src") || "").slice(0, 80); });
  var out = document.createElement("pre");
  out.id = "cachelab-probe";
  var deeper = document.querySelectorAll("details.cachelab-deeper");
  out.textContent = JSON.stringify({images: images.length, broken: broken, failed: window.__cachelabFailed,
                                    navs: document.querySelectorAll("nav").length, deeper: deeper.length,
                                    folded: Array.prototype.map.call(deeper, function (d) {
                                      return [d.querySelector("summary").textContent,
                                              d.querySelectorAll(".jp-Cell").length, d.open]; })});
  document.body.appendChild(out);
});
</script>"""


def chromium(*args: str, profile: Path) -> subprocess.CompletedProcess:
    cmd = [BROWSER, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
           "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-extensions",
           "--host-resolver-rules=MAP * ~NOTFOUND", f"--user-data-dir={profile}", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=180)


def render(page: Path, out_dir: Path) -> dict:
    """Load ``page`` in Chromium with a probe, screenshot it; what the probe saw about images and loads."""
    probe_page = page.with_name(f"_probe_{page.name}")
    text = page.read_text(encoding="utf-8")
    probe_page.write_text(re.sub(r"(<head[^>]*>)", lambda m: m.group(1) + PROBE, text, count=1), encoding="utf-8")
    try:
        done = chromium("--dump-dom", "--virtual-time-budget=15000", probe_page.as_uri(), profile=out_dir / "profile")
    finally:
        probe_page.unlink()
    match = re.search(r'<pre id="cachelab-probe">(.*?)</pre>', done.stdout, re.DOTALL)
    assert match, f"the page did not finish loading in Chromium: {done.stderr[-1500:]}"
    shots = out_dir / "screenshots"
    shots.mkdir(exist_ok=True)
    shot = shots / f"{page.stem}.png"
    chromium(f"--screenshot={shot}", "--window-size=1280,1800", "--hide-scrollbars", page.as_uri(),
             profile=out_dir / "profile")
    assert shot.exists() and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", f"no screenshot of {page.name}"
    return json.loads(html.unescape(match.group(1)))


class References(HTMLParser):
    """Every resource a page loads (img, script, stylesheet) and every link it offers."""

    def __init__(self):
        super().__init__()
        self.resources: list[str] = []
        self.links: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("img", "script", "iframe", "source", "video", "audio") and attrs.get("src"):
            self.resources.append(attrs["src"])
        elif tag == "link" and attrs.get("href"):
            self.resources.append(attrs["href"])
        elif tag == "a" and attrs.get("href"):
            self.links.append(attrs["href"])


def missing_references(page: Path) -> list[str]:
    """Resources fetched from the network, and local files or pages that do not exist."""
    parser = References()
    parser.feed(page.read_text(encoding="utf-8"))
    problems = [f"network resource {r}" for r in parser.resources if re.match(r"(https?:)?//", r)]
    for ref in parser.resources + parser.links:
        if re.match(r"(https?:|mailto:|data:|#|//)", ref):
            continue
        target = ref.split("#", 1)[0].split("?", 1)[0]
        if target and not (page.parent / target).exists():
            problems.append(f"missing {ref}")
    return problems


def png_bytes(color: str = "tab:blue") -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(3, 2))
    ax.bar(["miss", "hit"], [30, 0.001], color=color)
    ax.set_yscale("log")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def image_output(png: bytes):
    return new_output("display_data", data={"image/png": base64.b64encode(png).decode(), "text/plain": "<Figure>"})


@pytest.fixture
def small_series(tmp_path):
    """Two executed notebooks (the second one failed), a markdown image, a ladder figure: a small run."""
    src = tmp_path / "notebooks"
    src.mkdir()
    (src / "diagram.png").write_bytes(png_bytes("tab:green"))
    (src / "notes.md").write_text("A file of the repository, next to the notebooks.")
    first = new_notebook(cells=[
        new_markdown_cell("# Measure the cost of an answer\n\nIntro.\n\n**What you'll learn**\n- What a miss "
                          "costs, with `measure`.\n- Why a hit is\n  cheap.\n\n**Prerequisites**: none.\n\n"
                          "**Time**: about 5 minutes."),
        new_code_cell("plots.latency_chart(timings)", outputs=[image_output(png_bytes())], execution_count=1),
        new_markdown_cell("## Going deeper: why the miss varies\n\nDepth a learner may skip."),
        new_code_cell("x = 1"),
        new_markdown_cell("---\n## Next\n\n![a diagram](diagram.png) Then read [the next one](02_second.ipynb), "
                          "the [notes](notes.md) and the [docs](https://docs.python.org/3/). Math: $x^2$."),
    ])
    second = new_notebook(cells=[
        new_markdown_cell("# Compare every step\n\n**Time**: about 10 minutes."),
        new_code_cell('ladder.ladder_figure(rungs, save_as="07_ladder")', outputs=[image_output(png_bytes("tab:red"))],
                      execution_count=1),
    ])
    paths_ = [src / "01_first.ipynb", src / "02_second.ipynb"]
    nbformat.write(first, paths_[0])
    nbformat.write(second, paths_[1])
    figures = tmp_path / "figures"
    figures.mkdir()
    (figures / "07_ladder.png").write_bytes(png_bytes("tab:orange"))
    outcomes = [SimpleNamespace(ok=True, seconds=1.25, title="Measure the cost of an answer"),
                SimpleNamespace(ok=False, seconds=3.5, title="Compare every step")]
    banner = "Python 3.11.7 (CPython) on Linux\nCPU: Test CPU x 2\nRun at 2026-01-01T00:00:00+00:00"
    index = site.write_site(paths_, outcomes, tmp_path / "site", figures, banner)
    return index, banner


def test_the_index_shows_the_series_in_order_with_the_ladder_and_banner(small_series):
    index, banner = small_series
    text = index.read_text()
    assert text.index("Measure the cost of an answer") < text.index("Compare every step")
    assert "about 5 minutes" in text and "about 10 minutes" in text
    assert "<li>What a miss costs, with <code>measure</code>.</li>" in text
    assert "<li>Why a hit is cheap.</li>" in text, "a bullet continued on the next line stays whole"
    assert "FAILED" in text and "executed in 1.2 s" in text
    assert 'src="figures/ladder.png"' in text and (index.parent / "figures" / "ladder.png").exists()
    assert html.escape(banner) in text
    assert missing_references(index) == []


def test_every_page_has_navigation_links_and_no_network_resources(small_series):
    index, banner = small_series
    first, second = index.parent / "01_first.html", index.parent / "02_second.html"
    one, two = first.read_text(), second.read_text()
    assert 'href="02_second.html" rel="next"' in one and 'rel="prev"' not in one
    assert 'href="01_first.html" rel="prev"' in two and "Back to the index" in two
    assert 'href="02_second.html"' in one.split("the next one")[0][-200:], "links between notebooks become pages"
    assert 'href="../notebooks/notes.md"' in one, "links to files of the repository still work from the site"
    assert html.escape(banner) in one and "1 of 2" in one
    assert "cdnjs" not in one and "require.min.js" not in one
    for page in (index, first, second):
        assert missing_references(page) == [], page.name


def test_the_ladder_comes_from_the_notebook_outputs_when_no_figure_file_exists(tmp_path, small_series):
    index, _ = small_series
    notebooks = sorted((index.parent.parent / "notebooks").glob("*.ipynb"))
    out = site.write_site_from_notebooks(notebooks, tmp_path / "committed", figures_dir=tmp_path / "nowhere")
    assert (out.parent / "figures" / "ladder.png").read_bytes()[:4] == b"\x89PNG"
    assert "Reference run of the committed notebooks" in out.read_text()


@pytest.mark.browser
@needs_browser
def test_the_small_site_renders_in_chromium_with_every_image(small_series, tmp_path):
    index, _ = small_series
    seen = render(index, tmp_path)
    assert seen == {"images": 1, "broken": [], "failed": [], "navs": 0, "deeper": 0, "folded": []}, seen
    page = render(index.parent / "01_first.html", tmp_path)
    assert page["images"] == 2 and page["broken"] == [] and page["failed"] == [], page
    assert page["folded"] == [["Going deeper: why the miss varies", 2, False]], "the section, folded, to its end"
    assert page["navs"] == 2, "navigation at the top and at the bottom"
    assert sorted(p.name for p in (tmp_path / "screenshots").iterdir()) == ["01_first.png", "index.png"]


NOTEBOOKS = notebooks.list_notebooks()


@pytest.fixture(scope="module")
def series_site(tmp_path_factory):
    """The site of the committed notebooks (the reference run they carry), through the command line."""
    out = tmp_path_factory.mktemp("series-site")
    subprocess.run([sys.executable, "-m", "cachelab", "site", "--out", str(out / "site")], check=True, timeout=600,
                   capture_output=True)
    return out


def test_the_series_site_has_a_page_per_notebook_and_no_missing_reference(series_site):
    site_dir = series_site / "site"
    assert sorted(p.stem for p in site_dir.glob("[0-9][0-9]_*.html")) == [p.stem for p in NOTEBOOKS]
    index_text = (site_dir / "index.html").read_text()
    for path in NOTEBOOKS:
        assert f'href="{path.stem}.html"' in index_text, f"{path.stem} is missing from the index"
    for page in [site_dir / "index.html", *site_dir.glob("[0-9][0-9]_*.html")]:
        assert missing_references(page) == [], page.name


@pytest.mark.browser
@needs_browser
def test_the_series_index_and_first_notebook_render_in_chromium(series_site):
    site_dir = series_site / "site"
    index = render(site_dir / "index.html", series_site)
    assert index["broken"] == [] and index["failed"] == [], index
    first = render(site_dir / f"{NOTEBOOKS[0].stem}.html", series_site)
    assert first["images"] >= 1 and first["broken"] == [] and first["failed"] == [], first
    assert first["navs"] == 2
    print(f"screenshots in {series_site / 'screenshots'}")


def test_words_are_counted_per_section_on_the_core_path_and_in_going_deeper():
    from cachelab.kit import words

    nb = new_notebook(cells=[
        new_markdown_cell("# Title\n\nOne two three."),
        new_markdown_cell("---\n## 1. The core\n\nFour five six seven, [a link](https://example.org)."),
        new_code_cell("x = 1"),
        new_markdown_cell("*Speaker notes (the talk).* Not read by a learner."),
        new_markdown_cell("## Going deeper: the details\n\nEight nine."),
        new_code_cell("y = 2"),
        new_markdown_cell("---\n## 2. Back on the path\n\nTen."),
    ])
    secs = words.sections(nb)
    assert [(s.title, s.deeper, s.code_cells) for s in secs] == [
        ("(title and introduction)", False, 0), ("1. The core", False, 1),
        ("Going deeper: the details", True, 1), ("2. Back on the path", False, 0)]
    assert words.totals(nb) == (4 + 9 + 6, 6)  # headings count; the speaker notes and the link address do not
    assert words.deeper_cells(nb) == [4, 5]
    marked = site.mark_going_deeper(nb)
    assert [c.metadata.get("tags") for c in marked.cells[4:7]] == [["cachelab-deeper-head"], ["cachelab-deeper"], None]
