"""Direction (cosine) scoring without prior knowledge (after Li et al. 2022, "cosine attack").

Why it works: ``dL/dH_i = (p_i - y_i) * dlogit_i/dH_i``; the Jacobians ``dlogit_i/dH_i`` of one
batch point roughly the same way, and the sign of ``p_i - y_i`` is negative for converters and
positive for everyone else, so the gradients of a batch split into two opposite cones by label.

Li et al. give the attacker one known positive per batch as the reference. Here the attacker knows
no label: the reference of each batch is its largest-norm row, which is a converter whenever the
norm attack's premise holds (positives are the minority and have larger gradients). The score of a
row is its cosine similarity to that reference.
"""

from __future__ import annotations

import numpy as np


def direction_scores(gradients: np.ndarray, batch_size: int) -> np.ndarray:
    """Per-row label scores: cosine to the largest-norm row of the row's batch.

    Args:
        gradients: float ``[m, d]`` received gradient rows (``B`` batches of ``batch_size`` rows,
            the last may be shorter).
        batch_size: rows per batch; each batch gets its own reference row.

    Returns:
        float64 ``[m]`` in ``[-1, 1]`` (higher = more likely a converter).
    """
    g = np.asarray(gradients, dtype=np.float64)
    out = np.empty(g.shape[0], dtype=np.float64)
    norms = np.linalg.norm(g, axis=1)
    unit = g / np.maximum(norms, 1e-30)[:, None]
    size = max(int(batch_size), 1)
    full = (g.shape[0] // size) * size
    if full:  # all full batches at once: [n_batches, size, d]
        stacked, stacked_norms = unit[:full].reshape(-1, size, g.shape[1]), norms[:full]
        best = stacked_norms.reshape(-1, size).argmax(axis=1)
        references = stacked[np.arange(len(best)), best]  # [n_batches, d]
        out[:full] = np.einsum("bsd,bd->bs", stacked, references).ravel()
    if full < g.shape[0]:
        reference = unit[full + int(np.argmax(norms[full:]))]
        out[full:] = unit[full:] @ reference
    return out
