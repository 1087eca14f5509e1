"""The deployment engine end to end: ``flwr run`` on a local SuperLink and two SuperNodes.

One deployment serves two runs: the split model trained through it (the same scores as
in-process), then a run whose party process is killed (a ``PartyError`` naming the party, well
within the timeout). Sharing the deployment saves a whole SuperLink / SuperNode / party-process
start-up (tests/test_deployment_failures.py used to start its own).

Its own file, so that a parallel run (``pytest -n 2``, the Makefile) starts this long case on
one worker while the other works through the rest.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _sessions import record_sessions, survivors

from fedads.errors import PartyError
from fedads.federation import FederationSettings, run_federated
from fedads.flower.deployment import LocalDeployment
from fedads.flower.result import FederationResult
from fedads.protocol import ProtocolConfig
from fedads.world import WorldConfig, generate_world

BUILT = "party 'social' built"


def _outputs(deployment: LocalDeployment) -> dict[str, float]:
    """Each file in the parties' output folders -> its modification time."""
    files: dict[str, float] = {}
    for party, config in deployment.node_configs.items():
        out = config.get(f"{party}-out")
        for path in Path(out).rglob("*") if out else ():
            files[str(path)] = path.stat().st_mtime
    return files


def _run_killing_social(
    deployment: LocalDeployment, run: Any, run_config: dict[str, Any], kwargs: dict[str, Any]
) -> dict[str, Any]:
    """A second run on the same deployment; the social party process is SIGKILLed once it has
    built the party for this run. Returns the error raised and when the kill happened."""
    victim = deployment.party_procs["social"]
    built_before = victim.log.read_text(errors="replace").count(BUILT)
    killed: list[float] = []

    def kill_when_built() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            if victim.log.read_text(errors="replace").count(BUILT) > built_before:
                os.kill(victim.popen.pid, signal.SIGKILL)
                killed.append(time.monotonic())
                return
            time.sleep(0.05)

    threading.Thread(target=kill_when_built, daemon=True).start()
    with pytest.raises(PartyError) as failed:
        run(deployment, run_config, **kwargs)
    return {"error": failed.value, "killed": killed, "raised": time.monotonic()}


@pytest.mark.slow
def test_deployment_engine_trains_the_split_model_and_a_killed_party_fails_the_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``flwr run`` on a local SuperLink + 2 SuperNodes (loopback, TLS, SuperNode auth, role
    proofs: the defaults), the same apps and job as the other engines.

    Run 1 (``run_federated(backend="deployment")``): each party's table path goes only into its
    own SuperNode's node config; each party lives in its own long-lived party process, reached
    through the thin forwarding ClientApp. The scores equal the in-process run's. The alignment
    is the in-process run's, reused (PSI through Flower is covered by the simulation tests; the
    deployment relays opaque envelopes whatever their kind): 11 round trips instead of 14, each
    costing at least Flower's 3 s SuperNode idle sleep + its 0.5 s reply poll + one
    ``flwr-clientapp`` start (docs/performance.md).

    Run 2, on the same deployment (before it is torn down): the social party process is killed
    just after it built its party; the run fails with a ``PartyError`` naming ``social`` well
    within the timeout, and leaves the parties' outputs of run 1 alone. Nothing the deployment
    started may outlive it.
    """
    sessions = record_sessions(monkeypatch)
    world = generate_world(WorldConfig(n_users=1_500, seed=5))
    social, ecommerce = world.party_tables()
    protocol = ProtocolConfig(mode="efficient", batch_size=256, chunk_batches=16, epochs=1, seed=5)
    settings = FederationSettings(protocol=protocol, split_seed=5, verbose=False)
    reference = run_federated(social, ecommerce, settings, backend="inprocess")

    original_run = LocalDeployment.run
    second: dict[str, Any] = {}

    def run_then_kill_a_party(
        self: LocalDeployment, run_config: dict[str, Any], **kwargs: Any
    ) -> FederationResult:
        result = original_run(self, run_config, **kwargs)
        assert len(sessions) == 6, sessions  # SuperLink, 2 party procs, 2 SuperNodes, flwr run
        outputs = _outputs(self)
        assert outputs, "the parties wrote no outputs"
        second.update(_run_killing_social(self, original_run, run_config, kwargs))
        second["outputs_kept"] = _outputs(self) == outputs
        return result

    monkeypatch.setattr(LocalDeployment, "run", run_then_kill_a_party)
    start = time.perf_counter()
    run = run_federated(
        social, ecommerce, settings, backend="deployment", timeout_s=120.0, alignment=reference
    )
    elapsed = time.perf_counter() - start
    # run 1: the split model, trained through the deployment
    assert run.values["n_aligned"] == reference.values["n_aligned"] > 0
    np.testing.assert_array_equal(run.ecommerce_rows, reference.ecommerce_rows)
    assert np.isfinite(run.values["epoch_losses"]).all()
    scores = np.asarray(run.values["scores"])
    assert scores.std() > 0 and ((scores > 0) & (scores < 1)).all()
    np.testing.assert_allclose(scores, reference.values["scores"], rtol=1e-5)
    assert run.traffic["social->coordinator"] > 0
    # run 2: the killed party process fails the run, naming the party, at once
    assert second["killed"], "the party process was never killed"
    assert second["error"].party == "social"
    assert second["raised"] - second["killed"][0] < 30.0  # well within timeout-s (120 s)
    assert second["outputs_kept"]
    assert len(sessions) == 7, sessions  # + the second flwr run
    print(
        f"deployment: two runs and teardown in {elapsed:.1f} s; the killed party reported "
        f"{second['raised'] - second['killed'][0]:.2f} s after the kill"
    )
    deadline = time.monotonic() + 10.0  # a just-killed group may take a moment to vanish
    while (left := survivors(sessions)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, left
