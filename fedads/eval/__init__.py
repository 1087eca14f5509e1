"""Evaluation layer: metrics, targeting at a fixed budget, new-customer lift with a paired
bootstrap, and seed aggregation. Works on plain arrays; imports no training code.

See docs/evaluation.md for definitions and formulas.
"""

from __future__ import annotations

from fedads.eval.data import MODELS, POOLS, SEGMENTS, EvalData
from fedads.eval.evaluate import Evaluation, evaluate
from fedads.eval.lift import (
    LIFT_KINDS,
    BootstrapCounts,
    LiftResult,
    LiftUndefinedWarning,
    available_kinds,
    bootstrap_counts,
    bootstrap_counts_naive,
    compute_lifts,
    extended_percentile,
    lift_ratio,
    resample_lifts,
    summarize_lift,
)
from fedads.eval.metrics import (
    SegmentMetrics,
    auc,
    calibration_bins,
    compute_segment,
    expected_calibration_error,
    logloss,
    predicted_over_observed,
    segment_metrics,
)
from fedads.eval.seeds import SeedSummary, combine_seeds
from fedads.eval.targeting import (
    CURVE_BUDGETS,
    DEFAULT_BUDGETS,
    HEADLINE_BUDGET,
    GainsCurve,
    TargetingResult,
    budget_users,
    gains_curves,
    new_customer_curve,
    ranking,
    select_top_k,
    targeting_table,
    tie_breaker,
)

__all__ = [
    "CURVE_BUDGETS",
    "DEFAULT_BUDGETS",
    "HEADLINE_BUDGET",
    "LIFT_KINDS",
    "MODELS",
    "POOLS",
    "SEGMENTS",
    "BootstrapCounts",
    "EvalData",
    "Evaluation",
    "GainsCurve",
    "LiftResult",
    "LiftUndefinedWarning",
    "SeedSummary",
    "SegmentMetrics",
    "TargetingResult",
    "auc",
    "available_kinds",
    "bootstrap_counts",
    "bootstrap_counts_naive",
    "budget_users",
    "calibration_bins",
    "combine_seeds",
    "compute_lifts",
    "compute_segment",
    "evaluate",
    "expected_calibration_error",
    "extended_percentile",
    "gains_curves",
    "lift_ratio",
    "logloss",
    "new_customer_curve",
    "predicted_over_observed",
    "ranking",
    "resample_lifts",
    "segment_metrics",
    "select_top_k",
    "summarize_lift",
    "targeting_table",
    "tie_breaker",
]
