"""fedads: simulate vertical federated learning between a social-ad and an e-commerce ad platform.

The public API is re-exported here; see docs/architecture.md for the layers:
world / tables -> align -> protocol + models (Flower adapter) -> eval -> report.
"""

from __future__ import annotations

import warnings

# flwr's generated protobuf code is one major version behind the runtime protobuf that
# openmined-psi pins; the mismatch is harmless and the warning would drown every run.
warnings.filterwarnings("ignore", message="Protobuf gencode version", category=UserWarning)

from fedads.align import KeyNormalization, align_parties, hashed_join  # noqa: E402
from fedads.errors import (  # noqa: E402
    DataWarning,
    FedadsError,
    FedadsWarning,
    InputError,
    PartyError,
    ProtocolError,
)
from fedads.eval import EvalData, combine_seeds, evaluate  # noqa: E402
from fedads.experiment import Experiment, ExperimentConfig, ExperimentResult  # noqa: E402
from fedads.federation import FederationSettings, run_federated  # noqa: E402
from fedads.models import ZOO, ModelConfig, TowerSpec  # noqa: E402
from fedads.protocol import ProtocolConfig  # noqa: E402
from fedads.report import write_report  # noqa: E402
from fedads.tables import PartyTable, load_party_table  # noqa: E402
from fedads.world import World, WorldConfig, generate_world  # noqa: E402

__version__ = "0.1.0"

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
    "generate_world",
    "hashed_join",
    "load_party_table",
    "run_federated",
    "write_report",
]
