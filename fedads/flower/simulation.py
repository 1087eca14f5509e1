"""``run_federation``: run a job against two parties on Flower from Python; get its result back.

``backend="simulation"`` uses ``flwr.simulation.run_simulation`` (Ray backend, 2 virtual
SuperNodes, one Ray actor per CPU... capped at 2 actors so both parties can work at once).
In simulation the node config only has ``partition-id`` / ``num-partitions`` (Flower gives no
way to set per-node keys there), so roles come from ``partition-id``: 0 = social, 1 = ecommerce.
The ServerApp runs in a thread of this process, so the result comes back in memory; the
ClientApp (with the party factory) is pickled into the Ray actors. Ray is shut down on return.

``backend="deployment"`` starts a local SuperLink and two SuperNodes and uses ``flwr run``
(see :mod:`fedads.flower.deployment`); ``job`` and ``party_factory`` must then be
``"module:attr"`` strings, since they are imported in other processes.
"""

from __future__ import annotations

import logging
import os
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from fedads._progress import Progress
from fedads.errors import InputError, ProtocolError
from fedads.flower.config import (
    JOB_KEY,
    PARTY_FACTORY_KEY,
    STATE_DIR_KEY,
    STATE_STORE_KEY,
    TIMEOUT_KEY,
    Job,
    PartyFactory,
    poll_interval,
    resolve_job,
    resolve_party_factory,
)
from fedads.flower.engine import engine_patches
from fedads.flower.result import FederationResult
from fedads.flower.server_app import Outcome

BACKENDS = ("simulation", "deployment")
PROTOBUF_WARNING_FILTER = "ignore:Protobuf gencode version:UserWarning"
#: The banner ``flwr.simulation.run_simulation`` logs (flwr 1.42), dropped while fedads runs it.
#: tests/test_hygiene.py fails when flwr changes it or removes ``run_simulation``: then follow
#: docs/flower.md, "Moving off run_simulation".
RUN_SIMULATION_DEPRECATION = (
    "The `run_simulation` function is deprecated and will be removed in a future version of Flower."
)
#: The environment variables fedads sets for a simulation run, or knows Flower and Ray to set
#: (Flower's Ray backend prepends sys.path to PYTHONPATH; ``ray.init`` sets PYTHONBREAKPOINT and
#: RAY_* variables). :func:`quiet_flower_env` restores the *whole* environment, these included.
FLOWER_ENV = (
    "PYTHONBREAKPOINT",
    "RAY_CLIENT_MODE",
    "RAY_USAGE_STATS_ENABLED",
    "RAY_ENABLE_UV_RUN_RUNTIME_ENV",
    "FLWR_TELEMETRY_ENABLED",
    "PYTHONWARNINGS",
    "PYTHONPATH",
    "RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO",
    "RAY_worker_niceness",
    "RAY_max_direct_call_object_size",
)
#: Largest Ray task argument / return value passed inline in the RPC instead of through the
#: object store (Ray's default: 100 KiB). A chunk of embeddings is ~2 MB (docs/performance.md).
RAY_INLINE_BYTES = 8 * 1024 * 1024
#: Environment variable: ``flower`` lets Flower start Ray (the old way), see :func:`start_ray`.
RAY_INIT_ENV = "FEDADS_RAY_INIT"


class _DropNoise(logging.Filter):
    """Drop log lines our caller cannot act on: Flower's "run_simulation is deprecated" banner
    and Ray's "SIGTERM handler is not set" (when called from a thread)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (
            RUN_SIMULATION_DEPRECATION in message
            or "SIGTERM handler is not set" in message
        )


def _backend_config(num_cpus: int, chatty: bool) -> dict[str, Any]:
    return {
        # One CPU per actor and a Ray "cluster" of 2 CPUs: exactly 2 actors, so both
        # parties' ClientApps run concurrently (Flower's default of 2 CPUs per actor would
        # give one actor on this 2-core machine and serialize the parties).
        "client_resources": {"num_cpus": 1, "num_gpus": 0.0},
        "init_args": {
            "num_cpus": num_cpus,
            "num_gpus": 0,
            "include_dashboard": False,
            "logging_level": logging.WARNING,
            "log_to_driver": chatty,  # Ray workers' own log lines
            "configure_logging": True,
        },
    }


def ray_init_mode() -> str:
    """Who starts Ray for a simulation: ``"fedads"`` (default, :func:`start_ray`) or
    ``"flower"`` (Flower's own ``ray.init``, what fedads did before; ``FEDADS_RAY_INIT=flower``,
    kept to measure the difference: benchmarks/run_overhead.py)."""
    mode = os.environ.get(RAY_INIT_ENV, "fedads").strip().lower() or "fedads"
    if mode not in ("fedads", "flower"):
        raise InputError(f"{RAY_INIT_ENV}={mode!r}: use 'fedads' (default) or 'flower'")
    return mode


def start_ray(init_args: Mapping[str, Any]) -> None:
    """``ray.init(**init_args)`` with this process's ``sys.path`` in ``PYTHONPATH``.

    Why not let Flower start Ray: Flower passes ``sys.path`` to the workers as a job
    ``runtime_env`` (``env_vars``). Ray's raylet prestarts one Python worker per CPU when it
    starts, before any job, with an empty runtime env; a job with a runtime env cannot use them,
    so Ray started two *more* worker processes for the two ClientApp actors, and the actors
    waited for them (each imports Ray: seconds of CPU on a 2-core machine) while the two
    prestarted ones idled. Here ``PYTHONPATH`` is in the environment the raylet and so every
    worker inherits (the caller, :func:`quiet_flower_env`, restores the environment), no
    runtime env is needed, and the actors run in the prestarted workers: 2 worker processes
    per simulation instead of 4. Flower skips its own ``ray.init`` when Ray is up.
    """
    import ray

    paths = [*sys.path, *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    os.environ["PYTHONPATH"] = os.pathsep.join(paths)
    ray.init(**init_args)


def run_federation(
    job: Job | str,
    party_factory: PartyFactory | str,
    run_config: Mapping[str, Any] | None = None,
    *,
    backend: str = "simulation",
    timeout_s: float = 120.0,
    verbose: bool = True,
    engine_patches: bool | None = None,
    **deployment_options: Any,
) -> FederationResult:
    """Run ``job`` with parties built by ``party_factory``; return the job's result.

    Args:
        job: ``job(transport, run_config) -> dict`` of arrays/scalars, a registered name, or
            ``"module:attr"``.
        party_factory: ``factory(role, run_config, node_config) -> Party``, a registered name,
            or ``"module:attr"``.
        run_config: run config for job and factories (Flower scalars only); per-party data paths
            go in ``social-path`` / ``ecommerce-path`` (each factory sees only its own).
        backend: ``"simulation"`` (Ray, in this process) or ``"deployment"`` (local SuperLink +
            SuperNodes via ``flwr run``).
        timeout_s: per ``send``/``send_all`` reply timeout; a party that misses it raises
            :class:`~fedads.errors.PartyError`.
        verbose: ``False`` lowers this run's progress messages to ``DEBUG``. What is shown is
            decided by the ``"fedads"`` logger's level (:func:`fedads.set_verbosity`).
        engine_patches: simulation only: ``False`` runs Flower's engine unpatched
            (:mod:`fedads.flower.engine`); ``None`` (default) reads ``FEDADS_FLOWER_PATCHES``.
        deployment_options: passed to :func:`fedads.flower.deployment.run_deployment`.

    Returns:
        :class:`~fedads.flower.result.FederationResult`; ``result.values`` is the job's dict.

    Raises:
        PartyError: a party failed or timed out (names the party).
        ProtocolError: role discovery failed, or the job raised (chained).
    """
    if backend not in BACKENDS:
        raise InputError(f"run_federation: backend {backend!r} not in {list(BACKENDS)}")
    config: dict[str, Any] = dict(run_config or {})
    config[TIMEOUT_KEY] = float(timeout_s)
    config.setdefault("verbose", verbose)
    if backend == "deployment":
        from fedads.flower.deployment import run_deployment

        if not isinstance(job, str) or not isinstance(party_factory, str):
            raise InputError(
                "run_federation(backend='deployment'): pass job and party_factory as "
                "'module:attr' strings; they are imported by other processes"
            )
        config[JOB_KEY] = job
        config[PARTY_FACTORY_KEY] = party_factory
        return run_deployment(config, verbose=verbose, **deployment_options)
    if deployment_options:
        raise InputError(
            f"run_federation: unexpected options {sorted(deployment_options)} for simulation"
        )
    # Resolve now: a typo fails here, not inside a Ray actor.
    job_fn = resolve_job(job)
    factory = resolve_party_factory(party_factory)
    return _simulate(job_fn, factory, config, verbose=verbose, patches=engine_patches)


@contextmanager
def quiet_flower_env() -> Iterator[None]:
    """The process-wide settings a simulation needs, for the block only; restored afterwards.

    The whole of ``os.environ`` is restored to what it was on entry (changed variables set
    back, added ones removed, e.g. those of :data:`FLOWER_ENV`), also when the block raises;
    so are ``warnings.filters`` (the protobuf "gencode version"
    warnings of flwr's lazily imported modules are silenced in this process inside the block,
    and in the Ray workers through ``PYTHONWARNINGS``, which they inherit).
    """
    saved = dict(os.environ)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", message="Protobuf gencode version", category=UserWarning
            )
            os.environ["FLWR_TELEMETRY_ENABLED"] = "0"
            os.environ["RAY_ACCEL_ENV_VAR_OVERRIDE_ON_ZERO"] = "0"  # silence a Ray FutureWarning
            # Ray starts its workers at nice 15, below the driver. Here the workers are the
            # parties, the machines being simulated: at nice 15 they got the CPU only when this
            # process (engine threads, polling, serialization) did not want it, and each party's
            # epoch took ~1.7x as long as in-process (docs/performance.md).
            os.environ["RAY_worker_niceness"] = "0"  # noqa: SIM112 - Ray reads this exact name
            # Messages above Ray's 100 KiB default went through the object store: for a stream
            # of 2 MB echoes the raylet used ~24% of a core and a round trip took ~6 ms longer
            # (measured, benchmarks/results/roundtrip_inline_ab.json).
            os.environ["RAY_max_direct_call_object_size"] = str(RAY_INLINE_BYTES)  # noqa: SIM112
            warnings_spec = os.environ.get("PYTHONWARNINGS", "")
            if PROTOBUF_WARNING_FILTER not in warnings_spec:
                os.environ["PYTHONWARNINGS"] = ",".join(
                    x for x in (warnings_spec, PROTOBUF_WARNING_FILTER) if x
                )
            yield
    finally:
        for key in set(os.environ) - set(saved):
            del os.environ[key]
        for key, value in saved.items():
            if os.environ.get(key) != value:
                os.environ[key] = value


def _simulate(
    job: Job,
    factory: PartyFactory,
    config: dict[str, Any],
    *,
    verbose: bool,
    patches: bool | None = None,
) -> FederationResult:
    with quiet_flower_env(), engine_patches(poll_interval(config), patches):
        return _simulate_in_env(job, factory, config, verbose=verbose)


def _simulate_in_env(
    job: Job, factory: PartyFactory, config: dict[str, Any], *, verbose: bool
) -> FederationResult:
    import ray
    from flwr.simulation import run_simulation

    from fedads.flower.client_app import make_client_app
    from fedads.flower.server_app import make_server_app

    progress = Progress(verbose, logger="flower")
    # Flower's and Ray's own INFO lines only when fedads is at DEBUG (one switch).
    chatty = progress.enabled and progress.logger.isEnabledFor(logging.DEBUG)
    state_dir = None
    if not config.get(STATE_DIR_KEY):
        # Simulated nodes have no node config of their own: give their checkpoints a private
        # directory that disappears with the run.
        state_dir = tempfile.TemporaryDirectory(prefix="fedads-flower-state-")
        config = {**config, STATE_DIR_KEY: state_dir.name}
    # Ray actors live for the whole run, so a checkpoint can be written behind the reply.
    config.setdefault(STATE_STORE_KEY, "file-behind")
    outcomes: list[Outcome] = []
    stop = threading.Event()
    server_app = make_server_app(job=job, run_config=config, on_outcome=outcomes.append, stop=stop)
    client_app = make_client_app(party_factory=factory, run_config=config)
    flwr_logger = logging.getLogger("flwr")
    old_level = flwr_logger.level
    noise = _DropNoise()
    noisy_loggers = [flwr_logger, logging.getLogger("ray._private.worker")]
    for logger in noisy_loggers:
        logger.addFilter(noise)
    if not chatty:
        flwr_logger.setLevel(logging.WARNING)
    progress("simulation: starting Ray and 2 virtual SuperNodes")
    start = time.perf_counter()
    engine_error: BaseException | None = None
    try:
        # Flower waits for every ClientApp call in flight before it returns; the ClientApp
        # abandons a party call after `timeout-s`, so a hung party cannot hang us here.
        backend_config = _backend_config(num_cpus=2, chatty=chatty)
        if not ray.is_initialized() and ray_init_mode() == "fedads":
            start_ray(backend_config["init_args"])
        run_simulation(
            server_app=server_app,
            client_app=client_app,
            num_supernodes=2,
            backend_config=backend_config,  # type: ignore[arg-type]
        )
    except BaseException as exc:  # noqa: BLE001 - re-raised below, after cleanup
        engine_error = exc
    finally:
        # The ServerApp thread is not a daemon: after an interrupt it must not wait out its
        # reply timeout with the engine gone (the process would stay alive).
        stop.set()
        flwr_logger.setLevel(old_level)
        for logger in noisy_loggers:
            logger.removeFilter(noise)
        if ray.is_initialized():
            ray.shutdown()
        if state_dir is not None:
            state_dir.cleanup()
    progress(f"simulation: finished in {time.perf_counter() - start:.1f} s")
    if engine_error is not None and not isinstance(engine_error, Exception):
        raise engine_error  # KeyboardInterrupt, the CLI's SIGTERM exception: exit 130 / 143
    if outcomes:
        outcome = outcomes[0]
        if isinstance(outcome, BaseException):
            if isinstance(outcome, ProtocolError | InputError | KeyboardInterrupt):
                raise outcome
            raise ProtocolError(f"the job failed: {type(outcome).__name__}: {outcome}") from outcome
        return outcome
    if engine_error is not None:
        raise ProtocolError(
            f"the Flower simulation engine failed: {engine_error}"
        ) from engine_error
    raise ProtocolError("the Flower simulation ended without a result from the ServerApp")
