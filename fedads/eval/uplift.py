"""Uplift evaluation: Qini and uplift curves, their areas and uplift@k, on randomized data.

Works on held-out users of a campaign with a randomized control group: the observed outcome
``y`` (0/1), the treatment flag ``t`` (1 shown the ad, 0 held out) and one score per model (a
predicted uplift, or any score: a response model's P(buy) is evaluated the same way). On
synthetic worlds the true incremental conversions of each model's top users (from the potential
outcomes ``y1 - y0`` and ``p1 - p0``) are reported beside.

The definitions are scikit-uplift's (``sklift.metrics``, docs/evaluation.md "Uplift"), written
out here in numpy: scikit-uplift 0.5.1 (2022) calls a scikit-learn helper deprecated in 1.8 and
removed in 1.10, so fedads does not import it at run time; ``tests/test_uplift.py`` checks every
function against scikit-uplift's own on fixed examples.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fedads._validation import check_positive_int, fail
from fedads.eval._json import to_jsonable
from fedads.eval.data import as_1d, as_binary

UPLIFT_POOLS: tuple[str, ...] = ("all", "prospecting")
"""Users the uplift evaluation covers: every held-out user, or only those new to the brand."""


# --- curves and areas (scikit-uplift's definitions) ----------------------------------------------


def _sorted_cumulative(
    y: np.ndarray, score: np.ndarray, treatment: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Cumulative counts at each distinct score, best score first.

    Returns ``(n_all, n_treated, n_control, y_treated, y_control)``, each ``[n_thresholds]``
    float64: users, treated users, control users, treated and control converters among the
    users whose score is at least the threshold. Ties share one point (as scikit-learn's ROC).
    """
    order = np.argsort(score, kind="mergesort")[::-1]
    y, score, treatment = y[order], score[order], treatment[order]
    ends = np.r_[np.flatnonzero(np.diff(score)), score.size - 1]
    treated = treatment.astype(np.float64)
    n_treated = np.cumsum(treated)[ends]
    y_treated = np.cumsum(y * treated)[ends]
    y_control = np.cumsum(y * (1.0 - treated))[ends]
    n_all = (ends + 1).astype(np.float64)
    return n_all, n_treated, n_all - n_treated, y_treated, y_control


def _safe_ratio(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    out = np.zeros_like(a, dtype=np.float64)
    np.divide(a, b, out=out, where=b != 0)
    return out


def _from_origin(x: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if x.size == 0 or values[0] != 0 or x[0] != 0:
        return np.r_[0.0, x], np.r_[0.0, values]
    return x, values


def _inputs(where: str, y: Any, score: Any, treatment: Any) -> tuple[np.ndarray, ...]:
    y_arr = as_binary(where, "y", y).astype(np.float64)
    n = y_arr.shape[0]
    t_arr = as_binary(where, "treatment", treatment, n).astype(np.float64)
    s_arr = as_1d(where, "score", score, n).astype(np.float64)
    if not np.isfinite(s_arr).all():
        raise fail(where, "score has non-finite values", "give a finite score for every user")
    return y_arr, s_arr, t_arr


def qini_curve(y: Any, score: Any, treatment: Any) -> tuple[np.ndarray, np.ndarray]:
    """Qini curve: ``(x, q)``, each ``[n_points]``, starting at (0, 0).

    ``x``: users targeted (best score first, ties together); ``q = Y_T(x) - Y_C(x) N_T(x) /
    N_C(x)``: treated converters among them minus control converters scaled to the treated
    count, i.e. the incremental conversions the targeted treated users brought.
    """
    n_all, n_t, n_c, y_t, y_c = _sorted_cumulative(*_inputs("qini_curve", y, score, treatment))
    return _from_origin(n_all, y_t - y_c * _safe_ratio(n_t, n_c))


def uplift_curve(y: Any, score: Any, treatment: Any) -> tuple[np.ndarray, np.ndarray]:
    """Uplift curve: ``(x, u)`` with ``u = (Y_T/N_T - Y_C/N_C) x``, the difference of the
    conversion rates among the targeted treated and control users times the targeted count."""
    n_all, n_t, n_c, y_t, y_c = _sorted_cumulative(*_inputs("uplift_curve", y, score, treatment))
    return _from_origin(n_all, (_safe_ratio(y_t, n_t) - _safe_ratio(y_c, n_c)) * n_all)


def perfect_qini_curve(y: Any, treatment: Any) -> tuple[np.ndarray, np.ndarray]:
    """The Qini curve of the best possible order on these outcomes (negative effects allowed):
    treated converters first, control converters last."""
    y_arr = as_binary("perfect_qini_curve", "y", y).astype(np.float64)
    t_arr = as_binary("perfect_qini_curve", "treatment", treatment, y_arr.shape[0])
    t_arr = t_arr.astype(np.float64)
    return qini_curve(y_arr, y_arr * t_arr - y_arr * (1 - t_arr), t_arr)


def perfect_uplift_curve(y: Any, treatment: Any) -> tuple[np.ndarray, np.ndarray]:
    """The uplift curve of the best possible order on these outcomes (scikit-uplift's rule)."""
    y_arr = as_binary("perfect_uplift_curve", "y", y).astype(np.float64)
    t_arr = as_binary("perfect_uplift_curve", "treatment", treatment, y_arr.shape[0])
    t_arr = t_arr.astype(np.float64)
    control_responders = np.sum((y_arr == 1) & (t_arr == 0))
    treated_non_responders = np.sum((y_arr == 0) & (t_arr == 1))
    summand = y_arr if control_responders > treated_non_responders else t_arr
    return uplift_curve(y_arr, 2.0 * (y_arr == t_arr) + summand, t_arr)


def _area(x: np.ndarray, values: np.ndarray) -> float:
    """Trapezoidal area under a curve (x increasing)."""
    return float(np.sum(np.diff(x) * (values[1:] + values[:-1]) / 2.0))


def _normalized_area(
    curve: tuple[np.ndarray, np.ndarray], perfect: tuple[np.ndarray, np.ndarray]
) -> float:
    """(area(curve) - area(random)) / (area(perfect) - area(random)); random: the straight
    line from (0, 0) to the perfect curve's end point. NaN if the perfect curve is random."""
    x_p, v_p = perfect
    random = _area(np.asarray([0.0, x_p[-1]]), np.asarray([0.0, v_p[-1]]))
    best = _area(x_p, v_p) - random
    if best == 0:
        return float("nan")
    return (_area(*curve) - random) / best


def qini_auc_score(y: Any, score: Any, treatment: Any) -> float:
    """Normalized area under the Qini curve: 0 = random order, 1 = the perfect order
    (``sklift.metrics.qini_auc_score(..., negative_effect=True)``)."""
    return _normalized_area(qini_curve(y, score, treatment), perfect_qini_curve(y, treatment))


def uplift_auc_score(y: Any, score: Any, treatment: Any) -> float:
    """Normalized area under the uplift curve (``sklift.metrics.uplift_auc_score``)."""
    return _normalized_area(uplift_curve(y, score, treatment), perfect_uplift_curve(y, treatment))


def uplift_at_k(y: Any, score: Any, treatment: Any, k: float) -> float:
    """Conversion rate of treated minus control users among the top ``int(k * n)`` users
    (``sklift.metrics.uplift_at_k(..., strategy="overall", k=k)``); NaN when the top users
    hold no treated or no control user."""
    y_arr, s_arr, t_arr = _inputs("uplift_at_k", y, score, treatment)
    if not 0 < k < 1:
        raise fail("uplift_at_k", f"k={k!r} is not in (0, 1)", "give a share of users")
    top = np.argsort(s_arr, kind="mergesort")[::-1][: int(y_arr.size * k)]
    treated = t_arr[top] == 1
    if not treated.any() or treated.all():
        return float("nan")
    return float(y_arr[top][treated].mean() - y_arr[top][~treated].mean())


# --- the treatment flag ---------------------------------------------------------------------------


def treatment_flags(values: Any, control: Any = None, *, where: str = "treatment") -> np.ndarray:
    """``int8 [n]`` 1 = treated, 0 = control, from a treatment column of any type.

    Args:
        values: the column (``[n]``).
        control: the value that marks control users (compared as text, so ``0`` matches ``"0"``
            and ``0.0``). None: the column must already be 0/1 (0 = control).

    Raises InputError if a value is missing, if ``control`` never occurs, or if every user is in
    one arm.
    """
    array = as_1d(where, "treatment column", values)
    if control is None:
        flags = as_binary(where, "treatment column", array)
    else:
        text = np.asarray([_as_text(v) for v in array.tolist()], dtype=object)
        if any(v is None for v in text):
            raise fail(where, "the treatment column has missing values", "fill or drop them")
        flags = (text != _as_text(control)).astype(np.int8)
        if flags.all():
            shown = sorted({str(v) for v in text})[:5]
            raise fail(
                where,
                f"control value {control!r} does not occur (values: {shown})",
                "give --control as one of the column's values",
            )
    if flags.all() or not flags.any():
        raise fail(
            where,
            f"every user is in one arm ({int(flags.sum())} treated of {flags.size})",
            "an uplift evaluation needs treated and control users (a randomized holdout)",
        )
    return flags


def _as_text(value: Any) -> str | None:
    """A value as comparable text: 0, 0.0 and "0" are the same; NaN/None are missing."""
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, bool | np.bool_):
        return str(int(value))
    return str(value).strip()


# --- the evaluation -------------------------------------------------------------------------------


@dataclass(frozen=True)
class UpliftScores:
    """One model's uplift metrics in one pool.

    Attributes:
        qini_auc, uplift_auc: normalized areas (0 random, 1 perfect; NaN if undefined).
        uplift_at_k: budget share -> treated minus control conversion rate among the top users.
        true_incremental: budget share -> ``sum(y1 - y0)`` over the top ``int(k n)`` users
            (synthetic worlds only, else None): conversions the ad truly caused among them.
        expected_incremental: the same with ``sum(p1 - p0)`` (free of outcome noise).
    """

    qini_auc: float
    uplift_auc: float
    uplift_at_k: dict[float, float]
    true_incremental: dict[float, int] | None = None
    expected_incremental: dict[float, float] | None = None

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(
            {
                "qini_auc": self.qini_auc,
                "uplift_auc": self.uplift_auc,
                "uplift_at_k": {f"{k:g}": v for k, v in self.uplift_at_k.items()},
                "true_incremental_at_k": None
                if self.true_incremental is None
                else {f"{k:g}": v for k, v in self.true_incremental.items()},
                "expected_incremental_at_k": None
                if self.expected_incremental is None
                else {f"{k:g}": v for k, v in self.expected_incremental.items()},
            }
        )


@dataclass(frozen=True)
class UpliftEvaluation:
    """Uplift metrics of every model, per pool (:func:`evaluate_uplift`).

    Attributes:
        budgets: shares of the pool's users for uplift@k and the true counts.
        n: users per pool; n_treated, n_control: per pool.
        scores: ``[pool][model]`` -> :class:`UpliftScores`.
        curves: ``[pool][model]`` -> Qini curve ``(x share of users, q incremental conversions)``
            on at most 201 points (for plots).
        notes: remarks in plain words.
    """

    budgets: tuple[float, ...]
    n: dict[str, int]
    n_treated: dict[str, int]
    n_control: dict[str, int]
    scores: dict[str, dict[str, UpliftScores]]
    curves: dict[str, dict[str, tuple[list[float], list[float]]]] = field(repr=False)
    notes: tuple[str, ...] = ()

    @property
    def models(self) -> tuple[str, ...]:
        return tuple(self.scores["all"])

    def report_block(self) -> dict[str, Any]:
        """``report.json``'s ``uplift``: ``{model: {qini_auc, uplift_auc, uplift_at_k, ...,
        "pools": {pool: {...}}}}`` (the top level is pool ``all``)."""
        out: dict[str, Any] = {}
        for model, main in self.scores["all"].items():
            entry = main.to_dict()
            entry["pools"] = {
                pool: by_model[model].to_dict()
                for pool, by_model in self.scores.items()
                if pool != "all" and model in by_model
            }
            out[model] = entry
        return out

    def to_dict(self) -> dict[str, Any]:
        return to_jsonable(
            {
                "budgets": list(self.budgets),
                "n": self.n,
                "n_treated": self.n_treated,
                "n_control": self.n_control,
                "models": self.report_block(),
                "notes": list(self.notes),
            }
        )


def _curve_points(
    x: np.ndarray, values: np.ndarray, n: int, points: int = 201
) -> tuple[list[float], list[float]]:
    """The curve at ``points`` evenly spaced shares of users (step interpolation)."""
    grid = np.linspace(0.0, float(n), points)
    at = np.interp(grid, x, values)
    return (grid / max(n, 1)).round(6).tolist(), at.round(6).tolist()


def evaluate_uplift(
    label: Any,
    treatment: Any,
    scores: Mapping[str, Any],
    *,
    existing: Any = None,
    y0: Any = None,
    y1: Any = None,
    p0: Any = None,
    p1: Any = None,
    budgets: Sequence[float] = (0.05, 0.1, 0.2, 0.3),
) -> UpliftEvaluation:
    """Qini and uplift areas, uplift@k and (with potential outcomes) true incremental counts.

    Args:
        label: ``[n]`` observed 0/1 outcomes; treatment: ``[n]`` 0/1 (1 shown the ad).
        scores: model name -> ``[n]`` scores, higher = target first (a predicted uplift or a
            predicted conversion probability).
        existing: ``[n]`` 0/1 existing-customer flag; adds pool ``prospecting`` (new users).
        y0, y1: ``[n]`` potential outcomes; p0, p1: true probabilities (synthetic worlds).
        budgets: shares in (0, 1) for uplift@k and the true counts.
    """
    where = "evaluate_uplift"
    y = as_binary(where, "label", label).astype(np.float64)
    n = y.shape[0]
    t = as_binary(where, "treatment", treatment, n).astype(np.float64)
    if not isinstance(scores, Mapping) or not scores:
        raise fail(where, "no scores given", "pass {model name: scores}")
    model_scores = {m: as_1d(where, f"scores[{m!r}]", s, n).astype(np.float64)
                    for m, s in scores.items()}  # fmt: skip
    for share in budgets:
        if not 0 < float(share) < 1:
            raise fail(where, f"budget {share!r} is not in (0, 1)", "give shares of users")
    truth = {
        name: None if v is None else as_1d(where, name, v, n).astype(np.float64)
        for name, v in (("y0", y0), ("y1", y1), ("p0", p0), ("p1", p1))
    }
    pools = {"all": np.ones(n, dtype=bool)}
    if existing is not None:
        pools["prospecting"] = as_binary(where, "existing", existing, n) == 0
    out: dict[str, dict[str, UpliftScores]] = {}
    curves: dict[str, dict[str, tuple[list[float], list[float]]]] = {}
    sizes, treated_n, control_n = {}, {}, {}
    notes = []
    for pool, mask in pools.items():
        y_p, t_p = y[mask], t[mask]
        sizes[pool], treated_n[pool] = int(mask.sum()), int(t_p.sum())
        control_n[pool] = sizes[pool] - treated_n[pool]
        if treated_n[pool] == 0 or control_n[pool] == 0:
            notes.append(f"pool {pool!r} has no treated or no control user: no uplift metrics")
            continue
        out[pool], curves[pool] = {}, {}
        for model, score in model_scores.items():
            s_p = score[mask]
            order = np.argsort(s_p, kind="mergesort")[::-1]
            true_inc = exp_inc = None
            if truth["y0"] is not None and truth["y1"] is not None:
                gain = (truth["y1"] - truth["y0"])[mask][order]
                true_inc = {float(k): int(gain[: int(k * sizes[pool])].sum()) for k in budgets}
            if truth["p0"] is not None and truth["p1"] is not None:
                gain = (truth["p1"] - truth["p0"])[mask][order]
                exp_inc = {float(k): float(gain[: int(k * sizes[pool])].sum()) for k in budgets}
            out[pool][model] = UpliftScores(
                qini_auc=qini_auc_score(y_p, s_p, t_p),
                uplift_auc=uplift_auc_score(y_p, s_p, t_p),
                uplift_at_k={float(k): uplift_at_k(y_p, s_p, t_p, float(k)) for k in budgets},
                true_incremental=true_inc,
                expected_incremental=exp_inc,
            )
            curves[pool][model] = _curve_points(*qini_curve(y_p, s_p, t_p), sizes[pool])
    if "all" not in out:
        raise fail(where, "no treated or no control user", "an uplift evaluation needs both arms")
    return UpliftEvaluation(
        budgets=tuple(float(k) for k in budgets),
        n=sizes,
        n_treated=treated_n,
        n_control=control_n,
        scores=out,
        curves=curves,
        notes=tuple(notes),
    )


def qini_difference(
    label: Any,
    treatment: Any,
    score_a: Any,
    score_b: Any,
    *,
    n_bootstrap: int = 200,
    seed: int = 0,
) -> tuple[float, float, float]:
    """Qini AUC of ``a`` minus that of ``b``, with a paired bootstrap 95% percentile interval.

    Users are resampled with replacement within each arm (the arms' sizes were fixed by the
    randomization); both scores are evaluated on every resample. Returns ``(point, low, high)``.
    """
    y, s_a, t = _inputs("qini_difference", label, score_a, treatment)
    s_b = as_1d("qini_difference", "score_b", score_b, y.size).astype(np.float64)
    n_bootstrap = check_positive_int("qini_difference", "n_bootstrap", n_bootstrap, minimum=1)
    point = qini_auc_score(y, s_a, t) - qini_auc_score(y, s_b, t)
    rng = np.random.default_rng(np.random.SeedSequence([seed, 18]))
    arms = [np.flatnonzero(t == 1), np.flatnonzero(t == 0)]
    draws = np.empty(n_bootstrap)
    for b in range(n_bootstrap):
        idx = np.concatenate([rng.choice(arm, size=arm.size, replace=True) for arm in arms])
        draws[b] = qini_auc_score(y[idx], s_a[idx], t[idx]) - qini_auc_score(
            y[idx], s_b[idx], t[idx]
        )
    low, high = np.nanpercentile(draws, [2.5, 97.5])
    return float(point), float(low), float(high)
