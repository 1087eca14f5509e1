"""The lift-claim benchmark (``benchmarks/lift_claim.py``): its transports agree, its negative
controls show no lift, and a real social signal does show one.

* One Flower simulation run (Ray, ~20 s) on a tiny world: the simulation engine, the in-process
  transport and the benchmark's direct path (experimenter-side alignment, no PSI) give
  bit-identical scores and lifts for the same seed.
* Negative controls on a small world (40k e-commerce users, 26k aligned, 7.8k held out; 4 seeds,
  direct path, ~2-3 s a run): with ``social_intent_strength=0`` and with the social features
  shuffled across users, the across-seed 95% interval of the lift covers 0 and the federated
  model's AUC equals the e-commerce model's within noise; with ``social_intent_strength=1`` the
  same test finds a lift whose interval excludes 0 and a clear AUC gain, so the checks can fail.
"""

from __future__ import annotations

import importlib.util
import math
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from fedads.eval import Evaluation, combine_seeds
from fedads.world import WorldConfig, generate_world

BENCHMARK = Path(__file__).resolve().parents[1] / "benchmarks" / "lift_claim.py"


def _load_benchmark() -> ModuleType:
    spec = importlib.util.spec_from_file_location("lift_claim", BENCHMARK)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while being built
    spec.loader.exec_module(module)
    return module


lc = _load_benchmark()

CONTROL_USERS = 40_000
CONTROL_SEEDS = (0, 1, 2, 3)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _run(world: WorldConfig, seed: int, backend: str, *, shuffle: bool = False) -> Evaluation:
    config = lc.experiment_config(
        world,
        seed,
        backend=backend,
        references=("ecommerce_only",),
        budgets=(0.05, 0.10),
        n_bootstrap=200,
    )
    return lc.run_one(config, backend=backend, shuffle=shuffle)


# ----------------------------------------------------------------------------- transports
def test_simulation_inprocess_and_direct_paths_give_identical_scores() -> None:
    world = WorldConfig(n_users=2_000)
    runs = {backend: _run(world, 3, backend) for backend in ("simulation", "inprocess", "direct")}
    reference = runs["inprocess"]
    assert reference.data.n == round(0.3 * 0.65 * 2_000)
    for backend, evaluation in runs.items():
        assert evaluation.models == reference.models, backend
        np.testing.assert_array_equal(evaluation.data.keys, reference.data.keys, err_msg=backend)
        for model in reference.models:
            np.testing.assert_array_equal(
                evaluation.data.scores[model], reference.data.scores[model], err_msg=backend
            )
        assert [_plain(r.to_dict()) for r in evaluation.lifts] == [
            _plain(r.to_dict()) for r in reference.lifts
        ], backend


def _plain(row: dict[str, object]) -> dict[str, object]:
    """NaN -> None (NaN != NaN), so identical lift rows compare equal."""
    out: dict[str, object] = {}
    for key, value in row.items():
        if isinstance(value, list):
            value = [None if isinstance(v, float) and math.isnan(v) else v for v in value]
        elif isinstance(value, float) and math.isnan(value):
            value = None
        out[key] = value
    return out


def test_shuffle_moves_whole_feature_rows_and_keeps_keys() -> None:
    social, _ = generate_world(WorldConfig(n_users=500, seed=1)).party_tables()
    shuffled = lc.shuffle_social_features(social, seed=1)
    assert list(shuffled.frame.columns) == list(social.frame.columns)
    assert shuffled.numeric_columns == social.numeric_columns
    assert shuffled.categorical_columns == social.categorical_columns
    np.testing.assert_array_equal(shuffled.keys(), social.keys())
    features = list(social.feature_columns)
    before = social.frame[features].astype(str).agg("|".join, axis=1)
    after = shuffled.frame[features].astype(str).agg("|".join, axis=1)
    assert sorted(before) == sorted(after)  # a permutation of whole rows
    assert (before.to_numpy() != after.to_numpy()).mean() > 0.9  # and it moved nearly all
    again = lc.shuffle_social_features(social, seed=1)
    assert again.frame.equals(shuffled.frame)


def test_claim_positions() -> None:
    assert [lc.position(v) for v in (0.1, 0.15, 0.2, 0.25, 0.3, math.nan)] == [
        "below", "inside", "inside", "inside", "above", "undefined",
    ]  # fmt: skip
    assert lc.interval_vs_claim(-0.1, 0.1) == "below claim; covers 0"
    assert lc.interval_vs_claim(0.1, 0.3) == "overlaps claim; excludes 0 (>0)"
    assert lc.interval_vs_claim(0.16, 0.24) == "within claim; excludes 0 (>0)"
    assert lc.interval_vs_claim(0.3, 0.5) == "above claim; excludes 0 (>0)"


# ----------------------------------------------------------------------------- controls
def _setting(world: WorldConfig, *, shuffle: bool = False) -> tuple[object, list[float]]:
    """Per-seed prospecting lift at 10% (combined across seeds) and AUC gains."""
    lifts: dict[int, float] = {}
    auc_gains: list[float] = []
    for seed in CONTROL_SEEDS:
        evaluation = _run(world, seed, "direct", shuffle=shuffle)
        lifts[seed] = evaluation.lift("prospecting", budget=0.10).point
        auc = {m: evaluation.metrics[m]["overall"].auc for m in evaluation.models}
        auc_gains.append(auc["federated"] - auc["ecommerce_only"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every seed must give a finite lift
        summary = combine_seeds(lifts)
    return summary, auc_gains


def test_negative_controls_show_no_lift_and_a_real_signal_does() -> None:
    base = WorldConfig(n_users=CONTROL_USERS)
    controls = {
        "social_intent_strength=0": _setting(base.replace(social_intent_strength=0.0)),
        "shuffled social features": _setting(base, shuffle=True),
    }
    positive, positive_gains = _setting(base.replace(social_intent_strength=1.0))

    for name, (summary, gains) in controls.items():
        low, high = float(summary.ci_low["value"]), float(summary.ci_high["value"])
        assert low <= 0.0 <= high, f"{name}: lift interval [{low:.3f}, {high:.3f}] excludes 0"
        assert max(abs(g) for g in gains) < 0.015, f"{name}: AUC gains {gains}"
    low = float(positive.ci_low["value"])
    assert low > 0.0, f"social_intent_strength=1: lift interval starts at {low:.3f}"
    assert min(positive_gains) > 0.02, f"social_intent_strength=1: AUC gains {positive_gains}"
    for name, (summary, _) in controls.items():
        assert float(positive.mean["value"]) > float(summary.mean["value"]) + 0.15, name
