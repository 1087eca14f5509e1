"""Blocks the zoo towers share: categorical embeddings with column offsets, and input checks."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from fedads.models.nets import check_inputs  # re-exported: every zoo bottom checks its inputs

if TYPE_CHECKING:
    from fedads.models.features import TowerSpec
    from fedads.models.nets import ModelConfig

__all__ = ["CategoricalEmbedding", "bottom_tower", "check_inputs", "dense_input"]


def bottom_tower(
    cls: type[nn.Module], spec: TowerSpec, config: ModelConfig, **extra: Any
) -> nn.Module:
    """``cls(n_numeric, cardinalities, embedding_dim=, hidden=, cat_embedding_dim=, **extra)``:
    the constructor call every zoo bottom makes from a party's spec and the model settings."""
    return cls(
        spec.n_numeric,
        spec.cardinalities,
        embedding_dim=config.embedding_dim,
        hidden=config.bottom_hidden,
        cat_embedding_dim=config.cat_embedding_dim,
        **extra,
    )


class CategoricalEmbedding(nn.Module):
    """One shared table for all categorical columns (each column gets its own row range).

    ``forward(categorical int64 [b, n_cat]) -> float32 [b, n_cat, dim]``: one lookup for all
    columns, whatever their number.
    """

    def __init__(self, cardinalities: Sequence[int], dim: int) -> None:
        super().__init__()
        cards = [int(c) for c in cardinalities]
        self.n_columns = len(cards)
        self.dim = int(dim)
        self.table = nn.Embedding(max(sum(cards), 1), self.dim)
        offsets = torch.zeros(len(cards), dtype=torch.int64)
        if cards:
            offsets[1:] = torch.cumsum(torch.tensor(cards[:-1], dtype=torch.int64), 0)
        self.register_buffer("offsets", offsets, persistent=False)

    def forward(self, categorical: torch.Tensor) -> torch.Tensor:
        return self.table(categorical + self.offsets)


def dense_input(
    numeric: torch.Tensor, categorical: torch.Tensor, embedding: CategoricalEmbedding | None
) -> torch.Tensor:
    """``[numeric, flattened categorical embeddings]``: float32 ``[b, n_num + n_cat * e]``."""
    if embedding is None:
        return numeric
    looked_up = embedding(categorical)
    flat = looked_up.reshape(looked_up.shape[0], -1)
    return flat if numeric.shape[1] == 0 else torch.cat([numeric, flat], dim=1)
