"""Which processes a local deployment started, and whether any of them (or their children) live.

``LocalDeployment`` starts every process in its own session, so a process it started, and any
child that process spawned (SuperExec, ``flwr-serverapp``, ``flwr-clientapp``), has one of those
session ids until it exits.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from fedads.flower import deployment


def record_sessions(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Record the pid (= session id) of every process a LocalDeployment starts from now on."""
    started: list[int] = []
    original = deployment._Process

    class Recording(original):  # type: ignore[misc, valid-type]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            started.append(self.popen.pid)

    monkeypatch.setattr(deployment, "_Process", Recording)
    return started


def _processes() -> Iterator[tuple[int, str, int, str]]:
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
            cmdline = (stat.parent / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = text.rsplit(")", 1)[1].split()
        yield int(stat.parent.name), fields[0], int(fields[3]), cmdline  # pid, state, sid, cmd


def survivors(sessions: list[int]) -> list[str]:
    """Live (not zombie) processes in any of ``sessions``, as ``"pid cmdline"``."""
    wanted = set(sessions)
    return [
        f"{pid} {cmd[:160]}"
        for pid, state, sid, cmd in _processes()
        if sid in wanted and state != "Z"
    ]
