"""Exercises: one source of truth (solution cells in the notebooks), generated participant copies.

Checked here: the placeholders keep each exercise's interface and none of its solution; the copies in
``exercises/`` are up to date (``make exercises``); and every check cell of the series fails on the
placeholder and passes on the solution, run in a real kernel.
"""

from __future__ import annotations

import ast
import re

import nbformat
import numpy as np
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from cachelab import data
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


# the right answer from wrong code; then one number too many; then the right function and a wrong number
WRONG_SQUARE = "def square(x):\n    return x + x  # doubles instead of squaring\n\nanswer = 49"
WRONG_TOTAL = "total = sum(range(base + 1))  # one number too many"
WRONG_ANSWER = "def square(x):\n    return x * x\n\nanswer = 50  # off by one"


def check_cells(nb):
    return [c for c in nb.cells if eb.is_check(c)]


CHECKED = "with checking():\n    check_equal(square(3), 9)\n    check_equal(answer, 49)"
UNWRAPPED = "check_equal(square(3), 9)\ncheck_equal(answer, 49)"  # the placeholder's NotImplementedError escapes


def tiny_notebook(check_source=CHECKED, solution=SOLUTION,
                  wrong=(WRONG_SQUARE,)):
    """A notebook with the series' conventions: two exercises with known-wrong answers, a cell after the last check."""
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"},
                                "language_info": {"name": "python", "version": "3.11.7"}})
    nb.cells = [
        new_markdown_cell("# Square a number"),
        new_code_cell("from cachelab.exercises import check, check_equal, checking\nbase = 10"),
        new_markdown_cell("## Exercises\n\n**1.** Write `square(x)` and compute `answer`, the square of 7."),
        tagged(new_code_cell(solution), eb.SOLUTION_TAG),
        *(eb.wrong_cell(source) for source in wrong),
        tagged(new_code_cell(check_source), eb.CHECK_TAG),
        new_markdown_cell("**2.** Add the numbers 0 to 9."),
        tagged(new_code_cell("total = 0\nfor i in range(base):\n    total += i"), eb.SOLUTION_TAG),
        eb.wrong_cell(WRONG_TOTAL),
        tagged(new_code_cell('check(total == 45, "add every number from 0 to 9")'), eb.CHECK_TAG),
        new_code_cell("raise RuntimeError('never run: after the last check cell')"),
    ]
    check_cells(nb)[0].outputs = [nbformat.v4.new_output("stream", text="\u2705 Right!\n")]
    check_cells(nb)[0].execution_count = 3
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
    assert check_cells(nb)[0].outputs, "the source notebook is left alone"
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
    assert "NotYet" in good[0].placeholder_error and "NotImplementedError" in good[0].placeholder_error
    assert "NotYet" in good[1].placeholder_error and "add every number" in good[1].placeholder_error
    assert good[0].names == ["square", "answer"]

    lenient = eb.verify_exercises(write(tiny_notebook(check_source="check(True, 'anything goes')"),
                                        tmp_path / "02_lenient.ipynb"), results_dir=tmp_path)
    assert not lenient[0].ok and "passes on the placeholder" in lenient[0].describe()

    wrong = eb.verify_exercises(write(tiny_notebook(check_source="check_equal(answer, 50)"),
                                      tmp_path / "03_wrong.ipynb"), results_dir=tmp_path)
    assert not wrong[0].ok and "fails on the solution" in wrong[0].describe()

    traceback = eb.verify_exercises(write(tiny_notebook(check_source=UNWRAPPED), tmp_path / "04_traceback.ipynb"),
                                    results_dir=tmp_path)
    assert not traceback[0].ok and "traceback on the placeholder" in traceback[0].describe(), "unwrapped: a traceback"


def test_verify_reports_a_broken_notebook(tmp_path):
    nb = tiny_notebook()
    nb.cells[1].source = "import module_that_does_not_exist"
    with pytest.raises(eb.NotebookBroken, match="cell 1"):
        eb.verify_exercises(write(nb, tmp_path / "01_broken.ipynb"), results_dir=tmp_path)


def test_verify_runs_to_the_end_of_the_notebook_when_asked(tmp_path):
    path = write(tiny_notebook(), tmp_path / "01_whole.ipynb")  # its last cell raises, after the last check
    assert [r.ok for r in eb.verify_exercises(path, results_dir=tmp_path)] == [True, True]
    with pytest.raises(eb.NotebookBroken, match="never run: after the last check cell"):
        eb.verify_exercises(path, results_dir=tmp_path, whole=True)


# --------------------------------------------------------------------------- known-wrong answers

def test_wrong_answers_are_raw_cells_left_out_of_copies_and_of_the_site():
    nb = tiny_notebook()
    wrong = [c for c in nb.cells if eb.is_wrong(c)]
    assert len(wrong) == 2 and all(c.cell_type == "raw" for c in wrong)
    assert eb.wrong_cells(nb) == {5: [4], 9: [8]}
    copy_nb = eb.participant_copy(nb, source_name="99_tiny.ipynb")
    assert not any(eb.is_wrong(c) for c in copy_nb.cells)
    copy_text = nbformat.writes(copy_nb)
    assert "x + x" not in copy_text and "range(base + 1)" not in copy_text
    from nbconvert import HTMLExporter

    html, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)  # the site's exporter
    assert "squared." in html, "the solution's docstring is on the page"
    assert "doubles instead of squaring" not in html and "one number too many" not in html


def test_a_code_cell_tagged_wrong_is_refused(tmp_path):
    nb = tiny_notebook()
    nb.cells[4] = tagged(new_code_cell(WRONG_SQUARE), eb.WRONG_TAG)  # Run All would run it over the solution
    with pytest.raises(ValueError, match="must be a raw cell"):
        eb.participant_copy(nb, source_name="01_x.ipynb")
    with pytest.raises(ValueError, match="must be a raw cell"):
        eb.verify_exercises(write(nb, tmp_path / "01_code_wrong.ipynb"), results_dir=tmp_path)
    nb = tiny_notebook()
    nb.cells.append(eb.wrong_cell("total = 1"))
    with pytest.raises(ValueError, match="no check cell follows"):
        eb.wrong_cells(nb, source_name="01_x.ipynb")


def test_verify_rejects_an_exercise_without_a_known_wrong_answer(tmp_path):
    results = eb.verify_exercises(write(tiny_notebook(wrong=()), tmp_path / "01_unguarded.ipynb"),
                                  results_dir=tmp_path)
    assert [r.ok for r in results] == [False, True]
    assert not results[0].wrong and "no known-wrong answer" in results[0].describe()
    assert "FAIL" in results[0].describe() and results[0].placeholder_error  # the rest of it is fine
    assert "rejects 1 known-wrong answer" in results[1].describe()


def test_verify_catches_a_check_that_accepts_a_wrong_answer(tmp_path):
    lenient = "check(isinstance(answer, int), 'answer is a number')"  # right only in its type
    results = eb.verify_exercises(write(tiny_notebook(check_source=lenient, wrong=(WRONG_ANSWER, WRONG_SQUARE)),
                                        tmp_path / "01_lenient.ipynb"), results_dir=tmp_path)
    first = results[0]
    assert not first.ok and not first.solution_error and first.placeholder_error, first.describe()
    assert [w.ok for w in first.wrong] == [False, False]
    assert "accepts the known-wrong answer in cell 4 (def square(x):)" in first.describe()
    assert "cell 5 (def square(x):)" in first.describe()

    results = eb.verify_exercises(write(tiny_notebook(check_source=CHECKED, wrong=(WRONG_ANSWER, WRONG_SQUARE)),
                                        tmp_path / "02_strict.ipynb"), results_dir=tmp_path)
    assert results[0].ok, results[0].describe()
    assert all(w.error.startswith("NotYet: Not yet:") for w in results[0].wrong)


def test_a_wrong_answer_must_get_a_not_yet_message_not_a_crash(tmp_path):
    crashing = "check(square(3) == 9, 'square 3')\ncheck(answer.bit_length() == 6, 'answer is 49')"
    wrong = ("def square(x):\n    return x * x\n\nanswer = '49'", "def square(x):\n    return x * x\n\nanswer = 1 / 0",
             "answer = 49")
    results = eb.verify_exercises(write(tiny_notebook(check_source=crashing, wrong=wrong),
                                        tmp_path / "01_crash.ipynb"), results_dir=tmp_path)
    text = results[0].describe()
    assert not results[0].ok and [w.ok for w in results[0].wrong] == [False, False, False]
    assert "with AttributeError instead of a Not yet message" in text, text
    assert "fails to run itself: ZeroDivisionError" in text, text
    assert "(answer = 49) does not define square" in text, text


def test_the_solution_is_back_in_place_after_the_wrong_answers(tmp_path):
    nb = tiny_notebook()
    nb.cells.insert(6, new_code_cell("assert square(4) == 16 and answer == 49, 'the solution, not a wrong answer'"))
    results = eb.verify_exercises(write(nb, tmp_path / "01_after.ipynb"), results_dir=tmp_path)
    assert [r.ok for r in results] == [True, True], [r.describe() for r in results]


# --------------------------------------------------------------------------- what a participant sees

def test_not_yet_shows_one_clean_line_in_a_kernel_and_still_fails_the_cell(tmp_path):
    from cachelab.kit import runner

    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nb.cells = [new_code_cell("from cachelab.exercises import check_equal\ncheck_equal(6, 9, 'square, do not double')"),
                new_code_cell("print('never reached')")]
    outcome = runner.execute(write(nb, tmp_path / "01_not_yet.ipynb"), quick=True)
    assert not outcome.ok and "NotYet" in outcome.error, "the cell fails: Run all, nbclient and the tests stop"
    executed = nbformat.read(tmp_path / "01_not_yet.ipynb", as_version=4)
    error = next(o for o in executed.cells[0].outputs if o.output_type == "error")
    assert error.traceback == ["\u274c Not yet: expected 9, got 6. square, do not double"]
    assert not executed.cells[1].outputs


def test_checks_say_right_only_for_the_right_value_and_type(capsys):
    from cachelab.exercises import NotYet, check, check_close, check_equal

    check_equal(True, True)
    check_close(np.int64(3), 3.0)
    check_close(np.float64(0.5), 0.5)
    check_equal(np.bool_(False), False)
    assert capsys.readouterr().out.count("\u2705") == 4
    for wrong in (lambda: check_equal(1, True), lambda: check_equal(0, False), lambda: check_close(True, 1.0),
                  lambda: check_equal(np.arange(3), 3), lambda: check(..., "write it"),
                  lambda: check_close("0.5", 0.5)):
        with pytest.raises(NotYet, match="^Not yet: "):
            wrong()
    assert "\u2705" not in capsys.readouterr().out


def test_hints_come_in_tiers():
    from cachelab.exercises import Hints, NotYet, check

    hints = Hints(["look at the keys", "count the distinct keys", "len(set(stream))"])
    messages = []
    for _ in range(4):
        with pytest.raises(NotYet) as caught:
            check(False, hints)
        messages.append(str(caught.value))
    assert messages == ["Not yet: Hint 1 of 3: look at the keys", "Not yet: Hint 2 of 3: count the distinct keys",
                        "Not yet: Hint 3 of 3: len(set(stream))", "Not yet: Hint 3 of 3: len(set(stream))"]
    for bad in ([], "one string", ["", "x"]):
        with pytest.raises(ValueError, match="Hints needs"):
            Hints(bad)


# --------------------------------------------------------------------------- predict, then run

def lru_or_lfu(**kwargs):
    from cachelab.exercises import Prediction

    options = dict(feedback={"a": "a scan of one-off keys pushes the hot keys out of an LRU.",
                             "c": "the stream is skewed: a few keys get most requests, so the policies differ."},
                   hints=["What does a scan of one-off keys do to each policy?", "LFU keeps counts; LRU keeps order."],
                   explanation="LFU keeps the hot keys through the scan.")
    options.update(kwargs)
    return Prediction("Will LRU or LFU hit more often on this stream?",
                      {"a": "LRU", "b": "LFU", "c": "about the same"}, **options)


def test_a_prediction_gives_feedback_for_the_choice_made_and_hints_in_tiers(capsys):
    from cachelab.exercises import NotYet

    q = lru_or_lfu(answer="b")
    assert "a) LRU" in str(q) and "**b**) LFU" in q._repr_markdown_() and 'prediction = "a"' in str(q)
    with pytest.raises(NotYet) as first:
        q.check("a")
    assert str(first.value).splitlines() == [
        "Not yet: you predicted a (LRU). a scan of one-off keys pushes the hot keys out of an LRU.",
        "Hint 1 of 2: What does a scan of one-off keys do to each policy?"]
    with pytest.raises(NotYet) as second:
        q.check("About the same")  # a choice's text is accepted too
    assert "you predicted c (about the same). the stream is skewed" in str(second.value)
    assert "Hint 2 of 2: LFU keeps counts" in str(second.value) and q.attempts == 2
    for unanswered in (..., None, "d", 2):
        with pytest.raises(NotYet, match="^Not yet: .*'a', 'b', 'c'"):
            q.check(unanswered)
    assert q.attempts == 2, "a missing or malformed prediction is not a wrong try"
    route = data.Route("JFK", "LAX", 7)  # `prediction = c` unquoted, where the notebook has a route named c
    with pytest.raises(NotYet) as unquoted:
        q.check(route)
    assert str(unquoted.value).startswith("Not yet: your prediction is a Route (Route(origin='JFK', ") \
        and 'in quotes, e.g. prediction = "a"' in str(unquoted.value) and q.attempts == 2
    q.check("B")
    assert capsys.readouterr().out == "\u2705 Right: b (LFU). LFU keeps the hot keys through the scan.\n"


def test_a_prediction_can_take_its_answer_from_the_run(capsys):
    from cachelab.exercises import NotYet

    lfu_ratio, lru_ratio = 0.61, 0.48  # what a replay measured
    q = lru_or_lfu(feedback={"a": "LRU forgets the hot keys in a scan.", "b": "LFU needs time to learn counts.",
                             "c": "the policies differ on a skewed stream."})
    winner = "b" if lfu_ratio > lru_ratio else "a"
    q.check("b", answer=winner)
    with pytest.raises(NotYet, match="LRU forgets"):
        q.check("a", answer=winner)
    with pytest.raises(ValueError, match="say which choice is right"):
        q.check("a")
    with pytest.raises(ValueError, match="the run says 'a' but the question was written with answer 'b'"):
        lru_or_lfu(answer="b").check("a", answer="a")
    assert "Right: b" in capsys.readouterr().out


def test_a_prediction_needs_feedback_for_every_choice_that_can_be_wrong():
    from cachelab.exercises import Prediction

    with pytest.raises(ValueError, match=r"\['c'\] have none"):
        lru_or_lfu(answer="b", feedback={"a": "LRU forgets the hot keys."})
    with pytest.raises(ValueError, match=r"\['b'\] have none"):  # the run may make any choice the right one
        lru_or_lfu(feedback={"a": "x", "c": "y"})
    with pytest.raises(ValueError, match="not among the choices"):
        lru_or_lfu(answer="b", feedback={"a": "x", "c": "y", "z": "?"})
    with pytest.raises(ValueError, match="at least two choices"):
        Prediction("One?", {"a": "yes"}, feedback={})
    with pytest.raises(ValueError, match="answer must be one of"):
        lru_or_lfu(answer="LFRU")


def test_a_prediction_exercise_is_verified_like_the_others(tmp_path):
    nb = new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}})
    nb.cells = [
        new_markdown_cell("# Predict, then run"),
        new_code_cell("from cachelab.exercises import Prediction\n"
                      "q = Prediction('Is 2 ** 10 more than a thousand?', {'a': 'yes', 'b': 'no'}, "
                      "feedback={'a': 'x', 'b': 'powers of two double: ten doublings pass a thousand.'})\nq"),
        tagged(new_code_cell('prediction = "a"'), eb.SOLUTION_TAG),
        eb.wrong_cell('prediction = "b"'),
        new_code_cell("measured = 2 ** 10"),
        tagged(new_code_cell('q.check(prediction, answer="a" if measured > 1000 else "b")'), eb.CHECK_TAG),
    ]
    results = eb.verify_exercises(write(nb, tmp_path / "01_predict.ipynb"), results_dir=tmp_path)
    assert [r.ok for r in results] == [True], [r.describe() for r in results]
    assert "write your prediction first" in results[0].placeholder_error
    assert "powers of two double" in results[0].wrong[0].error
    copy_nb = eb.participant_copy(nb)
    assert [c.source for c in copy_nb.cells if eb.PLACEHOLDER_TAG in eb.cell_tags(c)] == [
        f"# {eb.YOUR_CODE_HERE}: replace the ... below.\nprediction = ..."]


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


def test_checking_turns_what_the_participants_code_raises_into_one_not_yet_line():
    from cachelab.exercises import NotYet, check_equal, checking

    def placeholder(x):
        raise NotImplementedError("Your code here")

    cases = [(lambda: check_equal(placeholder(3), 9), "still raises NotImplementedError"),
             (lambda: check_equal(Ellipsis(3), 9), "a `...` is still in the cell above"),
             (lambda: check_equal(undefined_name, 9), "Run the cells above"),  # noqa: F821
             (lambda: check_equal(1 / 0, 9), "ZeroDivisionError"),
             (lambda: check_equal(3, 9), "expected 9, got 3")]
    for body, message in cases:
        with pytest.raises(NotYet, match=re.escape(message)) as caught, checking():
            body()
        assert caught.value.__cause__ is None and caught.value._render_traceback_()[0].startswith("\u274c Not yet")


def test_other_right_answers_must_pass_and_are_left_out_of_the_copy(tmp_path):
    """A right answer in another style than the solution (raw cells tagged ``right``) must pass the check."""
    other_style = "def square(x):\n    return x ** 2\n\nanswer = 7 ** 2"
    nb = tiny_notebook()
    nb.cells.insert(5, eb.right_cell(other_style))
    results = eb.verify_exercises(write(nb, tmp_path / "01_right.ipynb"), results_dir=tmp_path)
    assert results[0].ok and len(results[0].right) == 1, results[0].describe()
    assert "1 other right answer" in results[0].describe()
    assert not any(eb.is_right(c) for c in eb.participant_copy(nb).cells)

    too_strict = "with checking():\n    check('** 2' not in __import__('inspect').getsource(square), 'use x * x')"
    nb = tiny_notebook(check_source=too_strict)
    nb.cells.insert(5, eb.right_cell(other_style))
    results = eb.verify_exercises(write(nb, tmp_path / "02_strict.ipynb"), results_dir=tmp_path)
    assert not results[0].ok and "rejects the right answer in cell 5" in results[0].describe()
