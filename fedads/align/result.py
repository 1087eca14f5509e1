"""The alignment result each party keeps, and the shared aligned order."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from fedads._validation import fail
from fedads.errors import InputError

ORDER_DIGEST_BYTES = 16
"""Width of the keyed BLAKE2b digest that orders the aligned rows (128 bits)."""
_KEY_PERSON = b"fedads.align.key"  # BLAKE2b personalisation (domain separation), <= 16 bytes
_SALT_PERSON = b"fedads.align.slt"


@dataclass(frozen=True, eq=False)
class Alignment:
    """One party's view of the aligned users.

    Attributes:
        rows: ``int64 [n_aligned]`` row positions into this party's own table (the order its
            keys were given in), in the aligned order: ``rows[i]`` on the social side and
            ``rows[i]`` on the e-commerce side are the same user. Read-only.
        n_own: number of rows (keys) this party brought.
        party: ``"social"`` or ``"ecommerce"`` (informational).
    """

    rows: np.ndarray
    n_own: int
    party: str = ""

    def __post_init__(self) -> None:
        rows = np.array(self.rows, dtype=np.int64, copy=True).reshape(-1)
        rows.setflags(write=False)
        object.__setattr__(self, "rows", rows)
        object.__setattr__(self, "n_own", int(self.n_own))

    @property
    def n_aligned(self) -> int:
        """Number of aligned users (the intersection size)."""
        return int(self.rows.size)

    @property
    def coverage(self) -> float:
        """Share of this party's rows that are aligned, ``n_aligned / n_own``."""
        return self.n_aligned / self.n_own if self.n_own else 0.0

    def __repr__(self) -> str:
        return f"Alignment(party={self.party!r}, n_aligned={self.n_aligned}, n_own={self.n_own})"


def aligned_order(keys: np.ndarray | Sequence[str]) -> np.ndarray:
    """Permutation that puts a set of keys in the shared aligned order.

    The sort key of ``k`` is ``BLAKE2b-128(d(k), key=salt)`` with ``d(k)`` a domain-separated
    BLAKE2b-256 of the key and ``salt`` a hash of the XOR of ``d(k)`` over ALL given keys. Two
    parties that hold the same set of (normalised) keys, in any order, get the same order, and
    nobody who does not know the whole set can predict it. The order is pseudo-random and
    independent of the key values, and the same set always gives the same order.

    Args:
        keys: ``[n]`` normalised keys (a set: no duplicates).

    Returns:
        ``int64 [n]`` permutation: ``keys[order]`` is in aligned order.
    """
    items = keys.tolist() if isinstance(keys, np.ndarray) else list(keys)
    n = len(items)
    digests = [
        hashlib.blake2b(k.encode(), digest_size=32, person=_KEY_PERSON).digest() for k in items
    ]
    fold = np.zeros(4, dtype=np.uint64)
    if n:
        words = np.frombuffer(b"".join(digests), dtype=np.uint64).reshape(n, 4)
        fold = np.bitwise_xor.reduce(words, axis=0)
    salt = hashlib.blake2b(fold.tobytes(), digest_size=32, person=_SALT_PERSON).digest()
    sort_keys = np.fromiter(
        (hashlib.blake2b(d, key=salt, digest_size=ORDER_DIGEST_BYTES).digest() for d in digests),
        dtype=f"S{ORDER_DIGEST_BYTES}",
        count=n,
    )
    order = np.argsort(sort_keys, kind="stable")
    ordered = sort_keys[order]
    if n > 1 and bool(np.any(ordered[1:] == ordered[:-1])):
        # A 128-bit collision: break the tie by the key itself so both sides still agree.
        order = np.lexsort((np.asarray(items, dtype=str), sort_keys))
    return order.astype(np.int64, copy=False)


def no_overlap_error(
    party: str, peer: str, n_own: int, n_peer: int, normalization: str
) -> InputError:
    """The InputError for an empty intersection (built, not raised)."""
    return fail(
        f"{party} alignment",
        f"no users in common with the {peer} party ({n_own} {party} keys, {n_peer} {peer} keys)",
        "check that both parties use the same key column (same identifier, same hashing) and "
        f"the same key normalisation (here {normalization}; e.g. lower=True if the case differs)",
    )
