"""New-customer lift of one model over another at a fixed budget, with a paired bootstrap.

``lift = C_A / C_B - 1`` where ``C_m`` is what model ``m``'s top-K users bring in a pool:

- ``targeting`` lift: observed new-customer conversions among the selected;
- ``incremental`` lift: incremental new-customer conversions ``sum(y1 - y0)`` among the
  selected new customers (synthetic worlds with potential outcomes only).

The lift is undefined (NaN, with a :class:`LiftUndefinedWarning`) when ``C_B <= 0``.

Paired bootstrap: each resample draws N held-out users with replacement (the same draw for every
model), re-selects each model's top-K *in the resample* and recomputes both counts. The 95%
interval is the 2.5th and 97.5th percentile of the resampled lifts (a resample whose baseline
count is <= 0 is ranked by the counts as +inf / 0 / -inf rather than dropped).

Fast path (:func:`bootstrap_counts`): a resample is a vector of multiplicities ``c_i`` (how often
user ``i`` was drawn; copies of a user share its score and tie rank). Each model's ranking in a
pool is sorted once. In ranking order, with cumulative counts ``S_m = c_1 + ... + c_m``, the
top-K of a resample is every copy of the first ``m`` users, where ``m`` is the largest index with
``S_m <= K``, plus ``K - S_m`` copies of user ``m + 1``. Cumulative sums of counts and of
count-weighted outcomes (only over users with a non-zero outcome) give the selected totals
without re-sorting. :func:`bootstrap_counts_naive` re-sorts every resample and must agree
exactly (tests check it).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass

import numpy as np

from fedads._progress import progress_bar
from fedads._validation import check_choice, check_positive_int, fail, warn
from fedads.errors import FedadsWarning
from fedads.eval.data import POOLS, EvalData
from fedads.eval.targeting import (
    DEFAULT_BUDGETS,
    budget_users,
    check_budgets,
    check_pools,
    pool_order,
    ranking,
    targeting_table,
    tie_breaker,
)

DEFAULT_MODEL = "federated"
DEFAULT_BASELINE = "ecommerce_only"
DEFAULT_BASELINES: tuple[str, ...] = ("ecommerce_only", "social_only", "centralized")
"""Baselines the federated model is compared with; the first is the headline."""

DEFAULT_N_BOOTSTRAP = 1000
LIFT_KINDS: tuple[str, ...] = ("targeting", "incremental")

_BOOT_STREAM = 0xB007
"""Second entropy word of the bootstrap generators (distinct from the tie-breaker stream)."""

_CHUNK_ELEMENTS = 2_000_000
"""Resamples are processed in chunks of about this many (resample x user) cells (~16 MB)."""


class LiftUndefinedWarning(FedadsWarning):
    """A lift was set to NaN because the baseline count is zero (or negative)."""


def lift_ratio(model_count: float, baseline_count: float, *, context: str = "") -> float:
    """``model_count / baseline_count - 1``; NaN with a warning when ``baseline_count <= 0``.

    A zero baseline would give inf; a negative one (possible for incremental counts) would flip
    the meaning of the ratio, so both are reported as undefined.
    """
    if baseline_count <= 0:
        warn(
            "lift",
            f"{context or 'lift'} is undefined: baseline count is {baseline_count:g}",
            "reported as NaN (null in report.json)",
            category=LiftUndefinedWarning,
        )
        return math.nan
    return float(model_count) / float(baseline_count) - 1.0


def _resample_rng(seed: int, b: int) -> np.random.Generator:
    return np.random.default_rng([seed, _BOOT_STREAM, b])


def resample_indices(n: int, seed: int, start: int, stop: int) -> np.ndarray:
    """``[stop - start, n]`` int64: resamples ``start..stop-1`` (users drawn with replacement).

    Resample ``b`` comes from its own generator seeded by ``(seed, b)``, so the draws do not
    depend on chunking or on the total number of resamples.
    """
    out = np.empty((stop - start, n), dtype=np.int64)
    for row, b in enumerate(range(start, stop)):
        out[row] = _resample_rng(seed, b).integers(0, n, size=n)
    return out


def _chunks(n: int, n_bootstrap: int) -> Iterator[tuple[int, int]]:
    size = max(1, min(n_bootstrap, _CHUNK_ELEMENTS // max(n, 1)))
    for start in range(0, n_bootstrap, size):
        yield start, min(start + size, n_bootstrap)


@dataclass(frozen=True, eq=False)
class BootstrapCounts:
    """Per-resample counts of each model's top-K, for every pool and budget.

    Attributes:
        models, pools, budgets: axes; ``ks[j]`` = users bought at ``budgets[j]``.
        new_customer: model -> ``[len(pools), len(budgets), n_bootstrap]`` int64, new-customer
            conversions among the selected in each resample.
        incremental_new: same shape, ``sum(y1 - y0)`` over selected new customers; None
            without potential outcomes.
    """

    models: tuple[str, ...]
    pools: tuple[str, ...]
    budgets: tuple[float, ...]
    ks: tuple[int, ...]
    n_bootstrap: int
    seed: int
    new_customer: dict[str, np.ndarray]
    incremental_new: dict[str, np.ndarray] | None

    def get(self, kind: str, model: str, pool: str, budget: float) -> np.ndarray:
        """``[n_bootstrap]`` counts of ``kind`` (``targeting`` / ``incremental``)."""
        table = self.new_customer if kind == "targeting" else self.incremental_new
        if table is None:
            raise fail("BootstrapCounts", f"no {kind} counts", "pass data with y0/y1")
        return table[model][self.pools.index(pool), self.budgets.index(budget)]


def _outcomes(data: EvalData) -> dict[str, np.ndarray]:
    """Per-user values summed over the selected: new-customer conversions (and incremental)."""
    out = {"targeting": data.new_conversions.astype(np.int64)}
    if data.uplift is not None:
        out["incremental"] = data.uplift.astype(np.int64) * data.is_new
    return out


def _check_setup(
    where: str,
    data: EvalData,
    budgets: Sequence[float],
    pools: Sequence[str],
    n_bootstrap: int,
    seed: int,
    models: Sequence[str] | None,
) -> tuple[tuple[float, ...], tuple[str, ...], int, int, tuple[str, ...]]:
    shares = check_budgets(where, budgets)
    pool_names = check_pools(where, pools)
    n_bootstrap = check_positive_int(where, "n_bootstrap", n_bootstrap, minimum=0)
    seed = check_positive_int(where, "seed", seed, minimum=0)
    if models is None:
        names = data.models
    else:
        names = tuple([models] if isinstance(models, str) else models)
        for model in names:
            check_choice(where, "model", model, data.models)
    return shares, pool_names, n_bootstrap, seed, names


def bootstrap_counts(
    data: EvalData,
    *,
    budgets: Sequence[float] = DEFAULT_BUDGETS,
    pools: Sequence[str] = POOLS,
    n_bootstrap: int = DEFAULT_N_BOOTSTRAP,
    seed: int = 0,
    models: Sequence[str] | None = None,
) -> BootstrapCounts:
    """Vectorized paired bootstrap of top-K new-customer counts (see module docstring).

    Cost: O(n_bootstrap * n * models * pools) with no per-resample sort; memory is bounded by
    processing resamples in chunks. ``seed`` sets both the tie-breaker and the resamples.
    """
    shares, pool_names, n_bootstrap, seed, names = _check_setup(
        "bootstrap_counts", data, budgets, pools, n_bootstrap, seed, models
    )
    n = data.n
    ks = np.array([budget_users(s, n) for s in shares], dtype=np.int64)
    outcomes = _outcomes(data)
    tie = tie_breaker(n, seed)
    # Per model and pool: the ranking restricted to the pool, and the sparse outcomes on it.
    plans = {}
    for model in names:
        order = ranking(data.scores[model], tie)
        for pool in pool_names:
            ranked = pool_order(order, data.pool_mask(pool))
            sparse = {}
            for kind, value in outcomes.items():
                ranked_value = value[ranked]
                positions = np.flatnonzero(ranked_value)
                padded = np.concatenate((ranked_value, [0]))  # value at position m (0 past end)
                sparse[kind] = (positions, ranked[positions], ranked_value[positions], padded)
            plans[model, pool] = (ranked, sparse)
    result = {
        kind: {m: np.zeros((len(pool_names), len(shares), n_bootstrap), np.int64) for m in names}
        for kind in outcomes
    }
    # Smallest integer type that holds any multiplicity (at most n): less memory traffic.
    count_dtype = np.int16 if n <= np.iinfo(np.int16).max else np.int32
    sum_dtype = np.int32 if n <= np.iinfo(np.int32).max else np.int64
    n_k = ks.size
    bar = progress_bar(n_bootstrap, "bootstrap", "resample")  # only at INFO on a terminal
    for start, stop in _chunks(n, n_bootstrap):
        bar.update(stop - start)
        rows = stop - start
        draws = resample_indices(n, seed, start, stop)
        flat = (draws + (np.arange(rows, dtype=np.int64) * n)[:, None]).ravel()
        counts = np.bincount(flat, minlength=rows * n).reshape(rows, n).astype(count_dtype)
        del draws, flat
        row_ids = np.repeat(np.arange(rows), n_k)
        for (model, pool), (ranked, sparse) in plans.items():
            p = pool_names.index(pool)
            if ranked.size == 0:  # empty pool: nothing can be selected
                continue
            # cum[b, i] = copies of the first i + 1 ranked users in resample b.
            cum = np.cumsum(np.take(counts, ranked, axis=1), axis=1, dtype=sum_dtype)
            # m = number of leading users whose copies all fit in K (cum <= K).
            m = np.empty((rows, n_k), dtype=np.int64)
            for r in range(rows):
                m[r] = np.searchsorted(cum[r], ks, side="right")
            m = m.ravel()
            before = np.where(m > 0, cum[row_ids, np.maximum(m - 1, 0)], 0)
            partial = np.tile(ks, rows) - before  # copies of user m that still fit (< its count)
            for kind, (positions, users, values, padded) in sparse.items():
                weighted = np.zeros((rows, positions.size + 1), dtype=np.int64)
                weighted[:, 1:] = np.take(counts, users, axis=1) * values
                np.cumsum(weighted, axis=1, out=weighted)
                q = np.searchsorted(positions, m)  # nonzero positions before m
                selected = weighted[row_ids, q] + partial * padded[m]
                result[kind][model][p, :, start:stop] = selected.reshape(rows, n_k).T
    bar.close()
    return BootstrapCounts(
        models=names,
        pools=pool_names,
        budgets=shares,
        ks=tuple(int(k) for k in ks),
        n_bootstrap=n_bootstrap,
        seed=seed,
        new_customer=result["targeting"],
        incremental_new=result.get("incremental"),
    )


def bootstrap_counts_naive(
    data: EvalData,
    *,
    budgets: Sequence[float] = DEFAULT_BUDGETS,
    pools: Sequence[str] = POOLS,
    n_bootstrap: int = DEFAULT_N_BOOTSTRAP,
    seed: int = 0,
    models: Sequence[str] | None = None,
) -> BootstrapCounts:
    """Reference implementation of :func:`bootstrap_counts`: build and re-sort each resample.

    Slow (one sort per resample and model); used by tests to check the fast path exactly.
    """
    shares, pool_names, n_bootstrap, seed, names = _check_setup(
        "bootstrap_counts_naive", data, budgets, pools, n_bootstrap, seed, models
    )
    n = data.n
    ks = [budget_users(s, n) for s in shares]
    outcomes = _outcomes(data)
    tie = tie_breaker(n, seed)
    result = {
        kind: {m: np.zeros((len(pool_names), len(shares), n_bootstrap), np.int64) for m in names}
        for kind in outcomes
    }
    for b in range(n_bootstrap):
        idx = resample_indices(n, seed, b, b + 1)[0]
        for model in names:
            # Copies of a user share its score and tie rank, so they sit next to each other.
            order = np.lexsort((tie[idx], -data.scores[model][idx]))
            for p, pool in enumerate(pool_names):
                eligible = data.pool_mask(pool)[idx]
                ranked = order[eligible[order]]
                for j, k in enumerate(ks):
                    chosen = idx[ranked[:k]]
                    for kind, value in outcomes.items():
                        result[kind][model][p, j, b] = int(value[chosen].sum())
    return BootstrapCounts(
        models=names,
        pools=pool_names,
        budgets=shares,
        ks=tuple(ks),
        n_bootstrap=n_bootstrap,
        seed=seed,
        new_customer=result["targeting"],
        incremental_new=result.get("incremental"),
    )


@dataclass(frozen=True)
class LiftResult:
    """Lift of ``model`` over ``baseline`` in one pool at one budget.

    Attributes:
        kind: ``targeting`` (observed new-customer conversions) or ``incremental``
            (``sum(y1 - y0)`` over selected new customers).
        k: budget in users; model_count, baseline_count: the two numerators on the full data.
        point: ``model_count / baseline_count - 1`` (NaN when ``baseline_count <= 0``).
        ci_low, ci_high: 2.5th / 97.5th percentile of the bootstrap lifts (NaN without
            bootstrap).
            A resample whose baseline count is <= 0 ranks as +inf / 0 / -inf by the counts; an
            infinite bound is reported as NaN.
        share_positive: share of resamples with lift > 0 (a +inf resample counts as > 0).
        n_valid: resamples whose baseline count was > 0; n_bootstrap: resamples drawn.
    """

    model: str
    baseline: str
    pool: str
    budget: float
    k: int
    kind: str
    model_count: int
    baseline_count: int
    point: float
    ci_low: float
    ci_high: float
    share_positive: float
    n_valid: int
    n_bootstrap: int

    @property
    def ci95(self) -> tuple[float, float]:
        """``(ci_low, ci_high)``."""
        return (self.ci_low, self.ci_high)

    def to_dict(self) -> dict[str, object]:
        """Plain dict with ``ci95`` as a two-element list (NaN kept; the report writes null)."""
        out = asdict(self)
        out["ci95"] = [self.ci_low, self.ci_high]
        return out


def extended_percentile(values: np.ndarray, q: float) -> float:
    """numpy's linear-interpolation percentile, extended to values that may be +-inf.

    Equal to ``np.percentile(values, q)`` for finite values; when the interpolation touches an
    infinite neighbour the result is that infinity (the bound is unbounded).
    """
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    position = q / 100.0 * (ordered.size - 1)
    low_index = int(math.floor(position))
    high_index = min(low_index + 1, ordered.size - 1)
    fraction = position - low_index
    low, high = float(ordered[low_index]), float(ordered[high_index])
    if fraction == 0.0 or low == high:
        return low
    if math.isfinite(low) and math.isfinite(high):
        return low + (high - low) * fraction
    if math.isinf(low) and math.isinf(high):
        return math.nan
    return low if math.isinf(low) else high


def resample_lifts(model_draws: np.ndarray, baseline_draws: np.ndarray) -> np.ndarray:
    """Per-resample lift on the extended real line.

    ``C_A / C_B - 1`` where ``C_B > 0``; where ``C_B <= 0`` the ratio is undefined, so the resample
    is ranked by the counts alone: +inf if ``C_A > C_B``, 0 if equal, -inf if ``C_A < C_B``.
    """
    a = np.asarray(model_draws, dtype=np.float64)
    b = np.asarray(baseline_draws, dtype=np.float64)
    defined = b > 0
    lifts = np.where(a > b, math.inf, np.where(a < b, -math.inf, 0.0))
    lifts[defined] = a[defined] / b[defined] - 1.0
    return lifts


def summarize_lift(
    model_draws: np.ndarray, baseline_draws: np.ndarray, *, context: str = ""
) -> tuple[float, float, float, int]:
    """Percentile 95% interval, share of lifts > 0 and defined count from paired resample counts.

    Every resample counts. Where the baseline count is ``<= 0`` the resample's lift is ranked as
    +inf / 0 / -inf (see :func:`resample_lifts`) instead of being dropped (dropping them would
    remove the most favourable resamples and bias the interval down); a bound that lands on an
    infinite value is returned as NaN (unbounded), with a warning.

    Returns:
        ``(ci_low, ci_high, share_positive, n_defined)``; ``n_defined`` = resamples with a
        baseline count > 0.
    """
    lifts = resample_lifts(model_draws, baseline_draws)
    if lifts.size == 0:
        return math.nan, math.nan, math.nan, 0
    n_defined = int((np.asarray(baseline_draws) > 0).sum())
    low = extended_percentile(lifts, 2.5)
    high = extended_percentile(lifts, 97.5)
    if n_defined < lifts.size:
        unbounded = [name for name, v in (("lower", low), ("upper", high)) if not math.isfinite(v)]
        effect = (
            f"the {' and '.join(unbounded)} bound is unbounded and reported as NaN"
            if unbounded
            else "they are ranked by the counts (+inf / 0 / -inf), the bounds stay finite"
        )
        warn(
            "lift bootstrap",
            f"{context or 'lift'} has a baseline count <= 0 in {lifts.size - n_defined} of "
            f"{lifts.size} resamples",
            effect,
            category=LiftUndefinedWarning,
        )
    low = low if math.isfinite(low) else math.nan
    high = high if math.isfinite(high) else math.nan
    return low, high, float(np.mean(lifts > 0)), n_defined


def compute_lifts(
    data: EvalData,
    *,
    model: str = DEFAULT_MODEL,
    baselines: Sequence[str] = DEFAULT_BASELINES,
    budgets: Sequence[float] = DEFAULT_BUDGETS,
    pools: Sequence[str] = POOLS,
    kinds: Sequence[str] | None = None,
    n_bootstrap: int = DEFAULT_N_BOOTSTRAP,
    seed: int = 0,
    counts: BootstrapCounts | None = None,
) -> list[LiftResult]:
    """Lift of ``model`` over each baseline, per pool, budget and kind, with bootstrap CIs.

    Baselines missing from ``data`` are skipped; ``model`` must be present. ``kinds`` defaults to
    ``targeting`` plus ``incremental`` when ``data`` has potential outcomes. ``counts`` reuses
    a :func:`bootstrap_counts` result (it must cover the models, pools and budgets).
    """
    where = "compute_lifts"
    check_choice(where, "model", model, data.models)
    if isinstance(baselines, str):
        baselines = (baselines,)
    compared = [b for b in baselines if b in data.models and b != model]
    shares, pool_names, n_bootstrap, seed, _ = _check_setup(
        where, data, budgets, pools, n_bootstrap, seed, [model, *compared]
    )
    if kinds is None:
        kinds = LIFT_KINDS if data.has_potential_outcomes else ("targeting",)
    for kind in kinds:
        check_choice(where, "kind", kind, LIFT_KINDS)
        if kind == "incremental" and not data.has_potential_outcomes:
            raise fail(where, "incremental lift needs y0/y1", "pass potential outcomes or drop it")
    if not compared:
        return []
    if counts is None and n_bootstrap > 0:
        counts = bootstrap_counts(
            data,
            budgets=shares,
            pools=pool_names,
            n_bootstrap=n_bootstrap,
            seed=seed,
            models=[model, *compared],
        )
    rows = {
        (r.model, r.pool, r.budget): r
        for r in targeting_table(
            data, budgets=shares, pools=pool_names, seed=seed, models=[model, *compared]
        )
    }
    results = []
    for baseline in compared:
        for pool in pool_names:
            for share in shares:
                a, b = rows[model, pool, share], rows[baseline, pool, share]
                for kind in kinds:
                    if kind == "targeting":
                        ca, cb = a.new_customer_conversions, b.new_customer_conversions
                    else:
                        ca = int(a.incremental_new_customer_conversions or 0)
                        cb = int(b.incremental_new_customer_conversions or 0)
                    context = f"{kind} {model} vs {baseline}, pool {pool}, budget {share:g}"
                    point = lift_ratio(ca, cb, context=context)
                    low = high = share_positive = math.nan
                    n_valid = 0
                    if counts is not None and n_bootstrap > 0:
                        low, high, share_positive, n_valid = summarize_lift(
                            counts.get(kind, model, pool, share),
                            counts.get(kind, baseline, pool, share),
                            context=context,
                        )
                    results.append(
                        LiftResult(
                            model=model,
                            baseline=baseline,
                            pool=pool,
                            budget=share,
                            k=a.k,
                            kind=kind,
                            model_count=int(ca),
                            baseline_count=int(cb),
                            point=point,
                            ci_low=low,
                            ci_high=high,
                            share_positive=share_positive,
                            n_valid=n_valid,
                            n_bootstrap=counts.n_bootstrap if counts is not None else 0,
                        )
                    )
    return results
