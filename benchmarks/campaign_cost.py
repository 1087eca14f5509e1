"""Cost of ``campaign=True`` (docs/evaluation.md, "Should campaign be on by default?").

The benchmarks/campaign.py recipe at 30,000 users, seed 0, in process, each setting twice (off,
on, off, on): wall and CPU time of ``Experiment.run`` and of its stages (CPU time of this process,
all threads: on a shared machine it is the steadier measure), the federated run's bytes, and
what the privacy instruments record (rows of social embeddings the label party received for
scoring, the feature-inference gain, whether the label leakage is unchanged).

    python benchmarks/campaign_cost.py benchmarks/results/campaign_cost_30000.json
"""

from __future__ import annotations

import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

import torch
from campaign import config

import fedads.experiment as experiment
from fedads import Experiment, FedadsWarning

#: Stages of Experiment.run timed by wrapping the functions it calls.
STAGES = (
    "run_federated",
    "train_references",
    "practitioner_references",
    "fit_local_serving",
    "evaluate_held_out",
    "privacy_report",
    "evaluate_campaign",
)


def one_run(campaign: bool) -> tuple[dict[str, float], Any]:
    cfg = config(30_000, 0, 500).replace(campaign=campaign)
    cpu: dict[str, float] = {}
    originals = {name: getattr(experiment, name) for name in STAGES}

    def timed(name: str, function: Any) -> Any:
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            start = time.process_time()
            try:
                return function(*args, **kwargs)
            finally:
                cpu[name] = round(cpu.get(name, 0.0) + time.process_time() - start, 1)

        return wrapper

    for name, function in originals.items():
        setattr(experiment, name, timed(name, function))
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FedadsWarning)
            wall, start = time.perf_counter(), time.process_time()
            result = Experiment.from_world(cfg).run(verbose=False, alignment="clear")
            cpu["total"] = round(time.process_time() - start, 1)
            cpu["wall"] = round(time.perf_counter() - wall, 1)
    finally:
        for name, function in originals.items():
            setattr(experiment, name, function)
    return cpu, result


def main(out_path: str) -> int:
    torch.set_num_threads(1)
    out: dict[str, dict[str, Any]] = {}
    leakage: dict[str, str] = {}
    for campaign in (False, True, False, True):
        seconds, result = one_run(campaign)
        inference = result.privacy.get("feature_inference") or {}
        received = result.federated.party_outputs.get("received_embeddings")
        entry = out.setdefault(str(campaign), {"cpu_seconds": []})
        entry["cpu_seconds"].append(seconds)
        entry.update(
            {
                "federated_elapsed_s": round(result.federated.elapsed_s, 1),
                "traffic_bytes": result.federated.traffic,
                "feature_inference_users": inference.get("users"),
                "feature_inference_max_gain": inference.get("max_gain"),
                "feature_inference_mean_gain": inference.get("mean_gain"),
                "received_embeddings_rows": 0 if received is None else int(len(received)),
            }
        )
        leakage[str(campaign)] = json.dumps(result.privacy.get("label_leakage"), sort_keys=True)
        print(campaign, seconds, flush=True)
    out["True"]["label_leakage_same_as_off"] = leakage["True"] == leakage["False"]
    Path(out_path).write_text(json.dumps(out, indent=1, default=float) + "\n")
    print(json.dumps(out, indent=1, default=float))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
