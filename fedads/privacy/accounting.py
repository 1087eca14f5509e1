"""Epsilon of the label defenses: a thin wrapper over opacus's RDP accountant.

Why opacus: its accountants (RDP, PRV, GDP) are maintained with Opacus and need only torch, which
fedads already has (installing it adds ``opt_einsum`` only). Google's ``dp-accounting`` 0.6 would
have been the lighter library in principle but pins ``attrs~=23.2`` (a downgrade here) and pulls
``dm-tree`` and ``absl``. The RDP accountant is used (not PRV) because the mechanism is a plain
composition of Gaussian mechanisms without subsampling, for which RDP is tight enough and exact
to compute.
"""

from __future__ import annotations

import math

DEFAULT_DELTA = 1e-5


def gaussian_label_epsilon(
    noise_multiplier: float, releases: int, delta: float = DEFAULT_DELTA
) -> float:
    """``epsilon`` of ``releases`` compositions of a Gaussian mechanism, at ``delta``.

    Args:
        noise_multiplier: noise std over L2 sensitivity (the ``gaussian`` defense: strength / 2).
        releases: how often each label's row is released (epochs).
        delta: the ``delta`` of ``(epsilon, delta)``-DP.

    Returns:
        epsilon (``inf`` when the noise multiplier is 0).
    """
    if noise_multiplier <= 0:
        return math.inf
    from opacus.accountants import RDPAccountant

    accountant = RDPAccountant()
    for _ in range(int(releases)):
        # sample_rate 1: every release includes the row; no amplification by subsampling.
        accountant.step(noise_multiplier=float(noise_multiplier), sample_rate=1.0)
    return float(accountant.get_epsilon(delta=float(delta)))
