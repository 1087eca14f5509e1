"""The deployment engine's thin ClientApp: forward each message to the party's own process.

Flower 1.42's SuperNode starts a new ``flwr-clientapp`` process for every message
(``flwr/supernode/runtime/run_clientapp.py``: one task per process). With the party built in
that process (:mod:`fedads.flower.client_app`), every message paid for importing torch and the
library and restoring the party from its checkpoint (seconds). Here the party lives in a
long-lived process next to the SuperNode (:mod:`fedads.flower.party_process`), and this ClientApp
only moves the envelope to it over the party's private Unix socket and the reply back: it
imports flwr, numpy and the envelope codec, never torch.

The party process checks every split-learning envelope against the message table
(:func:`fedads.protocol.messages.check_envelope`) before the party sees it and before its reply
leaves; the coordinator checks both directions again. A failure (party error, party process not
running or dying mid-call) becomes a Flower error reply whose reason starts with ``[role]``, which
the coordinator turns into :class:`~fedads.errors.PartyError` naming the party.

Selected by the generated app project of :class:`fedads.flower.deployment.LocalDeployment`
(component ``fedads.flower.forwarder:app``); :mod:`fedads.flower.client_app`'s ``app`` also
forwards whenever its node config names a party socket (``party-socket``), so ``flwr run .`` on
the repository's project works with party processes too (it only pays its heavier imports).
"""

from __future__ import annotations

import os
import time
import traceback
from pathlib import Path

from flwr.app import Context, Error, Message
from flwr.clientapp import ClientApp
from flwr.common.constant import ErrorCode

from fedads.flower.codec import content_to_envelope, envelope_to_content
from fedads.flower.party_wire import (
    FORWARD_GRACE_S,
    PARTY_SOCKET_KEY,
    forward,
    now,
    record_timeline,
    socket_path,
)

_MAX_REASON_CHARS = 4000
_DEFAULT_TIMEOUT_S = 120.0


def _process_start_time() -> float | None:
    """Wall-clock start of this process (Linux ``/proc``, 10 ms ticks), for timelines.

    From the start tick and the current uptime (not ``btime``, which is rounded to seconds).
    """
    try:
        stat = Path("/proc/self/stat").read_text()
        ticks = int(stat.rsplit(")", 1)[1].split()[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
        return time.time() - (uptime - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


def _error(message: Message, reason: str) -> Message:
    error = Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=reason[-_MAX_REASON_CHARS:])
    return Message(error, reply_to=message)


def uses_party_process(context: Context) -> bool:
    """Whether this node's party lives in a party process (node config ``party-socket``)."""
    return bool(context.node_config.get(PARTY_SOCKET_KEY))


def forward_message(message: Message, context: Context) -> Message:
    """Hand ``message`` to this node's party process and return its reply as a Flower reply."""
    entered = now()
    role = str(context.node_config.get("party", "?"))
    kind = "?"
    try:
        envelope = content_to_envelope(message.content)
        kind = envelope.kind
        path = socket_path(context.node_config)
        timeout_s = float(context.run_config.get("timeout-s", _DEFAULT_TIMEOUT_S))
        header = {
            "role": role,
            "run_id": int(context.run_id),
            "node_id": int(context.node_id),
            "message_type": message.metadata.message_type,
            "run_config": dict(context.run_config),
        }
        sent = now()
        answer, reply = forward(path, header, envelope, timeout_s + FORWARD_GRACE_S)
        received = now()
        if not answer.get("ok"):
            reason = str(answer.get("error") or "(no reason given)")
            if not reason.startswith(f"[{role}]"):
                reason = f"[{role}] {reason}"
            return _error(message, reason)
        if reply is None:
            raise ConnectionError("the party process answered without an envelope")
        out = Message(envelope_to_content(reply), reply_to=message)
        record_timeline(
            f"forwarder-{role}",
            kind=kind,
            started=_process_start_time() or entered,
            entered=entered,
            sent=sent,
            received=received,
            returned=now(),
        )
        return out
    except Exception as exc:  # noqa: BLE001 - every failure becomes an error reply
        tb = "".join(traceback.format_exception(exc)[-4:])
        reason = (
            f"[{role}] {type(exc).__name__}: {exc} (while forwarding {kind!r} to the party "
            f"process, pid {os.getpid()})\n--- traceback (last frames) ---\n{tb}"
        )
        return _error(message, reason)


#: ``[tool.flwr.app.components] clientapp = "fedads.flower.forwarder:app"``.
app = ClientApp()
app.query()(forward_message)
app.train()(forward_message)
