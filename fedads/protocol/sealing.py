"""End-to-end sealing of the payloads the two parties exchange through the (untrusted) relay.

Every payload one party produces for the other (PSI hellos and points, embeddings, gradients)
leaves the party as one opaque ``uint8`` array named ``sealed``; the relay forwards it with the
routing fields (kind, positions, sizes, step counters: ``docs/threat-model.md`` lists them) and
cannot read or change it. The receiving party opens it before handling the request.

Construction: the key agreement of a NaCl ``Box`` (X25519 between the two parties' long-term
key pairs, hashed by HSalsa20: ``crypto_box_beforenm``) and the AEGIS-256 AEAD of libsodium
(via PyNaCl) with a random 256-bit nonce per message. Only the two key holders have the key, so
a payload that opens was made by the peer (the header binds the direction, so a party's own
payload reflected back to it is refused). Why not ``SealedBox`` plus signatures: a second key
pair per party and two operations per message for the same guarantee. Why AEGIS-256 rather
than the Box's XSalsa20-Poly1305: about twice as fast on CPUs with AES instructions (measured
here: 6 vs 13 ms per 4 MB), which matters at tens of MB per epoch; its 256-bit nonces make
random nonces safe for any number of messages under one key.

Plaintext of a sealed payload: ``[u32 header length][header JSON][envelope bytes]``, header:

``v``        format version (1)
``nonce``    the sender's fresh per-run nonce (16 bytes, hex): the same in all its payloads
``peer_nonce``  the receiver's nonce as the sender knows it (``""`` until it has opened a payload
             of the receiver)
``acked``    how many of the receiver's payloads the sender had opened (``<=`` what the receiver
             sent; ``peer_nonce`` must be the receiver's own nonce as soon as this is ``> 0``)
``from``, ``to``  sender and receiver role
``seq``      per-direction sequence number, 0, 1, 2, ... (replay, drop and reorder detection)
``kind``     the kind of the envelope inside
``rows``     BLAKE2b-128 of the positions the payload was computed for (embeddings), or ``""``

and the envelope bytes are :func:`fedads.protocol.envelope.encode` of the sealed arrays and meta.

Keys: :func:`write_keypair` (the ``fedads keys`` command) writes ``<role>.key`` (secret, mode
0600) and ``<role>.pub``; :func:`fingerprint` is what the two companies compare out of band.
"""

from __future__ import annotations

import hashlib
import json
import os
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from nacl.bindings import (
    crypto_aead_aegis256_decrypt,
    crypto_aead_aegis256_encrypt,
    crypto_aead_aegis256_NPUBBYTES,
    crypto_box_beforenm,
)
from nacl.exceptions import CryptoError
from nacl.public import PrivateKey

from fedads._validation import check_choice, fail
from fedads.errors import ProtocolError
from fedads.protocol import messages as msg
from fedads.protocol.envelope import Envelope, decode, encode_parts
from fedads.protocol.transport import Party

SEALED = msg.SEALED
"""Name of the one array a sealed payload travels in (``uint8 [nbytes]``)."""

ROLES: tuple[str, str] = (msg.SOCIAL, msg.ECOMMERCE)
KEY_BYTES = 32
_VERSION = 1
_HEADER = struct.Struct("<I")
_NONCE_BYTES = crypto_aead_aegis256_NPUBBYTES  # 32, prefixed to every sealed blob
_MAC_BYTES = 32  # AEGIS-256 tag

try:  # PyNaCl's libsodium handle: encrypt/decrypt in place in numpy buffers (see _aegis_seal)
    from nacl._sodium import ffi as _FFI
    from nacl._sodium import lib as _LIB
except ImportError:  # pragma: no cover - a PyNaCl without it: the public binding (copies)
    _FFI = _LIB = None
_FILE_TAG = "fedads-sealing-key v1"

# Replies whose whole content (arrays and meta) is for the peer: sealed by the sender.
SEALED_REPLIES: frozenset[str] = frozenset(
    {
        "psi_hello",
        "psi_setup",
        "psi_response",
        msg.FORWARD,
        msg.BACKWARD_FORWARD,
        msg.EMBED,
        msg.TRAIN,
    }
)

# Requests that carry a peer payload, and the kinds of peer reply each may carry.
SEALED_REQUESTS: dict[str, frozenset[str]] = {
    "psi_hello": frozenset({"psi_hello"}),
    "psi_setup": frozenset({"psi_setup"}),
    "psi_response": frozenset({"psi_response"}),
    msg.TRAIN: frozenset({msg.FORWARD, msg.BACKWARD_FORWARD}),
    msg.SCORE: frozenset({msg.EMBED}),
    msg.EVALUATE: frozenset({msg.EMBED}),
    msg.BACKWARD_FORWARD: frozenset({msg.TRAIN}),
    msg.BACKWARD: frozenset({msg.TRAIN}),
}

# Requests whose meta comes from the peer (sealed) rather than from the relay.
_PEER_META: frozenset[str] = frozenset({"psi_hello", "psi_setup", "psi_response"})

# Requests that use the peer's embeddings for their own positions: those must be the rows the
# embeddings were computed for.
_EMBEDDING_USERS: frozenset[str] = frozenset({msg.TRAIN, msg.SCORE, msg.EVALUATE})

# Arrays that only ever come from the peer: refused in clear when sealing is on.
_PEER_ARRAYS: frozenset[str] = frozenset(
    {msg.EMBEDDINGS, msg.GRADIENTS, "points", "setup", "request", "response"}
)


# ------------------------------------------------------------------------------------ keys
def fingerprint(public_key: bytes) -> str:
    """Short hex fingerprint of a public key (BLAKE2b-128, in groups of 4) to compare by phone."""
    digest = hashlib.blake2b(bytes(public_key), digest_size=16, person=b"fedads-keyfp").hexdigest()
    return ":".join(digest[i : i + 4] for i in range(0, len(digest), 4))


def generate_keypair() -> tuple[bytes, bytes]:
    """A fresh X25519 key pair ``(secret, public)``, 32 bytes each, from the OS CSPRNG."""
    secret = PrivateKey.generate()
    return bytes(secret), bytes(secret.public_key)


def write_keypair(role: str, out_dir: str | Path) -> tuple[Path, Path]:
    """Write a fresh key pair for ``role``: ``out_dir/<role>.key`` (0600) and ``<role>.pub``.

    Refuses to overwrite an existing secret key (delete it first on purpose).

    Returns:
        ``(secret_path, public_path)``.
    """
    check_choice("fedads keys", "role", role, ROLES)
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    secret_path, public_path = folder / f"{role}.key", folder / f"{role}.pub"
    if secret_path.exists():
        raise fail(
            "fedads keys",
            f"{secret_path} already exists",
            "keep it, or delete it yourself first if you mean to replace this party's key",
        )
    secret, public = generate_keypair()
    fd = os.open(secret_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key_file_text(role, "secret", secret))
    public_path.write_text(key_file_text(role, "public", public))
    return secret_path, public_path


def key_file_text(role: str, kind: str, key: bytes) -> str:
    """The text of a key file: a tag line naming the role and kind, then the key in hex."""
    return f"{_FILE_TAG} {role} {kind}\n{bytes(key).hex()}\n"


def read_key(path: str | Path, *, kind: str, role: str | None = None) -> bytes:
    """Read a key file written by :func:`write_keypair`.

    Args:
        path: the file.
        kind: ``"secret"`` or ``"public"`` (a file of the other kind is refused).
        role: if given, the role the file must belong to.

    Returns:
        The 32-byte key.
    """
    where = f"key file {path}"
    try:
        lines = Path(path).read_text().split()
    except OSError as error:
        raise fail(where, f"cannot be read ({error.strerror})", "run `fedads keys`") from None
    tag_words = _FILE_TAG.split()
    if len(lines) != len(tag_words) + 3 or lines[: len(tag_words)] != tag_words:
        raise fail(where, "is not a fedads key file", "point to a file `fedads keys` wrote")
    file_role, file_kind, value = lines[len(tag_words) :]
    if file_kind != kind:
        raise fail(where, f"holds a {file_kind} key, not a {kind} one", f"pass the {kind} key")
    if role is not None and file_role != role:
        raise fail(where, f"is the {file_role} party's key", f"pass the {role} party's key")
    try:
        key = bytes.fromhex(value)
    except ValueError:
        key = b""
    if len(key) != KEY_BYTES:
        raise fail(where, "holds a damaged key", "re-create it with `fedads keys`")
    return key


@dataclass(frozen=True)
class SealingKeys:
    """What one party needs to seal: its own secret key and the peer's public key.

    Attributes:
        role: this party's role.
        secret: this party's 32-byte X25519 secret key (never leaves the party).
        peer_public: the peer's 32-byte public key (checked out of band by fingerprint).
    """

    role: str
    secret: bytes
    peer_public: bytes

    def __repr__(self) -> str:  # never print a secret key
        return f"SealingKeys(role={self.role!r}, peer={fingerprint(self.peer_public)})"

    @classmethod
    def from_files(
        cls, role: str, secret_path: str | Path, peer_public_path: str | Path
    ) -> SealingKeys:
        """Load ``role``'s secret key file and the peer's public key file."""
        check_choice("SealingKeys", "role", role, ROLES)
        return cls(
            role,
            read_key(secret_path, kind="secret", role=role),
            read_key(peer_public_path, kind="public", role=_peer_of(role)),
        )


def fresh_keys() -> dict[str, SealingKeys]:
    """Fresh key pairs for one simulated run: ``{role: SealingKeys}``, each with only its own
    secret and the peer's public key."""
    pairs = {role: generate_keypair() for role in ROLES}
    return {role: SealingKeys(role, pairs[role][0], pairs[_peer_of(role)][1]) for role in ROLES}


# ------------------------------------------------------------------------------------ channel
class SealedChannel:
    """One party's end of the sealed channel to its peer (keys, session, sequence numbers).

    :meth:`open` turns a request as the relay delivered it into the request the party handles;
    :meth:`seal` turns the party's reply into what the relay may see. Any failure raises
    :class:`~fedads.errors.ProtocolError` saying what was wrong (the transport names the party).

    Args:
        keys: this party's :class:`SealingKeys`.
    """

    def __init__(self, keys: SealingKeys) -> None:
        self.role = keys.role
        self.peer = _peer_of(keys.role)
        self._keys = keys
        self._key: bytes | None = None  # computed on first use (no work in constructors)
        self.nonce: bytes | None = None  # our fresh per-run nonce, drawn with the first seal
        self.peer_nonce: bytes | None = None
        self.sent = 0
        self.received = 0

    @property
    def session(self) -> str:
        """Hex session id (both nonces hashed) once both are known, else ``""``; for logs."""
        if self.nonce is None or self.peer_nonce is None:
            return ""
        mine = {self.role: self.nonce, self.peer: self.peer_nonce}
        joined = b"".join(mine[role] for role in ROLES)
        return hashlib.blake2b(joined, digest_size=16, person=b"fedads-session").hexdigest()

    def _shared_key(self) -> bytes:
        """The 32-byte key both parties derive: X25519 of our secret and the peer's public key,
        hashed by HSalsa20 (``crypto_box_beforenm``, the key of a NaCl ``Box``); computed once."""
        if self._key is None:
            self._key = crypto_box_beforenm(self._keys.peer_public, self._keys.secret)
        return self._key

    # -------------------------------------------------------------- receive
    def open(self, request: Envelope) -> Envelope:
        """The request with the peer's sealed payload opened and checked.

        Requests of kinds that carry no peer payload pass unchanged (they must not carry peer
        arrays in clear).
        """
        allowed = SEALED_REQUESTS.get(request.kind)
        clear_peer = sorted(set(request.arrays) & _PEER_ARRAYS_WITH_SCALES)
        if allowed is None:
            if SEALED in request.arrays or clear_peer:
                raise self._refuse(f"{request.kind!r} may not carry a peer payload")
            return request
        if clear_peer:
            raise self._refuse(
                f"{request.kind!r} carries {clear_peer} in clear; expected a payload sealed by "
                f"the {self.peer} party (the relay may not insert its own)"
            )
        blob = request.arrays.get(SEALED)
        if not isinstance(blob, np.ndarray) or blob.dtype != np.uint8 or blob.ndim != 1:
            raise self._refuse(
                f"{request.kind!r} lacks the sealed payload of the {self.peer} party"
            )
        try:
            plain = _aegis_open(blob, self._shared_key())
        except CryptoError:
            raise self._refuse(
                f"the sealed payload in {request.kind!r} does not verify: it was changed on the "
                f"way or not made with the {self.peer} party's key"
            ) from None
        header, inner = _split(plain)
        self._check_header(header, request, allowed)
        clear = {k: v for k, v in request.arrays.items() if k != SEALED}
        meta = dict(inner.meta) if request.kind in _PEER_META else dict(request.meta)
        return Envelope(request.kind, {**clear, **inner.arrays}, meta)

    def _check_header(self, header: dict, request: Envelope, allowed: frozenset[str]) -> None:
        if (
            header.get("v") != _VERSION
            or header.get("from") != self.peer
            or header.get("to") != self.role
        ):
            raise self._refuse(
                f"sealed payload in {request.kind!r} is addressed from {header.get('from')!r} "
                f"to {header.get('to')!r}, not from {self.peer!r} to {self.role!r}"
            )
        seq = header.get("seq")
        if seq != self.received:
            what = (
                "replayed or reordered"
                if isinstance(seq, int) and seq < self.received
                else ("out of order (a message was dropped or reordered)")
            )
            raise self._refuse(
                f"sealed payload in {request.kind!r} has sequence number {seq}, expected "
                f"{self.received}: {what}"
            )
        # Session binding: the sender's nonce must be the one of its first payload, and once it
        # has heard from us, it must name our nonce (fresh per run: an old run's payload fails).
        try:
            nonce = bytes.fromhex(str(header.get("nonce", "")))
        except ValueError:
            nonce = b""
        if len(nonce) != 16:
            raise self._refuse("a sealed payload must carry the sender's 16-byte session nonce")
        if self.nonce is None:  # ours goes out with our first sealed payload
            self.nonce = os.urandom(16)
        acked = header.get("acked")
        if isinstance(acked, bool) or not isinstance(acked, int) or not 0 <= acked <= self.sent:
            raise self._refuse(
                f"sealed payload in {request.kind!r} acknowledges {acked!r} payloads of this "
                f"party, which sent {self.sent}: it belongs to another session"
            )
        expected_peer = self.nonce.hex() if acked else ""
        if (seq and nonce != self.peer_nonce) or header.get("peer_nonce") != expected_peer:
            raise self._refuse(
                f"sealed payload in {request.kind!r} belongs to another session (its session "
                "nonces are not this run's)"
            )
        if seq == 0:
            self.peer_nonce = nonce
        if header.get("kind") not in allowed:
            raise self._refuse(
                f"{request.kind!r} carries a sealed {header.get('kind')!r} payload; it may "
                f"carry only {sorted(allowed)}"
            )
        rows = header.get("rows", "")
        if request.kind in _EMBEDDING_USERS and (
            msg.POSITIONS not in request.arrays
            or rows != _rows_digest(request.arrays[msg.POSITIONS])
        ):
            raise self._refuse(
                f"{request.kind!r}: the sealed embeddings were computed for other rows than the "
                "positions the relay sent with them"
            )
        self.received += 1

    # -------------------------------------------------------------- send
    def seal(self, request: Envelope, reply: Envelope) -> Envelope:
        """The reply as the relay may see it: peer payloads sealed, routing fields in clear."""
        if reply.kind not in SEALED_REPLIES:
            return reply
        if self.nonce is None:
            if self.sent != 0:
                raise self._refuse("channel state lost its nonce; restore the full state")
            self.nonce = os.urandom(16)
        positions = request.arrays.get(msg.POSITIONS)
        header: dict[str, object] = {
            "v": _VERSION,
            "nonce": self.nonce.hex(),
            "peer_nonce": ""
            if self.received == 0 or self.peer_nonce is None
            else self.peer_nonce.hex(),
            "acked": self.received,
            "from": self.role,
            "to": self.peer,
            "seq": self.sent,
            "kind": reply.kind,
            "rows": "" if positions is None else _rows_digest(positions),
        }
        head = json.dumps(header, sort_keys=True).encode()
        plain = b"".join([_HEADER.pack(len(head)), head, *encode_parts(reply)])
        sealed = _aegis_seal(plain, self._shared_key())
        self.sent += 1
        return Envelope(reply.kind, {SEALED: sealed}, dict(reply.meta))

    # -------------------------------------------------------------- state
    def get_state(self) -> dict[str, np.ndarray]:
        """Session nonces and counters (no key: keys come from the party's config)."""
        state = {"counters": np.array([self.sent, self.received], dtype=np.int64)}
        if self.nonce is not None:
            state["nonce"] = np.frombuffer(self.nonce, dtype=np.uint8).copy()
        if self.peer_nonce is not None:
            state["peer_nonce"] = np.frombuffer(self.peer_nonce, dtype=np.uint8).copy()
        return state

    def set_state(self, state: Mapping[str, np.ndarray]) -> None:
        """Restore :meth:`get_state` output."""
        if "counters" not in state:
            return
        self.sent, self.received = (int(v) for v in np.asarray(state["counters"]).reshape(-1))
        self.nonce = bytes(np.asarray(state["nonce"], np.uint8)) if "nonce" in state else None
        self.peer_nonce = (
            bytes(np.asarray(state["peer_nonce"], np.uint8)) if "peer_nonce" in state else None
        )

    def _refuse(self, detail: str) -> ProtocolError:
        return ProtocolError(f"sealing ({self.role} party, peer {self.peer}): {detail}")


class SealedParty:
    """Any :class:`~fedads.protocol.transport.Party` behind a :class:`SealedChannel`.

    What :class:`~fedads.protocol.runtime.PartyRuntime` does at ``handle`` (open the request,
    handle it, seal the reply), for a bare training party (benchmarks, tests).
    """

    def __init__(self, party: Party, keys: SealingKeys) -> None:
        self.party = party
        self.name = party.name
        self.channel = SealedChannel(keys)

    def handle(self, envelope: Envelope) -> Envelope:
        request = self.channel.open(envelope)
        return self.channel.seal(request, self.party.handle(request))

    def get_state(self) -> dict[str, np.ndarray]:
        state = {"channel." + k: v for k, v in self.channel.get_state().items()}
        return {**state, **self.party.get_state()}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        self.channel.set_state(
            {k[len("channel.") :]: v for k, v in state.items() if k.startswith("channel.")}
        )
        self.party.set_state({k: v for k, v in state.items() if not k.startswith("channel.")})


_PEER_ARRAYS_WITH_SCALES = _PEER_ARRAYS | {n + msg.SCALE_SUFFIX for n in _PEER_ARRAYS}


def _peer_of(role: str) -> str:
    return ROLES[1] if role == ROLES[0] else ROLES[0]


def _rows_digest(positions: np.ndarray) -> str:
    data = np.ascontiguousarray(np.asarray(positions, dtype=np.int64)).tobytes()
    return hashlib.blake2b(data, digest_size=16, person=b"fedads-rows").hexdigest()


def _split(plain: np.ndarray) -> tuple[dict, Envelope]:
    (length,) = _HEADER.unpack_from(plain, 0)
    start = _HEADER.size
    header = json.loads(bytes(plain[start : start + length]))
    return header, decode(plain, start + length, copy=False)  # plain is ours and writable


def _aegis_seal(plain: bytes, key: bytes) -> np.ndarray:
    """``nonce || AEGIS-256(plain)``, ``uint8 [32 + len(plain) + 32]``, random 256-bit nonce
    (no reuse, ever). Encrypts straight into the output array when PyNaCl's libsodium handle
    is reachable (saves three payload copies of the public binding), else via that binding."""
    nonce = os.urandom(_NONCE_BYTES)
    if _LIB is None:  # pragma: no cover
        cipher = crypto_aead_aegis256_encrypt(plain, None, nonce, key)
        return np.frombuffer(nonce + cipher, dtype=np.uint8)
    out = np.empty(_NONCE_BYTES + len(plain) + _MAC_BYTES, dtype=np.uint8)
    out[:_NONCE_BYTES] = np.frombuffer(nonce, dtype=np.uint8)
    length = _FFI.new("unsigned long long *")
    rc = _LIB.crypto_aead_aegis256_encrypt(
        _FFI.from_buffer(out[_NONCE_BYTES:], require_writable=True),
        length,
        plain,
        len(plain),
        _FFI.NULL,
        0,
        _FFI.NULL,
        nonce,
        key,
    )
    if rc != 0 or length[0] != out.size - _NONCE_BYTES:
        raise ProtocolError("sealing: libsodium failed to encrypt")
    return out


def _aegis_open(blob: np.ndarray, key: bytes) -> np.ndarray:
    """The plaintext of :func:`_aegis_seal`'s output as a fresh ``uint8`` array (raises
    ``CryptoError`` if the blob was changed or not made with ``key``)."""
    if blob.size < _NONCE_BYTES + _MAC_BYTES:
        raise CryptoError("too short")
    blob = np.ascontiguousarray(blob)
    nonce = blob[:_NONCE_BYTES].tobytes()
    if _LIB is None:  # pragma: no cover
        plain = crypto_aead_aegis256_decrypt(blob[_NONCE_BYTES:].tobytes(), None, nonce, key)
        return np.frombuffer(plain, dtype=np.uint8).copy()
    out = np.empty(blob.size - _NONCE_BYTES - _MAC_BYTES, dtype=np.uint8)
    length = _FFI.new("unsigned long long *")
    rc = _LIB.crypto_aead_aegis256_decrypt(
        _FFI.from_buffer(out, require_writable=True),
        length,
        _FFI.NULL,
        _FFI.from_buffer(blob[_NONCE_BYTES:]),
        blob.size - _NONCE_BYTES,
        _FFI.NULL,
        0,
        nonce,
        key,
    )
    if rc != 0 or length[0] != out.size:
        raise CryptoError("does not verify")
    return out
