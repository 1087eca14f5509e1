"""Scale benchmark of the synthetic world generator (not a unit test).

Generates a world of 1,000,000 e-commerce users (plus the default 0.5x social-only users) in a
fresh subprocess per repeat, and records wall time and peak resident memory. Peak memory is the
child's ``resource.getrusage(RUSAGE_SELF).ru_maxrss``: it counts every allocation numpy, pandas and
pyarrow make (tracemalloc misses some of them and slows numpy down), and a fresh process per
repeat keeps one repeat's peak from hiding the next one's.

Usage::

    python benchmarks/world_scale.py                      # 1M users, 2 repeats
    python benchmarks/world_scale.py --users 200000 --repeats 1 --write parquet

Targets: < 60 s and < 4 GB peak on 2 cores. Results go to benchmarks/results/world_scale.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "benchmarks" / "results" / "world_scale.json"
TARGET_SECONDS = 60.0
TARGET_PEAK_MB = 4096.0


def _maxrss_mb() -> float:
    # Linux reports ru_maxrss in KiB (macOS in bytes; this benchmark targets Linux).
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def child(users: int, seed: int, write: str) -> dict[str, Any]:
    """One measured run inside a fresh process; returns the measurements."""
    start_import = time.perf_counter()
    from fedads.world import generate_world

    import_s = time.perf_counter() - start_import
    baseline_mb = _maxrss_mb()

    stages: list[dict[str, Any]] = []
    start = time.perf_counter()

    def record(message: str) -> None:
        # Peak-so-far after each stage shows which stage sets the peak.
        stages.append(
            {
                "at_s": round(time.perf_counter() - start, 3),
                "peak_rss_mb": round(_maxrss_mb(), 1),
                "stage": message,
            }
        )

    world = generate_world(n_users=users, seed=seed, progress=record)
    generate_s = time.perf_counter() - start
    generate_peak_mb = _maxrss_mb()

    result: dict[str, Any] = {
        "import_s": round(import_s, 3),
        "baseline_rss_mb": round(baseline_mb, 1),
        "generate_s": round(generate_s, 3),
        "generate_peak_rss_mb": round(generate_peak_mb, 1),
        "stages": stages,
        "summary": world.summary(),
    }
    if write != "none":
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            paths = world.write(folder, suffix=f".{write}")
            result["write_format"] = write
            result["write_s"] = round(time.perf_counter() - start, 3)
            result["write_mb"] = round(sum(p.stat().st_size for p in paths.values()) / 2**20, 1)
    result["peak_rss_mb"] = round(_maxrss_mb(), 1)
    return result


def _machine() -> dict[str, Any]:
    import numpy
    import pandas
    import pyarrow

    cpu_model = ""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    mem_total_gb = None
    meminfo = Path("/proc/meminfo")
    if meminfo.exists():
        for line in meminfo.read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem_total_gb = round(int(line.split()[1]) / 2**20, 1)
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        commit = "unknown"
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu_model": cpu_model,
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
        "mem_total_gb": mem_total_gb,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "python": platform.python_version(),
        "numpy": numpy.__version__,
        "pandas": pandas.__version__,
        "pyarrow": pyarrow.__version__,
        "git_commit": commit,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--write", choices=("none", "csv", "parquet"), default="none")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        print(json.dumps(child(args.users, args.seed, args.write)))
        return 0

    machine = _machine()
    runs = []
    for repeat in range(args.repeats):
        command = [
            sys.executable,
            str(Path(__file__).resolve()),
            "--child",
            "--users",
            str(args.users),
            "--seed",
            str(args.seed),
            "--write",
            args.write,
        ]
        wall_start = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - wall_start
        if done.returncode != 0:
            print(done.stderr, file=sys.stderr)
            return done.returncode
        run = json.loads(done.stdout.strip().splitlines()[-1])
        run["process_wall_s"] = round(wall, 3)
        runs.append(run)
        print(
            f"repeat {repeat + 1}/{args.repeats}: generate {run['generate_s']:.1f} s, "
            f"peak RSS {run['peak_rss_mb']:.0f} MB (process {wall:.1f} s)",
            file=sys.stderr,
        )

    generate = [r["generate_s"] for r in runs]
    peak = max(r["peak_rss_mb"] for r in runs)
    report = {
        "benchmark": "world_scale",
        "date_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python", "benchmarks/world_scale.py", *(argv or sys.argv[1:])]),
        "n_users": args.users,
        "seed": args.seed,
        "repeats": args.repeats,
        "generate_s_min": min(generate),
        "generate_s_median": round(statistics.median(generate), 3),
        "peak_rss_mb_max": peak,
        "targets": {"generate_s": TARGET_SECONDS, "peak_rss_mb": TARGET_PEAK_MB},
        "meets_targets": max(generate) < TARGET_SECONDS and peak < TARGET_PEAK_MB,
        "machine": machine,
        "note": "2 shared cores: other jobs may run at the same time, so timings are noisy.",
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps({k: report[k] for k in list(report)[:11]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
