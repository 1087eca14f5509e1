"""The two parties of the split-learning protocol, transport-free.

:class:`SocialParty` holds the social features and the social bottom model; it sends embeddings
``H_s`` and receives gradients ``dL/dH_s``. :class:`EcommerceParty` holds the e-commerce features,
the labels, its bottom model and the top head; it receives ``H_s``, takes optimizer steps and sends
back ``dL/dH_s``. Both implement :class:`fedads.protocol.transport.Party`: they only answer
envelopes (see ``fedads.protocol.messages`` for the table) and never see each other.

Data: each party gets plain arrays in the aligned order (position ``i`` is the same user on both
sides): numeric float ``[n, n_num]`` (NaN allowed), categorical str ``[n, n_cat]``, and for the
e-commerce party labels float ``[n]`` in ``[0, 1]``. On ``setup`` a party fits its
:class:`~fedads.models.features.FeatureEncoder` on its own train rows, encodes all rows once and
caches the tensors; every batch is then a tensor index with the position array.

Chunk semantics (``B`` batches per message, ``B = 1`` in exact mode). For a chunk with batches
``t0 .. t0+B-1``:

* social, on ``forward`` / ``backward_forward``: first applies the pending gradients (below), then
  computes ``H_s`` for the new chunk with its current weights ``w_s(t0)`` (batch 0 with autograd
  graph kept, batches 1.. without) and queues the chunk's positions as pending;
* ecommerce, on ``train``: for ``j = 0 .. B-1`` one optimizer step of bottom + top on batch
  ``t0+j`` using the received ``H_s`` for that batch, returning ``G_j = dL_j/dH_s`` (the gradient
  autograd gives for a leaf ``H_s`` in ``top([H_s, H_e])``);
* social, on ``backward_forward`` / ``backward``: takes the *oldest* pending chunk and for
  ``j = 0 .. B-1`` recomputes its forward of batch ``t0+j`` with its current weights
  ``w_s(t0+j)`` (batch 0 reuses the kept graph if no step happened since it was computed),
  backpropagates ``G_j`` and steps.

So batch ``t0+j`` is trained by the e-commerce side on embeddings computed ``j`` social steps ago
(up to ``B-1``), and the social side applies a gradient whose top-side part is ``j`` steps
stale. For ``B = 1`` nothing is stale and the updates equal centralized training of the same
``SplitModel``.

Pipelined efficient mode (setup meta ``pipeline``): the pending chunks are a FIFO of depth 2
(1 otherwise; a ``forward`` to a full FIFO is refused). Chunk ``k`` is embedded while chunk
``k-1`` is still at the e-commerce party, i.e. after the gradients of chunks ``0 .. k-2`` only:
with weights ``w_s((k-1)B)`` for ``k >= 1``, while the e-commerce side trains its batch ``j`` at
step ``kB+j``. Batch ``j`` of a chunk is thus embedded with weights that miss up to ``B + j``
social steps (at most ``2B - 1``; only chunk 0 has the non-pipelined ``j``). The kept batch-0
graph of a chunk queued behind another is never valid (the older chunk's steps come first), so
it is not kept and batch 0 is recomputed: "recompute the forward with the current weights,
backpropagate the received gradient" holds for every batch.

Early stopping (``checkpoint`` messages): on ``keep`` a party remembers a copy of its own state
(parameters, optimizer state, step) as the best epoch's; on ``restore`` it goes back to that copy.
The coordinator sends both to both parties at an epoch end (nothing pending), on its reading of the
validation loss; no parameter leaves a party.

State: :meth:`get_state` returns a flat ``dict[str, np.ndarray]`` (setup config as UTF-8 JSON bytes,
encoder, model parameters, optimizer state, step counter, every pending chunk in FIFO order, and
the kept best-epoch copy under ``best.``, if any) and
:meth:`set_state` restores it into a freshly built party over the same data, so a stateless host
(a Flower ``ClientApp`` rebuilt per message) can persist a party between messages. A restored
social party recomputes the forward of a pending batch 0 instead of reusing the graph (same
weights, same result).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from fedads._validation import fail
from fedads.errors import ProtocolError
from fedads.models.features import EncoderConfig, FeatureEncoder, as_categorical, as_numeric
from fedads.models.nets import (
    BottomFactory,
    ModelConfig,
    TopFactory,
    build_bottom,
    build_top,
    count_parameters,
    flatten_logits,
    output_dim,
)
from fedads.models.optim import Optimizer
from fedads.models.train import batch_loss, batches_per_epoch, check_positions, make_optimizer
from fedads.privacy.defenses import Defense
from fedads.privacy.observe import AttackLog, EmbeddingLog
from fedads.protocol import messages as msg
from fedads.protocol.codec import pack, unpack
from fedads.protocol.envelope import Envelope

_SETUP_KEY = "setup.meta"
_STEP_KEY = "counter.step"
_PENDING_PREFIX = "pending."
_BEST_PREFIX = "best."


@dataclass(frozen=True)
class PartyConfig:
    """Party-local options (never sent anywhere).

    Attributes:
        encoder: feature encoding options (must match the centralized run for exact equivalence).
        bottom_factory: builds this party's bottom from ``(TowerSpec, ModelConfig)``; default
            (``None``): the tower the setup's ``ModelConfig`` names for this party
            (``social_bottom`` / ``ecommerce_bottom``: a zoo name or ``"module:attr"``).
        top_factory: (e-commerce only) builds the top from ``(input_dim, ModelConfig)``; default
            (``None``): the tower ``ModelConfig.top`` names.
        min_query_rows: (e-commerce only) the fewest distinct positions a ``score`` or
            ``evaluate`` request may ask about (default 256); when fewer rows than that are
            outside the training set, a query must cover all of them
            (``docs/threat-model.md``).
        unaligned_training: (e-commerce only) also train on its own labelled users outside
            the intersection, except those a campaign holds out (:class:`UnalignedUsers`,
            :func:`fedads.protocol.runtime.split_unaligned` with ``unaligned_test_share`` and
            ``unaligned_split_seed``: the run's ``test_share`` and ``split_seed``).
    """

    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    bottom_factory: BottomFactory | None = None
    top_factory: TopFactory | None = None
    min_query_rows: int = 256
    unaligned_training: bool = False
    unaligned_test_share: float = 0.3
    unaligned_split_seed: int = 0


class _BaseParty:
    """Shared machinery: data, encoder cache, setup, state, dispatch."""

    name: str = ""

    def __init__(
        self, numeric: np.ndarray | None, categorical: np.ndarray | None, config: PartyConfig | None
    ) -> None:
        where = type(self).__name__
        self.config = config or PartyConfig()
        n = _n_rows(numeric, categorical, where)
        self._numeric = as_numeric(numeric, n, where)
        self._categorical = as_categorical(categorical, n, where)
        if self._numeric.shape[0] != self._categorical.shape[0]:
            raise fail(
                where,
                f"numeric has {self._numeric.shape[0]} rows, "
                f"categorical {self._categorical.shape[0]}",
                "pass both in the same aligned order",
            )
        if self._numeric.shape[1] + self._categorical.shape[1] == 0:
            raise fail(
                where, "no feature columns", "pass at least one numeric or categorical column"
            )
        self.n_rows = int(self._numeric.shape[0])
        self.step = 0
        self.embedding_dim = 0
        self.bottom: nn.Module | None = None
        self.optimizer: Optimizer | None = None
        self._encoder: FeatureEncoder | None = None
        self._encoder_state: dict[str, np.ndarray] | None = None
        self._x_num: torch.Tensor | None = None  # float32 [n, n_num], encoded, cached
        self._x_cat: torch.Tensor | None = None  # int64 [n, n_cat], encoded, cached
        self._setup_meta: dict[str, Any] | None = None
        self._compression = "none"
        self._best: dict[str, np.ndarray] | None = None  # get_state() at the best epoch

    # ------------------------------------------------------------------ dispatch
    def _handlers(self) -> dict[str, Callable[[Envelope], Envelope]]:
        return {
            msg.HELLO: self._on_hello,
            msg.SETUP: self._on_setup,
            msg.CHECKPOINT: self._on_checkpoint,
        }

    def handle(self, envelope: Envelope) -> Envelope:
        """Answer one envelope (see ``fedads.protocol.messages``)."""
        handler = self._handlers().get(envelope.kind)
        if handler is None:
            raise ProtocolError(f"{self.name} party cannot handle message kind {envelope.kind!r}")
        if envelope.kind not in (msg.HELLO, msg.SETUP) and self._setup_meta is None:
            raise ProtocolError(f"{self.name} party got {envelope.kind!r} before 'setup'")
        return handler(envelope)

    def _on_hello(self, envelope: Envelope) -> Envelope:
        return Envelope(msg.HELLO, {}, {"n_rows": self.n_rows, "role": self.name})

    def _on_setup(self, envelope: Envelope) -> Envelope:
        meta = dict(envelope.meta)
        train = check_positions(
            f"{self.name} setup",
            "train_positions",
            envelope.arrays.get(msg.TRAIN_POSITIONS),
            self.n_rows,
        )
        if int(meta.get("n_train", train.size)) != train.size:
            raise ProtocolError(
                f"setup says n_train={meta['n_train']} but carries {train.size} train positions"
            )
        self._install_encoder(
            FeatureEncoder(self.config.encoder).fit(self._numeric, self._categorical, train)
        )
        self._build(meta)
        self.step = 0
        self._best = None
        return Envelope(
            msg.SETUP,
            {},
            {
                "n_rows": self.n_rows,
                "embedding_dim": self.embedding_dim,
                "n_parameters": self.n_parameters,
            },
        )

    def _on_checkpoint(self, envelope: Envelope) -> Envelope:
        """Early stopping: ``keep`` the current state as the best epoch's, or ``restore`` it."""
        action = envelope.meta.get("action")
        if action == "keep":
            self._best = None  # not nested into the new copy
            self._best = self.get_state()
        elif action == "restore":
            if self._best is None:
                raise ProtocolError(f"{self.name} party got 'restore' before any 'keep'")
            best = self._best
            self.set_state(best)
            self._best = best
        elif action in msg.RESUME_ACTIONS:
            raise ProtocolError(
                f"{self.name} party: checkpoint {action!r} needs a party runtime with a private "
                "folder (PartyRuntime(out_dir=...)); a bare party keeps no files"
            )
        else:
            raise ProtocolError(
                f"{self.name} party: checkpoint action {action!r} is not one of "
                f"{list(msg.CHECKPOINT_ACTIONS)}"
            )
        return Envelope(msg.CHECKPOINT, {}, {"step": self.step})

    # ------------------------------------------------------------------ building
    def _install_encoder(self, encoder: FeatureEncoder) -> bool:
        """Use ``encoder``; re-encode all rows only if it differs from the cached one.

        Returns whether it changed.
        """
        state = encoder.get_state()
        if self._encoder_state is not None and _same_arrays(state, self._encoder_state):
            return False
        self._encoder, self._encoder_state = encoder, state
        self._x_num, self._x_cat = encoder.transform(self._numeric, self._categorical)
        return True

    def _build(self, meta: dict[str, Any]) -> None:
        """(Re)build models and optimizer from setup meta (seeded: same seed, same weights)."""
        assert self._encoder is not None
        model_config = ModelConfig.from_meta(meta)
        seed = int(meta["seed"])
        spec = self._encoder.spec
        self.bottom = build_bottom(self.name, spec, model_config, seed, self.config.bottom_factory)
        self.embedding_dim = output_dim(self.bottom, spec)
        self._build_extra(model_config, seed, meta)
        self.optimizer = make_optimizer(
            [p for m in self._modules().values() for p in m.parameters()],
            str(meta["optimizer"]),
            float(meta["lr"]),
            float(meta.get("weight_decay", 0.0)),
        )
        self._compression = str(meta.get("compression", "none"))
        self._setup_meta = meta

    def _build_extra(self, model_config: ModelConfig, seed: int, meta: dict[str, Any]) -> None:
        """Subclass hook: build more modules after the bottom."""

    def _modules(self) -> dict[str, nn.Module]:
        assert self.bottom is not None
        return {"bottom": self.bottom}

    @property
    def n_parameters(self) -> int:
        return int(sum(count_parameters(m) for m in self._modules().values()))

    def _rows(self, positions: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        assert self._x_num is not None and self._x_cat is not None
        index = torch.from_numpy(positions)
        return self._x_num.index_select(0, index), self._x_cat.index_select(0, index)

    def _positions(self, envelope: Envelope) -> np.ndarray:
        """The request's positions, range-checked (uniqueness is the coordinator's job).

        Writable: transports may hand over read-only views of the message bytes, and torch
        warns on (and may not write to) tensors over read-only memory.
        """
        positions = check_positions(
            f"{self.name} {envelope.kind}",
            "positions",
            envelope.arrays.get(msg.POSITIONS),
            self.n_rows,
            unique=False,
        )
        return np.require(positions, requirements=["W"])

    # ------------------------------------------------------------------ state
    def get_state(self) -> dict[str, np.ndarray]:
        """Flat arrays: setup config, encoder, parameters, optimizer state, counters.

        ``{}`` before setup.
        """
        if self._setup_meta is None or self.optimizer is None:
            return {}
        state: dict[str, np.ndarray] = {
            _SETUP_KEY: np.frombuffer(
                json.dumps(self._setup_meta, sort_keys=True).encode(), dtype=np.uint8
            ).copy(),
            _STEP_KEY: np.array([self.step], dtype=np.int64),
        }
        assert self._encoder_state is not None
        state.update({f"encoder.{k}": v.copy() for k, v in self._encoder_state.items()})
        for prefix, module in self._modules().items():
            for key, tensor in module.state_dict().items():
                state[f"{prefix}.{key}"] = tensor.detach().cpu().numpy().copy()
        for index, slots in self.optimizer.state_dict()["state"].items():
            for key, value in slots.items():
                if value is None:
                    continue
                array = (
                    value.detach().cpu().numpy().copy()
                    if isinstance(value, torch.Tensor)
                    else np.asarray(value)
                )
                state[f"optim.{index}.{key}"] = array
        state.update(self._extra_state())
        if self._best is not None:
            state.update({_BEST_PREFIX + k: v for k, v in self._best.items()})
        return state

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        """Restore :meth:`get_state` output (``{}`` leaves the party as it is)."""
        if not state:
            return
        best = {k[len(_BEST_PREFIX) :]: v for k, v in state.items() if k.startswith(_BEST_PREFIX)}
        self._best = best or None
        state = {k: v for k, v in state.items() if not k.startswith(_BEST_PREFIX)}
        meta = json.loads(np.asarray(state[_SETUP_KEY], dtype=np.uint8).tobytes().decode())
        changed = self._install_encoder(
            FeatureEncoder.from_state(
                {k[len("encoder.") :]: v for k, v in state.items() if k.startswith("encoder.")}
            )
        )
        if changed or meta != self._setup_meta or self.optimizer is None:
            self._build(meta)
        for prefix, module in self._modules().items():
            own = f"{prefix}."
            module.load_state_dict(
                {
                    k[len(own) :]: torch.tensor(np.asarray(v))
                    for k, v in state.items()
                    if k.startswith(own)
                }
            )
        assert self.optimizer is not None
        slots: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in state.items():
            if key.startswith("optim."):
                _, index, name = key.split(".", 2)
                slots.setdefault(int(index), {})[name] = torch.tensor(np.asarray(value))
        groups = self.optimizer.state_dict()["param_groups"]
        self.optimizer.load_state_dict({"state": slots, "param_groups": groups})
        self.step = int(state[_STEP_KEY][0])
        self._restore_extra(state)

    def _extra_state(self) -> dict[str, np.ndarray]:
        return {}

    def _restore_extra(self, state: dict[str, np.ndarray]) -> None:
        """Subclass hook."""


class SocialParty(_BaseParty):
    """The social-ad platform: social features and the social bottom model (no labels).

    Args:
        numeric: float ``[n, n_num]`` (NaN allowed) in the aligned order, or ``None``.
        categorical: str ``[n, n_cat]`` in the aligned order, or ``None``.
        config: party-local options (:class:`PartyConfig`).
    """

    name = msg.SOCIAL

    def __init__(
        self,
        numeric: np.ndarray | None,
        categorical: np.ndarray | None,
        config: PartyConfig | None = None,
    ) -> None:
        super().__init__(numeric, categorical, config)
        # Chunks awaiting gradients, oldest first (at most ``_max_pending``).
        self._pending: list[_PendingChunk] = []
        # The honest-but-curious side of this party: label attacks on every gradient message it
        # receives (fedads.privacy). In memory unless the host points it at a private file.
        self.attack_log = AttackLog()

    def attach_output(self, out_dir: Any) -> None:
        """Write the label-attack scores to ``out_dir`` (this party's private folder)."""
        from pathlib import Path

        from fedads.privacy.observe import ATTACK_SCORES_FILE

        self.attack_log = AttackLog(Path(out_dir) / ATTACK_SCORES_FILE)

    @property
    def _max_pending(self) -> int:
        """Chunks in flight: 2 in pipelined mode (setup meta ``pipeline``), else 1."""
        return 2 if self._setup_meta is not None and self._setup_meta.get("pipeline") else 1

    @classmethod
    def from_table(
        cls, table: Any, rows: np.ndarray | None = None, config: PartyConfig | None = None
    ) -> SocialParty:
        """Build from a ``fedads.tables.PartyTable`` (``rows``: its aligned row positions)."""
        return cls(table.numeric_matrix(rows), table.categorical_matrix(rows), config)

    def _handlers(self) -> dict[str, Callable[[Envelope], Envelope]]:
        return {
            **super()._handlers(),
            msg.FORWARD: self._on_forward,
            msg.BACKWARD_FORWARD: self._on_backward_forward,
            msg.BACKWARD: self._on_backward,
            msg.EMBED: self._on_embed,
        }

    def _on_setup(self, envelope: Envelope) -> Envelope:
        self._pending = []
        self.attack_log.reset()
        return super()._on_setup(envelope)

    def _on_forward(self, envelope: Envelope) -> Envelope:
        return self._embed_chunk(envelope)

    def _on_backward_forward(self, envelope: Envelope) -> Envelope:
        self._apply_gradients(envelope)
        return self._embed_chunk(envelope)

    def _on_backward(self, envelope: Envelope) -> Envelope:
        self._apply_gradients(envelope)
        return Envelope(msg.BACKWARD, {}, {"step": self.step})

    def _embed_chunk(self, envelope: Envelope) -> Envelope:
        """``H_s`` of a new chunk with the current weights, queued until its gradients come."""
        assert self.bottom is not None
        if len(self._pending) >= self._max_pending:
            raise ProtocolError(
                f"social party still waits for the gradients of {len(self._pending)} chunk(s) "
                f"(at most {self._max_pending} in flight"
                f"{'' if self._max_pending > 1 else ' without pipeline'}); "
                "send 'backward_forward' or 'backward'"
            )
        positions = self._positions(envelope)
        batch_size = int(envelope.meta["batch_size"])
        # Batch 0's graph is reusable only if no step happens before its backward, i.e. only if
        # no older chunk is queued ahead of it; otherwise do not pay for keeping it.
        keep_graph = not self._pending
        self.bottom.train()
        with torch.set_grad_enabled(keep_graph):
            first = self.bottom(*self._rows(positions[:batch_size]))
        embeddings = np.empty((positions.size, self.embedding_dim), dtype=np.float32)
        embeddings[: first.shape[0]] = first.detach().numpy()
        if positions.size > batch_size:
            with torch.no_grad():
                embeddings[batch_size:] = self.bottom(*self._rows(positions[batch_size:])).numpy()
        self._pending.append(
            _PendingChunk(positions, batch_size, first if keep_graph else None, self.step)
        )
        return Envelope(
            envelope.kind, pack(msg.EMBEDDINGS, embeddings, self._compression), {"step": self.step}
        )

    def _apply_gradients(self, envelope: Envelope) -> None:
        """One local step per batch of the oldest pending chunk, backpropagating the grads."""
        assert self.bottom is not None and self.optimizer is not None
        if not self._pending:
            raise ProtocolError(
                f"social party got gradients ({envelope.kind!r}) but has no pending chunk"
            )
        gradients = np.require(
            unpack(envelope.arrays, msg.GRADIENTS), dtype=np.float32, requirements=["W"]
        )
        chunk = self._pending[0]
        pending, batch_size = chunk.positions, chunk.batch_size
        if gradients.shape != (pending.size, self.embedding_dim):
            raise ProtocolError(
                f"gradients have shape {gradients.shape}; "
                f"expected {(pending.size, self.embedding_dim)}"
            )
        self._pending.pop(0)
        self._observe_gradients(pending, gradients, batch_size)
        # The kept graph holds the weights of step ``chunk.step``: reuse it only if none since.
        graph = chunk.graph if chunk.step == self.step else None
        grads = torch.from_numpy(gradients)
        self.bottom.train()
        for j, start in enumerate(range(0, pending.size, batch_size)):
            stop = min(start + batch_size, pending.size)
            if j == 0 and graph is not None:
                out = graph
            else:
                out = self.bottom(*self._rows(pending[start:stop]))
            self.optimizer.zero_grad(set_to_none=True)
            out.backward(grads[start:stop])
            self.optimizer.step()
            self.step += 1

    def _observe_gradients(
        self, positions: np.ndarray, gradients: np.ndarray, batch_size: int
    ) -> None:
        """Run the label attacks on exactly what arrived (decoded), before it is applied.

        The epoch is what this party can tell by itself: its step count over the batches an
        epoch of ``n_train`` rows has (chunks never span epochs).
        """
        assert self._setup_meta is not None
        per_epoch = batches_per_epoch(int(self._setup_meta["n_train"]), batch_size)
        self.attack_log.observe(positions, gradients, batch_size, self.step // per_epoch)

    def _on_embed(self, envelope: Envelope) -> Envelope:
        """Embeddings for scoring: eval mode, no gradient, no state change."""
        assert self.bottom is not None
        positions = self._positions(envelope)
        self.bottom.eval()
        try:
            with torch.no_grad():
                embeddings = self.bottom(*self._rows(positions)).numpy()
        finally:
            self.bottom.train()
        return Envelope(msg.EMBED, pack(msg.EMBEDDINGS, embeddings, self._compression), {})

    def _extra_state(self) -> dict[str, np.ndarray]:
        state: dict[str, np.ndarray] = {}
        for i, chunk in enumerate(self._pending):
            state[f"{_PENDING_PREFIX}{i}.positions"] = chunk.positions.copy()
            state[f"{_PENDING_PREFIX}{i}.batch_size"] = np.array([chunk.batch_size], dtype=np.int64)
        return state

    def _restore_extra(self, state: dict[str, np.ndarray]) -> None:
        # No graphs: parameters were overwritten in place, so each batch 0 is recomputed (with
        # the same weights when no step happened since, hence the same result).
        self._pending = []
        while f"{_PENDING_PREFIX}{len(self._pending)}.positions" in state:
            key = f"{_PENDING_PREFIX}{len(self._pending)}."
            self._pending.append(
                _PendingChunk(
                    np.asarray(state[key + "positions"], dtype=np.int64).copy(),
                    int(state[key + "batch_size"][0]),
                    None,
                    self.step,
                )
            )


@dataclass
class _PendingChunk:
    """A chunk the social party embedded and still owes a backward for.

    Attributes:
        positions: int64 ``[m]`` its rows, ``B`` batches of ``batch_size`` (last may be shorter).
        batch_size: rows per batch.
        graph: batch 0's output ``[batch_size, d]`` with its autograd graph, or ``None``
            (recompute).
        step: the social step counter when ``graph`` was computed (valid only at that step).
    """

    positions: np.ndarray
    batch_size: int
    graph: torch.Tensor | None
    step: int


@dataclass(frozen=True)
class UnalignedUsers:
    """The e-commerce party's own training users outside the intersection (issue 15 item 1).

    They have no social account (or none the PSI found), so no social embedding exists for them;
    the party trains its bottom and top on them with a **learned "no social account"
    embedding** in place of ``H_s`` (one vector ``[peer_embedding_dim]``, initialised at zero,
    trained only by these steps). Nothing about them leaves the party: no position, count,
    embedding, gradient or loss of theirs is in any envelope.

    Attributes:
        numeric: float ``[m, n_num]`` (NaN allowed), same columns as the aligned rows.
        categorical: str ``[m, n_cat]``.
        labels: float ``[m]`` in ``[0, 1]``.
    """

    numeric: np.ndarray | None
    categorical: np.ndarray | None
    labels: np.ndarray


_UNALIGNED_STEP_KEY = "counter.unaligned_step"
#: Offset of the randomized-response stream of the unaligned users' labels under ``label-dp``
#: (another stream than the aligned users').
_UNALIGNED_RR_SEED = 1_000_003


class _NoSocialEmbedding(nn.Module):
    """The learned stand-in for ``H_s`` of a user without a social embedding."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1, dim))

    def forward(self, n: int) -> torch.Tensor:
        return self.weight.expand(n, -1)


class EcommerceParty(_BaseParty):
    """The e-commerce ad platform: its features, the labels, its bottom model and the top head.

    Args:
        numeric: float ``[n, n_num]`` (NaN allowed) in the aligned order, or ``None``.
        categorical: str ``[n, n_cat]`` in the aligned order, or ``None``.
        labels: float ``[n]`` in ``[0, 1]`` (the conversion), aligned order. Never leaves the party.
        config: party-local options (:class:`PartyConfig`).
        unaligned: optional training users outside the intersection (:class:`UnalignedUsers`).
            After each aligned step of a ``train`` message the party takes local steps on
            them so that one epoch of aligned batches carries one epoch of unaligned batches
            (same batch size, a seeded permutation per epoch); the encoder stays the one
            fitted on the aligned training rows. ``None`` (default): the intersection only.
    """

    name = msg.ECOMMERCE

    def __init__(
        self,
        numeric: np.ndarray | None,
        categorical: np.ndarray | None,
        labels: np.ndarray,
        config: PartyConfig | None = None,
        unaligned: UnalignedUsers | None = None,
    ) -> None:
        self._unaligned: UnalignedUsers | None = None
        self._u_x: tuple[torch.Tensor, torch.Tensor] | None = None  # encoded, cached
        self._u_labels: torch.Tensor | None = None
        self._u_train_labels: torch.Tensor | None = None
        self.unaligned_step = 0
        self.no_social: _NoSocialEmbedding | None = None
        super().__init__(numeric, categorical, config)
        if unaligned is not None and np.asarray(unaligned.labels).size > 0:
            u_labels = np.asarray(unaligned.labels, dtype=np.float32)
            m = u_labels.size
            if u_labels.ndim != 1 or not (
                np.isfinite(u_labels).all() and u_labels.min() >= 0 and u_labels.max() <= 1
            ):
                raise fail("EcommerceParty", "unaligned labels", "pass 0/1 labels without NaN")
            self._unaligned = UnalignedUsers(
                as_numeric(unaligned.numeric, m, "EcommerceParty unaligned"),
                as_categorical(unaligned.categorical, m, "EcommerceParty unaligned"),
                u_labels,
            )
            self._u_labels = torch.from_numpy(u_labels)
            self._u_train_labels = self._u_labels
        y = np.asarray(labels)
        where = "EcommerceParty"
        if y.ndim != 1 or y.shape[0] != self.n_rows:
            raise fail(
                where,
                f"labels have shape {y.shape}",
                f"pass a 1-D array of {self.n_rows} labels in the aligned order",
            )
        if not np.issubdtype(y.dtype, np.number) and y.dtype != bool:
            raise fail(where, f"labels have dtype {y.dtype}", "pass 0/1 numbers")
        y = y.astype(np.float32)
        if not np.isfinite(y).all() or y.min(initial=0.0) < 0 or y.max(initial=0.0) > 1:
            raise fail(
                where,
                "labels contain values outside [0, 1] or missing values",
                "pass 0/1 labels without NaN",
            )
        self._labels = torch.from_numpy(y)
        # What training uses: the labels, or their randomized response under label DP.
        self._train_labels = self._labels
        self.defense = Defense()
        self.top: nn.Module | None = None
        self.peer_embedding_dim = 0
        # The feature-inference attacker's input: social embeddings received for scoring.
        self.embedding_log = EmbeddingLog()
        self.score_sink: Callable[[np.ndarray, np.ndarray], None] | None = None
        """Where per-user scores go: ``sink(positions, scores)``, the party's private output
        (set by :class:`~fedads.protocol.runtime.PartyRuntime`). ``None``: they go back in the
        reply (a bare party in a trusted single process, e.g. unit tests)."""
        # Positions already in an evaluate answer at model step ``_evaluated_step``: a second
        # question about any of them at the same step is refused (no differencing).
        self._evaluated = np.zeros(self.n_rows, dtype=bool)
        self._evaluated_step = -1
        # Training losses not yet released: they leave only as means over at least the query
        # floor's rows (a batch of one row would reveal that row's label through its loss).
        self._loss_window = _LossWindow()

    def attach_output(self, out_dir: Any) -> None:
        """Write the social embeddings received for scoring to ``out_dir`` (private folder)."""
        from pathlib import Path

        from fedads.privacy.observe import RECEIVED_EMBEDDINGS_FILE

        self.embedding_log = EmbeddingLog(Path(out_dir) / RECEIVED_EMBEDDINGS_FILE)

    @classmethod
    def from_table(
        cls, table: Any, rows: np.ndarray | None = None, config: PartyConfig | None = None
    ) -> EcommerceParty:
        """Build from a ``fedads.tables.PartyTable`` with a label column (``rows``: aligned rows).

        The existing-customer flag is not a feature unless the table lists it as one.
        """
        return cls(
            table.numeric_matrix(rows), table.categorical_matrix(rows), table.labels(rows), config
        )

    def _handlers(self) -> dict[str, Callable[[Envelope], Envelope]]:
        return {
            **super()._handlers(),
            msg.TRAIN: self._on_train,
            msg.SCORE: self._on_score,
            msg.EVALUATE: self._on_evaluate,
        }

    def _on_setup(self, envelope: Envelope) -> Envelope:
        reply = super()._on_setup(envelope)
        self.embedding_log.reset(self.peer_embedding_dim)
        self._loss_window = _LossWindow()
        self.unaligned_step = 0
        return reply

    @property
    def n_unaligned(self) -> int:
        """Training users outside the intersection this party also trains on (0: none)."""
        return 0 if self._u_labels is None else int(self._u_labels.shape[0])

    def _install_encoder(self, encoder: FeatureEncoder) -> bool:
        changed = super()._install_encoder(encoder)
        if self._unaligned is not None and (changed or self._u_x is None):
            self._u_x = encoder.transform(self._unaligned.numeric, self._unaligned.categorical)
        return changed

    def _build_extra(self, model_config: ModelConfig, seed: int, meta: dict[str, Any]) -> None:
        self.peer_embedding_dim = int(meta["peer_embedding_dim"])
        strength = meta.get("defense_strength")
        self.defense = Defense(
            str(meta.get("defense", "none")), None if strength is None else float(strength)
        )
        # Randomized once per run from the seed, so a rebuilt party trains on the same labels.
        self._train_labels = torch.from_numpy(
            np.ascontiguousarray(self.defense.train_labels(self._labels.numpy(), seed))
        )
        self.top = build_top(
            self.peer_embedding_dim + self.embedding_dim,
            model_config,
            seed,
            self.config.top_factory,
        )
        if self._unaligned is not None:
            assert self._u_labels is not None
            self.no_social = _NoSocialEmbedding(self.peer_embedding_dim)
            self._u_train_labels = torch.from_numpy(
                np.ascontiguousarray(
                    self.defense.train_labels(self._u_labels.numpy(), seed + _UNALIGNED_RR_SEED)
                )
            )

    def _modules(self) -> dict[str, nn.Module]:
        assert self.bottom is not None and self.top is not None
        modules: dict[str, nn.Module] = {"bottom": self.bottom, "top": self.top}
        if self.no_social is not None:
            modules["no_social"] = self.no_social
        return modules

    def _peer_embeddings(self, envelope: Envelope, n: int) -> torch.Tensor:
        embeddings = np.require(
            unpack(envelope.arrays, msg.EMBEDDINGS), dtype=np.float32, requirements=["W"]
        )
        if embeddings.shape != (n, self.peer_embedding_dim):
            raise ProtocolError(
                f"embeddings have shape {embeddings.shape}; expected {(n, self.peer_embedding_dim)}"
            )
        return torch.from_numpy(embeddings)

    def _logits(self, h_social: torch.Tensor, positions: np.ndarray) -> torch.Tensor:
        assert self.bottom is not None and self.top is not None
        h_own = self.bottom(*self._rows(positions))
        return flatten_logits(self.top(torch.cat([h_social, h_own], dim=1)))  # PARTY_ORDER

    def _on_train(self, envelope: Envelope) -> Envelope:
        """One optimizer step per batch of the chunk; return ``dL/dH_s`` per row and the
        training losses released so far (:meth:`_LossWindow.add`)."""
        assert self.bottom is not None and self.top is not None and self.optimizer is not None
        positions = self._positions(envelope)
        batch_size = int(envelope.meta["batch_size"])
        h_social = self._peer_embeddings(envelope, positions.size)
        gradients = np.empty((positions.size, self.peer_embedding_dim), dtype=np.float32)
        floor = self._loss_floor()
        released: list[tuple[float, int]] = []
        n_batches = 0
        self.bottom.train()
        self.top.train()
        for start in range(0, positions.size, batch_size):
            stop = min(start + batch_size, positions.size)
            rows = positions[start:stop]
            leaf = h_social[start:stop].detach().requires_grad_(True)
            labels = self._train_labels.index_select(0, torch.from_numpy(rows))
            logits = self._logits(leaf, rows)
            loss = batch_loss(logits, labels)
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.step += 1
            n_batches += 1
            assert leaf.grad is not None
            # The defense runs here, inside the label party, before the rows leave it.
            gradients[start:stop] = self._protect(leaf.grad.numpy(), labels, logits)
            released.extend(self._loss_window.add(float(loss.detach()), int(rows.size), floor))
            if self._unaligned is not None:
                self._train_unaligned(batch_size)
        meta: dict[str, int | float | str | bool] = {
            "n_batches": n_batches,
            "step": self.step,
            "n_losses": len(released),
        }
        for k, (mean, n_rows) in enumerate(released):
            meta[f"loss_{k}"] = mean
            meta[f"loss_rows_{k}"] = n_rows
        return Envelope(msg.TRAIN, pack(msg.GRADIENTS, gradients, self._compression), meta)

    def _train_unaligned(self, batch_size: int) -> None:
        """Local steps on the unaligned users, up to the share of their epoch that matches the
        share of the aligned epoch done (``step`` aligned steps so far).

        A function of ``(step, unaligned_step, seed)`` only, so a party rebuilt between
        messages (Flower) or restored to its best epoch takes the same steps. Their losses are
        not released (not even in the loss window) and nothing of them enters the reply.
        """
        assert self._setup_meta is not None and self._u_x is not None
        assert self.bottom is not None and self.top is not None and self.optimizer is not None
        assert self.no_social is not None and self._u_train_labels is not None
        n_unaligned = int(self._u_train_labels.shape[0])
        per_epoch = batches_per_epoch(int(self._setup_meta["n_train"]), batch_size)
        per_epoch_u = batches_per_epoch(n_unaligned, batch_size)
        epoch, done = divmod(self.step, per_epoch)
        target = epoch * per_epoch_u + (done * per_epoch_u) // per_epoch
        seed = int(self._setup_meta["seed"])
        x_num, x_cat = self._u_x
        while self.unaligned_step < target:
            u_epoch, k = divmod(self.unaligned_step, per_epoch_u)
            order = np.random.default_rng([seed, u_epoch, _UNALIGNED_RR_SEED]).permutation(
                n_unaligned
            )
            index = torch.from_numpy(order[k * batch_size : (k + 1) * batch_size])
            h_own = self.bottom(x_num.index_select(0, index), x_cat.index_select(0, index))
            h_social = self.no_social(int(index.numel()))
            logits = flatten_logits(self.top(torch.cat([h_social, h_own], dim=1)))
            loss = batch_loss(logits, self._u_train_labels.index_select(0, index))
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
            self.unaligned_step += 1

    def _loss_floor(self) -> int:
        """Fewest rows a released training loss may average: the query floor, capped by the
        training set (a smaller training set releases one mean over all of it)."""
        n_train = int((self._setup_meta or {}).get("n_train", 0))
        return max(1, min(int(self.config.min_query_rows), n_train))

    def _extra_state(self) -> dict[str, np.ndarray]:
        state = {_LOSS_WINDOW_KEY: self._loss_window.to_array()}
        if self._unaligned is not None:
            state[_UNALIGNED_STEP_KEY] = np.array([self.unaligned_step], dtype=np.int64)
        return state

    def _restore_extra(self, state: dict[str, np.ndarray]) -> None:
        self._loss_window = _LossWindow.from_array(state.get(_LOSS_WINDOW_KEY))
        if _UNALIGNED_STEP_KEY in state:
            self.unaligned_step = int(np.asarray(state[_UNALIGNED_STEP_KEY]).reshape(-1)[0])

    def _protect(
        self, gradients: np.ndarray, labels: torch.Tensor, logits: torch.Tensor
    ) -> np.ndarray:
        if self.defense.name == "none":
            return gradients
        assert self._setup_meta is not None
        return self.defense.protect(
            gradients,
            labels.numpy(),
            torch.sigmoid(logits.detach()).numpy(),
            int(self._setup_meta["seed"]),
            self.step,
        )

    def _eval_logits(self, envelope: Envelope) -> tuple[np.ndarray, torch.Tensor]:
        assert self.bottom is not None and self.top is not None
        positions = self._positions(envelope)
        h_social = self._peer_embeddings(envelope, positions.size)
        self.bottom.eval()
        self.top.eval()
        try:
            with torch.no_grad():
                return positions, self._logits(h_social, positions)
        finally:
            self.bottom.train()
            self.top.train()

    def _on_score(self, envelope: Envelope) -> Envelope:
        """Probabilities for the requested positions, to the private sink (reply: the count).

        Without a sink (a bare party) the probabilities come back in the reply.
        """
        self._check_query(envelope)
        positions, logits = self._eval_logits(envelope)
        self.embedding_log.observe(positions, unpack(envelope.arrays, msg.EMBEDDINGS))
        scores = torch.sigmoid(logits).numpy().astype(np.float32, copy=False)
        if self.score_sink is None:
            return Envelope(msg.SCORE, {msg.SCORES: scores}, {})
        self.score_sink(positions, scores)
        return Envelope(msg.SCORE, {}, {"n_rows": int(positions.size)})

    def _on_evaluate(self, envelope: Envelope) -> Envelope:
        """Sum of BCE over the requested positions (a scalar in meta; no per-row output)."""
        positions = self._check_query(envelope)
        if self._evaluated_step != self.step:
            self._evaluated[:] = False
            self._evaluated_step = self.step
        if self._evaluated[positions].any():
            raise ProtocolError(
                f"ecommerce party refuses 'evaluate': {int(self._evaluated[positions].sum())} of "
                "these positions were already in an evaluate answer at this model step (two "
                "overlapping answers would reveal the loss of the rows they differ by)"
            )
        positions, logits = self._eval_logits(envelope)
        self._evaluated[positions] = True
        loss_sum = F.binary_cross_entropy_with_logits(
            logits, self._labels.index_select(0, torch.from_numpy(positions)), reduction="sum"
        )
        return Envelope(
            msg.EVALUATE, {}, {"loss_sum": float(loss_sum), "n_rows": int(positions.size)}
        )

    def _check_query(self, envelope: Envelope) -> np.ndarray:
        """The query policy of the label party (``docs/threat-model.md``): distinct positions,
        at least ``min_query_rows`` of them, or every row outside training if fewer."""
        positions = self._positions(envelope)
        if np.unique(positions).size != positions.size:
            raise ProtocolError(
                f"ecommerce party refuses {envelope.kind!r}: the positions repeat a row"
            )
        n_train = int((self._setup_meta or {}).get("n_train", 0))
        floor = max(1, min(int(self.config.min_query_rows), self.n_rows - n_train))
        if positions.size < floor:
            raise ProtocolError(
                f"ecommerce party refuses {envelope.kind!r} about {positions.size} row(s): its "
                f"query policy answers only about at least {floor} distinct rows "
                f"(min_query_rows={self.config.min_query_rows}, capped by the "
                f"{self.n_rows - n_train} rows outside training); ask about more rows at once"
            )
        return positions


_LOSS_WINDOW_KEY = "loss_window"


@dataclass
class _LossWindow:
    """Training losses the e-commerce party holds back until they cover enough rows.

    A batch with at least ``floor`` rows releases its own mean loss (the usual case: batches of
    hundreds of rows, so nothing changes); smaller batches accumulate, in order, into one window
    released as the row-weighted mean once it covers ``floor`` rows. The coordinator chooses the
    batch size, so without this a relay asking for batches of one row would read every training
    label from the losses. A remainder under the floor at the end of training is never released.
    """

    loss_sum: float = 0.0  # sum over the pending rows of their batch's mean BCE
    rows: int = 0

    def add(self, mean: float, rows: int, floor: int) -> list[tuple[float, int]]:
        """Account one batch (its mean BCE and row count); the ``(mean, rows)`` released now."""
        if self.rows == 0 and rows >= floor:
            return [(mean, rows)]  # exactly the batch's loss, as before
        self.loss_sum += mean * rows
        self.rows += rows
        if self.rows < floor:
            return []
        out = [(self.loss_sum / self.rows, self.rows)]
        self.loss_sum, self.rows = 0.0, 0
        return out

    def to_array(self) -> np.ndarray:
        return np.array([self.loss_sum, float(self.rows)], dtype=np.float64)

    @classmethod
    def from_array(cls, array: np.ndarray | None) -> _LossWindow:
        if array is None:
            return cls()
        values = np.asarray(array, dtype=np.float64)
        return cls(float(values[0]), int(values[1]))


def _n_rows(numeric: Any, categorical: Any, where: str) -> int:
    for array in (numeric, categorical):
        if array is not None:
            shape = np.shape(array)
            if len(shape) != 2:
                raise fail(
                    where, f"features have shape {shape}", "pass 2-D arrays [n_rows, n_columns]"
                )
            return int(shape[0])
    raise fail(where, "numeric and categorical are both None", "pass at least one feature array")


def _same_arrays(a: dict[str, np.ndarray], b: dict[str, np.ndarray]) -> bool:
    return a.keys() == b.keys() and all(
        a[k].shape == b[k].shape and np.array_equal(a[k], b[k]) for k in a
    )
