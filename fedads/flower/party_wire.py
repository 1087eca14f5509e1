"""The local channel between a party's per-message ClientApp and its long-lived party process.

Light on purpose (numpy, the envelope codec and the standard library; no torch, no Flower): the
deployment engine starts a new ``flwr-clientapp`` process for every message, and this is what
that process imports to reach the party (:mod:`fedads.flower.forwarder`).

The channel is a Unix stream socket in the party's private state directory (node config
``party-socket``, default ``<state-dir>/party.sock``). The directory is ``0700`` and the socket
``0600``, and the party process also refuses a peer whose uid differs from its own
(``SO_PEERCRED``), so only the party's own account can talk to it; the other party never learns
the path. One request per connection:

``frame = u32 header length, u64 body length, JSON header, body``; the request header names the
role, run id, node id, Flower message type and the run config, the body is
:func:`fedads.envelope.encode` of the envelope; the reply header is ``{"ok": true}`` (body: the
reply envelope) or ``{"ok": false, "error": "..."}`` (no body).
"""

from __future__ import annotations

import json
import socket
import struct
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from fedads.envelope import Envelope, decode, encode_parts
from fedads.errors import ProtocolError

#: Node config key: path of the party process's socket (default ``<state-dir>/party.sock``).
PARTY_SOCKET_KEY = "party-socket"
SOCKET_NAME = "party.sock"
#: Linux's limit on a Unix socket path (``sizeof(sun_path) - 1``).
MAX_SOCKET_PATH = 107
#: Extra seconds the forwarder waits beyond run config ``timeout-s`` (the party process enforces
#: the timeout itself and answers with an error; this only bounds a wedged process).
FORWARD_GRACE_S = 30.0
#: Env var naming a folder where the forwarder and the party process append per-message
#: timestamps (``benchmarks/roundtrip.py --engine deployment``); unset: nothing is written.
TIMELINE_ENV = "FEDADS_TIMELINE_DIR"

_FRAME = struct.Struct("<IQ")


def socket_path(node_config: Mapping[str, Any]) -> Path:
    """The party socket named by a node config: ``party-socket``, else ``<state-dir>/party.sock``.

    Raises:
        ProtocolError: neither key is set, or the path is too long for a Unix socket.
    """
    raw = node_config.get(PARTY_SOCKET_KEY) or ""
    if not raw:
        state_dir = node_config.get("state-dir") or ""
        if not state_dir:
            raise ProtocolError(
                f"node config has neither {PARTY_SOCKET_KEY!r} nor 'state-dir'; start the party "
                "process with the same --node-config as the SuperNode"
            )
        raw = str(Path(str(state_dir)) / SOCKET_NAME)
    path = Path(str(raw))
    if len(str(path)) > MAX_SOCKET_PATH:
        raise ProtocolError(
            f"party socket path {str(path)!r} has {len(str(path))} characters, more than a Unix "
            f"socket allows ({MAX_SOCKET_PATH}); set node config {PARTY_SOCKET_KEY!r} or "
            "'state-dir' to a shorter path"
        )
    return path


def send_frame(sock: socket.socket, header: Mapping[str, Any], envelope: Envelope | None) -> None:
    """Write one frame: the JSON ``header`` and (optionally) an encoded envelope."""
    head = json.dumps(dict(header)).encode()
    parts = encode_parts(envelope) if envelope is not None else []
    body_len = sum(len(p) if isinstance(p, bytes) else p.nbytes for p in parts)
    sock.sendall(_FRAME.pack(len(head), body_len) + head)
    for part in parts:
        sock.sendall(part)


def _recv_exact(sock: socket.socket, n: int, what: str) -> bytearray:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise ConnectionError(f"connection closed after {got} of {n} bytes of the {what}")
        got += k
    return buf


def recv_frame(sock: socket.socket) -> tuple[dict[str, Any], Envelope | None]:
    """Read one frame written by :func:`send_frame`."""
    head_len, body_len = _FRAME.unpack(bytes(_recv_exact(sock, _FRAME.size, "frame length")))
    header = json.loads(bytes(_recv_exact(sock, head_len, "frame header")))
    if not isinstance(header, dict):
        raise ProtocolError("party channel: the frame header is not a JSON object")
    if not body_len:
        return header, None
    body = _recv_exact(sock, body_len, "frame body")
    # A fresh buffer owned here: the arrays may be views of it.
    return header, decode(np.frombuffer(body, dtype=np.uint8), copy=False)


def forward(
    path: Path, header: Mapping[str, Any], envelope: Envelope, timeout_s: float
) -> tuple[dict[str, Any], Envelope | None]:
    """Send one request to the party process at ``path``; return its reply frame.

    Raises:
        ProtocolError: the party process is not there, or closed the connection without a reply
            (it died), or did not answer within ``timeout_s``.
    """
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout_s)
            sock.connect(str(path))
            send_frame(sock, header, envelope)
            return recv_frame(sock)
    except (FileNotFoundError, ConnectionRefusedError) as exc:
        raise ProtocolError(
            f"party process not reachable at {path} ({type(exc).__name__}); is "
            "`python -m fedads.flower.party_process --node-config <this node's config>` "
            "running next to this SuperNode?"
        ) from exc
    except TimeoutError as exc:
        raise ProtocolError(
            f"party process at {path} did not answer within {timeout_s:g} s"
        ) from exc
    except (ConnectionError, struct.error) as exc:
        raise ProtocolError(
            f"party process at {path} closed the connection without a reply ({exc}); did it "
            "exit? (see its log)"
        ) from exc


def record_timeline(name: str, **stamps: float | int | str) -> None:
    """Append one JSON line of timestamps to ``$FEDADS_TIMELINE_DIR/<name>.jsonl`` (if set)."""
    import os

    folder = os.environ.get(TIMELINE_ENV)
    if not folder:
        return
    line = json.dumps({"pid": os.getpid(), **stamps})
    with open(Path(folder) / f"{name}.jsonl", "a") as f:
        f.write(line + "\n")


def now() -> float:
    """Wall-clock seconds (comparable across this machine's processes, for timelines)."""
    return time.time()
