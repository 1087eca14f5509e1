"""A party as deployed: its own table, private alignment, then the split-learning party.

:class:`PartyRuntime` is what a host (the in-process transport or a Flower ClientApp) runs for
one role. It answers the PSI envelopes (``psi_*``) with the chosen PSI backend
(:func:`fedads.align.make_psi_party`) over the keys of its own table, and once the intersection
is known builds the training party (:class:`SocialParty` or :class:`EcommerceParty`) over its
aligned rows. Everything else is delegated to that party. The table never leaves this object;
only envelopes do.

Alignment reuse (sweeps): instead of the PSI, the coordinator may send one
:data:`ALIGNMENT_REUSE` envelope. The runtime then reads the aligned rows from its own private
folder (``out_dir / ALIGNED_ROWS_FILE``: what this party wrote after an earlier PSI over the same
table, or what the experimenter of a simulation placed there, see :class:`AlignedRows`) and
answers with the same two sizes its ``psi_done`` would carry (``n_keys``, ``n_aligned``). No row,
key or digest crosses: the coordinator learns what it learns from a PSI, and less (no round
trips), and the other party learns nothing.

Resumable runs (:mod:`fedads.protocol.resume`): on ``checkpoint`` ``save`` (meta ``epoch``) the
runtime writes its party's state, torch's RNG state, its aligned rows and its table's digest to
``out_dir/resume/epoch-NNNN``; on ``load`` it checks that its table, its rows and the setup are
the saved ones and restores them. Both replies carry the step only; nothing leaves the folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedads._validation import check_choice, fail
from fedads.align import (
    DEFAULT_PSI_BACKEND,
    PSI_BACKENDS,
    PSI_KINDS,
    PSI_RESPONSE,
    PSI_START,
    AlignmentSummary,
    KeyNormalization,
    PsiBackendParty,
    aligned_order,
    make_psi_party,
    normalize_keys,
)
from fedads.align.result import no_overlap_error
from fedads.errors import ProtocolError
from fedads.protocol import messages as msg
from fedads.protocol.envelope import Envelope
from fedads.protocol.parties import EcommerceParty, PartyConfig, SocialParty, UnalignedUsers
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

ALIGNMENT_REUSE = "alignment_reuse"
"""Envelope kind (coordinator -> both parties, no arrays, no meta): "use the aligned rows in your
private folder instead of running the PSI". Reply: same kind, meta ``n_keys`` (own table size)
and ``n_aligned`` (rows found), nothing else: the sizes a ``psi_done`` carries."""

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
        self._digest: str | None = None  # SHA-256 of the table, for resume checkpoints
        # E-commerce with unaligned training: its training rows outside the intersection.
        self.unaligned_rows: np.ndarray | None = None

    # ------------------------------------------------------------------ messages
    def handle(self, envelope: Envelope) -> Envelope:
        """Answer one envelope: PSI kinds and alignment reuse here, the rest by the training party.

        With sealing, the peer's payload in ``envelope`` is opened and checked first, and the
        reply's payload for the peer is sealed last (``fedads.protocol.sealing``).
        """
        request = envelope if self.channel is None else self.channel.open(envelope)
        if request.kind in PSI_KINDS:
            reply = self._handle_psi(request)
        elif request.kind == ALIGNMENT_REUSE:
            reply = self._reuse_alignment()
        elif (
            request.kind == msg.CHECKPOINT
            and request.meta.get("action") in msg.RESUME_ACTIONS
            and self.party is not None
        ):
            reply = self._resume_checkpoint(request)
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

    def _reuse_alignment(self) -> Envelope:
        """Install the aligned rows found in this party's private folder (no PSI)."""
        path = self.out_dir / ALIGNED_ROWS_FILE if self.out_dir is not None else None
        if path is None or not path.exists():
            raise ProtocolError(
                f"{self.name} party: alignment reuse asked, but there is no {ALIGNED_ROWS_FILE} "
                f"in its private folder ({self.out_dir}); run the PSI once, or hand the rows of "
                "an earlier run to run_federated(alignment=...)"
            )
        rows = np.load(path, allow_pickle=False)
        n_rows = self.table.n_rows
        valid = (
            rows.ndim == 1
            and rows.size > 0
            and np.issubdtype(rows.dtype, np.integer)
            and int(rows.min()) >= 0
            and int(rows.max()) < n_rows
            and np.unique(rows).size == rows.size
        )
        if not valid:
            raise ProtocolError(
                f"{self.name} party: {path} is not a set of distinct row positions of its "
                f"{n_rows}-row table; it belongs to another table: run the PSI instead"
            )
        rows = np.asarray(rows, dtype=np.int64)
        reply = Envelope(ALIGNMENT_REUSE, meta={"n_keys": n_rows, "n_aligned": int(rows.size)})
        # One alignment per run: a repeated reuse message (a retry) changes nothing, and nothing
        # may swap the rows under a PSI under way or a different alignment already in place.
        if self.aligned_rows is not None:
            if np.array_equal(rows, self.aligned_rows):
                return reply
            raise ProtocolError(
                f"{self.name} party is already aligned on other rows; one alignment per run"
            )
        if self._psi is not None:
            raise ProtocolError(f"{self.name} party refuses alignment reuse: a PSI is under way")
        self._psi_started = True  # the run's one alignment: a later psi_start is refused too
        self._install_alignment(rows)
        return reply

    def _resume_checkpoint(self, request: Envelope) -> Envelope:
        """``checkpoint`` ``save`` / ``load`` of a completed epoch, in this party's own private
        folder (:mod:`fedads.protocol.resume`); the reply carries the step only."""
        from fedads.protocol import resume

        party = self.party
        assert party is not None and self.aligned_rows is not None
        action, epoch = str(request.meta["action"]), int(request.meta.get("epoch", -1))
        if self.out_dir is None:
            raise ProtocolError(
                f"{self.name} party: checkpoint {action!r} needs a private folder (out_dir)"
            )
        if epoch < 1:
            raise ProtocolError(f"{self.name} party: checkpoint {action!r} needs an epoch >= 1")
        state = party.get_state()
        if not state:
            raise ProtocolError(f"{self.name} party got checkpoint {action!r} before 'setup'")
        if action == "save":
            resume.save_party_epoch(
                self.out_dir, epoch, state, self.aligned_rows, self._table_digest()
            )
            return Envelope(msg.CHECKPOINT, {}, {"step": party.step})
        saved = resume.load_party_epoch(self.out_dir, epoch, self.name)
        refused = f"{self.name} party refuses to resume epoch {epoch}"
        if saved.digest != self._table_digest():
            raise ProtocolError(f"{refused}: its table is not the interrupted run's")
        if not np.array_equal(saved.aligned_rows, self.aligned_rows):
            raise ProtocolError(f"{refused}: its aligned rows are not the interrupted run's")
        setup = "setup.meta"
        if not np.array_equal(saved.party_state.get(setup, np.zeros(0)), state[setup]):
            raise ProtocolError(f"{refused}: the setup differs from the interrupted run's")
        party.set_state(saved.party_state)
        import torch

        torch.set_rng_state(torch.from_numpy(saved.rng_state.copy()))
        saved.restore_records(self.out_dir)
        return Envelope(msg.CHECKPOINT, {}, {"step": party.step})

    def _table_digest(self) -> str:
        if self._digest is None:
            from fedads.protocol.resume import table_digest

            self._digest = table_digest(self.table)
        return self._digest

    def _new_psi(self) -> PsiBackendParty:
        return make_psi_party(
            self.table.keys(), self.name, self.normalization, backend=self.psi_backend
        )

    def _install_alignment(self, rows: np.ndarray, *, restored: bool = False) -> None:
        """Build the training party over ``rows``; ``restored``: from a checkpoint of this run
        (keep the run's private scores), else a new alignment (drop an earlier run's)."""
        self.aligned_rows = rows
        self.private_scores = None
        table = self.table
        numeric = table.numeric_matrix(rows) if table.numeric_columns else None
        categorical = table.categorical_matrix(rows) if table.categorical_columns else None
        if self.name == msg.ECOMMERCE:
            party = EcommerceParty(
                numeric,
                categorical,
                table.labels(rows),
                self.party_config,
                unaligned=self._unaligned_users(rows),
            )
            party.score_sink = self._keep_scores  # per-user scores stay with this party
            self.party = party
        else:
            self.party = SocialParty(numeric, categorical, self.party_config)
        if self.out_dir is not None:
            self.out_dir.mkdir(parents=True, exist_ok=True)
            np.save(self.out_dir / ALIGNED_ROWS_FILE, rows)
            self.party.attach_output(self.out_dir)  # privacy instruments' private files
            if not restored:
                (self.out_dir / SCORES_FILE).unlink(missing_ok=True)  # an earlier run's scores

    def _unaligned_users(self, aligned_rows: np.ndarray) -> UnalignedUsers | None:
        """(E-commerce, ``PartyConfig.unaligned_training``) its labelled users outside the
        intersection, less those a campaign holds out; computed here, never sent."""
        config = self.party_config
        if config is None or not config.unaligned_training:
            self.unaligned_rows = None
            return None
        table = self.table
        rows, _ = split_unaligned(
            table.n_rows, aligned_rows, config.unaligned_test_share, config.unaligned_split_seed
        )
        self.unaligned_rows = rows
        return UnalignedUsers(
            table.numeric_matrix(rows) if table.numeric_columns else None,
            table.categorical_matrix(rows) if table.categorical_columns else None,
            table.labels(rows),
        )

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
                self._install_alignment(rows, restored=True)
            party_state = _strip(state, _PARTY_PREFIX)
            if party_state and self.party is not None:
                self.party.set_state(party_state)


def split_unaligned(
    n_rows: int, aligned_rows: np.ndarray, test_share: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """A table's rows outside the intersection, split as the aligned users are.

    The rule of :func:`fedads.federation.split_positions` (a seeded permutation, the first
    ``round(test_share * m)`` held out) over the ``m`` unaligned rows in table order, without
    its "at least one each side" clamp. Returns ``(train_rows, test_rows)``, each ``int64``
    and sorted. The campaign view holds out ``test_rows`` (:func:`fedads.eval.campaign.
    campaign_split`); the label party trains on ``train_rows`` only.
    """
    keep = np.ones(int(n_rows), dtype=bool)
    keep[np.asarray(aligned_rows, dtype=np.int64)] = False
    unaligned = np.flatnonzero(keep).astype(np.int64)
    n_test = int(round(test_share * unaligned.size))
    order = np.random.default_rng(seed).permutation(unaligned.size)
    held = np.zeros(unaligned.size, dtype=bool)
    held[order[:n_test]] = True
    return unaligned[~held], unaligned[held]


def _strip(state: dict[str, Any], prefix: str) -> dict[str, Any]:
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


# ------------------------------------------------------------------ alignment reuse
def coordinate_reused_alignment(send_all: Any) -> AlignmentSummary:
    """Coordinator side of alignment reuse: one :data:`ALIGNMENT_REUSE` round, sizes checked.

    Args:
        send_all: e.g. ``transport.send_all`` (one envelope per party in, one reply each out).

    Returns:
        The sizes, as :func:`fedads.align.coordinate_alignment` returns them.

    Raises:
        ProtocolError: a party has no usable rows, or the two parties' counts differ.
    """
    parties = (msg.SOCIAL, msg.ECOMMERCE)
    replies = send_all({p: Envelope(ALIGNMENT_REUSE) for p in parties})
    sizes: dict[str, tuple[int, int]] = {}
    for party in parties:
        reply = replies.get(party)
        if not isinstance(reply, Envelope) or reply.kind != ALIGNMENT_REUSE:
            got = reply.kind if isinstance(reply, Envelope) else reply
            raise ProtocolError(f"alignment reuse: party {party!r} answered {got!r}")
        sizes[party] = (int(reply.meta["n_keys"]), int(reply.meta["n_aligned"]))
    if sizes[msg.SOCIAL][1] != sizes[msg.ECOMMERCE][1]:
        raise ProtocolError(
            "alignment reuse: the parties hold different numbers of aligned rows "
            f"({ {p: n for p, (_, n) in sizes.items()} }); the rows are from different runs: "
            "run the PSI instead"
        )
    return AlignmentSummary(sizes[msg.SOCIAL][0], sizes[msg.ECOMMERCE][0], sizes[msg.SOCIAL][1])


@dataclass(frozen=True)
class AlignedRows:
    """Both parties' aligned rows, for handing a finished alignment to later runs (sweeps).

    ``run_federated(..., alignment=AlignedRows)`` writes ``social`` into the social party's
    private folder and ``ecommerce`` into the e-commerce party's, and the job skips the PSI
    (:data:`ALIGNMENT_REUSE`). Each party gets back only its own rows, which it had learned
    itself from an earlier PSI over the same tables; only sizes reach the coordinator.

    Attributes:
        social, ecommerce: ``int64 [n_aligned]`` each party's table rows in the shared aligned
            order (position ``i`` is the same user on both sides).
    """

    social: np.ndarray
    ecommerce: np.ndarray

    def __post_init__(self) -> None:
        social = np.asarray(self.social)
        ecommerce = np.asarray(self.ecommerce)
        for name, rows in (("social", social), ("ecommerce", ecommerce)):
            if rows.ndim != 1 or rows.size == 0 or not np.issubdtype(rows.dtype, np.integer):
                raise fail(
                    "AlignedRows",
                    f"{name} rows must be a non-empty 1-d integer array, got {rows.dtype} "
                    f"{rows.shape}",
                    "pass a FederatedRun's social_rows / ecommerce_rows",
                )
        if social.size != ecommerce.size:
            raise fail(
                "AlignedRows",
                f"{social.size} social rows but {ecommerce.size} e-commerce rows",
                "pass both rows of one alignment",
            )
        object.__setattr__(self, "social", social.astype(np.int64, copy=False))
        object.__setattr__(self, "ecommerce", ecommerce.astype(np.int64, copy=False))

    @property
    def n_aligned(self) -> int:
        """Number of aligned users."""
        return int(self.social.size)

    @classmethod
    def of(cls, run: Any) -> AlignedRows:
        """The rows of a finished run: a ``FederatedRun`` or an ``ExperimentResult``."""
        run = getattr(run, "federated", run)
        if not (hasattr(run, "social_rows") and hasattr(run, "ecommerce_rows")):
            raise fail(
                "alignment",
                f"a {type(run).__name__} holds no aligned rows",
                "pass a FederatedRun, an ExperimentResult, AlignedRows, 'clear' or None",
            )
        return cls(np.asarray(run.social_rows), np.asarray(run.ecommerce_rows))

    @classmethod
    def in_the_clear(
        cls,
        social: PartyTable,
        ecommerce: PartyTable,
        normalization: KeyNormalization | None = None,
    ) -> AlignedRows:
        """The intersection computed from both key columns at once (simulations only).

        The same rows, in the same order, as the PSI gives (:func:`fedads.align.aligned_order`
        over the normalised intersection is what each PSI party applies), but the caller reads
        both parties' keys: only an experimenter who already holds both tables (a simulation)
        may do this. Not a protocol: no deployment can.

        Raises:
            InputError: a key column is unusable, or the tables have no key in common.
        """
        norm = normalization or KeyNormalization()
        social_keys = normalize_keys(social.keys(), norm, party="social")
        ecommerce_keys = normalize_keys(ecommerce.keys(), norm, party="ecommerce")
        common, social_idx, ecommerce_idx = np.intersect1d(
            social_keys, ecommerce_keys, assume_unique=True, return_indices=True
        )
        if common.size == 0:
            raise no_overlap_error(
                "social", "ecommerce", social.n_rows, ecommerce.n_rows, norm.describe()
            )
        order = aligned_order(common)
        return cls(social_idx[order].astype(np.int64), ecommerce_idx[order].astype(np.int64))

    def check_against(
        self,
        social: PartyTable,
        ecommerce: PartyTable,
        normalization: KeyNormalization | None = None,
    ) -> AlignedRows:
        """Check (experimenter side, both tables in hand) that row ``i`` is one user on both sides.

        Raises:
            InputError: rows out of range, or some aligned pair has different keys (the rows are
                from other tables).
        """
        norm = normalization or KeyNormalization()
        for name, rows, table in (
            ("social", self.social, social),
            ("ecommerce", self.ecommerce, ecommerce),
        ):
            if int(rows.min()) < 0 or int(rows.max()) >= table.n_rows:
                raise fail(
                    "run_federated(alignment=...)",
                    f"{name} rows out of range for its {table.n_rows}-row table",
                    "pass the aligned rows of a run over these tables, or alignment=None (PSI)",
                )
        social_keys = normalize_keys(social.keys()[self.social], norm, party="social")
        ecommerce_keys = normalize_keys(ecommerce.keys()[self.ecommerce], norm, party="ecommerce")
        mismatched = int(np.count_nonzero(social_keys != ecommerce_keys))
        if mismatched:
            raise fail(
                "run_federated(alignment=...)",
                f"{mismatched} of {self.n_aligned} aligned pairs have different keys",
                "pass the aligned rows of a run over these same tables, or alignment=None (PSI)",
            )
        return self

    def write(self, out_dirs: dict[str, Path]) -> None:
        """Put each party's rows into that party's private folder (``out_dirs[role]``)."""
        for role, rows in (("social", self.social), ("ecommerce", self.ecommerce)):
            folder = Path(out_dirs[role])
            folder.mkdir(parents=True, exist_ok=True)
            np.save(folder / ALIGNED_ROWS_FILE, rows)
