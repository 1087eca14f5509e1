"""The ``fedads`` command: a thin shell over :class:`fedads.experiment.Experiment`.

Subcommands:
    ``fedads demo [--quick] [--users N] [--epochs E] [--timeout S] [--out DIR]``: the default
    synthetic world through Flower's simulation engine, a table printed at the end, reports
    written to DIR.
    ``fedads run --social PATH --ecommerce PATH --key COL ...``: bring-your-own party tables.
    ``fedads world --users N --seed S [--out DIR]``: write a synthetic world's tables.
    ``fedads certs --out DIR --host HOST``: a local CA and the SuperLink's TLS certificate;
    ``fedads certs --node-key NAME --out DIR``: a SuperNode's authentication key pair instead.

Exit codes (one rule, README "Exit codes"): 0 success, 2 bad input (one line
``fedads: error: <what>; <how to fix>``), 1 internal failure (one line ``fedads: failed: ...``),
130 interrupted by SIGINT (Ctrl-C), 143 terminated by SIGTERM. OS errors are one line too: 2 for
a path the user can fix (permission, missing folder), 1 otherwise (disk full). Report folders are
written atomically (:func:`fedads.report.write_report`), so an interrupted run leaves no partial
report. Not covered here: stopping Flower's engine processes on an interrupt (issue #17).

Resume: ``run`` and ``demo`` keep their per-epoch state in the sibling folder ``OUT.resume``
(:func:`resume_dir_for`) while they run; an interrupted or failed run leaves it and says so in
its last line, ``--resume`` continues that run after its last completed epoch (refused, exit 2,
with other tables or options), and a completed run removes it.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import math
import os
import signal
import sys
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from fedads._progress import set_verbosity
from fedads._timeout import DEFAULT_TIMEOUT_S
from fedads.errors import FedadsError, InputError

DEFAULT_OUT = "fedads-out"
EXIT_INPUT = 2
EXIT_FAILURE = 1
EXIT_SIGINT = 130
EXIT_SIGTERM = 143
#: OS errors a user fixes by giving another path (exit 2); others (disk full, I/O) exit 1.
USER_PATH_ERRNOS = frozenset(
    {
        errno.EACCES,
        errno.EPERM,
        errno.EROFS,
        errno.ENOENT,
        errno.ENOTDIR,
        errno.EISDIR,
        errno.EEXIST,
        errno.ENAMETOOLONG,
        errno.ENOTEMPTY,
    }
)


class Terminated(BaseException):
    """SIGTERM arrived; raised from the signal handler so cleanup (``finally``) runs."""


#: The signal that arrived during this main() call (None: none). A backend may catch the
#: interrupt and report its own failure instead (e.g. an engine "failed" with an empty reason);
#: the exit code still says "interrupted".
_RECEIVED: list[int] = []


def _on_signal(signum: int, frame: object) -> None:
    _RECEIVED.append(signum)
    if signum == signal.SIGTERM:
        raise Terminated
    raise KeyboardInterrupt


def _interrupted_exit(hint: str = "") -> int | None:
    """Exit code and one line for a signal received during the run (None: no signal)."""
    if not _RECEIVED:
        return None
    if _RECEIVED[0] == signal.SIGTERM:
        print(f"fedads: terminated (SIGTERM){hint}", file=sys.stderr)
        return EXIT_SIGTERM
    print(f"fedads: interrupted (SIGINT){hint}", file=sys.stderr)
    return EXIT_SIGINT


RESUME_SUFFIX = ".resume"


def resume_dir_for(out: str | Path) -> Path:
    """Where ``fedads run/demo --out OUT`` keeps its resume state: the sibling ``OUT.resume``
    (kept after an interrupt or a failure, removed once the report is written)."""
    out = Path(os.path.abspath(out))
    return out.with_name(out.name + RESUME_SUFFIX)


def _resume_hint(args: argparse.Namespace) -> str:
    """``; ...--resume...`` when an interrupted ``run`` / ``demo`` left state to resume from."""
    if getattr(args, "command", None) not in ("run", "demo"):
        return ""
    state = resume_dir_for(args.out)
    try:  # the coordinator's manifest (fedads.protocol.resume), read without importing torch
        manifest = json.loads((state / "coordinator" / "manifest.json").read_text())
        if not isinstance(manifest, dict):
            return ""
    except (OSError, ValueError):
        return ""
    epochs = manifest.get("settings", {}).get("protocol-epochs", "?")
    return (
        f"; rerun the same command with --resume to continue after epoch "
        f"{manifest.get('epoch', 0)}/{epochs} (state kept in {str(state)!r})"
    )


def os_error_exit(exc: OSError) -> tuple[int, str]:
    """The exit code and one-line message for an OS error (no traceback)."""
    where = f": {exc.filename!r}" if exc.filename else ""
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno in USER_PATH_ERRNOS:
        return EXIT_INPUT, f"fedads: error: {reason}{where}; pass a path you can write to"
    return EXIT_FAILURE, f"fedads: failed: {reason}{where}; free disk space and retry"


def _defense_fields(args: argparse.Namespace) -> dict:  # type: ignore[type-arg]
    """``--defense`` / ``--defense-strength`` as ProtocolConfig fields (absent: its defaults)."""
    fields: dict = {}  # type: ignore[type-arg]
    if getattr(args, "defense", None) is not None:
        fields["defense"] = args.defense
    if getattr(args, "defense_strength", None) is not None:
        fields["defense_strength"] = args.defense_strength
    return fields


def _demo_config(  # noqa: ANN202 - lazy imports
    quick: bool,
    seed: int,
    backend: str,
    defense: dict | None = None,  # type: ignore[type-arg]
    *,
    users: int | None = None,
    epochs: int | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
):
    from fedads.experiment import ExperimentConfig
    from fedads.federation import FederationSettings
    from fedads.protocol import ProtocolConfig
    from fedads.world import WorldConfig

    # --quick: small enough for under 3 minutes on 2 cores, Flower start-up included.
    n_users, n_epochs = (30_000, 4) if quick else (100_000, 6)
    protocol = ProtocolConfig(
        mode="efficient",
        batch_size=512,
        chunk_batches=8,
        epochs=n_epochs if epochs is None else epochs,
        seed=seed,
        timeout_s=timeout_s,
        **(defense or {}),
    )
    n_users = n_users if users is None else users
    return ExperimentConfig(
        world=WorldConfig(n_users=n_users, seed=seed),
        federation=FederationSettings(protocol=protocol, split_seed=seed),
        backend=backend,
        eval_seed=seed,
    )


def _print_summary(result, out_dir: Path | None) -> None:  # noqa: ANN001
    evaluation = result.evaluation
    data = result.data_summary
    budget = evaluation.headline_budget
    print()
    print(
        f"social rows {data['social_rows']:,}  ecommerce rows {data['ecommerce_rows']:,}  "
        f"aligned {data['aligned']:,}  held-out {data['test_users']:,}"
    )
    headline = evaluation.headline()
    print(
        f"\n{'model':<16}{'AUC':>8}{'logloss':>10}"
        f"{'new-cust. conv. (all)':>24}{'(prospecting)':>16}   at budget {budget:.0%}"
    )
    for model in evaluation.models:
        row = [
            headline.get(f"auc.{model}", math.nan),
            headline.get(f"logloss.{model}", math.nan),
            headline.get(f"new_customer_conversions.all.{model}", math.nan),
            headline.get(f"new_customer_conversions.prospecting.{model}", math.nan),
        ]
        print(f"{model:<16}{row[0]:>8.4f}{row[1]:>10.4f}{row[2]:>24.0f}{row[3]:>16.0f}")
    print("\nnew-customer lift of federated over ecommerce_only (paired bootstrap 95% CI):")
    for pool in ("all", "prospecting"):
        lift = evaluation.lift(pool)
        if lift is None:
            continue
        print(
            f"  {pool:<12} {_pct(lift.point):>9}   CI [{_pct(lift.ci_low)}, {_pct(lift.ci_high)}]"
            f"   ({lift.model_count} vs {lift.baseline_count} new-customer conversions)"
        )
    _print_campaign(result)
    if out_dir is not None:
        print(f"\nreport: {out_dir / 'report.md'}  (also report.json, scores.csv, plots)")


def _pct(value: float) -> str:
    return "n/a" if value is None or not math.isfinite(value) else f"{value:+.1%}"


def _cmd_demo(args: argparse.Namespace) -> int:
    from fedads.experiment import Experiment

    config = _demo_config(
        args.quick,
        args.seed,
        args.backend,
        _defense_fields(args),
        users=args.users,
        epochs=args.epochs,
        timeout_s=args.timeout,
    )
    config = _with_campaign(config, args)
    out_dir = Path(args.out)
    result = Experiment.from_world(config).run(
        out_dir, verbose=not args.quiet, resume_dir=resume_dir_for(out_dir), resume=args.resume
    )
    _print_summary(result, out_dir)
    return 0


def _cmd_run(args: argparse.Namespace) -> int:
    from fedads.align import KeyNormalization
    from fedads.experiment import Experiment, ExperimentConfig
    from fedads.federation import FederationSettings
    from fedads.protocol import ProtocolConfig
    from fedads.tables import load_party_table

    social_key = args.social_key or args.key
    ecommerce_key = args.ecommerce_key or args.key
    if not social_key or not ecommerce_key:
        raise InputError(
            "fedads run: no key column; pass --key COL (or --social-key and --ecommerce-key)"
        )
    for flag, path in (("--social", args.social), ("--ecommerce", args.ecommerce)):
        if not Path(path).exists():
            raise InputError(f"fedads run {flag}: file {path!r} not found; check the path")
    protocol = ProtocolConfig(
        mode=args.mode,
        batch_size=args.batch_size,
        epochs=args.epochs,
        seed=args.seed,
        timeout_s=args.timeout,
        **_defense_fields(args),
    )
    settings = FederationSettings(
        protocol=protocol,
        split_seed=args.seed,
        normalization=KeyNormalization(strip=True, lower=args.key_lower),
    )
    # Column names are each party's own: they stay with its table, not in the settings.
    social = load_party_table(args.social, party="social", key=social_key)
    ecommerce = load_party_table(
        args.ecommerce,
        party="ecommerce",
        key=ecommerce_key,
        label=args.label,
        existing=args.existing,
    )
    budgets = tuple(sorted({0.01, 0.05, 0.10, args.budget}))
    config = ExperimentConfig(
        federation=settings,
        backend=args.backend,
        budgets=budgets,
        headline_budget=args.budget,
        eval_seed=args.seed,
        treatment=args.treatment,
        control=args.control,
    )
    config = _with_campaign(config, args)
    out_dir = Path(args.out)
    result = Experiment.from_tables(social, ecommerce, config).run(
        out_dir, verbose=not args.quiet, resume_dir=resume_dir_for(out_dir), resume=args.resume
    )
    print(
        f"\nusers not aligned (present in one table only, not scored by the federated model): "
        f"social {result.data_summary['social_not_aligned']:,}, "
        f"ecommerce {result.data_summary['ecommerce_not_aligned']:,}"
    )
    _print_summary(result, out_dir)
    if result.uplift is not None:
        qini = {m: s.qini_auc for m, s in result.uplift.scores["all"].items()}
        print("Qini AUC (uplift): " + "  ".join(f"{m} {v:.3f}" for m, v in qini.items()))
    return 0


def _cmd_world(args: argparse.Namespace) -> int:
    from fedads.world.__main__ import main as world_main

    argv = ["--users", str(args.users), "--seed", str(args.seed), "--out", str(args.out)]
    for item in args.set or ():
        argv += ["--set", item]
    if args.quiet:
        argv.append("--quiet")
    return int(world_main(argv) or 0)


def _add_defense_flags(command: argparse.ArgumentParser) -> None:
    from fedads.privacy.defenses import DEFENSES

    command.add_argument(
        "--defense",
        choices=DEFENSES,
        default=None,
        help="label defense applied by the e-commerce party to every gradient it sends "
        "('none' = undefended; default: the measured default, see docs/privacy.md)",
    )
    command.add_argument(
        "--defense-strength",
        type=float,
        default=None,
        help="the defense's one parameter (label-dp: epsilon; gaussian: noise multiplier; "
        "marvell: power budget s; max-norm: variance multiplier)",
    )


#: ``run`` and ``demo``'s on/off switches, with their help.
RUN_SWITCHES = {
    "--resume": "continue the interrupted run with the same --out after its last completed epoch "
    "(its state is kept in OUT.resume; same tables and options required; no PSI)",
    "--campaign": "also evaluate the whole campaign: every held-out e-commerce user, aligned or "
    "not, the users without a social account scored by a local model distilled from the "
    "federated one (docs/evaluation.md, 'Campaign view')",
}


def _add_run_switches(command: argparse.ArgumentParser) -> None:
    for flag, help_text in RUN_SWITCHES.items():
        command.add_argument(flag, action="store_true", help=help_text)


def _with_campaign(config, args: argparse.Namespace):  # noqa: ANN001, ANN202 - lazy imports
    """``--campaign``: ``ExperimentConfig(campaign=True)``."""
    return config.replace(campaign=True) if getattr(args, "campaign", False) else config


def _print_campaign(result) -> None:  # noqa: ANN001
    if getattr(result, "campaign", None) is None:
        return
    block = result.campaign.block
    print(
        f"\ncampaign view: {block['test_users']:,} held-out e-commerce users "
        f"({block['aligned_test_users']:,} aligned); lift of the federated system over "
        f"{block['baseline']} at budget {block['budget']:.0%} (paired bootstrap 95% CI):"
    )
    for pool in ("all", "prospecting"):
        entry = block["lift"].get(pool)
        if entry is None:
            continue
        low, high = entry["ci95"]
        print(f"  {pool:<12} {_pct(entry['point']):>9}   CI [{_pct(low)}, {_pct(high)}]")
    fallback = block.get("serving", {}).get("fallback_users", 0)
    if fallback:
        print(f"  {fallback:,} aligned users scored by the local model (social party down)")


def _cmd_keys(args: argparse.Namespace) -> int:
    from fedads.protocol.sealing import fingerprint, read_key, write_keypair

    secret, public = write_keypair(args.role, args.out)
    print(f"{args.role} secret key: {secret} (keep it on this party's host only; mode 0600)")
    print(f"{args.role} public key: {public} (give it to the peer party)")
    print(f"{args.role} public key fingerprint: {fingerprint(read_key(public, kind='public'))}")
    print("Compare fingerprints with the peer out of band (phone, signed mail) before a run.")
    if args.peer:
        peer = read_key(args.peer, kind="public")
        print(f"peer public key fingerprint ({args.peer}): {fingerprint(peer)}")
    return 0


def _cmd_certs(args: argparse.Namespace) -> int:
    from fedads.flower.security import (
        certificate_fingerprint,
        write_certificates,
        write_node_auth_key,
    )

    if args.node_key:
        private, public = write_node_auth_key(args.out, args.node_key)
        print(f"SuperNode auth private key: {private} (mode 0600; stays on the party's host)")
        print(f"SuperNode auth public key: {public} (the link host registers it)")
        return 0
    files = write_certificates(args.out, args.host or ["127.0.0.1", "localhost"], days=args.days)
    print(f"CA certificate: {files.ca_cert} (give it to every SuperNode and `flwr` user)")
    print(f"CA private key: {files.ca_key} (mode 0600; keep it offline or delete it)")
    print(f"SuperLink certificate: {files.server_cert}, key: {files.server_key} (mode 0600)")
    print(f"CA fingerprint (SHA-256): {certificate_fingerprint(files.ca_cert)}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fedads",
        description="Vertical federated learning between a social-ad and an e-commerce ad "
        "platform: new-customer lift at a fixed budget, with honest statistics.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    backends = ("simulation", "inprocess", "deployment")
    timeout_help = f"seconds a party may take to answer one message (default {DEFAULT_TIMEOUT_S:g})"

    demo = sub.add_parser("demo", help="the default synthetic world, end to end through Flower")
    demo.add_argument("--quick", action="store_true", help="a small world (< 3 min on 2 cores)")
    demo.add_argument("--out", default=DEFAULT_OUT, help=f"report folder (default {DEFAULT_OUT})")
    demo.add_argument("--users", type=int, help="e-commerce users (overrides --quick's size)")
    demo.add_argument("--epochs", type=int, help="training epochs (overrides --quick's)")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--backend", choices=backends, default="simulation")
    demo.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS", help=timeout_help
    )
    demo.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    _add_defense_flags(demo)
    _add_run_switches(demo)
    demo.set_defaults(handler=_cmd_demo)

    run = sub.add_parser("run", help="bring-your-own party tables (CSV or Parquet)")
    run.add_argument("--social", required=True, help="social party table")
    run.add_argument("--ecommerce", required=True, help="e-commerce party table")
    run.add_argument("--key", help="join-key column (same name on both sides)")
    run.add_argument("--social-key", help="join-key column of the social table")
    run.add_argument("--ecommerce-key", help="join-key column of the e-commerce table")
    run.add_argument(
        "--key-lower",
        action="store_true",
        help="lower-case keys on both sides before aligning (e-mails, hex digests whose case "
        "differs between the parties); keys are always stripped of surrounding spaces",
    )
    run.add_argument("--label", default="label", help="0/1 conversion column (e-commerce)")
    run.add_argument(
        "--existing", default="is_existing_customer", help="0/1 existing-customer column"
    )
    run.add_argument("--budget", type=float, default=0.10, help="headline budget share")
    run.add_argument(
        "--treatment",
        default=None,
        metavar="COLUMN",
        help="e-commerce column saying who was shown the ad in a randomized campaign: adds "
        "uplift models and the uplift evaluation (report.json 'uplift'); never a feature",
    )
    run.add_argument(
        "--control",
        default=None,
        metavar="VALUE",
        help="value of --treatment marking held-out (control) users (default: the column is "
        "0/1, 0 = control)",
    )
    run.add_argument("--out", default=DEFAULT_OUT)
    run.add_argument("--mode", choices=("exact", "efficient"), default="efficient")
    run.add_argument("--epochs", type=int, default=5)
    run.add_argument("--batch-size", type=int, default=512)
    run.add_argument("--seed", type=int, default=0)
    run.add_argument("--backend", choices=backends, default="simulation")
    run.add_argument(
        "--timeout", type=float, default=DEFAULT_TIMEOUT_S, metavar="SECONDS", help=timeout_help
    )
    run.add_argument("-q", "--quiet", action="store_true")
    _add_defense_flags(run)
    _add_run_switches(run)
    run.set_defaults(handler=_cmd_run)

    world = sub.add_parser("world", help="write a synthetic world's party tables")
    world.add_argument("--users", type=int, default=20_000, help="e-commerce users")
    world.add_argument("--seed", type=int, default=0)
    world.add_argument("--out", default="fedads-world")
    world.add_argument("--set", action="append", help="WorldConfig field, name=value")
    world.add_argument("-q", "--quiet", action="store_true")
    world.set_defaults(handler=_cmd_world)
    keys = sub.add_parser(
        "keys", help="a party's sealing key pair (docs/threat-model.md); prints fingerprints"
    )
    keys.add_argument("--role", choices=("social", "ecommerce"), required=True)
    keys.add_argument("--out", default="fedads-keys", help="folder for <role>.key and <role>.pub")
    keys.add_argument("--peer", help="the peer's public key file: print its fingerprint too")
    keys.add_argument("-q", "--quiet", action="store_true")
    keys.set_defaults(handler=_cmd_keys)
    certs = sub.add_parser(
        "certs", help="a local CA and the SuperLink's TLS certificate (docs/flower.md, Security)"
    )
    certs.add_argument("--out", default="fedads-certs", help="folder for ca.crt, server.pem, ...")
    certs.add_argument(
        "--host",
        action="append",
        help="name or IP address the SuperNodes use to reach the SuperLink (repeatable; "
        "default 127.0.0.1 and localhost)",
    )
    certs.add_argument("--days", type=int, default=365, help="validity in days (default 365)")
    certs.add_argument(
        "--node-key",
        metavar="NAME",
        help="instead: a SuperNode's authentication key pair, OUT/NAME-auth and NAME-auth.pub",
    )
    certs.add_argument("-q", "--quiet", action="store_true")
    certs.set_defaults(handler=_cmd_certs)
    for command in (demo, run, world, keys, certs):
        command.add_argument(
            "-v", "--verbose", action="store_true", help="also Flower's and Ray's own log lines"
        )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``fedads`` console script; returns the exit code."""
    os.environ.setdefault("FLWR_TELEMETRY_ENABLED", "0")
    args = build_parser().parse_args(argv)
    # The application configures logging; the library only logs (fedads._progress).
    set_verbosity("warning" if args.quiet else "debug" if args.verbose else "info")
    previous = _install_signal_handlers()
    try:
        with warnings.catch_warnings():
            if args.quiet:
                warnings.simplefilter("ignore")
            return int(args.handler(args) or 0)
    except InputError as exc:
        interrupted = _interrupted_exit(_resume_hint(args))
        if interrupted is not None:
            return interrupted
        print(f"fedads: error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except FedadsError as exc:
        interrupted = _interrupted_exit(_resume_hint(args))
        if interrupted is not None:
            return interrupted
        print(f"fedads: failed: {exc}{_resume_hint(args)}", file=sys.stderr)
        return EXIT_FAILURE
    except OSError as exc:
        interrupted = _interrupted_exit(_resume_hint(args))
        if interrupted is not None:
            return interrupted
        code, line = os_error_exit(exc)
        print(line, file=sys.stderr)
        return code
    except KeyboardInterrupt:
        print(f"fedads: interrupted (SIGINT){_resume_hint(args)}", file=sys.stderr)
        return EXIT_SIGINT
    except Terminated:
        print(f"fedads: terminated (SIGTERM){_resume_hint(args)}", file=sys.stderr)
        return EXIT_SIGTERM
    finally:
        _RECEIVED.clear()
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _install_signal_handlers() -> dict[int, Any]:
    """SIGINT -> KeyboardInterrupt (exit 130), SIGTERM -> :class:`Terminated` (exit 143), both
    remembered in ``_RECEIVED``; only in the main thread. Returns the handlers to restore."""
    previous: dict[int, Any] = {}
    _RECEIVED.clear()
    for signum in (signal.SIGINT, signal.SIGTERM):
        if signal.getsignal(signum) == signal.SIG_IGN:
            continue  # e.g. started with nohup or in the background: keep ignoring it
        try:
            previous[signum] = signal.signal(signum, _on_signal)
        except ValueError:  # not the main thread (e.g. main() called from a worker): leave it
            break
    return previous


def console_main() -> None:
    """The ``fedads`` console script: :func:`main`, then exit with its code.

    After an interrupt the run is already cleaned up (engine stopped, staging folder removed),
    but the interpreter's own shutdown could then take half a minute (native finalizers of the
    Ray client left behind by a stopped simulation), which a user sees as a hung Ctrl-C: so an
    interrupted run leaves with ``os._exit`` once the standard streams are flushed.
    """
    code = main()
    if code in (EXIT_SIGINT, EXIT_SIGTERM):
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)
    sys.exit(code)


if __name__ == "__main__":
    console_main()


__all__ = ["build_parser", "console_main", "main"]
