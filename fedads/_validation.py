"""The one validation helper module: every user-facing check goes through these functions.

Each raises :class:`fedads.errors.InputError` with a message of the form
``"<where>: <what is wrong>; <what to do>"`` so the CLI can print it as one line.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

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
        raise fail(
            where, f"{name}={value!r} is not a number", f"give a number in [{low}, {high}]"
        ) from None
    ok_low = number >= low if low_inclusive else number > low
    ok_high = number <= high if high_inclusive else number < high
    if not (ok_low and ok_high) or number != number:  # NaN fails too
        lo = "[" if low_inclusive else "("
        hi = "]" if high_inclusive else ")"
        raise fail(
            where, f"{name}={value!r} is out of range", f"give a value in {lo}{low}, {high}{hi}"
        )
    return number


def check_positive_int(where: str, name: str, value: Any, *, minimum: int = 1) -> int:
    """Check that ``value`` is an integer >= ``minimum``; return it as int."""
    if (
        isinstance(value, bool | np.bool_)
        or not isinstance(value, int | float | np.integer | np.floating)
        or int(value) != value
    ):
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


def warn(
    where: str,
    problem: str,
    note: str,
    *,
    category: type[Warning] | None = None,
    stacklevel: int = 3,
) -> None:
    """Issue a warning (default :class:`fedads.errors.DataWarning`) in the house format.

    ``stacklevel`` counts from the caller of this function (2 = the caller's caller).
    """
    import warnings

    from fedads.errors import DataWarning

    warnings.warn(f"{where}: {problem}; {note}", category or DataWarning, stacklevel=stacklevel)


def examples(values: Iterable[Any], limit: int = 5) -> str:
    """Format the first ``limit`` values as ``['a', 'b', ...] (+3 more)`` for a message."""
    items = list(values)
    shown = ", ".join(repr(v.item() if hasattr(v, "item") else v) for v in items[:limit])
    more = f" (+{len(items) - limit} more)" if len(items) > limit else ""
    return f"[{shown}]{more}"


def check_columns_present(
    where: str, role: str, names: Iterable[str], available: Iterable[str]
) -> None:
    """Check that every column in ``names`` is in ``available``; the message lists what exists."""
    present = list(available)
    missing = [name for name in names if name not in present]
    if missing:
        noun = "column" if len(missing) == 1 else "columns"
        raise fail(
            where,
            f"{role} {noun} {examples(missing, 10)} not found",
            f"use one of the columns that exist: {examples(present, 20)}",
        )


def check_positions(
    where: str,
    name: str,
    positions: Any,
    n_rows: int | None = None,
    *,
    allow_empty: bool = False,
    unique: bool = True,
) -> np.ndarray:
    """Check a 1-D array of integer row positions in ``[0, n_rows)`` (distinct if ``unique``);
    return it as int64 (no copy when it already is)."""
    array = np.asarray(positions)
    if array.ndim != 1 or not (np.issubdtype(array.dtype, np.integer) or array.size == 0):
        raise fail(
            where,
            f"{name} has shape {array.shape} and dtype {array.dtype}",
            "pass a 1-D integer array of row positions",
        )
    array = array.astype(np.int64, copy=False)
    if array.size == 0:
        if allow_empty:
            return array
        raise fail(where, f"{name} is empty", "pass at least one row position")
    if array.min() < 0 or (n_rows is not None and array.max() >= n_rows):
        raise fail(
            where,
            f"{name} has positions out of range [0, {n_rows}) (min {array.min()}, "
            f"max {array.max()})",
            "pass positions into this table / the aligned order",
        )
    if unique and np.unique(array).size != array.size:
        raise fail(where, f"{name} has repeated positions", "pass each row position at most once")
    return array


def check_row_indices(where: str, rows: Any, n_rows: int) -> np.ndarray:
    """Row indices into a table (repeats allowed, may be empty); see :func:`check_positions`."""
    return check_positions(where, "rows", rows, n_rows, allow_empty=True, unique=False)


LARGE_MAGNITUDE = 1e12
"""Numeric feature values with ``|x|`` above this get a warning (likely a unit or parse error)."""
FLOAT32_MAX = float(np.finfo(np.float32).max)
"""Features are stored as float32 for training: larger magnitudes would become infinite."""


def check_magnitudes(
    where: str,
    columns: dict[str, np.ndarray],
    *,
    warn_above: float = LARGE_MAGNITUDE,
    stacklevel: int = 4,
) -> None:
    """Refuse numeric columns with values beyond float32 range; warn (``DataWarning``) naming
    the columns with ``|x| > warn_above``.

    Args:
        columns: column name -> ``float64 [n]`` values (NaN = missing, ignored).
        stacklevel: as in :func:`warn`, counted from the caller of this function.
    """
    large: list[str] = []
    for name, values in columns.items():
        magnitude = np.abs(np.asarray(values, dtype=np.float64))
        biggest = float(np.nanmax(magnitude)) if np.isfinite(magnitude).any() else 0.0
        if biggest > FLOAT32_MAX:
            count = int(np.count_nonzero(magnitude > FLOAT32_MAX))
            raise fail(
                where,
                f"column {name!r} has {count} values with |x| > {FLOAT32_MAX:.3g} (largest "
                f"{biggest:.3g}), which become infinite in the float32 features",
                "rescale the column (e.g. log or other units) or leave such values missing",
            )
        if biggest > warn_above:
            large.append(f"{name!r} (max |x| {biggest:.3g})")
    if large:
        warn(
            where,
            f"numeric feature columns with absurd magnitudes (|x| > {warn_above:g}): "
            f"{', '.join(large[:10])}{' ...' if len(large) > 10 else ''}",
            "they are kept (standardised for training), but check their units or parsing",
            stacklevel=stacklevel,
        )
