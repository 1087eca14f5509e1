"""Same seed, same machine, same numbers (issue 14, item 6), on the in-process backend.

One small ``Experiment`` (federated model early-stopped through the protocol, the matched
``ecommerce_only`` network and the practitioner ``ecommerce_gbdt``) is run twice in this process
(the second time with a single torch thread) and once in a fresh Python process: every score and
every lift must be bit-identical. Flower's simulation engine is not covered here: its
scores equal the in-process ones only up to float32 rounding (tests/test_zoo.py,
tests/test_early_stopping.py; docs/lift-claim.md "Reproducibility").
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from fedads import (
    Experiment,
    ExperimentConfig,
    FedadsWarning,
    FederationSettings,
    ProtocolConfig,
    WorldConfig,
)

ROOT = Path(__file__).resolve().parents[1]
MODELS = ("federated", "ecommerce_only", "ecommerce_gbdt")


def config() -> ExperimentConfig:
    protocol = ProtocolConfig(
        mode="efficient", batch_size=256, chunk_batches=4, epochs=3, seed=1,
        early_stopping_patience=1,
    )  # fmt: skip
    return ExperimentConfig(
        world=WorldConfig(n_users=3_000, seed=1),
        federation=FederationSettings(
            protocol=protocol, split_seed=1, valid_share=0.2, verbose=False
        ),
        backend="inprocess",
        references=("ecommerce_only", "ecommerce_gbdt"),
        budgets=(0.05, 0.1),
        n_bootstrap=50,
    )


def fingerprint() -> dict[str, str | float]:
    """sha256 of each model's held-out scores and of every lift row (points and intervals)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FedadsWarning)
        result = Experiment.from_world(config()).run(verbose=False, alignment="clear")
    out: dict[str, str | float] = {
        model: hashlib.sha256(
            np.ascontiguousarray(result.scores[model].to_numpy(np.float64)).tobytes()
        ).hexdigest()
        for model in MODELS
    }
    lifts = [
        (r.kind, r.baseline, r.pool, r.budget, r.point, r.ci_low, r.ci_high)
        for r in result.evaluation.lifts
    ]
    out["lifts"] = hashlib.sha256(repr(lifts).encode()).hexdigest()
    return out


_CHILD = """
import json, sys
sys.path.insert(0, {tests!r})
from test_reproducibility import fingerprint
print("FINGERPRINT " + json.dumps(fingerprint()))
"""


@pytest.fixture(scope="module")
def first() -> dict[str, str | float]:
    return fingerprint()


def test_same_seed_same_numbers_twice_in_one_process_whatever_the_threads(first) -> None:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        assert fingerprint() == first
    finally:
        torch.set_num_threads(threads)


def test_same_seed_same_numbers_in_a_fresh_process(first) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FLWR_TELEMETRY_ENABLED": "0"}
    done = subprocess.run(
        [sys.executable, "-c", _CHILD.format(tests=str(ROOT / "tests"))],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    line = next(x for x in done.stdout.splitlines() if x.startswith("FINGERPRINT "))
    assert json.loads(line.removeprefix("FINGERPRINT ")) == first
