"""Targeting at a fixed budget: pick the top-K users by score and count what they bring.

Budget ``K = round(share * N_all)`` users (half rounds up), where ``N_all`` is the number of
held-out aligned users, the same absolute K in both pools so budgets match:

- ``all``: every held-out user is eligible;
- ``prospecting``: existing customers are removed before selection (the e-commerce platform
  knows the flag, so every model is allowed the same exclusion).

Ranking: highest score first; equal scores are ordered by a fixed random tie-breaker drawn from
``seed`` (the same for every model, so two models with equal scores select the same users).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from fedads._validation import check_choice, check_in_range, check_positive_int, fail
from fedads.eval.data import POOLS, SEGMENTS, EvalData

DEFAULT_BUDGETS: tuple[float, ...] = (0.01, 0.05, 0.10)
"""Budget shares of held-out aligned users evaluated by default."""

HEADLINE_BUDGET = 0.10
"""The budget share the headline lift is reported at."""

CURVE_BUDGETS: tuple[float, ...] = tuple(round(0.005 * i, 3) for i in range(1, 61))
"""Budget grid of the new-customer curves: 0.5% to 30% in steps of 0.5%."""

_TIE_STREAM = 0x7E1E
"""Second entropy word of the tie-breaker generator, so it never collides with other streams."""


def budget_users(share: float, n_all: int) -> int:
    """``K = round(share * n_all)`` with halves rounded up (not to even); may be 0.

    Args:
        share: budget as a share of held-out aligned users, in (0, 1].
        n_all: number of held-out aligned users.
    """
    share = check_in_range("budget", "budget", share, 0.0, 1.0, low_inclusive=False)
    n_all = check_positive_int("budget", "n_all", n_all, minimum=0)
    # The tiny epsilon absorbs binary noise such as 0.1 * 25 = 2.5000000000000004 vs 2.5.
    return int(math.floor(share * n_all + 0.5 + 1e-9))


def tie_breaker(n: int, seed: int = 0) -> np.ndarray:
    """``[n]`` int64 random ranks (a permutation of 0..n-1) from ``seed``; lower wins a tie."""
    n = check_positive_int("tie_breaker", "n", n, minimum=0)
    seed = check_positive_int("tie_breaker", "seed", seed, minimum=0)
    return np.random.default_rng([seed, _TIE_STREAM]).permutation(n).astype(np.int64)


def ranking(score: np.ndarray, tie_break: np.ndarray) -> np.ndarray:
    """``[n]`` user indices, best first: by score descending, then ``tie_break`` ascending."""
    score = np.asarray(score, dtype=np.float64)
    tie_break = np.asarray(tie_break)
    if score.shape != tie_break.shape:
        raise fail(
            "ranking",
            f"score {score.shape} and tie_break {tie_break.shape} differ",
            "give one tie-break rank per user",
        )
    # lexsort sorts by the last key first; -score puts high scores first (-0.0 == 0.0).
    return np.lexsort((tie_break, -score))


def pool_order(order: np.ndarray, eligible: np.ndarray) -> np.ndarray:
    """The ranking restricted to eligible users (relative order kept)."""
    return order[eligible[order]]


def select_top_k(
    score: np.ndarray,
    k: int,
    *,
    tie_break: np.ndarray,
    eligible: np.ndarray | None = None,
) -> np.ndarray:
    """Indices of the ``k`` best eligible users (fewer if fewer are eligible), best first."""
    k = check_positive_int("select_top_k", "k", k, minimum=0)
    order = ranking(score, tie_break)
    if eligible is not None:
        order = pool_order(order, np.asarray(eligible, dtype=bool))
    return order[:k]


@dataclass(frozen=True)
class TargetingResult:
    """What the top-K users of one model bring, in one pool at one budget.

    Attributes:
        model, pool, budget: what was evaluated; ``k`` = budget in users,
            ``n_selected = min(k, eligible users in the pool)``.
        conversions: converters (label 1) among the selected.
        new_customer_conversions: converters among the selected who are not existing customers.
        precision_at_k: ``conversions / n_selected`` (NaN when nothing is selected).
        recall_new: ``new_customer_conversions / new-customer converters in the pool``
            (NaN when the pool has none).
        new_share_of_converters: ``new_customer_conversions / conversions`` (NaN when 0).
        incremental_conversions: ``sum(y1 - y0)`` over the selected (None without y0/y1).
        incremental_new_customer_conversions: the same over selected new customers.
        expected_new_customer_conversions: ``sum(p1)`` over selected new customers (None
            without true probabilities): what the selection brings on average over campaigns.
        expected_incremental_new_customer_conversions: ``sum(p1 - p0)`` over them.
    """

    model: str
    pool: str
    budget: float
    k: int
    n_selected: int
    conversions: int
    new_customer_conversions: int
    precision_at_k: float
    recall_new: float
    new_share_of_converters: float
    incremental_conversions: int | None = None
    incremental_new_customer_conversions: int | None = None
    expected_new_customer_conversions: float | None = None
    expected_incremental_new_customer_conversions: float | None = None

    def to_dict(self) -> dict[str, object]:
        """Plain dict (floats may be NaN; the report writes them as null)."""
        return asdict(self)


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator) / float(denominator) if denominator else math.nan


def check_budgets(where: str, budgets: Sequence[float]) -> tuple[float, ...]:
    """Validate budget shares (each in (0, 1]); return them sorted, without duplicates."""
    if isinstance(budgets, str | bytes) or not isinstance(budgets, Sequence) or not budgets:
        raise fail(where, f"budgets={budgets!r} is not a non-empty list", "give e.g. (0.05, 0.10)")
    shares = [check_in_range(where, "budget", b, 0.0, 1.0, low_inclusive=False) for b in budgets]
    return tuple(sorted(set(shares)))


def check_pools(where: str, pools: Sequence[str]) -> tuple[str, ...]:
    """Validate pool names; return them in canonical order."""
    if isinstance(pools, str):
        pools = (pools,)
    for pool in pools:
        check_choice(where, "pool", pool, POOLS)
    return tuple(p for p in POOLS if p in set(pools))


def targeting_table(
    data: EvalData,
    *,
    budgets: Sequence[float] = DEFAULT_BUDGETS,
    pools: Sequence[str] = POOLS,
    seed: int = 0,
    models: Sequence[str] | None = None,
) -> list[TargetingResult]:
    """Targeting results for every model x pool x budget.

    Args:
        data: validated held-out users.
        budgets: shares of ``data.n`` (each in (0, 1]).
        pools: ``all`` and/or ``prospecting``.
        seed: seed of the tie-breaker (see :func:`tie_breaker`).
        models: subset of ``data.models`` (default: all).
    """
    where = "targeting_table"
    shares = check_budgets(where, budgets)
    pools = check_pools(where, pools)
    models = _check_models(where, data, models)
    tie = tie_breaker(data.n, seed)
    label = data.label.astype(np.int64)
    new_conv = data.new_conversions.astype(np.int64)
    uplift = data.uplift
    uplift_new = None if uplift is None else uplift.astype(np.int64) * data.is_new
    expected = data.expected_new_conversions
    expected_up = data.expected_uplift_new
    results = []
    for model in models:
        order = ranking(data.scores[model], tie)
        for pool in pools:
            eligible = data.pool_mask(pool)
            pool_rank = pool_order(order, eligible)
            pool_new_converters = int(new_conv[eligible].sum())
            for share in shares:
                k = budget_users(share, data.n)
                chosen = pool_rank[:k]
                conversions = int(label[chosen].sum())
                new = int(new_conv[chosen].sum())
                results.append(
                    TargetingResult(
                        model=model,
                        pool=pool,
                        budget=share,
                        k=k,
                        n_selected=int(chosen.size),
                        conversions=conversions,
                        new_customer_conversions=new,
                        precision_at_k=_ratio(conversions, chosen.size),
                        recall_new=_ratio(new, pool_new_converters),
                        new_share_of_converters=_ratio(new, conversions),
                        incremental_conversions=(
                            None if uplift is None else int(uplift[chosen].astype(np.int64).sum())
                        ),
                        incremental_new_customer_conversions=(
                            None if uplift_new is None else int(uplift_new[chosen].sum())
                        ),
                        expected_new_customer_conversions=(
                            None if expected is None else float(expected[chosen].sum())
                        ),
                        expected_incremental_new_customer_conversions=(
                            None if expected_up is None else float(expected_up[chosen].sum())
                        ),
                    )
                )
    return results


def _check_models(where: str, data: EvalData, models: Sequence[str] | None) -> tuple[str, ...]:
    if models is None:
        return data.models
    if isinstance(models, str):
        models = (models,)
    for model in models:
        check_choice(where, "model", model, data.models)
    return tuple(models)


def new_customer_curve(
    data: EvalData,
    *,
    shares: Sequence[float] = CURVE_BUDGETS,
    pools: Sequence[str] = POOLS,
    seed: int = 0,
    incremental: bool = False,
) -> dict[str, dict[str, list[int]]]:
    """New-customer conversions of the top-K against budget: ``result[pool][model][i]``.

    ``i`` indexes ``shares``; K = :func:`budget_users` of each share. With
    ``incremental=True`` counts incremental new-customer conversions ``sum(y1 - y0)`` instead
    (requires potential outcomes).
    """
    where = "new_customer_curve"
    shares = check_budgets(where, shares)
    pools = check_pools(where, pools)
    if incremental and data.uplift is None:
        raise fail(where, "incremental=True but data has no y0/y1", "pass potential outcomes")
    value = (
        (data.uplift.astype(np.int64) * data.is_new)
        if incremental and data.uplift is not None
        else data.new_conversions.astype(np.int64)
    )
    ks = np.array([budget_users(s, data.n) for s in shares], dtype=np.int64)
    tie = tie_breaker(data.n, seed)
    out: dict[str, dict[str, list[int]]] = {pool: {} for pool in pools}
    for model in data.models:
        order = ranking(data.scores[model], tie)
        for pool in pools:
            ranked = pool_order(order, data.pool_mask(pool))
            cum = np.concatenate(([0], np.cumsum(value[ranked])))
            out[pool][model] = [int(v) for v in cum[np.minimum(ks, ranked.size)]]
    return out


@dataclass(frozen=True)
class GainsCurve:
    """Cumulative gains within a segment: share of its converters captured vs share targeted.

    Attributes:
        x: ``[m]`` share of the segment's users targeted (0..1), highest scores first.
        y: ``[m]`` share of the segment's converters among them (NaN if it has none).
        n: users in the segment; positives: converters in it.
    """

    x: tuple[float, ...]
    y: tuple[float, ...]
    n: int
    positives: int


def gains_curves(
    data: EvalData, *, seed: int = 0, n_points: int = 101
) -> dict[str, dict[str, GainsCurve]]:
    """Cumulative gains curve per segment (``existing``, ``new``) and model.

    Users of a segment are ranked by the model's score (same tie-breaker as targeting); the
    curve is sampled at ``n_points`` evenly spaced shares of the segment (0 and 1 included).
    """
    n_points = check_positive_int("gains_curves", "n_points", n_points, minimum=2)
    tie = tie_breaker(data.n, seed)
    out: dict[str, dict[str, GainsCurve]] = {}
    for segment in SEGMENTS:
        mask = data.segment_mask(segment)
        n = int(mask.sum())
        label = data.label.astype(np.int64)
        positives = int(label[mask].sum())
        xs = np.linspace(0.0, 1.0, n_points)
        counts = np.floor(xs * n + 0.5).astype(np.int64)
        out[segment] = {}
        for model in data.models:
            ranked = pool_order(ranking(data.scores[model], tie), mask)
            cum = np.concatenate(([0], np.cumsum(label[ranked])))
            ys = cum[counts] / positives if positives else np.full(n_points, np.nan)
            out[segment][model] = GainsCurve(
                x=tuple(float(v) for v in xs),
                y=tuple(float(v) for v in ys),
                n=n,
                positives=positives,
            )
    return out
