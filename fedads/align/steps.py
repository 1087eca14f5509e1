"""What every PSI backend shares: the envelope kinds, the step machine and the party protocol.

Both backends (:mod:`fedads.align.ristretto`, the default, and the openmined-psi one in
:mod:`fedads.align.psi`) run the same 4 rounds with the same envelope kinds, so the
coordinator (:func:`fedads.align.coordinate_alignment`) and the hosts
(:class:`fedads.protocol.runtime.PartyRuntime`, the Flower ClientApp) do not know which one
runs. Only the arrays of rounds 2 and 3 differ. :class:`PsiSteps` holds the common part: key
normalisation, step order, size checks, the backend handshake in ``psi_hello``, the
``psi_done`` reply and the error wording.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from fedads._validation import check_choice
from fedads.align.keys import KeyNormalization, normalized_key_list
from fedads.align.result import Alignment, no_overlap_error
from fedads.envelope import Envelope
from fedads.errors import ProtocolError

PARTIES: tuple[str, str] = ("social", "ecommerce")

PSI_START = "psi_start"
PSI_HELLO = "psi_hello"
PSI_SETUP = "psi_setup"
PSI_RESPONSE = "psi_response"
PSI_DONE = "psi_done"
PSI_KINDS: tuple[str, ...] = (PSI_START, PSI_HELLO, PSI_SETUP, PSI_RESPONSE, PSI_DONE)
"""All envelope kinds of the alignment protocol, in sequence order."""

PSI_BACKENDS: tuple[str, ...] = ("ristretto255", "openmined")
"""PSI implementations: ``"ristretto255"`` (two-way DH-PSI over ristretto255 via rbcl, the
default) and ``"openmined"`` (openmined-psi over P-256, run one-way in both directions)."""

DEFAULT_PSI_BACKEND = "ristretto255"

META_FIELDS: frozenset[str] = frozenset({"n_keys", "n_peer_keys", "n_aligned", "backend"})
"""The only meta fields alignment envelopes carry: sizes, and in ``psi_hello`` the backend
name (public configuration, the same for every run with that setting; not data)."""


def peer_of(party: str) -> str:
    """The other party's name."""
    return PARTIES[1] if party == PARTIES[0] else PARTIES[0]


class PsiBackendParty(Protocol):
    """What a host needs from one party's PSI, whatever the backend.

    ``handle`` answers one coordinator envelope; ``get_state`` / ``set_state`` let a host
    rebuild the party between any two steps (party-private state: it holds secrets);
    ``alignment`` is set after the last step.
    """

    name: str
    n_own: int
    alignment: Alignment | None

    def handle(self, envelope: Envelope) -> Envelope: ...

    def get_state(self) -> dict[str, np.ndarray]: ...

    def set_state(self, state: dict[str, np.ndarray]) -> None: ...


class PsiSteps:
    """Step machine shared by the PSI backends (subclasses implement rounds 2-4).

    Subclasses set :attr:`BACKEND` and implement ``setup``, ``respond`` and ``_intersect``
    (and extend ``get_state`` / ``set_state`` with their secrets).

    Args:
        keys: ``[n_own]`` this party's raw join keys, in table row order.
        party: ``"social"`` or ``"ecommerce"``.
        normalization: key normalisation; must be the same on both sides (shared config).

    Raises:
        InputError: if the keys are unusable (see :func:`fedads.align.normalize_keys`).
    """

    BACKEND: str = ""
    SECRET_STATE: tuple[str, ...] = ()
    """Names of :meth:`get_state` entries that are secret (dropped after the last step)."""

    def __init__(
        self,
        keys: Sequence[str] | np.ndarray,
        party: str,
        normalization: KeyNormalization | None = None,
    ) -> None:
        self.name: str = check_choice(type(self).__name__, "party", party, PARTIES)
        self.peer: str = peer_of(self.name)
        self.normalization = normalization or KeyNormalization()
        self._keys = normalized_key_list(keys, self.normalization, party=self.name)
        self.n_own = len(self._keys)
        self._n_peer: int | None = None
        self._next = PSI_START
        self.alignment: Alignment | None = None
        self._init_secrets()

    def _init_secrets(self) -> None:
        """Backend hook, run last in ``__init__``: set the backend's secret attributes."""

    # -- steps common to every backend -----------------------------------------------------

    def hello(self) -> Envelope:
        """Round 1: announce this party's set size and PSI backend."""
        self._advance(PSI_START, PSI_HELLO)
        return Envelope(PSI_HELLO, meta={"n_keys": self.n_own, "backend": self.BACKEND})

    def setup(self, peer_hello: Envelope) -> Envelope:  # pragma: no cover - abstract
        raise NotImplementedError

    def respond(self, peer_setup: Envelope) -> Envelope:  # pragma: no cover - abstract
        raise NotImplementedError

    def _intersect(self, peer_response: Envelope) -> Alignment:  # pragma: no cover - abstract
        raise NotImplementedError

    def finish(self, peer_response: Envelope) -> Alignment:
        """Round 4: our rows in the intersection, in the shared aligned order.

        Returns:
            This party's :class:`Alignment` (also kept as ``self.alignment``).

        Raises:
            InputError: the intersection is empty (no users in common).
        """
        alignment = self._intersect(peer_response)
        if alignment.n_aligned == 0:
            raise no_overlap_error(
                self.name, self.peer, self.n_own, int(self._n_peer or 0), self._describe()
            )
        return alignment

    def done(self) -> Envelope:
        """The ``psi_done`` envelope reporting sizes after :meth:`finish`."""
        if self.alignment is None:
            raise self._error("done() called before the intersection was computed")
        return Envelope(
            PSI_DONE, meta={"n_keys": self.n_own, "n_aligned": self.alignment.n_aligned}
        )

    def handle(self, envelope: Envelope) -> Envelope:
        """Answer one coordinator envelope (dispatch on ``envelope.kind``).

        An empty intersection is reported as ``psi_done`` with ``n_aligned=0`` (the
        coordinator turns it into the user-facing error) rather than raised here.
        """
        if envelope.kind == PSI_START:
            return self.hello()
        if envelope.kind == PSI_HELLO:
            return self.setup(envelope)
        if envelope.kind == PSI_SETUP:
            return self.respond(envelope)
        if envelope.kind == PSI_RESPONSE:
            self._intersect(envelope)
            return self.done()
        raise self._error(f"unexpected envelope kind {envelope.kind!r}; expected {self._next!r}")

    # -- state shared by every backend -----------------------------------------------------

    def _common_state(self) -> dict[str, np.ndarray]:
        state: dict[str, np.ndarray] = {
            "stage": np.array([PSI_KINDS.index(self._next)], dtype=np.int64),
            "n_own": np.array([self.n_own], dtype=np.int64),
        }
        if self._n_peer is not None:
            state["n_peer"] = np.array([self._n_peer], dtype=np.int64)
        if self.alignment is not None:
            state["rows"] = np.array(self.alignment.rows, dtype=np.int64)
        return state

    def _restore_common(self, state: dict[str, np.ndarray]) -> None:
        try:
            stage = int(np.asarray(state["stage"]).reshape(-1)[0])
            n_own = int(np.asarray(state["n_own"]).reshape(-1)[0])
            self._next = PSI_KINDS[stage]
        except (KeyError, IndexError, TypeError, ValueError):
            raise self._error("set_state: state lacks a valid 'stage' / 'n_own'") from None
        if n_own != self.n_own:
            raise self._error(f"set_state: state is for {n_own} keys, this party has {self.n_own}")
        self._n_peer = int(np.asarray(state["n_peer"])[0]) if "n_peer" in state else None
        self.alignment = None
        if "rows" in state:
            self.alignment = Alignment(np.asarray(state["rows"]), self.n_own, self.name)

    # -- checks ----------------------------------------------------------------------------

    def _read_hello(self, peer_hello: Envelope) -> int:
        """Check the peer's hello (kind, order, same backend); return the peer's set size."""
        self._expect(peer_hello, PSI_HELLO)
        self._advance(PSI_HELLO, PSI_SETUP)
        backend = peer_hello.meta.get("backend")
        if backend != self.BACKEND:
            raise self._error(
                f"the {self.peer} party runs PSI backend {backend!r}, this party runs "
                f"{self.BACKEND!r}; both parties must use the same one: set the same "
                "psi_backend on both sides (FederationSettings.psi_backend, run config "
                f"'psi-backend', one of {list(PSI_BACKENDS)})"
            )
        return self._size(peer_hello, "n_keys")

    def _describe(self) -> str:
        return self.normalization.describe()

    def _advance(self, current: str, following: str) -> None:
        if self._next != current:
            raise self._error(f"step {current!r} out of order; expected {self._next!r}")
        self._next = following

    def _expect(self, envelope: Envelope, kind: str) -> None:
        if not isinstance(envelope, Envelope) or envelope.kind != kind:
            got = envelope.kind if isinstance(envelope, Envelope) else type(envelope).__name__
            raise self._error(f"expected a {kind!r} envelope from the peer, got {got!r}")

    def _size(self, envelope: Envelope, name: str) -> int:
        value = envelope.meta.get(name)
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise self._error(f"{envelope.kind!r} meta {name}={value!r} is not a positive size")
        return int(value)

    def _check_sizes(self, envelope: Envelope, **expected: int | None) -> None:
        for name, value in expected.items():
            if self._size(envelope, name) != value:
                raise self._error(
                    f"{envelope.kind!r} meta {name}={envelope.meta.get(name)!r}, expected {value}"
                )

    def _error(self, detail: str) -> ProtocolError:
        return ProtocolError(f"PSI alignment ({self.BACKEND}), party {self.name!r}: {detail}")
