"""Feature side (harness): what the e-commerce party can infer about social raw features.

The e-commerce party receives the social bottom's embeddings ``H_s`` of every user it scores. For
each social raw feature, on the held-out users it scored (their final-model embeddings, from its
private output), the harness fits two predictors on half of them and scores the other half:

* ``own``: the e-commerce party's own features only;
* ``own+embeddings``: its own features plus the received embeddings.

Numeric social features: R^2 (ridge regression on standardized inputs; non-negative features,
mostly heavy-tailed counts, and non-negative own inputs are taken as ``log1p``). Categorical
ones: macro one-vs-rest AUC (multinomial logistic regression; binary: plain AUC). The ``gain``
is the second minus the first: what the embeddings reveal beyond what the e-commerce party
already knew.
Linear models are a lower bound on what a stronger attacker learns; the same split and models
are used for both columns, so the gain is a like-for-like difference.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import r2_score, roc_auc_score
from sklearn.preprocessing import StandardScaler

MAX_ROWS = 20_000  # held-out users used at most (cost: linear fits, seconds)


def feature_inference_report(
    embeddings: np.ndarray,
    social: Any,
    ecommerce: Any,
    social_rows: np.ndarray,
    ecommerce_rows: np.ndarray,
    *,
    seed: int = 0,
) -> dict[str, Any]:
    """Per social feature: the ``own`` and ``own+embeddings`` scores and their gain.

    Args:
        embeddings: records ``(position, embedding [d])`` the e-commerce party received.
        social, ecommerce: the party tables; ``*_rows``: their aligned rows.
        seed: seed of the half split.
    """
    _, first = np.unique(embeddings["position"], return_index=True)
    records = embeddings[first]
    rng = np.random.default_rng(seed)
    if len(records) > MAX_ROWS:
        records = records[np.sort(rng.choice(len(records), MAX_ROWS, replace=False))]
    positions = records["position"]
    h = records["embedding"].astype(np.float64)
    own = _design(ecommerce, ecommerce_rows[positions])
    both = np.hstack([own, h])
    half = rng.permutation(len(positions)) < len(positions) // 2
    features: dict[str, Any] = {}
    if social.numeric_columns:
        numeric = social.numeric_matrix(social_rows[positions])
        for j, name in enumerate(social.numeric_columns):
            target = _tame(numeric[:, j])
            ok = np.isfinite(target)
            if ok.sum() < 20 or np.nanstd(target) == 0:
                continue
            scores = [_r2(x[ok], target[ok], half[ok]) for x in (own, both)]
            features[name] = _entry("r2", scores)
    if social.categorical_columns:
        categorical = social.categorical_matrix(social_rows[positions])
        for j, name in enumerate(social.categorical_columns):
            target = categorical[:, j].astype(str)
            if len(np.unique(target)) < 2:
                continue
            scores = [_auc(x, target, half) for x in (own, both)]
            features[name] = _entry("auc", scores)
    gains = [f["gain"] for f in features.values() if f["gain"] is not None]
    return {
        "users": int(len(positions)),
        "method": "linear (ridge R^2 / logistic AUC), half split of held-out users",
        "features": features,
        "max_gain": max(gains) if gains else None,
        "mean_gain": float(np.mean(gains)) if gains else None,
    }


def _entry(metric: str, scores: list[float | None]) -> dict[str, Any]:
    own, both = scores
    gain = None if own is None or both is None else both - own
    return {"metric": metric, "own": own, "own_plus_embeddings": both, "gain": gain}


def _design(table: Any, rows: np.ndarray) -> np.ndarray:
    """Own features as a numeric design matrix (median-imputed numerics, one-hot categoricals)."""
    parts = []
    if table.numeric_columns:
        x = table.numeric_matrix(rows).astype(np.float64)
        medians = np.nanmedian(np.where(np.isfinite(x), x, np.nan), axis=0)
        x = np.where(np.isfinite(x), x, np.nan_to_num(medians)[None, :])
        parts.append(np.column_stack([_tame(column) for column in x.T]))
    if table.categorical_columns:
        frame = pd.DataFrame(table.categorical_matrix(rows), columns=table.categorical_columns)
        parts.append(pd.get_dummies(frame.astype(str), dtype=np.float64).to_numpy())
    return np.hstack(parts) if parts else np.zeros((len(rows), 0))


def _tame(values: np.ndarray) -> np.ndarray:
    """``log1p`` of a non-negative column (counts are heavy-tailed), else the column."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    return np.log1p(values) if finite.size and finite.min() >= 0 else values


def _r2(x: np.ndarray, y: np.ndarray, fit: np.ndarray) -> float | None:
    if fit.sum() < 10 or (~fit).sum() < 10:
        return None
    scaler = StandardScaler().fit(x[fit])
    model = Ridge(alpha=1.0).fit(scaler.transform(x[fit]), y[fit])
    return float(r2_score(y[~fit], model.predict(scaler.transform(x[~fit]))))


def _auc(x: np.ndarray, y: np.ndarray, fit: np.ndarray) -> float | None:
    classes = np.unique(y[fit])
    test_classes = np.unique(y[~fit])
    if len(classes) < 2 or not set(test_classes) <= set(classes) or len(test_classes) < 2:
        return None
    scaler = StandardScaler().fit(x[fit])
    model = LogisticRegression(max_iter=300).fit(scaler.transform(x[fit]), y[fit])
    proba = model.predict_proba(scaler.transform(x[~fit]))
    if len(classes) == 2:
        return float(roc_auc_score(y[~fit] == classes[1], proba[:, 1]))
    # Only the classes present in the test half, renormalized, for the macro OvR AUC.
    keep = np.isin(classes, test_classes)
    sub = proba[:, keep] / proba[:, keep].sum(axis=1, keepdims=True)
    return float(roc_auc_score(y[~fit], sub, multi_class="ovr", labels=classes[keep]))
