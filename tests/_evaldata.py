"""Synthetic held-out users for the evaluation and report tests (one builder for both)."""

from __future__ import annotations

import numpy as np

from fedads.eval import EvalData

MODELS = ("federated", "ecommerce_only", "social_only", "centralized")


def synthetic_eval_data(
    n: int,
    seed: int = 0,
    *,
    edge: float = 0.0,
    ties_decimals: int | None = None,
    outcomes: bool = True,
    keys: bool = False,
) -> EvalData:
    """Random held-out users; ``federated`` gets ``edge`` extra signal on new-customer uplift.

    ``ties_decimals`` rounds every score (to create ties); ``keys`` adds unique hex keys.
    """
    rng = np.random.default_rng(seed)
    existing = (rng.random(n) < 0.3).astype(int)
    y0 = (rng.random(n) < 0.04).astype(int)
    y1 = np.maximum(y0, rng.random(n) < 0.06).astype(int)
    base = 0.3 * y1 + rng.random(n) * 0.7
    scores = {m: np.clip(base * 0.5 + rng.random(n) * 0.5, 0, 1) for m in MODELS}
    scores["federated"] = np.clip(scores["federated"] + edge * y1 * (1 - existing), 0, 1)
    if ties_decimals is not None:
        scores = {m: np.round(s, ties_decimals) for m, s in scores.items()}
    key_array = np.array([f"{i:08x}" for i in rng.permutation(n)]) if keys else None
    return EvalData(
        label=y1,
        is_existing_customer=existing,
        scores=scores,
        y0=y0 if outcomes else None,
        y1=y1 if outcomes else None,
        keys=key_array,
    )
