"""A party as deployed: its own table, private alignment, then the split-learning party.

:class:`PartyRuntime` is what a host (the in-process transport or a Flower ClientApp) runs for
one role. It answers the PSI envelopes (``psi_*``) with the chosen PSI backend
(:func:`fedads.align.make_psi_party`) over the keys of its own table, and once the intersection
is known builds the training party (:class:`SocialParty` or :class:`EcommerceParty`) over its
aligned rows. Everything else is delegated to that party. The table never leaves this object;
only envelopes do.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fedads._validation import check_choice
from fedads.align import (
    DEFAULT_PSI_BACKEND,
    PSI_BACKENDS,
    PSI_KINDS,
    PSI_RESPONSE,
    PSI_START,
    KeyNormalization,
    PsiBackendParty,
    make_psi_party,
)
from fedads.errors import ProtocolError
from fedads.protocol import messages as msg
from fedads.protocol.envelope import Envelope
from fedads.protocol.parties import EcommerceParty, PartyConfig, SocialParty
from fedads.protocol.sealing import SealedChannel, SealingKeys
from fedads.tables import PartyTable

ALIGNED_ROWS_FILE = "aligned_rows.npy"
"""Written to a party's private output folder after alignment (read by the label holder's
evaluation and, in simulations, by the experimenter's reference models)."""

SCORES_FILE = "scores.npy"
"""The label party's private per-user scores: float32 ``[n_aligned]`` in the aligned order,
NaN where nothing was scored (written by the e-commerce runtime; never sent to the relay)."""

_CHANNEL_PREFIX = "channel."
_PSI_STARTED_KEY = "runtime.psi_started"

_ROWS_KEY = "runtime.aligned_rows"
_PSI_PREFIX = "psi."
_PARTY_PREFIX = "party."


class PartyRuntime:
    """One role's runtime: table -> PSI alignment -> training party.

    Args:
        table: this party's validated table (``table.party`` is the role).
        normalization: key normalisation, identical on both sides (shared config).
        party_config: party-local model options (bottom/top factories, encoder).
        out_dir: party-private folder; the aligned row order is written there after PSI, and
            (e-commerce) the per-user scores (:data:`SCORES_FILE`).
        psi_backend: PSI implementation, ``"ristretto255"`` (default) or ``"openmined"``; must
            be the same on both sides (shared config, ``FederationSettings.psi_backend``).
        sealing: this party's secret key and the peer's public key: every payload to and from
            the peer is sealed end to end (``fedads.protocol.sealing``). ``None`` runs without
            sealing (benchmarks of its cost, trusted single-process use only).
    """

    def __init__(
        self,
        table: PartyTable,
        normalization: KeyNormalization | None = None,
        party_config: PartyConfig | None = None,
        out_dir: str | Path | None = None,
        psi_backend: str = DEFAULT_PSI_BACKEND,
        sealing: SealingKeys | None = None,
    ) -> None:
        self.table = table
        self.name: str = table.party
        self.normalization = normalization or KeyNormalization()
        self.party_config = party_config
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.psi_backend: str = check_choice(
            "PartyRuntime", "psi_backend", psi_backend, PSI_BACKENDS
        )
        self._psi: PsiBackendParty | None = None
        self.aligned_rows: np.ndarray | None = None  # int64 [n_aligned] rows of self.table
        self.party: SocialParty | EcommerceParty | None = None
        if sealing is not None and sealing.role != self.name:
            raise ProtocolError(
                f"{self.name} party was given the {sealing.role} party's sealing keys"
            )
        self.channel: SealedChannel | None = None if sealing is None else SealedChannel(sealing)
        self._psi_started = False
        self.private_scores: np.ndarray | None = None  # float32 [n_aligned] when no out_dir

    # ------------------------------------------------------------------ messages
    def handle(self, envelope: Envelope) -> Envelope:
        """Answer one envelope: PSI kinds here, everything else by the training party.

        With sealing, the peer's payload in ``envelope`` is opened and checked first, and the
        reply's payload for the peer is sealed last (``fedads.protocol.sealing``).
        """
        request = envelope if self.channel is None else self.channel.open(envelope)
        if request.kind in PSI_KINDS:
            reply = self._handle_psi(request)
        elif self.party is None:
            raise ProtocolError(
                f"{self.name} party got {request.kind!r} before alignment; run the PSI first"
            )
        else:
            reply = self.party.handle(request)
        return reply if self.channel is None else self.channel.seal(request, reply)

    def _handle_psi(self, envelope: Envelope) -> Envelope:
        if envelope.kind == PSI_START:
            # One PSI per session: a restarted PSI would let the relay run the intersection
            # again (e.g. against substituted points) and replace the alignment.
            if self._psi_started:
                raise ProtocolError(
                    f"{self.name} party refuses a second 'psi_start': one PSI per session "
                    "(start a new run for a new alignment)"
                )
            self._psi_started = True
            self._psi = self._new_psi()
            self.aligned_rows, self.party = None, None
        elif self._psi is None:
            raise ProtocolError(
                f"{self.name} party got {envelope.kind!r} with no PSI under way"
                + (" (the alignment is done)" if self.aligned_rows is not None else "")
            )
        reply = self._psi.handle(envelope)
        alignment = self._psi.alignment
        if envelope.kind == PSI_RESPONSE and alignment is not None:
            self._psi = None  # done: later psi_* messages are refused
            if alignment.n_aligned > 0:
                self._install_alignment(np.asarray(alignment.rows, dtype=np.int64))
        return reply

    def _new_psi(self) -> PsiBackendParty:
        return make_psi_party(
            self.table.keys(), self.name, self.normalization, backend=self.psi_backend
        )

    def _install_alignment(self, rows: np.ndarray) -> None:
        self.aligned_rows = rows
        self.private_scores = None
        table = self.table
        numeric = table.numeric_matrix(rows) if table.numeric_columns else None
        categorical = table.categorical_matrix(rows) if table.categorical_columns else None
        if self.name == msg.ECOMMERCE:
            party = EcommerceParty(numeric, categorical, table.labels(rows), self.party_config)
            party.score_sink = self._keep_scores  # per-user scores stay with this party
            self.party = party
        else:
            self.party = SocialParty(numeric, categorical, self.party_config)
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            np.save(self.out_dir / ALIGNED_ROWS_FILE, rows)
            (self.out_dir / SCORES_FILE).unlink(missing_ok=True)  # an earlier run's scores

    def _keep_scores(self, positions: np.ndarray, scores: np.ndarray) -> None:
        """Store scores of ``positions`` in this party's private output (never in a reply)."""
        assert self.aligned_rows is not None
        path = None if self.out_dir is None else self.out_dir / SCORES_FILE
        if self.private_scores is None:
            if path is not None and path.exists():
                self.private_scores = np.load(path)
            else:
                self.private_scores = np.full(self.aligned_rows.size, np.nan, dtype=np.float32)
        self.private_scores[positions] = scores
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f"{path.stem}.tmp.npy")
            np.save(tmp, self.private_scores)
            tmp.replace(path)

    # ------------------------------------------------------------------ state
    def get_state(self) -> dict[str, np.ndarray]:
        """Alignment rows, PSI progress, channel counters and the training party's state."""
        state: dict[str, np.ndarray] = {
            _PSI_STARTED_KEY: np.array([int(self._psi_started)], dtype=np.int64)
        }
        if self.channel is not None:
            state.update({_CHANNEL_PREFIX + k: v for k, v in self.channel.get_state().items()})
        if self._psi is not None and self.aligned_rows is None:
            state.update({_PSI_PREFIX + k: v for k, v in self._psi.get_state().items()})
        if self.aligned_rows is not None:
            state[_ROWS_KEY] = self.aligned_rows
        if self.party is not None:
            state.update({_PARTY_PREFIX + k: v for k, v in self.party.get_state().items()})
        return state

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`get_state` returned (on a fresh runtime over the same table)."""
        if _PSI_STARTED_KEY in state:
            self._psi_started = bool(np.asarray(state[_PSI_STARTED_KEY]).reshape(-1)[0])
        if self.channel is not None:
            self.channel.set_state(_strip(state, _CHANNEL_PREFIX))
        psi_state = _strip(state, _PSI_PREFIX)
        if psi_state:
            self._psi = self._new_psi()
            self._psi.set_state(psi_state)
            if _ROWS_KEY not in state:  # alignment under way: nothing after it exists yet
                self.aligned_rows, self.party = None, None
        if _ROWS_KEY in state:
            rows = np.asarray(state[_ROWS_KEY], dtype=np.int64)
            same = self.aligned_rows is not None and np.array_equal(rows, self.aligned_rows)
            if not (same and self.party is not None):
                self._install_alignment(rows)
            party_state = _strip(state, _PARTY_PREFIX)
            if party_state and self.party is not None:
                self.party.set_state(party_state)


def _strip(state: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
