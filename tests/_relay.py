"""A relay that can read and rewrite what it carries: the untrusted coordinator seat in tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from fedads.federation import FederationSettings, party_runtime
from fedads.protocol import InProcessTransport, ProtocolConfig
from fedads.protocol.envelope import Envelope
from fedads.protocol.sealing import SealingKeys, fresh_keys
from fedads.world import generate_world

Tamper = Callable[[str, Envelope], Envelope | None]


class RelayTransport(InProcessTransport):
    """In-process transport whose relay may replace any request before the party sees it.

    ``tamper(receiver, envelope)`` returns a replacement or ``None`` (forward unchanged);
    ``seen`` records every (sender, receiver, envelope) the relay saw, replies included.
    """

    def __init__(self, parties, tamper: Tamper | None = None, **kwargs) -> None:
        self.seen: list[tuple[str, str, Envelope]] = []
        super().__init__(parties, capture=self._record, **kwargs)
        self.tamper = tamper

    def _record(self, sender: str, receiver: str, data: bytes, envelope: Envelope) -> None:
        self.seen.append((sender, receiver, envelope))

    def _outgoing(self, party: str, envelope: Envelope) -> bytes:
        if self.tamper is not None:
            replaced = self.tamper(party, envelope)
            if replaced is not None:
                envelope = replaced
        return super()._outgoing(party, envelope)


def small_setup(
    tmp_path: Path,
    *,
    n_users: int = 700,
    keys: dict[str, SealingKeys | None] | None = None,
    tamper: Tamper | None = None,
    min_query_rows: int = 256,
    seed: int = 5,
) -> tuple[RelayTransport, dict, FederationSettings]:
    """Two sealed runtimes over a small synthetic world behind a :class:`RelayTransport`."""
    world = generate_world(n_users=n_users, seed=seed)
    social, ecommerce = world.party_tables()
    settings = FederationSettings(
        protocol=ProtocolConfig(mode="efficient", batch_size=128, chunk_batches=2, epochs=1),
        min_query_rows=min_query_rows,
        verbose=False,
    )
    keys = fresh_keys() if keys is None else keys
    tables = {"social": social, "ecommerce": ecommerce}
    runtimes = {
        role: party_runtime(tables[role], settings, tmp_path / role, keys[role]) for role in tables
    }
    return RelayTransport(runtimes, tamper), runtimes, settings
