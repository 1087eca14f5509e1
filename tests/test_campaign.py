"""The campaign view and the local serving model (issue 15), on small in-process worlds.

Checks from the issue: the campaign's held-out population is the held-out split of all
e-commerce users; the local model scores a user the social party never saw, with no social
party; with overlap 1.0 the campaign lift equals the aligned-only lift against the same
e-commerce-only model.
"""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

from fedads.eval.campaign import combine_scores
from fedads.experiment import Experiment, ExperimentConfig
from fedads.federation import FederationSettings, run_federated, split_positions
from fedads.protocol import ProtocolConfig
from fedads.protocol.runtime import AlignedRows
from fedads.serving import LOCAL_SERVING, fit_local_serving
from fedads.world import WorldConfig, generate_world

SETTINGS = FederationSettings(
    protocol=ProtocolConfig(mode="efficient", batch_size=256, epochs=2, seed=1),
    split_seed=1,
    verbose=False,
)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _config(**world) -> ExperimentConfig:
    return ExperimentConfig(
        world=WorldConfig(n_users=2_500, seed=5, **world),
        federation=SETTINGS,
        backend="inprocess",
        references=("ecommerce_only", "ecommerce_gbdt"),
        n_bootstrap=50,
        campaign=True,
    )


@pytest.fixture(scope="module")
def default_world_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("campaign") / "report"
    config = _config()
    world = generate_world(config.world)
    social, ecommerce = world.party_tables()
    result = Experiment.from_tables(social, ecommerce, config, truth=world.truth).run(
        out, verbose=False, alignment="clear"
    )
    return result, social, ecommerce, json.loads((out / "report.json").read_text())


def test_campaign_held_out_is_the_split_of_all_ecommerce_users(default_world_run) -> None:
    result, social, ecommerce, _ = default_world_run
    split = result.campaign.split
    test = result.federated.values["test_positions"]
    aligned_rows = result.federated.ecommerce_rows
    # every e-commerce user is held out or trains, never both
    both = np.concatenate([split.test_rows, split.train_rows])
    assert np.array_equal(np.sort(both), np.arange(ecommerce.n_rows))
    # aligned stratum: exactly the aligned view's held-out users, in its order
    assert np.array_equal(split.test_rows[split.aligned], aligned_rows[test])
    # unaligned stratum: the same rule (seeded permutation, round(test_share * n)) on them
    unaligned = np.setdiff1d(np.arange(ecommerce.n_rows), aligned_rows)
    assert unaligned.size > 0.3 * ecommerce.n_rows  # the default world: 35% not on social
    _, want = split_positions(unaligned.size, SETTINGS.test_share, SETTINGS.split_seed)
    assert np.array_equal(split.test_rows[~split.aligned], unaligned[want])
    share = split.test_rows.size / ecommerce.n_rows
    assert abs(share - SETTINGS.test_share) < 2 / ecommerce.n_rows
    # the GBDT baseline never trained on a held-out user: its training rows are the others
    assert result.campaign.block["train_users"] == ecommerce.n_rows - split.test_rows.size


def test_report_has_the_campaign_block(default_world_run) -> None:
    result, _, _, report = default_world_run
    block = report["campaign"]
    split = result.campaign.split
    assert block["test_users"] == split.test_rows.size
    assert block["aligned_test_users"] == split.n_aligned == result.data_summary["test_users"]
    for pool in ("all", "prospecting"):
        entry = block["lift"][pool]
        assert set(entry) >= {"point", "ci95", "expected", "incremental"}
        assert len(entry["ci95"]) == 2
        assert entry["expected"]["point"] is not None  # synthetic world: expected counts
    assert LOCAL_SERVING in report["models"] and report["models"][LOCAL_SERVING]["auc"] > 0
    kept = block["local_serving_kept_share"]
    assert kept["reference"] == "ecommerce_only" and "auc_values" in kept
    # the aligned-only view is unchanged in shape: headline still federated vs ecommerce_only
    assert report["lift"]["all"]["baseline"] == "ecommerce_only"
    assert "## Campaign view" in (result.report_paths.markdown.read_text())


def test_federated_system_uses_joint_scores_on_aligned_and_local_elsewhere(
    default_world_run,
) -> None:
    result, _, ecommerce, _ = default_world_run
    campaign = result.campaign
    scores = campaign.evaluation.data.scores
    joint = np.asarray(result.federated.values["scores"], dtype=np.float64)
    aligned = campaign.split.aligned
    np.testing.assert_allclose(scores["federated"][aligned], joint)
    local = campaign.local_model.predict_proba(ecommerce, campaign.split.test_rows[~aligned])
    np.testing.assert_allclose(scores["federated"][~aligned], local)
    with pytest.raises(Exception, match="joint scores"):
        combine_scores(aligned, joint[:-1], scores[LOCAL_SERVING])


def test_local_model_scores_a_user_the_social_party_never_saw(default_world_run) -> None:
    result, social, ecommerce, _ = default_world_run
    model = result.campaign.local_model
    # a brand-new e-commerce user: features of an unaligned row under a key no one has seen
    unaligned = np.setdiff1d(np.arange(ecommerce.n_rows), result.federated.ecommerce_rows)
    frame = ecommerce.frame.iloc[unaligned[:3]].copy()
    frame[ecommerce.key] = ["never-seen-1", "never-seen-2", "never-seen-3"]
    newcomer = dataclasses.replace(ecommerce, frame=frame.reset_index(drop=True))
    assert not set(newcomer.keys()) & set(social.keys())
    del social  # the social party is absent: the model holds no reference to it
    assert "social" not in dict(model.model.named_children()).get("bottoms", {})
    scores = model.predict_proba(newcomer)
    assert scores.shape == (3,) and np.all((scores > 0) & (scores < 1))
    np.testing.assert_allclose(scores, model.predict_proba(ecommerce, unaligned[:3]))


def test_local_model_refuses_another_table(default_world_run) -> None:
    result, social, _, _ = default_world_run
    with pytest.raises(Exception, match="not the e-commerce table"):
        result.campaign.local_model.predict_proba(social)


def test_distillation_follows_the_teacher() -> None:
    """Soft targets: a student distilled from a teacher ranks like the teacher, whatever the
    labels (here the teacher is a function of e-commerce features, so it is learnable)."""
    world = generate_world(WorldConfig(n_users=1_500, seed=2))
    _, ecommerce = world.party_tables()
    rows = np.arange(ecommerce.n_rows)
    x = ecommerce.numeric_matrix(rows)[:, 0].astype(np.float64)
    x = np.nan_to_num(x, nan=float(np.nanmedian(x)))
    teacher = 1 / (1 + np.exp(-(x - x.mean()) / (x.std() + 1e-9)))
    protocol = ProtocolConfig(mode="efficient", batch_size=128, epochs=4, seed=0)
    model = fit_local_serving(ecommerce, rows, teacher, protocol)
    student = model.predict_proba(ecommerce, rows)
    assert np.corrcoef(student, teacher)[0, 1] > 0.9
    with pytest.raises(Exception, match="outside"):
        fit_local_serving(ecommerce, rows, teacher + 1.0, protocol)


def test_scoring_training_users_leaves_held_out_scores_unchanged() -> None:
    social, ecommerce = generate_world(WorldConfig(n_users=1_500, seed=4)).party_tables()
    rows = AlignedRows.in_the_clear(social, ecommerce, SETTINGS.normalization)
    plain = run_federated(social, ecommerce, SETTINGS, backend="inprocess", alignment=rows)
    both = run_federated(
        social, ecommerce, SETTINGS, backend="inprocess", alignment=rows, score_train=True
    )
    assert "train_scores" not in plain.values
    np.testing.assert_array_equal(plain.values["scores"], both.values["scores"])
    train_scores = both.values["train_scores"]
    assert train_scores.shape == both.values["train_positions"].shape
    assert np.isfinite(train_scores).all()


def test_overlap_one_gives_the_aligned_only_lift(tmp_path) -> None:
    """Every e-commerce user is on the social platform: the campaign's held-out users are the
    aligned held-out users, the federated system is the joint model, and the campaign's
    e-commerce-only model is the aligned view's ``ecommerce_gbdt`` (trained on the same rows,
    same seed). So the campaign lift equals the aligned-only lift against ``ecommerce_gbdt``
    (the aligned headline is against ``ecommerce_only``, another model: not comparable)."""
    result = Experiment.from_world(_config(overlap_rate=1.0)).run(verbose=False, alignment="clear")
    campaign = result.campaign
    assert campaign.block["unaligned_test_users"] == 0
    assert campaign.block["test_users"] == result.data_summary["test_users"]
    np.testing.assert_allclose(
        campaign.evaluation.data.scores["ecommerce_gbdt"],
        result.evaluation.data.scores["ecommerce_gbdt"],
    )
    for pool in ("all", "prospecting"):
        for kind in ("targeting", "expected"):
            got = campaign.evaluation.lift(pool, baseline="ecommerce_gbdt", kind=kind)
            want = result.evaluation.lift(pool, baseline="ecommerce_gbdt", kind=kind)
            assert got.model_count == want.model_count
            assert got.baseline_count == want.baseline_count
            np.testing.assert_allclose(
                [got.point, got.ci_low, got.ci_high], [want.point, want.ci_low, want.ci_high]
            )


def test_bring_your_own_tables_without_truth() -> None:
    """Own tables, no truth table: realized counts only, no expected sub-entries."""
    config = _config().replace(world=WorldConfig(n_users=2_000, seed=6))
    social, ecommerce = generate_world(config.world).party_tables()
    result = Experiment.from_tables(social, ecommerce, config).run(verbose=False, alignment="clear")
    block = result.campaign.block
    assert block["unaligned_test_users"] > 0
    for pool in ("all", "prospecting"):
        assert "point" in block["lift"][pool] and "expected" not in block["lift"][pool]
    assert not result.campaign.evaluation.data.has_true_probabilities


def test_local_model_can_also_fit_unaligned_training_labels() -> None:
    """``local_serving_labels``: the unaligned *training* users join with their own labels;
    no campaign held-out user is among them, and held-out labels do not move the scores."""
    config = _config().replace(world=WorldConfig(n_users=2_000, seed=7), local_serving_labels=True)
    world = generate_world(config.world)
    social, ecommerce = world.party_tables()
    result = Experiment.from_tables(social, ecommerce, config).run(verbose=False, alignment="clear")
    campaign = result.campaign
    split = campaign.split
    n_unaligned = ecommerce.n_rows - result.federated.ecommerce_rows.size
    unaligned_held_out = int((~split.aligned).sum())
    assert campaign.local_model.n_labelled == n_unaligned - unaligned_held_out > 0
    assert campaign.local_model.n_distilled == result.federated.values["train_positions"].size
    # Flip every campaign held-out label: the local model (fitted anew) scores the same.
    frame = ecommerce.frame.copy()
    held = split.test_rows
    frame.loc[held, ecommerce.label_column] = 1 - frame.loc[held, ecommerce.label_column]
    flipped = dataclasses.replace(ecommerce, frame=frame)
    again = Experiment.from_tables(social, flipped, config).run(verbose=False, alignment="clear")
    np.testing.assert_allclose(
        again.campaign.evaluation.data.scores[LOCAL_SERVING],
        campaign.evaluation.data.scores[LOCAL_SERVING],
    )


def _social_down_for(positions: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> None:
    """The social party fails whenever it is asked to embed any of ``positions`` for scoring
    (it went down after training; an in-process stand-in for an unreachable platform)."""
    from fedads.protocol.parties import SocialParty

    down = set(np.asarray(positions).tolist())
    embed = SocialParty._on_embed

    def failing(self, envelope):  # noqa: ANN001, ANN202
        if down & set(np.asarray(envelope.arrays["positions"]).tolist()):
            raise ConnectionError("social platform unreachable")
        return embed(self, envelope)

    monkeypatch.setattr(SocialParty, "_on_embed", failing)


def _fallback_case(n_users: int, epochs: int) -> tuple[ExperimentConfig, object, object, object]:
    config = _config().replace(
        world=WorldConfig(n_users=n_users, seed=8),
        federation=dataclasses.replace(
            SETTINGS,
            # Two slices of held-out users (each above the query floor of 256 rows).
            protocol=dataclasses.replace(SETTINGS.protocol, predict_rows=300, epochs=epochs),
        ),
    )
    world = generate_world(config.world)
    social, ecommerce = world.party_tables()
    rows = AlignedRows.in_the_clear(social, ecommerce, SETTINGS.normalization)
    _, test = split_positions(rows.n_aligned, SETTINGS.test_share, SETTINGS.split_seed)
    return config, world, rows, test


def test_social_party_down_at_scoring_falls_back_to_the_local_model(
    tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 15 item 5: the social party fails on the second slice of held-out users. The run
    does not fail: the first slice keeps the joint scores, the second is served by the local
    model, with a warning, and the report names the users the fallback served."""
    from fedads.errors import FedadsWarning

    config, world, rows, test = _fallback_case(3_000, 2)
    social, ecommerce = world.party_tables()
    assert 300 < test.size <= 600  # two slices of at most 300 rows
    second = test[test.size // 2 :]  # the coordinator's second slice starts at the middle
    _social_down_for(test[-1:], monkeypatch)
    with pytest.warns(FedadsWarning, match="local serving model scored"):
        result = Experiment.from_tables(social, ecommerce, config, truth=world.truth).run(
            tmp_path / "report", verbose=False, alignment=rows
        )
    joint = result.federated.values["scores"]
    served = np.isnan(joint)
    assert 0 < served.sum() < served.size  # the first slice was scored jointly
    assert "social platform unreachable" in result.federated.values["scoring_error"]
    assert served.sum() == pytest.approx(second.size, abs=1)
    fed = result.evaluation.data.scores["federated"]
    np.testing.assert_array_equal(fed[~served], joint[~served])
    np.testing.assert_allclose(fed[served], result.evaluation.data.scores[LOCAL_SERVING][served])
    block = json.loads((tmp_path / "report" / "report.json").read_text())["campaign"]["serving"]
    keys = ecommerce.keys()[
        result.federated.ecommerce_rows[result.federated.values["test_positions"]]
    ]
    assert block["fallback"] == "local" and block["fallback_users"] == int(served.sum())
    assert block["fallback_keys"] == [str(k) for k in keys[served]]
    campaign = result.campaign.evaluation.data.scores["federated"]
    np.testing.assert_allclose(campaign[: served.size], fed)
    markdown = (tmp_path / "report" / "report.md").read_text()
    assert f"local serving model scored {int(served.sum())} aligned users" in markdown


def test_social_party_down_at_scoring_fails_the_run_when_asked(monkeypatch) -> None:
    from fedads.errors import PartyError

    config, world, rows, test = _fallback_case(3_000, 1)
    social, ecommerce = world.party_tables()
    _social_down_for(test, monkeypatch)
    with pytest.raises(PartyError, match="social platform unreachable"):
        Experiment.from_tables(social, ecommerce, config.replace(serving_fallback="error")).run(
            verbose=False, alignment=rows
        )


# ------------------------------------------------- item 1: training with the unaligned users
def _unaligned_settings(on: bool) -> FederationSettings:
    return dataclasses.replace(
        SETTINGS,
        protocol=ProtocolConfig(mode="efficient", batch_size=128, chunk_batches=4, epochs=1),
        unaligned_training=on,
        sealing=False,  # to read every payload
    )


def _captured_job(social, ecommerce, settings, out):  # noqa: ANN001, ANN202
    from fedads.federation import party_runtime, vfl_job
    from fedads.protocol import InProcessTransport

    runtimes = {
        role: party_runtime(table, settings, out / role)
        for role, table in (("social", social), ("ecommerce", ecommerce))
    }
    captured: list = []
    with InProcessTransport(runtimes, capture=lambda *m: captured.append(m)) as transport:
        values = vfl_job(transport, settings.to_run_config())
    return values, runtimes, captured


def _shape(envelope) -> tuple:  # noqa: ANN001
    arrays = tuple(sorted((k, v.shape, str(v.dtype)) for k, v in envelope.arrays.items()))
    return envelope.kind, arrays, tuple(sorted(envelope.meta))


def test_unaligned_training_sends_nothing_about_the_unaligned_users(tmp_path) -> None:
    """Issue 15 item 1: the label party trains on its unaligned training users, and no byte
    about them crosses: every message has the kind, arrays, shapes and meta keys of a run
    without them; none carries their labels, features or keys; the social party sees only
    aligned positions. The held-out users of the campaign are not trained on."""
    from test_privacy import _needles

    from fedads.eval.campaign import campaign_split
    from fedads.protocol.runtime import split_unaligned

    world = generate_world(WorldConfig(n_users=1_500, seed=11))
    social, ecommerce = world.party_tables()
    on = _unaligned_settings(True)
    values, runtimes, captured = _captured_job(social, ecommerce, on, tmp_path / "on")
    _, _, without = _captured_job(social, ecommerce, _unaligned_settings(False), tmp_path / "off")
    runtime = runtimes["ecommerce"]
    party = runtime.party
    aligned = runtime.aligned_rows
    # it did train on them: every unaligned training user once in the one epoch
    rows = runtime.unaligned_rows
    assert party.n_unaligned == rows.size > 0 and party.unaligned_step == -(-rows.size // 128)
    want, held_out = split_unaligned(ecommerce.n_rows, aligned, on.test_share, on.split_seed)
    np.testing.assert_array_equal(rows, want)
    assert not np.intersect1d(rows, aligned).size
    split = campaign_split(
        ecommerce.n_rows, aligned, values["test_positions"], on.test_share, on.split_seed
    )
    assert not np.intersect1d(rows, split.test_rows).size  # campaign held-out users: never
    np.testing.assert_array_equal(split.test_rows[~split.aligned], held_out)
    # the same messages as without them, in the same order
    assert [(s, r, _shape(e)) for s, r, _, e in captured] == [
        (s, r, _shape(e)) for s, r, _, e in without
    ]
    # nothing of theirs on the wire
    binary = ("float32", "float64", "int8")
    forbidden = _needles(ecommerce.labels(rows), binary, window=64)
    numeric = ecommerce.numeric_matrix(rows)
    for j in range(numeric.shape[1]):
        forbidden += _needles(numeric[:, j], ("float32", "float64"))
    assert len(forbidden) > 50
    wire = b"".join(data for _, _, data, _ in captured)
    for needle in forbidden:
        assert needle not in wire
    for key in ecommerce.keys()[rows][:200]:
        assert str(key).encode()[:12] not in wire
    n_aligned = int(values["n_aligned"])
    for _, receiver, _, envelope in captured:
        positions = envelope.arrays.get("positions")
        if receiver == "social" and positions is not None:
            assert positions.max(initial=0) < n_aligned


def test_unaligned_training_same_seed_same_numbers() -> None:
    social, ecommerce = generate_world(WorldConfig(n_users=2_000, seed=12)).party_tables()
    rows = AlignedRows.in_the_clear(social, ecommerce, SETTINGS.normalization)
    runs = [
        run_federated(
            social, ecommerce, _unaligned_settings(on), backend="inprocess", alignment=rows
        )
        for on in (True, True, False)
    ]
    np.testing.assert_array_equal(runs[0].values["scores"], runs[1].values["scores"])
    np.testing.assert_array_equal(runs[0].values["epoch_losses"], runs[1].values["epoch_losses"])
    assert not np.array_equal(runs[0].values["scores"], runs[2].values["scores"])


def test_unaligned_training_survives_a_party_rebuilt_per_message() -> None:
    """Flower rebuilds a party from its state between messages: the unaligned steps, their
    counter and the learned "no social account" embedding are in that state."""
    from fedads.protocol import Coordinator, InProcessTransport
    from fedads.protocol.parties import EcommerceParty, SocialParty, UnalignedUsers
    from fedads.protocol.runtime import split_unaligned

    social, ecommerce = generate_world(WorldConfig(n_users=1_200, seed=13)).party_tables()
    rows = AlignedRows.in_the_clear(social, ecommerce, SETTINGS.normalization)
    extra, _ = split_unaligned(ecommerce.n_rows, rows.ecommerce, 0.3, 0)
    unaligned = UnalignedUsers(
        ecommerce.numeric_matrix(extra),
        ecommerce.categorical_matrix(extra),
        ecommerce.labels(extra),
    )
    train, test = split_positions(rows.n_aligned, 0.3, 0)
    config = ProtocolConfig(mode="efficient", batch_size=64, chunk_batches=3, epochs=2, seed=2)

    def build_social() -> SocialParty:
        return SocialParty.from_table(social, rows.social)

    def build_ecommerce() -> EcommerceParty:
        e = ecommerce
        return EcommerceParty(
            e.numeric_matrix(rows.ecommerce),
            e.categorical_matrix(rows.ecommerce),
            e.labels(rows.ecommerce),
            unaligned=unaligned,
        )

    class Rebuilt:
        def __init__(self, build) -> None:  # noqa: ANN001
            self.build, self.state = build, {}
            self.name = build().name

        def handle(self, envelope):  # noqa: ANN001, ANN202
            party = self.build()
            party.set_state(self.state)
            reply = party.handle(envelope)
            self.state = party.get_state()
            return reply

    scores = []
    for parties in (
        {"social": build_social(), "ecommerce": build_ecommerce()},
        {"social": Rebuilt(build_social), "ecommerce": Rebuilt(build_ecommerce)},
    ):
        with InProcessTransport(parties) as transport:
            coordinator = Coordinator(transport, config)
            coordinator.fit(train)
            scores.append(coordinator.predict(test))
    assert parties["ecommerce"].state["counter.unaligned_step"][0] == 2 * -(-extra.size // 64)
    assert np.abs(parties["ecommerce"].state["no_social.weight"]).sum() > 0  # it learned
    np.testing.assert_allclose(scores[1], scores[0], rtol=1e-6, atol=1e-7)
