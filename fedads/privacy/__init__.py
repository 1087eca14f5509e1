"""Label privacy of split learning: attacks measured on every run, defenses, accounting.

* :mod:`fedads.privacy.attacks`: label-inference attacks, pure functions of received gradients.
* :mod:`fedads.privacy.observe`: the instruments the social party and the relay run on what they
  received (per-row scores to a private file / the job result).
* :mod:`fedads.privacy.defenses`: what the label party applies before a gradient leaves it.
* :mod:`fedads.privacy.accounting`: epsilon (opacus RDP accountant).
* :mod:`fedads.privacy.leakage`, :mod:`fedads.privacy.feature_inference`: the harness, which
  alone knows the labels and turns scores into leak AUCs.

See ``docs/privacy.md`` for the threat model and the measured frontier.
"""

from __future__ import annotations

from fedads.privacy.attacks import ATTACKS, run_attacks
from fedads.privacy.defenses import DEFAULT_STRENGTHS, DEFENSES, Defense

__all__ = ["ATTACKS", "DEFAULT_STRENGTHS", "DEFENSES", "Defense", "run_attacks"]
