"""The in-process transport: parties are local objects, messages still use the wire format.

Every envelope is serialized with :func:`fedads.protocol.envelope.encode` and deserialized with
:func:`~fedads.protocol.envelope.decode` in both directions, so a party never receives an object
the Flower transport could not carry, and byte accounting is the same
(:meth:`Traffic.record` counts array payload bytes). An optional ``capture`` callback sees every
serialized message (for privacy tests), and every envelope is checked against the message table of
``fedads.protocol.messages``.

Errors: an exception inside a party, a reply that breaks the message table, or no answer within
``timeout_s`` seconds raises :class:`fedads.errors.PartyError` naming the party. After a timeout the
party is marked broken (its worker thread may still be running; Python cannot stop it) and every
later message to it fails at once.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
import time
from collections.abc import Callable, Mapping

from fedads.errors import PartyError, ProtocolError
from fedads.protocol.envelope import Envelope, decode, encode
from fedads.protocol.messages import MESSAGES, check_envelope
from fedads.protocol.transport import COORDINATOR, Party, Traffic

Capture = Callable[[str, str, bytes, Envelope], None]
"""``capture(sender, receiver, data, envelope)``: serialized bytes and their decoded envelope."""


class InProcessTransport:
    """A :class:`~fedads.protocol.transport.Transport` over party objects in this process.

    Args:
        parties: ``{name: party}``; names are how the coordinator addresses them.
        timeout_s: seconds a party may take per message (``None``: wait forever). The coordinator
            sets it from ``ProtocolConfig.timeout_s`` when that is given.
        capture: optional callback receiving every message (see :data:`Capture`).
        check_messages: check every envelope of a split-learning kind against
            ``fedads.protocol.messages`` (default True); other kinds (PSI) pass unchecked.
    """

    def __init__(
        self,
        parties: Mapping[str, Party],
        *,
        timeout_s: float | None = None,
        capture: Capture | None = None,
        check_messages: bool = True,
    ) -> None:
        if not parties:
            raise ValueError("InProcessTransport needs at least one party")
        self.parties = dict(parties)
        self.timeout_s = timeout_s
        self.capture = capture
        self.check_messages = check_messages
        self.traffic = Traffic()
        self._pool: cf.ThreadPoolExecutor | None = None
        self._pool_lock = threading.Lock()
        self._broken: dict[str, str] = {}

    # ------------------------------------------------------------------ Transport
    def send(self, party: str, envelope: Envelope) -> Envelope:
        """Send ``envelope`` to ``party``; return its reply (``PartyError`` on failure/timeout)."""
        data = self._outgoing(party, envelope)
        if self.timeout_s is None:
            return self._incoming(party, self._call(party, data))
        future = self._executor().submit(self._call, party, data)
        return self._incoming(party, self._wait(party, future))

    def send_all(self, envelopes: Mapping[str, Envelope]) -> dict[str, Envelope]:
        """Send to several parties concurrently (one worker thread each); wait for all replies.

        If several fail, the first in the given order is raised, once all finished or timed out.
        """
        if len(envelopes) == 1:
            ((party, envelope),) = envelopes.items()
            return {party: self.send(party, envelope)}
        outgoing = {party: self._outgoing(party, envelope) for party, envelope in envelopes.items()}
        futures = {
            party: self._executor().submit(self._call, party, data)
            for party, data in outgoing.items()
        }
        results: dict[str, bytes] = {}
        errors: list[PartyError] = []
        deadline = None if self.timeout_s is None else time.monotonic() + self.timeout_s
        for party, future in futures.items():
            try:
                results[party] = self._wait(party, future, deadline)
            except PartyError as error:
                errors.append(error)
        if errors:
            raise errors[0]
        return {party: self._incoming(party, data) for party, data in results.items()}

    def close(self) -> None:
        """Stop the worker threads (does not wait for a party that timed out)."""
        with self._pool_lock:
            if self._pool is not None:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None

    def __enter__(self) -> InProcessTransport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ internals
    def _executor(self) -> cf.ThreadPoolExecutor:
        with self._pool_lock:
            if self._pool is None:
                self._pool = cf.ThreadPoolExecutor(
                    max_workers=max(2, len(self.parties)), thread_name_prefix="fedads-party"
                )
            return self._pool

    def _outgoing(self, party: str, envelope: Envelope) -> bytes:
        """Validate, serialize, record and capture a request (coordinator -> party)."""
        if party not in self.parties:
            raise PartyError(party, f"unknown party; this transport knows {sorted(self.parties)}")
        if party in self._broken:
            raise PartyError(party, f"unusable after an earlier failure ({self._broken[party]})")
        if self.check_messages:
            problem = check_envelope(envelope, party, reply=False)
            if problem:
                raise ProtocolError(f"coordinator -> {party}: {problem}")
        data = encode(envelope)
        self.traffic.record(COORDINATOR, party, envelope)
        if self.capture is not None:
            self.capture(COORDINATOR, party, data, envelope)
        return data

    def _call(self, party: str, data: bytes) -> bytes:
        """Run in the caller's or a worker thread: decode, handle, encode the reply."""
        try:
            request = decode(data)
            reply = self.parties[party].handle(request)
            if not isinstance(reply, Envelope):
                raise ProtocolError(f"handle() returned {type(reply).__name__}, not an Envelope")
            if self.check_messages:
                problem = check_envelope(reply, party, reply=True)
                if problem:
                    raise ProtocolError(f"{party} -> coordinator: {problem}")
                if request.kind in MESSAGES and reply.kind != request.kind:
                    raise ProtocolError(f"answered {request.kind!r} with {reply.kind!r}")
            return encode(reply)
        except PartyError:
            raise
        except Exception as error:  # any failure inside a party is that party's
            raise PartyError(party, f"{type(error).__name__}: {error}") from error

    def _wait(self, party: str, future: cf.Future[bytes], deadline: float | None = None) -> bytes:
        """The reply, waiting until ``deadline`` (monotonic clock) or ``timeout_s`` from now."""
        if deadline is None and self.timeout_s is not None:
            deadline = time.monotonic() + self.timeout_s
        try:
            return future.result(
                timeout=None if deadline is None else max(0.0, deadline - time.monotonic())
            )
        except cf.TimeoutError:
            detail = f"did not answer within {self.timeout_s:g} s"
            self._broken[party] = detail
            raise PartyError(party, detail) from None

    def _incoming(self, party: str, data: bytes) -> Envelope:
        """Decode, record and capture a reply (party -> coordinator)."""
        reply = decode(data)
        self.traffic.record(party, COORDINATOR, reply)
        if self.capture is not None:
            self.capture(party, COORDINATOR, data, reply)
        return reply
