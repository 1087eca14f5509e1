"""Plain-torch training for the centralized model and the one-party baselines.

The federated protocol (``fedads.protocol``) shares three things with this module so the runs are
comparable step for step: :func:`batch_plan` (the batch order), :func:`make_optimizer`
(per-parameter optimizers, so splitting the parameters across parties changes nothing) and
:func:`batch_loss` (mean binary cross-entropy over the batch, on logits).
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from fedads._progress import SILENT, Progress
from fedads._threads import compute_threads
from fedads._validation import (
    check_choice,
    check_in_range,
    check_positions,
    check_positive_int,
    fail,
)
from fedads.models.optim import Optimizer

OPTIMIZERS = ("adam", "adamw", "sgd")
_BATCH_STREAM = 0x0BA7C4  # separates the batch-order RNG stream from anything else seeded by `seed`

Inputs = Mapping[str, tuple[torch.Tensor, torch.Tensor]]
"""``{party: (numeric float32 [n, n_num], categorical int64 [n, n_cat])}`` over all aligned rows."""


@dataclass(frozen=True)
class TrainConfig:
    """How to train (shared by the local trainer and, via ``ProtocolConfig``, the protocol).

    Attributes:
        epochs: passes over the train rows (default 5).
        batch_size: rows per optimizer step (default 1024); an epoch's last batch may be smaller.
        lr: learning rate (default 2e-3).
        seed: seeds the model init (see ``fedads.models.nets``) and the batch order.
        optimizer: ``"adam"`` (default), ``"adamw"`` or ``"sgd"``; all are per-parameter, so
            the federated split of the parameters gives the same updates.
        weight_decay: L2 (``adam``/``sgd``) or decoupled (``adamw``) weight decay (default 0).
    """

    epochs: int = 5
    batch_size: int = 1024
    lr: float = 2e-3
    seed: int = 0
    optimizer: str = "adam"
    weight_decay: float = 0.0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> TrainConfig:
        check_training_fields(self, "TrainConfig")
        return self


def check_training_fields(config: Any, where: str) -> None:
    """Validate ``epochs``, ``batch_size``, ``lr``, ``seed``, ``optimizer``, ``weight_decay`` of
    ``config`` (a :class:`TrainConfig` or a ``ProtocolConfig``), naming ``where`` in errors."""
    check_positive_int(where, "epochs", config.epochs)
    check_positive_int(where, "batch_size", config.batch_size)
    check_in_range(where, "lr", config.lr, 0.0, 10.0, low_inclusive=False)
    check_positive_int(where, "seed", config.seed, minimum=0)
    check_choice(where, "optimizer", config.optimizer, OPTIMIZERS)
    check_in_range(where, "weight_decay", config.weight_decay, 0.0, 1.0)


@dataclass
class TrainingHistory:
    """What a training run reports, the same for local and federated runs.

    Attributes:
        mode: ``"local"``, ``"exact"`` or ``"efficient"``.
        batch_losses: training loss (mean BCE) of every optimizer step, in order. In a
            federated run, the losses the label party released: one per batch of at least
            ``PartyConfig.min_query_rows`` rows (default 256), else one row-weighted mean per
            run of consecutive smaller batches that reaches that many rows.
        batch_rows: rows behind each of those losses.
        epoch_losses: per epoch, the row-weighted mean of the losses recorded in it (NaN if
            none was released in that epoch).
        epoch_seconds: per epoch, wall time of the training steps (seconds; validation excluded).
        valid_losses: per epoch, mean BCE on the validation rows (empty without validation rows).
        bytes_by_epoch: per epoch, payload bytes per link ``"sender->receiver"`` sent during that
            epoch's training (federated runs; empty for local runs).
        setup_bytes: payload bytes per link spent on setup (federated runs).
    """

    mode: str
    batch_losses: list[float] = field(default_factory=list)
    batch_rows: list[int] = field(default_factory=list)
    epoch_losses: list[float] = field(default_factory=list)
    epoch_seconds: list[float] = field(default_factory=list)
    valid_losses: list[float] = field(default_factory=list)
    bytes_by_epoch: list[dict[str, int]] = field(default_factory=list)
    setup_bytes: dict[str, int] = field(default_factory=dict)

    def close_epoch(self, first_batch: int, seconds: float) -> None:
        """Append the epoch loss of batches ``first_batch:`` and the epoch time."""
        losses = np.asarray(self.batch_losses[first_batch:], dtype=np.float64)
        rows = np.asarray(self.batch_rows[first_batch:], dtype=np.float64)
        total = rows.sum()
        self.epoch_losses.append(float((losses * rows).sum() / total) if total else math.nan)
        self.epoch_seconds.append(float(seconds))

    def bytes_per_epoch(self) -> list[int]:
        """Total payload bytes (all links) per epoch."""
        return [int(sum(links.values())) for links in self.bytes_by_epoch]


def as_train_config(config: Any) -> TrainConfig:
    """A :class:`TrainConfig` from itself or from anything with a ``train_config()`` method."""
    if isinstance(config, TrainConfig):
        return config
    if hasattr(config, "train_config"):
        return config.train_config()
    raise fail(
        "train_local",
        f"config of type {type(config).__name__}",
        "pass a TrainConfig or a ProtocolConfig",
    )


def batch_plan(train_rows: np.ndarray, batch_size: int, epochs: int, seed: int) -> list[np.ndarray]:
    """The batch order shared by the local trainer and the federated coordinator.

    Each epoch is an independent seeded shuffle of ``train_rows`` (as given), cut into
    ``ceil(n / batch_size)`` consecutive batches (the last one may be smaller). Batches never
    cross epochs.

    Returns:
        ``epochs * ceil(n / batch_size)`` int64 arrays of row positions, epoch by epoch.
    """
    rows = check_positions("batch_plan", "train_rows", train_rows)
    batch_size = check_positive_int("batch_plan", "batch_size", batch_size)
    epochs = check_positive_int("batch_plan", "epochs", epochs)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), _BATCH_STREAM]))
    plan: list[np.ndarray] = []
    for _ in range(epochs):
        order = rows[rng.permutation(rows.size)]
        plan.extend(order[start : start + batch_size] for start in range(0, rows.size, batch_size))
    return plan


def batches_per_epoch(n_train: int, batch_size: int) -> int:
    """``ceil(n_train / batch_size)``: how many entries of :func:`batch_plan` make one epoch."""
    return -(-int(n_train) // int(batch_size))


def make_optimizer(
    parameters: Iterable[nn.Parameter], name: str, lr: float, weight_decay: float = 0.0
) -> Optimizer:
    """The optimizer every runner uses (per-parameter update rules only, :mod:`.optim`)."""
    if name not in OPTIMIZERS:
        raise fail(
            "make_optimizer",
            f"optimizer={name!r} is not supported",
            f"use one of {list(OPTIMIZERS)}",
        )
    return Optimizer(parameters, name, lr, weight_decay)


def batch_loss(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Mean binary cross-entropy over the batch (``logits``, ``labels`` float32 ``[b]``)."""
    return F.binary_cross_entropy_with_logits(logits, labels, reduction="mean")


def _as_label_tensor(labels: Any, n_rows: int, where: str) -> torch.Tensor:
    y = (
        labels
        if isinstance(labels, torch.Tensor)
        else torch.from_numpy(np.asarray(labels, dtype=np.float32))
    )
    y = y.to(torch.float32)
    if y.dim() != 1 or y.shape[0] != n_rows:
        raise fail(
            where,
            f"labels have shape {tuple(y.shape)}",
            f"pass a 1-D array of {n_rows} labels in the aligned order",
        )
    return y


def _n_rows(inputs: Inputs, where: str) -> int:
    sizes = {name: (int(num.shape[0]), int(cat.shape[0])) for name, (num, cat) in inputs.items()}
    flat = {n for pair in sizes.values() for n in pair}
    if len(flat) != 1:
        raise fail(
            where,
            f"inputs have different row counts {sizes}",
            "encode every party over the same aligned rows",
        )
    return flat.pop()


def _batch(inputs: Inputs, index: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    return {
        name: (num.index_select(0, index), cat.index_select(0, index))
        for name, (num, cat) in inputs.items()
    }


def train_local(
    model: nn.Module,
    inputs: Inputs,
    labels: np.ndarray | torch.Tensor,
    train_rows: np.ndarray,
    config: TrainConfig | Any,
    *,
    valid_rows: np.ndarray | None = None,
    progress: Progress = SILENT,
) -> TrainingHistory:
    """Train ``model`` (e.g. a :class:`~fedads.models.nets.SplitModel`) in one process.

    Args:
        model: called as ``model(inputs_for_batch)``; returns logits ``[b]``.
        inputs: ``{party: (numeric [n, n_num], categorical [n, n_cat])}`` over all aligned rows.
        labels: float ``[n]`` (0/1) in the aligned order.
        train_rows: int positions of the train rows.
        config: a :class:`TrainConfig` (or a ``ProtocolConfig``, via its ``train_config()``).
        valid_rows: optional positions whose mean BCE is reported after every epoch.

    Returns:
        :class:`TrainingHistory` with ``mode="local"``.
    """
    config = as_train_config(config).validate()
    n = _n_rows(inputs, "train_local")
    y = _as_label_tensor(labels, n, "train_local")
    plan = batch_plan(
        check_positions("train_local", "train_rows", train_rows, n),
        config.batch_size,
        config.epochs,
        config.seed,
    )
    per_epoch = batches_per_epoch(len(train_rows), config.batch_size)
    optimizer = make_optimizer(model.parameters(), config.optimizer, config.lr, config.weight_decay)
    # One torch thread unless FEDADS_THREADS says otherwise (fedads._threads: small models;
    # the default threads spin against other work on a shared machine). Restored on return.
    with compute_threads():
        return _train_epochs(model, inputs, y, plan, per_epoch, optimizer, config, valid_rows,
                             progress)  # fmt: skip


def _train_epochs(
    model: nn.Module,
    inputs: Inputs,
    y: torch.Tensor,
    plan: list[np.ndarray],
    per_epoch: int,
    optimizer: Optimizer,
    config: TrainConfig,
    valid_rows: np.ndarray | None,
    progress: Progress,
) -> TrainingHistory:
    history = TrainingHistory(mode="local")
    for epoch in range(config.epochs):
        model.train()
        start = time.perf_counter()
        first = len(history.batch_losses)
        for rows in plan[epoch * per_epoch : (epoch + 1) * per_epoch]:
            index = torch.from_numpy(rows)
            loss = batch_loss(model(_batch(inputs, index)), y.index_select(0, index))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            history.batch_losses.append(float(loss.detach()))
            history.batch_rows.append(int(rows.size))
        history.close_epoch(first, time.perf_counter() - start)
        if valid_rows is not None:
            scores = predict_local(model, inputs, valid_rows, logits=True)
            history.valid_losses.append(
                float(
                    batch_loss(
                        torch.from_numpy(scores),
                        y[torch.from_numpy(np.asarray(valid_rows, dtype=np.int64))],
                    )
                )
            )
        progress(f"local epoch {epoch + 1}/{config.epochs}: loss {history.epoch_losses[-1]:.4f}")
    model.eval()
    return history


def predict_local(
    model: nn.Module,
    inputs: Inputs,
    rows: np.ndarray,
    *,
    batch_size: int = 65536,
    logits: bool = False,
) -> np.ndarray:
    """Scores of ``rows`` (int positions): probabilities float32 ``[len(rows)]`` (or logits)."""
    n = _n_rows(inputs, "predict_local")
    rows = check_positions("predict_local", "rows", rows, n, allow_empty=True, unique=False)
    out = np.empty(rows.size, dtype=np.float32)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, rows.size, batch_size):
                index = torch.from_numpy(rows[start : start + batch_size])
                z = model(_batch(inputs, index))
                out[start : start + index.numel()] = (z if logits else torch.sigmoid(z)).numpy()
    finally:
        model.train(was_training)
    return out
