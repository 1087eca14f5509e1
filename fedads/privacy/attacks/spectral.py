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
    size = max(int(batch_size), 1)
    full = (g.shape[0] // size) * size
    if full:  # all full batches at once: [n_batches, size, d]
        out[:full] = _oriented(g[:full].reshape(-1, size, g.shape[1])).ravel()
    if full < g.shape[0]:
        out[full:] = _oriented(g[None, full:])[0]
    return out


def _oriented(batches: np.ndarray) -> np.ndarray:
    """Oriented, scaled projections ``[n, b]`` of a stack of batches ``[n, b, d]``."""
    # The top right singular vector of [b, d] is the top eigenvector of the d x d Gram matrix:
    # much cheaper than an SVD of the batch when b >> d.
    _, vectors = np.linalg.eigh(np.einsum("nbi,nbj->nij", batches, batches))
    projection = np.einsum("nbd,nd->nb", batches, vectors[:, :, -1])
    positive = (projection > 0).sum(axis=1)
    # Minority side = converters; ties (equal sides) keep the eigensolver's sign.
    sign = np.where(positive <= projection.shape[1] - positive, 1.0, -1.0)
    peak = np.abs(projection).max(axis=1)
    return sign[:, None] * projection / np.where(peak > 0, peak, 1.0)[:, None]
