"""The notebooks present as slides (jupyterlab-rise reads each cell's ``slideshow`` metadata).

Every cell of every notebook says how it presents. The notebooks that the 30-minute talk uses (see
``instructors/README.md``), and every notebook from 01 on, follow the house convention: the title and each
``---`` section open a new slide, the set-up cell is skipped, and each has enough slides to talk over.
"""

from __future__ import annotations

import functools

import nbformat
import pytest

from cachelab import paths
from cachelab.kit import notebooks

SLIDE_TYPES = {"slide", "subslide", "fragment", "-", "skip", "notes"}
TALK = ("01", "02", "06", "10")  # the 30-minute talk: instructors/README.md
NOTEBOOKS = notebooks.list_notebooks()
GUIDE = paths.project_root() / "instructors" / "README.md"


@functools.cache
def read(path):
    return nbformat.read(path, as_version=4)


def slide_type(cell) -> str | None:
    return cell.get("metadata", {}).get("slideshow", {}).get("slide_type")


def is_section(cell) -> bool:
    return cell.cell_type == "markdown" and cell.source.lstrip().startswith("---")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_cell_says_how_it_presents(path):
    nb = read(path)
    missing = [i for i, c in enumerate(nb.cells) if slide_type(c) not in SLIDE_TYPES]
    assert not missing, (f"{path.name}: cells {missing[:10]} have no valid metadata.slideshow.slide_type "
                         f"(one of {sorted(SLIDE_TYPES)})")


STRUCTURED = [p for p in NOTEBOOKS if p.stem[:2] != "00"]  # the talk notebooks are among them


@pytest.mark.parametrize("path", STRUCTURED, ids=lambda p: p.stem)
def test_title_and_sections_open_slides(path):
    nb = read(path)
    assert nb.cells[0].source.startswith("# ") and slide_type(nb.cells[0]) == "slide", \
        f"{path.name}: the title cell must open the first slide"
    sections = [i for i, c in enumerate(nb.cells) if is_section(c)]
    assert sections, f"{path.name}: no '---' section"
    flat = [i for i in sections if slide_type(nb.cells[i]) != "slide"]
    assert not flat, f"{path.name}: section cells {flat} start with '---' but are not 'slide'"
    slides = sum(slide_type(c) in {"slide", "subslide"} for c in nb.cells)
    assert slides >= 5, f"{path.name}: {slides} slides is too few to present"
    setup = next(c for c in nb.cells if c.cell_type == "code")
    assert "cachelab.start(" in setup.source and slide_type(setup) == "skip", \
        f"{path.name}: the set-up cell (imports, cachelab.start) is plumbing: slide_type 'skip'"


@pytest.mark.parametrize("number", TALK)
def test_the_talk_notebooks_exist_and_the_guide_names_them(number):
    found = [p for p in NOTEBOOKS if p.stem.startswith(number)]
    if not found:
        pytest.fail(f"notebook {number} of the 30-minute talk is missing from notebooks/")
    guide = GUIDE.read_text(encoding="utf-8")
    talk = guide.split("## A 30-minute talk", 1)[1].split("\n## ", 1)[0]
    assert found[0].stem in talk, f"the talk plan in {GUIDE.name} does not use {found[0].stem}"


def test_rise_is_pinned_so_slides_work_in_jupyterlab():
    pins = (paths.project_root() / "requirements.txt").read_text().splitlines()
    assert any(line.startswith("jupyterlab-rise==") for line in pins)
