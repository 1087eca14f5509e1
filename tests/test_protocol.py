"""The protocol through the in-process transport: equivalence, privacy, failures, bytes."""

from __future__ import annotations

import dataclasses
import threading
import time
import warnings
from dataclasses import dataclass

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from fedads.errors import InputError, PartyError, ProtocolError
from fedads.flower.codec import content_to_envelope, envelope_to_content
from fedads.models import FeatureEncoder, ModelConfig, build_model, predict_local, train_local
from fedads.protocol import (
    Coordinator,
    EcommerceParty,
    Envelope,
    InProcessTransport,
    PartyConfig,
    ProtocolConfig,
    SocialParty,
    pack,
    unpack,
)
from fedads.protocol import messages as msg

N_ROWS = 2000
TRAIN = np.arange(1500)
HELD_OUT = np.arange(1500, 2000)
EXACT_RTOL = 1e-5  # per-batch losses, exact mode vs centralized (observed: bit-identical)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny batches: one intra-op thread is faster and immune to a loaded machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@dataclass
class Data:
    """Both parties' arrays in the aligned order; the label depends on both sides."""

    s_num: np.ndarray
    s_cat: np.ndarray
    e_num: np.ndarray  # last column is the is_existing_customer flag, used as a feature
    e_cat: np.ndarray
    labels: np.ndarray

    def parties(self, **kw: object) -> dict[str, object]:
        return {
            "social": SocialParty(self.s_num, self.s_cat, **kw),
            "ecommerce": EcommerceParty(self.e_num, self.e_cat, self.labels, **kw),
        }


@pytest.fixture(scope="module")
def data() -> Data:
    rng = np.random.default_rng(0)
    n = N_ROWS
    s_num = np.stack(
        [rng.normal(size=n), rng.poisson(2.0, size=n) ** 2.0, rng.normal(size=n)], axis=1
    ).astype(np.float32)
    s_num[rng.random(n) < 0.1, 2] = np.nan
    s_cat = np.stack(
        [
            np.array(list("abcdef"))[rng.integers(0, 6, n)],
            np.array([f"region-{i}" for i in rng.integers(0, 30, n)]),
        ],
        axis=1,
    )
    existing = (rng.random(n) < 0.3).astype(np.float32)
    e_num = np.stack([rng.normal(size=n), rng.exponential(50.0, size=n), existing], axis=1)
    e_num = e_num.astype(np.float32)
    e_cat = np.array([f"category-{i}" for i in rng.integers(0, 8, n)])[:, None]
    logit = (
        1.8 * s_num[:, 0]
        + 1.2 * np.isin(s_cat[:, 0], ["a", "b"])
        + 1.8 * e_num[:, 0]
        + 0.8 * existing
        - 1.0
    )
    labels = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.float32)
    return Data(s_num, s_cat, e_num, e_cat, labels)


def _config(**kw: object) -> ProtocolConfig:
    # Protocol mechanics are checked undefended: exact mode equals centralized training only
    # when the label party sends its true gradients (defenses: tests/test_privacy_leakage.py).
    base: dict[str, object] = {
        "batch_size": 128,
        "epochs": 2,
        "lr": 5e-3,
        "seed": 3,
        "defense": "none",
    }
    base.update(kw)
    return ProtocolConfig(**base)  # type: ignore[arg-type]


#: The arithmetic tests read every batch's loss: the label party's loss floor is lowered to
#: one row (by default it releases only means over at least 256 rows: test below).
EVERY_BATCH = PartyConfig(min_query_rows=1)


def _federated(
    data: Data,
    config: ProtocolConfig,
    party_config: PartyConfig = EVERY_BATCH,
    **transport_kw: object,
):
    parties = data.parties(config=party_config)
    with InProcessTransport(parties, **transport_kw) as transport:  # type: ignore[arg-type]
        coordinator = Coordinator(transport, config)
        history = coordinator.fit(TRAIN, HELD_OUT)
        scores = coordinator.predict(HELD_OUT)
    return history, scores, parties


def _centralized(data: Data, config: ProtocolConfig, kind: str = "centralized"):
    enc_s = FeatureEncoder().fit(data.s_num, data.s_cat, TRAIN)
    enc_e = FeatureEncoder().fit(data.e_num, data.e_cat, TRAIN)
    inputs = {
        "social": enc_s.transform(data.s_num, data.s_cat),
        "ecommerce": enc_e.transform(data.e_num, data.e_cat),
    }
    model = build_model(
        kind, {"social": enc_s.spec, "ecommerce": enc_e.spec}, config.model, config.seed
    )
    history = train_local(model, inputs, data.labels, TRAIN, config)
    return history, predict_local(model, inputs, HELD_OUT), model


# ---------------------------------------------------------------------- equivalence
def test_exact_mode_equals_centralized_and_efficient_differs(data: Data) -> None:
    config = _config()
    central, central_scores, model = _centralized(data, config)
    exact, exact_scores, parties = _federated(data, config)

    n_batches = 2 * 12  # 1500 rows / 128 -> 11 full batches + 1 of 92, two epochs
    assert len(exact.batch_losses) == len(central.batch_losses) == n_batches
    np.testing.assert_allclose(exact.batch_losses, central.batch_losses, rtol=EXACT_RTOL, atol=0)
    np.testing.assert_allclose(exact_scores, central_scores, rtol=EXACT_RTOL, atol=1e-6)
    # the trained weights agree too
    social_bottom = parties["social"].bottom.state_dict()
    for key, value in model.bottoms["social"].state_dict().items():
        np.testing.assert_allclose(social_bottom[key].numpy(), value.numpy(), rtol=1e-5, atol=1e-6)

    # the comparison can fail: stale embeddings (B = 4) give different losses after the first batch
    efficient, _, _ = _federated(data, _config(mode="efficient", chunk_batches=4))
    assert efficient.batch_losses[0] == pytest.approx(central.batch_losses[0], rel=EXACT_RTOL)
    rel = np.abs(np.subtract(efficient.batch_losses, central.batch_losses)) / np.array(
        central.batch_losses
    )
    assert rel.max() > 1e-3


def _windows(losses: list[float], rows: list[int], floor: int) -> tuple[list[float], list[int]]:
    """Per-batch losses as the label party releases them: a batch of ``floor`` rows or more
    alone, smaller consecutive batches pooled (row-weighted) until they reach ``floor``."""
    out_losses, out_rows, pooled, pooled_rows = [], [], 0.0, 0
    for loss, n in zip(losses, rows, strict=True):
        if pooled_rows == 0 and n >= floor:
            out_losses.append(loss)
            out_rows.append(n)
            continue
        pooled, pooled_rows = pooled + loss * n, pooled_rows + n
        if pooled_rows >= floor:
            out_losses.append(pooled / pooled_rows)
            out_rows.append(pooled_rows)
            pooled, pooled_rows = 0.0, 0
    return out_losses, out_rows


@pytest.mark.parametrize("batch_size", [128, 1])
def test_training_losses_leave_only_as_means_over_the_query_floor(
    data: Data, batch_size: int
) -> None:
    """The coordinator (the relay) picks the batch size; a batch of one row would give it that
    row's label through the loss. With the default floor (256 rows) every released loss is a
    mean over at least 256 rows, and (exact mode) it is exactly the centralized run's mean over
    the same rows."""
    config = _config(batch_size=batch_size, epochs=1, mode="efficient", chunk_batches=64)
    if batch_size == 128:
        config = _config()  # exact mode, 2 epochs: windows span the epoch boundary
    history, _, _ = _federated(data, config, party_config=PartyConfig())
    floor = PartyConfig().min_query_rows
    assert history.batch_rows and min(history.batch_rows) >= floor
    trained = config.epochs * TRAIN.size
    assert trained - floor < sum(history.batch_rows) <= trained  # a remainder stays inside
    if batch_size == 128:
        central, _, _ = _centralized(data, config)
        expected, rows = _windows(central.batch_losses, central.batch_rows, floor)
        assert history.batch_rows == rows
        np.testing.assert_allclose(history.batch_losses, expected, rtol=EXACT_RTOL)
        assert np.isfinite(history.epoch_losses).all()


def test_efficient_mode_trains(data: Data) -> None:
    history, scores, _ = _federated(
        data, _config(mode="efficient", chunk_batches=4, epochs=3, lr=2e-3)
    )
    assert history.mode == "efficient"
    assert history.epoch_losses[-1] < history.epoch_losses[0] - 0.05
    assert history.valid_losses[-1] < history.valid_losses[0]
    assert roc_auc_score(data.labels[HELD_OUT], scores) > 0.8
    assert len(history.bytes_by_epoch) == 3 and all(b > 0 for b in history.bytes_per_epoch())


def test_pipelined_mode_trains_like_efficient_mode(data: Data) -> None:
    config = _config(mode="efficient", chunk_batches=4, epochs=3, lr=2e-3, pipeline=True)
    history, scores, _ = _federated(data, config)
    assert history.epoch_losses[-1] < history.epoch_losses[0] - 0.05
    assert history.valid_losses[-1] < history.valid_losses[0]
    _, ecommerce_scores, _ = _centralized(data, config, kind="ecommerce_only")
    y = data.labels[HELD_OUT]
    assert roc_auc_score(y, scores) > roc_auc_score(y, ecommerce_scores) + 0.05
    # Against the sequential efficient run: chunk 0 is the same computation, chunk 1 on is
    # embedded before the previous chunk's updates (so it differs); rows and bytes are the same.
    sequential, _, _ = _federated(data, dataclasses.replace(config, pipeline=False))
    assert history.batch_losses[:4] == sequential.batch_losses[:4]
    assert history.batch_losses[4:8] != sequential.batch_losses[4:8]
    assert history.batch_rows == sequential.batch_rows
    assert history.bytes_by_epoch == sequential.bytes_by_epoch


TRAINING_KINDS = frozenset({"forward", "backward_forward", "backward", "train"})


class _Recording:
    """A transport wrapper recording every round trip: ``(requests, replies)`` per call."""

    def __init__(self, inner: InProcessTransport) -> None:
        self.inner = inner
        self.traffic = inner.traffic
        self.rounds: list[tuple[dict[str, Envelope], dict[str, Envelope]]] = []

    def send(self, party: str, envelope: Envelope) -> Envelope:
        return self.send_all({party: envelope})[party]

    def send_all(self, envelopes: dict[str, Envelope]) -> dict[str, Envelope]:
        replies = self.inner.send_all(envelopes)
        self.rounds.append((dict(envelopes), replies))
        return replies

    def close(self) -> None:
        self.inner.close()

    def training_rounds(self) -> list[tuple[dict[str, Envelope], dict[str, Envelope]]]:
        return [r for r in self.rounds if {e.kind for e in r[0].values()} & TRAINING_KINDS]


class _FlowerCodec:
    """Parties called directly, every envelope through the Flower message codec both ways
    (arrays arrive as read-only views of the message bytes, as in a real Flower run)."""

    def __init__(self, parties: dict) -> None:
        self.parties = parties
        self.traffic = InProcessTransport(parties).traffic

    def send(self, party: str, envelope: Envelope) -> Envelope:
        return self.send_all({party: envelope})[party]

    def send_all(self, envelopes: dict[str, Envelope]) -> dict[str, Envelope]:
        wire = {p: content_to_envelope(envelope_to_content(e)) for p, e in envelopes.items()}
        replies = {p: self.parties[p].handle(e) for p, e in wire.items()}
        return {p: content_to_envelope(envelope_to_content(r)) for p, r in replies.items()}


def test_read_only_arrays_from_the_flower_codec_give_the_same_run(data: Data) -> None:
    config = _config(mode="efficient", chunk_batches=3, pipeline=True)
    with InProcessTransport(data.parties()) as transport:
        coordinator = Coordinator(transport, config)
        coordinator.fit(TRAIN)
        expected = coordinator.predict(HELD_OUT)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # e.g. torch's "NumPy array is not writable"
        coordinator = Coordinator(_FlowerCodec(data.parties()), config)  # type: ignore[arg-type]
        coordinator.fit(TRAIN)
        scores = coordinator.predict(HELD_OUT)
    np.testing.assert_array_equal(scores, expected)


@pytest.mark.parametrize(
    ("chunk_batches", "n_chunks", "first_epoch"),
    [
        (12, 1, ["forward", "train", "backward"]),
        (6, 2, ["forward", "forward+train", "backward+train", "backward"]),
        (
            5,
            3,
            ["forward", "forward+train", "backward_forward+train", "backward+train", "backward"],
        ),
        (2, 6, None),
    ],
)
def test_pipelined_round_trips_and_relay(
    data: Data, chunk_batches: int, n_chunks: int, first_epoch: list[str] | None
) -> None:
    recorded: dict[str, list[tuple[dict[str, Envelope], dict[str, Envelope]]]] = {}
    for name, pipeline, valid in (
        ("sequential", False, None),
        ("pipelined", True, None),
        ("pipelined+valid", True, HELD_OUT),
    ):
        config = _config(mode="efficient", chunk_batches=chunk_batches, pipeline=pipeline)
        with InProcessTransport(data.parties()) as inner:
            transport = _Recording(inner)
            Coordinator(transport, config).fit(TRAIN, valid)  # type: ignore[arg-type]
        recorded[name] = transport.training_rounds()
    epochs = 2

    def kinds(rounds: list) -> list[str]:
        return [
            "+".join(r[0][p].kind for p in ("social", "ecommerce") if p in r[0]) for r in rounds
        ]

    assert len(recorded["sequential"]) == epochs * (2 * n_chunks + 1)
    # Without validation one pipeline runs over both epochs: E*n + 2 round trips.
    pipelined = kinds(recorded["pipelined"])
    total = epochs * n_chunks
    assert len(pipelined) == total + 2
    assert pipelined[:2] == ["forward", "forward+train"]
    assert pipelined[2:total] == ["backward_forward+train"] * (total - 2)
    assert pipelined[total:] == ["backward+train", "backward"]
    # Validation needs the parties in sync after every epoch: one pipeline per epoch.
    per_epoch = kinds(recorded["pipelined+valid"])
    assert len(per_epoch) == epochs * (n_chunks + 2)
    assert per_epoch[: n_chunks + 2] == per_epoch[n_chunks + 2 :]  # every epoch alike
    if first_epoch is not None:
        assert per_epoch[: n_chunks + 2] == first_epoch
    for rounds in recorded.values():
        # every relayed array is the other party's reply of the round just before, untouched
        for (requests, _), (_, before) in zip(rounds[1:], rounds[:-1], strict=True):
            for party, source, name in (
                ("ecommerce", "social", msg.EMBEDDINGS),
                ("social", "ecommerce", msg.GRADIENTS),
            ):
                if party in requests and name in requests[party].arrays:
                    assert np.array_equal(requests[party].arrays[name], before[source].arrays[name])

    def trained_rows(rounds) -> np.ndarray:
        return np.concatenate(
            [r[0]["ecommerce"].arrays[msg.POSITIONS] for r in rounds if "ecommerce" in r[0]]
        )

    for name in ("pipelined", "pipelined+valid"):  # the batch order of centralized training
        assert np.array_equal(trained_rows(recorded[name]), trained_rows(recorded["sequential"]))


class _Timed:
    """A party that logs ``(name, kind, start, end)`` of each handle call (plus a short sleep,
    so that two calls running at once surely overlap)."""

    def __init__(self, party: SocialParty | EcommerceParty, log: list) -> None:
        self.party, self.log, self.name = party, log, party.name

    def handle(self, envelope: Envelope) -> Envelope:
        start = time.perf_counter()
        reply = self.party.handle(envelope)
        time.sleep(0.03)
        self.log.append((self.name, envelope.kind, start, time.perf_counter()))
        return reply

    def get_state(self) -> dict[str, np.ndarray]:
        return self.party.get_state()

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        self.party.set_state(state)


@pytest.mark.parametrize("pipeline", [False, True])
def test_parties_compute_at_once_only_when_pipelined(data: Data, pipeline: bool) -> None:
    log: list[tuple[str, str, float, float]] = []
    parties = {name: _Timed(party, log) for name, party in data.parties().items()}  # type: ignore[arg-type]
    config = _config(mode="efficient", chunk_batches=2, epochs=1, pipeline=pipeline)  # 6 chunks
    with InProcessTransport(parties) as transport:  # type: ignore[arg-type]
        Coordinator(transport, config).fit(TRAIN)
    spans = {
        name: [(a, b) for who, kind, a, b in log if who == name and kind in TRAINING_KINDS]
        for name in parties
    }
    assert len(spans["ecommerce"]) == 6
    overlaps = sum(
        a1 < b2 and a2 < b1 for a1, b1 in spans["social"] for a2, b2 in spans["ecommerce"]
    )
    if pipeline:
        assert overlaps >= 3  # 6 rounds carry both parties' work
    else:
        assert overlaps == 0


def test_federated_beats_ecommerce_only_on_held_out_rows(data: Data) -> None:
    config = _config(epochs=3)
    _, federated_scores, _ = _federated(data, config)
    _, ecommerce_scores, _ = _centralized(data, config, kind="ecommerce_only")
    y = data.labels[HELD_OUT]
    federated_auc = roc_auc_score(y, federated_scores)
    ecommerce_auc = roc_auc_score(y, ecommerce_scores)
    assert federated_auc > ecommerce_auc + 0.05, (federated_auc, ecommerce_auc)


@pytest.mark.parametrize("pipeline", [False, True])
def test_same_seed_same_weights_and_scores(data: Data, pipeline: bool) -> None:
    config = _config(mode="efficient", chunk_batches=3, epochs=1, pipeline=pipeline)
    h1, s1, p1 = _federated(data, config)
    h2, s2, p2 = _federated(data, config)
    assert h1.batch_losses == h2.batch_losses
    assert np.array_equal(s1, s2)
    for name in ("social", "ecommerce"):
        state1, state2 = p1[name].get_state(), p2[name].get_state()
        assert state1.keys() == state2.keys()
        for key in state1:
            assert np.array_equal(state1[key], state2[key]), (name, key)
    _, s3, _ = _federated(
        data, _config(mode="efficient", chunk_batches=3, epochs=1, seed=4, pipeline=pipeline)
    )
    assert not np.array_equal(s1, s3)


class _Rebuilt:
    """A stateless host: a fresh party object per message, state carried by get/set_state."""

    def __init__(self, build) -> None:
        self.build = build
        self.name = build().name
        self.state: dict[str, np.ndarray] = {}
        self.most_pending = 0  # most chunks awaiting gradients in any saved state

    def handle(self, envelope: Envelope) -> Envelope:
        party = self.build()
        party.set_state(self.state)
        reply = party.handle(envelope)
        self.state = party.get_state()
        pending = sum(key.endswith(".positions") for key in self.state if key.startswith("pending"))
        self.most_pending = max(self.most_pending, pending)
        return reply

    def get_state(self) -> dict[str, np.ndarray]:
        return self.state

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        self.state = state


@pytest.mark.parametrize("pipeline", [False, True])
def test_stateless_host_gives_the_same_run(data: Data, pipeline: bool) -> None:
    config = _config(mode="efficient", chunk_batches=3, epochs=1, pipeline=pipeline)
    # The default loss floor (256 rows = 2 batches of 3 per message): the loss window left
    # pending between messages is part of the state the rebuilt parties restore.
    reference, ref_scores, _ = _federated(data, config, party_config=PartyConfig())
    parties = {
        "social": _Rebuilt(lambda: SocialParty(data.s_num, data.s_cat)),
        "ecommerce": _Rebuilt(lambda: EcommerceParty(data.e_num, data.e_cat, data.labels)),
    }
    with InProcessTransport(parties) as transport:  # type: ignore[arg-type]
        coordinator = Coordinator(transport, config)
        history = coordinator.fit(TRAIN, HELD_OUT)
        scores = coordinator.predict(HELD_OUT)
    np.testing.assert_allclose(history.batch_losses, reference.batch_losses, rtol=EXACT_RTOL)
    np.testing.assert_allclose(scores, ref_scores, rtol=EXACT_RTOL, atol=1e-6)
    state = parties["social"].state
    assert state["counter.step"][0] == 12 and all(isinstance(v, np.ndarray) for v in state.values())
    assert parties["social"].most_pending == (2 if pipeline else 1)  # the whole FIFO is carried


# ---------------------------------------------------------------------- privacy contract
def _captured_run(data: Data, config: ProtocolConfig):
    """Every message of fit + predict as ``(sender, receiver, bytes, envelope)``."""
    captured: list[tuple[str, str, bytes, Envelope]] = []
    with InProcessTransport(data.parties(), capture=lambda *m: captured.append(m)) as transport:
        coordinator = Coordinator(transport, config)
        coordinator.fit(TRAIN, HELD_OUT)
        coordinator.predict(HELD_OUT)
    return captured, coordinator


def _array_names(captured) -> set[tuple[str, str, str, frozenset[str]]]:
    return {(s, r, env.kind, frozenset(env.arrays)) for s, r, _, env in captured}


@pytest.mark.parametrize("pipeline", [False, True])
def test_privacy_contract(data: Data, pipeline: bool) -> None:
    config = _config(mode="efficient", chunk_batches=2, epochs=1, pipeline=pipeline)
    captured, coordinator = _captured_run(data, config)
    if pipeline:  # pipelining changes the schedule only: the same arrays on the same links
        sequential, _ = _captured_run(data, _config(mode="efficient", chunk_batches=2, epochs=1))
        assert _array_names(captured) == _array_names(sequential)
    kinds = {env.kind for _, _, _, env in captured}
    assert {
        "setup",
        "forward",
        "backward_forward",
        "backward",
        "train",
        "embed",
        "score",
        "evaluate",
    } <= kinds
    d = coordinator.embedding_dim

    # 1. shapes and dtypes of everything that reaches or leaves the social party
    allowed_meta_to_social = {
        "batch_size",
        "n_train",
        "seed",
        "lr",
        "weight_decay",
        "optimizer",
        "compression",
        "pipeline",
        # the architecture (ModelConfig.to_meta: one key per field, generically)
        *ModelConfig().to_meta(),
    }
    for sender, receiver, _, env in captured:
        if "social" not in (sender, receiver):
            continue
        for name, array in env.arrays.items():
            if name in (msg.POSITIONS, msg.TRAIN_POSITIONS):
                assert array.dtype == np.int64 and array.ndim == 1
            elif name in (msg.EMBEDDINGS, msg.GRADIENTS):
                assert array.dtype == np.float32 and array.ndim == 2 and array.shape[1] == d
                assert array.shape[0] <= 2 * config.batch_size or env.kind == "embed"
            else:
                pytest.fail(f"unexpected array {name!r} in {env.kind!r} {sender}->{receiver}")
        if receiver == "social":
            assert set(env.meta) <= allowed_meta_to_social, env.meta

    # 2. no label, no flag, no raw or encoded feature bytes in any buffer, in either direction
    buffers = [data_ for _, _, data_, _ in captured]
    enc_s = FeatureEncoder().fit(data.s_num, data.s_cat, TRAIN)
    enc_e = FeatureEncoder().fit(data.e_num, data.e_cat, TRAIN)
    encoded = [*enc_s.transform(data.s_num, data.s_cat), *enc_e.transform(data.e_num, data.e_cat)]
    y = data.labels
    secrets = [
        y.tobytes(),
        y.astype(np.float64).tobytes(),
        y.astype(np.int64).tobytes(),
        y.astype(np.uint8).tobytes(),
    ]
    batches = [
        e.arrays[msg.POSITIONS] for _, r, _, e in captured if e.kind == "train" and r == "ecommerce"
    ]
    assert batches
    for rows in batches[:3] + [HELD_OUT]:
        secrets += [
            y[rows].tobytes(),
            y[rows].astype(np.uint8).tobytes(),
            y[rows].astype(np.int64).tobytes(),
        ]
        for matrix in (data.s_num, data.e_num):  # e_num[:, 2] is the is_existing_customer flag
            for j in range(matrix.shape[1]):
                secrets.append(np.ascontiguousarray(matrix[rows, j]).tobytes())
        for tensor in encoded:
            for j in range(tensor.shape[1]):
                secrets.append(tensor[rows, j].contiguous().numpy().tobytes())
    for j in range(data.e_num.shape[1]):
        secrets.append(np.ascontiguousarray(data.e_num[:, j]).tobytes())
    secrets.append(np.ascontiguousarray(data.e_num[:, 2]).astype(np.uint8).tobytes())
    for secret in secrets:
        assert len(secret) >= 64
        assert not any(secret in buffer for buffer in buffers)
    # raw categorical strings never cross either (region names are long enough to search for)
    assert not any(b"region-" in buffer or b"category-" in buffer for buffer in buffers)


def test_message_table_blocks_a_leaking_party(data: Data) -> None:
    class Leaky(EcommerceParty):
        def handle(self, envelope: Envelope) -> Envelope:
            reply = super().handle(envelope)
            if envelope.kind == "train":
                arrays = {**reply.arrays, "labels": self._labels.numpy()}
                return Envelope(reply.kind, arrays, reply.meta)
            return reply

    parties = {
        "social": SocialParty(data.s_num, data.s_cat),
        "ecommerce": Leaky(data.e_num, data.e_cat, data.labels),
    }
    with (
        InProcessTransport(parties) as transport,
        pytest.raises(PartyError, match="may not carry array 'labels'"),
    ):
        Coordinator(transport, _config(epochs=1)).fit(TRAIN)


# ---------------------------------------------------------------------- failures
def test_party_error_names_the_party(data: Data) -> None:
    class Broken(SocialParty):
        def handle(self, envelope: Envelope) -> Envelope:
            if envelope.kind == "backward_forward":
                raise RuntimeError("disk full")
            return super().handle(envelope)

    parties = {
        "social": Broken(data.s_num, data.s_cat),
        "ecommerce": EcommerceParty(data.e_num, data.e_cat, data.labels),
    }
    with InProcessTransport(parties) as transport, pytest.raises(PartyError) as info:
        Coordinator(transport, _config(epochs=1)).fit(TRAIN)
    assert info.value.party == "social"
    assert "social" in str(info.value) and "disk full" in str(info.value)


def test_protocol_violation_inside_party_is_party_error(data: Data) -> None:
    parties = data.parties()
    with InProcessTransport(parties) as transport:
        Coordinator(transport, _config(epochs=1)).setup(TRAIN)
        forward = Envelope("forward", {"positions": TRAIN[:10]}, {"batch_size": 10})
        transport.send("social", forward)
        with pytest.raises(PartyError, match="still waits for the gradients"):
            transport.send("social", forward)


def test_pipelined_social_party_queues_two_chunks_oldest_first(data: Data) -> None:
    with InProcessTransport(data.parties()) as transport:
        coordinator = Coordinator(transport, _config(mode="efficient", pipeline=True))
        coordinator.setup(TRAIN)
        d = coordinator.embedding_dim

        def forward(rows: int) -> Envelope:
            envelope = Envelope("forward", {"positions": TRAIN[:rows]}, {"batch_size": 10})
            return transport.send("social", envelope)

        def backward(rows: int) -> Envelope:
            gradients = np.zeros((rows, d), dtype=np.float32)
            return transport.send("social", Envelope("backward", {"gradients": gradients}))

        forward(10)
        forward(20)
        with pytest.raises(PartyError, match=r"gradients of 2 chunk\(s\) \(at most 2 in flight"):
            forward(10)
    with InProcessTransport(data.parties()) as transport:
        Coordinator(transport, _config(mode="efficient", pipeline=True)).setup(TRAIN)
        forward(10)
        forward(20)
        with pytest.raises(PartyError, match=rf"expected \(10, {d}\)"):  # the oldest goes first
            backward(20)
        assert backward(10).meta["step"] == 1
        assert backward(20).meta["step"] == 3
        with pytest.raises(PartyError, match="no pending chunk"):
            backward(10)


@pytest.mark.parametrize("slow_kind", ["train", "score"])  # send() and send_all() paths
def test_slow_party_times_out(data: Data, slow_kind: str) -> None:
    release = threading.Event()

    class Slow(EcommerceParty):
        def handle(self, envelope: Envelope) -> Envelope:
            if envelope.kind == slow_kind:
                release.wait(30)
            return super().handle(envelope)

    parties = {
        "social": SocialParty(data.s_num, data.s_cat),
        "ecommerce": Slow(data.e_num, data.e_cat, data.labels),
    }
    transport = InProcessTransport(parties)
    try:
        coordinator = Coordinator(transport, _config(epochs=1, timeout_s=0.5))
        start = time.perf_counter()
        with pytest.raises(PartyError, match=r"did not answer within 0.5 s") as info:
            coordinator.fit(TRAIN)
            coordinator.predict(HELD_OUT)
        assert time.perf_counter() - start < 5.0
        assert info.value.party == "ecommerce"
        with pytest.raises(PartyError, match="unusable"):
            transport.send("ecommerce", Envelope("hello"))
    finally:
        release.set()
        transport.close()


def test_mismatched_aligned_sizes_are_refused_before_training(data: Data) -> None:
    captured: list[str] = []
    parties = {
        "social": SocialParty(data.s_num, data.s_cat),
        "ecommerce": EcommerceParty(data.e_num[:-1], data.e_cat[:-1], data.labels[:-1]),
    }
    expected = "aligned sizes differ: social has 2000 rows, ecommerce has 1999"
    with (
        InProcessTransport(
            parties, capture=lambda s, r, b, e: captured.append(e.kind)
        ) as transport,
        pytest.raises(ProtocolError, match=expected),
    ):
        Coordinator(transport, _config()).fit(TRAIN)
    assert set(captured) == {"hello"}


def test_bad_inputs_are_refused(data: Data) -> None:
    with pytest.raises(InputError, match="mode"):
        ProtocolConfig(mode="fast")
    with pytest.raises(InputError, match="chunk_batches"):
        ProtocolConfig(mode="exact", chunk_batches=4)
    with pytest.raises(InputError, match=r"pipeline=True with mode='exact'.*set mode='efficient'"):
        ProtocolConfig(mode="exact", pipeline=True)
    with pytest.raises(InputError, match="compression"):
        ProtocolConfig(compression="zip")
    with pytest.raises(InputError, match="timeout_s"):
        ProtocolConfig(timeout_s=0)
    with pytest.raises(InputError, match="labels"):
        EcommerceParty(data.e_num, data.e_cat, data.labels[:-1])
    with pytest.raises(InputError, match="labels"):
        EcommerceParty(data.e_num, data.e_cat, data.labels * 2)
    with InProcessTransport(data.parties()) as transport:
        coordinator = Coordinator(transport, _config())
        with pytest.raises(ProtocolError, match="fit"):
            coordinator.predict(HELD_OUT)
        with pytest.raises(InputError, match="train_positions"):
            coordinator.fit(np.array([0, 5, N_ROWS]))


# ---------------------------------------------------------------------- compression and bytes
def test_codec_roundtrip_error_bounds() -> None:
    rng = np.random.default_rng(1)
    x = (rng.normal(size=(256, 16)) * 1e-5).astype(np.float32)  # gradient-sized values
    assert unpack(pack("g", x, "none"), "g") is x or np.array_equal(
        unpack(pack("g", x, "none"), "g"), x
    )
    half = unpack(pack("g", x, "float16"), "g")
    np.testing.assert_allclose(half, x, rtol=1e-3, atol=np.abs(x).max() * 1e-3)
    packed = pack("g", x, "int8")
    assert packed["g"].dtype == np.int8 and packed["g_scale"].shape == (1,)
    assert np.abs(unpack(packed, "g") - x).max() <= np.abs(x).max() / 127 / 2 * 1.0001
    with pytest.raises(ProtocolError, match="non-finite"):
        pack("g", np.array([[np.inf]], dtype=np.float32), "int8")


def test_compression_cuts_embedding_bytes(data: Data) -> None:
    per_mode = {}
    for compression in ("none", "float16", "int8"):
        history, scores, _ = _federated(
            data, _config(mode="efficient", chunk_batches=4, epochs=1, compression=compression)
        )
        per_mode[compression] = (history, scores)
    sent = {c: h.bytes_by_epoch[0]["social->coordinator"] for c, (h, _) in per_mode.items()}
    back = {c: h.bytes_by_epoch[0]["ecommerce->coordinator"] for c, (h, _) in per_mode.items()}
    # embeddings: 1500 rows x 16 floats x 4 bytes; compressed adds one 4-byte scale per message
    assert sent["none"] == 1500 * 16 * 4 and back["none"] == 1500 * 16 * 4
    assert 1.99 < sent["none"] / sent["float16"] <= 2.0
    assert 3.98 < sent["none"] / sent["int8"] <= 4.0
    assert 1.99 < back["none"] / back["float16"] <= 2.0
    assert 3.98 < back["none"] / back["int8"] <= 4.0
    # compressed runs still train like the uncompressed one
    base_losses = np.array(per_mode["none"][0].batch_losses)
    for compression in ("float16", "int8"):
        losses = np.array(per_mode[compression][0].batch_losses)
        np.testing.assert_allclose(losses, base_losses, rtol=0.05)


def test_other_layers_kinds_pass_the_transport() -> None:
    """PSI envelopes (``fedads.align``) share the transport; the table governs only its kinds."""

    class Echo:
        name = "social"

        def handle(self, envelope: Envelope) -> Envelope:
            return Envelope("psi_hello", {"blob": np.arange(3, dtype=np.int64)}, {"n_keys": 3})

        def get_state(self) -> dict[str, np.ndarray]:
            return {}

        def set_state(self, state: dict[str, np.ndarray]) -> None:
            pass

    with InProcessTransport({"social": Echo()}) as transport:  # type: ignore[dict-item]
        assert transport.send("social", Envelope("psi_start")).kind == "psi_hello"
        assert transport.traffic.by_link[("social", "coordinator")] == 24
    assert msg.check_envelope(Envelope("psi_start"), "social", reply=False) is None
    assert "unknown" in str(
        msg.check_envelope(Envelope("psi_start"), "social", reply=False, strict=True)
    )
    with (
        InProcessTransport({"social": Echo()}) as transport,
        pytest.raises(PartyError, match="with"),
    ):
        transport.send("social", Envelope("embed", {"positions": np.arange(2)}))
