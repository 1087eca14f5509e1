"""Flower adapter: run the transport-free parties and coordinator jobs on Flower.

Translates Flower Messages to calls on party objects and back; holds no training logic.
See docs/flower.md.

Public names load on first use (PEP 562), so a submodule that needs neither torch nor the
simulation engine stays light: the deployment engine's per-message ClientApp
(:mod:`fedads.flower.forwarder`) is started in a fresh ``flwr-clientapp`` process for every
message and must not pay for importing torch (seconds) each time.
"""

from __future__ import annotations

import importlib
import warnings
from typing import TYPE_CHECKING, Any

# flwr's generated protobuf code is one major version behind the runtime protobuf that
# openmined-psi pins; the mismatch is harmless and warns once per .proto module when flwr is
# first imported. Silenced for this import only: no process-wide filter (docs/flower.md).
# Importing flwr here (not torch, not Ray) keeps every submodule's flwr import quiet.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="Protobuf gencode version", category=UserWarning)
    import flwr.app  # noqa: F401

if TYPE_CHECKING:
    from fedads.flower.client_app import make_client_app
    from fedads.flower.config import (
        PARTIES,
        party_data_path,
        register_job,
        register_party_factory,
        resolve_role,
    )
    from fedads.flower.deployment import LocalDeployment, run_deployment
    from fedads.flower.result import FederationResult, read_result
    from fedads.flower.server_app import make_server_app
    from fedads.flower.simulation import run_federation
    from fedads.flower.transport import FlowerTransport, discover_party_nodes

_SOURCES: dict[str, str] = {
    "make_client_app": "client_app",
    "PARTIES": "config",
    "party_data_path": "config",
    "register_job": "config",
    "register_party_factory": "config",
    "resolve_role": "config",
    "LocalDeployment": "deployment",
    "run_deployment": "deployment",
    "FederationResult": "result",
    "read_result": "result",
    "make_server_app": "server_app",
    "run_federation": "simulation",
    "FlowerTransport": "transport",
    "discover_party_nodes": "transport",
}


def __getattr__(name: str) -> Any:
    source = _SOURCES.get(name)
    if source is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Protobuf gencode version", category=UserWarning)
        module = importlib.import_module(f"fedads.flower.{source}")
    value = getattr(module, name)
    globals()[name] = value  # next access skips __getattr__
    return value


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
