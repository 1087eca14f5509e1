"""Issue #18: heterogeneous ad effects, the randomized holdout, uplift metrics and models.

World tests use a few thousand users; model tests train small non-federated models and one
in-process federated run (seconds each).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from fedads.errors import InputError
from fedads.world import (
    LABEL,
    RESPONSE_TYPES,
    TREATMENT,
    TRUTH_COLUMNS,
    WorldConfig,
    generate_world,
)

# --- world: the randomized holdout -----------------------------------------------------------


def test_default_world_has_no_treatment_column_and_the_usual_truth() -> None:
    world = generate_world(n_users=500, seed=1)
    assert TREATMENT not in world.ecommerce.columns
    assert list(world.truth.columns) == list(TRUTH_COLUMNS)
    labels = world.ecommerce.set_index("key")[LABEL]
    assert (labels == world.truth.set_index("key")["y1"].loc[labels.index]).all()


def test_holdout_is_exact_random_and_its_label_is_y0() -> None:
    base = generate_world(n_users=4000, seed=2)
    world = generate_world(n_users=4000, seed=2, holdout_share=0.25)
    ecommerce = world.ecommerce.set_index("key")
    truth = world.truth.set_index("key").loc[ecommerce.index]
    treated = ecommerce[TREATMENT].to_numpy()
    assert ecommerce[TREATMENT].dtype == np.int64
    assert int((treated == 0).sum()) == 1000
    expected = np.where(treated == 1, truth["y1"], truth["y0"])
    assert (ecommerce[LABEL].to_numpy() == expected).all()
    # Its own random stream: every other column and table is unchanged.
    pd.testing.assert_frame_equal(world.social, base.social)
    pd.testing.assert_frame_equal(world.truth, base.truth)
    pd.testing.assert_frame_equal(world.ecommerce.drop(columns=[TREATMENT, LABEL]),
                                  base.ecommerce.drop(columns=[LABEL]))  # fmt: skip
    # Randomized: independent of intent (standard error of the difference ~ 0.04).
    gap = truth["intent"][treated == 1].mean() - truth["intent"][treated == 0].mean()
    assert abs(gap) < 0.15


def test_treatment_is_not_a_feature_of_the_party_table() -> None:
    world = generate_world(n_users=500, seed=0, holdout_share=0.5)
    _, ecommerce = world.party_tables()
    assert TREATMENT not in ecommerce.frame.columns
    assert TREATMENT not in ecommerce.feature_columns


@pytest.mark.parametrize(
    "changes",
    [
        {"holdout_share": 1.0},
        {"holdout_share": -0.1},
        {"ad_effect_model": "random"},
        {"lost_cause_intent": 2.0},
        {"persuadable_effect": 9.0},
    ],
)
def test_invalid_uplift_fields_are_refused(changes: dict) -> None:
    with pytest.raises(InputError, match=next(iter(changes))):
        WorldConfig().replace(**changes)


# --- world: heterogeneous effects --------------------------------------------------------------


def test_typology_world_effects_and_types() -> None:
    config = WorldConfig(n_users=20_000, seed=0, ad_effect_model="typology")
    world = generate_world(config)
    truth = world.truth
    assert list(truth.columns) == [*TRUTH_COLUMNS, "response_type", "ad_effect"]
    assert set(truth["response_type"]) == set(RESPONSE_TYPES)
    uplift = truth["p1"] - truth["p0"]
    by_type = uplift.groupby(truth["response_type"]).agg(["min", "max", "mean"])
    assert by_type.loc["persuadable", "min"] > 0
    assert by_type.loc["do_not_disturb", "max"] < 0
    for zero in ("sure_thing", "lost_cause"):
        assert by_type.loc[zero, "min"] == by_type.loc[zero, "max"] == 0.0
    # Everyone existing is a sure thing; the calibration still targets mean p1.
    assert (truth.loc[truth["is_existing_customer"] == 1, "response_type"] == "sure_thing").all()
    assert abs(truth["p1"].mean() - config.base_conversion_rate) < 1e-9
    # Do-not-disturb users never convert because of the ad (y1 <= y0), persuadables never stop.
    dnd = truth["response_type"] == "do_not_disturb"
    assert (truth.loc[dnd, "y1"] <= truth.loc[dnd, "y0"]).all()
    assert (truth.loc[~dnd, "y1"] >= truth.loc[~dnd, "y0"]).all()


def test_typology_effect_is_not_monotone_in_baseline_propensity() -> None:
    """The users most likely to buy anyway gain least: ranking by p0 is not ranking by uplift."""
    truth = generate_world(n_users=20_000, seed=0, ad_effect_model="typology").truth
    uplift = (truth["p1"] - truth["p0"]).to_numpy()
    decile = pd.qcut(truth["p0"], 10, labels=False).to_numpy()
    means = np.asarray([uplift[decile == d].mean() for d in range(10)])
    assert means.argmax() not in (0, 9)
    assert means[9] < 0.5 * means.max()
    # The default world is monotone among new users (a constant logit effect, p < 0.5).
    base = generate_world(n_users=20_000, seed=0).truth
    new = base["is_existing_customer"] == 0
    order = np.argsort(base.loc[new, "p0"].to_numpy())
    assert (np.diff((base.loc[new, "p1"] - base.loc[new, "p0"]).to_numpy()[order]) >= -1e-15).all()


def test_typology_and_holdout_are_deterministic() -> None:
    config = WorldConfig(n_users=2000, seed=5, ad_effect_model="typology", holdout_share=0.3)
    first, second = generate_world(config), generate_world(config)
    for name in ("social", "ecommerce", "truth"):
        pd.testing.assert_frame_equal(getattr(first, name), getattr(second, name))
