"""Flower adapter: codec, roles, state persistence, transport errors, and real Flower runs.

Fast tests drive the ClientApp adapter and ``FlowerTransport`` through an in-process fake grid.
Two simulation runs (Ray, ~10-20 s each, most of it start-up) share the work: one healthy run
checked by several tests (module fixture ``echo_run``), one failing run (``failing_run``) with
a hung party (its error caught by the job) and then a failing party (that error ends the run).
The deployment engine (SuperLink + 2 SuperNodes + ``flwr run``) runs the real job in
tests/test_deployment.py.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from queue import Queue

import numpy as np
import pytest
from flwr.app import Context, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from fedads.errors import FedadsError, InputError, PartyError, ProtocolError
from fedads.flower import (
    FlowerTransport,
    discover_party_nodes,
    engine,
    read_result,
    register_party_factory,
    resolve_role,
    run_federation,
)
from fedads.flower import client_app as client_app_module
from fedads.flower.client_app import ClientAdapter
from fedads.flower.codec import content_to_envelope, envelope_to_content
from fedads.flower.config import (
    DEFAULT_POLL_S,
    party_run_config,
    poll_interval,
    resolve_party_factory,
)
from fedads.flower.engine import (
    AppLoader,
    Signal,
    actor_affinity,
    engine_polling,
    engine_wakeups,
    pick_actor,
    stored_signal,
)
from fedads.flower.result import FederationResult, write_error, write_result
from fedads.flower.testing import ECHO, EchoParty, echo_job, echo_party_factory
from fedads.protocol import messages as msg
from fedads.protocol.envelope import Envelope
from fedads.protocol.transport import COORDINATOR

SOCIAL_NODE, ECOMMERCE_NODE = 11, 22


# ----------------------------------------------------------------------------- fake grid
class FakeGrid:
    """Delivers each message straight to a ClientAdapter, one Context per node (no engine).

    ``silent`` nodes never answer (a timeout); ``forget_cache`` empties the process-local party
    cache before every message, as if each message ran in a new process (deployment engine).
    """

    def __init__(
        self,
        adapter: ClientAdapter,
        roles: dict[int, str],
        *,
        silent: frozenset[int] = frozenset(),
        forget_cache: bool = False,
    ) -> None:
        self.adapter = adapter
        self.contexts = {
            node: Context(
                run_id=7,
                node_id=node,
                node_config={"party": role},
                state=RecordDict(),
                run_config={},
            )
            for node, role in roles.items()
        }
        self.silent = silent
        self.forget_cache = forget_cache
        self.replies: dict[str, Message] = {}
        self.unanswered: list[str] = []
        self.pulls = 0

    def get_node_ids(self) -> list[int]:
        return list(self.contexts)

    def push_messages(self, messages: list[Message]) -> list[str]:
        """Handle each message at once; its reply waits for ``pull_messages``."""
        ids = []
        for message in messages:
            message_id = f"m{len(self.replies) + len(self.unanswered)}"
            message.metadata.__dict__["_message_id"] = message_id
            ids.append(message_id)
            node = message.metadata.dst_node_id
            if node in self.silent:
                self.unanswered.append(message_id)
                continue
            if self.forget_cache:
                client_app_module._CACHE.clear()
            if message.metadata.message_type == "query":
                handler = self.adapter.handle_control
            else:
                handler = self.adapter.handle_protocol
            self.replies[message_id] = handler(message, self.contexts[node])
        return ids

    def pull_messages(self, message_ids: set[str]) -> list[Message]:
        self.pulls += 1
        return [self.replies.pop(i) for i in list(message_ids) if i in self.replies]


@pytest.fixture
def task_identity() -> Iterator[None]:
    """Flower's Message() needs a task identity (set by the engines; not in a bare test)."""
    saved = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 7, 1, 1
    client_app_module._CACHE.clear()
    yield
    client_app_module._CACHE.clear()
    TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = saved


def make_grid(tmp_path: Path, **kwargs: object) -> FakeGrid:
    config = {"state-dir": str(tmp_path / "state"), "timeout-s": 5.0, **kwargs.pop("config", {})}  # type: ignore[dict-item]
    adapter = ClientAdapter(echo_party_factory, config)
    return FakeGrid(adapter, {SOCIAL_NODE: "social", ECOMMERCE_NODE: "ecommerce"}, **kwargs)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------- unit tests
def test_codec_round_trip_keeps_dtypes_shapes_and_scalar_types() -> None:
    envelope = Envelope(
        "forward",
        {
            "positions": np.arange(5, dtype=np.int64),
            "embeddings": np.ones((2, 3), dtype=np.float16),
            "scalar": np.array(2.5),  # 0-d stays 0-d
            "empty": np.zeros((0, 4), dtype=np.float32),
            "strided": np.arange(12.0).reshape(3, 4)[:, ::2],
            "mask": np.array([True, False]),
        },
        {"n": 3, "lr": 0.5, "mode": "split", "flag": True, "np_int": np.int64(7)},
    )
    back = content_to_envelope(envelope_to_content(envelope))
    assert back.kind == "forward"
    for name, array in envelope.arrays.items():
        assert back.arrays[name].dtype == array.dtype
        assert back.arrays[name].shape == array.shape
        np.testing.assert_array_equal(back.arrays[name], array)
    assert back.meta == {"n": 3, "lr": 0.5, "mode": "split", "flag": True, "np_int": 7}
    assert type(back.meta["flag"]) is bool and type(back.meta["n"]) is int
    assert back.payload_nbytes() == envelope.payload_nbytes()


def test_codec_refuses_what_may_not_cross() -> None:
    with pytest.raises(ProtocolError, match="'names'.*object"):
        envelope_to_content(Envelope("x", {"names": np.array(["a", None], dtype=object)}))
    with pytest.raises(ProtocolError, match="'where'"):
        envelope_to_content(Envelope("x", meta={"where": [1, 2]}))  # type: ignore[dict-item]


def test_roles_from_node_config_or_partition_id() -> None:
    assert resolve_role({"party": "ecommerce"}) == "ecommerce"
    assert resolve_role({"partition-id": 0, "num-partitions": 2}) == "social"
    assert resolve_role({"partition-id": 1, "num-partitions": 2}) == "ecommerce"
    with pytest.raises(InputError, match="'party'.*'bank'"):
        resolve_role({"party": "bank"})
    with pytest.raises(InputError, match="exactly 2 SuperNodes"):
        resolve_role({"partition-id": 2})
    with pytest.raises(InputError, match="--node-config"):
        resolve_role({})


def test_poll_interval_is_validated() -> None:
    assert poll_interval({}) == DEFAULT_POLL_S
    assert poll_interval({"poll-interval-s": 0.05}) == 0.05
    for bad in (0, -1.0, "fast", 5.0):
        with pytest.raises(InputError, match="poll-interval-s"):
            poll_interval({"poll-interval-s": bad})


def test_engine_polling_replaces_the_feeder_and_restores_it() -> None:
    from flwr.server.superlink.fleet.vce import vce_api

    original = vce_api.add_messages_to_queue

    class State:
        def __init__(self) -> None:
            self.inbox = {1: ["a", "b"], 2: ["c"]}

        def get_message_ins(self, node_id: int, limit: int) -> list[str]:
            taken, self.inbox[node_id] = (
                self.inbox[node_id][:limit],
                self.inbox[node_id][limit:],
            )
            return taken

    with engine_polling(0.001) as replaced:
        assert replaced and vce_api.add_messages_to_queue is not original
        queue: Queue[str] = Queue()
        stop = threading.Event()
        feeder = threading.Thread(
            target=vce_api.add_messages_to_queue, args=(State(), queue, {1: 0, 2: 1}, stop)
        )
        feeder.start()
        got = [queue.get(timeout=2.0) for _ in range(3)]
        stop.set()
        feeder.join(timeout=2.0)
        assert not feeder.is_alive()
        assert sorted(got) == ["a", "b", "c"]
    assert vce_api.add_messages_to_queue is original


def test_signal_wakes_a_waiter_and_loses_no_event() -> None:
    signal = Signal()
    seen = signal.count()
    assert not signal.wait_past(seen, 0.01)  # nothing happened: times out
    signal.notify()  # between reading the count and waiting: still seen
    assert signal.wait_past(seen, 5.0)
    seen = signal.count()
    threading.Timer(0.05, signal.notify).start()
    start = time.monotonic()
    assert signal.wait_past(seen, 30.0)
    assert time.monotonic() - start < 10.0  # woken by the notify, not the timeout


def test_engine_wakeups_signal_stores_and_restore() -> None:
    from flwr.server.superlink.linkstate.in_memory_linkstate import InMemoryLinkState

    originals = (InMemoryLinkState.store_message_ins, InMemoryLinkState.store_message_res)
    assert stored_signal("res") is None
    with engine_wakeups() as patched:
        assert patched
        with engine_wakeups() as again:
            assert not again  # one owner at a time
        replies = stored_signal("res")
        assert replies is not None and stored_signal("ins") is not None
        seen = replies.count()
        with pytest.raises(AttributeError):  # the original store runs (and fails on a fake)
            InMemoryLinkState.store_message_res(object(), None)  # type: ignore[arg-type]
        assert replies.count() == seen + 1  # signalled even so: a waiter re-checks, no hang
    assert (InMemoryLinkState.store_message_ins, InMemoryLinkState.store_message_res) == originals
    assert stored_signal("res") is None


def test_feeder_wakes_on_a_stored_message_not_on_its_timer(monkeypatch) -> None:
    from flwr.server.superlink.fleet.vce import vce_api

    monkeypatch.setattr(engine, "WAKEUP_FALLBACK_S", 30.0)  # the timer alone would be too late
    inbox: list[str] = []

    class State:
        def get_message_ins(self, node_id: int, limit: int) -> list[str]:
            taken = inbox[:limit]
            del inbox[:limit]
            return taken

    with engine_wakeups(), engine_polling(30.0):
        queue: Queue[str] = Queue()
        stop = threading.Event()
        feeder = threading.Thread(
            target=vce_api.add_messages_to_queue, args=(State(), queue, {1: 0}, stop)
        )
        feeder.start()
        time.sleep(0.05)  # the feeder found nothing and waits
        signal = stored_signal("ins")
        assert signal is not None
        inbox.append("m")
        signal.notify()  # what the patched store_message_ins does
        assert queue.get(timeout=10.0) == "m"
        stop.set()
        signal.notify()
        feeder.join(timeout=10.0)
        assert not feeder.is_alive()


def _make_token() -> object:
    token = object()
    return lambda: token


def test_app_loader_pickles_by_reference_and_loads_once() -> None:
    from ray import cloudpickle

    loader = AppLoader(_make_token())
    data = cloudpickle.dumps(loader)
    assert len(data) < len(loader.blob) + 400  # the class by name, the closure as bytes
    first, second = cloudpickle.loads(data), cloudpickle.loads(data)
    assert first() is second()  # one unpickled closure per process, shared by every call


def test_simulation_env_runs_ray_workers_at_normal_priority(monkeypatch) -> None:
    from fedads.flower.simulation import quiet_flower_env

    niceness = "RAY_worker_niceness"  # Ray reads this exact (lower-case) name
    inline = "RAY_max_direct_call_object_size"
    monkeypatch.setenv(niceness, "15")
    monkeypatch.delenv(inline, raising=False)
    with quiet_flower_env():
        assert os.environ[niceness] == "0"  # the parties are Ray's workers
        assert int(os.environ[inline]) >= 4 * 1024 * 1024  # a 2 MB chunk goes inline
        assert os.environ["FLWR_TELEMETRY_ENABLED"] == "0"
    assert os.environ[niceness] == "15"  # restored
    assert inline not in os.environ


def test_pick_actor_keeps_each_node_on_its_own_actor() -> None:
    a, b = object(), object()
    owners: dict[str, object] = {}
    pool = [a, b]
    assert pick_actor(pool, owners, "0") is b and pool == [a]  # first pick: Flower's choice
    assert pick_actor(pool, owners, "1") is a and pool == []
    assert owners == {"0": b, "1": a}
    pool.extend([b, a])  # a came back last: Flower would give it to whoever asks next
    assert pick_actor(pool, owners, "0") is b
    assert pick_actor(pool, owners, "1") is a
    pool.append(a)  # b busy: node 0 falls back to a (and keeps b as its own)
    assert pick_actor(pool, owners, "0") is a and owners["0"] is b
    pool.extend([a, b])
    assert pick_actor(pool, owners, "2") is b and "2" not in owners  # every actor owned
    assert pool == [a]


def test_actor_affinity_patches_the_pool_and_restores_it() -> None:
    from flwr.simulation.ray_transport.ray_actor import BasicActorPool

    original = BasicActorPool.submit
    with actor_affinity() as patched:
        assert patched and BasicActorPool.submit is not original
        pool = BasicActorPool.__new__(BasicActorPool)
        a, b = object(), object()
        pool.pool, pool._future_to_actor = [a, b], {}
        calls = []

        def run(actor: object, *args: object) -> str:
            calls.append(actor)
            return f"future-{len(calls)}"

        first = pool.submit(run, (None, "m1", "1", None))
        pool.add_actor_back_to_pool(first)
        second = pool.submit(run, (None, "m2", "0", None))
        pool.add_actor_back_to_pool(second)
        pool.submit(run, (None, "m3", "1", None))
        assert calls == [b, a, b]  # Flower's LIFO pool would have given node 1 actor a
    assert BasicActorPool.submit is original


def test_factory_sees_only_its_own_private_keys() -> None:
    config = {"social-path": "s.csv", "ecommerce-path": "e.csv", "ecommerce-out": "o", "lr": 0.1}
    assert party_run_config("social", config) == {"social-path": "s.csv", "lr": 0.1}
    assert party_run_config("ecommerce", config) == {
        "ecommerce-path": "e.csv",
        "ecommerce-out": "o",
        "lr": 0.1,
    }


def test_factory_resolution() -> None:
    register_party_factory("test-echo", echo_party_factory)
    assert resolve_party_factory("test-echo") is echo_party_factory
    assert resolve_party_factory("fedads.flower.testing:echo_party_factory") is echo_party_factory
    with pytest.raises(InputError, match="not registered"):
        resolve_party_factory("nope")
    with pytest.raises(InputError, match="cannot import"):
        resolve_party_factory("fedads.no_such_module:f")
    with pytest.raises(InputError, match="no attribute"):
        resolve_party_factory("fedads.flower.testing:nope")


@pytest.mark.parametrize("store", ["file", "file-behind", "context"])
def test_state_survives_new_process_per_message(
    tmp_path: Path, task_identity: None, store: str
) -> None:
    grid = make_grid(
        tmp_path, config={"state-store": store, "echo-state-bytes": 4000}, forget_cache=True
    )
    transport = FlowerTransport.connect(grid, timeout_s=5.0, node_wait_s=5.0)  # type: ignore[arg-type]
    assert transport.party_nodes == {"social": SOCIAL_NODE, "ecommerce": ECOMMERCE_NODE}
    for i in range(1, 6):
        replies = transport.send_all(
            {p: Envelope(ECHO, {"x": np.full(3, i)}) for p in ("social", "ecommerce")}
        )
        assert {p: r.meta["counter"] for p, r in replies.items()} == {"social": i, "ecommerce": i}
    transport.close()
    stats = transport.party_stats["social"]
    assert stats["messages"] == 5 and stats["restores"] >= 5 and stats["seq"] == 5
    # close removed the checkpoints
    assert not list((tmp_path / "state").rglob("*.npz"))


def test_file_behind_restore_waits_for_the_other_process_write(tmp_path: Path) -> None:
    """A restore in another process waits (bounded) until the file holds the expected sequence;
    the synchronous ``file`` store refuses a stale file at once."""
    context = Context(run_id=3, node_id=5, node_config={}, state=RecordDict(), run_config={})
    config = {"state-dir": str(tmp_path), "timeout-s": 5.0}
    path = client_app_module._state_file(context, "social", config)
    client_app_module._write_npz(path, {"w": np.zeros(2)}, 1)
    writer = threading.Timer(0.3, client_app_module._write_npz, (path, {"w": np.ones(2)}, 2))
    writer.start()
    with pytest.raises(ProtocolError, match="at sequence 1 but the node expects 2"):
        client_app_module._load_checkpoint({**config, "state-store": "file"}, context, "social", 2)
    state = client_app_module._load_checkpoint(
        {**config, "state-store": "file-behind"}, context, "social", 2
    )
    writer.join()
    np.testing.assert_array_equal(state["w"], np.ones(2))
    with pytest.raises(ProtocolError, match="at sequence 2 but the node expects 3"):
        client_app_module._load_checkpoint(
            {**config, "state-store": "file-behind", "timeout-s": 0.2}, context, "social", 3
        )


def test_transport_counts_traffic_both_ways(tmp_path: Path, task_identity: None) -> None:
    grid = make_grid(tmp_path)
    transport = FlowerTransport.connect(grid, timeout_s=5.0)  # type: ignore[arg-type]
    x = np.zeros(10, dtype=np.float64)  # 80 bytes
    transport.send("social", Envelope(ECHO, {"x": x}))
    transport.send_all({"social": Envelope(ECHO, {"x": x}), "ecommerce": Envelope(ECHO, {"x": x})})
    assert transport.traffic.snapshot() == {
        f"{COORDINATOR}->ecommerce": 80,
        f"{COORDINATOR}->social": 160,
        f"ecommerce->{COORDINATOR}": 80,
        f"social->{COORDINATOR}": 160,
    }
    assert transport.traffic.messages == 6
    assert grid.pulls == 3  # hello, send, send_all: replies were ready at the first check


def test_party_exception_becomes_party_error(tmp_path: Path, task_identity: None) -> None:
    grid = make_grid(tmp_path, config={"echo-fail-role": "ecommerce", "echo-fail-at": 2})
    transport = FlowerTransport.connect(grid, timeout_s=5.0)  # type: ignore[arg-type]
    transport.send("ecommerce", Envelope(ECHO))
    with pytest.raises(PartyError) as info:
        transport.send_all({"social": Envelope(ECHO), "ecommerce": Envelope(ECHO)})
    assert info.value.party == "ecommerce"
    assert "fails on purpose at envelope 2" in info.value.detail
    assert "RuntimeError" in info.value.detail and "testing.py" in info.value.detail
    # the failed call did not advance the party's state: it restarts from the checkpoint
    ctx = grid.contexts[ECOMMERCE_NODE]
    assert ctx.state.config_records["fedads.seq"]["seq"] == 1


# A request the message table forbids: 'forward' may carry only positions (0 bytes: the traffic
# counts of the shared simulation run below stay as they were).
FORBIDDEN = Envelope(msg.FORWARD, {"labels": np.zeros(0, dtype=np.float32)})


class LeakyParty(EchoParty):
    """Answers 'score' with the labels next to the scores: a reply the message table forbids."""

    def handle(self, envelope: Envelope) -> Envelope:
        n = len(envelope.arrays[msg.POSITIONS])
        scores = np.full(n, 0.5, dtype=np.float32)
        return Envelope(msg.SCORE, {msg.SCORES: scores, "labels": np.ones(n, dtype=np.int64)})


def leaky_party_factory(role: str, run_config: dict, node_config: dict) -> LeakyParty:
    return LeakyParty(role, run_config, node_config)


def test_flower_transport_refuses_a_forbidden_request(
    tmp_path: Path, task_identity: None
) -> None:
    grid = make_grid(tmp_path)
    transport = FlowerTransport.connect(grid, timeout_s=5.0)  # type: ignore[arg-type]
    pushed = len(grid.replies) + len(grid.unanswered)
    with pytest.raises(ProtocolError, match=r"coordinator -> social: .*may not carry.*'labels'"):
        transport.send("social", FORBIDDEN)
    assert len(grid.replies) + len(grid.unanswered) == pushed  # nothing was sent
    # with the transport's own check off, the ClientApp refuses it before the party sees it
    transport.check_messages = False
    with pytest.raises(PartyError, match=r"refused a request.*'labels'") as info:
        transport.send("social", FORBIDDEN)
    assert info.value.party == "social"


def test_forbidden_reply_never_leaves_the_party(tmp_path: Path, task_identity: None) -> None:
    adapter = ClientAdapter(leaky_party_factory, {"state-dir": str(tmp_path), "timeout-s": 5.0})
    grid = FakeGrid(adapter, {SOCIAL_NODE: "social", ECOMMERCE_NODE: "ecommerce"})
    transport = FlowerTransport.connect(grid, timeout_s=5.0)  # type: ignore[arg-type]
    request = Envelope(
        msg.SCORE,
        {
            msg.POSITIONS: np.arange(3, dtype=np.int64),
            msg.EMBEDDINGS: np.zeros((3, 2), dtype=np.float32),
        },
    )
    with pytest.raises(PartyError, match=r"reply not sent.*may not carry array 'labels'") as info:
        transport.send("ecommerce", request)
    assert info.value.party == "ecommerce"
    # and if a ClientApp sent one anyway, the transport refuses it on arrival
    leaked = Envelope(msg.SCORE, {msg.SCORES: np.zeros(3, np.float32), "labels": np.ones(3)})
    assert "labels" in str(transport._reply_problem("ecommerce", request, leaked))


def test_a_long_wait_prints_who_is_still_awaited(tmp_path: Path, task_identity: None) -> None:
    grid = make_grid(tmp_path)
    grid.silent = frozenset({SOCIAL_NODE})
    lines: list[str] = []
    transport = FlowerTransport(
        grid,  # type: ignore[arg-type]
        {"social": SOCIAL_NODE, "ecommerce": ECOMMERCE_NODE},
        0.6,
        progress=lines.append,  # type: ignore[arg-type]
    )
    transport.heartbeat_s = 0.1
    with pytest.raises(PartyError, match="social"):
        transport.send_all({p: Envelope(ECHO, {"x": np.zeros(2)}) for p in ("social", "ecommerce")})
    waits = [line for line in lines if "still waiting" in line]
    assert waits, lines
    assert all("for social after" in line and "ecommerce" not in line for line in waits)
    assert waits[0].startswith(f"{ECHO}: ")


def test_silent_party_times_out_and_is_not_contacted_again(
    tmp_path: Path, task_identity: None
) -> None:
    grid = make_grid(tmp_path)
    transport = FlowerTransport(grid, {"social": SOCIAL_NODE, "ecommerce": ECOMMERCE_NODE}, 1.5)  # type: ignore[arg-type]
    grid.silent = frozenset({SOCIAL_NODE})
    with pytest.raises(PartyError, match="no reply to 'echo' within 1.5 s") as info:
        transport.send_all({"social": Envelope(ECHO), "ecommerce": Envelope(ECHO)})
    assert info.value.party == "social"
    assert grid.pulls > 10  # kept checking (every 2 ms) until the 1.5 s timeout
    with pytest.raises(PartyError, match="not reachable any more"):
        transport.send("social", Envelope(ECHO))
    assert transport.send("ecommerce", Envelope(ECHO)).meta["counter"] == 2


def test_party_calls_share_one_thread_until_one_hangs() -> None:
    call = client_app_module._call_with_deadline
    first = call(threading.get_ident, 5.0, "ident")
    assert call(threading.get_ident, 5.0, "ident") == first != threading.get_ident()
    with pytest.raises(ValueError, match="boom"):  # errors come back to the caller
        call(lambda: int("boom"), 5.0, "fail")
    assert call(threading.get_ident, 5.0, "ident") == first  # an error keeps the thread
    release = threading.Event()
    with pytest.raises(client_app_module.PartyTimeout, match="still running after 0.2 s"):
        call(lambda: release.wait(10.0), 0.2, "hang")
    assert call(threading.get_ident, 5.0, "ident") != first  # the hung thread is abandoned
    release.set()


def test_clientapp_abandons_a_hung_party_call(tmp_path: Path, task_identity: None) -> None:
    grid = make_grid(
        tmp_path, config={"echo-sleep-role": "social", "echo-sleep-s": 30.0, "timeout-s": 0.5}
    )
    transport = FlowerTransport.connect(grid, timeout_s=5.0)  # type: ignore[arg-type]
    start = time.perf_counter()
    with pytest.raises(PartyError, match="still running after 0.5 s") as info:
        transport.send("social", Envelope(ECHO))
    assert info.value.party == "social"
    assert time.perf_counter() - start < 5.0


def test_discovery_refuses_two_nodes_with_one_role(tmp_path: Path, task_identity: None) -> None:
    adapter = ClientAdapter(echo_party_factory, {"state-dir": str(tmp_path)})
    grid = FakeGrid(adapter, {1: "social", 2: "social"})
    with pytest.raises(ProtocolError, match="both play 'social'"):
        discover_party_nodes(grid, timeout_s=1.0, node_wait_s=1.0)  # type: ignore[arg-type]


def test_discovery_names_the_party_whose_factory_fails(tmp_path: Path, task_identity: None) -> None:
    def factory(role: str, run_config: dict, node_config: dict) -> EchoParty:
        if role == "ecommerce":
            raise FileNotFoundError("ecommerce.csv")
        return EchoParty(role, run_config, node_config)

    grid = FakeGrid(ClientAdapter(factory, {}), {1: "social", 2: "ecommerce"})
    with pytest.raises(PartyError, match="ecommerce.csv") as info:
        discover_party_nodes(grid, timeout_s=1.0, node_wait_s=1.0)  # type: ignore[arg-type]
    assert info.value.party == "ecommerce"


def test_discovery_waits_boundedly_for_nodes(task_identity: None) -> None:
    grid = FakeGrid(ClientAdapter(echo_party_factory, {}), {1: "social"})
    with pytest.raises(ProtocolError, match="only 1 of 2 SuperNodes"):
        discover_party_nodes(grid, timeout_s=1.0, node_wait_s=0.3)  # type: ignore[arg-type]


def test_result_files_round_trip(tmp_path: Path) -> None:
    result = FederationResult(
        values={"scores": np.arange(3, dtype=np.float32), "n": 3, "name": "x"},
        traffic={"coordinator->social": 12},
        messages=2,
        party_nodes={"social": 2**63 + 5, "ecommerce": 1},
    )
    write_result(tmp_path / "ok", result)
    back = read_result(tmp_path / "ok")
    np.testing.assert_array_equal(back["scores"], result.values["scores"])
    assert back["n"] == 3 and back["name"] == "x" and back.party_nodes == result.party_nodes
    write_error(tmp_path / "bad", PartyError("social", "boom"))
    with pytest.raises(PartyError, match="boom") as info:
        read_result(tmp_path / "bad")
    assert info.value.party == "social"
    with pytest.raises(ProtocolError, match="did not finish"):
        read_result(tmp_path / "missing")


# ----------------------------------------------------------------------------- simulation
# Role discovery waits for Ray's actors; on 2 cores shared with other simulations (load 15-20)
# that took 50-60 s, past the 60 s default. A longer budget costs a healthy run nothing.
NODE_WAIT_S = 180.0
SLOW_START = {"node-wait-s": NODE_WAIT_S}


def _echo_then_forbidden_job(transport: FlowerTransport, run_config: dict) -> dict:
    """``echo_job``, then a forbidden envelope refused by the transport, then by the ClientApp."""
    result = echo_job(transport, run_config)
    for side, check in (("transport", True), ("clientapp", False)):
        transport.check_messages = check
        try:
            transport.send("social", FORBIDDEN)
            result[f"forbidden-{side}"] = "sent"
        except FedadsError as error:
            result[f"forbidden-{side}"] = f"{type(error).__name__}: {error}"
    transport.check_messages = True
    return result


def _process_state() -> dict[str, object]:
    """What a run must leave as it found it: environment, warning filters, logging setup."""
    return {
        "environ": dict(os.environ),
        "filters": list(warnings.filters),
        "handlers": {n: list(logging.getLogger(n).handlers) for n in ("", "fedads", "flwr")},
        "levels": {n: logging.getLogger(n).level for n in ("", "fedads", "flwr")},
    }


@pytest.fixture(scope="module")
def echo_run() -> tuple[FederationResult, float]:
    start = time.perf_counter()
    before = _process_state()
    result = run_federation(
        _echo_then_forbidden_job,
        echo_party_factory,
        {
            "echo-rounds": 5,
            "echo-state-bytes": 1_000_000,
            "social-path": "/data/social.parquet",
            "ecommerce-path": "/data/ecommerce.parquet",
            "node-wait-s": NODE_WAIT_S,
        },
        timeout_s=30.0,
        verbose=False,
    )
    elapsed = time.perf_counter() - start
    after = _process_state()
    result.values["process-state-changes"] = ", ".join(k for k in before if before[k] != after[k])
    if before["environ"] != after["environ"]:
        changed = set(before["environ"].items()) ^ set(after["environ"].items())  # type: ignore[union-attr]
        result.values["process-state-changes"] += f" {sorted(changed)}"
    return result, elapsed


def test_simulation_leaves_environment_warnings_and_logging_as_found(
    echo_run: tuple[FederationResult, float],
) -> None:
    result, _ = echo_run
    assert result["process-state-changes"] == ""


def test_simulation_checks_what_may_cross_on_both_sides(
    echo_run: tuple[FederationResult, float],
) -> None:
    result, _ = echo_run
    assert result["forbidden-transport"].startswith("ProtocolError: coordinator -> social")
    assert "may not carry array 'labels'" in result["forbidden-transport"]
    # sent with the transport's check off: the ClientApp (in a Ray actor) refused it
    assert result["forbidden-clientapp"].startswith("PartyError")
    assert "refused a request" in result["forbidden-clientapp"]
    assert "may not carry array 'labels'" in result["forbidden-clientapp"]


def test_simulation_discovers_both_roles(echo_run: tuple[FederationResult, float]) -> None:
    result, _ = echo_run
    assert set(result.party_nodes) == {"social", "ecommerce"}
    assert result.party_nodes["social"] != result.party_nodes["ecommerce"]


def test_simulation_state_persists_across_messages(
    echo_run: tuple[FederationResult, float],
) -> None:
    result, _ = echo_run
    # 5 concurrent rounds + 1 single send per party; the ClientApp is rebuilt for every message
    for party in ("social", "ecommerce"):
        np.testing.assert_array_equal(result[f"counters-{party}"], np.arange(1, 7))
        stats = result.party_stats[party]
        assert stats["messages"] == 6 and stats["seq"] == 6
        assert stats["restores"] + stats["cache_hits"] == 7  # + the hello


def test_simulation_returns_result_and_counts_traffic(
    echo_run: tuple[FederationResult, float],
) -> None:
    result, elapsed = echo_run
    per_link = 6 * 4 * 4  # 6 envelopes of 4 float32 each way
    assert result.traffic == {
        "coordinator->ecommerce": per_link,
        "coordinator->social": per_link,
        "ecommerce->coordinator": per_link,
        "social->coordinator": per_link,
    }
    # + 1: the forbidden envelope the ClientApp refused (0 bytes; the transport's refusal
    # sent nothing)
    assert result.messages == 25 and result["messages"] == 24
    assert result["round-s"].shape == (5,) and np.all(result["round-s"] < 5.0)
    assert elapsed < 120.0, f"simulation start-up + 12 round trips took {elapsed:.0f} s"


def test_simulation_each_party_sees_only_its_own_path(
    echo_run: tuple[FederationResult, float],
) -> None:
    result, _ = echo_run
    assert result["data-path-social"] == "/data/social.parquet"
    assert result["data-path-ecommerce"] == "/data/ecommerce.parquet"
    assert result["visible-paths-social"] == "social-path"
    assert result["visible-paths-ecommerce"] == "ecommerce-path"


#: What the failing run's job saw before its run failed (the ServerApp runs in a thread of this
#: process, so the job can leave it here).
_HUNG: dict[str, object] = {}


def _hang_then_fail_job(transport: FlowerTransport, run_config: dict) -> dict:
    """An answer from the e-commerce party, then a hung social party (its ``PartyError`` caught
    and kept in :data:`_HUNG`), then the e-commerce party fails on purpose: that ends the run."""
    x = np.zeros(4, dtype=np.float32)
    transport.send("ecommerce", Envelope(ECHO, {"x": x}))
    start = time.perf_counter()
    try:
        transport.send("social", Envelope(ECHO, {"x": x}))  # sleeps 300 s
    except PartyError as error:
        _HUNG.update(party=error.party, detail=error.detail, seconds=time.perf_counter() - start)
    transport.send("ecommerce", Envelope(ECHO, {"x": x}))  # fails at its 2nd envelope
    return {"ended": "without the party error"}


@pytest.fixture(scope="module")
def failing_run() -> dict[str, object]:
    """ONE simulation for both failure paths (a hung party, a failing party): start-up is most
    of a simulation's cost."""
    _HUNG.clear()
    timeout_s = 2.0
    before = _process_state()
    start = time.perf_counter()
    with pytest.raises(PartyError, match="fails on purpose") as info:
        run_federation(
            _hang_then_fail_job,
            echo_party_factory,
            {
                "echo-fail-role": "ecommerce",
                "echo-fail-at": 2,
                "echo-sleep-role": "social",
                "echo-sleep-s": 300.0,
                **SLOW_START,
            },
            timeout_s=timeout_s,
            verbose=False,
        )
    return {
        "error": info.value,
        "elapsed": time.perf_counter() - start,
        "timeout_s": timeout_s,
        "hung": dict(_HUNG),
        "state-unchanged": before == _process_state(),
    }


def test_simulation_party_error_names_the_party(failing_run: dict[str, object]) -> None:
    error = failing_run["error"]
    assert isinstance(error, PartyError) and error.party == "ecommerce"
    # and a failed run, too, leaves the environment, warnings and logging as it found them
    assert failing_run["state-unchanged"]


def test_simulation_hung_party_times_out_boundedly(failing_run: dict[str, object]) -> None:
    hung = failing_run["hung"]
    assert hung, "the hung party's call returned: it did not hang"
    assert hung["party"] == "social"
    assert "within 2 s" in hung["detail"] or "still running after 2 s" in hung["detail"]
    assert hung["seconds"] < 2.0 + 10.0  # the reply timeout, not the party's 300 s sleep
    # start-up (~10-25 s) + timeout + shutdown; far below the party's 300 s sleep
    elapsed = failing_run["elapsed"]
    assert elapsed < 100.0, f"hung party held the simulation for {elapsed:.0f} s"
