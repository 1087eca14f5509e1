"""Private entity alignment between the social and the e-commerce party.

Two-way ECDH PSI (openmined-psi): each party learns which of its own rows are in the
intersection and nothing about the keys outside it; both get the same aligned order. See
:mod:`fedads.align.psi` for the message sequence and what each role can learn.

Public API:

* :class:`KeyNormalization`, :func:`normalize_keys`: canonical keys (config-declared).
* :class:`PsiParty`: one party's protocol steps, envelope in / envelope out.
* :func:`coordinate_alignment`: the coordinator's 4 rounds over any ``send_all``.
* :func:`align_parties`: both parties in process (tests, local runs).
* :class:`Alignment`: a party's aligned rows; :class:`AlignmentSummary`: the sizes.
* :func:`hashed_join`: insecure salted-hash baseline, for speed comparison only.
"""

from __future__ import annotations

from fedads.align.hashed import hashed_join
from fedads.align.keys import KeyNormalization, normalize_keys
from fedads.align.psi import (
    PSI_DONE,
    PSI_HELLO,
    PSI_KINDS,
    PSI_RESPONSE,
    PSI_SETUP,
    PSI_START,
    AlignmentSummary,
    PsiParty,
    align_parties,
    coordinate_alignment,
)
from fedads.align.result import Alignment, aligned_order

__all__ = [
    "PSI_DONE",
    "PSI_HELLO",
    "PSI_KINDS",
    "PSI_RESPONSE",
    "PSI_SETUP",
    "PSI_START",
    "Alignment",
    "AlignmentSummary",
    "KeyNormalization",
    "PsiParty",
    "align_parties",
    "aligned_order",
    "coordinate_alignment",
    "hashed_join",
    "normalize_keys",
]
