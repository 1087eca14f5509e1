"""Does the federated model beat what the label party could build alone with gradient boosting?

For each data set, the label party (``ecommerce``) holds some feature columns and the label, the
other party (``social``) the rest. On the same held-out users we compare:

* ``hgb_label_party``: scikit-learn's ``HistGradientBoostingClassifier`` on the label party's
  features alone, tuned: a small grid (learning rate x leaves x L2) scored by validation AUC,
  early stopping on a validation split inside every fit;
* ``federated``: the split model trained through the public facade
  (``fedads.run_federated(..., backend="inprocess")``: coordinator, both parties, in-process
  transport; the aligned rows computed once per data set in the clear, ``AlignedRows.in_the_clear``,
  the PSI's rows and order, and reused by every run), with the tower family (the zoo: ``mlp``,
  ``wide_deep``, ``deepfm``, ``dcn_v2``, the same family for both bottoms and the top) and the
  number of epochs chosen by the validation loss (early stopping: a run with
  ``FederationSettings(valid_share=0.2)`` returns ``epoch_valid_losses``), then retrained on all
  train users for that many epochs;
* for context: every family at its own selected epoch count, the out-of-the-box default
  (``ModelConfig()`` MLP towers, the default 5 epochs) and ``hgb_both_parties`` (gradient
  boosting with default parameters and early stopping on the pooled features, which no party
  can train in a federation).

Selection never sees the held-out users: the facade splits the train users once more (80 / 20,
``fedads.federation.split_valid``) into fit and validation rows, which the gradient boosting uses
alike (read from the run's ``train_positions`` / ``valid_positions``). Several seeds (split +
init; the synthetic world's seed is fixed, so it is aligned once); mean and standard deviation
over seeds.

Data (nothing is downloaded): the default synthetic world (``fedads.world``, 50k e-commerce
users) and three tables bundled with scikit-learn, split vertically by a documented rule:

* ``breast_cancer`` (569 tumours, malignant vs benign): the label party keeps the ten "worst"
  measurements (the strongest group); the other party has the "mean" and "standard error" ones;
* ``digits`` (1797 8x8 images, label: digit >= 5): the label party sees the left half of each
  image (columns 0-3), the other party the right half;
* ``diabetes`` (442 patients, label: one-year progression above the median): the label party
  keeps age, sex, BMI and blood pressure; the other party the six blood-serum measurements.

Run (about 5-10 minutes on 2 idle cores; in the background on a shared machine)::

    FLWR_TELEMETRY_ENABLED=0 nohup python benchmarks/towers_vs_gbdt.py > towers.log 2>&1 &

Writes ``benchmarks/results/towers_vs_gbdt.json`` (``--out`` to change; ``--quick`` for a smoke
run with fewer seeds and a 5k-user world).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn import datasets
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import roc_auc_score

from fedads import (
    FederationSettings,
    ModelConfig,
    ProtocolConfig,
    WorldConfig,
    generate_world,
    load_party_table,
    run_federated,
)
from fedads.models import ZOO
from fedads.protocol.runtime import AlignedRows
from fedads.tables import PartyTable

FAMILIES = ("mlp", "wide_deep", "deepfm", "dcn_v2")
assert set(FAMILIES) == set(ZOO)
TEST_SHARE = 0.3
VALID_SHARE = 0.2  # of the train users, for model selection and early stopping
HGB_GRID = {
    "learning_rate": (0.05, 0.1),
    "max_leaf_nodes": (15, 31),
    "l2_regularization": (0.0, 1.0),
}
RESULTS = Path(__file__).resolve().parent / "results"


# ----------------------------------------------------------------------------- data
def world_tables(n_users: int) -> tuple[PartyTable, PartyTable]:
    return generate_world(WorldConfig(n_users=n_users, seed=0)).party_tables()


def sklearn_tables(name: str) -> tuple[PartyTable, PartyTable]:
    """A bundled scikit-learn table split vertically (see the module docstring)."""
    if name == "breast_cancer":
        data = datasets.load_breast_cancer(as_frame=True)
        frame = data.frame.drop(columns="target")
        label = 1 - data.target.to_numpy()  # 1 = malignant
        own = [c for c in frame.columns if c.startswith("worst")]
    elif name == "digits":
        data = datasets.load_digits(as_frame=True)
        frame = data.frame.drop(columns="target")
        label = (data.target.to_numpy() >= 5).astype(int)
        own = [c for c in frame.columns if int(c.split("_")[2]) < 4]  # pixel_<row>_<col>
    elif name == "diabetes":
        data = datasets.load_diabetes(as_frame=True, scaled=False)
        frame = data.frame.drop(columns="target")
        target = data.target.to_numpy()
        label = (target > np.median(target)).astype(int)
        own = ["age", "sex", "bmi", "bp"]
    else:
        raise ValueError(name)
    frame = frame.rename(columns=lambda c: c.replace(" ", "_")).astype(np.float64)
    own = [c.replace(" ", "_") for c in own]
    keys = [f"user{i:05d}" for i in range(len(frame))]
    shop = frame[own].copy()
    shop.insert(0, "key", keys)
    shop["label"] = label
    social = frame.drop(columns=own)
    social.insert(0, "key", keys)
    # Each party's rows in its own order, as two real tables would be.
    rng = np.random.default_rng(7)
    social = social.iloc[rng.permutation(len(social))].reset_index(drop=True)
    return (
        load_party_table(social, party="social", key="key"),
        load_party_table(shop, party="ecommerce", key="key", label="label"),
    )


# ----------------------------------------------------------------------------- models
def hgb_features(table: PartyTable, rows: np.ndarray) -> pd.DataFrame:
    frame = table.frame.iloc[rows]
    numeric = frame[list(table.numeric_columns)].astype(np.float64)
    categorical = frame[list(table.categorical_columns)].astype("category")
    return pd.concat([numeric, categorical], axis=1).reset_index(drop=True)


def fit_hgb(x: pd.DataFrame, y: np.ndarray, params: dict[str, Any], seed: int) -> Any:
    model = HistGradientBoostingClassifier(
        max_iter=500,
        early_stopping=True,
        validation_fraction=0.2,
        n_iter_no_change=20,
        scoring="loss",
        categorical_features="from_dtype",
        random_state=seed,
        **params,
    )
    return model.fit(x, y)


def tuned_hgb(
    x: pd.DataFrame, y: np.ndarray, fit: np.ndarray, valid: np.ndarray, test: np.ndarray, seed: int
) -> dict[str, Any]:
    """Grid by validation AUC (fit rows -> valid rows), refit on fit + valid, score test."""
    best: tuple[float, dict[str, Any]] | None = None
    for values in itertools.product(*HGB_GRID.values()):
        params = dict(zip(HGB_GRID, values, strict=True))
        model = fit_hgb(x.iloc[fit], y[fit], params, seed)
        auc = roc_auc_score(y[valid], model.predict_proba(x.iloc[valid])[:, 1])
        if best is None or auc > best[0]:
            best = (auc, params)
    assert best is not None
    train = np.concatenate([fit, valid])
    model = fit_hgb(x.iloc[train], y[train], best[1], seed)
    return {
        "test_auc": float(roc_auc_score(y[test], model.predict_proba(x.iloc[test])[:, 1])),
        "valid_auc": float(best[0]),
        "params": best[1],
        "n_iter": int(model.n_iter_),
    }


def default_hgb(
    x: pd.DataFrame, y: np.ndarray, train: np.ndarray, test: np.ndarray, seed: int
) -> dict[str, Any]:
    """Context only (no party can train it): default parameters, early stopping, pooled data."""
    model = fit_hgb(x.iloc[train], y[train], {}, seed)
    return {"test_auc": float(roc_auc_score(y[test], model.predict_proba(x.iloc[test])[:, 1]))}


def federated_fit(
    tables: tuple[PartyTable, PartyTable],
    aligned: AlignedRows,
    protocol: ProtocolConfig,
    seed: int,
    *,
    valid: bool = False,
) -> dict[str, np.ndarray]:
    """One federated run through the facade (in process, the given alignment reused).

    Returns the run's values: ``train_positions`` (fitted on), ``test_positions``, ``scores``
    (held-out probabilities) and, with ``valid``, ``valid_positions`` and ``epoch_valid_losses``.
    """
    settings = FederationSettings(
        protocol=protocol,
        test_share=TEST_SHARE,
        split_seed=seed,
        valid_share=VALID_SHARE if valid else 0.0,
        # The small tables' validation and held-out sets are below the label party's default
        # query floor (256 rows); here the experimenter is the coordinator.
        min_query_rows=1,
        verbose=False,
    )
    return run_federated(*tables, settings, backend="inprocess", alignment=aligned).values


def towers(family: str) -> ModelConfig:
    return ModelConfig(social_bottom=family, ecommerce_bottom=family, top=family)


# ----------------------------------------------------------------------------- one data set
def run_dataset(
    name: str,
    tables: tuple[PartyTable, PartyTable],
    base: ProtocolConfig,
    seeds: list[int],
) -> dict[str, Any]:
    start = time.perf_counter()
    social, ecommerce = tables
    aligned = AlignedRows.in_the_clear(social, ecommerce, FederationSettings().normalization)
    n = int(aligned.n_aligned)
    labels = ecommerce.labels(aligned.ecommerce).astype(int)
    x_own = hgb_features(ecommerce, aligned.ecommerce)
    x_both = pd.concat(
        [x_own, hgb_features(social, aligned.social).add_prefix("social.")], axis=1
    )
    print(f"[{name}] aligned {n} users in {time.perf_counter() - start:.1f} s", flush=True)
    per_seed = []
    for seed in seeds:
        t0 = time.perf_counter()
        families: dict[str, Any] = {}
        for family in FAMILIES:
            protocol = replace(base, model=towers(family), seed=seed)
            chosen_run = federated_fit(tables, aligned, protocol, seed, valid=True)
            losses = np.asarray(chosen_run["epoch_valid_losses"], dtype=np.float64)
            epochs = int(np.argmin(losses)) + 1
            final = federated_fit(tables, aligned, replace(protocol, epochs=epochs), seed)
            test = np.asarray(final["test_positions"])
            families[family] = {
                "valid_loss": float(losses.min()),
                "epochs": epochs,
                "test_auc": float(roc_auc_score(labels[test], final["scores"])),
            }
        # The facade's split (the same for every run of this seed): fit / valid / held-out.
        fit = np.asarray(chosen_run["train_positions"])
        valid = np.asarray(chosen_run["valid_positions"])
        train = np.union1d(fit, valid)
        assert np.array_equal(train, final["train_positions"])
        result: dict[str, Any] = {
            "seed": seed,
            "n_train": int(train.size),
            "n_test": int(test.size),
        }
        result["hgb_label_party"] = tuned_hgb(x_own, labels, fit, valid, test, seed)
        result["hgb_both_parties"] = default_hgb(x_both, labels, train, test, seed)
        chosen = min(FAMILIES, key=lambda f: families[f]["valid_loss"])
        result["federated_families"] = families
        result["federated"] = {"family": chosen, **families[chosen]}
        default = replace(base, model=ModelConfig(), epochs=ProtocolConfig().epochs, seed=seed)
        scores = federated_fit(tables, aligned, default, seed)["scores"]
        result["federated_default_mlp"] = {"test_auc": float(roc_auc_score(labels[test], scores))}
        result["seconds"] = round(time.perf_counter() - t0, 1)
        print(
            f"[{name}] seed {seed}: federated ({chosen}, {families[chosen]['epochs']} ep) "
            f"{result['federated']['test_auc']:.4f}  hgb label party "
            f"{result['hgb_label_party']['test_auc']:.4f}  hgb both "
            f"{result['hgb_both_parties']['test_auc']:.4f}  ({result['seconds']} s)",
            flush=True,
        )
        per_seed.append(result)
    return {
        "n_aligned": n,
        "positive_rate": float(labels.mean()),
        "label_party_features": list(ecommerce.numeric_columns + ecommerce.categorical_columns),
        "other_party_features": list(social.numeric_columns + social.categorical_columns),
        "protocol": {
            "mode": base.mode,
            "batch_size": base.batch_size,
            "chunk_batches": base.chunk_batches,
            "pipeline": base.pipeline,
            "lr": base.lr,
            "max_epochs": base.epochs,
        },
        "summary": summarize(per_seed),
        "seeds": per_seed,
        "seconds": round(time.perf_counter() - start, 1),
    }


def summarize(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    def stats(values: list[float]) -> dict[str, float]:
        array = np.asarray(values, dtype=np.float64)
        return {
            "mean": round(float(array.mean()), 4),
            "std": round(float(array.std(ddof=1)) if array.size > 1 else 0.0, 4),
            "min": round(float(array.min()), 4),
            "max": round(float(array.max()), 4),
        }

    fed = [r["federated"]["test_auc"] for r in per_seed]
    hgb = [r["hgb_label_party"]["test_auc"] for r in per_seed]
    out: dict[str, Any] = {
        "federated": stats(fed),
        "hgb_label_party": stats(hgb),
        "hgb_both_parties": stats([r["hgb_both_parties"]["test_auc"] for r in per_seed]),
        "federated_default_mlp": stats([r["federated_default_mlp"]["test_auc"] for r in per_seed]),
        "families": {
            f: stats([r["federated_families"][f]["test_auc"] for r in per_seed]) for f in FAMILIES
        },
        "chosen_families": [r["federated"]["family"] for r in per_seed],
        "federated_minus_hgb": stats([a - b for a, b in zip(fed, hgb, strict=True)]),
        "seeds_federated_wins": int(sum(a >= b for a, b in zip(fed, hgb, strict=True))),
        "n_seeds": len(per_seed),
    }
    out["goal_met"] = bool(np.mean(fed) >= np.mean(hgb))
    return out


def markdown_table(report: dict[str, Any]) -> str:
    """The verdict table of docs/models.md from a results file."""
    lines = [
        "| data | aligned users | seeds | federated (chosen family) | tuned HGB, label party | "
        "federated - HGB | seeds fed >= HGB | default MLP, 5 epochs | HGB on pooled features |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]

    def cell(stats: dict[str, float]) -> str:
        return f"{stats['mean']:.4f} ± {stats['std']:.4f}"

    for name, result in report["datasets"].items():
        s = result["summary"]
        chosen = ", ".join(sorted(set(s["chosen_families"])))
        lines.append(
            f"| {name} | {result['n_aligned']} | {s['n_seeds']} | {cell(s['federated'])} "
            f"({chosen}) | {cell(s['hgb_label_party'])} | {s['federated_minus_hgb']['mean']:+.4f} "
            f"| {s['seeds_federated_wins']}/{s['n_seeds']} | {cell(s['federated_default_mlp'])} "
            f"| {cell(s['hgb_both_parties'])} |"
        )
    lines += [
        "",
        "| data | " + " | ".join(FAMILIES) + " |",
        "| --- |" + " --- |" * len(FAMILIES),
    ]
    for name, result in report["datasets"].items():
        families = result["summary"]["families"]
        lines.append(f"| {name} | " + " | ".join(cell(families[f]) for f in FAMILIES) + " |")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: fewer seeds, 5k world")
    parser.add_argument("--world-users", type=int, default=50_000)
    parser.add_argument("--out", type=Path, default=RESULTS / "towers_vs_gbdt.json")
    parser.add_argument("--table", type=Path, help="print a results file as markdown and exit")
    args = parser.parse_args()
    if args.table is not None:
        print(markdown_table(json.loads(args.table.read_text())))
        return
    torch.set_num_threads(1)  # small batches; leaves the other core to the other party
    world_users = 5_000 if args.quick else args.world_users
    table_seeds = [0, 1] if args.quick else [0, 1, 2]
    world_seeds = [0] if args.quick else [0, 1, 2]
    small = ProtocolConfig(
        mode="efficient", batch_size=64, chunk_batches=4, epochs=8 if args.quick else 15
    )
    large = ProtocolConfig(
        mode="efficient",
        batch_size=1024,
        chunk_batches=8,
        pipeline=True,
        epochs=4 if args.quick else 10,
    )
    start = time.perf_counter()
    report: dict[str, Any] = {
        "benchmark": "benchmarks/towers_vs_gbdt.py",
        "quick": bool(args.quick),
        "machine": {
            "cpus": os.cpu_count(),
            "load_avg_at_start": [round(v, 1) for v in os.getloadavg()],
            "python": platform.python_version(),
            "torch": torch.__version__,
        },
        "test_share": TEST_SHARE,
        "valid_share_of_train": VALID_SHARE,
        "hgb_grid": {k: list(v) for k, v in HGB_GRID.items()},
        "datasets": {},
    }
    report["datasets"][f"world_{world_users // 1000}k"] = run_dataset(
        f"world {world_users}", world_tables(world_users), large, world_seeds
    )
    for name in ("breast_cancer", "digits", "diabetes"):
        report["datasets"][name] = run_dataset(name, sklearn_tables(name), small, table_seeds)
    report["seconds"] = round(time.perf_counter() - start, 1)
    report["machine"]["load_avg_at_end"] = [round(v, 1) for v in os.getloadavg()]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {args.out} in {report['seconds']} s")
    for name, result in report["datasets"].items():
        s = result["summary"]
        print(
            f"{name:>14}: federated {s['federated']['mean']:.4f} +- {s['federated']['std']:.4f}"
            f"  hgb label party {s['hgb_label_party']['mean']:.4f} +- "
            f"{s['hgb_label_party']['std']:.4f}  goal met: {s['goal_met']}"
        )


if __name__ == "__main__":
    main()
