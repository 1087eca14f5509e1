"""Private alignment: PSI correctness, shared order, refusals, and what crosses the wire."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from fedads.align import (
    PSI_KINDS,
    Alignment,
    KeyNormalization,
    PsiParty,
    align_parties,
    aligned_order,
    coordinate_alignment,
    hashed_join,
    normalize_keys,
)
from fedads.errors import InputError, ProtocolError
from fedads.protocol.envelope import Envelope, encode

N = 1500


def phone_numbers(rng: np.random.Generator, n: int) -> np.ndarray:
    """``n`` distinct French mobile numbers as strings, e.g. ``"+33612345678"``."""
    numbers = rng.choice(10**8, size=n, replace=False)
    return np.array([f"+336{x:08d}" for x in numbers])


def make_sets(
    n_social: int, n_ecommerce: int, n_common: int, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, set[str]]:
    """Two key arrays (each in random row order) sharing exactly ``n_common`` keys."""
    rng = np.random.default_rng(seed)
    pool = phone_numbers(rng, n_social + n_ecommerce - n_common)
    social = pool[:n_social]
    ecommerce = pool[n_social - n_common :]
    return (
        rng.permutation(social),
        rng.permutation(ecommerce),
        set(pool[n_social - n_common : n_social]),
    )


def check_alignment(
    social_keys: np.ndarray,
    ecommerce_keys: np.ndarray,
    social: Alignment,
    ecommerce: Alignment,
    expected: set[str],
) -> None:
    assert social.rows.dtype == np.int64 and ecommerce.rows.dtype == np.int64
    assert social.n_aligned == ecommerce.n_aligned == len(expected)
    assert social.n_own == len(social_keys) and ecommerce.n_own == len(ecommerce_keys)
    assert len(set(social.rows.tolist())) == social.n_aligned  # no row twice
    assert len(set(ecommerce.rows.tolist())) == ecommerce.n_aligned
    # Position i is the same user on both sides, and the set is exactly the intersection.
    np.testing.assert_array_equal(social_keys[social.rows], ecommerce_keys[ecommerce.rows])
    assert set(social_keys[social.rows].tolist()) == expected


# -- one captured run, shared by several tests ----------------------------------------------


@pytest.fixture(scope="module")
def captured() -> dict:
    social_keys, ecommerce_keys, common = make_sets(N, N + 300, 600, seed=1)
    log: list[tuple[str, str, Envelope]] = []

    def relay(sender: str, receiver: str, envelope: Envelope) -> None:
        log.append((sender, receiver, envelope))

    social, ecommerce = align_parties(social_keys, ecommerce_keys, relay=relay)
    return dict(
        social_keys=social_keys,
        ecommerce_keys=ecommerce_keys,
        common=common,
        social=social,
        ecommerce=ecommerce,
        log=log,
    )


def test_partial_overlap_exact_and_same_order(captured: dict) -> None:
    check_alignment(
        captured["social_keys"],
        captured["ecommerce_keys"],
        captured["social"],
        captured["ecommerce"],
        captured["common"],
    )


def test_message_sequence(captured: dict) -> None:
    kinds = [(s, r, e.kind) for s, r, e in captured["log"]]
    expected = []
    for sent, reply in zip(PSI_KINDS[:-1], PSI_KINDS[1:], strict=True):
        expected += [("coordinator", p, sent) for p in ("social", "ecommerce")]
        expected += [(p, "coordinator", reply) for p in ("social", "ecommerce")]
    assert kinds == expected


def _grams(data: bytes, width: int) -> set[bytes]:
    return {data[i : i + width] for i in range(len(data) - width + 1)}


def test_no_plaintext_key_or_hash_crosses(captured: dict) -> None:
    keys = [*captured["social_keys"].tolist(), *captured["ecommerce_keys"].tolist()]
    width = 7  # every 7-character substring of every key (keys are 12 characters)
    key_grams = set().union(*(_grams(k.encode(), width) for k in keys))
    hash_prefixes = {hashlib.sha256(k.encode()).digest()[:8] for k in keys}
    payload_bytes = 0
    for sender, receiver, envelope in captured["log"]:
        wire = encode(envelope)  # header (kind, meta, array specs) + every array buffer
        assert not (_grams(wire, width) & key_grams), (sender, receiver, envelope.kind)
        assert not (_grams(wire, 8) & hash_prefixes), (sender, receiver, envelope.kind)
        for name, array in envelope.arrays.items():
            assert array.dtype == np.uint8 and array.ndim == 1, name
            buffer = array.tobytes()
            assert not (_grams(buffer, width) & key_grams), (envelope.kind, name)
            payload_bytes += len(buffer)
    assert payload_bytes > 0  # the check above did look at the blinded sets


def test_coordinator_meta_is_sizes_only(captured: dict) -> None:
    for _, _, envelope in captured["log"]:
        assert set(envelope.meta) <= {"n_keys", "n_peer_keys", "n_aligned"}, envelope.meta
        assert all(type(v) is int for v in envelope.meta.values()), envelope.meta
        assert envelope.kind in PSI_KINDS
    done = [e for _, _, e in captured["log"] if e.kind == "psi_done"]
    assert [e.meta["n_aligned"] for e in done] == [len(captured["common"])] * 2


def test_alignment_rows_read_only(captured: dict) -> None:
    with pytest.raises(ValueError):
        captured["social"].rows[0] = 1


# -- overlap sizes and normalisation ---------------------------------------------------------


def test_full_overlap_in_different_row_orders() -> None:
    social_keys, _, _ = make_sets(1500, 1500, 1500, seed=2)
    ecommerce_keys = np.random.default_rng(3).permutation(social_keys)
    social, ecommerce = align_parties(social_keys, ecommerce_keys, parallel=False)
    check_alignment(social_keys, ecommerce_keys, social, ecommerce, set(social_keys.tolist()))
    assert social.coverage == ecommerce.coverage == 1.0


def test_no_overlap_is_a_clear_error() -> None:
    social_keys, ecommerce_keys, _ = make_sets(1000, 1000, 0, seed=4)
    with pytest.raises(InputError) as info:
        align_parties(social_keys, ecommerce_keys)
    message = str(info.value)
    assert "no users in common" in message and "key column" in message
    assert "normalisation" in message and "lower" in message


def test_tiny_sets_single_common_key() -> None:
    social, ecommerce = align_parties(["a", "b"], ["c", "b", "d"])
    assert social.rows.tolist() == [1] and ecommerce.rows.tolist() == [1]


def test_different_spellings_match_after_normalisation() -> None:
    social_keys = np.array([" ABC ", "Def", "only-social", "x1"])
    ecommerce_keys = np.array(["ghi", "abc", "X1 ", "def\t", "only-shop"])
    rule = KeyNormalization(strip=True, lower=True)
    social, ecommerce = align_parties(social_keys, ecommerce_keys, normalization=rule)
    assert social.n_aligned == 3
    pairs = set(zip(social_keys[social.rows], ecommerce_keys[ecommerce.rows], strict=True))
    assert pairs == {(" ABC ", "abc"), ("Def", "def\t"), ("x1", "X1 ")}
    # Without lower-casing none of them match (the case differs in every shared key).
    with pytest.raises(InputError, match="no users in common"):
        align_parties(social_keys, ecommerce_keys, normalization=KeyNormalization(lower=False))


def test_order_is_shared_reproducible_and_not_by_key() -> None:
    social_keys, ecommerce_keys, common = make_sets(1200, 1000, 600, seed=5)
    first_social, first_ecommerce = align_parties(social_keys, ecommerce_keys)
    # Shuffle both tables: rows move, the aligned key order must not.
    rng = np.random.default_rng(6)
    social_shuffled = rng.permutation(social_keys)
    ecommerce_shuffled = rng.permutation(ecommerce_keys)
    second_social, second_ecommerce = align_parties(social_shuffled, ecommerce_shuffled)
    np.testing.assert_array_equal(
        social_keys[first_social.rows], social_shuffled[second_social.rows]
    )
    np.testing.assert_array_equal(
        ecommerce_keys[first_ecommerce.rows], ecommerce_shuffled[second_ecommerce.rows]
    )
    ordered = social_keys[first_social.rows].tolist()
    assert ordered != sorted(ordered)
    # The order depends on the whole intersection (salt derived from it).
    subset = np.array(sorted(common))
    assert aligned_order(subset[:-1]).tolist() != aligned_order(subset)[:-1].tolist()


# -- refusals --------------------------------------------------------------------------------


def test_duplicate_keys_after_normalisation_refused() -> None:
    rule = KeyNormalization(strip=True, lower=True)
    with pytest.raises(InputError) as info:
        align_parties(["a", "b"], [" ABC ", "abc", "x"], normalization=rule)
    message = str(info.value)
    assert message.startswith("ecommerce keys") and "'abc'" in message and "' ABC '" in message
    with pytest.raises(InputError, match="social keys.*duplicated"):
        align_parties(["a", "a"], ["a"])


@pytest.mark.parametrize("bad", ["", "   "])
def test_empty_keys_refused(bad: str) -> None:
    with pytest.raises(InputError) as info:
        align_parties(["a", bad, "c"], ["a"])
    assert str(info.value).startswith("social keys") and "empty" in str(info.value)
    assert "[1]" in str(info.value)


def test_non_string_keys_refused() -> None:
    with pytest.raises(InputError, match="social keys.*not strings"):
        normalize_keys(np.array(["a", None], dtype=object), party="social")
    with pytest.raises(InputError, match="dtype int64"):
        normalize_keys(np.array([1, 2]), party="social")


def test_normalize_keys_returns_strings() -> None:
    out = normalize_keys([" A ", "b"], KeyNormalization(strip=True, lower=True))
    assert out.dtype.kind == "U" and out.tolist() == ["a", "b"]
    assert normalize_keys([" A "], KeyNormalization(strip=False)).tolist() == [" A "]


# -- protocol robustness ---------------------------------------------------------------------


def test_tampered_response_is_a_protocol_error() -> None:
    def relay(sender: str, receiver: str, envelope: Envelope) -> Envelope | None:
        if envelope.kind == "psi_response" and receiver == "social":
            garbage = np.frombuffer(b"\xff" * 64, dtype=np.uint8)
            return Envelope(envelope.kind, {"response": garbage}, dict(envelope.meta))
        return None

    with pytest.raises(ProtocolError, match="social"):
        align_parties(["a", "b", "c"], ["b", "c"], relay=relay)


def test_steps_out_of_order_refused() -> None:
    party = PsiParty(["a", "b"], "social")
    with pytest.raises(ProtocolError, match="out of order; expected 'psi_start'"):
        party.handle(Envelope("psi_response"))
    party.hello()
    with pytest.raises(ProtocolError, match="out of order"):
        party.hello()
    with pytest.raises(ProtocolError, match="n_keys"):
        party.setup(Envelope("psi_hello", meta={"n_keys": 0}))


def test_manual_steps_without_coordinator() -> None:
    social = PsiParty(["u1", "u2", "u3"], "social")
    ecommerce = PsiParty(["u3", "u9", "u1"], "ecommerce")
    hello_s, hello_e = social.hello(), ecommerce.hello()
    setup_s, setup_e = social.setup(hello_e), ecommerce.setup(hello_s)
    response_s, response_e = social.respond(setup_e), ecommerce.respond(setup_s)
    a_s, a_e = social.finish(response_e), ecommerce.finish(response_s)
    assert sorted(a_s.rows.tolist()) == [0, 2] and sorted(a_e.rows.tolist()) == [0, 2]
    assert np.array(["u1", "u2", "u3"])[a_s.rows].tolist() == (
        np.array(["u3", "u9", "u1"])[a_e.rows].tolist()
    )
    assert social.done().meta == {"n_keys": 3, "n_aligned": 2}


def test_coordinator_refuses_disagreeing_parties() -> None:
    def send_all(envelopes: dict[str, Envelope]) -> dict[str, Envelope]:
        kind = next(iter(envelopes.values())).kind
        following = PSI_KINDS[PSI_KINDS.index(kind) + 1]
        meta = {"n_keys": 5, "n_aligned": 1 if following == "psi_done" else 0}
        replies = {p: Envelope(following, meta=dict(meta)) for p in envelopes}
        if following == "psi_done":
            replies["ecommerce"] = Envelope(following, meta={"n_keys": 5, "n_aligned": 2})
        return replies

    with pytest.raises(ProtocolError, match="disagree"):
        coordinate_alignment(send_all)


# -- salted-hash baseline --------------------------------------------------------------------


def test_hashed_join_matches_psi_shape() -> None:
    social_keys, ecommerce_keys, common = make_sets(1500, 1200, 400, seed=7)
    social, ecommerce = hashed_join(social_keys, ecommerce_keys, b"s" * 32)
    check_alignment(social_keys, ecommerce_keys, social, ecommerce, common)
    assert "dictionary" in hashed_join.__doc__ and "10^10" in hashed_join.__doc__


def test_hashed_join_refusals() -> None:
    with pytest.raises(InputError, match="salt"):
        hashed_join(["a"], ["a"], b"short")
    with pytest.raises(InputError, match="no users in common"):
        hashed_join(["a"], ["b"], b"s" * 16)
    with pytest.raises(InputError, match="social keys.*duplicated"):
        hashed_join(["a", "a"], ["a"], b"s" * 16)


def test_state_round_trip_between_every_step() -> None:
    """A host that rebuilds the party for each message (Flower ClientApp) gets the same result."""
    keys = {"social": ["u1", "u2", "u3", "u4"], "ecommerce": ["u4", "u9", "u2"]}
    states: dict[str, dict[str, np.ndarray]] = {}

    def handle(party: str, envelope: Envelope) -> Envelope:
        fresh = PsiParty(keys[party], party)
        if party in states:
            fresh.set_state(states[party])
        reply = fresh.handle(envelope)
        states[party] = fresh.get_state()
        return reply

    def send_all(envelopes: dict[str, Envelope]) -> dict[str, Envelope]:
        return {p: handle(p, e) for p, e in envelopes.items()}

    summary = coordinate_alignment(send_all)
    assert summary.n_aligned == 2 and summary.n_social == 4 and summary.n_ecommerce == 3
    rows = {p: states[p]["rows"] for p in keys}
    assert np.array(keys["social"])[rows["social"]].tolist() == (
        np.array(keys["ecommerce"])[rows["ecommerce"]].tolist()
    )
    assert "server_key" not in states["social"]  # secrets dropped once done
    with pytest.raises(ProtocolError, match="3 keys"):
        PsiParty(["a", "b"], "social").set_state(states["ecommerce"])
