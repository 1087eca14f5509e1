"""The deployment engine's party process and its thin forwarding ClientApp, without Flower servers.

``fedads.flower.party_process.PartyServer`` runs on a thread here (or as a real process where
its death is the point); messages reach it through ``fedads.flower.forwarder.forward_message``
exactly as a ``flwr-clientapp`` process would send them, and the coordinator side is the real
``FlowerTransport`` over a grid that calls the forwarder directly. The end-to-end runs on a real
SuperLink are in tests/test_deployment.py (slow).
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import tomli_w
from flwr.app import Context, Message, RecordDict
from flwr.supercore.task_identity import TaskIdentity

from fedads.errors import PartyError, ProtocolError
from fedads.flower.codec import envelope_to_content
from fedads.flower.config import PARTIES
from fedads.flower.forwarder import forward_message
from fedads.flower.party_process import PartyServer
from fedads.flower.party_wire import PARTY_SOCKET_KEY, SOCKET_NAME, forward, socket_path
from fedads.flower.testing import ECHO, echo_job
from fedads.flower.transport import FlowerTransport, discover_party_nodes
from fedads.protocol.envelope import Envelope

ROOT = Path(__file__).resolve().parents[1]
ECHO_FACTORY = "fedads.flower.testing:echo_party_factory"
NODES = {"social": 11, "ecommerce": 22}


@pytest.fixture
def short_dir() -> Iterator[Path]:
    """A short private folder (Unix socket paths are limited to 107 characters)."""
    path = Path(tempfile.mkdtemp(prefix="fa-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def task_identity() -> Iterator[None]:
    """Flower's Message() needs a task identity (set by the engines; not in a bare test)."""
    saved = (TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id)
    TaskIdentity.run_id, TaskIdentity.node_id, TaskIdentity.task_id = 7, 1, 1
    yield
    TaskIdentity._run_id, TaskIdentity._node_id, TaskIdentity._task_id = saved


def node_config(root: Path, party: str) -> dict[str, str]:
    state = root / party / "state"
    return {
        "party": party,
        "state-dir": str(state),
        PARTY_SOCKET_KEY: str(state / SOCKET_NAME),
        f"{party}-path": f"/data/{party}.parquet",
        "party-factory": ECHO_FACTORY,  # a node's own config names its factory, never the run's
    }


@pytest.fixture
def servers(short_dir: Path) -> Iterator[dict[str, PartyServer]]:
    """One PartyServer per party, each serving on its own thread."""
    out: dict[str, PartyServer] = {}
    threads = []
    for party in PARTIES:
        server = PartyServer(node_config(short_dir, party))
        server.bind()
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        out[party] = server
        threads.append(thread)
    yield out
    for server in out.values():
        server.shutdown()
    for thread in threads:
        thread.join(timeout=5)


class ForwardingGrid:
    """A Flower ``Grid`` whose nodes are the forwarder ClientApp, called in this process."""

    def __init__(self, root: Path, run_config: dict[str, object]) -> None:
        self.contexts = {
            node: Context(
                run_id=7,
                node_id=node,
                node_config=node_config(root, party),
                state=RecordDict(),
                run_config=dict(run_config),  # type: ignore[arg-type]
            )
            for party, node in NODES.items()
        }
        self.replies: dict[str, Message] = {}
        self.count = 0

    def get_node_ids(self) -> list[int]:
        return list(self.contexts)

    def push_messages(self, messages: list[Message]) -> list[str]:
        ids = []
        for message in messages:
            self.count += 1
            message_id = f"m{self.count}"
            message.metadata.__dict__["_message_id"] = message_id
            ids.append(message_id)
            context = self.contexts[message.metadata.dst_node_id]
            self.replies[message_id] = forward_message(message, context)
        return ids

    def pull_messages(self, message_ids: set[str]) -> list[Message]:
        return [self.replies.pop(i) for i in list(message_ids) if i in self.replies]


def test_forwarder_imports_neither_torch_nor_ray() -> None:
    """Every message starts a new flwr-clientapp process: it must not pay for torch."""
    code = (
        "import sys, fedads.flower.forwarder; "
        "bad = [m for m in ('torch', 'ray', 'fedads.protocol') if m in sys.modules]; "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_echo_job_through_forwarder_and_party_processes(
    servers: dict[str, PartyServer], short_dir: Path, task_identity: None
) -> None:
    """The party stays live between messages (its counter grows in one pid), and each party
    process sees only its own data path (its own node config)."""
    grid = ForwardingGrid(short_dir, {"timeout-s": 10.0})
    transport = FlowerTransport(grid, discover_party_nodes(grid, 10.0, 10.0), 10.0)  # type: ignore[arg-type]
    values = echo_job(transport, {"echo-rounds": 4})
    transport.close()
    for party in PARTIES:
        assert values[f"counters-{party}"].tolist() == [1, 2, 3, 4, 5]
        assert set(values[f"pids-{party}"].tolist()) == {os.getpid()}
        assert values[f"data-path-{party}"] == f"/data/{party}.parquet"
        other = next(p for p in PARTIES if p != party)
        assert f"{other}-path" not in values[f"visible-paths-{party}"]
        assert transport.party_stats[party]["messages"] == 5
    assert values["traffic-bytes"] > 0


def test_socket_is_private(servers: dict[str, PartyServer]) -> None:
    for server in servers.values():
        assert stat.S_IMODE(server.path.stat().st_mode) == 0o600
        assert stat.S_IMODE(server.path.parent.stat().st_mode) == 0o700


def test_party_process_refuses_the_other_role_and_forbidden_envelopes(
    servers: dict[str, PartyServer],
) -> None:
    path = servers["social"].path
    config = {"timeout-s": 5.0}
    header = {"role": "ecommerce", "run_id": 1, "message_type": "query", "run_config": config}
    answer, _ = forward(path, header, Envelope("hello"), 5.0)
    assert not answer["ok"] and "reached the 'social' party process" in answer["error"]
    header["role"] = "social"
    answer, reply = forward(path, header, Envelope("hello"), 5.0)
    assert answer["ok"] and reply is not None and reply.meta["party"] == "social"
    # A label-party kind sent to the social party never reaches the party.
    header["message_type"] = "train"
    answer, _ = forward(path, header, Envelope("train"), 5.0)
    assert not answer["ok"] and "refused a request" in answer["error"]
    assert answer["error"].startswith("[social]")


def test_party_error_names_the_party_and_drops_it(
    servers: dict[str, PartyServer], short_dir: Path, task_identity: None
) -> None:
    config = {
        "timeout-s": 5.0,
        "echo-fail-role": "ecommerce",
        "echo-fail-at": 2,
    }
    grid = ForwardingGrid(short_dir, config)
    transport = FlowerTransport(grid, discover_party_nodes(grid, 5.0, 5.0), 5.0)  # type: ignore[arg-type]
    x = {"x": np.zeros(3, np.float32)}
    transport.send("ecommerce", Envelope(ECHO, x))
    with pytest.raises(PartyError, match="fails on purpose") as failed:
        transport.send("ecommerce", Envelope(ECHO, x))
    assert failed.value.party == "ecommerce"
    with pytest.raises(PartyError, match="was dropped"):
        transport.send("ecommerce", Envelope(ECHO, x))


def test_forwarder_without_a_party_process_replies_an_error_naming_the_party(
    short_dir: Path, task_identity: None
) -> None:
    context = Context(
        run_id=7,
        node_id=11,
        node_config=node_config(short_dir, "social"),
        state=RecordDict(),
        run_config={"timeout-s": 5.0},
    )
    message = Message(envelope_to_content(Envelope("hello")), 11, "query")
    message.metadata.__dict__["_message_id"] = "m1"
    reply = forward_message(message, context)
    assert reply.has_error()
    assert reply.error.reason.startswith("[social] ProtocolError: party process not reachable")


def test_socket_path_too_long_is_refused() -> None:
    with pytest.raises(ProtocolError, match="more than a Unix socket allows"):
        socket_path({"state-dir": "/" + "x" * 120})
    assert socket_path({"state-dir": "/s"}) == Path("/s/party.sock")


def test_party_process_dying_mid_call_is_reported_at_once(short_dir: Path) -> None:
    """A real party process killed while it handles a message: the waiting forwarder gets an
    error at once (not at the timeout), and the process leaves nothing behind."""
    config_file = short_dir / "social.toml"
    config = node_config(short_dir, "social")
    config_file.write_text(tomli_w.dumps(config))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "fedads.flower.party_process",
            "--node-config",
            str(config_file),
            "--preload",
            "--quiet",
        ],
        env=env,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        path = Path(config[PARTY_SOCKET_KEY])
        deadline = time.monotonic() + 120
        while not path.exists():
            assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
            assert time.monotonic() < deadline, "the party process did not start"
            time.sleep(0.1)
        run_config = {
            "timeout-s": 60.0,
            "echo-sleep-role": "social",
            "echo-sleep-s": 30.0,
        }
        header = {"role": "social", "run_id": 3, "message_type": "query", "run_config": run_config}
        answer, _ = forward(path, header, Envelope("hello"), 60.0)
        assert answer["ok"], answer
        threading.Timer(1.0, lambda: os.kill(proc.pid, signal.SIGKILL)).start()
        start = time.monotonic()
        with pytest.raises(ProtocolError, match="closed the connection without a reply"):
            forward(path, {**header, "message_type": "train"}, Envelope(ECHO), 60.0)
        assert time.monotonic() - start < 15.0
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    with pytest.raises(ProtocolError, match="not reachable"):
        forward(path, header, Envelope("hello"), 5.0)
