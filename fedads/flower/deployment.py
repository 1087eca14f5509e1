"""Run a job on Flower's deployment engine on this machine: SuperLink + 2 SuperNodes + ``flwr run``.

:class:`LocalDeployment` starts, on loopback ports, a ``flower-superlink`` and one
``flower-supernode`` per party, secured by default (:mod:`fedads.flower.security`): TLS with a
fresh local CA, SuperNode authentication (each node's key registered before it starts) and
roles bound to the parties' sealing keys; ``insecure=True`` (``--insecure``) turns all three off
and logs a warning. Each SuperNode gets its own node config (written to a TOML file):
``party``, the party's own data path ``<party>-path`` and a private ``state-dir``, and its own
``FLWR_HOME``, so no process of one party is told where the other party's data is.
:meth:`LocalDeployment.run` then submits the app with ``flwr run <project> <connection> --stream``
(connection written to a temporary ``$FLWR_HOME/config.toml``), waits for the ServerApp to write
``result.json`` to ``out-dir`` and reads it back. Everything is torn down on exit, also on failure:
each process is started in its own session and its whole process group is terminated, then
killed, with bounded waits.

The app project handed to ``flwr run`` is, by default, generated in the temporary directory: a
``pyproject.toml`` whose ``[tool.flwr.app.components]`` point at :mod:`fedads.flower.server_app`
and :mod:`fedads.flower.client_app` (imported from the installed environment) and whose
``[tool.flwr.app.config]`` holds the whole run config (``flwr run --run-config`` may only override
keys declared there). The FAB is then a few kB. Runtime dependency installation is disabled
(``FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION=1``, and on the SuperLink also
``--disable-runtime-dependency-installation``; SuperNodes default to disabled), so every process
uses this environment.

Command line::

    python -m fedads.flower.deployment --social-path s.csv --ecommerce-path e.csv \\
        --job fedads.flower.testing:echo_job \\
        --party-factory fedads.flower.testing:echo_party_factory [--insecure]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tomllib
from collections.abc import Callable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Any

import numpy as np
import tomli_w

from fedads._progress import Progress, set_verbosity
from fedads.errors import InputError, PartyError, ProtocolError
from fedads.flower.config import (
    DEFAULTS,
    OUT_DIR_KEY,
    PARTIES,
    PARTY_FACTORY_KEY,
    PARTY_KEY,
    POLL_KEY,
    STATE_DIR_KEY,
    TIMEOUT_KEY,
    data_path_key,
    merged_config,
    node_only_keys,
    private_keys,
)
from fedads.flower.party_wire import PARTY_SOCKET_KEY, SOCKET_NAME
from fedads.flower.result import RESULT_JSON, FederationResult, read_result
from fedads.flower.security import LocalSecurity, prepare_local_security

CONNECTION = "fedads-local"
#: ClientApp components of the generated app project: the thin forwarder to the party's
#: long-lived process (default), or the ClientApp that builds the party in every message's
#: own ``flwr-clientapp`` process (``party_processes=False``, the behaviour before issue #19).
FORWARDER_CLIENTAPP = "fedads.flower.forwarder:app"
INPROCESS_CLIENTAPP = "fedads.flower.client_app:app"
SUPEREXEC_POLL_ENV = "FLWR_SUPEREXEC_TASK_POLL_INTERVAL"
SUPEREXEC_POLL_S = 0.05
#: ServerApp reply polling for deployment runs (run config ``poll-interval-s``) unless set: each
#: check is a call to the SuperLink, and the SuperNode itself only looks for a finished reply
#: every 0.5 s, so 2 ms (the simulation default) would only burn CPU. At 10 ms the SuperLink
#: alone used a quarter of a core (43 s of CPU in a 165 s test run), CPU the per-message
#: ``flwr-clientapp`` start-ups (the bulk of a round trip) need on a loaded machine; 50 ms adds
#: at most 50 ms to a round trip of seconds.
DEPLOYMENT_POLL_S = 0.05
PROTOBUF_WARNING_FILTER = "ignore:Protobuf gencode version:UserWarning"
_LOOPBACK = "127.0.0.1"


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_LOOPBACK, 0))
        return int(sock.getsockname()[1])


def _raise_terminated(signum: int, _frame: object) -> None:
    raise SystemExit(f"terminated by signal {signum}; stopping the local deployment")


def _tail(path: Path, lines: int = 25) -> str:
    try:
        text = path.read_text(errors="replace").splitlines()
    except OSError:
        return f"({path} unreadable)"
    return "\n".join(f"    {line}" for line in text[-lines:])


def flower_env(flwr_home: Path) -> dict[str, str]:
    """Environment for every Flower process we start: this venv's CLIs first on PATH (the
    SuperLink / SuperNodes spawn ``flower-superexec``, ``flwr-serverapp``, ``flwr-clientapp`` by
    name), no telemetry, no runtime dependency installation, no protobuf gencode warnings."""
    env = dict(os.environ)
    bin_dir = str(Path(sys.executable).parent)
    env["PATH"] = os.pathsep.join([bin_dir, env.get("PATH", "")])
    env["FLWR_HOME"] = str(flwr_home)
    env["FLWR_TELEMETRY_ENABLED"] = "0"
    env["FLWR_DISABLE_RUNTIME_DEPENDENCY_INSTALLATION"] = "1"
    # SuperExec (started by each SuperNode) checks for new tasks every 1 s by default; its
    # public knob (0.01-60 s) makes a message start its ClientApp within 50 ms instead.
    env.setdefault(SUPEREXEC_POLL_ENV, str(SUPEREXEC_POLL_S))
    warnings_spec = env.get("PYTHONWARNINGS", "")
    if PROTOBUF_WARNING_FILTER not in warnings_spec:
        env["PYTHONWARNINGS"] = ",".join(x for x in (warnings_spec, PROTOBUF_WARNING_FILTER) if x)
    return env


def write_app_project(
    project_dir: Path, run_config: Mapping[str, Any], clientapp: str = INPROCESS_CLIENTAPP
) -> Path:
    """A minimal Flower app project whose defaults are ``run_config`` (code comes from the env)."""
    project_dir.mkdir(parents=True, exist_ok=True)
    pyproject = {
        "build-system": {"requires": ["setuptools>=68"], "build-backend": "setuptools.build_meta"},
        "project": {
            "name": "fedads-flower-app",
            "version": "0.1.0",
            "description": "fedads vertical federated learning on Flower (generated)",
            "license": "Apache-2.0",
            "dependencies": [],
        },
        "tool": {
            "flwr": {
                "app": {
                    "publisher": "fedads",
                    "components": {
                        "serverapp": "fedads.flower.server_app:app",
                        "clientapp": clientapp,
                    },
                    "config": dict(run_config),
                }
            }
        },
    }
    (project_dir / "pyproject.toml").write_text(tomli_w.dumps(pyproject))
    return project_dir


def declared_run_config(project_dir: Path) -> dict[str, Any]:
    """The flattened ``[tool.flwr.app.config]`` of a Flower app project."""
    path = project_dir / "pyproject.toml"
    try:
        with path.open("rb") as f:
            pyproject = tomllib.load(f)
    except OSError as exc:
        raise InputError(f"{path}: cannot read the Flower app project: {exc}") from exc
    app = pyproject.get("tool", {}).get("flwr", {}).get("app", {})
    if "components" not in app:
        raise InputError(f"{path}: no [tool.flwr.app.components]; not a Flower app project")

    def flatten(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in d.items():
            if isinstance(value, Mapping):
                out.update(flatten(value, f"{prefix}{key}."))
            else:
                out[f"{prefix}{key}"] = value
        return out

    return flatten(app.get("config", {}))


class _Process:
    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log: Path) -> None:
        self.name = name
        self.cmd = cmd
        self.log = log
        self._log_file: IO[bytes] = log.open("wb")
        self.popen = subprocess.Popen(
            cmd,
            env=env,
            stdout=self._log_file,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # own process group: teardown reaches its children too
        )

    def alive(self) -> bool:
        return self.popen.poll() is None

    def signal_group(self, sig: int) -> None:
        """Send ``sig`` to the process group (no-op once it is gone)."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.popen.pid, sig)  # pid == process group id (start_new_session)

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM the process group, wait up to ``grace_s``, then SIGKILL it."""
        pgid = self.popen.pid  # == process group id (start_new_session)
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(pgid, sig)
            except ProcessLookupError:
                break
            try:
                self.popen.wait(timeout=wait_s)
            except subprocess.TimeoutExpired:
                continue
            # leader gone; make sure stragglers of its group go too
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGKILL)
            break
        self._log_file.close()


def _descendants(roots: list[int]) -> list[int]:
    """Every live descendant of ``roots`` (from ``/proc``; none where there is no ``/proc``)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    found: list[int] = []
    todo = list(roots)
    while todo:
        for child in children.get(todo.pop(), []):
            found.append(child)
            todo.append(child)
    return found


def _stop_all(processes: list[_Process], grace_s: float = 5.0) -> None:
    """Stop ``processes`` together: SIGTERM every group first, so their shutdowns overlap
    (one by one, each SuperNode / SuperLink shutdown was waited out in turn), then
    :meth:`_Process.stop` each (bounded: ``grace_s`` in all, then SIGKILL).

    Descendants outside those groups are killed too: Flower's SuperExec starts its own session,
    and a ``flwr-serverapp`` it started for a run that failed (a party process died) ignores
    SIGTERM and outlived the deployment by minutes, waiting for the dead party's reply."""
    strays = _descendants([proc.popen.pid for proc in processes])
    for proc in processes:
        proc.signal_group(signal.SIGTERM)
    deadline = time.monotonic() + grace_s
    for proc in processes:
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.popen.wait(timeout=max(0.0, deadline - time.monotonic()))
        proc.stop(grace_s=0.0 if proc.alive() else grace_s)
    for pid in strays:  # seconds after they were listed: no pid reuse to fear in that time
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGKILL)


class LocalDeployment:
    """A SuperLink and one SuperNode per party on loopback, torn down on :meth:`close`.

    Args:
        node_configs: extra node config per party (e.g. ``{"social": {"social-path": ...}}``);
            ``party`` and ``state-dir`` are added.
        workdir: where homes, logs, states and results go (default: a new temp dir, deleted on
            close unless ``keep``).
        keep: keep ``workdir`` after close (logs for debugging).
        startup_timeout_s: bound on each process coming up.
        party_processes: run each party in a long-lived process next to its SuperNode
            (:mod:`fedads.flower.party_process`; default) and submit the thin forwarding
            ClientApp; ``False``: build the party in every message's ``flwr-clientapp`` process
            from its checkpoint (seconds per message).
        insecure: no TLS, no SuperNode authentication, roles taken on the nodes' word (logs a
            warning). Default False: all three on (:mod:`fedads.flower.security`).
    """

    def __init__(
        self,
        node_configs: Mapping[str, Mapping[str, Any]] | None = None,
        *,
        workdir: str | Path | None = None,
        keep: bool = False,
        verbose: bool = True,
        startup_timeout_s: float = 60.0,
        party_processes: bool = True,
        insecure: bool = False,
    ) -> None:
        unknown = set(node_configs or {}) - set(PARTIES)
        if unknown:
            raise InputError(f"node_configs: unknown parties {sorted(unknown)}; use {PARTIES}")
        self.node_configs = {p: dict((node_configs or {}).get(p, {})) for p in PARTIES}
        self._own_dir = workdir is None
        self.workdir = Path(workdir or tempfile.mkdtemp(prefix="fedads-deploy-")).resolve()
        self.keep = keep
        self.progress = Progress(verbose, logger="flower.deployment")
        self.verbose = verbose
        self.startup_timeout_s = startup_timeout_s
        self.processes: list[_Process] = []
        self.party_processes = party_processes
        self.party_procs: dict[str, _Process] = {}
        self.superlink_port = 0
        self._runs = 0
        #: readiness checks :meth:`start` leaves to :meth:`wait_ready` (the SuperNodes' ports)
        self._not_ready: list[Callable[[], None]] = []
        self.insecure = insecure
        self.security: LocalSecurity | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def __enter__(self) -> LocalDeployment:
        # A SIGTERM to this process (a CI timeout, `kill`) would end it without running
        # close(), leaving the SuperLink, SuperNodes and party processes (own sessions) behind:
        # turn it into an exception while the deployment is open, unless the caller already
        # handles SIGTERM (the CLI does; main thread only).
        self._old_sigterm: Any = None
        if (
            threading.current_thread() is threading.main_thread()
            and signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
        ):
            self._old_sigterm = signal.signal(signal.SIGTERM, _raise_terminated)
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.close()
        finally:
            if self._old_sigterm is not None:
                signal.signal(signal.SIGTERM, self._old_sigterm)
                self._old_sigterm = None

    def _wait_listening(self, proc: _Process, family: int, address: Any, where: str) -> None:
        """Wait until ``proc`` accepts connections at ``address`` (an ``(host, port)`` pair or
        a Unix socket path), at most ``startup_timeout_s``; fail at once if it exits."""
        deadline = time.monotonic() + self.startup_timeout_s
        while time.monotonic() < deadline:
            if not proc.alive():
                raise ProtocolError(
                    f"{proc.name} exited with code {proc.popen.returncode} while starting; "
                    f"log {proc.log}:\n{_tail(proc.log)}"
                )
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.settimeout(0.5)
                if sock.connect_ex(address) == 0:
                    return
            time.sleep(0.1)
        raise ProtocolError(
            f"{proc.name} did not listen on {where} within {self.startup_timeout_s:g} s; "
            f"log {proc.log}:\n{_tail(proc.log)}"
        )

    def _wait_port(self, proc: _Process, port: int) -> None:
        self._wait_listening(proc, socket.AF_INET, (_LOOPBACK, port), f"{_LOOPBACK}:{port}")

    def _start_party_process(self, party: str, config_file: Path) -> None:
        """Start ``party``'s long-lived process on the same node config as its SuperNode."""
        self.progress(f"deployment: starting the {party!r} party process")
        proc = _Process(
            f"party process ({party})",
            [
                sys.executable,
                "-m",
                "fedads.flower.party_process",
                "--node-config",
                str(config_file),
                "--parent-pid",
                str(os.getpid()),
            ],
            flower_env(self.workdir / party / "home"),
            self.workdir / "logs" / f"party-{party}.log",
        )
        self.processes.append(proc)
        self.party_procs[party] = proc

    def _wait_socket(self, proc: _Process, path: Path) -> None:
        self._wait_listening(proc, socket.AF_UNIX, str(path), str(path))

    def _check_party_processes(self) -> None:
        """Raise :class:`PartyError` naming the first party whose process has exited."""
        for party, proc in self.party_procs.items():
            if not proc.alive():
                raise PartyError(
                    party,
                    f"its party process (pid {proc.popen.pid}) exited with code "
                    f"{proc.popen.returncode} during the run; the party's live state is lost "
                    f"(start a new run); log {proc.log}:\n{_tail(proc.log)}",
                )

    def pids(self) -> dict[str, int]:
        """Process id of every process this deployment started (each leads its own group)."""
        return {proc.name: proc.popen.pid for proc in self.processes}

    def start(self) -> None:
        """Start the party processes, the SuperLink (waited for; the SuperNodes' keys are then
        registered), then the two SuperNodes; wait until the party processes listen. Returns
        without waiting for the SuperNodes to listen: :meth:`wait_ready` does (:meth:`run`
        calls it just after submitting)."""
        logs = self.workdir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        bin_dir = Path(sys.executable).parent
        self.security = prepare_local_security(
            self.workdir, self.node_configs, insecure=self.insecure
        )
        # Node configs and party processes first: a party process spends seconds importing
        # torch and the library, which now overlaps the SuperLink's start and the
        # registration of the SuperNodes' keys instead of following them.
        config_files: dict[str, Path] = {}
        for party in PARTIES:
            party_dir = self.workdir / party
            state_dir = party_dir / "state"
            state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
            node_config = {
                **self.node_configs[party],
                PARTY_KEY: party,
                STATE_DIR_KEY: str(state_dir),
            }
            if self.party_processes:
                node_config[PARTY_SOCKET_KEY] = str(state_dir / SOCKET_NAME)
            config_files[party] = party_dir / "node-config.toml"
            config_files[party].write_text(tomli_w.dumps(node_config))
            if self.party_processes:
                self._start_party_process(party, config_files[party])
        self.superlink_port = _free_port()
        link_home = self.workdir / "superlink-home"
        self.progress(f"deployment: starting SuperLink on {_LOOPBACK}:{self.superlink_port}")
        link = _Process(
            "flower-superlink",
            [
                str(bin_dir / "flower-superlink"),
                *self.security.superlink_args(),
                "--host",
                _LOOPBACK,
                "--port",
                str(self.superlink_port),
                "--disable-runtime-dependency-installation",
            ],
            flower_env(link_home),
            logs / "superlink.log",
        )
        self.processes.append(link)
        self._wait_port(link, self.superlink_port)
        self.security.register(
            f"{_LOOPBACK}:{self.superlink_port}",
            self.workdir / "admin-home",
            flower_env(self.workdir / "admin-home"),
            bin_dir / "flwr",
        )
        nodes: list[tuple[_Process, int]] = []
        for party in PARTIES:
            party_dir = self.workdir / party
            config_file = config_files[party]
            port = _free_port()
            self.progress(f"deployment: starting SuperNode {party!r} (node config {config_file})")
            node = _Process(
                f"flower-supernode ({party})",
                [
                    str(bin_dir / "flower-supernode"),
                    *self.security.supernode_args(party),
                    "--superlink",
                    f"{_LOOPBACK}:{self.superlink_port}",
                    "--port",
                    str(port),
                    "--node-config",
                    str(config_file),
                ],
                flower_env(party_dir / "home"),
                logs / f"supernode-{party}.log",
            )
            self.processes.append(node)
            nodes.append((node, port))
        # The party processes (started first) must listen before any message can reach their
        # forwarder, which does not retry: waited for here. The SuperNodes are not: run()
        # submits first and waits after, so the seconds `flwr run` spends starting overlap
        # theirs (a ServerApp waits for its nodes anyway).
        for party, proc in self.party_procs.items():
            self._wait_socket(proc, self.workdir / party / "state" / SOCKET_NAME)
        self._not_ready = [functools.partial(self._wait_port, node, port) for node, port in nodes]
        cli_home = self.workdir / "cli-home"
        cli_home.mkdir(parents=True, exist_ok=True)
        (cli_home / "config.toml").write_text(
            tomli_w.dumps(
                {
                    "superlink": {
                        "default": CONNECTION,
                        CONNECTION: self.security.connection(f"{_LOOPBACK}:{self.superlink_port}"),
                    }
                }
            )
        )

    def wait_ready(self) -> None:
        """Wait until every SuperNode listens (each at most
        ``startup_timeout_s``); fail at once if one of them exits."""
        while self._not_ready:
            self._not_ready[0]()
            self._not_ready.pop(0)

    def close(self) -> None:
        """Stop every process (all at once, bounded), then delete the work dir unless ``keep``."""
        _stop_all(list(reversed(self.processes)))
        self.processes.clear()
        self._not_ready.clear()
        if self._own_dir and not self.keep:
            shutil.rmtree(self.workdir, ignore_errors=True)
        elif self.keep:
            self.progress(f"deployment: logs and results kept in {self.workdir}")

    # -- runs ---------------------------------------------------------------------------------
    def _diagnostics(self, run_log: Path) -> str:
        parts = [f"flwr run log {run_log}:\n{_tail(run_log, 40)}"]
        for proc in self.processes:
            state = "running" if proc.alive() else f"exited {proc.popen.returncode}"
            parts.append(f"{proc.name} ({state}) log {proc.log}:\n{_tail(proc.log, 15)}")
        return "\n".join(parts)

    def run(
        self,
        run_config: Mapping[str, Any],
        *,
        project_dir: str | Path | None = None,
        run_timeout_s: float | None = None,
    ) -> FederationResult:
        """Submit one run with ``flwr run`` and return its result (raise its failure).

        Args:
            run_config: run config (``job``, ``party-factory``, ``timeout-s``, job keys...).
                ``<party>-path`` keys are refused: data paths belong in ``node_configs``.
            project_dir: a Flower app project to submit instead of the generated one (e.g. this
                repo); its ``[tool.flwr.app.config]`` must declare every key of ``run_config``.
            run_timeout_s: bound on the whole run, start-up included; ``None`` (default): none
                beyond the run's own (every message is bounded by ``timeout-s``, and a run
                whose ServerApp ends without a result fails), since a fixed bound fails long
                runs that are making progress (a 5-epoch run on a loaded machine took > 600 s).
        """
        if not self.processes:
            raise ProtocolError("LocalDeployment is not started (use it as a context manager)")
        leaked = sorted(k for k in node_only_keys() if run_config.get(k))
        if leaked:
            raise InputError(
                f"run config {leaked}: the run config reaches every party; pass the party "
                "factory and party-private keys as node config (node_configs={'social': "
                "{'social-path': ...}}) instead"
            )
        assert self.security is not None  # set by start()
        run_config = {**run_config, **(self.security.run_config or {})}
        self._runs += 1
        run_dir = self.workdir / "runs" / str(self._runs)
        out_dir = run_dir / "out"
        run_dir.mkdir(parents=True, exist_ok=True)
        config = merged_config(run_config, {OUT_DIR_KEY: str(out_dir)})
        cmd = [str(Path(sys.executable).parent / "flwr"), "run"]
        if project_dir is None:
            clientapp = FORWARDER_CLIENTAPP if self.party_processes else INPROCESS_CLIENTAPP
            project = write_app_project(run_dir / "app", config, clientapp)
            cmd += [str(project), CONNECTION, "--stream"]
        else:
            project = Path(project_dir).resolve()
            declared = declared_run_config(project)
            overrides_config = {k: v for k, v in config.items() if k in declared}
            # "verbose" is cosmetic: dropped silently when the project does not declare it
            undeclared = sorted(set(run_config) - set(declared) - {"verbose"})
            if undeclared:
                raise InputError(
                    f"run config {undeclared}: not declared in [tool.flwr.app.config] of "
                    f"{project / 'pyproject.toml'}; `flwr run --run-config` can only override "
                    "declared keys (declare them, or omit project_dir to use a generated project)"
                )
            overrides = run_dir / "run-config.toml"
            overrides.write_text(tomli_w.dumps(overrides_config))
            cmd += [str(project), CONNECTION, "--stream", "--run-config", str(overrides)]
        run_log = run_dir / "flwr-run.log"
        self.progress(f"deployment: flwr run {project} (log {run_log})")
        start = time.monotonic()
        proc = _Process("flwr run", cmd, flower_env(self.workdir / "cli-home"), run_log)
        printed = 0
        try:
            self.wait_ready()
            while True:
                if (out_dir / RESULT_JSON).exists():
                    break
                self._check_party_processes()
                if not proc.alive():
                    # --stream returns when the run ends; give the result file a moment
                    time.sleep(1.0)
                    if (out_dir / RESULT_JSON).exists():
                        break
                    raise ProtocolError(
                        f"flwr run exited with code {proc.popen.returncode} without a result in "
                        f"{out_dir}\n{self._diagnostics(run_log)}"
                    )
                if run_timeout_s is not None and time.monotonic() - start > run_timeout_s:
                    raise ProtocolError(
                        f"the run did not finish within {run_timeout_s:g} s (run_timeout_s)\n"
                        f"{self._diagnostics(run_log)}"
                    )
                printed = self._echo(run_log, printed)
                time.sleep(0.2)
            if self.progress.enabled:
                # the ServerApp is done; let `flwr run --stream` flush its last lines (to be
                # shown) and exit, boundedly. Unshown, they are not waited for: the result is
                # in hand, and stopping the log stream does not touch the run.
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.popen.wait(timeout=5.0)
                self._echo(run_log, printed)
        finally:
            proc.stop(grace_s=2.0)
        self.progress(f"deployment: run finished in {time.monotonic() - start:.1f} s")
        return read_result(out_dir)

    def _echo(self, log: Path, printed: int) -> int:
        """Pass the new lines of the ``flwr run`` log on as progress messages (when shown)."""
        if not self.progress.enabled:
            return printed
        try:
            lines = log.read_text(errors="replace").splitlines()
        except OSError:
            return printed
        for line in lines[printed:]:
            if line.strip():
                self.progress(f"  | {line}")
        return len(lines)


def run_deployment(
    run_config: Mapping[str, Any],
    *,
    node_configs: Mapping[str, Mapping[str, Any]] | None = None,
    project_dir: str | Path | None = None,
    run_timeout_s: float | None = None,
    startup_timeout_s: float = 60.0,
    keep: bool = False,
    verbose: bool = True,
    party_processes: bool = True,
    insecure: bool = False,
) -> FederationResult:
    """Start a local deployment, run once, tear down; return the result.

    ``party_processes``: see :class:`LocalDeployment`. Run config ``poll-interval-s`` defaults
    to :data:`DEPLOYMENT_POLL_S` here.

    Party-private keys found in ``run_config`` (``<party>-path``, ``<party>-out``) are moved to
    that party's node config (as absolute paths), so each SuperNode, and only it, knows them;
    so is ``party-factory`` (to both). ``insecure``: see :class:`LocalDeployment`.
    """
    config = dict(run_config)
    config.setdefault(POLL_KEY, DEPLOYMENT_POLL_S)
    nodes = {p: dict((node_configs or {}).get(p, {})) for p in PARTIES}
    for party in PARTIES:
        for key in private_keys(party):
            value = config.pop(key, "")
            if value:
                nodes[party][key] = str(Path(str(value)).resolve())
    factory = config.pop(PARTY_FACTORY_KEY, "")
    for party in PARTIES:
        if factory:
            nodes[party].setdefault(PARTY_FACTORY_KEY, factory)
    with LocalDeployment(
        nodes,
        keep=keep,
        verbose=verbose,
        startup_timeout_s=startup_timeout_s,
        party_processes=party_processes,
        insecure=insecure,
    ) as deployment:
        return deployment.run(config, project_dir=project_dir, run_timeout_s=run_timeout_s)


def _parse_value(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return text


def _summary(result: FederationResult) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for key, value in result.values.items():
        if isinstance(value, np.ndarray):
            values[key] = value.tolist() if value.size <= 20 else f"array{value.shape}"
        else:
            values[key] = value
    return {
        "values": values,
        "traffic": result.traffic,
        "messages": result.messages,
        "party_nodes": {k: str(v) for k, v in result.party_nodes.items()},
        "party_stats": result.party_stats,
        "elapsed_s": round(result.elapsed_s, 2),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m fedads.flower.deployment",
        description="Run a fedads job on a local Flower deployment (SuperLink + 2 SuperNodes).",
    )
    parser.add_argument("--job", default=str(DEFAULTS["job"]), help="module:function of the job")
    parser.add_argument(
        "--party-factory",
        default="fedads.flower.testing:echo_party_factory",
        help="module:function (given to each SuperNode's node config, never the run config)",
    )
    for party in PARTIES:
        parser.add_argument(
            f"--{party}-path", default="", help=f"{party}'s data (only its SuperNode is told)"
        )
    parser.add_argument(
        "--run-config",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="extra run config entries (numbers and true/false are parsed)",
    )
    parser.add_argument("--timeout-s", type=float, default=float(DEFAULTS[TIMEOUT_KEY]))
    parser.add_argument("--run-timeout-s", type=float, default=None)
    parser.add_argument("--project-dir", default=None, help="submit this app project instead")
    parser.add_argument("--keep", action="store_true", help="keep logs and results")
    parser.add_argument("--quiet", action="store_true")
    parser.add_argument(
        "--insecure",
        action="store_true",
        help="no TLS, no SuperNode authentication, roles on the nodes' word (prints a warning)",
    )
    args = parser.parse_args(argv)
    set_verbosity("warning" if args.quiet else "info")
    config: dict[str, Any] = {
        "job": args.job,
        "party-factory": args.party_factory,
        TIMEOUT_KEY: args.timeout_s,
    }
    for item in args.run_config:
        key, sep, value = item.partition("=")
        if not sep:
            parser.error(f"--run-config {item!r}: expected KEY=VALUE")
        config[key] = _parse_value(value)
    for party in PARTIES:
        path = getattr(args, f"{party}_path")
        if path:
            config[data_path_key(party)] = path
    result = run_deployment(
        config,
        project_dir=args.project_dir,
        run_timeout_s=args.run_timeout_s,
        keep=args.keep,
        verbose=not args.quiet,
        insecure=args.insecure,
    )
    print(json.dumps(_summary(result), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
