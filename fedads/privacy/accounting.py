"""Epsilon of the label defenses: opacus's RDP accounting of a Gaussian mechanism, in closed form.

The mechanism is a plain composition of Gaussian mechanisms without subsampling (every release
includes every row), for which Renyi DP is exact and simple: order ``a`` costs ``a / (2 z^2)`` per
release, and the conversion to ``(epsilon, delta)`` is opacus's ``get_privacy_spent`` (Balle et
al. 2020) over opacus's default orders. Why not call ``opacus.accountants.RDPAccountant`` at run
time: importing any part of opacus runs ``opacus/__init__``, which imports ``torch.distributed``
and scipy.signal, about 3 s of CPU per fresh process (more on a loaded machine) for a dozen lines
of arithmetic. Opacus stays the reference: tests/test_privacy_leakage.py checks this function
against opacus's own ``compute_rdp`` / ``get_privacy_spent``. Google's ``dp-accounting`` 0.6
would pin ``attrs~=23.2`` (a downgrade here) and pull ``dm-tree`` and ``absl``.
"""

from __future__ import annotations

import math

import numpy as np

DEFAULT_DELTA = 1e-5
#: opacus's ``RDPAccountant.DEFAULT_ALPHAS``: the Renyi orders the conversion minimises over.
RDP_ORDERS = np.array([1 + x / 10.0 for x in range(1, 100)] + list(range(12, 64)), dtype=float)


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
    releases = int(releases)
    if releases <= 0:
        return 0.0
    # Gaussian mechanism, no subsampling: RDP at order a is a / (2 z^2) per release, composed
    # by addition (opacus's compute_rdp with q = 1).
    orders = RDP_ORDERS
    rdp = orders * releases / (2.0 * float(noise_multiplier) ** 2)
    epsilons = (
        rdp
        - (math.log(float(delta)) + np.log(orders)) / (orders - 1)
        + np.log((orders - 1) / orders)
    )  # opacus's get_privacy_spent
    return float(np.nanmin(epsilons))
