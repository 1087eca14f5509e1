"""Practitioner baselines: all of a platform's own users, no held-out label, validation pick."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from fedads.align import aligned_order
from fedads.errors import InputError
from fedads.experiment import Experiment, ExperimentConfig
from fedads.federation import FederationSettings, split_positions
from fedads.models.baselines import (
    GBDT_GRID,
    PRACTITIONER_MODELS,
    PractitionerFit,
    train_practitioner_baselines,
)
from fedads.protocol import ProtocolConfig
from fedads.tables import load_party_table
from fedads.world import WorldConfig, generate_world

FAST_GRID = GBDT_GRID[1:3]  # the search is the same code with fewer settings


def _aligned(social, ecommerce):
    common, s_idx, e_idx = np.intersect1d(
        social.keys(), ecommerce.keys(), assume_unique=True, return_indices=True
    )
    order = aligned_order(common)
    train, test = split_positions(len(common), 0.3, 0)
    return s_idx[order].astype(np.int64), e_idx[order].astype(np.int64), train, test


@pytest.fixture(scope="module")
def world_parts():
    world = generate_world(WorldConfig(n_users=4_000, seed=3))
    social, ecommerce = world.party_tables()
    return world, social, ecommerce, *_aligned(social, ecommerce)


@pytest.fixture(scope="module")
def fitted(world_parts) -> PractitionerFit:
    _, social, ecommerce, s_rows, e_rows, train, test = world_parts
    torch.set_num_threads(1)
    return train_practitioner_baselines(
        social, ecommerce, s_rows, e_rows, train, test, seed=0, grid=FAST_GRID, max_epochs=4
    )


def _with_flipped_labels(world, keys):
    """The e-commerce table with the labels of ``keys`` flipped (same everything else)."""
    frame = world.ecommerce.copy()
    flip = frame["key"].isin(set(keys))
    frame.loc[flip, "label"] = 1 - frame.loc[flip, "label"]
    _, template = world.party_tables()
    return load_party_table(
        frame,
        party="ecommerce",
        key="key",
        label="label",
        existing="is_existing_customer",
        categorical=list(template.categorical_columns),
        numeric=list(template.numeric_columns),
    )


def test_rows_used_are_all_own_users_minus_held_out(world_parts, fitted) -> None:
    _, social, ecommerce, _, _, train, test = world_parts
    assert tuple(fitted.fits) == PRACTITIONER_MODELS
    for name in ("ecommerce_gbdt", "ecommerce_net"):
        fit = fitted.fits[name]
        # every e-commerce user (aligned or not) except the held-out aligned ones
        assert fit.n_fit + fit.n_valid == ecommerce.n_rows - len(test)
        assert fit.scores.shape == (len(test),)
    social_fit = fitted.fits["social_gbdt"]
    assert social_fit.n_fit + social_fit.n_valid == len(train)  # told about aligned train only
    assert fitted.strongest_ecommerce in ("ecommerce_gbdt", "ecommerce_net")
    aucs = {k: fitted.fits[k].valid_auc_new for k in ("ecommerce_gbdt", "ecommerce_net")}
    assert fitted.strongest_ecommerce == max(aucs, key=aucs.get)
    assert json.dumps(fitted.to_dict())  # JSON-ready


def test_models_learn_something_on_held_out_users(world_parts, fitted) -> None:
    _, _, ecommerce, _, e_rows, _, test = world_parts
    label = ecommerce.labels(e_rows[test])
    # (the network gets only ~25 optimizer steps on this tiny world: not asserted)
    assert roc_auc_score(label, fitted.scores["ecommerce_gbdt"]) > 0.6
    assert roc_auc_score(label, fitted.scores["social_gbdt"]) > 0.5


def test_held_out_labels_never_reach_a_baseline(world_parts, fitted) -> None:
    world, social, ecommerce, s_rows, e_rows, train, test = world_parts
    flipped = _with_flipped_labels(world, ecommerce.keys()[e_rows[test]])
    assert not np.array_equal(flipped.labels(e_rows[test]), ecommerce.labels(e_rows[test]))
    again = train_practitioner_baselines(
        social, flipped, s_rows, e_rows, train, test, ("ecommerce_gbdt", "social_gbdt"), seed=0,
        grid=FAST_GRID,
    )  # fmt: skip
    for name in ("ecommerce_gbdt", "social_gbdt"):
        np.testing.assert_array_equal(again.scores[name], fitted.scores[name])
    # ... while flipping training labels does change them (the check can fail)
    changed = _with_flipped_labels(world, ecommerce.keys()[e_rows[train[:300]]])
    other = train_practitioner_baselines(
        social, changed, s_rows, e_rows, train, test, ("ecommerce_gbdt",), seed=0, grid=FAST_GRID
    )
    assert not np.array_equal(other.scores["ecommerce_gbdt"], fitted.scores["ecommerce_gbdt"])


def test_bad_kind_is_refused(world_parts) -> None:
    _, social, ecommerce, s_rows, e_rows, train, test = world_parts
    with pytest.raises(InputError, match="kind"):
        train_practitioner_baselines(social, ecommerce, s_rows, e_rows, train, test, ("gbdt",))


def test_experiment_reports_ecommerce_gbdt(tmp_path) -> None:
    torch.set_num_threads(1)
    protocol = ProtocolConfig(mode="efficient", batch_size=512, chunk_batches=4, epochs=2, seed=0)
    config = ExperimentConfig(
        world=WorldConfig(n_users=4_000, seed=1),
        federation=FederationSettings(protocol=protocol, verbose=False),
        backend="inprocess",
        references=("ecommerce_only", "ecommerce_gbdt"),
        n_bootstrap=50,
    )
    result = Experiment.from_world(config).run(tmp_path, verbose=False)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["models"]["ecommerce_gbdt"]["auc"] > 0.55
    assert report["extra"]["practitioner"]["strongest_ecommerce"] == "ecommerce_gbdt"
    assert result.evaluation.strongest_baseline == "ecommerce_gbdt"
    headline = result.headline()
    assert headline["lift_vs_ecommerce_gbdt.prospecting"] == pytest.approx(
        headline["lift_vs_strongest_ecommerce.prospecting"], nan_ok=True
    )
    # the headline contract stays against the matched ecommerce_only reference
    assert report["lift"]["prospecting"]["baseline"] == "ecommerce_only"
