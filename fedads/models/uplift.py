"""Uplift models on a randomized campaign (docs/evaluation.md, "Uplift").

- :func:`class_transformed_label`: ``Z = Y T + (1 - Y)(1 - T)``. With a randomized treatment
  shown to half the users, ``P(Z=1 | x) = (1 + uplift(x)) / 2``, so any classifier of Z ranks
  users by uplift. It is a 0/1 label, so the label party can train the **federated** model on Z
  through the unchanged protocol (``uplift_federated`` in :mod:`fedads.experiment`): it computes
  Z from its own treatment flag and labels; neither the flag nor Z leaves it, only gradients do,
  as for any label (docs/threat-model.md).
- :func:`two_model_uplift`: the non-federated baseline on the e-commerce party's own features
  (``uplift_ecommerce``): gradient boosting of Y among treated users minus among control users.

With unequal arms (share shown ``pi`` != 0.5), ``P(Z=1 | x) = (1 - pi) + pi p1(x) -
(1 - pi) p0(x)`` leans towards the response ``p1`` (at ``pi = 0.8`` it ranks by
``p1 - p0 / 4``); a 0/1 label cannot be reweighted through the protocol, so the experiment
notes it in the report and the class transformation is only unbiased with a 50 % holdout. The
two-model baseline has no such restriction.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
from sklearn.ensemble import HistGradientBoostingClassifier
from threadpoolctl import threadpool_limits

from fedads._validation import fail
from fedads.eval.uplift import treatment_flags
from fedads.models.baselines import _gbdt_design
from fedads.tables import PartyTable

UPLIFT_MODELS: tuple[str, ...] = ("uplift_federated", "uplift_ecommerce")
"""Model names of the uplift models in reports: the federated class-transformation model and
the e-commerce-only two-model baseline."""


def class_transformed_label(label: np.ndarray, treatment: np.ndarray) -> np.ndarray:
    """``Z = Y T + (1 - Y)(1 - T)``, ``int8 [n]``: 1 for treated converters and control
    non-converters. ``label`` and ``treatment``: ``[n]`` 0/1."""
    y = np.asarray(label).astype(np.int8)
    t = np.asarray(treatment).astype(np.int8)
    if y.shape != t.shape:
        raise fail("class_transformed_label", "label and treatment differ in length",
                   "give one treatment flag per label")  # fmt: skip
    return (y * t + (1 - y) * (1 - t)).astype(np.int8)


def uplift_from_class_transformation(p_z: np.ndarray) -> np.ndarray:
    """``2 P(Z=1) - 1``: the uplift estimate of a class-transformation model, ``[n]``."""
    return 2.0 * np.asarray(p_z, dtype=np.float64) - 1.0


def _gbdt(seed: int) -> HistGradientBoostingClassifier:
    # Small, fixed settings: a baseline that learns the types, not a tuned model.
    return HistGradientBoostingClassifier(
        max_iter=60, learning_rate=0.1, max_depth=3, random_state=seed
    )


def two_model_uplift(
    table: PartyTable,
    train_rows: np.ndarray,
    test_rows: np.ndarray,
    label: np.ndarray,
    treatment: np.ndarray,
    *,
    seed: int = 0,
) -> np.ndarray:
    """Two-model uplift on one party's features: ``P(Y=1 | x, T=1) - P(Y=1 | x, T=0)``.

    Args:
        table: the label party's table (features; its existing flag is added when declared).
        train_rows, test_rows: ``int64`` row positions in ``table``.
        label, treatment: ``[len(train_rows)]`` 0/1 outcomes and flags of the training rows.
        seed: gradient-boosting seed.

    Returns:
        ``float64 [len(test_rows)]`` predicted uplift (a difference of probabilities).
    """
    rows = np.concatenate([train_rows, test_rows])
    fit = np.arange(train_rows.size)
    x, mask = _gbdt_design(table, rows, fit)
    if table.existing_column is not None:
        x = np.c_[x, table.existing_flags(rows)]
        mask = np.r_[mask, False]
    x_train, x_test = x[: train_rows.size], x[train_rows.size :]
    y = np.asarray(label).astype(np.int8)
    t = np.asarray(treatment).astype(np.int8)
    out = np.zeros(test_rows.size)
    with threadpool_limits(limits=1, user_api="openmp"):
        for arm, sign in ((1, 1.0), (0, -1.0)):
            chosen = t == arm
            if np.unique(y[chosen]).size < 2:
                raise fail("two_model_uplift", f"the {'treated' if arm else 'control'} "
                           "training users have one outcome only",
                           "use more users or a larger holdout")  # fmt: skip
            model = _gbdt(seed)
            model.set_params(categorical_features=mask)
            model.fit(x_train[chosen], y[chosen])
            out += sign * model.predict_proba(x_test)[:, 1]
    return out


def take_treatment(
    table: PartyTable,
    column: str,
    control: object = None,
    *,
    frame: pd.DataFrame | None = None,
) -> tuple[PartyTable, np.ndarray]:
    """Split the label party's treatment column off its table.

    Args:
        table: the e-commerce table (which may hold ``column`` as a feature, as
            :func:`fedads.tables.load_party_table` types every other column as one).
        column: the treatment column.
        control: the value marking control users (None: the column is 0/1, 0 = control).
        frame: where to read ``column`` instead (e.g. ``World.ecommerce``, whose party table
            leaves the flag out), matched to ``table`` by its key column.

    Returns:
        ``(table without the column, int8 [n_rows] flags, 1 = treated)``. The flag is never a
        feature of any model and never leaves the label party.
    """
    where = f"treatment column {column!r}"
    if column in (table.key, table.label_column, table.existing_column):
        raise fail(where, "is the key, label or existing-customer column",
                   "give the column that says who was shown the ad")  # fmt: skip
    if frame is not None and column in frame.columns and column not in table.frame.columns:
        key = table.key if table.key in frame.columns else "key"
        values = frame.set_index(key)[column].reindex(table.keys()).to_numpy()
    elif column in table.frame.columns:
        values = table.frame[column].to_numpy()
    else:
        raise fail(where, f"is not in the {table.party} table {table.source}",
                   "give a column of the e-commerce (label party's) table")  # fmt: skip
    flags = treatment_flags(values, control, where=where)
    if column not in table.frame.columns:
        return table, flags
    stripped = dataclasses.replace(
        table,
        frame=table.frame.drop(columns=[column]),
        numeric_columns=tuple(c for c in table.numeric_columns if c != column),
        categorical_columns=tuple(c for c in table.categorical_columns if c != column),
    )
    if not stripped.feature_columns:
        raise fail(where, "was the table's only feature", "add feature columns")
    return stripped, flags


def with_label(table: PartyTable, label: np.ndarray) -> PartyTable:
    """The label party's table with its label column replaced by ``label`` (``[n_rows]`` 0/1),
    e.g. the class-transformed target; its own computation, nothing crosses."""
    frame = table.frame.copy()
    frame[table.label_column] = np.asarray(label).astype(np.int8)
    return dataclasses.replace(table, frame=frame)
