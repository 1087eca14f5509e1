"""Label-inference attacks on received gradients: one attack a file, one signature.

Each attack is a pure function ``scores(gradients [m, d], batch_size) -> float64 [m]`` of the
arrays a party received (numpy only, no labels, no sender internals): higher means "more likely a
converter". :data:`ATTACKS` maps the names the report uses to the functions. Only the harness,
which knows the true labels, turns scores into leak AUCs (:mod:`fedads.privacy.leakage`).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fedads.privacy.attacks.direction import direction_scores
from fedads.privacy.attacks.norm import norm_scores
from fedads.privacy.attacks.spectral import spectral_scores

Attack = Callable[[np.ndarray, int], np.ndarray]

ATTACKS: dict[str, Attack] = {
    "norm": norm_scores,
    "direction": direction_scores,
    "spectral": spectral_scores,
}
"""Attack name -> scoring function, in report order."""


def run_attacks(gradients: np.ndarray, batch_size: int) -> dict[str, np.ndarray]:
    """Every attack's per-row scores (float32 ``[m]`` each) on one message's gradient rows."""
    return {
        name: np.asarray(attack(gradients, batch_size), dtype=np.float32)
        for name, attack in ATTACKS.items()
    }


__all__ = ["ATTACKS", "Attack", "direction_scores", "norm_scores", "run_attacks", "spectral_scores"]
