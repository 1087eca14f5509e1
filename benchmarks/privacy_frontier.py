"""The label-privacy / utility frontier: every defense at several strengths, several seeds.

For each seed, on the default synthetic world (only ``n_users`` and ``seed`` set), and for each
``(defense, strength)`` (plus ``none``, the undefended protocol):

* the federated model is trained through the public facade, in process
  (``run_federated(..., backend="inprocess")``: the same parties, coordinator, messages and
  defenses as ``Experiment(backend="inprocess")``); the undefended run of each seed is a whole
  ``Experiment`` (``ecommerce_only`` reference, evaluation, privacy report) whose alignment is
  computed in the clear (``alignment="clear"``: the PSI's rows and order, a function of the key
  set only; the PSI is most of an in-process run's time), and every defended run reuses that
  alignment (``alignment=<the undefended result>``) and that reference;
* the label attacks run where they run in every training run: as the social party on the
  gradients it received and as the relay on what it relayed (the runs are unsealed,
  ``FederationSettings(sealing=False)``, so that the relay sees what it relays: the worst
  case); the facade's privacy report (``fedads.privacy.leakage.privacy_report``) gives the
  leak AUC of each against the true training labels (last epoch), and the **worst** one
  (largest ``max(AUC, 1 - AUC)`` over attacks and both observers);
* utility on held-out aligned users: the federated model's AUC and the new-customer lift over
  ``ecommerce_only`` (trained once per seed: it does not depend on the defense) in the
  prospecting pool at a 10% budget (``fedads.experiment.evaluate_held_out``, what
  ``Experiment`` evaluates with); the epsilon of the defense where defined.

Outputs (``--out``, default ``benchmarks/results``): ``privacy_frontier.json`` (every run, the
per-setting means across seeds, the chosen default and whether the goal is met),
``privacy_frontier.png`` (worst leak AUC against lift, one line per defense) and
``privacy_frontier_runs.jsonl`` (written as runs finish).

    python benchmarks/privacy_frontier.py                      # full size: 100k users, 5 seeds
    python benchmarks/privacy_frontier.py --users 20000 --epochs 3   # what fits on 2 busy cores
"""

from __future__ import annotations

import argparse
import json
import math
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedads import (
    Experiment,
    ExperimentConfig,
    ExperimentResult,
    FederationSettings,
    ProtocolConfig,
    WorldConfig,
    generate_world,
    run_federated,
)
from fedads.errors import FedadsWarning
from fedads.experiment import evaluate_held_out
from fedads.privacy.defenses import Defense
from fedads.privacy.leakage import privacy_report

STRENGTHS: dict[str, tuple[float, ...]] = {
    "max-norm": (0.5, 1.0, 2.0, 4.0),
    "marvell": (0.5, 2.0, 8.0, 32.0),
    "gaussian": (0.5, 1.0, 1.5, 2.0),
    "label-dp": (4.0, 2.0, 1.0, 0.5),
}
LEAK_TARGET = 0.60
AUC_COST_TARGET = 0.005
LIFT_KEEP_TARGET = 2.0 / 3.0
POOL, BUDGET = "prospecting", 0.10


def settings_for(args: argparse.Namespace, seed: int, defense: str, strength: float | None):
    protocol = ProtocolConfig(
        mode="efficient",
        batch_size=args.batch_size,
        chunk_batches=4,
        epochs=args.epochs,
        seed=seed,
        defense=defense,
        defense_strength=strength,
    )
    # Unsealed: the relay then reads the gradients it relays, the worst case this frontier is
    # about (sealed, the default, the relay's view is empty and only the social party's counts).
    return FederationSettings(protocol=protocol, split_seed=seed, sealing=False, verbose=False)


def experiment_config(args: argparse.Namespace, seed: int, settings: FederationSettings):
    return ExperimentConfig(
        world=WorldConfig(n_users=args.users, seed=seed), federation=settings,
        backend="inprocess", references=("ecommerce_only",), n_bootstrap=args.bootstrap,
        eval_seed=seed, budgets=(BUDGET,), headline_budget=BUDGET,
    )  # fmt: skip


def prepare(args: argparse.Namespace, seed: int) -> dict[str, Any]:
    """World and the undefended ``Experiment`` (alignment in the clear, split, reference)."""
    world = generate_world(WorldConfig(n_users=args.users, seed=seed))
    social, ecommerce = world.party_tables()
    config = experiment_config(args, seed, settings_for(args, seed, "none", None))
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FedadsWarning)
        base = Experiment.from_tables(social, ecommerce, config, truth=world.truth).run(
            verbose=False, alignment="clear"
        )
    return {
        "world": world,
        "social": social,
        "ecommerce": ecommerce,
        "base": base,
        "base_seconds": time.perf_counter() - start,
    }


def run_setting(
    args: argparse.Namespace, seed: int, prep: dict[str, Any], defense: str, strength: float
) -> dict[str, Any]:
    settings = settings_for(args, seed, defense, strength if defense != "none" else None)
    social, ecommerce = prep["social"], prep["ecommerce"]
    base: ExperimentResult = prep["base"]
    if defense == "none":  # the undefended Experiment of this seed is this setting's run
        run, evaluation, privacy = base.federated, base.evaluation, base.privacy or {}
    else:
        run = run_federated(
            social, ecommerce, settings, backend="inprocess", alignment=base
        )  # same aligned rows, split and batch order as the undefended run
        test = np.asarray(run.values["test_positions"])
        keys = ecommerce.keys()[run.ecommerce_rows[test]]
        # The reference does not depend on the defense: the undefended run's scores, same users.
        assert np.array_equal(keys, base.scores["key"].to_numpy()), "held-out users differ"
        scores = {
            "federated": np.asarray(run.values["scores"], dtype=np.float64),
            "ecommerce_only": base.scores["ecommerce_only"].to_numpy(np.float64),
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FedadsWarning)
            evaluation = evaluate_held_out(
                ecommerce, run.ecommerce_rows[test], scores,
                experiment_config(args, seed, settings), truth=prep["world"].truth,
            )  # fmt: skip
        privacy = privacy_report(
            run, social, ecommerce, settings.protocol, feature_inference=False, seed=seed
        )
    leakage = {"social": privacy["label_leakage"], "relay": privacy["relay_label_leakage"]}
    head = evaluation.headline()
    defense_obj = Defense(defense, strength if defense != "none" else None)
    # The facade reports the relay's attack seconds; the social party runs the same attacks on
    # the same arrays (fedads.privacy.leakage.privacy_report), so both are that figure.
    attack_seconds = float(privacy.get("attack_seconds_per_view") or 0.0)
    return {
        "seed": seed,
        "defense": defense,
        "strength": defense_obj.value,
        "epsilon": defense_obj.epsilon(args.epochs),
        "worst_leak_auc": privacy["worst_leak_auc"],
        "leak_auc": {
            f"{view}.{attack}": entry["auc"]
            for view, attacks in leakage.items()
            for attack, entry in attacks.items()
        },
        "leak_auc_per_epoch": {
            f"social.{attack}": entry["per_epoch"] for attack, entry in leakage["social"].items()
        },
        "auc_federated": head.get("auc.federated"),
        "auc_ecommerce_only": head.get("auc.ecommerce_only"),
        "lift_prospecting": head.get(f"lift.{POOL}"),
        # Expected counts (sum of the true conversion probabilities of the selected new
        # customers, read from the truth table after scoring): the primary measure on synthetic
        # worlds (issue #14), far less noisy than one campaign's realized conversions.
        "expected_lift_prospecting": head.get(f"expected_lift.{POOL}"),
        # The whole in-process federated run (party setup, alignment reuse, fit, scoring).
        "train_seconds": float(run.elapsed_s),
        "epoch_seconds": np.asarray(run.values["epoch_seconds"], dtype=float).tolist(),
        "attack_seconds_relay": attack_seconds,
        "attack_seconds_social": attack_seconds,
    }


def summarize(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Means across seeds per setting; costs against the undefended runs of the same seeds."""

    def mean(values: list[Any]) -> float | None:
        finite = [v for v in values if v is not None and math.isfinite(v)]
        return float(np.mean(finite)) if finite else None

    base = {r["seed"]: r for r in runs if r["defense"] == "none"}
    groups: dict[tuple[str, float], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["defense"], r["strength"]), []).append(r)
    settings = []
    for (defense, strength), rows in groups.items():
        paired = [r for r in rows if r["seed"] in base]
        auc_cost = mean([base[r["seed"]]["auc_federated"] - r["auc_federated"] for r in paired])
        lift = mean([r["lift_prospecting"] for r in rows])
        expected = mean([r.get("expected_lift_prospecting") for r in rows])
        # The share of the undefended lift kept, on expected counts where the runs have them.
        kept_key = (
            "expected_lift_prospecting"
            if all(r.get("expected_lift_prospecting") is not None for r in paired)
            else "lift_prospecting"
        )
        base_lift = mean([base[r["seed"]][kept_key] for r in paired])
        kept_lift = mean([r[kept_key] for r in paired])
        # Undefined without an undefended lift to keep (a ratio of two losses means nothing).
        lift_kept = (
            None
            if base_lift is None or base_lift <= 0 or kept_lift is None
            else kept_lift / base_lift
        )
        worst = mean([r["worst_leak_auc"] for r in rows])
        worst_max = max(r["worst_leak_auc"] for r in rows)
        eps = rows[0]["epsilon"]
        settings.append(
            {
                "defense": defense,
                "strength": strength,
                "seeds": len(rows),
                "epsilon": None if eps is None or not math.isfinite(eps) else eps,
                "worst_leak_auc": worst,
                "worst_leak_auc_max_over_seeds": worst_max,
                "leak_auc": {
                    k: mean([r["leak_auc"][k] for r in rows]) for k in rows[0]["leak_auc"]
                },
                "auc_federated": mean([r["auc_federated"] for r in rows]),
                "auc_cost": auc_cost,
                "lift_prospecting": lift,
                "expected_lift_prospecting": expected,
                "lift_kept_share": lift_kept,
                "lift_kept_measure": kept_key,
                "train_seconds": mean([r["train_seconds"] for r in rows]),
                "attack_share_of_training": mean(
                    [
                        (r["attack_seconds_relay"] + r["attack_seconds_social"])
                        / r["train_seconds"]
                        for r in rows
                    ]
                ),
                "meets_leak": worst_max <= LEAK_TARGET,
                "meets_goal": (
                    worst_max <= LEAK_TARGET
                    and auc_cost is not None
                    and auc_cost <= AUC_COST_TARGET
                    and lift_kept is not None
                    and lift_kept >= LIFT_KEEP_TARGET
                ),
            }
        )
    # Default: the cheapest (smallest AUC cost) setting whose worst leak <= target on every seed.
    protecting = [s for s in settings if s["defense"] != "none" and s["meets_leak"]]
    default = min(protecting, key=lambda s: s["auc_cost"] or 0.0) if protecting else None
    return {
        "settings": settings,
        "default": default,
        "goal_met": bool(default and default["meets_goal"]),
    }


def plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    by_defense: dict[str, list[dict[str, Any]]] = {}
    for s in summary["settings"]:
        by_defense.setdefault(s["defense"], []).append(s)
    # Expected-count lifts where the runs have them (the primary measure on synthetic worlds).
    key = (
        "expected_lift_prospecting"
        if all(s.get("expected_lift_prospecting") is not None for s in summary["settings"])
        else "lift_prospecting"
    )
    for defense, rows in by_defense.items():
        rows = sorted(rows, key=lambda s: s["worst_leak_auc"] or 0)
        ax.plot(
            [s[key] for s in rows],
            [s["worst_leak_auc"] for s in rows],
            marker="o" if defense != "none" else "*",
            markersize=6 if defense != "none" else 14,
            label=defense if defense != "none" else "none (undefended)",
        )
    ax.axhline(LEAK_TARGET, color="grey", linestyle="--", linewidth=1)
    counts = "expected" if key.startswith("expected") else "realized"
    ax.set_xlabel(
        f"new-customer lift over ecommerce_only ({POOL}, {BUDGET:.0%} budget, {counts} counts)"
    )
    ax.set_ylabel("worst label-leak AUC (attacks x observers)")
    ax.set_title("Label privacy vs lift (mean over seeds)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def markdown_table(summary: dict[str, Any]) -> str:
    """The docs' frontier table (docs/privacy.md), one row per setting, from a summary."""

    def number(value: float | None, digits: int) -> str:
        return "n/a" if value is None else f"{value:.{digits}f}"

    def percent(value: float | None) -> str:
        return "n/a" if value is None else f"{100 * value:+.1f}%"

    lines = [
        "| defense | strength | epsilon | worst leak AUC (mean / max over seeds) | norm | direction"
        " | spectral | held-out AUC | AUC cost | lift kept | prospecting lift (expected)"
        " | (realized) |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summary["settings"]:
        leak = s["leak_auc"]
        name = "none (undefended)" if s["defense"] == "none" else s["defense"]
        lines.append(
            f"| {name} | {s['strength']:g} | {number(s['epsilon'], 1)} "
            f"| {s['worst_leak_auc']:.3f} / {s['worst_leak_auc_max_over_seeds']:.3f} "
            f"| {leak['social.norm']:.3f} | {leak['social.direction']:.3f} "
            f"| {leak['social.spectral']:.3f} | {number(s['auc_federated'], 4)} "
            f"| {number(s['auc_cost'], 4)} | {number(s['lift_kept_share'], 2)} "
            f"| {percent(s.get('expected_lift_prospecting'))} | {percent(s['lift_prospecting'])} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--users", type=int, default=100_000)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=512)
    parser.add_argument("--bootstrap", type=int, default=100)
    parser.add_argument("--defenses", default=",".join(STRENGTHS))
    parser.add_argument("--out", default="benchmarks/results")
    parser.add_argument("--name", default="privacy_frontier")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log = out / f"{args.name}_runs.jsonl"
    runs: list[dict[str, Any]] = []
    if log.exists():  # resume: keep finished runs
        runs = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    done = {(r["seed"], r["defense"], r["strength"]) for r in runs}
    defenses = [d for d in args.defenses.split(",") if d]
    started = time.perf_counter()
    for seed in range(args.seeds):
        prep = None
        grid = [("none", 0.0)] + [(d, s) for d in defenses for s in STRENGTHS[d]]
        for defense, strength in grid:
            if (seed, defense, float(strength)) in done:
                continue
            prep = prep or prepare(args, seed)
            record = run_setting(args, seed, prep, defense, strength)
            runs.append(record)
            with open(log, "a") as handle:
                handle.write(json.dumps(record) + "\n")
            print(
                f"[{time.perf_counter() - started:7.0f}s] seed {seed} {defense} {strength}: "
                f"worst leak {record['worst_leak_auc']:.3f}, AUC {record['auc_federated']:.4f}, "
                f"lift {record['lift_prospecting']:.3f}",
                flush=True,
            )
    summary = summarize(runs)
    document = {
        "config": {
            "users": args.users,
            "seeds": args.seeds,
            "epochs": args.epochs,
            "batch_size": args.batch_size,
            "mode": "efficient",
            "chunk_batches": 4,
            "pool": POOL,
            "budget": BUDGET,
            "strengths": STRENGTHS,
            "targets": {
                "worst_leak_auc": LEAK_TARGET,
                "auc_cost": AUC_COST_TARGET,
                "lift_kept_share": LIFT_KEEP_TARGET,
            },
            "full_size_command": "python benchmarks/privacy_frontier.py --users 100000 --seeds 5",
        },
        **summary,
        "runs": runs,
    }
    (out / f"{args.name}.json").write_text(json.dumps(document, indent=1, default=float) + "\n")
    plot(summary, out / f"{args.name}.png")
    print(json.dumps({"default": summary["default"], "goal_met": summary["goal_met"]}, indent=1))
    print(markdown_table(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
