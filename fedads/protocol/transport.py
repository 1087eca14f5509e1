"""Interfaces between the coordinator, the transports and the parties.

The coordinator never touches a party object: it sends :class:`Envelope` s through a
:class:`Transport`. A party never sees the coordinator: it answers envelopes. Two transports
implement the same interface: the in-process one (tests, sweeps) and the Flower one.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np

from fedads.envelope import COORDINATOR, Envelope

__all__ = ["COORDINATOR", "Party", "Traffic", "Transport"]


@runtime_checkable
class Party(Protocol):
    """A role that holds private data and answers envelopes."""

    name: str

    def handle(self, envelope: Envelope) -> Envelope:
        """Answer one envelope (may update the party's models)."""
        ...

    def get_state(self) -> dict[str, np.ndarray]:
        """Everything needed to rebuild the party's mutable state (models, optimizer, alignment)."""
        ...

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore what :meth:`get_state` returned."""
        ...


@dataclass
class Traffic:
    """Bytes of array payload sent, per (sender, receiver) and per message kind."""

    by_link: dict[tuple[str, str], int] = field(default_factory=lambda: defaultdict(int))
    by_kind: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    messages: int = 0

    def record(self, sender: str, receiver: str, envelope: Envelope) -> None:
        size = envelope.payload_nbytes()
        self.by_link[(sender, receiver)] += size
        self.by_kind[envelope.kind] += size
        self.messages += 1

    def total(self) -> int:
        return int(sum(self.by_link.values()))

    def snapshot(self) -> dict[str, int]:
        """Flat dict ``"sender->receiver": bytes`` for reports."""
        return {f"{s}->{r}": int(n) for (s, r), n in sorted(self.by_link.items())}


class Transport(Protocol):
    """How the coordinator reaches the parties."""

    traffic: Traffic

    def send(self, party: str, envelope: Envelope) -> Envelope:
        """Send one envelope to ``party`` and wait for its reply (raises PartyError on failure)."""
        ...

    def send_all(self, envelopes: dict[str, Envelope]) -> dict[str, Envelope]:
        """Send one envelope to each named party (concurrently where possible); wait for all."""
        ...

    def close(self) -> None:
        """Release resources (threads, Flower connections)."""
        ...
