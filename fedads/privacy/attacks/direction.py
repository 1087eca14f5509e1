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
    for start in range(0, g.shape[0], max(int(batch_size), 1)):
        stop = min(start + batch_size, g.shape[0])
        reference = unit[start + int(np.argmax(norms[start:stop]))]
        out[start:stop] = unit[start:stop] @ reference
    return out
