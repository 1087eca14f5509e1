"""The uplift part of an experiment (``ExperimentConfig(treatment=...)``, issue #18).

Given the label party's treatment flag (a randomized campaign with a holdout), after the
federated run and the references: trains the uplift models (``uplift_ecommerce``: two-model
gradient boosting on the e-commerce party's features; ``uplift_federated``: the same federated
protocol with the class-transformed label, reusing the run's alignment and split) and evaluates
every model's scores, response models included, with :func:`fedads.eval.uplift.evaluate_uplift`.
The flag stays with the label party: it is neither a feature nor sent anywhere.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from fedads._progress import Progress
from fedads.eval.uplift import UpliftEvaluation, evaluate_uplift
from fedads.federation import FederatedRun, FederationSettings, run_federated
from fedads.models.uplift import (
    class_transformed_label,
    two_model_uplift,
    uplift_from_class_transformation,
    with_label,
)
from fedads.tables import PartyTable

if TYPE_CHECKING:
    from fedads.experiment import ExperimentConfig


def run_uplift(
    social: PartyTable,
    ecommerce: PartyTable,
    flags: np.ndarray,
    run: FederatedRun,
    scores: dict[str, np.ndarray],
    settings: FederationSettings,
    config: ExperimentConfig,
    *,
    truth: pd.DataFrame | None = None,
    progress: Progress | None = None,
) -> tuple[UpliftEvaluation, dict[str, np.ndarray]]:
    """Train the uplift models and evaluate every model's ranking on held-out aligned users.

    Args:
        flags: ``int8 [ecommerce.n_rows]`` treatment flags (1 shown the ad, 0 held out).
        run: the federated run (its aligned rows and split are reused).
        scores: held-out scores of the models already trained (response models).

    Returns:
        ``(evaluation, uplift scores by model name)``.
    """
    from fedads.experiment import _potential_outcomes

    train = np.asarray(run.values["train_positions"], dtype=np.int64)
    test = np.asarray(run.values["test_positions"], dtype=np.int64)
    rows_train, rows_test = run.ecommerce_rows[train], run.ecommerce_rows[test]
    labels = ecommerce.labels().astype(np.int8)
    seed = settings.protocol.seed
    say = progress or (lambda message: None)
    new: dict[str, np.ndarray] = {}
    say("uplift: two-model gradient boosting on the e-commerce features")
    new["uplift_ecommerce"] = two_model_uplift(
        ecommerce, rows_train, rows_test, labels[rows_train], flags[rows_train], seed=seed
    )
    notes = []
    if config.uplift_federated:
        share = float(flags[rows_train].mean())
        if abs(share - 0.5) > 0.05:
            notes.append(
                f"uplift_federated: {share:.0%} of training users were shown the ad; the class "
                "transformation ranks by uplift only with a 50 % holdout (it leans to P(buy))"
            )
        say("uplift: federated model on the class-transformed label (same protocol)")
        z_table = with_label(ecommerce, class_transformed_label(labels, flags))
        z_run = run_federated(
            social, z_table, settings, backend=config.backend, progress=progress or Progress(False),
            alignment=run,
        )  # fmt: skip
        if not np.array_equal(np.asarray(z_run.values["test_positions"]), test):
            raise RuntimeError("the uplift run held out other users than the response run")
        new["uplift_federated"] = uplift_from_class_transformation(z_run.values["scores"])
    keys = ecommerce.keys()[rows_test]
    y0, y1 = _potential_outcomes(truth, keys, ecommerce.key)
    p0, p1 = _potential_outcomes(truth, keys, ecommerce.key, columns=("p0", "p1"))
    evaluation = evaluate_uplift(
        labels[rows_test], flags[rows_test], {**scores, **new},
        existing=ecommerce.existing_flags(rows_test) if ecommerce.existing_column else None,
        y0=y0, y1=y1, p0=p0, p1=p1, budgets=tuple(sorted({*config.budgets, 0.3})),
    )  # fmt: skip
    if notes:
        evaluation = _with_notes(evaluation, notes)
    return evaluation, new


def _with_notes(evaluation: UpliftEvaluation, notes: list[str]) -> UpliftEvaluation:
    import dataclasses

    return dataclasses.replace(evaluation, notes=(*evaluation.notes, *notes))
