"""Campaign view vs aligned-only view, and what the local serving model keeps (issue 15).

For each seed, one ``Experiment`` on the default world (in-process backend, the claim
benchmarks' recipe: efficient mode, batch 512, 8 batches per message, 5 epochs;
``campaign=True``):

* aligned-only lift: the federated model over ``ecommerce_only`` (the report's headline) and
  over ``ecommerce_gbdt``, held-out aligned users;
* campaign lift: the federated system (joint model on aligned users, local serving model on the
  others) over an ``ecommerce_gbdt`` trained on every e-commerce user outside the campaign's
  held-out population, all held-out e-commerce users in one budget;
* the local serving model's kept share of the federated AUC gain over ``ecommerce_only`` on
  held-out aligned users, and every scorer's AUC on aligned / unaligned held-out users.

All at the 10% budget, both pools, realized and expected counts (paired bootstrap 95%
intervals per seed; across seeds :func:`fedads.combine_seeds`).

    python benchmarks/campaign.py --users 30000 --seeds 5
    python benchmarks/campaign.py --users 30000 --seeds 5 --unaligned-labels
    python benchmarks/campaign.py --users 30000 --seeds 5 --unaligned-training

Writes ``benchmarks/results/campaign_<users>[_unaligned_labels|_unaligned_training].json``.
``--unaligned-training`` (issue 15 item 1) runs every seed twice, with and without
``FederationSettings(unaligned_training=True)`` (the label party also trains on its unaligned
training users), and adds the paired per-seed differences (``delta``: with minus without;
t-interval over seeds).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

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
POOLS = ("all", "prospecting")
BUDGETS = (0.10, 0.20)
_Z95 = 1.959963984540054


def config(
    n_users: int,
    seed: int,
    n_bootstrap: int,
    labels: bool = False,
    unaligned: bool = False,
    intent: float | None = None,
) -> ExperimentConfig:
    world = WorldConfig(n_users=n_users, seed=seed)
    if intent is not None:  # a stronger social signal makes the federated gain measurable
        world = world.replace(social_intent_strength=intent)
    return ExperimentConfig(
        world=world,
        federation=FederationSettings(
            protocol=ProtocolConfig(
                mode="efficient", batch_size=512, chunk_batches=8, epochs=5, seed=seed
            ),
            split_seed=seed,
            unaligned_training=unaligned,
            verbose=False,
        ),
        backend="inprocess",
        references=("ecommerce_only", "ecommerce_gbdt"),
        budgets=BUDGETS,
        n_bootstrap=n_bootstrap,
        eval_seed=seed,
        campaign=True,
        local_serving_labels=labels,
    )


def _interval(row: Any) -> dict[str, Any]:
    return {"point": row.point, "ci95": [row.ci_low, row.ci_high]}


def one_seed(experiment_config: ExperimentConfig) -> dict[str, Any]:
    """One seed's campaign and aligned-only lifts (``config(...)`` builds the recipe)."""
    seed = experiment_config.world.seed
    clock = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FedadsWarning)
        result = Experiment.from_world(experiment_config).run(verbose=False, alignment="clear")
    ev, campaign = result.evaluation, result.campaign
    assert campaign is not None
    out: dict[str, Any] = {"seed": seed}
    for budget in BUDGETS:
        for kind in ("targeting", "expected"):
            for pool in POOLS:
                tag = f"{kind}.{pool}.{budget:g}"
                for baseline in ("ecommerce_only", "ecommerce_gbdt"):
                    row = ev.lift(pool, baseline=baseline, kind=kind, budget=budget)
                    out[f"aligned.vs_{baseline}.{tag}"] = _interval(row)
                for baseline in ("ecommerce_gbdt", "local_serving"):
                    row = campaign.evaluation.lift(
                        pool, baseline=baseline, kind=kind, budget=budget
                    )
                    out[f"campaign.vs_{baseline}.{tag}"] = _interval(row)
    block = campaign.block
    out["kept_share"] = block["local_serving_kept_share"]
    out["auc_by_stratum"] = block["auc_by_stratum"]
    out["aligned_auc"] = {m: ev.metrics[m]["overall"].auc for m in ev.models}
    out["counts"] = {
        k: block[k]
        for k in ("test_users", "aligned_test_users", "unaligned_test_users", "train_users")
    }
    out["seconds"] = round(time.perf_counter() - clock, 1)
    return out


def _values(run: dict[str, Any]) -> tuple[dict[str, float], dict[str, float]]:
    """One run's quantities (lift points, AUC differences) and their within-seed SEs."""
    values, ses = {}, {}
    for key, entry in run.items():
        if isinstance(entry, dict) and "point" in entry:
            values[key] = entry["point"]
            low, high = entry["ci95"]
            ses[key] = (high - low) / (2 * _Z95)
    for name in ("auc", "auc_new"):
        share = run["kept_share"][name]
        values[f"kept_share.{name}"] = float("nan") if share is None else share
        # The ratio is unstable when the federated gain is near 0: the differences too.
        auc = run["kept_share"].get(f"{name}_values", {})
        if auc:
            values[f"{name}_gain.federated_minus_ecommerce_only"] = (
                auc["federated"] - auc["ecommerce_only"]
            )
            values[f"{name}_gain.local_serving_minus_ecommerce_only"] = (
                auc["local_serving"] - auc["ecommerce_only"]
            )
    strata = run["auc_by_stratum"]
    values["auc.unaligned.local_serving_minus_ecommerce_gbdt"] = (
        strata["unaligned"]["local_serving"] - strata["unaligned"]["ecommerce_gbdt"]
    )
    values["auc.aligned.federated_minus_ecommerce_gbdt"] = (
        strata["aligned"]["federated"] - strata["aligned"]["ecommerce_gbdt"]
    )
    values["auc.aligned.federated"] = run["aligned_auc"]["federated"]
    values["auc.unaligned.local_serving"] = strata["unaligned"]["local_serving"]
    return values, ses


def _summary(runs: list[dict[str, Any]], paired: list[dict[str, Any]] | None = None) -> Any:
    """combine_seeds over the runs; with ``paired``: over the per-seed differences
    (runs minus paired, t-interval over seeds: no within-seed SE of a difference is known)."""
    per_seed: dict[int, dict[str, float]] = {}
    within: dict[int, dict[str, float]] = {}
    for i, run in enumerate(runs):
        values, ses = _values(run)
        if paired is not None:
            other, _ = _values(paired[i])
            values = {k: v - other[k] for k, v in values.items() if k in other}
        per_seed[run["seed"]], within[run["seed"]] = values, ses
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FedadsWarning)
        if paired is not None:
            return combine_seeds(per_seed).to_dict()["summary"]
        return combine_seeds(per_seed, within_se=within).to_dict()["summary"]


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=30_000)
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--bootstrap", type=int, default=500)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--unaligned-labels",
        action="store_true",
        help="the local model also fits the unaligned training users' labels",
    )
    parser.add_argument(
        "--unaligned-training",
        action="store_true",
        help="each seed with and without the federated model training on the unaligned users",
    )
    parser.add_argument(
        "--social-intent-strength",
        type=float,
        default=None,
        help="the world's social signal (default: the world's own); at 1.0 the federated "
        "model's gain over ecommerce_only is large enough to measure what the local model keeps",
    )
    args = parser.parse_args(list(argv) if argv is not None else None)
    intent = args.social_intent_strength
    suffix = "_unaligned_labels" if args.unaligned_labels else ""
    suffix += "_unaligned_training" if args.unaligned_training else ""
    suffix += f"_social_intent_{intent:g}" if intent is not None else ""
    out_path = args.out or RESULTS / f"campaign_{args.users}{suffix}.json"
    torch.set_num_threads(1)
    runs, without = [], []
    for seed in range(args.seeds):
        recipe = functools.partial(config, args.users, seed, args.bootstrap, args.unaligned_labels)
        runs.append(one_seed(recipe(args.unaligned_training, intent)))
        print(json.dumps(runs[-1]), flush=True)
        if args.unaligned_training:
            without.append(one_seed(recipe(False, intent)))
            print(json.dumps(without[-1]), flush=True)
    document = {
        "what": "campaign lift (all held-out e-commerce users, federated system vs "
        "ecommerce_gbdt on all other e-commerce users) vs aligned-only lift, and the local "
        "serving model's kept share of the federated AUC gain; default world, in-process, "
        "10% and 20% budgets; recipe: efficient, batch 512, 8 batches per message, 5 epochs",
        "size": {"n_users": args.users, "seeds": args.seeds, "n_bootstrap": args.bootstrap},
        "social_intent_strength": intent,
        "local_serving_labels": args.unaligned_labels,
        "unaligned_training": args.unaligned_training,
        "summary": _summary(runs),
        "runs": runs,
        "machine": machine(),
    }
    if args.unaligned_training:
        document["summary_without"] = _summary(without)
        document["delta"] = _summary(runs, paired=without)
        document["runs_without"] = without
    write_json(out_path, document)
    print(f"wrote {out_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
