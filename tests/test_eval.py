"""Tests of the evaluation layer: metrics, targeting, lift, bootstrap, seed aggregation."""

from __future__ import annotations

import json
import math
import time
import warnings

import numpy as np
import pytest
from _evaldata import synthetic_eval_data

import fedads.eval.lift as lift_module
from fedads.errors import DataWarning, InputError
from fedads.eval import (
    EvalData,
    LiftUndefinedWarning,
    auc,
    bootstrap_counts,
    bootstrap_counts_naive,
    budget_users,
    calibration_bins,
    combine_seeds,
    compute_lifts,
    compute_segment,
    evaluate,
    expected_calibration_error,
    lift_ratio,
    logloss,
    new_customer_curve,
    predicted_over_observed,
    segment_metrics,
    select_top_k,
    summarize_lift,
    targeting_table,
    tie_breaker,
)
from fedads.eval.lift import extended_percentile, resample_lifts

# --------------------------------------------------------------------------------------------
# helpers


def synthetic(
    n: int,
    seed: int = 0,
    *,
    ties: bool = False,
    edge: float = 0.0,
    outcomes: bool = True,
) -> EvalData:
    """Random held-out users (see tests/_evaldata.py); ties round scores to 1 decimal."""
    return synthetic_eval_data(
        n, seed, edge=edge, ties_decimals=1 if ties else None, outcomes=outcomes
    )


# 6 users for the metric hand computations.
LABEL6 = np.array([1, 0, 1, 0, 0, 1])
PROB6 = np.array([0.9, 0.8, 0.6, 0.3, 0.2, 0.1])

# 10 users for the targeting hand computations (see test_targeting_hand_example).
SCORE10 = np.array([0.9, 0.8, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3, 0.2, 0.1])
LABEL10 = np.array([1, 1, 0, 1, 0, 1, 0, 1, 0, 0])
EXIST10 = np.array([1, 0, 0, 0, 1, 0, 0, 0, 1, 0])
Y0_10 = np.array([1, 0, 0, 0, 0, 1, 0, 0, 0, 0])


def data10(**scores: np.ndarray) -> EvalData:
    return EvalData(
        label=LABEL10,
        is_existing_customer=EXIST10,
        scores=scores or {"federated": SCORE10},
        y0=Y0_10,
        y1=LABEL10,
    )


# --------------------------------------------------------------------------------------------
# metrics


def test_auc_hand_case() -> None:
    # positives score 0.9, 0.6, 0.1; negatives 0.8, 0.3, 0.2: pairs won 3 + 2 + 0 = 5 of 9.
    assert auc(LABEL6, PROB6) == pytest.approx(5 / 9)


def test_auc_counts_ties_as_half() -> None:
    assert auc(np.array([1, 0]), np.array([0.5, 0.5])) == pytest.approx(0.5)


def test_logloss_hand_case() -> None:
    expected = (
        -(
            math.log(0.9)
            + math.log(0.2)
            + math.log(0.6)
            + math.log(0.7)
            + math.log(0.8)
            + math.log(0.1)
        )
        / 6
    )
    assert logloss(LABEL6, PROB6) == pytest.approx(expected)


def test_logloss_clips_certain_mistakes() -> None:
    # p = 0 for a converter: -log(1e-7) instead of inf; p = 1 for a converter: ~0.
    assert logloss(np.array([1]), np.array([0.0])) == pytest.approx(-math.log(1e-7))
    assert logloss(np.array([1, 0]), np.array([1.0, 0.0])) == pytest.approx(-math.log(1 - 1e-7))
    assert logloss(np.array([1]), np.array([0.0]), eps=1e-3) == pytest.approx(-math.log(1e-3))


def test_ece_equal_width_hand_case() -> None:
    # bin [0, .5): p .3 .2 .1, y 0 0 1 -> |1/3 - .2|; bin [.5, 1]: p .9 .8 .6, y 1 0 1
    # -> |2/3 - 23/30|; each bin holds half the users.
    expected = 0.5 * abs(1 / 3 - 0.2) + 0.5 * abs(2 / 3 - 2.3 / 3)
    value = expected_calibration_error(LABEL6, PROB6, n_bins=2, strategy="uniform")
    assert value == pytest.approx(expected)
    assert value == pytest.approx(7 / 60)


def test_ece_equal_mass_hand_case() -> None:
    # sorted p: (.1,.2) y (1,0); (.3,.6) y (0,1); (.8,.9) y (0,1)
    # -> (|.5-.15| + |.5-.45| + |.5-.85|) / 3
    value = expected_calibration_error(LABEL6, PROB6, n_bins=3, strategy="quantile")
    assert value == pytest.approx((0.35 + 0.05 + 0.35) / 3)


def test_calibration_bins_edges() -> None:
    bins = calibration_bins(np.array([0.0, 0.49, 0.5, 1.0]), n_bins=2, strategy="uniform")
    assert bins.tolist() == [0, 0, 1, 1]
    # 7 users in 3 equal-mass bins: sizes 3, 2, 2.
    bins = calibration_bins(np.linspace(0, 1, 7), n_bins=3, strategy="quantile")
    assert bins.tolist() == [0, 0, 0, 1, 1, 2, 2]


def test_perfect_calibration_gives_zero_ece() -> None:
    label = np.array([1, 0, 1, 0])
    prob = np.array([0.5, 0.5, 0.5, 0.5])
    assert expected_calibration_error(label, prob, n_bins=1) == pytest.approx(0.0)


def test_predicted_over_observed_hand_case() -> None:
    assert predicted_over_observed(LABEL6, PROB6) == pytest.approx(2.9 / 3)
    assert math.isnan(predicted_over_observed(np.array([0, 0]), np.array([0.1, 0.2])))


def test_segment_metrics_hand_case() -> None:
    data = EvalData(
        label=LABEL6, is_existing_customer=[1, 1, 0, 0, 0, 0], scores={"federated": PROB6}
    )
    result = segment_metrics(data)["federated"]
    assert result["overall"].auc == pytest.approx(5 / 9)
    assert result["existing"].auc == pytest.approx(1.0)  # (y 1, 0) with p (.9, .8)
    assert result["new"].auc == pytest.approx(0.5)  # pos .6 .1 vs neg .3 .2: 2 of 4
    assert result["existing"].n == 2 and result["new"].positives == 2
    assert result["overall"].notes == ()


def test_one_class_segment_gives_nan_with_reason() -> None:
    data = EvalData(
        label=LABEL6, is_existing_customer=[0, 1, 0, 0, 0, 0], scores={"federated": PROB6}
    )
    existing = segment_metrics(data)["federated"]["existing"]
    assert math.isnan(existing.auc)
    assert math.isnan(existing.pred_over_obs)
    assert existing.logloss == pytest.approx(-math.log(0.2))
    assert any("AUC undefined" in note and "one class" in note for note in existing.notes)
    assert any("no observed conversion" in note for note in existing.notes)


def test_empty_segment_does_not_crash() -> None:
    data = EvalData(label=LABEL6, is_existing_customer=np.zeros(6), scores={"federated": PROB6})
    existing = segment_metrics(data)["federated"]["existing"]
    assert existing.n == 0
    assert all(math.isnan(v) for v in (existing.auc, existing.logloss, existing.ece))
    assert "segment is empty" in existing.notes[0]


def test_compute_segment_matches_functions() -> None:
    row = compute_segment(LABEL6, PROB6, n_bins=3)
    assert row.auc == pytest.approx(auc(LABEL6, PROB6))
    assert row.ece == pytest.approx(expected_calibration_error(LABEL6, PROB6, n_bins=3))


def test_metric_functions_validate_input() -> None:
    with pytest.raises(InputError, match="prob has 2 rows but label has 3"):
        logloss(np.array([1, 0, 1]), np.array([0.1, 0.2]))
    with pytest.raises(InputError, match="outside \\[0, 1\\]"):
        logloss(np.array([1, 0]), np.array([0.1, 1.2]))
    with pytest.raises(InputError, match="strategy='median' is not supported"):
        expected_calibration_error(LABEL6, PROB6, strategy="median")


# --------------------------------------------------------------------------------------------
# targeting


def test_budget_users_rounds_half_up() -> None:
    assert budget_users(0.10, 20_000) == 2_000
    assert budget_users(0.25, 10) == 3  # 2.5 -> 3, not banker's 2
    assert budget_users(0.05, 10) == 1  # 0.5 -> 1
    assert budget_users(0.01, 10) == 0
    assert budget_users(1.0, 7) == 7
    with pytest.raises(InputError, match="budget=0"):
        budget_users(0.0, 10)
    with pytest.raises(InputError, match="budget=1.5"):
        budget_users(1.5, 10)


def test_targeting_hand_example() -> None:
    # users 1 and 2 tie at 0.8; at K = 5 both are selected in either order.
    rows = {(r.pool, r.budget): r for r in targeting_table(data10(), budgets=[0.5, 0.8])}
    everyone = rows["all", 0.5]  # users 0..4
    assert (everyone.k, everyone.n_selected) == (5, 5)
    assert everyone.conversions == 3  # users 0, 1, 3
    assert everyone.new_customer_conversions == 2  # users 1, 3 (0 is an existing customer)
    assert everyone.precision_at_k == pytest.approx(3 / 5)
    assert everyone.recall_new == pytest.approx(2 / 4)  # new converters: 1, 3, 5, 7
    assert everyone.new_share_of_converters == pytest.approx(2 / 3)
    assert everyone.incremental_conversions == 2  # uplift 1 for users 1, 3
    assert everyone.incremental_new_customer_conversions == 2

    prospect = rows["prospecting", 0.5]  # existing 0, 4, 8 removed: users 1, 2, 3, 5, 6
    assert (prospect.k, prospect.n_selected) == (5, 5)
    assert prospect.conversions == prospect.new_customer_conversions == 3  # users 1, 3, 5
    assert prospect.recall_new == pytest.approx(3 / 4)
    assert prospect.new_share_of_converters == pytest.approx(1.0)
    assert prospect.incremental_new_customer_conversions == 2  # users 1, 3 (5 has y0 = 1)

    # K = 8 but only 7 users are eligible in the prospecting pool: all 7 are selected.
    small_pool = rows["prospecting", 0.8]
    assert (small_pool.k, small_pool.n_selected) == (8, 7)
    assert small_pool.new_customer_conversions == 4
    assert small_pool.precision_at_k == pytest.approx(4 / 7)
    assert small_pool.recall_new == pytest.approx(1.0)


def test_targeting_tie_at_the_boundary_is_broken_by_the_seed() -> None:
    # K = 2 in the all pool: user 0, then one of the tied users 1 (converter) and 2 (not).
    outcomes = {}
    for seed in range(40):
        tie = tie_breaker(10, seed)
        winner = 1 if tie[1] < tie[2] else 2
        row = targeting_table(data10(), budgets=[0.2], pools=["all"], seed=seed)[0]
        assert row.conversions == (2 if winner == 1 else 1)
        assert row.new_customer_conversions == (1 if winner == 1 else 0)
        outcomes[winner] = seed
        # deterministic: the same seed gives the same answer
        again = targeting_table(data10(), budgets=[0.2], pools=["all"], seed=seed)[0]
        assert again == row
    assert set(outcomes) == {1, 2}  # both tie orders occur across seeds


def test_select_top_k_and_equal_scores_select_the_same_users() -> None:
    tie = np.array([5, 3, 1, 0, 2, 4])
    score = np.array([0.5, 0.5, 0.9, 0.5, 0.1, 0.5])
    # 0.9 first, then the 0.5 users by tie rank: 3 (0), 1 (3), 5 (4), 0 (5).
    assert select_top_k(score, 3, tie_break=tie).tolist() == [2, 3, 1]
    eligible = np.array([1, 1, 0, 1, 1, 1], dtype=bool)
    assert select_top_k(score, 2, tie_break=tie, eligible=eligible).tolist() == [3, 1]


def test_new_customer_curve_matches_targeting() -> None:
    data = synthetic(500, seed=3, ties=True)
    curves = new_customer_curve(data, shares=[0.05, 0.1, 0.3], seed=7)
    rows = targeting_table(data, budgets=[0.05, 0.1, 0.3], seed=7)
    for row in rows:
        index = [0.05, 0.1, 0.3].index(row.budget)
        assert curves[row.pool][row.model][index] == row.new_customer_conversions


# --------------------------------------------------------------------------------------------
# lift and bootstrap


def test_lift_ratio_and_zero_baseline() -> None:
    assert lift_ratio(12, 10) == pytest.approx(0.2)
    with pytest.warns(LiftUndefinedWarning, match="baseline count is 0"):
        value = lift_ratio(3, 0)
    assert math.isnan(value)
    with pytest.warns(LiftUndefinedWarning):
        assert math.isnan(lift_ratio(3, -2))


@pytest.mark.parametrize(("n", "ties", "seed"), [(40, True, 1), (157, False, 2), (301, True, 3)])
def test_fast_bootstrap_equals_naive(n: int, ties: bool, seed: int) -> None:
    data = synthetic(n, seed=seed, ties=ties)
    budgets = (0.01, 0.05, 0.1, 0.33, 0.9, 1.0)
    fast = bootstrap_counts(data, budgets=budgets, n_bootstrap=30, seed=seed)
    naive = bootstrap_counts_naive(data, budgets=budgets, n_bootstrap=30, seed=seed)
    assert fast.ks == naive.ks
    for model in data.models:
        np.testing.assert_array_equal(fast.new_customer[model], naive.new_customer[model])
        np.testing.assert_array_equal(fast.incremental_new[model], naive.incremental_new[model])
    assert fast.new_customer["federated"].any()


def test_bootstrap_does_not_depend_on_chunking(monkeypatch: pytest.MonkeyPatch) -> None:
    data = synthetic(300, seed=4)
    whole = bootstrap_counts(data, n_bootstrap=25, seed=9)
    monkeypatch.setattr(lift_module, "_CHUNK_ELEMENTS", 700)  # 2 resamples per chunk
    chunked = bootstrap_counts(data, n_bootstrap=25, seed=9)
    prefix = bootstrap_counts(data, n_bootstrap=10, seed=9)
    for model in data.models:
        np.testing.assert_array_equal(whole.new_customer[model], chunked.new_customer[model])
        np.testing.assert_array_equal(
            whole.new_customer[model][..., :10], prefix.new_customer[model]
        )
    other = bootstrap_counts(data, n_bootstrap=25, seed=10)
    assert not np.array_equal(whole.new_customer["federated"], other.new_customer["federated"])


def test_lift_point_matches_targeting_counts() -> None:
    data = synthetic(2_000, seed=5)
    rows = {(r.model, r.pool, r.budget): r for r in targeting_table(data, budgets=[0.1], seed=0)}
    for result in compute_lifts(data, budgets=[0.1], n_bootstrap=0):
        a = rows[result.model, result.pool, 0.1]
        b = rows[result.baseline, result.pool, 0.1]
        if result.kind == "targeting":
            expected = a.new_customer_conversions / b.new_customer_conversions - 1
        else:
            expected = (
                a.incremental_new_customer_conversions / b.incremental_new_customer_conversions - 1
            )
        assert result.point == pytest.approx(expected)
        assert math.isnan(result.ci_low) and result.n_bootstrap == 0


def test_model_equal_to_baseline_gives_exactly_zero() -> None:
    data = synthetic(3_000, seed=6)
    scores = dict(data.scores)
    scores["federated"] = scores["ecommerce_only"].copy()
    same = EvalData(data.label, data.is_existing_customer, scores, y0=data.y0, y1=data.y1)
    for result in compute_lifts(same, baselines=["ecommerce_only"], n_bootstrap=200, seed=1):
        assert result.point == 0.0
        assert result.ci_low == 0.0 and result.ci_high == 0.0
        assert result.ci_low <= 0 <= result.ci_high
        assert result.share_positive == 0.0


def test_better_model_by_construction_has_ci_above_zero() -> None:
    data = synthetic(5_000, seed=7, edge=0.6)
    results = compute_lifts(
        data, baselines=["ecommerce_only"], budgets=[0.1], n_bootstrap=300, seed=2
    )
    assert len(results) == 4  # 2 pools x 2 kinds
    for result in results:
        assert result.point > 0
        assert result.ci_low > 0, result
        assert result.ci_low <= result.point <= result.ci_high
        assert result.share_positive == 1.0


def test_zero_baseline_gives_nan_and_warning_not_inf() -> None:
    # The baseline ranks the 3 existing customers first; at K = 2 (all pool) it selects no new
    # customer, so its new-customer conversions are 0.
    label = np.array([1, 1, 1, 0, 1, 0, 0, 1, 0, 0])
    existing = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    baseline = np.array([0.9, 0.8, 0.7, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    federated = np.array([0.1, 0.1, 0.1, 0.2, 0.9, 0.3, 0.3, 0.8, 0.3, 0.3])
    data = EvalData(label, existing, {"federated": federated, "ecommerce_only": baseline})
    with pytest.warns(LiftUndefinedWarning):
        results = compute_lifts(data, budgets=[0.2], pools=["all"], n_bootstrap=50, seed=0)
    (result,) = results
    assert result.baseline_count == 0 and result.model_count == 2
    assert math.isnan(result.point) and not math.isinf(result.point)


def test_extended_percentile_and_resample_lifts() -> None:
    values = np.random.default_rng(0).normal(size=101)
    for q in (0.0, 2.5, 50.0, 97.5, 100.0):
        assert extended_percentile(values, q) == pytest.approx(np.percentile(values, q))
    # baseline 0: ranked by counts; 3 > 0 -> +inf, 0 == 0 -> 0
    lifts = resample_lifts(np.array([3, 0, 6, 2]), np.array([0, 0, 4, 4]))
    assert lifts.tolist() == [math.inf, 0.0, 0.5, -0.5]
    assert extended_percentile(np.array([0.1, 0.2, math.inf]), 97.5) == math.inf
    assert extended_percentile(np.array([0.1, 0.2, math.inf]), 2.5) == pytest.approx(0.105)
    # 40 resamples, 2 with an undefined ratio: kept, lower bound finite, upper bound unbounded
    model = np.full(40, 12)
    baseline = np.concatenate((np.full(38, 10), [0, 0]))
    with pytest.warns(LiftUndefinedWarning, match="baseline count <= 0 in 2 of 40"):
        low, high, share, n_defined = summarize_lift(model, baseline)
    assert low == pytest.approx(0.2) and math.isnan(high)
    assert share == 1.0 and n_defined == 38


def test_bootstrap_timing_20k_users_4_models_1000_resamples() -> None:
    data = synthetic(20_000, seed=8)
    start = time.perf_counter()
    counts = bootstrap_counts(data, budgets=(0.01, 0.05, 0.1), n_bootstrap=1000, seed=0)
    seconds = time.perf_counter() - start
    assert counts.new_customer["federated"].shape == (2, 3, 1000)
    assert seconds < 10.0, f"bootstrap took {seconds:.1f} s"


# --------------------------------------------------------------------------------------------
# evaluate and seeds


def test_evaluate_end_to_end_and_strict_json() -> None:
    data = synthetic(2_000, seed=9)
    evaluation = evaluate(data, budgets=(0.05,), headline_budget=0.1, n_bootstrap=100, seed=3)
    assert evaluation.budgets == (0.05, 0.1)  # headline added
    assert evaluation.headline_k == 200
    assert {r.baseline for r in evaluation.lifts} == {
        "ecommerce_only",
        "social_only",
        "centralized",
    }
    assert evaluation.lift("prospecting") is not None
    text = json.dumps(evaluation.to_dict(), allow_nan=False)
    assert "NaN" not in text
    headline = evaluation.headline()
    assert {"lift.all", "lift.prospecting", "incremental_lift.all", "auc.federated"} <= set(
        headline
    )


def test_evaluate_without_federated_skips_lift() -> None:
    data = synthetic(500, seed=10)
    only = EvalData(
        data.label, data.is_existing_customer, {"ecommerce_only": data.scores["ecommerce_only"]}
    )
    evaluation = evaluate(only, n_bootstrap=10)
    assert evaluation.lifts == ()
    assert any("federated" in note for note in evaluation.notes)


def test_evaluate_collects_warnings_in_notes() -> None:
    label = np.array([1, 1, 1, 0, 1, 0, 0, 1, 0, 0])
    existing = np.array([1, 1, 1, 0, 0, 0, 0, 0, 0, 0])
    baseline = np.array([0.9, 0.8, 0.7, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1])
    federated = np.array([0.1, 0.1, 0.1, 0.2, 0.9, 0.3, 0.3, 0.8, 0.3, 0.3])
    data = EvalData(label, existing, {"federated": federated, "ecommerce_only": baseline})
    with pytest.warns(LiftUndefinedWarning):
        evaluation = evaluate(data, budgets=(0.2,), headline_budget=0.2, n_bootstrap=20)
    assert any("undefined: baseline count is 0" in note for note in evaluation.notes)
    assert math.isnan(evaluation.lift("all").point)


def test_evaluate_rejects_bad_settings() -> None:
    data = synthetic(200, seed=11)
    with pytest.raises(InputError, match="budget=0.0 is out of range"):
        evaluate(data, budgets=(0.0, 0.1))
    with pytest.raises(InputError, match="n_bootstrap=-1 is too small"):
        evaluate(data, n_bootstrap=-1)
    with pytest.raises(InputError, match="headline_budget=2"):
        evaluate(data, headline_budget=2)
    with pytest.raises(InputError, match="pass an EvalData"):
        evaluate({"label": [1]})  # type: ignore[arg-type]


def test_combine_seeds_hand_case() -> None:
    summary = combine_seeds({0: 0.1, 1: 0.2, 2: 0.3})
    # mean .2, sd .1, t(0.975, df=2) = 4.302652729911275
    half = 4.302652729911275 * 0.1 / math.sqrt(3)
    assert summary.mean["value"] == pytest.approx(0.2)
    assert summary.ci_low["value"] == pytest.approx(0.2 - half)
    assert summary.ci_high["value"] == pytest.approx(0.2 + half)
    assert summary.table.loc[1, "value"] == pytest.approx(0.2)
    assert summary.n_seeds["value"] == 3


def test_combine_seeds_dicts_nan_and_evaluations() -> None:
    with pytest.warns(DataWarning, match="'b' has 1 finite seed value"):
        summary = combine_seeds([{"a": 1.0, "b": None}, {"a": 3.0, "b": 5.0}])
    assert summary.mean["a"] == pytest.approx(2.0)
    assert summary.n_seeds["b"] == 1 and math.isnan(summary.ci_low["b"])
    assert summary.to_dict()["summary"]["b"]["ci95"] == [None, None]
    json.dumps(summary.to_dict(), allow_nan=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LiftUndefinedWarning)  # tiny budgets: baseline may be 0
        evaluations = [evaluate(synthetic(600, seed=s), n_bootstrap=0, seed=s) for s in range(3)]
        combined = combine_seeds(evaluations)
    assert list(combined.table.index) == [0, 1, 2]
    assert "lift.prospecting" in combined.table.columns
    assert combined.to_frame().loc["lift.prospecting", "n_seeds"] == 3
    with pytest.raises(InputError, match="no results given"):
        combine_seeds([])


# --------------------------------------------------------------------------------------------
# input validation


def _good() -> dict:
    return {
        "label": [1, 0, 1],
        "is_existing_customer": [0, 0, 1],
        "scores": {"federated": [0.2, 0.1, 0.9]},
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"label": [1, 0]}, "is_existing_customer has 3 rows but label has 2"),
        ({"label": [1, 2, 0]}, "label has 1 values other than 0/1"),
        ({"label": [1.0, float("nan"), 0.0]}, "label has 1 values other than 0/1"),
        ({"label": [0, 0, 0]}, "label has no positive"),
        ({"label": []}, "label is empty"),
        ({"is_existing_customer": [0, 1, -1]}, "is_existing_customer has 1 values other"),
        ({"scores": {"federated": [0.2, float("nan"), 0.9]}}, "non-finite values"),
        ({"scores": {"federated": [0.2, 1.5, 0.9]}}, "outside \\[0, 1\\]"),
        ({"scores": {"federated": [0.2, 0.5]}}, "score 'federated' has 2 rows but label has 3"),
        ({"scores": {}}, "no model scores given"),
        ({"scores": {"label": [0.1, 0.2, 0.3]}}, "reserved column name"),
        ({"scores": {"fed model": [0.1, 0.2, 0.3]}}, "is not an identifier"),
        ({"y0": [0, 0, 1]}, "only one of y0, y1 is given"),
        ({"y0": [0, 0, 1], "y1": [1, 0, 3]}, "y1 has 1 values other than 0/1"),
        ({"keys": ["a", "b", "a"]}, "keys has duplicate values"),
        ({"label": [[1, 0, 1]]}, "label has shape"),
    ],
)
def test_evaldata_rejects_bad_input(change: dict, message: str) -> None:
    kwargs = {**_good(), **change}
    with pytest.raises(InputError, match=message) as info:
        EvalData(**kwargs)
    assert str(info.value).startswith("EvalData: ") and "; " in str(info.value)


def test_evaldata_from_frame_and_canonical_order() -> None:
    import pandas as pd

    frame = pd.DataFrame(
        {
            "key": ["a", "b", "c"],
            "label": [1, 0, 0],
            "is_existing_customer": [0, 1, 0],
            "score_social_only": [0.1, 0.2, 0.3],
            "score_federated": [0.3, 0.2, 0.1],
        }
    )
    data = EvalData.from_frame(frame, key_column="key")
    assert data.models == ("federated", "social_only")
    assert data.keys.tolist() == ["a", "b", "c"]
    assert not data.has_potential_outcomes
    with pytest.raises(InputError, match="column 'label' is missing"):
        EvalData.from_frame(frame.drop(columns="label"))
    with pytest.raises(ValueError):  # arrays are read-only
        data.label[0] = 0


# --------------------------------------------------------------------------------------------
# expected counts (true p0/p1 of a synthetic world)


def with_probabilities(n: int, seed: int = 0, *, ties: bool = False) -> EvalData:
    """``synthetic`` plus true probabilities consistent with its outcomes' rates."""
    base = synthetic(n, seed=seed, ties=ties)
    rng = np.random.default_rng([seed, 77])
    p0 = rng.uniform(0.0, 0.08, n)
    p1 = np.clip(p0 + rng.uniform(0.0, 0.04, n), 0.0, 1.0)
    return EvalData(
        label=base.label,
        is_existing_customer=base.is_existing_customer,
        scores=dict(base.scores),
        y0=base.y0,
        y1=base.y1,
        p0=p0,
        p1=p1,
    )


@pytest.mark.parametrize(("n", "ties", "seed"), [(40, True, 1), (157, False, 2)])
def test_fast_bootstrap_expected_counts_equal_naive(n: int, ties: bool, seed: int) -> None:
    data = with_probabilities(n, seed=seed, ties=ties)
    budgets = (0.05, 0.1, 0.5, 1.0)
    fast = bootstrap_counts(data, budgets=budgets, n_bootstrap=20, seed=seed)
    naive = bootstrap_counts_naive(data, budgets=budgets, n_bootstrap=20, seed=seed)
    for model in data.models:
        np.testing.assert_array_equal(fast.new_customer[model], naive.new_customer[model])
        np.testing.assert_allclose(fast.expected_new[model], naive.expected_new[model], atol=1e-9)
        np.testing.assert_allclose(
            fast.expected_incremental_new[model], naive.expected_incremental_new[model], atol=1e-9
        )
    assert fast.expected_new["federated"].dtype == np.float64
    assert (fast.expected_new["federated"] > 0).any()


def test_expected_lift_point_is_sum_of_p1_over_selected_new_customers() -> None:
    data = with_probabilities(2_000, seed=3)
    tie = tie_breaker(data.n, 0)
    k = budget_users(0.1, data.n)
    for pool in ("all", "prospecting"):
        counts = {}
        for model in ("federated", "ecommerce_only"):
            chosen = select_top_k(data.scores[model], k, tie_break=tie,
                                  eligible=data.pool_mask(pool))  # fmt: skip
            counts[model] = (
                float((data.p1 * data.is_new)[chosen].sum()),
                float(((data.p1 - data.p0) * data.is_new)[chosen].sum()),
            )
        rows = {r.kind: r for r in compute_lifts(data, baselines="ecommerce_only", budgets=[0.1],
                                                 pools=pool, n_bootstrap=0)}  # fmt: skip
        assert set(rows) == {"targeting", "incremental", "expected", "expected_incremental"}
        fed, eco = counts["federated"], counts["ecommerce_only"]
        assert rows["expected"].point == pytest.approx(fed[0] / eco[0] - 1)
        assert rows["expected"].model_count == pytest.approx(fed[0])
        assert rows["expected_incremental"].point == pytest.approx(fed[1] / eco[1] - 1)


def test_expected_kinds_need_probabilities_and_headline_names_them() -> None:
    plain = synthetic(300, seed=1)
    with pytest.raises(InputError, match="expected lift needs p0/p1"):
        compute_lifts(plain, kinds=("expected",), n_bootstrap=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LiftUndefinedWarning)
        evaluation = evaluate(with_probabilities(1_500, seed=2), n_bootstrap=30, seed=1)
    headline = evaluation.headline()
    for name in ("expected_lift.prospecting", "expected_incremental_lift.all",
                 "expected_lift_vs_social_only.prospecting",
                 "expected_new_customer_conversions.prospecting.federated"):  # fmt: skip
        assert math.isfinite(headline[name]), name
    within = evaluation.headline_within_se()
    row = evaluation.lift("prospecting", kind="expected")
    assert within["expected_lift.prospecting"] == pytest.approx(
        (row.ci_high - row.ci_low) / (2 * 1.959963984540054)
    )
    assert "auc.federated" not in within
    summary = evaluation.data.summary()
    assert summary["test_expected_new_customer_conversions"] == pytest.approx(
        float((evaluation.data.p1 * evaluation.data.is_new).sum())
    )


def test_evaldata_probabilities_validated_and_round_trip() -> None:
    with pytest.raises(InputError, match="only one of p0, p1 is given"):
        EvalData(**_good(), p1=[0.1, 0.2, 0.3])
    with pytest.raises(InputError, match="p1 has 1 values outside"):
        EvalData(**_good(), p0=[0.1, 0.2, 0.3], p1=[0.1, 1.2, 0.3])
    data = with_probabilities(50, seed=4)
    frame = data.to_frame()
    assert {"p0", "p1"} <= set(frame.columns)
    back = EvalData.from_frame(frame.rename(columns={m: f"score_{m}" for m in data.models}))
    np.testing.assert_array_equal(back.p1, data.p1)
    assert back.has_true_probabilities


# --------------------------------------------------------------------------------------------
# across seeds: both variances


def test_combine_seeds_floors_at_within_seed_variance_hand_case() -> None:
    points = {0: 0.1, 1: 0.2, 2: 0.3}  # between-seed sd 0.1
    t = 4.302652729911275  # t(0.975, df=2)
    small = combine_seeds(points, within_se={0: 0.05, 1: 0.05, 2: 0.05})
    # within-seed SE below the seed spread: the plain t-interval
    assert small.ci_high["value"] == pytest.approx(0.2 + t * 0.1 / math.sqrt(3))
    assert small.method["value"] == "t+within"
    large = combine_seeds(points, within_se=[0.3, 0.3, 0.3])
    assert large.ci_high["value"] == pytest.approx(0.2 + t * 0.3 / math.sqrt(3))
    assert large.t_high["value"] == pytest.approx(small.ci_high["value"])
    assert large.within_se["value"] == pytest.approx(0.3)
    assert large.between_sd["value"] == pytest.approx(0.1)
    out = large.to_dict()["summary"]["value"]
    assert out["method"] == "t+within" and out["t_ci95"][1] == pytest.approx(small.ci_high["value"])
    plain = combine_seeds(points)
    assert plain.method["value"] == "t"
    assert plain.ci_high["value"] == pytest.approx(small.ci_high["value"])
    with pytest.raises(InputError, match="within_se has 2 entries for 3 seeds"):
        combine_seeds(list(points.values()), within_se=[0.1, 0.1])


def test_combine_seeds_interval_widens_when_within_seed_noise_grows() -> None:
    """Same seeds, noisier held-out sets: the interval must not stay as narrow as the seed SD."""
    rng = np.random.default_rng(11)
    points = dict(enumerate(0.07 + rng.normal(0.0, 0.02, 10)))
    widths = []
    for se in (0.0, 0.02, 0.05, 0.1, 0.2):
        summary = combine_seeds(points, within_se={s: se for s in points})
        widths.append(summary.ci_high["value"] - summary.ci_low["value"])
        t_width = summary.t_high["value"] - summary.t_low["value"]
        assert widths[-1] >= t_width - 1e-12
    assert widths == sorted(widths) and widths[-1] > 4 * widths[0]
    # and in a simulation: per-seed lifts from real evaluations on smaller held-out sets have
    # larger bootstrap SEs, which the combined interval carries
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LiftUndefinedWarning)
        big = [evaluate(synthetic(4_000, seed=s, edge=0.3), n_bootstrap=60, seed=s)
               for s in range(3)]  # fmt: skip
        small = [evaluate(synthetic(800, seed=s, edge=0.3), n_bootstrap=60, seed=s)
                 for s in range(3)]  # fmt: skip
    w_big = combine_seeds(big).within_se["lift.prospecting"]
    w_small = combine_seeds(small).within_se["lift.prospecting"]
    assert w_small > 1.5 * w_big
    assert combine_seeds(big).method["auc.federated"] == "t"


def test_interval_coverage_small_known_truth(tmp_path) -> None:
    """The benchmark's known-truth replication, small: the 95% intervals cover the truth.

    Runs ``benchmarks/interval_coverage.py --quick`` as a script (no test imports a benchmark).
    """
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "coverage.json"
    done = subprocess.run(
        [sys.executable, str(root / "benchmarks" / "interval_coverage.py"), "--quick",
         "--out", str(out)],
        env={**os.environ, "PYTHONPATH": str(root)}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-3000:]
    (result,) = json.loads(out.read_text())["regimes"]
    for kind in ("targeting", "expected"):
        row = result["kinds"][kind]
        # 24 replications: a correct 95% interval misses more than 4 times with p ~ 3%
        assert row["coverage_t_plus_within"] >= 20 / 24, (kind, row)
        assert row["mean_width_t_plus_within"] >= row["mean_width_t"] - 1e-12
        assert abs(row["mean_estimate"] - result["estimand"]) < row["mean_width_t_plus_within"]
    # expected counts remove the conversion noise: much narrower than realized counts
    kinds = result["kinds"]
    assert kinds["expected"]["mean_within_se"] < 0.6 * kinds["targeting"]["mean_within_se"]
