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
        {"lost_cause_activity": 9.0},
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


# --- uplift metrics: against scikit-uplift and by hand ------------------------------------------


def _fixed_example(n: int = 300, seed: int = 7) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    t = rng.integers(0, 2, n)
    score = np.round(rng.normal(size=n), 1)  # rounded: many ties, as sklift groups them
    y = (rng.random(n) < 0.2 + 0.15 * t * (score > 0)).astype(int)
    return y, score, t


def test_metrics_match_scikit_uplift_on_a_fixed_example() -> None:
    import warnings

    from sklift import metrics as sk

    from fedads.eval import uplift as ours

    y, score, t = _fixed_example()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # sklift calls a deprecated sklearn helper
        for ours_fn, theirs in (
            (ours.qini_curve, sk.qini_curve),
            (ours.uplift_curve, sk.uplift_curve),
        ):
            x_a, v_a = ours_fn(y, score, t)
            x_b, v_b = theirs(y, score, t)
            np.testing.assert_array_equal(x_a, x_b)
            np.testing.assert_allclose(v_a, v_b, rtol=0, atol=1e-9)
        for ours_fn, theirs in (
            (ours.perfect_qini_curve, sk.perfect_qini_curve),
            (ours.perfect_uplift_curve, sk.perfect_uplift_curve),
        ):
            np.testing.assert_allclose(ours_fn(y, t)[1], theirs(y, t)[1], atol=1e-9)
        assert ours.qini_auc_score(y, score, t) == pytest.approx(
            sk.qini_auc_score(y, score, t), abs=1e-12
        )
        assert ours.uplift_auc_score(y, score, t) == pytest.approx(
            sk.uplift_auc_score(y, score, t), abs=1e-12
        )
        for k in (0.1, 0.3, 0.5):
            assert ours.uplift_at_k(y, score, t, k) == pytest.approx(
                sk.uplift_at_k(y, score, t, strategy="overall", k=k), abs=1e-12
            )


def test_qini_curve_by_hand() -> None:
    from fedads.eval.uplift import qini_curve, uplift_at_k

    # Order by score: users 0..5. Treated: 0, 1, 3; control: 2, 4, 5.
    y = np.array([1, 1, 0, 0, 1, 0])
    t = np.array([1, 1, 0, 1, 0, 0])
    score = np.array([6, 5, 4, 3, 2, 1])
    x, q = qini_curve(y, score, t)
    # q(k) = Y_T - Y_C * N_T / N_C: k=1: 1; k=2: 2; k=3: 2 - 0; k=4: 2; k=5: 2 - 1*3/2; k=6: 2-1*3/3
    np.testing.assert_array_equal(x, [0, 1, 2, 3, 4, 5, 6])
    np.testing.assert_allclose(q, [0, 1, 2, 2, 2, 0.5, 1])
    # Top half (3 users): treated rate 2/2, control rate 0/1.
    assert uplift_at_k(y, score, t, 0.5) == 1.0


def test_treatment_flags_from_any_column() -> None:
    from fedads.eval.uplift import treatment_flags

    assert treatment_flags(np.array([0, 1, 1])).tolist() == [0, 1, 1]
    assert treatment_flags(["holdout", "ad", "ad"], control="holdout").tolist() == [0, 1, 1]
    assert treatment_flags(np.array([2.0, 0.0, 5.0]), control=0).tolist() == [1, 0, 1]
    with pytest.raises(InputError, match="does not occur"):
        treatment_flags(["a", "b"], control="c")
    with pytest.raises(InputError, match="one arm"):
        treatment_flags(np.array([1, 1, 1]))


def test_evaluate_uplift_reports_true_counts_beside_the_metrics() -> None:
    from fedads.eval.uplift import evaluate_uplift

    world = generate_world(n_users=3000, seed=0, ad_effect_model="typology", holdout_share=0.5)
    frame = world.ecommerce.merge(world.truth[["key", "p0", "p1", "y0", "y1"]], on="key")
    oracle = (frame["p1"] - frame["p0"]).to_numpy()
    result = evaluate_uplift(
        frame[LABEL], frame[TREATMENT], {"oracle": oracle, "response": frame["p1"].to_numpy()},
        existing=frame["is_existing_customer"], y0=frame["y0"], y1=frame["y1"],
        p0=frame["p0"], p1=frame["p1"], budgets=(0.1, 0.3),
    )  # fmt: skip
    block = result.report_block()
    assert set(block) == {"oracle", "response"}
    assert set(block["oracle"]) >= {"qini_auc", "uplift_auc", "uplift_at_k", "pools"}
    assert block["oracle"]["pools"]["prospecting"]["qini_auc"] is not None
    # The true uplift ranks the truly incremental users first.
    oracle_true = result.scores["all"]["oracle"].expected_incremental
    response_true = result.scores["all"]["response"].expected_incremental
    assert oracle_true[0.3] > response_true[0.3]
    assert result.scores["all"]["oracle"].qini_auc > result.scores["all"]["response"].qini_auc
    assert len(result.curves["all"]["oracle"][0]) == 201


def test_qini_plot_and_markdown(tmp_path) -> None:
    from fedads.eval.uplift import evaluate_uplift
    from fedads.report.uplift import plot_qini, uplift_markdown

    y, score, t = _fixed_example()
    result = evaluate_uplift(y, t, {"federated": score, "uplift_ecommerce": -score},
                             budgets=(0.1,))  # fmt: skip
    paths = plot_qini(result, tmp_path)
    assert paths["qini_all"].stat().st_size > 1000
    text = uplift_markdown(result, {"qini_all": "qini_all.png"})
    assert "| federated |" in text and "qini_all.png" in text


# --- uplift models against the response model (the checks) ------------------------------

# A campaign world with a 50 % holdout, a high conversion rate and strong effects, so that the
# Qini comparison is decided on 10 000 held-out users in seconds.
CHECK_WORLD = dict(n_users=20_000, holdout_share=0.5, base_conversion_rate=0.2,
                   persuadable_effect=2.0, do_not_disturb_effect=-2.0)  # fmt: skip


def _uplift_vs_response(seed: int, **world: object) -> tuple[float, float, float]:
    """Qini AUC of the e-commerce two-model uplift minus that of an e-commerce response model
    (same gradient boosting on the same features, ranked by P(buy)), with a bootstrap CI."""
    from fedads.eval.uplift import qini_difference
    from fedads.models.baselines import _gbdt_design
    from fedads.models.uplift import two_model_uplift

    generated = generate_world(WorldConfig(seed=seed).replace(**{**CHECK_WORLD, **world}))
    _, table = generated.party_tables()
    flags = generated.ecommerce.set_index("key")[TREATMENT].loc[table.keys()].to_numpy()
    labels = table.labels().astype(np.int8)
    order = np.random.default_rng(seed).permutation(table.n_rows)
    train, test = np.sort(order[: table.n_rows // 2]), np.sort(order[table.n_rows // 2 :])
    uplift = two_model_uplift(table, train, test, labels[train], flags[train], seed=seed)
    from sklearn.ensemble import HistGradientBoostingClassifier

    x, mask = _gbdt_design(table, np.r_[train, test], np.arange(train.size))
    x = np.c_[x, table.existing_flags(np.r_[train, test])]
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="openmp"):  # shared 2-core machines
        response = HistGradientBoostingClassifier(
            max_iter=60, learning_rate=0.1, max_depth=3, random_state=seed,
            categorical_features=np.r_[mask, False],
        ).fit(x[: train.size], labels[train]).predict_proba(x[train.size :])[:, 1]  # fmt: skip
    return qini_difference(labels[test], flags[test], uplift, response, n_bootstrap=100)


def test_uplift_model_beats_response_model_on_qini_with_heterogeneous_effects() -> None:
    point, low, _ = _uplift_vs_response(0, ad_effect_model="typology")
    assert point > 0.03 and low > 0, (point, low)


def test_uplift_model_does_not_beat_response_model_on_the_homogeneous_world() -> None:
    """Default ("segment") effects: ranking by P(buy) is (nearly) ranking by uplift."""
    point, low, high = _uplift_vs_response(0, ad_effect_model="segment")
    assert low <= 0.0, (point, low, high)


# --- the experiment: --treatment adds uplift models and report.json's uplift block --------------


def _small_experiment_config(**changes: object):
    from fedads import ExperimentConfig, FederationSettings, ProtocolConfig

    return ExperimentConfig(
        world=WorldConfig(
            n_users=3000,
            seed=0,
            ad_effect_model="typology",
            holdout_share=0.5,
            base_conversion_rate=0.2,
        ),  # fmt: skip
        federation=FederationSettings(
            protocol=ProtocolConfig(
                mode="efficient", batch_size=256, chunk_batches=8, epochs=1, seed=0
            )  # fmt: skip
        ),
        backend="inprocess",
        references=("ecommerce_only",),
        n_bootstrap=50,
        treatment=TREATMENT,
        **changes,
    )


def test_experiment_with_treatment_reports_uplift_for_every_model(tmp_path) -> None:
    import json

    from fedads import Experiment

    result = Experiment.from_world(_small_experiment_config()).run(tmp_path / "r", verbose=False)
    report = json.loads((tmp_path / "r" / "report.json").read_text())
    models = {"federated", "ecommerce_only", "uplift_ecommerce", "uplift_federated"}
    assert set(report["uplift"]) == models
    for model in models:
        entry = report["uplift"][model]
        assert isinstance(entry["qini_auc"], float) and isinstance(entry["uplift_auc"], float)
        assert entry["true_incremental_at_k"] is not None
    assert (tmp_path / "r" / "qini_all.png").is_file()
    assert "## Uplift" in (tmp_path / "r" / "report.md").read_text()
    assert {"uplift_ecommerce", "uplift_federated"} <= set(result.scores.columns)
    # Same seed, same numbers.
    again = Experiment.from_world(_small_experiment_config()).run(verbose=False)
    assert again.uplift.report_block() == result.uplift.report_block()


def test_treatment_column_is_not_a_feature_and_control_values_work(tmp_path) -> None:
    from fedads.models.uplift import take_treatment
    from fedads.tables import load_party_table

    world = generate_world(n_users=300, seed=0, holdout_share=0.5)
    frame = world.ecommerce.assign(arm=np.where(world.ecommerce[TREATMENT] == 1, "ad", "holdout"))
    frame = frame.drop(columns=[TREATMENT])
    table = load_party_table(frame, party="ecommerce", key="key", label=LABEL,
                             existing="is_existing_customer")  # fmt: skip
    assert "arm" in table.feature_columns  # what load_party_table does with any column
    stripped, flags = take_treatment(table, "arm", "holdout")
    assert "arm" not in stripped.frame.columns and "arm" not in stripped.feature_columns
    assert flags.tolist() == (frame["arm"] == "ad").astype(int).tolist()
    with pytest.raises(InputError, match="not in the ecommerce table"):
        take_treatment(table, "nope")
    with pytest.raises(InputError, match="label"):
        take_treatment(table, LABEL)


def test_cli_run_with_treatment_and_control_value(tmp_path, capsys) -> None:
    import json

    from fedads.cli import main

    world = generate_world(n_users=2000, seed=1, ad_effect_model="typology", holdout_share=0.5,
                           base_conversion_rate=0.2)  # fmt: skip
    paths = world.write(tmp_path / "w")
    shop = pd.read_csv(paths["ecommerce"])
    shop["arm"] = np.where(shop.pop(TREATMENT) == 1, "ad", "holdout")
    shop.to_csv(tmp_path / "shop.csv", index=False)
    code = main([
        "run", "--social", str(paths["social"]), "--ecommerce", str(tmp_path / "shop.csv"),
        "--key", "key", "--treatment", "arm", "--control", "holdout", "--backend", "inprocess",
        "--epochs", "1", "--out", str(tmp_path / "out"), "-q",
    ])  # fmt: skip
    assert code == 0
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    for model in ("federated", "ecommerce_only", "uplift_ecommerce", "uplift_federated"):
        assert set(report["uplift"][model]) >= {"qini_auc", "uplift_auc"}
    assert "Qini AUC" in capsys.readouterr().out


@pytest.mark.slow
def test_federated_uplift_model_beats_federated_response_model_on_qini() -> None:
    """The federated class-transformation model against the federated response model, same
    protocol, alignment and split (about 15 s; measured intervals: docs/evaluation.md)."""
    from fedads import Experiment, ExperimentConfig, FederationSettings, ProtocolConfig
    from fedads.eval.uplift import qini_difference

    gains = []
    for seed in (0,):
        world = WorldConfig(seed=seed, ad_effect_model="typology").replace(**CHECK_WORLD)
        config = ExperimentConfig(
            world=world,
            federation=FederationSettings(
                protocol=ProtocolConfig(
                    mode="efficient", batch_size=512, chunk_batches=8, epochs=3, seed=seed
                )  # fmt: skip
            ),
            backend="inprocess",
            references=(),
            n_bootstrap=20,
            treatment=TREATMENT,
        )
        result = Experiment.from_world(config).run(verbose=False)
        frame = generate_world(world).ecommerce.set_index("key")
        flags = frame[TREATMENT].loc[result.scores["key"]].to_numpy()
        point, _, _ = qini_difference(
            result.scores["label"].astype(int), flags, result.scores["uplift_federated"],
            result.scores["federated"], n_bootstrap=20,
        )  # fmt: skip
        gains.append(point)
    assert gains[0] > 0.02, gains
