"""Round-trip latency of the Flower transport in the simulation engine (not a test).

Runs the adapter's echo job (``fedads.flower.testing``: a party that echoes the array it gets)
through ``run_federation(backend="simulation")`` and times ``send`` (one party) and ``send_all``
(both parties at once) for arrays of several sizes, median and min over ``--reps`` round trips.
It measures the transport alone: no model, no PSI. Use it with a profiler to see where a round
trip goes, e.g.::

    py-spy record --subprocesses --rate 200 --format raw -o rt.raw -- \\
        python benchmarks/roundtrip.py --sizes 1000000 --reps 300
    python benchmarks/pyspy_summary.py rt.raw

With ``--timeline`` it instead times the hops of each round trip to both parties: the party
stamps when it starts and ends, and the benchmark wraps Flower's ``RayBackend.process_message``
in this process (benchmark-only) to stamp when the engine submits a message to Ray and when the
result is back. Hops: push -> engine submit (link state, feeder, engine worker), submit -> party
start (Ray call, ClientApp, party thread), the party itself, party end -> result (reply encoding,
checkpoint hand-off, Ray return), result -> driver (link state, reply wait, pull). All clocks are
``time.time()`` of one machine.

With ``--engine deployment`` (always a timeline) it runs the same echo round trips on a local
deployment (SuperLink + 2 SuperNodes + ``flwr run``, each party in its long-lived party process,
:mod:`fedads.flower.deployment`) and splits each round trip to both parties into the hops Flower
and fedads leave visible without patching Flower: the ServerApp's push -> the SuperNode logs
``Receiving`` (Flower's debug log timestamps; this hop holds the SuperNode's idle sleep of 3 s,
``flwr/supernode/start_client_internal.py`` line 263) -> the ``flwr-clientapp`` process exists
(``/proc`` start time; SuperExec's task poll, ``FLWR_SUPEREXEC_TASK_POLL_INTERVAL``, and the
spawn) -> the forwarder ClientApp is entered (flwr imports, task pull, FAB install, app load) ->
the party process (socket + the party) -> the forwarder returns -> the SuperNode logs
``Sending`` (reply push to the SuperNode and its 0.5 s reply poll, line 470) -> the ServerApp has
the reply (SuperLink, the ServerApp's reply poll). Medians over ``--reps`` per size.

Usage::

    python benchmarks/roundtrip.py                       # sizes 4 and 1M float32, 50 reps
    python benchmarks/roundtrip.py --poll-interval 0.1   # Flower's own polling interval
    python benchmarks/roundtrip.py --timeline --sizes 4,500000 --reps 300
    python benchmarks/roundtrip.py --engine deployment --sizes 4,500000 --reps 10

Results: ``benchmarks/results/roundtrip.json`` (``--out``; ``--timeline``:
``roundtrip_timeline.json``; ``--engine deployment``: ``roundtrip_deployment_timeline.json``).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

from fedads.flower import run_federation
from fedads.flower.config import DEFAULT_POLL_S, POLL_KEY
from fedads.flower.testing import ECHO, echo_party_factory
from fedads.protocol.envelope import Envelope
from fedads.protocol.transport import Transport

ROOT = Path(__file__).resolve().parent
PARTIES = ("social", "ecommerce")
_SETTINGS: dict[str, Any] = {}


def roundtrip_job(transport: Transport, run_config: Any) -> dict[str, float]:
    """Time ``reps`` round trips per size and target; milliseconds in the result."""
    out: dict[str, float] = {}
    for size in _SETTINGS["sizes"]:
        x = np.zeros(size, dtype=np.float32)
        for target in ("one", "both"):
            times = []
            for _ in range(_SETTINGS["reps"]):
                start = time.perf_counter()
                if target == "one":
                    transport.send("social", Envelope(ECHO, {"x": x}))
                else:
                    transport.send_all({p: Envelope(ECHO, {"x": x}) for p in PARTIES})
                times.append((time.perf_counter() - start) * 1000.0)
            out[f"{target}_{size}_median_ms"] = statistics.median(times)
            out[f"{target}_{size}_min_ms"] = min(times)
            print(
                f"[roundtrip] {target:4s} {size * 4 / 1e6:8.3f} MB each way: median "
                f"{statistics.median(times):7.2f} ms, min {min(times):7.2f} ms",
                file=sys.stderr,
                flush=True,
            )
    return out


class StampingParty:
    """Echoes ``arrays["x"]`` and stamps, in meta, when its handle started and ended."""

    def __init__(self, name: str) -> None:
        self.name = name

    def handle(self, envelope: Envelope) -> Envelope:
        started = time.time()
        x = np.asarray(envelope.arrays.get("x", np.zeros(0))).copy()
        return Envelope(ECHO, {"x": x}, {"t_start": started, "t_end": time.time()})

    def get_state(self) -> dict[str, np.ndarray]:
        return {}

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        pass


def stamping_party_factory(role: str, run_config: Any, node_config: Any) -> StampingParty:
    return StampingParty(role)


HOPS = ("push_to_submit", "submit_to_party", "party", "party_to_result", "result_to_driver")


def timeline_job(transport: Transport, run_config: Any) -> dict[str, float]:
    """Median milliseconds per hop (and in all) of ``reps`` round trips to both parties."""
    from flwr.server.superlink.fleet.vce.backend import raybackend

    windows: dict[str, tuple[float, float]] = {}  # partition id -> (submitted, result back)
    original = raybackend.RayBackend.process_message

    def stamped(self: Any, message: Any, context: Any) -> Any:
        submitted = time.time()
        try:
            return original(self, message, context)
        finally:
            windows[str(context.node_config.get("partition-id"))] = (submitted, time.time())

    raybackend.RayBackend.process_message = stamped  # type: ignore[method-assign]
    out: dict[str, float] = {}
    try:
        for size in _SETTINGS["sizes"]:
            x = np.zeros(size, dtype=np.float32)
            rows: list[tuple[float, ...]] = []
            for _ in range(_SETTINGS["reps"]):
                windows.clear()
                pushed = time.time()
                replies = transport.send_all({p: Envelope(ECHO, {"x": x}) for p in PARTIES})
                back = time.time()
                for reply in replies.values():
                    start, end = float(reply.meta["t_start"]), float(reply.meta["t_end"])
                    # The engine window that contains this party's handle.
                    submitted, result = next(
                        w for w in windows.values() if w[0] <= start and end <= w[1]
                    )
                    hops = (submitted - pushed, start - submitted, end - start, result - end)
                    rows.append((*hops, back - result, back - pushed))
            for i, name in enumerate((*HOPS, "total")):
                out[f"both_{size}_{name}_ms"] = 1000.0 * statistics.median(r[i] for r in rows)
            print(
                f"[roundtrip] timeline {size * 4 / 1e6:.3f} MB each way: "
                + ", ".join(f"{h} {out[f'both_{size}_{h}_ms']:.2f}" for h in (*HOPS, "total"))
                + " ms (medians)",
                file=sys.stderr,
                flush=True,
            )
    finally:
        raybackend.RayBackend.process_message = original  # type: ignore[method-assign]
    return out


DEPLOYMENT_HOPS = (
    "push_to_node_pull",
    "node_pull_to_clientapp_process",
    "clientapp_start_to_forwarder",
    "forwarder_to_party_process",
    "party",
    "party_process_to_forwarder",
    "forwarder_to_node_push",
    "node_push_to_serverapp",
)


def deployment_timeline_job(transport: Transport, run_config: Any) -> dict[str, Any]:
    """Round trips to both parties; the push / reply times and each party's handle stamps."""
    sizes = [int(s) for s in str(run_config["rt-sizes"]).split(",")]
    reps = int(run_config["rt-reps"])
    out: dict[str, Any] = {}
    for size in sizes:
        x = np.zeros(size, dtype=np.float32)
        rows = []
        for _ in range(reps):
            pushed = time.time()
            replies = transport.send_all({p: Envelope(ECHO, {"x": x}) for p in PARTIES})
            back = time.time()
            row = [pushed, back]
            for party in PARTIES:
                row += [float(replies[party].meta["t_start"]), float(replies[party].meta["t_end"])]
            rows.append(row)
        out[f"rows-{size}"] = np.array(rows, dtype=np.float64)
    return out


_LOG_TIME = re.compile(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}).*?(Receiving|Sending): train")


def _node_times(log: Path) -> tuple[list[float], list[float]]:
    """Wall-clock times of the SuperNode's ``Receiving`` / ``Sending`` of train messages."""
    received: list[float] = []
    sent: list[float] = []
    for line in log.read_text(errors="replace").splitlines():
        match = _LOG_TIME.search(line)
        if match:
            stamp = datetime.strptime(match.group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()
            (received if match.group(2) == "Receiving" else sent).append(stamp)
    return received, sent


def _jsonl(path: Path, kind: str) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r.get("kind") == kind]


def run_deployment_timeline(
    sizes: list[int], reps: int, poll_s: float, party_processes: bool = True
) -> dict[str, Any]:
    """Run :func:`deployment_timeline_job` on a local deployment; medians per hop, in ms."""
    import tempfile

    from fedads.flower.deployment import LocalDeployment
    from fedads.flower.party_wire import TIMELINE_ENV

    # "roundtrip", not "benchmarks.roundtrip": a site-packages package named "benchmarks"
    # shadows this folder (a namespace package) in the processes Flower starts.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        x for x in (str(ROOT), str(ROOT.parent), os.environ.get("PYTHONPATH", "")) if x
    )
    os.environ["FLWR_LOG_LEVEL"] = "DEBUG"  # timestamps in the SuperNode logs
    work = Path(tempfile.mkdtemp(prefix="fedads-rt-"))
    stamps = work / "timeline"
    stamps.mkdir()
    os.environ[TIMELINE_ENV] = str(stamps)
    config = {
        "job": "roundtrip:deployment_timeline_job",
        "party-factory": "roundtrip:stamping_party_factory",
        "rt-sizes": ",".join(str(s) for s in sizes),
        "rt-reps": reps,
        POLL_KEY: poll_s,
    }
    started = time.perf_counter()
    with LocalDeployment(
        workdir=work / "deploy", verbose=False, party_processes=party_processes
    ) as deployment:
        up_s = time.perf_counter() - started
        result = deployment.run(config, run_timeout_s=3600.0)
        nodes = {p: _node_times(work / "deploy" / "logs" / f"supernode-{p}.log") for p in PARTIES}
    run_s = time.perf_counter() - started - up_s
    out: dict[str, Any] = {"startup_s": round(up_s, 2), "run_s": round(run_s, 2)}
    if not party_processes:  # no forwarder stamps: SuperNode and ServerApp times only
        index = 0
        for size in sizes:
            rows = np.asarray(result.values[f"rows-{size}"])
            n = len(rows)
            for j, party in enumerate(PARTIES):
                recv = np.asarray(nodes[party][0][index : index + n])
                send = np.asarray(nodes[party][1][index : index + n])
                t_start, t_end = rows[:, 2 + 2 * j], rows[:, 3 + 2 * j]
                hops = {
                    "push_to_node_pull": recv - rows[:, 0],
                    "node_pull_to_party": t_start - recv,
                    "party": t_end - t_start,
                    "party_to_node_push": send - t_end,
                    "node_push_to_serverapp": rows[:, 1] - send,
                }
                for name, values in hops.items():
                    out[f"both_{size}_{party}_{name}_ms"] = round(float(np.median(values)) * 1e3, 1)
            index += n
            totals = (rows[:, 1] - rows[:, 0]) * 1000.0
            out[f"both_{size}_total_ms"] = round(float(np.median(totals)), 1)
            out[f"both_{size}_total_min_ms"] = round(float(totals.min()), 1)
            print(
                f"[roundtrip] deployment without party processes {size * 4 / 1e6:.3f} MB: "
                f"round trip {out[f'both_{size}_total_ms']:.0f} ms (median)",
                file=sys.stderr,
                flush=True,
            )
        return out
    forwarders = {p: _jsonl(stamps / f"forwarder-{p}.jsonl", ECHO) for p in PARTIES}
    index = 0
    for size in sizes:
        rows = np.asarray(result.values[f"rows-{size}"])
        hops: list[list[float]] = []
        for rep, row in enumerate(rows):
            pushed, back = row[0], row[1]
            for j, party in enumerate(PARTIES):
                t_start, t_end = row[2 + 2 * j], row[3 + 2 * j]
                fw = forwarders[party][index + rep]
                node_recv = nodes[party][0][index + rep]
                node_send = nodes[party][1][index + rep]
                hops.append(
                    [
                        node_recv - pushed,
                        fw["started"] - node_recv,
                        fw["entered"] - fw["started"],
                        t_start - fw["sent"],
                        t_end - t_start,
                        fw["received"] - t_end,
                        node_send - fw["returned"],
                        back - node_send,
                        back - pushed,
                    ]
                )
        index += len(rows)
        table = np.asarray(hops) * 1000.0
        for i, name in enumerate((*DEPLOYMENT_HOPS, "party_total")):
            out[f"both_{size}_{name}_ms"] = round(float(np.median(table[:, i])), 1)
        totals = (rows[:, 1] - rows[:, 0]) * 1000.0
        out[f"both_{size}_total_ms"] = round(float(np.median(totals)), 1)
        out[f"both_{size}_total_min_ms"] = round(float(totals.min()), 1)
        print(
            f"[roundtrip] deployment {size * 4 / 1e6:.3f} MB each way: "
            + ", ".join(f"{h} {out[f'both_{size}_{h}_ms']:.0f}" for h in DEPLOYMENT_HOPS)
            + f"; round trip {out[f'both_{size}_total_ms']:.0f} ms (medians)",
            file=sys.stderr,
            flush=True,
        )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="4,1000000", help="float32 values per array")
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--poll-interval", type=float, default=DEFAULT_POLL_S)
    parser.add_argument("--timeline", action="store_true", help="time each hop (see the doc)")
    parser.add_argument(
        "--engine",
        choices=("simulation", "deployment"),
        default="simulation",
        help="deployment: local SuperLink + SuperNodes + party processes (always a timeline)",
    )
    parser.add_argument(
        "--no-party-processes",
        action="store_true",
        help="with --engine deployment: the party built in every message's flwr-clientapp "
        "process from its checkpoint (the behaviour before issue #19), for comparison",
    )
    parser.add_argument("--out", default=None, help="default: results/roundtrip[_timeline].json")
    args = parser.parse_args(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--sizes: {args.sizes!r} is not a comma-separated list of integers")
    if not sizes or min(sizes) < 1 or args.reps < 1:
        parser.error("--sizes needs positive integers and --reps at least 1")
    _SETTINGS.update(sizes=sizes, reps=args.reps)
    load_start = os.getloadavg()
    if args.engine == "deployment":
        poll_s = args.poll_interval if args.poll_interval != DEFAULT_POLL_S else 0.01
        party_processes = not args.no_party_processes
        values = run_deployment_timeline(sizes, args.reps, poll_s, party_processes)
        report = {
            "benchmark": "roundtrip_deployment_timeline",
            "settings": {
                "sizes": sizes,
                "reps": args.reps,
                "poll_interval_s": poll_s,
                "party_processes": party_processes,
            },
            "hops": list(DEPLOYMENT_HOPS),
            "load_average_at_start": [round(x, 2) for x in load_start],
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
            "results_ms": values,
        }
        default = "roundtrip_deployment_timeline" + ("" if party_processes else "_no_party_process")
        out = Path(args.out or ROOT / "results" / f"{default}.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(report, indent=2, default=float) + "\n")
        print(f"[roundtrip] wrote {out}", file=sys.stderr)
        return 0
    job, factory = (
        (timeline_job, stamping_party_factory)
        if args.timeline
        else (roundtrip_job, echo_party_factory)
    )
    result = run_federation(job, factory, {POLL_KEY: args.poll_interval}, verbose=False)
    report = {
        "benchmark": "roundtrip_timeline" if args.timeline else "roundtrip",
        "settings": {"sizes": sizes, "reps": args.reps, "poll_interval_s": args.poll_interval},
        "load_average_at_start": [round(x, 2) for x in load_start],
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "results_ms": {k: round(float(v), 3) for k, v in result.values.items()},
        "party_stats": result.party_stats,
    }
    name = "roundtrip_timeline.json" if args.timeline else "roundtrip.json"
    out = Path(args.out or ROOT / "results" / name)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=float) + "\n")
    print(f"[roundtrip] wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
