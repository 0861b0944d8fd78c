"""Participant copies of the notebooks, generated from the one source of truth: ``make exercises``.

Solutions are written once, in the notebooks, in code cells tagged ``solution``; the code cell that
checks them follows, tagged ``check`` (it calls :mod:`cachelab.exercises`). Between them, raw cells tagged
``wrong`` hold known-wrong answers: plausible mistakes (an off-by-one boundary, a memo that stores one
entry) written like a solution. They are raw cells so that nothing runs them but the verification: "Run
all" in ``notebooks/`` skips them, and the site leaves them out. :func:`build_exercises` writes
``exercises/NN_slug.ipynb`` for every numbered notebook: outputs cleared, the wrong answers left out, and
each solution cell replaced by a placeholder that defines the same top-level names, ``name = ...`` for a
value and a function with the same signature and docstring whose body raises ``NotImplementedError``.
Every check cell then says "not yet" until the participant writes their own code.

:func:`verify_exercises` proves that last sentence for a notebook, and that the check means something: it
runs the notebook in a kernel and, at each check cell, runs the check on the solution (it must pass), on
the placeholder (it must fail) and on every known-wrong answer (each must fail with a "Not yet" message).
An exercise with no known-wrong answer fails the verification too: a check that rejects only the
placeholder may accept any answer of the right type.
"""

from __future__ import annotations

import ast
import copy
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .. import paths
from .notebooks import list_notebooks, notebook_client

SOLUTION_TAG = "solution"
CHECK_TAG = "check"
WRONG_TAG = "wrong"
RIGHT_TAG = "right"  # a raw cell holding a correct answer written in another style than the solution
WRONG_MIMETYPE = "text/x-python"  # a raw cell's format: nbconvert's HTML leaves it out
PLACEHOLDER_TAG = "placeholder"
YOUR_CODE_HERE = "Your code here"
NOTE_CELL_ID = "participant-copy-note"
NUMBERED = "[0-9][0-9]_*.ipynb"


def exercises_dir() -> Path:
    """Where the participant copies live: ``exercises/`` in the checkout (committed, generated)."""
    return paths.project_root() / "exercises"


def cell_tags(cell) -> list[str]:
    """The tags of a notebook cell (``metadata.tags``), as a list."""
    return list(cell.get("metadata", {}).get("tags", []))


def is_solution(cell) -> bool:
    return SOLUTION_TAG in cell_tags(cell)


def is_check(cell) -> bool:
    return cell.get("cell_type") == "code" and CHECK_TAG in cell_tags(cell)


def is_wrong(cell) -> bool:
    """A known-wrong answer: a cell tagged ``wrong`` (it must be a raw cell, see :func:`wrong_cells`)."""
    return WRONG_TAG in cell_tags(cell)


def is_right(cell) -> bool:
    """Another right answer: a raw cell tagged ``right``, in another style than the solution, which the check
    must accept (a check that accepts only the solution's own way of writing it rejects good answers)."""
    return RIGHT_TAG in cell_tags(cell)


def right_cell(source: str):
    """A raw cell holding a correct answer in another style, with the metadata of :func:`wrong_cell`."""
    cell = wrong_cell(source)
    cell.metadata["tags"] = [RIGHT_TAG]
    return cell


def wrong_cell(source: str):
    """A raw cell holding a known-wrong answer, with the metadata the conventions ask for.

    Tagged ``wrong``; format ``text/x-python`` (left out of the HTML site); skipped in slides; collapsed
    in JupyterLab, where the instructor running ``notebooks/`` would otherwise see it.
    """
    import nbformat

    cell = nbformat.v4.new_raw_cell(source)
    cell.metadata.update({"tags": [WRONG_TAG], "raw_mimetype": WRONG_MIMETYPE,
                          "slideshow": {"slide_type": "skip"}, "jupyter": {"source_hidden": True}})
    return cell


# --------------------------------------------------------------------------- placeholders

def _target_names(target: ast.AST) -> list[str]:
    if isinstance(target, ast.Name):
        return [target.id]
    if isinstance(target, ast.Tuple | ast.List):
        return [n for elt in target.elts for n in _target_names(elt)]
    if isinstance(target, ast.Starred):
        return _target_names(target.value)
    return []  # obj.attr = ..., d[k] = ...: binds no new name


def defined_names(source: str) -> list[str]:
    """The public names a solution cell defines at top level, in order: what its placeholder must define.

    Assignments (plain, annotated, augmented), functions and classes count; names starting with ``_``,
    loop variables and imports do not (they are the solution's business, not the exercise's interface).
    """
    names: list[str] = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.Assign):
            found = [n for t in node.targets for n in _target_names(t)]
        elif isinstance(node, ast.AnnAssign | ast.AugAssign):
            found = _target_names(node.target)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            found = [node.name]
        else:
            found = []
        names += [n for n in found if not n.startswith("_") and n not in names]
    return names


def bound_names(source: str) -> list[str]:
    """Every name a cell binds at top level (imports and loop variables too), to forget before a rerun."""
    names: list[str] = []
    for node in ast.parse(source).body:
        for sub in ast.walk(node):
            if isinstance(sub, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef) and sub is not node:
                continue
            if isinstance(sub, ast.Name) and isinstance(sub.ctx, ast.Store):
                names.append(sub.id)
            elif isinstance(sub, ast.alias):
                names.append((sub.asname or sub.name).split(".")[0])
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.append(node.name)
    return list(dict.fromkeys(n for n in names if n != "*"))


def _not_implemented(name: str) -> ast.Raise:
    message = ast.Constant(f"{YOUR_CODE_HERE}: write {name}")
    return ast.Raise(exc=ast.Call(func=ast.Name("NotImplementedError", ast.Load()), args=[message], keywords=[]))


def _docstring_body(node) -> list[ast.stmt]:
    doc = ast.get_docstring(node, clean=False)
    return [ast.Expr(ast.Constant(doc))] if doc else []


def _function_stub(node: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    """Same name, parameters and docstring; no decorators or annotations (they can give the answer away)."""
    stub = copy.deepcopy(node)
    stub.decorator_list = []
    stub.returns = None
    args = stub.args
    for arg in [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]:
        if arg is not None:
            arg.annotation = None
    stub.body = _docstring_body(node) + [_not_implemented(f"{node.name}()")]
    return ast.unparse(ast.fix_missing_locations(stub))


def _class_stub(node: ast.ClassDef) -> str:
    init = copy.deepcopy(ast.parse("def __init__(self, *args, **kwargs): pass").body[0])
    init.body = [_not_implemented(node.name)]
    stub = copy.deepcopy(node)
    stub.bases, stub.keywords, stub.decorator_list = [], [], []
    stub.body = _docstring_body(node) + [init]
    return ast.unparse(ast.fix_missing_locations(stub))


def placeholder_source(source: str) -> str:
    """The participant's version of a solution cell: the same names defined, none of the solution's code.

    >>> print(placeholder_source("best = max(sizes)"))
    # Your code here: replace the ... below.
    best = ...
    """
    pieces: list[tuple[bool, str]] = []  # (is a def or class, text)
    seen: set[str] = set()
    for node in ast.parse(_python_source(source)).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if not node.name.startswith("_") and node.name not in seen:
                seen.add(node.name)
                pieces.append((True, _class_stub(node) if isinstance(node, ast.ClassDef) else _function_stub(node)))
            continue
        for name in defined_names(ast.unparse(node)):
            if name not in seen:
                seen.add(name)
                pieces.append((False, f"{name} = ..."))
    if not pieces:
        return f"# {YOUR_CODE_HERE}.\n"
    kinds = {is_def for is_def, _ in pieces}
    what = " and ".join(w for w, present in (("the ...", False in kinds), ("the NotImplementedError", True in kinds))
                        if present)
    text = pieces[0][1]
    for (was_def, _), (is_def, piece) in zip(pieces, pieces[1:], strict=False):
        text += ("\n\n\n" if was_def or is_def else "\n") + piece
    return f"# {YOUR_CODE_HERE}: replace {what} below.\n" + text

# --------------------------------------------------------------------------- participant copies

def participant_copy(nb, *, source_name: str = ""):
    """A copy of notebook ``nb`` for participants: outputs cleared, solution cells turned into placeholders."""
    import nbformat

    out = copy.deepcopy(nb)
    wrong_cells(out, source_name=source_name)  # a code cell tagged wrong is refused here, before it is copied
    cells = []
    for cell in out.cells:
        if is_wrong(cell) or is_right(cell):
            continue  # known-wrong and other right answers are for the verification, never shown to participants
        cell.metadata.pop("execution", None)
        cell.metadata.pop("ExecuteTime", None)
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        if is_solution(cell):
            tags = [t for t in cell_tags(cell) if t != SOLUTION_TAG] + [PLACEHOLDER_TAG]
            cell.metadata["tags"] = tags
            if cell.cell_type == "code":
                try:
                    cell.source = placeholder_source(cell.source)
                except SyntaxError as exc:
                    raise ValueError(f"{source_name or 'notebook'}: a solution cell does not parse as Python "
                                     f"(line {exc.lineno}: {exc.msg}); fix it, then run `make exercises`") from None
            else:
                cell.source = f"*{YOUR_CODE_HERE}: write your answer here.*"
                cell.pop("attachments", None)
        cells.append(cell)
    if any(PLACEHOLDER_TAG in cell_tags(c) for c in cells):
        where = f"`notebooks/{source_name}`" if source_name else "the notebook in `notebooks/`"
        note = nbformat.v4.new_markdown_cell(
            "> **Your copy.** This notebook is generated by `make exercises` from " + where + ". Each exercise's "
            f"code cell says *{YOUR_CODE_HERE}*: write your answer there, then run the check cell under it. It "
            "says right, or what to look at. The worked solutions are in " + where + ".",
            id=NOTE_CELL_ID)
        note.metadata["slideshow"] = {"slide_type": "skip"}
        cells.insert(1 if cells else 0, note)
    out.cells = cells
    language = out.metadata.get("language_info", {}).get("name")
    if language:
        out.metadata["language_info"] = {"name": language}  # versions vary by machine: keep the copy stable
    out.metadata.pop("widgets", None)
    return out


def render_copy(path: Path) -> str:
    """The participant copy of the notebook at ``path``, as the text ``make exercises`` writes."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    copy_nb = participant_copy(nb, source_name=path.name)
    nbformat.validate(copy_nb)
    return nbformat.writes(copy_nb) + "\n"


def _sources(notebooks_dir: Path | None, only: Sequence[str] | None) -> list[Path]:
    return list_notebooks(only, folder=notebooks_dir)


def stale_copies(notebooks_dir: Path | None = None, out_dir: Path | None = None) -> list[str]:
    """What ``make exercises`` would change: copies missing or out of date, and copies with no source."""
    out_dir = out_dir or exercises_dir()
    sources = _sources(notebooks_dir, None)
    problems = []
    for path in sources:
        target = out_dir / path.name
        if not target.exists():
            problems.append(f"{target.name}: missing")
        elif target.read_text(encoding="utf-8") != render_copy(path):
            problems.append(f"{target.name}: out of date")
    names = {p.name for p in sources}
    problems += [f"{p.name}: no notebook of that name" for p in sorted(out_dir.glob(NUMBERED)) if p.name not in names]
    return problems


def build_exercises(notebooks_dir: Path | None = None, out_dir: Path | None = None,
                    only: Sequence[str] | None = None) -> list[Path]:
    """Write the participant copies (only those that changed) and remove copies whose notebook is gone."""
    out_dir = out_dir or exercises_dir()
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    sources = _sources(notebooks_dir, only)
    for path in sources:
        target = out_dir / path.name
        text = render_copy(path)
        if not target.exists() or target.read_text(encoding="utf-8") != text:
            target.write_text(text, encoding="utf-8")
            written.append(target)
    if not only:
        names = {p.name for p in sources}
        for orphan in out_dir.glob(NUMBERED):
            if orphan.name not in names:
                orphan.unlink()
    return written


# --------------------------------------------------------------------------- verification

NOT_YET_NAME = "NotYet"  # cachelab.exercises.NotYet, as the kernel names it


class NotebookBroken(RuntimeError):
    """A cell that is not part of an exercise failed: the notebook must run clean before exercises are checked."""


@dataclass
class CheckResult:
    """What one check cell did on the solution and on the placeholder."""

    notebook: str
    cell: int  # index of the check cell in the notebook
    names: list[str] = field(default_factory=list)  # what the solution cells define
    solution_error: str = ""  # empty when the check passed on the solution, as it must
    placeholder_error: str = ""  # the error the check raised on the placeholder; empty is a bug
    placeholder_broken: str = ""  # the placeholder cell itself failed to run (it must run clean)
    wrong: list[WrongResult] = field(default_factory=list)  # each known-wrong answer, tried
    right: list[WrongResult] = field(default_factory=list)  # each other right answer, tried: ``error`` must be empty

    @property
    def ok(self) -> bool:
        """Passes on the solution; on the placeholder and every known-wrong answer, a one-line Not yet, never a
        traceback (a participant who runs the check before writing anything must not meet one)."""
        return (not self.solution_error and self.placeholder_error.startswith(f"{NOT_YET_NAME}:")
                and not self.placeholder_broken and bool(self.wrong) and all(w.ok for w in self.wrong)
                and all(not r.broken and not r.error for r in self.right))

    def describe(self) -> str:
        where = f"{self.notebook} cell {self.cell} ({', '.join(self.names) or 'no names'})"
        if self.ok:
            n_right = len(self.right)
            others = f" and {n_right} other right answer{'s' if n_right != 1 else ''}" if n_right else ""
            return (f"ok    {where}: passes on the solution{others}, rejects {len(self.wrong)} known-wrong "
                    f"answer{'s' if len(self.wrong) != 1 else ''}; on the placeholder: {self.placeholder_error}")
        problems = []
        if self.solution_error:
            problems.append(f"fails on the solution: {self.solution_error}")
        if self.placeholder_broken:
            problems.append(f"the placeholder cell itself fails: {self.placeholder_broken}")
        elif not self.placeholder_error:
            problems.append("passes on the placeholder (it must fail until the participant writes code)")
        elif not self.placeholder_error.startswith(f"{NOT_YET_NAME}:"):
            problems.append(f"shows a traceback on the placeholder ({self.placeholder_error}) instead of a one-line "
                            "Not yet (wrap the check in `with cachelab.exercises.checking():`)")
        if not self.wrong:
            problems.append(f"no known-wrong answer to try (add a raw cell tagged {WRONG_TAG!r} after the solution: "
                            "a plausible mistake the check must reject)")
        problems += [w.problem() for w in self.wrong if not w.ok]
        problems += [f"rejects the right answer in cell {r.cell} ({r.first_line}): {r.broken or r.error}"
                     for r in self.right if r.broken or r.error]
        return f"FAIL  {where}: " + "; ".join(problems)


@dataclass
class WrongResult:
    """What one check cell did on one known-wrong answer: it must fail with a "Not yet" message."""

    cell: int  # index of the raw cell holding the wrong answer
    first_line: str  # of its source, to name it
    error: str = ""  # what the check raised on it; empty: it accepted a wrong answer
    broken: str = ""  # the wrong answer's own code failed to run

    @property
    def ok(self) -> bool:
        return not self.broken and self.error.startswith(f"{NOT_YET_NAME}:")

    def problem(self) -> str:
        where = f"the known-wrong answer in cell {self.cell} ({self.first_line})"
        if self.broken.startswith("does not define"):
            return f"{where} {self.broken}"
        if self.broken:
            return f"{where} fails to run itself: {self.broken}"
        if not self.error:
            return f"accepts {where}"
        return f"rejects {where} with {self.error.split(':', 1)[0]} instead of a Not yet message: {self.error}"


def _safe_defined_names(source: str) -> list[str]:
    try:
        return defined_names(_python_source(source))
    except SyntaxError:
        return []


def _safe_bound_names(source: str) -> list[str]:
    try:
        return bound_names(_python_source(source))
    except SyntaxError:
        return []


def _error_line(exc) -> str:
    ename = getattr(exc, "ename", type(exc).__name__)
    evalue = str(getattr(exc, "evalue", exc)).strip().splitlines()
    return f"{ename}: {evalue[0] if evalue else ''}"[:300]


def exercise_groups(nb) -> list[tuple[list[int], int]]:
    """``(solution cell indices, check cell index)`` for each check cell, in order.

    A check cell checks the solution cells that come after the previous check cell.
    """
    groups, pending = [], []
    for index, cell in enumerate(nb.cells):
        if is_solution(cell) and cell.cell_type == "code":
            pending.append(index)
        elif is_check(cell):
            groups.append((pending, index))
            pending = []
    return groups


def wrong_cells(nb, *, source_name: str = "") -> dict[int, list[int]]:
    """The known-wrong answers of each check cell: ``{check index: [raw cell indices]}``.

    A check cell's wrong answers are the cells tagged ``wrong`` after the previous check cell. They must
    be raw cells: a code cell would run in "Run all" and replace the solution before its check.
    """
    found: dict[int, list[int]] = {}
    pending: list[int] = []
    for index, cell in enumerate(nb.cells):
        if is_wrong(cell):
            if cell.get("cell_type") != "raw":
                raise ValueError(f"{source_name or 'notebook'} cell {index}: a cell tagged {WRONG_TAG!r} must be a raw "
                                 "cell (a code cell would run in Run All and replace the solution); "
                                 "cachelab.kit.exercises_build.wrong_cell(source) makes one")
            pending.append(index)
        elif is_check(cell):
            found[index] = pending
            pending = []
    if pending:
        raise ValueError(f"{source_name or 'notebook'} cells {pending}: tagged {WRONG_TAG!r} but no check cell follows")
    return found


def right_cells(nb, *, source_name: str = "") -> dict[int, list[int]]:
    """The other right answers of each check cell: ``{check index: [raw cell indices]}`` (raw cells only)."""
    found: dict[int, list[int]] = {}
    pending: list[int] = []
    for index, cell in enumerate(nb.cells):
        if is_right(cell):
            if cell.get("cell_type") != "raw":
                raise ValueError(f"{source_name or 'notebook'} cell {index}: a cell tagged {RIGHT_TAG!r} must be a raw "
                                 "cell; cachelab.kit.exercises_build.right_cell(source) makes one")
            pending.append(index)
        elif is_check(cell):
            found[index] = pending
            pending = []
    if pending:
        raise ValueError(f"{source_name or 'notebook'} cells {pending}: tagged {RIGHT_TAG!r} but no check cell follows")
    return found


def _python_source(source: str) -> str:
    """Cell source as plain Python (IPython magics turned into calls), for static analysis."""
    try:
        from IPython.core.inputtransformer2 import TransformerManager

        return TransformerManager().transform_cell(source)
    except Exception:  # noqa: BLE001 - IPython absent or confused: analyse the text as it is
        return source


def verify_exercises(path: Path, *, quick: bool = True, results_dir: Path | None = None,
                     figures_dir: Path | None = None, timeout: int | None = None,
                     whole: bool = False) -> list[CheckResult]:
    """Check that each check cell of ``path`` passes on the solution and fails on the placeholder and on
    every known-wrong answer.

    The notebook runs in a fresh kernel, in order, up to its last check cell (to its end with ``whole``,
    so that the verification is also a top-to-bottom run of the notebook). At each check cell:
    the check runs on the solution; then the solution's names are forgotten, the placeholder runs and the
    check again; then, for each known-wrong answer (raw cells tagged ``wrong``), the names are forgotten
    again, the wrong answer runs and the check again; then the solution runs again for the cells that follow.
    Raises :class:`NotebookBroken` when a cell that is not part of an exercise fails.
    """
    import nbformat

    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    groups = exercise_groups(nb)
    if not groups:
        return []
    last = len(nb.cells) if whole else groups[-1][1] + 1
    everything = [(i, c.source) for i, c in enumerate(nb.cells[:last]) if c.cell_type == "code"]
    return _run_exercises(path, nb, everything, quick, results_dir, figures_dir, timeout)


def _run_exercises(path, nb, plan, quick, results_dir, figures_dir, timeout) -> list[CheckResult]:
    import nbformat
    from nbclient.exceptions import CellExecutionError

    check_of = {check: solutions for solutions, check in exercise_groups(nb)}
    wrong_of = wrong_cells(nb, source_name=path.name)
    right_of = right_cells(nb, source_name=path.name)
    results = []

    def run(source: str, index: int) -> str:
        """Run ``source`` in the kernel; the error line, or '' when it ran clean."""
        cell = nbformat.v4.new_code_cell(source)
        try:
            client.execute_cell(cell, index)
        except CellExecutionError as exc:
            return _error_line(exc)
        return ""

    with notebook_client(copy.deepcopy(nb), path, quick=quick, results_dir=results_dir, figures_dir=figures_dir,
                         timeout=timeout) as client, client.setup_kernel():
        for index, source in plan:
            cell = nb.cells[index]
            if index not in check_of:
                error = run(source, index)
                if error:
                    kind = "solution" if is_solution(cell) else "cell"
                    raise NotebookBroken(f"{path.name}: {kind} {index} failed: {error}")
                continue
            solutions = [nb.cells[i].source for i in check_of[index]]
            result = CheckResult(path.stem, index, [n for s in solutions for n in defined_names(s)])
            result.solution_error = run(cell.source, index)
            # names the solution binds, unless a cell before it (not an exercise) binds them too, as
            # imports often do: the participant's copy has those from that earlier cell
            earlier = {n for i, c in enumerate(nb.cells[: check_of[index][0] if check_of[index] else index])
                       if c.cell_type == "code" and not is_solution(c) and not is_check(c)
                       for n in _safe_bound_names(c.source)}
            forget = sorted({n for s in solutions for n in bound_names(s)} - earlier)
            if forget:
                run("\n".join(f"globals().pop({n!r}, None)" for n in forget), index)
            for source in solutions:
                result.placeholder_broken = result.placeholder_broken or run(placeholder_source(source), index)
            result.placeholder_error = run(cell.source, index)
            for wrong_index in wrong_of.get(index, []):
                source = nb.cells[wrong_index].source
                lines = [ln.strip() for ln in source.splitlines() if ln.strip() and not ln.strip().startswith("#")]
                tried = WrongResult(wrong_index, (lines[0] if lines else "")[:80])
                missing = [n for s in solutions for n in defined_names(s) if n not in _safe_defined_names(source)]
                if missing:  # it stands for the participant's whole cell: the check would only see a NameError
                    tried.broken = (f"does not define {', '.join(missing)} (a known-wrong answer replaces the whole "
                                    "solution cell, as a participant's answer does)")
                    result.wrong.append(tried)
                    continue
                names = sorted(({n for s in solutions for n in bound_names(s)} | set(_safe_bound_names(source)))
                               - earlier)
                if names:
                    run("\n".join(f"globals().pop({n!r}, None)" for n in names), index)
                tried.broken = run(source, wrong_index)
                if not tried.broken:
                    tried.error = run(cell.source, index)
                result.wrong.append(tried)
            for right_index in right_of.get(index, []):
                source = nb.cells[right_index].source
                lines = [ln.strip() for ln in source.splitlines() if ln.strip() and not ln.strip().startswith("#")]
                tried = WrongResult(right_index, (lines[0] if lines else "")[:80])
                names = sorted(({n for s in solutions for n in bound_names(s)} | set(_safe_bound_names(source)))
                               - earlier)
                if names:
                    run("\n".join(f"globals().pop({n!r}, None)" for n in names), index)
                tried.broken = run(source, right_index)
                if not tried.broken:
                    tried.error = run(cell.source, index)
                result.right.append(tried)
            for source in solutions:  # back to the solution's state for the cells that follow
                error = run(source, index)
                if error:
                    raise NotebookBroken(f"{path.name}: rerunning a solution before cell {index} failed: {error}")
            results.append(result)
    return results


def verify_series(only: Sequence[str] | None = None, *, quick: bool = True, results_dir: Path | None = None,
                  progress=print) -> list[CheckResult]:
    """:func:`verify_exercises` over the numbered notebooks in order, sharing one results folder."""
    import tempfile

    out: list[CheckResult] = []
    with tempfile.TemporaryDirectory(prefix="cachelab-exercises-") as scratch:
        results_dir = results_dir or Path(scratch) / "results"
        figures_dir = Path(scratch) / "figures"
        for path in _sources(None, only):
            found = verify_exercises(path, quick=quick, results_dir=results_dir, figures_dir=figures_dir)
            for result in found:
                progress(result.describe())
            out += found
    return out


def main_summary(results: list[CheckResult]) -> int:
    """Print a closing line and return the exit code for ``python -m cachelab exercises --verify``."""
    bad = [r for r in results if not r.ok]
    print(f"\n{len(results) - len(bad)} passed, {len(bad)} failed: check cells against solutions, placeholders "
          f"and known-wrong answers")
    return 1 if bad else 0


__all__ = ["CheckResult", "NotebookBroken", "WrongResult", "build_exercises", "bound_names", "defined_names",
           "exercise_groups", "exercises_dir", "is_right", "is_wrong", "participant_copy", "placeholder_source",
           "render_copy", "right_cell", "right_cells", "stale_copies", "verify_exercises", "verify_series",
           "wrong_cell", "wrong_cells"]


def main(args) -> int:
    """``python -m cachelab exercises``: write the copies; ``--check`` only reports; ``--verify`` runs the checks."""
    if args.verify:
        return main_summary(verify_series(args.only, quick=not args.full))
    if args.check:
        stale = stale_copies()
        for line in stale:
            print(f"stale: {line}")
        print("exercises/ is up to date." if not stale else "Run `make exercises` and commit exercises/.")
        return 1 if stale else 0
    written = build_exercises(only=args.only)
    for path in written:
        print(f"wrote {path.relative_to(paths.project_root())}")
    print(f"{len(written)} participant cop{'y' if len(written) == 1 else 'ies'} changed in {exercises_dir()}"
          if written else f"Participant copies in {exercises_dir()} are up to date.")
    return 0


def add_parser(sub) -> None:
    """``python -m cachelab exercises``."""
    parser = sub.add_parser("exercises", help="write the participant copies (exercises/) from the solution cells")
    parser.add_argument("--only", nargs="*", help="notebook numbers or names, e.g. 01 02")
    parser.add_argument("--check", action="store_true", help="only report copies that are missing or out of date")
    parser.add_argument("--verify", action="store_true",
                        help="run the notebooks: each check cell must pass on the solution, fail on the placeholder "
                             "and on every known-wrong answer (raw cells tagged 'wrong')")
    parser.add_argument("--full", action="store_true", help="with --verify: full mode instead of quick mode")
    parser.set_defaults(func=main)
