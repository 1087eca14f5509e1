"""The Flower ``ClientApp``: one Flower message in, one ``party.handle`` call, one reply out.

Role: node config ``party`` (deployment: ``flower-supernode --node-config 'party="social"'``),
else simulation ``partition-id`` (0 = ``social``, 1 = ``ecommerce``).

Party object: built by the party factory passed to :func:`make_client_app`, else named in the
node's own config ``party-factory`` (default: the real federation party), never in the run
config; it receives ``(role, run_config, node_config)``. Flower's run config (written by whoever
submits the run) may carry only shared settings: one that sets a factory, a data path, an output
or state folder or a key is refused (:func:`fedads.flower.config.check_shared_run_config`). The
run config the factory receives has the *other* party's private keys removed.

State: Flower rebuilds the ClientApp for every message (the deployment engine even starts a new
``flwr-clientapp`` process per message), so the live party object is kept in a process-local
cache keyed by ``(run_id, node_id)`` together with a sequence number, and the same sequence
number is kept in ``context.state`` (which Flower persists per node). A cache hit needs the two
to agree; on a miss (new process, or another Ray actor handled the last message) the party is
rebuilt by the factory and restored from the checkpoint written after the last message. The
checkpoint is ``party.get_state()`` either in a party-private ``.npz`` file (``state-store =
"file"``, default: cheaper, see docs/flower.md) or as an ``ArrayRecord`` in ``context.state``
(``state-store = "context"``).

Messages: ``"train"`` carries a protocol envelope for ``party.handle``; ``"query"`` carries the
adapter's control envelopes ``hello`` (answer the role, and prove it with the party's sealing
key when the ServerApp sends a challenge: :mod:`fedads.flower.security`) and ``close`` (drop
cache and checkpoint).
Both directions of a ``"train"`` message are checked against the message table
(:func:`fedads.protocol.messages.check_envelope`): a request that breaks it is refused before
the party sees it, and a reply that breaks it is never sent (an error reply goes instead).
Any exception while handling becomes an error reply (Flower ``Error``) whose reason names the
party, the envelope kind and the exception; the ServerApp side turns it into ``PartyError``.
"""

from __future__ import annotations

import contextlib
import os
import queue
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
from flwr.app import ConfigRecord, Context, Error, Message, RecordDict
from flwr.clientapp import ClientApp
from flwr.common.constant import ErrorCode

from fedads.errors import ProtocolError
from fedads.flower.codec import (
    content_to_envelope,
    envelope_to_content,
    record_to_state,
    state_to_record,
)
from fedads.flower.config import (
    STATE_DIR_KEY,
    STATE_STORE_KEY,
    STATE_STORES,
    TIMEOUT_KEY,
    PartyFactory,
    check_shared_run_config,
    merged_config,
    party_factory_spec,
    party_run_config,
    resolve_party_factory,
    resolve_role,
)
from fedads.flower.forwarder import forward_message, uses_party_process
from fedads.flower.security import answer_challenge
from fedads.protocol.envelope import Envelope
from fedads.protocol.messages import MESSAGES, check_envelope
from fedads.protocol.transport import Party

HELLO = "hello"
CLOSE = "close"
CONTROL_MESSAGE_TYPE = "query"
PROTOCOL_MESSAGE_TYPE = "train"

SEQ_RECORD = "fedads.seq"
STATE_RECORD = "fedads.party-state"
STATS_RECORD = "fedads.stats"
_MAX_REASON_CHARS = 4000


@dataclass
class _Live:
    party: Party
    role: str
    seq: int


# Process-local: (run_id, node_id) -> live party. Survives ClientApp rebuilds within a process
# (simulation Ray actors are long-lived); empty in every new flwr-clientapp process.
_CACHE: dict[tuple[int, int], _Live] = {}


def _seq(context: Context) -> int:
    if SEQ_RECORD in context.state:
        return int(context.state.config_records[SEQ_RECORD]["seq"])
    return 0


def _add_stats(context: Context, **increments: float) -> None:
    record = context.state.config_records.get(STATS_RECORD)
    values: dict[str, Any] = dict(record) if record is not None else {}
    for key, inc in increments.items():
        values[key] = values.get(key, 0) + inc
    context.state[STATS_RECORD] = ConfigRecord(values)


def _state_file(context: Context, role: str, config: dict[str, Any]) -> Path:
    base = (
        context.node_config.get(STATE_DIR_KEY)
        or config.get(STATE_DIR_KEY)
        or Path(tempfile.gettempdir()) / "fedads-flower-state"
    )
    return Path(str(base)) / f"run-{context.run_id}" / f"node-{context.node_id}-{role}.npz"


def _checked_state(role: str, state: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    out = {}
    for name, value in state.items():
        array = np.asarray(value)
        if array.dtype == object:
            raise ProtocolError(
                f"party {role!r}: get_state()[{name!r}] has object dtype; state must be numeric "
                "numpy arrays"
            )
        out[str(name)] = array
    return out


# Background ("file-behind") checkpoint writes of this process, by file, in order.
_WRITES: dict[Path, Future[None]] = {}
_WRITER: ThreadPoolExecutor | None = None


def _write_npz(path: Path, state: dict[str, np.ndarray], seq: int) -> None:
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npz")
    # Arrays under positional names, real names in a string array: any key is safe.
    arrays = {f"a{i}": array for i, array in enumerate(state.values())}
    np.savez(
        tmp,
        __names__=np.array(list(state), dtype=str),
        __seq__=np.array(seq, dtype=np.int64),
        **arrays,
    )
    os.replace(tmp, path)  # atomic: a reader sees the old or the new checkpoint, never half


def _finish_write(path: Path) -> None:
    """Wait for this process's background write of ``path``; raise its error, if any."""
    pending = _WRITES.pop(path, None)
    if pending is not None:
        pending.result()


def _save_checkpoint(
    config: dict[str, Any], context: Context, role: str, state: dict[str, np.ndarray], seq: int
) -> None:
    global _WRITER
    state = _checked_state(role, state)
    store = str(config[STATE_STORE_KEY])
    if store == "context":
        context.state[STATE_RECORD] = state_to_record(state)
        return
    path = _state_file(context, role, config)
    _finish_write(path)  # a failed earlier write surfaces here, at the next message
    if store == "file-behind":
        # Only in long-lived processes (simulation's Ray actors): the reply leaves now and the
        # file is written meanwhile; a reader in this process waits for it, one in another
        # process waits for the sequence number (`_load_checkpoint`). get_state() returned
        # copies, so the party may change while the write runs.
        if _WRITER is None:
            _WRITER = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fedads-checkpoint")
        _WRITES[path] = _WRITER.submit(_write_npz, path, state, seq)
        return
    _write_npz(path, state, seq)


def _read_npz(path: Path) -> tuple[int, dict[str, np.ndarray]]:
    with np.load(path, allow_pickle=False) as data:
        found = int(data["__seq__"])
        names = [str(n) for n in data["__names__"].tolist()]
        return found, {name: data[f"a{i}"] for i, name in enumerate(names)}


def _load_checkpoint(
    config: dict[str, Any], context: Context, role: str, seq: int
) -> dict[str, np.ndarray]:
    store = str(config[STATE_STORE_KEY])
    if store == "context":
        if STATE_RECORD not in context.state:
            raise ProtocolError(
                f"party {role!r}: context.state has no checkpoint for sequence {seq}"
            )
        return record_to_state(context.state.array_records[STATE_RECORD])
    path = _state_file(context, role, config)
    _finish_write(path)
    # Another process may still be writing it behind its last reply: wait for the sequence.
    deadline = time.monotonic() + (float(config[TIMEOUT_KEY]) if store == "file-behind" else 0.0)
    while True:
        found, state = _read_npz(path) if path.exists() else (None, {})
        if found == seq or time.monotonic() >= deadline:
            break
        time.sleep(0.005)
    if found is None:
        raise ProtocolError(
            f"party {role!r}: checkpoint {path} is missing (sequence {seq}); was the state "
            "directory deleted, or does this SuperNode run on another machine than the last one?"
        )
    if found != seq:
        raise ProtocolError(
            f"party {role!r}: checkpoint {path} is at sequence {found} but the node expects {seq}"
        )
    return state


def _clear_checkpoint(context: Context, role: str, config: dict[str, Any]) -> None:
    for key in (STATE_RECORD, SEQ_RECORD):
        if key in context.state:
            del context.state[key]
    path = _state_file(context, role, config)
    with contextlib.suppress(Exception):  # closing: a failed last write no longer matters
        _finish_write(path)
    path.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        path.parent.rmdir()  # only succeeds once the other party's file is gone too


class PartyTimeout(ProtocolError):
    """The party's call did not return within run config ``timeout-s``."""


T = TypeVar("T")


class _PartyWorker:
    """One long-lived daemon thread that runs this process's party calls, one at a time.

    Not a fresh thread per call: torch ran markedly slower on a new thread each message (the
    social party's epoch 0.16 s -> 0.23-0.25 s in-process at 200k rows, measured; a persistent
    thread ran as fast as the caller's own). Not a ``ThreadPoolExecutor`` either: its threads are
    joined at interpreter exit, so one hung call would keep the process from ending.
    """

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], dict[str, Any], threading.Event]]
        self._jobs = queue.SimpleQueue()
        threading.Thread(target=self._serve, name="fedads-party", daemon=True).start()

    def _serve(self) -> None:
        while True:
            fn, box, done = self._jobs.get()
            try:
                box["value"] = fn()
            except BaseException as exc:  # noqa: BLE001 - handed to the caller thread
                box["error"] = exc
            done.set()

    def call(self, fn: Callable[[], T], deadline_s: float) -> tuple[bool, dict[str, Any]]:
        """``(finished, box)``: ``box`` holds ``value`` or ``error`` once finished."""
        box: dict[str, Any] = {}
        done = threading.Event()
        self._jobs.put((fn, box, done))
        return done.wait(deadline_s), box


_WORKER: _PartyWorker | None = None
_WORKER_LOCK = threading.Lock()


def _call_with_deadline(fn: Callable[[], T], deadline_s: float, what: str) -> T:
    """``fn()``, run on this process's party thread and abandoned after ``deadline_s``.

    Flower cannot cancel a ClientApp call and waits for every call in flight before it shuts
    down, so a hung party would hang the whole federation (and, in simulation, the caller). An
    abandoned call keeps its thread until the process ends; the next call gets a new thread, and
    the abandoned call's party object is dropped from the cache, so nothing it does later is used.
    """
    global _WORKER
    with _WORKER_LOCK:
        if _WORKER is None:
            _WORKER = _PartyWorker()
        worker = _WORKER
    finished, box = worker.call(fn, deadline_s)
    if not finished:
        with _WORKER_LOCK:
            if _WORKER is worker:
                _WORKER = None
        raise PartyTimeout(
            f"{what} still running after {deadline_s:g} s (run config 'timeout-s'); abandoned"
        )
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]


def _error_reply(message: Message, role: str, kind: str, exc: BaseException) -> Message:
    tb = "".join(traceback.format_exception(exc)[-6:])
    reason = (
        f"[{role}] {type(exc).__name__}: {exc} (while handling {kind!r} in pid {os.getpid()})\n"
        f"--- party {role!r} traceback (last frames) ---\n{tb}"
    )
    return Message(
        Error(code=ErrorCode.CLIENT_APP_RAISED_EXCEPTION, reason=reason[-_MAX_REASON_CHARS:]),
        reply_to=message,
    )


def build_party(
    spec: PartyFactory | str, role: str, config: dict[str, Any], node_config: dict[str, Any]
) -> Party:
    """The party ``role`` built by factory ``spec`` from ``config`` without the other party's
    private keys and this node's own ``node_config``; checked to be a party playing ``role``."""
    factory = resolve_party_factory(spec)
    party = factory(role, party_run_config(role, config), node_config)
    if not callable(getattr(party, "handle", None)) or not callable(
        getattr(party, "get_state", None)
    ):
        raise ProtocolError(f"party factory {spec!r} returned {type(party).__name__}, not a Party")
    name = getattr(party, "name", role)
    if name != role:
        raise ProtocolError(f"party factory {spec!r} built party {name!r} for role {role!r}")
    return party


def check_request(envelope: Envelope, role: str) -> None:
    """Refuse a request the message table does not allow for ``role`` (before the party sees it)."""
    problem = check_envelope(envelope, role, reply=False)
    if problem:
        raise ProtocolError(f"refused a request: coordinator -> {role}: {problem}")


def checked_handle(party: Party, envelope: Envelope, role: str) -> Envelope:
    """``party.handle(envelope)``, its reply checked against the message table before it may
    leave: an Envelope, allowed for ``role``, of the request's own kind."""
    kind = envelope.kind
    reply = party.handle(envelope)
    if not isinstance(reply, Envelope):
        raise ProtocolError(f"handle({kind!r}) returned {type(reply).__name__}, not an Envelope")
    problem = check_envelope(reply, role, reply=True)
    if problem is None and kind in MESSAGES and reply.kind != kind:
        problem = f"answered {kind!r} with {reply.kind!r}"
    if problem:
        raise ProtocolError(f"reply not sent: {role} -> coordinator: {problem}")
    return reply


class ClientAdapter:
    """Translates Flower messages for one node into calls on its party object.

    Holds only the factory and the run-config overrides, so it pickles small (the simulation
    engine ships the ClientApp to its Ray actors with every message); live parties sit in the
    module-level cache of the process that handles the message.
    """

    def __init__(
        self,
        party_factory: PartyFactory | str | None = None,
        run_config: dict[str, Any] | None = None,
    ) -> None:
        self.party_factory = party_factory
        self.run_config = dict(run_config or {})

    # -- helpers ---------------------------------------------------------------------------
    def _config(self, context: Context) -> dict[str, Any]:
        check_shared_run_config(context.run_config)  # node-only keys come from this node only
        return merged_config(dict(context.run_config), self.run_config)

    def _build(self, role: str, config: dict[str, Any], context: Context) -> Party:
        spec = self.party_factory
        if spec is None:
            spec = party_factory_spec(context.node_config, self.run_config)
        return build_party(spec, role, config, dict(context.node_config))

    def _live(self, role: str, config: dict[str, Any], context: Context) -> _Live:
        key = (context.run_id, context.node_id)
        seq = _seq(context)
        live = _CACHE.get(key)
        if live is not None and live.seq == seq and live.role == role:
            _add_stats(context, cache_hits=1)
            return live
        start = time.perf_counter()
        if live is not None and live.role == role:
            # Another process handled the last messages: this one's party is stale but has its
            # table loaded and features encoded; overwrite its state instead of rebuilding it
            # (a rebuild cost ~1.3 s per restore at 200k rows, see docs/performance.md).
            party = live.party
        else:
            party = self._build(role, config, context)
        if seq > 0:
            party.set_state(_load_checkpoint(config, context, role, seq))
        live = _Live(party=party, role=role, seq=seq)
        _CACHE[key] = live
        _add_stats(context, restores=1, restore_s=time.perf_counter() - start)
        return live

    # -- message handlers -----------------------------------------------------------------
    def handle_control(self, message: Message, context: Context) -> Message:
        if uses_party_process(context):  # deployment with a long-lived party process
            return forward_message(message, context)
        role, kind = "?", "?"
        try:
            role = resolve_role(context.node_config)
            kind = content_to_envelope(message.content).kind
            config = self._config(context)
            if kind == HELLO:
                self._live(role, config, context)  # build now: factory errors surface at discovery
                meta: dict[str, Any] = {"party": role, "pid": os.getpid()}
                challenge = content_to_envelope(message.content).meta
                if "challenge" in challenge:  # prove the role with this node's own key only
                    own = {**self.run_config, **dict(context.node_config)}
                    meta.update(answer_challenge(role, own, challenge))
                reply = Envelope(HELLO, meta=meta)
            elif kind == CLOSE:
                _CACHE.pop((context.run_id, context.node_id), None)
                stats = context.state.config_records.get(STATS_RECORD)
                meta = {"party": role, "seq": _seq(context), **(dict(stats) if stats else {})}
                _clear_checkpoint(context, role, config)
                reply = Envelope(CLOSE, meta=meta)
            else:
                raise ProtocolError(
                    f"unknown control envelope {kind!r}; expected {HELLO!r} or {CLOSE!r}"
                )
            return Message(envelope_to_content(reply), reply_to=message)
        except Exception as exc:  # noqa: BLE001 - every failure becomes an error reply
            _CACHE.pop((context.run_id, context.node_id), None)
            return _error_reply(message, role, kind, exc)

    def handle_protocol(self, message: Message, context: Context) -> Message:
        if uses_party_process(context):
            return forward_message(message, context)
        role, kind = "?", "?"
        key = (context.run_id, context.node_id)
        try:
            role = resolve_role(context.node_config)
            envelope = content_to_envelope(message.content)
            kind = envelope.kind
            config = self._config(context)
            store = str(config[STATE_STORE_KEY])
            if store not in STATE_STORES:
                raise ProtocolError(
                    f"run config {STATE_STORE_KEY!r}: {store!r} not in {list(STATE_STORES)}"
                )
            check_request(envelope, role)
            live = self._live(role, config, context)
            start = time.perf_counter()

            def serve() -> tuple[RecordDict, dict[str, np.ndarray], float]:
                reply = checked_handle(live.party, envelope, role)
                handled = time.perf_counter()
                return envelope_to_content(reply), live.party.get_state(), handled

            content, state, handled = _call_with_deadline(
                serve, float(config[TIMEOUT_KEY]), f"handle({kind!r})"
            )
            seq = live.seq + 1
            _save_checkpoint(config, context, role, state, seq)
            context.state[SEQ_RECORD] = ConfigRecord({"seq": seq})
            live.seq = seq
            _add_stats(
                context,
                messages=1,
                handle_s=handled - start,  # party.handle
                checkpoint_s=time.perf_counter() - handled,  # encode reply + get_state + save
            )
            return Message(content, reply_to=message)
        except Exception as exc:  # noqa: BLE001 - every failure becomes an error reply
            # The live object may be half-updated: forget it; the next message restores the
            # last checkpoint (the sequence number in context.state did not advance).
            _CACHE.pop(key, None)
            return _error_reply(message, role, kind, exc)


def make_client_app(
    party_factory: PartyFactory | str | None = None, run_config: dict[str, Any] | None = None
) -> ClientApp:
    """A ClientApp that serves parties built by ``party_factory``.

    Args:
        party_factory: the factory, a registered name or ``"module:attr"``; ``None`` reads run
            config ``party-factory``.
        run_config: overrides laid over the run's ``context.run_config`` (the simulation engine
            started from Python has an empty run config, so :func:`run_federation` passes it here).
    """
    adapter = ClientAdapter(party_factory, run_config)
    client_app = ClientApp()
    client_app.query()(adapter.handle_control)
    client_app.train()(adapter.handle_protocol)
    return client_app


#: ``flwr run`` / ``flower-supernode`` entry point (``[tool.flwr.app.components] clientapp``).
app = make_client_app()
