"""Private entity alignment between the social and the e-commerce party.

Two-way private set intersection: each party learns which of its own rows are in the
intersection and nothing about the keys outside it; both get the same aligned order. Two
backends behind one facade (:func:`make_psi_party`, ``backend=``), the same on both sides:
``"ristretto255"`` (default; two-way Diffie-Hellman PSI over the ristretto255 group via rbcl /
libsodium, :mod:`fedads.align.ristretto`) and ``"openmined"`` (openmined-psi over P-256,
:mod:`fedads.align.psi`). See :mod:`fedads.align.psi` for the message sequence and what each
role can learn.

Public API:

* :class:`KeyNormalization`, :func:`normalize_keys`: canonical keys (config-declared).
* :func:`make_psi_party`: one party's protocol steps for a backend, envelope in / envelope out
  (:class:`RistrettoPsiParty` or :class:`PsiParty`; both satisfy :class:`PsiBackendParty`).
* :data:`PSI_BACKENDS`, :data:`DEFAULT_PSI_BACKEND`: the backend names.
* :func:`coordinate_alignment`: the coordinator's 4 rounds over any ``send_all``.
* :func:`align_parties`: both parties in process (tests, local runs).
* :class:`Alignment`: a party's aligned rows; :class:`AlignmentSummary`: the sizes.
* :func:`hashed_join`: insecure salted-hash baseline, for speed comparison only.
"""

from __future__ import annotations

from fedads.align.hashed import hashed_join
from fedads.align.keys import KeyNormalization, normalize_keys
from fedads.align.psi import (
    AlignmentSummary,
    PsiParty,
    align_parties,
    coordinate_alignment,
    make_psi_party,
)
from fedads.align.result import Alignment, aligned_order
from fedads.align.ristretto import RistrettoPsiParty
from fedads.align.steps import (
    DEFAULT_PSI_BACKEND,
    PSI_BACKENDS,
    PSI_DONE,
    PSI_HELLO,
    PSI_KINDS,
    PSI_RESPONSE,
    PSI_SETUP,
    PSI_START,
    PsiBackendParty,
)

__all__ = [
    "DEFAULT_PSI_BACKEND",
    "PSI_BACKENDS",
    "PSI_DONE",
    "PSI_HELLO",
    "PSI_KINDS",
    "PSI_RESPONSE",
    "PSI_SETUP",
    "PSI_START",
    "Alignment",
    "AlignmentSummary",
    "KeyNormalization",
    "PsiBackendParty",
    "PsiParty",
    "RistrettoPsiParty",
    "align_parties",
    "aligned_order",
    "coordinate_alignment",
    "hashed_join",
    "make_psi_party",
    "normalize_keys",
]
