"""Norm scoring: a row's gradient norm as its label score (Li et al. 2022, "norm attack").

Why it works: for the binary cross-entropy the gradient a row sends back is
``dL/dH_i = (p_i - y_i) * dlogit_i/dH_i / m``. Once the model predicts near the (low) base rate,
``|p_i - y_i|`` is about ``1 - p`` for a converter and ``p`` for everyone else, so converters have
far larger gradients. The attacker assumes the positive class is the minority (true for
conversions), so "larger norm = positive" needs no label knowledge.
"""

from __future__ import annotations

import numpy as np


def norm_scores(gradients: np.ndarray, batch_size: int) -> np.ndarray:
    """Per-row label scores from the received gradients.

    Args:
        gradients: float ``[m, d]``, the gradient rows of one message (``m`` rows, ``B`` batches of
            ``batch_size`` rows, the last may be shorter) exactly as the party received them.
        batch_size: rows per batch (unused: the norm is per row; kept for the common signature).

    Returns:
        float64 ``[m]``: the L2 norm of each row (higher = more likely a converter).
    """
    del batch_size
    return np.linalg.norm(np.asarray(gradients, dtype=np.float64), axis=1)
