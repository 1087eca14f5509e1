"""Should the federated model early-stop by default? Fixed 5 epochs vs early stopping.

For each seed, two ``Experiment`` runs on the default world (in-process backend, the claim
benchmarks' recipe: efficient mode, batch 512, 8 batches per message), same aligned rows
(computed once in the clear and reused):

* ``fixed``: 5 epochs, every train user fits (the library default);
* ``early``: a 20% validation share of the aligned train users, at most 20 epochs, patience 2
  (``ProtocolConfig.early_stopping_patience``), the best epoch's parameters kept.

Reported per seed: held-out AUC of the federated model and of ``ecommerce_gbdt`` (the same in
both runs), the best epoch, and the expected-count lift vs ``ecommerce_gbdt`` among prospects at
5/10/20%. Across seeds: :func:`fedads.eval.combine_seeds` of the paired AUC differences.

    python benchmarks/early_stopping_default.py --users 20000 --seeds 3

Writes ``benchmarks/results/early_stopping_default.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from _results import machine, write_json

from fedads import (
    Experiment,
    ExperimentConfig,
    FedadsWarning,
    FederationSettings,
    ProtocolConfig,
    WorldConfig,
    combine_seeds,
)

RESULTS = Path(__file__).resolve().parent / "results"
BUDGETS = (0.05, 0.10, 0.20)
RECIPES = {
    "fixed": {"epochs": 5, "early_stopping_patience": None, "valid_share": 0.0},
    "early": {"epochs": 20, "early_stopping_patience": 2, "valid_share": 0.2},
}


def config(n_users: int, seed: int, recipe: str) -> ExperimentConfig:
    r = RECIPES[recipe]
    protocol = ProtocolConfig(
        mode="efficient",
        batch_size=512,
        chunk_batches=8,
        epochs=int(r["epochs"]),
        early_stopping_patience=r["early_stopping_patience"],
        seed=seed,
    )
    settings = FederationSettings(
        protocol=protocol, split_seed=seed, valid_share=float(r["valid_share"]), verbose=False
    )
    return ExperimentConfig(
        world=WorldConfig(n_users=n_users, seed=seed),
        federation=settings,
        backend="inprocess",
        references=("ecommerce_gbdt",),
        budgets=BUDGETS,
        n_bootstrap=200,
        eval_seed=seed,
    )


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=RESULTS / "early_stopping_default.json")
    args = parser.parse_args(list(argv) if argv is not None else None)
    torch.set_num_threads(1)
    runs = []
    for seed in range(args.seeds):
        first = None
        for recipe in RECIPES:
            clock = time.perf_counter()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FedadsWarning)
                result = Experiment.from_world(config(args.users, seed, recipe)).run(
                    verbose=False, alignment="clear" if first is None else first
                )
            first = first or result
            ev = result.evaluation
            lifts = {
                f"{row.budget:g}": row.point
                for row in ev.lifts
                if row.kind == "expected"
                and row.pool == "prospecting"
                and row.baseline == "ecommerce_gbdt"
            }
            values = result.federated.values
            runs.append({
                "seed": seed, "recipe": recipe, "seconds": round(time.perf_counter() - clock, 1),
                "auc": {m: ev.metrics[m]["overall"].auc for m in ev.models},
                "best_epoch": int(values["best_epoch"]) if "best_epoch" in values else None,
                "epochs_trained": int(np.asarray(values["epoch_losses"]).size),
                "expected_lift_vs_ecommerce_gbdt_prospecting": lifts,
            })  # fmt: skip
            print(json.dumps(runs[-1]), flush=True)
    gain = {
        r["seed"]: r["auc"]["federated"] - f["auc"]["federated"]
        for r in runs
        for f in runs
        if r["recipe"] == "early" and f["recipe"] == "fixed" and f["seed"] == r["seed"]
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FedadsWarning)
        summary = combine_seeds({s: {"auc_gain_early_minus_fixed": g} for s, g in gain.items()})
    document = {
        "what": "federated model: fixed 5 epochs vs early stopping (patience 2, <= 20 epochs, "
        "valid_share 0.2), default world, in-process",
        "size": {"n_users": args.users, "seeds": args.seeds},
        "summary": summary.to_dict()["summary"],
        "runs": runs,
        "machine": machine(),
    }
    write_json(args.out, document)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
