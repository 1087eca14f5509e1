"""Tests of the report layer: report.json contract, strict JSON, scores.csv, plots, verdict."""

from __future__ import annotations

import json
import math
import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from _evaldata import synthetic_eval_data

from fedads.errors import InputError
from fedads.eval import MODELS, EvalData, LiftUndefinedWarning, evaluate
from fedads.report import (
    ReportPaths,
    read_scores_csv,
    recompute_lift_from_scores,
    verdict,
    write_report,
)
from fedads.report.markdown import _claim_position

SUMMARY = {"social_rows": 9_000, "ecommerce_rows": 6_000, "aligned": 4_000}


def synthetic(n: int, seed: int = 0, *, edge: float = 0.0, ties: bool = False) -> EvalData:
    """Random held-out users with keys (see tests/_evaldata.py); ties round to 2 decimals."""
    return synthetic_eval_data(n, seed, edge=edge, ties_decimals=2 if ties else None, keys=True)


def strict_load(path: Path) -> dict:
    def reject(constant: str) -> None:
        raise AssertionError(f"non-strict JSON constant {constant}")

    return json.loads(path.read_text(encoding="utf-8"), parse_constant=reject)


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[ReportPaths, object]:
    data = synthetic(3_000, seed=1, ties=True)
    evaluation = evaluate(data, n_bootstrap=200, seed=5)
    out = tmp_path_factory.mktemp("report")
    paths = write_report(out, evaluation, SUMMARY, {"config": {"epochs": 3}})
    return paths, evaluation


def test_report_contract_keys(report: tuple[ReportPaths, object]) -> None:
    paths, evaluation = report
    doc = strict_load(paths.json)
    for key in ("social_rows", "ecommerce_rows", "aligned", "test_users"):
        assert isinstance(doc["data"][key], int)
    assert doc["data"]["test_users"] == 3_000
    assert doc["budget"] == pytest.approx(0.10)
    for model in MODELS:
        assert isinstance(doc["models"][model]["auc"], float)
        assert isinstance(doc["models"][model]["logloss"], float)
    for pool in ("all", "prospecting"):
        entry = doc["lift"][pool]
        assert isinstance(entry["point"], float)
        assert len(entry["ci95"]) == 2 and all(isinstance(v, float) for v in entry["ci95"])
        assert entry["ci95"][0] <= entry["ci95"][1]
        assert entry["point"] == pytest.approx(evaluation.lift(pool).point)
    assert doc["lift_incremental"]["prospecting"]["kind"] == "incremental"
    assert len(doc["lift_detail"]) == 3 * 2 * 3 * 2  # baselines x pools x budgets x kinds
    assert doc["extra"] == {"config": {"epochs": 3}}
    assert doc["seed"] == 5 and isinstance(doc["verdict"], str)


@pytest.mark.filterwarnings("ignore::fedads.eval.LiftUndefinedWarning")
def test_report_json_is_strict_with_undefined_values(tmp_path: Path) -> None:
    # One existing customer who did not convert: AUC and pred/obs of that segment are NaN.
    rng = np.random.default_rng(2)
    n = 400
    existing = np.zeros(n, dtype=int)
    existing[0] = 1
    label = (rng.random(n) < 0.2).astype(int)
    label[0] = 0
    scores = {m: rng.random(n) for m in ("federated", "ecommerce_only")}
    evaluation = evaluate(EvalData(label, existing, scores), n_bootstrap=20)
    paths = write_report(tmp_path, evaluation, {**SUMMARY, "test_users": n})
    text = paths.json.read_text(encoding="utf-8")
    assert not re.search(r"[:\[,]\s*(NaN|-?Infinity)\b", text)
    doc = strict_load(paths.json)
    assert doc["models"]["federated"]["segments"]["existing"]["auc"] is None
    assert any(
        "one class" in note for note in doc["models"]["federated"]["segments"]["existing"]["notes"]
    )
    # models that were not run are omitted, not null
    assert set(doc["models"]) == {"federated", "ecommerce_only"}
    assert doc["lift_incremental"] is None


def test_missing_baseline_gives_null_lift(tmp_path: Path) -> None:
    data = synthetic(1_000, seed=3)
    only = EvalData(
        data.label,
        data.is_existing_customer,
        {"federated": data.scores["federated"]},
        keys=data.keys,
    )
    paths = write_report(tmp_path, evaluate(only, n_bootstrap=10), SUMMARY, plots=False)
    doc = strict_load(paths.json)
    for pool in ("all", "prospecting"):
        assert doc["lift"][pool]["point"] is None
        assert doc["lift"][pool]["ci95"] == [None, None]
        assert "not evaluated" in doc["lift"][pool]["reason"]
    assert "No headline lift" in doc["verdict"]


def test_scores_csv_layout(report: tuple[ReportPaths, object]) -> None:
    paths, evaluation = report
    frame = pd.read_csv(paths.scores, dtype={"key": str})
    assert list(frame.columns) == ["key", "label", "is_existing_customer", *MODELS]
    assert len(frame) == evaluation.data.n
    assert frame["key"].tolist() == evaluation.data.keys.tolist()
    np.testing.assert_array_equal(
        frame["federated"].to_numpy(), evaluation.data.scores["federated"]
    )  # bit-exact
    back = read_scores_csv(paths.scores)
    assert back.models == MODELS


@pytest.mark.filterwarnings("ignore::fedads.eval.LiftUndefinedWarning")
def test_scores_csv_custom_key_column(tmp_path: Path) -> None:
    data = synthetic(500, seed=4)
    paths = write_report(
        tmp_path, evaluate(data, n_bootstrap=0), SUMMARY, key_column="ecom_user_id", plots=False
    )
    frame = pd.read_csv(paths.scores)
    assert frame.columns[0] == "ecom_user_id"
    assert paths.plots == {}
    value = recompute_lift_from_scores(
        paths.scores, 0.1, "all", "federated", "ecommerce_only", key_column="ecom_user_id"
    )
    assert value == strict_load(paths.json)["lift"]["all"]["point"]
    with pytest.raises(InputError, match="clashes"):
        write_report(tmp_path, evaluate(data, n_bootstrap=0), SUMMARY, key_column="label")


def test_lift_recomputed_from_scores_equals_report(report: tuple[ReportPaths, object]) -> None:
    paths, evaluation = report
    doc = strict_load(paths.json)
    for pool in ("all", "prospecting"):
        recomputed = recompute_lift_from_scores(
            paths.scores, doc["budget"], pool, "federated", "ecommerce_only"
        )
        assert recomputed == doc["lift"][pool]["point"]  # exact, ties included
    for row in doc["lift_detail"]:
        if row["kind"] != "targeting":
            continue
        recomputed = recompute_lift_from_scores(
            paths.scores, row["budget"], row["pool"], row["model"], row["baseline"]
        )
        assert recomputed == row["point"]


def test_plots_written_and_non_empty(report: tuple[ReportPaths, object]) -> None:
    paths, _ = report
    expected = {
        "new_customers_vs_budget_all",
        "new_customers_vs_budget_prospecting",
        "gains_existing",
        "gains_new",
    }
    assert set(paths.plots) == expected
    for path in paths.plots.values():
        content = path.read_bytes()
        assert len(content) > 1_000
        assert content[:8] == b"\x89PNG\r\n\x1a\n"
    assert all(p.exists() for p in paths.all())


def test_markdown_has_tables_and_verdict(report: tuple[ReportPaths, object]) -> None:
    paths, evaluation = report
    text = paths.markdown.read_text(encoding="utf-8")
    for heading in ("## Verdict", "## Models", "## Lift", "## Targeting", "## Plots"):
        assert heading in text
    assert "| federated |" in text
    assert verdict(evaluation) in text
    assert "95% CI" in text


def test_verdict_words_follow_the_numbers() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", LiftUndefinedWarning)
        better = evaluate(synthetic(5_000, seed=6, edge=0.6), budgets=(0.1,), n_bootstrap=200)
        data = synthetic(3_000, seed=7)
        same_scores = dict(data.scores)
        same_scores["federated"] = same_scores["ecommerce_only"]
        same = evaluate(
            EvalData(data.label, data.is_existing_customer, same_scores),
            budgets=(0.1,),
            n_bootstrap=100,
        )
    assert better.lift("prospecting").ci_low > 0
    assert "The interval excludes 0" in verdict(better)
    assert same.lift("prospecting").point == 0.0
    text = verdict(same)
    assert "The interval covers 0" in text and "+0.0%" in text
    assert "below the claimed +15% to +25%" in text
    assert "incremental lift is not reported" in text


def test_claim_position() -> None:
    claim = (0.15, 0.25)
    assert _claim_position(-0.1, 0.1, claim) == "below"
    assert _claim_position(0.3, 0.4, claim) == "above"
    assert _claim_position(0.16, 0.24, claim) == "within"
    assert _claim_position(0.1, 0.2, claim) == "overlaps"
    assert _claim_position(0.1, 0.3, claim) == "overlaps"


@pytest.mark.parametrize(
    ("summary", "message"),
    [
        ({"social_rows": 10, "ecommerce_rows": 10}, "data_summary has no 'aligned'"),
        ({**SUMMARY, "aligned": -1}, "aligned=-1 is too small"),
        ({**SUMMARY, "aligned": 10_000}, "exceeds a party's row count"),
        ({**SUMMARY, "test_users": 7}, "test_users=7 but the evaluation has 500 users"),
        ({"social_rows": 900, "ecommerce_rows": 900, "aligned": 100}, "only 100 are aligned"),
        ({**SUMMARY, "when": object()}, "not JSON-compatible"),
    ],
)
def test_write_report_rejects_bad_summary(tmp_path: Path, summary: dict, message: str) -> None:
    evaluation = evaluate(synthetic(500, seed=8), n_bootstrap=0)
    with pytest.raises(InputError, match=message) as info:
        write_report(tmp_path, evaluation, summary)
    assert str(info.value).startswith("write_report")


def test_write_report_rejects_non_evaluation(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="pass the result of evaluate"):
        write_report(tmp_path, {"lift": 1}, SUMMARY)  # type: ignore[arg-type]


def test_recompute_rejects_bad_input(report: tuple[ReportPaths, object], tmp_path: Path) -> None:
    paths, _ = report
    with pytest.raises(InputError, match="file not found"):
        recompute_lift_from_scores(tmp_path / "nope.csv", 0.1, "all", "federated", "ecommerce_only")
    with pytest.raises(InputError, match="pool='some' is not supported"):
        recompute_lift_from_scores(paths.scores, 0.1, "some", "federated", "ecommerce_only")
    with pytest.raises(InputError, match="model='random' is not supported"):
        recompute_lift_from_scores(paths.scores, 0.1, "all", "random", "ecommerce_only")
    assert math.isfinite(
        recompute_lift_from_scores(paths.scores, 0.05, "all", "federated", "social_only")
    )


def _with_probabilities(n: int, seed: int) -> EvalData:
    """Held-out users of a known world: true p0/p1, outcomes drawn from them, five models."""
    rng = np.random.default_rng(seed)
    existing = (rng.random(n) < 0.3).astype(int)
    p0 = rng.uniform(0.005, 0.06, n)
    p1 = np.clip(p0 * 1.6, 0.0, 1.0)
    draw = rng.random(n)
    y0, y1 = (draw < p0).astype(int), (draw < p1).astype(int)
    models = (*MODELS, "ecommerce_gbdt")
    scores = {m: np.clip(p1 + rng.normal(0.0, 0.02 + 0.01 * i, n), 0, 1) for i, m in
              enumerate(models)}  # fmt: skip
    return EvalData(
        label=y1, is_existing_customer=existing, scores=scores, y0=y0, y1=y1, p0=p0, p1=p1
    )


@pytest.mark.filterwarnings("ignore::fedads.eval.LiftUndefinedWarning")
def test_report_expected_lift_and_lift_by_baseline(tmp_path: Path) -> None:
    from fedads.eval import select_top_k, tie_breaker

    data = _with_probabilities(4_000, seed=7)
    baselines = ("ecommerce_only", "social_only", "centralized", "ecommerce_gbdt")
    evaluation = evaluate(
        data, n_bootstrap=100, seed=3, baselines=baselines, strongest_baseline="ecommerce_gbdt"
    )
    doc = strict_load(write_report(tmp_path, evaluation, SUMMARY, plots=False).json)
    assert isinstance(doc["models"]["ecommerce_gbdt"]["auc"], float)
    k = evaluation.headline_k
    tie = tie_breaker(data.n, 3)
    for pool in ("all", "prospecting"):
        expected = doc["lift"][pool]["expected"]
        eligible = data.pool_mask(pool)
        # by hand: sum of p1 over the selected new customers, federated / ecommerce_only - 1
        counts = [
            float((data.p1 * data.is_new)[select_top_k(data.scores[m], k, tie_break=tie,
                                                       eligible=eligible)].sum())
            for m in ("federated", "ecommerce_only")
        ]  # fmt: skip
        assert expected["point"] == pytest.approx(counts[0] / counts[1] - 1)
        low, high = expected["ci95"]
        assert low <= expected["point"] <= high
        assert doc["lift"][pool]["point"] == pytest.approx(evaluation.lift(pool).point)
        for baseline in (*baselines, "strongest_ecommerce"):
            entry = doc["lift_by_baseline"][baseline][pool]
            assert isinstance(entry["point"], float) and len(entry["ci95"]) == 2
            assert isinstance(entry["expected"]["point"], float)
        assert doc["lift_by_baseline"]["strongest_ecommerce"][pool]["name"] == "ecommerce_gbdt"
        assert doc["lift_by_baseline"]["strongest_ecommerce"][pool]["point"] == pytest.approx(
            doc["lift_by_baseline"]["ecommerce_gbdt"][pool]["point"]
        )
    assert doc["strongest_ecommerce"] == "ecommerce_gbdt"
    markdown = (tmp_path / "report.md").read_text()
    assert "## Lift by baseline" in markdown and "expected lift" in markdown


def test_report_without_probabilities_has_no_expected_block(report) -> None:
    paths, _ = report
    doc = strict_load(paths.json)
    assert "expected" not in doc["lift"]["prospecting"]
    assert set(doc["lift_by_baseline"]) == {"ecommerce_only", "social_only", "centralized"}
    assert "strongest_ecommerce" not in doc["lift_by_baseline"]


def test_report_campaign_block_contract(tmp_path: Path) -> None:
    """``campaign``: test_users, aligned_test_users, lift.<pool> with point and ci95 (strict
    JSON), and a ``## Campaign view`` section in report.md; absent without a campaign."""
    from fedads.eval.campaign import CampaignSplit, campaign_block

    data = synthetic(2_000, seed=3)
    aligned_eval = evaluate(data, n_bootstrap=50, seed=1)
    scores = {
        "federated": data.scores["federated"],
        "ecommerce_gbdt": data.scores["ecommerce_only"],
    }
    campaign_data = EvalData(data.label, data.is_existing_customer, scores)
    campaign_eval = evaluate(campaign_data, n_bootstrap=50, seed=1, baselines=("ecommerce_gbdt",))
    aligned = np.arange(2_000) < 1_300
    split = CampaignSplit(np.arange(2_000), aligned, np.arange(2_000, 7_000))
    block = campaign_block(campaign_eval, split, baseline="ecommerce_gbdt")
    paths = write_report(tmp_path / "c", aligned_eval, SUMMARY, campaign=block)
    doc = strict_load(paths.json)["campaign"]
    assert (doc["test_users"], doc["aligned_test_users"], doc["unaligned_test_users"]) == (
        2_000,
        1_300,
        700,
    )
    for pool in ("all", "prospecting"):
        entry = doc["lift"][pool]
        assert entry["point"] == pytest.approx(campaign_eval.lift(pool).point)
        assert len(entry["ci95"]) == 2 and entry["ci95"][0] <= entry["ci95"][1]
    assert set(doc["auc_by_stratum"]) == {"aligned", "unaligned"}
    assert "## Campaign view" in paths.markdown.read_text(encoding="utf-8")
    plain = write_report(tmp_path / "p", aligned_eval, SUMMARY)
    assert "campaign" not in strict_load(plain.json)
