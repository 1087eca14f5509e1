"""Early stopping of the federated model through the protocol (``early_stopping_patience``).

* The coordinator stops after ``patience`` epochs without a validation improvement and both
  parties go back to the best epoch's parameters: the scores equal those of a run trained for
  exactly that many epochs (same batch order, the validation questions change nothing).
* The same run through Flower's simulation engine (parties rebuilt from checkpoints, the kept
  best-epoch state included) gives the same epoch, losses and scores: checked on the suite's one
  shared Flower run, tests/test_flower_equivalence.py.
* Settings that cannot work fail with a message that says what to set.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from fedads import FederationSettings, ProtocolConfig, WorldConfig
from fedads.errors import InputError
from fedads.federation import run_federated
from fedads.protocol import Coordinator, Envelope, InProcessTransport
from fedads.protocol import messages as msg
from fedads.protocol.config import EARLY_STOPPING_MIN_DELTA
from fedads.protocol.parties import EcommerceParty, SocialParty
from fedads.world import generate_world

PROTOCOL = ProtocolConfig(
    mode="efficient",
    batch_size=256,
    chunk_batches=16,  # one message per epoch: few Flower round trips
    epochs=6,
    lr=0.02,  # high: the validation loss turns up within a few epochs
    seed=3,
    early_stopping_patience=2,
)
SETTINGS = FederationSettings(
    protocol=PROTOCOL, split_seed=3, valid_share=0.25, min_query_rows=64, verbose=False
)


@pytest.fixture(scope="module")
def tables():
    return generate_world(WorldConfig(n_users=3_000, seed=3)).party_tables()


@pytest.fixture(scope="module")
def stopped(tables):
    social, ecommerce = tables
    return run_federated(social, ecommerce, SETTINGS, backend="inprocess", alignment="clear")


def test_stops_after_patience_and_keeps_the_best_epoch(stopped) -> None:
    losses = stopped.values["epoch_valid_losses"]
    best = int(stopped.values["best_epoch"])
    # The rule, replayed on the reported losses: best = last strict improvement.
    expected_best, floor, waited = 0, np.inf, 0
    for epoch, loss in enumerate(losses, start=1):
        if loss < floor - EARLY_STOPPING_MIN_DELTA:
            expected_best, floor, waited = epoch, loss, 0
        else:
            waited += 1
    assert best == expected_best
    assert losses.size < PROTOCOL.epochs, "the case must stop early to test the restore"
    assert losses.size == best + PROTOCOL.early_stopping_patience
    assert waited == PROTOCOL.early_stopping_patience
    assert len(stopped.values["epoch_losses"]) == losses.size


def test_restored_scores_equal_a_run_of_exactly_the_best_epochs(tables, stopped) -> None:
    social, ecommerce = tables
    best = int(stopped.values["best_epoch"])
    fixed = replace(SETTINGS, protocol=replace(PROTOCOL, epochs=best, early_stopping_patience=None))
    run = run_federated(social, ecommerce, fixed, backend="inprocess", alignment=stopped)
    assert "best_epoch" not in run.values
    np.testing.assert_array_equal(
        run.values["epoch_valid_losses"], stopped.values["epoch_valid_losses"][:best]
    )
    np.testing.assert_array_equal(run.values["scores"], stopped.values["scores"])


def test_early_stopping_needs_validation_users_and_a_positive_patience() -> None:
    with pytest.raises(InputError, match="valid_share"):
        FederationSettings(protocol=PROTOCOL, valid_share=0.0).validate()
    with pytest.raises(InputError, match="early_stopping_patience"):
        ProtocolConfig(early_stopping_patience=0)
    settings = FederationSettings(protocol=PROTOCOL, valid_share=0.2)
    flat = settings.to_run_config()
    assert flat["protocol-early-stopping-patience"] == 2
    assert FederationSettings.from_run_config(flat) == settings
    assert ProtocolConfig().early_stopping_patience is None  # the documented default: off


def test_restore_before_keep_and_unknown_actions_are_refused(tables) -> None:
    social, ecommerce = tables
    n = 600
    parties = {
        "social": SocialParty(social.numeric_matrix()[:n], social.categorical_matrix()[:n]),
        "ecommerce": EcommerceParty(
            ecommerce.numeric_matrix()[:n],
            ecommerce.categorical_matrix()[:n],
            ecommerce.labels()[:n],
        ),
    }
    with InProcessTransport(parties) as transport:
        with pytest.raises(InputError, match="valid_positions"):
            Coordinator(transport, PROTOCOL).fit(np.arange(400))
        Coordinator(transport, replace(PROTOCOL, early_stopping_patience=None)).setup(
            np.arange(400)
        )
        for action, error in (("restore", "before any 'keep'"), ("undo", "not one of")):
            with pytest.raises(Exception, match=error):
                transport.send_all({msg.SOCIAL: Envelope(msg.CHECKPOINT, {}, {"action": action})})
