"""PNG plots of an evaluation, drawn with matplotlib's Agg canvas (no pyplot, no global state).

- ``new_customers_vs_budget_<pool>.png``: new-customer conversions of each model's top-K
  against the budget (0.5% to 30% of held-out users), one file per pool; dashed lines show
  incremental new-customer conversions when potential outcomes are known.
- ``gains_<segment>.png``: cumulative gains within ``existing`` and ``new`` users: share of the
  segment's converters captured against the share of the segment targeted.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from fedads.eval.data import SEGMENTS
from fedads.eval.evaluate import Evaluation

POOL_TITLES = {
    "all": "all held-out users",
    "prospecting": "prospecting (existing customers excluded)",
}
MODEL_STYLES = {
    "federated": {"color": "tab:blue"},
    "ecommerce_only": {"color": "tab:orange"},
    "social_only": {"color": "tab:green"},
    "centralized": {"color": "tab:gray"},
}


def _figure() -> Figure:
    figure = Figure(figsize=(7.0, 4.5), dpi=110)
    FigureCanvasAgg(figure)
    return figure


def _save(figure: Figure, path: Path) -> Path:
    figure.tight_layout()
    figure.savefig(path, format="png")
    return path


def plot_budget_curves(evaluation: Evaluation, out_dir: Path) -> dict[str, Path]:
    """One PNG per pool: new-customer conversions against budget share, every model."""
    shares = np.asarray(evaluation.curve_budgets) * 100.0
    paths = {}
    for pool, by_model in evaluation.curves.items():
        figure = _figure()
        axes = figure.add_subplot(1, 1, 1)
        for model, counts in by_model.items():
            style = MODEL_STYLES.get(model, {})
            axes.plot(shares, counts, label=model, linewidth=1.8, **style)
            if evaluation.incremental_curves is not None:
                axes.plot(
                    shares,
                    evaluation.incremental_curves[pool][model],
                    linestyle="--",
                    linewidth=1.0,
                    label=f"{model} (incremental)",
                    **style,
                )
        axes.axvline(
            evaluation.headline_budget * 100.0, color="black", linewidth=0.8, linestyle=":"
        )
        axes.set_xlabel("budget (% of held-out aligned users)")
        axes.set_ylabel("new-customer conversions among selected")
        axes.set_title(f"New customers vs budget: {POOL_TITLES.get(pool, pool)}")
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
        name = f"new_customers_vs_budget_{pool}"
        paths[name] = _save(figure, out_dir / f"{name}.png")
    return paths


def plot_gains(evaluation: Evaluation, out_dir: Path) -> dict[str, Path]:
    """One PNG per segment (``existing``, ``new``): cumulative gains of every model."""
    paths = {}
    for segment in SEGMENTS:
        by_model = evaluation.gains.get(segment, {})
        figure = _figure()
        axes = figure.add_subplot(1, 1, 1)
        axes.plot([0, 1], [0, 1], color="black", linewidth=0.8, linestyle=":", label="random")
        n = positives = 0
        for model, curve in by_model.items():
            n, positives = curve.n, curve.positives
            if positives == 0:
                continue
            axes.plot(curve.x, curve.y, label=model, linewidth=1.8, **MODEL_STYLES.get(model, {}))
        if positives == 0:
            axes.text(0.5, 0.5, "no converters in this segment", ha="center", va="center")
        axes.set_xlabel(f"share of {segment} users targeted (n = {n})")
        axes.set_ylabel(f"share of {segment} converters captured ({positives})")
        axes.set_title(f"Gains curve: {segment} customers")
        axes.set_xlim(0, 1)
        axes.set_ylim(0, 1.02)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=8)
        name = f"gains_{segment}"
        paths[name] = _save(figure, out_dir / f"{name}.png")
    return paths


def write_plots(evaluation: Evaluation, out_dir: str | Path) -> dict[str, Path]:
    """Write every plot into ``out_dir``; returns name -> path."""
    out_dir = Path(out_dir)
    paths = plot_budget_curves(evaluation, out_dir)
    paths.update(plot_gains(evaluation, out_dir))
    return paths
