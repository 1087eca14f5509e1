"""The tower zoo and user-defined towers: shapes, seeded determinism, a few training steps per
family, settings that name towers, and a custom tower in the federation equal to the centralized
reference. The same custom towers, named ``"test_zoo:tiny_bottom"`` / ``"test_zoo:tiny_top"``,
train through Flower's simulation engine with the in-process scores on the suite's one shared
Flower run (tests/test_flower_equivalence.py): keep those names."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score
from torch import nn

from fedads.errors import InputError
from fedads.models import (
    ZOO,
    FeatureEncoder,
    ModelConfig,
    TowerSpec,
    TrainConfig,
    build_bottom,
    build_model,
    build_top,
    predict_local,
    resolve_bottom,
    resolve_top,
    train_local,
)

FAMILIES = sorted(ZOO)
SPECS = {
    "mixed": TowerSpec(3, (5, 4)),
    "numeric_only": TowerSpec(4, ()),
    "categorical_only": TowerSpec(0, (3, 7, 2)),
}


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():
    """Tiny batches: one intra-op thread is faster and immune to a loaded machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ------------------------------------------------------------------ a user-defined tower
class TinyBottom(nn.Module):
    """A user's bottom: categorical embeddings + numeric columns -> one tanh layer -> ``[b, 6]``."""

    output_dim = 6

    def __init__(self, spec: TowerSpec) -> None:
        super().__init__()
        self.cards = tuple(spec.cardinalities)
        self.embeddings = nn.ModuleList(nn.Embedding(c, 3) for c in self.cards)
        self.linear = nn.Linear(spec.n_numeric + 3 * len(self.cards), self.output_dim)

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        parts = [numeric] + [emb(categorical[:, i]) for i, emb in enumerate(self.embeddings)]
        return torch.tanh(self.linear(torch.cat(parts, dim=1)))


def tiny_bottom(spec: TowerSpec, config: ModelConfig) -> nn.Module:
    return TinyBottom(spec)


def tiny_top(input_dim: int, config: ModelConfig) -> nn.Module:
    return nn.Sequential(nn.Linear(input_dim, 8), nn.ReLU(), nn.Linear(8, 1))  # logits [b, 1]


USER_TOWERS = ModelConfig(
    social_bottom=f"{__name__}:tiny_bottom",
    ecommerce_bottom="dcn_v2",
    top=f"{__name__}:tiny_top",
)


# ------------------------------------------------------------------ helpers
def _inputs(spec: TowerSpec, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    numeric = torch.randn(n, spec.n_numeric, generator=generator)
    categorical = (
        torch.stack(
            [torch.randint(0, c, (n,), generator=generator) for c in spec.cardinalities], dim=1
        )
        if spec.cardinalities
        else torch.zeros(n, 0, dtype=torch.int64)
    )
    return numeric, categorical


def _tiny_table(n: int = 1200, seed: int = 0) -> tuple[dict, np.ndarray]:
    """Two parties' raw features with a learnable label (a numeric signal, a categorical one and
    an interaction across the parties)."""
    rng = np.random.default_rng(seed)
    social_num = rng.normal(size=(n, 2)).astype(np.float32)
    social_cat = np.array(list("abcd"))[rng.integers(0, 4, n)][:, None]
    shop_num = rng.normal(size=(n, 2)).astype(np.float32)
    logit = (
        1.5 * social_num[:, 0]
        - 1.0 * shop_num[:, 1]
        + 1.2 * (social_cat[:, 0] == "b")
        + 0.8 * social_num[:, 1] * shop_num[:, 0]
        - 0.5
    )
    labels = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.float32)
    raw = {"social": (social_num, social_cat), "ecommerce": (shop_num, np.empty((n, 0), object))}
    return raw, labels


# ------------------------------------------------------------------ per family
@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("spec_name", sorted(SPECS))
def test_zoo_bottom_and_top_shapes(family: str, spec_name: str) -> None:
    spec = SPECS[spec_name]
    config = ModelConfig(embedding_dim=5)
    bottom = build_bottom("social", spec, config, seed=0, factory=resolve_bottom(family))
    out = bottom(*_inputs(spec, 7))
    assert out.shape == (7, 5) and out.dtype == torch.float32
    top = build_top(11, config, seed=0, factory=resolve_top(family))
    logits = top(torch.randn(7, 11))
    assert logits.shape == (7,) and torch.isfinite(logits).all()


@pytest.mark.parametrize("family", FAMILIES)
def test_zoo_init_is_seeded_and_leaves_callers_rng_alone(family: str) -> None:
    config = ModelConfig(social_bottom=family, ecommerce_bottom=family, top=family)
    specs = {"social": SPECS["mixed"], "ecommerce": SPECS["numeric_only"]}
    torch.manual_seed(123)
    expected_draw = torch.rand(1)
    torch.manual_seed(123)
    first = build_model("centralized", specs, config, seed=3).state_dict()
    assert torch.equal(torch.rand(1), expected_draw)  # building did not consume the caller's RNG
    second = build_model("centralized", specs, config, seed=3).state_dict()
    other = build_model("centralized", specs, config, seed=4).state_dict()
    assert first.keys() == second.keys()
    assert all(torch.equal(first[k], second[k]) for k in first)
    assert any(not torch.equal(first[k], other[k]) for k in first if first[k].is_floating_point())


@pytest.mark.parametrize("family", [*FAMILIES, "user"])
def test_zoo_family_learns_a_tiny_table(family: str) -> None:
    raw, labels = _tiny_table()
    n = labels.size
    train, test = np.arange(0, 800), np.arange(800, n)
    inputs, specs = {}, {}
    for party, (numeric, categorical) in raw.items():
        encoder = FeatureEncoder().fit(numeric, categorical, train)
        inputs[party], specs[party] = encoder.transform(numeric, categorical), encoder.spec
    config = (
        USER_TOWERS
        if family == "user"
        else ModelConfig(social_bottom=family, ecommerce_bottom=family, top=family)
    )
    model = build_model("centralized", specs, config, seed=0)
    history = train_local(
        model, inputs, labels, train, TrainConfig(epochs=4, batch_size=64, lr=5e-3, seed=0)
    )
    assert history.epoch_losses[-1] < history.epoch_losses[0]
    auc = roc_auc_score(labels[test], predict_local(model, inputs, test))
    assert auc > 0.7, f"{family}: held-out AUC {auc:.3f}"


# ------------------------------------------------------------------ settings
def test_model_config_names_towers_and_round_trips_through_meta() -> None:
    config = ModelConfig(
        social_bottom="deepfm",
        ecommerce_bottom=f"{__name__}:tiny_bottom",
        top="dcn_v2",
        cross_layers=3,
    )
    meta = config.to_meta()
    assert all(isinstance(v, int | float | str) for v in meta.values())
    assert ModelConfig.from_meta(meta) == config
    # metas written before the tower fields existed still load, with the MLP defaults
    old = {
        k: meta[k] for k in ("embedding_dim", "bottom_hidden", "cat_embedding_dim", "top_hidden")
    }
    assert ModelConfig.from_meta(old).top == "mlp"


@pytest.mark.parametrize(
    ("field", "value", "says"),
    [
        ("top", "resnet", "not a zoo tower"),
        ("social_bottom", "no_colon_module:", "module:attr"),
        ("ecommerce_bottom", "", "not a tower name"),
        ("cross_layers", -1, "cross_layers"),
    ],
)
def test_model_config_rejects_bad_tower_settings(field: str, value: object, says: str) -> None:
    with pytest.raises(InputError, match=says):
        ModelConfig(**{field: value}).validate()


def test_unimportable_tower_fails_with_a_fix() -> None:
    with pytest.raises(InputError, match="PYTHONPATH"):
        resolve_bottom("no_such_module_xyz:factory")
    with pytest.raises(InputError, match="no attribute"):
        resolve_top(f"{__name__}:missing_factory")


# ------------------------------------------------------------------ through the federation
@pytest.fixture(scope="module")
def small_world_tables():
    from fedads.world import WorldConfig, generate_world

    return generate_world(WorldConfig(n_users=1500, seed=0)).party_tables()


def _settings():
    from fedads.federation import FederationSettings
    from fedads.protocol import ProtocolConfig

    protocol = ProtocolConfig(
        mode="exact",
        # 256: 3 batches an epoch at this size; exact mode is a Flower round trip per batch.
        batch_size=256,
        epochs=2,
        lr=5e-3,
        seed=1,
        model=USER_TOWERS,
        # True gradients: exact mode then equals the centralized reference (the default label
        # defense adds noise the centralized model does not have).
        defense="none",
    )
    return FederationSettings(protocol=protocol, verbose=False)


@pytest.fixture(scope="module")
def inprocess_run(small_world_tables):
    """The federation with the user-defined towers, in process (shared by the tests below)."""
    from fedads.federation import run_federated

    social, ecommerce = small_world_tables
    # One torch thread, as in Flower's Ray workers: float sums in the same order, so the two
    # backends can be compared bit for bit.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return run_federated(social, ecommerce, _settings(), backend="inprocess")
    finally:
        torch.set_num_threads(threads)


def test_user_tower_federated_equals_centralized_reference(
    small_world_tables, inprocess_run
) -> None:
    """Parties and the experimenter's references build from the same settings: exact mode with a
    user-defined tower gives the centralized model's scores."""
    from fedads.experiment import train_references

    social, ecommerce = small_world_tables
    run = inprocess_run
    train = np.asarray(run.values["train_positions"])
    test = np.asarray(run.values["test_positions"])
    references = train_references(
        social,
        ecommerce,
        run.social_rows,
        run.ecommerce_rows,
        train,
        test,
        _settings(),
        ("centralized",),
    )
    np.testing.assert_allclose(
        run.values["scores"], references["centralized"], rtol=1e-5, atol=1e-7
    )
