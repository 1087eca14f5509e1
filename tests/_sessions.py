"""Which processes a local deployment started, and whether any of them (or their children) live.

``LocalDeployment`` starts every process in its own session, so a process it started, and any
child that process spawned in that session, has one of those session ids until it exits. Flower's
SuperExec starts a session of its own (and its ``flwr-serverapp`` / ``flwr-clientapp`` with it):
those are found by the ``FLWR_HOME`` they inherit, one of the homes the deployment handed out.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fedads.flower import deployment

#: ``FLWR_HOME`` of every process recorded (inherited by everything it starts)
_HOMES: set[str] = set()


def record_sessions(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the pid (= session id) of every process a LocalDeployment starts from now on."""
    started: list[int] = []
    original = deployment._Process

    class Recording(original):  # type: ignore[misc, valid-type]
        def __init__(self, name: str, cmd: list[str], env: dict[str, str], log: Any) -> None:
            super().__init__(name, cmd, env, log)
            started.append(self.popen.pid)
            _HOMES.add(env["FLWR_HOME"])

    monkeypatch.setattr(deployment, "_Process", Recording)
    return started


def _processes() -> Iterator[tuple[int, str, int, str, str]]:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
            environ = (stat.parent / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        home = next((v[10:].decode() for v in environ if v.startswith(b"FLWR_HOME=")), "")
        fields = text.rsplit(")", 1)[1].split()
        yield int(stat.parent.name), fields[0], int(fields[3]), cmdline, home


def survivors(sessions: list[int]) -> list[str]:
    """Live (not zombie) processes in any of ``sessions``, or with the ``FLWR_HOME`` of a
    recorded process, as ``"pid cmdline"``."""
    wanted = set(sessions)
    return [
        f"{pid} {cmd[:160]}"
        for pid, state, sid, cmd, home in _processes()
        if (sid in wanted or home in _HOMES) and state != "Z"
    ]
