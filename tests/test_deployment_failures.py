"""A party process dying in the middle of a deployment run (slow: a real SuperLink).

Its own file (``pytest -n 2 --dist loadfile`` runs it beside tests/test_deployment.py).
"""

from __future__ import annotations

import os
import signal
import threading
import time

import pytest
from _sessions import record_sessions, survivors

from fedads.errors import PartyError
from fedads.flower.deployment import LocalDeployment


@pytest.mark.slow
def test_a_party_process_dying_mid_run_fails_the_run_naming_the_party(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Killed while it handles an envelope: the run fails well within the timeout with an error
    naming the party, and nothing the deployment started survives it."""
    sessions = record_sessions(monkeypatch)
    config = {
        "job": "fedads.flower.testing:echo_job",
        "party-factory": "fedads.flower.testing:echo_party_factory",
        "timeout-s": 120.0,
        "echo-rounds": 30,
        "echo-sleep-role": "social",
        "echo-sleep-s": 2.0,
    }
    killed: list[float] = []
    with LocalDeployment(verbose=False) as deployment:
        victim = deployment.party_procs["social"]
        log = victim.log

        def kill_when_busy() -> None:
            # The party is built at the run's hello; then every echo sleeps 2 s in the party.
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                if "party 'social' built" in log.read_text(errors="replace"):
                    time.sleep(3.0)
                    os.kill(victim.popen.pid, signal.SIGKILL)
                    killed.append(time.monotonic())
                    return
                time.sleep(0.2)

        threading.Thread(target=kill_when_busy, daemon=True).start()
        with pytest.raises(PartyError) as failed:
            deployment.run(config, run_timeout_s=400.0)
        assert killed, "the party process was never killed"
        assert failed.value.party == "social"
        assert time.monotonic() - killed[0] < 60.0  # well within timeout-s (120 s)
    deadline = time.monotonic() + 10.0
    while (left := survivors(sessions)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, left
