"""Test helpers for the README-shaped tables: building them, and the centralized model a run
of them should match."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fedads.models import FeatureEncoder, TrainingHistory, build_model, predict_local, train_local
from fedads.protocol import ProtocolConfig
from fedads.tables import PartyTable, load_party_table
from fedads.world import WorldConfig, generate_world


def readme_shaped_tables(tmp_path: Path, n_users: int) -> tuple[PartyTable, PartyTable]:
    """A key named ``phone_hash``, label ``converted``, a declared categorical column that looks
    numeric, one CSV and one Parquet file (a default world of ``n_users``, seed 3)."""
    world = generate_world(WorldConfig(n_users=n_users, seed=3))
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


def centralized_reference(
    social: PartyTable, ecommerce: PartyTable, run: Any, protocol: ProtocolConfig
) -> tuple[TrainingHistory, np.ndarray]:
    """The split model trained centrally on the pooled features of ``run``'s aligned train
    users (encoders fitted on them); its history and held-out probabilities."""
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
