"""The one place exchanged tensors (embeddings, gradients) are compressed and restored.

The sender calls :func:`pack`, the receiver :func:`unpack`; the receiver needs no configuration
(the dtype says what was done). Compressions, per tensor ``x`` (one message's ``[m, d]`` array):

``none``     float32 as is (4 bytes per value).
``float16``  ``s = max|x|``; sends ``float16(x / s)`` and ``s`` (2 bytes per value). Dividing by the
             max-abs first keeps small gradients (``~1e-5`` at batch 4096) out of float16's
             subnormal range, where they would lose most of their precision.
``int8``     ``s = max|x| / 127``; sends ``int8(round(x / s))`` and ``s`` (1 byte per value);
             absolute error at most ``s / 2`` per value.

Scales are float32 ``[1]`` arrays named ``<name>_scale``. A non-finite value refuses to pack
(training diverged), since a scale cannot represent it.
"""

from __future__ import annotations

import numpy as np

from fedads.errors import ProtocolError
from fedads.protocol.messages import SCALE_SUFFIX

COMPRESSIONS = ("none", "float16", "int8")


def pack(name: str, tensor: np.ndarray, compression: str) -> dict[str, np.ndarray]:
    """Arrays to put in an envelope for float32 ``tensor`` ``[m, d]`` under ``compression``."""
    x = np.asarray(tensor, dtype=np.float32)
    if compression == "none":
        return {name: x}
    if compression not in COMPRESSIONS:
        raise ProtocolError(f"unknown compression {compression!r}; use one of {list(COMPRESSIONS)}")
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    if not np.isfinite(peak):
        raise ProtocolError(f"{name} contain non-finite values; training diverged (lower lr)")
    if compression == "float16":
        scale = peak if peak > 0 else 1.0
        packed = (x * np.float32(1.0 / scale)).astype(np.float16)
    else:
        scale = peak / 127.0 if peak > 0 else 1.0
        packed = np.clip(np.rint(x * np.float32(1.0 / scale)), -127, 127).astype(np.int8)
    return {name: packed, name + SCALE_SUFFIX: np.array([scale], dtype=np.float32)}


def unpack(arrays: dict[str, np.ndarray], name: str) -> np.ndarray:
    """The float32 tensor the sender packed under ``name`` (dequantized if compressed)."""
    if name not in arrays:
        raise ProtocolError(f"message lacks array {name!r}")
    packed = arrays[name]
    if packed.dtype == np.float32:
        return packed
    scale_name = name + SCALE_SUFFIX
    if scale_name not in arrays:
        raise ProtocolError(f"compressed {name!r} ({packed.dtype}) arrived without {scale_name!r}")
    out = packed.astype(np.float32)
    out *= arrays[scale_name].astype(np.float32)[0]
    return out
