"""Re-export of :mod:`fedads.envelope` (the envelope lives below both align and protocol)."""

from __future__ import annotations

from fedads.envelope import Envelope, Scalar, decode, encode

__all__ = ["Envelope", "Scalar", "decode", "encode"]
