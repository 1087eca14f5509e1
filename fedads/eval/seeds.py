"""Combine results of runs that differ only by seed (world, split, training, bootstrap).

A bootstrap interval covers the sampling noise of one held-out set; seeds add the noise of the
world and of training. :func:`combine_seeds` reports, per quantity, the mean over seeds and a
Student-t 95% interval ``mean +/- t_{0.975, s-1} * sd / sqrt(s)`` over the per-seed points
(``s`` = seeds with a finite value).
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from fedads._validation import check_in_range, fail, warn
from fedads.errors import DataWarning
from fedads.eval._json import to_jsonable


@dataclass(frozen=True, eq=False)
class SeedSummary:
    """Across-seed summary.

    Attributes:
        table: per-seed points, index = seed, one column per quantity (NaN = undefined).
        mean: per quantity, mean over seeds with a finite value.
        ci_low, ci_high: per quantity, t-interval bounds (NaN with fewer than 2 finite seeds).
        n_seeds: per quantity, seeds with a finite value.
        confidence: interval level (0.95 by default).
    """

    table: pd.DataFrame
    mean: pd.Series
    ci_low: pd.Series
    ci_high: pd.Series
    n_seeds: pd.Series
    confidence: float

    def to_frame(self) -> pd.DataFrame:
        """One row per quantity: mean, ci_low, ci_high, n_seeds."""
        return pd.DataFrame(
            {
                "mean": self.mean,
                "ci_low": self.ci_low,
                "ci_high": self.ci_high,
                "n_seeds": self.n_seeds,
            }
        )

    def _repr_html_(self) -> str:
        """Jupyter display: mean and interval per quantity (fedads.report.html)."""
        from fedads.report.html import seed_summary_html  # report layer, loaded only to display

        return seed_summary_html(self)

    def to_dict(self) -> dict[str, Any]:
        """Strict-JSON-ready (NaN -> None): ``{quantity: {mean, ci95, n_seeds}}`` and per seed."""
        summary = {
            name: {
                "mean": float(self.mean[name]),
                "ci95": [float(self.ci_low[name]), float(self.ci_high[name])],
                "n_seeds": int(self.n_seeds[name]),
            }
            for name in self.table.columns
        }
        per_seed = [
            {"seed": _plain(seed), **{c: float(v) for c, v in row.items()}}
            for seed, row in self.table.iterrows()
        ]
        return to_jsonable(
            {"confidence": self.confidence, "summary": summary, "per_seed": per_seed}
        )


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _points(where: str, seed: Hashable, result: Any) -> dict[str, float]:
    if hasattr(result, "headline") and callable(result.headline):
        result = result.headline()
    if isinstance(result, Mapping):
        points = {}
        for name, value in result.items():
            try:
                points[str(name)] = math.nan if value is None else float(value)
            except (TypeError, ValueError):
                raise fail(
                    where,
                    f"seed {seed!r}: quantity {name!r}={value!r} is not a number",
                    "give numbers (or None for undefined)",
                ) from None
        return points
    try:
        return {"value": math.nan if result is None else float(result)}
    except (TypeError, ValueError):
        raise fail(
            where,
            f"seed {seed!r}: result of type {type(result).__name__} is not supported",
            "give a number, a dict of numbers, or an Evaluation",
        ) from None


def combine_seeds(
    results: Mapping[Hashable, Any] | Sequence[Any], *, confidence: float = 0.95
) -> SeedSummary:
    """Mean and t-interval across seeds, plus the per-seed table.

    Args:
        results: per seed, a number, a dict ``quantity -> number``, or an object with a
            ``headline()`` method returning such a dict (an :class:`~fedads.eval.Evaluation`).
            A mapping is keyed by seed; a sequence is keyed by position.
        confidence: interval level in (0, 1).

    Returns:
        :class:`SeedSummary`. Quantities with fewer than two finite per-seed values get a NaN
        interval (and a warning); NaN per-seed values are left out of that quantity.
    """
    where = "combine_seeds"
    confidence = check_in_range(
        where, "confidence", confidence, 0.0, 1.0, low_inclusive=False, high_inclusive=False
    )
    if isinstance(results, Mapping):
        items = list(results.items())
    elif isinstance(results, Sequence) and not isinstance(results, str | bytes):
        items = list(enumerate(results))
    else:
        raise fail(where, f"results of type {type(results).__name__}", "give a dict or a list")
    if not items:
        raise fail(where, "no results given", "give one result per seed")
    rows = {seed: _points(where, seed, result) for seed, result in items}
    table = pd.DataFrame.from_dict(rows, orient="index").astype(np.float64)
    table.index.name = "seed"
    means, lows, highs, counts = {}, {}, {}, {}
    for name in table.columns:
        values = table[name].to_numpy()
        values = values[np.isfinite(values)]
        s = values.size
        counts[name] = s
        means[name] = float(values.mean()) if s else math.nan
        if s >= 2:
            half = stats.t.ppf(0.5 + confidence / 2, s - 1) * values.std(ddof=1) / math.sqrt(s)
            lows[name], highs[name] = means[name] - half, means[name] + half
        else:
            warn(
                where,
                f"{name!r} has {s} finite seed value(s)",
                "no interval (it needs at least 2)",
                category=DataWarning,
                stacklevel=3,
            )
            lows[name] = highs[name] = math.nan
    columns = list(table.columns)
    return SeedSummary(
        table=table,
        mean=pd.Series(means, dtype=np.float64).reindex(columns),
        ci_low=pd.Series(lows, dtype=np.float64).reindex(columns),
        ci_high=pd.Series(highs, dtype=np.float64).reindex(columns),
        n_seeds=pd.Series(counts, dtype=np.int64).reindex(columns),
        confidence=confidence,
    )
