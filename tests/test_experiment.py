"""End to end: world -> PSI -> federated training -> references; all in process here.

The README's bring-your-own-data shape through the experiment facade on the default backend
(Flower's simulation engine), written as a report and checked against the report contract and
the in-process transport, is the suite's one shared Flower run: tests/test_flower_equivalence.py.
Here, in process (Flower = in process, there): exact mode equals centralized training of the
same split model on the README-shaped tables, and the default world's AUC ordering (40k users).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from _tables import centralized_reference, readme_shaped_tables
from sklearn.metrics import roc_auc_score

from fedads.experiment import train_references
from fedads.federation import FederationSettings, run_federated, split_positions
from fedads.protocol import ProtocolConfig
from fedads.world import WorldConfig, generate_world

MODELS = ("federated", "ecommerce_only", "social_only", "centralized")
#: Exact mode, undefended: the same updates as centralized training (on any transport: the
#: transports give the same scores, tests/test_flower_equivalence.py).
EXACT = FederationSettings(
    protocol=ProtocolConfig(mode="exact", batch_size=256, epochs=2, seed=3, defense="none"),
    split_seed=3,
    verbose=False,
    # An arithmetic check: the label party releases every batch's loss (by default an epoch's
    # short last batch is pooled with the next epoch's first, tests/test_protocol.py).
    min_query_rows=1,
)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Small models: threads only add contention on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    return readme_shaped_tables(tmp_path_factory.mktemp("tables"), n_users=2_000)


def test_federated_auc_beats_ecommerce_only_on_default_world() -> None:
    """The default world, in process (the transport does not change scores, see below)."""
    protocol = ProtocolConfig(mode="efficient", batch_size=512, chunk_batches=8, epochs=4, seed=0)
    settings = FederationSettings(protocol=protocol, verbose=False)
    social, ecommerce = generate_world(WorldConfig(n_users=40_000, seed=0)).party_tables()
    run = run_federated(social, ecommerce, settings, backend="inprocess")
    train = np.asarray(run.values["train_positions"])
    test = np.asarray(run.values["test_positions"])
    scores = train_references(
        social, ecommerce, run.social_rows, run.ecommerce_rows, train, test, settings
    )
    scores["federated"] = np.asarray(run.values["scores"])
    labels = ecommerce.labels(run.ecommerce_rows[test])
    auc = {model: roc_auc_score(labels, scores[model]) for model in MODELS}
    # The default world gives social features a modest share of brand intent (docs/world.md):
    # the joint model must see it on held-out users; a margin keeps the test meaningful.
    assert auc["federated"] > auc["ecommerce_only"] + 0.003, auc
    # The centralized upper bound trains the same architecture on pooled data, without the
    # default label defense (noise on the gradients the label party sends, docs/privacy.md):
    # close to federated, less the defense's measured cost (0.015 at this size, 0.005 at 30k).
    assert 0.0 <= auc["centralized"] - auc["federated"] < 0.025, auc
    assert auc["social_only"] < auc["ecommerce_only"], auc
    assert all(0.5 < auc[model] < 1.0 for model in MODELS if model != "social_only"), auc


@pytest.fixture(scope="module")
def exact_run(tables):  # noqa: ANN201
    """Exact mode, undefended, in process, PSI included (Flower gives the same numbers:
    tests/test_flower_equivalence.py)."""
    social, shop = tables
    return run_federated(social, shop, EXACT, backend="inprocess")


def test_exact_mode_equals_centralized_training(tables, exact_run) -> None:
    """Exact mode = the same updates as centralized training of the same split model.

    Tolerance: relative 1e-5 on epoch losses and scores (float32 arithmetic in the same order;
    observed differences are 0). Efficient mode on the same data must differ, so the check bites.
    """
    social, ecommerce = tables
    assert "active_days_30d" in social.categorical_columns
    run = exact_run  # undefended: exact mode equals centralized only on true gradients
    assert len(run.values["test_positions"]) > 100
    history, scores = centralized_reference(social, ecommerce, run, EXACT.protocol)
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
