"""Performance benchmark: one epoch of federated training vs. centralized training (not a test).

Issue "Performance: federated training close to centralized speed". On one synthetic world, the
same aligned rows, the same train / held-out split, the same split model, seed and batch order,
it times epochs of:

* ``central_t1`` / ``central_t2``: centralized training in plain torch
  (:func:`fedads.models.train_local` on ``build_model("centralized", ...)``) with 1 and 2 torch
  threads; the baseline ``central`` is the faster of the two in each repeat;
* ``inproc_*``: the federated protocol over the in-process transport (same serialization, no
  Flower), to separate the protocol's own cost from Flower's;
* ``flwr_*``: the federated protocol through Flower's simulation engine (Ray, 2 virtual
  SuperNodes, one ClientApp per party): exact mode, sequential efficient mode ``effB`` and
  pipelined efficient mode ``pipeB`` (chunks of B batches), optionally with ``_f16`` / ``_int8``
  compression (names: ``--help``).

Everything runs inside ONE Flower simulation: the job (ServerApp side, in this process) loops
``--repeats`` times over all variants, interleaved, so every ratio compares epochs measured in
the same run under the same background load. Epoch times are the coordinator's
``epoch_seconds`` (setup, encoder fitting, validation and scoring excluded); the centralized
epoch time is ``train_local``'s ``epoch_seconds``.

The parties are the library's own (:func:`fedads.federation.party_factory`, a
:class:`~fedads.protocol.runtime.PartyRuntime` over the party's whole table, wrapped only to
time it) and the coordinator is :class:`fedads.protocol.Coordinator`; the job is this
benchmark's own timing loop over variants. Alignment is NOT the PSI here: the experimenter, who
holds both tables in a simulation, computes the PSI's rows in the clear
(:meth:`~fedads.protocol.runtime.AlignedRows.in_the_clear`, what ``run_federated(alignment=
"clear")`` does; ``tests/test_alignment_reuse.py`` shows the scores are bit-identical to the PSI
path), puts each party's rows in its private folder, and the job's first round is the library's
alignment-reuse round. The PSI cost is reported separately from ``benchmarks/results/psi.json``.

Usage::

    python benchmarks/perf.py --quick                  # 20k aligned users, smoke (~2 min)
    python benchmarks/perf.py --aligned 200000         # the target size (batch 4096)
    python benchmarks/perf.py --quick --profile        # + pyinstrument profiles
    python benchmarks/perf.py --aligned 200000 --single-actor --poll-interval 0.1  # what-if
    python benchmarks/perf.py --e2e-users 1000000      # whole Experiment with PSI (~6 min)
    python benchmarks/perf.py --engine deployment --quick  # deployment engine, 20k (~3 min)
    python benchmarks/perf.py --engine deployment         # deployment engine, 200k aligned

``--engine deployment`` runs the same world, model, split and batch order on the deployment
engine (:class:`fedads.flower.deployment.LocalDeployment`: SuperLink, 2 SuperNodes, one
long-lived party process per party; the job runs in ``flwr-serverapp`` as
:func:`deployment_perf_job`) for the pipelined efficient variants of
``--deployment-variants``, and centralized epochs before and after it in the same invocation;
results in ``benchmarks/results/perf_deployment[_quick].json``.

Results: ``benchmarks/results/perf.json`` (``--out``); profiles in
``benchmarks/results/perf_*.txt``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
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

import numpy as np
import torch

from fedads.eval.metrics import auc
from fedads.federation import (
    FederationSettings,
    party_factory,
    party_runtime,
    split_positions,
    write_key_files,
)
from fedads.flower.config import DEFAULT_POLL_S, POLL_KEY
from fedads.models import FeatureEncoder, build_model, predict_local, train_local
from fedads.protocol import Coordinator, InProcessTransport, ProtocolConfig
from fedads.protocol import messages as msg
from fedads.protocol.envelope import Envelope
from fedads.protocol.runtime import SCORES_FILE, AlignedRows, coordinate_reused_alignment
from fedads.protocol.sealing import fresh_keys
from fedads.world import generate_world

ROOT = Path(__file__).resolve().parent
OVERLAP = 0.65  # WorldConfig default: share of e-commerce users also on the social platform

# Filled in main() before the simulation starts; the job runs in this process (ServerApp thread).
_BENCH: dict[str, Any] = {}


# ---------------------------------------------------------------------------------- helpers
def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _machine() -> dict[str, Any]:
    cpu = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    except (ValueError, OSError):
        mem_gb = float("nan")
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=ROOT.parent,
            check=False,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "fedads"],
            capture_output=True,
            text=True,
            cwd=ROOT.parent,
            check=False,
        ).stdout.strip()
    except OSError:
        commit, dirty = "unknown", ""
    import flwr

    return {
        "platform": platform.platform(),
        "cpu_model": cpu,
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "mem_total_gb": round(mem_gb, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "flwr": flwr.__version__,
        "git_commit": commit,
        "fedads_uncommitted_changes": bool(dirty),
    }


def _stats(values: list[float]) -> dict[str, float]:
    return {
        "min": round(min(values), 4),
        "median": round(statistics.median(values), 4),
        "max": round(max(values), 4),
        "n": len(values),
    }


# ---------------------------------------------------------------------------------- data
def prepare(n_aligned: int, seed: int, work: Path) -> dict[str, Any]:
    """World -> aligned rows (in the clear, into each party's private folder) -> each party's
    whole table in its own folder + the centralized inputs of the same aligned rows."""
    n_users = int(math.ceil(n_aligned / OVERLAP))
    t0 = time.perf_counter()
    world = generate_world(n_users=n_users, seed=seed)
    social, ecommerce = world.party_tables()
    world_s = time.perf_counter() - t0
    settings = FederationSettings()
    t0 = time.perf_counter()
    aligned = AlignedRows.in_the_clear(social, ecommerce, settings.normalization)
    align_s = time.perf_counter() - t0
    s_rows, e_rows = aligned.social, aligned.ecommerce
    train, test = split_positions(aligned.n_aligned, settings.test_share, settings.split_seed)
    paths, outs = {}, {}
    for role, table in (("social", social), ("ecommerce", ecommerce)):
        path = work / role / "table.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        table.frame.to_parquet(path, index=False)
        paths[role] = str(path)
        outs[role] = work / role / "out"
    aligned.write(outs)
    # Centralized inputs exactly as fedads.experiment.train_references builds them.
    inputs, specs = {}, {}
    for name, table, rows in (("social", social, s_rows), ("ecommerce", ecommerce, e_rows)):
        numeric = table.numeric_matrix(rows)
        categorical = table.categorical_matrix(rows)
        encoder = FeatureEncoder().fit(numeric, categorical, train)
        inputs[name] = encoder.transform(numeric, categorical)
        specs[name] = encoder.spec
    labels = ecommerce.labels(e_rows)
    return {
        "n_users": n_users,
        "n_social": social.n_rows,
        "n_ecommerce": ecommerce.n_rows,
        "n_aligned": aligned.n_aligned,
        "train": train,
        "test": test,
        "paths": paths,
        "outs": {role: str(folder) for role, folder in outs.items()},
        "tables": {"social": social, "ecommerce": ecommerce},
        "inputs": inputs,
        "specs": specs,
        "labels": labels,
        "world_s": world_s,
        "align_clear_s": align_s,
    }


# ---------------------------------------------------------------------------------- parties
class TimedParty:
    """A party wrapper that times ``handle`` / ``get_state`` and reports them in HELLO replies.

    HELLO is the protocol's harmless probe: the wrapped party answers it as usual and the wrapper
    adds ``perf_*`` fields (process peak RSS, pid, torch threads, cumulative seconds).
    """

    def __init__(self, party: Any) -> None:
        self.party = party
        self.name = party.name
        self.handle_s = 0.0
        self.handle_cpu_s = 0.0  # CPU seconds of the calling thread (torch runs 1 thread here)
        self.handle_minflt = 0  # minor page faults of the calling thread
        self.handle_nivcsw = 0  # involuntary context switches of the calling thread
        self.state_s = 0.0
        self.calls = 0

    def handle(self, envelope: Envelope) -> Envelope:
        before = resource.getrusage(resource.RUSAGE_THREAD)
        start, cpu = time.perf_counter(), time.thread_time()
        reply = self.party.handle(envelope)
        self.handle_s += time.perf_counter() - start
        self.handle_cpu_s += time.thread_time() - cpu
        after = resource.getrusage(resource.RUSAGE_THREAD)
        self.handle_minflt += after.ru_minflt - before.ru_minflt
        self.handle_nivcsw += after.ru_nivcsw - before.ru_nivcsw
        self.calls += 1
        if envelope.kind == msg.HELLO:
            reply = Envelope(
                reply.kind,
                dict(reply.arrays),
                {
                    **reply.meta,
                    "perf_rss_mb": _rss_mb(),
                    "perf_pid": os.getpid(),
                    "perf_threads": torch.get_num_threads(),
                    "perf_handle_s": self.handle_s,
                    "perf_handle_cpu_s": self.handle_cpu_s,
                    "perf_handle_minflt": self.handle_minflt,
                    "perf_handle_nivcsw": self.handle_nivcsw,
                    "perf_state_s": self.state_s,
                    "perf_calls": self.calls,
                },
            )
        return reply

    def get_state(self) -> dict[str, np.ndarray]:
        start = time.perf_counter()
        state = self.party.get_state()
        self.state_s += time.perf_counter() - start
        return state

    def set_state(self, state: dict[str, np.ndarray]) -> None:
        self.party.set_state(state)


def perf_party_factory(role: str, run_config: Any, node_config: Any) -> TimedParty:
    """Flower party factory: the library's own (:func:`fedads.federation.party_factory`, the
    role's whole table and private folder only), wrapped to time it."""
    threads = int(run_config.get("perf-party-threads", 0))
    if threads:
        torch.set_num_threads(threads)
    return TimedParty(party_factory(role, run_config, node_config))


def _inprocess_parties(b: dict[str, Any]) -> dict[str, Any]:
    """The same library runtimes for the in-process transport (rows from the same folders)."""
    settings = FederationSettings()
    keys = fresh_keys()  # sealed, as every federated run
    return {
        role: party_runtime(b["tables"][role], settings, b["outs"][role], keys[role])
        for role in ("social", "ecommerce")
    }


def _reuse_alignment(transport: Any, b: dict[str, Any]) -> None:
    """The library's alignment-reuse round (each party loads its own rows); sizes checked."""
    summary = coordinate_reused_alignment(transport.send_all)
    if summary.n_aligned != b["n_aligned"]:
        raise RuntimeError(f"parties aligned {summary.n_aligned} rows, expected {b['n_aligned']}")


def _probe(transport: Any) -> dict[str, dict[str, float]]:
    replies = transport.send_all({p: Envelope(msg.HELLO) for p in ("social", "ecommerce")})
    return {
        p: {k[5:]: v for k, v in r.meta.items() if str(k).startswith("perf_")}
        for p, r in replies.items()
    }


# ---------------------------------------------------------------------------------- variants
def _variants() -> dict[str, dict[str, Any]]:
    """``central_t{1,2}``; ``{inproc,flwr}_exact``; ``_effB`` (efficient, chunks of B batches);
    ``_pipeB`` (pipelined efficient); ``_f16`` / ``_int8`` suffixes: compressed tensors."""
    variants: dict[str, dict[str, Any]] = {
        "central_t1": {"kind": "central", "threads": 1},
        "central_t2": {"kind": "central", "threads": 2},
    }
    for kind in ("inproc", "flwr"):
        variants[f"{kind}_exact"] = {"kind": kind, "mode": "exact"}
        for chunk in (4, 8, 16, 32):
            for name, pipeline in (("eff", False), ("pipe", True)):
                base = {"kind": kind, "mode": "efficient", "chunk": chunk, "pipeline": pipeline}
                variants[f"{kind}_{name}{chunk}"] = base
                for suffix, compression in (("f16", "float16"), ("int8", "int8")):
                    variants[f"{kind}_{name}{chunk}_{suffix}"] = {
                        **base,
                        "compression": compression,
                    }
    return variants


VARIANTS = _variants()
DEFAULT_VARIANTS = (
    "central_t1,central_t2,inproc_exact,inproc_pipe8,flwr_exact,flwr_eff8,flwr_eff16,"
    "flwr_eff32,flwr_pipe4,flwr_pipe8,flwr_pipe8_f16,flwr_pipe8_int8"
)


def _protocol(spec: dict[str, Any], b: dict[str, Any]) -> ProtocolConfig:
    return ProtocolConfig(
        mode=spec.get("mode", "exact"),
        batch_size=b["batch_size"],
        chunk_batches=spec.get("chunk"),
        epochs=b["epochs"],
        seed=b["seed"],
        compression=spec.get("compression", "none"),
        pipeline=spec.get("pipeline", False),
    )


def _run_central(spec: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    cfg = _protocol({"mode": "exact"}, b)
    old = torch.get_num_threads()
    torch.set_num_threads(spec["threads"])
    try:
        model = build_model("centralized", b["specs"], cfg.model, cfg.seed)
        history = train_local(model, b["inputs"], b["labels"], b["train"], cfg)
        start = time.perf_counter()
        scores = predict_local(model, b["inputs"], b["test"])
        predict_s = time.perf_counter() - start
    finally:
        torch.set_num_threads(old)
    return {
        "epoch_seconds": history.epoch_seconds,
        "epoch_losses": history.epoch_losses,
        "auc": auc(b["labels"][b["test"]], scores),
        "predict_s": predict_s,
        "scores": scores,
    }


def _run_federated(transport: Any, spec: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    cfg = _protocol(spec, b)
    before = _probe(transport) if spec["kind"] == "flwr" else None
    coordinator = Coordinator(transport, cfg)
    start = time.perf_counter()
    history = coordinator.fit(b["train"])
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    coordinator.score(b["test"])  # the label party keeps per-user scores in its own folder
    predict_s = time.perf_counter() - start
    scores = np.load(Path(b["outs"]["ecommerce"]) / SCORES_FILE)[b["test"]]
    n_train = len(b["train"])
    out = {
        "epoch_seconds": history.epoch_seconds,
        "epoch_losses": history.epoch_losses,
        "auc": auc(b["labels"][b["test"]], scores),
        "predict_s": predict_s,
        "setup_s": fit_s - sum(history.epoch_seconds),
        "bytes_per_sample_epoch": [n / n_train for n in history.bytes_per_epoch()],
        "bytes_by_link_epoch0": history.bytes_by_epoch[0],
        "round_trips_per_epoch": None,
        "scores": scores,
    }
    per_epoch = -(-n_train // cfg.batch_size)
    chunks = -(-per_epoch // cfg.batches_per_round)
    # Pipelined without validation: one pipeline over all epochs (E n + 2 round trips).
    out["round_trips_per_epoch"] = chunks + 2 / cfg.epochs if cfg.pipeline else 2 * chunks + 1
    if before is not None:
        after = _probe(transport)
        out["party"] = {
            p: {
                "handle_s": round(after[p]["handle_s"] - before[p]["handle_s"], 3),
                **{
                    key: round(after[p][key] - before[p][key], 3)
                    for key in ("handle_cpu_s", "handle_minflt", "handle_nivcsw")
                },
                "get_state_s": round(after[p]["state_s"] - before[p]["state_s"], 3),
                "rss_mb": round(after[p]["rss_mb"], 1),
                "pid": after[p]["pid"],
                "threads": after[p]["threads"],
            }
            for p in after
        }
    return out


def perf_job(transport: Any, run_config: Any) -> dict[str, Any]:
    """The benchmark's Flower job: all variants, ``repeats`` interleaved rounds."""
    b = _BENCH
    inproc = InProcessTransport(_inprocess_parties(b))
    runs: list[dict[str, Any]] = []
    try:
        _reuse_alignment(transport, b)
        _reuse_alignment(inproc, b)
        for rep in range(b["repeats"]):
            for name in b["variants"]:
                spec = VARIANTS[name]
                t0 = time.perf_counter()
                if spec["kind"] == "central":
                    result = _run_central(spec, b)
                else:
                    old = torch.get_num_threads()
                    torch.set_num_threads(1)
                    try:
                        result = _run_federated(
                            transport if spec["kind"] == "flwr" else inproc, spec, b
                        )
                    finally:
                        torch.set_num_threads(old)
                result.update(repeat=rep, variant=name, wall_s=time.perf_counter() - t0)
                runs.append(result)
                print(
                    f"[perf] rep {rep} {name:16s} epochs "
                    + " ".join(f"{s:.2f}" for s in result["epoch_seconds"])
                    + f" s, auc {result['auc']:.4f}, {time.perf_counter() - t0:.1f} s wall",
                    file=sys.stderr,
                    flush=True,
                )
        if b.get("profile"):
            b["flwr_profile"] = _profile_flower_epoch(transport, b)
        b["final_probe"] = _probe(transport)
    finally:
        inproc.close()
    b["runs"] = runs
    return {"n_runs": len(runs)}


# ---------------------------------------------------------------------------------- summary
def summarize(runs: list[dict[str, Any]], variants: list[str]) -> dict[str, Any]:
    by: dict[str, list[dict[str, Any]]] = {}
    for r in runs:
        by.setdefault(r["variant"], []).append(r)
    # Baseline per repeat: the faster centralized thread setting.
    central_epochs: list[float] = []
    central_auc = None
    repeats = sorted({r["repeat"] for r in runs})
    for rep in repeats:
        options = [r for r in runs if r["repeat"] == rep and r["variant"].startswith("central")]
        if options:
            best = min(options, key=lambda r: statistics.median(r["epoch_seconds"]))
            central_epochs.extend(best["epoch_seconds"])
            central_auc = best["auc"]
    exact_auc = by["flwr_exact"][0]["auc"] if "flwr_exact" in by else None
    table = {}
    for name in variants:
        if name not in by:
            continue
        items = by[name]
        epochs = [s for r in items for s in r["epoch_seconds"]]
        row: dict[str, Any] = {
            "epoch_s": _stats(epochs),
            "auc": round(items[0]["auc"], 5),
            "auc_all_repeats": [round(r["auc"], 5) for r in items],
            "predict_s_median": round(statistics.median(r["predict_s"] for r in items), 3),
            "final_loss": round(items[0]["epoch_losses"][-1], 5),
        }
        if central_epochs:
            row["ratio_to_central_min"] = round(min(epochs) / min(central_epochs), 3)
            row["ratio_to_central_median"] = round(
                statistics.median(epochs) / statistics.median(central_epochs), 3
            )
            # Paired: each variant epoch over the same-repeat centralized epoch median.
            paired = []
            for r in items:
                same = [
                    x
                    for x in runs
                    if x["repeat"] == r["repeat"] and x["variant"].startswith("central")
                ]
                if same:
                    base = min(statistics.median(x["epoch_seconds"]) for x in same)
                    paired.extend(s / base for s in r["epoch_seconds"])
            row["ratio_paired_median"] = round(statistics.median(paired), 3) if paired else None
        if exact_auc is not None:
            row["auc_minus_flwr_exact"] = round(items[0]["auc"] - exact_auc, 5)
        if central_auc is not None:
            row["auc_minus_central"] = round(items[0]["auc"] - central_auc, 5)
        if "bytes_per_sample_epoch" in items[0]:
            row["bytes_per_sample_epoch"] = round(
                statistics.median(x for r in items for x in r["bytes_per_sample_epoch"]), 2
            )
            row["round_trips_per_epoch"] = items[0]["round_trips_per_epoch"]
            row["setup_s_median"] = round(statistics.median(r["setup_s"] for r in items), 3)
        if "party" in items[0]:
            n_epochs = len(items[0]["epoch_seconds"])
            for key in ("handle_s", "handle_cpu_s", "handle_minflt", "handle_nivcsw"):
                row[f"party_{key}_per_epoch"] = {
                    p: round(statistics.median(r["party"][p][key] for r in items) / n_epochs, 3)
                    for p in items[0]["party"]
                }
            row["party_get_state_s_per_epoch"] = {
                p: round(
                    statistics.median(r["party"][p]["get_state_s"] for r in items) / n_epochs, 3
                )
                for p in items[0]["party"]
            }
        table[name] = row
    # Bit-for-bit check: exact federated scores vs centralized scores of the same repeat.
    identical = None
    if "flwr_exact" in by and "central_t1" in by:
        identical = bool(
            np.array_equal(by["flwr_exact"][0]["scores"], by["central_t1"][0]["scores"])
        )
    return {
        "central_epoch_s": _stats(central_epochs) if central_epochs else None,
        "central_auc": round(central_auc, 5) if central_auc is not None else None,
        "exact_scores_identical_to_central_t1": identical,
        "variants": table,
    }


def _psi_reference() -> dict[str, Any] | None:
    path = ROOT / "results" / "psi.json"
    if not path.exists():
        return None
    data = json.loads(path.read_text())
    summary = data.get("summary", {})
    return {
        "source": "benchmarks/results/psi.json",
        "by_keys": {
            k: {
                "best_seconds": v.get("fedads", {}).get("best_seconds"),
                "median_seconds": v.get("fedads", {}).get("median_seconds"),
            }
            for k, v in summary.items()
        },
    }


# ---------------------------------------------------------------------------------- profile
def profile_inprocess(b: dict[str, Any], out_dir: Path, chunk: int) -> dict[str, Any]:
    """pyinstrument profile of one efficient-mode epoch over the in-process transport."""
    from pyinstrument import Profiler

    torch.set_num_threads(1)
    cfg = _protocol({"mode": "efficient", "chunk": chunk}, {**b, "epochs": 1})
    with InProcessTransport(_inprocess_parties(b)) as transport:
        _reuse_alignment(transport, b)
        coordinator = Coordinator(transport, cfg)
        profiler = Profiler(interval=0.001)
        profiler.start()
        history = coordinator.fit(b["train"])  # setup (encoder fit, model build) + 1 epoch
        profiler.stop()
    text = profiler.output_text(unicode=False, color=False, show_all=False)
    path = out_dir / f"perf_profile_inproc_eff{chunk}.txt"
    path.write_text(text)
    return {"file": str(path), "epoch_s": history.epoch_seconds}


def _profile_flower_epoch(transport: Any, b: dict[str, Any]) -> dict[str, Any]:
    """pyinstrument profile (coordinator / ServerApp thread) of one efficient-mode epoch
    through Flower, plus the parties' own time split from their ClientApp statistics."""
    from pyinstrument import Profiler

    cfg = _protocol({"mode": "efficient", "chunk": 32}, {**b, "epochs": 1})
    coordinator = Coordinator(transport, cfg)
    coordinator.setup(b["train"])
    before = _probe(transport)
    profiler = Profiler(interval=0.001)
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        profiler.start()
        history = Coordinator(transport, cfg).fit(b["train"])
        profiler.stop()
    finally:
        torch.set_num_threads(old)
    after = _probe(transport)
    path = Path(b["out_dir"]) / "perf_profile_flwr_eff32_coordinator.txt"
    path.write_text(profiler.output_text(unicode=False, color=False, show_all=False))
    return {
        "file": str(path),
        "fit_s_incl_setup": round(profiler.last_session.duration, 3),
        "epoch_s": history.epoch_seconds,
        "party_handle_s": {
            p: round(after[p]["handle_s"] - before[p]["handle_s"], 3) for p in after
        },
    }


def _patch_single_actor() -> None:
    """What-if: one Ray actor (2 CPUs) for both parties, so no message lands on an actor that
    does not hold the party live (no restore from checkpoint). Benchmark-only monkeypatch."""
    from fedads.flower import simulation

    original = simulation._backend_config

    def single(num_cpus: int, verbose: bool) -> dict[str, Any]:
        config = original(num_cpus, verbose)
        config["client_resources"] = {"num_cpus": num_cpus, "num_gpus": 0.0}
        return config

    simulation._backend_config = single  # type: ignore[assignment]


# ---------------------------------------------------------------------------------- end to end
def _tree_memory_mb(root_pid: int) -> dict[str, float]:
    """Current memory (MB) of ``root_pid`` and all its descendants (Ray's raylet and workers).

    ``rss`` sums resident sets (pages shared between processes, e.g. torch's libraries in every
    Ray worker, count once per process: an over-count); ``pss`` sums proportional set sizes from
    ``/proc/<pid>/smaps_rollup`` (a shared page is split between its sharers), which adds up to
    the tree's real footprint.
    """
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry.name))
        except (OSError, IndexError, ValueError):
            continue
    totals = {"rss": 0.0, "pss": 0.0}
    stack = [root_pid]
    while stack:
        pid = stack.pop()
        stack.extend(children.get(pid, []))
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                name, _, rest = line.partition(":")
                if name in ("Rss", "Pss"):
                    totals[name.lower()] += int(rest.split()[0]) / 1024.0  # kB -> MB
        except (OSError, ValueError, IndexError):
            continue
    return totals


def _machine_used_mb() -> float:
    """MemTotal - MemAvailable (MB): what the whole machine uses now."""
    info = {}
    for line in Path("/proc/meminfo").read_text().splitlines():
        name, _, rest = line.partition(":")
        info[name] = int(rest.split()[0])
    return (info["MemTotal"] - info["MemAvailable"]) / 1024.0


def end_to_end(
    n_users: int, chunk: int, epochs: int, out: Path, *, pipeline: bool = True
) -> dict[str, Any]:
    """World -> PSI -> federated training (Flower simulation) -> references -> evaluation,
    through the public facade, with wall time per stage and the peak RSS of the process tree."""
    import threading

    from fedads.experiment import Experiment, ExperimentConfig
    from fedads.world import WorldConfig

    peak = {"rss": 0.0, "pss": 0.0, "machine_used": 0.0}
    machine_before = _machine_used_mb()
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            now = {**_tree_memory_mb(os.getpid()), "machine_used": _machine_used_mb()}
            for key, value in now.items():
                peak[key] = max(peak[key], value)
            stop.wait(1.0)

    lines: list[tuple[float, str]] = []
    start = time.perf_counter()

    class Timed:
        def __call__(self, line: str) -> None:
            lines.append((round(time.perf_counter() - start, 1), line))
            print(f"[e2e {time.perf_counter() - start:7.1f} s] {line}", file=sys.stderr, flush=True)

    config = ExperimentConfig(
        world=WorldConfig(n_users=n_users),
        federation=FederationSettings(
            protocol=ProtocolConfig(
                mode="efficient",
                batch_size=4096,
                chunk_batches=chunk,
                epochs=epochs,
                pipeline=pipeline,
                timeout_s=3600.0,
            )
        ),
        backend="simulation",
    )
    import fedads.experiment as experiment_module
    import fedads.federation as federation_module

    load_start = os.getloadavg()
    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    original = experiment_module.Progress
    # Timestamped progress lines from the facade and from the job (ServerApp thread, same process).
    experiment_module.Progress = lambda verbose=True: Timed()  # type: ignore[assignment]
    federation_module.Progress = lambda verbose=True: Timed()  # type: ignore[assignment]
    try:
        result = Experiment(config).run(verbose=True)
    finally:
        experiment_module.Progress = original  # type: ignore[assignment]
        federation_module.Progress = original  # type: ignore[assignment]
        stop.set()
        sampler.join()
    total = time.perf_counter() - start
    values = result.federated.values
    report = {
        "n_users": n_users,
        "protocol": {
            "mode": "efficient",
            "batch_size": 4096,
            "chunk_batches": chunk,
            "pipeline": pipeline,
            "epochs": epochs,
            "psi_backend": config.federation.psi_backend,
        },
        "total_s": round(total, 1),
        "peak_tree_rss_mb": round(peak["rss"], 1),
        "peak_tree_pss_mb": round(peak["pss"], 1),
        "machine_used_mb_before": round(machine_before, 1),
        "machine_used_mb_peak": round(peak["machine_used"], 1),
        "load_average_at_start": [round(x, 2) for x in load_start],
        "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        "data_summary": result.data_summary,
        "federated_elapsed_s": round(result.federated.elapsed_s, 1),
        "epoch_seconds": np.asarray(values["epoch_seconds"]).round(3).tolist(),
        "headline": result.headline(),
        "stages": lines,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=str) + "\n")
    return report


# ---------------------------------------------------------------------------------- deployment
def deployment_perf_job(transport: Any, run_config: Any) -> dict[str, Any]:
    """The deployment engine's job (runs in ``flwr-serverapp``, so it gets everything from the
    run config): the alignment-reuse round, then per variant (``perf-variants``, e.g.
    ``pipe8,eff16``) one fit of ``perf-epochs`` epochs and the held-out scoring. The split is
    the library's (``split_positions``) over ``perf-n-aligned`` rows, as in :func:`prepare`."""
    n_aligned = int(run_config["perf-n-aligned"])
    settings = FederationSettings()
    train, test = split_positions(n_aligned, settings.test_share, settings.split_seed)
    summary = coordinate_reused_alignment(transport.send_all)
    if summary.n_aligned != n_aligned:
        raise RuntimeError(f"parties aligned {summary.n_aligned} rows, expected {n_aligned}")
    b = {
        "batch_size": int(run_config["perf-batch-size"]),
        "epochs": int(run_config["perf-epochs"]),
        "seed": int(run_config["perf-seed"]),
    }
    out: dict[str, Any] = {}
    for name in str(run_config["perf-variants"]).split(","):
        spec = VARIANTS[f"flwr_{name}"]
        cfg = _protocol(spec, b)
        coordinator = Coordinator(transport, cfg)
        start = time.perf_counter()
        history = coordinator.fit(train)
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        coordinator.score(test)
        out[f"{name}-epoch-seconds"] = np.asarray(history.epoch_seconds)
        out[f"{name}-epoch-losses"] = np.asarray(history.epoch_losses)
        out[f"{name}-setup-s"] = fit_s - sum(history.epoch_seconds)
        out[f"{name}-predict-s"] = time.perf_counter() - start
        per_epoch = -(-len(train) // cfg.batch_size)
        chunks = -(-per_epoch // cfg.batches_per_round)
        out[f"{name}-round-trips-per-epoch"] = (
            chunks + 2 / cfg.epochs if cfg.pipeline else 2 * chunks + 1
        )
        print(
            f"[perf] deployment {name}: epochs "
            + " ".join(f"{x:.2f}" for x in history.epoch_seconds)
            + " s",
            file=sys.stderr,
            flush=True,
        )
    probe = _probe(transport)
    for party, values in probe.items():
        out[f"{party}-handle-s"] = float(values["handle_s"])
        out[f"{party}-calls"] = int(values["calls"])
    return out


def deployment_benchmark(args: argparse.Namespace, argv: list[str] | None) -> int:
    """``--engine deployment``: centralized epochs, then the deployment run, then centralized
    again (same data, model, batch order), all in this one invocation."""
    from fedads.flower.deployment import run_deployment

    variants = [v.strip() for v in args.deployment_variants.split(",") if v.strip()]
    for v in variants:
        if f"flwr_{v}" not in VARIANTS:
            parser_error = f"--deployment-variants: unknown {v!r} (e.g. pipe8, eff16)"
            raise SystemExit(parser_error)
    load_start = os.getloadavg()
    started = time.perf_counter()
    # "perf", not "benchmarks.perf": a site-packages package named "benchmarks" shadows this
    # folder in the processes Flower starts.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        x for x in (str(ROOT), str(ROOT.parent), os.environ.get("PYTHONPATH", "")) if x
    )
    with tempfile.TemporaryDirectory(prefix="fedads-perf-") as tmp:
        data = prepare(args.aligned, args.seed, Path(tmp))
        b = {**data, "batch_size": args.batch_size, "epochs": args.epochs, "seed": args.seed}
        print(
            f"[perf] deployment: {data['n_aligned']} aligned, train {len(data['train'])}",
            file=sys.stderr,
            flush=True,
        )
        central = []
        for rep in range(2):  # before and after the deployment run (same background load)
            if rep == 1:
                run_config = {
                    **FederationSettings(verbose=False).to_run_config(),
                    "social-path": data["paths"]["social"],
                    "ecommerce-path": data["paths"]["ecommerce"],
                    "social-out": data["outs"]["social"],
                    "ecommerce-out": data["outs"]["ecommerce"],
                    "job": "perf:deployment_perf_job",
                    "party-factory": "perf:perf_party_factory",
                    "timeout-s": 1800.0,
                    "perf-party-threads": args.party_threads,
                    "perf-n-aligned": int(data["n_aligned"]),
                    "perf-batch-size": args.batch_size,
                    "perf-epochs": args.epochs,
                    "perf-seed": args.seed,
                    "perf-variants": ",".join(variants),
                }
                keys = fresh_keys()
                for role in ("social", "ecommerce"):
                    folder = Path(data["outs"][role]).parent / "keys"
                    run_config.update(write_key_files(keys[role], folder))
                t0 = time.perf_counter()
                result = run_deployment(run_config, run_timeout_s=7200.0, verbose=False)
                deploy_s = time.perf_counter() - t0
                scores = np.load(Path(data["outs"]["ecommerce"]) / SCORES_FILE)[data["test"]]
                last_auc = auc(data["labels"][data["test"]], scores)
            for spec in (VARIANTS["central_t1"], VARIANTS["central_t2"]):
                r = _run_central(spec, b)
                central.append(
                    {
                        "threads": spec["threads"],
                        "epoch_seconds": r["epoch_seconds"],
                        "auc": r["auc"],
                    }
                )
    # As in the simulation table: per repeat, the faster of the 1- and 2-thread runs (its
    # median epoch), then the median over the two repeats (before / after the deployment run).
    central_epoch = statistics.median(
        min(statistics.median(c["epoch_seconds"]) for c in central[i : i + 2])
        for i in range(0, len(central), 2)
    )
    values = result.values
    per_variant = {}
    for name in variants:
        epochs = [float(x) for x in np.asarray(values[f"{name}-epoch-seconds"])]
        median = statistics.median(epochs)
        per_variant[name] = {
            "epoch_seconds": [round(x, 3) for x in epochs],
            "epoch_s_median": round(median, 3),
            "vs_central": round(median / central_epoch, 1),
            "round_trips_per_epoch": round(float(values[f"{name}-round-trips-per-epoch"]), 2),
            "seconds_per_round_trip": round(
                median / float(values[f"{name}-round-trips-per-epoch"]), 2
            ),
            "setup_s": round(float(values[f"{name}-setup-s"]), 2),
            "predict_s": round(float(values[f"{name}-predict-s"]), 2),
            "epoch_losses": [
                round(float(x), 5) for x in np.asarray(values[f"{name}-epoch-losses"])
            ],
        }
    report = {
        "benchmark": "perf_deployment",
        "issue": "#19 the deployment engine at practical speed",
        "date_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "python benchmarks/perf.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {
            **_machine(),
            "load_average_at_start": [round(x, 2) for x in load_start],
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "engine": "local SuperLink + 2 SuperNodes + flwr run (loopback; TLS, SuperNode "
        "auth and role proofs on: the LocalDeployment default), one "
        "long-lived party process per party, thin forwarding ClientApp "
        "(fedads.flower.deployment.LocalDeployment)",
        "world": {
            "n_users": data["n_users"],
            "n_aligned": data["n_aligned"],
            "n_train": int(len(data["train"])),
            "alignment": "in the clear, handed to each party's private folder (alignment reuse)",
        },
        "settings": {
            "batch_size": args.batch_size,
            "epochs_per_run": args.epochs,
            "seed": args.seed,
            "variants": variants,
        },
        "central": central,
        "central_epoch_s_median": round(central_epoch, 4),
        "deployment": per_variant,
        "last_variant_auc": round(float(last_auc), 4),
        "central_auc": round(float(central[-1]["auc"]), 4),
        "deployment_run_s": round(deploy_s, 1),
        "discovery_s": round(result.discovery_s, 2),
        "messages": result.messages,
        "party_stats": result.party_stats,
        "total_s": round(time.perf_counter() - started, 1),
    }
    out = Path(args.out).parent / (
        "perf_deployment_quick.json" if args.quick else "perf_deployment.json"
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=float) + "\n")
    print(json.dumps({"central_epoch_s": central_epoch, "deployment": per_variant}, indent=2))
    print(f"[perf] wrote {out}", file=sys.stderr)
    return 0


# ---------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--aligned", type=int, default=200_000, help="aligned users (approx.)")
    parser.add_argument("--quick", action="store_true", help="20k aligned users, 1 repeat")
    parser.add_argument("--batch-size", type=int, default=4096)
    parser.add_argument("--epochs", type=int, default=2, help="epochs per variant and repeat")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--variants",
        default=DEFAULT_VARIANTS,
        help="comma-separated: central_t1, central_t2, {inproc,flwr}_exact, "
        "{inproc,flwr}_{eff,pipe}{4,8,16,32}[_f16|_int8]",
    )
    parser.add_argument("--party-threads", type=int, default=1, help="torch threads per party")
    parser.add_argument("--profile", action="store_true", help="also write pyinstrument profiles")
    parser.add_argument(
        "--single-actor",
        action="store_true",
        help="experiment: ONE Ray actor with 2 CPUs serves both virtual SuperNodes (patches "
        "fedads.flower.simulation._backend_config in this process only)",
    )
    parser.add_argument(
        "--poll-interval",
        type=float,
        default=DEFAULT_POLL_S,
        help="run config poll-interval-s: seconds between the ServerApp's checks for replies "
        "and the engine's checks for new messages (Flower's own: 0.1 s)",
    )
    parser.add_argument("--out", default=str(ROOT / "results" / "perf.json"))
    parser.add_argument(
        "--e2e-users",
        type=int,
        default=0,
        help="instead: run the whole Experiment (world, PSI, Flower training, references, "
        "evaluation) at this many e-commerce users; writes perf_e2e.json next to --out",
    )
    parser.add_argument("--e2e-chunk", type=int, default=8)
    parser.add_argument(
        "--e2e-sequential", action="store_true", help="end to end: efficient mode, not pipelined"
    )
    parser.add_argument("--e2e-epochs", type=int, default=5)
    parser.add_argument(
        "--engine",
        choices=("simulation", "deployment"),
        default="simulation",
        help="deployment: the deployment engine (local SuperLink + SuperNodes + party "
        "processes) against centralized, writes perf_deployment[_quick].json",
    )
    parser.add_argument(
        "--deployment-variants",
        default="pipe8,pipe32",
        help="with --engine deployment: comma-separated {eff,pipe}{4,8,16,32}[_f16|_int8]",
    )
    args = parser.parse_args(argv)
    if args.engine == "deployment":
        if args.quick:
            args.aligned = min(args.aligned, 20_000)
        return deployment_benchmark(args, argv)
    if args.e2e_users:
        report = end_to_end(
            args.e2e_users,
            args.e2e_chunk,
            args.e2e_epochs,
            Path(args.out).parent / "perf_e2e.json",
            pipeline=not args.e2e_sequential,
        )
        print(json.dumps({k: v for k, v in report.items() if k != "stages"}, indent=2))
        return 0
    if args.quick:
        args.aligned = min(args.aligned, 20_000)
        args.repeats = min(args.repeats, 1)
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in variants:
        if v not in VARIANTS:
            parser.error(f"unknown variant {v!r}; see --help for the names")
    load_start = os.getloadavg()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fedads-perf-") as tmp:
        data = prepare(args.aligned, args.seed, Path(tmp))
        print(
            f"[perf] world {data['n_users']} users ({data['world_s']:.1f} s), "
            f"{data['n_aligned']} aligned, train {len(data['train'])}, "
            f"rss {_rss_mb():.0f} MB",
            file=sys.stderr,
            flush=True,
        )
        _BENCH.update(
            data,
            batch_size=args.batch_size,
            epochs=args.epochs,
            seed=args.seed,
            repeats=args.repeats,
            variants=variants,
            profile=args.profile,
            out_dir=str(Path(args.out).parent),
        )
        profiles = []
        if args.profile:
            profiles.append(profile_inprocess(_BENCH, Path(args.out).parent, 32))
        from fedads.flower import run_federation

        if args.single_actor:
            _patch_single_actor()

        run_config = {
            **FederationSettings(verbose=False).to_run_config(),
            "social-path": data["paths"]["social"],
            "ecommerce-path": data["paths"]["ecommerce"],
            "social-out": data["outs"]["social"],
            "ecommerce-out": data["outs"]["ecommerce"],
            "perf-party-threads": args.party_threads,
            POLL_KEY: args.poll_interval,
        }
        keys = fresh_keys()  # each party gets its own secret and the peer's public key
        for role in ("social", "ecommerce"):
            run_config.update(write_key_files(keys[role], Path(data["outs"][role]).parent / "keys"))
        sim_start = time.perf_counter()
        result = run_federation(
            perf_job,
            perf_party_factory,
            run_config,
            backend="simulation",
            timeout_s=1800.0,
            verbose=False,
        )
        sim_s = time.perf_counter() - sim_start
    runs = _BENCH["runs"]
    summary = summarize(runs, variants)
    report = {
        "benchmark": "perf",
        "issue": "Performance: federated training close to centralized speed",
        "date_utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "command": "python benchmarks/perf.py "
        + " ".join(argv if argv is not None else sys.argv[1:]),
        "machine": {
            **_machine(),
            "load_average_at_start": [round(x, 2) for x in load_start],
            "load_average_at_end": [round(x, 2) for x in os.getloadavg()],
        },
        "note": (
            "2 shared cores: timings are noisy (see the load averages); ratios are from "
            "epochs measured in the same run, variants interleaved per repeat."
        ),
        "world": {
            "n_users": data["n_users"],
            "n_social": data["n_social"],
            "n_ecommerce": data["n_ecommerce"],
            "n_aligned": data["n_aligned"],
            "n_train": int(len(data["train"])),
            "n_test": int(len(data["test"])),
            "world_s": round(data["world_s"], 2),
            "alignment": "in the clear (AlignedRows.in_the_clear) handed to each party's private "
            "folder (alignment reuse), not PSI; PSI cost: see psi_reference",
            "align_clear_s": round(data["align_clear_s"], 2),
        },
        "settings": {
            "batch_size": args.batch_size,
            "epochs_per_run": args.epochs,
            "repeats": args.repeats,
            "seed": args.seed,
            "party_torch_threads": args.party_threads,
            "single_actor": args.single_actor,
            "poll_interval_s": args.poll_interval,
            "model": "ModelConfig() defaults",
            "optimizer": "adam, lr 2e-3",
        },
        "flower": {
            "simulation_s": round(sim_s, 1),
            "discovery_s": round(result.discovery_s, 2),
            "messages": result.messages,
            "party_stats": result.party_stats,
            "party_final": _BENCH.get("final_probe"),
        },
        "driver_peak_rss_mb": round(_rss_mb(), 1),
        "summary": summary,
        "profiles": profiles + ([_BENCH["flwr_profile"]] if "flwr_profile" in _BENCH else []),
        "psi_reference": _psi_reference(),
        "total_s": round(time.perf_counter() - started, 1),
        "runs": [{k: v for k, v in r.items() if k != "scores"} for r in runs],
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2, default=float) + "\n")
    print(json.dumps(summary, indent=2, default=float))
    print(f"[perf] wrote {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
