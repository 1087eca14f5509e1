"""Models of the split learning setup: per-party feature encoding, bottom towers, top head,
the centralized :class:`SplitModel`, builders with matched capacity, the tower zoo
(:mod:`fedads.models.zoo`: ``mlp``, ``wide_deep``, ``deepfm``, ``dcn_v2``) and the local trainer."""

from __future__ import annotations

from fedads.models.features import EncoderConfig, FeatureEncoder, TowerSpec
from fedads.models.nets import (
    ECOMMERCE,
    MODEL_KINDS,
    PARTY_ORDER,
    SOCIAL,
    BottomTower,
    ModelConfig,
    SplitModel,
    TopHead,
    build_bottom,
    build_model,
    build_top,
    count_parameters,
    derive_seed,
    seeded,
)
from fedads.models.train import (
    OPTIMIZERS,
    TrainConfig,
    TrainingHistory,
    batch_loss,
    batch_plan,
    batches_per_epoch,
    make_optimizer,
    predict_local,
    train_local,
)
from fedads.models.zoo import ZOO, resolve_bottom, resolve_top

__all__ = [
    "ECOMMERCE",
    "MODEL_KINDS",
    "OPTIMIZERS",
    "PARTY_ORDER",
    "SOCIAL",
    "BottomTower",
    "EncoderConfig",
    "FeatureEncoder",
    "ModelConfig",
    "SplitModel",
    "TopHead",
    "TowerSpec",
    "TrainConfig",
    "TrainingHistory",
    "ZOO",
    "batch_loss",
    "batch_plan",
    "batches_per_epoch",
    "build_bottom",
    "build_model",
    "build_top",
    "count_parameters",
    "derive_seed",
    "make_optimizer",
    "predict_local",
    "resolve_bottom",
    "resolve_top",
    "seeded",
    "train_local",
]
