"""Configuration of a federated training run."""

from __future__ import annotations

from dataclasses import dataclass, field

from fedads._flat import RUN_CONFIG_KEY
from fedads._timeout import DEFAULT_TIMEOUT_S
from fedads._validation import check_choice, check_in_range, check_positive_int, fail
from fedads.models.nets import ModelConfig
from fedads.models.train import TrainConfig, check_training_fields
from fedads.privacy.defenses import DEFENSES, Defense
from fedads.protocol.codec import COMPRESSIONS

MODES = ("exact", "efficient")
DEFAULT_DEFENSE = "gaussian"
"""The default label defense (with ``DEFAULT_STRENGTHS``): chosen from the frontier benchmark as
the cheapest setting whose worst attack AUC is at most 0.60 (docs/privacy.md)."""
DEFAULT_CHUNK_BATCHES = 4
EARLY_STOPPING_MIN_DELTA = 1e-6
"""A validation loss counts as an improvement only if it is lower than the best by more than
this (the same rule as the practitioner network, ``fedads.models.baselines``)."""
_WHERE = "ProtocolConfig"


@dataclass(frozen=True)
class ProtocolConfig:
    """How the coordinator runs the federation (validated on construction).

    Attributes:
        mode: ``"exact"`` (default): the same updates as centralized training of the same split
            model; ``"efficient"``: chunks of ``chunk_batches`` batches per round trip with
            embeddings up to ``chunk_batches - 1`` steps stale (see ``docs/protocol.md``).
        batch_size: rows per optimizer step (default 1024).
        chunk_batches: batches per round trip ``B``; ``None`` (default) means 1 in exact mode and
            4 in efficient mode. Exact mode accepts only 1.
        pipeline: efficient mode only (default False). Each round sends one message to *both*
            parties at once (the social party embeds chunk ``k`` and applies the gradients of
            chunk ``k-2`` while the e-commerce party trains chunk ``k-1``), so the two compute
            concurrently and an epoch of ``n`` chunks takes ``n + 2`` round trips instead of
            ``2n + 1``. The price: embeddings up to ``2B - 1`` social steps stale instead of
            ``B - 1`` (see ``docs/protocol.md``).
        epochs: passes over the train rows (default 5); with early stopping, the most.
        early_stopping_patience: ``None`` (default): train all ``epochs``. An int ``k >= 1``:
            after every epoch the coordinator asks the label party for the validation loss
            (mean BCE of the validation rows, an aggregate answer under its query policy),
            stops after ``k`` epochs without an improvement of more than
            :data:`EARLY_STOPPING_MIN_DELTA`, and has both parties restore the parameters of the
            best epoch before scoring. Needs validation rows
            (``FederationSettings.valid_share > 0``); see ``docs/protocol.md``.
        lr: learning rate of every party's optimizer (default 2e-3).
        seed: seeds model init and batch order (default 0).
        compression: ``"none"`` (default), ``"float16"`` or ``"int8"`` for exchanged embeddings
            and gradients (``fedads.protocol.codec``).
        timeout_s: seconds a party may take to answer one message (default 600): the one
            timeout of every backend (in-process, Flower simulation and deployment, run config
            ``timeout-s``); a party that misses it fails the run with
            :class:`~fedads.errors.PartyError`. Waits derived from it: a deployment's SuperNodes
            must register within it.
        optimizer: ``"adam"`` (default), ``"adamw"`` or ``"sgd"``.
        weight_decay: weight decay of every optimizer (default 0).
        model: architecture (:class:`~fedads.models.nets.ModelConfig`).
        predict_rows: rows per message when scoring or validating (default 65536).
        defense: label defense the e-commerce party applies to every gradient before it leaves
            (``fedads.privacy.defenses``): ``"gaussian"`` (default), ``"none"``
            (undefended), ``"max-norm"``, ``"marvell"`` or ``"label-dp"``; see
            ``docs/privacy.md``. Any defense other than ``"none"`` changes the social party's
            updates, so exact mode equals centralized training only with ``"none"``.
        defense_strength: that defense's one parameter; ``None`` (default) uses
            ``fedads.privacy.defenses.DEFAULT_STRENGTHS``.
    """

    mode: str = "exact"
    batch_size: int = 1024
    chunk_batches: int | None = None
    pipeline: bool = False
    epochs: int = 5
    early_stopping_patience: int | None = None
    lr: float = 2e-3
    seed: int = 0
    compression: str = "none"
    # The Flower adapter reads this key too (fedads.flower.config.TIMEOUT_KEY): a short name.
    timeout_s: float = field(default=DEFAULT_TIMEOUT_S, metadata={RUN_CONFIG_KEY: "timeout-s"})
    optimizer: str = "adam"
    weight_decay: float = 0.0
    model: ModelConfig = field(default_factory=ModelConfig)
    predict_rows: int = 65536
    defense: str = DEFAULT_DEFENSE
    defense_strength: float | None = None

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> ProtocolConfig:
        """Check every field; raise :class:`fedads.errors.InputError` naming the bad one."""
        check_choice(_WHERE, "mode", self.mode, MODES)
        if self.chunk_batches is not None:
            check_positive_int(_WHERE, "chunk_batches", self.chunk_batches)
            if self.mode == "exact" and self.chunk_batches != 1:
                raise fail(
                    _WHERE,
                    f"chunk_batches={self.chunk_batches} with mode='exact'",
                    "use chunk_batches=1 (or None) for exact mode, or mode='efficient' for chunks",
                )
        check_choice(_WHERE, "pipeline", self.pipeline, (False, True))
        if self.pipeline and self.mode != "efficient":
            raise fail(
                _WHERE,
                f"pipeline=True with mode={self.mode!r}",
                "set mode='efficient' (pipelining trains on stale embeddings, which exact mode "
                "excludes) or pipeline=False",
            )
        check_choice(_WHERE, "compression", self.compression, COMPRESSIONS)
        check_in_range(_WHERE, "timeout_s", self.timeout_s, 0.0, float("inf"), low_inclusive=False)
        check_positive_int(_WHERE, "predict_rows", self.predict_rows)
        if self.early_stopping_patience is not None:
            check_positive_int(_WHERE, "early_stopping_patience", self.early_stopping_patience)
        check_choice(_WHERE, "defense", self.defense, DEFENSES)
        Defense(self.defense, self.defense_strength)  # checks the strength's range
        if not isinstance(self.model, ModelConfig):
            raise fail(
                _WHERE,
                f"model={self.model!r} is not a ModelConfig",
                "pass fedads.models.ModelConfig(...)",
            )
        self.model.validate()
        check_training_fields(self, _WHERE)
        return self

    @property
    def batches_per_round(self) -> int:
        """``B``: batches each round trip carries (1 in exact mode)."""
        if self.mode == "exact":
            return 1
        return self.chunk_batches or DEFAULT_CHUNK_BATCHES

    def train_config(self) -> TrainConfig:
        """The equivalent :class:`~fedads.models.train.TrainConfig` (centralized, baselines)."""
        return TrainConfig(
            epochs=self.epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            seed=self.seed,
            optimizer=self.optimizer,
            weight_decay=self.weight_decay,
        )
