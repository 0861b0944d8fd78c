"""Argument checks for the package's public functions: a clear error, raised at once, for a bad argument.

A wrong type raises ``TypeError`` and a value of the right type that makes no sense (a negative size, a
NaN duration, a port above 65535) raises ``ValueError``. Either way the message names the argument, says
what it takes and shows what it got, so that a typo in a notebook cell fails on the line that has it,
not three calls deeper with an error about something else (or, worse, with a silent wrong answer).
"""

from __future__ import annotations

import math
import numbers
import typing


def _shown(value) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def integer(name: str, value, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """``value`` as an ``int`` (NumPy integers accepted, ``bool`` refused) within ``[minimum, maximum]``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, not {type(value).__name__} {_shown(value)}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, not {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be at most {maximum}, not {value}")
    return value


def number(name: str, value, *, minimum: float | None = None, positive: bool = False,
           finite: bool = True) -> float:
    """``value`` as a ``float``: a real number, never NaN, finite unless ``finite=False``, and
    ``> 0`` with ``positive=True`` or ``>= minimum`` when given."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a number, not {type(value).__name__} {_shown(value)}")
    value = float(value)
    if math.isnan(value) or (finite and math.isinf(value)):
        raise ValueError(f"{name} must be a {'finite ' if finite else ''}number, not {value}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be positive, not {value:g}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be at least {minimum:g}, not {value:g}")
    return value


def text(name: str, value, *, empty: bool = False) -> str:
    """``value`` if it is a ``str`` (and not empty, unless ``empty=True``)."""
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, not {type(value).__name__} {_shown(value)}")
    if not empty and not value:
        raise ValueError(f"{name} must not be empty")
    return value


def port(name: str, value) -> int:
    """A TCP port number, 1 to 65535."""
    return integer(name, value, minimum=1, maximum=65535)


def node(name: str, value) -> tuple[str, int]:
    """A server address ``(host, port)``."""
    if not isinstance(value, tuple | list) or len(value) != 2:
        raise TypeError(f"{name} must be a (host, port) pair, not {_shown(value)}")
    return text(f"{name}'s host", value[0]), port(f"{name}'s port", value[1])


def instance(name: str, value, kind):
    """``value`` if it is an instance of ``kind`` (a class, a tuple of classes, or a union ``A | B``)."""
    if not isinstance(value, kind):
        kinds = kind if isinstance(kind, tuple) else typing.get_args(kind) or (kind,)
        names = " or ".join(getattr(k, "__name__", str(k)) for k in kinds)
        raise TypeError(f"{name} must be a {names}, not {type(value).__name__} {_shown(value)}")
    return value
