"""Spectral scoring: projection on the batch's top singular vector, oriented without labels.

Why it works: the gradients of a batch are ``(p_i - y_i)`` times similar Jacobians, so the batch
matrix is close to rank one plus a label-dependent sign: the top right singular vector ``v`` of
the ``[b, d]`` batch is the common direction and the sign of ``g_i . v`` separates the classes
(cf. the spectral attack of Sun et al., "Label leakage from gradients in split learning", and the
SVD view of Li et al. 2022).

Orientation without labels: the singular vector's sign is arbitrary, so the attacker calls the
*smaller* side (fewer rows with that sign of projection) positive: conversions are the minority.
The score is the oriented projection divided by the batch's largest absolute projection, so
scores of different batches are on one scale (``[-1, 1]``). The hard guess "score > 0" is the
minority side.
"""

from __future__ import annotations

import numpy as np


def spectral_scores(gradients: np.ndarray, batch_size: int) -> np.ndarray:
    """Per-row label scores from the sign of the projection on each batch's top singular vector.

    Args:
        gradients: float ``[m, d]`` received gradient rows (``B`` batches of ``batch_size`` rows,
            the last may be shorter).
        batch_size: rows per batch; each batch gets its own singular vector and orientation.

    Returns:
        float64 ``[m]`` in ``[-1, 1]`` (higher = more likely a converter; ``> 0``: minority side).
    """
    g = np.asarray(gradients, dtype=np.float64)
    out = np.zeros(g.shape[0], dtype=np.float64)
    for start in range(0, g.shape[0], max(int(batch_size), 1)):
        stop = min(start + batch_size, g.shape[0])
        batch = g[start:stop]
        if not np.any(batch):
            continue
        # The top right singular vector of [b, d] is the top eigenvector of the d x d Gram
        # matrix: much cheaper than an SVD of the batch when b >> d.
        _, vectors = np.linalg.eigh(batch.T @ batch)
        projection = batch @ vectors[:, -1]
        positive = projection > 0
        # Minority side = converters; ties (equal sides) keep the eigensolver's sign.
        sign = 1.0 if positive.sum() <= (~positive).sum() else -1.0
        peak = float(np.max(np.abs(projection)))
        out[start:stop] = sign * projection / (peak if peak > 0 else 1.0)
    return out
