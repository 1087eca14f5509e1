"""Negative controls: party tables whose features carry no information about their users.

A control must show no lift; if it does, the measurement is broken (leakage, a bug in the
alignment, a biased evaluation), not the federation good. ``benchmarks/lift_claim.py`` and
``tests/test_lift_claim.py`` use :func:`shuffle_features` as one of two controls (the other is
a world with ``social_intent_strength=0``).
"""

from __future__ import annotations

import numpy as np

from fedads.tables import PartyTable, load_party_table

_CONTROL_SALT = 0x5F1E  # the shuffle's own random stream, apart from the world's


def shuffle_features(table: PartyTable, seed: int) -> PartyTable:
    """Permute a table's feature rows relative to its keys (labels and flags stay put).

    Every key keeps a row of real features, but someone else's: the features behind a key are
    independent of that user's intent and outcome, while their distribution is unchanged.
    Column roles (numeric, categorical, label, existing) are kept; same ``seed`` -> same table.

    Args:
        table: a party table (``n_rows`` rows).
        seed: seed of the permutation.

    Returns:
        A new :class:`PartyTable` with the same keys, row order and columns.
    """
    frame = table.frame
    order = np.random.default_rng([seed, _CONTROL_SALT]).permutation(len(frame))
    features = list(table.feature_columns)
    kept = [c for c in frame.columns if c not in features]
    shuffled = frame[kept].copy()
    moved = frame[features].iloc[order].reset_index(drop=True)
    moved.index = shuffled.index
    shuffled[features] = moved
    shuffled = shuffled[list(frame.columns)]
    return load_party_table(
        shuffled,
        party=table.party,
        key=table.key,
        label=table.label_column,
        existing=table.existing_column,
        categorical=list(table.categorical_columns),
        numeric=list(table.numeric_columns),
        name=f"{table.party} (features shuffled across users)",
    )
