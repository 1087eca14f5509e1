"""The one message type that crosses between roles, and its byte codec.

A shared module (like ``fedads.errors``): the alignment layer (``fedads.align``) and the
protocol layer (``fedads.protocol``) both speak envelopes, and data flows one way
(align -> protocol), so the envelope lives below both. ``fedads.protocol.envelope`` re-exports it.

An :class:`Envelope` carries a ``kind`` (what to do), named numpy arrays (row positions,
embeddings, gradients, blinded PSI values) and a few scalars. Nothing else crosses: no
DataFrame, no pickled object, no label column. The codec below is the wire format of the
in-process transport; the Flower transport maps the same fields onto an ``ArrayRecord`` and a
``ConfigRecord``. ``payload_nbytes`` is how both count bytes, so their accounting agrees.
"""

from __future__ import annotations

import io
import json
import struct
from dataclasses import dataclass, field

import numpy as np

from fedads.errors import ProtocolError

Scalar = int | float | str | bool

COORDINATOR = "coordinator"
"""The name of the role that relays envelopes between the parties (sender or receiver)."""

_HEADER = struct.Struct("<I")  # length of the JSON header in bytes


@dataclass(frozen=True)
class Envelope:
    """A protocol message.

    Attributes:
        kind: message type, e.g. ``"forward"``; see ``fedads.protocol.messages``.
        arrays: named arrays, each a plain numeric numpy array (no object dtype).
        meta: small scalars (sizes, step counts, losses, flags).
    """

    kind: str
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    meta: dict[str, Scalar] = field(default_factory=dict)

    def payload_nbytes(self) -> int:
        """Bytes of array data this envelope carries (the quantity the byte accounting reports)."""
        return int(sum(a.nbytes for a in self.arrays.values()))


def encode(envelope: Envelope) -> bytes:
    """Serialize an envelope to bytes: a JSON header, then each array's raw buffer."""
    specs = []
    buffers = []
    for name, array in envelope.arrays.items():
        array = np.ascontiguousarray(array)
        if array.dtype == object:
            raise ProtocolError(
                f"envelope {envelope.kind!r}: array {name!r} has object dtype; "
                "only numeric arrays may cross"
            )
        specs.append({"name": name, "dtype": array.dtype.str, "shape": list(array.shape)})
        buffers.append(array.tobytes())
    header = json.dumps({"kind": envelope.kind, "meta": envelope.meta, "arrays": specs}).encode()
    out = io.BytesIO()
    out.write(_HEADER.pack(len(header)))
    out.write(header)
    for buffer in buffers:
        out.write(buffer)
    return out.getvalue()


def decode(data: bytes) -> Envelope:
    """Inverse of :func:`encode`."""
    (header_len,) = _HEADER.unpack_from(data, 0)
    offset = _HEADER.size
    header = json.loads(data[offset : offset + header_len])
    offset += header_len
    arrays: dict[str, np.ndarray] = {}
    for spec in header["arrays"]:
        dtype = np.dtype(spec["dtype"])
        count = int(np.prod(spec["shape"], dtype=np.int64))
        array = np.frombuffer(data, dtype=dtype, count=count, offset=offset).reshape(spec["shape"])
        arrays[spec["name"]] = array.copy()
        offset += count * dtype.itemsize
    return Envelope(kind=header["kind"], arrays=arrays, meta=header["meta"])
