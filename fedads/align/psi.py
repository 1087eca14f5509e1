"""Private entity alignment: two-way PSI between the two parties, two interchangeable backends.

Goal
----
Each party learns which of its OWN rows are in the intersection, and nothing about the keys
outside it; the coordinator relays messages and sees only set sizes, the backend name and
blinded group elements; both parties end with the same aligned order of their own rows, so
``social.rows[i]`` and ``ecommerce.rows[i]`` are the same user.

Backends (:func:`make_psi_party`, ``backend=``; both parties must use the same one, checked in
``psi_hello``):

* ``"ristretto255"`` (default): classic two-way Diffie-Hellman PSI over the ristretto255
  prime-order group (libsodium via ``rbcl``), 1 hash-to-group and 2 scalar multiplications per
  key and side; see :mod:`fedads.align.ristretto` for its rounds and arrays.
* ``"openmined"``: openmined-psi (P-256) run one-way in both directions, :class:`PsiParty`
  below; about 4 curve operations per key and side. Kept selectable as an independent,
  widely reviewed implementation to cross-check against.

How the openmined backend works
-------------------------------
openmined-psi is one-way: the *client* learns which of its items the *server* also holds. We
run it in both directions at once: every party is a PSI server (for its peer's request) and a
PSI client (for its own request), with two independent fresh P-256 keys. The server setup uses
the ``RAW`` data structure (every blinded server item is sent), so the intersection is exact:
there are no Bloom/GCS false positives (``fpr`` is irrelevant for ``RAW``).

Message sequence (4 rounds, the same kinds for both backends; in each round the coordinator
sends one envelope to each party and gets one reply; it forwards the peer's reply unchanged, so
each step maps to one Flower message per party)::

    round  coordinator -> party P              P -> coordinator        P computes
    1      psi_start    {}                     psi_hello               (nothing)
                                               meta n_keys, backend
    2      psi_hello    of the peer            psi_setup               setup = own keys blinded
                                               arrays setup, request     with P's server key (RAW)
                                               meta n_keys,            request = own keys
                                                    n_peer_keys          blinded with P's client key
    3      psi_setup    of the peer            psi_response            response = peer's request
                                               arrays response           re-blinded with P's
                                               meta n_keys, n_peer_keys  server key
    4      psi_response of the peer            psi_done                own intersection rows from
                                               meta n_keys, n_aligned    peer setup + response;
                                                                         aligned order (below)

openmined arrays are ``uint8 [nbytes]`` buffers of the serialized openmined-psi protobufs
(``ServerSetup``, ``Request``, ``Response``); about 35 bytes per key each (a compressed P-256
point plus protobuf framing). Meta holds only sizes and, in ``psi_hello``, the backend name.
After round 4 the coordinator checks that both parties report the same ``n_aligned > 0``
(:func:`coordinate_alignment`); each party keeps its :class:`Alignment` (``party.alignment``).

Aligned order
-------------
Each party sorts its intersection rows by ``BLAKE2b-128(d(k), key=s)`` where ``d(k)`` is a
domain-separated BLAKE2b-256 of the normalised key and the salt ``s`` is derived from the XOR of
``d(k)`` over the whole intersection. Both parties hold exactly the same intersection, so they
derive the same salt and the same order without any extra message, and the coordinator (which
does not know the intersection) cannot derive the salt. The order is pseudo-random and
independent of the key values (a split by aligned position is not a split by key, even for
sequential customer ids) and is reproducible: the same intersection always gives the same
order.

Leakage (semi-honest parties and coordinator)
---------------------------------------------
* Both parties learn the intersection (which of their own users the other party also has) and
  the other party's set size. This is inherent to alignment for vertical FL and standard.
* Neither party learns anything about the peer's keys outside the intersection: it only sees
  the peer's keys as group elements blinded with the peer's secret exponent (DDH assumption),
  for both backends.
* The coordinator sees both set sizes, the intersection size and blinded points only; it never
  sees a key, a hash of a key, or the ordering salt.
* Every round refuses repeated and invalid points and sizes other than the announced ones
  (a forged response with repeated points would otherwise make a party "align" users the
  peer lacks); a party that refuses installs no alignment.
* With a transport that seals (``fedads.protocol.sealing``, the default of every federated
  run) the coordinator sees only sealed blobs and the size fields, cannot substitute points
  and cannot restart the PSI (one per session). :func:`align_parties` below runs the parties
  directly, without sealing; its ``relay`` hook therefore has the power of a malicious peer.
* Not covered: a malicious party can put guessed keys (e.g. enumerated phone numbers) in its
  own set to test membership; the peer sees the inflated ``n_peer_keys`` and may refuse. There
  is no input certification in plain PSI.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import private_set_intersection.python as psi
from google.protobuf.message import DecodeError

from fedads._progress import progress_bar
from fedads._validation import check_choice
from fedads.align.keys import KeyNormalization
from fedads.align.result import Alignment, aligned_order, no_overlap_error
from fedads.align.ristretto import RistrettoPsiParty
from fedads.align.steps import (
    DEFAULT_PSI_BACKEND,
    META_FIELDS,
    PARTIES,
    PSI_BACKENDS,
    PSI_DONE,
    PSI_HELLO,
    PSI_KINDS,
    PSI_RESPONSE,
    PSI_SETUP,
    PSI_START,
    PsiBackendParty,
    PsiSteps,
    peer_of,
)
from fedads.envelope import COORDINATOR, Envelope, decode, encode
from fedads.errors import ProtocolError

__all__ = [
    "DEFAULT_PSI_BACKEND",
    "META_FIELDS",
    "PARTIES",
    "PSI_BACKENDS",
    "PSI_DONE",
    "PSI_HELLO",
    "PSI_KINDS",
    "PSI_RESPONSE",
    "PSI_SETUP",
    "PSI_START",
    "AlignmentSummary",
    "PsiBackendParty",
    "PsiParty",
    "RistrettoPsiParty",
    "align_parties",
    "coordinate_alignment",
    "make_psi_party",
    "peer_of",
]

_FPR = 1e-9  # required by the API; with the RAW data structure matching is exact anyway
_DATA_STRUCTURE = psi.DataStructure.RAW

Relay = Callable[[str, str, Envelope], Envelope | None]
"""``relay(sender, receiver, envelope)``: sees every envelope that crosses; may return a
replacement envelope (e.g. to test tampering) or None to let it through unchanged."""

SendAll = Callable[[dict[str, Envelope]], dict[str, Envelope]]
"""``Transport.send_all``: one envelope per named party in, one reply per party out."""


def make_psi_party(
    keys: Sequence[str] | np.ndarray,
    party: str,
    normalization: KeyNormalization | None = None,
    *,
    backend: str = DEFAULT_PSI_BACKEND,
) -> PsiBackendParty:
    """One party's PSI for the chosen backend (the one place that maps a name to a class).

    Args:
        keys: ``[n_own]`` this party's raw join keys, in table row order.
        party: ``"social"`` or ``"ecommerce"``.
        normalization: key normalisation; must be the same on both sides (shared config).
        backend: ``"ristretto255"`` (default, :class:`RistrettoPsiParty`) or ``"openmined"``
            (:class:`PsiParty`); must be the same on both sides.

    Raises:
        InputError: unknown backend or unusable keys.
    """
    check_choice("make_psi_party", "backend", backend, PSI_BACKENDS)
    if backend == "openmined":
        return PsiParty(keys, party, normalization)
    return RistrettoPsiParty(keys, party, normalization)


class PsiParty(PsiSteps):
    """One party's side of the two-way PSI with openmined-psi (backend ``"openmined"``).

    Call the steps in order (or send the envelopes to :meth:`handle`): ``hello()``,
    ``setup(peer_hello)``, ``respond(peer_setup)``, ``finish(peer_response)``. The keys never
    leave this object except blinded with this party's secret exponents. One step at a time:
    the openmined-psi objects inside are not safe to use from two threads at once (calls from
    different threads one after the other are fine).

    Arguments and errors: as :class:`fedads.align.steps.PsiSteps`.
    """

    BACKEND = "openmined"
    SECRET_STATE = ("server_key", "client_key", "peer_setup")

    def _init_secrets(self) -> None:
        # Two independent keys: the server key blinds our set for the peer's queries, the
        # client key blinds our own query. Never sent, dropped after finish().
        self._server: Any = psi.server.CreateWithNewKey(True)
        self._client: Any = psi.client.CreateWithNewKey(True)
        self._peer_setup: Any = None

    # -- steps -----------------------------------------------------------------------------

    def setup(self, peer_hello: Envelope) -> Envelope:
        """Round 2: from the peer's hello, build our blinded set (server) and query (client).

        Returns:
            ``psi_setup`` with arrays ``setup`` and ``request``: ``uint8 [nbytes]`` each.
        """
        self._n_peer = self._read_hello(peer_hello)
        setup = self._server.CreateSetupMessage(_FPR, self._n_peer, self._keys, _DATA_STRUCTURE)
        request = self._client.CreateRequest(self._keys)
        return Envelope(
            PSI_SETUP,
            arrays={"setup": _to_array(setup), "request": _to_array(request)},
            meta={"n_keys": self.n_own, "n_peer_keys": self._n_peer},
        )

    def respond(self, peer_setup: Envelope) -> Envelope:
        """Round 3: keep the peer's blinded set; answer the peer's query with our server key.

        Returns:
            ``psi_response`` with array ``response``: ``uint8 [nbytes]``.
        """
        self._expect(peer_setup, PSI_SETUP)
        self._advance(PSI_SETUP, PSI_RESPONSE)
        self._check_sizes(peer_setup, n_keys=self._n_peer, n_peer_keys=self.n_own)
        self._peer_setup = self._parse(peer_setup, "setup", psi.ServerSetup)
        request = self._parse(peer_setup, "request", psi.Request)
        if len(request.encrypted_elements) != self._n_peer:
            raise self._error(
                f"peer request has {len(request.encrypted_elements)} items, "
                f"announced {self._n_peer}"
            )
        if len(set(request.encrypted_elements)) != len(request.encrypted_elements):
            raise self._error("peer request repeats a point")
        try:
            response = self._server.ProcessRequest(request)
        except RuntimeError as exc:
            raise self._error(f"cannot process the peer request ({exc})") from None
        return Envelope(
            PSI_RESPONSE,
            arrays={"response": _to_array(response)},
            meta={"n_keys": self.n_own, "n_peer_keys": int(self._n_peer or 0)},
        )

    # -- state (for hosts that rebuild the party between messages, e.g. a Flower ClientApp) --

    def get_state(self) -> dict[str, np.ndarray]:
        """Everything needed to resume the protocol on a fresh ``PsiParty`` over the same keys.

        PARTY-PRIVATE: holds this party's secret PSI exponents (``server_key``, ``client_key``,
        ``uint8 [32]`` each). Keep it in the party's local state; never put it in an envelope.

        Returns:
            ``stage`` (``int64 [1]``, index into PSI_KINDS of the next expected step),
            ``n_own``, and while in use ``server_key``, ``client_key``, ``n_peer``,
            ``peer_setup`` (``uint8 [nbytes]``), and after the last step ``rows``
            (``int64 [n_aligned]``).
        """
        state = self._common_state()
        if self._server is not None:
            state["server_key"] = np.frombuffer(self._server.GetPrivateKeyBytes(), np.uint8)
            state["client_key"] = np.frombuffer(self._client.GetPrivateKeyBytes(), np.uint8)
        if self._peer_setup is not None:
            state["peer_setup"] = _to_array(self._peer_setup)
        return state

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`get_state` returned (this object must hold the same keys)."""
        self._restore_common(state)
        if "server_key" in state:
            server_key = np.asarray(state["server_key"], dtype=np.uint8).tobytes()
            client_key = np.asarray(state["client_key"], dtype=np.uint8).tobytes()
            self._server = psi.server.CreateFromKey(server_key, True)
            self._client = psi.client.CreateFromKey(client_key, True)
        else:
            self._server = self._client = None
        self._peer_setup = None
        if "peer_setup" in state:
            envelope = Envelope(PSI_SETUP, {"setup": np.asarray(state["peer_setup"], np.uint8)})
            self._peer_setup = self._parse(envelope, "setup", psi.ServerSetup)

    # -- internals -------------------------------------------------------------------------

    def _intersect(self, peer_response: Envelope) -> Alignment:
        self._expect(peer_response, PSI_RESPONSE)
        self._advance(PSI_RESPONSE, PSI_DONE)
        self._check_sizes(peer_response, n_keys=self._n_peer, n_peer_keys=self.n_own)
        response = self._parse(peer_response, "response", psi.Response)
        if len(response.encrypted_elements) != self.n_own:
            raise self._error(
                f"peer response has {len(response.encrypted_elements)} items, expected {self.n_own}"
            )
        # Our keys are distinct, so the peer's re-blinding of them is too: a repeat is forged.
        if len(set(response.encrypted_elements)) != len(response.encrypted_elements):
            raise self._error("peer response repeats a point; refusing it (no alignment)")
        try:
            found = self._client.GetIntersection(self._peer_setup, response)
        except RuntimeError as exc:
            raise self._error(f"cannot compute the intersection ({exc})") from None
        rows = np.sort(np.asarray(found, dtype=np.int64))
        if rows.size and (rows[0] < 0 or rows[-1] >= self.n_own):
            raise self._error("intersection indices out of range")
        order = aligned_order([self._keys[i] for i in rows.tolist()]) if rows.size else rows
        self.alignment = Alignment(rows[order], self.n_own, self.name)
        self._server = self._client = self._peer_setup = None  # secrets no longer needed
        return self.alignment

    def _parse(self, envelope: Envelope, name: str, message_type: type) -> Any:
        array = envelope.arrays.get(name)
        if not isinstance(array, np.ndarray) or array.dtype != np.uint8 or array.ndim != 1:
            raise self._error(f"{envelope.kind!r} lacks a uint8 array {name!r}")
        message = message_type()
        try:
            message.ParseFromString(array.tobytes())
        except DecodeError:
            raise self._error(f"{envelope.kind!r} array {name!r} is not a valid message") from None
        return message


def _to_array(message: Any) -> np.ndarray:
    """Serialized protobuf -> ``uint8 [nbytes]`` (the envelope array format)."""
    return np.frombuffer(message.SerializeToString(), dtype=np.uint8)


@dataclass(frozen=True)
class AlignmentSummary:
    """What the coordinator learns from an alignment: sizes only."""

    n_social: int
    n_ecommerce: int
    n_aligned: int


def coordinate_alignment(
    send_all: SendAll, normalization: KeyNormalization | None = None
) -> AlignmentSummary:
    """Coordinator side of the PSI: run the 4 rounds through ``send_all`` and check sizes.

    Args:
        send_all: e.g. ``transport.send_all``; called once per round with one envelope per
            party (keys ``"social"``, ``"ecommerce"``), returns one reply per party. The
            parties answer with their PSI party's ``handle`` (either backend).
        normalization: only used to word the no-overlap message.

    Returns:
        AlignmentSummary of sizes; each party keeps its own :class:`Alignment`.

    Raises:
        InputError: no users in common.
        ProtocolError: a reply of the wrong kind, or the two parties disagree on the size.
    """
    social, ecommerce = PARTIES
    with progress_bar(4, "PSI alignment", "round") as bar:  # shown only at INFO on a terminal
        hellos = _round(send_all, {p: Envelope(PSI_START) for p in PARTIES}, PSI_HELLO)
        bar.update(1)
        setups = _round(
            send_all, {social: hellos[ecommerce], ecommerce: hellos[social]}, PSI_SETUP
        )
        bar.update(1)
        responses = _round(
            send_all, {social: setups[ecommerce], ecommerce: setups[social]}, PSI_RESPONSE
        )
        bar.update(1)
        done = _round(
            send_all, {social: responses[ecommerce], ecommerce: responses[social]}, PSI_DONE
        )
        bar.update(1)
    sizes = {p: int(hellos[p].meta["n_keys"]) for p in PARTIES}
    aligned = {p: done[p].meta.get("n_aligned") for p in PARTIES}
    if aligned[social] != aligned[ecommerce] or not isinstance(aligned[social], int):
        raise ProtocolError(f"PSI alignment: the parties disagree on the intersection: {aligned}")
    n_aligned = int(aligned[social])
    if n_aligned == 0:
        rule = (normalization or KeyNormalization()).describe()
        raise no_overlap_error(social, ecommerce, sizes[social], sizes[ecommerce], rule)
    return AlignmentSummary(sizes[social], sizes[ecommerce], n_aligned)


def _round(send_all: SendAll, envelopes: dict[str, Envelope], kind: str) -> dict[str, Envelope]:
    replies = send_all(envelopes)
    for party in PARTIES:
        reply = replies.get(party)
        if not isinstance(reply, Envelope) or reply.kind != kind:
            got = reply.kind if isinstance(reply, Envelope) else reply
            raise ProtocolError(f"PSI alignment: party {party!r} answered {got!r}, not {kind!r}")
    return replies


def align_parties(
    social_keys: Sequence[str] | np.ndarray,
    ecommerce_keys: Sequence[str] | np.ndarray,
    *,
    normalization: KeyNormalization | None = None,
    relay: Relay | None = None,
    parallel: bool = True,
    backend: str = DEFAULT_PSI_BACKEND,
) -> tuple[Alignment, Alignment]:
    """Run the full two-way PSI in process (no transport), e.g. for tests and local runs.

    Every envelope crosses through the envelope byte codec (``encode``/``decode``) exactly as
    on the in-process transport, and through ``relay`` if given.

    Args:
        social_keys: ``[n_social]`` raw keys of the social table, in row order.
        ecommerce_keys: ``[n_ecommerce]`` raw keys of the e-commerce table, in row order.
        normalization: shared key normalisation (default: strip only).
        relay: ``relay(sender, receiver, envelope)`` sees every crossing envelope (sender or
            receiver is ``"coordinator"``); may return a replacement.
        parallel: let the two parties compute each round concurrently (two threads; both
            backends release the GIL inside their C code), as two machines would.
        backend: PSI backend of both parties, ``"ristretto255"`` (default) or
            ``"openmined"`` (see :func:`make_psi_party`).

    Returns:
        ``(social, ecommerce)`` :class:`Alignment` s with the same ``n_aligned``; position ``i``
        is the same user on both sides.

    Raises:
        InputError: bad keys (see :func:`fedads.align.normalize_keys`), an unknown backend,
            or no users in common.
    """
    parties = {
        "social": make_psi_party(social_keys, "social", normalization, backend=backend),
        "ecommerce": make_psi_party(ecommerce_keys, "ecommerce", normalization, backend=backend),
    }

    def cross(sender: str, receiver: str, envelope: Envelope) -> Envelope:
        wire = decode(encode(envelope))
        if relay is not None:
            replaced = relay(sender, receiver, wire)
            if replaced is not None:
                wire = replaced
        return wire

    def send_all(envelopes: dict[str, Envelope], pool: ThreadPoolExecutor | None) -> Any:
        inbound = {p: cross(COORDINATOR, p, e) for p, e in envelopes.items()}
        if pool is None:
            replies = {p: parties[p].handle(e) for p, e in inbound.items()}
        else:
            futures = {p: pool.submit(parties[p].handle, e) for p, e in inbound.items()}
            replies = {p: f.result() for p, f in futures.items()}
        return {p: cross(p, COORDINATOR, r) for p, r in replies.items()}

    if parallel:
        with ThreadPoolExecutor(max_workers=2, thread_name_prefix="fedads-psi") as pool:
            coordinate_alignment(lambda e: send_all(e, pool), normalization)
    else:
        coordinate_alignment(lambda e: send_all(e, None), normalization)
    social, ecommerce = parties["social"].alignment, parties["ecommerce"].alignment
    assert social is not None and ecommerce is not None  # set by a successful coordinate_...
    return social, ecommerce
