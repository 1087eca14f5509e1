"""The one entry point of the evaluation layer: :func:`evaluate` -> :class:`Evaluation`."""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from fedads._progress import SILENT, Progress
from fedads._validation import check_in_range, check_positive_int, fail
from fedads.eval._json import to_jsonable
from fedads.eval.data import MODELS, POOLS, EvalData
from fedads.eval.lift import (
    DEFAULT_BASELINE,
    DEFAULT_BASELINES,
    DEFAULT_MODEL,
    DEFAULT_N_BOOTSTRAP,
    LiftResult,
    compute_lifts,
)
from fedads.eval.metrics import (
    DEFAULT_ECE_BINS,
    DEFAULT_ECE_STRATEGY,
    DEFAULT_EPS,
    SegmentMetrics,
    segment_metrics,
)
from fedads.eval.targeting import (
    CURVE_BUDGETS,
    DEFAULT_BUDGETS,
    HEADLINE_BUDGET,
    GainsCurve,
    TargetingResult,
    budget_users,
    check_budgets,
    gains_curves,
    new_customer_curve,
    targeting_table,
)


@dataclass(frozen=True, eq=False)
class Evaluation:
    """Everything :func:`evaluate` computed; ``to_dict()`` is strict-JSON-ready.

    Attributes:
        data: the evaluated users (kept for ``scores.csv`` and plots; not in ``to_dict``).
        budgets: evaluated budget shares (sorted, headline included); headline_budget and
            headline_k: the headline share and its size in users.
        n_bootstrap, seed: bootstrap resamples and the seed of tie-breaker and resamples.
        model, baseline: the headline comparison (``federated`` over ``ecommerce_only``).
        metrics: ``[model][segment]`` with segment in ``overall``, ``existing``, ``new``.
        targeting: one row per model x pool x budget.
        lifts: one row per baseline x pool x budget x kind (model = ``model``).
        curve_budgets: budget grid of the curves (0.5% .. 30%).
        curves: ``[pool][model]`` new-customer conversions at each curve budget.
        incremental_curves: same for incremental new-customer conversions, or None.
        gains: ``[segment][model]`` cumulative gains within ``existing`` / ``new``.
        notes: warnings raised during evaluation and other remarks, in plain words.
        seconds: wall time per stage.
    """

    data: EvalData = field(repr=False)
    budgets: tuple[float, ...]
    headline_budget: float
    headline_k: int
    n_bootstrap: int
    seed: int
    model: str
    baseline: str
    metrics: dict[str, dict[str, SegmentMetrics]]
    targeting: tuple[TargetingResult, ...]
    lifts: tuple[LiftResult, ...]
    curve_budgets: tuple[float, ...]
    curves: dict[str, dict[str, list[int]]]
    incremental_curves: dict[str, dict[str, list[int]]] | None
    gains: dict[str, dict[str, GainsCurve]]
    notes: tuple[str, ...] = ()
    seconds: dict[str, float] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    @property
    def models(self) -> tuple[str, ...]:
        """Evaluated models, canonical order."""
        return self.data.models

    def lift(
        self,
        pool: str,
        *,
        budget: float | None = None,
        baseline: str | None = None,
        kind: str = "targeting",
    ) -> LiftResult | None:
        """The lift row for ``pool`` (default: headline budget and baseline); None if absent."""
        budget = self.headline_budget if budget is None else budget
        baseline = self.baseline if baseline is None else baseline
        for row in self.lifts:
            if (row.pool, row.baseline, row.kind) == (pool, baseline, kind) and math.isclose(
                row.budget, budget
            ):
                return row
        return None

    def targeting_row(self, model: str, pool: str, budget: float | None = None) -> TargetingResult:
        """The targeting row of ``model`` in ``pool`` at ``budget`` (default: headline)."""
        budget = self.headline_budget if budget is None else budget
        for row in self.targeting:
            if (row.model, row.pool) == (model, pool) and math.isclose(row.budget, budget):
                return row
        raise fail(
            "Evaluation.targeting_row",
            f"no row for {model}/{pool}/{budget}",
            f"use a model in {list(self.models)} and a budget in {list(self.budgets)}",
        )

    def targeting_frame(self) -> pd.DataFrame:
        """Targeting rows as a DataFrame."""
        return pd.DataFrame([r.to_dict() for r in self.targeting])

    def lift_frame(self) -> pd.DataFrame:
        """Lift rows as a DataFrame."""
        return pd.DataFrame([r.to_dict() for r in self.lifts])

    def headline(self) -> dict[str, float]:
        """Flat key numbers for :func:`~fedads.eval.combine_seeds` (NaN when undefined).

        ``lift.<pool>`` (targeting, headline pair and budget), ``lift_vs_<baseline>.<pool>``,
        ``incremental_lift.<pool>`` (with y0/y1), ``new_customer_conversions.<pool>.<model>``,
        ``auc.<model>``, ``logloss.<model>``.
        """
        out: dict[str, float] = {}
        for row in self.lifts:
            if not math.isclose(row.budget, self.headline_budget):
                continue
            prefix = "lift" if row.kind == "targeting" else "incremental_lift"
            if row.baseline == self.baseline:
                out[f"{prefix}.{row.pool}"] = row.point
            else:
                out[f"{prefix}_vs_{row.baseline}.{row.pool}"] = row.point
        for row in self.targeting:
            if math.isclose(row.budget, self.headline_budget):
                out[f"new_customer_conversions.{row.pool}.{row.model}"] = float(
                    row.new_customer_conversions
                )
        for model, segments in self.metrics.items():
            out[f"auc.{model}"] = segments["overall"].auc
            out[f"logloss.{model}"] = segments["overall"].logloss
        return out

    def _repr_html_(self) -> str:
        """Jupyter display: verdict, headline lifts, conversions, metrics (fedads.report.html)."""
        from fedads.report.html import evaluation_html  # report layer, loaded only to display

        return evaluation_html(self)

    def to_dict(self) -> dict[str, Any]:
        """Strict-JSON-ready dict (NaN -> None) of everything but the per-user arrays."""
        return to_jsonable(
            {
                "n_users": self.data.n,
                "models": list(self.models),
                "pools": list(POOLS),
                "budgets": list(self.budgets),
                "headline_budget": self.headline_budget,
                "headline_k": self.headline_k,
                "model": self.model,
                "baseline": self.baseline,
                "n_bootstrap": self.n_bootstrap,
                "seed": self.seed,
                "has_potential_outcomes": self.data.has_potential_outcomes,
                "summary": self.data.summary(),
                "metrics": {
                    m: {s: v.to_dict() for s, v in segs.items()} for m, segs in self.metrics.items()
                },
                "targeting": [r.to_dict() for r in self.targeting],
                "lifts": [r.to_dict() for r in self.lifts],
                "curves": {
                    "budgets": list(self.curve_budgets),
                    "new_customer_conversions": self.curves,
                    "incremental_new_customer_conversions": self.incremental_curves,
                },
                "gains": {
                    seg: {
                        m: {"x": g.x, "y": g.y, "n": g.n, "positives": g.positives}
                        for m, g in by_model.items()
                    }
                    for seg, by_model in self.gains.items()
                },
                "notes": list(self.notes),
                "seconds": self.seconds,
                "settings": self.settings,
            }
        )


def evaluate(
    data: EvalData | pd.DataFrame,
    budgets: Sequence[float] = DEFAULT_BUDGETS,
    headline_budget: float = HEADLINE_BUDGET,
    n_bootstrap: int = DEFAULT_N_BOOTSTRAP,
    seed: int = 0,
    *,
    model: str = DEFAULT_MODEL,
    baselines: Sequence[str] = DEFAULT_BASELINES,
    curve_budgets: Sequence[float] = CURVE_BUDGETS,
    ece_bins: int = DEFAULT_ECE_BINS,
    ece_strategy: str = DEFAULT_ECE_STRATEGY,
    eps: float = DEFAULT_EPS,
    progress: Progress = SILENT,
) -> Evaluation:
    """Evaluate every model on held-out aligned users: metrics, targeting, lift, curves.

    Args:
        data: :class:`EvalData`, or a DataFrame read with :meth:`EvalData.from_frame`
            (``label``, ``is_existing_customer``, ``score_<model>``, optional ``y0``/``y1``).
        budgets: budget shares of held-out users (each in (0, 1]); ``headline_budget`` is
            added if missing.
        headline_budget: the budget of the headline lift (``lift.<pool>`` in the report).
        n_bootstrap: paired bootstrap resamples (0 = no intervals).
        seed: seeds the targeting tie-breaker and the bootstrap (separate streams).
        model: the model whose lift is measured; baselines: compared models (first = headline,
            missing ones skipped).
        curve_budgets: budget grid of the new-customer curves.
        ece_bins, ece_strategy, eps: calibration bins and log-loss clipping.
        progress: optional progress printer.

    Warnings raised inside (e.g. an undefined lift) are re-emitted and listed in ``notes``.
    """
    where = "evaluate"
    if isinstance(data, pd.DataFrame):
        data = EvalData.from_frame(data, where=where)
    if not isinstance(data, EvalData):
        raise fail(where, f"data is a {type(data).__name__}", "pass an EvalData or a DataFrame")
    headline_budget = check_in_range(
        where, "headline_budget", headline_budget, 0.0, 1.0, low_inclusive=False
    )
    shares = check_budgets(where, [*budgets, headline_budget])
    n_bootstrap = check_positive_int(where, "n_bootstrap", n_bootstrap, minimum=0)
    seed = check_positive_int(where, "seed", seed, minimum=0)
    curve_shares = check_budgets(where, curve_budgets)
    if isinstance(baselines, str):
        baselines = (baselines,)
    baseline = baselines[0] if len(baselines) else DEFAULT_BASELINE
    notes: list[str] = []
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        progress(f"evaluate: metrics for {len(data.models)} models on {data.n} users")
        metrics = segment_metrics(data, n_bins=ece_bins, strategy=ece_strategy, eps=eps)
        seconds["metrics"] = time.perf_counter() - clock

        clock = time.perf_counter()
        targeting = targeting_table(data, budgets=shares, seed=seed)
        seconds["targeting"] = time.perf_counter() - clock

        clock = time.perf_counter()
        if model in data.models:
            progress(f"evaluate: lift with {n_bootstrap} paired bootstrap resamples")
            lifts = compute_lifts(
                data,
                model=model,
                baselines=baselines,
                budgets=shares,
                n_bootstrap=n_bootstrap,
                seed=seed,
            )
            missing = [b for b in baselines if b not in data.models]
            if missing:
                notes.append(f"no lift against {missing}: model(s) not evaluated")
        else:
            lifts = []
            notes.append(f"no lift: model {model!r} is not among {list(data.models)}")
        seconds["lift_bootstrap"] = time.perf_counter() - clock

        clock = time.perf_counter()
        curves = new_customer_curve(data, shares=curve_shares, seed=seed)
        incremental_curves = (
            new_customer_curve(data, shares=curve_shares, seed=seed, incremental=True)
            if data.has_potential_outcomes
            else None
        )
        gains = gains_curves(data, seed=seed)
        seconds["curves"] = time.perf_counter() - clock

    for warning in caught:
        notes.append(str(warning.message))
        warnings.warn(str(warning.message), warning.category, stacklevel=2)
    if data.y1 is not None:
        differ = int((data.label != data.y1).sum())
        if differ:
            notes.append(
                f"label differs from y1 for {differ} of {data.n} users: observed counts use "
                "label, incremental counts use y1 - y0"
            )
    unknown = [m for m in data.models if m not in MODELS]
    if unknown:
        notes.append(f"extra models evaluated besides the standard four: {unknown}")
    return Evaluation(
        data=data,
        budgets=shares,
        headline_budget=headline_budget,
        headline_k=budget_users(headline_budget, data.n),
        n_bootstrap=n_bootstrap,
        seed=seed,
        model=model,
        baseline=baseline,
        metrics=metrics,
        targeting=tuple(targeting),
        lifts=tuple(lifts),
        curve_budgets=curve_shares,
        curves=curves,
        incremental_curves=incremental_curves,
        gains=gains,
        notes=tuple(dict.fromkeys(notes)),
        seconds=seconds,
        settings={
            "ece_bins": ece_bins,
            "ece_strategy": ece_strategy,
            "logloss_eps": eps,
            "tie_break": "score descending, then random ranks from seed",
            "ci": "paired bootstrap percentile 95%",
        },
    )
