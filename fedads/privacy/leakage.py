"""The harness side: compare the attacks' scores with the true labels (the experimenter only).

The parties and the relay only *score* rows (:mod:`fedads.privacy.observe`); this module, run by
the experimenter who in a simulation knows the training labels, turns scores into leak AUCs:
per attack and view (the social party's, the relay's), per epoch, and overall = over the last
epoch's gradients (the model the run ends with). ``auc`` is the AUC of the attacker's own
orientation (higher score = converter); ``auc_either_sign`` is ``max(auc, 1 - auc)``, what an
attacker who learned the orientation would get; the *worst* leak of a run is the largest
``auc_either_sign`` over attacks and views.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from fedads.privacy.attacks import ATTACKS
from fedads.privacy.observe import (
    ATTACK_SCORES_FILE,
    RECEIVED_EMBEDDINGS_FILE,
    attack_records_from_arrays,
)
from fedads.privacy.records import read_records

SOCIAL_VIEW = "social"
RELAY_VIEW = "relay"


def read_party_outputs(out_dirs: dict[str, str | Path]) -> dict[str, Any]:
    """The privacy records in the parties' private folders (experimenter side, simulation only).

    Returns ``{"social_attack": records | None, "received_embeddings": records | None}``.
    """
    return {
        "social_attack": read_records(Path(out_dirs["social"]) / ATTACK_SCORES_FILE),
        "received_embeddings": read_records(Path(out_dirs["ecommerce"]) / RECEIVED_EMBEDDINGS_FILE),
    }


def attack_table(records: np.ndarray) -> np.ndarray:
    """Records with one row per ``(position, epoch)`` (the last, if a retried message repeated)."""
    key = records["position"].astype(np.int64) * 65536 + records["epoch"].astype(np.int64)
    _, last = np.unique(key[::-1], return_index=True)
    return records[::-1][last]


def label_leakage(records: np.ndarray, labels: np.ndarray) -> dict[str, dict[str, Any]]:
    """Leak AUC of every attack against the true labels.

    Args:
        records: attack records (``fedads.privacy.observe.ATTACK_DTYPE``) of one view.
        labels: float ``[n_aligned]`` true labels in the aligned order.

    Returns:
        ``{attack: {"auc", "auc_either_sign", "per_epoch": [auc of epoch 0, ...], "rows"}}``;
        ``auc`` is over the last epoch's rows (``None`` when that epoch has one class only).
    """
    table = attack_table(records)
    y = np.asarray(labels)[table["position"]] > 0.5
    epochs = table["epoch"]
    last = int(epochs.max()) if len(epochs) else -1
    out: dict[str, dict[str, Any]] = {}
    for name in ATTACKS:
        per_epoch = [_auc(y[epochs == e], table[name][epochs == e]) for e in range(last + 1)]
        overall = per_epoch[-1] if per_epoch else None
        out[name] = {
            "auc": overall,
            "auc_either_sign": None if overall is None else max(overall, 1.0 - overall),
            "per_epoch": per_epoch,
            "rows": int((epochs == last).sum()),
        }
    return out


def worst_leak(leakage: dict[str, dict[str, dict[str, Any]]]) -> float | None:
    """The largest ``auc_either_sign`` over views and attacks (``None`` if none is defined)."""
    values = [
        attack["auc_either_sign"]
        for view in leakage.values()
        for attack in view.values()
        if attack.get("auc_either_sign") is not None
    ]
    return max(values) if values else None


def _auc(y: np.ndarray, scores: np.ndarray) -> float | None:
    if y.size == 0 or y.all() or not y.any():
        return None
    # Imported here: every party process imports this module (through fedads.federation), and
    # scikit-learn costs ~1.5 s of start-up there; AUCs are computed only by the report.
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, np.nan_to_num(scores.astype(np.float64))))


def privacy_report(
    run: Any,
    social: Any,
    ecommerce: Any,
    protocol: Any,
    *,
    feature_inference: bool = True,
    seed: int = 0,
) -> dict[str, Any]:
    """The report's ``privacy`` block for a finished federated run (the one harness entry).

    Args:
        run: :class:`fedads.federation.FederatedRun` (job values, aligned rows, party outputs).
        social, ecommerce: the two party tables (the experimenter's view of the simulation).
        protocol: the run's :class:`~fedads.protocol.ProtocolConfig` (defense, epochs).
        feature_inference: also measure what the received embeddings tell about social features.
        seed: seed of the feature-inference split.
    """
    from fedads.federation import RELAY_ATTACK_PREFIX
    from fedads.privacy.defenses import Defense

    labels = ecommerce.labels(run.ecommerce_rows)
    views: dict[str, np.ndarray] = {}
    social_records = run.party_outputs.get("social_attack")
    if social_records is not None and len(social_records):
        views[SOCIAL_VIEW] = social_records
    relay_records = attack_records_from_arrays(run.values, RELAY_ATTACK_PREFIX)
    if relay_records is not None and len(relay_records):
        views[RELAY_VIEW] = relay_records
    leakage = {view: label_leakage(records, labels) for view, records in views.items()}
    defense = Defense(protocol.defense, protocol.defense_strength)
    block: dict[str, Any] = {
        "label_leakage": leakage.get(SOCIAL_VIEW, {}),
        "relay_label_leakage": leakage.get(RELAY_VIEW, {}),
        "worst_leak_auc": worst_leak(leakage),
        "defense": defense.describe(protocol.epochs),
        # The relay's attack time; the social party runs the same attacks on the same arrays.
        "attack_seconds_per_view": run.values.get("relay_attack_seconds"),
        "training_seconds": float(np.sum(run.values.get("epoch_seconds", []))),
    }
    if feature_inference:
        from fedads._threads import compute_threads
        from fedads.privacy.feature_inference import feature_inference_report

        embeddings = run.party_outputs.get("received_embeddings")
        if embeddings is not None and len(embeddings):
            # One BLAS/OpenMP thread for the small linear fits (fedads._threads): with one
            # thread per core they spun against other work on a loaded machine
            # (benchmarks/results/run_overhead.json, stage privacy+report).
            with compute_threads():
                block["feature_inference"] = feature_inference_report(
                    embeddings, social, ecommerce, run.social_rows, run.ecommerce_rows, seed=seed
                )
    return block
