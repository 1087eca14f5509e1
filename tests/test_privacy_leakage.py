"""Label leakage: the attacks work, the defenses hold, the accounting matches opacus.

That the leak is measured identically through Flower's simulation engine (the default defense's
noise does not depend on the party being rebuilt between messages) is checked on the suite's
one shared Flower run: tests/test_flower_equivalence.py."""

from __future__ import annotations

import math

import numpy as np
import pytest

from fedads import FederationSettings, ProtocolConfig, WorldConfig, generate_world
from fedads.errors import InputError
from fedads.federation import split_positions
from fedads.privacy.accounting import gaussian_label_epsilon
from fedads.privacy.attacks import direction_scores, norm_scores, spectral_scores
from fedads.privacy.defenses import DEFAULT_STRENGTHS, Defense, randomized_response
from fedads.privacy.leakage import label_leakage, worst_leak
from fedads.protocol import Coordinator, InProcessTransport
from fedads.protocol.parties import EcommerceParty, SocialParty

DEFAULT = ProtocolConfig()  # the default defense and strength come from the protocol defaults


def _settings(
    defense: str, strength: float | None = None, epochs: int = 3, chunk_batches: int = 4
) -> FederationSettings:
    protocol = ProtocolConfig(
        mode="efficient",
        batch_size=128,
        chunk_batches=chunk_batches,
        epochs=epochs,
        defense=defense,
        defense_strength=strength,
    )
    return FederationSettings(protocol=protocol, verbose=False)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Small models: threads only add contention on a shared 2-core machine."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def small_world():
    return generate_world(WorldConfig(n_users=4_000, seed=3)).party_tables()


def _direct(tables, settings):
    """The parties and the coordinator without the PSI (aligned in the clear: fast tests).

    Returns the privacy block (both observers) and the held-out scores.
    """
    social, ecommerce = tables
    common, s_idx, e_idx = np.intersect1d(
        social.keys(), ecommerce.keys(), assume_unique=True, return_indices=True
    )
    labels = ecommerce.labels(e_idx)
    social_party = SocialParty(social.numeric_matrix(s_idx), social.categorical_matrix(s_idx))
    ecommerce_party = EcommerceParty(
        ecommerce.numeric_matrix(e_idx), ecommerce.categorical_matrix(e_idx), labels
    )
    train, test = split_positions(len(common), 0.3, 0)
    with InProcessTransport({"social": social_party, "ecommerce": ecommerce_party}) as transport:
        coordinator = Coordinator(transport, settings.protocol)
        coordinator.fit(train)
        scores = coordinator.predict(test)
    leakage = {
        "label_leakage": label_leakage(social_party.attack_log.read(), labels),
        "relay_label_leakage": label_leakage(coordinator.relay_log.read(), labels),
    }
    leakage["worst_leak_auc"] = worst_leak(
        {k: leakage[k] for k in ("label_leakage", "relay_label_leakage")}
    )
    return leakage, scores


# ---------------------------------------------------------------------------- attacks (unit)
def _toy_gradients(seed: int = 0, b: int = 256, d: int = 8):
    rng = np.random.default_rng(seed)
    jac = rng.normal(size=d) + 0.3 * rng.normal(size=(b, d))
    y = (rng.random(b) < 0.05).astype(np.float32)
    y[0] = 1.0
    return ((0.05 - y)[:, None] * jac / b).astype(np.float32), y


@pytest.mark.parametrize("attack", [norm_scores, direction_scores, spectral_scores])
def test_each_attack_separates_toy_labels(attack) -> None:
    g, y = _toy_gradients()
    scores = attack(g, 256)
    assert scores.shape == (256,)
    assert scores[y == 1].min() > scores[y == 0].max()


def test_spectral_orients_without_labels_toward_the_minority() -> None:
    g, y = _toy_gradients(seed=1)
    scores = spectral_scores(-g, 256)  # flipping every row must not flip the orientation
    assert ((scores > 0) == (y == 1)).all()


# ---------------------------------------------------------------------------- end to end
def test_undefended_attacks_leak_and_default_defense_protects(small_world) -> None:
    undefended, _ = _direct(small_world, _settings("none"))
    for view in ("label_leakage", "relay_label_leakage"):
        for attack, entry in undefended[view].items():
            assert entry["auc"] > 0.9, (view, attack, entry)
    # The relay decodes exactly what the social party receives.
    assert undefended["label_leakage"] == undefended["relay_label_leakage"]
    assert len(undefended["label_leakage"]["norm"]["per_epoch"]) == 3

    assert DEFAULT.defense != "none"
    defended, _ = _direct(small_world, _settings(DEFAULT.defense, DEFAULT.defense_strength))
    assert defended["worst_leak_auc"] <= 0.60, defended


@pytest.mark.parametrize("defense", ["max-norm", "marvell", "gaussian", "label-dp"])
def test_defenses_are_reproducible_with_the_seed(small_world, defense) -> None:
    settings = _settings(defense, None, epochs=1)
    first_leak, first = _direct(small_world, settings)
    second_leak, second = _direct(small_world, settings)
    np.testing.assert_array_equal(first, second)
    assert first_leak == second_leak


def test_every_run_reports_privacy(small_world, tmp_path) -> None:
    """The facade path: PSI, party-private files, the harness, report.json and report.md."""
    import json

    from fedads import Experiment, ExperimentConfig

    social, ecommerce = small_world
    config = ExperimentConfig(
        federation=_settings("none", epochs=1),
        backend="inprocess",
        references=("ecommerce_only",),
        n_bootstrap=50,
    )
    result = Experiment.from_tables(social, ecommerce, config).run(tmp_path, verbose=False)
    report = json.loads((tmp_path / "report.json").read_text())
    privacy = report["privacy"]
    assert set(privacy["label_leakage"]) == {"norm", "direction", "spectral"}
    assert privacy["label_leakage"]["spectral"]["auc"] > 0.9
    assert privacy["defense"] == {
        "name": "none", "strength": 0.0, "undefended": True, "epsilon": None
    }  # fmt: skip
    assert privacy["feature_inference"]["features"]
    assert result.privacy["worst_leak_auc"] == privacy["worst_leak_auc"]
    markdown = (tmp_path / "report.md").read_text()
    assert "## Label privacy" in markdown and "**undefended**" in markdown


def test_defense_protect_is_a_function_of_seed_and_step() -> None:
    g, y = _toy_gradients()
    p = np.full(len(y), 0.05)
    for name in ("max-norm", "marvell", "gaussian"):
        defense = Defense(name)
        a = defense.protect(g, y, p, seed=1, step=7)
        np.testing.assert_array_equal(a, defense.protect(g, y, p, seed=1, step=7))
        assert not np.array_equal(a, defense.protect(g, y, p, seed=1, step=8))
        assert not np.array_equal(a, g)


# ---------------------------------------------------------------------------- accounting
def test_gaussian_epsilon_matches_opacus_own_computation() -> None:
    from opacus.accountants.analysis.rdp import compute_rdp, get_privacy_spent

    sigma, epochs, delta = 4.0, 5, 1e-5
    orders = [1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64))
    rdp = compute_rdp(q=1.0, noise_multiplier=sigma / 2, steps=epochs, orders=orders)
    expected, _ = get_privacy_spent(orders=orders, rdp=rdp, delta=delta)
    got = Defense("gaussian", sigma).epsilon(epochs, delta)
    assert got == pytest.approx(expected, rel=1e-9)
    # Sanity against the closed form: E Gaussian releases = one with multiplier z / sqrt(E);
    # its RDP at order a is a E / (2 z^2), and the conversion is min_a rdp + log(1/delta)/(a-1).
    z = sigma / 2
    closed = min(a * epochs / (2 * z * z) + math.log(1 / delta) / (a - 1) for a in orders)
    assert got <= closed + 1e-9
    assert gaussian_label_epsilon(0.0, 3) == math.inf


def test_label_dp_epsilon_and_flip_rate() -> None:
    defense = Defense("label-dp", 1.0)
    assert defense.epsilon(5) == 1.0
    labels = np.zeros(1000, dtype=np.float32)
    np.testing.assert_array_equal(defense.train_labels(labels, 3), defense.train_labels(labels, 3))
    assert defense.train_labels(labels, 3).sum() > 0
    y = np.zeros(200_000, dtype=np.float32)
    flipped = randomized_response(y, 1.0, np.random.default_rng(0)).mean()
    assert flipped == pytest.approx(1 / (1 + math.e), abs=0.005)


def test_settings_carry_the_defense_through_the_run_config() -> None:
    settings = _settings("marvell", 3.5)
    back = FederationSettings.from_run_config(settings.to_run_config())
    assert (back.protocol.defense, back.protocol.defense_strength) == ("marvell", 3.5)
    default = FederationSettings.from_run_config(_settings("gaussian").to_run_config())
    assert default.protocol.defense_strength is None
    assert Defense("gaussian").value == DEFAULT_STRENGTHS["gaussian"]


def test_bad_defense_settings_say_what_to_fix() -> None:
    with pytest.raises(InputError, match="defense"):
        ProtocolConfig(defense="blur")
    with pytest.raises(InputError, match="defense_strength"):
        ProtocolConfig(defense="label-dp", defense_strength=0.0)


def test_leak_auc_per_epoch_and_retries() -> None:
    from fedads.privacy.observe import ATTACK_DTYPE

    records = np.zeros(8, dtype=ATTACK_DTYPE)
    records["position"] = [0, 1, 2, 3, 0, 1, 2, 3]
    records["epoch"] = [0, 0, 0, 0, 1, 1, 1, 1]
    records["norm"] = [0.1, 0.9, 0.2, 0.3, 0.9, 0.1, 0.2, 0.3]
    labels = np.array([0, 1, 0, 0], dtype=np.float32)
    doubled = np.concatenate([records, records[4:]])  # a retried message appends twice
    leak = label_leakage(doubled, labels)["norm"]
    assert leak["per_epoch"] == [1.0, 0.0]
    assert leak["auc"] == 0.0 and leak["auc_either_sign"] == 1.0 and leak["rows"] == 4


def test_cli_takes_the_defense_flags() -> None:
    from fedads.cli import _defense_fields, _demo_config, build_parser

    args = build_parser().parse_args(
        ["demo", "--quick", "--defense", "label-dp", "--defense-strength", "1.5"]
    )
    protocol = _demo_config(True, 0, "inprocess", _defense_fields(args)).federation.protocol
    assert (protocol.defense, protocol.defense_strength) == ("label-dp", 1.5)
    args = build_parser().parse_args(["run", "--social", "s", "--ecommerce", "e", "--key", "k"])
    assert _defense_fields(args) == {}  # the protocol's default defense applies
    with pytest.raises(SystemExit):
        build_parser().parse_args(["demo", "--defense", "blur"])
