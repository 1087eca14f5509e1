"""The README's bring-your-own-data table shape, shared by the tests that run it."""

from __future__ import annotations

from pathlib import Path

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
