"""fedads: simulate vertical federated learning between a social-ad and an e-commerce ad platform.

The public API is re-exported here; see docs/architecture.md for the layers.
"""

from __future__ import annotations

import warnings

# flwr's generated protobuf code is one major version behind the runtime protobuf that
# openmined-psi pins; the mismatch is harmless and the warning would drown every run.
warnings.filterwarnings("ignore", message="Protobuf gencode version", category=UserWarning)

from fedads.errors import FedadsError, InputError, PartyError, ProtocolError  # noqa: E402

__version__ = "0.1.0"

__all__ = ["FedadsError", "InputError", "PartyError", "ProtocolError", "__version__"]
