"""End-to-end sealing between the two parties: keys, what the relay sees, and what it cannot do."""

from __future__ import annotations

import os
import stat

import numpy as np
import pytest
from _relay import small_setup

from fedads.align import coordinate_alignment
from fedads.cli import main as cli_main
from fedads.errors import InputError, PartyError
from fedads.federation import vfl_job
from fedads.protocol.coordinator import Coordinator
from fedads.protocol.envelope import Envelope
from fedads.protocol.runtime import ALIGNED_ROWS_FILE, SCORES_FILE
from fedads.protocol.sealing import (
    SEALED,
    SealingKeys,
    fingerprint,
    fresh_keys,
    read_key,
    write_keypair,
)

PEER_ARRAYS = {"points", "embeddings", "gradients", "scores", "setup", "request", "response"}


def test_keys_command_writes_private_secret_and_prints_fingerprints(tmp_path, capsys) -> None:
    assert cli_main(["keys", "--role", "social", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    secret, public = tmp_path / "social.key", tmp_path / "social.pub"
    assert stat.S_IMODE(os.stat(secret).st_mode) == 0o600
    key = read_key(public, kind="public", role="social")
    assert fingerprint(key) in out
    assert secret.read_text().split()[-1] not in out  # the secret is never printed
    # a second run does not overwrite the secret key
    assert cli_main(["keys", "--role", "social", "--out", str(tmp_path)]) == 2
    with pytest.raises(InputError, match="secret key, not a public"):
        read_key(secret, kind="public")
    write_keypair("ecommerce", tmp_path)
    with pytest.raises(InputError, match="is the social party's key"):
        SealingKeys.from_files("social", secret, tmp_path / "social.pub")
    keys = SealingKeys.from_files("social", secret, tmp_path / "ecommerce.pub")
    assert "secret" not in repr(keys) and keys.secret.hex() not in repr(keys)


def test_sealed_run_matches_unsealed_and_relay_sees_no_payload(tmp_path) -> None:
    sealed, runtimes, settings = small_setup(tmp_path / "a")
    result = vfl_job(sealed, settings.to_run_config())
    plain, _, _ = small_setup(tmp_path / "b", keys={"social": None, "ecommerce": None})
    expected = vfl_job(plain, settings.to_run_config())
    np.testing.assert_array_equal(result["test_positions"], expected["test_positions"])
    np.testing.assert_allclose(result["epoch_losses"], expected["epoch_losses"], rtol=1e-6)
    got = np.load(tmp_path / "a" / "ecommerce" / SCORES_FILE)
    want = np.load(tmp_path / "b" / "ecommerce" / SCORES_FILE)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    assert np.isfinite(got[result["test_positions"]]).all()
    # What the relay saw: no party payload in clear, and sealed blobs on every forwarded one.
    kinds_with_blob = set()
    for _, _, envelope in sealed.seen:
        assert not set(envelope.arrays) & PEER_ARRAYS, envelope.kind
        assert not {k for k in envelope.arrays if k.endswith("_scale")}
        if SEALED in envelope.arrays:
            kinds_with_blob.add(envelope.kind)
    assert {"psi_hello", "psi_setup", "psi_response", "forward", "train", "embed", "score"} <= (
        kinds_with_blob
    )
    # ... while the unsealed relay sees them all
    assert any("embeddings" in e.arrays for _, _, e in plain.seen)


def _flip_byte(envelope: Envelope) -> Envelope:
    blob = envelope.arrays[SEALED].copy()
    blob[len(blob) // 2] ^= 1
    return Envelope(envelope.kind, {**envelope.arrays, SEALED: blob}, envelope.meta)


@pytest.mark.parametrize("kind", ["psi_setup", "train", "backward_forward"])
def test_tampered_payload_ends_the_run_naming_the_party(tmp_path, kind: str) -> None:
    receiver = {"psi_setup": "social", "train": "ecommerce", "backward_forward": "social"}[kind]

    def tamper(party: str, envelope: Envelope) -> Envelope | None:
        if party == receiver and envelope.kind == kind and SEALED in envelope.arrays:
            return _flip_byte(envelope)
        return None

    transport, _, settings = small_setup(tmp_path, tamper=tamper)
    with pytest.raises(PartyError, match=rf"{receiver}.*does not verify") as error:
        vfl_job(transport, settings.to_run_config())
    assert error.value.party == receiver


def test_replayed_dropped_or_clear_payload_is_refused(tmp_path) -> None:
    kept: dict[str, Envelope] = {}

    def replay(party: str, envelope: Envelope) -> Envelope | None:
        if envelope.kind == "train":
            if "first" not in kept:
                kept["first"] = envelope
            else:  # the second chunk gets the first chunk's embeddings again
                return Envelope("train", kept["first"].arrays, kept["first"].meta)
        return None

    transport, _, settings = small_setup(tmp_path / "replay", tamper=replay)
    with pytest.raises(PartyError, match="ecommerce.*(sequence number|other rows)"):
        vfl_job(transport, settings.to_run_config())

    def clear(party: str, envelope: Envelope) -> Envelope | None:
        if envelope.kind == "train":
            arrays = dict(envelope.arrays)
            arrays.pop(SEALED)
            n = arrays["positions"].size
            return Envelope("train", {**arrays, "embeddings": np.zeros((n, 8), np.float32)}, {})
        return None

    transport, _, settings = small_setup(tmp_path / "clear", tamper=clear)
    with pytest.raises(PartyError, match="ecommerce.*in clear"):
        vfl_job(transport, settings.to_run_config())


def test_dropped_message_is_detected_as_out_of_order(tmp_path) -> None:
    transport, _, settings = small_setup(tmp_path)
    summary = coordinate_alignment(transport.send_all)
    coordinator = Coordinator(transport, settings.protocol)
    coordinator.setup(np.arange(summary.n_aligned // 3, dtype=np.int64))
    positions = np.arange(summary.n_aligned - 300, summary.n_aligned, dtype=np.int64)
    transport.send("social", Envelope("embed", {"positions": positions}))  # dropped by the relay
    second = transport.send("social", Envelope("embed", {"positions": positions}))
    with pytest.raises(PartyError, match="ecommerce.*sequence number 4, expected 3"):
        transport.send("ecommerce", Envelope("score", {"positions": positions, **second.arrays}))


def test_payload_from_another_session_is_refused(tmp_path) -> None:
    keys = fresh_keys()  # the same long-term keys for both runs
    recorded: dict[str, Envelope] = {}

    def record(party: str, envelope: Envelope) -> Envelope | None:
        if party == "ecommerce" and envelope.kind == "psi_setup":
            recorded["setup"] = envelope
        return None

    first, _, _ = small_setup(tmp_path / "one", keys=keys, tamper=record)
    coordinate_alignment(first.send_all)

    def inject(party: str, envelope: Envelope) -> Envelope | None:
        if party == "ecommerce" and envelope.kind == "psi_setup":
            return recorded["setup"]
        return None

    second, runtimes, _ = small_setup(tmp_path / "two", keys=keys, tamper=inject)
    with pytest.raises(PartyError, match="ecommerce.*another session"):
        coordinate_alignment(second.send_all)
    assert runtimes["ecommerce"].aligned_rows is None
    assert not (tmp_path / "two" / "ecommerce" / ALIGNED_ROWS_FILE).exists()


def test_a_third_key_cannot_speak_for_a_party(tmp_path) -> None:
    """A node with its own key pair (not the social party's) cannot make payloads that verify."""
    real = fresh_keys()
    impostor = fresh_keys()
    keys = {
        "social": SealingKeys("social", impostor["social"].secret, real["social"].peer_public),
        "ecommerce": real["ecommerce"],
    }
    transport, _, _ = small_setup(tmp_path, keys=keys)
    with pytest.raises(PartyError, match="ecommerce.*does not verify"):
        coordinate_alignment(transport.send_all)


def test_sealed_bare_parties_pipelined_train_like_unsealed() -> None:
    """SealedParty around bare parties: the social party sends two chunks before it hears from
    the e-commerce party (pipeline); the run equals the unsealed one."""
    from fedads.align import align_parties
    from fedads.protocol import Coordinator, InProcessTransport, ProtocolConfig
    from fedads.protocol.parties import EcommerceParty, SocialParty
    from fedads.protocol.sealing import SealedParty
    from fedads.world import generate_world

    social, ecommerce = generate_world(n_users=800, seed=3).party_tables()
    s_align, e_align = align_parties(social.keys(), ecommerce.keys())
    cfg = ProtocolConfig(mode="efficient", batch_size=64, chunk_batches=2, epochs=1, pipeline=True)
    train = np.arange(s_align.n_aligned * 2 // 3, dtype=np.int64)
    losses = []
    for sealed in (False, True):
        parties = {
            "social": SocialParty.from_table(social, np.asarray(s_align.rows)),
            "ecommerce": EcommerceParty.from_table(ecommerce, np.asarray(e_align.rows)),
        }
        if sealed:
            keys = fresh_keys()
            parties = {role: SealedParty(p, keys[role]) for role, p in parties.items()}
        with InProcessTransport(parties) as transport:
            losses.append(Coordinator(transport, cfg).fit(train).batch_losses)
    np.testing.assert_array_equal(losses[0], losses[1])


def test_party_keys_come_from_the_node_config_and_are_required(tmp_path) -> None:
    from fedads.federation import party_keys

    write_keypair("social", tmp_path / "s")
    write_keypair("ecommerce", tmp_path / "e")
    node = {
        "social-secret-key": str(tmp_path / "s" / "social.key"),
        "social-peer-key": str(tmp_path / "e" / "ecommerce.pub"),
    }
    keys = party_keys("social", {"sealing": False}, node)  # keys win over the run config
    assert keys is not None and keys.peer_public == read_key(
        tmp_path / "e" / "ecommerce.pub", kind="public"
    )
    assert party_keys("social", {"sealing": False}, {}) is None  # explicit opt-out only
    with pytest.raises(InputError, match="no sealing keys configured.*fedads keys"):
        party_keys("social", {}, {})
    with pytest.raises(InputError, match="is the social party's key; pass the ecommerce"):
        party_keys(
            "ecommerce",
            {},
            {
                "ecommerce-secret-key": str(tmp_path / "s" / "social.key"),
                "ecommerce-peer-key": str(tmp_path / "e" / "ecommerce.pub"),
            },
        )
