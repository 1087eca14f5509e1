"""Every message kind of the split-learning protocol, and what each may carry.

The coordinator sends a request :class:`~fedads.protocol.envelope.Envelope` to one party and gets
one reply. Arrays are only: row positions in the aligned order (int64), embeddings of the social
party's bottom ``H_s`` ``[n, d]``, gradients of the mean batch loss w.r.t. those embeddings
``dL/dH_s`` ``[n, d]``, and scores (probabilities) ``[n]``. Embeddings and gradients are float32,
or float16 / int8 plus a float32 ``[1]`` per-tensor scale when compressed
(``fedads.protocol.codec``). Losses, sizes and step counters travel in ``meta``. NOTHING else
crosses: no labels, no ``is_existing_customer`` flag, no raw or encoded feature values, no model
weights. :func:`check_envelope` enforces this table on every envelope of these kinds, in both
directions, on every transport: the in-process one, and the Flower one (simulation and deployment)
both in the coordinator's ``FlowerTransport`` and in each party's ClientApp.

Kind (receiver): request arrays [request meta] -> reply arrays [reply meta]

``hello`` (both)
    nothing -> nothing [``n_rows``, ``role``]
``setup`` (both)
    ``train_positions`` int64 [n_train] [model config, ``optimizer``, ``lr``, ``weight_decay``,
    ``seed``, ``compression``, ``pipeline``, ``n_train``; ecommerce also ``peer_embedding_dim``]
    -> nothing [``n_rows``, ``embedding_dim``, ``n_parameters``]
``forward`` (social)
    ``positions`` int64 [m] [``batch_size``] -> ``embeddings`` [m, d] [``step``]
``backward_forward`` (social)
    ``gradients`` [m', d] of the pending chunk, ``positions`` int64 [m] [``batch_size``]
    -> ``embeddings`` [m, d] [``step``]
``backward`` (social)
    ``gradients`` [m', d] of the pending chunk -> nothing [``step``]
``train`` (ecommerce)
    ``positions`` int64 [m], ``embeddings`` [m, d] [``batch_size``]
    -> ``gradients`` [m, d] [``n_batches``, ``step``, ``n_losses``, ``loss_k``, ``loss_rows_k``: the
    training losses released, each a mean over at least ``min_query_rows`` rows]
``embed`` (social)
    ``positions`` int64 [m] -> ``embeddings`` [m, d]
``score`` (ecommerce)
    ``positions`` int64 [m], ``embeddings`` [m, d] -> ``scores`` float32 [m] (probabilities)
``evaluate`` (ecommerce)
    ``positions`` int64 [m], ``embeddings`` [m, d] -> nothing [``loss_sum``, ``n_rows``]
``checkpoint`` (both; early stopping, resumable runs)
    nothing [``action``: ``"keep"`` (remember the current parameters as the best epoch's) or
    ``"restore"`` (go back to them); ``"save"`` (write the state of the completed epoch
    ``epoch`` to the party's own private folder) or ``"load"`` (go back to the saved state of
    epoch ``epoch``), ``fedads.protocol.resume``] -> nothing [``step``]. The parameters never
    leave the party.

A chunk of ``m`` positions holds ``B`` consecutive batches of ``batch_size`` rows (the last may be
shorter); ``B = 1`` in exact mode. With ``pipeline`` (efficient mode) the same kinds carry the same
arrays; only their schedule changes (up to two chunks await gradients at the social party, and
the coordinator sends to both parties at once). Compressed ``embeddings`` / ``gradients`` come with
``embeddings_scale`` / ``gradients_scale`` (float32 ``[1]``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fedads.protocol.envelope import Envelope

HELLO = "hello"
SETUP = "setup"
FORWARD = "forward"
BACKWARD_FORWARD = "backward_forward"
BACKWARD = "backward"
TRAIN = "train"
EMBED = "embed"
SCORE = "score"
EVALUATE = "evaluate"
CHECKPOINT = "checkpoint"
CHECKPOINT_ACTIONS: tuple[str, ...] = ("keep", "restore", "save", "load")
RESUME_ACTIONS: tuple[str, ...] = ("save", "load")
"""The ``checkpoint`` actions a party runtime answers from its private folder (resumable runs,
``fedads.protocol.resume``); ``keep`` / ``restore`` are the party's own, in memory."""

SOCIAL = "social"
ECOMMERCE = "ecommerce"

POSITIONS = "positions"
TRAIN_POSITIONS = "train_positions"
EMBEDDINGS = "embeddings"
GRADIENTS = "gradients"
SCORES = "scores"
SCALE_SUFFIX = "_scale"
SEALED = "sealed"
"""A payload sealed end to end for the peer party (``uint8 [nbytes]``, fedads.protocol.sealing):
replaces ``embeddings`` / ``gradients`` (and their scales) when sealing is on."""

_POSITION_ARRAYS = frozenset({POSITIONS, TRAIN_POSITIONS})
_TENSOR_ARRAYS = frozenset({EMBEDDINGS, GRADIENTS})
_TENSOR_DTYPES = frozenset({np.dtype(np.float32), np.dtype(np.float16), np.dtype(np.int8)})


@dataclass(frozen=True)
class MessageSpec:
    """Who receives a kind, and which arrays its request and its reply may carry."""

    receivers: frozenset[str]
    request: frozenset[str]
    reply: frozenset[str]


MESSAGES: dict[str, MessageSpec] = {
    HELLO: MessageSpec(frozenset({SOCIAL, ECOMMERCE}), frozenset(), frozenset()),
    SETUP: MessageSpec(frozenset({SOCIAL, ECOMMERCE}), frozenset({TRAIN_POSITIONS}), frozenset()),
    FORWARD: MessageSpec(
        frozenset({SOCIAL}), frozenset({POSITIONS}), frozenset({EMBEDDINGS, SEALED})
    ),
    BACKWARD_FORWARD: MessageSpec(
        frozenset({SOCIAL}),
        frozenset({GRADIENTS, POSITIONS, SEALED}),
        frozenset({EMBEDDINGS, SEALED}),
    ),
    BACKWARD: MessageSpec(frozenset({SOCIAL}), frozenset({GRADIENTS, SEALED}), frozenset()),
    TRAIN: MessageSpec(
        frozenset({ECOMMERCE}),
        frozenset({POSITIONS, EMBEDDINGS, SEALED}),
        frozenset({GRADIENTS, SEALED}),
    ),
    EMBED: MessageSpec(
        frozenset({SOCIAL}), frozenset({POSITIONS}), frozenset({EMBEDDINGS, SEALED})
    ),
    SCORE: MessageSpec(
        frozenset({ECOMMERCE}), frozenset({POSITIONS, EMBEDDINGS, SEALED}), frozenset({SCORES})
    ),
    EVALUATE: MessageSpec(
        frozenset({ECOMMERCE}), frozenset({POSITIONS, EMBEDDINGS, SEALED}), frozenset()
    ),
    CHECKPOINT: MessageSpec(frozenset({SOCIAL, ECOMMERCE}), frozenset(), frozenset()),
}
"""The message table above, as data."""

KINDS: tuple[str, ...] = tuple(MESSAGES)


def check_envelope(
    envelope: Envelope, party: str, *, reply: bool, strict: bool = False
) -> str | None:
    """Check an envelope against the table: ``None`` if it conforms, else what is wrong.

    Args:
        envelope: the request sent to ``party`` (``reply=False``) or its reply (``reply=True``).
        party: the party's name.
        strict: also refuse kinds outside this table. Off by default, because other layers
            send their own kinds through the same transport (the PSI's ``psi_*`` envelopes,
            ``fedads.align``, which has its own contract); the split-learning parties refuse
            kinds they do not know anyway.
    """
    spec = MESSAGES.get(envelope.kind)
    if spec is None:
        if strict:
            return f"unknown message kind {envelope.kind!r}; known kinds: {list(KINDS)}"
        return None
    if party not in spec.receivers:
        return f"message kind {envelope.kind!r} is not for party {party!r}"
    allowed = spec.reply if reply else spec.request
    for name, array in envelope.arrays.items():
        base = name[: -len(SCALE_SUFFIX)] if name.endswith(SCALE_SUFFIX) else name
        if base not in allowed:
            what = "reply to" if reply else "request"
            return (
                f"{what} {envelope.kind!r} may not carry array {name!r} "
                f"(allowed: {sorted(allowed)})"
            )
        if name != base:
            if base not in envelope.arrays or array.dtype != np.float32 or array.shape != (1,):
                return f"{name!r} must be a float32 [1] scale next to {base!r}"
        elif name in _POSITION_ARRAYS:
            if array.dtype != np.int64 or array.ndim != 1:
                return f"{name!r} must be int64 [n]; got {array.dtype} {array.shape}"
        elif name in _TENSOR_ARRAYS:
            if array.dtype not in _TENSOR_DTYPES or array.ndim != 2:
                return (
                    f"{name!r} must be float32/float16/int8 [n, d]; got {array.dtype} {array.shape}"
                )
            if array.dtype != np.float32 and name + SCALE_SUFFIX not in envelope.arrays:
                return f"compressed {name!r} ({array.dtype}) needs {name + SCALE_SUFFIX!r}"
        elif name == SEALED and (array.dtype != np.uint8 or array.ndim != 1):
            return f"{name!r} must be uint8 [nbytes]; got {array.dtype} {array.shape}"
        elif name == SCORES and (array.dtype != np.float32 or array.ndim != 1):
            return f"{name!r} must be float32 [n]; got {array.dtype} {array.shape}"
    return None
