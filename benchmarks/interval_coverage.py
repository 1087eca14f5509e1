"""Do the across-seed 95% lift intervals cover the truth 95% of the time? A known-truth check.

No training: each "seed" is a pair of models with a known quality drawn at random (the
between-seed variance: world and training), scored on a fresh held-out set drawn from a known
conversion model (the within-seed variance: which users are held out and who converts). The
library's own code computes everything: :func:`fedads.eval.compute_lifts` (top-K selection in
the prospecting pool, paired bootstrap) per seed, :func:`fedads.eval.combine_seeds` across
seeds, with and without the within-seed standard errors.

The known world: intent ``z ~ N(0, 1)``; ``p1 = sigmoid(c + z)``, ``p0 = sigmoid(c - 0.4 + z)``
(mean p1 about 4%); 20% existing customers (excluded: prospecting pool); one uniform draw per
user gives ``y0 <= y1``. A model with noise ``sigma`` scores ``z + sigma * eps``. Model A
(``federated``) has ``sigma_A = 1.0 + tau * u``, model B (``ecommerce_only``) ``sigma_B = 1.3 +
tau * u'`` with ``u, u'`` uniform on an 11-point grid of [-1, 1], fresh for every seed.

Truth: for each grid value, the population share ``f(sigma)`` = mean p1 among the top 12.5% of
new customers by score (the 10% budget in users, spent among the 80% who are new), from 2M
simulated users. A seed's true lift is ``f(sigma_A) / f(sigma_B) - 1`` (the same for observed
and expected counts: E[y1] = p1); the across-seed estimand is its mean over the grid pairs.

    python benchmarks/interval_coverage.py           # ~3 regimes x 200 replications
    python benchmarks/interval_coverage.py --quick   # small, seconds

Writes ``benchmarks/results/interval_coverage.json`` (``--quick``:
``interval_coverage_quick.json``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from fedads.errors import FedadsWarning
from fedads.eval import EvalData, combine_seeds, compute_lifts

RESULTS = Path(__file__).resolve().parent / "results"
BUDGET = 0.10
EXISTING_SHARE = 0.2
INTERCEPT = -3.7
UPLIFT_SHIFT = 0.4
SIGMA_A, SIGMA_B = 1.0, 1.3
GRID = np.linspace(-1.0, 1.0, 11)
KINDS = ("targeting", "expected")


@dataclass(frozen=True)
class Regime:
    """One known-truth setting: seeds per replication, users per seed, between-seed spread."""

    name: str
    n_seeds: int
    n_users: int
    tau: float
    replications: int
    n_bootstrap: int
    n_population: int = 2_000_000


FULL: tuple[Regime, ...] = (
    Regime("between_and_within", n_seeds=10, n_users=3_000, tau=0.25, replications=120,
           n_bootstrap=120),
    Regime("within_only", n_seeds=10, n_users=3_000, tau=0.0, replications=120, n_bootstrap=120),
    Regime("five_seeds", n_seeds=5, n_users=3_000, tau=0.25, replications=120, n_bootstrap=120),
)  # fmt: skip
QUICK: tuple[Regime, ...] = (
    Regime("quick", n_seeds=4, n_users=1_500, tau=0.25, replications=24, n_bootstrap=60,
           n_population=400_000),
)  # fmt: skip


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def population_share(sigmas: np.ndarray, n: int = 2_000_000, seed: int = 12345) -> np.ndarray:
    """``f(sigma)``: mean p1 among the top ``BUDGET / (1 - EXISTING_SHARE)`` of new customers."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal(n)
    eps = rng.standard_normal(n)
    p1 = _sigmoid(INTERCEPT + z)
    top = int(round(BUDGET / (1 - EXISTING_SHARE) * n))
    out = np.empty(len(sigmas))
    for i, sigma in enumerate(sigmas):
        score = z + sigma * eps
        chosen = np.argpartition(-score, top)[:top]
        out[i] = p1[chosen].mean()
    return out


def truth(tau: float, n_population: int = 2_000_000) -> tuple[float, np.ndarray, np.ndarray]:
    """``(estimand, f(sigma_A grid), f(sigma_B grid))``: the mean of the seed lifts."""
    fa = population_share(SIGMA_A + tau * GRID, n_population)
    fb = population_share(SIGMA_B + tau * GRID, n_population)
    lifts = fa[:, None] / fb[None, :] - 1.0
    return float(lifts.mean()), fa, fb


def one_seed(rng: np.random.Generator, n: int, sigma_a: float, sigma_b: float,
             n_bootstrap: int, seed: int) -> dict[str, tuple[float, float, float]]:  # fmt: skip
    """Per kind ``(point, ci_low, ci_high)`` of one seed's lift from the library's code."""
    z = rng.standard_normal(n)
    existing = (rng.random(n) < EXISTING_SHARE).astype(np.int8)
    p1 = _sigmoid(INTERCEPT + z)
    p0 = _sigmoid(INTERCEPT - UPLIFT_SHIFT + z)
    u = rng.random(n)
    y0, y1 = (u < p0).astype(np.int8), (u < p1).astype(np.int8)
    scores = {
        "federated": _sigmoid(z + sigma_a * rng.standard_normal(n)),
        "ecommerce_only": _sigmoid(z + sigma_b * rng.standard_normal(n)),
    }
    data = EvalData(label=y1, is_existing_customer=existing, scores=scores, y0=y0, y1=y1,
                    p0=p0, p1=p1)  # fmt: skip
    rows = compute_lifts(
        data, baselines=("ecommerce_only",), budgets=(BUDGET,), pools=("prospecting",),
        kinds=KINDS, n_bootstrap=n_bootstrap, seed=seed,
    )  # fmt: skip
    return {r.kind: (r.point, r.ci_low, r.ci_high) for r in rows}


def run_regime(regime: Regime, *, seed: int = 0) -> dict[str, Any]:
    """Replicate ``regime``; coverage and width of both across-seed intervals per kind."""
    clock = time.perf_counter()
    theta, fa, fb = truth(regime.tau, regime.n_population)
    rng = np.random.default_rng([seed, 0xC0DE])
    records: dict[str, list[dict[str, float]]] = {k: [] for k in KINDS}
    seed_cover = {k: [] for k in KINDS}
    for rep in range(regime.replications):
        points: dict[str, dict[int, float]] = {k: {} for k in KINDS}
        ses: dict[str, dict[int, float]] = {k: {} for k in KINDS}
        for j in range(regime.n_seeds):
            ia, ib = rng.integers(0, GRID.size, 2)
            true_seed_lift = fa[ia] / fb[ib] - 1.0
            result = one_seed(rng, regime.n_users, SIGMA_A + regime.tau * GRID[ia],
                              SIGMA_B + regime.tau * GRID[ib], regime.n_bootstrap,
                              seed=rep * 1000 + j)  # fmt: skip
            for kind, (point, low, high) in result.items():
                points[kind][j] = point
                ses[kind][j] = (high - low) / (2 * 1.959963984540054)
                if math.isfinite(low) and math.isfinite(high):
                    seed_cover[kind].append(low <= true_seed_lift <= high)
        for kind in KINDS:
            with_within = combine_seeds(points[kind], within_se=ses[kind])
            name = "value"
            low, high = with_within.ci_low[name], with_within.ci_high[name]
            t_low, t_high = with_within.t_low[name], with_within.t_high[name]
            records[kind].append({
                "mean": float(with_within.mean[name]),
                "covers": float(low <= theta <= high),
                "covers_t": float(t_low <= theta <= t_high),
                "width": float(high - low),
                "width_t": float(t_high - t_low),
                "between_sd": float(with_within.between_sd[name]),
                "within_se": float(with_within.within_se[name]),
            })  # fmt: skip
    out: dict[str, Any] = {"regime": asdict(regime), "estimand": theta, "kinds": {}}
    for kind, rows in records.items():
        covers = np.array([r["covers"] for r in rows])
        covers_t = np.array([r["covers_t"] for r in rows])
        narrow = np.array([r["between_sd"] < r["within_se"] for r in rows])
        reps = covers.size
        out["kinds"][kind] = {
            "coverage_t_plus_within": float(covers.mean()),
            "coverage_t": float(covers_t.mean()),
            "coverage_mc_se": float(math.sqrt(0.95 * 0.05 / reps)),
            "mean_width_t_plus_within": float(np.mean([r["width"] for r in rows])),
            "mean_width_t": float(np.mean([r["width_t"] for r in rows])),
            "share_seed_sd_below_within_se": float(narrow.mean()),
            "coverage_t_when_seed_sd_below_within_se": (
                float(covers_t[narrow].mean()) if narrow.any() else None
            ),
            "coverage_t_plus_within_when_seed_sd_below_within_se": (
                float(covers[narrow].mean()) if narrow.any() else None
            ),
            "mean_estimate": float(np.mean([r["mean"] for r in rows])),
            "mean_between_sd": float(np.mean([r["between_sd"] for r in rows])),
            "mean_within_se": float(np.mean([r["within_se"] for r in rows])),
            "per_seed_bootstrap_coverage": (
                float(np.mean(seed_cover[kind])) if seed_cover[kind] else None
            ),
        }
    out["seconds"] = round(time.perf_counter() - clock, 1)
    return out


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small replication count")
    parser.add_argument("--out", type=Path, default=None, help="result file")
    args = parser.parse_args(list(argv) if argv is not None else None)
    regimes = QUICK if args.quick else FULL
    out = args.out or RESULTS / ("interval_coverage_quick.json" if args.quick else
                                 "interval_coverage.json")  # fmt: skip
    started = time.time()
    results = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FedadsWarning)  # a rare resample with a 0 baseline
        for regime in regimes:
            result = run_regime(regime)
            results.append(result)
            for kind, row in result["kinds"].items():
                print(
                    f"{regime.name:<20} {kind:<10} coverage t+within "
                    f"{row['coverage_t_plus_within']:.3f} "
                    f"(width {row['mean_width_t_plus_within']:.3f}), t {row['coverage_t']:.3f} "
                    f"(width {row['mean_width_t']:.3f}); per-seed bootstrap "
                    f"{row['per_seed_bootstrap_coverage']}",
                    flush=True,
                )
    document = {
        "what": __doc__.splitlines()[0],
        "budget": BUDGET,
        "pool": "prospecting",
        "model": {"intercept": INTERCEPT, "uplift_shift": UPLIFT_SHIFT, "sigma_a": SIGMA_A,
                  "sigma_b": SIGMA_B, "grid": GRID.tolist(), "existing_share": EXISTING_SHARE},
        "regimes": results,
        "wall_seconds": round(time.time() - started, 1),
        "machine": {"cpus": os.cpu_count(), "python": platform.python_version(),
                    "load_average": list(os.getloadavg())},
    }  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(document, indent=1, allow_nan=False) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
