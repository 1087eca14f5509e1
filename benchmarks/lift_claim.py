"""Reproduce or refute the claim: "joint (federated) ad model -> 15-25% more new customers".

The claim compares, at the same ad budget, the new customers a campaign brings when users are
picked by the federated model (social + e-commerce features, split learning) with the new
customers it brings when they are picked by the e-commerce platform's model alone. This script
measures that lift on the synthetic world (``fedads.world``) and shows what moves it.

One command regenerates every result under ``--out`` (default
``benchmarks/results/lift_claim``)::

    python benchmarks/lift_claim.py            # full benchmark (~30-45 min on 2 busy cores)
    python benchmarks/lift_claim.py --quick    # CI-size smoke run (a few minutes)
    python benchmarks/lift_claim.py --quick --users 2000 --seeds 1 --control-seeds 1 \
        --sweep-seeds 1 --sweeps overlap_rate --headline-backend inprocess   # seconds (tests)

What runs (all runs: world seed = split seed = model seed = bootstrap seed = ``seed``):

1. **Headline**: the default world (only ``n_users`` and ``seed`` set), ``--seeds`` seeds,
   federated training through Flower's simulation engine (``backend="simulation"``), the three
   references (``ecommerce_only``, ``social_only``, ``centralized``) trained as in
   :class:`fedads.experiment.Experiment`. Budgets 1%, 5%, 10% (and more for the budget sweep),
   pools ``all`` and ``prospecting``, targeting and incremental lift. Within a seed the paired
   bootstrap of :func:`fedads.eval.evaluate`; across seeds :func:`fedads.eval.combine_seeds`.
2. **Negative controls** (``--control-seeds`` seeds): (a) ``social_intent_strength=0``;
   (b) the social table's feature rows permuted relative to its keys
   (:func:`fedads.world.shuffle_features`).
3. **Sweeps** (``--sweep-seeds`` seeds per point): ``overlap_rate``,
   ``social_intent_strength``, ``ecommerce_activity_skew``, ``base_conversion_rate``, one at a
   time around the default; the budget sweep re-uses the headline runs. A point equal to the
   default re-uses the headline runs of the same seeds (the test suite shows that the Flower
   simulation, the in-process transport and the direct path give identical scores).

Every run goes through the public facade (:class:`fedads.Experiment`). Controls and sweeps use
the **direct** path by default: ``Experiment(backend="inprocess").run(alignment="clear")``, the
library's supported shortcut for simulations, in which the experimenter aligns the two tables in
the clear instead of by the private set intersection and hands each party its own rows. The PSI
is most of an in-process run's wall time and does not change the result: the aligned order is a
function of the key set only (:func:`fedads.align.aligned_order`), and
``tests/test_alignment_reuse.py`` checks that the scores are bit-identical to the PSI path, in
process and through Flower. ``--sweep-backend inprocess`` (or ``simulation``) runs the PSI too.

Outputs (``--out``): ``summary.json`` (everything), ``runs.csv`` (one row per run x baseline x
pool x budget x kind), ``headline.csv``, ``controls.csv``, ``sweep_<name>.csv`` and
``sweep_<name>.png`` for every sweep, ``run.log`` is what ``nohup`` writes if you use it.
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
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from fedads import Experiment, ExperimentConfig, FederationSettings, ProtocolConfig, WorldConfig
from fedads.errors import FedadsWarning
from fedads.eval import Evaluation, combine_seeds
from fedads.experiment import REFERENCE_MODELS
from fedads.world import generate_world, shuffle_features

RESULTS = Path(__file__).resolve().parent / "results" / "lift_claim"
CLAIM: tuple[float, float] = (0.15, 0.25)
POOLS: tuple[str, ...] = ("all", "prospecting")
KINDS: tuple[str, ...] = ("targeting", "incremental")
HEADLINE_BUDGETS: tuple[float, ...] = (0.01, 0.05, 0.10)
HEADLINE_BUDGET = 0.10
BUDGET_SWEEP: tuple[float, ...] = (0.01, 0.02, 0.05, 0.10, 0.15, 0.20, 0.30)
SWEEP_BACKENDS: tuple[str, ...] = ("direct", "inprocess", "simulation")

FULL_USERS = 100_000
QUICK_USERS = 20_000

# One parameter at a time around the default world (the default value is in every list).
FULL_SWEEPS: dict[str, tuple[float, ...]] = {
    "overlap_rate": (0.1, 0.25, 0.4, 0.65, 0.8, 1.0),
    "social_intent_strength": (0.0, 0.25, 0.5, 0.75, 1.0),
    "ecommerce_activity_skew": (0.5, 0.8, 1.2, 1.6, 2.0),
    "base_conversion_rate": (0.01, 0.02, 0.04, 0.08),
}
QUICK_SWEEPS: dict[str, tuple[float, ...]] = {
    "overlap_rate": (0.25, 0.65, 1.0),
    "social_intent_strength": (0.0, 0.5, 1.0),
    "ecommerce_activity_skew": (0.5, 1.2, 2.0),
    "base_conversion_rate": (0.02, 0.04, 0.08),
}


def protocol_config(seed: int) -> ProtocolConfig:
    """The training protocol of every run (efficient split learning, 5 epochs)."""
    return ProtocolConfig(mode="efficient", batch_size=512, chunk_batches=8, epochs=5, seed=seed)


def experiment_config(
    world: WorldConfig,
    seed: int,
    *,
    backend: str = "simulation",
    references: tuple[str, ...] = REFERENCE_MODELS,
    budgets: tuple[float, ...] = HEADLINE_BUDGETS,
    n_bootstrap: int = 1000,
) -> ExperimentConfig:
    """One experiment with world seed = split seed = model seed = bootstrap seed = ``seed``."""
    return ExperimentConfig(
        world=world.replace(seed=seed),
        federation=FederationSettings(
            protocol=protocol_config(seed), split_seed=seed, verbose=False
        ),
        backend=backend,
        references=references,
        budgets=budgets,
        headline_budget=HEADLINE_BUDGET,
        n_bootstrap=n_bootstrap,
        eval_seed=seed,
    )


# ------------------------------------------------------------------------------ runners
def run_one(config: ExperimentConfig, *, backend: str, shuffle: bool = False) -> Evaluation:
    """One experiment through the public facade: world -> (optional shuffle control) ->
    :class:`fedads.Experiment` -> evaluation.

    ``backend="direct"`` is ``Experiment(backend="inprocess").run(alignment="clear")``: the
    experimenter, who holds both tables in a simulation, aligns them in the clear (the PSI's rows
    and order, :meth:`fedads.protocol.runtime.AlignedRows.in_the_clear`) and each party gets its
    own rows in its private folder; everything after the alignment is the same code.
    """
    world = generate_world(config.world)
    social, ecommerce = world.party_tables()
    if shuffle:
        social = shuffle_features(social, config.world.seed)
    direct = backend == "direct"
    experiment = Experiment.from_tables(
        social,
        ecommerce,
        config.replace(backend="inprocess" if direct else backend),
        truth=world.truth,
    )
    with warnings.catch_warnings():
        # Undefined lifts (tiny counts in pool "all") are expected; they are in .notes and NaN.
        warnings.simplefilter("ignore", FedadsWarning)
        return experiment.run(verbose=False, alignment="clear" if direct else None).evaluation


# ------------------------------------------------------------------------------ records
def run_records(evaluation: Evaluation) -> list[dict[str, Any]]:
    """One flat row per baseline x pool x budget x kind, with counts and the AUCs."""
    aucs = {m: evaluation.metrics[m]["overall"].auc for m in evaluation.models}
    rows = []
    for lift in evaluation.lifts:
        rows.append(
            {
                "baseline": lift.baseline,
                "pool": lift.pool,
                "budget": lift.budget,
                "kind": lift.kind,
                "k": lift.k,
                "model_count": lift.model_count,
                "baseline_count": lift.baseline_count,
                "lift": lift.point,
                "boot_ci_low": lift.ci_low,
                "boot_ci_high": lift.ci_high,
                "share_positive": lift.share_positive,
                "n_valid": lift.n_valid,
                "n_test": evaluation.data.n,
                **{f"auc_{m}": v for m, v in aucs.items()},
            }
        )
    return rows


def quantity(baseline: str, pool: str, budget: float, kind: str) -> str:
    """Name of one lift in the across-seed tables, e.g. ``targeting.ecommerce_only.all.0.1``."""
    return f"{kind}.{baseline}.{pool}.{budget:g}"


def summarize(runs: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Across-seed summary per ``keys`` group x baseline x pool x budget x kind.

    ``lift_mean`` and its 95% t-interval over seeds come from :func:`combine_seeds` (mean of the
    per-seed lifts); ``pooled_lift`` = sum of model counts / sum of baseline counts - 1 over the
    seeds (robust when single-seed counts are tiny); ``*_count_mean`` are the mean counts; the
    AUC columns are means over seeds; ``position`` says where the mean lies relative to the
    claimed range and ``ci_vs_claim`` where the interval lies.
    """
    out = []
    detail = ["baseline", "pool", "budget", "kind"]
    for group, frame in runs.groupby(list(keys), sort=False, dropna=False):
        group = group if isinstance(group, tuple) else (group,)
        per_seed: dict[int, dict[str, float]] = {}
        for seed, seed_rows in frame.groupby("seed"):
            per_seed[int(seed)] = {
                quantity(r.baseline, r.pool, r.budget, r.kind): r.lift
                for r in seed_rows.itertuples()
            }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FedadsWarning)
            combined = combine_seeds(per_seed)
        for names, rows in frame.groupby(detail, sort=False):
            name = quantity(*names)
            model_sum = float(rows["model_count"].sum())
            base_sum = float(rows["baseline_count"].sum())
            record = dict(zip(keys, group, strict=True))
            record.update(dict(zip(detail, names, strict=True)))
            mean = float(combined.mean[name])
            low, high = float(combined.ci_low[name]), float(combined.ci_high[name])
            record.update(
                {
                    "n_seeds": int(rows["seed"].nunique()),
                    "n_finite": int(combined.n_seeds[name]),
                    "lift_mean": mean,
                    "ci_low": low,
                    "ci_high": high,
                    "pooled_lift": model_sum / base_sum - 1 if base_sum > 0 else math.nan,
                    "model_count_mean": model_sum / len(rows),
                    "baseline_count_mean": base_sum / len(rows),
                    "k": int(rows["k"].iloc[0]),
                    "n_test_mean": float(rows["n_test"].mean()),
                    "share_seeds_boot_ci_covers_0": float(
                        ((rows["boot_ci_low"] <= 0) & ~(rows["boot_ci_high"] < 0)).mean()
                    ),
                    "position": position(mean),
                    "ci_vs_claim": interval_vs_claim(low, high),
                }
            )
            for column in frame.columns:
                if column.startswith("auc_"):
                    record[column] = float(rows[column].mean())
            out.append(record)
    return pd.DataFrame(out)


def position(value: float, claim: tuple[float, float] = CLAIM) -> str:
    """``below`` / ``inside`` / ``above`` the claimed range (``undefined`` for NaN)."""
    if not math.isfinite(value):
        return "undefined"
    if value < claim[0]:
        return "below"
    return "above" if value > claim[1] else "inside"


def interval_vs_claim(low: float, high: float, claim: tuple[float, float] = CLAIM) -> str:
    """Where an interval lies relative to the claimed range and to 0."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return "undefined"
    if high < claim[0]:
        where = "below claim"
    elif low > claim[1]:
        where = "above claim"
    elif low >= claim[0] and high <= claim[1]:
        where = "within claim"
    else:
        where = "overlaps claim"
    zero = "covers 0" if low <= 0 <= high else ("excludes 0 (>0)" if low > 0 else "excludes 0 (<0)")
    return f"{where}; {zero}"


# ------------------------------------------------------------------------------ plots
def plot_sweep(
    table: pd.DataFrame,
    x: str,
    path: Path,
    *,
    default: float | None,
    title: str,
    n_seeds: int,
    log_x: bool = False,
) -> None:
    """Lift vs ``x``: one panel per pool; targeting and incremental lift with 95% seed CIs.

    Filled circles: mean of the per-seed lifts with its t-interval; crosses: pooled lift (sum of
    counts over seeds); ``n/a``: e-commerce-only count 0, lift undefined. Letters B/I/A: mean
    below / inside / above the claimed range (shaded).
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import FixedLocator, NullLocator

    fig = Figure(figsize=(11, 4.4))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, 2, sharey=False)
    colors = {"targeting": "#1f77b4", "incremental": "#d62728"}
    for ax, pool in zip(axes, POOLS, strict=True):
        ax.axhspan(CLAIM[0], CLAIM[1], color="#2ca02c", alpha=0.18, label="claim 15-25%")
        ax.axhline(0.0, color="black", lw=0.8)
        values = np.sort(table[x].unique().astype(float))
        for shift, kind in zip((-0.012, 0.012), KINDS, strict=True):
            rows = table[(table["pool"] == pool) & (table["kind"] == kind)].sort_values(x)
            if rows.empty:
                continue
            xs = rows[x].to_numpy(float)
            xs = xs * (1 + shift) if log_x else xs + shift * (np.ptp(values) or 1.0)
            ys = rows["lift_mean"].to_numpy(float)
            lo = np.clip(ys - rows["ci_low"].to_numpy(float), 0, None)
            hi = np.clip(rows["ci_high"].to_numpy(float) - ys, 0, None)
            ax.errorbar(
                xs, ys, yerr=np.vstack([lo, hi]), fmt="o-", color=colors[kind], capsize=3,
                label=f"{kind} lift: mean of seeds, 95% CI",
            )  # fmt: skip
            ax.plot(
                xs, rows["pooled_lift"].to_numpy(float), "x", color=colors[kind], ms=7,
                label=f"{kind} lift: pooled counts",
            )  # fmt: skip
            for xi, yi in zip(xs, ys, strict=True):
                text = position(yi)[0].upper() if math.isfinite(yi) else "n/a"
                ax.annotate(
                    text, (xi, yi if math.isfinite(yi) else 0.0), textcoords="offset points",
                    xytext=(5, 5 if kind == "targeting" else -11), fontsize=7, color=colors[kind],
                )  # fmt: skip
        if default is not None:
            ax.axvline(default, color="grey", ls=":", lw=1, label="default world / headline")
        if log_x:
            ax.set_xscale("log")
            ax.xaxis.set_major_locator(FixedLocator(values))
            ax.xaxis.set_minor_locator(NullLocator())
            ax.set_xticklabels([f"{v:g}" if x != "budget" else f"{v:.0%}" for v in values])
        ax.set_xlabel(x)
        ax.set_ylabel("lift: federated / ecommerce_only - 1")
        ax.set_title(f"pool '{pool}'")
        ax.grid(alpha=0.3)
        low, high = ax.get_ylim()
        floor, ceiling = (-1.05, 3.0) if pool == "all" else (-0.5, 1.0)
        ax.set_ylim(max(low, floor), min(high, ceiling))
    axes[1].legend(fontsize=7, loc="best")
    fig.suptitle(
        f"{title} ({n_seeds} seeds per point; B/I/A = mean below/inside/above 15-25%; y clipped)",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


# ------------------------------------------------------------------------------ driver
@dataclass
class Plan:
    """What one invocation runs."""

    n_users: int
    seeds: tuple[int, ...]
    control_seeds: tuple[int, ...]
    sweep_seeds: tuple[int, ...]
    sweeps: dict[str, tuple[float, ...]]
    n_bootstrap: int
    headline_backend: str
    sweep_backend: str
    time_budget_s: float
    quick: bool
    out: Path
    resume: bool = False
    records: list[dict[str, Any]] = field(default_factory=list)
    timings: list[dict[str, Any]] = field(default_factory=list)
    resumed: set[tuple[str, str, float, int, str]] = field(default_factory=set)
    previous_wall_s: float = 0.0

    def load_previous(self) -> None:
        """``--resume``: keep the runs already in ``runs.csv`` (same plan), run only the rest."""
        path = self.out / "runs.csv"
        if not path.exists():
            return
        runs = pd.read_csv(path)
        self.records = runs.to_dict(orient="records")
        keys = runs[["group", "param", "value", "seed", "backend"]].drop_duplicates()
        self.resumed = {
            (str(g), str(p), float(v), int(s), str(b)) for g, p, v, s, b in keys.itertuples(False)
        }
        if (self.out / "timings.csv").exists():
            self.timings = pd.read_csv(self.out / "timings.csv").to_dict(orient="records")
        if (self.out / "summary.json").exists():
            timing = json.loads((self.out / "summary.json").read_text()).get("timing", {})
            self.previous_wall_s = float(timing.get("wall_seconds_all_invocations") or 0.0)


class Runner:
    """Runs the plan, prints progress, appends records, saves ``runs.csv`` after every run."""

    def __init__(self, plan: Plan, remaining: dict[str, int]) -> None:
        self.plan = plan
        self.remaining = dict(remaining)  # runs still to do, per backend (for the ETA)
        self.total = sum(remaining.values())
        self.done = 0
        self.start = time.perf_counter()
        self.skipped: list[str] = []
        self.seconds: dict[str, list[float]] = {}

    def eta_minutes(self) -> float:
        """Remaining runs per backend x mean seconds of that backend's runs so far."""
        every = [s for values in self.seconds.values() for s in values]
        fallback = float(np.mean(every)) if every else 0.0
        total = 0.0
        for backend, count in self.remaining.items():
            seen = self.seconds.get(backend)
            total += count * (float(np.mean(seen)) if seen else fallback)
        return total / 60

    def log(self, message: str) -> None:
        elapsed = time.perf_counter() - self.start
        print(f"[lift_claim {elapsed / 60:6.1f} min] {message}", flush=True)

    def run(
        self,
        group: str,
        param: str,
        value: float,
        seed: int,
        world: WorldConfig,
        *,
        backend: str,
        references: tuple[str, ...],
        budgets: tuple[float, ...],
        shuffle: bool = False,
    ) -> bool:
        label = f"{group} {param}={value:g} seed={seed} ({backend})"
        elapsed = time.perf_counter() - self.start
        self.remaining[backend] = self.remaining.get(backend, 1) - 1
        if (group, param, float(value), int(seed), backend) in self.plan.resumed:
            self.log(f"kept from the previous run ({label})")
            return True
        if elapsed > self.plan.time_budget_s:
            self.skipped.append(label)
            self.log(f"SKIP {label}: time budget of {self.plan.time_budget_s / 60:.0f} min used")
            return False
        config = experiment_config(
            world, seed, backend=backend, references=references, budgets=budgets,
            n_bootstrap=self.plan.n_bootstrap,
        )  # fmt: skip
        clock = time.perf_counter()
        evaluation = run_one(config, backend=backend, shuffle=shuffle)
        seconds = time.perf_counter() - clock
        for row in run_records(evaluation):
            self.plan.records.append(
                {"group": group, "param": param, "value": value, "seed": seed,
                 "backend": backend, **row}
            )  # fmt: skip
        self.plan.timings.append(
            {"group": group, "param": param, "value": value, "seed": seed, "backend": backend,
             "seconds": round(seconds, 2), "load_1min": os.getloadavg()[0]}
        )  # fmt: skip
        self.done += 1
        self.seconds.setdefault(backend, []).append(seconds)
        lift = evaluation.lift("prospecting")
        auc = {m: evaluation.metrics[m]["overall"].auc for m in ("federated", "ecommerce_only")}
        self.log(
            f"[{self.done}/{self.total}] {label}: {seconds:.0f} s; prospecting@10% lift "
            f"{lift.point:+.3f} ({lift.model_count} vs {lift.baseline_count}) "
            f"AUC fed {auc['federated']:.4f} ecom {auc['ecommerce_only']:.4f}; "
            f"ETA {self.eta_minutes():.0f} min"
        )
        pd.DataFrame(self.plan.records).to_csv(self.plan.out / "runs.csv", index=False)
        pd.DataFrame(self.plan.timings).to_csv(self.plan.out / "timings.csv", index=False)
        return True


def execute(plan: Plan) -> dict[str, Any]:
    """Run headline, controls and sweeps; write every file; return the summary dict."""
    plan.out.mkdir(parents=True, exist_ok=True)
    if plan.resume:
        plan.load_previous()
    base = WorldConfig(n_users=plan.n_users)
    default = WorldConfig()
    sweep_points = {
        name: [v for v in values if not math.isclose(v, getattr(default, name))]
        for name, values in plan.sweeps.items()
    }
    control_a_reused = [s for s in plan.sweep_seeds if s in plan.control_seeds]
    n_sweep_runs = sum(len(v) for v in sweep_points.values()) * len(plan.sweep_seeds)
    n_sweep_runs -= len(control_a_reused) * (
        any(math.isclose(v, 0.0) for v in sweep_points.get("social_intent_strength", []))
    )
    remaining: dict[str, int] = {plan.headline_backend: len(plan.seeds)}
    n_direct = 2 * len(plan.control_seeds) + n_sweep_runs
    remaining[plan.sweep_backend] = remaining.get(plan.sweep_backend, 0) + n_direct
    total = sum(remaining.values())
    runner = Runner(plan, remaining)
    runner.log(
        f"plan: {total} runs; world n_users={plan.n_users}; headline {len(plan.seeds)} seeds "
        f"({plan.headline_backend}); controls {len(plan.control_seeds)} seeds, sweeps "
        f"{len(plan.sweep_seeds)} seeds ({plan.sweep_backend}); torch threads "
        f"{torch.get_num_threads()}; load {os.getloadavg()}"
    )
    started = time.time()
    load_start = os.getloadavg()
    default_value = {name: float(getattr(default, name)) for name in plan.sweeps}

    # 1. headline (Flower simulation), evaluated at the budget-sweep budgets too
    for seed in plan.seeds:
        runner.run(
            "headline", "default", 0.0, seed, base, backend=plan.headline_backend,
            references=REFERENCE_MODELS, budgets=BUDGET_SWEEP,
        )  # fmt: skip
    # 2. negative controls (all references, headline budgets)
    for seed in plan.control_seeds:
        runner.run(
            "control", "social_intent_strength", 0.0, seed,
            base.replace(social_intent_strength=0.0), backend=plan.sweep_backend,
            references=REFERENCE_MODELS, budgets=HEADLINE_BUDGETS,
        )  # fmt: skip
    for seed in plan.control_seeds:
        runner.run(
            "control", "shuffled_social_features", 1.0, seed, base, backend=plan.sweep_backend,
            references=REFERENCE_MODELS, budgets=HEADLINE_BUDGETS, shuffle=True,
        )  # fmt: skip
    # 3. sweeps (federated vs ecommerce_only; centralized as the upper reference)
    for name, values in sweep_points.items():
        for value in values:
            for seed in plan.sweep_seeds:
                if name == "social_intent_strength" and value == 0.0 and seed in plan.control_seeds:
                    continue  # control (a) already ran it
                runner.run(
                    "sweep", name, float(value), seed, base.replace(**{name: value}),
                    backend=plan.sweep_backend, references=("ecommerce_only", "centralized"),
                    budgets=HEADLINE_BUDGETS,
                )  # fmt: skip

    runs = pd.DataFrame(plan.records)
    runs.to_csv(plan.out / "runs.csv", index=False)
    timings = pd.DataFrame(plan.timings)
    return write_outputs(plan, runs, timings, runner, default_value, started, load_start)


def sweep_table(
    runs: pd.DataFrame, name: str, default_value: float, seeds: Sequence[int]
) -> pd.DataFrame:
    """Runs of one sweep (default point and intent=0 point re-used from headline / control)."""
    vs_ecom = runs["baseline"] == "ecommerce_only"
    in_seeds = runs["seed"].isin(list(seeds))
    parts = [runs[vs_ecom & in_seeds & (runs["group"] == "sweep") & (runs["param"] == name)]]
    head = runs[vs_ecom & in_seeds & (runs["group"] == "headline")]
    head = head[head["budget"].isin(HEADLINE_BUDGETS)].assign(param=name, value=default_value)
    parts.append(head)
    if name == "social_intent_strength":
        control = runs[vs_ecom & in_seeds & (runs["group"] == "control")]
        parts.append(control[control["param"] == name])
    frame = pd.concat(parts, ignore_index=True)
    return frame.rename(columns={"value": name})


def write_outputs(
    plan: Plan,
    runs: pd.DataFrame,
    timings: pd.DataFrame,
    runner: Runner,
    default_value: dict[str, float],
    started: float,
    load_start: tuple[float, float, float],
) -> dict[str, Any]:
    out = plan.out
    files: list[str] = ["runs.csv", "timings.csv"]
    summary: dict[str, Any] = {
        "claim": list(CLAIM),
        "quick": plan.quick,
        "complete": not runner.skipped,
        "skipped_runs": runner.skipped,
        "world": WorldConfig(n_users=plan.n_users).to_dict(),
        "protocol": {"mode": "efficient", "batch_size": 512, "chunk_batches": 8, "epochs": 5},
        "seeds": {
            "headline": list(plan.seeds),
            "controls": list(plan.control_seeds),
            "sweeps": list(plan.sweep_seeds),
        },
        "backends": {"headline": plan.headline_backend, "controls_and_sweeps": plan.sweep_backend},
        "n_bootstrap": plan.n_bootstrap,
    }
    head_runs = runs[runs["group"] == "headline"]
    if not head_runs.empty:
        headline = summarize(head_runs[head_runs["budget"].isin(HEADLINE_BUDGETS)], ["group"])
        headline.to_csv(out / "headline.csv", index=False)
        files.append("headline.csv")
        summary["headline"] = headline.to_dict(orient="records")
        per_seed = head_runs[
            (head_runs["baseline"] == "ecommerce_only") & (head_runs["budget"] == HEADLINE_BUDGET)
        ]
        summary["headline_per_seed"] = per_seed[
            ["seed", "pool", "kind", "model_count", "baseline_count", "lift", "boot_ci_low",
             "boot_ci_high", "share_positive", "auc_federated", "auc_ecommerce_only",
             "auc_social_only", "auc_centralized"]
        ].to_dict(orient="records")  # fmt: skip
        budget = summarize(head_runs[head_runs["baseline"] == "ecommerce_only"], ["group"])
        budget = budget.drop(columns="group")
        budget.to_csv(out / "sweep_budget.csv", index=False)
        plot_sweep(
            budget, "budget", out / "sweep_budget.png", default=HEADLINE_BUDGET,
            title="Lift vs budget (headline runs, Flower simulation)",
            n_seeds=len(plan.seeds), log_x=True,
        )  # fmt: skip
        files += ["sweep_budget.csv", "sweep_budget.png"]
        summary["sweeps"] = {"budget": budget.to_dict(orient="records")}
    control_runs = runs[runs["group"] == "control"]
    if not control_runs.empty:
        controls = summarize(control_runs, ["param"])
        controls = controls.rename(columns={"param": "control"})
        controls.to_csv(out / "controls.csv", index=False)
        files.append("controls.csv")
        summary["controls"] = controls.to_dict(orient="records")
    for name in plan.sweeps:
        frame = sweep_table(runs, name, default_value[name], plan.sweep_seeds)
        if frame.empty:
            continue
        table = summarize(frame, [name])
        table = table[table["budget"] == HEADLINE_BUDGET].sort_values([name, "pool", "kind"])
        table.to_csv(out / f"sweep_{name}.csv", index=False)
        plot_sweep(
            table, name, out / f"sweep_{name}.png", default=default_value[name],
            title=f"Lift at the 10% budget vs {name}", n_seeds=len(plan.sweep_seeds),
            log_x=name == "base_conversion_rate",
        )  # fmt: skip
        files += [f"sweep_{name}.csv", f"sweep_{name}.png"]
        summary.setdefault("sweeps", {})[name] = table.to_dict(orient="records")
    wall = time.time() - started
    summary["timing"] = {
        "wall_seconds": round(wall, 1),
        "wall_minutes": round(wall / 60, 2),
        "wall_seconds_all_invocations": round(plan.previous_wall_s + wall, 1),
        "resumed_runs": len(plan.resumed),
        "sum_of_run_minutes": round(float(timings["seconds"].sum()) / 60, 2)
        if not timings.empty else 0.0,
        "seconds_by_group_backend": (
            timings.groupby(["group", "backend"])["seconds"].describe().round(2).reset_index()
            .to_dict(orient="records") if not timings.empty else []
        ),
        "runs": plan.timings,
        "load_average_start": list(load_start),
        "load_average_end": list(os.getloadavg()),
    }  # fmt: skip
    summary["machine"] = {
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
    }
    summary["files"] = [*files, "summary.json"]
    text = json.dumps(_jsonable(summary), indent=1, allow_nan=False)
    (out / "summary.json").write_text(text + "\n")
    print_headline(summary)
    runner.log(f"done in {wall / 60:.1f} min; files in {out}")
    return summary


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def print_headline(summary: dict[str, Any]) -> None:
    """The headline table (federated vs ecommerce_only) on stdout."""
    rows = [r for r in summary.get("headline", []) if r["baseline"] == "ecommerce_only"]
    if not rows:
        return
    print("\nHeadline: federated vs ecommerce_only, mean over seeds [95% t-interval]")
    print(f"{'pool':<12}{'budget':>7}  {'kind':<12}{'lift':>8}  {'95% CI':<18}{'pooled':>8}"
          f"  {'counts fed/ecom (mean)':<24}")  # fmt: skip
    for r in rows:
        ci = f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]"
        print(
            f"{r['pool']:<12}{r['budget']:>7.2f}  {r['kind']:<12}{_fmt(r['lift_mean']):>8}  "
            f"{ci:<18}{_fmt(r['pooled_lift']):>8}  "
            f"{r['model_count_mean']:.1f}/{r['baseline_count_mean']:.1f}"
        )


def _fmt(value: float | None) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value:+.3f}"


def parse_args(argv: Iterable[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI-size run (small world)")
    parser.add_argument("--out", type=Path, default=None, help=f"results folder ({RESULTS})")
    parser.add_argument("--users", type=int, default=None, help="e-commerce users per world")
    parser.add_argument("--seeds", type=int, default=None, help="headline seeds (10)")
    parser.add_argument("--control-seeds", type=int, default=None, help="control seeds (10)")
    parser.add_argument("--sweep-seeds", type=int, default=None, help="seeds per sweep point (3)")
    parser.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples")
    parser.add_argument(
        "--sweeps", default=None,
        help="comma-separated world parameters to sweep (default: all four)",
    )  # fmt: skip
    parser.add_argument(
        "--headline-backend", default="simulation", choices=("simulation", "inprocess")
    )
    parser.add_argument("--sweep-backend", default="direct", choices=SWEEP_BACKENDS)
    parser.add_argument(
        "--resume", action="store_true",
        help="keep the runs already in <out>/runs.csv and run only the missing ones",
    )  # fmt: skip
    parser.add_argument(
        "--time-budget-min", type=float, default=None,
        help="start no new run after this many minutes (default 45, quick 15)",
    )  # fmt: skip
    return parser.parse_args(list(argv) if argv is not None else None)


def make_plan(args: argparse.Namespace) -> Plan:
    quick = bool(args.quick)
    out = args.out or (RESULTS / "quick" if quick else RESULTS)
    n_seeds = args.seeds or (2 if quick else 10)
    n_control = args.control_seeds or (3 if quick else 10)
    n_sweep = args.sweep_seeds or (2 if quick else 3)
    budget = args.time_budget_min or (15.0 if quick else 45.0)
    sweeps = QUICK_SWEEPS if quick else FULL_SWEEPS
    if args.sweeps is not None:
        names = [n.strip() for n in args.sweeps.split(",") if n.strip()]
        unknown = sorted(set(names) - set(sweeps))
        if unknown:
            raise SystemExit(f"--sweeps: unknown {unknown}; choose from {sorted(sweeps)}")
        sweeps = {n: sweeps[n] for n in names}
    return Plan(
        n_users=args.users or (QUICK_USERS if quick else FULL_USERS),
        seeds=tuple(range(n_seeds)),
        control_seeds=tuple(range(n_control)),
        sweep_seeds=tuple(range(n_sweep)),
        sweeps=sweeps,
        n_bootstrap=args.bootstrap if not quick else min(args.bootstrap, 300),
        headline_backend=args.headline_backend,
        sweep_backend=args.sweep_backend,
        time_budget_s=budget * 60,
        quick=quick,
        out=Path(out),
        resume=bool(args.resume),
    )


def main(argv: Iterable[str] | None = None, *, runner: Callable[[Plan], Any] = execute) -> int:
    torch.set_num_threads(1)
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    plan = make_plan(parse_args(argv))
    runner(plan)
    return 0


if __name__ == "__main__":
    sys.exit(main())
