"""Map an :class:`~fedads.protocol.envelope.Envelope` onto a Flower ``RecordDict`` and back.

Layout of a message's content:

* ``"fedads.envelope"``: ``ConfigRecord`` with the envelope ``kind``;
* ``"fedads.arrays"``: ``ArrayRecord``, one ``Array`` (numpy ``.npy`` bytes) per named array;
* ``"fedads.meta"``: ``ConfigRecord`` with the scalar ``meta``.

Only numeric arrays and plain scalars cross; anything else raises ``ProtocolError`` naming the
field, before a byte leaves the process.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from flwr.app import Array, ArrayRecord, ConfigRecord, RecordDict

from fedads.errors import ProtocolError
from fedads.protocol.envelope import Envelope, Scalar

ENVELOPE_KEY = "fedads.envelope"
ARRAYS_KEY = "fedads.arrays"
META_KEY = "fedads.meta"


def _c_order(array: np.ndarray) -> np.ndarray:
    # Not np.ascontiguousarray: it turns a 0-d array into shape (1,).
    return array if array.flags.c_contiguous else array.copy(order="C")


def to_scalar(value: object, *, where: str) -> Scalar:
    """A plain Python scalar from ``value`` (numpy scalars are unwrapped)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bool | int | float | str):
        return value
    raise ProtocolError(
        f"{where}: value {value!r} of type {type(value).__name__} cannot cross; "
        "use int, float, str or bool"
    )


def envelope_to_content(envelope: Envelope) -> RecordDict:
    """The ``RecordDict`` that carries ``envelope`` inside a Flower ``Message``."""
    arrays: dict[str, Array] = {}
    for name, array in envelope.arrays.items():
        array = np.asarray(array)
        if array.dtype == object or not (
            np.issubdtype(array.dtype, np.number) or array.dtype == np.bool_
        ):
            raise ProtocolError(
                f"envelope {envelope.kind!r}: array {name!r} has dtype {array.dtype}; "
                "only numeric or bool arrays may cross"
            )
        arrays[name] = Array(_c_order(array))
    meta = {
        key: to_scalar(value, where=f"envelope {envelope.kind!r}: meta {key!r}")
        for key, value in envelope.meta.items()
    }
    return RecordDict(
        {
            ENVELOPE_KEY: ConfigRecord({"kind": envelope.kind}),
            ARRAYS_KEY: ArrayRecord(arrays),
            META_KEY: ConfigRecord(meta),
        }
    )


def content_to_envelope(content: RecordDict) -> Envelope:
    """Inverse of :func:`envelope_to_content`."""
    if ENVELOPE_KEY not in content:
        raise ProtocolError(
            f"Flower message carries no {ENVELOPE_KEY!r} record (keys: {sorted(content)}); "
            "it was not sent by fedads.flower"
        )
    kind = str(content[ENVELOPE_KEY]["kind"])
    arrays: dict[str, np.ndarray] = {}
    if ARRAYS_KEY in content:
        arrays = {name: array.numpy() for name, array in content.array_records[ARRAYS_KEY].items()}
    meta: dict[str, Scalar] = {}
    if META_KEY in content:
        meta = {
            key: to_scalar(value, where=f"envelope {kind!r}: meta {key!r}")
            for key, value in content.config_records[META_KEY].items()
        }
    return Envelope(kind=kind, arrays=arrays, meta=meta)


def state_to_record(state: Mapping[str, np.ndarray]) -> ArrayRecord:
    """A party state (``Party.get_state()``) as an ``ArrayRecord``."""
    return ArrayRecord({name: Array(_c_order(np.asarray(a))) for name, a in state.items()})


def record_to_state(record: ArrayRecord) -> dict[str, np.ndarray]:
    """Inverse of :func:`state_to_record`."""
    return {name: array.numpy() for name, array in record.items()}
