"""A party's long-lived process next to its SuperNode: the party stays live in memory.

Flower 1.42's deployment engine runs every message in a new ``flwr-clientapp`` process. This
process is started once per party, before the run (by :class:`fedads.flower.deployment.
LocalDeployment`, or by hand next to a SuperNode on another machine), and serves the per-message
ClientApp (:mod:`fedads.flower.forwarder`) over a Unix socket in the party's private state dir
(:mod:`fedads.flower.party_wire`). It imports torch and the library once, builds the party with
the run's party factory on the ``hello`` of a run, keeps it live between messages (no
checkpoint restore per message), and drops it on ``close``.

Per request it does what :class:`fedads.flower.client_app.ClientAdapter` does in-process: the
request is checked against the message table before the party sees it, the reply before it
leaves (:func:`fedads.protocol.messages.check_envelope`), the party call is bounded by run config
``timeout-s``, and any failure becomes an error answer naming the party. A party whose call
failed or timed out is dropped (it may be half-updated): later messages of that run are refused.
Nothing is checkpointed: if this process dies, the run fails with an error naming the party (the
forwarder cannot reach it, or the local runner sees it exit); start a new run.

One run at a time: a ``hello`` of a new run releases the parties of earlier runs.

Command line (the SuperNode gets the same node config file)::

    python -m fedads.flower.party_process --node-config social-node.toml
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import signal
import socket
import struct
import sys
import threading
import time
import tomllib
import traceback
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fedads._progress import set_verbosity
from fedads._threads import compute_threads
from fedads.errors import InputError, ProtocolError
from fedads.flower.client_app import (
    CLOSE,
    CONTROL_MESSAGE_TYPE,
    HELLO,
    PROTOCOL_MESSAGE_TYPE,
    PartyTimeout,
    _call_with_deadline,
    build_party,
    check_request,
    checked_handle,
)
from fedads.flower.config import (
    TIMEOUT_KEY,
    check_shared_run_config,
    merged_config,
    party_factory_spec,
    resolve_role,
)
from fedads.flower.party_wire import now, record_timeline, recv_frame, send_frame, socket_path
from fedads.flower.security import answer_challenge
from fedads.protocol.envelope import Envelope
from fedads.protocol.transport import Party

_LOG = logging.getLogger("fedads.flower.party_process")
_MAX_REASON_CHARS = 4000


@dataclass
class _Live:
    party: Party
    stats: dict[str, float] = field(default_factory=dict)

    def add(self, **increments: float) -> None:
        for key, inc in increments.items():
            self.stats[key] = self.stats.get(key, 0) + inc


class PartyServer:
    """Serves one party's envelopes from its socket; see the module docstring.

    Args:
        node_config: this node's config (the SuperNode's ``--node-config`` file): ``party``,
            ``state-dir``, the party's private paths; optional ``party-socket``.
    """

    def __init__(self, node_config: Mapping[str, Any]) -> None:
        self.node_config = dict(node_config)
        self.role = resolve_role(self.node_config)
        self.path = socket_path(self.node_config)
        self._lives: dict[int, _Live] = {}
        self._dropped: dict[int, str] = {}
        self._lock = threading.Lock()  # one party call at a time, as a SuperNode sends them
        self._sock: socket.socket | None = None
        self._stop = threading.Event()

    # -- socket ---------------------------------------------------------------------------------
    def bind(self) -> None:
        """Create the socket (private dir ``0700``, socket ``0600``) and listen."""
        self.path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.path.parent, 0o700)
        if self.path.exists():
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                if probe.connect_ex(str(self.path)) == 0:
                    raise InputError(
                        f"{self.path}: another party process already listens there; stop it or "
                        "give this one another state-dir / party-socket"
                    )
            self.path.unlink()  # stale, from a process that was killed
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        old_umask = os.umask(0o177)  # the socket file is created 0600
        try:
            sock.bind(str(self.path))
        finally:
            os.umask(old_umask)
        sock.listen(8)
        self._sock = sock

    def serve_forever(self) -> None:
        """Accept connections until :meth:`shutdown`; each is served on its own thread."""
        if self._sock is None:
            self.bind()
        assert self._sock is not None
        self._sock.settimeout(0.5)
        try:
            while not self._stop.is_set():
                try:
                    conn, _ = self._sock.accept()
                except TimeoutError:
                    continue
                except OSError:
                    if self._stop.is_set():
                        break
                    raise
                threading.Thread(target=self._serve_conn, args=(conn,), daemon=True).start()
        finally:
            self.close()

    def shutdown(self) -> None:
        self._stop.set()

    def close(self) -> None:
        if self._sock is not None:
            with contextlib.suppress(OSError):
                self._sock.close()
            self._sock = None
            with contextlib.suppress(OSError):
                self.path.unlink()

    def _peer_ok(self, conn: socket.socket) -> bool:
        if not hasattr(socket, "SO_PEERCRED"):
            return True  # non-Linux: the 0700 directory alone guards the socket
        creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        _, uid, _ = struct.unpack("3i", creds)
        return uid == os.getuid()

    def _serve_conn(self, conn: socket.socket) -> None:
        with conn:
            try:
                if not self._peer_ok(conn):
                    _LOG.warning("refused a connection from another user's process")
                    return
                header, envelope = recv_frame(conn)
                received = now()
                answer, reply = self.dispatch(header, envelope)
                send_frame(conn, answer, reply)
                record_timeline(
                    f"party-{self.role}",
                    kind=envelope.kind if envelope is not None else "?",
                    received=received,
                    replied=now(),
                    handle_s=float(answer.get("handle_s", 0.0)),
                )
            except Exception as exc:  # noqa: BLE001 - a broken peer must not stop the server
                _LOG.warning("connection failed: %s: %s", type(exc).__name__, exc)

    # -- requests -------------------------------------------------------------------------------
    def dispatch(
        self, header: Mapping[str, Any], envelope: Envelope | None
    ) -> tuple[dict[str, Any], Envelope | None]:
        """``(answer header, reply envelope)`` for one request; failures become answers."""
        kind = envelope.kind if envelope is not None else "?"
        try:
            if envelope is None:
                raise ProtocolError("request without an envelope")
            claimed = str(header.get("role", ""))
            if claimed != self.role:
                raise ProtocolError(
                    f"a request for {claimed!r} reached the {self.role!r} party process; each "
                    "SuperNode must point at its own party's socket"
                )
            run_id = int(header["run_id"])
            run_config = dict(header.get("run_config") or {})
            check_shared_run_config(run_config)  # node-only keys come from this node only
            config = merged_config(run_config)
            message_type = str(header.get("message_type", ""))
            with self._lock:
                if message_type == CONTROL_MESSAGE_TYPE:
                    reply = self._control(run_id, envelope, config)
                    return {"ok": True}, reply
                if message_type == PROTOCOL_MESSAGE_TYPE:
                    start = time.perf_counter()
                    reply = self._protocol(run_id, envelope, config)
                    return {"ok": True, "handle_s": time.perf_counter() - start}, reply
            raise ProtocolError(f"unknown Flower message type {message_type!r}")
        except Exception as exc:  # noqa: BLE001 - every failure becomes an error answer
            tb = "".join(traceback.format_exception(exc)[-6:])
            reason = (
                f"[{self.role}] {type(exc).__name__}: {exc} (while handling {kind!r} in the "
                f"party process, pid {os.getpid()})\n--- party {self.role!r} traceback (last "
                f"frames) ---\n{tb}"
            )
            _LOG.warning("%s", reason.splitlines()[0])
            return {"ok": False, "error": reason[-_MAX_REASON_CHARS:]}, None

    def _control(self, run_id: int, envelope: Envelope, config: dict[str, Any]) -> Envelope:
        if envelope.kind == HELLO:
            if run_id not in self._lives:
                for old in [r for r in self._lives if r != run_id]:
                    _LOG.info("run %s: released (a new run %s said hello)", old, run_id)
                    del self._lives[old]
                start = time.perf_counter()
                spec = party_factory_spec(self.node_config)  # never the run config
                party = build_party(spec, self.role, config, self.node_config)
                live = _Live(party)
                live.add(restores=1, restore_s=time.perf_counter() - start)
                self._lives[run_id] = live
                self._dropped.pop(run_id, None)
                _LOG.info("run %s: party %r built", run_id, self.role)
            meta: dict[str, Any] = {"party": self.role, "pid": os.getpid()}
            if "challenge" in envelope.meta:  # prove the role with this node's own key only
                meta.update(answer_challenge(self.role, self.node_config, envelope.meta))
            return Envelope(HELLO, meta=meta)
        if envelope.kind == CLOSE:
            gone = self._lives.pop(run_id, None)
            self._dropped.pop(run_id, None)
            stats = gone.stats if gone is not None else {}
            _LOG.info("run %s: closed", run_id)
            return Envelope(
                CLOSE, meta={"party": self.role, "seq": int(stats.get("messages", 0)), **stats}
            )
        raise ProtocolError(
            f"unknown control envelope {envelope.kind!r}; expected {HELLO!r} or {CLOSE!r}"
        )

    def _protocol(self, run_id: int, envelope: Envelope, config: dict[str, Any]) -> Envelope:
        role, kind = self.role, envelope.kind
        live = self._lives.get(run_id)
        if live is None:
            why = self._dropped.get(run_id, "no 'hello' for this run reached this process")
            raise ProtocolError(f"no live party for run {run_id}: {why}")
        check_request(envelope, role)

        def serve() -> Envelope:
            return checked_handle(live.party, envelope, role)

        start = time.perf_counter()
        try:
            reply = _call_with_deadline(serve, float(config[TIMEOUT_KEY]), f"handle({kind!r})")
        except Exception as exc:
            # The live object may be half-updated (or still running, on timeout): drop it.
            what = "timed out" if isinstance(exc, PartyTimeout) else "failed"
            self._dropped[run_id] = f"the party {what} on {kind!r} and was dropped"
            self._lives.pop(run_id, None)
            raise
        live.add(messages=1, handle_s=time.perf_counter() - start)
        return reply


def read_node_config(path: str | Path) -> dict[str, Any]:
    """A node config TOML file (the SuperNode's ``--node-config`` file) as a dict."""
    try:
        with Path(path).open("rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise InputError(f"{path}: cannot read the node config: {exc}") from exc


def _watch_parent(parent_pid: int, server: PartyServer) -> None:
    # The local runner starts us in our own session; if it dies without stopping us, stop.
    while True:
        time.sleep(1.0)
        if os.getppid() != parent_pid:
            _LOG.warning("parent %s is gone; stopping", parent_pid)
            server.shutdown()
            return


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fedads.flower.party_process",
        description="Serve one fedads party, live in memory, to its SuperNode's ClientApps.",
    )
    parser.add_argument(
        "--node-config", required=True, help="the SuperNode's node config TOML file"
    )
    parser.add_argument(
        "--parent-pid", type=int, default=None, help="exit when this parent process is gone"
    )
    parser.add_argument(
        "--preload",
        nargs="*",
        default=["fedads.federation"],
        help="modules to import before listening (the party factory's), so the first "
        "message does not pay for them",
    )
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    for module in args.preload:
        importlib.import_module(module)
    set_verbosity("warning" if args.quiet else "info")
    server = PartyServer(read_node_config(args.node_config))

    def stop(signum: int, _frame: object) -> None:
        server.shutdown()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    server.bind()
    if args.parent_pid is not None:
        threading.Thread(target=_watch_parent, args=(args.parent_pid, server), daemon=True).start()
    _LOG.warning("party %r ready on %s (pid %s)", server.role, server.path, os.getpid())
    # One compute thread per party, as in-process and in the Ray actors (fedads._threads): the
    # two parties share the machine's cores with the relay's processes.
    with compute_threads():
        server.serve_forever()
    return 0


if __name__ == "__main__":
    sys.exit(main())
