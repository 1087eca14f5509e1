"""``report.md``: tables of metrics, targeting and lift, plus a plain-words verdict.

The verdict is generated from the numbers only: the headline lift (federated over
e-commerce-only at the headline budget), whether its 95% interval covers 0, and where the
interval sits relative to the claimed range (default +15% to +25%).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from fedads.eval.evaluate import Evaluation
from fedads.eval.lift import LiftResult

DEFAULT_CLAIM: tuple[float, float] = (0.15, 0.25)
"""The claim under test: the federated model brings 15-25% more new customers."""

POOL_WORDS = {
    "all": "all held-out users",
    "prospecting": "prospecting pool (existing customers excluded before selection)",
}


def _num(value: float | None, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "n/a"
    return f"{value:.{digits}f}"


def _int(value: int | float | None) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float) and not value.is_integer():
        return f"{value:,.1f}"  # expected counts
    return f"{int(value):,}"


def _pct(value: float | None, *, signed: bool = True, digits: int = 1) -> str:
    if value is None or not math.isfinite(value):
        return "n/a"
    return f"{value * 100:+.{digits}f}%" if signed else f"{value * 100:.{digits}f}%"


def _share(value: float) -> str:
    """A budget share as a short percentage: 0.1 -> '10%', 0.005 -> '0.5%'."""
    return f"{value * 100:.4g}%"


def _ci(row: LiftResult) -> str:
    if not (math.isfinite(row.ci_low) and math.isfinite(row.ci_high)):
        return "n/a"
    return f"{_pct(row.ci_low)} to {_pct(row.ci_high)}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def _claim_position(low: float, high: float, claim: tuple[float, float]) -> str:
    """Where an interval sits relative to the claimed range: below, above, within, overlaps."""
    c_low, c_high = claim
    if high < c_low:
        return "below"
    if low > c_high:
        return "above"
    if c_low <= low and high <= c_high:
        return "within"
    return "overlaps"


def _claim_words(low: float, high: float, claim: tuple[float, float]) -> str:
    span = f"{_pct(claim[0], digits=0)} to {_pct(claim[1], digits=0)}"
    position = _claim_position(low, high, claim)
    if position == "below":
        return f"The whole interval lies below the claimed {span}: the data contradict the claim."
    if position == "above":
        return f"The whole interval lies above the claimed {span}: the lift is larger than claimed."
    if position == "within":
        return f"The whole interval lies within the claimed {span}, so the data support the claim."
    return (
        f"The interval overlaps the claimed {span} but is wider than it, so the data are "
        "consistent with the claim without confirming it."
    )


def _has_ci(row: LiftResult) -> bool:
    return math.isfinite(row.ci_low) and math.isfinite(row.ci_high)


def _short_words(row: LiftResult, claim: tuple[float, float]) -> str:
    """E.g. 'the interval covers 0 and lies below the claimed range'."""
    if not _has_ci(row):
        return "no interval"
    zero = "covers 0" if row.ci_low <= 0 <= row.ci_high else "excludes 0"
    position = {
        "below": "lies below the claimed range",
        "above": "lies above the claimed range",
        "within": "lies within the claimed range",
        "overlaps": "overlaps the claimed range",
    }[_claim_position(row.ci_low, row.ci_high, claim)]
    return f"the interval {zero} and {position}"


def _lift_sentence(row: LiftResult, baseline: str) -> str:
    if not math.isfinite(row.point):
        what = "new-customer conversions" if row.kind == "targeting" else "incremental ones"
        return (
            f"undefined because the {baseline} model's selected users have {row.baseline_count} "
            f"{what}"
        )
    text = f"{_pct(row.point)} ({row.model_count:,} against {row.baseline_count:,}"
    if _has_ci(row):
        text += (
            f"; 95% CI {_ci(row)} over {row.n_valid:,} paired bootstrap resamples, lift > 0 in "
            f"{_pct(row.share_positive, signed=False, digits=0)} of them)"
        )
    else:
        text += "; no bootstrap interval)"
    return text


def _sign_words(row: LiftResult) -> str:
    if not _has_ci(row):
        return "Without an interval the sampling noise of this estimate is unknown."
    if row.ci_low > 0:
        return (
            f"The interval excludes 0: on this held-out set the {row.model} model brings more new "
            f"customers than the {row.baseline} model."
        )
    if row.ci_high < 0:
        return (
            f"The interval lies below 0: on this held-out set the {row.model} model brings fewer "
            f"new customers than the {row.baseline} model."
        )
    return (
        f"The interval covers 0, so this held-out set cannot tell the {row.model} model apart "
        f"from the {row.baseline} model."
    )


def verdict(evaluation: Evaluation, claim: tuple[float, float] = DEFAULT_CLAIM) -> str:
    """One paragraph in plain words, generated from the headline lift rows.

    Leads with the prospecting pool (both models may exclude known customers, so it is the like
    for like comparison), then the all-users pool, then the incremental lift when potential
    outcomes are known.
    """
    model, baseline = evaluation.model, evaluation.baseline
    if model not in evaluation.models or baseline not in evaluation.models:
        missing = [m for m in (model, baseline) if m not in evaluation.models]
        return (
            f"No headline lift: model(s) {missing} were not evaluated, so the claim of "
            f"{_pct(claim[0], digits=0)} to {_pct(claim[1], digits=0)} more new customers cannot "
            "be checked."
        )
    budget = evaluation.headline_budget
    parts = [
        f"At a budget of {_share(budget)} of held-out aligned users ({evaluation.headline_k:,} of "
        f"{evaluation.data.n:,}), comparing the {model} model with the {baseline} model by the "
        "new-customer conversions among the users each one selects:"
    ]
    prospecting = evaluation.lift("prospecting")
    everyone = evaluation.lift("all")
    if prospecting is not None:
        parts.append(
            f"in the {POOL_WORDS['prospecting']} the lift is "
            f"{_lift_sentence(prospecting, baseline)}."
        )
        if math.isfinite(prospecting.point):
            parts.append(_sign_words(prospecting))
            if _has_ci(prospecting):
                parts.append(_claim_words(prospecting.ci_low, prospecting.ci_high, claim))
    if everyone is not None:
        sentence = f"Among {POOL_WORDS['all']} the lift is {_lift_sentence(everyone, baseline)}"
        if math.isfinite(everyone.point) and _has_ci(everyone):
            sentence += f"; {_short_words(everyone, claim)}"
        parts.append(sentence + ".")
    incremental = evaluation.lift("prospecting", kind="incremental")
    if incremental is not None:
        sentence = (
            "Counting only conversions the ad caused (y1 - y0, known in this synthetic world), the "
            f"prospecting lift is {_lift_sentence(incremental, baseline)}"
        )
        if math.isfinite(incremental.point) and _has_ci(incremental):
            sentence += f"; {_short_words(incremental, claim)}"
        parts.append(sentence + ".")
    elif not evaluation.data.has_potential_outcomes:
        parts.append(
            "Observed conversions include people who would have converted without the ad; no "
            "potential outcomes were given, so the incremental lift is not reported."
        )
    return " ".join(parts)


def _data_rows(data_section: Mapping[str, Any]) -> list[list[str]]:
    labels = [
        ("social_rows", "social party rows"),
        ("ecommerce_rows", "e-commerce party rows"),
        ("aligned", "aligned users (PSI intersection)"),
        ("test_users", "held-out aligned users"),
        ("test_existing_customers", "of which existing customers"),
        ("test_conversions", "conversions among held-out users"),
        ("test_new_customer_conversions", "new-customer conversions among held-out users"),
        ("test_incremental_new_customer_conversions", "incremental new-customer conversions"),
    ]
    return [[text, _int(data_section[key])] for key, text in labels if key in data_section]


def _baseline_section(evaluation: Evaluation) -> list[str]:
    """Lift against every baseline at the headline budget, realized and (if known) expected."""
    if not evaluation.lifts:
        return []
    expected = evaluation.data.has_true_probabilities
    out = [f"## Lift by baseline ({_share(evaluation.headline_budget)} budget)", ""]
    text = (
        f"{evaluation.model} against each baseline, new-customer conversions among the selected "
        "(realized: one campaign's conversions)"
    )
    if expected:
        text += (
            "; expected: sum of the true conversion probability p1 over the selected new "
            "customers (synthetic world), free of the conversion noise of one campaign"
        )
    if evaluation.strongest_baseline is not None:
        text += (
            f". Strongest e-commerce-only baseline, picked by validation (never on these "
            f"users): **{evaluation.strongest_baseline}**"
        )
    out += [text + ".", ""]
    header = ["baseline", "pool", "realized lift", "95% CI"]
    if expected:
        header += ["expected lift", "95% CI", "expected counts"]
    rows = []
    baselines = dict.fromkeys(row.baseline for row in evaluation.lifts)
    for baseline in baselines:
        for pool in ("prospecting", "all"):
            row = evaluation.lift(pool, baseline=baseline)
            if row is None:
                continue
            cells = [baseline, pool, _pct(row.point), _ci(row)]
            exp = evaluation.lift(pool, baseline=baseline, kind="expected")
            if expected and exp is not None:
                counts = f"{_int(exp.model_count)} / {_int(exp.baseline_count)}"
                cells += [_pct(exp.point), _ci(exp), counts]
            rows.append(cells)
    return out + [_table(header, rows), ""]


def render_markdown(
    evaluation: Evaluation,
    data_section: Mapping[str, Any],
    *,
    claim: tuple[float, float] = DEFAULT_CLAIM,
    plots: Mapping[str, str] | None = None,
    key_column: str = "key",
    privacy: Mapping[str, Any] | None = None,
) -> str:
    """The full ``report.md`` text."""
    out = ["# fedads evaluation report", ""]
    out += ["## Verdict", "", verdict(evaluation, claim), ""]
    if privacy:
        out += privacy_section(evaluation, privacy)
    out += ["## Data", "", _table(["quantity", "value"], _data_rows(data_section)), ""]

    out += ["## Models", ""]
    out.append(
        f"Overall metrics on held-out users; AUC also per segment. ECE: "
        f"{evaluation.settings.get('ece_bins')} {evaluation.settings.get('ece_strategy')} bins "
        "(quantile = equal mass); pred/obs = predicted over observed conversions; log loss in "
        "nats with clipped probabilities."
    )
    out.append("")
    rows = []
    notes = []
    for model, segments in evaluation.metrics.items():
        overall = segments["overall"]
        rows.append(
            [
                model,
                _num(overall.auc),
                _num(segments["existing"].auc),
                _num(segments["new"].auc),
                _num(overall.logloss, 4),
                _num(overall.ece, 4),
                _num(overall.pred_over_obs, 2),
            ]
        )
        for segment, metrics in segments.items():
            notes += [f"{model}, {segment}: {note}" for note in metrics.notes]
    out.append(
        _table(["model", "AUC", "AUC existing", "AUC new", "log loss", "ECE", "pred/obs"], rows)
    )
    if notes:
        out += ["", "Undefined metrics: " + "; ".join(notes) + "."]
    out.append("")

    out += [f"## Targeting at the headline budget ({_share(evaluation.headline_budget)})", ""]
    incremental = evaluation.data.has_potential_outcomes
    header = [
        "pool",
        "model",
        "K",
        "selected",
        "conversions",
        "new-customer conv.",
        "precision@K",
        "recall new",
        "new share",
    ]
    if incremental:
        header += ["incr. conv.", "incr. new conv."]
    rows = []
    for row in evaluation.targeting:
        if not math.isclose(row.budget, evaluation.headline_budget):
            continue
        cells = [
            row.pool,
            row.model,
            _int(row.k),
            _int(row.n_selected),
            _int(row.conversions),
            _int(row.new_customer_conversions),
            _num(row.precision_at_k),
            _num(row.recall_new),
            _num(row.new_share_of_converters),
        ]
        if incremental:
            cells += [
                _int(row.incremental_conversions),
                _int(row.incremental_new_customer_conversions),
            ]
        rows.append(cells)
    out += [_table(header, rows), ""]

    out += _baseline_section(evaluation)
    out += ["## Lift", ""]
    if evaluation.lifts:
        out.append(
            f"Lift = new-customer conversions of {evaluation.model} / those of the baseline - 1, "
            "per pool and budget. `targeting`: observed conversions among the selected; "
            "`incremental`: y1 - y0 among the selected. 95% CI: paired bootstrap percentile "
            f"interval ({evaluation.n_bootstrap:,} resamples, seed {evaluation.seed})."
        )
        out.append("")
        rows = [
            [
                row.baseline,
                row.kind,
                row.pool,
                _share(row.budget),
                _int(row.k),
                _int(row.model_count),
                _int(row.baseline_count),
                _pct(row.point),
                _ci(row),
                _pct(row.share_positive, signed=False, digits=0),
            ]
            for row in evaluation.lifts
        ]
        header = [
            "baseline",
            "kind",
            "pool",
            "budget",
            "K",
            evaluation.model,
            "baseline",
            "lift",
            "95% CI",
            "P(lift > 0)",
        ]
        out += [_table(header, rows), ""]
    else:
        out += ["No lift was computed (see notes).", ""]

    if plots:
        out += ["## Plots", ""]
        for name, file_name in plots.items():
            out += [f"![{name}]({file_name})", ""]

    out += ["## Files", ""]
    out.append(
        f"`scores.csv`: one row per held-out aligned user with `{key_column}`, `label`, "
        "`is_existing_customer` and one score column per model; `report.json`: every number "
        "above (NaN written as null)."
    )
    out.append("")
    if evaluation.notes:
        out += ["## Notes", ""]
        out += [f"- {note}" for note in evaluation.notes]
        out.append("")
    return "\n".join(out)


_ATTACK_WORDS = {
    "norm": "gradient norm",
    "direction": "cosine to the batch's largest-norm row",
    "spectral": "sign on the batch's top singular vector",
}


def privacy_section(evaluation: Evaluation, privacy: Mapping[str, Any]) -> list[str]:
    """``## Label privacy``: the defense, every attack's leak AUC, beside the headline lift."""
    defense = privacy.get("defense") or {}
    name = defense.get("name", "none")
    lift = evaluation.lift("prospecting")
    lift_text = _pct(lift.point) if lift is not None else "n/a"
    epsilon = defense.get("epsilon")
    if name == "none":
        words = (
            "**undefended** (no label defense: the gradients reveal the labels as measured below)"
        )
    else:
        words = f"`{name}` at strength {_num(defense.get('strength'), 3)}"
        if epsilon is not None:
            words += f", label-DP epsilon {_num(epsilon, 2)} ({defense.get('epsilon_scope', '')})"
        else:
            words += " (no formal guarantee)"
    out = ["## Label privacy", ""]
    out.append(
        f"Defense: {words}. Headline prospecting lift with this defense: {lift_text}. "
        f"Worst leak AUC over attacks and observers: {_num(privacy.get('worst_leak_auc'))} "
        "(0.5 = the attacks learn nothing; the higher of AUC and 1 - AUC). Leak AUC: how well "
        "each attack's per-row score, computed by the observer on the gradients it received, "
        "ranks the true training labels (over the last epoch; per epoch in report.json)."
    )
    out.append("")
    rows = []
    for view, key in (("social party", "label_leakage"), ("relay", "relay_label_leakage")):
        for attack, entry in (privacy.get(key) or {}).items():
            per_epoch = ", ".join(_num(v) for v in entry.get("per_epoch", []))
            rows.append(
                [view, attack, _ATTACK_WORDS.get(attack, ""), _num(entry.get("auc")), per_epoch]
            )
    if rows:
        out += [_table(["observer", "attack", "score", "leak AUC", "per epoch"], rows), ""]
    inference = privacy.get("feature_inference")
    if inference:
        out.append(
            "Feature inference by the e-commerce party from the social embeddings it received "
            f"(held-out users, {inference.get('method')}): own features alone vs own + "
            "embeddings (R^2 for numeric, AUC for categorical features)."
        )
        out.append("")
        feature_rows = [
            [
                feature,
                entry.get("metric", ""),
                _num(entry.get("own")),
                _num(entry.get("own_plus_embeddings")),
                _num(entry.get("gain")),
            ]
            for feature, entry in inference.get("features", {}).items()
        ]
        out += [
            _table(["social feature", "metric", "own", "own + embeddings", "gain"], feature_rows)
        ]
        out.append("")
    return out
