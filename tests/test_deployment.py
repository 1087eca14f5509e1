"""The deployment engine end to end: ``flwr run`` on a local SuperLink and two SuperNodes.

Its own file, so that a parallel run (``pytest -n 2``, the Makefile) starts this long case on
one worker while the other works through the rest.
"""

from __future__ import annotations

import time

import numpy as np
import pytest
from _sessions import record_sessions, survivors

from fedads.federation import FederationSettings, run_federated
from fedads.protocol import ProtocolConfig
from fedads.world import WorldConfig, generate_world


@pytest.mark.slow
def test_deployment_engine_trains_the_split_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """``flwr run`` on a local SuperLink + 2 SuperNodes (loopback), the same apps and job.

    Each party's table path goes only into its own SuperNode's node config; each party lives in
    its own long-lived party process, reached through the thin forwarding ClientApp. One chunk
    per epoch keeps the message count small (14 round trips, PSI included): a round trip costs
    at least Flower's 3 s SuperNode idle sleep + its 0.5 s reply poll + one `flwr-clientapp`
    start (docs/performance.md). Nothing it started may outlive it.
    """
    sessions = record_sessions(monkeypatch)
    world = generate_world(WorldConfig(n_users=1_500, seed=5))
    social, ecommerce = world.party_tables()
    protocol = ProtocolConfig(mode="efficient", batch_size=256, chunk_batches=16, epochs=1, seed=5)
    settings = FederationSettings(protocol=protocol, split_seed=5, verbose=False)
    start = time.perf_counter()
    run = run_federated(social, ecommerce, settings, backend="deployment", timeout_s=120.0)
    elapsed = time.perf_counter() - start
    reference = run_federated(social, ecommerce, settings, backend="inprocess")
    assert run.values["n_aligned"] == reference.values["n_aligned"] > 0
    assert np.isfinite(run.values["epoch_losses"]).all()
    scores = np.asarray(run.values["scores"])
    assert scores.std() > 0 and ((scores > 0) & (scores < 1)).all()
    np.testing.assert_allclose(scores, reference.values["scores"], rtol=1e-5)
    assert run.traffic["social->coordinator"] > 0
    assert len(sessions) == 6, sessions  # SuperLink, 2 party processes, 2 SuperNodes, flwr run
    print(f"deployment run: {elapsed:.1f} s")
    deadline = time.monotonic() + 10.0  # a just-killed group may take a moment to vanish
    while (left := survivors(sessions)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not left, left
