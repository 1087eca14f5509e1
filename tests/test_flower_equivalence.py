"""Through Flower's simulation engine = in process: ONE Flower run checked every way.

A Flower simulation costs 15-40 s on 2 cores (Ray, two actors that import torch), almost all of
it start-up, so one run (``flower``, module fixture) carries every feature whose Flower path
was tested on its own before, and is compared with ONE in-process run (``reference``) of the
same settings on the same tables:

* the README's bring-your-own-data shape: a key named ``phone_hash``, a label named
  ``converted``, a CSV and a Parquet file, a declared categorical column that looks numeric;
  run through :class:`~fedads.Experiment` (default backend, default references) and written as
  a report (the report contract, the lift recomputed from ``scores.csv``);
* user-defined towers named as ``"module:attr"`` from tests/test_zoo.py (Ray workers import
  them) next to a zoo tower;
* early stopping through the protocol (validation users, patience 2, the best epoch restored
  from the parties' checkpoints, which Flower rebuilds between messages);
* alignment reuse: the Flower run reuses the in-process run's PSI rows and runs no PSI;
* the default label defense: its noise depends on the seed and the step only (not on the party
  being rebuilt between messages), so the observers' leak is the same;
* the campaign view (``campaign=True``, issue 15): the label party scores its training users too
  (job key ``score-train``), the local serving model is distilled from them, and the campaign's
  numbers equal those of the same steps on the in-process run.

Each equivalence is its own test (tests below), so each can fail alone. Exact mode equal to
centralized training is a property of the protocol, checked in process (tests/test_experiment.py,
tests/test_zoo.py, tests/test_protocol.py); that the Flower transport changes no number is
checked here.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from _tables import centralized_reference, readme_shaped_tables
from sklearn.metrics import roc_auc_score

from fedads.experiment import Experiment, ExperimentConfig, ExperimentResult, evaluate_campaign
from fedads.federation import FederatedRun, FederationSettings, run_federated
from fedads.models import ModelConfig
from fedads.privacy.leakage import privacy_report
from fedads.protocol import ProtocolConfig
from fedads.report import recompute_lift_from_scores
from fedads.serving import fit_local_serving

HERE = Path(__file__).resolve().parent
MODELS = ("federated", "ecommerce_only", "social_only", "centralized")
#: tests/test_zoo.py's user-defined towers (a custom bottom and top) and a zoo bottom.
USER_TOWERS = ModelConfig(
    social_bottom="test_zoo:tiny_bottom", ecommerce_bottom="dcn_v2", top="test_zoo:tiny_top"
)
PROTOCOL = ProtocolConfig(
    mode="efficient",
    batch_size=256,
    chunk_batches=16,  # one training message per epoch: the Flower run's cost is per message
    epochs=6,
    lr=0.02,  # high: the validation loss turns up within a few epochs (early stopping bites)
    seed=3,
    early_stopping_patience=2,
    model=USER_TOWERS,
    # the default label defense (and strength): its noise is drawn again after every restore
)
SETTINGS = FederationSettings(
    protocol=PROTOCOL, split_seed=3, valid_share=0.25, min_query_rows=64, verbose=False
)


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    return readme_shaped_tables(tmp_path_factory.mktemp("tables"), n_users=3_000)


@pytest.fixture(scope="module")
def reference(tables) -> FederatedRun:
    """The in-process run, PSI included, with one torch thread as in Flower's Ray workers
    (float sums in the same order)."""
    social, shop = tables
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_federated(social, shop, SETTINGS, backend="inprocess", score_train=True)
    finally:
        torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def flower(tables, reference, tmp_path_factory) -> tuple[ExperimentResult, Path]:
    """THE Flower run: the experiment facade, default backend, reusing ``reference``'s rows."""
    out = tmp_path_factory.mktemp("report")
    social, shop = tables
    config = ExperimentConfig(federation=SETTINGS, n_bootstrap=100, campaign=True)
    assert config.backend == "simulation"  # the default backend (where issue 16's bug was)
    with pytest.MonkeyPatch.context() as patch:
        # Ray workers inherit the environment: let them import tests/test_zoo.py by name.
        patch.setenv(
            "PYTHONPATH", os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")]))
        )
        result = Experiment.from_tables(social, shop, config).run(
            out, verbose=False, alignment=reference
        )
    return result, out


def test_report_contract_and_lift_recomputed_from_scores(flower) -> None:
    result, out = flower
    report = json.loads((out / "report.json").read_text())
    data = report["data"]
    assert data["aligned"] == result.federated.values["n_aligned"]
    assert data["social_rows"] > data["aligned"] and data["ecommerce_rows"] > data["aligned"]
    assert data["test_users"] == len(result.federated.values["test_positions"])
    for model in (*MODELS, "ecommerce_gbdt"):  # the default references
        assert 0.0 < report["models"][model]["auc"] < 1.0, model
        assert report["models"][model]["logloss"] > 0
    recomputed_pools = 0
    for pool in ("all", "prospecting"):
        lift = report["lift"][pool]
        assert len(lift["ci95"]) == 2
        if lift["point"] is not None:
            recomputed = recompute_lift_from_scores(
                out / "scores.csv", report["budget"], pool, key_column="phone_hash"
            )
            assert recomputed == pytest.approx(lift["point"])
            recomputed_pools += 1
    assert recomputed_pools > 0, "no lift to recompute: the check would not bite"
    scores = (out / "scores.csv").read_text().splitlines()
    assert len(scores) == data["test_users"] + 1
    header = scores[0].split(",")
    assert header[0] == "phone_hash"  # the party's own key name, not the settings'
    assert {"label", "is_existing_customer", *MODELS} <= set(header)
    assert any(p.suffix == ".png" for p in out.iterdir())


def test_inprocess_transport_reproduces_flower_scores(tables, reference, flower) -> None:
    """Same seed, same parties, same job: the in-process transport gives Flower's numbers.

    Column names live with each party's table, not in shared settings (issue #16): the Flower
    simulation reloads each table from its party-private Parquet file with the same roles, so
    it trains exactly what the in-process run trains."""
    run = flower[0].federated
    social, _ = tables
    assert "active_days_30d" in social.categorical_columns
    assert run.backend == "simulation" and reference.backend == "inprocess"
    np.testing.assert_array_equal(run.ecommerce_rows, reference.ecommerce_rows)
    np.testing.assert_array_equal(run.values["test_positions"], reference.values["test_positions"])
    assert len(run.values["test_positions"]) > 100
    np.testing.assert_allclose(
        run.values["epoch_losses"], reference.values["epoch_losses"], rtol=1e-6
    )
    # Equal to float32 rounding: Ray's worker and this process can order a sum differently
    # (differences up to 4e-8 were seen in 2 of about 8 runs); any real difference is far larger.
    np.testing.assert_allclose(
        run.values["scores"], reference.values["scores"], rtol=1e-6, atol=1e-7
    )


def test_user_tower_trains_through_flower_simulation_like_in_process(
    tables, reference, flower
) -> None:
    """The Check of issue 16: towers defined in a test module, named as "module:attr", train
    through Flower's simulation engine (Ray workers import them) and in process, with identical
    held-out scores for the same seed, and they learn something."""
    run = flower[0].federated
    _, shop = tables
    assert PROTOCOL.model.social_bottom == "test_zoo:tiny_bottom"
    assert PROTOCOL.model.top == "test_zoo:tiny_top"
    np.testing.assert_allclose(
        run.values["scores"], reference.values["scores"], rtol=1e-6, atol=1e-7
    )
    labels = shop.labels(reference.ecommerce_rows[reference.values["test_positions"]])
    assert roc_auc_score(labels, reference.values["scores"]) > 0.5


def test_flower_simulation_stops_at_the_same_epoch_with_the_same_scores(reference, flower) -> None:
    run = flower[0].federated
    losses = reference.values["epoch_valid_losses"]
    assert losses.size < PROTOCOL.epochs, "the case must stop early to test the restore"
    assert int(run.values["best_epoch"]) == int(reference.values["best_epoch"])
    assert int(reference.values["best_epoch"]) < losses.size  # a restore to an earlier epoch
    np.testing.assert_allclose(run.values["epoch_valid_losses"], losses, rtol=0, atol=1e-6)
    np.testing.assert_allclose(run.values["scores"], reference.values["scores"], rtol=0, atol=1e-6)


def test_reused_alignment_through_flower_simulation_equals_the_psi_run(reference, flower) -> None:
    run = flower[0].federated
    np.testing.assert_array_equal(run.social_rows, reference.social_rows)
    np.testing.assert_array_equal(run.ecommerce_rows, reference.ecommerce_rows)
    for name in ("n_aligned", "n_social", "n_ecommerce"):
        assert int(run.values[name]) == int(reference.values[name]), name
    for name in ("train_positions", "valid_positions", "test_positions"):
        np.testing.assert_array_equal(run.values[name], reference.values[name], err_msg=name)
    for name in ("scores", "epoch_losses"):
        np.testing.assert_allclose(
            run.values[name], reference.values[name], rtol=1e-6, atol=1e-7, err_msg=name
        )
    # No PSI ran through Flower: its bytes (both parties' blinded key sets) are missing.
    assert sum(run.traffic.values()) < sum(reference.traffic.values()), (
        run.traffic,
        reference.traffic,
    )


#: Leak AUCs may differ in the last bit: scores equal to float32 rounding (the user towers, see
#: above) keep every rank but can group thresholds differently in the AUC's sum (1e-16 seen).
#: One changed rank moves an AUC by 0.5 / (positives x negatives), about 1e-5 here.
LEAK_AUC_ABS = 1e-9


def _same_leak(got: object, want: object, where: str = "leak") -> None:
    """Equal nested dicts/lists; numbers to :data:`LEAK_AUC_ABS` (row counts exactly)."""
    if isinstance(want, dict):
        assert isinstance(got, dict) and set(got) == set(want), (where, got, want)
        for key in want:
            _same_leak(got[key], want[key], f"{where}.{key}")
    elif isinstance(want, list | tuple):
        assert isinstance(got, list | tuple) and len(got) == len(want), (where, got, want)
        for i, (g, w) in enumerate(zip(got, want, strict=True)):
            _same_leak(g, w, f"{where}[{i}]")
    elif isinstance(want, float):
        assert got == pytest.approx(want, rel=0, abs=LEAK_AUC_ABS), (where, got, want)
    else:
        assert got == want, (where, got, want)


def test_leak_is_the_same_through_flower_simulation(tables, reference, flower) -> None:
    """With the default defense: its noise must not depend on the party being rebuilt between
    messages (Flower restores it from a checkpoint), only on the seed and the step."""
    result = flower[0]
    social, shop = tables
    assert PROTOCOL.defense != "none"
    inprocess = privacy_report(reference, social, shop, PROTOCOL, feature_inference=False)
    assert inprocess["label_leakage"]  # the social party's view: per attack, AUC per epoch
    # Sealed payloads (the default): the relay sees no gradients, on either transport.
    _same_leak(result.privacy["label_leakage"], inprocess["label_leakage"])
    _same_leak(result.privacy["relay_label_leakage"], inprocess["relay_label_leakage"])


def test_the_experiments_centralized_reference_is_the_split_model_trained_pooled(
    tables, flower
) -> None:
    """The report's ``centralized`` column: the same architecture (user towers included),
    trained on pooled features of the Flower run's aligned train users."""
    result = flower[0]
    social, ecommerce = tables
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        _, scores = centralized_reference(social, ecommerce, result.federated, PROTOCOL)
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_allclose(result.scores["centralized"], scores, rtol=1e-5, atol=1e-7)


def test_campaign_view_through_flower_simulation_equals_in_process(
    tables, reference, flower
) -> None:
    """Issue 15 item 6: the same seed gives the same campaign numbers through Flower's
    simulation engine as in process: the teacher scores of the training users, the local
    serving model distilled from them, the held-out population and every campaign lift.
    Own tables without a truth file: realized counts only."""
    result, out = flower
    social, shop = tables
    run = result.federated
    np.testing.assert_array_equal(
        run.values["train_positions"], reference.values["train_positions"]
    )
    np.testing.assert_allclose(
        run.values["train_scores"], reference.values["train_scores"], rtol=1e-6, atol=1e-7
    )
    config = ExperimentConfig(federation=SETTINGS, n_bootstrap=100, campaign=True)
    train = reference.values["train_positions"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:  # the steps Experiment.run takes, on the in-process run
        local = fit_local_serving(
            shop, reference.ecommerce_rows[train], reference.values["train_scores"], PROTOCOL
        )
        want = evaluate_campaign(social, shop, reference, local, config)
    finally:
        torch.set_num_threads(threads)
    got = result.campaign
    assert got is not None and got.block["unaligned_test_users"] > 0
    np.testing.assert_array_equal(got.split.test_rows, want.split.test_rows)
    for name, scores in want.evaluation.data.scores.items():
        np.testing.assert_allclose(
            got.evaluation.data.scores[name], scores, rtol=1e-5, atol=1e-6, err_msg=name
        )
    report = json.loads((out / "report.json").read_text())["campaign"]
    assert report["test_users"] == want.block["test_users"]
    for pool in ("all", "prospecting"):
        entry, expected = report["lift"][pool], want.block["lift"][pool]
        assert "expected" not in entry  # no truth table
        for key in ("model_new_customer_conversions", "baseline_new_customer_conversions"):
            assert entry[key] == expected[key], (pool, key)
        assert entry["point"] == pytest.approx(expected["point"], nan_ok=True)
        assert entry["ci95"] == pytest.approx(expected["ci95"], nan_ok=True)
