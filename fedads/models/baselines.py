"""Practitioner baselines: what each platform would build alone, on all of its own users.

The matched references of :func:`fedads.experiment.train_references` (``ecommerce_only``,
``social_only``) use the federated model's recipe on the aligned users only: a fair test of the
protocol, but not what an ad desk would deploy. These are the models a practitioner on each side
would train with its own data:

``ecommerce_gbdt``
    scikit-learn ``HistGradientBoostingClassifier`` on the e-commerce features, trained on
    **every e-commerce user except the held-out aligned users** (the users not on the social
    platform included), with early stopping on a validation split and a small grid search
    (:data:`GBDT_GRID`, picked by validation log loss).
``ecommerce_net``
    the e-commerce tower and head of the federated architecture (the blocks of
    ``ecommerce_only``) trained on the same rows and validation split, early-stopped on the
    validation loss (best epoch kept, at most :data:`NET_MAX_EPOCHS`).
``social_gbdt``
    the social side has no labels of its own. What a social ad platform is told in practice is
    the conversions of the users it shares with the advertiser (a conversion feedback / API
    integration); so this is the same gradient-boosting search on the **social** features of the
    **aligned training users** only, with their labels as reported by the e-commerce side. Held-
    out users' labels never reach it.

Validation: one seeded split of each training pool (:data:`VALID_SHARE` held aside). The
**strongest e-commerce-only baseline** (:attr:`PractitionerFit.strongest_ecommerce`) is picked
among the e-commerce practitioner models that ran by their validation AUC among new customers
(the prospecting pool is a ranking of new customers), on the shared e-commerce validation split:
never on the held-out users. The matched ``ecommerce_only`` reference is not a candidate: it
never saw that split's non-aligned users but did train on its aligned ones, so no unseen
validation set exists for it without retraining; it is a smaller-data version of
``ecommerce_net`` and is reported separately.
"""

from __future__ import annotations

import copy
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import log_loss, roc_auc_score
from sklearn.preprocessing import OrdinalEncoder
from threadpoolctl import threadpool_limits

from fedads._progress import SILENT, Progress
from fedads._validation import check_choice, check_in_range, check_positive_int, fail
from fedads.models.features import FeatureEncoder
from fedads.models.nets import ECOMMERCE, ModelConfig, build_model
from fedads.models.train import batch_loss, batch_plan, make_optimizer, predict_local
from fedads.tables import PartyTable

PRACTITIONER_MODELS: tuple[str, ...] = ("ecommerce_gbdt", "ecommerce_net", "social_gbdt")
"""Practitioner baselines, in report order."""

ECOMMERCE_PRACTITIONER: tuple[str, ...] = ("ecommerce_gbdt", "ecommerce_net")
"""Candidates for the strongest e-commerce-only baseline."""

VALID_SHARE = 0.2
"""Share of each training pool held aside for early stopping, the search and the pick."""

GBDT_GRID: tuple[dict[str, float | int], ...] = tuple(
    dict(learning_rate=lr, max_leaf_nodes=leaves, min_samples_leaf=leaf, l2_regularization=l2)
    for lr, leaves, leaf, l2 in (
        (0.1, 31, 20, 0.0),  # scikit-learn's defaults
        # shallower, slower, regularised: rare labels and a few strong features
        (0.05, 8, 200, 1.0),
        (0.05, 15, 100, 1.0),
        (0.05, 31, 50, 0.0),
    )
)
"""The small search of every gradient-boosting baseline; each is early-stopped (validation loss,
30 rounds without improvement, at most 1,000 rounds); the lowest validation log loss wins."""

GBDT_MAX_ITER = 1000
GBDT_PATIENCE = 30
NET_MAX_EPOCHS = 10
NET_PATIENCE = 2
_SPLIT_STREAM = 0xBA5E
_WHERE = "practitioner baselines"


@dataclass(frozen=True)
class BaselineFit:
    """One practitioner baseline.

    Attributes:
        name: model name (one of :data:`PRACTITIONER_MODELS`).
        scores: ``float64 [n_test]`` predicted conversion probabilities of the held-out users.
        n_fit, n_valid: rows it was fitted on / validated on; fit_positives: converters in the
            fitted rows.
        valid_auc_new: validation AUC among new customers (NaN if one class only);
            valid_logloss: validation log loss (nats).
        params: the chosen configuration (for gradient boosting, with ``n_iter``; for the
            network, ``epochs`` = best epoch); search: every configuration tried with its
            validation log loss.
    """

    name: str
    scores: np.ndarray = field(repr=False)
    n_fit: int
    n_valid: int
    fit_positives: int
    valid_auc_new: float
    valid_logloss: float
    params: dict[str, Any]
    search: tuple[dict[str, Any], ...] = ()

    def to_dict(self) -> dict[str, Any]:
        """Plain dict without the scores."""
        return {
            "n_fit": self.n_fit,
            "n_valid": self.n_valid,
            "fit_positives": self.fit_positives,
            "valid_auc_new": self.valid_auc_new,
            "valid_logloss": self.valid_logloss,
            "params": dict(self.params),
            "search": [dict(s) for s in self.search],
        }


@dataclass(frozen=True)
class PractitionerFit:
    """The practitioner baselines of one run.

    Attributes:
        fits: model name -> :class:`BaselineFit`.
        strongest_ecommerce: the e-commerce candidate with the highest validation AUC among new
            customers (None when no e-commerce candidate ran).
        seconds: wall time per model.
    """

    fits: dict[str, BaselineFit]
    strongest_ecommerce: str | None
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def scores(self) -> dict[str, np.ndarray]:
        """Model name -> ``[n_test]`` held-out probabilities."""
        return {name: fit.scores for name, fit in self.fits.items()}

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary (validation numbers, chosen settings, the pick)."""
        return {
            "models": {name: fit.to_dict() for name, fit in self.fits.items()},
            "strongest_ecommerce": self.strongest_ecommerce,
            "pick_criterion": "highest validation AUC among new customers (e-commerce "
            "validation split; never the held-out users)",
            "valid_share": VALID_SHARE,
            "seconds": {k: round(v, 2) for k, v in self.seconds.items()},
        }


# ------------------------------------------------------------------------------ helpers
def _split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded ``(fit, valid)`` positions of ``0..n-1`` (valid = VALID_SHARE, at least 1)."""
    if n < 10:
        raise fail(_WHERE, f"only {n} training rows", "give a larger table (10 rows or more)")
    order = np.random.default_rng([seed, _SPLIT_STREAM]).permutation(n)
    n_valid = max(1, int(round(VALID_SHARE * n)))
    return np.sort(order[n_valid:]), np.sort(order[:n_valid])


def _gbdt_design(
    table: PartyTable, rows: np.ndarray, fit: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """``(X float64 [len(rows), n_features], categorical mask)`` for gradient boosting.

    Numeric columns as they are (NaN = missing, handled natively); categorical columns
    ordinal-coded on the fitted rows (at most 250 levels, rarer ones merged; unseen -> NaN).
    """
    numeric = table.numeric_matrix(rows).astype(np.float64)
    parts, mask = [numeric], [False] * numeric.shape[1]
    if table.categorical_columns:
        categorical = table.categorical_matrix(rows)
        encoder = OrdinalEncoder(
            handle_unknown="use_encoded_value",
            unknown_value=np.nan,
            max_categories=250,
            dtype=np.float64,
        ).fit(categorical[fit])
        parts.append(encoder.transform(categorical))
        mask += [True] * categorical.shape[1]
    if not mask:
        raise fail(_WHERE, f"the {table.party} table has no feature", "give at least one feature")
    return np.hstack(parts), np.asarray(mask, dtype=bool)


def _auc_new(label: np.ndarray, score: np.ndarray, new: np.ndarray | None) -> float:
    y = label if new is None else label[new]
    p = score if new is None else score[new]
    if y.size == 0 or y.min() == y.max():
        return math.nan
    return float(roc_auc_score(y, p))


def _logloss(label: np.ndarray, score: np.ndarray) -> float:
    return float(log_loss(label, np.clip(score, 1e-7, 1 - 1e-7), labels=[0, 1]))


def fit_gbdt(
    name: str,
    x: np.ndarray,
    categorical: np.ndarray,
    label: np.ndarray,
    fit: np.ndarray,
    valid: np.ndarray,
    test: np.ndarray,
    *,
    new: np.ndarray | None = None,
    seed: int = 0,
    grid: Sequence[Mapping[str, float | int]] = GBDT_GRID,
) -> BaselineFit:
    """Early-stopped gradient boosting, the best of ``grid`` by validation log loss.

    Args:
        x: ``[n, d]`` features (rows indexed by ``fit``, ``valid``, ``test``).
        categorical: ``[d]`` bool, ordinal-coded categorical columns.
        label: ``[n]`` 0/1.
        fit, valid, test: int positions: fitted, validation (early stopping and search),
            scored rows.
        new: ``[n]`` bool, new customers (for the validation AUC among them), or None.
    """
    y = label.astype(np.int64)
    if y[fit].min() == y[fit].max() or y[valid].min() == y[valid].max():
        raise fail(
            f"{_WHERE} ({name})",
            "the fitted or validation rows have only one class",
            "give a table with conversions in both (more rows)",
        )
    best: tuple[float, HistGradientBoostingClassifier, dict[str, Any]] | None = None
    search = []
    for params in grid:
        model = HistGradientBoostingClassifier(
            **params,
            max_iter=GBDT_MAX_ITER,
            early_stopping=True,
            n_iter_no_change=GBDT_PATIENCE,
            scoring="loss",
            categorical_features=categorical if categorical.any() else None,
            random_state=seed,
        )
        model.fit(x[fit], y[fit], X_val=x[valid], y_val=y[valid])
        loss = _logloss(y[valid], model.predict_proba(x[valid])[:, 1])
        entry = {**params, "n_iter": int(model.n_iter_), "valid_logloss": loss}
        search.append(entry)
        if best is None or loss < best[0]:
            best = (loss, model, entry)
    assert best is not None
    loss, model, entry = best
    valid_score = model.predict_proba(x[valid])[:, 1]
    return BaselineFit(
        name=name,
        scores=model.predict_proba(x[test])[:, 1].astype(np.float64),
        n_fit=int(fit.size),
        n_valid=int(valid.size),
        fit_positives=int(y[fit].sum()),
        valid_auc_new=_auc_new(y[valid], valid_score, None if new is None else new[valid]),
        valid_logloss=loss,
        params=entry,
        search=tuple(search),
    )


def fit_net(
    name: str,
    table: PartyTable,
    rows: np.ndarray,
    label: np.ndarray,
    fit: np.ndarray,
    valid: np.ndarray,
    test: np.ndarray,
    *,
    new: np.ndarray | None,
    model_config: ModelConfig | None,
    batch_size: int,
    lr: float,
    optimizer: str,
    weight_decay: float,
    seed: int,
    max_epochs: int = NET_MAX_EPOCHS,
    patience: int = NET_PATIENCE,
) -> BaselineFit:
    """The e-commerce network (``ecommerce_only`` blocks) early-stopped on validation loss.

    Encoders are fitted on ``fit`` rows; the state of the epoch with the lowest validation loss
    is kept (training stops after ``patience`` epochs without improvement).
    """
    numeric = table.numeric_matrix(rows)
    categorical = table.categorical_matrix(rows)
    encoder = FeatureEncoder().fit(numeric, categorical, fit)
    inputs = {ECOMMERCE: encoder.transform(numeric, categorical)}
    model = build_model("ecommerce_only", {ECOMMERCE: encoder.spec}, model_config, seed)
    y = torch.from_numpy(label.astype(np.float32))
    opt = make_optimizer(model.parameters(), optimizer, lr, weight_decay)
    per_epoch = -(-fit.size // batch_size)
    plan = batch_plan(fit, batch_size, max_epochs, seed)
    y_valid = label[valid].astype(np.int64)
    best_loss, best_state, best_epoch, waited = math.inf, None, 0, 0
    losses = []
    for epoch in range(max_epochs):
        model.train()
        for batch in plan[epoch * per_epoch : (epoch + 1) * per_epoch]:
            index = torch.from_numpy(batch)
            chunk = {p: (num.index_select(0, index), cat.index_select(0, index))
                     for p, (num, cat) in inputs.items()}  # fmt: skip
            loss = batch_loss(model(chunk), y.index_select(0, index))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        valid_loss = _logloss(y_valid, predict_local(model, inputs, valid).astype(np.float64))
        losses.append(valid_loss)
        if valid_loss < best_loss - 1e-6:
            best_loss, best_epoch, waited = valid_loss, epoch + 1, 0
            best_state = copy.deepcopy(model.state_dict())
        else:
            waited += 1
            if waited >= patience:
                break
    assert best_state is not None
    model.load_state_dict(best_state)
    model.eval()
    valid_score = predict_local(model, inputs, valid).astype(np.float64)
    return BaselineFit(
        name=name,
        scores=predict_local(model, inputs, test).astype(np.float64),
        n_fit=int(fit.size),
        n_valid=int(valid.size),
        fit_positives=int(label[fit].sum()),
        valid_auc_new=_auc_new(y_valid, valid_score, None if new is None else new[valid]),
        valid_logloss=best_loss,
        params={"epochs": best_epoch, "batch_size": batch_size, "lr": lr,
                "valid_loss_by_epoch": losses},
        search=(),
    )  # fmt: skip


def train_practitioner_baselines(
    social: PartyTable,
    ecommerce: PartyTable,
    social_rows: np.ndarray,
    ecommerce_rows: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    kinds: Sequence[str] = PRACTITIONER_MODELS,
    *,
    seed: int = 0,
    model_config: ModelConfig | None = None,
    batch_size: int = 512,
    lr: float = 2e-3,
    optimizer: str = "adam",
    weight_decay: float = 0.0,
    grid: Sequence[Mapping[str, float | int]] = GBDT_GRID,
    max_epochs: int = NET_MAX_EPOCHS,
    progress: Progress = SILENT,
) -> PractitionerFit:
    """Train the practitioner baselines; score the held-out aligned users.

    Args:
        social, ecommerce: the two party tables (the e-commerce one has labels and the flag).
        social_rows, ecommerce_rows: ``int64 [n_aligned]`` each party's rows in the aligned
            order (one PSI result).
        train, test: aligned positions of the training and held-out users.
        kinds: which of :data:`PRACTITIONER_MODELS` to train.
        seed: seeds the validation splits, the boosting and the network.
        model_config, batch_size, lr, optimizer, weight_decay: the network's architecture and
            optimiser (the federated protocol's, so only data and early stopping differ).
        grid: the gradient-boosting search (default :data:`GBDT_GRID`).
        max_epochs: the network's epoch limit (early stopping usually ends it sooner).

    Returns:
        :class:`PractitionerFit`; ``scores[name]`` is ``float64 [len(test)]`` in ``test`` order.
    """
    # One OpenMP thread for scikit-learn (and torch's OpenMP pool): on a shared 2-core machine
    # the default threads spin against other processes (40k users: ~6 min instead of 30 s).
    with threadpool_limits(limits=1, user_api="openmp"):
        return _train(
            social, ecommerce, social_rows, ecommerce_rows, train, test, kinds, seed=seed,
            model_config=model_config, batch_size=batch_size, lr=lr, optimizer=optimizer,
            weight_decay=weight_decay, grid=grid, max_epochs=max_epochs, progress=progress,
        )  # fmt: skip


def _train(
    social: PartyTable,
    ecommerce: PartyTable,
    social_rows: np.ndarray,
    ecommerce_rows: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    kinds: Sequence[str],
    *,
    seed: int,
    model_config: ModelConfig | None,
    batch_size: int,
    lr: float,
    optimizer: str,
    weight_decay: float,
    grid: Sequence[Mapping[str, float | int]],
    max_epochs: int,
    progress: Progress,
) -> PractitionerFit:
    for kind in kinds:
        check_choice(_WHERE, "kind", kind, PRACTITIONER_MODELS)
    seed = check_positive_int(_WHERE, "seed", seed, minimum=0)
    max_epochs = check_positive_int(_WHERE, "max_epochs", max_epochs)
    if not grid:
        raise fail(_WHERE, "grid is empty", "give at least one setting (e.g. GBDT_GRID[:1])")
    batch_size = check_positive_int(_WHERE, "batch_size", batch_size)
    check_in_range(_WHERE, "lr", lr, 0.0, 10.0, low_inclusive=False)
    social_rows = np.asarray(social_rows, dtype=np.int64)
    ecommerce_rows = np.asarray(ecommerce_rows, dtype=np.int64)
    if social_rows.shape != ecommerce_rows.shape:
        raise fail(_WHERE, "aligned row counts differ", "pass one PSI result's rows")
    train = np.asarray(train, dtype=np.int64)
    test = np.asarray(test, dtype=np.int64)
    fits: dict[str, BaselineFit] = {}
    seconds: dict[str, float] = {}

    if any(k in kinds for k in ECOMMERCE_PRACTITIONER):
        # Every e-commerce row except the held-out aligned users: no held-out label is seen.
        held_out = ecommerce_rows[test]
        keep = np.ones(ecommerce.n_rows, dtype=bool)
        keep[held_out] = False
        pool = np.flatnonzero(keep)
        rows = np.concatenate([pool, held_out])  # local positions: pool first, then test
        label = ecommerce.labels(rows).astype(np.int64)
        new = ecommerce.existing_flags(rows) == 0
        fit, valid = _split(pool.size, seed)
        local_test = np.arange(pool.size, rows.size)
        if "ecommerce_gbdt" in kinds:
            clock = time.perf_counter()
            progress(f"practitioner baseline 'ecommerce_gbdt' ({fit.size} rows, {len(grid)} "
                     "settings, early stopping)")  # fmt: skip
            x, mask = _gbdt_design(ecommerce, rows, fit)
            fits["ecommerce_gbdt"] = fit_gbdt(
                "ecommerce_gbdt", x, mask, label, fit, valid, local_test, new=new, seed=seed,
                grid=grid,
            )  # fmt: skip
            seconds["ecommerce_gbdt"] = time.perf_counter() - clock
        if "ecommerce_net" in kinds:
            clock = time.perf_counter()
            progress(f"practitioner baseline 'ecommerce_net' ({fit.size} rows, early stopping)")
            fits["ecommerce_net"] = fit_net(
                "ecommerce_net", ecommerce, rows, label, fit, valid, local_test, new=new,
                model_config=model_config, batch_size=batch_size, lr=lr, optimizer=optimizer,
                weight_decay=weight_decay, seed=seed, max_epochs=max_epochs,
            )  # fmt: skip
            seconds["ecommerce_net"] = time.perf_counter() - clock

    if "social_gbdt" in kinds:
        # The social platform knows the conversions of the aligned training users only.
        rows = np.concatenate([social_rows[train], social_rows[test]])
        label = np.concatenate(
            [ecommerce.labels(ecommerce_rows[train]), np.zeros(test.size, np.float32)]
        ).astype(np.int64)  # held-out labels are never read: zeros stand in for them
        clock = time.perf_counter()
        fit, valid = _split(train.size, seed)
        progress(f"practitioner baseline 'social_gbdt' ({fit.size} aligned training users)")
        x, mask = _gbdt_design(social, rows, fit)
        fits["social_gbdt"] = fit_gbdt(
            "social_gbdt", x, mask, label, fit, valid, np.arange(train.size, rows.size), seed=seed,
            grid=grid,
        )  # fmt: skip
        seconds["social_gbdt"] = time.perf_counter() - clock

    return _pick(fits, seconds)


def _pick(fits: dict[str, BaselineFit], seconds: dict[str, float]) -> PractitionerFit:
    """The strongest e-commerce candidate by validation AUC among new customers."""
    candidates = [k for k in ECOMMERCE_PRACTITIONER if k in fits]
    strongest = None
    if candidates:
        # NaN AUC (one class in the validation split) ranks last.
        strongest = max(
            candidates,
            key=lambda k: (-math.inf if math.isnan(fits[k].valid_auc_new) else
                           fits[k].valid_auc_new),
        )  # fmt: skip
    ordered = {k: fits[k] for k in PRACTITIONER_MODELS if k in fits}
    return PractitionerFit(fits=ordered, strongest_ecommerce=strongest, seconds=seconds)


def practitioner_references(
    social: PartyTable,
    ecommerce: PartyTable,
    social_rows: np.ndarray,
    ecommerce_rows: np.ndarray,
    train: np.ndarray,
    test: np.ndarray,
    protocol: Any,
    references: Sequence[str],
    *,
    progress: Progress | None = None,
) -> PractitionerFit:
    """The experimenter's call: the practitioner models among ``references`` (maybe none).

    ``protocol`` (a ``ProtocolConfig``) gives the seed and the network's architecture and
    optimiser, so the practitioner network differs from ``ecommerce_only`` only by its data
    (all e-commerce users) and its early stopping.
    """
    kinds = tuple(k for k in PRACTITIONER_MODELS if k in references)
    if not kinds:
        return PractitionerFit(fits={}, strongest_ecommerce=None)
    return train_practitioner_baselines(
        social, ecommerce, social_rows, ecommerce_rows, train, test, kinds,
        seed=protocol.seed, model_config=protocol.model, batch_size=protocol.batch_size,
        lr=protocol.lr, optimizer=protocol.optimizer, weight_decay=protocol.weight_decay,
        progress=progress or SILENT,
    )  # fmt: skip
