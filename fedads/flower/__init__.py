"""Flower adapter: run the transport-free parties and coordinator jobs on Flower.

Translates Flower Messages to calls on party objects and back; holds no training logic.
See docs/flower.md.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

# flwr's generated protobuf code is one major version behind the runtime protobuf that
# openmined-psi pins; the mismatch is harmless and warns once per .proto module when flwr is
# first imported. Silenced for these imports only: no process-wide filter (docs/flower.md).
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Protobuf gencode version", category=UserWarning)
    from fedads.flower.client_app import make_client_app
    from fedads.flower.config import (
        PARTIES,
        party_data_path,
        register_job,
        register_party_factory,
        resolve_role,
    )
    from fedads.flower.result import FederationResult, read_result
    from fedads.flower.server_app import make_server_app
    from fedads.flower.simulation import run_federation
    from fedads.flower.transport import FlowerTransport, discover_party_nodes

if TYPE_CHECKING:
    from fedads.flower.deployment import LocalDeployment, run_deployment


def __getattr__(name: str) -> Any:
    # Lazy, so `python -m fedads.flower.deployment` does not import the module twice.
    if name in ("LocalDeployment", "run_deployment"):
        from fedads.flower import deployment

        return getattr(deployment, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "PARTIES",
    "FederationResult",
    "FlowerTransport",
    "LocalDeployment",
    "discover_party_nodes",
    "make_client_app",
    "make_server_app",
    "party_data_path",
    "read_result",
    "register_job",
    "register_party_factory",
    "resolve_role",
    "run_deployment",
    "run_federation",
]
