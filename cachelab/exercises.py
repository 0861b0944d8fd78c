"""Check cells for the exercises: they say right, or wrong and why, in words a participant can use.

Conventions in the notebooks: a solution cell carries the cell tag ``solution``; the cell that checks it
carries the tag ``check`` and calls these functions; raw cells tagged ``wrong``, between the solution and
the check, hold known-wrong answers that ``make exercises --verify`` proves the check rejects. ``make
exercises`` turns the solution cells into placeholders for the participants' copies and leaves the wrong
answers out.

A check that fails raises :class:`NotYet`. In a notebook it shows as one line, the hint, not as a
traceback (IPython asks the exception for the lines to show, ``_render_traceback_``); the cell still
fails, so "Run all", nbclient and the tests stop there. A check that passes prints a line starting with
✅, and only then.

:class:`Prediction` is a predict-then-run question: the participant picks one of a few answers before
running the cells that measure it, and a wrong pick gets the feedback written for that pick (what the
misconception behind it gets wrong), then hints in tiers, one more with each wrong try.
"""

from __future__ import annotations

import contextlib
import math
import numbers
from collections.abc import Iterator, Mapping, Sequence

RIGHT = "\u2705"
NOT_YET = "\u274c"


class NotYet(AssertionError):
    """The answer is not right yet: the message says what to look at.

    An ``AssertionError``, so that a test or a script stops on it; in IPython it shows as its message
    alone, without the traceback of the checking code (which says nothing to a participant).
    """

    def _render_traceback_(self) -> list[str]:
        """What IPython shows instead of a traceback: the message, on one line per line of it."""
        return [f"{NOT_YET} {line}" if i == 0 else f"   {line}" for i, line in enumerate(str(self).splitlines())]


class Hints:
    """Hints in tiers, from a nudge to nearly the answer: each :meth:`next` gives the next one.

    The last tier repeats once every tier has been given. ``Hints`` can stand wherever a check takes a
    ``hint``: each failure of that check shows the next tier.
    """

    def __init__(self, tiers: Sequence[str]):
        if isinstance(tiers, str) or not tiers or not all(isinstance(t, str) and t.strip() for t in tiers):
            raise ValueError("Hints needs a list of one or more non-empty hints, from the gentlest to the plainest")
        self.tiers = list(tiers)
        self.given = 0

    def next(self) -> str:
        """The next hint, numbered (``Hint 2 of 3: ...``)."""
        index = min(self.given, len(self.tiers) - 1)
        self.given += 1
        return f"Hint {index + 1} of {len(self.tiers)}: {self.tiers[index]}"

    def __str__(self) -> str:  # a Hints given as a check's hint shows its next tier
        return self.next()


@contextlib.contextmanager
def checking(what: str = "your code") -> Iterator[None]:
    """Around a check cell's body: whatever the participant's code raises becomes one "Not yet" line.

    A placeholder that still raises ``NotImplementedError``, a ``...`` left in place, a name not defined yet,
    or any exception of the participant's own code: the check answers in one line that says what to do,
    never with a traceback. A :class:`NotYet` from the checks themselves passes through unchanged::

        with checking():
            check_equal(square(3), 9)
    """
    try:
        yield
    except NotYet:
        raise
    except NotImplementedError:
        raise NotYet("Not yet: write your code in the cell above: it still raises NotImplementedError "
                     "(the placeholder). Replace that line with your own code, run the cell, then this one.") from None
    except NameError as exc:
        raise NotYet(f"Not yet: {exc}. Run the cells above this one (and your own cell) first.") from None
    except TypeError as exc:
        if "ellipsis" in str(exc):
            raise NotYet("Not yet: a `...` is still in the cell above: replace it with your answer, run that "
                         "cell, then this one.") from None
        raise NotYet(f"Not yet: {what} raised TypeError: {exc}") from None
    except Exception as exc:  # noqa: BLE001 - the participant's code: any error is an answer to correct
        raise NotYet(f"Not yet: {what} raised {type(exc).__name__}: {exc}") from None


def _is_bool(value) -> bool:
    return type(value).__name__ in ("bool", "bool_")  # Python's and numpy's


def check(condition, hint: str | Hints, *, success: str = "Right!") -> None:
    """Pass with ``success`` printed, or raise :class:`NotYet` with ``hint`` (the next tier of a :class:`Hints`).

    A placeholder's ``...`` is not a true condition, although Python counts it as one.
    """
    if condition is Ellipsis or not condition:
        raise NotYet(f"Not yet: {hint}")
    print(f"{RIGHT} {success}")


def check_equal(actual, expected, hint: str | Hints = "", *, success: str = "Right!") -> None:
    """``actual == expected``, else a message showing both.

    A bool matches only a bool: ``1`` is not accepted for ``True``, nor ``0`` for ``False``.
    """
    try:
        same = _is_bool(actual) == _is_bool(expected) and bool(actual == expected)
    except (TypeError, ValueError):  # an array, or a value that cannot be compared
        same = False
    check(same, f"expected {expected!r}, got {actual!r}. {hint}".strip(), success=success)


def check_close(actual: float, expected: float, *, rel: float = 1e-6, abs_tol: float = 0.0, hint: str | Hints = "",
                success: str = "Right!") -> None:
    """``actual`` a real number (not a bool) within ``rel``/``abs_tol`` of ``expected``."""
    number = isinstance(actual, numbers.Real) and not _is_bool(actual)
    ok = number and math.isclose(actual, expected, rel_tol=rel, abs_tol=abs_tol)
    check(ok, f"expected about {expected!r}, got {actual!r}. {hint}".strip(), success=success)


class Prediction:
    """A multiple-choice prediction, made before the cells that measure the answer are run.

    ``choices`` maps a label (``"a"``) to its text; ``feedback`` maps each choice that can be wrong to
    what is wrong with the idea behind it (every choice, when the right one is only known from the run);
    ``hints`` come in tiers, one more with each wrong try; ``explanation`` is printed with the
    confirmation. The right answer is given either here (``answer=``) or to :meth:`check`, computed from
    the measurement, so that the cells a participant sees need not state it.

    >>> q = Prediction("Which wins?", {"a": "LRU", "b": "LFU"}, answer="b",
    ...                feedback={"a": "a scan pushes the hot keys out of an LRU"})
    >>> q.check("b")
    ✅ Right: b (LFU).
    """

    def __init__(self, question: str, choices: Mapping[str, str], *, feedback: Mapping[str, str],
                 answer: str | None = None, hints: Sequence[str] = (), explanation: str = ""):
        if not isinstance(question, str) or not question.strip():
            raise ValueError("a Prediction needs its question as a non-empty str")
        if not isinstance(choices, Mapping) or len(choices) < 2:
            raise ValueError("a Prediction needs at least two choices, as a dict like {'a': 'LRU', 'b': 'LFU'}")
        labels = [str(label).strip().lower() for label in choices]
        if len(set(labels)) != len(labels) or not all(labels):
            raise ValueError(f"the choices need distinct, non-empty labels, not {list(choices)}")
        self.question = question.strip()
        self.choices = {label: str(text) for label, text in zip(labels, choices.values(), strict=True)}
        self.feedback = {str(k).strip().lower(): str(v) for k, v in feedback.items()}
        unknown = sorted(set(self.feedback) - set(self.choices))
        if unknown:
            raise ValueError(f"feedback for {unknown}, which are not among the choices {sorted(self.choices)}")
        self.answer = None if answer is None else self._label(answer, "answer")
        could_be_wrong = [c for c in self.choices if c != self.answer]
        missing = [c for c in could_be_wrong if not self.feedback.get(c, "").strip()]
        if missing:
            raise ValueError(f"write the feedback for each choice that can be wrong: {missing} have none "
                             "(say what the idea behind that choice misses)")
        self.hints = Hints(hints) if hints else None
        self.explanation = explanation.strip()
        self.attempts = 0

    def _label(self, value, what: str) -> str:
        """The label of a choice, from its label or its exact text (any case); ValueError otherwise."""
        if isinstance(value, str):
            text = value.strip().lower()
            if text in self.choices:
                return text
            for label, choice in self.choices.items():
                if choice.strip().lower() == text:
                    return label
        raise ValueError(f"{what} must be one of {', '.join(repr(c) for c in self.choices)}, not {value!r}")

    def describe(self) -> str:
        lines = [self.question, ""]
        lines += [f"  {label}) {text}" for label, text in self.choices.items()]
        first = next(iter(self.choices))
        lines += ["", f'Write your prediction before you run the cells below, e.g. prediction = "{first}".']
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.describe()

    def _repr_markdown_(self) -> str:
        choices = "\n".join(f"- **{label}**) {text}" for label, text in self.choices.items())
        first = next(iter(self.choices))
        return (f"**Predict.** {self.question}\n\n{choices}\n\nWrite your prediction before you run the cells "
                f'below, e.g. `prediction = "{first}"`.')

    def hint(self) -> str:
        """Print the next tier of hints (and return it), without counting a try."""
        if self.hints is None:
            text = "No hints for this one: go with your reasoning, then run the cells and see."
        else:
            text = self.hints.next()
        print(text)
        return text

    def check(self, prediction, answer: str | None = None) -> None:
        """Confirm a right prediction, or raise :class:`NotYet` with the feedback for the one made.

        ``answer`` is the right label, computed from the run (when not given to the constructor).
        """
        right = self.answer if answer is None else self._label(answer, "answer")
        if right is None:
            raise ValueError("say which choice is right: Prediction(..., answer=...) or check(prediction, answer)")
        if self.answer is not None and answer is not None and right != self.answer:
            raise ValueError(f"the run says {right!r} but the question was written with answer {self.answer!r}")
        if prediction is Ellipsis or prediction is None:
            raise NotYet(f"Not yet: write your prediction first, one of {', '.join(repr(c) for c in self.choices)}.")
        if not isinstance(prediction, str):  # `prediction = c` without quotes: a variable of the notebook
            shown = repr(prediction)
            shown = shown if len(shown) <= 40 else shown[:37] + "..."
            first = next(iter(self.choices))
            raise NotYet(f"Not yet: your prediction is a {type(prediction).__name__} ({shown}), not a letter: write "
                         f"one of {', '.join(repr(c) for c in self.choices)} in quotes, e.g. prediction = \"{first}\" "
                         f"(without the quotes, Python reads {first} as a variable of the notebook).")
        try:
            label = self._label(prediction, "your prediction")
        except ValueError as exc:
            raise NotYet(f"Not yet: {exc}.") from None
        if label == right:
            why = f" {self.explanation}" if self.explanation else ""
            print(f"{RIGHT} Right: {label} ({self.choices[label]}).{why}")
            return
        self.attempts += 1
        lines = [f"Not yet: you predicted {label} ({self.choices[label]}). {self.feedback.get(label, '')}".rstrip()]
        if self.hints is not None:
            lines.append(self.hints.next())
        raise NotYet("\n".join(lines))


__all__ = ["Hints", "NotYet", "Prediction", "check", "check_close", "check_equal"]
