"""Join-key normalisation, declared in config and applied identically by both parties.

Both parties must use the same :class:`KeyNormalization` (it comes from the shared experiment
config); different settings do not break alignment, they only make fewer keys match.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fedads._validation import examples, fail


@dataclass(frozen=True)
class KeyNormalization:
    """How raw join keys are canonicalised before alignment.

    Attributes:
        strip: remove leading/trailing whitespace (``" abc "`` -> ``"abc"``).
        lower: lower-case (``"ABC"`` -> ``"abc"``); use for e-mails and hex digests whose case
            differs between the parties' pipelines.
    """

    strip: bool = True
    lower: bool = False

    def validate(self) -> KeyNormalization:
        """Check the field types; return self."""
        for name in ("strip", "lower"):
            value = getattr(self, name)
            if not isinstance(value, bool):
                raise fail("KeyNormalization", f"{name}={value!r} is not a bool", "give True/False")
        return self

    def describe(self) -> str:
        """Short text for messages, e.g. ``"strip=True, lower=False"``."""
        return f"strip={self.strip}, lower={self.lower}"


def normalize_keys(
    keys: Sequence[str] | np.ndarray,
    normalization: KeyNormalization | None = None,
    *,
    party: str = "keys",
) -> np.ndarray:
    """Normalise join keys and check they stay usable.

    Args:
        keys: ``[n]`` strings (a list, or a numpy str/object array such as
            ``PartyTable.keys()``).
        normalization: what to apply; default ``KeyNormalization()`` (strip only).
        party: who owns the keys, for messages (``"social"``, ``"ecommerce"``).

    Returns:
        ``[n]`` numpy str array of normalised keys, in input order.

    Raises:
        InputError: non-string or missing keys, keys that are empty after normalisation, or keys
            that collide after normalisation (the message names the party and shows examples).
    """
    out = normalized_key_list(keys, normalization, party=party)
    return np.array(out, dtype=str) if out else np.zeros(0, dtype="<U1")


def normalized_key_list(
    keys: Sequence[str] | np.ndarray,
    normalization: KeyNormalization | None = None,
    *,
    party: str = "keys",
) -> list[str]:
    """:func:`normalize_keys` as a list of Python strings (no fixed-width copy).

    The PSI works on Python strings; a numpy ``<U64`` array of a million hex keys would take
    256 MB per copy, a list of the same strings shares them with the caller.
    """
    rule = (normalization or KeyNormalization()).validate()
    where = f"{party} keys"
    if isinstance(keys, np.ndarray):
        if keys.ndim != 1:
            raise fail(where, f"keys have shape {keys.shape}", "give a 1-D sequence of strings")
        if keys.dtype.kind not in "UO" and keys.size:
            raise fail(
                where,
                f"keys have dtype {keys.dtype}, not text",
                "give the keys as strings (read the key column as text)",
            )
        items = keys.tolist()
    elif isinstance(keys, str | bytes):
        raise fail(where, "keys is a single string", "give a sequence of keys")
    else:
        items = list(keys)
    bad = [i for i, k in enumerate(items) if not isinstance(k, str)]
    if bad:
        raise fail(
            where,
            f"{len(bad)} keys are not strings (e.g. {examples([items[i] for i in bad], 3)} at "
            f"positions {examples(bad, 3)})",
            "give every key as a non-empty string",
        )
    if rule.strip and rule.lower:
        out = [k.strip().lower() for k in items]
    elif rule.strip:
        out = [k.strip() for k in items]
    elif rule.lower:
        out = [k.lower() for k in items]
    else:
        out = items
    distinct = set(out)
    if "" in distinct:
        empty = [i for i, k in enumerate(out) if not k]
        raise fail(
            where,
            f"{len(empty)} keys are empty after normalisation ({rule.describe()}) at positions "
            f"{examples(empty)}",
            "fill in or drop the rows with empty keys",
        )
    if len(distinct) != len(out):
        _raise_duplicates(where, items, out, rule)
    return out


def _raise_duplicates(where: str, raw: list[str], out: list[str], rule: KeyNormalization) -> None:
    counts = pd.Series(out, dtype=object).value_counts()
    repeated = counts[counts > 1]
    shown_values = set(repeated.index[:3])
    spellings: dict[str, list[str]] = {value: [] for value in shown_values}
    for original, value in zip(raw, out, strict=True):
        if value in spellings and len(spellings[value]) < 3:
            spellings[value].append(original)
    shown = [f"{value!r} <- {examples(spellings[value], 3)}" for value in repeated.index[:3]]
    raise fail(
        where,
        f"{len(repeated)} keys are duplicated after normalisation ({rule.describe()}), "
        f"e.g. {', '.join(shown)}",
        "keep one row per user, or change the key normalisation",
    )
