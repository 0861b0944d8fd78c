"""The instructor guide's plans hold against the notebooks as they are (``instructors/plan.toml``).

Each block of the 3-hour workshop asks the room for at most the plan's pace in words a minute, computed from
the words of the notebook sections it names; every section a plan names (the talk's too) exists; the minutes
add up; every block of teaching or exercises has its speaker notes; and the guide's tables are the ones the
plan generates now (``python -m cachelab plan --write``).
"""

from __future__ import annotations

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from cachelab.kit import plan as planning
from cachelab.kit import words


@pytest.fixture(scope="module")
def the_plan():
    return planning.load()


def test_the_plan_has_no_problem(the_plan):
    assert not the_plan.problems, "\n".join(the_plan.problems)


def test_no_block_of_the_workshop_is_faster_than_the_pace(the_plan):
    assert the_plan.pace <= 70, "the issue's bound: at most 70 words a minute (say why, if more)"
    paced = [b for b in the_plan.workshop if b.kind in ("teaching", "exercises")]
    assert paced and all(b.words > 0 for b in paced), "every block of teaching or exercises names sections with words"
    fast = [(planning.clock_text(b.start), b.stem, round(b.pace)) for b in paced if b.pace > the_plan.pace]
    assert not fast, f"blocks over {the_plan.pace:g} words a minute: {fast}"


def test_the_days_add_up(the_plan):
    assert sum(b.minutes for b in the_plan.workshop) == 180
    assert sum(b.minutes for b in the_plan.talk) == 30
    assert sum(b.minutes for b in the_plan.workshop if b.kind == "break") >= 20, "two breaks in three hours"


def test_the_talk_shows_its_four_notebooks_from_sections_that_exist(the_plan):
    assert {b.notebook for b in the_plan.talk} == {"01", "02", "06", "10"}
    assert all(b.titles for b in the_plan.talk)


def test_the_guide_shows_the_tables_the_plan_generates(the_plan):
    text = planning.guide_path().read_text(encoding="utf-8")
    assert {m.group("name") for m in planning.MARKER.finditer(text)} == set(planning.GENERATED)
    stale = planning.stale_parts(text, the_plan)
    assert not stale, f"the guide's generated parts {stale} are out of date: python -m cachelab plan --write"
    assert f"{the_plan.pace:g} words a minute" in text, "the guide states the pace it was planned for"


# --------------------------------------------------------------------------- the mechanism, on a small notebook

def small_notebook(tmp_path, heading="## 2. Choosing `maxsize`: where the curve bends"):
    nb = new_notebook(cells=[new_markdown_cell("# A title\n\nfour words of introduction"),
                             new_markdown_cell(f"---\n{heading}\n\none two three four five six seven eight"),
                             new_code_cell("x = 1"), new_code_cell("y = 2"),
                             new_markdown_cell("## Going deeper: more\n\nnine ten"),
                             new_markdown_cell("## Summary\n\neleven")])
    path = tmp_path / "01_small.ipynb"
    nbformat.write(nb, path)
    return {"01": path}


PLAN = """pace = 10
length = 3
talk_length = 1
after_the_day = ["01"]

[[workshop]]
part = "one"
notebook = "01"
sections = ["choosing maxsize"]
minutes = {minutes}
say = "say this"
show = "show that"

[[workshop]]
part = "one"
kind = "break"
minutes = {rest}

[[talk]]
part = "talk"
notebook = "01"
sections = ["{talk_section}"]
minutes = 1
"""


def write_plan(tmp_path, minutes=2, talk_section="summary"):
    path = tmp_path / "plan.toml"
    path.write_text(PLAN.format(minutes=minutes, rest=3 - minutes, talk_section=talk_section))
    return path


def test_a_block_counts_the_words_and_cells_of_its_sections(tmp_path):
    plan = planning.load(write_plan(tmp_path), small_notebook(tmp_path))
    (block, _) = plan.workshop
    assert (block.words, block.code_cells, block.pace) == (15, 2, 7.5)  # the heading's seven words count too
    assert block.titles == ["2. Choosing `maxsize`: where the curve bends"] and not plan.problems
    assert plan.after_the_day() == {"01_small": ["(title and introduction)", "Summary"]}


def test_a_block_too_fast_for_the_pace_is_a_problem(tmp_path):
    plan = planning.load(write_plan(tmp_path, minutes=1), small_notebook(tmp_path))
    assert any("15 words a minute, over the plan's pace of 10" in p for p in plan.problems)


def test_a_renamed_section_is_a_problem_that_names_the_sections(tmp_path):
    plan = planning.load(write_plan(tmp_path), small_notebook(tmp_path, heading="## 2. Sizing the cache"))
    assert any("no section starts with 'choosing maxsize'" in p and "2. Sizing the cache" in p for p in plan.problems)
    plan = planning.load(write_plan(tmp_path, talk_section="going deeper: less"), small_notebook(tmp_path))
    assert any("talk" in p and "'going deeper: less'" in p for p in plan.problems)


def test_a_name_that_fits_two_sections_is_a_problem():
    sections = [words.Section("1. The ladder in one figure", False), words.Section("5. The ladder, again", False)]
    with pytest.raises(LookupError, match="names 2 sections"):
        planning.find_section(sections, "the ladder")
    assert planning.find_section(sections, "The ladder in").title == "1. The ladder in one figure"


def test_minutes_that_do_not_add_up_and_missing_notes_are_problems(tmp_path):
    path = write_plan(tmp_path)
    path.write_text(path.read_text().replace("length = 3", "length = 4").replace('say = "say this"\n', ""))
    plan = planning.load(path, small_notebook(tmp_path))
    assert any("add up to 3 minutes, not 4" in p for p in plan.problems)
    assert any("no speaker notes" in p for p in plan.problems)


def test_the_guide_parts_are_rewritten_between_their_markers(tmp_path):
    plan = planning.load(write_plan(tmp_path), small_notebook(tmp_path))
    text = "before\n<!-- plan:summary -->\nold\n<!-- /plan:summary -->\nafter\n"
    assert planning.stale_parts(text, plan) == ["summary"]
    new = planning.render_guide(text, plan)
    assert new.startswith("before\n<!-- plan:summary -->\n| part |") and new.endswith("<!-- /plan:summary -->\nafter\n")
    assert planning.stale_parts(new, plan) == [] and "| **total** | **3** | **2** |" in new
