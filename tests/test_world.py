"""Tests of the synthetic world (fedads.world). Fast: the whole file runs in well under 30 s."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from fedads.errors import InputError
from fedads.world import (
    ECOMMERCE_CATEGORICAL,
    ECOMMERCE_NUMERIC,
    EXISTING,
    KEY,
    LABEL,
    SOCIAL_CATEGORICAL,
    SOCIAL_NUMERIC,
    TRUTH_COLUMNS,
    TRUTH_FILE_STEM,
    World,
    WorldConfig,
    generate_world,
)
from fedads.world.__main__ import main as cli_main

REPO = Path(__file__).resolve().parents[1]
HEX64 = re.compile(r"^[0-9a-f]{64}$")


@pytest.fixture(scope="module")
def world() -> World:
    return generate_world(n_users=20_000, seed=3)


def _joined(world: World) -> pd.DataFrame:
    """Social rows of e-commerce users, with their truth (evaluation-side join)."""
    return world.social.merge(world.truth, on=KEY, how="inner")


def _social_design(frame: pd.DataFrame) -> pd.DataFrame:
    """Social numeric columns (raw and log1p) plus one-hot categoricals, all float."""
    design = pd.get_dummies(frame[list(SOCIAL_CATEGORICAL)]).astype(float)
    for column in SOCIAL_NUMERIC:
        values = frame[column].to_numpy(dtype=float)
        design[column] = values
        # log1p catches dependence in the bulk that a few heavy-tailed counts could hide.
        design[f"log1p_{column}"] = np.log1p(values)
    return design


# --- determinism --------------------------------------------------------------------------------


def test_same_seed_gives_identical_tables() -> None:
    first = generate_world(n_users=2_000, seed=11)
    second = generate_world(WorldConfig(n_users=2_000, seed=11))
    for name in ("social", "ecommerce", "truth"):
        pd.testing.assert_frame_equal(getattr(first, name), getattr(second, name), check_exact=True)
        assert getattr(first, name).to_csv(index=False) == getattr(second, name).to_csv(index=False)


def test_different_seed_gives_different_tables() -> None:
    first = generate_world(n_users=2_000, seed=11)
    second = generate_world(n_users=2_000, seed=12)
    assert not first.truth["intent"].equals(second.truth["intent"])
    assert not first.ecommerce[ECOMMERCE_NUMERIC[0]].equals(second.ecommerce[ECOMMERCE_NUMERIC[0]])
    assert not first.social[SOCIAL_NUMERIC[0]].equals(second.social[SOCIAL_NUMERIC[0]])
    assert set(first.ecommerce[KEY]) != set(second.ecommerce[KEY])


# --- schema --------------------------------------------------------------------------------------


def test_columns_dtypes_and_keys(world: World) -> None:
    social, ecommerce, truth = world.social, world.ecommerce, world.truth
    assert list(social.columns) == [KEY, *SOCIAL_CATEGORICAL, *SOCIAL_NUMERIC]
    assert list(ecommerce.columns) == [
        KEY,
        *ECOMMERCE_CATEGORICAL,
        *ECOMMERCE_NUMERIC,
        EXISTING,
        LABEL,
    ]
    assert list(truth.columns) == list(TRUTH_COLUMNS)
    # The social party sees no label, no existing flag and nothing from the truth table.
    assert not set(social.columns) & {LABEL, EXISTING, *TRUTH_COLUMNS[1:]}
    assert not set(ecommerce.columns) & (set(TRUTH_COLUMNS) - {KEY, EXISTING})

    for frame, categorical, numeric in (
        (social, SOCIAL_CATEGORICAL, SOCIAL_NUMERIC),
        (ecommerce, ECOMMERCE_CATEGORICAL, ECOMMERCE_NUMERIC),
    ):
        assert not frame.isna().any().any()
        for column in (KEY, *categorical):
            assert pd.api.types.is_string_dtype(frame[column]), column
        for column in numeric:
            dtype = frame[column].dtype
            assert dtype == np.int64 or dtype == np.float32, (column, dtype)
        assert frame[KEY].is_unique
        assert frame[KEY].str.fullmatch(HEX64.pattern).all()
    for column in (EXISTING, LABEL):
        assert ecommerce[column].dtype == np.int64
        assert set(ecommerce[column].unique()) <= {0, 1}

    # Truth covers exactly the e-commerce users; in_social marks exactly the overlap.
    assert set(truth[KEY]) == set(ecommerce[KEY])
    overlap = set(social[KEY]) & set(ecommerce[KEY])
    assert overlap == set(truth.loc[truth["in_social"] == 1, KEY])


def test_tables_are_shuffled_independently(world: World) -> None:
    common = set(world.social[KEY]) & set(world.ecommerce[KEY])
    social_order = [k for k in world.social[KEY] if k in common]
    ecommerce_order = [k for k in world.ecommerce[KEY] if k in common]
    assert social_order != ecommerce_order
    assert list(world.ecommerce[KEY]) != list(world.truth[KEY])


# --- calibration --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overlap_rate", "existing_share", "social_only_share"),
    [(0.65, 0.18, 0.5), (0.3, 0.05, 0.0), (1.0, 0.5, 2.0)],
)
def test_realized_overlap_and_existing_share(
    overlap_rate: float, existing_share: float, social_only_share: float
) -> None:
    n = 5_000
    w = generate_world(
        n_users=n,
        overlap_rate=overlap_rate,
        existing_share=existing_share,
        social_only_share=social_only_share,
    )
    # Both are realized exactly up to rounding to whole users.
    assert abs(w.truth["in_social"].mean() - overlap_rate) <= 0.5 / n
    assert abs(w.ecommerce[EXISTING].mean() - existing_share) <= 0.5 / n
    assert len(w.social) == round(overlap_rate * n) + round(social_only_share * n)


@pytest.mark.parametrize("rate", [0.001, 0.04, 0.5])
def test_base_conversion_rate_matches(rate: float) -> None:
    w = generate_world(n_users=20_000, base_conversion_rate=rate, seed=5)
    assert w.truth["p1"].mean() == pytest.approx(rate, rel=1e-9)
    # The observed label is a Bernoulli(p1) draw: within 4 standard errors of the rate.
    se = math.sqrt(rate * (1 - rate) / len(w.ecommerce))
    assert abs(w.ecommerce[LABEL].mean() - rate) < 4 * se


# --- structure of the generative model ---------------------------------------------------------


def test_brand_orders_only_for_existing_customers(world: World) -> None:
    brand = world.ecommerce["brand_orders"].to_numpy()
    existing = world.ecommerce[EXISTING].to_numpy() == 1
    assert (brand[~existing] == 0).all()
    assert (brand[existing] >= 1).all()


def test_label_is_y1_and_potential_outcomes_are_monotone(world: World) -> None:
    merged = world.ecommerce[[KEY, LABEL, EXISTING]].merge(world.truth, on=KEY)
    assert (merged[LABEL] == merged["y1"]).all()
    assert (merged[f"{EXISTING}_x"] == merged[f"{EXISTING}_y"]).all()
    assert (merged["y1"] >= merged["y0"]).all()
    assert (merged["p1"] >= merged["p0"]).all()


def test_ad_effect_larger_for_new_customers(world: World) -> None:
    truth = world.truth
    uplift = truth["p1"] - truth["p0"]
    new = truth[EXISTING] == 0
    assert uplift[new].mean() > uplift[~new].mean() > 0
    no_effect = generate_world(n_users=2_000, ad_effect_new=0.0, ad_effect_existing=0.0)
    np.testing.assert_array_equal(no_effect.truth["p0"], no_effect.truth["p1"])


def test_existing_customers_have_higher_intent_and_activity(world: World) -> None:
    truth = world.truth
    existing = truth[EXISTING] == 1
    assert truth.loc[existing, "intent"].mean() > truth.loc[~existing, "intent"].mean() + 0.3
    assert (
        truth.loc[existing, "shopping_activity"].median()
        > truth.loc[~existing, "shopping_activity"].median()
    )


def test_activity_skew_thins_out_light_shoppers() -> None:
    order_columns = [c for c in ECOMMERCE_NUMERIC if c.startswith("orders_")]
    empty_share = []
    for skew in (0.5, 1.2, 2.0):
        w = generate_world(n_users=20_000, ecommerce_activity_skew=skew)
        empty_share.append((w.ecommerce[order_columns].sum(axis=1) == 0).mean())
    assert empty_share[0] < empty_share[1] < empty_share[2]


def test_ecommerce_features_are_more_informative_for_heavy_shoppers(world: World) -> None:
    merged = world.ecommerce.merge(world.truth[[KEY, "intent", "shopping_activity"]], on=KEY)
    activity = merged["shopping_activity"]
    light = merged[activity < activity.quantile(0.25)]
    heavy = merged[activity > activity.quantile(0.75)]

    def corr(frame: pd.DataFrame) -> float:
        return float(np.corrcoef(np.log1p(frame["brand_page_views"]), frame["intent"])[0, 1])

    assert corr(heavy) > corr(light) + 0.1


# --- the social-intent knob ----------------------------------------------------------------------


def test_social_intent_zero_is_a_negative_control() -> None:
    """With strength 0 no social column (numeric, log1p or one-hot) correlates with anything the
    outcomes depend on. Under independence a sample correlation has standard error 1/sqrt(n);
    we allow 5 standard errors (two-sided p ~ 6e-7 per check, so ~100 checks stay quiet), while
    a leak as weak as 0.05 would fail."""
    w = generate_world(n_users=200_000, social_intent_strength=0.0, social_only_share=0.0, seed=7)
    joined = _joined(w)
    design = _social_design(joined)
    tolerance = 5.0 / math.sqrt(len(joined))
    assert tolerance < 0.015
    for target in ("intent", "y1", "p1", "p0", EXISTING, "shopping_activity"):
        values = joined[target].astype(float)
        correlations = design.corrwith(values).abs()
        assert correlations.max() < tolerance, (target, correlations.idxmax(), correlations.max())


def test_social_intent_high_carries_intent() -> None:
    w = generate_world(n_users=20_000, social_intent_strength=0.9, seed=7)
    joined = _joined(w)
    correlations = _social_design(joined).corrwith(joined["intent"]).abs()
    # SE is ~1/sqrt(13,000) ~ 0.009: 0.15 is far outside the null.
    assert correlations.max() > 0.15
    assert correlations["log1p_brand_content_engagements"] > 0.15


def test_social_intent_strength_orders_the_signal() -> None:
    strengths = (0.2, 0.5, 0.9)
    signal = []
    for strength in strengths:
        w = generate_world(n_users=20_000, social_intent_strength=strength, seed=8)
        joined = _joined(w)
        signal.append(
            np.corrcoef(np.log1p(joined["brand_content_engagements"]), joined["intent"])[0, 1]
        )
    assert signal[0] < signal[1] < signal[2]


# --- config validation -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("overlap_rate", 1.5),
        ("overlap_rate", "half"),
        ("n_users", 0),
        ("n_users", 2.5),
        ("seed", -1),
        ("social_intent_strength", -0.1),
        ("social_intent_strength", 1.2),
        ("existing_share", 0.0),
        ("base_conversion_rate", 1.0),
        ("ecommerce_activity_skew", float("nan")),
        ("gender_shares", (0.6, 0.6, 0.05)),
        ("age_band_shares", (0.5, 0.5)),
        ("member_level_thresholds", (3, 3, 36)),
        ("key_salt", ""),
        ("age_activity_weight", 0.97),  # with demographic_signal_weight 0.3: squares exceed 1
    ],
)
def test_invalid_config_raises_input_error_naming_the_field(field: str, value: object) -> None:
    with pytest.raises(InputError, match=field):
        generate_world(**{field: value})
    with pytest.raises(InputError, match=field):
        WorldConfig(**{field: value}).validate()  # type: ignore[arg-type]


def test_unknown_field_is_named_with_a_suggestion() -> None:
    with pytest.raises(InputError, match="overlp_rate.*overlap_rate"):
        generate_world(overlp_rate=0.5)


def test_config_replace_and_dict_round_trip() -> None:
    config = WorldConfig().replace(n_users=123, gender_shares=[0.5, 0.45, 0.05])
    assert config.n_users == 123 and config.gender_shares == (0.5, 0.45, 0.05)
    assert WorldConfig.from_dict(config.to_dict()) == config
    with pytest.raises(AttributeError):
        config.n_users = 5  # type: ignore[misc]


# --- files ------------------------------------------------------------------------------------


def test_write_csv_and_parquet(tmp_path: Path) -> None:
    w = generate_world(n_users=500, seed=2)
    csv_paths = w.write(tmp_path / "csv")
    assert csv_paths["truth"].name == f"{TRUTH_FILE_STEM}.csv"
    assert "DO_NOT_GIVE_TO_MODELS" in csv_paths["truth"].name
    for name in ("social", "ecommerce", "truth"):
        back = pd.read_csv(csv_paths[name])
        pd.testing.assert_frame_equal(back, getattr(w, name), check_dtype=False, rtol=1e-6)
    parquet_paths = w.write(tmp_path / "pq", suffix=".parquet")
    for name in ("social", "ecommerce", "truth"):
        back = pd.read_parquet(parquet_paths[name])
        pd.testing.assert_frame_equal(back, getattr(w, name), check_exact=True, check_dtype=False)
    with pytest.raises(InputError, match="suffix"):
        w.write(tmp_path / "bad", suffix=".xlsx")


def test_cli_writes_a_world(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "w"
    code = cli_main(["--users", "300", "--seed", "4", "--out", str(out), "--quiet"])
    assert code == 0
    assert {p.name for p in out.iterdir()} == {
        "social.csv",
        "ecommerce.csv",
        f"{TRUTH_FILE_STEM}.csv",
        "world_config.json",
    }
    custom = tmp_path / "custom"
    code = cli_main(
        [
            "--users", "300", "--out", str(custom), "--quiet", "--format", "parquet",
            "--set", "gender_shares=0.5,0.45,0.05", "--set", "member_level_thresholds=2,5,9",
            "--set", "social_intent_strength=0",
        ]
    )  # fmt: skip
    assert code == 0
    saved = WorldConfig.from_dict(json.loads((custom / "world_config.json").read_text()))
    assert saved.gender_shares == (0.5, 0.45, 0.05)
    assert saved.member_level_thresholds == (2, 5, 9)
    assert saved.social_intent_strength == 0.0
    assert (custom / "social.parquet").exists()
    bad = cli_main(["--out", str(out), "--quiet", "--set", "overlap_rate=1.5"])
    assert bad == 2
    assert "overlap_rate" in capsys.readouterr().err


def test_shipped_sample_matches_the_documented_command() -> None:
    sample = REPO / "data" / "sample"
    if not sample.exists():
        pytest.skip("data/sample not present")
    w = generate_world(n_users=3_000, seed=0)
    for name, stem in (
        ("social", "social"),
        ("ecommerce", "ecommerce"),
        ("truth", TRUTH_FILE_STEM),
    ):
        shipped = pd.read_csv(sample / f"{stem}.csv")
        pd.testing.assert_frame_equal(shipped, getattr(w, name), check_dtype=False, rtol=1e-6)


def test_party_tables_when_tables_layer_exists(world: World) -> None:
    pytest.importorskip("fedads.tables")
    social, ecommerce = world.party_tables()
    assert social.n_rows == len(world.social)
    assert ecommerce.n_rows == len(world.ecommerce)
