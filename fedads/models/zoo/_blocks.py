"""Blocks the zoo towers share: categorical embeddings with column offsets, and input checks."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from fedads._validation import fail


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
