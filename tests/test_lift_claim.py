"""The lift-claim measurement: its negative controls show no lift, a real social signal does, and
the benchmark script (``benchmarks/lift_claim.py``) runs end to end. No benchmark is imported:
the controls run through the public facade, the script as a subprocess.

* Negative controls on a small world (40k e-commerce users, 26k aligned, 7.8k held out; 4 seeds,
  ``Experiment(backend="inprocess").run(alignment="clear")``, ~2-3 s a run): with
  ``social_intent_strength=0`` and with the social features shuffled across users, the
  across-seed 95% interval of the lift covers 0 and the federated model's AUC equals the
  e-commerce model's within noise; with ``social_intent_strength=1`` the same test finds a lift
  whose interval excludes 0 and a clear AUC gain, so the checks can fail.
* ``python benchmarks/lift_claim.py --quick`` at its smallest (2k users, one seed, one sweep)
  writes every output file with the fields the docs quote.
"""

from __future__ import annotations

import functools
import json
import math
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from fedads import Experiment, ExperimentConfig, FederationSettings, ProtocolConfig, WorldConfig
from fedads.errors import FedadsWarning
from fedads.eval import Evaluation, combine_seeds
from fedads.world import generate_world, shuffle_features

ROOT = Path(__file__).resolve().parents[1]
CONTROL_USERS = 40_000
CONTROL_SEEDS = (0, 1, 2, 3)
CLAIM = (0.15, 0.25)


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def no_feature_inference(monkeypatch: pytest.MonkeyPatch) -> None:
    """The controls check the lift measurement, not the privacy block every run also reports:
    its feature-inference part (linear attacks on up to 20k held-out users) was more than half
    of each 40k-user run. The label-leakage part still runs; feature inference has its own
    tests (tests/test_privacy_leakage.py)."""
    import fedads.experiment
    from fedads.privacy.leakage import privacy_report

    monkeypatch.setattr(
        fedads.experiment,
        "privacy_report",
        functools.partial(privacy_report, feature_inference=False),
    )


def _run(world: WorldConfig, seed: int, *, shuffle: bool = False) -> Evaluation:
    """One run as the benchmark's sweeps do it: world seed = split = model = bootstrap seed."""
    config = ExperimentConfig(
        world=world.replace(seed=seed),
        federation=FederationSettings(
            protocol=ProtocolConfig(
                mode="efficient",
                batch_size=512,
                chunk_batches=8,
                epochs=5,
                seed=seed,
                # The controls check the measurement (no signal -> no lift), so the model is
                # trained undefended; the default defense's cost is measured in
                # benchmarks/privacy_frontier.py.
                defense="none",
            ),
            split_seed=seed,
            verbose=False,
        ),
        backend="inprocess",
        references=("ecommerce_only",),
        budgets=(0.05, 0.10),
        n_bootstrap=200,
        eval_seed=seed,
    )
    generated = generate_world(config.world)
    social, ecommerce = generated.party_tables()
    if shuffle:
        social = shuffle_features(social, seed)
    experiment = Experiment.from_tables(social, ecommerce, config, truth=generated.truth)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FedadsWarning)
        return experiment.run(verbose=False, alignment="clear").evaluation


def test_shuffle_moves_whole_feature_rows_and_keeps_keys() -> None:
    social, ecommerce = generate_world(WorldConfig(n_users=500, seed=1)).party_tables()
    shuffled = shuffle_features(social, seed=1)
    assert list(shuffled.frame.columns) == list(social.frame.columns)
    assert shuffled.numeric_columns == social.numeric_columns
    assert shuffled.categorical_columns == social.categorical_columns
    np.testing.assert_array_equal(shuffled.keys(), social.keys())
    features = list(social.feature_columns)
    before = social.frame[features].astype(str).agg("|".join, axis=1)
    after = shuffled.frame[features].astype(str).agg("|".join, axis=1)
    assert sorted(before) == sorted(after)  # a permutation of whole rows
    assert (before.to_numpy() != after.to_numpy()).mean() > 0.9  # and it moved nearly all
    assert shuffle_features(social, seed=1).frame.equals(shuffled.frame)
    # the label holder's labels and flags stay with their keys
    moved = shuffle_features(ecommerce, seed=1)
    np.testing.assert_array_equal(moved.labels(), ecommerce.labels())
    np.testing.assert_array_equal(moved.existing_flags(), ecommerce.existing_flags())


def _setting(world: WorldConfig, *, shuffle: bool = False) -> tuple[object, list[float]]:
    """Per-seed prospecting lift at 10% (combined across seeds) and AUC gains."""
    lifts: dict[int, float] = {}
    auc_gains: list[float] = []
    for seed in CONTROL_SEEDS:
        evaluation = _run(world, seed, shuffle=shuffle)
        lifts[seed] = evaluation.lift("prospecting", budget=0.10).point
        auc = {m: evaluation.metrics[m]["overall"].auc for m in evaluation.models}
        auc_gains.append(auc["federated"] - auc["ecommerce_only"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # every seed must give a finite lift
        summary = combine_seeds(lifts)
    return summary, auc_gains


@pytest.mark.usefixtures("no_feature_inference")
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


def _position(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "undefined"
    return "below" if value < CLAIM[0] else ("above" if value > CLAIM[1] else "inside")


def test_benchmark_script_quick_mode_runs_and_writes_its_outputs(tmp_path: Path) -> None:
    out = tmp_path / "lift"
    command = [
        sys.executable, str(ROOT / "benchmarks" / "lift_claim.py"), "--quick", "--out", str(out),
        "--users", "2000", "--seeds", "1", "--control-seeds", "1", "--sweep-seeds", "1",
        "--sweeps", "overlap_rate", "--bootstrap", "50", "--headline-backend", "inprocess",
    ]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FLWR_TELEMETRY_ENABLED": "0"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "Headline: federated vs ecommerce_only" in done.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["quick"] is True and summary["complete"] is True
    assert summary["backends"] == {"headline": "inprocess", "controls_and_sweeps": "direct"}
    for name in summary["files"]:
        assert (out / name).exists(), name
    assert {"headline.csv", "controls.csv", "sweep_budget.png", "sweep_overlap_rate.csv"} <= set(
        summary["files"]
    )
    for row in summary["headline"]:
        assert row["position"] == _position(row["lift_mean"]), row
        assert row["n_seeds"] == 1
    runs = pd.read_csv(out / "runs.csv")
    assert set(runs["group"]) == {"headline", "control", "sweep"}
    assert set(runs["backend"]) == {"inprocess", "direct"}
    controls = pd.read_csv(out / "controls.csv")
    assert set(controls["control"]) == {"social_intent_strength", "shuffled_social_features"}
    # every lift is recomputed from its counts (no number in the outputs is made up)
    finite = runs[runs["baseline_count"] > 0]
    np.testing.assert_allclose(
        finite["lift"], finite["model_count"] / finite["baseline_count"] - 1, rtol=1e-9
    )
