"""Wide & Deep towers (Cheng et al. 2016): a linear "wide" part plus an MLP "deep" part, summed.

Bottom: wide = a linear map of the numeric columns plus one learned ``d``-vector per category
code (a linear map of the one-hot codes); deep = MLP over ``[numeric, categorical embeddings]``
(hidden ``ModelConfig.bottom_hidden``). Output ``wide + deep``: ``[b, embedding_dim]``.

Top: ``linear(x) + MLP(x)`` over the concatenated embeddings (hidden ``ModelConfig.top_hidden``)
-> logits ``[b]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fedads.models.features import TowerSpec
from fedads.models.nets import ModelConfig, _mlp
from fedads.models.zoo._blocks import CategoricalEmbedding, bottom_tower, check_inputs, dense_input


class WideDeepBottom(nn.Module):
    """``(numeric float32 [b, n_num], categorical int64 [b, n_cat]) -> float32 [b, d]``."""

    def __init__(
        self,
        n_numeric: int,
        cardinalities: Sequence[int],
        embedding_dim: int = 16,
        hidden: Sequence[int] = (64,),
        cat_embedding_dim: int = 8,
    ) -> None:
        super().__init__()
        cards = check_inputs("WideDeepBottom", n_numeric, cardinalities)
        self.output_dim = int(embedding_dim)
        self.wide_numeric = nn.Linear(n_numeric, self.output_dim) if n_numeric else None
        self.wide_categorical = CategoricalEmbedding(cards, self.output_dim) if cards else None
        self.embedding = CategoricalEmbedding(cards, cat_embedding_dim) if cards else None
        self.deep = _mlp(n_numeric + len(cards) * int(cat_embedding_dim), hidden, self.output_dim)

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        out = self.deep(dense_input(numeric, categorical, self.embedding))
        if self.wide_numeric is not None:
            out = out + self.wide_numeric(numeric)
        if self.wide_categorical is not None:
            out = out + self.wide_categorical(categorical).sum(dim=1)
        return out


class WideDeepTop(nn.Module):
    """``float32 [b, input_dim] -> logits [b]``: ``linear(x) + MLP(x)``."""

    def __init__(self, input_dim: int, hidden: Sequence[int] = (64, 32)) -> None:
        super().__init__()
        self.input_dim = int(input_dim)
        self.wide = nn.Linear(self.input_dim, 1)
        self.deep = _mlp(self.input_dim, hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.wide(x) + self.deep(x)).squeeze(-1)


def bottom(spec: TowerSpec, config: ModelConfig) -> nn.Module:
    """Wide & Deep bottom over a party's encoded columns."""
    return bottom_tower(WideDeepBottom, spec, config)


def top(input_dim: int, config: ModelConfig) -> nn.Module:
    """Wide & Deep top over the concatenated embeddings."""
    return WideDeepTop(input_dim, hidden=config.top_hidden)
