"""The synthetic two-party ad world: a social platform and an e-commerce platform.

``generate_world(WorldConfig(...))`` returns a :class:`World` with one table per party and a hidden
truth table (potential outcomes) for evaluation. Equations and defaults: docs/world.md.
"""

from __future__ import annotations

from fedads.world.config import AD_EFFECT_MODELS, WorldConfig
from fedads.world.controls import shuffle_features
from fedads.world.generate import (
    ACTIVE_DAYS_WINDOW,
    TRUTH_FILE_STEM,
    WINDOW_DAYS,
    World,
    generate_world,
)
from fedads.world.schema import (
    AGE_BANDS,
    CATEGORY_TOPIC_LOADINGS,
    CITY_TIERS,
    ECOMMERCE_CATEGORICAL,
    ECOMMERCE_NUMERIC,
    EXISTING,
    GENDERS,
    INTEREST_TOPICS,
    KEY,
    LABEL,
    MEMBER_LEVELS,
    PURCHASE_CATEGORIES,
    RESPONSE_TYPES,
    SOCIAL_CATEGORICAL,
    SOCIAL_NUMERIC,
    TREATMENT,
    TRUTH_COLUMNS,
)

__all__ = [
    "AD_EFFECT_MODELS",
    "ACTIVE_DAYS_WINDOW",
    "AGE_BANDS",
    "CATEGORY_TOPIC_LOADINGS",
    "CITY_TIERS",
    "ECOMMERCE_CATEGORICAL",
    "ECOMMERCE_NUMERIC",
    "EXISTING",
    "GENDERS",
    "INTEREST_TOPICS",
    "KEY",
    "LABEL",
    "MEMBER_LEVELS",
    "PURCHASE_CATEGORIES",
    "RESPONSE_TYPES",
    "SOCIAL_CATEGORICAL",
    "SOCIAL_NUMERIC",
    "TREATMENT",
    "TRUTH_COLUMNS",
    "TRUTH_FILE_STEM",
    "WINDOW_DAYS",
    "World",
    "WorldConfig",
    "generate_world",
    "shuffle_features",
]
