"""Resuming an interrupted federated run from its last completed epoch.

Who keeps what. Nothing new crosses between the parties or to the coordinator: the parties get
one more ``checkpoint`` action each way (no arrays, the epoch number in meta; reply: the step),
and each keeps its own state in its own private folder.

* **Each party** (:class:`~fedads.protocol.runtime.PartyRuntime`), on ``checkpoint`` ``save``
  after every completed epoch: its training state (``get_state``: setup, encoder, parameters,
  optimizer state, step, the early-stopping copy), torch's RNG state, its aligned rows, a digest
  of its own table, and copies of its privacy record files, in
  ``<private folder>/resume/epoch-NNNN/`` (:data:`PARTY_RESUME_DIR`; the last two epochs are
  kept, so a crash between the two parties' saves or before the coordinator's manifest leaves
  the manifest's epoch on disk). On ``checkpoint`` ``load`` it restores them after checking
  that its table, its aligned rows and the setup are the saved ones.
* **The coordinator** (:class:`RunCheckpoints`), in its folder: ``manifest.json``: the settings
  (the flat run config both sides already get, and its SHA-256), the alignment sizes, the last
  completed epoch, its training history so far (losses, seconds, bytes it already saw) and its
  early-stopping bookkeeping; plus the relay's label-attack records (its own observations).

On resume the coordinator skips the PSI (each party reuses the aligned rows in its private
folder), sets both parties up as usual (same seeded models, same encoders), sends ``checkpoint``
``load`` for the manifest's epoch ``k``, checks that both parties are at the step of ``k``
epochs, and trains epochs ``k+1 ..``: the batch order is the seeded plan of the whole run, so
the resumed run's scores are those of an uninterrupted run, bit for bit (tested).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fedads.errors import ProtocolError
from fedads.models.train import TrainingHistory
from fedads.privacy.observe import ATTACK_DTYPE, ATTACK_SCORES_FILE, RECEIVED_EMBEDDINGS_FILE

MANIFEST_FILE = "manifest.json"
"""The coordinator's run manifest, in its resume folder."""
MANIFEST_VERSION = 1
RELAY_RECORDS_FILE = "relay_attack_scores.npy"
"""The relay's label-attack records up to the manifest's epoch (structured ``ATTACK_DTYPE``)."""
PARTY_RESUME_DIR = "resume"
"""A party's resume checkpoints: ``<its private folder>/resume/epoch-NNNN/``."""
PARTY_STATE_FILE = "state.npz"
RECORD_FILES: tuple[str, ...] = (ATTACK_SCORES_FILE, RECEIVED_EMBEDDINGS_FILE)
"""A party's append-only privacy record files (``fedads.privacy.records``): a ``setup`` starts
them anew, so each epoch checkpoint carries a copy (with its ``.json`` sidecar)."""
VOLATILE_SETTINGS: frozenset[str] = frozenset({"timeout-s", "verbose"})
"""Run-config keys a resumed run may change: they do not change what is trained."""
KEEP_EPOCHS = 2

_EPOCH_KEY = "runtime.epoch"
_ROWS_KEY = "runtime.aligned_rows"
_DIGEST_KEY = "runtime.table_digest"
_RNG_KEY = "runtime.torch_rng"
_PARTY_PREFIX = "party."


# ------------------------------------------------------------------ fingerprints
def settings_fingerprint(run_config: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
    """The settings that decide what is trained, and their SHA-256 (hex).

    ``run_config``: the flat settings (``FederationSettings.to_run_config()``); the keys of
    :data:`VOLATILE_SETTINGS` are left out.
    """
    flat = {str(k): v for k, v in sorted(run_config.items()) if k not in VOLATILE_SETTINGS}
    text = json.dumps(flat, sort_keys=True, default=str)
    return flat, hashlib.sha256(text.encode()).hexdigest()


def settings_differences(saved: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
    """``key: saved -> current`` for every setting that differs (both as flat run configs)."""
    out = []
    for key in sorted(set(saved) | set(current)):
        if key in VOLATILE_SETTINGS:
            continue
        old, new = saved.get(key, "<unset>"), current.get(key, "<unset>")
        if _canonical(old) != _canonical(new):
            out.append(f"{key}: {old!r} -> {new!r}")
    return out


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def table_digest(table: Any) -> str:
    """SHA-256 (hex) of a :class:`~fedads.tables.PartyTable`: its role, its column roles and
    every value of its frame, in row order (a re-ordered or edited table differs)."""
    import pandas as pd

    roles = {
        "party": table.party,
        "key": table.key,
        "numeric": list(table.numeric_columns),
        "categorical": list(table.categorical_columns),
        "label": table.label_column,
        "existing": table.existing_column,
        "columns": [str(c) for c in table.frame.columns],
        "rows": int(table.n_rows),
    }
    digest = hashlib.sha256(json.dumps(roles, sort_keys=True).encode())
    digest.update(pd.util.hash_pandas_object(table.frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


# ------------------------------------------------------------------ coordinator side
@dataclass
class CoordinatorCheckpoint:
    """What the coordinator knows at the end of epoch :attr:`epoch` (1-based count of epochs
    completed; 0: aligned, nothing trained).

    Attributes:
        epoch: epochs completed.
        history: the training history up to that epoch.
        best_loss, best_epoch, waited: early stopping's bookkeeping (best validation loss, its
            1-based epoch, epochs since); unused without early stopping.
        stopped: early stopping ended training at this epoch.
        relay_records: the relay's label-attack records so far (``ATTACK_DTYPE``), or None.
    """

    epoch: int
    history: TrainingHistory
    best_loss: float = math.inf
    best_epoch: int = 0
    waited: int = 0
    stopped: bool = False
    relay_records: np.ndarray | None = field(default=None, repr=False)

    def to_json(self) -> dict[str, Any]:
        h = self.history
        return {
            "epoch": self.epoch,
            "best_loss": None if not math.isfinite(self.best_loss) else self.best_loss,
            "best_epoch": self.best_epoch,
            "waited": self.waited,
            "stopped": self.stopped,
            "history": {
                "mode": h.mode,
                "batch_losses": h.batch_losses,
                "batch_rows": h.batch_rows,
                "epoch_losses": h.epoch_losses,
                "epoch_seconds": h.epoch_seconds,
                "valid_losses": h.valid_losses,
                "bytes_by_epoch": h.bytes_by_epoch,
                "setup_bytes": h.setup_bytes,
            },
        }

    @classmethod
    def from_json(
        cls, doc: Mapping[str, Any], relay_records: np.ndarray | None = None
    ) -> CoordinatorCheckpoint:
        h = doc["history"]
        history = TrainingHistory(
            mode=str(h["mode"]),
            batch_losses=[float(x) for x in h["batch_losses"]],
            batch_rows=[int(x) for x in h["batch_rows"]],
            epoch_losses=[float(x) for x in h["epoch_losses"]],
            epoch_seconds=[float(x) for x in h["epoch_seconds"]],
            valid_losses=[float(x) for x in h["valid_losses"]],
            bytes_by_epoch=[{str(k): int(v) for k, v in e.items()} for e in h["bytes_by_epoch"]],
            setup_bytes={str(k): int(v) for k, v in h["setup_bytes"].items()},
        )
        best = doc.get("best_loss")
        return cls(
            epoch=int(doc["epoch"]),
            history=history,
            best_loss=math.inf if best is None else float(best),
            best_epoch=int(doc.get("best_epoch", 0)),
            waited=int(doc.get("waited", 0)),
            stopped=bool(doc.get("stopped", False)),
            relay_records=relay_records,
        )


class RunCheckpoints:
    """The coordinator's side of resumable runs: its manifest in ``folder``.

    Args:
        folder: the coordinator's resume folder (created on the first write).
        run_config: the flat settings of this run (what both parties were given).
        resume: continue the run whose manifest is in ``folder`` (:meth:`resume_point`); else
            start a new one (:meth:`start` overwrites any earlier manifest).
    """

    def __init__(self, folder: str | Path, run_config: Mapping[str, Any], resume: bool) -> None:
        self.folder = Path(folder)
        self.settings, self.settings_sha256 = settings_fingerprint(run_config)
        self.resume = bool(resume)
        self.alignment: dict[str, int] = {}
        self._point: CoordinatorCheckpoint | None = None

    @property
    def manifest_path(self) -> Path:
        return self.folder / MANIFEST_FILE

    # -- reading
    def read(self) -> dict[str, Any]:
        """The manifest as written (raises ProtocolError if absent, unreadable or of other
        settings than this run's)."""
        doc = read_manifest(self.folder)
        if doc is None:
            raise ProtocolError(
                f"nothing to resume: no {MANIFEST_FILE} in {str(self.folder)!r} (the run never "
                "finished its alignment, or it completed); start the run without resume"
            )
        if doc.get("settings_sha256") != self.settings_sha256:
            diff = settings_differences(doc.get("settings", {}), self.settings)
            raise ProtocolError(
                "refusing to resume: the settings differ from the interrupted run's ("
                + ("; ".join(diff) or "fingerprint differs")
                + "); resume with the interrupted run's settings, or start a new run"
            )
        return doc

    def resume_point(self) -> CoordinatorCheckpoint:
        """The checkpoint to continue from (reads the manifest and the relay records once)."""
        if self._point is None:
            doc = self.read()
            self.alignment = {k: int(v) for k, v in doc["alignment"].items()}
            relay = None
            path = self.folder / RELAY_RECORDS_FILE
            if int(doc["epoch"]) > 0 and path.exists():
                relay = np.load(path, allow_pickle=False)
                if relay.dtype != ATTACK_DTYPE:
                    relay = None
            self._point = CoordinatorCheckpoint.from_json(doc, relay)
        return self._point

    def check_alignment(self, alignment: Mapping[str, int]) -> None:
        """On resume: the reused alignment must have the manifest's sizes."""
        self.resume_point()
        got = {k: int(v) for k, v in alignment.items()}
        if got != self.alignment:
            raise ProtocolError(
                f"refusing to resume: the parties' aligned rows ({got}) are not the interrupted "
                f"run's ({self.alignment}); start a new run"
            )

    # -- writing
    def start(self, alignment: Mapping[str, int], mode: str) -> None:
        """A new run, aligned: write the manifest at epoch 0."""
        self.alignment = {k: int(v) for k, v in alignment.items()}
        self.save(CoordinatorCheckpoint(0, TrainingHistory(mode=mode)))

    def save(self, point: CoordinatorCheckpoint) -> None:
        """Write the manifest of ``point`` (atomically; the relay records first)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        if point.relay_records is not None:
            _atomic_npy(self.folder / RELAY_RECORDS_FILE, point.relay_records)
        doc = {
            "version": MANIFEST_VERSION,
            "settings_sha256": self.settings_sha256,
            "settings": self.settings,
            "alignment": self.alignment,
            **point.to_json(),
        }
        _atomic_text(self.manifest_path, json.dumps(doc, indent=1, sort_keys=True))


def read_manifest(folder: str | Path) -> dict[str, Any] | None:
    """The manifest in ``folder`` (``None`` if there is none).

    Raises:
        ProtocolError: it exists but cannot be read or is of another version.
    """
    path = Path(folder) / MANIFEST_FILE
    if not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ProtocolError(f"cannot read the run manifest {str(path)!r}: {exc}") from None
    if not isinstance(doc, dict) or doc.get("version") != MANIFEST_VERSION:
        raise ProtocolError(
            f"{str(path)!r} is not a fedads run manifest of version {MANIFEST_VERSION}"
        )
    return doc


# ------------------------------------------------------------------ party side
def save_party_epoch(
    out_dir: Path,
    epoch: int,
    party_state: Mapping[str, np.ndarray],
    aligned_rows: np.ndarray,
    digest: str,
) -> None:
    """Write one party's checkpoint of ``epoch`` into ``out_dir/resume/epoch-NNNN`` (atomic:
    a folder renamed into place) and drop the checkpoints older than the previous epoch."""
    import torch

    root = Path(out_dir) / PARTY_RESUME_DIR
    root.mkdir(parents=True, exist_ok=True)
    final = root / _epoch_name(epoch)
    staging = root / f".{_epoch_name(epoch)}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    arrays = {_PARTY_PREFIX + k: np.asarray(v) for k, v in party_state.items()}
    arrays[_EPOCH_KEY] = np.array([epoch], dtype=np.int64)
    arrays[_ROWS_KEY] = np.asarray(aligned_rows, dtype=np.int64)
    arrays[_DIGEST_KEY] = np.frombuffer(digest.encode(), dtype=np.uint8).copy()
    # The party's random stream (torch's CPU generator): nothing in training draws from it
    # today (seeded init, seeded defenses), but a model with dropout would.
    arrays[_RNG_KEY] = torch.get_rng_state().numpy().copy()
    np.savez(staging / PARTY_STATE_FILE, **arrays)
    for name in RECORD_FILES:
        for path in (Path(out_dir) / name, Path(out_dir) / f"{name}.json"):
            if path.exists():
                shutil.copyfile(path, staging / path.name)
    if final.exists():
        shutil.rmtree(final)
    os.replace(staging, final)
    for old in root.glob("epoch-*"):
        number = _epoch_number(old.name)
        if number is not None and number < epoch - (KEEP_EPOCHS - 1):
            shutil.rmtree(old, ignore_errors=True)


@dataclass
class PartyEpoch:
    """One party's checkpoint of one epoch, as read back."""

    epoch: int
    party_state: dict[str, np.ndarray]
    aligned_rows: np.ndarray
    digest: str
    rng_state: np.ndarray
    folder: Path

    def restore_records(self, out_dir: Path) -> None:
        """Put the record files of this epoch back into ``out_dir`` (a setup emptied them)."""
        for name in RECORD_FILES:
            for file in (name, f"{name}.json"):
                saved = self.folder / file
                if saved.exists():
                    tmp = Path(out_dir) / f".{file}.tmp"
                    shutil.copyfile(saved, tmp)
                    os.replace(tmp, Path(out_dir) / file)


def load_party_epoch(out_dir: Path, epoch: int, role: str) -> PartyEpoch:
    """Read ``role``'s checkpoint of ``epoch`` from its private ``out_dir``.

    Raises:
        ProtocolError: naming the party, when the checkpoint is missing or unreadable.
    """
    folder = Path(out_dir) / PARTY_RESUME_DIR / _epoch_name(epoch)
    path = folder / PARTY_STATE_FILE
    if not path.is_file():
        raise ProtocolError(
            f"{role} party: no checkpoint of epoch {epoch} in its private folder ({folder}); "
            "its state is lost: start a new run"
        )
    try:
        with np.load(path, allow_pickle=False) as data:
            arrays = {k: data[k] for k in data.files}
    except (OSError, ValueError) as exc:
        raise ProtocolError(f"{role} party: cannot read its checkpoint {path}: {exc}") from None
    return PartyEpoch(
        epoch=int(arrays[_EPOCH_KEY][0]),
        party_state={
            k[len(_PARTY_PREFIX) :]: v for k, v in arrays.items() if k.startswith(_PARTY_PREFIX)
        },
        aligned_rows=np.asarray(arrays[_ROWS_KEY], dtype=np.int64),
        digest=bytes(np.asarray(arrays[_DIGEST_KEY], dtype=np.uint8)).decode(),
        rng_state=np.asarray(arrays[_RNG_KEY], dtype=np.uint8),
        folder=folder,
    )


def _epoch_name(epoch: int) -> str:
    return f"epoch-{int(epoch):04d}"


def _epoch_number(name: str) -> int | None:
    try:
        return int(name.removeprefix("epoch-"))
    except ValueError:
        return None


def _atomic_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _atomic_npy(path: Path, array: np.ndarray) -> None:
    tmp = path.with_name(f".{path.stem}.tmp.npy")
    np.save(tmp, array, allow_pickle=False)
    os.replace(tmp, path)
