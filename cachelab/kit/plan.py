"""The instructor guide's plans, checked against the notebooks: ``python -m cachelab plan``.

The 3-hour workshop and the 30-minute talk are written once, in ``instructors/plan.toml``: each block names
a notebook, the sections it covers (the start of each section's title, as ``python -m cachelab words
--sections`` prints it; case, backticks and a leading number do not matter) and its minutes, with the speaker
notes for it (what to say, what to show). This module reads that table, finds each section in the notebook
(:mod:`.words` counts its words and code cells) and prints, per block, the words, the code cells and the words
per minute; a block that asks for more words a minute than the plan's ``pace``, a section that no longer
exists, or a plan whose minutes do not add up is a problem, and ``tests/test_plan.py`` fails on it.

The guide's plan tables are generated from the same table (``python -m cachelab plan --write`` rewrites the
parts of ``instructors/README.md`` between ``<!-- plan:NAME -->`` and ``<!-- /plan:NAME -->``), and the test
fails when they are out of date, so the pace printed in the guide is the one computed here.
"""

from __future__ import annotations

import re
import textwrap
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from .. import paths
from . import words

KINDS = ("teaching", "exercises", "break", "other")
MARKER = re.compile(r"(<!-- plan:(?P<name>[\w-]+) -->\n)(?P<body>.*?)(<!-- /plan:(?P=name) -->)", re.DOTALL)


def plan_path() -> Path:
    return paths.project_root() / "instructors" / "plan.toml"


def guide_path() -> Path:
    return paths.project_root() / "instructors" / "README.md"


def normalise(title: str) -> str:
    """A section title as plans name it: lower case, no backticks or emphasis, no leading number."""
    text = re.sub(r"[`*]", "", title).strip().lower()
    return re.sub(r"^\d+\.\s*", "", text)


def find_section(sections: list[words.Section], name: str) -> words.Section:
    """The one section whose title starts with ``name`` (normalised); ``LookupError`` names the candidates."""
    want = normalise(name)
    exact = [s for s in sections if normalise(s.title) == want]
    found = exact or [s for s in sections if normalise(s.title).startswith(want)]
    if len(found) == 1:
        return found[0]
    titles = "; ".join(s.title for s in sections)
    if not found:
        raise LookupError(f"no section starts with {name!r} (the sections: {titles})")
    raise LookupError(f"{name!r} names {len(found)} sections ({'; '.join(s.title for s in found)}): "
                      "write more of the title")


@dataclass
class Block:
    """One row of a plan: minutes spent on some sections of one notebook (or on a welcome, a break)."""

    part: str  # the heading the block is listed under (a slot of the day)
    minutes: float
    kind: str = "teaching"
    notebook: str = ""  # the two digits
    sections: list[str] = field(default_factory=list)
    what: str = ""  # what the block is, for blocks without sections or to add to them
    say: str = ""
    show: str = ""
    checkpoint: str = ""
    # computed from the notebook
    start: float = 0.0
    stem: str = ""
    titles: list[str] = field(default_factory=list)
    words: int = 0
    code_cells: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def pace(self) -> float:
        """Words a minute this block asks of the room."""
        return self.words / self.minutes if self.minutes else 0.0

    @property
    def cells_per_minute(self) -> float:
        return self.code_cells / self.minutes if self.minutes else 0.0


@dataclass
class Plan:
    pace: float  # the most words a minute any block may ask
    length: float  # the workshop's minutes
    talk_length: float
    workshop: list[Block]
    talk: list[Block]
    notebooks: dict[str, Path]
    after: list[str] = field(default_factory=list)  # the notebooks whose untaught core sections the guide lists
    problems: list[str] = field(default_factory=list)

    def after_the_day(self) -> dict[str, list[str]]:
        """Per notebook of ``after``, the core sections that no block of the workshop covers."""
        import nbformat

        covered: dict[str, set[str]] = {}
        for block in self.workshop:
            covered.setdefault(block.notebook, set()).update(block.titles)
        out = {}
        for number in self.after:
            path = self.notebooks[number]
            nb = nbformat.read(path, as_version=4)
            left = [s.title for s in words.sections(nb)
                    if not s.deeper and s.title not in covered.get(number, set())]
            if left:
                out[path.stem] = left
        return out


def _blocks(rows: list[dict], where: str) -> list[Block]:
    known = set(Block.__dataclass_fields__) - {"start", "stem", "titles", "words", "code_cells", "problems"}
    blocks = []
    for i, row in enumerate(rows):
        unknown = sorted(set(row) - known)
        if unknown:
            raise ValueError(f"{where} block {i + 1}: unknown field(s) {unknown} (known: {sorted(known)})")
        blocks.append(Block(**row))
    return blocks


def load(path: Path | None = None, notebooks: dict[str, Path] | None = None) -> Plan:
    """Read the plan and measure each block against its notebook's sections."""
    import nbformat

    path = Path(path or plan_path())
    raw = tomllib.loads(path.read_text(encoding="utf-8"))
    if notebooks is None:
        from .notebooks import list_notebooks

        notebooks = {p.stem[:2]: p for p in list_notebooks()}
    plan = Plan(pace=float(raw["pace"]), length=float(raw["length"]), talk_length=float(raw["talk_length"]),
                workshop=_blocks(raw.get("workshop", []), "workshop"), talk=_blocks(raw.get("talk", []), "talk"),
                notebooks=notebooks, after=[str(n) for n in raw.get("after_the_day", [])])
    plan.problems += [f"after_the_day names notebook {n}, which is not in notebooks/" for n in plan.after
                      if n not in notebooks]
    plan.after = [n for n in plan.after if n in notebooks]
    read: dict[str, list[words.Section]] = {}
    for name, blocks in (("workshop", plan.workshop), ("talk", plan.talk)):
        clock = 0.0
        for block in blocks:
            block.start, clock = clock, clock + block.minutes
            where = f"{name} at {clock_text(block.start)} ({block.part})"
            if block.kind not in KINDS:
                block.problems.append(f"{where}: kind {block.kind!r} is not one of {KINDS}")
            if block.sections and not block.notebook:
                block.problems.append(f"{where}: sections named without a notebook")
            if block.notebook:
                if block.notebook not in notebooks:
                    block.problems.append(f"{where}: no notebook {block.notebook} in notebooks/")
                    continue
                block.stem = notebooks[block.notebook].stem
                if block.notebook not in read:
                    read[block.notebook] = words.sections(nbformat.read(notebooks[block.notebook], as_version=4))
                for section_name in block.sections:
                    try:
                        section = find_section(read[block.notebook], section_name)
                    except LookupError as exc:
                        block.problems.append(f"{where}: {block.stem}: {exc}")
                        continue
                    block.titles.append(section.title)
                    block.words += section.words
                    block.code_cells += section.code_cells
            if name == "workshop" and block.kind in ("teaching", "exercises"):
                if block.pace > plan.pace:
                    block.problems.append(f"{where}: {block.words} words in {block.minutes:g} minutes is "
                                          f"{block.pace:.0f} words a minute, over the plan's pace of {plan.pace:g}: "
                                          "give it more minutes or move a section to after the day")
                if not (block.say.strip() and block.show.strip()):
                    block.problems.append(f"{where}: no speaker notes (say = and show = ...)")
        total = sum(b.minutes for b in blocks)
        expected = plan.length if name == "workshop" else plan.talk_length
        if abs(total - expected) > 1e-9:
            plan.problems.append(f"the {name}'s blocks add up to {total:g} minutes, not {expected:g}")
        plan.problems += [p for b in blocks for p in b.problems]
    return plan


def clock_text(minutes: float) -> str:
    minutes = round(minutes)
    return f"{minutes // 60}:{minutes % 60:02d}"


def _sections_text(block: Block) -> str:
    parts = [f"*{t}*" for t in block.titles]
    if block.what:
        parts.append(block.what)
    return "; ".join(parts) or "-"


def _figure(value: float) -> str:
    return f"{value:,.0f}" if value else ""


def _minutes(value: float) -> str:
    return f"{value:g}" if value else ""


def report(plan: Plan) -> str:
    """The plain-text table ``python -m cachelab plan`` prints."""
    lines = [f"The 3-hour workshop, planned at {plan.pace:g} words a minute at most "
             f"(words and code cells from the notebooks' sections):",
             f"{'start':>5}  {'min':>4}  {'kind':<9}  {'nb':<2}  {'words':>5}  {'cells':>5}  {'w/min':>5}  "
             f"{'cells/min':>9}  sections"]
    for b in plan.workshop:
        paced = b.kind in ("teaching", "exercises")
        lines.append(f"{clock_text(b.start):>5}  {b.minutes:>4g}  {b.kind:<9}  {b.notebook:<2}  "
                     f"{b.words if paced else '':>5}  {b.code_cells if paced else '':>5}  "
                     f"{f'{b.pace:.0f}' if paced else '':>5}  {f'{b.cells_per_minute:.1f}' if paced else '':>9}  "
                     f"{'; '.join(b.titles) or b.what}")
    teaching = [b for b in plan.workshop if b.kind == "teaching"]
    taught = sum(b.words for b in teaching)
    minutes = sum(b.minutes for b in teaching)
    lines.append(f"teaching: {taught:,} words and {sum(b.code_cells for b in teaching)} code cells in {minutes:g} "
                 f"minutes, {taught / minutes:.0f} words a minute on average, "
                 f"{max(b.pace for b in teaching):.0f} at most")
    lines.append("")
    lines.append("The 30-minute talk (slides from the committed outputs):")
    for b in plan.talk:
        lines.append(f"{clock_text(b.start):>5}  {b.minutes:>4g}  {b.notebook:<2}  {'; '.join(b.titles) or b.what}")
    if plan.problems:
        lines += ["", f"{len(plan.problems)} problem(s):", *(f"  {p}" for p in plan.problems)]
    return "\n".join(lines)


# --------------------------------------------------------------------------- the guide's generated parts

def _wrap(text: str) -> str:
    """One list item of Markdown, its whitespace collapsed, wrapped at 110 characters."""
    return textwrap.fill(" ".join(text.split()), width=110, subsequent_indent="  ", break_long_words=False,
                         break_on_hyphens=False)


def _parts(blocks: list[Block]) -> list[tuple[str, list[Block]]]:
    """Consecutive blocks of the same ``part``, grouped."""
    parts: list[tuple[str, list[Block]]] = []
    for block in blocks:
        if not parts or parts[-1][0] != block.part:
            parts.append((block.part, []))
        parts[-1][1].append(block)
    return parts


def _md_workshop(plan: Plan) -> str:
    out = []
    for part, blocks in _parts(plan.workshop):
        start, length = blocks[0].start, sum(b.minutes for b in blocks)
        kinds = {k: sum(b.minutes for b in blocks if b.kind == k) for k in KINDS}
        split = ", ".join(f"{v:g} {k}" for k, v in kinds.items() if v)
        if all(b.kind == "break" for b in blocks):
            out.append(f"### {clock_text(start)}-{clock_text(start + length)} {part} ({length:g} minutes)\n")
            continue
        out.append(f"### {clock_text(start)}-{clock_text(start + length)} {part} ({length:g} minutes: {split})\n")
        out.append("| time | notebook | sections | kind | minutes | words | code cells | words a minute |")
        out.append("| --- | --- | --- | --- | --- | --- | --- | --- |")
        for b in blocks:
            paced = b.kind in ("teaching", "exercises")
            out.append(f"| {clock_text(b.start)} | {f'`{b.notebook}`' if b.notebook else ''} | {_sections_text(b)} | "
                       f"{b.kind} | {b.minutes:g} | {_figure(b.words) if paced else ''} | "
                       f"{_figure(b.code_cells) if paced else ''} | {f'{b.pace:.0f}' if paced else ''} |")
        out.append("")
        for b in blocks:
            if not (b.say or b.show or b.checkpoint):
                continue
            head = f"**{clock_text(b.start)}**" + (f" `{b.notebook}`" if b.notebook else "")
            text = [f"- {head}"]
            if b.say:
                text.append(f"**Say**: {b.say}")
            if b.show:
                text.append(f"**Show**: {b.show}")
            out.append(_wrap(" ".join(text)))
            if b.checkpoint:
                out.append(_wrap(f"- **Checkpoint** ({clock_text(b.start + b.minutes)}): {b.checkpoint}"))
        out.append("")
    return "\n".join(out).rstrip() + "\n"


def _md_summary(plan: Plan) -> str:
    out = ["| part | minutes | teaching | exercises | other | words taught | words a minute (teaching) |",
           "| --- | --- | --- | --- | --- | --- | --- |"]
    for part, blocks in _parts(plan.workshop):
        minutes = {k: sum(b.minutes for b in blocks if b.kind == k) for k in KINDS}
        taught = sum(b.words for b in blocks if b.kind == "teaching")
        pace = f"{taught / minutes['teaching']:.0f}" if minutes["teaching"] else ""
        out.append(f"| {part} | {sum(minutes.values()):g} | {_minutes(minutes['teaching'])} | "
                   f"{_minutes(minutes['exercises'])} | {_minutes(minutes['break'] + minutes['other'])} | "
                   f"{_figure(taught)} | {pace} |")
    total = {k: sum(b.minutes for b in plan.workshop if b.kind == k) for k in KINDS}
    taught = sum(b.words for b in plan.workshop if b.kind == "teaching")
    out.append(f"| **total** | **{sum(total.values()):g}** | **{total['teaching']:g}** | **{total['exercises']:g}** | "
               f"**{total['break'] + total['other']:g}** | **{taught:,}** | "
               f"**{taught / total['teaching']:.0f}** |")
    return "\n".join(out) + "\n"


def _md_talk(plan: Plan) -> str:
    out = ["| time | notebook | slides (section headings) | speaker notes |", "| --- | --- | --- | --- |"]
    for b in plan.talk:
        end = b.start + b.minutes
        out.append(f"| {clock_text(b.start)}-{clock_text(end)} | `{b.stem or b.notebook}` | "
                   f"{_sections_text(b)} | {' '.join(' '.join(t.split()) for t in (b.say, b.show) if t.strip())} |")
    return "\n".join(out) + "\n"


def _md_after(plan: Plan) -> str:
    out = ["| notebook | core sections not taught in the room |", "| --- | --- |"]
    for stem, titles in plan.after_the_day().items():
        out.append(f"| `{stem}` | {'; '.join(f'*{t}*' for t in titles)} |")
    return "\n".join(out) + "\n"


GENERATED = {"workshop": _md_workshop, "summary": _md_summary, "talk": _md_talk, "after": _md_after}


def render_guide(text: str, plan: Plan) -> str:
    """``text`` with every ``<!-- plan:NAME -->`` part replaced by its generated table."""
    def fill(match: re.Match) -> str:
        name = match.group("name")
        if name not in GENERATED:
            raise ValueError(f"unknown generated part <!-- plan:{name} --> (known: {sorted(GENERATED)})")
        return match.group(1) + GENERATED[name](plan) + match.group(4)

    return MARKER.sub(fill, text)


def stale_parts(text: str, plan: Plan) -> list[str]:
    """The names of the generated parts of ``text`` that differ from what the plan generates now."""
    return [m.group("name") for m in MARKER.finditer(text)
            if m.group("name") in GENERATED and m.group("body") != GENERATED[m.group("name")](plan)]


def main(args) -> int:
    plan = load()
    print(report(plan))
    if args.write:
        path = guide_path()
        text = path.read_text(encoding="utf-8")
        new = render_guide(text, plan)
        if new != text:
            path.write_text(new, encoding="utf-8")
            print(f"\nwrote the plan's tables into {path.relative_to(paths.project_root())}")
        else:
            print(f"\n{path.relative_to(paths.project_root())} is up to date")
    elif stale_parts(guide_path().read_text(encoding="utf-8"), plan):
        print("\nThe guide's plan tables are out of date: python -m cachelab plan --write")
        return 1
    return 1 if plan.problems else 0


def add_parser(sub) -> None:
    """``python -m cachelab plan``."""
    parser = sub.add_parser("plan", help="the instructor guide's plans: words, code cells, words a minute per block")
    parser.add_argument("--write", action="store_true",
                        help="rewrite the guide's plan tables (instructors/README.md) from instructors/plan.toml")
    parser.set_defaults(func=main)
