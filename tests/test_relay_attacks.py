"""The relay attacks of issue #13, re-enacted: each now fails with a clear error, no partial result.

1. Membership test: the relay substitutes its own blinded guesses for the e-commerce party's
   PSI setup (and patches the size fields), then reads the social party's answer.
2. Inflated intersection: the relay (or a malicious peer) repeats points in the last PSI round.
3. PSI restart: a second ``psi_start``.
4. Label oracle: ``evaluate`` and ``score`` about one row at a time.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rbcl
from _relay import small_setup

from fedads.align import align_parties, coordinate_alignment
from fedads.align.ristretto import hash_to_group
from fedads.errors import PartyError, ProtocolError
from fedads.federation import vfl_job
from fedads.protocol.envelope import Envelope
from fedads.protocol.runtime import ALIGNED_ROWS_FILE, SCORES_FILE, PartyRuntime
from fedads.protocol.sealing import SEALED


def _no_alignment(runtimes, tmp_path) -> None:
    for role, runtime in runtimes.items():
        assert runtime.aligned_rows is None and runtime.party is None
        assert not (tmp_path / role / ALIGNED_ROWS_FILE).exists()


# ------------------------------------------------------------------ 1. membership test
def _fake_points(guesses: list[str]) -> np.ndarray:
    c = rbcl.crypto_core_ristretto255_scalar_random()
    return np.array(
        [list(rbcl.crypto_scalarmult_ristretto255(c, hash_to_group(g))) for g in guesses],
        dtype=np.uint8,
    )


@pytest.mark.parametrize("how", ["clear", "sealed-shape"])
def test_relay_cannot_substitute_blinded_guesses(tmp_path, how: str) -> None:
    guesses = [f"+33612340{i:03d}" for i in range(10)]
    fake = _fake_points(guesses)

    def relay(party: str, envelope: Envelope) -> Envelope | None:
        meta = dict(envelope.meta)
        if party == "social" and envelope.kind == "psi_hello":
            return Envelope("psi_hello", envelope.arrays, {**meta, "n_keys": len(guesses)})
        if party == "social" and envelope.kind == "psi_setup":
            if how == "clear":
                arrays = {"points": fake}
            else:  # a blob of the right length, made without the e-commerce party's key
                blob = envelope.arrays[SEALED].copy()
                blob[-fake.size :] = fake.reshape(-1)
                arrays = {SEALED: blob}
            return Envelope("psi_setup", arrays, {**meta, "n_keys": len(guesses)})
        return None

    transport, runtimes, _ = small_setup(tmp_path, tamper=relay)
    expected = "in clear" if how == "clear" else "does not verify"
    with pytest.raises(PartyError, match=f"social.*{expected}") as error:
        coordinate_alignment(transport.send_all)
    assert error.value.party == "social"
    # the social party answered nothing about the guesses: its only psi_response never left
    assert not any(e.kind == "psi_response" for s, _, e in transport.seen if s == "social")
    _no_alignment(runtimes, tmp_path)


def test_relay_size_patches_are_ignored_the_sealed_sizes_count(tmp_path) -> None:
    """Patching only the clear size fields changes nothing: parties read the sealed ones."""

    def relay(party: str, envelope: Envelope) -> Envelope | None:
        if envelope.kind in ("psi_hello", "psi_setup", "psi_response"):
            return Envelope(envelope.kind, envelope.arrays, {**envelope.meta, "n_keys": 3})
        return None

    transport, runtimes, _ = small_setup(tmp_path, tamper=relay)
    summary = coordinate_alignment(transport.send_all)
    assert summary.n_aligned == runtimes["social"].aligned_rows.size > 3


# ------------------------------------------------------------------ 2. inflated intersection
def test_relay_cannot_inflate_the_intersection(tmp_path) -> None:
    seen: dict[str, np.ndarray] = {}

    def relay(party: str, envelope: Envelope) -> Envelope | None:
        if envelope.kind == "psi_response" and party == "social":
            blob = envelope.arrays[SEALED]
            seen["blob"] = blob
            return Envelope("psi_response", {SEALED: np.tile(blob, 2)}, dict(envelope.meta))
        return None

    transport, runtimes, _ = small_setup(tmp_path, tamper=relay)
    with pytest.raises(PartyError, match="social.*does not verify"):
        coordinate_alignment(transport.send_all)
    assert runtimes["social"].aligned_rows is None
    assert not (tmp_path / "social" / ALIGNED_ROWS_FILE).exists()


@pytest.mark.parametrize("backend", ["ristretto255", "openmined"])
def test_repeated_points_in_the_last_round_are_refused(backend: str) -> None:
    """Even a peer holding the keys (align_parties' relay has that power) cannot repeat points."""
    social = [f"s{i}" for i in range(300)]
    ecommerce = [f"s{i}" for i in range(270, 400)]  # true overlap: 30 users

    def relay(sender: str, receiver: str, envelope: Envelope) -> Envelope | None:
        if receiver == "social" and envelope.kind == "psi_response":
            name = "points" if backend == "ristretto255" else "response"
            if backend == "ristretto255":
                points = envelope.arrays[name]
                fake = points[np.arange(points.shape[0]) % 5]
            else:
                import private_set_intersection.python as psi

                response = psi.Response()
                response.ParseFromString(envelope.arrays[name].tobytes())
                items = list(response.encrypted_elements)
                del response.encrypted_elements[:]
                response.encrypted_elements.extend(items[i % 5] for i in range(len(items)))
                fake = np.frombuffer(response.SerializeToString(), dtype=np.uint8)
            return Envelope("psi_response", {name: fake}, dict(envelope.meta))
        return None

    with pytest.raises(ProtocolError, match="social.*repeats a point"):
        align_parties(social, ecommerce, relay=relay, parallel=False, backend=backend)


# ------------------------------------------------------------------ 3. PSI restart
def test_psi_restart_is_refused(tmp_path) -> None:
    transport, runtimes, _ = small_setup(tmp_path)
    summary = coordinate_alignment(transport.send_all)
    rows = runtimes["social"].aligned_rows.copy()
    for role in ("social", "ecommerce"):
        with pytest.raises(PartyError, match=f"{role}.*second 'psi_start'"):
            transport.send(role, Envelope("psi_start"))
    np.testing.assert_array_equal(runtimes["social"].aligned_rows, rows)
    assert summary.n_aligned == rows.size
    # also on a runtime rebuilt from the checkpoint (a Flower ClientApp per message)
    old = runtimes["ecommerce"]
    fresh = PartyRuntime(old.table, sealing=None)
    fresh.set_state(old.get_state())
    with pytest.raises(ProtocolError, match="second 'psi_start'"):
        fresh.handle(Envelope("psi_start"))
    # also in the middle of a PSI
    transport, runtimes, _ = small_setup(tmp_path / "mid")
    transport.send_all({"social": Envelope("psi_start"), "ecommerce": Envelope("psi_start")})
    with pytest.raises(PartyError, match="second 'psi_start'"):
        transport.send("social", Envelope("psi_start"))


# ------------------------------------------------------------------ 4. label oracle
def _oracle_query(transport, kind: str, positions: np.ndarray) -> Envelope:
    """What the oracle script did: embed ``positions`` at the social party, ask ``kind``."""
    embedded = transport.send("social", Envelope("embed", {"positions": positions}))
    request = Envelope(kind, {"positions": positions, **embedded.arrays})
    return transport.send("ecommerce", request)


def test_one_row_label_oracle_is_refused(tmp_path) -> None:
    transport, runtimes, settings = small_setup(tmp_path, n_users=1_500, min_query_rows=100)
    result = vfl_job(transport, settings.to_run_config())
    test = result["test_positions"]
    assert test.size >= 250
    # the run's scores stayed with the label party; the relay saw counts only
    assert "scores" not in result
    private = np.load(tmp_path / "ecommerce" / SCORES_FILE)
    assert np.isfinite(private[test]).all()
    assert not any("scores" in e.arrays for _, _, e in transport.seen)
    before = private.copy()
    for kind in ("evaluate", "score"):
        with pytest.raises(PartyError, match=f"ecommerce.*refuses '{kind}' about 1 row"):
            _oracle_query(transport, kind, test[:1])
    # repeating one row to reach the minimum does not help
    with pytest.raises(PartyError, match="repeat a row"):
        _oracle_query(transport, "evaluate", np.repeat(test[:1], 150))
    # differencing: S, then S plus one user, at the same model step
    reply = _oracle_query(transport, "evaluate", test[1:121])
    assert set(reply.meta) == {"loss_sum", "n_rows"} and not reply.arrays
    with pytest.raises(PartyError, match="already in an evaluate answer"):
        _oracle_query(transport, "evaluate", test[:121])
    # a query of the minimum size is answered, with the scores kept private
    reply = _oracle_query(transport, "score", test[:100])
    assert not reply.arrays and reply.meta == {"n_rows": 100}
    np.testing.assert_allclose(np.load(tmp_path / "ecommerce" / SCORES_FILE), before, rtol=1e-6)


def test_small_held_out_sets_are_scored_whole(tmp_path) -> None:
    """A tiny world: the floor is every row outside training, and one row is still refused."""
    transport, _, settings = small_setup(tmp_path, n_users=400)
    result = vfl_job(transport, settings.to_run_config())  # held-out < 256 rows: scored whole
    test = result["test_positions"]
    assert 1 < test.size < 256 and result["n_scored"] == test.size
    with pytest.raises(PartyError, match=f"at least {test.size} distinct rows"):
        _oracle_query(transport, "evaluate", test[:1])


@pytest.mark.parametrize(
    "node_config, expected",
    [
        ({"party": "ecommerce"}, 256),  # a SuperNode: the relay's run config cannot lower it
        ({"party": "ecommerce", "min-query-rows": 10}, 10),  # the label party's own choice
        ({"partition-id": 1}, 1),  # simulation: the caller is the only one configuring
    ],
)
def test_relay_cannot_lower_the_label_partys_query_floor(
    node_config: dict[str, object], expected: int
) -> None:
    from fedads.federation import FederationSettings, party_factory

    sample = Path(__file__).resolve().parents[1] / "data" / "sample" / "ecommerce.csv"
    run_config = {**FederationSettings().to_run_config(), "min-query-rows": 1, "sealing": False}
    runtime = party_factory("ecommerce", run_config, {**node_config, "ecommerce-path": str(sample)})
    assert runtime.party_config is not None
    assert runtime.party_config.min_query_rows == expected
