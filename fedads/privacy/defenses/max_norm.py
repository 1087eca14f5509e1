"""Max-norm alignment (ByteDance Fedlearner's heuristic, as evaluated by Li et al. 2022).

For a batch of gradient rows ``g_i`` (``[b, d]``) with largest norm ``M = max_i ||g_i||``, row ``i``
gets independent isotropic Gaussian noise ``N(0, s_i^2 I_d)`` with
``s_i^2 = strength * (M^2 - ||g_i||^2) / d``, so that at ``strength = 1`` every row's *expected*
squared norm equals ``M^2`` (Fedlearner's rule). ``strength`` scales the added variance.

Guarantee: none formal. It targets the norm attack only (norms are equalized in expectation); the
direction of a row is unchanged in expectation, so direction and spectral attacks are not
addressed by design. No labels are used. Reproducible: the noise comes from the generator the
caller seeds.
"""

from __future__ import annotations

import numpy as np


def max_norm_noise(gradients: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Protected copy of one batch's gradient rows.

    Args:
        gradients: float32 ``[b, d]``, ``dL/dH_s`` rows of one batch.
        strength: variance multiplier ``>= 0`` (1 = Fedlearner's max-norm rule).
        rng: seeded generator (the caller derives it from the run seed and step).

    Returns:
        float32 ``[b, d]``.
    """
    g = np.asarray(gradients, dtype=np.float64)
    squared = np.einsum("ij,ij->i", g, g)
    variance = strength * np.maximum(squared.max(initial=0.0) - squared, 0.0) / max(g.shape[1], 1)
    noise = rng.standard_normal(g.shape) * np.sqrt(variance)[:, None]
    return (g + noise).astype(np.float32)
