"""Label defenses the label party applies before a gradient leaves it: one defense a file.

A defense is configured by a name and one strength (as the CLI and the report name it) and
composed here, in :class:`Defense`. Names and strengths:

============  =========================================================  ===================
name          what it does                                               strength
============  =========================================================  ===================
``none``      nothing: the **undefended** protocol                       ignored
``max-norm``  Fedlearner's max-norm alignment (``max_norm.py``)          variance multiplier
``marvell``   Marvell-style optimized noise (``marvell.py``)             power budget ``s``
``gaussian``  clipped isotropic Gaussian noise, label DP (``gaussian.py``)  noise multiplier
``label-dp``  randomized response on the training labels (``label_dp.py``)  epsilon
============  =========================================================  ===================

Every defense is reproducible: its randomness comes from a generator seeded by the run seed and
the optimizer step (:func:`batch_rng`), so a party rebuilt between messages draws the same noise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from fedads._validation import check_choice, check_in_range
from fedads.privacy.accounting import DEFAULT_DELTA, gaussian_label_epsilon
from fedads.privacy.defenses.gaussian import clipped_gaussian
from fedads.privacy.defenses.label_dp import flip_probability, randomized_response
from fedads.privacy.defenses.marvell import marvell_noise
from fedads.privacy.defenses.max_norm import max_norm_noise

DEFENSES: tuple[str, ...] = ("none", "max-norm", "marvell", "gaussian", "label-dp")
DEFAULT_STRENGTHS: dict[str, float] = {
    "none": 0.0,
    "max-norm": 1.0,
    "marvell": 2.0,
    "gaussian": 1.0,
    "label-dp": 2.0,
}
"""Strength used when none is given (``max-norm`` 1 = Fedlearner's rule; ``marvell`` 2 = the
paper's headline ``s``; ``gaussian`` 1: the default defense, chosen by
``benchmarks/privacy_frontier.py``, see docs/privacy.md)."""

_RNG_TAG = 0x5EC  # separates the defenses' random streams from every other seeded stream


def batch_rng(seed: int, step: int) -> np.random.Generator:
    """The generator of the defense noise of optimizer step ``step`` of a run seeded ``seed``."""
    return np.random.default_rng([_RNG_TAG, int(seed), int(step)])


@dataclass(frozen=True)
class Defense:
    """A label defense by name and strength (validated on construction).

    Attributes:
        name: one of :data:`DEFENSES`.
        strength: the defense's one parameter (``None``: :data:`DEFAULT_STRENGTHS`).
    """

    name: str = "none"
    strength: float | None = None

    def __post_init__(self) -> None:
        check_choice("defense", "defense", self.name, DEFENSES)
        if self.strength is not None:
            low_inclusive = self.name not in ("gaussian", "label-dp")
            check_in_range(
                "defense",
                "defense_strength",
                self.strength,
                0.0,
                math.inf,
                low_inclusive=low_inclusive,
            )

    @property
    def value(self) -> float:
        """The strength in effect."""
        return float(DEFAULT_STRENGTHS[self.name] if self.strength is None else self.strength)

    def train_labels(self, labels: np.ndarray, seed: int) -> np.ndarray:
        """The labels the party trains on: randomized for ``label-dp``, else ``labels``."""
        if self.name != "label-dp":
            return labels
        return randomized_response(labels, self.value, np.random.default_rng([_RNG_TAG, seed, 1]))

    def protect(
        self,
        gradients: np.ndarray,
        labels: np.ndarray,
        probabilities: np.ndarray,
        seed: int,
        step: int,
    ) -> np.ndarray:
        """The rows of one batch as they may leave the label party (float32 ``[b, d]``).

        Args:
            gradients: float32 ``[b, d]`` ``dL/dH_s`` of the batch.
            labels: float ``[b]`` the labels the batch was trained with.
            probabilities: float ``[b]`` the party's predictions for the batch.
            seed, step: the run seed and this batch's optimizer step (seed the noise).
        """
        if self.name in ("none", "label-dp"):
            return gradients
        rng = batch_rng(seed, step)
        if self.name == "max-norm":
            return max_norm_noise(gradients, self.value, rng)
        if self.name == "marvell":
            return marvell_noise(gradients, labels, self.value, rng)
        return clipped_gaussian(gradients, probabilities, labels, self.value, rng)

    def epsilon(self, epochs: int, delta: float = DEFAULT_DELTA) -> float | None:
        """Label-DP epsilon per training label over a run of ``epochs`` (``None``: no guarantee).

        ``gaussian``: ``(epsilon, delta)`` of ``epochs`` compositions of a Gaussian mechanism
        with noise multiplier ``strength / 2`` (opacus RDP). ``label-dp``: the strength itself
        (pure, ``delta = 0``; no composition, labels are randomized once).
        """
        if self.name == "gaussian":
            return gaussian_label_epsilon(self.value / 2.0, epochs, delta)
        if self.name == "label-dp":
            return self.value
        return None

    def describe(self, epochs: int) -> dict[str, object]:
        """The report's ``privacy.defense`` block."""
        epsilon = self.epsilon(epochs)
        out: dict[str, object] = {
            "name": self.name,
            "strength": self.value,
            "undefended": self.name == "none",
            "epsilon": None if epsilon is None or not math.isfinite(epsilon) else epsilon,
        }
        if self.name == "gaussian":
            out["delta"] = DEFAULT_DELTA
            out["epsilon_scope"] = (
                f"per training label, {epochs} epochs, direct channel (gradient rows); "
                "RDP accountant (opacus)"
            )
        elif self.name == "label-dp":
            out["delta"] = 0.0
            out["flip_probability"] = flip_probability(self.value)
            out["epsilon_scope"] = "per training label, whole run (randomized response, once)"
        return out


__all__ = [
    "DEFAULT_STRENGTHS",
    "DEFENSES",
    "Defense",
    "batch_rng",
    "clipped_gaussian",
    "marvell_noise",
    "max_norm_noise",
    "randomized_response",
]
