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
    KeyNormalization,
    PsiBackendParty,
    make_psi_party,
)
from fedads.errors import ProtocolError
from fedads.protocol import messages as msg
from fedads.protocol.envelope import Envelope
from fedads.protocol.parties import EcommerceParty, PartyConfig, SocialParty
from fedads.tables import PartyTable

ALIGNED_ROWS_FILE = "aligned_rows.npy"
"""Written to a party's private output folder after alignment (read by the label holder's
evaluation and, in simulations, by the experimenter's reference models)."""

_ROWS_KEY = "runtime.aligned_rows"
_PSI_PREFIX = "psi."
_PARTY_PREFIX = "party."


class PartyRuntime:
    """One role's runtime: table -> PSI alignment -> training party.

    Args:
        table: this party's validated table (``table.party`` is the role).
        normalization: key normalisation, identical on both sides (shared config).
        party_config: party-local model options (bottom/top factories, encoder).
        out_dir: party-private folder; the aligned row order is written there after PSI.
        psi_backend: PSI implementation, ``"ristretto255"`` (default) or ``"openmined"``; must
            be the same on both sides (shared config, ``FederationSettings.psi_backend``).
    """

    def __init__(
        self,
        table: PartyTable,
        normalization: KeyNormalization | None = None,
        party_config: PartyConfig | None = None,
        out_dir: str | Path | None = None,
        psi_backend: str = DEFAULT_PSI_BACKEND,
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

    # ------------------------------------------------------------------ messages
    def handle(self, envelope: Envelope) -> Envelope:
        """Answer one envelope: PSI kinds here, everything else by the training party."""
        if envelope.kind in PSI_KINDS:
            return self._handle_psi(envelope)
        if self.party is None:
            raise ProtocolError(
                f"{self.name} party got {envelope.kind!r} before alignment; run the PSI first"
            )
        return self.party.handle(envelope)

    def _handle_psi(self, envelope: Envelope) -> Envelope:
        if self._psi is None or envelope.kind == "psi_start":
            self._psi = self._new_psi()
            self.aligned_rows, self.party = None, None
        reply = self._psi.handle(envelope)
        alignment = self._psi.alignment
        if envelope.kind == PSI_RESPONSE and alignment is not None and alignment.n_aligned > 0:
            self._install_alignment(np.asarray(alignment.rows, dtype=np.int64))
        return reply

    def _new_psi(self) -> PsiBackendParty:
        return make_psi_party(
            self.table.keys(), self.name, self.normalization, backend=self.psi_backend
        )

    def _install_alignment(self, rows: np.ndarray) -> None:
        self.aligned_rows = rows
        table = self.table
        numeric = table.numeric_matrix(rows) if table.numeric_columns else None
        categorical = table.categorical_matrix(rows) if table.categorical_columns else None
        if self.name == msg.ECOMMERCE:
            self.party = EcommerceParty(numeric, categorical, table.labels(rows), self.party_config)
        else:
            self.party = SocialParty(numeric, categorical, self.party_config)
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            np.save(self.out_dir / ALIGNED_ROWS_FILE, rows)
            self.party.attach_output(self.out_dir)  # privacy instruments' private files

    # ------------------------------------------------------------------ state
    def get_state(self) -> dict[str, np.ndarray]:
        """Alignment rows, PSI progress and the training party's state, as flat arrays."""
        state: dict[str, np.ndarray] = {}
        if self._psi is not None and self.aligned_rows is None:
            state.update({_PSI_PREFIX + k: v for k, v in self._psi.get_state().items()})
        if self.aligned_rows is not None:
            state[_ROWS_KEY] = self.aligned_rows
        if self.party is not None:
            state.update({_PARTY_PREFIX + k: v for k, v in self.party.get_state().items()})
        return state

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`get_state` returned (on a fresh runtime over the same table)."""
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
