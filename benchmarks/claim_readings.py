"""The claim's three readings, small and honest: a few seeds through the public facade.

Issue 14 asks which reading of "15-25% more new customers" the numbers support:

(a) against the e-commerce side's own best model (practitioner baselines trained on all of its
    users, the strongest picked by validation), prospecting pool;
(b) "breaking out of the old-customer crowd": against the e-commerce model as an ad desk would
    use it, existing customers allowed (pool ``all``), at realistic budgets (10-20%);
(c) against the social platform's own model (``social_only`` matched, ``social_gbdt``).

Each seed is one ``Experiment`` (in-process backend: same parties, job and serialization as
Flower, no Flower; the aligned rows computed in the clear, ``alignment="clear"``, which gives
the PSI's rows and order without its cost) with every reference and practitioner baseline;
lifts at 5, 10 and 20% on realized and expected counts; across seeds
:func:`fedads.eval.combine_seeds` with each seed's bootstrap SE (the interval keeps both
variances).

    python benchmarks/claim_readings.py --users 20000 --seeds 5

Writes ``benchmarks/results/claim_readings_<users>.json`` (and, seed by seed, ``.seeds.jsonl``
beside it: a re-run of the same size resumes from it). This is not the full claim benchmark
(``benchmarks/lift_claim.py``); its size is in the file and must be quoted with its numbers.
"""

from __future__ import annotations

import argparse
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
from fedads.experiment import REFERENCE_MODELS
from fedads.models.baselines import PRACTITIONER_MODELS

RESULTS = Path(__file__).resolve().parent / "results"
BUDGETS = (0.05, 0.10, 0.20)
Z95 = 1.959963984540054


def config(n_users: int, seed: int, n_bootstrap: int) -> ExperimentConfig:
    """The lift-claim recipe (efficient mode, 5 epochs, batch 512), every baseline."""
    protocol = ProtocolConfig(
        mode="efficient", batch_size=512, chunk_batches=8, epochs=5, seed=seed
    )
    return ExperimentConfig(
        world=WorldConfig(n_users=n_users, seed=seed),
        federation=FederationSettings(protocol=protocol, split_seed=seed, verbose=False),
        backend="inprocess",
        references=(*REFERENCE_MODELS, *PRACTITIONER_MODELS),
        budgets=BUDGETS,
        n_bootstrap=n_bootstrap,
        eval_seed=seed,
    )


def per_seed(evaluation: Any) -> tuple[dict[str, float], dict[str, float], dict[str, Any]]:
    """Points, within-seed SEs and counts of every lift row, named ``kind.baseline.pool.budget``."""
    points, ses, counts = {}, {}, {}
    strongest = evaluation.strongest_baseline
    for row in evaluation.lifts:
        names = [f"{row.kind}.{row.baseline}.{row.pool}.{row.budget:g}"]
        if row.baseline == strongest:
            names.append(f"{row.kind}.strongest_ecommerce.{row.pool}.{row.budget:g}")
        for name in names:
            points[name] = row.point
            ses[name] = (row.ci_high - row.ci_low) / (2 * Z95)
            counts[name] = [row.model_count, row.baseline_count]
    return points, ses, counts


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--bootstrap", type=int, default=500)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args(list(argv) if argv is not None else None)
    torch.set_num_threads(1)
    out = args.out or RESULTS / f"claim_readings_{args.users}.json"
    started = time.time()
    points, ses, runs = {}, {}, []
    # Each finished seed is appended to a log beside the result; a re-run with the same size
    # keeps the seeds already there (a long run can be stopped and resumed).
    log = out.with_suffix(".seeds.jsonl")
    size = {"n_users": args.users, "n_bootstrap": args.bootstrap}
    if log.exists():
        for line in log.read_text().splitlines():
            row = json.loads(line)
            if row["size"] == size and row["run"]["seed"] < args.seeds:
                seed = row["run"]["seed"]
                points[seed], ses[seed] = row["points"], row["ses"]
                runs.append(row["run"])
    for seed in range(args.seeds):
        if seed in points:
            continue
        clock = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FedadsWarning)
            # alignment="clear": the PSI's rows and order without the PSI (a simulation).
            result = Experiment.from_world(config(args.users, seed, args.bootstrap)).run(
                verbose=False, alignment="clear"
            )
        evaluation = result.evaluation
        points[seed], ses[seed], counts = per_seed(evaluation)
        aucs = {m: evaluation.metrics[m]["overall"].auc for m in evaluation.models}
        runs.append({"seed": seed, "seconds": round(time.perf_counter() - clock, 1),
                     "strongest_ecommerce": evaluation.strongest_baseline, "auc": aucs,
                     "counts": counts})  # fmt: skip
        out.parent.mkdir(parents=True, exist_ok=True)
        with open(log, "a") as handle:
            record = {"size": size, "points": points[seed], "ses": ses[seed], "run": runs[-1]}
            handle.write(json.dumps(record) + "\n")
        p = {k.removesuffix(".prospecting.0.1"): v for k, v in points[seed].items()}
        print(
            f"seed {seed}: {runs[-1]['seconds']} s; strongest {evaluation.strongest_baseline}; "
            f"prospecting 10% vs ecommerce_only {p['targeting.ecommerce_only']:+.3f}"
            f" (expected {p['expected.ecommerce_only']:+.3f}); vs strongest "
            f"(expected) {p['expected.strongest_ecommerce']:+.3f}",
            flush=True,
        )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FedadsWarning)
        summary = combine_seeds(points, within_se=ses)
    table = summary.to_dict()["summary"]
    document = {
        "what": "claim readings (a)/(b)/(c), small run; NOT the full claim benchmark",
        "size": {"n_users": args.users, "seeds": args.seeds, "n_bootstrap": args.bootstrap,
                 "backend": "inprocess", "budgets": list(BUDGETS)},
        "interval": "mean of per-seed lifts +/- t * sqrt(max(between SD^2, within SE^2) / s)",
        "summary": table,
        "runs": sorted(runs, key=lambda run: run["seed"]),
        "wall_seconds": round(time.time() - started, 1),
        "machine": machine(),
    }
    write_json(out, document)
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
