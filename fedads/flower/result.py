"""What a federation run hands back to the Python caller, and its on-disk form (``out-dir``).

A job returns a flat ``dict`` of numpy arrays and scalars (int, float, str, bool). The ServerApp
wraps it in a :class:`FederationResult` together with the transport's traffic accounting. In the
simulation engine the ServerApp runs in the caller's process and hands the object over directly;
with ``flwr run`` (deployment engine) it runs in a ``flwr-serverapp`` process, so it writes the
result to run config ``out-dir``:

* ``result.npz``: the job's arrays;
* ``result.json``: ``{"status": "ok", "scalars": ..., "arrays": [...], "traffic": ..., ...}``
  or ``{"status": "error", "error_type": ..., "party": ..., "detail": ..., "message": ...}``;
  ``result.json`` is written last (atomically), so its presence means the run finished.

:func:`read_result` turns an error record back into the exception (``PartyError`` naming the
party, ``ProtocolError``, or ``ProtocolError`` wrapping any other job exception).
"""

from __future__ import annotations

import json
import os
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from fedads.errors import InputError, PartyError, ProtocolError
from fedads.protocol.envelope import Scalar

RESULT_JSON = "result.json"
RESULT_NPZ = "result.npz"


@dataclass
class FederationResult:
    """The job's result plus the run's bookkeeping.

    Attributes:
        values: what the job returned (arrays and scalars).
        traffic: array bytes per link, ``{"coordinator->social": n, ...}``.
        messages: envelopes counted by the transport (both directions).
        party_nodes: ``{party: Flower node id}``.
        party_stats: per party, from its ClientApp at close: ``messages``, ``restores`` (cache
            misses that rebuilt the party from its checkpoint), ``cache_hits``, seconds spent in
            ``handle_s`` / ``checkpoint_s`` / ``restore_s``.
        elapsed_s: wall time of the ServerApp (role discovery + job + close).
        discovery_s: of which role discovery (waiting for the engine's workers / SuperNodes).
    """

    values: dict[str, np.ndarray | Scalar]
    traffic: dict[str, int] = field(default_factory=dict)
    messages: int = 0
    party_nodes: dict[str, int] = field(default_factory=dict)
    party_stats: dict[str, dict[str, Any]] = field(default_factory=dict)
    elapsed_s: float = 0.0
    discovery_s: float = 0.0

    def __getitem__(self, key: str) -> np.ndarray | Scalar:
        return self.values[key]

    def traffic_bytes(self) -> int:
        return int(sum(self.traffic.values()))


def check_job_result(values: object) -> dict[str, np.ndarray | Scalar]:
    """The job's return value as a flat ``{str: ndarray | scalar}`` (lists become arrays)."""
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise ProtocolError(
            f"the job returned {type(values).__name__}; return a dict of arrays and scalars"
        )
    out: dict[str, np.ndarray | Scalar] = {}
    for key, value in values.items():
        if not isinstance(key, str):
            raise ProtocolError(f"job result key {key!r} is not a str")
        if isinstance(value, np.generic):
            value = value.item()
        if isinstance(value, bool | int | float | str):
            out[key] = value
            continue
        array = np.asarray(value) if isinstance(value, list | tuple | np.ndarray) else None
        if array is None or array.dtype == object:
            raise ProtocolError(
                f"job result {key!r}: {type(value).__name__} cannot be returned; use a numeric "
                "numpy array or an int/float/str/bool"
            )
        out[key] = array
    return out


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def write_result(out_dir: str | Path, result: FederationResult) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    arrays = {k: v for k, v in result.values.items() if isinstance(v, np.ndarray)}
    scalars = {k: v for k, v in result.values.items() if not isinstance(v, np.ndarray)}
    tmp_npz = out / f".{RESULT_NPZ}.{os.getpid()}.tmp.npz"
    np.savez(tmp_npz, **arrays)
    os.replace(tmp_npz, out / RESULT_NPZ)
    record = {
        "status": "ok",
        "scalars": scalars,
        "arrays": sorted(arrays),
        "traffic": result.traffic,
        "messages": result.messages,
        "party_nodes": {k: str(v) for k, v in result.party_nodes.items()},
        "party_stats": result.party_stats,
        "elapsed_s": result.elapsed_s,
        "discovery_s": result.discovery_s,
    }
    _atomic_write(out / RESULT_JSON, json.dumps(record, indent=2))


def write_error(out_dir: str | Path, exc: BaseException) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    record = {
        "status": "error",
        "error_type": type(exc).__name__,
        "party": getattr(exc, "party", None),
        "detail": getattr(exc, "detail", None),
        "message": str(exc),
        "traceback": "".join(traceback.format_exception(exc)[-8:]),
    }
    _atomic_write(out / RESULT_JSON, json.dumps(record, indent=2))


def read_result(out_dir: str | Path) -> FederationResult:
    """Read what the ServerApp wrote to ``out_dir``; re-raise a recorded failure."""
    out = Path(out_dir)
    path = out / RESULT_JSON
    if not path.exists():
        raise ProtocolError(
            f"{path} does not exist: the ServerApp did not finish (see the run's log)"
        )
    record = json.loads(path.read_text())
    if record.get("status") != "ok":
        error_type = record.get("error_type")
        if error_type == "PartyError" and record.get("party"):
            raise PartyError(record["party"], record.get("detail") or record.get("message", ""))
        if error_type == "InputError":
            raise InputError(record.get("message", ""))
        if error_type == "ProtocolError":
            raise ProtocolError(record.get("message", ""))
        raise ProtocolError(
            f"the job failed with {error_type}: {record.get('message')}\n"
            f"{record.get('traceback', '')}"
        )
    values: dict[str, np.ndarray | Scalar] = dict(record.get("scalars", {}))
    if record.get("arrays"):
        with np.load(out / RESULT_NPZ, allow_pickle=False) as data:
            values.update({k: data[k] for k in data.files})
    return FederationResult(
        values=values,
        traffic={k: int(v) for k, v in record.get("traffic", {}).items()},
        messages=int(record.get("messages", 0)),
        party_nodes={k: int(v) for k, v in record.get("party_nodes", {}).items()},
        party_stats=record.get("party_stats", {}),
        elapsed_s=float(record.get("elapsed_s", 0.0)),
        discovery_s=float(record.get("discovery_s", 0.0)),
    )
