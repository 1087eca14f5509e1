"""MLP towers (the default): embeddings + numeric columns -> MLP.

Bottom: :class:`~fedads.models.nets.BottomTower` (hidden widths ``ModelConfig.bottom_hidden``,
output ``ModelConfig.embedding_dim``). Top: :class:`~fedads.models.nets.TopHead` (hidden widths
``ModelConfig.top_hidden``).
"""

from __future__ import annotations

from torch import nn

from fedads.models.features import TowerSpec
from fedads.models.nets import BottomTower, ModelConfig, TopHead
from fedads.models.zoo._blocks import bottom_tower


def bottom(spec: TowerSpec, config: ModelConfig) -> nn.Module:
    """``(numeric [b, n_num], categorical [b, n_cat]) -> [b, embedding_dim]``."""
    return bottom_tower(BottomTower, spec, config)


def top(input_dim: int, config: ModelConfig) -> nn.Module:
    """``[b, input_dim] -> logits [b]``."""
    return TopHead(input_dim, hidden=config.top_hidden)
