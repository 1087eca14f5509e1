"""Private alignment: PSI correctness, shared order, refusals, and what crosses the wire."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import rbcl

from fedads.align import (
    PSI_BACKENDS,
    PSI_KINDS,
    Alignment,
    KeyNormalization,
    PsiParty,
    RistrettoPsiParty,
    align_parties,
    aligned_order,
    coordinate_alignment,
    hashed_join,
    make_psi_party,
    normalize_keys,
)
from fedads.align.ristretto import hash_to_group
from fedads.errors import InputError, ProtocolError
from fedads.protocol.envelope import Envelope, encode

N = 1500
SECRETS = {"openmined": PsiParty.SECRET_STATE, "ristretto255": RistrettoPsiParty.SECRET_STATE}


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


@pytest.fixture(scope="module", params=PSI_BACKENDS)
def captured(request: pytest.FixtureRequest) -> dict:
    social_keys, ecommerce_keys, common = make_sets(N, N + 300, 600, seed=1)
    log: list[tuple[str, str, Envelope]] = []

    def relay(sender: str, receiver: str, envelope: Envelope) -> None:
        log.append((sender, receiver, envelope))

    backend = request.param
    social, ecommerce = align_parties(social_keys, ecommerce_keys, relay=relay, backend=backend)
    return dict(
        backend=backend,
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
    hash_prefixes |= {hashlib.sha512(k.encode()).digest()[:8] for k in keys}
    # ristretto255: the unblinded hash-to-group point of a key must not cross either.
    hash_prefixes |= {hash_to_group(k)[:8] for k in keys}
    payload_bytes = 0
    for sender, receiver, envelope in captured["log"]:
        wire = encode(envelope)  # header (kind, meta, array specs) + every array buffer
        assert not (_grams(wire, width) & key_grams), (sender, receiver, envelope.kind)
        assert not (_grams(wire, 8) & hash_prefixes), (sender, receiver, envelope.kind)
        for name, array in envelope.arrays.items():
            assert array.dtype == np.uint8, name
            if captured["backend"] == "ristretto255":
                assert array.ndim == 2 and array.shape[1] == 32, name
            else:
                assert array.ndim == 1, name
            buffer = array.tobytes()
            assert not (_grams(buffer, width) & key_grams), (envelope.kind, name)
            payload_bytes += len(buffer)
    assert payload_bytes > 0  # the check above did look at the blinded sets


def test_coordinator_meta_is_sizes_only(captured: dict) -> None:
    for _, _, envelope in captured["log"]:
        meta = dict(envelope.meta)
        if envelope.kind == "psi_hello":  # public config, the same in every run: not data
            assert meta.pop("backend") == captured["backend"]
        assert set(meta) <= {"n_keys", "n_peer_keys", "n_aligned"}, envelope.meta
        assert all(type(v) is int for v in meta.values()), envelope.meta
        assert envelope.kind in PSI_KINDS
    done = [e for _, _, e in captured["log"] if e.kind == "psi_done"]
    assert [e.meta["n_aligned"] for e in done] == [len(captured["common"])] * 2


def test_alignment_rows_read_only(captured: dict) -> None:
    with pytest.raises(ValueError):
        captured["social"].rows[0] = 1


# -- overlap sizes and normalisation ---------------------------------------------------------


@pytest.mark.parametrize("backend", PSI_BACKENDS)
def test_full_overlap_in_different_row_orders(backend: str) -> None:
    social_keys, _, _ = make_sets(1500, 1500, 1500, seed=2)
    ecommerce_keys = np.random.default_rng(3).permutation(social_keys)
    social, ecommerce = align_parties(social_keys, ecommerce_keys, parallel=False, backend=backend)
    check_alignment(social_keys, ecommerce_keys, social, ecommerce, set(social_keys.tolist()))
    assert social.coverage == ecommerce.coverage == 1.0


@pytest.mark.parametrize("backend", PSI_BACKENDS)
def test_no_overlap_is_a_clear_error(backend: str) -> None:
    social_keys, ecommerce_keys, _ = make_sets(1000, 1000, 0, seed=4)
    with pytest.raises(InputError) as info:
        align_parties(social_keys, ecommerce_keys, backend=backend)
    message = str(info.value)
    assert "no users in common" in message and "key column" in message
    assert "normalisation" in message and "lower" in message


@pytest.mark.parametrize("backend", PSI_BACKENDS)
def test_tiny_sets_single_common_key(backend: str) -> None:
    social, ecommerce = align_parties(["a", "b"], ["c", "b", "d"], backend=backend)
    assert social.rows.tolist() == [1] and ecommerce.rows.tolist() == [1]


@pytest.mark.parametrize("backend", PSI_BACKENDS)
def test_different_spellings_match_after_normalisation(backend: str) -> None:
    social_keys = np.array([" ABC ", "Def", "only-social", "x1"])
    ecommerce_keys = np.array(["ghi", "abc", "X1 ", "def\t", "only-shop"])
    rule = KeyNormalization(strip=True, lower=True)
    social, ecommerce = align_parties(
        social_keys, ecommerce_keys, normalization=rule, backend=backend
    )
    assert social.n_aligned == 3
    pairs = set(zip(social_keys[social.rows], ecommerce_keys[ecommerce.rows], strict=True))
    assert pairs == {(" ABC ", "abc"), ("Def", "def\t"), ("x1", "X1 ")}
    # Without lower-casing none of them match (the case differs in every shared key).
    with pytest.raises(InputError, match="no users in common"):
        align_parties(
            social_keys,
            ecommerce_keys,
            normalization=KeyNormalization(lower=False),
            backend=backend,
        )


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


@pytest.mark.parametrize("backend", PSI_BACKENDS)
def test_tampered_response_is_a_protocol_error(backend: str) -> None:
    def relay(sender: str, receiver: str, envelope: Envelope) -> Envelope | None:
        if envelope.kind == "psi_response" and receiver == "social":
            garbage = np.frombuffer(b"\xff" * 64, dtype=np.uint8)
            arrays = {name: garbage for name in envelope.arrays}
            return Envelope(envelope.kind, arrays, dict(envelope.meta))
        return None

    with pytest.raises(ProtocolError, match="party 'social'"):
        align_parties(["a", "b", "c"], ["b", "c"], relay=relay, backend=backend)


@pytest.mark.parametrize("backend", PSI_BACKENDS)
def test_steps_out_of_order_refused(backend: str) -> None:
    party = make_psi_party(["a", "b"], "social", backend=backend)
    with pytest.raises(ProtocolError, match="out of order; expected 'psi_start'"):
        party.handle(Envelope("psi_response"))
    party.handle(Envelope("psi_start"))
    with pytest.raises(ProtocolError, match="out of order"):
        party.handle(Envelope("psi_start"))
    with pytest.raises(ProtocolError, match="n_keys"):
        party.handle(Envelope("psi_hello", meta={"n_keys": 0, "backend": backend}))


@pytest.mark.parametrize("backend", PSI_BACKENDS)
def test_manual_steps_without_coordinator(backend: str) -> None:
    kind = {"openmined": PsiParty, "ristretto255": RistrettoPsiParty}[backend]
    social = kind(["u1", "u2", "u3"], "social")
    ecommerce = kind(["u3", "u9", "u1"], "ecommerce")
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


@pytest.mark.parametrize("backend", PSI_BACKENDS)
def test_state_round_trip_between_every_step(backend: str) -> None:
    """A host that rebuilds the party for each message (Flower ClientApp) gets the same result."""
    keys = {"social": ["u1", "u2", "u3", "u4"], "ecommerce": ["u4", "u9", "u2"]}
    states: dict[str, dict[str, np.ndarray]] = {}
    held_secrets: set[str] = set()

    def handle(party: str, envelope: Envelope) -> Envelope:
        fresh = make_psi_party(keys[party], party, backend=backend)
        if party in states:
            fresh.set_state(states[party])
        reply = fresh.handle(envelope)
        states[party] = fresh.get_state()
        held_secrets.update(set(states[party]) & set(SECRETS[backend]))
        return reply

    def send_all(envelopes: dict[str, Envelope]) -> dict[str, Envelope]:
        return {p: handle(p, e) for p, e in envelopes.items()}

    summary = coordinate_alignment(send_all)
    assert summary.n_aligned == 2 and summary.n_social == 4 and summary.n_ecommerce == 3
    rows = {p: states[p]["rows"] for p in keys}
    assert np.array(keys["social"])[rows["social"]].tolist() == (
        np.array(keys["ecommerce"])[rows["ecommerce"]].tolist()
    )
    assert held_secrets == set(SECRETS[backend])  # the state did carry every secret mid-way
    assert not set(states["social"]) & held_secrets  # ... and drops them once done
    with pytest.raises(ProtocolError, match="3 keys"):
        make_psi_party(["a", "b"], "social", backend=backend).set_state(states["ecommerce"])


# -- two backends ----------------------------------------------------------------------------


def test_backends_give_the_same_aligned_rows() -> None:
    social_keys, ecommerce_keys, common = make_sets(900, 700, 350, seed=8)
    by_backend = {
        backend: align_parties(social_keys, ecommerce_keys, backend=backend)
        for backend in PSI_BACKENDS
    }
    ristretto, openmined = by_backend["ristretto255"], by_backend["openmined"]
    check_alignment(social_keys, ecommerce_keys, *ristretto, common)
    for side in (0, 1):
        np.testing.assert_array_equal(ristretto[side].rows, openmined[side].rows)


def test_unknown_backend_refused() -> None:
    with pytest.raises(InputError, match=r"backend='p256' is not supported.*ristretto255"):
        make_psi_party(["a"], "social", backend="p256")
    with pytest.raises(InputError, match="backend"):
        align_parties(["a"], ["a"], backend="")


def test_backend_mismatch_refused_clearly() -> None:
    parties = {
        "social": make_psi_party(["a", "b"], "social", backend="ristretto255"),
        "ecommerce": make_psi_party(["b", "c"], "ecommerce", backend="openmined"),
    }

    def send_all(envelopes: dict[str, Envelope]) -> dict[str, Envelope]:
        return {p: parties[p].handle(e) for p, e in envelopes.items()}

    with pytest.raises(ProtocolError) as info:
        coordinate_alignment(send_all)
    message = str(info.value)
    assert "party 'social'" in message and "'openmined'" in message
    assert "'ristretto255'" in message and "psi-backend" in message and "psi_backend" in message


def _round2(keys: list[str]) -> tuple[RistrettoPsiParty, np.ndarray]:
    party = RistrettoPsiParty(keys, "social")
    party.hello()
    setup = party.setup(Envelope("psi_hello", meta={"n_keys": 5, "backend": "ristretto255"}))
    return party, setup.arrays["points"]


def test_round2_points_are_in_a_secret_random_order() -> None:
    keys = [f"user-{i:04d}" for i in range(400)]
    party, sent = _round2(keys)
    state = party.get_state()
    scalar, permutation = state["scalar"].tobytes(), state["permutation"]
    # What a row-order protocol would send: key i blinded, at position i.
    in_row_order = np.array(
        [list(rbcl.crypto_scalarmult_ristretto255(scalar, hash_to_group(k))) for k in keys],
        dtype=np.uint8,
    )
    assert sent.shape == (400, 32) and sent.dtype == np.uint8
    np.testing.assert_array_equal(sent, in_row_order[permutation])  # sent[i] is row perm[i]
    assert np.mean(permutation == np.arange(400)) < 0.05  # not the row order, nor close to it
    assert sorted(permutation.tolist()) == list(range(400))
    # Fresh per run: another party over the same keys uses another order and another scalar.
    other, other_sent = _round2(keys)
    assert not np.array_equal(other.get_state()["permutation"], permutation)
    assert not np.array_equal(
        np.sort(other_sent.view("S32").ravel()), np.sort(sent.view("S32").ravel())
    )


def _points_relay(kind: str, change) -> object:
    def relay(sender: str, receiver: str, envelope: Envelope) -> Envelope | None:
        if envelope.kind == kind and receiver == "social":
            arrays = {name: change(array) for name, array in envelope.arrays.items()}
            return Envelope(envelope.kind, arrays, dict(envelope.meta))
        return None

    return relay


def _invalid_first_point(array: np.ndarray) -> np.ndarray:
    out = array.copy()
    out[0] = 0xFF  # not a canonical ristretto255 encoding
    return out


@pytest.mark.parametrize("kind", ["psi_setup", "psi_response"])
@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda a: a.astype(np.int64), "dtype int64, expected uint8"),
        (lambda a: a.reshape(-1), r"shape \[\d+\], expected \[\d+, 32\]"),
        (lambda a: a[:, :31], r"shape \[\d+, 31\], expected \[\d+, 32\]"),
        (lambda a: a[:-1], r"shape \[2, 32\], expected \[3, 32\]"),
        (_invalid_first_point, "invalid ristretto255 point"),
    ],
    ids=["dtype", "flat", "width", "count", "invalid-point"],
)
def test_bad_points_array_refused_clearly(kind: str, change, expected: str) -> None:
    # Both parties hold 3 keys, so the count check is the same in rounds 3 and 4.
    with pytest.raises(ProtocolError, match=rf"party 'social'.*{kind}.*'points'.*{expected}"):
        align_parties(
            ["a", "b", "c"], ["b", "c", "d"], relay=_points_relay(kind, change), parallel=False
        )


def test_missing_points_array_refused() -> None:
    def relay(sender: str, receiver: str, envelope: Envelope) -> Envelope | None:
        if envelope.kind == "psi_setup" and receiver == "ecommerce":
            return Envelope(envelope.kind, {}, dict(envelope.meta))
        return None

    with pytest.raises(ProtocolError, match="party 'ecommerce'.*lacks the array 'points'"):
        align_parties(["a", "b"], ["b", "c"], relay=relay)


def test_repeated_peer_points_refused() -> None:
    def relay(sender: str, receiver: str, envelope: Envelope) -> Envelope | None:
        if envelope.kind == "psi_setup" and receiver == "social":
            points = envelope.arrays["points"].copy()
            points[1] = points[0]
            return Envelope(envelope.kind, {"points": points}, dict(envelope.meta))
        return None

    with pytest.raises(ProtocolError, match="party 'social'.*repeats a point"):
        align_parties(["a", "b"], ["b", "c"], relay=relay)


def test_ristretto_batches_join_exactly(monkeypatch: pytest.MonkeyPatch) -> None:
    """Points go through libsodium in batches; batch edges must not shift or drop any."""
    import fedads.align.ristretto as ristretto

    monkeypatch.setattr(ristretto, "_CHUNK", 7)
    social_keys, ecommerce_keys, common = make_sets(100, 80, 45, seed=9)
    social, ecommerce = align_parties(social_keys, ecommerce_keys, parallel=False)
    check_alignment(social_keys, ecommerce_keys, social, ecommerce, common)

    def relay(sender: str, receiver: str, envelope: Envelope) -> Envelope | None:
        if envelope.kind == "psi_setup" and receiver == "social":
            points = envelope.arrays["points"].copy()
            points[30] = 0xFF  # in the fifth batch of 7
            return Envelope(envelope.kind, {"points": points}, dict(envelope.meta))
        return None

    with pytest.raises(ProtocolError, match="invalid ristretto255 point at position 30"):
        align_parties(social_keys, ecommerce_keys, relay=relay, parallel=False)
