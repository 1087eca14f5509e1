"""A tiny echo/counter party and a job that drives it: the adapter's test fixture and demo.

Nothing here trains anything. ``EchoParty`` counts the envelopes it handled (state that must
survive the ClientApp being rebuilt per message), echoes the array it got, and can be told by run
config to fail or to sleep, so tests can exercise error and timeout paths:

* ``echo-rounds`` (int, 5): rounds of ``send_all`` the job runs;
* ``echo-size`` (int, 4): floats in each echoed array;
* ``echo-state-bytes`` (int, 0): extra bytes of party state (to measure state persistence);
* ``echo-fail-role`` / ``echo-fail-at`` (str, int): that party raises on its n-th envelope;
* ``echo-sleep-role`` / ``echo-sleep-s`` (str, float): that party sleeps before answering.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from fedads.flower.config import PARTIES, JobResult, RunConfig, party_data_path
from fedads.protocol.envelope import Envelope
from fedads.protocol.transport import Transport

ECHO = "echo"


class EchoParty:
    """Counts envelopes, echoes ``arrays["x"]``; state = counter (+ optional padding)."""

    def __init__(self, name: str, run_config: RunConfig, node_config: RunConfig) -> None:
        self.name = name
        self.data_path = party_data_path(name, run_config, node_config)
        # What this party could read: used by tests to check the other party's path is hidden.
        self.visible_paths = sorted(k for k, v in run_config.items() if k.endswith("-path") and v)
        self.counter = 0
        state_bytes = int(run_config.get("echo-state-bytes", 0))
        self.padding = np.zeros(state_bytes // 4, dtype=np.float32)
        self.fail_at = (
            int(run_config.get("echo-fail-at", 1))
            if run_config.get("echo-fail-role") == name
            else 0
        )
        self.sleep_s = (
            float(run_config.get("echo-sleep-s", 0.0))
            if run_config.get("echo-sleep-role") == name
            else 0.0
        )

    def handle(self, envelope: Envelope) -> Envelope:
        if envelope.kind != ECHO:
            raise ValueError(
                f"EchoParty {self.name!r} only answers {ECHO!r}, got {envelope.kind!r}"
            )
        self.counter += 1
        if self.fail_at and self.counter >= self.fail_at:
            raise RuntimeError(
                f"echo party {self.name!r} fails on purpose at envelope {self.counter}"
            )
        if self.sleep_s:
            time.sleep(self.sleep_s)
        return Envelope(
            kind=ECHO,
            arrays={"x": np.asarray(envelope.arrays.get("x", np.zeros(0))).copy()},
            meta={
                "party": self.name,
                "counter": self.counter,
                "pid": os.getpid(),
                "data-path": self.data_path,
                "visible-paths": ",".join(self.visible_paths),
            },
        )

    def get_state(self) -> dict[str, np.ndarray]:
        return {"counter": np.array([self.counter], dtype=np.int64), "padding": self.padding}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        self.counter = int(state["counter"][0])
        self.padding = np.asarray(state["padding"], dtype=np.float32)


def echo_party_factory(role: str, run_config: RunConfig, node_config: RunConfig) -> EchoParty:
    """Factory of :class:`EchoParty`: ``"fedads.flower.testing:echo_party_factory"``."""
    return EchoParty(role, run_config, node_config)


def echo_job(transport: Transport, run_config: RunConfig) -> JobResult:
    """Run ``echo-rounds`` concurrent round trips to both parties, then one ``send`` per party.

    Returns per-party counters and pids, what each party saw of the data paths, the wall time
    of each round trip and the traffic counted by the transport.
    """
    rounds = int(run_config.get("echo-rounds", 5))
    size = int(run_config.get("echo-size", 4))
    counters: dict[str, list[int]] = {p: [] for p in PARTIES}
    pids: dict[str, list[int]] = {p: [] for p in PARTIES}
    last: dict[str, Envelope] = {}
    round_s: list[float] = []
    for i in range(rounds):
        x = np.full(size, float(i), dtype=np.float32)
        start = time.perf_counter()
        replies = transport.send_all({p: Envelope(ECHO, {"x": x}) for p in PARTIES})
        round_s.append(time.perf_counter() - start)
        for party, reply in replies.items():
            if reply.meta.get("party") != party or not np.array_equal(reply.arrays["x"], x):
                raise AssertionError(f"{party!r} answered {reply.meta} to round {i}")
            counters[party].append(int(reply.meta["counter"]))
            pids[party].append(int(reply.meta["pid"]))
            last[party] = reply
    single_s: list[float] = []
    for party in PARTIES:
        start = time.perf_counter()
        reply = transport.send(party, Envelope(ECHO, {"x": np.zeros(size, dtype=np.float32)}))
        single_s.append(time.perf_counter() - start)
        counters[party].append(int(reply.meta["counter"]))
        pids[party].append(int(reply.meta["pid"]))
        last[party] = reply
    result: dict[str, Any] = {
        "round-s": np.array(round_s),
        "single-s": np.array(single_s),
        "traffic-bytes": transport.traffic.total(),
        "messages": transport.traffic.messages,
    }
    for party in PARTIES:
        result[f"counters-{party}"] = np.array(counters[party], dtype=np.int64)
        result[f"pids-{party}"] = np.array(pids[party], dtype=np.int64)
        result[f"data-path-{party}"] = str(last[party].meta["data-path"]) if party in last else ""
        result[f"visible-paths-{party}"] = (
            str(last[party].meta["visible-paths"]) if party in last else ""
        )
    return result
