"""Exercises: one source of truth (solution cells in the notebooks), generated participant copies.

Checked here: the placeholders keep each exercise's interface and none of its solution; the copies in
``exercises/`` are up to date (``make exercises``); and every check cell of the series fails on the
placeholder and passes on the solution, run in a real kernel.
"""

from __future__ import annotations

import ast

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from cachelab.kit import exercises_build as eb
from cachelab.kit import notebooks

NOTEBOOKS = notebooks.list_notebooks()


def solution_lines(nb) -> set[str]:
    """Lines of code that appear in the notebook's solution cells and nowhere else in it."""
    def lines(cells):
        return {ln.strip() for c in cells if c.cell_type == "code" for ln in c.source.splitlines()}

    solution = lines([c for c in nb.cells if eb.is_solution(c)])
    elsewhere = lines([c for c in nb.cells if not eb.is_solution(c)])
    trivial = {"", "pass", "return", "else:", "try:", "finally:", "...", ")", "]", "}", '"""', "'''"}
    return {ln for ln in solution - elsewhere - trivial if not ln.startswith(("#", "import ", "from "))}


def interface_lines(nb) -> set[str]:
    """The lines of the stubs in placeholder cells, except their ``raise``: signatures and docstrings."""
    out = set()
    for cell in nb.cells:
        if eb.PLACEHOLDER_TAG not in eb.cell_tags(cell) or cell.cell_type != "code":
            continue
        for node in ast.parse(cell.source).body:
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                segment = ast.get_source_segment(cell.source, node) or ""
                out |= {ln.strip() for ln in segment.splitlines() if "NotImplementedError" not in ln}
    return out


def leaked_solution_lines(source_nb, copy_nb) -> list[str]:
    """The solution lines of ``source_nb`` found in ``copy_nb``'s code (a stub's interface does not count)."""
    copy_lines = {ln.strip() for c in copy_nb.cells if c.cell_type == "code" for ln in c.source.splitlines()}
    return sorted(solution_lines(source_nb) & copy_lines - interface_lines(copy_nb))
WITH_EXERCISES = [p for p in NOTEBOOKS if eb.exercise_groups(nbformat.read(p, as_version=4))]


def tagged(cell, *tags):
    cell.metadata["tags"] = list(tags)
    cell.metadata["slideshow"] = {"slide_type": "-"}
    return cell


SOLUTION = '''from math import isqrt

def square(x: int) -> int:
    """``x`` squared."""
    return x * x

answer = square(7)'''


def tiny_notebook(check_source="check_equal(square(3), 9)\ncheck_equal(answer, 49)", solution=SOLUTION):
    """A notebook with the series' conventions: two exercises, a cell after the last check."""
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                                "language_info": {"name": "python", "version": "3.11.7"}})
    nb.cells = [
        new_markdown_cell("# Square a number"),
        new_code_cell("from cachelab.exercises import check, check_equal\nbase = 10"),
        new_markdown_cell("## Exercises\n\n**1.** Write `square(x)` and compute `answer`, the square of 7."),
        tagged(new_code_cell(solution), eb.SOLUTION_TAG),
        tagged(new_code_cell(check_source), eb.CHECK_TAG),
        new_markdown_cell("**2.** Add the numbers 0 to 9."),
        tagged(new_code_cell("total = 0\nfor i in range(base):\n    total += i"), eb.SOLUTION_TAG),
        tagged(new_code_cell('check(total == 45, "add every number from 0 to 9")'), eb.CHECK_TAG),
        new_code_cell("raise RuntimeError('never run: after the last check cell')"),
    ]
    nb.cells[4].outputs = [nbformat.v4.new_output("stream", text="\u2705 Right!\n")]
    nb.cells[4].execution_count = 3
    return nb


def write(nb, path):
    nbformat.write(nb, path)
    return path


# --------------------------------------------------------------------------- placeholders

def test_placeholder_keeps_the_interface_and_drops_the_solution():
    text = eb.placeholder_source(SOLUTION)
    assert "def square(x):" in text and '"""``x`` squared."""' in text
    assert "answer = ..." in text
    assert "x * x" not in text and "square(7)" not in text and "isqrt" not in text
    assert text.startswith(f"# {eb.YOUR_CODE_HERE}")
    namespace = {}
    exec(compile(text, "placeholder", "exec"), namespace)
    assert namespace["answer"] is Ellipsis
    with pytest.raises(NotImplementedError, match="Your code here"):
        namespace["square"](3)


def test_placeholder_hides_decorators_annotations_and_bases():
    source = ("@functools.lru_cache(maxsize=128)\ndef ask(route: Route) -> float:\n    return service.ask(route)\n\n"
              "class Policy(LFUCache):\n    '''A cache that forgets scans.'''\n    def popitem(self):\n"
              "        return super().popitem()\n")
    text = eb.placeholder_source(source)
    assert "lru_cache" not in text and "Route" not in text and "LFUCache" not in text and "popitem" not in text
    namespace = {}
    exec(compile(text, "placeholder", "exec"), namespace)  # nothing undefined is referenced
    with pytest.raises(NotImplementedError):
        namespace["Policy"]()


def test_defined_names_are_the_exercise_interface():
    source = "a, (b, *c) = 1, (2, 3)\nd: int = 4\ne += 1\nobj.attr = 5\n_hidden = 6\nfor f in range(3):\n    g = f\n"
    assert eb.defined_names(source) == ["a", "b", "c", "d", "e"]
    assert set(eb.bound_names(source + "import numpy as np\n")) >= {"a", "b", "c", "d", "e", "_hidden", "f", "g", "np"}


def test_a_solution_without_names_gets_an_empty_placeholder():
    assert eb.placeholder_source("print(42)") == f"# {eb.YOUR_CODE_HERE}.\n"


def test_bad_source_is_a_syntax_error():
    with pytest.raises(SyntaxError):
        eb.placeholder_source("def broken(:")
    nb = tiny_notebook(solution="def broken(:")
    with pytest.raises(ValueError, match="01_x.ipynb: a solution cell does not parse"):
        eb.participant_copy(nb, source_name="01_x.ipynb")


def test_magics_in_a_solution_are_understood():
    assert eb.placeholder_source("%load_ext autoreload\nresult = 5").endswith("result = ...")


# --------------------------------------------------------------------------- participant copies

def test_participant_copy_clears_outputs_and_replaces_solutions():
    nb = tiny_notebook()
    copy_nb = eb.participant_copy(nb, source_name="99_tiny.ipynb")
    assert nb.cells[4].outputs, "the source notebook is left alone"
    code = [c for c in copy_nb.cells if c.cell_type == "code"]
    assert all(c.outputs == [] and c.execution_count is None for c in code)
    placeholders = [c for c in copy_nb.cells if eb.PLACEHOLDER_TAG in eb.cell_tags(c)]
    assert len(placeholders) == 2 and not any(eb.is_solution(c) for c in copy_nb.cells)
    assert [c.source for c in copy_nb.cells if eb.is_check(c)] == [c.source for c in nb.cells if eb.is_check(c)]
    assert copy_nb.cells[1].id == eb.NOTE_CELL_ID and "99_tiny.ipynb" in copy_nb.cells[1].source
    assert copy_nb.metadata["language_info"] == {"name": "python"}
    assert leaked_solution_lines(nb, copy_nb) == []
    nbformat.validate(copy_nb)


def test_leaked_solution_lines_are_found():
    nb = tiny_notebook()
    copy_nb = eb.participant_copy(nb)
    copy_nb.cells[-1].source = "answer = square(7)"  # a solution line that slipped into another cell
    assert leaked_solution_lines(nb, copy_nb) == ["answer = square(7)"]


def test_build_writes_copies_detects_and_fixes_staleness(tmp_path):
    src, out = tmp_path / "notebooks", tmp_path / "exercises"
    src.mkdir()
    write(tiny_notebook(), src / "01_tiny.ipynb")
    write(new_notebook(cells=[new_markdown_cell("# No exercises here")]), src / "00_intro.ipynb")
    assert sorted(eb.stale_copies(src, out)) == ["00_intro.ipynb: missing", "01_tiny.ipynb: missing"]
    written = eb.build_exercises(src, out)
    assert sorted(p.name for p in written) == ["00_intro.ipynb", "01_tiny.ipynb"]
    assert eb.stale_copies(src, out) == []
    assert eb.build_exercises(src, out) == [], "an up-to-date copy is not rewritten"

    nb = nbformat.read(src / "01_tiny.ipynb", as_version=4)
    nb.cells[2].source += " Use a multiplication."
    write(nb, src / "01_tiny.ipynb")
    (out / "02_gone.ipynb").write_text("{}")
    assert sorted(eb.stale_copies(src, out)) == ["01_tiny.ipynb: out of date",
                                                 "02_gone.ipynb: no notebook of that name"]
    eb.build_exercises(src, out)
    assert eb.stale_copies(src, out) == [] and not (out / "02_gone.ipynb").exists()


def test_executing_a_notebook_in_place_does_not_change_its_copy(tmp_path):
    nb = tiny_notebook()
    path = write(nb, tmp_path / "01_tiny.ipynb")
    before = eb.render_copy(path)
    nb.cells[1].outputs = [nbformat.v4.new_output("stream", text="new run\n")]
    nb.cells[1].execution_count = 7
    nb.metadata["language_info"]["version"] = "3.13.0"
    write(nb, path)
    assert eb.render_copy(path) == before


# --------------------------------------------------------------------------- verification in a real kernel

def test_verify_passes_good_checks_and_flags_bad_ones(tmp_path):
    good = eb.verify_exercises(write(tiny_notebook(), tmp_path / "01_good.ipynb"), results_dir=tmp_path)
    assert [r.ok for r in good] == [True, True], [r.describe() for r in good]
    assert "NotImplementedError" in good[0].placeholder_error
    assert "NotYet" in good[1].placeholder_error and "add every number" in good[1].placeholder_error
    assert good[0].names == ["square", "answer"]

    lenient = eb.verify_exercises(write(tiny_notebook(check_source="check(True, 'anything goes')"),
                                        tmp_path / "02_lenient.ipynb"), results_dir=tmp_path)
    assert not lenient[0].ok and "passes on the placeholder" in lenient[0].describe()

    wrong = eb.verify_exercises(write(tiny_notebook(check_source="check_equal(answer, 50)"),
                                      tmp_path / "03_wrong.ipynb"), results_dir=tmp_path)
    assert not wrong[0].ok and "fails on the solution" in wrong[0].describe()


def test_verify_reports_a_broken_notebook(tmp_path):
    nb = tiny_notebook()
    nb.cells[1].source = "import module_that_does_not_exist"
    with pytest.raises(eb.NotebookBroken, match="cell 1"):
        eb.verify_exercises(write(nb, tmp_path / "01_broken.ipynb"), results_dir=tmp_path)


# --------------------------------------------------------------------------- the real series

def test_participant_copies_are_up_to_date():
    stale = eb.stale_copies()
    assert not stale, "exercises/ is out of date: run `make exercises` and commit exercises/\n  " + "\n  ".join(stale)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_participant_copy_holds_no_solution_code(path):
    target = eb.exercises_dir() / path.name
    if not target.exists():
        pytest.fail(f"{target} is missing: run `make exercises`")
    source_nb = nbformat.read(path, as_version=4)
    copy_nb = nbformat.read(target, as_version=4)
    assert not any(eb.is_solution(c) for c in copy_nb.cells), f"{target.name} still has a solution cell"
    assert not any(c.get("outputs") for c in copy_nb.cells if c.cell_type == "code"), f"{target.name} has outputs"
    leaked = leaked_solution_lines(source_nb, copy_nb)
    assert not leaked, f"{target.name} contains solution code: {leaked[:3]}"
    for cell in copy_nb.cells:
        if eb.PLACEHOLDER_TAG in eb.cell_tags(cell) and cell.cell_type == "code":
            for node in ast.parse(cell.source).body:
                if isinstance(node, ast.Assign):
                    assert isinstance(node.value, ast.Constant) and node.value.value is Ellipsis, ast.unparse(node)
                elif isinstance(node, ast.FunctionDef):
                    assert isinstance(node.body[-1], ast.Raise), ast.unparse(node)


@pytest.mark.parametrize("path", [p for p in NOTEBOOKS if p.stem[:2] != "00"], ids=lambda p: p.stem)
def test_every_notebook_from_01_has_exercises_with_checks(path):
    nb = nbformat.read(path, as_version=4)
    groups = eb.exercise_groups(nb)
    assert groups, f"{path.name}: no check cell (tag a code cell '{eb.CHECK_TAG}', its solution '{eb.SOLUTION_TAG}')"
    for solutions, check_index in groups:
        assert solutions, f"{path.name}: check cell {check_index} has no solution cell before it"
        assert "check" in nb.cells[check_index].source, f"{path.name}: cell {check_index} calls no cachelab check"
    checked = {i for solutions, _ in groups for i in solutions}
    orphans = [i for i, c in enumerate(nb.cells) if eb.is_solution(c) and c.cell_type == "code" and i not in checked]
    assert not orphans, f"{path.name}: solution cells {orphans} have no check cell after them"


@pytest.mark.parametrize("path", WITH_EXERCISES, ids=lambda p: p.stem)
def test_committed_check_cells_passed_in_the_reference_run(path):
    nb = nbformat.read(path, as_version=4)
    for _, index in eb.exercise_groups(nb):
        outputs = nb.cells[index].get("outputs", [])
        assert not any(o.output_type == "error" for o in outputs), f"{path.name}: check cell {index} failed"
        text = "".join(o.get("text", "") for o in outputs)
        assert "\u2705" in text, f"{path.name}: check cell {index} printed no success line: re-run `make refresh`"


@pytest.fixture(scope="module")
def verified(tmp_path_factory):
    """Verification results per notebook, computed in reading order on first need (07 reads 01-06's results)."""
    results_dir = tmp_path_factory.mktemp("exercise-results")
    figures_dir = tmp_path_factory.mktemp("exercise-figures")
    done: dict[str, list[eb.CheckResult]] = {}

    def upto(path):
        for earlier in WITH_EXERCISES[: WITH_EXERCISES.index(path) + 1]:
            if earlier.stem not in done:
                done[earlier.stem] = eb.verify_exercises(earlier, quick=True, results_dir=results_dir,
                                                         figures_dir=figures_dir)
        return done[path.stem]

    return upto


@pytest.mark.notebook
@pytest.mark.parametrize("path", WITH_EXERCISES, ids=lambda p: p.stem)
def test_check_cells_fail_on_the_placeholder_and_pass_on_the_solution(path, verified):
    results = verified(path)
    assert results, f"{path.name}: no check cell ran"
    bad = [r.describe() for r in results if not r.ok]
    assert not bad, "\n".join(bad)
