"""What a notebook asks a reader to read: words of Markdown and code cells, per section, core path or not.

A notebook's sections are its ``## `` headings. A section whose heading starts with "Going deeper" is off the
core path: a learner may skip it, JupyterLab shows it collapsed (the heading cell carries
``jp-MarkdownHeadingCollapsed``) and the site folds it into a ``<details>``. Everything else is the core
path, whose reading must fit the notebook's stated time and the instructor guide's plan.

``python -m cachelab words`` prints, per notebook, the words of the core path and of Going deeper, and with
``--sections`` every section: the numbers the instructor guide's pace is computed from.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

DEEPER = re.compile(r"^##\s+Going deeper\b", re.IGNORECASE)
HEADING = re.compile(r"^(#{1,2})\s+(.+?)\s*$", re.MULTILINE)
SPEAKER_NOTES = re.compile(r"^\s*\*Speaker notes", re.IGNORECASE)


@dataclass
class Section:
    """One ``## `` section of a notebook (the title cell and what precedes the first ``##`` is section 0)."""

    title: str
    deeper: bool
    words: int = 0
    code_cells: int = 0
    first_cell: int = 0

    @property
    def number(self) -> str:
        match = re.match(r"(\d+)\.", self.title)
        return match.group(1) if match else ""


def count_words(markdown: str) -> int:
    """Words a reader reads: HTML comments, image links and URLs left out, code spans counted as words."""
    text = re.sub(r"<!--.*?-->", " ", markdown, flags=re.DOTALL)
    text = re.sub(r"!\[[^\]]*\]\([^)]*\)", " ", text)
    text = re.sub(r"\]\([^)]*\)", "]", text)
    return len(re.findall(r"[\w`'’.-]*\w[\w`'’.-]*", text))


def heading_of(cell) -> tuple[int, str] | None:
    """The level and text of the first ``#``/``##`` heading of a Markdown cell, if it has one."""
    if cell.get("cell_type") != "markdown":
        return None
    match = HEADING.search(cell.get("source", ""))
    return (len(match.group(1)), match.group(2)) if match else None


def is_deeper_heading(cell) -> bool:
    head = heading_of(cell)
    return bool(head and head[0] == 2 and DEEPER.match("## " + head[1]))


def sections(nb) -> list[Section]:
    """The sections of a notebook, in order, with their words and code cells (speaker notes left out)."""
    out = [Section("(title and introduction)", False)]
    for i, cell in enumerate(nb.cells):
        head = heading_of(cell)
        if head and head[0] == 2:
            out.append(Section(head[1], is_deeper_heading(cell), first_cell=i))
        section = out[-1]
        if cell.get("cell_type") == "markdown" and not SPEAKER_NOTES.match(cell.get("source", "")):
            section.words += count_words(cell.get("source", ""))
        elif cell.get("cell_type") == "code" and cell.get("source", "").strip():
            section.code_cells += 1
    return [s for s in out if s.words or s.code_cells or s.title != "(title and introduction)"]


def deeper_cells(nb) -> list[int]:
    """The indices of the cells inside Going deeper sections (their heading cells included)."""
    inside, out = False, []
    for i, cell in enumerate(nb.cells):
        head = heading_of(cell)
        if head and head[0] <= 2:
            inside = is_deeper_heading(cell)
        if inside:
            out.append(i)
    return out


def totals(nb) -> tuple[int, int]:
    """Words on the core path and in Going deeper."""
    secs = sections(nb)
    return sum(s.words for s in secs if not s.deeper), sum(s.words for s in secs if s.deeper)


def report(paths: list[Path], *, per_section: bool = False) -> str:
    import nbformat

    lines = [f"{'notebook':<32} {'core words':>10} {'deeper words':>12}"]
    core_sum = deeper_sum = 0
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        core, deeper = totals(nb)
        core_sum, deeper_sum = core_sum + core, deeper_sum + deeper
        lines.append(f"{Path(path).stem:<32} {core:>10,} {deeper:>12,}")
        if per_section:
            for s in sections(nb):
                mark = "  (going deeper)" if s.deeper else ""
                lines.append(f"    {s.title[:60]:<60} {s.words:>6,} words {s.code_cells:>3} code cells{mark}")
    lines.append(f"{'the series':<32} {core_sum:>10,} {deeper_sum:>12,}")
    return "\n".join(lines)


def main(args) -> int:
    from .notebooks import list_notebooks

    print(report(list_notebooks(args.only), per_section=args.sections))
    return 0


def add_parser(sub) -> None:
    """``python -m cachelab words``."""
    parser = sub.add_parser("words", help="words of Markdown per notebook (core path, Going deeper) and per section")
    parser.add_argument("--only", nargs="*", help="notebook numbers or names, e.g. 00 01")
    parser.add_argument("--sections", action="store_true", help="every section's words and code cells")
    parser.set_defaults(func=main)
