"""Round-trip latency of the Flower transport in the simulation engine (not a test).

Runs the adapter's echo job (``fedads.flower.testing``: a party that echoes the array it gets)
through ``run_federation(backend="simulation")`` and times ``send`` (one party) and ``send_all``
(both parties at once) for arrays of several sizes, median and min over ``--reps`` round trips.
It measures the transport alone: no model, no PSI. Use it with a profiler to see where a round
trip goes, e.g.::

    py-spy record --subprocesses --rate 200 --format raw -o rt.raw -- \\
        python benchmarks/roundtrip.py --sizes 1000000 --reps 300
    python benchmarks/pyspy_summary.py rt.raw

Usage::

    python benchmarks/roundtrip.py                       # sizes 4 and 1M float32, 50 reps
    python benchmarks/roundtrip.py --poll-interval 0.1   # Flower's own polling interval

Results: ``benchmarks/results/roundtrip.json`` (``--out``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="4,1000000", help="float32 values per array")
    parser.add_argument("--reps", type=int, default=50)
    parser.add_argument("--poll-interval", type=float, default=DEFAULT_POLL_S)
    parser.add_argument("--out", default=str(ROOT / "results" / "roundtrip.json"))
    args = parser.parse_args(argv)
    try:
        sizes = [int(s) for s in args.sizes.split(",") if s.strip()]
    except ValueError:
        parser.error(f"--sizes: {args.sizes!r} is not a comma-separated list of integers")
    if not sizes or min(sizes) < 1 or args.reps < 1:
        parser.error("--sizes needs positive integers and --reps at least 1")
    _SETTINGS.update(sizes=sizes, reps=args.reps)
    load_start = os.getloadavg()
    result = run_federation(
        roundtrip_job, echo_party_factory, {POLL_KEY: args.poll_interval}, verbose=False
    )
    report = {
        "benchmark": "roundtrip",
        "settings": {"sizes": sizes, "reps": args.reps, "poll_interval_s": args.poll_interval},
        "load_average_at_start": [round(x, 2) for x in load_start],
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "results_ms": {k: round(float(v), 3) for k, v in result.values.items()},
        "party_stats": result.party_stats,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=float) + "\n")
    print(f"[roundtrip] wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
