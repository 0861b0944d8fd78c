"""Check cells for the exercises: they say right, or wrong and why, in words a participant can use.

Conventions in the notebooks: a solution cell carries the cell tag ``solution``; the cell that checks it
carries the tag ``check`` and calls these functions. ``make exercises`` turns the solution cells into
placeholders for the participants' copies.
"""

from __future__ import annotations

import math


class NotYet(AssertionError):
    """The answer is not right yet: the message says what to look at."""


def check(condition: bool, hint: str, *, success: str = "Right!") -> None:
    """Pass with ``success`` printed, or raise :class:`NotYet` with ``hint``."""
    if not condition:
        raise NotYet(f"Not yet: {hint}")
    print(f"\u2705 {success}")


def check_equal(actual, expected, hint: str = "", *, success: str = "Right!") -> None:
    """``actual == expected``, else a message showing both."""
    check(actual == expected, f"expected {expected!r}, got {actual!r}. {hint}".strip(), success=success)


def check_close(actual: float, expected: float, *, rel: float = 1e-6, abs_tol: float = 0.0, hint: str = "",
                success: str = "Right!") -> None:
    """``actual`` within ``rel``/``abs_tol`` of ``expected``."""
    ok = isinstance(actual, int | float) and math.isclose(actual, expected, rel_tol=rel, abs_tol=abs_tol)
    check(ok, f"expected about {expected!r}, got {actual!r}. {hint}".strip(), success=success)
