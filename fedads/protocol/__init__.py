"""The split-learning protocol: message contracts, parties, coordinator, in-process transport.

See ``docs/protocol.md`` for the message table, the exact and efficient modes, staleness, byte
accounting and compression.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fedads.protocol.codec import COMPRESSIONS, pack, unpack
    from fedads.protocol.config import MODES, ProtocolConfig
    from fedads.protocol.coordinator import Coordinator
    from fedads.protocol.envelope import Envelope, decode, encode
    from fedads.protocol.inprocess import InProcessTransport
    from fedads.protocol.messages import ECOMMERCE, KINDS, MESSAGES, SOCIAL, check_envelope
    from fedads.protocol.parties import EcommerceParty, PartyConfig, SocialParty
    from fedads.protocol.transport import COORDINATOR, Party, Traffic, Transport

#: Where each public name lives. Imported on first use (PEP 562): the message table, envelopes,
#: transports and sealing need no torch, and a deployment's per-message ``flwr-clientapp``
#: process that only forwards to its party process must not pay torch's import (seconds).
_EXPORTS = {
    **dict.fromkeys(("COMPRESSIONS", "pack", "unpack"), "codec"),
    **dict.fromkeys(("MODES", "ProtocolConfig"), "config"),
    "Coordinator": "coordinator",
    **dict.fromkeys(("Envelope", "decode", "encode"), "envelope"),
    "InProcessTransport": "inprocess",
    **dict.fromkeys(("ECOMMERCE", "KINDS", "MESSAGES", "SOCIAL", "check_envelope"), "messages"),
    **dict.fromkeys(("EcommerceParty", "PartyConfig", "SocialParty"), "parties"),
    **dict.fromkeys(("COORDINATOR", "Party", "Traffic", "Transport"), "transport"),
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'fedads.protocol' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"fedads.protocol.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})


__all__ = [
    "COMPRESSIONS",
    "COORDINATOR",
    "ECOMMERCE",
    "KINDS",
    "MESSAGES",
    "MODES",
    "SOCIAL",
    "Coordinator",
    "EcommerceParty",
    "Envelope",
    "InProcessTransport",
    "Party",
    "PartyConfig",
    "ProtocolConfig",
    "SocialParty",
    "Traffic",
    "Transport",
    "check_envelope",
    "decode",
    "encode",
    "pack",
    "unpack",
]
