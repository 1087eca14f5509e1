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
from typing import Any

import numpy as np

from fedads._progress import SILENT, Progress
from fedads._validation import fail
from fedads.errors import PartyError, ProtocolError
from fedads.models.train import TrainingHistory, batch_plan, batches_per_epoch, check_positions
from fedads.privacy.defenses import Defense
from fedads.privacy.observe import AttackLog
from fedads.protocol import messages as msg
from fedads.protocol.codec import unpack
from fedads.protocol.config import EARLY_STOPPING_MIN_DELTA, ProtocolConfig
from fedads.protocol.envelope import Envelope
from fedads.protocol.resume import CoordinatorCheckpoint, RunCheckpoints
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
        self.best_epoch: int | None = None
        """With early stopping, the 1-based epoch whose parameters the parties kept (after
        :meth:`fit`); ``None`` without."""
        self._ready = False
        # The relay's view: the same label attacks on the gradients as this coordinator relays
        # them (fedads.privacy); the job result carries the scores, never a label.
        self.relay_log = AttackLog()

    # ------------------------------------------------------------------ setup
    def setup(self, train_positions: np.ndarray) -> None:
        """Check both parties hold the same aligned rows, then build (seeded) models on both.

        Raises:
            ProtocolError: the parties report different row counts (before any training).
            InputError: ``train_positions`` are not distinct positions in ``[0, n_rows)``.
        """
        self._ready = False
        self.relay_log.reset()
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
                {
                    **meta,
                    "peer_embedding_dim": self.embedding_dim,
                    # Only the label party needs to know its defense.
                    "defense": cfg.defense,
                    "defense_strength": float(Defense(cfg.defense, cfg.defense_strength).value),
                },
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
        self,
        train_positions: np.ndarray,
        valid_positions: np.ndarray | None = None,
        *,
        checkpoints: RunCheckpoints | None = None,
    ) -> TrainingHistory:
        """Set up fresh models and train for ``config.epochs`` epochs (early stopping: at most).

        With ``config.early_stopping_patience = k`` the validation loss after each epoch decides:
        an epoch that lowers the best loss by more than ``EARLY_STOPPING_MIN_DELTA`` has both
        parties keep their state (``checkpoint`` ``keep``); after ``k`` epochs without one,
        training stops; then both parties go back to the best epoch's state (``restore``) unless
        it is the last one trained. :attr:`best_epoch` says which epoch that was.

        Args:
            train_positions: int64 positions (aligned order) of the train rows, distinct.
            valid_positions: optional positions whose mean BCE is computed after every epoch
                (by the e-commerce party; only the scalar comes back). Required with early
                stopping.
            checkpoints: a resumable run (:class:`~fedads.protocol.resume.RunCheckpoints`):
                after every completed epoch both parties save their state in their own folders
                (``checkpoint`` ``save``) and the coordinator writes its manifest; with
                ``checkpoints.resume`` the parties first go back to the manifest's epoch
                (``checkpoint`` ``load``) and training continues after it. A pipelined run
                then drains its pipeline at every epoch end (as with validation rows).

        Returns:
            :class:`~fedads.models.train.TrainingHistory` with per-batch and per-epoch losses,
            per-epoch wall time and per-epoch payload bytes per link.
        """
        cfg = self.config
        patience = cfg.early_stopping_patience
        if patience is not None and valid_positions is None:
            raise fail(
                "Coordinator.fit",
                f"early_stopping_patience={patience} without validation positions",
                "pass valid_positions (FederationSettings.valid_share > 0), or set "
                "early_stopping_patience=None",
            )
        self.best_epoch = None
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
        point = None
        if checkpoints is not None and checkpoints.resume:
            point = self._resume(checkpoints.resume_point(), per_epoch)
            # This run's setup (the same messages as the interrupted run's).
            point.history.setup_bytes = history.setup_bytes
            history = point.history
        done = 0 if point is None else point.epoch
        start, first = time.perf_counter(), len(history.batch_losses)
        bytes_before = self.transport.traffic.snapshot()
        bar = self.progress.bar(len(plan), "federated training", "batch")
        bar.update(done * per_epoch)

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

        def save(epoch: int, **early: Any) -> None:
            """After epoch ``epoch`` (1-based) of a resumable run: parties, then manifest."""
            nonlocal start
            if checkpoints is None:
                return
            self._checkpoint("save", epoch=epoch)
            checkpoints.save(
                CoordinatorCheckpoint(epoch, history, relay_records=self.relay_log.read(), **early)
            )
            start = time.perf_counter()  # the save is not the next epoch's training time

        if patience is not None:
            assert valid is not None
            self._fit_early_stopping(
                epochs, history, close_epoch, bar.update, patience, point, save
            )
        elif cfg.pipeline and valid is None and checkpoints is None:
            # One pipeline over all epochs: the next epoch's first chunks fill the pipeline
            # while the last ones drain, instead of n+2 rounds per epoch with the first and
            # last rounds half idle. Validation (and resumable checkpoints) need the parties in
            # sync at each epoch end, so they keep one pipeline per epoch.
            self._train_chunks(epochs, history, close_epoch, bar.update)
        else:
            for epoch in range(done, len(epochs)):
                self._train_chunks(
                    [epochs[epoch]],
                    history,
                    lambda _, e=epoch: close_epoch(e),
                    bar.update,
                    first_epoch=epoch,
                )
                save(epoch + 1)
        bar.close()
        return history

    def _resume(self, point: CoordinatorCheckpoint, per_epoch: int) -> CoordinatorCheckpoint:
        """Both parties go back to their saved state of ``point.epoch`` (none at epoch 0)."""
        cfg = self.config
        if not 0 <= point.epoch <= cfg.epochs:
            raise ProtocolError(
                f"cannot resume after epoch {point.epoch} of a {cfg.epochs}-epoch run"
            )
        if point.epoch > 0:
            step = self._checkpoint("load", epoch=point.epoch)
            if step != point.epoch * per_epoch:
                raise ProtocolError(
                    f"resumed parties are at step {step}, not at the end of epoch {point.epoch} "
                    f"(step {point.epoch * per_epoch})"
                )
            if point.relay_records is not None:
                self.relay_log.extend(point.relay_records)
        self.progress(
            f"resuming after epoch {point.epoch}/{cfg.epochs}"
            + (" (both parties restored their saved state)" if point.epoch else "")
        )
        return point

    def _fit_early_stopping(
        self,
        epochs: list[list[np.ndarray]],
        history: TrainingHistory,
        close_epoch: Callable[[int], None],
        on_batches: Callable[[int], object],
        patience: int,
        point: CoordinatorCheckpoint | None = None,
        save: Callable[..., None] = lambda epoch, **early: None,
    ) -> None:
        """One epoch at a time; keep the best epoch's state, stop after ``patience`` misses.

        ``point``: resume after its epoch with its bookkeeping; ``save(epoch, **bookkeeping)``
        runs after every epoch's decision (resumable runs)."""
        best_loss, best_epoch, waited, stopped = float("inf"), 0, 0, False
        done = 0
        if point is not None:
            best_loss, best_epoch, waited = point.best_loss, point.best_epoch, point.waited
            stopped, done = point.stopped, point.epoch
        for epoch in range(done, len(epochs)):
            if stopped:
                break
            self._train_chunks(
                [epochs[epoch]], history, lambda _, e=epoch: close_epoch(e), on_batches, epoch
            )
            loss = history.valid_losses[-1]
            if loss < best_loss - EARLY_STOPPING_MIN_DELTA:
                best_loss, best_epoch, waited = loss, epoch + 1, 0
                self._checkpoint("keep")
            else:
                waited += 1
                if waited >= patience:
                    self.progress(
                        f"early stopping after epoch {epoch + 1}: no validation improvement in "
                        f"{patience} epoch(s); keeping epoch {best_epoch}"
                    )
                    stopped = True
            save(
                epoch + 1,
                best_loss=best_loss,
                best_epoch=best_epoch,
                waited=waited,
                stopped=stopped,
            )
        trained = len(history.valid_losses)
        if 0 < best_epoch < trained:
            self._checkpoint("restore")
        # No epoch improved on infinity (every validation loss NaN): the last state stays.
        self.best_epoch = best_epoch or trained

    def _checkpoint(self, action: str, **meta: int) -> int:
        """Both parties keep / restore their best-epoch state, or save / load the state of a
        completed epoch (``epoch`` in meta); their steps must agree. Returns the step."""
        replies = self._exchange(
            {
                party: Envelope(msg.CHECKPOINT, {}, {"action": action, **meta})
                for party in (msg.SOCIAL, msg.ECOMMERCE)
            }
        )
        steps = {party: int(reply.meta["step"]) for party, reply in replies.items()}
        if steps[msg.SOCIAL] != steps[msg.ECOMMERCE]:
            raise ProtocolError(
                f"parties out of step after checkpoint {action!r}: social at "
                f"{steps[msg.SOCIAL]}, ecommerce at {steps[msg.ECOMMERCE]}"
            )
        return steps[msg.SOCIAL]

    def _train_chunks(
        self,
        epochs: list[list[np.ndarray]],
        history: TrainingHistory,
        close_epoch: Callable[[int], None],
        on_batches: Callable[[int], object] = lambda n: None,
        first_epoch: int = 0,
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
        chunk_epoch: list[int] = []
        for epoch, batches in enumerate(epochs):
            chunks.extend(_chunks(batches, cfg.batches_per_round))
            chunk_epoch.extend([first_epoch + epoch] * (len(chunks) - len(chunk_epoch)))
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
                # The losses the label party released: one per batch of at least its query
                # floor's rows, else row-weighted means over consecutive batches that reach it.
                released = range(int(trained.meta.get("n_losses", 0)))
                history.batch_losses.extend(float(trained.meta[f"loss_{k}"]) for k in released)
                history.batch_rows.extend(int(trained.meta[f"loss_rows_{k}"]) for k in released)
                on_batches(len(chunk))
                gradients[train] = _only(trained.arrays, msg.GRADIENTS)
                self._observe_relay(
                    positions[train], gradients[train], cfg.batch_size, chunk_epoch[train]
                )
                if train in ends and train != len(chunks) - 1:
                    close_epoch(ends[train])
        if steps[msg.SOCIAL] != steps[msg.ECOMMERCE]:
            raise ProtocolError(
                f"parties out of step: social at {steps[msg.SOCIAL]}, "
                f"ecommerce at {steps[msg.ECOMMERCE]}"
            )
        close_epoch(ends[len(chunks) - 1])

    def _observe_relay(
        self, positions: np.ndarray, arrays: dict[str, np.ndarray], batch_size: int, epoch: int
    ) -> None:
        """Label attacks on relayed gradients, decoded as any holder of the bytes could."""
        if msg.GRADIENTS in arrays:  # absent if a lower layer seals payloads
            self.relay_log.observe(positions, unpack(arrays, msg.GRADIENTS), batch_size, epoch)

    # ------------------------------------------------------------------ scoring
    def score(self, positions: np.ndarray) -> int:
        """Have the label party score ``positions``; returns how many rows it scored.

        Where the per-user scores go is the e-commerce party's decision: a
        :class:`~fedads.protocol.runtime.PartyRuntime` writes them to its private output
        (``docs/threat-model.md``) and replies with the count only; a bare
        :class:`~fedads.protocol.parties.EcommerceParty` without a score sink replies with them
        (use :meth:`predict` to collect them).
        """
        rows = self._scoring_positions(positions)
        return sum(
            int(reply.meta.get("n_rows", stop - start))
            for (start, stop), reply in self._score_slices(rows, msg.SCORE)
        )

    def predict(self, positions: np.ndarray) -> np.ndarray:
        """Probabilities float32 ``[len(positions)]`` of the federated model for ``positions``.

        Forward only: the social party embeds, the e-commerce party scores; the two run
        concurrently on consecutive slices (``send_all``). Scores come back to the caller, so
        this works only with an e-commerce party that replies with them (a bare
        ``EcommerceParty``); a runtime keeps them private (use :meth:`score`).
        """
        rows = self._scoring_positions(positions)
        out = np.empty(rows.size, dtype=np.float32)
        for (start, stop), reply in self._score_slices(rows, msg.SCORE):
            scores = reply.arrays.get(msg.SCORES)
            if scores is None and "n_rows" in reply.meta:
                raise ProtocolError(
                    "the e-commerce party keeps per-user scores in its private output "
                    "(scores.npy in its output folder); call score() and read them there"
                )
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
        # Equal slices of at most predict_rows: no short last slice (the label party refuses
        # queries about fewer rows than its minimum, docs/threat-model.md).
        n_slices = -(-rows.size // self.config.predict_rows)
        bounds = np.linspace(0, rows.size, n_slices + 1).round().astype(int).tolist()
        slices = list(zip(bounds[:-1], bounds[1:], strict=True))
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
    """The peer payload of a reply, relayed untouched: the ``sealed`` blob when the parties
    seal (``fedads.protocol.sealing``), else ``name`` and its ``_scale`` companion."""
    keep = (name, name + msg.SCALE_SUFFIX, msg.SEALED)
    return {k: v for k, v in arrays.items() if k in keep}
