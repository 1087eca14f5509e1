"""The split-learning protocol: message contracts, parties, coordinator, in-process transport.

See ``docs/protocol.md`` for the message table, the exact and efficient modes, staleness, byte
accounting and compression.
"""

from __future__ import annotations

from fedads.protocol.codec import COMPRESSIONS, pack, unpack
from fedads.protocol.config import MODES, ProtocolConfig
from fedads.protocol.coordinator import Coordinator
from fedads.protocol.envelope import Envelope, decode, encode
from fedads.protocol.inprocess import InProcessTransport
from fedads.protocol.messages import ECOMMERCE, KINDS, MESSAGES, SOCIAL, check_envelope
from fedads.protocol.parties import EcommerceParty, PartyConfig, SocialParty
from fedads.protocol.transport import COORDINATOR, Party, Traffic, Transport

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
