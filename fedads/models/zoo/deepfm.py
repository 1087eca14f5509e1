"""DeepFM towers (Guo et al. 2017): first-order terms + factorization-machine pairwise
interactions + an MLP, summed.

Bottom: every input column is a *field* with a ``k``-vector (``k = ModelConfig.cat_embedding_dim``):
a categorical column's embedding of its code, a numeric column's learned vector scaled by its
value. Fields ``F [b, m, k]`` give the FM interaction vector
``0.5 * ((sum_f F_f)^2 - sum_f F_f^2)`` ``[b, k]`` (all pairwise products, in O(m k)). Output
``first_order + W_fm @ fm + MLP(flatten F)``: ``[b, embedding_dim]``.

Top: the classic FM over dense inputs ``x [b, n]`` with factors ``V [n, k]``:
``logit = w.x + b + 0.5 * sum_k ((x V)^2 - (x^2)(V^2)) + MLP(x)`` -> ``[b]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fedads.models.features import TowerSpec
from fedads.models.nets import ModelConfig, _mlp
from fedads.models.zoo._blocks import CategoricalEmbedding, bottom_tower, check_inputs

_FACTOR_STD = 0.1  # small factors: the pairwise term starts near 0 and cannot swamp the rest


def fm_interaction(fields: torch.Tensor) -> torch.Tensor:
    """``fields [b, m, k]`` -> the FM pairwise interaction vector ``[b, k]``."""
    summed = fields.sum(dim=1)
    return 0.5 * (summed * summed - (fields * fields).sum(dim=1))


class DeepFMBottom(nn.Module):
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
        cards = check_inputs("DeepFMBottom", n_numeric, cardinalities)
        k = int(cat_embedding_dim)
        self.output_dim = int(embedding_dim)
        self.n_fields = int(n_numeric) + len(cards)
        self.numeric_factors = nn.Parameter(torch.randn(n_numeric, k) * _FACTOR_STD)
        self.embedding = CategoricalEmbedding(cards, k) if cards else None
        if self.embedding is not None:
            nn.init.normal_(self.embedding.table.weight, std=_FACTOR_STD)
        self.first_numeric = nn.Linear(n_numeric, self.output_dim) if n_numeric else None
        self.first_categorical = CategoricalEmbedding(cards, self.output_dim) if cards else None
        self.fm_out = nn.Linear(k, self.output_dim, bias=False)
        self.deep = _mlp(self.n_fields * k, hidden, self.output_dim)

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        parts = []
        if numeric.shape[1]:
            parts.append(numeric.unsqueeze(-1) * self.numeric_factors)  # [b, n_num, k]
        if self.embedding is not None:
            parts.append(self.embedding(categorical))  # [b, n_cat, k]
        fields = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)
        out = self.fm_out(fm_interaction(fields)) + self.deep(fields.flatten(1))
        if self.first_numeric is not None:
            out = out + self.first_numeric(numeric)
        if self.first_categorical is not None:
            out = out + self.first_categorical(categorical).sum(dim=1)
        return out


class DeepFMTop(nn.Module):
    """``float32 [b, input_dim] -> logits [b]``: linear + FM pairwise term + MLP."""

    def __init__(self, input_dim: int, hidden: Sequence[int] = (64, 32), factors: int = 8) -> None:
        super().__init__()
        self.input_dim = int(input_dim)
        self.linear = nn.Linear(self.input_dim, 1)
        self.factors = nn.Parameter(torch.randn(self.input_dim, int(factors)) * _FACTOR_STD)
        self.deep = _mlp(self.input_dim, hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fields = x.unsqueeze(-1) * self.factors  # [b, n, k]: each input scalar is a field
        pairwise = fm_interaction(fields).sum(dim=1, keepdim=True)
        return (self.linear(x) + pairwise + self.deep(x)).squeeze(-1)


def bottom(spec: TowerSpec, config: ModelConfig) -> nn.Module:
    """DeepFM bottom over a party's encoded columns."""
    return bottom_tower(DeepFMBottom, spec, config)


def top(input_dim: int, config: ModelConfig) -> nn.Module:
    """DeepFM top over the concatenated embeddings (``cat_embedding_dim`` factors)."""
    return DeepFMTop(input_dim, hidden=config.top_hidden, factors=config.cat_embedding_dim)
