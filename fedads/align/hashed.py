"""Salted-hash join: an INSECURE speed baseline for alignment, never the default.

Each party sends ``SHA-256(salt || normalised key)`` for every key it holds; the join matches
equal digests. This is NOT private: whoever sees the digests and the salt (the other party, the
coordinator, anyone the salt leaks to) can hash candidate keys and test them. Phone numbers
live in a space of about 10^10 values, which a single machine enumerates in hours, so every
digest of a phone number can be reversed (a dictionary attack), including users outside the
intersection. Use :func:`fedads.align.align_parties` (PSI) for real alignment.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from fedads._validation import fail
from fedads.align.keys import KeyNormalization, normalized_key_list
from fedads.align.result import Alignment, no_overlap_error

_DIGEST_BYTES = 32


def hashed_join(
    social_keys: Sequence[str] | np.ndarray,
    ecommerce_keys: Sequence[str] | np.ndarray,
    salt: bytes,
    *,
    normalization: KeyNormalization | None = None,
) -> tuple[Alignment, Alignment]:
    """Align by joining salted SHA-256 digests. Baseline only: open to dictionary attacks.

    The salt does not protect the keys: anyone holding it can enumerate the ~10^10 possible
    phone numbers (or any small key space), hash each with the salt and invert every digest.
    Kept only to measure how much the private PSI costs in comparison.

    Args:
        social_keys: ``[n_social]`` raw keys in social row order.
        ecommerce_keys: ``[n_ecommerce]`` raw keys in e-commerce row order.
        salt: bytes both parties agreed on (at least 16).
        normalization: shared key normalisation (default: strip only).

    Returns:
        ``(social, ecommerce)`` :class:`Alignment` s, same shape as the PSI result; aligned
        order = ascending salted digest, identical on both sides.

    Raises:
        InputError: bad keys or salt, or no users in common.
    """
    if not isinstance(salt, bytes | bytearray) or len(salt) < 16:
        raise fail("hashed_join", "salt must be at least 16 bytes", "pass e.g. os.urandom(32)")
    rule = normalization or KeyNormalization()
    social = normalized_key_list(social_keys, rule, party="social")
    ecommerce = normalized_key_list(ecommerce_keys, rule, party="ecommerce")
    social_digests = _digests(social, bytes(salt))
    ecommerce_digests = _digests(ecommerce, bytes(salt))
    _, social_rows, ecommerce_rows = np.intersect1d(
        social_digests, ecommerce_digests, assume_unique=True, return_indices=True
    )
    if social_rows.size == 0:
        raise no_overlap_error("social", "ecommerce", len(social), len(ecommerce), rule.describe())
    return (
        Alignment(social_rows, len(social), "social"),
        Alignment(ecommerce_rows, len(ecommerce), "ecommerce"),
    )


def _digests(keys: list[str], salt: bytes) -> np.ndarray:
    """``S32 [n]`` SHA-256(salt || key) per key."""
    prefix = hashlib.sha256(salt)
    out = []
    for key in keys:
        digest = prefix.copy()
        digest.update(key.encode())
        out.append(digest.digest())
    return np.array(out, dtype=f"S{_DIGEST_BYTES}") if out else np.zeros(0, f"S{_DIGEST_BYTES}")
