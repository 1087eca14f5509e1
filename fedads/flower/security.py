"""Deployment security: TLS certificates, SuperNode authentication keys, party role proofs.

Three independent locks, each against a different intruder (docs/threat-model.md):

* **TLS** (:func:`write_certificates`, the ``fedads certs`` command): a local certificate
  authority and a server certificate for the SuperLink's host, so SuperNodes and the ``flwr``
  CLI talk to the real SuperLink over an encrypted channel (``--ssl-*`` / ``--root-certificates``,
  ``root-certificates`` in the CLI's connection).
* **SuperNode authentication** (:func:`write_node_auth_key`, :func:`register_supernode`): each
  SuperNode has its own ECDSA P-384 key pair (OpenSSH format, what Flower 1.42 reads); the
  SuperLink runs with ``--enable-supernode-auth`` and accepts only nodes whose public key was
  registered with ``flwr supernode register``. An unregistered node is refused at connection.
* **Role proofs** (:func:`new_challenge`, :func:`prove_role`, :func:`check_role_proof`): a
  registered node still only *claims* a role in its node config. The ServerApp binds a role to
  the party's sealing public key (``fedads keys``; run config ``<role>-public-key``, hex): its
  ``hello`` carries a fresh challenge and an ephemeral X25519 public key, and the node answers
  with a MAC under a key only the holder of that role's sealing secret key can derive. A node
  claiming a role without its key, or a third node claiming a taken role, is refused.

The command-line arguments of each Flower process for the secure (default) and the insecure
(explicit) setups are built here too (:func:`superlink_args`, :func:`supernode_args`,
:func:`cli_connection`), so :mod:`fedads.flower.deployment` only passes them on.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from nacl.bindings import crypto_scalarmult, crypto_scalarmult_base

from fedads._validation import fail
from fedads.errors import ProtocolError

ROLES: tuple[str, str] = ("social", "ecommerce")
CA_CERT, CA_KEY = "ca.crt", "ca.key"
SERVER_CERT, SERVER_KEY = "server.pem", "server.key"
#: Run config key of a role's sealing public key (64 hex characters): ``social-public-key``.
PUBLIC_KEY_SUFFIX = "public-key"
#: Run config switch that lets the ServerApp trust a node's own role claim (insecure mode only).
TRUST_CLAIMS_KEY = "trust-role-claims"
INSECURE_WARNING = (
    "INSECURE deployment: no TLS (traffic to the SuperLink in clear), no SuperNode "
    "authentication (any node may connect) and roles taken on the nodes' word; for local "
    "experiments only"
)
_HELLO_PERSON = b"fedads-hello-v1"
_LOG = logging.getLogger("fedads.flower.security")


# ------------------------------------------------------------------------------------ TLS
@dataclass(frozen=True)
class TlsFiles:
    """Where :func:`write_certificates` put the files.

    Attributes:
        ca_cert: the CA certificate (PEM): give it to every SuperNode and CLI user
            (``--root-certificates``, ``root-certificates``); public.
        ca_key: the CA's private key (PEM, 0600): keep it off the servers, or delete it.
        server_cert, server_key: the SuperLink's certificate and private key (0600).
    """

    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


def _refuse_existing(where: str, paths: Sequence[Path]) -> None:
    existing = [str(p) for p in paths if p.exists()]
    if existing:
        raise fail(where, f"{existing} already exist", "use another --out, or delete them first")


def _san(hosts: Sequence[str]) -> x509.SubjectAlternativeName:
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return x509.SubjectAlternativeName(names)


def write_certificates(
    out_dir: str | Path, hosts: Sequence[str] = ("127.0.0.1", "localhost"), *, days: int = 365
) -> TlsFiles:
    """A new local CA and a server certificate for ``hosts``, signed by it (ECDSA P-384).

    Args:
        out_dir: folder for ``ca.crt``, ``ca.key``, ``server.pem``, ``server.key`` (created;
            existing files are never overwritten).
        hosts: the names and IP addresses SuperNodes and the CLI use to reach the SuperLink
            (subject alternative names; the first is also the common name).
        days: validity of both certificates.
    """
    where = "fedads certs"
    if not hosts or any(not str(h).strip() for h in hosts):
        raise fail(where, f"hosts {list(hosts)!r}", "name at least one host, e.g. --host 10.0.0.5")
    if days < 1:
        raise fail(where, f"days={days}", "give a positive number of days")
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    files = TlsFiles(folder / CA_CERT, folder / CA_KEY, folder / SERVER_CERT, folder / SERVER_KEY)
    _refuse_existing(where, [files.ca_cert, files.ca_key, files.server_cert, files.server_key])
    now = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)  # tolerate small clock skew
    until = now + dt.timedelta(days=days)
    ca_key = ec.generate_private_key(ec.SECP384R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fedads local CA")])
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA384())
    )
    server_key = ec.generate_private_key(ec.SECP384R1())
    server_cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, str(hosts[0]))]))
        .issuer_name(ca_name)
        .public_key(server_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(until)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_san([str(h) for h in hosts]), critical=False)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA384())
    )
    pem = serialization.Encoding.PEM
    private = {
        "encoding": pem,
        "format": serialization.PrivateFormat.PKCS8,
        "encryption_algorithm": serialization.NoEncryption(),
    }
    _write_private(files.ca_key, ca_key.private_bytes(**private))
    _write_private(files.server_key, server_key.private_bytes(**private))
    files.ca_cert.write_bytes(ca_cert.public_bytes(pem))
    files.server_cert.write_bytes(server_cert.public_bytes(pem))
    return files


def certificate_fingerprint(path: str | Path) -> str:
    """SHA-256 fingerprint of a PEM certificate (``AB:CD:...``), to compare out of band."""
    cert = x509.load_pem_x509_certificate(Path(path).read_bytes())
    return cert.fingerprint(hashes.SHA256()).hex(":").upper()


# ------------------------------------------------------------------- SuperNode authentication
def write_node_auth_key(out_dir: str | Path, name: str) -> tuple[Path, Path]:
    """A SuperNode's authentication key pair, ECDSA P-384 in OpenSSH format (Flower 1.42's).

    Writes ``out_dir/<name>-auth`` (private, 0600; ``flower-supernode
    --auth-supernode-private-key``) and ``<name>-auth.pub`` (``flwr supernode register``), the
    files ``ssh-keygen -t ecdsa -b 384 -N ""`` would write. Returns ``(private, public)``.
    """
    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    private, public = folder / f"{name}-auth", folder / f"{name}-auth.pub"
    _refuse_existing("SuperNode auth key", [private, public])
    key = ec.generate_private_key(ec.SECP384R1())
    _write_private(
        private,
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.OpenSSH,
            serialization.NoEncryption(),
        ),
    )
    line = key.public_key().public_bytes(
        serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH
    )
    public.write_bytes(line + f" fedads-{name}\n".encode())
    return private, public


def register_supernode(
    public_key: str | Path, connection: str, env: Mapping[str, str], flwr: str | Path = "flwr"
) -> int:
    """Register a SuperNode's public key with the SuperLink (``flwr supernode register``).

    Args:
        public_key: the ``.pub`` file of :func:`write_node_auth_key`.
        connection: the name of the SuperLink connection in ``$FLWR_HOME/config.toml``.
        env: environment of the ``flwr`` call (its ``FLWR_HOME`` holds the connection).
        flwr: the ``flwr`` executable.

    Returns:
        The node id the SuperLink assigned (the node keeps it when it connects).
    """
    cmd = [str(flwr), "supernode", "register", str(public_key), connection, "--format", "json"]
    done = subprocess.run(
        cmd, env=dict(env), capture_output=True, text=True, timeout=120, check=False
    )
    node_id = None
    start = done.stdout.find("{")  # the JSON object spans several lines
    if start >= 0:
        try:
            node_id = json.loads(done.stdout[start:]).get("node-id")
        except (json.JSONDecodeError, AttributeError):
            node_id = None
    if done.returncode != 0 or node_id is None:
        raise ProtocolError(
            f"`{' '.join(cmd)}` failed (exit {done.returncode}): "
            f"{(done.stdout + done.stderr).strip()[-1500:]}"
        )
    return int(node_id)


# ------------------------------------------------------------------- process arguments
def superlink_args(tls: TlsFiles | None, *, node_auth: bool = True) -> list[str]:
    """``flower-superlink`` security arguments: TLS files (+ node authentication) or
    ``--insecure`` when ``tls`` is None (Flower refuses node authentication without TLS)."""
    if tls is None:
        return ["--insecure"]
    args = [
        "--ssl-ca-certfile",
        str(tls.ca_cert),
        "--ssl-certfile",
        str(tls.server_cert),
        "--ssl-keyfile",
        str(tls.server_key),
    ]
    return [*args, "--enable-supernode-auth"] if node_auth else args


def supernode_args(ca_cert: str | Path | None, auth_key: str | Path | None = None) -> list[str]:
    """``flower-supernode`` security arguments: the CA to trust and the node's private
    authentication key, or ``--insecure`` when ``ca_cert`` is None."""
    if ca_cert is None:
        return ["--insecure"]
    args = ["--root-certificates", str(ca_cert)]
    return [*args, "--auth-supernode-private-key", str(auth_key)] if auth_key else args


def cli_connection(address: str, ca_cert: str | Path | None) -> dict[str, Any]:
    """One ``[superlink.<name>]`` entry of the CLI's ``$FLWR_HOME/config.toml``."""
    if ca_cert is None:
        return {"address": address, "insecure": True}
    return {"address": address, "root-certificates": str(ca_cert)}


def warn_insecure() -> None:
    """Log :data:`INSECURE_WARNING` at WARNING level (also when progress lines are off)."""
    _LOG.warning(INSECURE_WARNING)


# ------------------------------------------------------------------------ role proofs
def public_key_key(role: str) -> str:
    """Run config key of ``role``'s sealing public key: ``social-public-key``."""
    return f"{role}-{PUBLIC_KEY_SUFFIX}"


def public_of(secret: bytes) -> bytes:
    """The X25519 public key of a 32-byte sealing secret key."""
    return bytes(crypto_scalarmult_base(bytes(secret)))


def role_public_keys(config: Mapping[str, Any]) -> dict[str, bytes]:
    """``{role: public key}`` from run config ``<role>-public-key`` (hex; empty: not set).

    Raises ``InputError`` for a value that is not 32 bytes of hex, naming the key.
    """
    out: dict[str, bytes] = {}
    for role in ROLES:
        value = str(config.get(public_key_key(role)) or "").strip()
        if not value:
            continue
        try:
            key = bytes.fromhex(value)
        except ValueError:
            key = b""
        if len(key) != 32:
            raise fail(
                "run config",
                f"{public_key_key(role)!r} is not a 64-character hex public key",
                f"set it to the second line of the {role} party's `fedads keys` .pub file",
            )
        out[role] = key
    return out


@dataclass(frozen=True)
class Challenge:
    """What the ServerApp keeps of one ``hello`` challenge (never sent: ``secret``)."""

    nonce: bytes
    secret: bytes
    public: bytes

    def meta(self) -> dict[str, str]:
        """The ``hello`` envelope's meta: the nonce and the ephemeral public key, hex."""
        return {"challenge": self.nonce.hex(), "ephemeral": self.public.hex()}


def new_challenge() -> Challenge:
    """A fresh challenge: 32 random bytes and an ephemeral X25519 key pair."""
    secret = os.urandom(32)
    return Challenge(os.urandom(32), secret, public_of(secret))


def _mac(shared: bytes, nonce: bytes, role: str, public: bytes, ephemeral: bytes) -> bytes:
    # Domain-separated from the sealing key (HSalsa20 of the same kind of X25519 output): a
    # ServerApp that sends the peer's public key as "ephemeral" learns a MAC under an
    # unrelated key, nothing about the sealing key.
    key = hashlib.blake2b(shared + ephemeral + public, digest_size=32, person=_HELLO_PERSON)
    data = nonce + role.encode() + public
    return hashlib.blake2b(data, key=key.digest(), digest_size=32).digest()


def prove_role(role: str, secret: bytes, meta: Mapping[str, Any]) -> dict[str, str]:
    """The node's answer to a ``hello`` challenge: ``{"proof": hex, "public-key": hex}``.

    ``secret`` is the node's own sealing secret key (from its node config only).
    """
    try:
        nonce = bytes.fromhex(str(meta.get("challenge", "")))
        ephemeral = bytes.fromhex(str(meta.get("ephemeral", "")))
    except ValueError:
        nonce = ephemeral = b""
    if len(nonce) != 32 or len(ephemeral) != 32:
        raise ProtocolError("hello: the challenge is not 32 + 32 bytes of hex")
    public = public_of(secret)
    shared = bytes(crypto_scalarmult(bytes(secret), ephemeral))
    proof = _mac(shared, nonce, role, public, ephemeral)
    return {"proof": proof.hex(), "public-key": public.hex()}


def answer_challenge(
    role: str, own_config: Mapping[str, Any], meta: Mapping[str, Any]
) -> dict[str, str]:
    """A node's answer to the ServerApp's ``hello`` challenge (:func:`prove_role`).

    ``own_config`` is the node's own config only (its node config, or in simulation the config
    the ClientApp was built with), never the run config; its ``<role>-secret-key`` names the
    sealing secret key file. Without one the answer holds no proof (the ServerApp refuses the
    node unless it trusts role claims).
    """
    from fedads.protocol.sealing import read_key

    path = own_config.get(f"{role}-secret-key")
    if not path:
        return {}
    return prove_role(role, read_key(str(path), kind="secret", role=role), meta)


def check_role_proof(
    challenge: Challenge, role: str, expected_public: bytes, reply_meta: Mapping[str, Any]
) -> str | None:
    """``None`` if the reply proves possession of ``role``'s secret key, else why not."""
    proof_hex = str(reply_meta.get("proof", ""))
    if not proof_hex:
        return f"claims {role!r} but proves no key (its node config has no '{role}-secret-key')"
    try:
        proof = bytes.fromhex(proof_hex)
    except ValueError:
        proof = b""
    shared = bytes(crypto_scalarmult(challenge.secret, expected_public))
    expected = _mac(shared, challenge.nonce, role, expected_public, challenge.public)
    if not hmac.compare_digest(proof, expected):
        return (
            f"claims {role!r} but does not hold the key of run config "
            f"'{public_key_key(role)}' (its proof does not verify)"
        )
    return None


# ------------------------------------------------------------------- local deployment
@dataclass
class LocalSecurity:
    """The security material of one :class:`~fedads.flower.deployment.LocalDeployment`.

    Attributes:
        insecure: no TLS, no node authentication, roles trusted (explicit opt-in only).
        tls: the CA and SuperLink certificate (None when insecure).
        auth_keys: ``{party: (private, public)}`` SuperNode authentication key files.
        run_config: what the run config must carry: each party's sealing public key
            (``<role>-public-key``), or ``trust-role-claims = true`` when insecure.
    """

    insecure: bool
    tls: TlsFiles | None = None
    auth_keys: dict[str, tuple[Path, Path]] | None = None
    run_config: dict[str, Any] | None = None

    def superlink_args(self) -> list[str]:
        return superlink_args(self.tls)

    def supernode_args(self, party: str) -> list[str]:
        if self.tls is None or not self.auth_keys:
            return supernode_args(None)
        return supernode_args(self.tls.ca_cert, self.auth_keys[party][0])

    def connection(self, address: str) -> dict[str, Any]:
        return cli_connection(address, None if self.tls is None else self.tls.ca_cert)

    def register(
        self, address: str, admin_home: Path, env: Mapping[str, str], flwr: str | Path
    ) -> dict[str, int]:
        """Register every party's SuperNode key with the SuperLink at ``address`` (both at
        once: each ``flwr`` call spends seconds importing); ``{party: node_id}``."""
        if self.insecure or not self.auth_keys:
            return {}
        from concurrent.futures import ThreadPoolExecutor

        import tomli_w

        admin_home.mkdir(parents=True, exist_ok=True)
        connection = "fedads-admin"
        (admin_home / "config.toml").write_text(
            tomli_w.dumps(
                {"superlink": {"default": connection, connection: self.connection(address)}}
            )
        )
        with ThreadPoolExecutor(max_workers=len(self.auth_keys)) as pool:
            futures = {
                party: pool.submit(register_supernode, keys[1], connection, env, flwr)
                for party, keys in self.auth_keys.items()
            }
            return {party: future.result() for party, future in futures.items()}


def prepare_local_security(
    workdir: Path,
    node_configs: dict[str, dict[str, Any]],
    *,
    insecure: bool = False,
    hosts: Sequence[str] = ("127.0.0.1", "localhost"),
) -> LocalSecurity:
    """Make what a secure local deployment needs under ``workdir``; fill ``node_configs``.

    Secure (default): a CA and SuperLink certificate (``workdir/certs``), one SuperNode
    authentication key pair per party (``workdir/<party>/auth``), and, for a party whose node
    config names no ``<role>-secret-key``, a fresh sealing key pair in ``workdir/<party>/keys``
    (its node config gets its own secret key and, if missing, the peer's public key). The run
    config then names both parties' sealing public keys, derived from their secret key files.
    Insecure: nothing is made; a warning is logged; the run config trusts role claims.
    """
    from fedads.protocol.sealing import read_key, write_keypair

    if insecure:
        warn_insecure()
        return LocalSecurity(insecure=True, run_config={TRUST_CLAIMS_KEY: True})
    tls = write_certificates(workdir / "certs", hosts)
    made: dict[str, Path] = {}
    for role in ROLES:
        if not node_configs[role].get(f"{role}-secret-key"):
            secret, public = write_keypair(role, workdir / role / "keys")
            node_configs[role][f"{role}-secret-key"] = str(secret)
            made[role] = public
    for role in made:
        peer = ROLES[1] if role == ROLES[0] else ROLES[0]
        if peer in made and not node_configs[role].get(f"{role}-peer-key"):
            node_configs[role][f"{role}-peer-key"] = str(made[peer])
    run_config: dict[str, Any] = {}
    for role in ROLES:
        secret = read_key(node_configs[role][f"{role}-secret-key"], kind="secret", role=role)
        run_config[public_key_key(role)] = public_of(secret).hex()
    auth = {role: write_node_auth_key(workdir / role / "auth", role) for role in ROLES}
    return LocalSecurity(insecure=False, tls=tls, auth_keys=auth, run_config=run_config)
