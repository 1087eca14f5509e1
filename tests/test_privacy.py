"""Privacy contract over a whole run (PSI + training + scoring): check the bytes that cross.

Every envelope between the coordinator and a party is captured on the wire (the in-process
transport uses the same serialization as the wire). Nothing in them may be a key, a label, the
existing-customer flag or a raw feature column; the social party receives only positions,
blinded PSI values and gradients of shape [batch, embedding_dim].
"""

from __future__ import annotations

import numpy as np

from fedads.federation import FederationSettings, vfl_job
from fedads.protocol import InProcessTransport, ProtocolConfig
from fedads.protocol.runtime import PartyRuntime
from fedads.world import generate_world


def _needles(values: np.ndarray, dtypes: tuple[str, ...], window: int = 16) -> list[bytes]:
    """Byte strings of ``window`` consecutive values, only where they carry enough information
    that a chance match elsewhere is negligible (at least 3 values of the rarer kind)."""
    out = []
    values = np.asarray(values)
    for start in range(0, max(len(values) - window, 1), window):
        chunk = values[start : start + window]
        _, counts = np.unique(chunk, return_counts=True)
        if len(counts) < 2 or np.sort(counts)[-2] < 3:
            continue
        out.extend(chunk.astype(dtype).tobytes() for dtype in dtypes)
    return out


def test_only_protocol_payloads_cross(tmp_path) -> None:
    world = generate_world(n_users=1_500, seed=11)
    social, ecommerce = world.party_tables()
    runtimes = {
        "social": PartyRuntime(social, out_dir=tmp_path / "s"),
        "ecommerce": PartyRuntime(ecommerce, out_dir=tmp_path / "e"),
    }
    captured: list[tuple[str, str, bytes, object]] = []
    transport = InProcessTransport(
        runtimes, capture=lambda s, r, data, env: captured.append((s, r, data, env))
    )
    settings = FederationSettings(
        protocol=ProtocolConfig(mode="efficient", batch_size=128, chunk_batches=4, epochs=1),
        verbose=False,
    )
    result = vfl_job(transport, settings.to_run_config())
    assert result["n_aligned"] > 0 and captured
    # The default PSI backend ran (ristretto255: blinded points of 32 bytes crossed).
    hellos = [env for _, _, _, env in captured if env.kind == "psi_hello"]
    assert {env.meta["backend"] for env in hellos} == {"ristretto255"}
    setups = [env.arrays["points"] for _, _, _, env in captured if env.kind == "psi_setup"]
    assert setups and all(a.dtype == np.uint8 and a.shape[1] == 32 for a in setups)

    rows_e = runtimes["ecommerce"].aligned_rows
    rows_s = runtimes["social"].aligned_rows
    forbidden: list[bytes] = []
    # Binary columns need long windows: short 0/1 runs occur in position arrays by chance.
    binary = ("float32", "float64", "int8")
    forbidden += _needles(ecommerce.labels(rows_e), binary, window=64)
    forbidden += _needles(ecommerce.existing_flags(rows_e), binary, window=64)
    for table, rows in ((ecommerce, rows_e), (social, rows_s)):
        numeric = table.numeric_matrix(rows)
        for j in range(numeric.shape[1]):
            forbidden += _needles(numeric[:, j], ("float32", "float64"))
    keys = [k.encode() for k in list(social.keys()[:200]) + list(ecommerce.keys()[:200])]

    wire = b"".join(data for _, _, data, _ in captured)
    assert len(forbidden) > 100  # the search has material to find
    # The search does find a leak: the positions the coordinator sent are on the wire.
    positions = np.asarray(result["test_positions"][:16], dtype=np.int64).tobytes()
    assert positions in wire
    for needle in forbidden:
        assert needle not in wire
    for key in keys:
        assert key[:12] not in wire

    for _sender, receiver, _, envelope in captured:
        names = {name.lower() for name in envelope.arrays}
        assert not names & {"label", "labels", "is_existing_customer", "existing", "keys"}
        if receiver == "social" and envelope.kind in ("backward", "backward_forward"):
            gradients = envelope.arrays["gradients"]
            assert (
                gradients.ndim == 2 and gradients.shape[1] == settings.protocol.model.embedding_dim
            )
        if receiver == "social":
            for name, array in envelope.arrays.items():
                assert array.dtype in (np.int64, np.float32, np.uint8), (envelope.kind, name)
