"""How many CPU threads torch and the OpenMP / BLAS pools (scikit-learn) use while fedads trains.

Why one thread by default: the models are small (a 2-layer MLP on batches of 128-1024 rows), so a
matrix product is too small to split usefully, and an idle second intra-op thread spins. On a
shared 2-core machine (CI, a laptop running other work) torch's default of one thread per core
made the non-federated references ~10x slower than with one thread (benchmarks/run_overhead.py:
3 reference models on 5,000 users, 30 s -> 2.5 s under a load average of 3). A Flower party in
the simulation engine already runs on one thread (Ray sets ``OMP_NUM_THREADS=1`` for an actor of
one CPU), so the in-process runs now match it.

The limit is scoped: :func:`compute_threads` sets it for the block and restores torch's and the
pools' previous settings on exit. ``FEDADS_THREADS`` in the environment overrides the default:
a positive number of threads, or ``0`` to leave the process's settings untouched (what fedads did
before). On the README example (5,000 users) every model's scores were bit for bit the same with
one thread and with torch's default (benchmarks/run_overhead.py compares them); torch does not
promise equal float results across thread counts for every shape, so a run that must reproduce
an older one made with the default threads can set ``FEDADS_THREADS=0``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

from fedads._validation import fail

#: Environment variable: threads while fedads trains (``0``: leave the process's settings).
THREADS_ENV = "FEDADS_THREADS"
#: Default when :data:`THREADS_ENV` is not set.
DEFAULT_THREADS = 1


def configured_threads(threads: int | None = None) -> int:
    """``threads`` if given, else :data:`THREADS_ENV`, else :data:`DEFAULT_THREADS` (``0``: off)."""
    if threads is None:
        raw = os.environ.get(THREADS_ENV, "").strip()
        if not raw:
            return DEFAULT_THREADS
        try:
            threads = int(raw)
        except ValueError:
            raise fail(
                THREADS_ENV, f"{raw!r} is not a whole number", "set it to 1, 2, ... or 0 (off)"
            ) from None
    if threads < 0:
        raise fail(THREADS_ENV, f"{threads} threads", "use 1, 2, ... or 0 (leave as is)")
    return int(threads)


@contextmanager
def compute_threads(threads: int | None = None) -> Iterator[int]:
    """torch's intra-op threads and the OpenMP/BLAS pools limited to ``threads`` in the block.

    Yields the limit applied (``0``: none). Restores the previous settings on exit, also when
    the block raises. Nested blocks are fine (each restores what it found).
    """
    limit = configured_threads(threads)
    if limit == 0:
        yield 0
        return
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(limit)
    try:
        with threadpool_limits(limits=limit):
            yield limit
    finally:
        torch.set_num_threads(before)
