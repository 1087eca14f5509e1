"""Notebook display (``_repr_html_``): results show their headline numbers, never raise.

The HTML must hold the numbers a researcher looks for (headline lift per pool with its interval
and counts, AUC per model, row counts, across-seed means), escape what it shows, and still render
for one-class labels, a missing baseline and an empty seed summary.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest

from fedads.eval import EvalData, combine_seeds, evaluate
from fedads.experiment import ExperimentResult
from fedads.federation import FederatedRun
from fedads.report.html import evaluation_html
from tests._evaldata import synthetic_eval_data


@pytest.fixture(scope="module")
def evaluation():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return evaluate(synthetic_eval_data(3_000, seed=1, edge=0.3), n_bootstrap=100, seed=0)


def test_evaluation_html_holds_the_headline_numbers(evaluation) -> None:
    text = evaluation._repr_html_()
    assert text == evaluation_html(evaluation)
    for pool in ("prospecting", "all"):
        row = evaluation.lift(pool)
        assert f"{row.point * 100:+.1f}%" in text
        assert f"{row.ci_low * 100:+.1f}% to {row.ci_high * 100:+.1f}%" in text
        assert f"{row.model_count:,} vs {row.baseline_count:,}" in text
    for model in evaluation.models:
        assert f"{evaluation.metrics[model]['overall'].auc:.4f}" in text
    assert f"{evaluation.data.n:,} held-out users" in text
    assert "<script" not in text


def test_experiment_result_html_adds_counts_and_run(evaluation) -> None:
    run = FederatedRun(
        values={},
        social_rows=np.arange(3),
        ecommerce_rows=np.arange(3),
        traffic={"social->coordinator": 1_000, "coordinator->social": 234},
        backend="inprocess",
        elapsed_s=12.34,
    )
    summary = {"social_rows": 12_345, "ecommerce_rows": 10_000, "aligned": 6_500, "test_users": 1}
    result = ExperimentResult(evaluation, run, summary, scores=None)  # type: ignore[arg-type]
    text = result._repr_html_()
    for needle in ("12,345", "10,000", "6,500", "inprocess", "12.3", "1,234"):
        assert needle in text, needle
    assert evaluation_html(evaluation) in text


def test_privacy_block_is_shown_when_present(evaluation) -> None:
    run = FederatedRun({}, np.arange(2), np.arange(2), {}, "inprocess")
    result = ExperimentResult(evaluation, run, {}, scores=None)  # type: ignore[arg-type]
    assert "Label privacy" not in result._repr_html_()
    result.privacy = {  # the block a run with fedads.privacy carries
        "label_leakage": {"norm": {"auc": 0.21, "auc_either_sign": 0.79}},
        "relay_label_leakage": {"norm": {"auc": 0.21, "auc_either_sign": 0.79}},
        "worst_leak_auc": 0.987,
        "defense": {"name": "gaussian", "strength": 4.0, "undefended": False, "epsilon": 3.19},
    }
    text = result._repr_html_()
    for needle in ("Label privacy", "gaussian", "epsilon 3.19", "0.987", "0.790"):
        assert needle in text, needle


def test_one_class_labels_and_missing_baseline_render_as_na() -> None:
    n = 400
    rng = np.random.default_rng(0)
    data = EvalData(
        label=np.ones(n, dtype=int),  # one class: AUC undefined
        is_existing_customer=(rng.random(n) < 0.3).astype(int),
        scores={"federated": rng.random(n), "ecommerce_only": rng.random(n)},
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        one_class = evaluate(data, n_bootstrap=20)
        alone = evaluate(
            EvalData(
                label=(rng.random(n) < 0.1).astype(int),
                is_existing_customer=np.zeros(n, dtype=int),
                scores={"federated": rng.random(n)},
            ),
            n_bootstrap=0,
        )
    text = one_class._repr_html_()
    assert "n/a" in text and math.isnan(one_class.metrics["federated"]["overall"].auc)
    text = alone._repr_html_()
    assert "No lift rows" in text and "federated" in text


def test_text_is_escaped(evaluation) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = combine_seeds({0: {"<b>q</b>": 1.0}, 1: {"<b>q</b>": 2.0}})
    text = summary._repr_html_()
    assert "<b>q</b>" not in text and "&lt;b&gt;q&lt;/b&gt;" in text


def test_seed_summary_html_shows_means_and_intervals(evaluation) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        summary = combine_seeds(
            {
                0: {"lift.prospecting": 0.1, "auc.federated": 0.7},
                1: {"lift.prospecting": 0.3, "auc.federated": 0.72},
                2: {"lift.prospecting": 0.2, "auc.federated": math.nan},
            }
        )
        single = combine_seeds({0: 0.5})
    text = summary._repr_html_()
    assert "+20.0%" in text  # mean lift as a percentage
    low, high = summary.ci_low["lift.prospecting"], summary.ci_high["lift.prospecting"]
    assert f"{low * 100:+.1f}% to {high * 100:+.1f}%" in text
    assert "0.7100" in text and "3 seed(s)" in text
    assert "n/a" in single._repr_html_()  # one seed: no interval
