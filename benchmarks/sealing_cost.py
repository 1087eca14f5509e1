"""What end-to-end sealing costs per pipelined epoch (not a test).

Through the public facade: ``fedads.run_federated(..., backend="inprocess")`` on the default
world sized for ``--aligned`` aligned users (as ``benchmarks/perf.py`` sizes it), the aligned
rows computed once in the clear and reused by every run (``alignment=AlignedRows``), the
facade's own split, model, seed and batch order, pipelined efficient mode (chunks of 8 batches
of 4096). In process nothing dilutes the cost of sealing (no Flower, no Ray): runs with
``FederationSettings(sealing=False)`` and ``sealing=True`` alternate in the same process,
``--repeats`` times, so both see the same background load. Each party is the facade's
``PartyRuntime``, which opens every request and seals every reply when it has keys. Reported per
run: the epoch seconds the run returns (``values["epoch_seconds"]``), the seconds spent inside
seal/open themselves (the one thing the facade does not report, timed here by wrapping
``SealedChannel.seal`` / ``open``), and the process CPU seconds of the whole in-process run
(party setup, alignment reuse, training and scoring the held-out users).

Usage::

    python benchmarks/sealing_cost.py                  # 50k aligned users (~5 min on 2 cores)
    python benchmarks/sealing_cost.py --aligned 20000 --repeats 2

Result: ``benchmarks/results/sealing_cost.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import platform
import statistics
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from fedads import (
    FederationSettings,
    PartyTable,
    ProtocolConfig,
    WorldConfig,
    generate_world,
    run_federated,
)
from fedads.protocol.runtime import AlignedRows
from fedads.protocol.sealing import SealedChannel

ROOT = Path(__file__).resolve().parent
_SEAL_S = {"seal": 0.0, "open": 0.0}


def _timed_channel() -> None:
    """Count the seconds spent in SealedChannel.seal / open (process-wide, cumulative)."""
    seal, open_ = SealedChannel.seal, SealedChannel.open

    def timed_seal(self, request, reply):  # noqa: ANN001, ANN202
        start = time.perf_counter()
        try:
            return seal(self, request, reply)
        finally:
            _SEAL_S["seal"] += time.perf_counter() - start

    def timed_open(self, request):  # noqa: ANN001, ANN202
        start = time.perf_counter()
        try:
            return open_(self, request)
        finally:
            _SEAL_S["open"] += time.perf_counter() - start

    SealedChannel.seal, SealedChannel.open = timed_seal, timed_open  # type: ignore[method-assign]


def world_tables(n_aligned: int, seed: int) -> tuple[PartyTable, PartyTable]:
    """The default world with about ``n_aligned`` aligned users (as benchmarks/perf.py)."""
    overlap = WorldConfig().overlap_rate  # share of e-commerce users also on the social platform
    n_users = int(math.ceil(n_aligned / overlap))
    return generate_world(WorldConfig(n_users=n_users, seed=seed)).party_tables()


def run_once(
    tables: tuple[PartyTable, PartyTable],
    aligned: AlignedRows,
    settings: FederationSettings,
    sealed: bool,
) -> dict[str, Any]:
    before = dict(_SEAL_S)
    cpu = time.process_time()
    run = run_federated(
        *tables, replace(settings, sealing=sealed), backend="inprocess", alignment=aligned
    )
    cpu = time.process_time() - cpu
    values = run.values
    return {
        "sealed": sealed,
        "epoch_seconds": np.asarray(values["epoch_seconds"], dtype=float).tolist(),
        "epoch_losses": np.asarray(values["epoch_losses"], dtype=float).tolist(),
        "seal_s": _SEAL_S["seal"] - before["seal"],
        "open_s": _SEAL_S["open"] - before["open"],
        "bytes_per_epoch": [int(b) for b in values["epoch_bytes"]],
        "process_cpu_s": cpu,
        "_n": (int(values["n_aligned"]), int(len(values["train_positions"]))),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--aligned", type=int, default=50_000)
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--chunk", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=str(ROOT / "results" / "sealing_cost.json"))
    args = parser.parse_args(argv)
    torch.set_num_threads(1)  # one thread per party, as in perf.py (2 parties, 2 cores)
    _timed_channel()
    protocol = ProtocolConfig(
        mode="efficient",
        batch_size=args.batch_size,
        chunk_batches=args.chunk,
        pipeline=True,
        epochs=args.epochs,
        seed=args.seed,
    )
    settings = FederationSettings(protocol=protocol, verbose=False)
    tables = world_tables(args.aligned, args.seed)
    # The PSI's rows and order, computed once; every run reuses them (nothing else changes).
    aligned = AlignedRows.in_the_clear(*tables, settings.normalization)
    runs = []
    sizes = run_once(tables, aligned, settings, False)["_n"]  # warm-up, not reported
    for repeat in range(args.repeats):
        order = (False, True) if repeat % 2 == 0 else (True, False)
        for sealed in order:
            record = run_once(tables, aligned, settings, sealed)
            record.pop("_n")
            runs.append({"repeat": repeat, **record})
            print(json.dumps({k: runs[-1][k] for k in ("sealed", "epoch_seconds")}))
    # Epoch 0 holds the pipeline fill; every epoch counts (the pipeline spans all epochs).
    per = {
        flag: [
            sum(r["epoch_seconds"]) / len(r["epoch_seconds"]) for r in runs if r["sealed"] == flag
        ]
        for flag in (False, True)
    }
    pairs = [
        (on["epoch_seconds"], off["epoch_seconds"])
        for on in runs
        if on["sealed"]
        for off in runs
        if not off["sealed"] and off["repeat"] == on["repeat"]
    ]
    ratios = [sum(a) / sum(b_) for a, b_ in pairs]
    sealed_runs = [r for r in runs if r["sealed"]]
    crypto_s = statistics.median(
        (r["seal_s"] + r["open_s"]) / len(r["epoch_seconds"]) for r in sealed_runs
    )
    identical = all(
        np.allclose(on["epoch_losses"], off["epoch_losses"], rtol=0, atol=0)
        for on in runs
        if on["sealed"]
        for off in runs
        if not off["sealed"]
    )
    cpu = {
        flag: statistics.median(r["process_cpu_s"] for r in runs if r["sealed"] is flag)
        for flag in (False, True)
    }
    summary = {
        "process_cpu_s_per_run_unsealed_median": cpu[False],
        "process_cpu_s_per_run_sealed_median": cpu[True],
        "cpu_sealed_over_unsealed": cpu[True] / cpu[False],
        "epoch_s_unsealed_median": statistics.median(per[False]),
        "epoch_s_sealed_median": statistics.median(per[True]),
        "sealed_over_unsealed_per_repeat": ratios,
        "sealed_over_unsealed_median": statistics.median(ratios),
        "seal_plus_open_s_per_epoch_median": crypto_s,
        "seal_plus_open_share_of_sealed_epoch": crypto_s / statistics.median(per[True]),
        "target": "sealed epoch <= 1.05 x unsealed",
        "met": statistics.median(ratios) <= 1.05,
        "losses_identical_sealed_vs_unsealed": identical,
    }
    out = {
        "what": "pipelined efficient epoch, in-process transport, sealing off vs on (alternating)",
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "config": {
            **vars(args),
            "n_aligned": sizes[0],
            "n_train": sizes[1],
            "torch_threads": 1,
        },
        "summary": summary,
        "runs": runs,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
