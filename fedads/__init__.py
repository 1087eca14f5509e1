"""fedads: simulate vertical federated learning between a social-ad and an e-commerce ad platform.

The public API is re-exported here; see docs/architecture.md for the layers:
world / tables -> align -> protocol + models (Flower adapter) -> eval -> report.

Importing fedads has no process-wide side effects: it installs no warnings filter, changes no
environment variable and adds only a ``logging.NullHandler`` to the ``"fedads"`` logger. The
names below are loaded on first use (``fedads.Experiment`` imports torch and Flower then, not
``import fedads``), so ``import fedads.align`` stays light.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from fedads._progress import set_verbosity
from fedads.errors import (
    DataWarning,
    FedadsError,
    FedadsWarning,
    InputError,
    PartyError,
    ProtocolError,
)

if TYPE_CHECKING:
    from fedads.align import KeyNormalization, align_parties, hashed_join
    from fedads.eval import EvalData, combine_seeds, evaluate
    from fedads.eval.uplift import evaluate_uplift
    from fedads.experiment import Experiment, ExperimentConfig, ExperimentResult
    from fedads.federation import FederationSettings, run_federated
    from fedads.models import ZOO, ModelConfig, TowerSpec
    from fedads.protocol import ProtocolConfig
    from fedads.report import write_report
    from fedads.tables import PartyTable, load_party_table
    from fedads.world import World, WorldConfig, generate_world

__version__ = "0.1.0"

# Public name -> the module it comes from (imported on first access, PEP 562).
_LAZY: dict[str, str] = {
    "KeyNormalization": "fedads.align",
    "align_parties": "fedads.align",
    "hashed_join": "fedads.align",
    "EvalData": "fedads.eval",
    "combine_seeds": "fedads.eval",
    "evaluate": "fedads.eval",
    "evaluate_uplift": "fedads.eval.uplift",
    "Experiment": "fedads.experiment",
    "ExperimentConfig": "fedads.experiment",
    "ExperimentResult": "fedads.experiment",
    "FederationSettings": "fedads.federation",
    "run_federated": "fedads.federation",
    "ModelConfig": "fedads.models",
    "TowerSpec": "fedads.models",
    "ZOO": "fedads.models",
    "ProtocolConfig": "fedads.protocol",
    "write_report": "fedads.report",
    "PartyTable": "fedads.tables",
    "load_party_table": "fedads.tables",
    "World": "fedads.world",
    "WorldConfig": "fedads.world",
    "generate_world": "fedads.world",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'fedads' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))


__all__ = [
    "DataWarning",
    "EvalData",
    "Experiment",
    "ExperimentConfig",
    "ExperimentResult",
    "FedadsError",
    "FedadsWarning",
    "FederationSettings",
    "InputError",
    "KeyNormalization",
    "ModelConfig",
    "PartyError",
    "PartyTable",
    "ProtocolConfig",
    "ProtocolError",
    "TowerSpec",
    "World",
    "WorldConfig",
    "ZOO",
    "__version__",
    "align_parties",
    "combine_seeds",
    "evaluate",
    "evaluate_uplift",
    "generate_world",
    "hashed_join",
    "load_party_table",
    "run_federated",
    "set_verbosity",
    "write_report",
]
