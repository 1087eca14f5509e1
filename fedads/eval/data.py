"""The evaluation input: one row per held-out aligned user, validated once.

:class:`EvalData` holds plain numpy arrays (no DataFrame, no model object). Every check raises
:class:`fedads.errors.InputError` through :mod:`fedads._validation`, with the house message
format ``"<where>: <problem>; <fix>"``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np
import pandas as pd

from fedads._validation import fail

MODELS: tuple[str, ...] = ("federated", "ecommerce_only", "social_only", "centralized")
"""The four models fedads compares, in report order."""

POOLS: tuple[str, ...] = ("all", "prospecting")
"""Targeting pools: every held-out user, or only users who are not existing customers."""

SEGMENTS: tuple[str, ...] = ("existing", "new")
"""User segments by the brand flag ``is_existing_customer`` (1 = existing, 0 = new)."""

RESERVED_COLUMNS: frozenset[str] = frozenset(
    {"key", "label", "is_existing_customer", "y0", "y1", "p0", "p1"}
)
"""Names a model may not take (they are columns of ``scores.csv`` or of the input frame)."""

_MODEL_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


def _preview(values: np.ndarray, limit: int = 3) -> str:
    """A few offending values, for an error message."""
    shown = [repr(v.item() if hasattr(v, "item") else v) for v in values[:limit]]
    return ", ".join(shown)


def as_1d(where: str, name: str, values: Any, n: int | None = None) -> np.ndarray:
    """Return ``values`` as a 1-D numpy array, checking its length against ``n`` if given."""
    try:
        array = np.asarray(values)
    except Exception as exc:  # pragma: no cover - numpy accepts nearly anything
        raise fail(where, f"{name} cannot be read as an array ({exc})", "pass a 1-D array") from exc
    if array.ndim != 1:
        raise fail(
            where,
            f"{name} has shape {array.shape}",
            "pass a 1-D array with one value per held-out user",
        )
    if n is not None and array.shape[0] != n:
        raise fail(
            where,
            f"{name} has {array.shape[0]} rows but label has {n}",
            "give one value per held-out user, in the same order as label",
        )
    return array


def as_binary(where: str, name: str, values: Any, n: int | None = None) -> np.ndarray:
    """Return ``values`` as an int8 array of 0/1; anything else (2, -1, NaN, 'yes') fails."""
    array = as_1d(where, name, values, n)
    if array.dtype == bool:
        return array.astype(np.int8)
    if array.dtype.kind not in "iuf":
        try:
            array = array.astype(np.float64)
        except (TypeError, ValueError):
            bad = array[: min(3, array.shape[0])]
            raise fail(
                where,
                f"{name} is not numeric (e.g. {_preview(bad)})",
                "give 0/1 integers",
            ) from None
    bad_mask = ~np.isin(array, (0, 1))
    if bad_mask.any():
        raise fail(
            where,
            f"{name} has {int(bad_mask.sum())} values other than 0/1 "
            f"(e.g. {_preview(array[bad_mask])})",
            "give 0/1 integers (missing values are not allowed)",
        )
    return array.astype(np.int8)


def as_probability(where: str, name: str, values: Any, n: int | None = None) -> np.ndarray:
    """Return ``values`` as float64 probabilities in [0, 1]; NaN, inf or outside values fail."""
    array = as_1d(where, name, values, n)
    try:
        array = array.astype(np.float64)
    except (TypeError, ValueError):
        raise fail(
            where,
            f"{name} is not numeric (e.g. {_preview(array)})",
            "give predicted conversion probabilities as floats",
        ) from None
    finite = np.isfinite(array)
    if not finite.all():
        raise fail(
            where,
            f"{name} has {int((~finite).sum())} non-finite values "
            f"(e.g. {_preview(array[~finite])})",
            "give a finite predicted probability for every user",
        )
    outside = (array < 0.0) | (array > 1.0)
    if outside.any():
        raise fail(
            where,
            f"{name} has {int(outside.sum())} values outside [0, 1] "
            f"(e.g. {_preview(array[outside])})",
            "give predicted conversion probabilities (apply a sigmoid to logits)",
        )
    return array


def check_model_name(where: str, name: Any) -> str:
    """Check a model name: an identifier that is not a reserved column name."""
    if not isinstance(name, str) or not _MODEL_NAME.match(name):
        raise fail(
            where,
            f"model name {name!r} is not an identifier",
            f"use letters, digits and '_' starting with a letter, e.g. one of {list(MODELS)}",
        )
    if name in RESERVED_COLUMNS:
        raise fail(
            where,
            f"model name {name!r} is a reserved column name",
            f"rename the model; reserved: {sorted(RESERVED_COLUMNS)}",
        )
    return name


def _readonly(array: np.ndarray) -> np.ndarray:
    array = np.array(array, copy=True)
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class EvalData:
    """Held-out aligned users, one row each, validated on construction.

    Attributes:
        label: ``[n]`` int8, observed conversion (0/1); in the synthetic world this is Y(1) in a
            randomized, untargeted exposure campaign.
        is_existing_customer: ``[n]`` int8, brand flag (1 = existing customer, 0 = new).
        scores: model name -> ``[n]`` float64 predicted conversion probability in [0, 1].
            Models are kept in the canonical order (:data:`MODELS` first, then others as given).
        y0, y1: optional ``[n]`` int8 potential outcomes without / with exposure (synthetic worlds
            only); give both or neither.
        keys: optional ``[n]`` e-commerce join keys (unique), written to ``scores.csv``.
        p0, p1: optional ``[n]`` float64 true conversion probabilities without / with exposure
            (synthetic worlds only, from the truth table after scoring); give both or neither.
            They give the *expected* counts (``sum p1`` over the selected new customers), free
            of the conversion noise of one campaign.
        where: name used in error messages.

    Raises:
        InputError: unequal lengths, non-binary labels/flags/outcomes, non-finite or
            out-of-range scores, no model, no positive label, duplicate keys.
    """

    label: np.ndarray
    is_existing_customer: np.ndarray
    scores: Mapping[str, np.ndarray]
    y0: np.ndarray | None = None
    y1: np.ndarray | None = None
    keys: np.ndarray | None = None
    p0: np.ndarray | None = None
    p1: np.ndarray | None = None
    where: str = field(default="EvalData", repr=False)

    def __post_init__(self) -> None:
        where = self.where
        label = as_binary(where, "label", self.label)
        n = int(label.shape[0])
        if n == 0:
            raise fail(where, "label is empty", "give at least one held-out user")
        existing = as_binary(where, "is_existing_customer", self.is_existing_customer, n)
        if not isinstance(self.scores, Mapping) or len(self.scores) == 0:
            raise fail(
                where,
                "no model scores given",
                f"pass scores as a dict model -> array, e.g. {{'federated': p}}; models: "
                f"{list(MODELS)}",
            )
        checked: dict[str, np.ndarray] = {}
        for name, values in self.scores.items():
            check_model_name(where, name)
            checked[name] = _readonly(as_probability(where, f"score {name!r}", values, n))
        ordered = {m: checked[m] for m in MODELS if m in checked}
        ordered.update({m: v for m, v in checked.items() if m not in ordered})
        if int(label.sum()) == 0:
            raise fail(
                where,
                f"label has no positive (0 conversions among {n} users)",
                "evaluate on a held-out set with at least one conversion",
            )
        if (self.y0 is None) != (self.y1 is None):
            raise fail(
                where,
                "only one of y0, y1 is given",
                "give both potential outcomes (synthetic worlds) or neither",
            )
        y0 = y1 = None
        if self.y0 is not None:
            y0 = _readonly(as_binary(where, "y0", self.y0, n))
            y1 = _readonly(as_binary(where, "y1", self.y1, n))
        p0, p1 = _true_probabilities(where, self.p0, self.p1, n)
        keys = None
        if self.keys is not None:
            keys = as_1d(where, "keys", self.keys, n)
            if pd.isna(keys).any():
                raise fail(where, "keys has missing values", "give a key for every user")
            if len(pd.unique(keys)) != n:
                raise fail(
                    where,
                    "keys has duplicate values",
                    "give one row per held-out user (deduplicate the keys)",
                )
            keys = _readonly(keys)
        object.__setattr__(self, "label", _readonly(label))
        object.__setattr__(self, "is_existing_customer", _readonly(existing))
        object.__setattr__(self, "scores", MappingProxyType(ordered))
        object.__setattr__(self, "y0", y0)
        object.__setattr__(self, "y1", y1)
        object.__setattr__(self, "keys", keys)
        object.__setattr__(self, "p0", p0)
        object.__setattr__(self, "p1", p1)

    @property
    def n(self) -> int:
        """Number of held-out users."""
        return int(self.label.shape[0])

    @property
    def models(self) -> tuple[str, ...]:
        """Model names, canonical order."""
        return tuple(self.scores)

    @property
    def has_potential_outcomes(self) -> bool:
        """True when ``y0`` and ``y1`` are present."""
        return self.y0 is not None

    @property
    def has_true_probabilities(self) -> bool:
        """True when ``p0`` and ``p1`` (a synthetic world's true probabilities) are present."""
        return self.p1 is not None

    @property
    def expected_new_conversions(self) -> np.ndarray | None:
        """``[n]`` float64 ``p1 (1 - E)``: expected new-customer conversion, or None."""
        if self.p1 is None:
            return None
        return self.p1 * self.is_new

    @property
    def expected_uplift_new(self) -> np.ndarray | None:
        """``[n]`` float64 ``(p1 - p0)(1 - E)``: expected incremental new conversion, or None."""
        if self.p0 is None or self.p1 is None:
            return None
        return (self.p1 - self.p0) * self.is_new

    @property
    def is_new(self) -> np.ndarray:
        """``[n]`` bool, True for users who are not existing customers."""
        return self.is_existing_customer == 0

    @property
    def new_conversions(self) -> np.ndarray:
        """``[n]`` int8, 1 for a new-customer converter (label 1 and not an existing customer)."""
        return (self.label * (1 - self.is_existing_customer)).astype(np.int8)

    @property
    def uplift(self) -> np.ndarray | None:
        """``[n]`` int8, ``y1 - y0`` in {-1, 0, 1}, or None without potential outcomes."""
        if self.y0 is None or self.y1 is None:
            return None
        return (self.y1.astype(np.int8) - self.y0.astype(np.int8)).astype(np.int8)

    def pool_mask(self, pool: str) -> np.ndarray:
        """``[n]`` bool, the users eligible in ``pool`` (``all`` or ``prospecting``)."""
        if pool == "all":
            return np.ones(self.n, dtype=bool)
        if pool == "prospecting":
            return self.is_new
        raise fail(self.where, f"pool={pool!r} is not supported", f"use one of {list(POOLS)}")

    def segment_mask(self, segment: str) -> np.ndarray:
        """``[n]`` bool for ``overall``, ``existing`` or ``new``."""
        if segment == "overall":
            return np.ones(self.n, dtype=bool)
        if segment == "existing":
            return self.is_existing_customer == 1
        if segment == "new":
            return self.is_new
        raise fail(
            self.where,
            f"segment={segment!r} is not supported",
            "use one of ['overall', 'existing', 'new']",
        )

    def summary(self) -> dict[str, int | bool]:
        """Counts describing the held-out set (users, positives, segments)."""
        out: dict[str, int | bool] = {
            "test_users": self.n,
            "test_existing_customers": int(self.is_existing_customer.sum()),
            "test_new_users": int(self.is_new.sum()),
            "test_conversions": int(self.label.sum()),
            "test_new_customer_conversions": int(self.new_conversions.sum()),
            "has_potential_outcomes": self.has_potential_outcomes,
        }
        if self.uplift is not None:
            out["test_incremental_conversions"] = int(self.uplift.sum())
            out["test_incremental_new_customer_conversions"] = int(
                (self.uplift * self.is_new).sum()
            )
        expected = self.expected_new_conversions
        uplift = self.expected_uplift_new
        if expected is not None and uplift is not None:
            out["test_expected_new_customer_conversions"] = float(expected.sum())
            out["test_expected_incremental_new_customer_conversions"] = float(uplift.sum())
        return out

    def to_frame(self, key_column: str = "key") -> pd.DataFrame:
        """One row per user: key (if any), label, is_existing_customer, y0/y1 (if any), scores.

        Score columns are named by the model (``federated``, ...), as in ``scores.csv``.
        """
        columns: dict[str, np.ndarray] = {}
        if self.keys is not None:
            columns[key_column] = self.keys
        columns["label"] = self.label
        columns["is_existing_customer"] = self.is_existing_customer
        if self.y0 is not None and self.y1 is not None:
            columns["y0"] = self.y0
            columns["y1"] = self.y1
        if self.p0 is not None and self.p1 is not None:
            columns["p0"] = self.p0
            columns["p1"] = self.p1
        columns.update(self.scores)
        return pd.DataFrame(columns)

    @classmethod
    def from_frame(
        cls,
        frame: pd.DataFrame,
        *,
        key_column: str | None = None,
        label: str = "label",
        existing: str = "is_existing_customer",
        score_prefix: str = "score_",
        models: Sequence[str] | None = None,
        y0: str = "y0",
        y1: str = "y1",
        p0: str = "p0",
        p1: str = "p1",
        where: str = "EvalData.from_frame",
    ) -> EvalData:
        """Build from a DataFrame with ``label``, ``is_existing_customer``, ``score_<model>``.

        Args:
            frame: one row per held-out aligned user.
            key_column: column holding the e-commerce key, or None for no key.
            label, existing: column names of the label and the brand flag.
            score_prefix: score columns are ``score_prefix + model``; with ``models=None``
                every column starting with the (non-empty) prefix is a model.
            models: model names to read; required when ``score_prefix`` is empty.
            y0, y1: potential-outcome columns, read when both are present.
            p0, p1: true-probability columns, read when both are present.
        """
        if not isinstance(frame, pd.DataFrame):
            raise fail(where, f"expected a DataFrame, got {type(frame).__name__}", "pass one")
        for column in (label, existing) + ((key_column,) if key_column else ()):
            if column not in frame.columns:
                raise fail(
                    where,
                    f"column {column!r} is missing (columns: {list(frame.columns)})",
                    f"add {column!r} or pass its name",
                )
        if models is None:
            if not score_prefix:
                raise fail(where, "no score_prefix and no models", "pass models=[...]")
            prefixed = [str(c) for c in frame.columns if str(c).startswith(score_prefix)]
            names = [c[len(score_prefix) :] for c in prefixed]
        else:
            names = list(models)
        scores = {}
        for name in names:
            column = f"{score_prefix}{name}"
            if column not in frame.columns:
                raise fail(
                    where,
                    f"score column {column!r} is missing (columns: {list(frame.columns)})",
                    f"add it or drop model {name!r}",
                )
            scores[name] = frame[column].to_numpy()
        has_y = y0 in frame.columns and y1 in frame.columns
        has_p = p0 in frame.columns and p1 in frame.columns
        return cls(
            label=frame[label].to_numpy(),
            is_existing_customer=frame[existing].to_numpy(),
            scores=scores,
            y0=frame[y0].to_numpy() if has_y else None,
            y1=frame[y1].to_numpy() if has_y else None,
            keys=frame[key_column].to_numpy() if key_column else None,
            p0=frame[p0].to_numpy() if has_p else None,
            p1=frame[p1].to_numpy() if has_p else None,
            where=where,
        )


def _true_probabilities(
    where: str, p0: Any, p1: Any, n: int
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Validated read-only ``(p0, p1)`` (both or neither)."""
    if (p0 is None) != (p1 is None):
        raise fail(
            where,
            "only one of p0, p1 is given",
            "give both true probabilities (synthetic worlds) or neither",
        )
    if p0 is None:
        return None, None
    return (
        _readonly(as_probability(where, "p0", p0, n)),
        _readonly(as_probability(where, "p1", p1, n)),
    )
