"""End to end: world -> PSI -> federated training through Flower -> references -> report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fedads.experiment import Experiment, ExperimentConfig, ExperimentResult
from fedads.federation import FederationSettings, run_federated, split_positions
from fedads.models import FeatureEncoder, build_model, predict_local, train_local
from fedads.protocol import ProtocolConfig
from fedads.report import recompute_lift_from_scores
from fedads.world import WorldConfig, generate_world

MODELS = ("federated", "ecommerce_only", "social_only", "centralized")


def _config(backend: str) -> ExperimentConfig:
    protocol = ProtocolConfig(mode="efficient", batch_size=512, chunk_batches=8, epochs=4, seed=0)
    return ExperimentConfig(
        world=WorldConfig(n_users=40_000, seed=0),
        federation=FederationSettings(protocol=protocol, verbose=False),
        backend=backend,
        n_bootstrap=300,
    )


@pytest.fixture(scope="module")
def flower_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[ExperimentResult, Path]:
    """One small federation through Flower's simulation engine, shared by the tests below."""
    out = tmp_path_factory.mktemp("report")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = Experiment.from_world(_config("simulation")).run(out, verbose=False)
    finally:
        torch.set_num_threads(threads)
    return result, out


def test_federated_auc_beats_ecommerce_only_on_default_world(flower_run) -> None:
    result, _ = flower_run
    headline = result.evaluation.headline()
    # The default world gives social features a modest share of brand intent (docs/world.md):
    # the joint model must see it on held-out users; a margin keeps the test meaningful.
    assert headline["auc.federated"] > headline["auc.ecommerce_only"] + 0.003, headline
    # The centralized upper bound trains the same architecture on pooled data, without the
    # default label defense (noise on the gradients the label party sends, docs/privacy.md):
    # close to federated, less the defense's measured cost (0.015 at this size, 0.005 at 30k).
    assert 0.0 <= headline["auc.centralized"] - headline["auc.federated"] < 0.025, headline
    assert headline["auc.social_only"] < headline["auc.ecommerce_only"], headline


def test_report_contract_and_lift_recomputed_from_scores(flower_run) -> None:
    result, out = flower_run
    report = json.loads((out / "report.json").read_text())
    data = report["data"]
    assert data["aligned"] == result.federated.values["n_aligned"]
    assert data["social_rows"] > data["aligned"] and data["ecommerce_rows"] > data["aligned"]
    assert data["test_users"] == len(result.federated.values["test_positions"])
    for model in MODELS:
        assert 0.5 < report["models"][model]["auc"] < 1.0 or model == "social_only"
        assert report["models"][model]["logloss"] > 0
    for pool in ("all", "prospecting"):
        lift = report["lift"][pool]
        assert len(lift["ci95"]) == 2
        if lift["point"] is not None:
            recomputed = recompute_lift_from_scores(out / "scores.csv", report["budget"], pool)
            assert recomputed == pytest.approx(lift["point"])
    scores = (out / "scores.csv").read_text().splitlines()
    assert len(scores) == data["test_users"] + 1
    header = scores[0].split(",")
    assert {"key", "label", "is_existing_customer", *MODELS} <= set(header)
    assert any(p.suffix == ".png" for p in out.iterdir())


def test_inprocess_transport_reproduces_flower_scores(flower_run) -> None:
    """Same seed, same parties, same job: the in-process transport gives Flower's numbers."""
    result, _ = flower_run
    config = _config("inprocess")
    world = generate_world(config.world)
    social, ecommerce = world.party_tables()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run = run_federated(social, ecommerce, config.federation, backend="inprocess")
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_array_equal(run.ecommerce_rows, result.federated.ecommerce_rows)
    np.testing.assert_array_equal(
        run.values["test_positions"], result.federated.values["test_positions"]
    )
    np.testing.assert_allclose(
        run.values["epoch_losses"], result.federated.values["epoch_losses"], rtol=1e-6
    )
    np.testing.assert_allclose(run.values["scores"], result.federated.values["scores"], rtol=1e-5)


def _centralized_reference(social, ecommerce, run, protocol: ProtocolConfig):
    train = np.asarray(run.values["train_positions"])
    test = np.asarray(run.values["test_positions"])
    inputs, specs = {}, {}
    for name, table, rows in (
        ("social", social, run.social_rows),
        ("ecommerce", ecommerce, run.ecommerce_rows),
    ):
        numeric, categorical = table.numeric_matrix(rows), table.categorical_matrix(rows)
        encoder = FeatureEncoder().fit(numeric, categorical, train)
        inputs[name] = encoder.transform(numeric, categorical)
        specs[name] = encoder.spec
    model = build_model("centralized", specs, protocol.model, protocol.seed)
    history = train_local(model, inputs, ecommerce.labels(run.ecommerce_rows), train, protocol)
    return history, predict_local(model, inputs, test)


def test_exact_mode_through_flower_equals_centralized_training() -> None:
    """Exact mode = the same updates as centralized training of the same split model.

    Tolerance: relative 1e-5 on epoch losses and scores (float32 arithmetic in the same order;
    observed differences are 0). Efficient mode on the same data must differ, so the check bites.
    """
    world = generate_world(WorldConfig(n_users=2_000, seed=3))
    social, ecommerce = world.party_tables()
    # Undefended: exact mode equals centralized training only on true gradients.
    protocol = ProtocolConfig(mode="exact", batch_size=256, epochs=2, seed=3, defense="none")
    settings = FederationSettings(protocol=protocol, split_seed=3, verbose=False)
    run = run_federated(social, ecommerce, settings, backend="simulation")
    history, scores = _centralized_reference(social, ecommerce, run, protocol)
    np.testing.assert_allclose(run.values["epoch_losses"], history.epoch_losses, rtol=1e-5)
    np.testing.assert_allclose(run.values["scores"], scores, rtol=1e-5, atol=1e-7)

    efficient = FederationSettings(
        protocol=ProtocolConfig(
            mode="efficient", batch_size=256, chunk_batches=4, epochs=2, seed=3, defense="none"
        ),
        split_seed=3,
        verbose=False,
    )
    stale = run_federated(social, ecommerce, efficient, backend="inprocess")
    assert not np.allclose(stale.values["epoch_losses"], history.epoch_losses, rtol=1e-4)


def test_split_is_by_user_and_seeded() -> None:
    train, test = split_positions(1000, 0.3, seed=5)
    assert len(test) == 300 and len(train) == 700
    assert not set(train) & set(test)
    again = split_positions(1000, 0.3, seed=5)
    np.testing.assert_array_equal(again[1], test)
    assert not np.array_equal(split_positions(1000, 0.3, seed=6)[1], test)


def _readme_shaped_tables(tmp_path: Path):  # noqa: ANN202
    """The README's bring-your-own-data shape: a key named ``phone_hash``, label ``converted``,
    a declared categorical column that looks numeric, one CSV and one Parquet file."""
    from fedads.tables import load_party_table

    world = generate_world(WorldConfig(n_users=1_200, seed=2))
    social = world.social.rename(columns={"key": "phone_hash"})
    shop = world.ecommerce.rename(columns={"key": "phone_hash", "label": "converted"})
    social.to_csv(tmp_path / "social.csv", index=False)
    shop.to_parquet(tmp_path / "shop.parquet", index=False)
    social_table = load_party_table(
        tmp_path / "social.csv",
        party="social",
        key="phone_hash",
        categorical=["active_days_30d"],  # integers, declared categorical: must stay so
    )
    shop_table = load_party_table(
        tmp_path / "shop.parquet",
        party="ecommerce",
        key="phone_hash",
        label="converted",
        existing="is_existing_customer",
        numeric=["brand_orders"],
    )
    return social_table, shop_table


def test_readme_bring_your_own_data_shape_runs_on_every_backend(tmp_path: Path) -> None:
    """Column names live with each party's table, not in shared settings (issue #16): the
    Flower simulation reloads each table from its party-private Parquet file with the same
    roles, so it trains exactly what the in-process run trains."""
    social, shop = _readme_shaped_tables(tmp_path)
    assert "active_days_30d" in social.categorical_columns
    protocol = ProtocolConfig(mode="efficient", batch_size=256, chunk_batches=4, epochs=1, seed=1)
    config = ExperimentConfig(
        federation=FederationSettings(protocol=protocol, verbose=False),
        references=("ecommerce_only",),
        n_bootstrap=50,
    )
    assert config.backend == "simulation"  # the default backend, where the bug was
    simulated = Experiment.from_tables(social, shop, config).run(tmp_path / "sim", verbose=False)
    inprocess = Experiment.from_tables(social, shop, config.replace(backend="inprocess")).run(
        verbose=False
    )
    sim_scores = simulated.federated.values["scores"]
    assert len(sim_scores) > 100
    np.testing.assert_allclose(sim_scores, inprocess.federated.values["scores"], rtol=1e-5)
    scores_csv = (tmp_path / "sim" / "scores.csv").read_text().splitlines()[0]
    assert scores_csv.startswith("phone_hash,")
