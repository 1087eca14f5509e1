"""Feature encoding, split-model building blocks, seeded builders, batch plan, local trainer."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from fedads.errors import InputError
from fedads.models import (
    MODEL_KINDS,
    BottomTower,
    EncoderConfig,
    FeatureEncoder,
    ModelConfig,
    SplitModel,
    TopHead,
    TowerSpec,
    TrainConfig,
    batch_plan,
    build_bottom,
    build_model,
    count_parameters,
    make_optimizer,
    predict_local,
    train_local,
)


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny batches: one intra-op thread is faster and immune to a loaded machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _party_arrays(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    numeric = np.stack(
        [
            rng.normal(size=n),  # symmetric: standardized only
            rng.poisson(1.0, size=n) ** 3,  # count-like, skewed: log1p
            rng.normal(5.0, 2.0, size=n),  # gets NaNs below
        ],
        axis=1,
    ).astype(np.float32)
    numeric[rng.random(n) < 0.2, 2] = np.nan
    categorical = np.stack(
        [
            np.array(list("abcd"))[rng.integers(0, 4, n)],
            np.array([f"r{i}" for i in rng.integers(0, 12, n)]),
        ],
        axis=1,
    )
    return numeric, categorical


# ---------------------------------------------------------------------- encoder
def test_encoder_numeric_fill_log_standardize() -> None:
    numeric, categorical = _party_arrays()
    train = np.arange(300)
    enc = FeatureEncoder().fit(numeric, categorical, train)
    assert enc.log_columns.tolist() == [False, True, False]
    median = np.nanmedian(numeric[train, 2].astype(np.float64))
    assert enc.median[2] == pytest.approx(median)

    num, cat = enc.transform(numeric, categorical)
    assert num.dtype == torch.float32 and num.shape == (400, 3)
    assert cat.dtype == torch.int64 and cat.shape == (400, 2)
    assert torch.isfinite(num).all()
    on_train = num[torch.from_numpy(train)].double()
    assert torch.allclose(on_train.mean(0), torch.zeros(3, dtype=torch.float64), atol=1e-5)
    assert torch.allclose(
        on_train.std(0, unbiased=False), torch.ones(3, dtype=torch.float64), atol=1e-4
    )
    # a missing value becomes the (standardized) train median
    missing = np.flatnonzero(np.isnan(numeric[:, 2]))[0]
    expected = (median - enc.mean[2]) / enc.std[2]
    assert float(num[missing, 2]) == pytest.approx(expected, rel=1e-5)


def test_encoder_uses_train_rows_only_and_oov_is_zero() -> None:
    numeric, categorical = _party_arrays()
    train = np.arange(300)
    enc = FeatureEncoder().fit(numeric, categorical, train)

    # changing held-out rows changes nothing in the fit
    numeric2, categorical2 = numeric.copy(), categorical.copy()
    numeric2[300:] = 1e6
    categorical2[300:, 0] = "never-seen"
    enc2 = FeatureEncoder().fit(numeric2, categorical2, train)
    for key, value in enc.get_state().items():
        np.testing.assert_array_equal(value, enc2.get_state()[key])

    num, cat = enc2.transform(numeric2, categorical2)
    assert (cat[300:, 0] == 0).all()  # unseen category -> OOV code 0
    assert (cat[:300, 0] > 0).all()
    assert float(num[300:].abs().max()) <= EncoderConfig().clip  # extreme values are clipped
    assert enc.cardinalities == (5, 13)
    assert enc.spec == TowerSpec(3, (5, 13))


def test_encoder_min_count_deterministic_and_state_roundtrip() -> None:
    numeric, categorical = _party_arrays()
    categorical[0, 1] = "rare-ü"  # non-ASCII survives the byte encoding
    train = np.arange(400)
    enc = FeatureEncoder(EncoderConfig(min_count=2)).fit(numeric, categorical, train)
    num, cat = enc.transform(numeric, categorical)
    assert cat[0, 1] == 0  # seen once < min_count -> OOV

    again = FeatureEncoder(EncoderConfig(min_count=2)).fit(numeric, categorical, train)
    num2, cat2 = again.transform(numeric, categorical)
    assert torch.equal(num, num2) and torch.equal(cat, cat2)

    restored = FeatureEncoder.from_state(enc.get_state())
    num3, cat3 = restored.transform(numeric, categorical)
    assert torch.equal(num, num3) and torch.equal(cat, cat3)
    assert restored.cardinalities == enc.cardinalities

    enc_plain = FeatureEncoder().fit(numeric, categorical, train)
    state = FeatureEncoder.from_state(enc_plain.get_state())
    assert state.transform(numeric, categorical, rows=np.array([5, 0]))[1][1, 1] > 0


def test_encoder_rejects_bad_input() -> None:
    numeric, categorical = _party_arrays()
    with pytest.raises(InputError, match="row positions"):
        FeatureEncoder().fit(numeric, categorical, np.array([0, 400]))
    with pytest.raises(InputError, match="2-D"):
        FeatureEncoder().fit(numeric[:, 0], categorical, np.arange(10))
    enc = FeatureEncoder().fit(numeric, None, np.arange(10))
    assert enc.cardinalities == ()
    with pytest.raises(InputError, match="fitted on"):
        enc.transform(numeric[:, :2], None)


# ---------------------------------------------------------------------- modules
def test_module_shapes_and_one_sided_inputs() -> None:
    tower = BottomTower(3, (5, 13), embedding_dim=7, hidden=(16,), cat_embedding_dim=4)
    num = torch.randn(9, 3)
    cat = torch.randint(0, 5, (9, 2))
    assert tower(num, cat).shape == (9, 7)
    assert BottomTower(0, (5,), embedding_dim=3)(torch.zeros(4, 0), cat[:4, :1]).shape == (4, 3)
    assert BottomTower(3, (), embedding_dim=3)(num, torch.zeros(9, 0, dtype=torch.int64)).shape == (
        9,
        3,
    )
    assert TopHead(14, hidden=(8, 4))(torch.randn(9, 14)).shape == (9,)
    with pytest.raises(InputError):
        BottomTower(0, ())
    model = SplitModel(
        {"social": tower, "ecommerce": BottomTower(2, (), embedding_dim=5)}, TopHead(12)
    )
    out = model(
        {
            "social": (num, cat),
            "ecommerce": (torch.randn(9, 2), torch.zeros(9, 0, dtype=torch.int64)),
        }
    )
    assert out.shape == (9,)


SPECS = {"social": TowerSpec(3, (5, 13)), "ecommerce": TowerSpec(4, (9,))}


def _weights(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_seeded_builders_same_weights_everywhere() -> None:
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = build_model("federated", SPECS, seed=7)
    after = torch.rand(3)
    assert torch.equal(before, after), "building a model must not disturb the caller's RNG"

    b = build_model("centralized", SPECS, seed=7)
    for (ka, va), (kb, vb) in zip(_weights(a).items(), _weights(b).items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    # the same party's bottom is identical in every model kind that has it
    e_only = build_model("ecommerce_only", SPECS, seed=7)
    s_only = build_model("social_only", SPECS, seed=7)
    for name, one in (("ecommerce", e_only), ("social", s_only)):
        for key, value in _weights(one.bottoms[name]).items():
            assert torch.equal(value, _weights(a.bottoms[name])[key])
    # and equals what a party builds on its own
    alone = build_bottom("social", SPECS["social"], ModelConfig(), seed=7)
    for key, value in _weights(alone).items():
        assert torch.equal(value, _weights(a.bottoms["social"])[key])
    # a different seed gives different weights
    c = build_model("federated", SPECS, seed=8)
    assert not torch.equal(_weights(a)["top.mlp.0.weight"], _weights(c)["top.mlp.0.weight"])


def test_matched_capacity() -> None:
    models = {kind: build_model(kind, SPECS, seed=0) for kind in MODEL_KINDS}
    fed = models["federated"]
    assert count_parameters(fed) == count_parameters(models["centralized"])
    top_extra = ModelConfig().embedding_dim * ModelConfig().top_hidden[0]  # first top layer
    for kind, absent in (("ecommerce_only", "social"), ("social_only", "ecommerce")):
        expected = count_parameters(fed) - count_parameters(fed.bottoms[absent]) - top_extra
        assert count_parameters(models[kind]) == expected
        assert [m.out_features for m in models[kind].top.modules() if isinstance(m, nn.Linear)] == [
            64,
            32,
            1,
        ]


def test_custom_modules_are_pluggable() -> None:
    class Linear(nn.Module):  # no output_dim attribute: probed
        def __init__(self, spec: TowerSpec, config: ModelConfig) -> None:
            super().__init__()
            self.fc = nn.Linear(spec.n_numeric, 5)

        def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
            return self.fc(numeric)

    class Top(nn.Module):
        def __init__(self, width: int, config: ModelConfig) -> None:
            super().__init__()
            self.fc = nn.Linear(width, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(x)  # [b, 1] is accepted

    model = build_model(
        "federated", SPECS, seed=1, bottom_factories={"social": Linear}, top_factory=Top
    )
    assert model.top.fc.in_features == 5 + ModelConfig().embedding_dim
    again = build_model(
        "federated", SPECS, seed=1, bottom_factories={"social": Linear}, top_factory=Top
    )
    assert torch.equal(model.bottoms["social"].fc.weight, again.bottoms["social"].fc.weight)
    batch = {
        "social": (torch.randn(6, 3), torch.zeros(6, 2, dtype=torch.int64)),
        "ecommerce": (torch.randn(6, 4), torch.zeros(6, 1, dtype=torch.int64)),
    }
    assert model(batch).shape == (6,)


# ---------------------------------------------------------------------- batch plan and trainer
def test_batch_plan() -> None:
    rows = np.arange(10, 110)
    plan = batch_plan(rows, 32, 3, seed=5)
    assert len(plan) == 3 * 4 and [b.size for b in plan[:4]] == [32, 32, 32, 4]
    for epoch in range(3):
        covered = np.concatenate(plan[epoch * 4 : (epoch + 1) * 4])
        assert np.array_equal(np.sort(covered), rows)
    assert not np.array_equal(plan[0], plan[4])
    same = batch_plan(rows, 32, 3, seed=5)
    assert all(np.array_equal(a, b) for a, b in zip(plan, same, strict=True))
    assert not np.array_equal(batch_plan(rows, 32, 1, seed=6)[0], plan[0])
    with pytest.raises(InputError, match="repeated"):
        batch_plan(np.array([1, 2, 2]), 2, 1, 0)


def _toy(n: int = 600) -> tuple[dict[str, tuple[torch.Tensor, torch.Tensor]], np.ndarray, dict]:
    numeric, categorical = _party_arrays(n, seed=3)
    enc = FeatureEncoder().fit(numeric, categorical, np.arange(n))
    num, cat = enc.transform(numeric, categorical)
    logit = 2.0 * num[:, 0] + (cat[:, 0] == 1).float() * 2.0 - 0.5
    labels = (
        (torch.rand(n, generator=torch.Generator().manual_seed(0)) < torch.sigmoid(logit))
        .float()
        .numpy()
    )
    return {"social": (num, cat)}, labels, {"social": enc.spec, "ecommerce": TowerSpec(1, ())}


def test_train_local_learns_and_is_deterministic() -> None:
    inputs, labels, specs = _toy()
    config = TrainConfig(epochs=4, batch_size=64, lr=1e-2, seed=2)
    model = build_model("social_only", specs, seed=2)
    history = train_local(
        model, inputs, labels, np.arange(500), config, valid_rows=np.arange(500, 600)
    )
    assert history.mode == "local" and len(history.batch_losses) == 4 * 8
    assert history.epoch_losses[-1] < history.epoch_losses[0] - 0.05
    assert len(history.valid_losses) == 4 and len(history.epoch_seconds) == 4
    scores = predict_local(model, inputs, np.arange(500, 600))
    assert scores.dtype == np.float32 and scores.shape == (100,)
    assert ((scores > 0) & (scores < 1)).all()

    twin = build_model("social_only", specs, seed=2)
    history2 = train_local(twin, inputs, labels, np.arange(500), config)
    assert history2.batch_losses == history.batch_losses
    assert np.array_equal(predict_local(twin, inputs, np.arange(500, 600)), scores)


def test_train_config_validation() -> None:
    with pytest.raises(InputError, match="batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(InputError, match="optimizer"):
        TrainConfig(optimizer="lbfgs")
    with pytest.raises(InputError, match="lr"):
        TrainConfig(lr=-1.0)
    with pytest.raises(InputError, match="embedding_dim"):
        ModelConfig(embedding_dim=0).validate()
    with pytest.raises(InputError, match="kind"):
        build_model("both", SPECS)
    inputs, labels, _ = _toy(50)
    with pytest.raises(InputError, match="labels"):
        train_local(nn.Linear(1, 1), inputs, labels[:10], np.arange(10), TrainConfig())


@pytest.mark.parametrize(
    ("rule", "weight_decay"),
    [("adam", 0.0), ("adam", 0.01), ("adamw", 0.01), ("sgd", 0.0), ("sgd", 0.01)],
)
def test_optimizer_is_torch_optim_bit_for_bit(rule: str, weight_decay: float) -> None:
    """fedads's optimizer (no torch._dynamo import) gives exactly torch.optim's updates,
    through a state_dict round trip in the middle and with a parameter that gets no gradient."""
    reference_class = {"adam": torch.optim.Adam, "adamw": torch.optim.AdamW,
                       "sgd": torch.optim.SGD}[rule]  # fmt: skip

    def model() -> nn.Module:
        torch.manual_seed(3)
        return nn.Sequential(nn.Linear(5, 4), nn.ReLU(), nn.Linear(4, 1), nn.Linear(1, 1))

    ours_model, torch_model = model(), model()
    ours = make_optimizer(ours_model.parameters(), rule, 0.05, weight_decay)
    theirs = reference_class(torch_model.parameters(), lr=0.05, weight_decay=weight_decay,
                             foreach=False)  # fmt: skip
    data = torch.randn(20, 64, 5, generator=torch.Generator().manual_seed(0))
    for step, x in enumerate(data):
        for net, opt in ((ours_model, ours), (torch_model, theirs)):
            opt.zero_grad(set_to_none=True)
            net[:3](x).square().mean().backward()  # the last layer never gets a gradient
            opt.step()
        if step == 9:  # restore into fresh optimizers, as a party's set_state does
            saved = ours.state_dict()
            ours = make_optimizer(ours_model.parameters(), rule, 0.05, weight_decay)
            ours.load_state_dict(
                {"state": {i: {k: torch.tensor(v.numpy()) for k, v in slots.items()}
                           for i, slots in saved["state"].items()},
                 "param_groups": saved["param_groups"]}
            )  # fmt: skip
    for a, b in zip(ours_model.parameters(), torch_model.parameters(), strict=True):
        assert torch.equal(a, b)
    torch_state = theirs.state_dict()["state"]
    assert sorted(ours.state_dict()["state"]) == sorted(torch_state)
    for index, slots in torch_state.items():
        for name, value in slots.items():
            if value is not None:
                mine = ours.state_dict()["state"][index][name]
                assert mine.dtype == value.dtype and torch.equal(mine, value), (index, name)
