"""What end-to-end sealing costs per pipelined epoch (not a test).

Same world, aligned rows, split, model, seed and batch order as ``benchmarks/perf.py``
(:func:`perf.prepare`), pipelined efficient mode (chunks of 8 batches of 4096) over the
in-process transport, where nothing dilutes the cost of sealing (no Flower, no Ray): epochs with
sealing off and on are measured alternately in the same process, ``--repeats`` times, so both
see the same background load. Each party is wrapped in :class:`fedads.protocol.sealing.
SealedParty`, which runs exactly what a ``PartyRuntime`` runs at ``handle`` (open the request,
handle, seal the reply). Also reported: the seconds spent inside seal/open themselves.

Usage::

    python benchmarks/sealing_cost.py                  # 50k aligned users (~5 min on 2 cores)
    python benchmarks/sealing_cost.py --aligned 20000 --repeats 2

Result: ``benchmarks/results/sealing_cost.json``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from perf import prepare  # noqa: E402

from fedads.protocol import Coordinator, InProcessTransport, ProtocolConfig  # noqa: E402
from fedads.protocol.parties import EcommerceParty, SocialParty  # noqa: E402
from fedads.protocol.runtime import ALIGNED_ROWS_FILE  # noqa: E402
from fedads.protocol.sealing import SealedChannel, SealedParty, fresh_keys  # noqa: E402

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


def _bare_parties(b: dict[str, Any]) -> dict[str, Any]:
    """The two training parties over the aligned rows perf.prepare() put in each party's folder."""
    rows = {role: np.load(Path(b["outs"][role]) / ALIGNED_ROWS_FILE) for role in b["outs"]}
    tables = b["tables"]
    return {
        "social": SocialParty.from_table(tables["social"], rows["social"]),
        "ecommerce": EcommerceParty.from_table(tables["ecommerce"], rows["ecommerce"]),
    }


def run_once(b: dict[str, Any], cfg: ProtocolConfig, sealed: bool) -> dict[str, Any]:
    parties: dict[str, Any] = _bare_parties(b)
    if sealed:
        keys = fresh_keys()
        parties = {role: SealedParty(party, keys[role]) for role, party in parties.items()}
    before = dict(_SEAL_S)
    cpu = time.process_time()
    with InProcessTransport(parties) as transport:
        history = Coordinator(transport, cfg).fit(b["train"])
    cpu = time.process_time() - cpu
    return {
        "sealed": sealed,
        "epoch_seconds": history.epoch_seconds,
        "epoch_losses": history.epoch_losses,
        "seal_s": _SEAL_S["seal"] - before["seal"],
        "open_s": _SEAL_S["open"] - before["open"],
        "bytes_per_epoch": history.bytes_per_epoch(),
        "process_cpu_s": cpu,
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
    cfg = ProtocolConfig(
        mode="efficient",
        batch_size=args.batch_size,
        chunk_batches=args.chunk,
        pipeline=True,
        epochs=args.epochs,
        seed=args.seed,
    )
    runs = []
    with tempfile.TemporaryDirectory(prefix="fedads-sealing-") as work:
        b = prepare(args.aligned, args.seed, Path(work))
        run_once(b, cfg, False)  # warm-up (torch lazy imports, allocator), not reported
        for repeat in range(args.repeats):
            order = (False, True) if repeat % 2 == 0 else (True, False)
            for sealed in order:
                runs.append({"repeat": repeat, **run_once(b, cfg, sealed)})
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
            "n_aligned": b["n_aligned"],
            "n_train": int(len(b["train"])),
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
