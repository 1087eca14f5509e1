"""Alignment reuse (``run_federated(alignment=...)``): sweeps skip the PSI, nothing new crosses.

* A run that reuses an earlier run's aligned rows, or aligns in the clear (simulations), gives
  bit-identical aligned rows, scores and lifts to the PSI run, in process (through Flower's
  simulation engine: the suite's one shared Flower run, tests/test_flower_equivalence.py).
* The reuse round carries no array and only the two sizes a PSI's ``psi_done`` carries; no
  ``psi_*`` envelope is sent.
* Rows that do not belong to the tables, or a party without rows in its private folder, fail
  with a message that says what to do.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from fedads import Experiment, ExperimentConfig, FederationSettings, ProtocolConfig, WorldConfig
from fedads.errors import InputError, ProtocolError
from fedads.federation import REUSE_ALIGNMENT_KEY, run_federated, vfl_job
from fedads.protocol import Envelope, InProcessTransport
from fedads.protocol.runtime import (
    ALIGNED_ROWS_FILE,
    ALIGNMENT_REUSE,
    SCORES_FILE,
    AlignedRows,
    PartyRuntime,
)
from fedads.world import generate_world

SETTINGS = FederationSettings(
    # One epoch in one chunk: one training message (the Flower run's cost is per message);
    # reuse is about the rows and what crosses, not about training longer.
    protocol=ProtocolConfig(mode="efficient", batch_size=128, chunk_batches=8, epochs=1, seed=3),
    split_seed=3,
    verbose=False,
)


@pytest.fixture(scope="module")
def tables():
    return generate_world(WorldConfig(n_users=1_500, seed=3)).party_tables()


@pytest.fixture(scope="module")
def psi_run(tables):
    social, ecommerce = tables
    return run_federated(social, ecommerce, SETTINGS, backend="inprocess")


def _same(run, reference) -> None:
    np.testing.assert_array_equal(run.social_rows, reference.social_rows)
    np.testing.assert_array_equal(run.ecommerce_rows, reference.ecommerce_rows)
    for name in ("n_aligned", "n_social", "n_ecommerce"):
        assert int(run.values[name]) == int(reference.values[name]), name
    for name in ("train_positions", "test_positions", "scores", "epoch_losses"):
        np.testing.assert_array_equal(run.values[name], reference.values[name], err_msg=name)


@pytest.mark.parametrize("how", ["run", "rows", "clear"])
def test_reused_or_clear_alignment_equals_the_psi_run_in_process(tables, psi_run, how) -> None:
    social, ecommerce = tables
    alignment = {"run": psi_run, "rows": AlignedRows.of(psi_run), "clear": "clear"}[how]
    run = run_federated(social, ecommerce, SETTINGS, backend="inprocess", alignment=alignment)
    _same(run, psi_run)
    assert sum(run.traffic.values()) < sum(psi_run.traffic.values())  # no PSI bytes


def test_experiment_facade_reuses_an_earlier_result(tables) -> None:
    social, ecommerce = tables
    config = ExperimentConfig(
        federation=SETTINGS, backend="inprocess", references=("ecommerce_only",), n_bootstrap=50
    )
    first = Experiment.from_tables(social, ecommerce, config).run(verbose=False)
    again = Experiment.from_tables(social, ecommerce, config).run(verbose=False, alignment=first)
    np.testing.assert_array_equal(first.scores.to_numpy(), again.scores.to_numpy())
    assert first.headline() == again.headline()


class _Recording:
    """An in-process transport that keeps every request and reply."""

    def __init__(self, inner: InProcessTransport) -> None:
        self.inner = inner
        self.seen: list[tuple[str, Envelope, Envelope]] = []

    def __getattr__(self, name: str):  # traffic, close, ...
        return getattr(self.inner, name)

    def send(self, party: str, envelope: Envelope) -> Envelope:
        reply = self.inner.send(party, envelope)
        self.seen.append((party, envelope, reply))
        return reply

    def send_all(self, envelopes: dict[str, Envelope]) -> dict[str, Envelope]:
        replies = self.inner.send_all(envelopes)
        self.seen.extend((p, envelopes[p], replies[p]) for p in envelopes)
        return replies


def test_reuse_round_carries_only_the_sizes_a_psi_reveals(tmp_path: Path, tables, psi_run):
    social, ecommerce = tables
    outs = {"social": tmp_path / "s", "ecommerce": tmp_path / "e"}
    AlignedRows.of(psi_run).write(outs)
    runtimes = {
        "social": PartyRuntime(social, out_dir=outs["social"]),
        "ecommerce": PartyRuntime(ecommerce, out_dir=outs["ecommerce"]),
    }
    with InProcessTransport(runtimes) as inner:
        transport = _Recording(inner)
        values = vfl_job(transport, {**SETTINGS.to_run_config(), REUSE_ALIGNMENT_KEY: True})
    scores = np.load(outs["ecommerce"] / SCORES_FILE)[values["test_positions"]]  # private
    np.testing.assert_array_equal(scores, psi_run.values["scores"])
    kinds = [request.kind for _, request, _ in transport.seen]
    assert not [k for k in kinds if k.startswith("psi_")]
    reuse = [(p, q, r) for p, q, r in transport.seen if q.kind == ALIGNMENT_REUSE]
    assert sorted(p for p, _, _ in reuse) == ["ecommerce", "social"]
    for party, request, reply in reuse:
        assert not request.arrays and not request.meta and not reply.arrays
        table = social if party == "social" else ecommerce
        assert reply.meta == {"n_keys": table.n_rows, "n_aligned": psi_run.values["n_aligned"]}


def test_rows_of_other_tables_are_refused(tables, psi_run) -> None:
    social, ecommerce = tables
    other_social, other_ecommerce = generate_world(
        WorldConfig(n_users=1_500, seed=4)
    ).party_tables()
    with pytest.raises(InputError, match="different keys|out of range"):
        run_federated(
            other_social, other_ecommerce, SETTINGS, backend="inprocess", alignment=psi_run
        )
    swapped = AlignedRows(psi_run.social_rows, psi_run.ecommerce_rows[::-1])
    with pytest.raises(InputError, match="different keys"):
        run_federated(social, ecommerce, SETTINGS, backend="inprocess", alignment=swapped)
    with pytest.raises(InputError, match="rows"):
        AlignedRows(psi_run.social_rows, psi_run.ecommerce_rows[:-1])
    with pytest.raises(InputError, match="alignment"):
        run_federated(social, ecommerce, SETTINGS, backend="inprocess", alignment="psi-please")
    with pytest.raises(InputError, match="no aligned rows"):
        run_federated(social, ecommerce, SETTINGS, backend="inprocess", alignment=object())


def test_party_without_rows_in_its_folder_says_what_to_do(tmp_path: Path, tables) -> None:
    social, _ = tables
    runtime = PartyRuntime(social, out_dir=tmp_path)
    with pytest.raises(ProtocolError, match="run the PSI once"):
        runtime.handle(Envelope(ALIGNMENT_REUSE))
    np.save(tmp_path / ALIGNED_ROWS_FILE, np.array([0, 0, 1], dtype=np.int64))
    with pytest.raises(ProtocolError, match="distinct row positions"):
        runtime.handle(Envelope(ALIGNMENT_REUSE))


def test_reuse_is_idempotent_and_never_swaps_an_alignment(tmp_path: Path, tables, psi_run) -> None:
    social, _ = tables
    AlignedRows.of(psi_run).write({"social": tmp_path, "ecommerce": tmp_path / "e"})
    runtime = PartyRuntime(social, out_dir=tmp_path)
    first = runtime.handle(Envelope(ALIGNMENT_REUSE))
    party = runtime.party
    again = runtime.handle(Envelope(ALIGNMENT_REUSE))  # a retried message
    assert again.meta == first.meta and runtime.party is party  # nothing rebuilt
    np.save(tmp_path / ALIGNED_ROWS_FILE, psi_run.social_rows[::-1].copy())
    with pytest.raises(ProtocolError, match="one alignment per run"):
        runtime.handle(Envelope(ALIGNMENT_REUSE))
    fresh = PartyRuntime(social, out_dir=tmp_path)
    fresh.handle(Envelope("psi_start"))
    with pytest.raises(ProtocolError, match="PSI is under way"):
        fresh.handle(Envelope(ALIGNMENT_REUSE))


def test_valid_share_holds_train_users_out_for_per_epoch_validation(tables, psi_run) -> None:
    """Sweeps choose epochs on validation users: kept out of fitting, never the held-out ones."""
    from dataclasses import replace

    social, ecommerce = tables
    settings = replace(SETTINGS, valid_share=0.25, min_query_rows=1)
    run = run_federated(social, ecommerce, settings, backend="inprocess", alignment=psi_run)
    fit, valid = run.values["train_positions"], run.values["valid_positions"]
    np.testing.assert_array_equal(run.values["test_positions"], psi_run.values["test_positions"])
    np.testing.assert_array_equal(np.union1d(fit, valid), psi_run.values["train_positions"])
    assert np.intersect1d(fit, valid).size == 0
    assert valid.size == round(0.25 * psi_run.values["train_positions"].size)
    losses = run.values["epoch_valid_losses"]
    assert losses.shape == (SETTINGS.protocol.epochs,) and np.isfinite(losses).all()
    assert 0.0 < losses.min() < 1.0  # a BCE of a trained model on a rare-positive label
    assert "valid_positions" not in psi_run.values  # default: no validation users
    with pytest.raises(InputError, match="valid_share"):
        replace(SETTINGS, valid_share=1.0).validate()
