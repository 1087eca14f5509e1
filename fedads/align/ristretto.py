"""Two-way Diffie-Hellman PSI over the ristretto255 group (libsodium via ``rbcl``): the default.

Each party P draws a fresh secret scalar ``a_P``. With ``H`` a hash to the group
(domain-separated SHA-512 of the normalised key, 64 bytes, mapped by libsodium's
``crypto_core_ristretto255_from_hash``), exponentiation commutes: ``a_P (a_Q H(k)) =
a_Q (a_P H(k))``, so a key both parties hold ends up as the same double-blinded point on both
sides, and a key only one party holds as a point nobody else can link to it (DDH in a
prime-order group). Per key and per side that is 1 hash-to-group and 2 scalar multiplications,
against about 4 P-256 operations for the openmined-psi backend (setup blind, request blind,
re-blind, unblind), and ristretto255 operations are cheaper too.

Rounds (the coordinator forwards each reply to the peer unchanged)::

    round  P receives              P sends                              P computes
    1      psi_start               psi_hello   meta n_keys, backend     -
    2      psi_hello of Q          psi_setup   points uint8 [n_P, 32]   a_P H(k) for its own
                                               meta n_keys, n_peer_keys keys, in a secret
                                                                        random order pi_P
    3      psi_setup of Q          psi_response                         a_P (a_Q H(y)) for each
                                               points uint8 [n_Q, 32]   point of Q, in the order
                                               meta n_keys, n_peer_keys received; keeps that set
    4      psi_response of Q       psi_done    meta n_keys, n_aligned   own points double-blinded
                                                                        (pi_P order), un-permute,
                                                                        intersect with the set

32 bytes per key cross in round 2 and in round 3 (compressed ristretto255 encodings; 64 bytes
per key and direction in total). Leakage is that of the openmined-psi backend: each party
learns which of its own rows are shared and the peer's set size. The secret order ``pi_P``
makes the round-2 positions meaningless, so matching a shared key to the peer's array does
not reveal the peer's row position of that user (which could carry e.g. sign-up order). The
coordinator sees sizes, the backend name and blinded points only.
"""

from __future__ import annotations

import hashlib
import os
from functools import partial

import numpy as np
import rbcl

from fedads.align.result import Alignment, aligned_order
from fedads.align.steps import PSI_DONE, PSI_RESPONSE, PSI_SETUP, PsiSteps
from fedads.envelope import Envelope

POINT_BYTES = 32
"""Bytes of one ristretto255 point encoding (also the scalar size)."""

_HASH_DOMAIN = b"fedads.align.ristretto255.v1/key-to-group\x00"
"""SHA-512 prefix: keys are hashed to the group only for this protocol (domain separation)."""

_POINTS = "points"  # the one array name in psi_setup and psi_response

_CHUNK = 1 << 16
"""Points per batch of libsodium calls: bounds the per-point ``bytes`` objects alive at once
(about 70 bytes each) to a few MB instead of ~150 MB at 1M keys; the output is one array."""


def hash_to_group(key: str) -> bytes:
    """``H(key)``: the 32-byte ristretto255 point of a normalised key (never sent as is).

    ``from_hash(SHA-512(domain || utf-8 key))``: libsodium's hash-to-group takes 64 uniform
    bytes (Elligator on each half, then added), so the point's discrete log is unknown.
    """
    digest = hashlib.sha512(_HASH_DOMAIN)
    digest.update(key.encode())
    return rbcl.crypto_core_ristretto255_from_hash(digest.digest())


def _secret_permutation(n: int) -> np.ndarray:
    """``int64 [n]`` uniformly random permutation from the OS CSPRNG (not numpy's PRNG).

    argsort of 64-bit random values; ties (probability ~ n^2 / 2^65) are broken by position,
    which does not bias anything an observer can use.
    """
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    noise = np.frombuffer(os.urandom(8 * n), dtype=np.uint64)
    return np.argsort(noise, kind="stable").astype(np.int64, copy=False)


def _points_of(raw: bytes) -> list[bytes]:
    """Split ``32 n`` bytes into ``n`` point encodings (rbcl takes ``bytes`` only)."""
    return [raw[i : i + POINT_BYTES] for i in range(0, len(raw), POINT_BYTES)]


def _as_rows(points: bytes | np.ndarray) -> np.ndarray:
    """``uint8 [n, 32]`` view of concatenated point encodings (no copy for bytes)."""
    return np.frombuffer(points, dtype=np.uint8).reshape(-1, POINT_BYTES)


def _as_sortable(rows: np.ndarray) -> np.ndarray:
    """``S32 [n]`` view of ``uint8 [n, 32]`` rows, for exact sort and search.

    Comparing fixed-width ``S32`` values is comparing all 32 bytes (NUL padding only strips
    trailing zeros, which both sides of a comparison share at equal width).
    """
    return np.ascontiguousarray(rows).view(f"S{POINT_BYTES}").reshape(-1)


class RistrettoPsiParty(PsiSteps):
    """One party's side of two-way DH-PSI over ristretto255 (see the module docstring).

    Same steps, envelope kinds and state contract as :class:`fedads.align.PsiParty`. The
    keys never leave this object except hashed to the group and blinded with the secret scalar.
    rbcl releases the GIL inside libsodium, so two parties in two threads run on two cores.

    Arguments and errors: as :class:`fedads.align.steps.PsiSteps`.
    """

    BACKEND = "ristretto255"
    SECRET_STATE = ("scalar", "permutation", "peer_points")

    def _init_secrets(self) -> None:
        # Secrets, drawn in setup() and dropped after the intersection; never in an envelope.
        self._scalar: bytes | None = None
        self._permutation: np.ndarray | None = None  # int64 [n_own]: sent[i] is own row perm[i]
        self._peer_points: np.ndarray | None = None  # S32 [n_peer] sorted: a_P a_Q H(peer keys)

    # -- steps -----------------------------------------------------------------------------

    def setup(self, peer_hello: Envelope) -> Envelope:
        """Round 2: our keys hashed to the group and blinded, in a secret random order.

        Returns:
            ``psi_setup`` with array ``points``: ``uint8 [n_own, 32]``.
        """
        self._n_peer = self._read_hello(peer_hello)
        self._scalar = rbcl.crypto_core_ristretto255_scalar_random()
        self._permutation = _secret_permutation(self.n_own)
        blind = partial(rbcl.crypto_scalarmult_ristretto255, self._scalar)
        to_group = rbcl.crypto_core_ristretto255_from_hash
        prefix = hashlib.sha512(_HASH_DOMAIN)
        keys = self._keys

        def blinded(row: int) -> bytes:  # hash_to_group inlined: a copied prefix is faster
            digest = prefix.copy()
            digest.update(keys[row].encode())
            return blind(to_group(digest.digest()))

        sent = np.empty((self.n_own, POINT_BYTES), dtype=np.uint8)
        for start in range(0, self.n_own, _CHUNK):
            rows = self._permutation[start : start + _CHUNK].tolist()
            sent[start : start + len(rows)] = _as_rows(b"".join(map(blinded, rows)))
        return Envelope(
            PSI_SETUP,
            arrays={_POINTS: sent},
            meta={"n_keys": self.n_own, "n_peer_keys": self._n_peer},
        )

    def respond(self, peer_setup: Envelope) -> Envelope:
        """Round 3: blind the peer's points with our scalar; keep them as the match set.

        Returns:
            ``psi_response`` with array ``points``: ``uint8 [n_peer, 32]``, in the order
            received (so the peer can un-permute them).
        """
        self._expect(peer_setup, PSI_SETUP)
        self._advance(PSI_SETUP, PSI_RESPONSE)
        self._check_sizes(peer_setup, n_keys=self._n_peer, n_peer_keys=self.n_own)
        peer = self._points(peer_setup, int(self._n_peer or 0))
        if self._scalar is None:  # only after set_state() with a state cut short
            raise self._error("respond: the secret scalar is missing; restore the full state")
        blind = partial(rbcl.crypto_scalarmult_ristretto255, self._scalar)
        reply = np.empty_like(peer, dtype=np.uint8)
        for start in range(0, peer.shape[0], _CHUNK):
            items = _points_of(peer[start : start + _CHUNK].tobytes())
            try:
                reply[start : start + len(items)] = _as_rows(b"".join(map(blind, items)))
            except RuntimeError:  # libsodium refuses non-canonical or small-order encodings
                raise self._bad_point(peer_setup, items, start) from None
        kept = np.sort(_as_sortable(reply))
        if kept.size > 1 and bool(np.any(kept[1:] == kept[:-1])):
            raise self._error(f"{peer_setup.kind!r} array 'points' repeats a point")
        self._peer_points = kept
        return Envelope(
            PSI_RESPONSE,
            arrays={_POINTS: reply},
            meta={"n_keys": self.n_own, "n_peer_keys": int(self._n_peer or 0)},
        )

    def _intersect(self, peer_response: Envelope) -> Alignment:
        """Round 4: un-permute our double-blinded points and look them up in the kept set."""
        self._expect(peer_response, PSI_RESPONSE)
        self._advance(PSI_RESPONSE, PSI_DONE)
        self._check_sizes(peer_response, n_keys=self._n_peer, n_peer_keys=self.n_own)
        received = self._points(peer_response, self.n_own)
        if self._permutation is None or self._peer_points is None:  # a state cut short
            raise self._error(
                "finish: the permutation or kept points are missing; restore the full state"
            )
        own = np.empty((self.n_own, POINT_BYTES), dtype=np.uint8)
        own[self._permutation] = received  # back to row order: received[i] is row perm[i]
        own_points = _as_sortable(own)
        kept = self._peer_points
        where = np.searchsorted(kept, own_points)
        where[where == kept.size] = 0
        shared = kept[where] == own_points if kept.size else np.zeros(self.n_own, dtype=bool)
        # Every kept point came out of our own scalar multiplication, so matches are valid
        # points; an invalid encoding among the rest means the peer is broken: say so.
        for row in np.flatnonzero(~shared).tolist():
            if not rbcl.crypto_core_ristretto255_is_valid_point(own[row].tobytes()):
                raise self._error(
                    f"{peer_response.kind!r} array 'points' holds an invalid ristretto255 point "
                    f"(for our row {row})"
                )
        rows = np.flatnonzero(shared).astype(np.int64)
        order = aligned_order([self._keys[i] for i in rows.tolist()]) if rows.size else rows
        self.alignment = Alignment(rows[order], self.n_own, self.name)
        self._scalar = self._permutation = self._peer_points = None  # secrets no longer needed
        return self.alignment

    # -- state (for hosts that rebuild the party between messages, e.g. a Flower ClientApp) --

    def get_state(self) -> dict[str, np.ndarray]:
        """Everything needed to resume the protocol on a fresh party over the same keys.

        PARTY-PRIVATE: holds the secret scalar and permutation. Keep it in the party's local
        state; never put it in an envelope.

        Returns:
            ``stage`` (``int64 [1]``, index into PSI_KINDS of the next expected step),
            ``n_own``; after round 2 ``n_peer``, ``scalar`` (``uint8 [32]``) and
            ``permutation`` (``int64 [n_own]``); after round 3 ``peer_points``
            (``uint8 [n_peer, 32]``, sorted); after round 4 ``rows`` (``int64 [n_aligned]``)
            and no secret.
        """
        state = self._common_state()
        if self._scalar is not None:
            state["scalar"] = np.frombuffer(self._scalar, dtype=np.uint8).copy()
        if self._permutation is not None:
            state["permutation"] = self._permutation
        if self._peer_points is not None:
            state["peer_points"] = self._peer_points.view(np.uint8).reshape(-1, POINT_BYTES)
        return state

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`get_state` returned (this object must hold the same keys)."""
        self._restore_common(state)
        self._scalar = self._permutation = self._peer_points = None
        if "scalar" in state:
            scalar = np.asarray(state["scalar"])
            if scalar.dtype != np.uint8 or scalar.shape != (POINT_BYTES,):
                raise self._error(f"set_state: 'scalar' must be uint8 [{POINT_BYTES}]")
            self._scalar = scalar.tobytes()
        if "permutation" in state:
            permutation = np.asarray(state["permutation"], dtype=np.int64).reshape(-1)
            if permutation.size != self.n_own:
                raise self._error(
                    f"set_state: 'permutation' has {permutation.size} entries, expected "
                    f"{self.n_own}"
                )
            self._permutation = permutation
        if "peer_points" in state:
            points = np.asarray(state["peer_points"])
            if points.dtype != np.uint8 or points.ndim != 2 or points.shape[1] != POINT_BYTES:
                raise self._error(f"set_state: 'peer_points' must be uint8 [n, {POINT_BYTES}]")
            self._peer_points = _as_sortable(points)

    # -- internals -------------------------------------------------------------------------

    def _points(self, envelope: Envelope, n_expected: int) -> np.ndarray:
        """The envelope's ``points`` array, checked to be ``uint8 [n_expected, 32]``."""
        array = envelope.arrays.get(_POINTS)
        if not isinstance(array, np.ndarray):
            raise self._error(
                f"{envelope.kind!r} lacks the array {_POINTS!r} (uint8 [{n_expected}, "
                f"{POINT_BYTES}]); is the peer running the same PSI backend?"
            )
        if array.dtype != np.uint8:
            raise self._error(
                f"{envelope.kind!r} array {_POINTS!r} has dtype {array.dtype}, expected uint8"
            )
        if array.shape != (n_expected, POINT_BYTES):
            raise self._error(
                f"{envelope.kind!r} array {_POINTS!r} has shape {list(array.shape)}, expected "
                f"[{n_expected}, {POINT_BYTES}] ({n_expected} announced points of "
                f"{POINT_BYTES} bytes)"
            )
        return array

    def _bad_point(self, envelope: Envelope, items: list[bytes], offset: int) -> Exception:
        first = next(
            (i for i, p in enumerate(items) if not rbcl.crypto_core_ristretto255_is_valid_point(p)),
            None,
        )
        where = f"at position {offset + first}" if first is not None else "somewhere"
        return self._error(
            f"{envelope.kind!r} array {_POINTS!r} holds an invalid ristretto255 point {where}"
        )
