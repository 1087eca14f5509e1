"""DCN-v2 towers (Wang et al. 2021, "DCN V2: Improved Deep & Cross Network"), stacked form.

A cross layer keeps the input ``x0`` and multiplies it, element-wise, with a full-rank linear map of
the current state: ``x_{l+1} = x0 * (W_l x_l + b_l) + x_l`` (``W_l [m, m]``), so ``L`` layers
model feature crosses up to degree ``L + 1``. ``ModelConfig.cross_layers`` layers (default 2)
are followed by an MLP ("stacked" structure).

Bottom: ``x0 = [numeric, categorical embeddings]`` ``[b, m]`` -> cross layers -> MLP (hidden
``ModelConfig.bottom_hidden``) -> ``[b, embedding_dim]``.
Top: ``x0`` = the concatenated embeddings ``[b, input_dim]`` -> cross layers -> MLP (hidden
``ModelConfig.top_hidden``) -> logits ``[b]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fedads.models.features import TowerSpec
from fedads.models.nets import ModelConfig, _mlp
from fedads.models.zoo._blocks import CategoricalEmbedding, bottom_tower, check_inputs, dense_input


class CrossNetworkV2(nn.Module):
    """``x0 [b, m] -> [b, m]``: ``layers`` full-rank cross layers of DCN-v2."""

    def __init__(self, width: int, layers: int = 2) -> None:
        super().__init__()
        self.layers = nn.ModuleList(nn.Linear(width, width) for _ in range(int(layers)))

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        x = x0
        for layer in self.layers:
            x = x0 * layer(x) + x
        return x


class DCNv2Bottom(nn.Module):
    """``(numeric float32 [b, n_num], categorical int64 [b, n_cat]) -> float32 [b, d]``."""

    def __init__(
        self,
        n_numeric: int,
        cardinalities: Sequence[int],
        embedding_dim: int = 16,
        hidden: Sequence[int] = (64,),
        cat_embedding_dim: int = 8,
        cross_layers: int = 2,
    ) -> None:
        super().__init__()
        cards = check_inputs("DCNv2Bottom", n_numeric, cardinalities)
        self.output_dim = int(embedding_dim)
        self.embedding = CategoricalEmbedding(cards, cat_embedding_dim) if cards else None
        width = int(n_numeric) + len(cards) * int(cat_embedding_dim)
        self.cross = CrossNetworkV2(width, cross_layers)
        self.deep = _mlp(width, hidden, self.output_dim)

    def forward(self, numeric: torch.Tensor, categorical: torch.Tensor) -> torch.Tensor:
        return self.deep(self.cross(dense_input(numeric, categorical, self.embedding)))


class DCNv2Top(nn.Module):
    """``float32 [b, input_dim] -> logits [b]``: cross layers, then an MLP."""

    def __init__(
        self, input_dim: int, hidden: Sequence[int] = (64, 32), cross_layers: int = 2
    ) -> None:
        super().__init__()
        self.input_dim = int(input_dim)
        self.cross = CrossNetworkV2(self.input_dim, cross_layers)
        self.deep = _mlp(self.input_dim, hidden, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.deep(self.cross(x)).squeeze(-1)


def bottom(spec: TowerSpec, config: ModelConfig) -> nn.Module:
    """DCN-v2 bottom over a party's encoded columns."""
    return bottom_tower(DCNv2Bottom, spec, config, cross_layers=config.cross_layers)


def top(input_dim: int, config: ModelConfig) -> nn.Module:
    """DCN-v2 top over the concatenated embeddings."""
    return DCNv2Top(input_dim, hidden=config.top_hidden, cross_layers=config.cross_layers)
