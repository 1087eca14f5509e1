"""Campaign-level evaluation: every held-out e-commerce user, aligned or not, in one budget.

The aligned-only view (:func:`fedads.eval.evaluate` on held-out *aligned* users) measures the
protocol. An advertiser buys a campaign over all its users, so this view holds out e-commerce
users by the same split rule in both strata:

* aligned users: the federated run's own held-out positions (unchanged);
* users not on the social platform: ``round(test_share * n)`` of them, drawn with the same rule
  as :func:`fedads.federation.split_positions` (a seeded permutation, ``split_seed``) over those
  rows in table order.

The federated *system* scores aligned held-out users with the joint model and the others with
the local serving model (:mod:`fedads.serving`); both are probabilities on the same scale, so one
budget ranks them together. It is compared with an e-commerce-only model trained on every
e-commerce user outside this held-out population.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from fedads._validation import check_in_range, fail
from fedads.eval._json import to_jsonable
from fedads.eval.data import POOLS
from fedads.eval.evaluate import Evaluation
from fedads.eval.lift import LiftResult
from fedads.eval.metrics import auc

CAMPAIGN_MODEL = "federated"
"""The federated system in the campaign evaluation: joint scores for aligned users, the local
serving model's for the others."""


@dataclass(frozen=True)
class CampaignSplit:
    """The campaign's held-out population.

    Attributes:
        test_rows: ``int64 [n_test]`` e-commerce rows held out: the aligned ones first (in the
            federated run's held-out order), then the unaligned ones (table order).
        aligned: ``bool [n_test]`` True for users in the PSI intersection.
        train_rows: ``int64`` every other e-commerce row (sorted): what an e-commerce-only model
            of the whole campaign may train on.
    """

    test_rows: np.ndarray
    aligned: np.ndarray
    train_rows: np.ndarray

    @property
    def n_aligned(self) -> int:
        return int(self.aligned.sum())


def campaign_split(
    n_ecommerce: int,
    aligned_rows: np.ndarray,
    test_positions: np.ndarray,
    test_share: float,
    seed: int,
) -> CampaignSplit:
    """Hold out e-commerce users by the federated split rule, in both strata.

    Args:
        n_ecommerce: rows of the e-commerce table.
        aligned_rows: ``int64 [n_aligned]`` its rows in the aligned order.
        test_positions: aligned positions held out by the federated run.
        test_share, seed: the run's ``FederationSettings.test_share`` and ``split_seed``.
    """
    where = "campaign_split"
    check_in_range(where, "test_share", test_share, 0.0, 1.0, low_inclusive=False)
    aligned_rows = np.asarray(aligned_rows, dtype=np.int64)
    keep = np.ones(n_ecommerce, dtype=bool)
    keep[aligned_rows] = False
    if keep.sum() != n_ecommerce - aligned_rows.size:
        raise fail(where, "aligned rows repeat or exceed the table", "pass one PSI result's rows")
    # split_positions' rule (seeded permutation, round(test_share * n) first positions held
    # out), without its "at least one each side" clamp: a stratum may be empty. The same
    # function tells the label party which unaligned users it may train on.
    from fedads.protocol.runtime import split_unaligned

    _, unaligned_test = split_unaligned(n_ecommerce, aligned_rows, test_share, seed)
    aligned_test = aligned_rows[np.asarray(test_positions, dtype=np.int64)]
    test_rows = np.concatenate([aligned_test, unaligned_test]).astype(np.int64)
    is_aligned = np.zeros(test_rows.size, dtype=bool)
    is_aligned[: aligned_test.size] = True
    held = np.zeros(n_ecommerce, dtype=bool)
    held[test_rows] = True
    return CampaignSplit(test_rows, is_aligned, np.flatnonzero(~held).astype(np.int64))


def combine_scores(aligned: np.ndarray, joint: np.ndarray, local: np.ndarray) -> np.ndarray:
    """``float64 [n]``: ``joint`` where ``aligned``, ``local`` elsewhere.

    ``joint`` has one score per aligned user (in order); ``local`` one per user.
    """
    aligned = np.asarray(aligned, dtype=bool)
    out = np.asarray(local, dtype=np.float64).copy()
    joint = np.asarray(joint, dtype=np.float64)
    if joint.size != int(aligned.sum()) or out.size != aligned.size:
        raise fail(
            "combine_scores",
            f"{joint.size} joint scores for {int(aligned.sum())} aligned users, "
            f"{out.size} local scores for {aligned.size} users",
            "pass the joint model's scores of the aligned users and local scores of all",
        )
    out[aligned] = joint
    return out


def campaign_block(
    evaluation: Evaluation,
    split: CampaignSplit,
    *,
    baseline: str,
    notes: tuple[str, ...] = (),
) -> dict[str, Any]:
    """``report.json``'s ``campaign`` block from the campaign :class:`Evaluation`.

    ``lift.<pool>``: the federated system over ``baseline`` at the headline budget (``point``,
    ``ci95`` paired bootstrap, counts; ``expected`` / ``incremental`` on synthetic worlds);
    ``lift_vs_<model>.<pool>`` for the other baselines; ``models``: AUC / log loss of each
    scorer over the whole population; ``auc_by_stratum``: AUC of each scorer among the aligned
    and among the unaligned held-out users; ``selected.<pool>``: new-customer conversions of
    each scorer's selection at the headline budget.
    """
    lift: dict[str, Any] = {}
    others: dict[str, dict[str, Any]] = {}
    for row in evaluation.lifts:
        if not math.isclose(row.budget, evaluation.headline_budget) or row.kind != "targeting":
            continue
        entry = _entry(row)
        for kind in ("incremental", "expected", "expected_incremental"):
            extra = evaluation.lift(row.pool, baseline=row.baseline, kind=kind)
            if extra is not None:
                entry[kind] = _entry(extra)
        if row.baseline == baseline:
            lift[row.pool] = entry
        else:
            others.setdefault(f"lift_vs_{row.baseline}", {})[row.pool] = entry
    models = {
        name: {
            "auc": segments["overall"].auc,
            "logloss": segments["overall"].logloss,
            "auc_new": segments["new"].auc,
        }
        for name, segments in evaluation.metrics.items()
    }
    data = evaluation.data
    by_stratum: dict[str, dict[str, float]] = {}
    for stratum, mask in (("aligned", split.aligned), ("unaligned", ~split.aligned)):
        label = data.label[mask]
        by_stratum[stratum] = {
            m: auc(label, data.scores[m][mask]) if 0 < label.sum() < label.size else math.nan
            for m in evaluation.models
        }
    selected = {}
    for pool in POOLS:
        row = evaluation.targeting_row(CAMPAIGN_MODEL, pool)
        selected[pool] = {
            "budget_users": row.k,
            "new_customer_conversions": {
                m: evaluation.targeting_row(m, pool).new_customer_conversions
                for m in evaluation.models
            },
        }
    return to_jsonable(
        {
            "test_users": int(split.test_rows.size),
            "aligned_test_users": split.n_aligned,
            "unaligned_test_users": int(split.test_rows.size - split.n_aligned),
            "train_users": int(split.train_rows.size),
            "model": CAMPAIGN_MODEL,
            "serving": {"aligned": "federated (joint model)", "unaligned": "local_serving"},
            "baseline": baseline,
            "budget": evaluation.headline_budget,
            "budget_users": evaluation.headline_k,
            "n_bootstrap": evaluation.n_bootstrap,
            "lift": lift,
            **others,
            "models": models,
            "auc_by_stratum": by_stratum,
            "selected": selected,
            "summary": evaluation.data.summary(),
            "notes": [*notes, *evaluation.notes],
        }
    )


def _entry(row: LiftResult) -> dict[str, Any]:
    return {
        "point": row.point,
        "ci95": [row.ci_low, row.ci_high],
        "model_new_customer_conversions": row.model_count,
        "baseline_new_customer_conversions": row.baseline_count,
        "share_positive": row.share_positive,
        "n_bootstrap": row.n_bootstrap,
    }
