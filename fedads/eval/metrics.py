"""Score-quality metrics: AUC, log loss, expected calibration error, predicted over observed.

Each metric takes plain arrays ``label`` (``[n]`` 0/1) and ``prob`` (``[n]`` predicted
probability in [0, 1]) and returns a float. A metric that is undefined on its input returns NaN;
:func:`metric_notes` and :func:`segment_metrics` say why (e.g. AUC on a segment with one class).
Formulas are in docs/evaluation.md.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field

import numpy as np
from sklearn.metrics import log_loss, roc_auc_score

from fedads._validation import check_choice, check_in_range, check_positive_int, fail
from fedads.eval.data import EvalData, as_1d, as_binary, as_probability

SEGMENT_NAMES: tuple[str, ...] = ("overall", "existing", "new")
"""Rows of the per-model metric table."""

DEFAULT_EPS = 1e-7
"""Log-loss clipping: probabilities are clipped to ``[eps, 1 - eps]`` before taking logs."""

DEFAULT_ECE_BINS = 10
DEFAULT_ECE_STRATEGY = "quantile"
"""Equal-mass bins by default: conversions are rare, so equal-width bins would put nearly every
user in the first bin."""

ECE_STRATEGIES = ("uniform", "quantile")


def _pair(
    where: str, label: np.ndarray, prob: np.ndarray, *, probability: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Validate a (label, prob) pair: 1-D, equal length, 0/1 labels, finite (probability) scores."""
    label = as_binary(where, "label", label)
    if probability:
        return label, as_probability(where, "prob", prob, label.shape[0])
    score = as_1d(where, "score", prob, label.shape[0])
    try:
        score = score.astype(np.float64)
    except (TypeError, ValueError):
        raise fail(where, "score is not numeric", "give real-valued scores") from None
    if not np.isfinite(score).all():
        raise fail(where, "score has non-finite values", "give a finite score for every user")
    return label, score


def auc(label: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (scikit-learn ``roc_auc_score``; ties count one half).

    Args:
        label: ``[n]`` 0/1.
        score: ``[n]`` any real score (higher = more likely to convert).

    Returns:
        AUC in [0, 1]; NaN when ``label`` has only one class (or is empty): the ROC curve needs
        both positives and negatives.
    """
    label, score = _pair("auc", label, score, probability=False)
    if label.size == 0 or np.unique(label).size < 2:
        return math.nan
    return float(roc_auc_score(label, score))


def logloss(label: np.ndarray, prob: np.ndarray, *, eps: float = DEFAULT_EPS) -> float:
    """Mean binary cross-entropy in nats, probabilities clipped to ``[eps, 1 - eps]``.

    ``-(1/n) sum_i [y_i log p_i + (1 - y_i) log(1 - p_i)]`` (scikit-learn ``log_loss`` on the
    clipped probabilities). Defined for one-class input; NaN only when empty.
    """
    label, prob = _pair("logloss", label, prob)
    if label.size == 0:
        return math.nan
    clipped = np.clip(prob, eps, 1.0 - eps)
    return float(log_loss(label, clipped, labels=[0, 1]))


def calibration_bins(
    prob: np.ndarray,
    *,
    n_bins: int = DEFAULT_ECE_BINS,
    strategy: str = DEFAULT_ECE_STRATEGY,
) -> np.ndarray:
    """Bin index in ``[0, n_bins)`` of each probability.

    ``uniform``: equal width, bin ``b = min(floor(p * n_bins), n_bins - 1)``, so bin ``b`` is
    ``[b/n_bins, (b+1)/n_bins)`` and p = 1 falls in the last bin.
    ``quantile``: equal mass, users sorted by p (stable) and cut into ``n_bins`` consecutive
    groups whose sizes differ by at most one (the first ``n mod n_bins`` groups are larger);
    users with equal p may fall in adjacent bins.
    """
    prob = np.asarray(prob, dtype=np.float64)
    n_bins = check_positive_int("calibration_bins", "n_bins", n_bins)
    check_choice("calibration_bins", "strategy", strategy, ECE_STRATEGIES)
    if strategy == "uniform":
        return np.minimum(np.floor(prob * n_bins).astype(np.int64), n_bins - 1)
    n = prob.size
    order = np.argsort(prob, kind="stable")
    sizes = np.full(n_bins, n // n_bins, dtype=np.int64)
    sizes[: n % n_bins] += 1
    bins = np.empty(n, dtype=np.int64)
    bins[order] = np.repeat(np.arange(n_bins, dtype=np.int64), sizes)
    return bins


def expected_calibration_error(
    label: np.ndarray,
    prob: np.ndarray,
    *,
    n_bins: int = DEFAULT_ECE_BINS,
    strategy: str = DEFAULT_ECE_STRATEGY,
) -> float:
    """ECE = ``sum_b (n_b / n) * |mean(y in b) - mean(p in b)|`` over non-empty bins.

    Bins from :func:`calibration_bins` (``quantile`` = equal mass, default; ``uniform`` = equal
    width). Returns NaN for empty input.
    """
    label, prob = _pair("expected_calibration_error", label, prob)
    n = label.size
    if n == 0:
        return math.nan
    bins = calibration_bins(prob, n_bins=n_bins, strategy=strategy)
    sum_y = np.bincount(bins, weights=label.astype(np.float64), minlength=n_bins)
    sum_p = np.bincount(bins, weights=prob, minlength=n_bins)
    # |mean_y - mean_p| * n_b / n == |sum_y - sum_p| / n; empty bins contribute 0.
    return float(np.abs(sum_y - sum_p).sum() / n)


def predicted_over_observed(label: np.ndarray, prob: np.ndarray) -> float:
    """``sum(p) / sum(y)``: 1 = calibrated in total, > 1 = over-predicts conversions.

    NaN when there is no observed conversion (``sum(y) = 0``).
    """
    label, prob = _pair("predicted_over_observed", label, prob)
    observed = float(label.sum())
    if observed == 0:
        return math.nan
    return float(prob.sum() / observed)


def metric_notes(label: np.ndarray) -> list[str]:
    """Why some metric is NaN on this label vector (empty list when all are defined)."""
    label = np.asarray(label)
    n = int(label.size)
    positives = int(label.sum()) if n else 0
    if n == 0:
        return ["segment is empty: every metric is undefined"]
    notes = []
    if positives in (0, n):
        kind = "positives" if positives == n else "negatives"
        notes.append(f"AUC undefined: only one class ({n} {kind}, {positives} of {n} converted)")
    if positives == 0:
        notes.append("predicted/observed undefined: no observed conversion")
    return notes


@dataclass(frozen=True)
class SegmentMetrics:
    """Metrics of one model on one segment.

    Attributes:
        n: users in the segment; positives: conversions among them.
        auc, logloss (nats), ece, pred_over_obs: NaN when undefined (see ``notes``).
    """

    n: int
    positives: int
    auc: float
    logloss: float
    ece: float
    pred_over_obs: float
    notes: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, object]:
        """Plain dict (floats may be NaN; the report writes them as null)."""
        out = asdict(self)
        out["notes"] = list(self.notes)
        return out


def compute_segment(
    label: np.ndarray,
    prob: np.ndarray,
    *,
    n_bins: int = DEFAULT_ECE_BINS,
    strategy: str = DEFAULT_ECE_STRATEGY,
    eps: float = DEFAULT_EPS,
) -> SegmentMetrics:
    """All four metrics on one (label, prob) pair; never raises on one-class or empty input."""
    label, prob = _pair("compute_segment", label, prob)
    return SegmentMetrics(
        n=int(label.size),
        positives=int(label.sum()),
        auc=auc(label, prob),
        logloss=logloss(label, prob, eps=eps),
        ece=expected_calibration_error(label, prob, n_bins=n_bins, strategy=strategy),
        pred_over_obs=predicted_over_observed(label, prob),
        notes=tuple(metric_notes(label)),
    )


def segment_metrics(
    data: EvalData,
    *,
    n_bins: int = DEFAULT_ECE_BINS,
    strategy: str = DEFAULT_ECE_STRATEGY,
    eps: float = DEFAULT_EPS,
) -> dict[str, dict[str, SegmentMetrics]]:
    """Metrics per model and segment: ``result[model][segment]``.

    Segments: ``overall`` (every held-out user), ``existing`` (``is_existing_customer == 1``),
    ``new`` (``== 0``).
    """
    check_in_range("segment_metrics", "eps", eps, 0.0, 0.5, low_inclusive=False)
    masks = {segment: data.segment_mask(segment) for segment in SEGMENT_NAMES}
    result: dict[str, dict[str, SegmentMetrics]] = {}
    for model, score in data.scores.items():
        result[model] = {
            segment: compute_segment(
                data.label[mask], score[mask], n_bins=n_bins, strategy=strategy, eps=eps
            )
            for segment, mask in masks.items()
        }
    return result
