"""The one validation helper module: every user-facing check goes through these functions.

Each raises :class:`fedads.errors.InputError` with a message of the form
``"<where>: <what is wrong>; <what to do>"`` so the CLI can print it as one line.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from fedads.errors import InputError


def fail(where: str, problem: str, fix: str) -> InputError:
    """Build (not raise) an InputError with the house message format."""
    return InputError(f"{where}: {problem}; {fix}")


def check_in_range(
    where: str,
    name: str,
    value: float,
    low: float,
    high: float,
    *,
    low_inclusive: bool = True,
    high_inclusive: bool = True,
) -> float:
    """Check ``low <= value <= high`` (inclusivity configurable); return the value as float."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise fail(where, f"{name}={value!r} is not a number", f"give a number in [{low}, {high}]")
    ok_low = number >= low if low_inclusive else number > low
    ok_high = number <= high if high_inclusive else number < high
    if not (ok_low and ok_high) or number != number:  # NaN fails too
        lo = "[" if low_inclusive else "("
        hi = "]" if high_inclusive else ")"
        raise fail(where, f"{name}={value!r} is out of range", f"give a value in {lo}{low}, {high}{hi}")
    return number


def check_positive_int(where: str, name: str, value: Any, *, minimum: int = 1) -> int:
    """Check that ``value`` is an integer >= ``minimum``; return it as int."""
    if isinstance(value, bool) or not isinstance(value, int | float) or int(value) != value:
        raise fail(where, f"{name}={value!r} is not an integer", f"give an integer >= {minimum}")
    if int(value) < minimum:
        raise fail(where, f"{name}={value!r} is too small", f"give an integer >= {minimum}")
    return int(value)


def check_choice(where: str, name: str, value: Any, choices: Iterable[Any]) -> Any:
    """Check that ``value`` is one of ``choices``."""
    options = list(choices)
    if value not in options:
        raise fail(where, f"{name}={value!r} is not supported", f"use one of {options}")
    return value
