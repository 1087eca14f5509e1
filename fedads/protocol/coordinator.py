"""The coordinator: drives the split-learning protocol through a :class:`Transport`.

It holds no data and no model. It decides the batch order (:func:`fedads.models.train.batch_plan`,
the same as centralized training), relays embeddings from the social party to the e-commerce party
and gradients back, and collects losses, bytes and wall time. In a deployment it runs next to the
e-commerce party (the label holder) or at a neutral operator; either way it sees exactly the
messages listed in ``fedads.protocol.messages``.

Training loop (``B`` = ``config.batches_per_round``; exact mode: ``B = 1``), per epoch::

    social    <- forward(positions of chunk 0)                       -> H_s(chunk 0)
    ecommerce <- train(positions, H_s of chunk 0)                    -> dL/dH_s(chunk 0), losses
    social    <- backward_forward(dL/dH_s(chunk 0), positions of chunk 1) -> H_s(chunk 1)
    ecommerce <- train(positions, H_s of chunk 1)                    -> dL/dH_s(chunk 1), losses
    ...
    social    <- backward(dL/dH_s(last chunk))            (end of epoch: parties in sync)

Merging the backward of chunk ``i`` with the forward of chunk ``i+1`` makes two round trips per
chunk instead of three; the social party applies the gradients *before* computing the next
embeddings, so in exact mode the updates are those of centralized training.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np

from fedads._progress import SILENT, Progress
from fedads.errors import PartyError, ProtocolError
from fedads.models.train import TrainingHistory, batch_plan, batches_per_epoch, check_positions
from fedads.protocol import messages as msg
from fedads.protocol.config import ProtocolConfig
from fedads.protocol.envelope import Envelope
from fedads.protocol.transport import Transport


class Coordinator:
    """Runs setup, training and scoring of the federated split model over ``transport``.

    Args:
        transport: reaches the parties named ``"social"`` and ``"ecommerce"``.
        config: the run (:class:`ProtocolConfig`); ``config.timeout_s`` is copied to the
            transport's ``timeout_s`` attribute when the transport has one.
        progress: per-epoch progress lines (silent by default).
    """

    def __init__(
        self,
        transport: Transport,
        config: ProtocolConfig | None = None,
        *,
        progress: Progress = SILENT,
    ) -> None:
        self.transport = transport
        self.config = (config or ProtocolConfig()).validate()
        self.progress = progress
        if self.config.timeout_s is not None and hasattr(transport, "timeout_s"):
            transport.timeout_s = self.config.timeout_s  # type: ignore[attr-defined]
        self.n_rows: int | None = None
        self.embedding_dim: int | None = None
        self._ready = False

    # ------------------------------------------------------------------ setup
    def setup(self, train_positions: np.ndarray) -> None:
        """Check both parties hold the same aligned rows, then build (seeded) models on both.

        Raises:
            ProtocolError: the parties report different row counts (before any training).
            InputError: ``train_positions`` are not distinct positions in ``[0, n_rows)``.
        """
        self._ready = False
        hello = self.transport.send_all(
            {msg.SOCIAL: Envelope(msg.HELLO), msg.ECOMMERCE: Envelope(msg.HELLO)}
        )
        sizes = {party: int(reply.meta["n_rows"]) for party, reply in hello.items()}
        self._check_sizes(sizes)
        self.n_rows = sizes[msg.SOCIAL]
        train = check_positions("Coordinator.fit", "train_positions", train_positions, self.n_rows)
        cfg = self.config
        meta: dict[str, int | float | str | bool] = {
            **cfg.model.to_meta(),
            "optimizer": cfg.optimizer,
            "lr": float(cfg.lr),
            "weight_decay": float(cfg.weight_decay),
            "seed": int(cfg.seed),
            "compression": cfg.compression,
            "n_train": int(train.size),
        }
        social = self._send(msg.SOCIAL, Envelope(msg.SETUP, {msg.TRAIN_POSITIONS: train}, meta))
        self.embedding_dim = int(social.meta["embedding_dim"])
        ecommerce = self._send(
            msg.ECOMMERCE,
            Envelope(
                msg.SETUP,
                {msg.TRAIN_POSITIONS: train},
                {**meta, "peer_embedding_dim": self.embedding_dim},
            ),
        )
        self._check_sizes(
            {msg.SOCIAL: int(social.meta["n_rows"]), msg.ECOMMERCE: int(ecommerce.meta["n_rows"])}
        )
        self._ready = True

    @staticmethod
    def _check_sizes(sizes: dict[str, int]) -> None:
        if sizes[msg.SOCIAL] != sizes[msg.ECOMMERCE]:
            raise ProtocolError(
                f"aligned sizes differ: social has {sizes[msg.SOCIAL]} rows, ecommerce has "
                f"{sizes[msg.ECOMMERCE]}; both parties must hold exactly the aligned (PSI) rows in "
                "the same order, so re-run alignment and pass each party its aligned rows"
            )

    # ------------------------------------------------------------------ training
    def fit(
        self, train_positions: np.ndarray, valid_positions: np.ndarray | None = None
    ) -> TrainingHistory:
        """Set up fresh models and train for ``config.epochs`` epochs.

        Args:
            train_positions: int64 positions (aligned order) of the train rows, distinct.
            valid_positions: optional positions whose mean BCE is computed after every epoch
                (by the e-commerce party; only the scalar comes back).

        Returns:
            :class:`~fedads.models.train.TrainingHistory` with per-batch and per-epoch losses,
            per-epoch wall time and per-epoch payload bytes per link.
        """
        cfg = self.config
        before = self.transport.traffic.snapshot()
        self.setup(train_positions)
        train = np.asarray(train_positions, dtype=np.int64)
        valid = (
            None
            if valid_positions is None
            else check_positions("Coordinator.fit", "valid_positions", valid_positions, self.n_rows)
        )
        history = TrainingHistory(mode=cfg.mode, setup_bytes=self._bytes_since(before))
        plan = batch_plan(train, cfg.batch_size, cfg.epochs, cfg.seed)
        per_epoch = batches_per_epoch(train.size, cfg.batch_size)
        for epoch in range(cfg.epochs):
            before = self.transport.traffic.snapshot()
            start = time.perf_counter()
            first = len(history.batch_losses)
            self._train_epoch(plan[epoch * per_epoch : (epoch + 1) * per_epoch], history)
            history.close_epoch(first, time.perf_counter() - start)
            history.bytes_by_epoch.append(self._bytes_since(before))
            if valid is not None:
                history.valid_losses.append(self.evaluate(valid))
            valid_text = f", valid {history.valid_losses[-1]:.4f}" if valid is not None else ""
            self.progress(
                f"federated ({cfg.mode}) epoch {epoch + 1}/{cfg.epochs}: "
                f"loss {history.epoch_losses[-1]:.4f}{valid_text}, "
                f"{history.epoch_seconds[-1]:.2f} s, {history.bytes_per_epoch()[-1] / 1e6:.1f} MB"
            )
        return history

    def _train_epoch(self, batches: list[np.ndarray], history: TrainingHistory) -> None:
        cfg = self.config
        size = cfg.batch_size
        pending: dict[str, np.ndarray] | None = None  # gradients for the social party's last chunk
        steps = 0
        for chunk in _chunks(batches, cfg.batches_per_round):
            positions = chunk[0] if len(chunk) == 1 else np.concatenate(chunk)
            if pending is None:
                request = Envelope(msg.FORWARD, {msg.POSITIONS: positions}, {"batch_size": size})
            else:
                request = Envelope(
                    msg.BACKWARD_FORWARD,
                    {**pending, msg.POSITIONS: positions},
                    {"batch_size": size},
                )
            embedded = self._send(msg.SOCIAL, request)
            trained = self._send(
                msg.ECOMMERCE,
                Envelope(
                    msg.TRAIN,
                    {msg.POSITIONS: positions, **_only(embedded.arrays, msg.EMBEDDINGS)},
                    {"batch_size": size},
                ),
            )
            if int(trained.meta.get("n_batches", -1)) != len(chunk):
                raise PartyError(
                    msg.ECOMMERCE,
                    f"trained {trained.meta.get('n_batches')} batches "
                    f"of a {len(chunk)}-batch chunk",
                )
            history.batch_losses.extend(float(trained.meta[f"loss_{j}"]) for j in range(len(chunk)))
            history.batch_rows.extend(int(b.size) for b in chunk)
            pending = _only(trained.arrays, msg.GRADIENTS)
            steps = int(trained.meta["step"])
        if pending is not None:
            done = self._send(msg.SOCIAL, Envelope(msg.BACKWARD, pending, {}))
            if int(done.meta["step"]) != steps:
                raise ProtocolError(
                    f"parties out of step: social at {done.meta['step']}, ecommerce at {steps}"
                )

    # ------------------------------------------------------------------ scoring
    def predict(self, positions: np.ndarray) -> np.ndarray:
        """Probabilities float32 ``[len(positions)]`` of the federated model for ``positions``.

        Forward only: the social party embeds, the e-commerce party scores; the two run
        concurrently on consecutive slices (``send_all``). Scores come back to the caller.
        """
        rows = self._scoring_positions(positions)
        out = np.empty(rows.size, dtype=np.float32)
        for (start, stop), reply in self._pipeline(rows, msg.SCORE):
            scores = reply.arrays.get(msg.SCORES)
            if scores is None or scores.shape != (stop - start,):
                raise PartyError(
                    msg.ECOMMERCE,
                    f"returned scores of shape {None if scores is None else scores.shape} "
                    f"for {stop - start} rows",
                )
            out[start:stop] = scores
        return out

    def evaluate(self, positions: np.ndarray) -> float:
        """Mean BCE of the federated model on ``positions``.

        Only the scalar sum and count leave the e-commerce party.
        """
        rows = self._scoring_positions(positions)
        total, count = 0.0, 0
        for _, reply in self._pipeline(rows, msg.EVALUATE):
            total += float(reply.meta["loss_sum"])
            count += int(reply.meta["n_rows"])
        return total / max(count, 1)

    def _scoring_positions(self, positions: np.ndarray) -> np.ndarray:
        if not self._ready:
            raise ProtocolError("the federation is not set up; call fit() first")
        return check_positions(
            "Coordinator.predict",
            "positions",
            positions,
            self.n_rows,
            allow_empty=True,
            unique=False,
        )

    def _pipeline(self, rows: np.ndarray, kind: str) -> Iterator[tuple[tuple[int, int], Envelope]]:
        """Embed slice ``k+1`` at the social party while the e-commerce party handles ``k``."""
        step = self.config.predict_rows
        slices = [(start, min(start + step, rows.size)) for start in range(0, rows.size, step)]
        embedded: dict[str, np.ndarray] | None = None
        for k in range(len(slices) + 1):
            requests: dict[str, Envelope] = {}
            if k < len(slices):
                start, stop = slices[k]
                requests[msg.SOCIAL] = Envelope(msg.EMBED, {msg.POSITIONS: rows[start:stop]})
            if embedded is not None:
                start, stop = slices[k - 1]
                requests[msg.ECOMMERCE] = Envelope(
                    kind, {msg.POSITIONS: rows[start:stop], **embedded}
                )
            replies = self.transport.send_all(requests)
            for party, reply in replies.items():
                if reply.kind != requests[party].kind:
                    raise PartyError(party, f"answered {reply.kind!r} to {requests[party].kind!r}")
            if msg.ECOMMERCE in replies:
                yield slices[k - 1], replies[msg.ECOMMERCE]
            embedded = (
                _only(replies[msg.SOCIAL].arrays, msg.EMBEDDINGS) if msg.SOCIAL in replies else None
            )

    # ------------------------------------------------------------------ helpers
    def _send(self, party: str, envelope: Envelope) -> Envelope:
        reply = self.transport.send(party, envelope)
        if reply.kind != envelope.kind:
            raise PartyError(party, f"answered {reply.kind!r} to {envelope.kind!r}")
        return reply

    def _bytes_since(self, before: dict[str, int]) -> dict[str, int]:
        now = self.transport.traffic.snapshot()
        return {link: n - before.get(link, 0) for link, n in now.items() if n - before.get(link, 0)}


def _chunks(batches: list[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    for start in range(0, len(batches), size):
        yield batches[start : start + size]


def _only(arrays: dict[str, np.ndarray], name: str) -> dict[str, np.ndarray]:
    """``name`` and its ``_scale`` companion, if present (relayed untouched, still compressed)."""
    return {k: v for k, v in arrays.items() if k == name or k == name + msg.SCALE_SUFFIX}
