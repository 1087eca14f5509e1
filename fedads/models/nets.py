"""The split model: one bottom model per party, one top head at the label holder.

Shapes:
    bottom(numeric float32 [b, n_num], categorical int64 [b, n_cat]) -> embedding float32 [b, d]
    top(concatenated embeddings float32 [b, sum d]) -> logits float32 [b]

The top always sees the embeddings in :data:`PARTY_ORDER` (``[H_social, H_ecommerce]``), both in
:class:`SplitModel` and in the federated protocol, so the two compute the same function.

Pluggability: any ``torch.nn.Module`` called as ``module(numeric, categorical)`` that returns
``[b, d]`` can be a bottom, and any module mapping ``[b, sum d]`` to logits ``[b]`` (or ``[b, 1]``)
can be a top. Name them in :class:`ModelConfig` (``social_bottom``, ``ecommerce_bottom``,
``top``: a zoo name from :mod:`fedads.models.zoo` or an importable ``"module:attr"`` factory),
which every runner builds from; a factory object given to :func:`build_bottom` / :func:`build_top`
(or to the parties' :class:`~fedads.protocol.parties.PartyConfig`) overrides the name, for that
process only. A module may expose ``output_dim``, otherwise it is probed with one zero row.

Seeded init: every component is constructed inside :func:`seeded` with a seed derived from the run
seed and the component's name (``derive_seed(seed, "bottom", "social")``, ``derive_seed(seed,
"top")``). Construction uses torch's default initializers under a scoped, restored global RNG, so
the same seed gives bit-identical weights in every runner (federated parties, centralized model,
baselines) and does not disturb the caller's RNG.

Matched capacity (the four models compared by ``fedads.eval``):
    ``federated``       social bottom + ecommerce bottom + top over ``[H_s, H_e]`` (the protocol)
    ``centralized``     the same architecture and init, trained in one process (:class:`SplitModel`)
    ``ecommerce_only``  ecommerce bottom + top over ``H_e``
    ``social_only``     social bottom + top over ``H_s``
Each party's bottom tower is identical (same config, same seed) in every model that uses it, and
the top head has the same hidden widths everywhere; a one-party model differs only by the absent
tower (whose parameters could only read the other party's features) and the top's input width.
So any gap between ``federated`` and a one-party model comes from the other party's features, not
from a larger network. :func:`count_parameters` reports the sizes.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from fedads._flat import flatten, unflatten
from fedads._validation import check_choice, check_positive_int, fail
from fedads.models.features import TowerSpec

SOCIAL = "social"
ECOMMERCE = "ecommerce"
PARTY_ORDER: tuple[str, ...] = (SOCIAL, ECOMMERCE)
"""Order of the embeddings in the top's input."""

MODEL_KINDS: dict[str, tuple[str, ...]] = {
    "federated": (SOCIAL, ECOMMERCE),
    "centralized": (SOCIAL, ECOMMERCE),
    "ecommerce_only": (ECOMMERCE,),
    "social_only": (SOCIAL,),
}
"""Model kind -> parties whose bottoms it has (in top-input order)."""

BottomFactory = Callable[[TowerSpec, "ModelConfig"], nn.Module]
TopFactory = Callable[[int, "ModelConfig"], nn.Module]


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the split model (same for every runner).

    Attributes:
        embedding_dim: width ``d`` of each bottom's output (default 16).
        bottom_hidden: hidden layer widths of each bottom's MLP (default ``(64,)``).
        cat_embedding_dim: width of each categorical column's embedding (default 8; also the
            number of FM factors of the ``deepfm`` towers).
        top_hidden: hidden layer widths of the top's MLP (default ``(64, 32)``).
        social_bottom, ecommerce_bottom: each party's bottom tower: a zoo name (``"mlp"``,
            default; ``"wide_deep"``, ``"deepfm"``, ``"dcn_v2"``) or an importable
            ``"module:attr"`` bottom factory ``(TowerSpec, ModelConfig) -> nn.Module`` (see
            :mod:`fedads.models.zoo`).
        top: the top tower, a zoo name or a ``"module:attr"`` top factory
            ``(input_dim, ModelConfig) -> nn.Module`` (default ``"mlp"``).
        cross_layers: cross layers of the ``dcn_v2`` towers (default 2).

    Every field is a plain str, int or tuple of ints, so the whole architecture travels as
    strings through Flower's run config and the setup message, and every runner (federated
    parties, centralized model, one-party references) builds the same function from it.
    """

    embedding_dim: int = 16
    bottom_hidden: tuple[int, ...] = (64,)
    cat_embedding_dim: int = 8
    top_hidden: tuple[int, ...] = (64, 32)
    social_bottom: str = "mlp"
    ecommerce_bottom: str = "mlp"
    top: str = "mlp"
    cross_layers: int = 2

    def validate(self) -> ModelConfig:
        where = "ModelConfig"
        check_positive_int(where, "embedding_dim", self.embedding_dim)
        check_positive_int(where, "cat_embedding_dim", self.cat_embedding_dim)
        for name in ("bottom_hidden", "top_hidden"):
            widths = getattr(self, name)
            if not isinstance(widths, tuple | list):
                raise fail(
                    where,
                    f"{name}={widths!r} is not a tuple",
                    "give a tuple of layer widths, e.g. (64, 32)",
                )
            for width in widths:
                check_positive_int(where, name, width)
        check_positive_int(where, "cross_layers", self.cross_layers, minimum=0)
        from fedads.models.zoo import check_tower_spec  # the zoo imports this module

        for name in ("social_bottom", "ecommerce_bottom", "top"):
            check_tower_spec(where, name, getattr(self, name))
        return self

    def bottom_spec(self, party: str) -> str:
        """The tower spec of ``party``'s bottom (``"mlp"`` for a party without a field)."""
        return str(getattr(self, f"{party}_bottom", "mlp"))

    def to_meta(self) -> dict[str, int | float | str | bool]:
        """Scalars for an envelope's meta, one key per field (hidden widths as ``"64,32"``).

        Generic over the fields (:func:`fedads._flat.flatten`), so a new field travels too.
        """
        return flatten(self, style="field")

    @classmethod
    def from_meta(cls, meta: Mapping[str, object]) -> ModelConfig:
        """Inverse of :meth:`to_meta` (other keys ignored, missing fields at defaults)."""
        return unflatten(cls, meta, style="field").validate()


# ---------------------------------------------------------------------- seeding
_SEED_LOCK = threading.Lock()


def derive_seed(seed: int, *names: str) -> int:
    """A 63-bit seed that depends only on ``seed`` and ``names`` (stable across processes)."""
    digest = hashlib.sha256("/".join([str(int(seed)), *names]).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Run the block with torch's CPU RNG seeded to ``seed``; the previous RNG state is restored.

    Serialized by a lock, so two parties building models in two threads cannot interleave.
    """
    with _SEED_LOCK, torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


# ---------------------------------------------------------------------- modules
def _mlp(in_dim: int, hidden: Sequence[int], out_dim: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    width = in_dim
    for h in hidden:
        layers += [nn.Linear(width, int(h)), nn.ReLU()]
        width = int(h)
    layers.append(nn.Linear(width, out_dim))
    return nn.Sequential(*layers)


def check_inputs(where: str, n_numeric: int, cardinalities: Sequence[int]) -> list[int]:
    """Validate a bottom's input description; return the cardinalities as ints."""
    cards = [int(c) for c in cardinalities]
    if n_numeric < 0 or any(c < 1 for c in cards):
        raise fail(
            where,
            f"n_numeric={n_numeric}, cardinalities={cards}",
            "give n_numeric >= 0 and cardinalities >= 1",
        )
    if n_numeric == 0 and not cards:
        raise fail(where, "no input columns", "give the party at least one numeric or categorical")
    return cards


class BottomTower(nn.Module):
    """A party's bottom model: categorical embeddings + numeric columns -> MLP -> ``[b, d]``.

    All categorical columns share one embedding table (each column gets its own row range via an
    offset), so a forward pass is one lookup regardless of the number of columns.

    Args:
        n_numeric: numeric input width.
        cardinalities: per categorical column, number of codes (including OOV code 0).
        embedding_dim: output width ``d``.
        hidden: hidden layer widths.
        cat_embedding_dim: embedding width per categorical column.
    """

    def __init__(
        self,
        n_numeric: int,
        cardinalities: Sequence[int],
        embedding_dim: int = 16,
        hidden: Sequence[int] = (64,),
        cat_embedding_dim: int = 8,
    ) -> None:
        super().__init__()
        cards = check_inputs("BottomTower", n_numeric, cardinalities)
        self.n_numeric = int(n_numeric)
        self.n_categorical = len(cards)
        self.output_dim = int(embedding_dim)
        self.cat_embedding_dim = int(cat_embedding_dim)
        if cards:
            self.embedding: nn.Embedding | None = nn.Embedding(sum(cards), self.cat_embedding_dim)
            offsets = torch.zeros(len(cards), dtype=torch.int64)
            offsets[1:] = torch.cumsum(torch.tensor(cards[:-1], dtype=torch.int64), 0)
            self.register_buffer("offsets", offsets, persistent=False)
        else:
            self.embedding = None
        in_dim = self.n_numeric + self.n_categorical * self.cat_embedding_dim
        self.mlp = _mlp(in_dim, hidden, self.output_dim)

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        """``numeric`` float32 ``[b, n_num]``, ``categorical`` int64 ``[b, n_cat]`` -> ``[b, d]``"""
        parts = []
        if self.n_numeric:
            parts.append(numeric)
        if self.embedding is not None:
            looked_up = self.embedding(categorical + self.offsets)  # [b, n_cat, e]
            parts.append(looked_up.reshape(looked_up.shape[0], -1))
        x = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        return self.mlp(x)


class TopHead(nn.Module):
    """The label holder's head: ``[b, input_dim]`` -> MLP -> logits ``[b]``."""

    def __init__(self, input_dim: int, hidden: Sequence[int] = (64, 32)) -> None:
        super().__init__()
        self.input_dim = int(input_dim)
        self.mlp = _mlp(self.input_dim, hidden, 1)

    def forward(self, embeddings: torch.Tensor) -> torch.Tensor:
        """``embeddings`` float32 ``[b, input_dim]`` -> logits ``[b]``."""
        return self.mlp(embeddings).squeeze(-1)


class SplitModel(nn.Module):
    """Bottoms + top in one module, for centralized training and the one-party baselines.

    ``forward(inputs)`` takes ``{party: (numeric [b, n_num], categorical [b, n_cat])}`` and returns
    logits ``[b]`` of ``top(cat([bottoms[p](*inputs[p]) for p in bottoms], dim=1))``; bottoms are
    concatenated in the order of the ``bottoms`` mapping (builders use :data:`PARTY_ORDER`).
    """

    def __init__(self, bottoms: Mapping[str, nn.Module], top: nn.Module) -> None:
        super().__init__()
        if not bottoms:
            raise fail("SplitModel", "no bottom models", "give at least one bottom")
        self.bottoms = nn.ModuleDict(dict(bottoms))
        self.top = top

    @property
    def parties(self) -> tuple[str, ...]:
        return tuple(self.bottoms.keys())

    def forward(self, inputs: Mapping[str, tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        embeddings = [bottom(*inputs[name]) for name, bottom in self.bottoms.items()]
        joined = embeddings[0] if len(embeddings) == 1 else torch.cat(embeddings, dim=1)
        return flatten_logits(self.top(joined))


def flatten_logits(logits: torch.Tensor) -> torch.Tensor:
    """Accept a top's ``[b]`` or ``[b, 1]`` output; return ``[b]``."""
    if logits.dim() == 2 and logits.shape[1] == 1:
        return logits[:, 0]
    if logits.dim() != 1:
        raise ValueError(
            f"the top model returned shape {tuple(logits.shape)}; expected [batch] or [batch, 1]"
        )
    return logits


# ---------------------------------------------------------------------- builders
def build_bottom(
    party: str,
    spec: TowerSpec,
    config: ModelConfig,
    seed: int,
    factory: BottomFactory | None = None,
) -> nn.Module:
    """Build ``party``'s bottom with the seeded init shared by every runner.

    The factory is ``factory`` when given, else the one ``config`` names for ``party``
    (``config.social_bottom`` / ``config.ecommerce_bottom``, see :mod:`fedads.models.zoo`).
    """
    if factory is None:
        from fedads.models.zoo import resolve_bottom  # the zoo imports this module

        factory = resolve_bottom(config.bottom_spec(party))
    with seeded(derive_seed(seed, "bottom", party)):
        return factory(spec, config)


def build_top(
    input_dim: int, config: ModelConfig, seed: int, factory: TopFactory | None = None
) -> nn.Module:
    """Build the top (input width ``input_dim``) with the seeded init of every runner.

    The factory is ``factory`` when given, else the one ``config.top`` names.
    """
    if factory is None:
        from fedads.models.zoo import resolve_top  # the zoo imports this module

        factory = resolve_top(config.top)
    with seeded(derive_seed(seed, "top")):
        return factory(input_dim, config)


def output_dim(module: nn.Module, spec: TowerSpec) -> int:
    """Width of a bottom's output: its ``output_dim`` attribute, or a probe with one zero row."""
    width = getattr(module, "output_dim", None)
    if isinstance(width, int) and width > 0:
        return width
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            out = module(
                torch.zeros(1, spec.n_numeric, dtype=torch.float32),
                torch.zeros(1, len(spec.cardinalities), dtype=torch.int64),
            )
    finally:
        module.train(was_training)
    if out.dim() != 2 or out.shape[0] != 1:
        raise ValueError(
            f"a bottom model must return [batch, d]; it returned {tuple(out.shape)} for one row"
        )
    return int(out.shape[1])


def build_model(
    kind: str,
    specs: Mapping[str, TowerSpec],
    config: ModelConfig | None = None,
    seed: int = 0,
    *,
    bottom_factories: Mapping[str, BottomFactory] | None = None,
    top_factory: TopFactory | None = None,
) -> SplitModel:
    """Build one of the four compared models (see the module docstring on matched capacity).

    Args:
        kind: ``"federated"``, ``"centralized"``, ``"ecommerce_only"`` or ``"social_only"``.
        specs: ``{party: TowerSpec}`` for (at least) the parties the kind uses.
        config: architecture (default :class:`ModelConfig`).
        seed: run seed; components get seeds derived from it and their names.
        bottom_factories: optional per-party factory objects overriding the towers
            ``config`` names (``config.social_bottom`` / ``config.ecommerce_bottom``).
        top_factory: optional factory object overriding ``config.top``.
    """
    check_choice("build_model", "kind", kind, MODEL_KINDS)
    config = (config or ModelConfig()).validate()
    factories = dict(bottom_factories or {})
    bottoms: dict[str, nn.Module] = {}
    width = 0
    for party in MODEL_KINDS[kind]:
        if party not in specs:
            raise fail(
                "build_model",
                f"kind {kind!r} needs a TowerSpec for party {party!r}",
                f"pass specs={{{party!r}: encoder.spec, ...}}",
            )
        bottoms[party] = build_bottom(party, specs[party], config, seed, factories.get(party))
        width += output_dim(bottoms[party], specs[party])
    return SplitModel(bottoms, build_top(width, config, seed, top_factory))


def count_parameters(module: nn.Module) -> int:
    """Number of trainable scalars in ``module``."""
    return int(sum(p.numel() for p in module.parameters() if p.requires_grad))
