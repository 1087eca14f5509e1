"""A real interrupt of a real ``fedads run`` (a subprocess), shared by the reliability and the
resume tests: start the command, wait for a progress line, send the signal, and check what an
interrupt must leave (an exit within seconds, no process the run started, one line, no
traceback)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "data" / "sample"


def cli_environment() -> dict[str, str]:
    env = {**os.environ, "FLWR_TELEMETRY_ENABLED": "0"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *sys.path])
    return env


def sample_run_argv(out: Path, *options: str) -> list[str]:
    """``fedads run`` on the shipped sample, into ``out``, with ``options``."""
    argv = [sys.executable, "-m", "fedads.cli", "run", "--social", str(SAMPLE / "social.csv")]
    return [*argv, "--ecommerce", str(SAMPLE / "ecommerce.csv"), "--key", "key", "--out",
            str(out), *options]  # fmt: skip


def interrupt_at(argv: list[str], stage: str, signum: str) -> tuple[int, list[str], str]:
    """Run ``argv``, send ``signum`` once a progress line contains ``stage``; checks that the
    command ends within 10 s, leaves none of its descendants (Ray's included) and ends on one
    ``fedads: ...`` line without a traceback. Returns (exit code, non-empty stderr lines after
    the signal, that stderr)."""
    process = subprocess.Popen(
        argv,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=cli_environment(),
        # a child of a background job may inherit SIGINT ignored; a user's Ctrl-C is not
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    assert process.stderr is not None
    lines = []
    for line in process.stderr:  # progress lines go to stderr
        lines.append(line)
        if stage in line:
            break
    else:
        pytest.fail(f"the run ended before {stage!r}: {''.join(lines)}")
    started = psutil.Process(process.pid).children(recursive=True)
    process.send_signal(getattr(signal, signum))
    start = time.monotonic()
    rest = process.communicate(timeout=120)[1]
    assert time.monotonic() - start < 10
    _, alive = psutil.wait_procs(started, timeout=10)
    assert not alive, [(p.pid, p.name()) for p in alive]
    tail = [line for line in rest.splitlines() if line.strip()]
    assert tail and tail[-1].startswith("fedads: ") and "Traceback" not in rest, rest
    return process.returncode, tail, rest
