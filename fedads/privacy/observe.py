"""The privacy instruments that run inside a party (or the relay) on what it received.

:class:`AttackLog` runs every label attack (:data:`fedads.privacy.attacks.ATTACKS`) on each
gradient message the honest-but-curious social party receives (after decoding, before applying)
and on the same arrays as the coordinator relays them, and keeps the per-row scores with the row's
aligned position and training epoch. :class:`EmbeddingLog` keeps the social embeddings the
e-commerce party receives for scoring (the feature-inference attacker's input). Neither sees a
label: only the harness compares scores with labels (:mod:`fedads.privacy.leakage`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from fedads.privacy.attacks import ATTACKS, run_attacks
from fedads.privacy.records import RecordFile

ATTACK_SCORES_FILE = "label_attack_scores.bin"
"""The social party's private output: one record per received gradient row."""
RECEIVED_EMBEDDINGS_FILE = "received_embeddings.bin"
"""The e-commerce party's private output: the social embeddings it received for scoring."""

ATTACK_DTYPE = np.dtype(
    [("position", "<i8"), ("epoch", "<i4")] + [(name, "<f4") for name in ATTACKS]
)


class AttackLog:
    """Per-row label-attack scores of every received gradient message.

    Args:
        path: append-only record file (a party's private output), or ``None`` for memory.
    """

    def __init__(self, path: str | Path | None = None) -> None:
        self._records = RecordFile(path)
        self.seconds = 0.0  # time spent in the attacks (cost accounting)

    def reset(self) -> None:
        """Forget earlier runs (called on ``setup``)."""
        self._records.reset(ATTACK_DTYPE)
        self.seconds = 0.0

    def observe(
        self, positions: np.ndarray, gradients: np.ndarray, batch_size: int, epoch: int
    ) -> None:
        """Score one message: ``positions`` int64 ``[m]``, ``gradients`` float ``[m, d]``."""
        import time

        start = time.perf_counter()
        scores = run_attacks(gradients, batch_size)
        records = np.empty(len(positions), dtype=ATTACK_DTYPE)
        records["position"] = positions
        records["epoch"] = epoch
        for name, values in scores.items():
            records[name] = values
        self._records.append(records)
        self.seconds += time.perf_counter() - start

    def extend(self, records: np.ndarray) -> None:
        """Add earlier records (``ATTACK_DTYPE``), e.g. those of a resumed run's first epochs."""
        self._records.append(np.asarray(records, dtype=ATTACK_DTYPE))

    def read(self) -> np.ndarray | None:
        """All records (structured ``ATTACK_DTYPE``), ``None`` before any setup."""
        return self._records.read()

    def arrays(self, prefix: str) -> dict[str, np.ndarray]:
        """The records as flat named arrays (what a Flower job result can carry)."""
        records = self.read()
        if records is None:
            return {}
        return {
            f"{prefix}{name}": np.ascontiguousarray(records[name]) for name in ATTACK_DTYPE.names
        }


def attack_records_from_arrays(arrays: dict[str, np.ndarray], prefix: str) -> np.ndarray | None:
    """Inverse of :meth:`AttackLog.arrays` (``None`` if absent)."""
    if f"{prefix}position" not in arrays:
        return None
    n = len(arrays[f"{prefix}position"])
    records = np.empty(n, dtype=ATTACK_DTYPE)
    for name in ATTACK_DTYPE.names:
        records[name] = np.asarray(arrays[f"{prefix}{name}"])
    return records


class EmbeddingLog:
    """Social embeddings ``[m, d]`` the e-commerce party received for scoring, with positions."""

    def __init__(self, path: str | Path | None = None) -> None:
        self._records = RecordFile(path)

    def reset(self, dim: int) -> None:
        """Forget earlier runs (called on ``setup`` with the peer embedding width)."""
        self._records.reset(_embedding_dtype(dim))

    def observe(self, positions: np.ndarray, embeddings: np.ndarray) -> None:
        # Never resets here: a party rebuilt between messages appends to the file its setup
        # started.
        records = np.empty(len(positions), dtype=_embedding_dtype(embeddings.shape[1]))
        records["position"] = positions
        records["embedding"] = embeddings
        self._records.append(records)

    def read(self) -> np.ndarray | None:
        return self._records.read()


def _embedding_dtype(dim: int) -> np.dtype:
    return np.dtype([("position", "<i8"), ("embedding", "<f4", (int(dim),))])
