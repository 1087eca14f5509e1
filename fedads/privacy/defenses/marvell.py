"""Marvell-style optimized noise (after Li et al. 2022, "Label Leakage and Protection in Two-party
Split Learning"), in an efficient closed family.

Marvell adds label-dependent Gaussian noise ``N(0, S_1)`` to positive and ``N(0, S_0)`` to negative
gradient rows, choosing ``S_0, S_1`` to minimize the symmetrized KL divergence between the two
classes' perturbed gradient distributions (a bound on any attacker's leak AUC via total
variation), under a noise power budget ``p tr(S_1) + (1 - p) tr(S_0) <= P`` with
``P = strength * ||g1 - g0||^2`` (``g1``, ``g0``: class means of the batch, ``p``: share of
positives). ``strength`` is the paper's ``s``.

What is implemented here, per batch of ``b`` rows ``[b, d]``:

* The class distributions are modelled as ``N(g_k, c_k I)``, with ``c_k`` the class's mean
  per-coordinate variance around its mean in the batch (the paper's point-mass model is
  ``c_k = 0``; keeping ``c_k`` lets the optimum also equalize the two classes' spreads, which is
  what hides gradient norms).
* The covariances are restricted to the family the paper's optimum takes,
  ``S_k = a_k uu^T + b_k (I - uu^T)`` with ``u = (g1 - g0) / ||g1 - g0||``: four scalars.
* The symmetrized KL of ``N(g1, (c_1 I + S_1))`` and ``N(g0, (c_0 I + S_0))`` in that family is
  ``1/2 [A0/A1 + A1/A0 - 2 + D^2 (1/A0 + 1/A1)] + (d-1)/2 [B0/B1 + B1/B0 - 2]`` with
  ``A_k = c_k + a_k``, ``B_k = c_k + b_k``, ``D = ||g1 - g0||``; it is minimized over
  ``a_k, b_k >= 0`` under ``p (a_1 + (d-1) b_1) + (1-p)(a_0 + (d-1) b_0) <= P`` by SLSQP
  (scipy), in units of ``D^2``.
* A batch with one class only (no ``g1 - g0``) gets isotropic noise of power
  ``strength * mean_i ||g_i||^2`` per row.

Guarantee: none formal (as in the paper): the objective bounds the leak of an attacker that sees
one row from the modelled Gaussian classes; real gradient classes are not Gaussian and the model
is fitted per batch. Its effect is measured (docs/privacy.md). Uses the batch's true labels (the
label party holds them); reproducible with the caller's seeded generator.
"""

from __future__ import annotations

import numpy as np


def marvell_noise(
    gradients: np.ndarray, labels: np.ndarray, strength: float, rng: np.random.Generator
) -> np.ndarray:
    """Protected copy of one batch's gradient rows.

    Args:
        gradients: float32 ``[b, d]``, ``dL/dH_s`` rows of one batch.
        labels: float ``[b]`` in {0, 1}, the labels of those rows.
        strength: power budget ``s >= 0`` in units of ``||g1 - g0||^2``.
        rng: seeded generator.

    Returns:
        float32 ``[b, d]``.
    """
    g = np.asarray(gradients, dtype=np.float64)
    y = np.asarray(labels) > 0.5
    n, d = g.shape
    if strength <= 0 or n == 0:
        return g.astype(np.float32)
    if y.all() or not y.any():
        power = strength * float(np.mean(np.einsum("ij,ij->i", g, g)))
        return (g + rng.standard_normal(g.shape) * np.sqrt(power / d)).astype(np.float32)
    mean1, mean0 = g[y].mean(axis=0), g[~y].mean(axis=0)
    delta = mean1 - mean0
    distance2 = float(delta @ delta)
    if distance2 <= 0:
        return g.astype(np.float32)
    u = delta / np.sqrt(distance2)
    spread1 = float(np.mean((g[y] - mean1) ** 2)) / distance2
    spread0 = float(np.mean((g[~y] - mean0) ** 2)) / distance2
    a0, a1, b0, b1 = optimal_covariances(spread0, spread1, float(y.mean()), d, strength)
    # Noise = sqrt(b_k) * (component orthogonal to u) + sqrt(a_k) * (component along u).
    z = rng.standard_normal(g.shape)
    along = z @ u
    orth_scale = np.sqrt(np.where(y, b1, b0) * distance2)
    along_scale = np.sqrt(np.where(y, a1, a0) * distance2)
    noise = orth_scale[:, None] * (z - along[:, None] * u) + (along_scale * along)[:, None] * u
    return (g + noise).astype(np.float32)


def optimal_covariances(
    spread0: float, spread1: float, p: float, d: int, strength: float
) -> tuple[float, float, float, float]:
    """``(a0, a1, b0, b1)`` minimizing the symmetrized KL (module docstring), units of ``D^2``.

    Args:
        spread0, spread1: per-coordinate class variances ``c_0, c_1`` over ``D^2``.
        p: share of positives in the batch, in ``(0, 1)``.
        d: embedding width.
        strength: power budget ``P / D^2``.
    """
    eps = 1e-9
    m = max(d - 1, 0)

    def objective(x: np.ndarray) -> float:
        big0, big1 = spread0 + x[0] + eps, spread1 + x[1] + eps
        small0, small1 = spread0 + x[2] + eps, spread1 + x[3] + eps
        along = big0 / big1 + big1 / big0 - 2.0 + (1.0 / big0 + 1.0 / big1)
        orth = m * (small0 / small1 + small1 / small0 - 2.0)
        return 0.5 * (along + orth)

    weights = np.array([1 - p, p, (1 - p) * m, p * m])

    def budget(x: np.ndarray) -> float:
        return float(strength - weights @ x)

    # scipy.optimize is imported here, not at module level: every party process (each Flower
    # ClientApp actor) imports this module, and scipy.optimize alone costs ~1-2 s of start-up.
    from scipy.optimize import minimize

    # Start: the whole budget along u, split evenly between the classes.
    start = np.array([strength / 2 / max(1 - p, eps), strength / 2 / max(p, eps), 0.0, 0.0])
    result = minimize(
        objective,
        start,
        method="SLSQP",
        bounds=[(0.0, None)] * 4,
        constraints=[{"type": "ineq", "fun": budget}],
        options={"maxiter": 100, "ftol": 1e-10},
    )
    x = np.maximum(result.x if result.success else start, 0.0)
    used = float(weights @ x)
    if used > strength > 0:  # SLSQP may overshoot the constraint slightly
        x *= strength / used
    return float(x[0]), float(x[1]), float(x[2]), float(x[3])
