"""PartyRuntime restored from checkpoints on stale replicas (as Flower's Ray actors do)."""

from __future__ import annotations

import numpy as np
import pytest

from fedads.align import coordinate_alignment
from fedads.errors import InputError
from fedads.federation import FederationSettings, vfl_job
from fedads.protocol import InProcessTransport, ProtocolConfig
from fedads.protocol.runtime import SCORES_FILE, PartyRuntime
from fedads.protocol.sealing import fresh_keys
from fedads.world import generate_world


class _TwoReplicas:
    """One role served by two processes' worth of runtimes, as with two Ray actors: each
    message goes to a random replica, which first loads the checkpoint of the last message."""

    def __init__(self, make, seed: int) -> None:
        self.replicas = [make(), make()]
        self.name = self.replicas[0].name
        self.rng = np.random.default_rng(seed)
        self.checkpoint: dict[str, np.ndarray] | None = None

    def handle(self, envelope):
        replica = self.replicas[int(self.rng.integers(2))]
        if self.checkpoint is not None:
            replica.set_state(self.checkpoint)
        reply = replica.handle(envelope)
        self.checkpoint = replica.get_state()
        return reply

    def get_state(self):
        return dict(self.checkpoint or {})

    def set_state(self, state) -> None:
        self.checkpoint = dict(state)


@pytest.mark.parametrize("pipeline", [False, True])
def test_runtime_restored_on_stale_replicas_gives_the_same_run(tmp_path, pipeline: bool) -> None:
    """Reusing a stale runtime and overwriting its state equals one live runtime throughout."""
    world = generate_world(n_users=1_200, seed=12)
    social, ecommerce = world.party_tables()
    settings = FederationSettings(
        protocol=ProtocolConfig(
            mode="efficient", batch_size=128, chunk_batches=3, epochs=2, pipeline=pipeline
        ),
        verbose=False,
    )
    assert FederationSettings.from_run_config(settings.to_run_config()) == settings
    tables = {"social": social, "ecommerce": ecommerce}
    keys = fresh_keys()  # sealed: the channel's session and counters survive the restores too
    live = InProcessTransport(
        {r: PartyRuntime(t, out_dir=tmp_path / r, sealing=keys[r]) for r, t in tables.items()}
    )
    expected = vfl_job(live, settings.to_run_config())
    replicated = InProcessTransport(
        {
            r: _TwoReplicas(
                lambda t=t, r=r: PartyRuntime(t, out_dir=tmp_path / f"{r}2", sealing=keys[r]),
                seed=1,
            )
            for r, t in tables.items()
        }
    )
    got = vfl_job(replicated, settings.to_run_config())
    np.testing.assert_array_equal(got["test_positions"], expected["test_positions"])
    np.testing.assert_allclose(got["epoch_losses"], expected["epoch_losses"], rtol=1e-6)
    # per-user scores stay in the label party's private output
    np.testing.assert_allclose(
        np.load(tmp_path / "ecommerce2" / SCORES_FILE),
        np.load(tmp_path / "ecommerce" / SCORES_FILE),
        rtol=1e-6,
    )


def test_runtime_psi_backend_is_threaded_and_survives_set_state(tmp_path) -> None:
    """The chosen backend is what runs, also after set_state rebuilds the PSI party."""
    world = generate_world(n_users=400, seed=13)
    tables = dict(zip(("social", "ecommerce"), world.party_tables(), strict=True))
    settings = FederationSettings(psi_backend="openmined")
    assert FederationSettings.from_run_config(settings.to_run_config()).psi_backend == "openmined"
    assert FederationSettings().to_run_config()["psi-backend"] == "ristretto255"
    with pytest.raises(InputError, match="psi_backend"):
        FederationSettings(psi_backend="p256").validate()
    with pytest.raises(InputError, match="psi_backend"):
        PartyRuntime(tables["social"], psi_backend="p256")

    hellos: list[object] = []
    replicated = {
        r: _TwoReplicas(lambda t=t: PartyRuntime(t, psi_backend=settings.psi_backend), seed=2)
        for r, t in tables.items()
    }

    def send_all(envelopes):
        replies = {p: replicated[p].handle(e) for p, e in envelopes.items()}
        hellos.extend(r.meta.get("backend") for r in replies.values() if r.kind == "psi_hello")
        return replies

    summary = coordinate_alignment(send_all)
    assert summary.n_aligned > 0 and hellos == ["openmined", "openmined"]
    assert "runtime.aligned_rows" in replicated["social"].checkpoint
