"""The uplift parts of a report: Qini-curve plots and the ``## Uplift`` section of report.md.

Fed by :class:`fedads.eval.uplift.UpliftEvaluation` (docs/evaluation.md, "Uplift").
"""

from __future__ import annotations

import math
from pathlib import Path

from fedads.eval.uplift import UpliftEvaluation
from fedads.report.plots import MODEL_STYLES, POOL_TITLES, _figure, _save


def plot_qini(uplift: UpliftEvaluation, out_dir: str | Path) -> dict[str, Path]:
    """One PNG per pool, ``qini_<pool>.png``: every model's Qini curve and the random line."""
    out = Path(out_dir)
    paths = {}
    for pool, by_model in uplift.curves.items():
        figure = _figure()
        axes = figure.add_subplot(1, 1, 1)
        end = 0.0
        for model, (x, q) in by_model.items():
            qini = uplift.scores[pool][model].qini_auc
            label = f"{model} (Qini {qini:.3f})" if math.isfinite(qini) else model
            axes.plot([v * 100 for v in x], q, label=label, linewidth=1.6,
                      **MODEL_STYLES.get(model, {}))  # fmt: skip
            end = q[-1]
        axes.plot([0, 100], [0, end], color="black", linewidth=0.8, linestyle=":", label="random")
        axes.set_xlabel(f"users targeted, best score first (% of {uplift.n[pool]})")
        axes.set_ylabel("incremental conversions (Qini)")
        axes.set_title(f"Qini curves: {POOL_TITLES.get(pool, pool)}")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
        name = f"qini_{pool}"
        paths[name] = _save(figure, out / f"{name}.png")
    return paths


def uplift_markdown(uplift: UpliftEvaluation, plots: dict[str, str] | None = None) -> str:
    """The ``## Uplift`` section: per pool, each model's Qini / uplift AUC, uplift@k and (on
    synthetic worlds) the true incremental conversions of its top users."""

    def num(value: float | None, spec: str) -> str:
        return "n/a" if value is None or not math.isfinite(value) else format(value, spec)

    lines = [
        "## Uplift",
        "",
        "Randomized campaign: held-out users shown the ad (treated) against those held out "
        "(control). Qini / uplift AUC: normalized areas (0 = random order, 1 = perfect order "
        "on these outcomes). uplift@k: treated minus control conversion rate among the top k "
        "share. True incremental: conversions the ad caused among the top users (potential "
        "outcomes, synthetic worlds only).",
    ]
    for pool, by_model in uplift.scores.items():
        budgets = uplift.budgets
        lines += [
            "",
            f"**{POOL_TITLES.get(pool, pool)}**: {uplift.n[pool]} users "
            f"({uplift.n_treated[pool]} treated, {uplift.n_control[pool]} control)",
            "",
            "| model | Qini AUC | uplift AUC | "
            + " | ".join(f"uplift@{k:.0%}" for k in budgets)
            + " | "
            + " | ".join(f"true incr. @{k:.0%}" for k in budgets)
            + " |",
            "|---" * (3 + 2 * len(budgets)) + "|",
        ]
        for model, s in by_model.items():
            true = s.true_incremental or {}
            expected = s.expected_incremental or {}
            cells = [num(s.uplift_at_k.get(k), "+.3f") for k in budgets]
            cells += [
                f"{true[k]} ({expected[k]:.1f})" if k in true and k in expected
                else str(true.get(k, "n/a"))
                for k in budgets
            ]  # fmt: skip
            lines.append(
                f"| {model} | {num(s.qini_auc, '.3f')} | {num(s.uplift_auc, '.3f')} | "
                + " | ".join(cells)
                + " |"
            )
        name = f"qini_{pool}"
        if plots and name in plots:
            lines += ["", f"![Qini curves, {pool}]({plots[name]})"]
    if any(s.true_incremental for by in uplift.scores.values() for s in by.values()):
        lines += ["", "True incremental: realized y1 - y0 (expected p1 - p0 in brackets)."]
    return "\n".join(lines)
