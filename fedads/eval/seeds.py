"""Combine results of runs that differ only by seed (world, split, training, bootstrap).

A bootstrap interval covers the sampling noise of one held-out set (the *within-seed*
variance); seeds add the noise of the world and of training (the *between-seed* variance).
:func:`combine_seeds` reports, per quantity, the mean over the ``s`` seeds with a finite value
and a 95% interval that keeps both:

``mean +/- t_{0.975, s-1} * sqrt(max(sd^2, w^2) / s)``

where ``sd`` is the standard deviation of the per-seed points (ddof = 1) and ``w^2`` the mean
of the per-seed within-seed variances (each from that seed's bootstrap interval, see
:meth:`fedads.eval.Evaluation.headline_within_se`). Why: the per-seed points are independent,
so ``sd^2`` already estimates ``between + within`` variance; but with 10 seeds it is itself
noisy (relative SE ~ 24%) and can fall far below the within-seed variance that every seed's
bootstrap measures, which makes the plain t-interval too narrow exactly when it looks most
convincing. Flooring the variance at ``w^2`` is the "ad hoc variance correction" of the
Hartung-Knapp random-effects interval (Knapp & Hartung 2003; Roever, Knapp & Friede 2015,
BMC Med Res Methodol 15:99): the interval is never narrower than the within-seed noise alone
implies, and equals the t-interval when seeds vary more than that. ``benchmarks/
interval_coverage.py`` measures the coverage of both on a known-truth simulation. Without
within-seed variances (plain numbers) the plain t-interval ``mean +/- t * sd / sqrt(s)`` is
reported, as before.
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
        ci_low, ci_high: per quantity, interval bounds (see the module docstring; NaN with
            fewer than 2 finite seeds).
        n_seeds: per quantity, seeds with a finite value.
        confidence: interval level (0.95 by default).
        between_sd: per quantity, SD of the per-seed points (ddof = 1).
        within_se: per quantity, root mean within-seed variance (NaN when not given).
        t_low, t_high: the plain between-seed t-interval, for comparison.
        method: per quantity, ``"t"`` (no within-seed variance known) or ``"t+within"``.
    """

    table: pd.DataFrame
    mean: pd.Series
    ci_low: pd.Series
    ci_high: pd.Series
    n_seeds: pd.Series
    confidence: float
    between_sd: pd.Series | None = None
    within_se: pd.Series | None = None
    t_low: pd.Series | None = None
    t_high: pd.Series | None = None
    method: pd.Series | None = None

    def to_frame(self) -> pd.DataFrame:
        """One row per quantity: mean, ci_low, ci_high, n_seeds (+ the variance parts)."""
        columns = {
            "mean": self.mean,
            "ci_low": self.ci_low,
            "ci_high": self.ci_high,
            "n_seeds": self.n_seeds,
        }
        for name in ("between_sd", "within_se", "t_low", "t_high", "method"):
            if getattr(self, name) is not None:
                columns[name] = getattr(self, name)
        return pd.DataFrame(columns)

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
                **self._variance_parts(name),
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

    def _variance_parts(self, name: str) -> dict[str, Any]:
        if self.method is None:
            return {}
        assert self.between_sd is not None and self.within_se is not None
        assert self.t_low is not None and self.t_high is not None
        return {
            "between_sd": float(self.between_sd[name]),
            "within_se": float(self.within_se[name]),
            "t_ci95": [float(self.t_low[name]), float(self.t_high[name])],
            "method": str(self.method[name]),
        }


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


def _within(where: str, seed: Hashable, result: Any, given: Any) -> dict[str, float]:
    """Within-seed standard errors of one seed: given, or from ``headline_within_se()``."""
    if given is None and hasattr(result, "headline_within_se"):
        given = result.headline_within_se()
    if given is None:
        return {}
    return _points(where, seed, given)


def combine_seeds(
    results: Mapping[Hashable, Any] | Sequence[Any],
    *,
    confidence: float = 0.95,
    within_se: Mapping[Hashable, Any] | Sequence[Any] | None = None,
) -> SeedSummary:
    """Mean and an interval that keeps between- and within-seed variance, per quantity.

    Args:
        results: per seed, a number, a dict ``quantity -> number``, or an object with a
            ``headline()`` method returning such a dict (an :class:`~fedads.eval.Evaluation`,
            whose ``headline_within_se()`` then gives the within-seed standard errors of its
            lifts). A mapping is keyed by seed; a sequence is keyed by position.
        confidence: interval level in (0, 1).
        within_se: optional per-seed within-seed standard errors, shaped like ``results`` (a
            number or a dict ``quantity -> SE`` per seed); overrides ``headline_within_se()``.

    Returns:
        :class:`SeedSummary`. Quantities with fewer than two finite per-seed values get a NaN
        interval (and a warning); NaN per-seed values are left out of that quantity. A
        quantity with known within-seed SEs gets ``mean +/- t * sqrt(max(sd^2, w^2) / s)``
        (``method = "t+within"``), otherwise the plain t-interval (``method = "t"``).
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
    given = _given_within(where, items, within_se)
    ses = {
        seed: _within(where, seed, result, given.get(seed) if given is not None else None)
        for seed, result in items
    }
    se_table = pd.DataFrame.from_dict(ses, orient="index").astype(np.float64)
    se_table = se_table.reindex(index=table.index, columns=table.columns)
    means, lows, highs, counts = {}, {}, {}, {}
    between, within, t_lows, t_highs, methods = {}, {}, {}, {}, {}
    for name in table.columns:
        finite = np.isfinite(table[name].to_numpy())
        values = table[name].to_numpy()[finite]
        errors = se_table[name].to_numpy()[finite]
        errors = errors[np.isfinite(errors)]
        s = values.size
        counts[name] = s
        means[name] = float(values.mean()) if s else math.nan
        between[name] = float(values.std(ddof=1)) if s >= 2 else math.nan
        # Root mean within-seed variance over the seeds whose SE is known.
        within[name] = float(np.sqrt(np.mean(errors**2))) if errors.size else math.nan
        methods[name] = "t+within" if errors.size else "t"
        if s >= 2:
            t = stats.t.ppf(0.5 + confidence / 2, s - 1)
            half_t = t * between[name] / math.sqrt(s)
            t_lows[name], t_highs[name] = means[name] - half_t, means[name] + half_t
            half = half_t
            if errors.size:
                half = t * math.sqrt(max(between[name] ** 2, within[name] ** 2) / s)
            lows[name], highs[name] = means[name] - half, means[name] + half
        else:
            t_lows[name] = t_highs[name] = math.nan
            warn(
                where,
                f"{name!r} has {s} finite seed value(s)",
                "no interval (it needs at least 2)",
                category=DataWarning,
                stacklevel=3,
            )
            lows[name] = highs[name] = math.nan
    columns = list(table.columns)

    def series(values: dict[str, Any], dtype: Any = np.float64) -> pd.Series:
        return pd.Series(values, dtype=dtype).reindex(columns)

    return SeedSummary(
        table=table,
        mean=series(means),
        ci_low=series(lows),
        ci_high=series(highs),
        n_seeds=series(counts, np.int64),
        confidence=confidence,
        between_sd=series(between),
        within_se=series(within),
        t_low=series(t_lows),
        t_high=series(t_highs),
        method=series(methods, object),
    )


def _given_within(
    where: str, items: list[tuple[Hashable, Any]], within_se: Any
) -> dict[Hashable, Any] | None:
    """``within_se`` keyed like ``results`` (a mapping by seed, a sequence by position)."""
    if within_se is None:
        return None
    if isinstance(within_se, Mapping):
        return dict(within_se)
    if isinstance(within_se, Sequence) and not isinstance(within_se, str | bytes):
        if len(within_se) != len(items):
            raise fail(
                where,
                f"within_se has {len(within_se)} entries for {len(items)} seeds",
                "give one entry per seed, in the same order as results",
            )
        return {seed: value for (seed, _), value in zip(items, within_se, strict=True)}
    raise fail(where, f"within_se of type {type(within_se).__name__}", "give a dict or a list")
