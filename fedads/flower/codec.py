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

from fedads.envelope import Envelope, Scalar  # not fedads.protocol: no torch (forwarder)
from fedads.errors import ProtocolError

ENVELOPE_KEY = "fedads.envelope"
ARRAYS_KEY = "fedads.arrays"
META_KEY = "fedads.meta"


RAW_STYPE = "fedads.raw"
"""``Array.stype`` of our arrays: ``data`` is the C-order buffer itself (``ndarray.tobytes``).

Flower's default (``Array(ndarray)``) writes a ``.npy`` file into a buffer and reads it back with
``np.load``: two extra copies of every embedding and gradient chunk, which profiling showed as
the largest cost of a 4 MB round trip in simulation. Raw bytes need one copy out and none in.
"""


def to_array(array: np.ndarray) -> Array:
    """A numpy array as a Flower ``Array`` of raw C-order bytes (any shape, 0-d included)."""
    return Array(
        dtype=array.dtype.str, shape=tuple(array.shape), stype=RAW_STYPE, data=array.tobytes()
    )


def from_array(array: Array, *, where: str) -> np.ndarray:
    """Inverse of :func:`to_array` (read-only view of the message bytes; ``.npy`` also read)."""
    if array.stype != RAW_STYPE:
        return array.numpy()
    try:
        dtype = np.dtype(array.dtype)
    except TypeError:
        raise ProtocolError(f"{where}: unknown dtype {array.dtype!r}") from None
    if dtype.hasobject:
        raise ProtocolError(f"{where}: dtype {array.dtype!r} holds Python objects")
    shape = tuple(int(n) for n in array.shape)
    if len(array.data) != dtype.itemsize * int(np.prod(shape, dtype=np.int64)):
        raise ProtocolError(
            f"{where}: {len(array.data)} bytes do not hold a {array.dtype} array of shape {shape}"
        )
    return np.frombuffer(array.data, dtype=dtype).reshape(shape)


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
        arrays[name] = to_array(array)
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
        arrays = {
            name: from_array(array, where=f"envelope {kind!r}: array {name!r}")
            for name, array in content.array_records[ARRAYS_KEY].items()
        }
    meta: dict[str, Scalar] = {}
    if META_KEY in content:
        meta = {
            key: to_scalar(value, where=f"envelope {kind!r}: meta {key!r}")
            for key, value in content.config_records[META_KEY].items()
        }
    return Envelope(kind=kind, arrays=arrays, meta=meta)


def state_to_record(state: Mapping[str, np.ndarray]) -> ArrayRecord:
    """A party state (``Party.get_state()``) as an ``ArrayRecord``."""
    return ArrayRecord({name: to_array(np.asarray(a)) for name, a in state.items()})


def record_to_state(record: ArrayRecord) -> dict[str, np.ndarray]:
    """Inverse of :func:`state_to_record`."""
    return {
        name: from_array(array, where=f"party state {name!r}") for name, array in record.items()
    }
