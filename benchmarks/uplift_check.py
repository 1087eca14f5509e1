"""Uplift models against response models on Qini, federated included (issue 18).

For each seed and each effect model (``typology``: heterogeneous; ``segment``: the default,
homogeneous), one ``Experiment`` (in-process backend, efficient mode, batch 512, 8 batches per
message, 3 epochs) on the test world of ``tests/test_uplift.py`` (50 % holdout, conversion rate
0.2, effects +-2) with ``treatment="treated"``: Qini / uplift AUC of every model on held-out
aligned users, and the true incremental conversions of each model's top 30 %.

    python benchmarks/uplift_check.py --users 20000 --seeds 3

Writes ``benchmarks/results/uplift_check_<users>.json``.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _results import machine, write_json  # noqa: E402

from fedads import Experiment, ExperimentConfig, FederationSettings, ProtocolConfig  # noqa: E402
from fedads.world import WorldConfig  # noqa: E402

WORLD = dict(holdout_share=0.5, base_conversion_rate=0.2, persuadable_effect=2.0,
             do_not_disturb_effect=-2.0)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--users", type=int, default=20_000)
    parser.add_argument("--seeds", type=int, default=3)
    args = parser.parse_args()
    rows = []
    for effect in ("typology", "segment"):
        for seed in range(args.seeds):
            start = time.perf_counter()
            config = ExperimentConfig(
                world=WorldConfig(n_users=args.users, seed=seed, ad_effect_model=effect, **WORLD),
                federation=FederationSettings(
                    protocol=ProtocolConfig(
                        mode="efficient", batch_size=512, chunk_batches=8, epochs=3, seed=seed
                    ),  # fmt: skip
                    split_seed=seed,
                ),
                backend="inprocess",
                references=("ecommerce_only", "ecommerce_gbdt"),
                n_bootstrap=100,
                eval_seed=seed,
                treatment="treated",
            )
            result = Experiment.from_world(config).run(verbose=False)
            block = result.uplift.report_block()
            row = {
                "effect": effect,
                "seed": seed,
                "seconds": round(time.perf_counter() - start, 1),
                "n_test": result.uplift.n["all"],
                "qini_auc": {m: v["qini_auc"] for m, v in block.items()},
                "uplift_auc": {m: v["uplift_auc"] for m, v in block.items()},
                "expected_incremental_top30": {
                    m: v["expected_incremental_at_k"]["0.3"] for m, v in block.items()
                },
            }
            print(row, flush=True)
            rows.append(row)
    out = Path(__file__).resolve().parent / "results" / f"uplift_check_{args.users}.json"
    write_json(out, {"machine": machine(), "world": WORLD, "rows": rows})


if __name__ == "__main__":
    main()
