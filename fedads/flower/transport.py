"""``FlowerTransport``: the coordinator's ``Transport`` over a Flower ``Grid``.

Each envelope becomes one Flower ``Message`` (``message_type="train"``; adapter control
envelopes use ``"query"``) to the party's node; the reply becomes an envelope again. ``send_all``
pushes all messages at once and waits for all replies, so the parties work concurrently.
A party whose reply carries an error, or that does not answer within ``timeout_s``, raises
:class:`~fedads.errors.PartyError` naming it; a party that timed out is never sent another
message (its ClientApp may still be running, and Flower does not cancel it).

What may cross is checked here on both directions, as on the in-process transport: every request
and every reply of a split-learning kind against :func:`fedads.protocol.messages.check_envelope`
(a request that breaks the table raises :class:`~fedads.errors.ProtocolError` before it is sent;
a reply that breaks it raises :class:`~fedads.errors.PartyError` naming the party). The ClientApp
checks the same table on its side, so a forbidden reply never leaves the party's process.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Mapping

from flwr.app import Message
from flwr.serverapp import Grid

from fedads._progress import SILENT, Progress
from fedads.errors import PartyError, ProtocolError
from fedads.flower.client_app import (
    CLOSE,
    CONTROL_MESSAGE_TYPE,
    HELLO,
    PROTOCOL_MESSAGE_TYPE,
)
from fedads.flower.codec import content_to_envelope, envelope_to_content
from fedads.flower.config import DEFAULT_POLL_S, PARTIES
from fedads.flower.engine import WAKEUP_FALLBACK_S, stored_signal
from fedads.flower.security import check_role_proof, new_challenge
from fedads.protocol.envelope import Envelope
from fedads.protocol.messages import MESSAGES, check_envelope
from fedads.protocol.transport import COORDINATOR, Traffic

_REASON_ROLE = re.compile(r"^\[(?P<role>[^\]]+)\] ")


def split_reason(reason: str | None) -> tuple[str | None, str]:
    """``(role, text)`` of an error reason written by the ClientApp (``"[role] text"``)."""
    text = reason or "(no reason given)"
    match = _REASON_ROLE.match(text)
    if match is None:
        return None, text
    return match.group("role"), text[match.end() :]


#: Seconds between "still waiting" progress lines while a round's replies are outstanding.
HEARTBEAT_S = 30.0


def _ttl(timeout_s: float) -> float:
    # Long enough for the reply to be accepted whenever we still wait for it; short enough
    # that a message nobody picked up expires instead of running after the job gave up.
    return max(2.0 * timeout_s, timeout_s + 30.0)


def _exchange(
    grid: Grid,
    envelopes: Mapping[int, Envelope],
    message_type: str,
    timeout_s: float,
    group_id: str,
    poll_s: float = DEFAULT_POLL_S,
    on_wait: Callable[[float, set[int]], None] | None = None,
    heartbeat_s: float = HEARTBEAT_S,
) -> dict[int, Message]:
    """Send one envelope per node id at once; replies by node id (missing: no reply in time).

    Waits with its own loop over ``grid.push_messages`` / ``grid.pull_messages`` instead of
    ``grid.send_and_receive``, which sleeps 0.1 s (simulation) or 3 s (deployment) between
    checks for replies: with ``poll_s`` = 2 ms a simulated round trip costs a few ms of waiting
    instead of up to 0.1 s (docs/performance.md). Where the link state signals stored replies
    (simulation, :func:`fedads.flower.engine.engine_wakeups`) it waits for the signal instead.
    While replies are outstanding, ``on_wait(seconds_waited, pending_node_ids)`` runs every
    ``heartbeat_s`` seconds (a 1M-key PSI round takes minutes).
    """
    messages = [
        Message(
            envelope_to_content(env), node_id, message_type, ttl=_ttl(timeout_s), group_id=group_id
        )
        for node_id, env in envelopes.items()
    ]
    stored = stored_signal("res")  # None outside a simulation: poll
    pending = set(grid.push_messages(messages))
    node_of = {m.metadata.message_id: m.metadata.dst_node_id for m in messages}  # set by the push
    started = time.monotonic()
    deadline, beat = started + timeout_s, started + heartbeat_s
    replies: dict[int, Message] = {}
    while pending:
        seen = stored.count() if stored is not None else 0
        for reply in grid.pull_messages(pending):
            pending.discard(reply.metadata.reply_to_message_id)
            replies[reply.metadata.src_node_id] = reply
        now = time.monotonic()
        left = deadline - now
        if not pending or left <= 0:
            break
        if on_wait is not None and now >= beat:
            on_wait(now - started, {node_of.get(i, -1) for i in pending})
            beat = now + heartbeat_s
        if stored is None:
            time.sleep(min(poll_s, left))
        else:
            stored.wait_past(seen, min(WAKEUP_FALLBACK_S, left))
    return replies


def wait_for_nodes(grid: Grid, count: int, wait_s: float, progress: Progress = SILENT) -> list[int]:
    """Poll ``grid.get_node_ids()`` until ``count`` nodes are connected (at most ``wait_s``)."""
    deadline = time.monotonic() + wait_s
    while True:
        nodes = sorted(grid.get_node_ids())
        if len(nodes) >= count:
            if len(nodes) > count:
                progress(
                    f"{len(nodes)} nodes connected, expected {count}; asking all for their role"
                )
            return nodes
        if time.monotonic() > deadline:
            raise ProtocolError(
                f"only {len(nodes)} of {count} SuperNodes connected within {wait_s:g} s "
                "(run config 'node-wait-s'); are both SuperNodes started and pointed at "
                "this SuperLink?"
            )
        time.sleep(0.1)


def discover_party_nodes(
    grid: Grid,
    timeout_s: float,
    node_wait_s: float,
    progress: Progress = SILENT,
    poll_s: float = DEFAULT_POLL_S,
    *,
    role_keys: Mapping[str, bytes] | None = None,
) -> dict[str, int]:
    """``{party: node_id}``: wait for the nodes, ask each its role (``hello``), bind each role.

    With ``role_keys`` (``{role: sealing public key}``, run config ``<role>-public-key``) a
    role is bound only to a node that proves it holds that role's sealing secret key: each
    ``hello`` carries a fresh challenge (:func:`fedads.flower.security.new_challenge`). A node
    that claims a role without the key, or claims a role another node proved, is refused and
    never sent anything else; discovery goes on until both roles are proven (nodes that connect
    later are asked too) or the budget ends. Two nodes that both *prove* one role (the same key
    on two nodes) end discovery with an error. Without ``role_keys`` a node's own claim is taken
    (simulation, whose nodes are created in this process; tests), and two nodes claiming one
    role are an error.

    ``node_wait_s`` bounds the whole discovery: nodes registering *and* the first replies, which
    come only once the engine has started its workers (Ray actors take ~10 s; a SuperNode
    installs the app first). The ``hello`` wait is never shorter than ``timeout_s``.
    """
    keys = dict(role_keys or {})
    deadline = time.monotonic() + node_wait_s
    nodes = wait_for_nodes(grid, len(PARTIES), node_wait_s, progress)
    party_nodes: dict[str, int] = {}
    problems: list[str] = []
    refused: list[str] = []
    asked: set[int] = set()
    while True:
        batch = [n for n in nodes if n not in asked]
        if batch:
            asked.update(batch)
            _hello_batch(
                grid,
                batch,
                keys,
                max(deadline - time.monotonic(), timeout_s),
                poll_s,
                party_nodes,
                problems,
                refused,
            )
        if all(p in party_nodes for p in PARTIES) or time.monotonic() >= deadline:
            break
        time.sleep(0.1)
        nodes = sorted(grid.get_node_ids())
    for note in refused:
        progress(f"role discovery: refused {note}")
    missing = [p for p in PARTIES if p not in party_nodes]
    if missing or (problems and not keys):
        detail = "; ".join(
            problems
            + [f"refused {note}" for note in refused]
            + ([f"no node {'proved' if keys else 'plays'} {missing}"] if missing else [])
        )
        raise ProtocolError(f"role discovery failed: {detail}")
    return party_nodes


def _hello_batch(
    grid: Grid,
    batch: list[int],
    keys: Mapping[str, bytes],
    hello_s: float,
    poll_s: float,
    party_nodes: dict[str, int],
    problems: list[str],
    refused: list[str],
) -> None:
    """Send ``hello`` to ``batch`` and bind the roles its replies prove (or claim, without
    ``keys``) into ``party_nodes``; raise at once for a party whose start failed or for a role
    proven twice."""
    challenges = {n: new_challenge() for n in batch} if keys else {}
    envelopes = {n: Envelope(HELLO, meta=challenges[n].meta() if keys else {}) for n in batch}
    replies = _exchange(grid, envelopes, CONTROL_MESSAGE_TYPE, hello_s, "hello", poll_s)
    failed: list[PartyError] = []
    for node in batch:
        reply = replies.get(node)
        if reply is None:
            problems.append(
                f"node {node} did not answer 'hello' within {hello_s:.0f} s "
                "(run config 'node-wait-s')"
            )
            continue
        if reply.has_error():
            role, text = split_reason(reply.error.reason)
            if role in PARTIES:
                failed.append(PartyError(role, f"failed to start (node {node}): {text}"))
            problems.append(f"node {node} failed on 'hello': {reply.error.reason}")
            continue
        meta = content_to_envelope(reply.content).meta
        party = str(meta.get("party"))
        if party not in PARTIES:
            refused.append(f"node {node}: claims the role {party!r}, which is no party")
            continue
        if party in keys:
            why = check_role_proof(challenges[node], party, keys[party], meta)
            if why is not None:
                refused.append(f"node {node}: {why}")
                continue
            if party in party_nodes:
                raise ProtocolError(
                    f"role discovery failed: nodes {party_nodes[party]} and {node} both prove "
                    f"{party!r} (the same sealing key on two SuperNodes); stop one of them"
                )
        elif party in party_nodes:
            problems.append(
                f"nodes {party_nodes[party]} and {node} both play {party!r}; give each "
                "SuperNode its own --node-config party=..."
            )
            continue
        party_nodes[party] = node
    # A node whose hello failed while another node proved that role is an impostor (or a stale
    # duplicate): refused, not fatal. Otherwise its failure is the role's failure, raised now.
    for error in failed:
        if keys and error.party in party_nodes:
            refused.append(f"a node claiming {error.party!r} failed on 'hello': {error.detail}")
        else:
            raise error


class FlowerTransport:
    """:class:`~fedads.protocol.transport.Transport` relaying envelopes through a Flower ``Grid``.

    Args:
        grid: the ServerApp's grid.
        party_nodes: ``{party: node_id}``, e.g. from :func:`discover_party_nodes`.
        timeout_s: how long to wait for the replies of one ``send`` / ``send_all``.
        poll_s: seconds between checks for replies (run config ``poll-interval-s``).
        check_messages: check every envelope of a split-learning kind, both directions, against
            ``fedads.protocol.messages`` (default True); other kinds (PSI, control) pass.
    """

    def __init__(
        self,
        grid: Grid,
        party_nodes: Mapping[str, int],
        timeout_s: float = 120.0,
        *,
        progress: Progress = SILENT,
        poll_s: float = DEFAULT_POLL_S,
        check_messages: bool = True,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s}")
        if poll_s <= 0:
            raise ValueError(f"poll_s must be positive, got {poll_s}")
        self.grid = grid
        self.poll_s = float(poll_s)
        self.party_nodes = dict(party_nodes)
        self._party_of = {node: party for party, node in self.party_nodes.items()}
        self.timeout_s = float(timeout_s)
        self.traffic = Traffic()
        self.progress = progress
        self.check_messages = check_messages
        self.party_stats: dict[str, dict[str, float | int | str | bool]] = {}
        self._dead: dict[str, str] = {}
        self._closed = False
        self._group = 0
        self._seen_kinds: set[str] = set()
        self.heartbeat_s = HEARTBEAT_S

    @classmethod
    def connect(
        cls,
        grid: Grid,
        timeout_s: float = 120.0,
        node_wait_s: float = 60.0,
        *,
        progress: Progress = SILENT,
        poll_s: float = DEFAULT_POLL_S,
        role_keys: Mapping[str, bytes] | None = None,
    ) -> FlowerTransport:
        """Discover which node plays which party (proven with ``role_keys`` when given,
        :func:`discover_party_nodes`), then build the transport."""
        return cls(
            grid,
            discover_party_nodes(
                grid, timeout_s, node_wait_s, progress, poll_s, role_keys=role_keys
            ),
            timeout_s,
            progress=progress,
            poll_s=poll_s,
        )

    def send(self, party: str, envelope: Envelope) -> Envelope:
        """Send ``envelope`` to ``party`` and wait for its reply."""
        return self.send_all({party: envelope})[party]

    def send_all(self, envelopes: Mapping[str, Envelope]) -> dict[str, Envelope]:
        """Send one envelope per party at once; wait for all replies (or the timeout)."""
        if self._closed:
            raise ProtocolError("FlowerTransport is closed")
        for party in envelopes:
            if party not in self.party_nodes:
                raise ProtocolError(f"unknown party {party!r}; known: {sorted(self.party_nodes)}")
            if party in self._dead:
                raise PartyError(party, f"not reachable any more: {self._dead[party]}")
            if self.check_messages:
                problem = check_envelope(envelopes[party], party, reply=False)
                if problem:
                    raise ProtocolError(f"coordinator -> {party}: {problem} (not sent)")
        self._group += 1
        by_node = {self.party_nodes[p]: env for p, env in envelopes.items()}
        for party, env in envelopes.items():
            self.traffic.record(COORDINATOR, party, env)
        start = time.perf_counter()
        kinds = ",".join(sorted({e.kind for e in envelopes.values()}))

        def still_waiting(waited_s: float, nodes: set[int]) -> None:
            parties = "+".join(sorted(self._party_of.get(n, str(n)) for n in nodes))
            self.progress(
                f"{kinds}: still waiting for {parties} after {waited_s:.0f} s "
                f"(gives up at {self.timeout_s:g} s, run config 'timeout-s')"
            )

        replies = _exchange(
            self.grid,
            by_node,
            PROTOCOL_MESSAGE_TYPE,
            self.timeout_s,
            str(self._group),
            self.poll_s,
            on_wait=still_waiting,
            heartbeat_s=self.heartbeat_s,
        )
        elapsed = time.perf_counter() - start
        out: dict[str, Envelope] = {}
        failures: list[PartyError] = []
        for party, env in envelopes.items():
            reply = replies.get(self.party_nodes[party])
            if reply is None:
                detail = (
                    f"no reply to {env.kind!r} within {self.timeout_s:g} s "
                    "(run config 'timeout-s'); "
                    "the party is slow or hung and will not be sent anything else"
                )
                self._dead[party] = detail
                failures.append(PartyError(party, detail))
            elif reply.has_error():
                _, text = split_reason(reply.error.reason)
                failures.append(PartyError(party, f"failed on {env.kind!r}: {text}"))
            else:
                answer = content_to_envelope(reply.content)
                self.traffic.record(party, COORDINATOR, answer)
                problem = self._reply_problem(party, env, answer)
                if problem:
                    failures.append(PartyError(party, f"{party} -> coordinator: {problem}"))
                else:
                    out[party] = answer
        if failures:
            first = failures[0]
            if len(failures) > 1:
                others = "; ".join(str(f) for f in failures[1:])
                raise PartyError(first.party, f"{first.detail} [also: {others}]") from first
            raise first
        new_kinds = sorted({e.kind for e in envelopes.values()} - self._seen_kinds)
        if new_kinds:  # one line per kind, not per message: training sends thousands
            self._seen_kinds.update(new_kinds)
            self.progress(
                f"first {','.join(new_kinds)} -> {'+'.join(envelopes)}: round trip "
                f"{elapsed * 1000:.0f} ms"
            )
        return out

    def _reply_problem(self, party: str, request: Envelope, reply: Envelope) -> str | None:
        if not self.check_messages:
            return None
        problem = check_envelope(reply, party, reply=True)
        if problem is None and request.kind in MESSAGES and reply.kind != request.kind:
            problem = f"answered {request.kind!r} with {reply.kind!r}"
        return problem

    def close(self) -> None:
        """Tell the live parties the run is over (they drop cache and checkpoints). Idempotent."""
        if self._closed:
            return
        self._closed = True
        alive = {
            node: Envelope(CLOSE) for p, node in self.party_nodes.items() if p not in self._dead
        }
        if not alive:
            return
        try:
            replies = _exchange(
                self.grid,
                alive,
                CONTROL_MESSAGE_TYPE,
                min(self.timeout_s, 30.0),
                "close",
                self.poll_s,
            )
        except Exception as exc:  # noqa: BLE001 - closing is best effort
            self.progress(f"close: {type(exc).__name__}: {exc}")
            return
        for party, node in self.party_nodes.items():
            reply = replies.get(node)
            if reply is not None and not reply.has_error():
                self.party_stats[party] = dict(content_to_envelope(reply.content).meta)
