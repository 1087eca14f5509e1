"""Run-config keys of the Flower adapter, role resolution, and the job / party-factory registry.

A *party factory* builds one party object: ``factory(role, run_config, node_config) -> Party``.
A *job* drives the federation from the ServerApp: ``job(transport, run_config) -> JobResult``.
The job is named in the run config (``job``); the party factory only in the node's own config
(``party-factory`` in the SuperNode's node config, or the config the ClientApp was built with in
its own process; default :data:`DEFAULT_PARTY_FACTORY`), never in the run config, which whoever
submits a run writes (:func:`check_shared_run_config`). Both are named either as
``"module:attribute"``
(imported where needed: Ray actors, ``flwr-clientapp`` / ``flwr-serverapp`` processes) or as a
name registered in this process with :func:`register_party_factory` / :func:`register_job`.
A registered name only resolves in processes that ran the registration, so across processes
(deployment engine) use ``"module:attribute"``; :func:`fedads.flower.run_federation` also accepts
the callables themselves (the simulation engine pickles them into its Ray actors).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import numpy as np

from fedads._timeout import DEFAULT_TIMEOUT_S
from fedads._validation import check_in_range
from fedads.errors import InputError
from fedads.protocol.envelope import Scalar
from fedads.protocol.transport import Party, Transport

#: The two roles, in partition order: simulation partition 0 is ``social``, 1 is ``ecommerce``.
PARTIES: tuple[str, str] = ("social", "ecommerce")

RunConfig = Mapping[str, Scalar]
JobResult = dict[str, "np.ndarray | Scalar"]

# Run-config keys of the adapter (all optional; defaults below). The settings both sides agree
# on (``FederationSettings``, flattened generically by fedads._flat) are the other keys.
JOB_KEY = "job"
PARTY_FACTORY_KEY = "party-factory"
OUT_DIR_KEY = "out-dir"
#: The one timeout: seconds a party may take to answer one message. It is the settings field
#: ``ProtocolConfig.timeout_s`` (its flattened key), read here by the adapter too.
TIMEOUT_KEY = "timeout-s"
#: Seconds the ServerApp waits for both SuperNodes to register and say hello. Not a setting:
#: derived from the timeout by :func:`merged_config` unless a caller sets it explicitly.
NODE_WAIT_KEY = "node-wait-s"
STATE_STORE_KEY = "state-store"
POLL_KEY = "poll-interval-s"
#: Seconds between the ServerApp's checks for replies (and, in simulation, between the engine's
#: checks for new messages). Flower's own 0.1 s made a simulated round trip cost 0.1-0.15 s.
DEFAULT_POLL_S = 0.002
# Node-config keys.
PARTY_KEY = "party"
STATE_DIR_KEY = "state-dir"
PARTITION_ID_KEY = "partition-id"

STATE_STORES = ("file", "file-behind", "context")

DEFAULTS: dict[str, Scalar] = {
    JOB_KEY: "fedads.flower.testing:echo_job",
    OUT_DIR_KEY: "",
    TIMEOUT_KEY: DEFAULT_TIMEOUT_S,
    STATE_STORE_KEY: "file",
    POLL_KEY: DEFAULT_POLL_S,
    # Each party's sealing public key (hex), to which the ServerApp binds its role
    # (fedads.flower.security); the deployed ServerApp refuses to run without them unless
    # trust-role-claims is set (insecure mode).
    "social-public-key": "",
    "ecommerce-public-key": "",
    "trust-role-claims": False,
}
"""Defaults of the adapter's own keys (the settings' defaults come from the dataclasses)."""

#: What the repository's ``[tool.flwr.app.config]`` (``flwr run .``) sets beyond the
#: flattened ``FederationSettings()`` defaults, and why: deployment round trips cost seconds, so
#: the communication-efficient mode with 16 batches per message; the real job, not the fixture
#: (the real party factory is the nodes' default, :data:`DEFAULT_PARTY_FACTORY`).
#: ``tests/test_settings.py`` checks the pyproject section equals
#: :func:`app_config` (print it with
#: ``python -c 'from fedads.flower.config import app_config_toml as t; print(t())'``).
APP_OVERRIDES: dict[str, Scalar] = {
    JOB_KEY: "fedads.federation:vfl_job",
    POLL_KEY: 0.05,  # Flower's HttpGrid waits 3 s between checks
    "protocol-mode": "efficient",
    "protocol-chunk-batches": 16,
}


def node_wait(timeout_s: float) -> float:
    """Seconds to wait for both SuperNodes to register: the message timeout (one concept)."""
    return float(timeout_s)


def app_config() -> dict[str, Scalar]:
    """The whole ``[tool.flwr.app.config]`` of the repository's Flower app.

    The adapter's keys, every ``FederationSettings`` key at its default (generic flattening,
    :meth:`fedads.federation.FederationSettings.to_run_config`), the job's own keys
    (:data:`fedads.federation.JOB_DEFAULTS`), then :data:`APP_OVERRIDES`.
    """
    from fedads.federation import JOB_DEFAULTS, FederationSettings

    settings = FederationSettings().to_run_config()
    out: dict[str, Scalar] = {**DEFAULTS, **settings, **JOB_DEFAULTS, **APP_OVERRIDES}
    return out


def poll_interval(config: Mapping[str, Any]) -> float:
    """Run config ``poll-interval-s`` (seconds, in ``(0, 1]``), validated."""
    value = config.get(POLL_KEY, DEFAULTS[POLL_KEY])
    return check_in_range("run config", POLL_KEY, value, 0.0, 1.0, low_inclusive=False)


class PartyFactory(Protocol):
    def __call__(self, role: str, run_config: RunConfig, node_config: RunConfig) -> Party: ...


class Job(Protocol):
    def __call__(self, transport: Transport, run_config: RunConfig) -> JobResult: ...


_PARTY_FACTORIES: dict[str, Callable[..., Any]] = {}
_JOBS: dict[str, Callable[..., Any]] = {}


#: The party factory a node builds when its own config names none: the real federation party.
DEFAULT_PARTY_FACTORY = "fedads.federation:party_factory"


def register_party_factory(name: str, factory: PartyFactory) -> None:
    """Make ``factory`` resolvable as ``party-factory = name`` in this process."""
    _PARTY_FACTORIES[name] = factory


def register_job(name: str, job: Job) -> None:
    """Make ``job`` resolvable as ``job = name`` in this process."""
    _JOBS[name] = job


def _resolve(spec: object, registry: Mapping[str, Callable[..., Any]], key: str) -> Any:
    if callable(spec):
        return spec
    if not isinstance(spec, str) or not spec:
        raise InputError(f"run config {key!r}: expected 'module:attribute' or a name, got {spec!r}")
    if spec in registry:
        return registry[spec]
    if ":" not in spec:
        raise InputError(
            f"run config {key!r}: {spec!r} is not registered in this process "
            f"(registered: {sorted(registry)}) and is not of the form 'module:attribute'"
        )
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise InputError(
            f"run config {key!r}: cannot import module {module_name!r}: {exc}"
        ) from exc
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise InputError(
                f"run config {key!r}: module {module_name!r} has no attribute {attr!r}"
            )
        obj = getattr(obj, part)
    if not callable(obj):
        raise InputError(f"run config {key!r}: {spec!r} is not callable")
    return obj


def resolve_party_factory(spec: object) -> PartyFactory:
    """The party factory named by ``spec`` (a callable, a registered name or 'module:attr')."""
    return _resolve(spec, _PARTY_FACTORIES, PARTY_FACTORY_KEY)  # type: ignore[no-any-return]


def resolve_job(spec: object) -> Job:
    """The job named by ``spec`` (a callable, a registered name or 'module:attr')."""
    return _resolve(spec, _JOBS, JOB_KEY)  # type: ignore[no-any-return]


def merged_config(*layers: Mapping[str, Any] | None) -> dict[str, Scalar]:
    """``DEFAULTS`` overlaid with each layer in order (later wins); ``None`` layers skipped.

    ``node-wait-s`` follows from the timeout (:func:`node_wait`) unless a layer sets it.
    """
    out: dict[str, Scalar] = dict(DEFAULTS)
    for layer in layers:
        if layer:
            out.update(layer)
    if NODE_WAIT_KEY not in out:
        timeout = check_in_range(
            "run config", TIMEOUT_KEY, out[TIMEOUT_KEY], 0.0, float("inf"), low_inclusive=False
        )
        out[NODE_WAIT_KEY] = node_wait(timeout)
    return out


def resolve_role(node_config: Mapping[str, Any]) -> str:
    """The party this node plays: node config ``party``, else simulation ``partition-id``.

    ``partition-id`` 0 is ``social`` and 1 is ``ecommerce`` (the order of :data:`PARTIES`).
    """
    if PARTY_KEY in node_config:
        role = str(node_config[PARTY_KEY])
        if role not in PARTIES:
            raise InputError(
                f"node config {PARTY_KEY!r}: {role!r} is not a party; use one of {list(PARTIES)}, "
                f"e.g. flower-supernode --node-config '{PARTY_KEY}=\"social\"'"
            )
        return role
    if PARTITION_ID_KEY in node_config:
        pid = int(node_config[PARTITION_ID_KEY])
        if not 0 <= pid < len(PARTIES):
            raise InputError(
                f"node config {PARTITION_ID_KEY!r}: {pid} has no party (0=social, 1=ecommerce); "
                "run the simulation with exactly 2 SuperNodes"
            )
        return PARTIES[pid]
    raise InputError(
        f"node config has neither {PARTY_KEY!r} nor {PARTITION_ID_KEY!r} "
        f"(keys: {sorted(node_config)}); start the SuperNode with "
        f"--node-config '{PARTY_KEY}=\"social\"' or '{PARTY_KEY}=\"ecommerce\"'"
    )


#: Suffixes of party-private config keys: ``<role>-path`` (its data), ``<role>-out`` (its
#: private output folder), and the names of its columns when its data file does not carry them
#: (``<role>-key``, ``-label``, ``-existing``, ``-categorical``, ``-numeric``; see
#: :func:`fedads.federation.load_role_table`), and its sealing keys (``<role>-secret-key``,
#: ``<role>-peer-key``). A factory never sees the other party's; deployment puts them in the
#: owning SuperNode's node config only.
PRIVATE_SUFFIXES: tuple[str, ...] = (
    "path",
    "out",
    "key",
    "label",
    "existing",
    "categorical",
    "numeric",
    "secret-key",
    "peer-key",
)


def data_path_key(role: str) -> str:
    """Config key of ``role``'s data path: ``social-path`` / ``ecommerce-path``."""
    return f"{role}-path"


def private_keys(role: str) -> tuple[str, ...]:
    """``role``'s party-private config keys, e.g. ``("social-path", "social-out")``."""
    return tuple(f"{role}-{suffix}" for suffix in PRIVATE_SUFFIXES)


def party_run_config(role: str, run_config: Mapping[str, Any]) -> dict[str, Scalar]:
    """``run_config`` without the other parties' private keys: what ``role``'s factory sees."""
    hidden = {key for other in PARTIES if other != role for key in private_keys(other)}
    return {k: v for k, v in run_config.items() if k not in hidden}


def node_only_keys() -> frozenset[str]:
    """Keys only a node's own config may set: the party factory, the state folder, and every
    party-private key of both roles (data paths, output folders, columns, sealing keys)."""
    private = {key for role in PARTIES for key in private_keys(role)}
    return frozenset({PARTY_FACTORY_KEY, STATE_DIR_KEY, *private})


def check_shared_run_config(run_config: Mapping[str, Any]) -> None:
    """Refuse a run config that sets a node-only key (:func:`node_only_keys`).

    The run config is written by whoever submits the run and reaches every process; letting it
    choose the code a party runs, the files it reads or the folders it writes would hand that
    person the party's machine. An empty value (a declared-but-unset key) passes.

    Raises:
        InputError: naming the keys and where they belong.
    """
    found = sorted(k for k in node_only_keys() if k in run_config and run_config[k] not in ("",))
    if found:
        raise InputError(
            f"run config sets {found}: the party factory, data paths, output folders, state "
            "folder and keys are each node's own business and are taken only from its node "
            "config (flower-supernode --node-config), never from the run config; remove them "
            "from the run config and set them in the owning SuperNode's node config"
        )


def party_factory_spec(
    node_config: Mapping[str, Any], local_config: Mapping[str, Any] | None = None
) -> str:
    """The party factory a node builds: its node config ``party-factory``, else the config its
    ClientApp was made with in this process (``local_config``), else
    :data:`DEFAULT_PARTY_FACTORY`. Never the run config."""
    spec = node_config.get(PARTY_FACTORY_KEY) or (local_config or {}).get(PARTY_FACTORY_KEY)
    return str(spec or DEFAULT_PARTY_FACTORY)


def party_data_path(
    role: str, run_config: Mapping[str, Any], node_config: Mapping[str, Any]
) -> str:
    """``role``'s own data path: node config ``<role>-path`` (deployment), else the run config
    the ClientApp handed the factory, which holds private keys only from the ClientApp's own
    process (simulation: what the caller passed); Flower's run config may not set them
    (:func:`check_shared_run_config`).

    Returns ``""`` when neither sets it. Factories should read their data path only through this.
    """
    key = data_path_key(role)
    value = node_config.get(key) or run_config.get(key) or ""
    return str(value)


def _toml_value(value: Scalar) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return repr(value)


def app_config_toml() -> str:
    """:func:`app_config` as the body of a ``[tool.flwr.app.config]`` TOML section."""
    return "\n".join(f"{key} = {_toml_value(value)}" for key, value in app_config().items())
