"""Append-only record files in a party's private output folder.

A party that is rebuilt between messages (a Flower ClientApp restored from a checkpoint) cannot
keep a growing list in memory, and putting it in the checkpoint would copy it at every message.
So the per-row outputs of the privacy instruments are appended to a file as they are produced: a
raw array of a numpy structured dtype, plus a JSON sidecar with that dtype. :meth:`RecordFile.reset`
(on ``setup``) starts a new file. A message handled twice (a retry) appends twice; readers
de-duplicate (see :func:`fedads.privacy.leakage.attack_table`).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


class RecordFile:
    """Records of one structured dtype, on disk (``path`` given) or in memory (``path=None``).

    Args:
        path: the data file; its dtype goes to ``<path>.json``.
    """

    def __init__(self, path: str | Path | None) -> None:
        self.path = Path(path) if path is not None else None
        self._memory: list[np.ndarray] = []

    def reset(self, dtype: np.dtype) -> None:
        """Start empty, for records of ``dtype``."""
        self._memory = []
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.path.write_bytes(b"")
            sidecar = self.path.with_suffix(self.path.suffix + ".json")
            sidecar.write_text(json.dumps({"descr": _descr(np.dtype(dtype))}))

    def append(self, records: np.ndarray) -> None:
        """Add records (a structured array of the reset dtype)."""
        if self.path is None:
            self._memory.append(records.copy())
            return
        with open(self.path, "ab") as handle:
            records.tofile(handle)

    def read(self) -> np.ndarray | None:
        """All records so far (``None``: never reset)."""
        if self.path is None:
            return np.concatenate(self._memory) if self._memory else None
        return read_records(self.path)


def read_records(path: str | Path) -> np.ndarray | None:
    """The records of a :class:`RecordFile` at ``path`` (``None`` if it does not exist)."""
    path = Path(path)
    sidecar = path.with_suffix(path.suffix + ".json")
    if not path.exists() or not sidecar.exists():
        return None
    descr = json.loads(sidecar.read_text())["descr"]
    dtype = np.dtype([(name, kind, tuple(shape)) for name, kind, shape in descr])
    return np.fromfile(path, dtype=dtype)


def _descr(dtype: np.dtype) -> list[list]:
    assert dtype.names is not None
    out = []
    for name in dtype.names:
        field = dtype.fields[name][0]  # type: ignore[index]
        base = field.subdtype[0] if field.subdtype else field
        shape = list(field.shape)
        out.append([name, base.str, shape])
    return out
