"""Serving without the other party: a local model on the e-commerce party's own features.

The federated model needs the social party's embedding for every user it scores, so it cannot
score a user the social platform does not know, nor anyone while the social party is down. The
**local serving model** is the e-commerce party's answer: a model on its own features only,
*distilled* from the federated model.

Method (the simplest sound one, docs/evaluation.md "Campaign view"): the tower and head of the
matched ``ecommerce_only`` reference (same architecture blocks, encoder, seed, optimiser, epochs
and batch order, :func:`fedads.models.build_model`), trained with binary cross-entropy on **soft
targets**: the federated model's probabilities of the aligned *training* users instead of their
0/1 labels (Hinton-style distillation at temperature 1; minimising BCE against a probability is
minimising the KL divergence to it). Why this and not gradient boosting on the logit:

* the only difference from ``ecommerce_only`` is the target, so "local serving vs
  ``ecommerce_only``" on held-out aligned users measures what the distillation adds and nothing
  else;
* its output is a probability on the federated model's scale (it imitates it), so the two can be
  ranked together in one campaign budget (:mod:`fedads.eval.campaign`).

What it can keep: a model of the e-commerce features can learn at most ``E[federated score |
e-commerce features]``; the part of the federated gain carried by the social features is out of
its reach by construction. Soft targets carry more information per user than rare 0/1 labels,
which is the part it can keep.

Who sees what: the teacher's scores are the e-commerce party's own (it holds the top model; the
label party keeps them in its private output, :data:`fedads.federation.SCORE_TRAIN_KEY`); the
student reads e-commerce features and those scores only, never held-out labels or scores and
never a synthetic world's truth table. Training runs wherever the e-commerce table is (here: the
experimenter's process, which reads only the e-commerce side's inputs).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from fedads._progress import SILENT, Progress
from fedads._validation import fail
from fedads.models import FeatureEncoder, build_model, predict_local, train_local
from fedads.tables import PartyTable

LOCAL_SERVING = "local_serving"
"""Model name of the local serving model in evaluations and reports."""
_WHERE = "local serving model"


@dataclass
class LocalServingModel:
    """A fitted e-commerce-only model that scores any e-commerce user, no social party needed.

    Attributes:
        encoder: the e-commerce feature encoder, fitted on the distillation users.
        model: the e-commerce tower and head (``ecommerce_only`` architecture).
        numeric_columns, categorical_columns: the e-commerce feature columns it reads.
        n_distilled: users it was distilled on (aligned training users).
        n_labelled: unaligned training users it was fitted on with their labels (0: none).
    """

    encoder: FeatureEncoder = field(repr=False)
    model: nn.Module = field(repr=False)
    numeric_columns: tuple[str, ...]
    categorical_columns: tuple[str, ...]
    n_distilled: int
    n_labelled: int = 0

    def predict_proba(self, ecommerce: PartyTable, rows: np.ndarray | None = None) -> np.ndarray:
        """Conversion probabilities ``float64 [len(rows)]`` (all rows when ``rows`` is None).

        Reads only ``ecommerce``'s feature columns: a user the social platform never saw is
        scored like any other.
        """
        if ecommerce.party != "ecommerce" or (
            tuple(ecommerce.numeric_columns),
            tuple(ecommerce.categorical_columns),
        ) != (self.numeric_columns, self.categorical_columns):
            raise fail(
                _WHERE,
                f"the table ({ecommerce.party}, numeric {list(ecommerce.numeric_columns)}, "
                f"categorical {list(ecommerce.categorical_columns)}) is not the e-commerce "
                f"table it was trained on (numeric {list(self.numeric_columns)}, categorical "
                f"{list(self.categorical_columns)})",
                "pass an e-commerce table with the same feature columns",
            )
        rows = np.arange(ecommerce.n_rows) if rows is None else np.asarray(rows, np.int64)
        inputs = {"ecommerce": self.encoder.transform(*_matrices(ecommerce, rows))}
        return predict_local(self.model, inputs, np.arange(rows.size)).astype(np.float64)


def fit_local_serving(
    ecommerce: PartyTable,
    rows: np.ndarray,
    teacher: np.ndarray,
    protocol: object,
    *,
    label_rows: np.ndarray | None = None,
    progress: Progress = SILENT,
) -> LocalServingModel:
    """Distil the federated model into an e-commerce-only model.

    Args:
        ecommerce: the e-commerce party's table.
        rows: ``int64 [n]`` its rows of the aligned training users (the federated model's
            ``train_positions`` mapped through the aligned e-commerce rows).
        teacher: ``[n]`` the federated model's probabilities of those users (the label party's
            own private scores), in ``rows`` order.
        protocol: the run's ``ProtocolConfig`` (architecture, seed, optimiser, epochs, batch
            order: those of ``ecommerce_only``).
        label_rows: optional ``int64 [m]`` more e-commerce rows fitted on their own 0/1 labels
            (the training users outside the intersection, which the teacher cannot score);
            never held-out rows. ``None``: the aligned training users only.
    """
    rows = np.asarray(rows, dtype=np.int64)
    teacher = np.asarray(teacher, dtype=np.float64)
    if rows.ndim != 1 or teacher.shape != rows.shape or rows.size < 2:
        raise fail(
            _WHERE,
            f"rows {rows.shape} and teacher scores {teacher.shape} do not match (or < 2 users)",
            "pass one teacher probability per distillation row",
        )
    if not (np.isfinite(teacher).all() and (teacher >= 0).all() and (teacher <= 1).all()):
        raise fail(
            _WHERE,
            "teacher scores are missing or outside [0, 1]",
            "run the federation with score_train=True and pass values['train_scores']",
        )
    targets = teacher
    if label_rows is not None:
        label_rows = np.asarray(label_rows, dtype=np.int64)
        if np.intersect1d(label_rows, rows).size:
            raise fail(_WHERE, "label_rows repeat distillation rows", "pass disjoint rows")
        # Soft targets where the teacher scored, the party's own labels elsewhere.
        targets = np.concatenate([teacher, ecommerce.labels(label_rows).astype(np.float64)])
        rows = np.concatenate([rows, label_rows])
    numeric, categorical = _matrices(ecommerce, rows)
    local = np.arange(rows.size)
    encoder = FeatureEncoder().fit(numeric, categorical, local)
    inputs = {"ecommerce": encoder.transform(numeric, categorical)}
    model = build_model(
        "ecommerce_only",
        {"ecommerce": encoder.spec},
        protocol.model,
        protocol.seed,  # type: ignore[attr-defined]
    )
    progress(
        f"distilling the local serving model on {teacher.size} aligned training users"
        + ("" if label_rows is None else f" and {label_rows.size} labelled unaligned users")
    )
    # BCE against the teacher's probabilities: the labels are soft targets in [0, 1].
    train_local(model, inputs, torch.from_numpy(targets.astype(np.float32)), local, protocol)
    return LocalServingModel(
        encoder=encoder,
        model=model,
        numeric_columns=tuple(ecommerce.numeric_columns),
        categorical_columns=tuple(ecommerce.categorical_columns),
        n_distilled=int(teacher.size),
        n_labelled=0 if label_rows is None else int(label_rows.size),
    )


def _matrices(table: PartyTable, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(numeric [n, n_num], categorical [n, n_cat])`` of ``rows``, empty blocks allowed."""
    numeric = (
        table.numeric_matrix(rows)
        if table.numeric_columns
        else np.zeros((rows.size, 0), np.float32)
    )
    categorical = (
        table.categorical_matrix(rows)
        if table.categorical_columns
        else np.zeros((rows.size, 0), dtype=object)
    )
    return numeric, categorical
