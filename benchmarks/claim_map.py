"""The joint map of issue 14: where does the federated lift reach 15-25%?

Lift of the federated model over the practitioner ``ecommerce_gbdt`` (tuned, early-stopped
gradient boosting on all e-commerce users, ``fedads.models.baselines``) in **expected**
new-customer conversions (sum of p1 over the selected new users; the simulator's truth is read
only after scoring) among prospects (the ``prospecting`` pool: existing customers excluded), at
budgets 5, 10 and 20% of the held-out aligned users, over:

* a grid ``social_intent_strength`` x ``ecommerce_intent_strength`` (the social signal relative
  to the e-commerce one, the axis the first sweeps missed);
* the social brand-engagement rates ``brand_content_per_year`` / ``brand_ad_clicks_per_year``
  (the defaults that were changed from 1.5 / 0.3 to 6.0 / 1.0, ``docs/world.md``);
* the activity skews ``ecommerce_activity_skew`` and ``social_activity_skew``.

Every other world field stays at its default. Each (cell, seed) is one ``Experiment`` through the
public facade on the in-process backend (same parties, job and serialization as Flower, no
Flower). The federated model is early-stopped on validation through the protocol (20% of the
aligned train users, patience 2, at most 20 epochs), as the practitioner baselines are. A seed's
worlds differ only in features, not keys (checked), so each seed aligns once (``"clear"``: the
PSI's rows and order) and every other cell of that seed reuses that alignment
(``Experiment.run(alignment=<first result>)``). Across seeds :func:`fedads.eval.combine_seeds`
with each seed's bootstrap SE (both variances kept).

    python benchmarks/claim_map.py                 # full map (20k users, 2 seeds)
    python benchmarks/claim_map.py --reduced       # 10k users, 4 x 3 grid, 2 seeds
    python benchmarks/claim_map.py --quick         # CI size (~1 min): the pipeline, not evidence
    python benchmarks/claim_map.py --tiny          # test size (seconds): tests/test_claim_map.py
    python benchmarks/claim_map.py --list-cells    # the preset's cells, one a line; runs nothing

Writes ``<out>/claim_map.json`` and heatmaps ``<out>/claim_map_<budget>.png`` (15% and 25%
contours) and ``<out>/claim_map_axes.png`` (default out: ``benchmarks/results/claim_map/``;
``--reduced``: ``.../claim_map_reduced/``; ``--quick``: ``.../claim_map_quick/``; ``--tiny``:
``.../claim_map_tiny/``).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
import warnings
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from _results import machine, strict, write_json

# Only the world at the top: the rest (torch, sklearn through fedads.eval) is imported where a
# run needs it, so ``--list-cells`` takes about a second (tests/test_claim_map.py runs it).
from fedads.world import WorldConfig, generate_world

if TYPE_CHECKING:
    from fedads import ExperimentConfig

RESULTS = Path(__file__).resolve().parent / "results"
BUDGETS = (0.05, 0.10, 0.20)
BASELINE = "ecommerce_gbdt"
POOL = "prospecting"
CLAIM = (0.15, 0.25)
Z95 = 1.959963984540054


@dataclass(frozen=True)
class Size:
    """How big a map: users per world, seeds, the grid and the one-axis values."""

    n_users: int
    seeds: int
    social: tuple[float, ...]
    ecommerce: tuple[float, ...]
    brand_rates: tuple[tuple[float, float], ...]
    ecommerce_skew: tuple[float, ...]
    social_skew: tuple[float, ...]
    max_epochs: int
    n_bootstrap: int


FULL = Size(
    n_users=20_000,
    seeds=2,
    social=(0.25, 0.5, 0.75, 1.0),
    ecommerce=(0.3, 0.5, 0.7, 0.9),
    brand_rates=((1.5, 0.3), (3.0, 0.5), (6.0, 1.0), (12.0, 2.0)),
    ecommerce_skew=(0.6, 1.2, 2.0),
    social_skew=(0.6, 1.0, 1.6),
    max_epochs=20,
    n_bootstrap=200,
)
REDUCED = Size(
    n_users=10_000,
    seeds=2,
    social=(0.25, 0.5, 0.75, 1.0),
    ecommerce=(0.3, 0.5, 0.7),
    brand_rates=((1.5, 0.3), (6.0, 1.0)),
    ecommerce_skew=(1.2, 2.0),
    social_skew=(1.0, 1.6),
    max_epochs=20,
    n_bootstrap=200,
)
"""What fits a shared machine: 10k users, a 4 x 3 grid, one value off the default per axis."""
QUICK = Size(
    n_users=4_000,  # 20% validation of the aligned train users >= min_query_rows (256)
    seeds=2,
    social=(0.5, 1.0),
    ecommerce=(0.5, 0.9),
    brand_rates=((1.5, 0.3), (6.0, 1.0)),
    ecommerce_skew=(1.2,),
    social_skew=(1.0,),
    max_epochs=4,
    n_bootstrap=50,
)

TINY = Size(
    n_users=3_000,
    seeds=2,
    social=(0.5, 1.0),
    ecommerce=(0.5, 0.7),  # 0.5 x 0.7 is the default world
    brand_rates=((6.0, 1.0),),
    ecommerce_skew=(1.2,),
    social_skew=(1.0,),
    max_epochs=2,
    n_bootstrap=20,
)
"""The test's size (tests/test_claim_map.py runs the script): 4 cells, 2 seeds, numbers no
evidence of anything."""


def cells(size: Size) -> list[dict[str, float]]:
    """Every world to run as its non-default fields (duplicates, e.g. the default, once)."""
    default = WorldConfig()
    out: list[dict[str, float]] = []
    for s in size.social:
        for e in size.ecommerce:
            out.append({"social_intent_strength": s, "ecommerce_intent_strength": e})
    for content, clicks in size.brand_rates:
        out.append({"brand_content_per_year": content, "brand_ad_clicks_per_year": clicks})
    out += [{"ecommerce_activity_skew": v} for v in size.ecommerce_skew]
    out += [{"social_activity_skew": v} for v in size.social_skew]
    unique: dict[str, dict[str, float]] = {}
    for cell in out:
        changes = {k: v for k, v in cell.items() if getattr(default, k) != v}
        unique.setdefault(cell_name(changes), changes)
    return list(unique.values())


def cell_name(changes: dict[str, float]) -> str:
    return ",".join(f"{k}={v:g}" for k, v in sorted(changes.items())) or "default"


def config(world: WorldConfig, seed: int, size: Size) -> ExperimentConfig:
    from fedads import ExperimentConfig, FederationSettings, ProtocolConfig

    protocol = ProtocolConfig(
        mode="efficient",
        batch_size=512,
        chunk_batches=8,
        epochs=size.max_epochs,
        early_stopping_patience=2,
        seed=seed,
    )
    settings = FederationSettings(
        protocol=protocol, split_seed=seed, valid_share=0.2, verbose=False
    )
    return ExperimentConfig(
        world=world,
        federation=settings,
        backend="inprocess",
        references=(BASELINE,),
        budgets=BUDGETS,
        n_bootstrap=size.n_bootstrap,
        eval_seed=seed,
    )


@dataclass(frozen=True)
class Aligned:
    """A seed's first result (its alignment) and the key columns it was computed from."""

    result: Any
    social_keys: np.ndarray
    ecommerce_keys: np.ndarray


def run_cell(
    changes: dict[str, float], seed: int, size: Size, aligned: Aligned | None
) -> tuple[Aligned, dict[str, Any]]:
    """One (cell, seed): its alignment (to reuse) and its record (lifts, SEs, counts, AUCs)."""
    from fedads import Experiment, FedadsWarning

    world_config = replace(WorldConfig(n_users=size.n_users, seed=seed), **changes)
    world = generate_world(world_config)
    social, ecommerce = world.party_tables()
    alignment = None
    if (
        aligned is not None
        and np.array_equal(aligned.social_keys, social.keys())
        and np.array_equal(aligned.ecommerce_keys, ecommerce.keys())
    ):
        alignment = aligned.result  # same keys: reuse (else align again, "clear")
    clock = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FedadsWarning)
        experiment = Experiment(
            config(world_config, seed, size), social=social, ecommerce=ecommerce, truth=world.truth
        )
        result = experiment.run(verbose=False, alignment=alignment or "clear")
    ev = result.evaluation
    record: dict[str, Any] = {
        "cell": cell_name(changes),
        "seed": seed,
        "seconds": round(time.perf_counter() - clock, 1),
        "reused_alignment": alignment is not None,
        "auc": {m: ev.metrics[m]["overall"].auc for m in ev.models},
        "best_epoch": int(result.federated.values.get("best_epoch", -1)),
        "lift": {},
        "se": {},
        "counts": {},
    }
    for row in ev.lifts:
        if row.kind == "expected" and row.pool == POOL and row.baseline == BASELINE:
            key = f"{row.budget:g}"
            record["lift"][key] = row.point
            record["se"][key] = (row.ci_high - row.ci_low) / (2 * Z95)
            record["counts"][key] = [row.model_count, row.baseline_count]
    if alignment is None:
        aligned = Aligned(result, social.keys(), ecommerce.keys())
    assert aligned is not None
    return aligned, record


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Per cell and budget: mean lift and interval over seeds (combine_seeds, both variances)."""
    from fedads import FedadsWarning, combine_seeds

    points: dict[int, dict[str, float]] = {}
    ses: dict[int, dict[str, float]] = {}
    for r in records:
        for budget, value in r["lift"].items():
            points.setdefault(r["seed"], {})[f"{r['cell']}|{budget}"] = value
            ses.setdefault(r["seed"], {})[f"{r['cell']}|{budget}"] = r["se"][budget]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FedadsWarning)
        table = combine_seeds(points, within_se=ses).to_dict()["summary"]
    out: dict[str, Any] = {}
    for name, row in table.items():
        cell, budget = name.split("|")
        out.setdefault(cell, {})[budget] = row
    return out


def plot(summary: dict[str, Any], size: Size, out: Path) -> list[Path]:
    """Heatmaps (social x e-commerce signal, one per budget) and the one-axis sweeps."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    default = WorldConfig()
    paths = []
    for budget in BUDGETS:
        b = f"{budget:g}"
        grid = np.full((len(size.social), len(size.ecommerce)), np.nan)
        text = np.full(grid.shape, "", dtype=object)
        for i, s in enumerate(size.social):
            for j, e in enumerate(size.ecommerce):
                changes = {"social_intent_strength": s, "ecommerce_intent_strength": e}
                changes = {k: v for k, v in changes.items() if getattr(default, k) != v}
                row = summary.get(cell_name(changes), {}).get(b)
                if row is None:
                    continue
                grid[i, j] = row["mean"]
                low, high = _ci(row)
                text[i, j] = f"{row['mean']:+.1%}\n[{low:+.0%}, {high:+.0%}]"
        fig, ax = plt.subplots(figsize=(6.4, 5.2))
        image = ax.imshow(grid, origin="lower", cmap="RdBu_r", vmin=-0.5, vmax=0.5, aspect="auto")
        fig.colorbar(image, ax=ax, label=f"lift vs {BASELINE} (expected new customers)")
        if min(grid.shape) >= 2 and np.isfinite(grid).all():
            contours = ax.contour(grid, levels=list(CLAIM), colors=["k", "k"],
                                  linestyles=["--", "-"])  # fmt: skip
            ax.clabel(contours, fmt={CLAIM[0]: "15%", CLAIM[1]: "25%"})
        for i in range(grid.shape[0]):
            for j in range(grid.shape[1]):
                ax.text(j, i, text[i, j], ha="center", va="center", fontsize=7)
        ax.set_xticks(range(len(size.ecommerce)), [f"{e:g}" for e in size.ecommerce])
        ax.set_yticks(range(len(size.social)), [f"{s:g}" for s in size.social])
        ax.set_xlabel("ecommerce_intent_strength")
        ax.set_ylabel("social_intent_strength")
        ax.set_title(
            f"federated vs {BASELINE}, prospects, budget {budget:.0%}\n"
            f"{size.n_users} users, {size.seeds} seeds; contours: 15% (dashed), 25% (solid)",
            fontsize=9,
        )
        path = out / f"claim_map_{b}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        paths.append(path)
    axes = [
        ("brand_content_per_year", [r[0] for r in size.brand_rates],
         lambda v: {"brand_content_per_year": v,
                    "brand_ad_clicks_per_year": dict(size.brand_rates)[v]}),
        ("ecommerce_activity_skew", list(size.ecommerce_skew),
         lambda v: {"ecommerce_activity_skew": v}),
        ("social_activity_skew", list(size.social_skew), lambda v: {"social_activity_skew": v}),
    ]  # fmt: skip
    fig, panels = plt.subplots(1, len(axes), figsize=(4.2 * len(axes), 3.6), squeeze=False)
    for ax, (label, values, changes_of) in zip(panels[0], axes, strict=True):
        ax.axhspan(*CLAIM, color="0.85", label="claim 15-25%")
        ax.axhline(0, color="0.5", lw=0.8)
        for k, budget in enumerate(BUDGETS):
            b = f"{budget:g}"
            xs, ys, lows, highs = [], [], [], []
            for v in values:
                changes = {x: y for x, y in changes_of(v).items() if getattr(default, x) != y}
                row = summary.get(cell_name(changes), {}).get(b)
                if row is None:
                    continue
                low, high = _ci(row)
                xs.append(v * (1 + 0.02 * (k - 1)))
                ys.append(row["mean"])
                lows.append(row["mean"] - low)
                highs.append(high - row["mean"])
            ax.errorbar(xs, ys, yerr=[lows, highs], marker="o", capsize=3,
                        label=f"budget {budget:.0%}")  # fmt: skip
        title = label if label != "brand_content_per_year" else "brand rates (content; clicks)"
        ax.set_title(title, fontsize=9)
        ax.set_xlabel(label)
        ax.set_ylabel(f"lift vs {BASELINE}")
    panels[0][0].legend(fontsize=7)
    fig.tight_layout()
    path = out / "claim_map_axes.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    paths.append(path)
    return paths


def _ci(row: dict[str, Any]) -> tuple[float, float]:
    low, high = row.get("ci95", [math.nan, math.nan])
    return (math.nan if low is None else low), (math.nan if high is None else high)


def main(argv: Iterable[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="CI size: pipeline check only")
    parser.add_argument("--tiny", action="store_true", help="test size (seconds): 4 cells")
    parser.add_argument(
        "--list-cells", action="store_true", help="print the preset's cell names; run nothing"
    )
    parser.add_argument(
        "--reduced", action="store_true", help="10k users, 4 x 3 grid (a shared machine)"
    )
    parser.add_argument("--users", type=int, default=None)
    parser.add_argument("--seeds", type=int, default=None)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--summarize-only", action="store_true", help="summary and plots from <out>/runs.jsonl"
    )
    args = parser.parse_args(list(argv) if argv is not None else None)
    preset = (
        "tiny" if args.tiny else "quick" if args.quick else "reduced" if args.reduced else "full"
    )
    size = {"tiny": TINY, "quick": QUICK, "reduced": REDUCED, "full": FULL}[preset]
    size = replace(size, n_users=args.users or size.n_users, seeds=args.seeds or size.seeds)
    if args.list_cells:
        print("\n".join(cell_name(changes) for changes in cells(size)))
        return 0
    name = "claim_map" if preset == "full" else f"claim_map_{preset}"
    out = args.out or RESULTS / name
    out.mkdir(parents=True, exist_ok=True)
    import torch  # here, not at the top: --list-cells stays a 1-second run

    torch.set_num_threads(1)
    started = time.time()
    records: list[dict[str, Any]] = []
    log = out / "runs.jsonl"
    if args.summarize_only:
        records = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    else:
        log.write_text("")
        aligned: dict[int, Aligned | None] = dict.fromkeys(range(size.seeds))
        # Cells outer, seeds inner: a run cut short leaves whole cells (runs.jsonl, read back
        # with --summarize-only).
        for changes in cells(size):
            for seed in range(size.seeds):
                aligned[seed], record = run_cell(changes, seed, size, aligned[seed])
                records.append(record)
                with log.open("a") as handle:
                    handle.write(json.dumps(strict(record)) + "\n")
                lifts = ", ".join(f"{b}: {v:+.3f}" for b, v in record["lift"].items())
                print(f"seed {seed} {record['cell']}: {record['seconds']} s, best epoch "
                      f"{record['best_epoch']}, lift {lifts}", flush=True)  # fmt: skip
    summary = summarize(records)
    document = {
        "preset": preset,
        "complete": len(records) == len(cells(size)) * size.seeds,
        "experiments": {"done": len(records), "planned": len(cells(size)) * size.seeds},
        "what": f"lift of the federated model vs {BASELINE}, expected new-customer conversions, "
        f"pool {POOL!r}"
        + (f" ({preset.upper()}: CI size, not evidence)" if preset in ("quick", "tiny") else ""),
        "size": {**{k: v for k, v in size.__dict__.items()}, "budgets": list(BUDGETS),
                 "backend": "inprocess", "federated": "early-stopped: valid_share 0.2, "
                 "patience 2, efficient mode, batch 512, 8 batches per message"},
        "interval": "mean of per-seed lifts +/- t * sqrt(max(between SD^2, within SE^2) / s)",
        "summary": summary,
        "runs": records,
        "wall_seconds": round(time.time() - started, 1),
        "run_seconds": round(sum(r["seconds"] for r in records), 1),
        "machine": machine(),
    }
    write_json(out / "claim_map.json", document)
    paths = plot(summary, size, out)
    print(f"wrote {out / 'claim_map.json'} and {len(paths)} plots in {document['wall_seconds']} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
