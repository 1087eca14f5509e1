"""Benchmark private alignment: both fedads PSI backends vs openmined-psi direct vs hashed join.

For each size ``n`` both parties hold ``n`` keys (64-hex strings, like hashed phone numbers),
half of them shared (50% overlap), each side in its own random row order. Four methods:

* ``fedads-ristretto255``: :func:`fedads.align.align_parties` with the default backend
  (two-way DH-PSI over ristretto255 via rbcl), normalisation, duplicate checks, envelopes
  through the byte codec, shared aligned order;
* ``fedads-openmined``: the same with ``backend="openmined"`` (openmined-psi, P-256);
* ``direct``: the minimal two-way protocol with openmined-psi itself (same RAW setup, protobuf
  objects handed over without serialization, no normalisation, no ordering): the lower bound
  of the openmined backend and the reference the ristretto255 backend is compared with;
* ``hashed``: :func:`fedads.align.hashed_join`, the insecure speed baseline.

At 1M keys the default run skips ``fedads-openmined`` (within noise of ``direct``, see the 10k
and 100k rows) so that ``direct`` and ``fedads-ristretto255`` share one run.

Every measurement runs in a fresh subprocess so its peak memory (``VmHWM`` reset just before
the timed call, i.e. the extra resident memory the alignment needs on top of the keys) is its
own. By default the two parties compute concurrently in both ``fedads`` and ``direct`` (two
threads, as two machines would; openmined-psi releases the GIL); ``--sequential`` runs both on
one thread. The openmined overhead is ``fedads-openmined / direct - 1`` and the ristretto255
speed-up is ``direct / fedads-ristretto255``, both on the best of ``--repeats`` runs, in
wall-clock time and in CPU time (user + system, all threads); on a shared machine the CPU
figure is the stable one, wall-clock times move with other processes' load.

Usage::

    python benchmarks/psi.py --quick            # 10k and 100k keys per side
    python benchmarks/psi.py                    # 10k, 100k and 1M
    python benchmarks/psi.py --sizes 1000000 --methods fedads-ristretto255 direct

Results go to ``benchmarks/results/psi.json`` (``--out``); a run with ``--sizes`` merges its
sizes into an existing file instead of dropping the others.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results" / "psi.json"
RISTRETTO = "fedads-ristretto255"
OPENMINED = "fedads-openmined"
METHODS = ("direct", OPENMINED, RISTRETTO, "hashed")
FULL_SIZES = (10_000, 100_000, 1_000_000)
QUICK_SIZES = (10_000, 100_000)
SKIP_ABOVE = {OPENMINED: 100_000}  # default runs only: same cost as direct, minutes at 1M


def default_methods(n: int) -> list[str]:
    """Methods measured at ``n`` keys per side when ``--methods`` is not given."""
    return [m for m in METHODS if n <= SKIP_ABOVE.get(m, n)]


def make_keys(n: int, seed: int) -> tuple[list[str], list[str]]:
    """``n`` keys per side, ``n // 2`` shared, independently shuffled; 64-hex strings."""
    rng = np.random.default_rng(seed)
    n_common = n // 2
    total = 2 * n - n_common
    raw = rng.bytes(32 * total)
    pool = [raw[32 * i : 32 * (i + 1)].hex() for i in range(total)]
    social = [pool[i] for i in rng.permutation(n)]
    ecommerce = [pool[i] for i in (n - n_common + rng.permutation(n))]
    return social, ecommerce


def _direct(social: list[str], ecommerce: list[str], parallel: bool) -> int:
    """Minimal two-way openmined-psi: each side learns its own intersection indices."""
    import private_set_intersection.python as psi

    def one_way(server_items: list[str], client_items: list[str]) -> list[int]:
        server = psi.server.CreateWithNewKey(True)
        client = psi.client.CreateWithNewKey(True)
        setup = server.CreateSetupMessage(
            1e-9, len(client_items), server_items, psi.DataStructure.RAW
        )
        request = client.CreateRequest(client_items)
        response = server.ProcessRequest(request)
        return client.GetIntersection(setup, response)

    if parallel:
        with ThreadPoolExecutor(max_workers=2) as pool:
            ecommerce_side = pool.submit(one_way, social, ecommerce)
            social_side = pool.submit(one_way, ecommerce, social)
            found = (len(social_side.result()), len(ecommerce_side.result()))
    else:
        found = (len(one_way(ecommerce, social)), len(one_way(social, ecommerce)))
    assert found[0] == found[1], found
    return found[0]


def _fedads(social: list[str], ecommerce: list[str], parallel: bool, backend: str) -> int:
    from fedads.align import align_parties

    a_social, a_ecommerce = align_parties(social, ecommerce, parallel=parallel, backend=backend)
    assert a_social.n_aligned == a_ecommerce.n_aligned
    return a_social.n_aligned


def _fedads_ristretto(social: list[str], ecommerce: list[str], parallel: bool) -> int:
    return _fedads(social, ecommerce, parallel, "ristretto255")


def _fedads_openmined(social: list[str], ecommerce: list[str], parallel: bool) -> int:
    return _fedads(social, ecommerce, parallel, "openmined")


def _hashed(social: list[str], ecommerce: list[str], parallel: bool) -> int:
    from fedads.align import hashed_join

    a_social, _ = hashed_join(social, ecommerce, b"benchmark-salt-0123456789abcdef")
    return a_social.n_aligned


def _status_kb(field: str) -> int:
    match = re.search(rf"{field}:\s+(\d+) kB", Path("/proc/self/status").read_text())
    return int(match.group(1)) if match else 0


def _cpu_seconds() -> float:
    """User + system CPU time of this process, all threads (robust to other load)."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _reset_peak() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # Linux: reset VmHWM to current RSS
        return True
    except OSError:
        return False


def worker(method: str, n: int, seed: int, parallel: bool) -> dict:
    """One timed measurement (run inside its own subprocess)."""
    import private_set_intersection.python  # noqa: F401  (import cost out of the timing)
    import rbcl  # noqa: F401

    import fedads.align  # noqa: F401

    social, ecommerce = make_keys(n, seed)
    run = {
        "direct": _direct,
        OPENMINED: _fedads_openmined,
        RISTRETTO: _fedads_ristretto,
        "hashed": _hashed,
    }[method]
    rss_before = _status_kb("VmRSS")
    exact_peak = _reset_peak()
    cpu_start = _cpu_seconds()
    start = time.perf_counter()
    n_aligned = run(social, ecommerce, parallel)
    seconds = time.perf_counter() - start
    cpu = _cpu_seconds() - cpu_start
    peak = _status_kb("VmHWM")
    assert n_aligned == n // 2, (method, n_aligned)
    return {
        "method": method,
        "n_per_side": n,
        "seconds": round(seconds, 4),
        "cpu_seconds": round(cpu, 4),
        "peak_rss_mb": round(peak / 1024, 1),
        "extra_peak_mb": round((peak - rss_before) / 1024, 1) if exact_peak else None,
        "n_aligned": n_aligned,
    }


def measure(method: str, n: int, seed: int, parallel: bool) -> dict:
    command = [sys.executable, __file__, "--worker", method, str(n), str(seed)]
    if not parallel:
        command.append("--sequential")
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"{method} n={n} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def summarize(runs: list[dict]) -> dict:
    table: dict[str, dict] = {}
    for n in sorted({r["n_per_side"] for r in runs}):
        entry: dict = {}
        for method in METHODS:
            mine = [r for r in runs if r["n_per_side"] == n and r["method"] == method]
            if not mine:
                continue
            times = [r["seconds"] for r in mine]
            cpu = [r["cpu_seconds"] for r in mine]
            entry[method] = {
                "best_seconds": min(times),
                "median_seconds": round(statistics.median(times), 4),
                "best_cpu_seconds": min(cpu),
                "runs": len(times),
                "peak_rss_mb": max(r["peak_rss_mb"] for r in mine),
                "extra_peak_mb": max((r["extra_peak_mb"] or 0.0) for r in mine),
                "keys_per_second_per_side": round(n / min(times)),
            }
        if OPENMINED in entry and "direct" in entry:
            mine, ref = entry[OPENMINED], entry["direct"]
            best = mine["best_seconds"] / ref["best_seconds"] - 1
            median = mine["median_seconds"] / ref["median_seconds"] - 1
            cpu = mine["best_cpu_seconds"] / ref["best_cpu_seconds"] - 1
            entry["openmined_overhead_vs_direct"] = round(best, 4)
            entry["openmined_overhead_vs_direct_median"] = round(median, 4)
            entry["openmined_overhead_vs_direct_cpu"] = round(cpu, 4)
        for reference in ("direct", OPENMINED):
            if RISTRETTO in entry and reference in entry:
                mine, ref = entry[RISTRETTO], entry[reference]
                name = reference.replace("fedads-", "")
                entry[f"ristretto255_speedup_vs_{name}"] = round(
                    ref["best_seconds"] / mine["best_seconds"], 2
                )
                entry[f"ristretto255_speedup_vs_{name}_cpu"] = round(
                    ref["best_cpu_seconds"] / mine["best_cpu_seconds"], 2
                )
        if "hashed" in entry and RISTRETTO in entry:
            ratio = entry[RISTRETTO]["best_seconds"] / entry["hashed"]["best_seconds"]
            entry["ristretto255_over_hashed"] = round(ratio, 1)
        table[str(n)] = entry
    return table


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k and 100k keys only")
    parser.add_argument("--sizes", type=int, nargs="+", help="keys per side (overrides --quick)")
    parser.add_argument(
        "--methods", nargs="+", choices=METHODS, help="default: all (not fedads-openmined at 1M)"
    )
    parser.add_argument("--repeats", type=int, default=None, help="runs per method and size")
    parser.add_argument("--sequential", action="store_true", help="parties on one thread")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--worker", nargs=3, metavar=("METHOD", "N", "SEED"), help=argparse.SUPPRESS
    )
    args = parser.parse_args(argv)
    parallel = not args.sequential

    if args.worker:
        method, n, seed = args.worker
        print(json.dumps(worker(method, int(n), int(seed), parallel)))
        return

    sizes = args.sizes or (QUICK_SIZES if args.quick else FULL_SIZES)
    runs: list[dict] = []
    load_start = os.getloadavg()
    for n in sizes:
        repeats = args.repeats or (3 if n <= 10_000 else 2 if n <= 100_000 else 1)
        for repeat in range(repeats):
            # Alternate the order so slow drifts in machine load hit every method alike.
            methods = args.methods or default_methods(n)
            order = methods if repeat % 2 == 0 else list(reversed(methods))
            for method in order:
                result = measure(method, n, args.seed + repeat, parallel)
                runs.append(result)
                print(
                    f"n={n:>9,} {method:>19}: {result['seconds']:9.2f} s "
                    f"({result['cpu_seconds']:.2f} s CPU), "
                    f"peak {result['peak_rss_mb']:8.1f} MB "
                    f"(+{result['extra_peak_mb']} MB during the call)",
                    flush=True,
                )

    from importlib.metadata import version

    import private_set_intersection.python as psi

    previous: dict = {}
    if args.sizes and args.out.exists():
        previous = json.loads(args.out.read_text())
    kept = [r for r in previous.get("runs", []) if r["n_per_side"] not in set(sizes)]
    all_runs = kept + runs
    report = {
        "benchmark": "private alignment, 50% overlap, keys = 64-hex strings",
        "parallel_parties": parallel,
        "data_structure": "RAW (exact) for openmined-psi; ristretto255 DH-PSI is exact",
        "machine": {
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "openmined_psi": psi.__version__,
            "rbcl": version("rbcl"),
            "load_average_start": [round(x, 2) for x in load_start],
            "load_average_end": [round(x, 2) for x in os.getloadavg()],
        },
        "summary": summarize(all_runs),
        "runs": all_runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report["summary"], indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
