"""Suite-wide ordering: the longest test files first.

``make test`` runs ``pytest -n 2 --dist loadfile``: each file goes whole to one of two workers, in
collection order. Starting the files that take minutes (a deployment federation, Flower
simulations, notebooks, the lift controls) first keeps one long file from starting last and
running alone at the end.
"""

from __future__ import annotations

import pytest

#: Test files by measured duration on 2 cores, longest first; the rest keep their order.
LONG_FIRST: tuple[str, ...] = (
    "test_deployment.py",
    "test_experiment.py",
    "test_docs.py",
    "test_lift_claim.py",
    "test_notebooks.py",
    "test_flower.py",
    "test_privacy_leakage.py",
    "test_zoo.py",
    "test_alignment_reuse.py",
)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    rank = {name: i for i, name in enumerate(LONG_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(LONG_FIRST)))
