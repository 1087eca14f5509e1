"""Suite-wide ordering: the longest test files first, each on a worker of its own.

``make test`` runs ``pytest -n 2 --dist loadfile``: each file goes whole to one of two workers.
Two things in pytest-xdist (3.8) decide which file starts when:

* ``LoadScopeScheduling`` (``loadfile``'s scheduler) sorts the files by their *number of tests*
  unless ``--no-loadscope-reorder`` is given; a one-test file (the deployment federation, six
  minutes) then went last and ran alone at the end. :func:`pytest_configure` turns that
  re-ordering off, so the files go out in collection order, set here by :data:`LONG_FIRST`.
* The scheduler first hands each worker one file (worker 0 the first, worker 1 the second),
  then a second file to every worker whose first has 2 or fewer tests left: a worker runs a
  test only once it holds the next one (pytest needs ``nextitem``). So the third file waits on
  worker 0 behind the one-test deployment file: :data:`BEHIND_THE_LONGEST` puts a short file
  there (after the first file of every worker), while the other workers start the next longest.
"""

from __future__ import annotations

import os

import pytest

#: Test files by measured duration on 2 cores, longest first; the rest keep their order.
LONG_FIRST: tuple[str, ...] = (
    "test_deployment.py",
    "test_docs.py",
    "test_lift_claim.py",
    "test_notebooks.py",
    "test_deployment_security.py",
    "test_reliability.py",
    "test_resume.py",
    "test_flower_equivalence.py",
    "test_flower.py",
    "test_experiment.py",
    "test_claim_map.py",
    "test_campaign.py",
    "test_uplift.py",
    "test_reproducibility.py",
)
#: A short file queued behind the first (one long test): it waits there, not a long file.
BEHIND_THE_LONGEST = "test_settings.py"


def pytest_configure(config: pytest.Config) -> None:
    # Keep xdist's loadfile/loadscope scheduler from sorting files by test count (see above).
    if hasattr(config.option, "loadscopereorder"):
        config.option.loadscopereorder = False


def _rank(name: str) -> int:
    # Each worker first gets one of the longest files; the next file waits behind the first
    # (a one-test file), so that slot gets the short one.
    workers = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    order = (*LONG_FIRST[:workers], BEHIND_THE_LONGEST, *LONG_FIRST[workers:])
    return order.index(name) if name in order else len(order)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    items.sort(key=lambda item: _rank(item.path.name))  # stable: tests keep their file order
