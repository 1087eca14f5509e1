"""Label DP by randomized response (Warner 1965; as used for deep learning by Ghazi et al. 2021).

Before training, the label party replaces each training label ``y_i`` by ``y~_i``: kept with
probability ``e^eps / (1 + e^eps)``, flipped otherwise, drawn once per row from the run seed. The
party then trains (its own bottom and top, and the gradients it sends) on ``y~`` only.

Guarantee: ``eps``-label-DP, pure (``delta = 0``), per training label, for the whole run: every
gradient message of every epoch, the label party's trained model, and everything computed from
them (the scores of held-out users) are post-processing of ``y~``, and randomized response is
``eps``-DP for one binary label. The labels are drawn once, so epochs do not compose. Not covered:
the ``evaluate`` reply (a validation-loss scalar computed on true labels of *validation* rows, not
training rows), which the default job never requests.
"""

from __future__ import annotations

import numpy as np


def flip_probability(epsilon: float) -> float:
    """Probability ``1 / (1 + e^eps)`` that randomized response flips a binary label."""
    return float(1.0 / (1.0 + np.exp(float(epsilon))))


def randomized_response(labels: np.ndarray, epsilon: float, rng: np.random.Generator) -> np.ndarray:
    """``labels`` (float ``[n]`` in {0, 1}) with each flipped with :func:`flip_probability`.

    Returns:
        float32 ``[n]``.
    """
    y = np.asarray(labels, dtype=np.float32)
    flip = rng.random(y.shape[0]) < flip_probability(epsilon)
    return np.where(flip, 1.0 - y, y).astype(np.float32)
