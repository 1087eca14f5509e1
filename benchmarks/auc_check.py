"""The AUC check behind the world's brand-engagement defaults (docs/world.md, docs/lift-claim.md).

The social brand-touchpoint rates ``brand_content_per_year`` / ``brand_ad_clicks_per_year`` were
changed from 1.5 / 0.3 to 6.0 / 1.0 on AUC alone, before any lift was computed: with the old
rates a gradient-boosted model on both parties' features scored no better than one on the
e-commerce features alone. This script is that check, for any rates:

for each setting, one world (default otherwise; 100 000 users, seed 0: about 65 000 aligned),
the aligned users (computed in the clear, the PSI's rows), one 70/30 split by user, and three
scikit-learn ``HistGradientBoostingClassifier`` (fixed settings, early stopping on an internal
10% split of the training users) on the social + e-commerce features (``both``), the
e-commerce features only and the social features only; held-out AUC of the conversion label
and the gain ``both - ecommerce``. Labels only; the truth table is not read.

    python benchmarks/auc_check.py                       # 100k users, old and new rates
    python benchmarks/auc_check.py --users 20000 --out /tmp/auc.json

Writes ``benchmarks/results/auc_check.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Iterable
from dataclasses import replace
from pathlib import Path

import numpy as np
from _results import machine, write_json
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score
from sklearn.preprocessing import OrdinalEncoder
from threadpoolctl import threadpool_limits

from fedads import WorldConfig
from fedads.federation import split_positions
from fedads.protocol.runtime import AlignedRows
from fedads.tables import PartyTable
from fedads.world import generate_world

RESULTS = Path(__file__).resolve().parent / "results"
RATES = {"old (1.5 / 0.3)": (1.5, 0.3), "new defaults (6.0 / 1.0)": (6.0, 1.0)}
GBDT = {"learning_rate": 0.1, "max_iter": 300, "max_leaf_nodes": 31, "min_samples_leaf": 40}


def features(table: PartyTable, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``[n, n_num + n_cat]`` float (categories ordinal-coded) and the categorical mask."""
    numeric = np.asarray(table.numeric_matrix(rows), dtype=np.float64)
    categorical = np.asarray(table.categorical_matrix(rows), dtype=object)
    coded = np.empty((len(rows), 0))
    if categorical.shape[1]:
        coded = OrdinalEncoder(
            handle_unknown="use_encoded_value", unknown_value=np.nan, dtype=np.float64
        ).fit_transform(categorical)
    mask = np.r_[np.zeros(numeric.shape[1], bool), np.ones(coded.shape[1], bool)]
    return np.hstack([numeric, coded]), mask


def held_out_auc(
    x: np.ndarray, mask: np.ndarray, y: np.ndarray, train: np.ndarray, test: np.ndarray
) -> float:
    model = HistGradientBoostingClassifier(
        **GBDT, categorical_features=mask, early_stopping=True, validation_fraction=0.1,
        random_state=0,
    )  # fmt: skip
    model.fit(x[train], y[train])
    return float(roc_auc_score(y[test], model.predict_proba(x[test])[:, 1]))


def check(n_users: int, seed: int, content: float, clicks: float) -> dict[str, float]:
    world = generate_world(
        replace(
            WorldConfig(n_users=n_users, seed=seed),
            brand_content_per_year=content,
            brand_ad_clicks_per_year=clicks,
        )
    )
    social, ecommerce = world.party_tables()
    rows = AlignedRows.in_the_clear(social, ecommerce)
    train, test = split_positions(rows.social.size, 0.3, seed)
    y = np.asarray(ecommerce.labels(rows.ecommerce), dtype=np.int64)
    xs, ms = features(social, rows.social)
    xe, me = features(ecommerce, rows.ecommerce)
    inputs = {"both": (np.hstack([xs, xe]), np.r_[ms, me]), "ecommerce": (xe, me),
              "social": (xs, ms)}  # fmt: skip
    out = {name: held_out_auc(x, m, y, train, test) for name, (x, m) in inputs.items()}
    out["gain_both_minus_ecommerce"] = out["both"] - out["ecommerce"]
    out["n_aligned"] = int(rows.social.size)
    out["n_test"] = int(test.size)
    return out


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "auc_check.json")
    args = parser.parse_args(list(argv) if argv is not None else None)
    started = time.time()
    results = {}
    with threadpool_limits(1):
        for name, (content, clicks) in RATES.items():
            results[name] = {"brand_content_per_year": content,
                             "brand_ad_clicks_per_year": clicks,
                             **check(args.users, args.seed, content, clicks)}  # fmt: skip
            print(name, json.dumps(results[name]), flush=True)
    document = {
        "what": "held-out AUC of gradient boosting on both / e-commerce / social features, "
        "old vs new social brand-engagement rates (labels only)",
        "size": {"n_users": args.users, "seed": args.seed, "test_share": 0.3, "gbdt": GBDT},
        "results": results,
        "wall_seconds": round(time.time() - started, 1),
        "machine": machine(),
    }
    write_json(args.out, document)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
