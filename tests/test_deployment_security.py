"""Deployment security (issue #13 item 5): TLS certificates, SuperNode authentication, roles
bound to the parties' sealing keys, node-only settings, and the multi-machine recipe.

Fast tests drive the ClientApp adapter and role discovery through the in-process fake grid of
tests/test_flower.py. One ``slow`` test follows the recipe of docs/flower.md on loopback, three
working folders standing for the three hosts, with one ``flwr run``.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import load_ssh_private_key
from flwr.app import Context, RecordDict

from fedads.cli import main as cli_main
from fedads.errors import InputError, PartyError, ProtocolError
from fedads.flower import discover_party_nodes
from fedads.flower.client_app import ClientAdapter
from fedads.flower.config import (
    DEFAULT_PARTY_FACTORY,
    check_shared_run_config,
    party_factory_spec,
)
from fedads.flower.deployment import LocalDeployment
from fedads.flower.security import (
    INSECURE_WARNING,
    TRUST_CLAIMS_KEY,
    check_role_proof,
    new_challenge,
    prepare_local_security,
    prove_role,
    public_of,
    role_public_keys,
    superlink_args,
    supernode_args,
    write_certificates,
    write_node_auth_key,
)
from fedads.flower.server_app import run_server
from fedads.flower.testing import echo_job, echo_party_factory
from fedads.protocol.sealing import generate_keypair, key_file_text
from tests import test_flower
from tests.test_flower import FakeGrid

task_identity = pytest.fixture(test_flower.task_identity.__wrapped__)  # type: ignore[attr-defined]

ROOT = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------- TLS, node keys
def test_certificates_chain_to_the_local_ca_and_name_the_hosts(tmp_path: Path) -> None:
    files = write_certificates(tmp_path / "certs", ["10.0.0.5", "link.example"], days=30)
    ca = x509.load_pem_x509_certificate(files.ca_cert.read_bytes())
    server = x509.load_pem_x509_certificate(files.server_cert.read_bytes())
    server.verify_directly_issued_by(ca)  # raises if the CA did not sign it
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not server.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    san = server.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["10.0.0.5"]
    assert san.get_values_for_type(x509.DNSName) == ["link.example"]
    for secret in (files.ca_key, files.server_key):
        assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    with pytest.raises(InputError, match="already exist"):
        write_certificates(tmp_path / "certs")  # never overwrites


def test_supernode_auth_keys_are_what_flower_reads(tmp_path: Path) -> None:
    from flwr.cli.supernode.register import try_load_public_key

    private, public = write_node_auth_key(tmp_path, "social")
    key = load_ssh_private_key(private.read_bytes(), None)  # what flower-supernode does
    assert isinstance(key, ec.EllipticCurvePrivateKey) and key.curve.name == "secp384r1"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    assert try_load_public_key(public)  # what `flwr supernode register` does


def test_process_arguments_secure_and_insecure(tmp_path: Path) -> None:
    files = write_certificates(tmp_path)
    link = superlink_args(files)
    assert "--insecure" not in link and "--enable-supernode-auth" in link
    assert link[link.index("--ssl-certfile") + 1] == str(files.server_cert)
    node = supernode_args(files.ca_cert, tmp_path / "k")
    assert node == ["--root-certificates", str(files.ca_cert), "--auth-supernode-private-key",
                    str(tmp_path / "k")]  # fmt: skip
    assert superlink_args(None) == supernode_args(None) == ["--insecure"]


def test_cli_certs_and_node_key(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main(["certs", "--out", str(tmp_path / "c"), "--host", "127.0.0.1"]) == 0
    assert "CA fingerprint (SHA-256)" in capsys.readouterr().out
    assert (tmp_path / "c" / "server.pem").exists()
    assert cli_main(["certs", "--node-key", "social", "--out", str(tmp_path / "n")]) == 0
    assert (tmp_path / "n" / "social-auth.pub").read_text().startswith("ecdsa-sha2-nistp384 ")
    assert cli_main(["certs", "--out", str(tmp_path / "c")]) == 2  # refuses to overwrite


def test_local_security_is_on_by_default_and_insecure_warns(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    nodes: dict[str, dict[str, object]] = {"social": {}, "ecommerce": {}}
    secure = prepare_local_security(tmp_path / "s", nodes)  # type: ignore[arg-type]
    assert secure.tls is not None and secure.auth_keys is not None
    assert "--enable-supernode-auth" in secure.superlink_args()
    assert "--auth-supernode-private-key" in secure.supernode_args("social")
    assert "root-certificates" in secure.connection("127.0.0.1:1")
    keys = role_public_keys(secure.run_config or {})
    assert set(keys) == {"social", "ecommerce"}
    assert nodes["social"]["social-peer-key"] == str(tmp_path / "s/ecommerce/keys/ecommerce.pub")
    with caplog.at_level(logging.WARNING, logger="fedads"):
        insecure = prepare_local_security(tmp_path / "i", {"social": {}, "ecommerce": {}})
        insecure = prepare_local_security(tmp_path / "i", {"social": {}, "ecommerce": {}},
                                          insecure=True)  # fmt: skip
    assert INSECURE_WARNING in caplog.text
    assert insecure.superlink_args() == ["--insecure"]
    assert insecure.run_config == {TRUST_CLAIMS_KEY: True}
    assert LocalDeployment(insecure=True, workdir=tmp_path / "d").insecure
    assert not LocalDeployment(workdir=tmp_path / "d2").insecure  # secure unless asked


# ----------------------------------------------------------------------------- role proofs
def test_role_proof_verifies_only_with_the_roles_secret_key() -> None:
    secret, public = generate_keypair()
    other_secret, _ = generate_keypair()
    assert public_of(secret) == public
    challenge = new_challenge()
    answer = prove_role("social", secret, challenge.meta())
    assert check_role_proof(challenge, "social", public, answer) is None
    assert "does not hold the key" in str(  # another key
        check_role_proof(challenge, "social", public, prove_role("social", other_secret,
                                                                 challenge.meta()))
    )  # fmt: skip
    assert "does not hold" in str(check_role_proof(challenge, "ecommerce", public, answer))
    assert "does not hold" in str(check_role_proof(new_challenge(), "social", public, answer))
    assert "proves no key" in str(check_role_proof(challenge, "social", public, {}))


def _write_secret(folder: Path, role: str, secret: bytes) -> str:
    path = folder / f"{role}-{secret[:4].hex()}.key"
    path.write_text(key_file_text(role, "secret", secret))
    return str(path)


@pytest.fixture
def party_keys(tmp_path: Path) -> dict[str, tuple[bytes, str]]:
    """``{role: (public key, secret key file)}`` for both parties, and an impostor's."""
    out = {}
    for role in ("social", "ecommerce", "impostor"):
        secret, public = generate_keypair()
        out[role] = (public, _write_secret(tmp_path, "social" if role == "impostor" else role,
                                           secret))  # fmt: skip
    return out


def _grid(tmp_path: Path, nodes: dict[int, tuple[str, str | None]]) -> FakeGrid:
    """Nodes ``{id: (claimed role, secret key file or None)}``, each key in its node config."""
    grid = FakeGrid(ClientAdapter(echo_party_factory, {"state-dir": str(tmp_path)}),
                    {n: role for n, (role, _) in nodes.items()})  # fmt: skip
    for node, (role, key) in nodes.items():
        if key is not None:
            grid.contexts[node].node_config[f"{role}-secret-key"] = key
    return grid


def _role_keys(keys: dict[str, tuple[bytes, str]]) -> dict[str, bytes]:
    return {role: keys[role][0] for role in ("social", "ecommerce")}


def test_discovery_binds_roles_to_the_nodes_that_prove_them(
    tmp_path: Path, task_identity: None, party_keys: dict[str, tuple[bytes, str]]
) -> None:
    k = party_keys
    grid = _grid(tmp_path, {1: ("social", k["social"][1]), 2: ("ecommerce", k["ecommerce"][1])})
    found = discover_party_nodes(grid, 1.0, 1.0, role_keys=_role_keys(k))  # type: ignore[arg-type]
    assert found == {"social": 1, "ecommerce": 2}


def test_a_third_node_claiming_a_taken_role_is_refused(
    tmp_path: Path, task_identity: None, party_keys: dict[str, tuple[bytes, str]]
) -> None:
    """Node 3 says it is ``social``: once without a key, once with a key of its own."""
    k = party_keys
    for impostor_key in (None, k["impostor"][1]):
        lines: list[str] = []
        grid = _grid(tmp_path, {3: ("social", impostor_key), 1: ("social", k["social"][1]),
                                2: ("ecommerce", k["ecommerce"][1])})  # fmt: skip
        found = discover_party_nodes(
            grid,
            1.0,
            1.0,
            lines.append,
            role_keys=_role_keys(k),  # type: ignore[arg-type]
        )
        assert found == {"social": 1, "ecommerce": 2}  # node 3 is not used
        why = "proves no key" if impostor_key is None else "does not hold the key"
        assert any(line.startswith("role discovery: refused node 3") and why in line
                   for line in lines), lines  # fmt: skip


def test_a_role_without_its_key_is_refused(
    tmp_path: Path, task_identity: None, party_keys: dict[str, tuple[bytes, str]]
) -> None:
    """No node holds the e-commerce key: the node claiming that role is refused, no run."""
    k = party_keys
    wrong = _write_secret(tmp_path, "ecommerce", generate_keypair()[0])  # a key of its own
    for claimant_key in (None, wrong):
        grid = _grid(tmp_path, {1: ("social", k["social"][1]), 2: ("ecommerce", None)})
        if claimant_key is not None:
            grid.contexts[2].node_config["ecommerce-secret-key"] = claimant_key
        with pytest.raises(ProtocolError, match=r"no node proved \['ecommerce'\]") as info:
            discover_party_nodes(grid, 1.0, 0.5, role_keys=_role_keys(k))  # type: ignore[arg-type]
        assert "refused node 2: claims 'ecommerce'" in str(info.value)


def test_one_key_on_two_nodes_ends_discovery(
    tmp_path: Path, task_identity: None, party_keys: dict[str, tuple[bytes, str]]
) -> None:
    k = party_keys
    grid = _grid(tmp_path, {1: ("social", k["social"][1]), 2: ("ecommerce", k["ecommerce"][1]),
                            3: ("social", k["social"][1])})  # fmt: skip
    with pytest.raises(ProtocolError, match="nodes 1 and 3 both prove 'social'"):
        discover_party_nodes(grid, 1.0, 1.0, role_keys=_role_keys(k))  # type: ignore[arg-type]


def test_deployed_serverapp_refuses_to_run_without_the_parties_keys(
    tmp_path: Path, task_identity: None
) -> None:
    grid = _grid(tmp_path, {1: ("social", None), 2: ("ecommerce", None)})
    outcomes: list[object] = []
    context = Context(run_id=7, node_id=0, node_config={}, state=RecordDict(),
                      run_config={"verbose": False})  # fmt: skip
    run_server(grid, context, echo_job, None, outcomes.append, require_role_proof=True)  # type: ignore[arg-type]
    assert isinstance(outcomes[0], ProtocolError)
    assert "names no sealing public key" in str(outcomes[0])
    # the explicit insecure switch takes the nodes' word (what LocalDeployment(insecure=True) sets)
    context.run_config[TRUST_CLAIMS_KEY] = True
    run_server(grid, context, echo_job, None, outcomes.append, require_role_proof=True)  # type: ignore[arg-type]
    assert outcomes[1].party_nodes == {"social": 1, "ecommerce": 2}  # type: ignore[attr-defined]


# ----------------------------------------------------------------------------- node-only keys
@pytest.mark.parametrize(
    "key",
    ["party-factory", "social-path", "ecommerce-out", "state-dir", "social-secret-key"],
)
def test_run_config_may_not_set_node_only_keys(key: str) -> None:
    with pytest.raises(InputError, match="taken only from its node") as info:
        check_shared_run_config({"protocol-epochs": 2, key: "x"})
    assert key in str(info.value)
    check_shared_run_config({"protocol-epochs": 2, key: ""})  # declared but unset: fine


def test_factory_comes_from_the_node_never_the_run_config() -> None:
    node = {"party-factory": "fedads.flower.testing:echo_party_factory"}
    assert party_factory_spec(node, {"party-factory": "x:y"}) == node["party-factory"]
    assert party_factory_spec({}, {"party-factory": "x:y"}) == "x:y"  # the ClientApp's own
    assert party_factory_spec({}) == DEFAULT_PARTY_FACTORY


def test_a_run_config_naming_a_factory_or_path_fails_the_party_at_hello(
    tmp_path: Path, task_identity: None
) -> None:
    """The submitter's run config reaches the ClientApp as ``context.run_config``."""
    for key, value in (("party-factory", "os:system"), ("ecommerce-path", "/etc/shadow")):
        grid = _grid(tmp_path, {1: ("social", None), 2: ("ecommerce", None)})
        grid.contexts[2].run_config[key] = value
        with pytest.raises(PartyError, match="taken only from its node config") as info:
            discover_party_nodes(grid, 1.0, 1.0)  # type: ignore[arg-type]
        assert info.value.party == "ecommerce" and key in str(info.value)


def test_local_deployment_moves_or_refuses_node_only_keys(tmp_path: Path) -> None:
    deployment = LocalDeployment(workdir=tmp_path, insecure=True)
    deployment.processes.append(object())  # type: ignore[arg-type] - "started", nothing runs
    with pytest.raises(InputError, match=r"\['party-factory'\]"):
        deployment.run({"party-factory": "fedads.flower.testing:echo_party_factory"})
    deployment.processes.clear()


# ----------------------------------------------------------------------------- the recipe
def _recipe_blocks() -> tuple[str, str]:
    """The recipe's two bash blocks in docs/flower.md: credentials + exchange, start + run."""
    from tests.test_docs import extract_blocks

    blocks = extract_blocks(ROOT / "docs" / "flower.md")

    def find(marker: str) -> str:
        (code,) = [b.code for b in blocks if marker in b.code]
        return code

    return find("fedads certs --out link/certs"), find("flower-superlink --ssl-ca-certfile")


def _free_port_block() -> int:
    """A port with the next two free as well (the recipe's SuperNodes use PORT+1, PORT+2)."""
    for _ in range(50):
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        if port + 2 < 65536 and all(_free(p) for p in (port + 1, port + 2)):
            return port
    raise RuntimeError("no block of three free ports")


def _free(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) != 0


def _stop_group(proc: subprocess.Popen[bytes]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            continue


@pytest.fixture
def recipe_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    from tests.test_docs import _environment

    env = _environment()
    env["FLWR_TELEMETRY_ENABLED"] = "0"
    yield env


def _wait_listening(port: int, proc: subprocess.Popen[bytes], timeout_s: float) -> bool:
    """Wait until something accepts connections on loopback ``port`` while ``proc`` runs."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        if not _free(port):
            return True
        time.sleep(0.1)
    return False


def _own_port(recipe_port: int) -> int:
    """A free port outside the recipe's three (its SuperNodes may not have bound theirs yet)."""
    while (candidate := _free_port_block()) in range(recipe_port - 2, recipe_port + 3):
        pass
    return candidate


def _start_intruder(tmp_path: Path, port: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    """A SuperNode whose auth key (made like `fedads certs --node-key`) was never registered."""
    write_node_auth_key(tmp_path / "intruder", "intruder")
    with (tmp_path / "intruder" / "supernode.log").open("wb") as out:
        return subprocess.Popen(
            [str(Path(sys.executable).parent / "flower-supernode"),
             "--root-certificates", str(tmp_path / "social" / "ca.crt"),
             "--auth-supernode-private-key", str(tmp_path / "intruder" / "intruder-auth"),
             "--superlink", f"127.0.0.1:{port}", "--port", str(_own_port(port)),
             "--max-retries", "1", "--node-config", 'party="social"'],
            env={**env, "FLWR_HOME": str(tmp_path / "intruder" / "home")},
            stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip


@pytest.mark.slow
def test_recipe_runs_on_loopback_with_tls_node_auth_and_role_proofs(
    tmp_path: Path, recipe_env: dict[str, str]
) -> None:
    """docs/flower.md's recipe, as written, in three folders standing for the three hosts.

    One ``flwr run`` of the echo app (``APP``, ``FACTORY``: one message to each party in turn,
    ``echo-rounds = 0``); meanwhile, once the SuperLink listens, a SuperNode whose key was never
    registered dials the same SuperLink and is refused. Checks: the run finished with both
    roles proven; each party read only its own data path; the SuperLink served HTTPS with node
    authentication on, activated the two registered nodes and no other.
    """
    from fedads.flower import read_result
    from fedads.flower.config import merged_config
    from fedads.flower.deployment import write_app_project

    credentials, start = _recipe_blocks()
    shutil.copytree(ROOT / "data", tmp_path / "data")
    argv = ["bash", "-e", "-o", "pipefail", "-c", credentials]
    done = subprocess.run(
        argv, cwd=tmp_path, env=recipe_env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stdout + done.stderr
    app = write_app_project(
        tmp_path / "echo-app",
        merged_config(
            {
                "job": "fedads.flower.testing:echo_job",
                "echo-rounds": 0,  # only the per-party sends: each message costs seconds here
                # as this repository's pyproject.toml (the recipe's APP): at the 2 ms default,
                # the ServerApp's reply checks kept the SuperLink busy, starving the processes
                # Flower starts per message
                "poll-interval-s": 0.05,
                "timeout-s": 400.0,
                "node-wait-s": 400.0,
            }
        ),  # fmt: skip
    )
    port = _free_port_block()
    env = {**recipe_env, "LINK": "127.0.0.1", "PORT": str(port), "APP": str(app),
           "FACTORY": "fedads.flower.testing:echo_party_factory"}  # fmt: skip
    log = tmp_path / "recipe.log"
    link_log_path = tmp_path / "link" / "superlink.log"
    refused = "No SuperNode found with the given public key"
    with log.open("wb") as out:
        proc = subprocess.Popen(["bash", "-e", "-o", "pipefail", "-c", start], cwd=tmp_path,
                                env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)  # fmt: skip
    intruder: subprocess.Popen[bytes] | None = None
    try:
        # The intruder's refusal overlaps the run instead of following it.
        if _wait_listening(port, proc, 300):
            intruder = _start_intruder(tmp_path, port, recipe_env)
        try:
            code = proc.wait(timeout=900)
        except subprocess.TimeoutExpired:
            code = -1
        text = log.read_text(errors="replace")
        link_log = link_log_path.read_text(errors="replace")
        assert code == 0, f"recipe exit {code}\n{text[-4000:]}\n--- superlink\n{link_log[-2000:]}"
        result = read_result(tmp_path / "link" / "out")
        assert list(result["counters-social"]) == [1] == list(result["counters-ecommerce"])
        for role in ("social", "ecommerce"):  # its own path, from its own node config
            assert result[f"data-path-{role}"] == str(tmp_path / role / "data" / f"{role}.csv")
            assert result[f"visible-paths-{role}"] == ""  # nothing private in the run config
        assert "running on https://" in link_log.lower()
        assert "SuperNode authentication is disabled" not in link_log
        # The intruder (a key the link host never registered): refused at connection.
        assert intruder is not None, "the SuperLink never listened"
        deadline = time.monotonic() + 180
        while refused not in link_log and time.monotonic() < deadline:
            time.sleep(0.2)
            link_log = link_log_path.read_text(errors="replace")
        intruder_log = (tmp_path / "intruder" / "supernode.log").read_text(errors="replace")
        assert refused in link_log, intruder_log[-2000:]
        assert "Failed to activate SuperNode" in intruder_log or (
            intruder.poll() is None  # still retrying: refused again each time
        )
        created = re.findall(r"Created node_id=(\d+)", link_log)
        activated = re.findall(r"Activated node_id=(\d+)", link_log)
        assert len(created) == 2 and sorted(set(activated)) == sorted(created), link_log[-3000:]
    finally:
        if intruder is not None:
            _stop_group(intruder)
        _stop_group(proc)


def test_an_impostor_that_fails_its_hello_does_not_stop_discovery(
    tmp_path: Path, task_identity: None, party_keys: dict[str, tuple[bytes, str]]
) -> None:
    """A failing node claiming a role another node proved is refused, not fatal."""
    from fedads.flower.testing import EchoParty

    def factory(role: str, run_config: dict, node_config: dict) -> EchoParty:
        if node_config.get("broken"):
            raise RuntimeError("impostor breaks on purpose")
        return EchoParty(role, run_config, node_config)

    k = party_keys
    grid = _grid(tmp_path, {1: ("social", k["social"][1]), 2: ("ecommerce", k["ecommerce"][1]),
                            3: ("social", None)})  # fmt: skip
    grid.adapter = ClientAdapter(factory, {"state-dir": str(tmp_path)})
    grid.contexts[3].node_config["broken"] = True
    lines: list[str] = []
    found = discover_party_nodes(grid, 1.0, 1.0, lines.append, role_keys=_role_keys(k))  # type: ignore[arg-type]
    assert found == {"social": 1, "ecommerce": 2}
    assert any("impostor breaks on purpose" in line for line in lines), lines
    # without a proven social node, the same failure is the social party's and is raised
    grid = _grid(tmp_path, {2: ("ecommerce", k["ecommerce"][1]), 3: ("social", None)})
    grid.adapter = ClientAdapter(factory, {"state-dir": str(tmp_path)})
    grid.contexts[3].node_config["broken"] = True
    with pytest.raises(PartyError, match="impostor breaks on purpose"):
        discover_party_nodes(grid, 1.0, 1.0, role_keys=_role_keys(k))  # type: ignore[arg-type]


def test_the_party_process_refuses_node_only_keys_in_the_run_config(tmp_path: Path) -> None:
    """Long-lived party processes get the run config from the forwarder: the same rule."""
    from fedads.flower.party_process import PartyServer
    from fedads.protocol.envelope import Envelope

    server = PartyServer({"party": "social", "state-dir": str(tmp_path),
                          "party-factory": "fedads.flower.testing:echo_party_factory"})  # fmt: skip
    header = {"role": "social", "run_id": 1, "message_type": "query",
              "run_config": {"social-path": "/etc/shadow"}}  # fmt: skip
    answer, reply = server.dispatch(header, Envelope("hello"))
    assert not answer["ok"] and reply is None
    assert "taken only from its node config" in answer["error"]
    answer, reply = server.dispatch({**header, "run_config": {}}, Envelope("hello"))
    assert answer["ok"] and reply is not None and reply.meta["party"] == "social"
