"""The federated run: PSI alignment, split, training and scoring, on any transport.

One job function (:func:`vfl_job`) drives the federation from the coordinator's seat; one party
factory (:func:`party_factory`) builds each role from its own table. The same two functions run
in-process (tests, sweeps) and inside Flower's ServerApp / ClientApps (simulation or deployment),
so every transport trains exactly the same thing.

Everything the job and the factories need travels as a flat Flower run config
(:meth:`FederationSettings.to_run_config`); each party's data path is visible to that party only.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from fedads._flat import flat_keys, flatten, unflatten
from fedads._progress import SILENT, Progress
from fedads._threads import compute_threads
from fedads._validation import check_choice, check_in_range, check_positive_int, fail
from fedads.align import DEFAULT_PSI_BACKEND, PSI_BACKENDS, KeyNormalization, coordinate_alignment
from fedads.errors import PartyError
from fedads.models import TrainingHistory
from fedads.privacy.leakage import read_party_outputs
from fedads.protocol import Coordinator, InProcessTransport, ProtocolConfig
from fedads.protocol.parties import PartyConfig
from fedads.protocol.resume import RunCheckpoints, read_manifest
from fedads.protocol.runtime import (
    ALIGNED_ROWS_FILE,
    SCORES_FILE,
    AlignedRows,
    PartyRuntime,
    coordinate_reused_alignment,
)
from fedads.protocol.sealing import SealingKeys, fresh_keys, key_file_text
from fedads.tables import (
    EXISTING_NAME,
    KEY_NAME,
    LABEL_NAME,
    ROLE_ARGS,
    PartyTable,
    load_party_table,
    read_column_roles,
)

PARTIES: tuple[str, str] = ("social", "ecommerce")
BACKENDS: tuple[str, ...] = ("simulation", "inprocess", "deployment")
JOB = "fedads.federation:vfl_job"
PARTY_FACTORY = "fedads.federation:party_factory"
REUSE_ALIGNMENT_KEY = "reuse-alignment"
SCORE_TRAIN_KEY = "score-train"
"""Run-config key: the label party also scores the training users, before the held-out ones
(into its private output only); a local serving model is distilled from those scores
(:mod:`fedads.serving`)."""
SERVE_FALLBACK_KEY = "serve-fallback"
"""Run-config key: when the social party fails while the held-out users are scored, the job
ends normally with ``scoring_error`` instead of failing; the users left unscored (NaN in the
label party's private scores) are served by the local serving model (:mod:`fedads.serving`)."""
RESUME_DIR_KEY = "resume-dir"
"""Run-config key: the coordinator's resume folder (its run manifest,
:mod:`fedads.protocol.resume`); ``""``: the run is not resumable (no per-epoch checkpoints)."""
RESUME_KEY = "resume"
"""Run-config flag: continue the run whose manifest is in ``resume-dir`` (no PSI: each party
reuses its aligned rows; both go back to their state of the manifest's epoch)."""
#: Run-config keys of the job that are not settings, with their defaults (the Flower app's
#: ``[tool.flwr.app.config]`` declares them too: ``fedads.flower.config.app_config``).
JOB_DEFAULTS: dict[str, bool | str] = {
    REUSE_ALIGNMENT_KEY: False,
    SCORE_TRAIN_KEY: False,
    SERVE_FALLBACK_KEY: False,
    RESUME_DIR_KEY: "",
    RESUME_KEY: False,
}
"""``reuse-alignment``: the job skips the PSI and each party uses the aligned rows in its own
private folder (``run_federated(alignment=...)``, :class:`fedads.protocol.runtime.AlignedRows`)."""
RELAY_ATTACK_PREFIX = "relay_attack."
"""Job-result arrays of the relay's label-attack scores (``fedads.privacy.observe``)."""
_WHERE = "FederationSettings"


@dataclass(frozen=True)
class FederationSettings:
    """What the coordinator and the parties agree on before a run (no data, no secrets).

    Column names are not here: they are each party's own business and travel with its table
    (:meth:`fedads.tables.PartyTable.to_parquet`, or the party's node config in deployment;
    see :func:`load_role_table`).

    Attributes:
        protocol: training protocol (mode, chunk size, pipeline, batch size, epochs, model,
            compression, seed, and ``timeout_s``: the seconds a party may take to answer one
            message, on every backend).
        test_share: share of aligned users held out for evaluation, split once by user before
            any model sees them (default 0.3).
        split_seed: seed of that split (default 0).
        valid_share: share of the train users kept out of fitting to measure the validation
            loss after every epoch (``epoch_valid_losses``; e.g. to choose the number of epochs
            without touching the held-out users); split from the train users with ``split_seed``
            (:func:`split_valid`). Default 0: every train user fits, no validation. The
            validation requests obey the label party's query policy: a validation set smaller
            than ``min_query_rows`` is refused unless that is lowered.
        normalization: key normalisation both parties apply before PSI.
        psi_backend: PSI implementation both parties run, ``"ristretto255"`` (default,
            two-way DH-PSI over ristretto255) or ``"openmined"`` (openmined-psi, P-256).
        sealing: seal every payload between the parties end to end (default True;
            ``fedads.protocol.sealing``). ``run_federated`` makes fresh key pairs per run; a
            deployed party reads its keys from its config (``<role>-secret-key``,
            ``<role>-peer-key``) and seals whenever it has them. False only to measure the cost.
        min_query_rows: the label party's query policy: fewest distinct rows a ``score`` /
            ``evaluate`` request may cover (default 256, capped by the rows outside training;
            ``docs/threat-model.md``).
        unaligned_training: the label party also trains its bottom and top on its own
            labelled users outside the intersection (less those the campaign view holds out,
            :func:`fedads.protocol.runtime.split_unaligned`), with a learned "no social
            account" embedding in place of the social one; nothing about them leaves the party
            (:class:`fedads.protocol.parties.UnalignedUsers`, docs/evaluation.md). Default
            False: the intersection only.
        verbose: progress lines from the coordinator.
    """

    protocol: ProtocolConfig = field(default_factory=ProtocolConfig)
    test_share: float = 0.3
    split_seed: int = 0
    valid_share: float = 0.0
    normalization: KeyNormalization = field(default_factory=KeyNormalization)
    psi_backend: str = DEFAULT_PSI_BACKEND
    sealing: bool = True
    min_query_rows: int = 256
    unaligned_training: bool = False
    verbose: bool = True

    def validate(self) -> FederationSettings:
        self.protocol.validate()
        self.normalization.validate()
        check_in_range(
            _WHERE,
            "test_share",
            self.test_share,
            0.0,
            1.0,
            low_inclusive=False,
            high_inclusive=False,
        )
        check_positive_int(_WHERE, "split_seed", self.split_seed, minimum=0)
        check_in_range(_WHERE, "valid_share", self.valid_share, 0.0, 1.0, high_inclusive=False)
        if self.protocol.early_stopping_patience is not None and self.valid_share <= 0:
            raise fail(
                _WHERE,
                "protocol.early_stopping_patience is set but valid_share=0",
                "set valid_share > 0 (e.g. 0.2): early stopping needs validation users",
            )
        check_choice(_WHERE, "psi_backend", self.psi_backend, PSI_BACKENDS)
        check_positive_int(_WHERE, "min_query_rows", self.min_query_rows)
        return self

    @property
    def timeout_s(self) -> float:
        """Seconds a party may take to answer one message (``protocol.timeout_s``)."""
        return float(self.protocol.timeout_s)

    def to_run_config(self) -> dict[str, Any]:
        """Flat Flower run config (scalars only), generically from the fields.

        Keys are the field names in kebab case, nested settings prefixed
        (``protocol-batch-size``, ``protocol-model-top-hidden``, ``normalization-lower``);
        tuples are ``"64,32"``, ``None`` is ``""`` (:mod:`fedads._flat`).
        """
        return flatten(self)

    @classmethod
    def from_run_config(cls, config: Mapping[str, Any] | Any) -> FederationSettings:
        """Inverse of :meth:`to_run_config`: missing keys at defaults, other keys ignored.

        Raises:
            InputError: a value of the wrong type, or a key that is the unprefixed tail of a
                settings key (``epochs`` for ``protocol-epochs``: a run config written before the
                settings were flattened generically would otherwise be silently ignored).
        """
        flat = dict(config)
        known = cls.run_config_keys()
        for key in flat:
            if key in known:
                continue
            tail = "-" + str(key).replace("_", "-")
            meant = [k for k in known if k.endswith(tail)]
            if meant:
                raise fail(
                    "run config",
                    f"{key!r} is not a settings key",
                    f"use {' or '.join(repr(k) for k in meant)} (nested settings are prefixed)",
                )
        return unflatten(cls, flat).validate()

    @classmethod
    def run_config_keys(cls) -> tuple[str, ...]:
        """Every run-config key the settings use (``[tool.flwr.app.config]`` declares them)."""
        return flat_keys(cls)


def split_positions(n_aligned: int, test_share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split aligned positions ``0..n_aligned-1`` once, by user: ``(train, test)``, both sorted.

    The held-out set has ``round(test_share * n_aligned)`` users (at least 1, at most n-1).
    """
    if n_aligned < 2:
        raise fail("split", f"only {n_aligned} aligned user(s)", "align at least 2 users")
    n_test = min(max(int(round(test_share * n_aligned)), 1), n_aligned - 1)
    order = np.random.default_rng(seed).permutation(n_aligned)
    return np.sort(order[n_test:]).astype(np.int64), np.sort(order[:n_test]).astype(np.int64)


def split_valid(train: np.ndarray, valid_share: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split train positions once more into ``(fit, valid)``, both sorted.

    The validation set has ``round(valid_share * len(train))`` users (at most ``len(train) - 1``);
    ``valid_share = 0`` keeps every train user for fitting (``valid`` empty).
    """
    train = np.asarray(train, dtype=np.int64)
    n_valid = min(int(round(valid_share * train.size)), train.size - 1) if valid_share > 0 else 0
    order = np.random.default_rng([seed, 1]).permutation(train)
    return np.sort(order[n_valid:]).astype(np.int64), np.sort(order[:n_valid]).astype(np.int64)


def check_aligned_users(
    where: str, n_aligned: int, test_share: float, budget: float | None = None
) -> tuple[int, int]:
    """Refuse (InputError) an aligned set too small for the split and the budget.

    Cheap, and meant to run as soon as the aligned count is known (after PSI, or in a
    simulation from both tables) and before any training. Returns ``(n_train, n_test)``.

    Args:
        n_aligned: users in the PSI intersection.
        test_share: share held out (:class:`FederationSettings`).
        budget: the headline budget share; when given, it must select at least one held-out user.
    """
    from fedads.eval.targeting import budget_users

    if n_aligned < 2:
        raise fail(
            where,
            f"only {n_aligned} aligned user(s); the train / held-out split needs at least 2",
            "check the key columns and key normalisation, or bring tables with more users in "
            "common",
        )
    n_test = min(max(int(round(test_share * n_aligned)), 1), n_aligned - 1)
    if budget is not None and budget_users(budget, n_test) < 1:
        raise fail(
            where,
            f"{n_aligned} aligned users give {n_test} held-out users, and a budget of "
            f"{budget:g} of them selects no one",
            f"bring at least {math.ceil(0.5 / (budget * test_share))} users in common, or "
            "raise the budget (--budget)",
        )
    return n_aligned - n_test, n_test


# ---------------------------------------------------------------------------------- parties
#: Node-config keys (``<role>-<role arg>``, e.g. ``ecommerce-label``) that name a party's
#: columns when its data file does not carry them; see :func:`load_role_table`.
COLUMN_KEYS: tuple[str, ...] = ROLE_ARGS


def column_config(role: str, config: Mapping[str, Any]) -> dict[str, Any]:
    """``role``'s column roles named in a (node) config: ``load_party_table`` arguments.

    Keys ``<role>-key``, ``<role>-label``, ``<role>-existing`` (one column each) and
    ``<role>-categorical``, ``<role>-numeric`` (comma-separated column names); absent keys are
    left out of the result.
    """
    out: dict[str, Any] = {}
    for arg in COLUMN_KEYS:
        value = config.get(f"{role}-{arg}")
        if value in (None, ""):
            continue
        if arg in ("categorical", "numeric"):
            out[arg] = [c.strip() for c in str(value).split(",") if c.strip()]
        else:
            out[arg] = str(value)
    return out


def load_role_table(
    role: str, source: Any, node_config: Mapping[str, Any] | None = None
) -> PartyTable:
    """Load ``role``'s own table; its column roles come from the party's side only.

    In order: the node config's ``<role>-key`` (and ``<role>-label``, ``<role>-existing``,
    ``<role>-categorical``, ``<role>-numeric``) when set; else the roles stored in a Parquet
    file written by :meth:`~fedads.tables.PartyTable.to_parquet` (what :func:`run_federated`
    hands each party); else the shared names of :mod:`fedads.world` (``key``, and for the
    e-commerce party ``label`` and ``is_existing_customer``).
    """
    check_choice("load_role_table", "role", role, PARTIES)
    columns = column_config(role, node_config or {})
    if "key" not in columns:
        if columns:
            raise fail(
                f"{role} party",
                f"node config names {sorted(columns)} but no '{role}-key'",
                f"set '{role}-key' to the join-key column too",
            )
        if read_column_roles(source) is not None:
            return load_party_table(source, party=role)  # type: ignore[arg-type]
        columns = {"key": KEY_NAME}
        if role == "ecommerce":
            columns.update(label=LABEL_NAME, existing=EXISTING_NAME)
    return load_party_table(source, party=role, **columns)  # type: ignore[arg-type]


def party_factory(role: str, run_config: Any, node_config: Any) -> PartyRuntime:
    """Flower party factory: ``role``'s runtime over ``role``'s own table (and nothing else)."""
    from fedads.flower import party_data_path

    settings = FederationSettings.from_run_config(dict(run_config))
    path = party_data_path(role, run_config, node_config)
    if not path:
        raise fail(f"{role} party", "no data path configured", f"set '{role}-path' in its config")
    out_dir = node_config.get(f"{role}-out") or run_config.get(f"{role}-out") or None
    if "min-query-rows" in node_config:  # the label party's own policy beats the run config's
        settings = replace(settings, min_query_rows=int(node_config["min-query-rows"]))
    elif "party" in node_config:
        # A real SuperNode (deployment): the run config comes through the untrusted relay, so it
        # may raise the label party's query floor but never lower it below the default.
        floor = FederationSettings.min_query_rows
        settings = replace(settings, min_query_rows=max(settings.min_query_rows, floor))
    table = load_role_table(role, path, {**dict(run_config), **dict(node_config)})
    return party_runtime(table, settings, out_dir, party_keys(role, run_config, node_config))


def party_keys(role: str, run_config: Any, node_config: Any) -> SealingKeys | None:
    """``role``'s sealing keys from its config (node config first): ``<role>-secret-key`` (its
    own secret key file) and ``<role>-peer-key`` (the peer's public key file).

    A party that has keys seals, whatever the run config says. Without keys, a run config
    with ``sealing = false`` runs unsealed; otherwise it is an error saying what to set.
    """
    secret = node_config.get(f"{role}-secret-key") or run_config.get(f"{role}-secret-key")
    peer = node_config.get(f"{role}-peer-key") or run_config.get(f"{role}-peer-key")
    if secret and peer:
        return SealingKeys.from_files(role, str(secret), str(peer))
    if not bool(run_config.get("sealing", True)):
        return None
    raise fail(
        f"{role} party",
        "no sealing keys configured",
        f"run `fedads keys --role {role}`, exchange public keys, and set '{role}-secret-key' "
        f"and '{role}-peer-key' in its node config",
    )


def party_runtime(
    table: PartyTable,
    settings: FederationSettings,
    out_dir: str | Path | None = None,
    keys: SealingKeys | None = None,
) -> PartyRuntime:
    """The runtime one role runs over its own ``table``, as ``settings`` agree.

    ``keys``: the role's sealing keys (``None``: no sealing).
    """
    return PartyRuntime(
        table,
        settings.normalization,
        party_config=PartyConfig(
            min_query_rows=settings.min_query_rows,
            unaligned_training=settings.unaligned_training,
            unaligned_test_share=settings.test_share,
            unaligned_split_seed=settings.split_seed,
        ),
        out_dir=out_dir,
        psi_backend=settings.psi_backend,
        sealing=keys,
    )


# ---------------------------------------------------------------------------------- the job
def vfl_job(transport: Any, run_config: Any) -> dict[str, Any]:
    """Coordinator side of a whole federated run; returns scores of the held-out users.

    Steps: PSI alignment (sizes only reach the coordinator) -> split aligned positions into
    train / held-out -> fit the split model -> score the held-out positions.

    Returns (Flower-compatible scalars and arrays): ``n_social``, ``n_ecommerce``,
    ``n_aligned``, ``train_positions`` int64 (the positions the model was fitted on),
    ``test_positions`` int64, with ``settings.valid_share > 0`` also ``valid_positions`` int64
    and ``epoch_valid_losses`` float64 ``[epochs]`` (mean BCE of the validation users after
    each epoch; with early stopping ``[epochs trained]`` and ``best_epoch``, 1-based, the
    epoch whose parameters scored), ``n_scored`` (the
    held-out scores themselves stay in the label party's private output,
    :data:`~fedads.protocol.runtime.SCORES_FILE`), ``epoch_losses``, ``epoch_seconds``,
    ``epoch_bytes`` float64 ``[epochs]`` (payload bytes per epoch, all links),
    ``bytes_social_to_ecommerce`` / ``bytes_ecommerce_to_social`` (training, relayed); with
    :data:`SCORE_TRAIN_KEY` ``n_scored_train``; with :data:`SERVE_FALLBACK_KEY`, after a failure
    of the social party while the held-out users were scored, ``scoring_error`` (str) and
    ``n_scored = -1``.
    """
    settings = FederationSettings.from_run_config(dict(run_config))
    progress = Progress(settings.verbose)
    checkpoints = None
    if str(run_config.get(RESUME_DIR_KEY, "") or ""):
        checkpoints = RunCheckpoints(
            str(run_config[RESUME_DIR_KEY]),
            settings.to_run_config(),
            resume=bool(run_config.get(RESUME_KEY, False)),
        )
        if checkpoints.resume:
            checkpoints.resume_point()  # refuses other settings before any message
    if checkpoints is not None and checkpoints.resume:
        progress("resuming an interrupted run: reusing each party's aligned rows (no PSI)")
        summary = coordinate_reused_alignment(transport.send_all)
    elif bool(run_config.get(REUSE_ALIGNMENT_KEY, False)):
        progress("reusing each party's aligned rows (no PSI)")
        summary = coordinate_reused_alignment(transport.send_all)
    else:
        progress("aligning users by private set intersection")
        summary = coordinate_alignment(transport.send_all, settings.normalization)
    progress(
        f"aligned {summary.n_aligned} users (social {summary.n_social}, "
        f"ecommerce {summary.n_ecommerce})"
    )
    if checkpoints is not None:
        sizes = {
            "n_social": summary.n_social,
            "n_ecommerce": summary.n_ecommerce,
            "n_aligned": summary.n_aligned,
        }
        if checkpoints.resume:
            checkpoints.check_alignment(sizes)
        else:
            checkpoints.start(sizes, settings.protocol.mode)
    train, test = split_positions(summary.n_aligned, settings.test_share, settings.split_seed)
    valid_values: dict[str, np.ndarray] = {}
    valid = None
    if settings.valid_share > 0:
        train, valid = split_valid(train, settings.valid_share, settings.split_seed)
        valid_values["valid_positions"] = valid
    coordinator = Coordinator(transport, settings.protocol, progress=progress)
    history = coordinator.fit(train, valid, checkpoints=checkpoints)
    if valid is not None:
        valid_values["epoch_valid_losses"] = np.asarray(history.valid_losses, dtype=np.float64)
    if coordinator.best_epoch is not None:
        valid_values["best_epoch"] = int(coordinator.best_epoch)
    if bool(run_config.get(SCORE_TRAIN_KEY, False)):
        # The distillation teacher, before serving starts (a local serving model exists before
        # the held-out users are served, so it can stand in if the social party fails then).
        # Scoring changes no state (eval mode, no step), so the held-out scores are the same
        # with or without this (tests/test_campaign.py). The label party keeps these scores
        # too; the social party embeds users it already embedded in training; only the count
        # reaches the coordinator.
        valid_values["n_scored_train"] = coordinator.score(train)
    try:
        n_scored = coordinator.score(test)
    except PartyError as error:
        # Serving without the social party (issue 15 item 5): only when asked, only for a
        # failure of the social party; what is left unscored stays NaN in the label party's
        # private scores and the experimenter serves it with the local model.
        if not bool(run_config.get(SERVE_FALLBACK_KEY, False)) or error.party != PARTIES[0]:
            raise
        progress(f"scoring the held-out users failed ({error}); the local model will serve")
        n_scored = -1
        valid_values["scoring_error"] = str(error)
    return {
        "n_social": summary.n_social,
        "n_ecommerce": summary.n_ecommerce,
        "n_aligned": summary.n_aligned,
        "train_positions": train,
        "test_positions": test,
        "n_scored": n_scored,
        **valid_values,
        **history_arrays(history),
        **coordinator.relay_log.arrays(RELAY_ATTACK_PREFIX),
        "relay_attack_seconds": float(coordinator.relay_log.seconds),
    }


def history_arrays(history: TrainingHistory) -> dict[str, np.ndarray]:
    """Per-epoch losses, seconds and bytes as arrays (what a Flower result can carry)."""
    links = sorted({link for epoch in history.bytes_by_epoch for link in epoch})
    out = {
        "epoch_losses": np.asarray(history.epoch_losses, dtype=np.float64),
        "epoch_seconds": np.asarray(history.epoch_seconds, dtype=np.float64),
        "epoch_bytes": np.asarray(
            [sum(epoch.values()) for epoch in history.bytes_by_epoch], dtype=np.float64
        ),
    }
    for link in links:
        name = "epoch_bytes." + link.replace("->", "_to_")
        out[name] = np.asarray([e.get(link, 0) for e in history.bytes_by_epoch], dtype=np.float64)
    return out


def write_key_files(keys: SealingKeys, folder: str | Path) -> dict[str, str]:
    """Write one party's keys (own secret, peer public) to its private ``folder``; returns the
    run config entries that point its party factory at them (``<role>-secret-key``,
    ``<role>-peer-key``)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    secret, peer = folder / f"{keys.role}.key", folder / "peer.pub"
    fd = os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(key_file_text(keys.role, "secret", keys.secret))
    peer_role = PARTIES[1] if keys.role == PARTIES[0] else PARTIES[0]
    peer.write_text(key_file_text(peer_role, "public", keys.peer_public))
    return {f"{keys.role}-secret-key": str(secret), f"{keys.role}-peer-key": str(peer)}


# ---------------------------------------------------------------------------------- runner
@dataclass
class FederatedRun:
    """The federated model's outcome as the experimenter sees it.

    Attributes:
        values: the job's result (see :func:`vfl_job`), plus ``scores`` float32 (probabilities
            of the held-out positions) read from the label party's private output.
        social_rows, ecommerce_rows: ``int64 [n_aligned]`` each party's table rows in the
            aligned order, read from each party's private output folder (what the label holder's
            evaluation and the simulated baselines need; never sent to the coordinator).
        traffic: payload bytes per link for the whole run (alignment included).
        backend: how it ran.
    """

    values: dict[str, Any]
    social_rows: np.ndarray
    ecommerce_rows: np.ndarray
    traffic: dict[str, int]
    backend: str
    elapsed_s: float = 0.0
    party_outputs: dict[str, Any] = field(default_factory=dict)
    """Privacy instruments' records from the parties' private folders (``fedads.privacy``)."""


def run_federated(
    social: PartyTable,
    ecommerce: PartyTable,
    settings: FederationSettings | None = None,
    *,
    backend: str = "simulation",
    work_dir: str | Path | None = None,
    timeout_s: float | None = None,
    progress: Progress = SILENT,
    alignment: AlignedRows | FederatedRun | str | None = None,
    score_train: bool = False,
    resume_dir: str | Path | None = None,
    resume: bool = False,
    serve_fallback: bool = False,
) -> FederatedRun:
    """Align, train and score the federated model between two party tables.

    Args:
        social, ecommerce: the parties' validated tables (each stays with its party: for
            Flower backends each is written to a party-private folder that only that party's
            ClientApp reads).
        settings: what both sides agree on (default :class:`FederationSettings`).
        backend: ``"simulation"`` (Flower simulation engine, default), ``"deployment"``
            (local SuperLink + 2 SuperNodes via ``flwr run``) or ``"inprocess"`` (same parties
            and job, no Flower; for tests and sweeps).
        work_dir: folder for party-private files (default: a temporary folder).
        timeout_s: shorthand for ``settings.protocol.timeout_s`` (seconds a party may take to
            answer one message, the one timeout of every backend); ``None`` keeps the settings'.
        alignment: ``None`` (default): the parties run the PSI. For sweeps over the same
            tables: an earlier run (``FederatedRun``, ``ExperimentResult``) or
            :class:`~fedads.protocol.runtime.AlignedRows`: each party's own rows go into its
            private folder and the PSI is skipped (nothing new crosses; the coordinator gets
            the two sizes only). ``"clear"``: the rows are computed from both key columns at
            once (:meth:`AlignedRows.in_the_clear`, the PSI's rows and order), for simulations,
            where the experimenter holds both tables anyway. Given rows are checked against
            the tables' keys first.
        score_train: the label party also scores the training users before the held-out ones
            (:data:`SCORE_TRAIN_KEY`); their scores (float32, ``train_positions`` order) are
            read from its private output into ``values["train_scores"]``: what the e-commerce
            side distils its local serving model from (:mod:`fedads.serving`).
        resume_dir: make the run resumable (docs/protocol.md, "Resuming"): each party's private
            folder is ``resume_dir/<role>`` (kept on disk), where it saves its state after every
            completed epoch; the coordinator writes its manifest to ``resume_dir/coordinator``.
            A new run (``resume=False``) first discards an earlier run's state there. If the run
            fails before its alignment is done, the folder is removed (nothing to resume).
        resume: continue the interrupted run whose state is in ``resume_dir``: refused
            (:class:`~fedads.errors.InputError`) when there is none, or when the settings
            (other than the timeout), the backend or either table differ; no PSI (each party
            reuses its aligned rows); training continues after the last completed epoch, and
            the scores equal those of an uninterrupted run.
        serve_fallback: with ``score_train``: a failure of the social party while the
            held-out users are scored does not fail the run (:data:`SERVE_FALLBACK_KEY`);
            ``values["scores"]`` is NaN for the users left unscored and
            ``values["scoring_error"]`` says what failed.
    """
    import time

    settings = (settings or FederationSettings()).validate()
    if timeout_s is not None:
        settings = replace(
            settings, protocol=replace(settings.protocol, timeout_s=float(timeout_s))
        ).validate()
    check_choice("run_federated", "backend", backend, BACKENDS)
    start = time.perf_counter()
    state = None if resume_dir is None else Path(resume_dir)
    if resume:
        if state is None:
            raise fail("run_federated", "resume=True without resume_dir", "pass resume_dir")
        if alignment is not None:
            raise fail(
                "run_federated",
                "resume=True with alignment=...",
                "leave alignment=None: a resumed run reuses its own aligned rows",
            )
        done = check_resumable(state, social, ecommerce, settings, backend)
        progress(f"resuming the interrupted run in {str(state)!r} after epoch {done}")
    elif state is not None:
        start_resumable(state, social, ecommerce, backend, progress)
    try:
        return _run_federated(
            social, ecommerce, settings, backend, work_dir, progress, alignment, score_train,
            serve_fallback, state, resume, start,
        )  # fmt: skip
    except BaseException:
        if state is not None and not resume and read_manifest_quietly(state) is None:
            shutil.rmtree(state, ignore_errors=True)  # not aligned yet: nothing to resume
        raise


def _run_federated(
    social: PartyTable,
    ecommerce: PartyTable,
    settings: FederationSettings,
    backend: str,
    work_dir: str | Path | None,
    progress: Progress,
    alignment: AlignedRows | FederatedRun | str | None,
    score_train: bool,
    serve_fallback: bool,
    state: Path | None,
    resume: bool,
    start: float,
) -> FederatedRun:
    import time

    timeout_s = settings.timeout_s
    reuse = _aligned_rows(alignment, social, ecommerce, settings)
    with tempfile.TemporaryDirectory(prefix="fedads-") as tmp:
        root = Path(work_dir) if work_dir is not None else Path(tmp)
        if state is None:
            outs = {role: root / role / "out" for role in PARTIES}
        else:  # each party's private folder holds its resume checkpoints
            outs = {role: state / role for role in PARTIES}
        tables = {"social": social, "ecommerce": ecommerce}
        # Fresh key pairs per run; each party gets only its own secret and the peer's public key.
        keys = fresh_keys() if settings.sealing else dict.fromkeys(PARTIES)
        reuse_config = {}
        if reuse is not None:
            reuse.write(outs)
            reuse_config[REUSE_ALIGNMENT_KEY] = True
        if score_train:
            reuse_config[SCORE_TRAIN_KEY] = True
            if serve_fallback:
                reuse_config[SERVE_FALLBACK_KEY] = True
        if state is not None:
            reuse_config[RESUME_DIR_KEY] = str(state / COORDINATOR_DIR)
            reuse_config[RESUME_KEY] = bool(resume)
        if backend == "inprocess":
            runtimes = {
                role: party_runtime(tables[role], settings, outs[role], keys[role])
                for role in PARTIES
            }
            transport = InProcessTransport(runtimes, timeout_s=timeout_s)
            try:
                # Both parties' threads at one torch thread each, as a Flower party in a Ray
                # actor of one CPU (fedads._threads); restored on return.
                with compute_threads():
                    values = vfl_job(transport, {**settings.to_run_config(), **reuse_config})
            finally:
                transport.close()
            traffic = transport.traffic.snapshot()
        else:
            from fedads.flower import run_federation

            run_config = {**settings.to_run_config(), **reuse_config}
            for role in PARTIES:
                # The table's column roles travel inside its own (party-private) file.
                path = root / role / "table.parquet"
                path.parent.mkdir(parents=True, exist_ok=True)
                tables[role].to_parquet(path)
                run_config[f"{role}-path"] = str(path)
                run_config[f"{role}-out"] = str(outs[role])
                if keys[role] is not None:
                    run_config.update(write_key_files(keys[role], root / role / "keys"))
            progress(f"starting the Flower {backend} engine (2 parties)")
            result = run_federation(
                JOB,
                PARTY_FACTORY,
                run_config,
                backend=backend,
                timeout_s=timeout_s,
                verbose=settings.verbose,
            )
            values, traffic = dict(result.values), dict(result.traffic)
        rows = {role: np.load(outs[role] / ALIGNED_ROWS_FILE) for role in PARTIES}
        party_outputs = read_party_outputs(outs)
        # The experimenter reads the label party's private scores (the relay never sees them).
        private = np.load(outs["ecommerce"] / SCORES_FILE)
        values["scores"] = np.asarray(private[np.asarray(values["test_positions"])], np.float32)
        if score_train:
            train_scores = private[np.asarray(values["train_positions"])]
            values["train_scores"] = np.asarray(train_scores, np.float32)
    return FederatedRun(
        values=values,
        social_rows=rows["social"],
        ecommerce_rows=rows["ecommerce"],
        traffic=traffic,
        backend=backend,
        elapsed_s=time.perf_counter() - start,
        party_outputs=party_outputs,
    )


COORDINATOR_DIR = "coordinator"
"""The coordinator's folder inside a resume folder (its run manifest)."""
LAUNCH_FILE = "launch.json"
"""The launcher's record in a resume folder: the backend and each table's digest (the
experimenter holds both tables in a simulation; each party also checks its own on resume)."""


def read_manifest_quietly(state: Path) -> dict[str, Any] | None:
    """The coordinator's manifest in resume folder ``state``; ``None`` if absent or unreadable."""
    try:
        return read_manifest(state / COORDINATOR_DIR)
    except Exception:  # noqa: BLE001 - unreadable counts as absent
        return None


def start_resumable(
    state: Path,
    social: PartyTable,
    ecommerce: PartyTable,
    backend: str,
    progress: Progress = SILENT,
) -> None:
    """Prepare ``state`` for a new resumable run: discard an earlier run's state there, then
    record the backend and the tables' digests (:data:`LAUNCH_FILE`).

    Raises:
        InputError: ``state`` is a file, or a non-empty folder that is not a fedads resume
            folder (its files are not ours to delete).
    """
    from fedads.protocol.resume import table_digest

    if state.exists():
        if not state.is_dir():
            raise fail("resume_dir", f"{str(state)!r} is a file", "pass a folder path")
        if (state / LAUNCH_FILE).exists() or (state / COORDINATOR_DIR).exists():
            progress(
                f"discarding the state of an earlier interrupted run in {str(state)!r} "
                "(--resume / resume=True continues it instead)"
            )
            shutil.rmtree(state)
        elif any(state.iterdir()):
            raise fail(
                "resume_dir",
                f"{str(state)!r} is not empty and holds no fedads run state",
                "pass a new or empty folder for the run's resume state",
            )
    state.mkdir(parents=True, exist_ok=True)
    launch = {
        "version": 1,
        "backend": backend,
        "tables": {"social": table_digest(social), "ecommerce": table_digest(ecommerce)},
    }
    tmp = state / f".{LAUNCH_FILE}.tmp"
    tmp.write_text(json.dumps(launch, indent=1, sort_keys=True))
    os.replace(tmp, state / LAUNCH_FILE)


def check_resumable(
    state: Path,
    social: PartyTable,
    ecommerce: PartyTable,
    settings: FederationSettings,
    backend: str,
) -> int:
    """Refuse (InputError, one line saying what to fix) to resume from ``state`` when it holds
    no interrupted run, or one of other settings, another backend or other tables. Returns the
    number of epochs the interrupted run completed."""
    from fedads.errors import ProtocolError
    from fedads.protocol.resume import settings_differences, settings_fingerprint, table_digest

    where = "resume"
    start_over = "or run without --resume (resume=False) to start over"
    try:
        manifest = read_manifest(state / COORDINATOR_DIR) if state.is_dir() else None
        launch = json.loads((state / LAUNCH_FILE).read_text()) if manifest is not None else None
    except (ProtocolError, OSError, ValueError) as exc:
        problem = f"the state in {str(state)!r} is unreadable ({exc})"
        raise fail(where, problem, start_over) from None
    if manifest is None or not isinstance(launch, dict):
        raise fail(
            where,
            f"nothing to resume: {str(state)!r} holds no interrupted run's state (none was "
            "interrupted after its alignment, or it completed)",
            "run without --resume (resume=False); an interrupted run keeps its state there",
        )
    if launch.get("backend") != backend:
        raise fail(
            where,
            f"the interrupted run used backend {launch.get('backend')!r}, not {backend!r}",
            f"pass --backend {launch.get('backend')}, {start_over}",
        )
    for role, table in (("social", social), ("ecommerce", ecommerce)):
        if launch.get("tables", {}).get(role) != table_digest(table):
            raise fail(
                where,
                f"the {role} table differs from the interrupted run's",
                f"pass the same {role} table and columns, {start_over}",
            )
    current, sha = settings_fingerprint(settings.to_run_config())
    if manifest.get("settings_sha256") != sha:
        diff = settings_differences(manifest.get("settings", {}), current)
        raise fail(
            where,
            "the settings differ from the interrupted run's (" + "; ".join(diff) + ")",
            f"pass the interrupted run's options, {start_over}",
        )
    return int(manifest.get("epoch", 0))


def _aligned_rows(
    alignment: AlignedRows | FederatedRun | str | None,
    social: PartyTable,
    ecommerce: PartyTable,
    settings: FederationSettings,
) -> AlignedRows | None:
    """``run_federated(alignment=...)`` as checked rows (``None``: run the PSI)."""
    if alignment is None:
        return None
    if isinstance(alignment, str):
        check_choice("run_federated", "alignment", alignment, ("clear",))
        return AlignedRows.in_the_clear(social, ecommerce, settings.normalization)
    rows = alignment if isinstance(alignment, AlignedRows) else AlignedRows.of(alignment)
    return rows.check_against(social, ecommerce, settings.normalization)
