"""Where the seconds of one small ``Experiment.run`` go, before and after the fixed-cost cuts.

Runs the README's Python example (5,000 users, efficient mode, batch 128, 3 epochs) through
``Experiment.run`` once per (backend, variant), each in a fresh Python process, and times its
stages from the ``fedads`` logger's messages (world, federated training with Ray start-up and
the PSI for the simulation engine, each reference model, the practitioner baselines, the
evaluation, the privacy report and the report files). Variants:

* ``before``: the settings fedads used before (``FEDADS_THREADS=0``: torch's and the OpenMP /
  BLAS pools' default threads, one per core; ``FEDADS_RAY_INIT=flower``: Flower starts Ray with
  a job runtime env, so the actors cannot use Ray's prestarted workers).
* ``after``: the defaults now.

The scores and metrics of both variants are compared bit for bit (same seed -> same numbers).
Writes ``benchmarks/results/run_overhead.json`` (or ``--results``). The committed results:
``run_overhead.json`` (in-process; there the ``flower:psi`` stage runs from the PSI to the
first epoch's end) and ``run_overhead_simulation.json`` (``--backends simulation --ray-ab 1``),
each on the shared 2-core machine under the load average recorded per run, one sample each.

    python benchmarks/run_overhead.py                      # both backends, both variants
    python benchmarks/run_overhead.py --backends inprocess --users 5000
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results" / "run_overhead.json"
VARIANTS = {
    "before": {"FEDADS_THREADS": "0", "FEDADS_RAY_INIT": "flower"},
    "after": {},
}

#: Stage name -> the start of the progress message that opens it (in run order).
STAGES = (
    ("world", "generating the synthetic world"),
    ("federated", "federated training"),
    ("reference:ecommerce_only", "training reference model 'ecommerce_only'"),
    ("reference:social_only", "training reference model 'social_only'"),
    ("reference:centralized", "training reference model 'centralized'"),
    ("practitioner", "practitioner baseline"),
    ("evaluate", "evaluating "),
    ("privacy+report", "note: "),
    ("end", "report written"),
)
FLOWER_MARKS = (
    ("ray_start_and_actors", "simulation: starting Ray"),
    ("psi", "aligning users by private set intersection"),
    ("setup_and_first_epoch", "aligned "),
    ("epochs_2_3_and_scoring", "federated (efficient) epoch 1"),
    ("ray_shutdown", "ServerApp: job done"),
    ("after_simulation", "simulation: finished"),
)


def child(backend: str, users: int, out: str) -> None:
    """One run in this process; prints a JSON line of message times and results."""
    import logging

    import numpy as np

    t0 = time.perf_counter()
    import fedads
    from fedads import Experiment, ExperimentConfig, FederationSettings, ProtocolConfig, WorldConfig

    import_s = time.perf_counter() - t0
    marks: list[tuple[float, str]] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            marks.append((time.perf_counter(), record.getMessage()))

    logger = logging.getLogger("fedads")
    logger.addHandler(Keep())
    logger.setLevel(logging.DEBUG)
    config = ExperimentConfig(
        world=WorldConfig(n_users=users, seed=0, social_intent_strength=0.5),
        federation=FederationSettings(
            protocol=ProtocolConfig(mode="efficient", batch_size=128, chunk_batches=8, epochs=3)
        ),
        backend=backend,
    )
    start = time.perf_counter()
    result = Experiment.from_world(config).run(out)
    total = time.perf_counter() - start
    scores = result.scores.drop(columns=["key"]).to_numpy(dtype=np.float64)
    np.save(Path(out) / "bench_scores.npy", scores)
    print(
        json.dumps(
            {
                "import_s": import_s,
                "total_s": total,
                "start": start,
                "marks": marks,
                "headline": {k: float(v) for k, v in result.headline().items()},
                "fedads": fedads.__file__,
            }
        )
    )


def ray_child(mode: str) -> None:
    """Ray start-up as Flower's (``mode="flower"``: ``runtime_env``) or fedads' ``start_ray``:
    seconds to ``ray.init``, to two 1-CPU actors answering, and the worker processes used."""
    import glob

    import ray

    from fedads.flower.simulation import _backend_config, quiet_flower_env, start_ray

    init_args = _backend_config(num_cpus=2, chatty=False)["init_args"]
    with quiet_flower_env():
        start = time.perf_counter()
        if mode == "flower":
            path = os.pathsep.join(sys.path)
            ray.init(runtime_env={"env_vars": {"PYTHONPATH": path}}, **init_args)
        else:
            start_ray(init_args)
        up = time.perf_counter()

        @ray.remote(num_cpus=1)
        class Party:
            def ready(self) -> int:
                return os.getpid()

        actors = [Party.remote() for _ in range(2)]
        ray.get([a.ready.remote() for a in actors])
        ready = time.perf_counter()
        logs = ray._private.worker._global_node.get_logs_dir_path()  # noqa: SLF001
        workers = len(glob.glob(os.path.join(logs, "worker-*.out")))
        ray.shutdown()
        down = time.perf_counter()
    print(json.dumps({"mode": mode, "init_s": up - start, "actors_ready_s": ready - up,
                      "shutdown_s": down - ready, "worker_processes": workers}))  # fmt: skip


def ray_ab(repeats: int) -> list[dict]:
    """Alternate Flower's and fedads' Ray start-up ``repeats`` times each (fresh processes)."""
    rows = []
    for _ in range(repeats):
        for mode in ("flower", "fedads"):
            load = os.getloadavg()[0]
            proc = subprocess.run(
                [sys.executable, __file__, "--ray-child", mode], capture_output=True, text=True,
                env={**os.environ, "FLWR_TELEMETRY_ENABLED": "0"}, check=False,
            )  # fmt: skip
            lines = [x for x in proc.stdout.splitlines() if x.startswith("{")]
            row = json.loads(lines[-1]) if lines else {"mode": mode, "error": proc.stderr[-300:]}
            row["load_avg_1min_at_start"] = round(load, 2)
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def stages(marks: list[tuple[float, str]], start: float, end: float) -> dict[str, float]:
    """Seconds per stage from the first message opening each stage to the next stage."""
    found: list[tuple[str, float]] = []
    for name, prefix in STAGES:
        at = next((t for t, m in marks if m.startswith(prefix)), None)
        if at is not None:
            found.append((name, at))
    found.sort(key=lambda item: item[1])
    times = [t for _, t in found] + [end]
    out = {name: round(times[i + 1] - t, 3) for i, (name, t) in enumerate(found) if name != "end"}
    flower = []
    for name, prefix in FLOWER_MARKS:
        at = next((t for t, m in marks if prefix in m), None)
        if at is not None:
            flower.append((name, at))
    for i, (name, t) in enumerate(flower[:-1]):
        out[f"flower:{name}"] = round(flower[i + 1][1] - t, 3)
    out["setup_before_world"] = round((found[0][1] if found else end) - start, 3)
    return out


def parent(args: argparse.Namespace) -> None:
    import numpy as np

    runs: list[dict] = []
    ray_rows = ray_ab(args.ray_ab) if args.ray_ab else []
    for backend in args.backends:
        scores = {}
        for variant in args.variants:
            env = {**os.environ, **VARIANTS[variant], "FLWR_TELEMETRY_ENABLED": "0"}
            with tempfile.TemporaryDirectory(prefix="fedads-bench-") as out:
                load = os.getloadavg()[0]
                proc = subprocess.run(
                    [sys.executable, __file__, "--child", backend, "--users", str(args.users),
                     "--out", out],
                    env=env, capture_output=True, text=True, check=False,
                )  # fmt: skip
                if proc.returncode != 0:
                    # e.g. Ray's fixed 30 s node start-up limit on an overloaded machine
                    sys.stderr.write(proc.stderr[-4000:])
                    error = proc.stderr.strip().splitlines()[-1:] or ["failed"]
                    runs.append(
                        {
                            "backend": backend,
                            "variant": variant,
                            "load_avg_1min_at_start": round(load, 2),
                            "error": error[0],
                        }
                    )
                    continue
                line = [x for x in proc.stdout.splitlines() if x.startswith("{")][-1]
                data = json.loads(line)
                scores[variant] = np.load(Path(out) / "bench_scores.npy")
            row = {
                "backend": backend,
                "variant": variant,
                "env": VARIANTS[variant],
                "users": args.users,
                "load_avg_1min_at_start": round(load, 2),
                "import_s": round(data["import_s"], 3),
                "total_s": round(data["total_s"], 3),
                "stages_s": stages(data["marks"], data["start"], data["start"] + data["total_s"]),
            }
            runs.append(row)
            print(json.dumps(row), flush=True)
        if len(scores) == 2:
            a, b = scores.values()
            same = bool(a.shape == b.shape and np.array_equal(a, b))
            runs.append({"backend": backend, "scores_identical_before_after": same,
                         "max_abs_score_diff": float(np.max(np.abs(a - b)))})  # fmt: skip
            print(json.dumps(runs[-1]), flush=True)
    results = Path(args.results)
    results.parent.mkdir(parents=True, exist_ok=True)
    results.write_text(
        json.dumps(
            {
                "what": "stages of one Experiment.run of the README example, before/after",
                "cores": os.cpu_count(),
                "note": "the machine is shared: see load_avg_1min_at_start per run",
                "runs": runs,
                "ray_start_ab": ray_rows,
            },
            indent=1,
        )
        + "\n"
    )
    print(f"wrote {results}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", nargs="+", default=["inprocess", "simulation"])
    parser.add_argument("--variants", nargs="+", default=["before", "after"],
                        choices=list(VARIANTS))  # fmt: skip
    parser.add_argument("--users", type=int, default=5000)
    parser.add_argument("--results", default=str(RESULTS), help="where to write the JSON")
    parser.add_argument(
        "--ray-ab", type=int, default=0, help="also time Ray start-up both ways, N times each"
    )
    parser.add_argument("--ray-child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ray_child:
        ray_child(args.ray_child)
    elif args.child:
        child(args.child, args.users, args.out)
    else:
        parent(args)


if __name__ == "__main__":
    main()
