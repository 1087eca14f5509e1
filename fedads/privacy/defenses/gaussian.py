"""Clipped isotropic Gaussian noise per gradient row, with label-DP accounting.

Per batch of ``b`` rows (``[b, d]``), with the label party's predicted probabilities ``p_i``:

1. Clipping bound ``C``: row ``i``'s gradient is ``g_i = (p_i - y_i) J_i`` with
   ``J_i = d(logit_i)/dH_i / b`` not depending on ``y_i``. The label party computes
   ``||J_i|| = ||g_i|| / |p_i - y_i|`` and sets ``C = median_i ||J_i||``: a function of the model
   and the features only, not of any label in the batch (given the model).
2. Each row is clipped to norm ``C`` and gets independent ``N(0, (strength * C)^2 I_d)`` noise.

Guarantee (label DP, direct channel). Changing one label ``y_i`` changes only row ``i`` of the
release, by at most ``2C`` after clipping (both candidate rows lie in the ball of radius ``C``).
Each release of row ``i`` is therefore a Gaussian mechanism with sensitivity ``2C`` and noise
``strength * C``, i.e. noise multiplier ``strength / 2``. A training row is released once per
epoch, so over ``E`` epochs the label ``y_i`` is protected by the ``E``-fold composition of that
mechanism, accounted with opacus's RDP accountant (``fedads.privacy.accounting``; sampling rate 1:
no amplification by subsampling is claimed, since the receiving party knows which rows each
message carries). The resulting ``(epsilon, delta)`` is per label, per training run of ``E``
epochs, against an observer of every gradient message (the social party or the relay).

What it does NOT cover: the label party's own model is trained on the true labels, so the
gradients later released for *other* rows depend on ``y_i`` through that model (the "indirect
channel"); the accounting treats the model at release time as public. A guarantee over the whole
transcript is what ``label_dp`` (randomized response) gives.
"""

from __future__ import annotations

import numpy as np


def clipped_gaussian(
    gradients: np.ndarray,
    probabilities: np.ndarray,
    labels: np.ndarray,
    strength: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Protected copy of one batch's gradient rows.

    Args:
        gradients: float32 ``[b, d]``, ``dL/dH_s`` rows of one batch.
        probabilities: float ``[b]``, the label party's predictions ``p_i`` for those rows.
        labels: float ``[b]`` the labels the gradients were computed with (only to recover
            ``||J_i||``; ``C`` does not depend on them).
        strength: noise multiplier ``sigma > 0`` (noise std ``sigma * C``).
        rng: seeded generator.

    Returns:
        float32 ``[b, d]``.
    """
    g = np.asarray(gradients, dtype=np.float64)
    norms = np.linalg.norm(g, axis=1)
    residual = np.abs(np.asarray(probabilities, np.float64) - np.asarray(labels, np.float64))
    jacobian_norms = norms / np.maximum(residual, 1e-12)
    clip = float(np.median(jacobian_norms)) if len(jacobian_norms) else 0.0
    scale = np.minimum(1.0, clip / np.maximum(norms, 1e-30))
    clipped = g * scale[:, None]
    return (clipped + rng.standard_normal(g.shape) * (strength * clip)).astype(np.float32)
