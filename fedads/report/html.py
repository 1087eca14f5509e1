"""HTML views of results, for Jupyter (``_repr_html_``) and anything else that shows HTML.

Each function builds a small, self-contained HTML fragment (inline styles only, no scripts, no
external files) from the numbers the result holds; nothing is recomputed except formatting.
Undefined numbers (NaN, None) show as ``n/a``. The classes' ``_repr_html_`` methods call these
one-liners, so a notebook cell that ends with a result shows its headline:

* :func:`evaluation_html` for :class:`fedads.eval.Evaluation`: the plain-words verdict, the
  headline lift per pool with its 95% interval and counts, new-customer conversions per model at
  the headline budget, AUC / log loss per model, and the notes.
* :func:`experiment_result_html` for :class:`fedads.experiment.ExperimentResult`: row counts,
  backend, time and traffic, then the evaluation, then the label-privacy block when the result
  has one (:func:`privacy_html`).
* :func:`seed_summary_html` for :class:`fedads.eval.SeedSummary`: mean and t-interval per
  quantity, the per-seed table folded away.
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from typing import Any

_STYLE = (
    "border-collapse:collapse;margin:0.3em 0 0.8em 0;font-size:0.9em;"
    "font-variant-numeric:tabular-nums"
)
_CELL = "border:1px solid #ccc;padding:2px 8px;"
_POOLS = ("prospecting", "all")
_POOL_WORDS = {
    "prospecting": "prospecting (existing customers excluded)",
    "all": "all held-out users",
}


# ------------------------------------------------------------------ formatting
def _finite(value: Any) -> bool:
    try:
        return value is not None and math.isfinite(float(value))
    except (TypeError, ValueError):
        return False


def _num(value: Any, digits: int = 3) -> str:
    return f"{float(value):.{digits}f}" if _finite(value) else "n/a"


def _pct(value: Any, *, signed: bool = True, digits: int = 1) -> str:
    if not _finite(value):
        return "n/a"
    return f"{float(value) * 100:+.{digits}f}%" if signed else f"{float(value) * 100:.{digits}f}%"


def _int(value: Any) -> str:
    return f"{int(value):,}" if _finite(value) else "n/a"


def _share(value: float) -> str:
    return f"{value * 100:.4g}%"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]], *, right_from: int = 1) -> str:
    """An HTML table; cells are escaped here; columns from ``right_from`` are right-aligned."""
    head = "".join(f'<th style="{_CELL}text-align:left">{html.escape(h)}</th>' for h in header)
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            align = "right" if i >= right_from else "left"
            cells.append(f'<td style="{_CELL}text-align:{align}">{html.escape(str(cell))}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    rows_html = "".join(body)
    return (
        f'<table style="{_STYLE}"><thead><tr>{head}</tr></thead><tbody>{rows_html}</tbody></table>'
    )


def _title(text: str) -> str:
    return f'<div style="font-weight:bold;margin-top:0.4em">{html.escape(text)}</div>'


def _box(inner: str) -> str:
    return f'<div class="fedads-result" style="line-height:1.35">{inner}</div>'


# ------------------------------------------------------------------ evaluation
def evaluation_html(evaluation: Any) -> str:
    """HTML summary of an :class:`~fedads.eval.Evaluation` (never raises on empty results).

    Args:
        evaluation: a finished evaluation.

    Returns:
        An HTML fragment: verdict, headline lifts, conversions per model, metrics, notes.
    """
    from fedads.report.markdown import verdict

    parts = [
        _title(
            f"fedads evaluation: {evaluation.data.n:,} held-out users, headline budget "
            f"{_share(evaluation.headline_budget)} ({evaluation.headline_k:,} users), "
            f"{evaluation.model} vs {evaluation.baseline}"
        )
    ]
    try:
        words = verdict(evaluation)
    except Exception as exc:  # a display must not fail; say why the verdict is missing
        words = f"(no verdict: {type(exc).__name__}: {exc})"
    parts.append(f'<p style="margin:0.3em 0;max-width:60em">{html.escape(words)}</p>')
    parts.append(_lift_table(evaluation))
    parts.append(_conversion_table(evaluation))
    parts.append(_metrics_table(evaluation))
    if evaluation.notes:
        items = "".join(f"<li>{html.escape(str(note))}</li>" for note in evaluation.notes)
        parts.append(
            f"<details><summary>{len(evaluation.notes)} note(s)</summary><ul>{items}</ul></details>"
        )
    return _box("".join(parts))


def _lift_table(evaluation: Any) -> str:
    rows = []
    for pool in _POOLS:
        for kind in ("targeting", "incremental"):
            row = evaluation.lift(pool, kind=kind)
            if row is None:
                continue
            interval = (
                f"{_pct(row.ci_low)} to {_pct(row.ci_high)}"
                if _finite(row.ci_low) and _finite(row.ci_high)
                else "n/a"
            )
            rows.append(
                [
                    _POOL_WORDS.get(pool, pool),
                    kind,
                    _pct(row.point),
                    interval,
                    f"{_int(row.model_count)} vs {_int(row.baseline_count)}",
                    _num(row.share_positive, 2),
                ]
            )
    if not rows:
        return _title("Headline lift") + "<p>No lift rows (the headline models were not both "
        "evaluated).</p>"
    header = [
        "pool",
        "kind",
        f"lift ({evaluation.model} / {evaluation.baseline} - 1)",
        "95% bootstrap CI",
        "new-customer conversions",
        "share of resamples > 0",
    ]
    return _title(f"Headline lift at {_share(evaluation.headline_budget)}") + _table(
        header, rows, right_from=2
    )


def _conversion_table(evaluation: Any) -> str:
    rows = []
    for model in evaluation.models:
        cells = [model]
        for pool in _POOLS:
            try:
                row = evaluation.targeting_row(model, pool)
            except Exception:  # missing row: show n/a rather than fail a display
                cells += ["n/a", "n/a"]
                continue
            cells += [_int(row.new_customer_conversions), _int(row.n_selected)]
        rows.append(cells)
    if not rows:
        return ""
    header = ["model"]
    for pool in _POOLS:
        header += [f"new-customer conversions ({pool})", f"selected ({pool})"]
    return _title(f"Top {_share(evaluation.headline_budget)} per model") + _table(header, rows)


def _metrics_table(evaluation: Any) -> str:
    rows = []
    for model in evaluation.models:
        overall = evaluation.metrics.get(model, {}).get("overall")
        if overall is None:
            continue
        rows.append(
            [
                model,
                _num(overall.auc, 4),
                _num(overall.logloss, 4),
                _num(overall.ece, 4),
                _int(overall.n),
                _int(overall.positives),
            ]
        )
    if not rows:
        return ""
    header = ["model", "AUC", "log loss", "ECE", "users", "conversions"]
    return _title("Held-out metrics (all users)") + _table(header, rows)


# ------------------------------------------------------------------ experiment
def experiment_result_html(result: Any) -> str:
    """HTML summary of an :class:`~fedads.experiment.ExperimentResult`.

    Row counts (social, e-commerce, aligned, held-out), how the federated model ran (backend,
    seconds, payload bytes), the report folder if one was written, then :func:`evaluation_html`.
    """
    summary: Mapping[str, Any] = result.data_summary or {}
    run = result.federated
    labels = {
        "social_rows": "social rows",
        "ecommerce_rows": "e-commerce rows",
        "aligned": "aligned users",
        "train_users": "training users",
        "test_users": "held-out users",
        "social_not_aligned": "social rows not aligned",
        "ecommerce_not_aligned": "e-commerce rows not aligned",
    }
    rows = [[labels.get(k, k), _int(v) if _finite(v) else str(v)] for k, v in summary.items()]
    traffic = getattr(run, "traffic", None) or {}
    total = sum(int(v) for v in traffic.values()) if traffic else None
    rows.append(["backend", str(getattr(run, "backend", "n/a"))])
    rows.append(["federated run (s)", _num(getattr(run, "elapsed_s", None), 1)])
    rows.append(["payload bytes, all links", _int(total)])
    paths = result.report_paths
    if paths is not None:
        rows.append(["report", str(getattr(paths, "out_dir", paths))])
    parts = [_title("fedads experiment"), _table(["", "value"], rows)]
    parts.append(evaluation_html(result.evaluation))
    privacy = getattr(result, "privacy", None)
    if privacy:
        parts.append(privacy_html(privacy))
    return _box("".join(parts))


def privacy_html(block: Mapping[str, Any]) -> str:
    """HTML view of a run's ``privacy`` block (``report.json``'s ``privacy``, when present).

    The defense (name, strength, epsilon where defined), the worst label-leak AUC, and per attack
    the leak AUC (either sign) as the social party and as the relay saw the gradients.
    """
    defense = block.get("defense") or {}
    name = str(defense.get("name", "none"))
    if defense.get("undefended", name == "none"):
        words = "undefended"
    else:
        words = f"{name}, strength {_num(defense.get('strength'), 3)}"
        if _finite(defense.get("epsilon")):
            words += f", epsilon {_num(defense.get('epsilon'), 2)}"
    parts = [
        _title("Label privacy"),
        f'<p style="margin:0.3em 0">Defense: {html.escape(words)}. Worst label-leak AUC '
        f"(0.5 = the attacker learns nothing): {_num(block.get('worst_leak_auc'), 3)}.</p>",
    ]
    views = (("social party", "label_leakage"), ("relay", "relay_label_leakage"))
    attacks = sorted({a for _, key in views for a in (block.get(key) or {})})
    if attacks:
        rows = []
        for attack in attacks:
            cells = [attack]
            for _, key in views:
                entry = (block.get(key) or {}).get(attack) or {}
                cells.append(_num(entry.get("auc_either_sign", entry.get("auc")), 3))
            rows.append(cells)
        parts.append(_table(["attack", *(f"leak AUC: {v}" for v, _ in views)], rows))
    return "".join(parts)


# ------------------------------------------------------------------ seeds
def seed_summary_html(summary: Any) -> str:
    """HTML view of a :class:`~fedads.eval.SeedSummary`: mean and interval per quantity.

    Lifts (quantities whose name starts with ``lift`` or ``incremental_lift``) are shown as
    percentages, everything else as numbers; the per-seed table is folded away.
    """
    level = _share(summary.confidence)
    rows = []
    for name in summary.table.columns:
        is_lift = str(name).startswith(("lift", "incremental_lift"))
        fmt = (lambda v: _pct(v)) if is_lift else (lambda v: _num(v, 4))
        low, high = summary.ci_low[name], summary.ci_high[name]
        interval = f"{fmt(low)} to {fmt(high)}" if _finite(low) and _finite(high) else "n/a"
        rows.append([str(name), fmt(summary.mean[name]), interval, _int(summary.n_seeds[name])])
    n_seeds = len(summary.table.index)
    parts = [_title(f"fedads across {n_seeds} seed(s): mean and {level} t-interval")]
    if rows:
        parts.append(_table(["quantity", "mean", f"{level} interval", "seeds"], rows))
    else:
        parts.append("<p>No quantities.</p>")
    per_seed = summary.table.to_html(float_format=lambda v: f"{v:.4g}", na_rep="n/a", border=0)
    parts.append(f"<details><summary>per seed</summary>{per_seed}</details>")
    return _box("".join(parts))
