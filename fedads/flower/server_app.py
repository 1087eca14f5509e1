"""The Flower ``ServerApp``: discover roles, build a transport, run the job, return its result.

The job is named by run config ``job`` (``"module:attr"`` or a registered name) or passed to
:func:`make_server_app`; it is called as ``job(transport, run_config)`` and returns a flat dict of
arrays and scalars. The result reaches the caller two ways, both always available:

* ``on_outcome`` callback (simulation: the ServerApp runs in the caller's process);
* run config ``out-dir`` (``flwr run``: the ServerApp runs in a ``flwr-serverapp`` process),
  see :mod:`fedads.flower.result`.

A failure is recorded the same two ways. Without ``on_outcome`` it is also re-raised so Flower
marks the run failed; with it, it is not (the caller raises it), because the simulation engine
would otherwise log it as an engine crash.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

from flwr.app import Context
from flwr.serverapp import Grid, ServerApp

from fedads._progress import Progress, set_verbosity
from fedads.errors import ProtocolError
from fedads.flower.config import (
    JOB_KEY,
    NODE_WAIT_KEY,
    OUT_DIR_KEY,
    PARTIES,
    TIMEOUT_KEY,
    Job,
    merged_config,
    poll_interval,
    resolve_job,
)
from fedads.flower.result import FederationResult, check_job_result, write_error, write_result
from fedads.flower.security import TRUST_CLAIMS_KEY, role_public_keys
from fedads.flower.transport import FlowerTransport

Outcome = FederationResult | BaseException


class RunStopped(ProtocolError):
    """The caller stopped the run (interrupt or engine failure) while the job was waiting."""


class StoppableGrid:
    """A ``Grid`` whose calls raise :class:`RunStopped` once ``stop`` is set.

    The simulation runs the ServerApp in a non-daemon thread of the caller's process; after a
    Ctrl-C the engine is gone but the job would wait out its reply timeout (600 s by default)
    and keep the process alive. Every wait of the transport calls the grid at least every
    fraction of a second, so setting ``stop`` ends the job within one poll.
    """

    def __init__(self, grid: Grid, stop: threading.Event) -> None:
        self._grid = grid
        self._stop = stop

    def _check(self) -> None:
        if self._stop.is_set():
            raise RunStopped("the run was stopped by its caller (interrupt or engine failure)")

    def push_messages(self, messages: Iterable[Any]) -> Iterable[str]:
        self._check()
        return self._grid.push_messages(messages)

    def pull_messages(self, message_ids: Iterable[str]) -> Iterable[Any]:
        self._check()
        return self._grid.pull_messages(message_ids)

    def get_node_ids(self) -> Iterable[int]:
        self._check()
        return self._grid.get_node_ids()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._grid, name)


def run_server(
    grid: Grid,
    context: Context,
    job: Job | str | None = None,
    run_config: dict[str, Any] | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
    require_role_proof: bool = False,
) -> FederationResult | None:
    """Body of the ServerApp's ``main`` (usable with any ``Grid``).

    Roles are bound to the parties' sealing keys whenever the run config names them
    (``<role>-public-key``). With ``require_role_proof`` (the deployed ``app``) a run config
    without both keys is refused, unless it sets ``trust-role-claims = true`` (insecure mode).
    """
    config = merged_config(dict(context.run_config), run_config)
    verbose = bool(config.get("verbose", True))
    if on_outcome is None:
        # Our own process (`flwr-serverapp`, started by Flower): fedads' progress lines go to
        # its stderr, which `flwr run --stream` shows. In the caller's process (simulation) the
        # caller's logging settings decide.
        set_verbosity("info" if verbose else "warning")
    progress = Progress(verbose, logger="flower")
    out_dir = str(config.get(OUT_DIR_KEY) or "")
    start = time.perf_counter()
    transport: FlowerTransport | None = None
    try:
        job_fn = resolve_job(job if job is not None else config[JOB_KEY])
        timeout_s = float(config[TIMEOUT_KEY])
        role_keys = role_public_keys(config)
        if require_role_proof and len(role_keys) < len(PARTIES):
            if not bool(config.get(TRUST_CLAIMS_KEY, False)):
                raise ProtocolError(
                    "the run config names no sealing public key for "
                    f"{[p for p in PARTIES if p not in role_keys]}: without them any SuperNode "
                    "could claim a role; set 'social-public-key' and 'ecommerce-public-key' (hex, "
                    "the second line of each party's `fedads keys` .pub file), or set "
                    "'trust-role-claims = true' to take the nodes' word (insecure)"
                )
            progress("ServerApp: WARNING: taking roles on the nodes' word (trust-role-claims)")
        progress("ServerApp: waiting for the social and ecommerce SuperNodes")
        transport = FlowerTransport.connect(
            grid,
            timeout_s,
            float(config[NODE_WAIT_KEY]),
            progress=progress,
            poll_s=poll_interval(config),
            role_keys=role_keys,
        )
        discovery_s = time.perf_counter() - start
        job_name = getattr(job_fn, "__name__", str(job_fn))
        progress(f"ServerApp: roles {transport.party_nodes}; running job {job_name}")
        values = check_job_result(job_fn(transport, config))
        transport.close()
        result = FederationResult(
            values=values,
            traffic=transport.traffic.snapshot(),
            messages=transport.traffic.messages,
            party_nodes=dict(transport.party_nodes),
            party_stats=transport.party_stats,
            elapsed_s=time.perf_counter() - start,
            discovery_s=discovery_s,
        )
    except BaseException as exc:
        progress(f"ServerApp: failed: {type(exc).__name__}: {exc}")
        if transport is not None:
            transport.close()
        if out_dir:
            write_error(out_dir, exc)
        if on_outcome is None:
            raise
        on_outcome(exc)
        return None
    progress(
        f"ServerApp: job done in {result.elapsed_s:.1f} s, "
        f"{result.messages} envelopes, {result.traffic_bytes()} array bytes"
    )
    if out_dir:
        write_result(out_dir, result)
    if on_outcome is not None:
        on_outcome(result)
    return result


def make_server_app(
    job: Job | str | None = None,
    run_config: dict[str, Any] | None = None,
    on_outcome: Callable[[Outcome], None] | None = None,
    stop: threading.Event | None = None,
    *,
    require_role_proof: bool = False,
) -> ServerApp:
    """A ServerApp running ``job`` (``None``: run config ``job``) with ``run_config`` overrides.

    ``stop``: once set, the job's next exchange raises :class:`RunStopped` (see
    :class:`StoppableGrid`); the simulation sets it when the engine returns or is interrupted.
    ``require_role_proof``: refuse to bind roles without the parties' public keys (see
    :func:`run_server`).
    """
    server_app = ServerApp()

    @server_app.main()
    def main(grid: Grid, context: Context) -> None:
        if stop is not None:
            grid = StoppableGrid(grid, stop)  # type: ignore[assignment]
        run_server(grid, context, job, run_config, on_outcome, require_role_proof)

    return server_app


#: ``flwr run`` entry point (``[tool.flwr.app.components] serverapp``): SuperNodes anyone may
#: start, so roles must be proven with the parties' keys (or trusted explicitly, insecure).
app = make_server_app(require_role_proof=True)
