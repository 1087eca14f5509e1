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

Pipelined efficient mode (``config.pipeline``): round ``r`` of an epoch of ``n`` chunks is one
``send_all`` to both parties, which compute concurrently::

    round r:  social    <- apply dL/dH_s(chunk r-2), then embed chunk r   (each part if it exists)
              ecommerce <- train(chunk r-1, H_s(chunk r-1))

for ``r = 0 .. n+1``: ``n + 2`` round trips per epoch instead of ``2n + 1``. Without validation
rows the pipeline runs over all epochs at once (``E n + 2`` round trips for ``E`` epochs): the
next epoch's first chunks fill it while the last ones drain. Both loops are one schedule
(:func:`_schedule`) run by the same code.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

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
            "pipeline": bool(cfg.pipeline),
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
        epochs = [plan[e * per_epoch : (e + 1) * per_epoch] for e in range(cfg.epochs)]
        start, first, bytes_before = time.perf_counter(), 0, self.transport.traffic.snapshot()
        bar = self.progress.bar(len(plan), "federated training", "batch")

        def close_epoch(epoch: int) -> None:
            nonlocal start, first, bytes_before
            history.close_epoch(first, time.perf_counter() - start)
            history.bytes_by_epoch.append(self._bytes_since(bytes_before))
            if valid is not None:
                history.valid_losses.append(self.evaluate(valid))
            valid_text = f", valid {history.valid_losses[-1]:.4f}" if valid is not None else ""
            self.progress(
                f"federated ({cfg.mode}{', pipelined' if cfg.pipeline else ''}) "
                f"epoch {epoch + 1}/{cfg.epochs}: "
                f"loss {history.epoch_losses[-1]:.4f}{valid_text}, "
                f"{history.epoch_seconds[-1]:.2f} s, {history.bytes_per_epoch()[-1] / 1e6:.1f} MB"
            )
            start, first = time.perf_counter(), len(history.batch_losses)
            bytes_before = self.transport.traffic.snapshot()

        if cfg.pipeline and valid is None:
            # One pipeline over all epochs: the next epoch's first chunks fill the pipeline
            # while the last ones drain, instead of n+2 rounds per epoch with the first and
            # last rounds half idle. Validation needs the parties in sync at each epoch end,
            # so it keeps one pipeline per epoch.
            self._train_chunks(epochs, history, close_epoch, bar.update)
        else:
            for epoch, batches in enumerate(epochs):
                self._train_chunks(
                    [batches], history, lambda _, e=epoch: close_epoch(e), bar.update
                )
        bar.close()
        return history

    def _train_chunks(
        self,
        epochs: list[list[np.ndarray]],
        history: TrainingHistory,
        close_epoch: Callable[[int], None],
        on_batches: Callable[[int], object] = lambda n: None,
    ) -> None:
        """Train the batches of ``epochs`` (one list of batches per epoch) as one schedule.

        ``close_epoch(i)`` runs once the e-commerce party has trained epoch ``i``'s last chunk
        (the last epoch: once the social party has applied its last gradients, so the parties are
        in step and every round's time is counted in some epoch).
        """
        cfg = self.config
        size = {"batch_size": cfg.batch_size}
        chunks: list[list[np.ndarray]] = []
        ends: dict[int, int] = {}  # index of an epoch's last chunk -> that epoch
        for epoch, batches in enumerate(epochs):
            chunks.extend(_chunks(batches, cfg.batches_per_round))
            ends[len(chunks) - 1] = epoch
        positions = [chunk[0] if len(chunk) == 1 else np.concatenate(chunk) for chunk in chunks]
        # In flight, by chunk index: at most two of each (pipelined), relayed untouched.
        embedded: dict[int, dict[str, np.ndarray]] = {}
        gradients: dict[int, dict[str, np.ndarray]] = {}
        steps = {msg.SOCIAL: 0, msg.ECOMMERCE: 0}
        for apply, embed, train in _schedule(len(chunks), cfg.pipeline):
            requests: dict[str, Envelope] = {}
            if embed is not None:
                arrays = {} if apply is None else gradients.pop(apply)
                kind = msg.FORWARD if apply is None else msg.BACKWARD_FORWARD
                requests[msg.SOCIAL] = Envelope(
                    kind, {**arrays, msg.POSITIONS: positions[embed]}, size
                )
            elif apply is not None:
                requests[msg.SOCIAL] = Envelope(msg.BACKWARD, gradients.pop(apply), {})
            if train is not None:
                requests[msg.ECOMMERCE] = Envelope(
                    msg.TRAIN, {msg.POSITIONS: positions[train], **embedded.pop(train)}, size
                )
            replies = self._exchange(requests)
            steps.update({party: int(reply.meta["step"]) for party, reply in replies.items()})
            if embed is not None:
                embedded[embed] = _only(replies[msg.SOCIAL].arrays, msg.EMBEDDINGS)
            if train is not None:
                trained, chunk = replies[msg.ECOMMERCE], chunks[train]
                if int(trained.meta.get("n_batches", -1)) != len(chunk):
                    raise PartyError(
                        msg.ECOMMERCE,
                        f"trained {trained.meta.get('n_batches')} batches "
                        f"of a {len(chunk)}-batch chunk",
                    )
                history.batch_losses.extend(
                    float(trained.meta[f"loss_{j}"]) for j in range(len(chunk))
                )
                history.batch_rows.extend(int(b.size) for b in chunk)
                on_batches(len(chunk))
                gradients[train] = _only(trained.arrays, msg.GRADIENTS)
                if train in ends and train != len(chunks) - 1:
                    close_epoch(ends[train])
        if steps[msg.SOCIAL] != steps[msg.ECOMMERCE]:
            raise ProtocolError(
                f"parties out of step: social at {steps[msg.SOCIAL]}, "
                f"ecommerce at {steps[msg.ECOMMERCE]}"
            )
        close_epoch(ends[len(chunks) - 1])

    # ------------------------------------------------------------------ scoring
    def predict(self, positions: np.ndarray) -> np.ndarray:
        """Probabilities float32 ``[len(positions)]`` of the federated model for ``positions``.

        Forward only: the social party embeds, the e-commerce party scores; the two run
        concurrently on consecutive slices (``send_all``). Scores come back to the caller.
        """
        rows = self._scoring_positions(positions)
        out = np.empty(rows.size, dtype=np.float32)
        for (start, stop), reply in self._score_slices(rows, msg.SCORE):
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
        for _, reply in self._score_slices(rows, msg.EVALUATE):
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

    def _score_slices(
        self, rows: np.ndarray, kind: str
    ) -> Iterator[tuple[tuple[int, int], Envelope]]:
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
            replies = self._exchange(requests)
            if msg.ECOMMERCE in replies:
                yield slices[k - 1], replies[msg.ECOMMERCE]
            embedded = (
                _only(replies[msg.SOCIAL].arrays, msg.EMBEDDINGS) if msg.SOCIAL in replies else None
            )

    # ------------------------------------------------------------------ helpers
    def _send(self, party: str, envelope: Envelope) -> Envelope:
        return self._exchange({party: envelope})[party]

    def _exchange(self, requests: dict[str, Envelope]) -> dict[str, Envelope]:
        """One round trip: ``requests`` to their parties at once; each reply must echo its kind."""
        replies = self.transport.send_all(requests)
        for party, request in requests.items():
            reply = replies.get(party)
            if reply is None or reply.kind != request.kind:
                answer = "nothing" if reply is None else repr(reply.kind)
                raise PartyError(party, f"answered {answer} to {request.kind!r}")
        return replies

    def _bytes_since(self, before: dict[str, int]) -> dict[str, int]:
        now = self.transport.traffic.snapshot()
        return {link: n - before.get(link, 0) for link, n in now.items() if n - before.get(link, 0)}


def _schedule(n: int, pipeline: bool) -> list[tuple[int | None, int | None, int | None]]:
    """The rounds of an epoch of ``n`` chunks as ``(apply, embed, train)`` chunk indices.

    In a round the social party first applies the gradients of chunk ``apply``, then embeds chunk
    ``embed``; the e-commerce party trains chunk ``train`` (``None``: that part is absent; a
    round with a social and an e-commerce part goes out as one ``send_all``). Sequential:
    ``(c-1, c, -)`` then ``(-, -, c)`` for each chunk, then ``(n-1, -, -)``: ``2n + 1`` rounds.
    Pipelined: ``(r-2, r, r-1)`` for ``r = 0 .. n+1``: ``n + 2`` rounds, each chunk's gradients
    reach the social party one round after they were computed, as in the sequential loop.
    """

    def at(i: int) -> int | None:
        return i if 0 <= i < n else None

    if pipeline:
        return [(at(r - 2), at(r), at(r - 1)) for r in range(n + 2)]
    rounds: list[tuple[int | None, int | None, int | None]] = []
    for r in range(n + 1):
        rounds.append((at(r - 1), at(r), None))
        if r < n:
            rounds.append((None, None, r))
    return rounds


def _chunks(batches: list[np.ndarray], size: int) -> Iterator[list[np.ndarray]]:
    for start in range(0, len(batches), size):
        yield batches[start : start + size]


def _only(arrays: dict[str, np.ndarray], name: str) -> dict[str, np.ndarray]:
    """``name`` and its ``_scale`` companion, if present (relayed untouched, still compressed)."""
    return {k: v for k, v in arrays.items() if k == name or k == name + msg.SCALE_SUFFIX}
